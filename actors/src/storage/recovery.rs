//! Rebuilding every shard's log and hard state from a WAL image at startup.
//!
//! Records are replayed in order; the first record that is truncated or fails its checksum
//! ends the valid log (a torn tail from a crash mid-write): recovery reports where, and the
//! caller truncates the file there before appending. Nothing after a bad record is applied,
//! even if later bytes happen to look valid.
//!
//! # Invariants
//! - Each shard's recovered entries are contiguous; an entries record starting at index i
//!   replaces the entries at and after i (Raft's log overwrite).
//! - Only records wholly before `valid_len` were applied.

use std::collections::BTreeMap;

use super::format::{decode_at, Record, RecordError, WalEntry, WalHardState, WalSnapshot};

/// One shard's recovered durable state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardLog {
    /// The last snapshot received; `entries` continue after its index.
    pub snapshot: Option<WalSnapshot>,
    pub entries: Vec<WalEntry>,
    pub hard_state: Option<WalHardState>,
}

/// Where the valid log ends and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub offset: usize,
    pub reason: RecordError,
}

/// The result of replaying a WAL image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    pub shards: BTreeMap<u64, ShardLog>,
    /// Bytes of valid records; the file is truncated to this length.
    pub valid_len: usize,
    pub records: usize,
    pub torn: Option<TornTail>,
}

/// Replays `bytes` (a whole WAL file).
pub fn recover(bytes: &[u8]) -> Recovery {
    let mut recovery = Recovery::default();
    let mut offset = 0;
    while offset < bytes.len() {
        // Preallocated space reads as zeros: a clean end of the log, not a torn record.
        if bytes[offset..].iter().all(|b| *b == 0) {
            break;
        }
        match decode_at(&bytes[offset..]) {
            Ok((record, len)) => {
                if let Err(reason) = apply(&mut recovery.shards, record) {
                    recovery.torn = Some(TornTail { offset, reason });
                    break;
                }
                offset += len;
                recovery.records += 1;
            }
            Err(reason) => {
                recovery.torn = Some(TornTail { offset, reason });
                break;
            }
        }
    }
    recovery.valid_len = offset;
    recovery
}

