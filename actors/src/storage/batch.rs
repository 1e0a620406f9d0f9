//! Encoding one `Wal::append` batch: logical records in, the bytes of physical records out.
//!
//! An entries record too large for one physical record (`PAYLOAD_BYTES_MAX`) is split into
//! several, each holding whole entries and continuing the one before, so recovery of any
//! prefix of them is a prefix of the log. Pure, so the simulator builds disk images with it.
//!
//! # Invariants
//! - Every record of a batch carries the batch's start offset (`batch_start`), the offset of
//!   its first byte in the file; recovery's torn-tail rule depends on it (see `recovery`).
//! - On `Err` nothing is appended: a batch is encoded whole or not at all.
//! - `entries_bytes_max` is an upper bound of an entries payload's archived size, so every
//!   chunk it admits fits one record (tested against rkyv below).

use super::format::{encode, EncodeError, Record, WalEntry, PAYLOAD_BYTES_MAX};
use super::header::{FileHeader, FILE_HEADER_BYTES};

/// Archived bytes of one entry beyond its data and context: rkyv lays out index, term, type
/// and two relative vectors in 40 bytes; the rest is margin.
const ENTRY_OVERHEAD_BYTES_MAX: u64 = 48;
/// Archived bytes of an entries payload beyond its entries: the root vector and alignment.
const ENTRIES_OVERHEAD_BYTES_MAX: u64 = 64;

/// Appends `records` to `out` as one batch whose first byte lands at file offset `start`,
/// checksummed with the file's `salt`.
pub fn encode_batch(
    records: &[Record],
    salt: u64,
    start: u64,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    encode_batch_limited(records, salt, start, u64::from(PAYLOAD_BYTES_MAX), out)
}

/// A whole WAL image: the header, then each batch as `Wal::append` writes it (without the
/// zero padding to whole blocks, which recovery reads as the end of the log).
pub fn encode_image(header: &FileHeader, batches: &[&[Record]]) -> Result<Vec<u8>, EncodeError> {
    let mut image = header.to_bytes().to_vec();
    debug_assert_eq!(image.len(), FILE_HEADER_BYTES);
    for batch in batches {
        let start = image.len() as u64;
        encode_batch(batch, header.salt, start, &mut image)?;
    }
    Ok(image)
}

/// `encode_batch` with a smaller split size, so tests can split without 64 MiB of data.
pub(crate) fn encode_batch_limited(
    records: &[Record],
    salt: u64,
    start: u64,
    split_bytes: u64,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    assert!(
        split_bytes <= u64::from(PAYLOAD_BYTES_MAX),
        "records are split below the payload limit"
    );
    let before = out.len();
    let result = records.iter().try_for_each(|record| match record {
        Record::Entries { shard, entries } if entries_bytes_max(entries) > split_bytes => {
            encode_split(*shard, entries, salt, start, split_bytes, out)
        }
        other => encode(other, salt, start, out),
    });
    if result.is_err() {
        out.truncate(before);
    }
    result
}

/// Encodes `entries` as several records of whole entries, each under `split_bytes` unless a
/// single entry is larger (then `encode` refuses it, if over the real limit).
fn encode_split(
    shard: u64,
    entries: &[WalEntry],
    salt: u64,
    start: u64,
    split_bytes: u64,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let mut from = 0;
    while from < entries.len() {
        let mut bytes = ENTRIES_OVERHEAD_BYTES_MAX + entry_bytes_max(&entries[from]);
        let mut to = from + 1;
        while to < entries.len() && bytes + entry_bytes_max(&entries[to]) <= split_bytes {
            bytes += entry_bytes_max(&entries[to]);
            to += 1;
        }
        // Copying the chunk costs one pass over batches this large; they are rare.
        let chunk = Record::Entries {
            shard,
            entries: entries[from..to].to_vec(),
        };
        encode(&chunk, salt, start, out)?;
        from = to;
    }
    Ok(())
}

fn entry_bytes_max(entry: &WalEntry) -> u64 {
    ENTRY_OVERHEAD_BYTES_MAX + entry.data.len() as u64 + entry.context.len() as u64
}

/// An upper bound of the archived size of `entries`.
fn entries_bytes_max(entries: &[WalEntry]) -> u64 {
    ENTRIES_OVERHEAD_BYTES_MAX + entries.iter().map(entry_bytes_max).sum::<u64>()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rkyv::rancor;

    use super::super::format::{decode_at, WalHardState, HEADER_BYTES};
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
}
