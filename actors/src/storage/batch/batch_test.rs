//! Tests of `batch`: splitting entries and snapshots into records that fit, refusals.

use proptest::prelude::*;
use rkyv::rancor;

use super::super::format::{decode_at, WalHardState};
use super::super::recovery::recover;
use super::*;

const SALT: u64 = 99;

fn entry(index: u64, bytes: usize) -> WalEntry {
    WalEntry {
        index,
        term: 1,
        entry_type: 0,
        data: vec![index as u8; bytes],
        context: vec![],
    }
}

fn physical_records(bytes: &[u8]) -> Vec<(Record, usize)> {
    let mut at = 0;
    let mut records = Vec::new();
    while at < bytes.len() {
        let (record, len) = decode_at(&bytes[at..], SALT).expect("valid");
        records.push((record, len));
        at += len;
    }
    records
}

#[test]
fn an_entries_record_over_the_split_size_becomes_records_of_whole_entries() {
    let entries: Vec<WalEntry> = (1..=10).map(|i| entry(i, 1000)).collect();
    let hard_state = Record::HardState {
        shard: 3,
        state: WalHardState::default(),
    };
    let batch = [Record::Entries { shard: 3, entries }, hard_state.clone()];
    let mut out = Vec::new();
    encode_batch_limited(&batch, SALT, 32, 3000, &mut out).expect("fits");
    let records = physical_records(&out);
    assert!(records.len() > 4, "split into {} records", records.len());
    let mut indexes = Vec::new();
    for (record, len) in &records[..records.len() - 1] {
        assert!(
            (*len - HEADER_BYTES) as u64 <= 3000 + 8,
            "payload under the split size"
        );
        match record {
            Record::Entries { entries, .. } => {
                indexes.extend(entries.iter().map(|e| e.index));
            }
            other => panic!("expected entries, got {other:?}"),
        }
    }
    assert_eq!(indexes, (1..=10).collect::<Vec<_>>());
    assert_eq!(records[records.len() - 1].0, hard_state);
}

#[test]
fn an_entry_over_the_payload_limit_is_a_typed_error_and_nothing_is_written() {
    // calloc'd zeros: the 64 MiB is not touched until it is archived.
    let huge = WalEntry {
        data: vec![0; PAYLOAD_BYTES_MAX as usize],
        ..entry(2, 0)
    };
    let batch = [Record::Entries {
        shard: 5,
        entries: vec![entry(1, 10), huge],
    }];
    let mut out = vec![7; 3];
    let refused = encode_batch(&batch, SALT, 32, &mut out);
    assert!(
        matches!(
            refused,
            Err(EncodeError::PayloadTooLarge {
                shard: 5,
                kind: "entries",
                ..
            })
        ),
        "{refused:?}"
    );
    assert_eq!(out, [7, 7, 7]);
}

#[test]
fn an_image_of_split_batches_recovers_every_entry() {
    let entries: Vec<WalEntry> = (1..=50).map(|i| entry(i, 300)).collect();
    let header = FileHeader::new(1, SALT);
    let mut image = header.to_bytes().to_vec();
    let batch = [Record::Entries { shard: 0, entries }];
    encode_batch_limited(&batch, SALT, image.len() as u64, 2000, &mut image).expect("fits");
    let recovery = recover(&image).expect("a clean image");
    assert_eq!(recovery.torn, None);
    assert_eq!(recovery.shards[&0].entries.len(), 50);
    assert!(recovery.records > 5);
}

proptest! {
    #[test]
    fn the_archived_size_bound_holds(
        sizes in proptest::collection::vec((0usize..300, 0usize..40), 1..40)
    ) {
        let entries: Vec<WalEntry> = sizes
            .iter()
            .enumerate()
            .map(|(i, (data, context))| WalEntry {
                context: vec![1; *context],
                ..entry(i as u64 + 1, *data)
            })
            .collect();
        let archived = rkyv::to_bytes::<rancor::Error>(&entries).expect("archive");
        prop_assert!(archived.len() as u64 <= entries_bytes_max(&entries));
    }
}

fn snapshot(bytes: usize) -> WalSnapshot {
    WalSnapshot {
        index: 40,
        term: 6,
        voters: vec![1, 2, 3],
        data: (0..bytes).map(|i| (i % 251) as u8).collect(),
    }
}

