//! Tests of `recovery`: replay, the torn-tail rule, corruption and the snapshot invariant.

use proptest::prelude::*;

use super::super::batch::{encode_batch, encode_batch_limited};
use super::super::format::{
    decode_at, Record, WalEntry, WalHardState, WalSnapshot, WalSnapshotPart,
};
use super::super::header::{FileHeader, FILE_HEADER_BYTES};
use super::*;

const SALT: u64 = 0xA5A5_0001;
const CLUSTER: u64 = 77;

fn entry(index: u64, term: u64) -> WalEntry {
    WalEntry {
        index,
        term,
        entry_type: 0,
        data: vec![1, 2, 3],
        context: vec![],
    }
}

fn hard_state(shard: u64, term: u64, vote: u64, commit: u64) -> Record {
    Record::HardState {
        shard,
        state: WalHardState { term, vote, commit },
    }
}

fn entries(shard: u64, from: u64, to: u64, term: u64) -> Record {
    Record::Entries {
        shard,
        entries: (from..=to).map(|i| entry(i, term)).collect(),
    }
}

/// An image as `Wal::append` writes it, one batch per slice; returns it and the end offset
/// of every record.
fn image(batches: &[&[Record]]) -> (Vec<u8>, Vec<usize>) {
    let mut bytes = FileHeader::new(CLUSTER, SALT).to_bytes().to_vec();
    let mut ends = Vec::new();
    for batch in batches {
        let start = bytes.len() as u64;
        for record in *batch {
            encode_batch(std::slice::from_ref(record), SALT, start, &mut bytes).expect("fits");
            ends.push(bytes.len());
        }
    }
    (bytes, ends)
}

fn flat(records: &[Record]) -> Vec<u8> {
    let batches: Vec<&[Record]> = records.iter().map(std::slice::from_ref).collect();
    image(&batches).0
}

fn sample() -> Vec<Record> {
    vec![
        entries(1, 1, 3, 1),
        hard_state(1, 1, 1, 2),
        entries(2, 1, 1, 1),
        // A new leader overwrote index 3 onwards on shard 1.
        entries(1, 3, 4, 2),
        hard_state(1, 2, 3, 4),
    ]
}