/// Applies one record; a checksummed record that would leave a gap in a shard's log is
/// treated like corruption (the writer never produces one).
fn apply(shards: &mut BTreeMap<u64, ShardLog>, record: Record) -> Result<(), RecordError> {
    match record {
        Record::Entries { shard, entries } => {
            let log = shards.entry(shard).or_default();
            let first = entries[0].index;
            let base = log.snapshot.as_ref().map_or(1, |s| s.index + 1);
            let keep = match log.entries.first() {
                Some(head) if first > head.index => (first - head.index) as usize,
                _ => 0,
            };
            let continues = match keep {
                0 => first == base,
                k => log
                    .entries
                    .get(k - 1)
                    .is_some_and(|last| last.index + 1 == first),
            };
            if !continues {
                let message = format!(
                    "shard {shard}: entries from {first} do not continue the log (base {base})"
                );
                return Err(RecordError::Payload(message));
            }
            log.entries.truncate(keep);
            log.entries.extend(entries);
        }
        Record::HardState { shard, state } => {
            shards.entry(shard).or_default().hard_state = Some(state)
        }
        Record::Snapshot { shard, snapshot } => {
            let log = shards.entry(shard).or_default();
            log.entries.clear();
            log.snapshot = Some(snapshot);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::format::{encode, Record, WalEntry, WalHardState};
    use super::*;

    fn entry(index: u64, term: u64) -> WalEntry {
        WalEntry {
            index,
            term,
            entry_type: 0,
            data: vec![1, 2, 3],
            context: vec![],
        }
    }

    fn image(records: &[Record]) -> (Vec<u8>, Vec<usize>) {
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for r in records {
            encode(r, &mut bytes);
            ends.push(bytes.len());
        }
        (bytes, ends)
    }

    fn sample() -> Vec<Record> {
        vec![
            Record::Entries {
                shard: 1,
                entries: vec![entry(1, 1), entry(2, 1), entry(3, 1)],
            },
            Record::HardState {
                shard: 1,
                state: WalHardState {
                    term: 1,
                    vote: 1,
                    commit: 2,
                },
            },
            Record::Entries {
                shard: 2,
                entries: vec![entry(1, 1)],
            },
            // A new leader overwrote index 3 onwards on shard 1.
            Record::Entries {
                shard: 1,
                entries: vec![entry(3, 2), entry(4, 2)],
            },
            Record::HardState {
                shard: 1,
                state: WalHardState {
                    term: 2,
                    vote: 3,
                    commit: 4,
                },
            },
        ]
    }

    #[test]
    fn zeros_after_the_log_are_a_clean_end() {
        let (mut bytes, ends) = image(&sample());
        bytes.extend(std::iter::repeat_n(0u8, 4096));
        let recovery = recover(&bytes);
        assert_eq!(recovery.torn, None);
        assert_eq!(recovery.valid_len, ends[ends.len() - 1]);
        bytes.push(1);
        assert!(
            recover(&bytes).torn.is_some(),
            "a non-zero byte after the zeros is garbage"
        );
    }

    #[test]
    fn a_snapshot_replaces_the_log_and_entries_continue_after_it() {
        use super::super::format::WalSnapshot;
        let snapshot = WalSnapshot {
            index: 10,
            term: 3,
            voters: vec![1, 2, 3],
            data: vec![9; 40],
        };
        let records = vec![
            Record::Entries {
                shard: 1,
                entries: vec![entry(1, 1), entry(2, 1)],
            },
            Record::Snapshot {
                shard: 1,
                snapshot: snapshot.clone(),
            },
            Record::Entries {
                shard: 1,
                entries: vec![entry(11, 3), entry(12, 3)],
            },
        ];
        let recovery = recover(&image(&records).0);
        assert_eq!(recovery.torn, None);
        let log = &recovery.shards[&1];
        assert_eq!(log.snapshot.as_ref(), Some(&snapshot));
        assert_eq!(
            log.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
            [11, 12]
        );
        let gap = vec![
            records[1].clone(),
            Record::Entries {
                shard: 1,
                entries: vec![entry(13, 3)],
            },
        ];
        assert!(
            recover(&image(&gap).0).torn.is_some(),
            "entries must continue right after the snapshot"
        );
    }

    #[test]
    fn a_gap_is_treated_as_corruption() {
        let records = vec![
            Record::Entries {
                shard: 1,
                entries: vec![entry(1, 1)],
            },
            Record::Entries {
                shard: 1,
                entries: vec![entry(5, 1)],
            },
        ];
        let (bytes, ends) = image(&records);
        let recovery = recover(&bytes);
        assert_eq!(recovery.records, 1);
        assert_eq!(recovery.valid_len, ends[0]);
        assert!(matches!(
            recovery.torn,
            Some(TornTail {
                reason: RecordError::Payload(_),
                ..
            })
        ));
    }

    #[test]
    fn replays_overwrites_and_hard_states() {
        let (bytes, _) = image(&sample());
        let recovery = recover(&bytes);
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
    fn a_crash_at_any_byte_recovers_exactly_the_whole_records_before_it() {
        let records = sample();
        let (bytes, ends) = image(&records);
        for cut in 0..=bytes.len() {
            let recovery = recover(&bytes[..cut]);
            let whole = ends.iter().filter(|end| **end <= cut).count();
            assert_eq!(recovery.records, whole, "cut at {cut}");
            assert_eq!(
                recovery.valid_len,
                if whole == 0 { 0 } else { ends[whole - 1] }
            );
            assert_eq!(
                recovery.torn.is_some(),
                cut != recovery.valid_len,
                "cut at {cut}"
            );
            assert_eq!(
                recovery,
                recover(&image(&records[..whole]).0[..]).with_torn(recovery.torn.clone())
            );
        }
    }

    impl Recovery {
        fn with_torn(mut self, torn: Option<TornTail>) -> Recovery {
            self.torn = torn;
            self
        }
    }

    proptest! {
        /// Garbage after (or instead of) valid records: recovery never panics and applies
        /// nothing past the first bad byte.
        #[test]
        fn garbage_tails_are_cut_off(garbage in proptest::collection::vec(any::<u8>(), 0..300), keep in 0usize..6) {
            let records = sample();
            let (valid, ends) = image(&records[..keep.min(records.len())]);
            let mut bytes = valid.clone();
            bytes.extend(&garbage);
            let recovery = recover(&bytes);
            prop_assert!(recovery.valid_len >= valid.len());
            prop_assert!(recovery.records >= ends.len());
            if !garbage.is_empty() && recovery.valid_len == valid.len() {
                prop_assert!(recovery.torn.is_some());
            }
        }
    }
}