#[test]
fn a_snapshot_over_the_split_size_becomes_parts_in_order() {
    let whole = snapshot(10_000);
    let hard_state = Record::HardState {
        shard: 3,
        state: WalHardState::default(),
    };
    let batch = [
        Record::Snapshot {
            shard: 3,
            snapshot: whole.clone(),
        },
        hard_state.clone(),
    ];
    let mut out = Vec::new();
    encode_batch_limited(&batch, SALT, 32, 1000, &mut out).expect("fits");
    let records = physical_records(&out);
    assert_eq!(
        records.len(),
        12,
        "10,000 bytes in parts of 1,000 minus their headers"
    );
    let mut data = Vec::new();
    for (record, len) in &records[..records.len() - 1] {
        assert!(
            (*len - HEADER_BYTES) as u64 <= 1000,
            "payload under the split size"
        );
        let Record::SnapshotPart { shard: 3, part } = record else {
            panic!("expected a part of shard 3, got {record:?}");
        };
        assert_eq!((part.index, part.term), (whole.index, whole.term));
        assert_eq!(part.voters, whole.voters);
        assert_eq!(part.total, 10_000);
        assert_eq!(
            part.offset,
            data.len() as u64,
            "each part starts where the last ended"
        );
        data.extend_from_slice(&part.data);
    }
    assert_eq!(data, whole.data);
    assert_eq!(records[records.len() - 1].0, hard_state);
}

#[test]
fn a_snapshot_that_fits_is_one_part_and_an_empty_one_too() {
    for bytes in [0, 100] {
        let whole = snapshot(bytes);
        let record = Record::Snapshot {
            shard: 1,
            snapshot: whole.clone(),
        };
        let mut out = Vec::new();
        encode_batch(std::slice::from_ref(&record), SALT, 32, &mut out).expect("fits");
        let part = WalSnapshotPart {
            index: whole.index,
            term: whole.term,
            voters: whole.voters.clone(),
            offset: 0,
            total: bytes as u64,
            data: whole.data.clone(),
        };
        let records = physical_records(&out);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].0, Record::SnapshotPart { shard: 1, part });
    }
}

#[test]
fn a_snapshot_over_snapshot_bytes_max_is_a_typed_error_and_nothing_is_written() {
    // calloc'd zeros: refused before a byte of it is read.
    let huge = WalSnapshot {
        data: vec![0; SNAPSHOT_BYTES_MAX as usize + 1],
        ..snapshot(0)
    };
    let batch = [
        Record::Entries {
            shard: 2,
            entries: vec![entry(1, 10)],
        },
        Record::Snapshot {
            shard: 2,
            snapshot: huge,
        },
    ];
    let mut out = vec![7; 3];
    let refused = encode_batch(&batch, SALT, 32, &mut out);
    assert_eq!(
        refused,
        Err(EncodeError::SnapshotTooLarge {
            shard: 2,
            bytes: SNAPSHOT_BYTES_MAX + 1,
            max: SNAPSHOT_BYTES_MAX
        })
    );
    assert_eq!(out, [7, 7, 7]);
}

#[test]
fn an_image_of_a_split_snapshot_recovers_it_whole() {
    let whole = snapshot(5_000);
    let header = FileHeader::new(1, SALT);
    let mut image = header.to_bytes().to_vec();
    let batch = [
        Record::Snapshot {
            shard: 0,
            snapshot: whole.clone(),
        },
        Record::Entries {
            shard: 0,
            entries: vec![entry(41, 10)],
        },
    ];
    encode_batch_limited(&batch, SALT, image.len() as u64, 600, &mut image).expect("fits");
    let recovery = recover(&image).expect("a clean image");
    assert_eq!(recovery.torn, None);
    assert_eq!(recovery.shards[&0].snapshot, Some(whole));
    assert_eq!(recovery.shards[&0].entries.len(), 1);
    assert_eq!(
        recovery.records, 11,
        "ten parts of 512 bytes and the entries"
    );
}

proptest! {
    #[test]
    fn the_archived_part_size_bound_holds(
        voters in proptest::collection::vec(any::<u64>(), 0..10),
        bytes in 0usize..3000,
    ) {
        let part = WalSnapshotPart {
            index: 1,
            term: 1,
            offset: 0,
            total: bytes as u64,
            data: vec![5; bytes],
            voters,
        };
        let archived = rkyv::to_bytes::<rancor::Error>(&part).expect("archive");
        let bound = part_overhead_bytes_max(part.voters.len()) + bytes as u64;
        prop_assert!(archived.len() as u64 <= bound);
    }
}

#[test]
fn a_snapshot_whose_voters_fill_half_a_part_is_a_typed_error() {
    let crowded = Record::Snapshot {
        shard: 2,
        snapshot: WalSnapshot {
            voters: (1..=25).collect(),
            ..snapshot(1000)
        },
    };
    let mut out = Vec::new();
    let refused = encode_batch_limited(std::slice::from_ref(&crowded), SALT, 32, 512, &mut out);
    assert!(
        matches!(
            refused,
            Err(EncodeError::PayloadTooLarge {
                shard: 2,
                kind: "snapshot voters",
                bytes: 264,
                max: 256
            })
        ),
        "{refused:?}"
    );
    assert!(out.is_empty());
}