fn corrupt_offset(result: Result<Recovery, RecoveryError>) -> (u64, Corruption) {
    match result {
        Err(RecoveryError::Corrupt { offset, reason }) => (offset, reason),
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn zeros_after_the_log_are_a_clean_end() {
    let mut bytes = flat(&sample());
    let end = bytes.len();
    bytes.extend(std::iter::repeat_n(0u8, 4096));
    let recovery = recover(&bytes).expect("valid");
    assert_eq!(recovery.torn, None);
    assert_eq!(recovery.valid_len, end);
    assert_eq!((recovery.cluster_id, recovery.salt), (CLUSTER, SALT));
    bytes.push(1);
    let recovery = recover(&bytes).expect("garbage at the end is a torn tail");
    assert_eq!(recovery.torn.map(|t| t.offset), Some(end));
}

#[test]
fn replays_overwrites_and_hard_states() {
    let bytes = flat(&sample());
    let recovery = recover(&bytes).expect("valid");
    assert_eq!(recovery.torn, None);
    assert_eq!(recovery.valid_len, bytes.len());
    let shard1 = &recovery.shards[&1];
    assert_eq!(
        shard1
            .entries
            .iter()
            .map(|e| (e.index, e.term))
            .collect::<Vec<_>>(),
        [(1, 1), (2, 1), (3, 2), (4, 2)]
    );
    assert_eq!(
        shard1.hard_state,
        Some(WalHardState {
            term: 2,
            vote: 3,
            commit: 4
        })
    );
    assert_eq!(recovery.shards[&2].entries.len(), 1);
}

#[test]
fn a_snapshot_replaces_the_log_and_entries_continue_after_it() {
    let snapshot = WalSnapshot {
        index: 10,
        term: 3,
        voters: vec![1, 2, 3],
        data: vec![9; 40],
    };
    let taken = Record::Snapshot {
        shard: 1,
        snapshot: snapshot.clone(),
    };
    let records = vec![entries(1, 1, 2, 1), taken.clone(), entries(1, 11, 12, 3)];
    let recovery = recover(&flat(&records)).expect("valid");
    assert_eq!(recovery.torn, None);
    let log = &recovery.shards[&1];
    assert_eq!(log.snapshot.as_ref(), Some(&snapshot));
    assert_eq!(
        log.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
        [11, 12]
    );
    let gap = flat(&[taken, entries(1, 13, 13, 3)]);
    let (_, reason) = corrupt_offset(recover(&gap));
    assert!(
        matches!(
            reason,
            Corruption::Discontinuous {
                first: 13,
                base: 11,
                ..
            }
        ),
        "entries must continue right after the snapshot: {reason:?}"
    );
}

#[test]
fn a_checksummed_gap_is_corruption_not_a_torn_tail() {
    let records = [entries(1, 1, 1, 1), entries(1, 5, 5, 1)];
    let (bytes, ends) = image(&[&records[..1], &records[1..]]);
    let (offset, reason) = corrupt_offset(recover(&bytes));
    assert_eq!(offset, ends[0] as u64);
    assert_eq!(
        reason,
        Corruption::Discontinuous {
            shard: 1,
            first: 5,
            base: 1,
            last: 1
        }
    );
}

#[test]
fn a_crash_at_any_byte_recovers_exactly_the_whole_records_before_it() {
    let records = sample();
    let bytes = flat(&records);
    let (_, ends) = image(&records.iter().map(std::slice::from_ref).collect::<Vec<_>>());
    for cut in 0..FILE_HEADER_BYTES {
        assert!(matches!(
            recover(&bytes[..cut]),
            Err(RecoveryError::Header(_))
        ));
    }
    for cut in FILE_HEADER_BYTES..=bytes.len() {
        let recovery = recover(&bytes[..cut]).expect("a cut is a torn tail");
        let whole = ends.iter().filter(|end| **end <= cut).count();
        assert_eq!(recovery.records, whole, "cut at {cut}");
        let valid = if whole == 0 {
            FILE_HEADER_BYTES
        } else {
            ends[whole - 1]
        };
        assert_eq!(recovery.valid_len, valid);
        assert_eq!(recovery.torn.is_some(), cut != valid, "cut at {cut}");
        let mut expected = recover(&flat(&records[..whole])).expect("valid");
        expected.torn = recovery.torn.clone();
        assert_eq!(recovery, expected);
    }
}

/// The defect this guards against: recovery cut the log at a damaged record in its middle,
/// silently dropping every later record (votes, acknowledged entries).
#[test]
fn a_damaged_record_before_a_later_write_fails_recovery_with_its_offset() {
    let records = sample();
    let batches: Vec<&[Record]> = vec![&records[..2], &records[2..3], &records[3..]];
    let (bytes, ends) = image(&batches);
    // Records 0..3 lie before the last batch (records 3 and 4).
    for damaged in 0..3 {
        let start = if damaged == 0 {
            FILE_HEADER_BYTES
        } else {
            ends[damaged - 1]
        };
        for at in [start, start + 13, ends[damaged] - 9] {
            let mut bytes = bytes.clone();
            bytes[at] ^= 0x40;
            let (offset, reason) = corrupt_offset(recover(&bytes));
            assert_eq!(offset, start as u64, "record {damaged}, byte {at}");
            assert!(
                matches!(reason, Corruption::FollowedByValid { .. }),
                "{reason:?}"
            );
        }
    }
    let message = corrupt_offset(recover(&{
        let mut bytes = bytes.clone();
        bytes[FILE_HEADER_BYTES + 40] ^= 1;
        bytes
    }));
    let message = RecoveryError::Corrupt {
        offset: message.0,
        reason: message.1,
    }
    .to_string();
    assert!(
        message.contains(&format!("byte {FILE_HEADER_BYTES}")),
        "{message}"
    );
    assert!(message.contains("checksum"), "{message}");
}

#[test]
fn a_damaged_record_in_the_last_write_is_a_torn_tail() {
    let records = sample();
    let batches: Vec<&[Record]> = vec![&records[..2], &records[2..]];
    let (bytes, ends) = image(&batches);
    // Damage the first record of the last batch; the two after it are of the same batch.
    let mut damaged = bytes.clone();
    damaged[ends[1] + 20] ^= 1;
    let recovery = recover(&damaged).expect("a torn last write");
    assert_eq!(recovery.torn.map(|t| t.offset), Some(ends[1]));
    assert_eq!(recovery.records, 2);
    // Damage its middle record: the prefix before it survives.
    let mut damaged = bytes.clone();
    damaged[ends[2] + 20] ^= 1;
    let recovery = recover(&damaged).expect("a torn last write");
    assert_eq!(recovery.torn.map(|t| t.offset), Some(ends[2]));
    assert_eq!(recovery.records, 3);
}

#[test]
fn a_record_claiming_another_batch_is_corruption() {
    let mut bytes = FileHeader::new(CLUSTER, SALT).to_bytes().to_vec();
    encode_batch(&sample()[..1], SALT, 4096, &mut bytes).expect("fits");
    let (offset, reason) = corrupt_offset(recover(&bytes));
    assert_eq!(offset, FILE_HEADER_BYTES as u64);
    assert_eq!(
        reason,
        Corruption::BatchStart {
            found: 4096,
            previous: None
        }
    );
}

/// The defect this guards against: a crash between a snapshot record and its hard state
/// record left commit below the snapshot, and raft-rs panicked at every start.
#[test]
fn a_wal_ending_right_after_a_snapshot_recovers_a_committed_snapshot() {
    let snapshot = |shard| Record::Snapshot {
        shard,
        snapshot: WalSnapshot {
            index: 10,
            term: 3,
            voters: vec![1, 2, 3],
            data: vec![5; 16],
        },
    };
    let records = vec![
        entries(1, 1, 3, 1),
        hard_state(1, 1, 1, 2),
        snapshot(1),
        // A newer term than the snapshot's: kept, with its vote.
        hard_state(2, 5, 2, 4),
        snapshot(2),
        // No hard state was ever written.
        snapshot(3),
    ];
    let recovery = recover(&flat(&records)).expect("valid");
    let state = |shard| recovery.shards[&shard].hard_state;
    let expect = |term, vote, commit| Some(WalHardState { term, vote, commit });
    assert_eq!(state(1), expect(3, 0, 10));
    assert_eq!(state(2), expect(5, 2, 10));
    assert_eq!(state(3), expect(3, 0, 10));
    for log in recovery.shards.values() {
        raft_starts_on(log);
    }
}

/// Builds raft-rs storage from a recovered log as the runtime does, and starts a node on it.
fn raft_starts_on(log: &ShardLog) {
    use raft::prelude::{ConfState, Entry, HardState, Snapshot};
    let storage = raft::storage::MemStorage::new();
    {
        let mut core = storage.wl();
        core.set_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
        if let Some(s) = &log.snapshot {
            let mut snapshot = Snapshot::default();
            let metadata = snapshot.mut_metadata();
            (metadata.index, metadata.term) = (s.index, s.term);
            metadata.set_conf_state(ConfState::from((s.voters.clone(), vec![])));
            core.apply_snapshot(snapshot).expect("a fresh storage");
        }
        let entries: Vec<Entry> = log
            .entries
            .iter()
            .map(|e| Entry {
                index: e.index,
                term: e.term,
                ..Default::default()
            })
            .collect();
        core.append(&entries).expect("contiguous");
        if let Some(hs) = log.hard_state {
            let mut state = HardState::default();
            (state.term, state.vote, state.commit) = (hs.term, hs.vote, hs.commit);
            core.set_hardstate(state);
        }
    }
    let config = raft::Config {
        id: 1,
        ..Default::default()
    };
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    raft::RawNode::new(&config, storage, &logger).expect("raft starts");
}

/// One batch of `n` records of about 1 KiB, starting at index `from` of shard 9.
fn big_batch(from: u64, n: u64) -> Vec<Record> {
    (0..n)
        .map(|i| Record::Entries {
            shard: 9,
            entries: vec![WalEntry {
                data: vec![i as u8; 1000],
                ..entry(from + i, 1)
            }],
        })
        .collect()
}

proptest! {
    /// Garbage after (or instead of) valid records: recovery never panics and applies
    /// nothing past the first bad byte.
    #[test]
    fn garbage_tails_are_cut_off(
        garbage in proptest::collection::vec(any::<u8>(), 0..300),
        keep in 0usize..6,
    ) {
        let records = sample();
        let valid = flat(&records[..keep.min(records.len())]);
        let mut bytes = valid.clone();
        bytes.extend(&garbage);
        let recovery = recover(&bytes).expect("garbage is a torn tail");
        prop_assert_eq!(recovery.valid_len, valid.len());
        if garbage.iter().any(|b| *b != 0) {
            prop_assert!(recovery.torn.is_some());
        }
    }

    /// The last batch spans many 4 KiB blocks, written without order until the sync: any of
    /// them may be missing after a crash (left as before: the old partial block, then
    /// zeros). Recovery keeps every earlier batch and a prefix of the last one's whole
    /// records, and never reports corruption.
    #[test]
    fn a_torn_multi_block_batch_recovers_a_prefix_of_its_whole_records(
        lost in proptest::collection::vec(any::<bool>(), 8),
    ) {
        let first = big_batch(1, 3);
        let last = big_batch(4, 24);
        let (before, _) = image(&[&first]);
        let (after, ends) = image(&[&first, &last]);
        let block = 4096;
        let mut torn = after.clone();
        let mut old = before.clone();
        old.resize(after.len(), 0);
        let first_block = before.len() / block;
        for (i, lost) in lost.iter().enumerate() {
            let start = (first_block + i) * block;
            if *lost && start < torn.len() {
                let end = (start + block).min(torn.len());
                torn[start..end].copy_from_slice(&old[start..end]);
            }
        }
        let recovery = recover(&torn).expect("a torn last batch is never corruption");
        prop_assert!(recovery.records >= first.len());
        let valid = recovery.valid_len;
        prop_assert!(
            valid == before.len() || ends.contains(&valid),
            "ends on a record boundary"
        );
        let all: Vec<Record> = first.iter().chain(&last).cloned().collect();
        let mut expected = recover(&flat(&all[..recovery.records])).expect("valid");
        expected.torn = recovery.torn.clone();
        expected.valid_len = valid;
        prop_assert_eq!(recovery, expected);
    }
}

#[test]
fn entries_kept_without_their_hard_state_raise_the_term_and_clear_the_vote() {
    // Shard 1 voted in term 1, then got term-2 entries whose hard state record was torn off;
    // shard 2 never had a hard state at all.
    let records = vec![
        hard_state(1, 1, 3, 0),
        entries(1, 1, 3, 2),
        entries(2, 1, 2, 4),
    ];
    let recovery = recover(&flat(&records)).expect("valid");
    let state = |shard| recovery.shards[&shard].hard_state;
    let expect = |term, vote, commit| Some(WalHardState { term, vote, commit });
    assert_eq!(state(1), expect(2, 0, 0));
    assert_eq!(state(2), expect(4, 0, 0));
    for log in recovery.shards.values() {
        raft_starts_on(log);
    }
}

// Snapshot parts. Images are split at `PART_SPLIT_BYTES` so a few KiB make many parts; the
// 64 MiB split itself is tested on a real file (`wal_test`).

const PART_SPLIT_BYTES: u64 = 512;

fn snapshot_at(index: u64, bytes: usize) -> WalSnapshot {
    WalSnapshot {
        index,
        term: 2,
        voters: vec![1, 2, 3],
        data: (0..bytes).map(|i| (i * 7 + index as usize) as u8).collect(),
    }
}

fn snapshot_record(shard: u64, snapshot: &WalSnapshot) -> Record {
    Record::Snapshot {
        shard,
        snapshot: snapshot.clone(),
    }
}

/// An image of whole batches, snapshots split into parts of `PART_SPLIT_BYTES`; returns it
/// and every physical record with its start and end offset.
fn split_image(batches: &[&[Record]]) -> (Vec<u8>, Vec<(usize, usize, Record)>) {
    let mut bytes = FileHeader::new(CLUSTER, SALT).to_bytes().to_vec();
    for batch in batches {
        let start = bytes.len() as u64;
        encode_batch_limited(batch, SALT, start, PART_SPLIT_BYTES, &mut bytes).expect("fits");
    }
    let mut records = Vec::new();
    let mut at = FILE_HEADER_BYTES;
    while at < bytes.len() {
        let (record, len) = decode_at(&bytes[at..], SALT).expect("valid");
        records.push((at, at + len, record));
        at += len;
    }
    (bytes, records)
}

/// How many of `records` end at or before `offset`.
fn before_of(records: &[(usize, usize, Record)], offset: usize) -> usize {
    records.iter().filter(|r| r.1 <= offset).count()
}

/// The start of the first part and the end of the last one among `records`.
fn parts_span(records: &[(usize, usize, Record)]) -> (usize, usize) {
    let parts = || {
        records
            .iter()
            .filter(|(_, _, r)| matches!(r, Record::SnapshotPart { .. }))
    };
    let first = parts().next().expect("parts").0;
    let last = parts().next_back().expect("parts").1;
    (first, last)
}

/// The defect this guards against is the 64 MiB refusal; what the parts must not break is
/// the torn-tail rule: a crash inside them keeps the shard's previous snapshot (or none),
/// cuts the log at the first part, and keeps the whole records of the batch before them.
#[test]
fn a_batch_torn_inside_the_snapshot_parts_recovers_the_previous_snapshot_as_a_torn_tail() {
    let next = snapshot_at(20, 3000);
    for previous in [Some(snapshot_at(10, 700)), None] {
        let mut first = vec![entries(1, 1, 3, 1), hard_state(1, 2, 1, 3)];
        first.extend(previous.iter().map(|s| snapshot_record(1, s)));
        let last = [
            entries(2, 1, 2, 1),
            snapshot_record(1, &next),
            hard_state(1, 2, 1, 20),
        ];
        let (bytes, records) = split_image(&[&first, &last]);
        let last_start = split_image(&[&first]).0.len();
        let (parts_start, parts_end) = parts_span(&records[before_of(&records, last_start)..]);
        let first_part_end = records.iter().find(|r| r.0 == parts_start).expect("part").1;
        let before = before_of(&records, last_start);
        let parts = records
            .iter()
            .filter(|r| r.0 >= parts_start && r.1 <= parts_end)
            .count();
        assert!(parts > 5, "{parts} parts");
        for cut in last_start..=bytes.len() {
            let recovery = recover(&bytes[..cut]).expect("a cut is a torn tail");
            let log = &recovery.shards[&1];
            let whole = |end: usize| cut >= end;
            let (valid, snapshot, records_read) = if !whole(parts_start) {
                (last_start, &previous, before)
            } else if !whole(parts_end) {
                (parts_start, &previous, before + 1)
            } else if cut < bytes.len() {
                (parts_end, &Some(next.clone()), before + 1 + parts)
            } else {
                (bytes.len(), &Some(next.clone()), before + 2 + parts)
            };
            assert_eq!(recovery.valid_len, valid, "cut at {cut}");
            assert_eq!(&log.snapshot, snapshot, "cut at {cut}");
            assert_eq!(recovery.records, records_read, "cut at {cut}");
            assert_eq!(recovery.torn.is_some(), cut != valid, "cut at {cut}");
            if let Some(torn) = &recovery.torn {
                assert_eq!(torn.offset, valid, "cut at {cut}");
                let incomplete = matches!(torn.reason, RecordError::SnapshotIncomplete { .. });
                assert_eq!(
                    incomplete,
                    valid == parts_start && cut >= first_part_end,
                    "cut at {cut}: {:?}",
                    torn.reason
                );
            }
            let shard2 = recovery.shards.get(&2).map_or(0, |l| l.entries.len());
            assert_eq!(shard2, if whole(parts_start) { 2 } else { 0 });
            for log in recovery.shards.values() {
                raft_starts_on(log);
            }
        }
    }
}

#[test]
fn a_lost_part_in_the_last_batch_is_a_torn_tail_and_before_a_later_batch_is_corruption() {
    let previous = snapshot_at(10, 300);
    let first = [snapshot_record(1, &previous), hard_state(1, 2, 1, 10)];
    let last = [
        snapshot_record(1, &snapshot_at(20, 3000)),
        hard_state(1, 2, 1, 20),
    ];
    let later = [entries(1, 21, 21, 2)];
    for batches in [
        vec![&first[..], &last[..]],
        vec![&first[..], &last[..], &later[..]],
    ] {
        let (mut bytes, records) = split_image(&batches);
        let last_start = split_image(&batches[..1]).0.len();
        let in_last = &records[before_of(&records, last_start)..];
        let (parts_start, _) = parts_span(in_last);
        // A middle part's block never reached the disk (later ones did: writes are unordered
        // until the sync).
        let (lost_start, lost_end, _) = in_last[3];
        bytes[lost_start..lost_end].fill(0);
        let result = recover(&bytes);
        if batches.len() == 2 {
            let recovery = result.expect("a torn last batch");
            assert_eq!(recovery.valid_len, parts_start);
            assert_eq!(recovery.torn.map(|t| t.offset), Some(parts_start));
            assert_eq!(recovery.shards[&1].snapshot, Some(previous.clone()));
        } else {
            let (offset, reason) = corrupt_offset(result);
            assert_eq!(offset, lost_start as u64);
            assert!(
                matches!(reason, Corruption::FollowedByValid { .. }),
                "{reason:?}"
            );
        }
    }
}

fn part_of(shard: u64, offset: u64, bytes: usize, total: u64) -> Record {
    Record::SnapshotPart {
        shard,
        part: WalSnapshotPart {
            index: 20,
            term: 2,
            voters: vec![1, 2, 3],
            offset,
            total,
            data: vec![offset as u8; bytes],
        },
    }
}

fn with_part(record: Record, change: impl FnOnce(&mut WalSnapshotPart)) -> Record {
    let Record::SnapshotPart { shard, mut part } = record else {
        panic!("a part");
    };
    change(&mut part);
    Record::SnapshotPart { shard, part }
}

/// Parts that pass their checksums but do not make one snapshot: the writer never produces
/// them and a torn write cannot, so each is corruption at the record that does not fit.
#[test]
fn snapshot_parts_that_do_not_fit_together_are_corruption() {
    let first = || part_of(1, 0, 10, 20);
    let second = || part_of(1, 10, 10, 20);
    let interrupted = Corruption::SnapshotInterrupted {
        shard: 1,
        index: 20,
        received: 10,
        total: 20,
    };
    let cases: Vec<(&str, Vec<Vec<Record>>)> = vec![
        (
            "another index",
            vec![vec![first(), with_part(second(), |p| p.index = 21)]],
        ),
        (
            "another term",
            vec![vec![first(), with_part(second(), |p| p.term = 3)]],
        ),
        (
            "other voters",
            vec![vec![
                first(),
                with_part(second(), |p| p.voters = vec![1, 2]),
            ]],
        ),
        (
            "another total",
            vec![vec![first(), with_part(second(), |p| p.total = 30)]],
        ),
        ("a gap", vec![vec![first(), part_of(1, 12, 8, 20)]]),
        ("an overlap", vec![vec![first(), part_of(1, 5, 10, 20)]]),
        ("a repeated part", vec![vec![first(), first()]]),
        ("another shard", vec![vec![first(), part_of(2, 10, 10, 20)]]),
        (
            "a record between",
            vec![vec![first(), hard_state(1, 2, 1, 20), second()]],
        ),
        ("another batch", vec![vec![first()], vec![second()]]),
        (
            "a later batch",
            vec![vec![first()], vec![entries(2, 1, 1, 1)]],
        ),
    ];
    for (case, batches) in cases {
        let batches: Vec<&[Record]> = batches.iter().map(Vec::as_slice).collect();
        let (bytes, ends) = image(&batches);
        let (offset, reason) = corrupt_offset(recover(&bytes));
        assert_eq!(offset, ends[0] as u64, "{case}: at the second record");
        assert_eq!(reason, interrupted, "{case}");
    }
    let (bytes, _) = image(&[&[second()]]);
    assert_eq!(
        corrupt_offset(recover(&bytes)),
        (
            FILE_HEADER_BYTES as u64,
            Corruption::SnapshotPartAlone {
                shard: 1,
                index: 20,
                offset: 10
            }
        )
    );
}

/// A later batch proves the one before it was synced whole, also when the later batch's
/// first record is damaged (and so reads like a torn write): its own records say it starts
/// there, so the parts before it were all there were.
#[test]
fn a_batch_after_missing_parts_is_corruption_even_when_its_first_record_is_damaged() {
    let batches: [&[Record]; 2] = [
        &[part_of(1, 0, 10, 20)],
        &[entries(2, 1, 1, 1), entries(2, 2, 2, 1)],
    ];
    let (mut bytes, ends) = image(&batches);
    bytes[ends[0] + 40] ^= 1;
    let (offset, reason) = corrupt_offset(recover(&bytes));
    assert_eq!(offset, ends[0] as u64);
    assert!(
        matches!(reason, Corruption::SnapshotInterrupted { received: 10, .. }),
        "{reason:?}"
    );
}

proptest! {
    /// As `a_torn_multi_block_batch_recovers_a_prefix_of_its_whole_records`, for a last
    /// batch whose parts span many blocks: any of them may be lost, and recovery keeps the
    /// previous snapshot or the whole new one, never a mix, never corruption.
    #[test]
    fn a_torn_batch_of_snapshot_parts_keeps_the_previous_snapshot_or_the_whole_new_one(
        lost in proptest::collection::vec(any::<bool>(), 8),
    ) {
        let previous = snapshot_at(10, 300);
        let next = snapshot_at(20, 20_000);
        let first = [snapshot_record(1, &previous), hard_state(1, 2, 1, 10)];
        let last = [
            entries(2, 1, 2, 1),
            snapshot_record(1, &next),
            hard_state(1, 2, 1, 20),
        ];
        let (before, _) = split_image(&[&first]);
        let (after, records) = split_image(&[&first, &last]);
        let (parts_start, parts_end) = parts_span(&records[before_of(&records, before.len())..]);
        let block = 4096;
        let mut torn = after.clone();
        let mut old = before.clone();
        old.resize(after.len(), 0);
        let first_block = before.len() / block;
        for (i, lost) in lost.iter().enumerate() {
            let start = (first_block + i) * block;
            if *lost && start < torn.len() {
                let end = (start + block).min(torn.len());
                torn[start..end].copy_from_slice(&old[start..end]);
            }
        }
        let recovery = recover(&torn).expect("a torn last batch is never corruption");
        let valid = recovery.valid_len;
        prop_assert!(
            valid == before.len() || records.iter().any(|r| r.1 == valid),
            "ends on a record boundary"
        );
        let snapshot = recovery.shards[&1].snapshot.as_ref();
        if valid >= parts_end {
            prop_assert_eq!(snapshot, Some(&next));
        } else {
            prop_assert!(valid <= parts_start, "no part is kept without the others");
            prop_assert_eq!(snapshot, Some(&previous));
        }
    }
}
