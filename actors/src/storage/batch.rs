//! Encoding one `Wal::append` batch: logical records in, the bytes of physical records out.
//!
//! An entries record too large for one physical record (`PAYLOAD_BYTES_MAX`) is split into
//! several, each holding whole entries and continuing the one before, so recovery of any
//! prefix of them is a prefix of the log. A snapshot is written as one or more
//! `SnapshotPart` records in a row, each holding the next bytes of its data; recovery takes
//! the snapshot only once every part is read. Pure, so the simulator builds disk images
//! with it.
//!
//! # Invariants
//! - Every record of a batch carries the batch's start offset (`batch_start`), the offset of
//!   its first byte in the file; recovery's torn-tail rule depends on it (see `recovery`).
//! - On `Err` nothing is appended: a batch is encoded whole or not at all.
//! - `entries_bytes_max` and `part_overhead_bytes_max` (plus the data) are upper bounds of
//!   a payload's archived size, so every piece they admit fits one record (tested against
//!   rkyv in `batch_test`).
//! - A snapshot's parts follow each other with nothing between them, at data offsets
//!   `0, c, 2c, …` up to its length (`c`, `chunk_bytes`, is at least half the split size),
//!   one part for an empty snapshot.
//!   One over `SNAPSHOT_BYTES_MAX` is refused before anything of it is written.

use std::borrow::Cow;

use super::format::{
    encode, EncodeError, Record, WalEntry, WalSnapshot, WalSnapshotPart, HEADER_BYTES,
    PAYLOAD_BYTES_MAX, RECORD_ALIGN_BYTES, SNAPSHOT_BYTES_MAX,
};
use super::header::{FileHeader, FILE_HEADER_BYTES};

/// Archived bytes of one entry beyond its data and context: rkyv lays out index, term, type
/// and two relative vectors in 40 bytes; the rest is margin.
const ENTRY_OVERHEAD_BYTES_MAX: u64 = 48;
/// Archived bytes of an entries payload beyond its entries: the root vector and alignment.
const ENTRIES_OVERHEAD_BYTES_MAX: u64 = 64;
/// Archived bytes of a snapshot part beyond its data and voters: rkyv lays out index, term,
/// offset, total and two relative vectors in 48 bytes; the rest is alignment and margin.
const PART_OVERHEAD_BYTES_MAX: u64 = 64;
/// Archived bytes of one voter id.
const VOTER_BYTES: u64 = 8;

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
    let before = out.len();
    let result = records.iter().try_for_each(|record| {
        let mut pieces = pieces(record, split_bytes)?;
        // A snapshot's bytes in one allocation: growing by doubling past 1 GiB would copy
        // it and hold twice its size.
        out.reserve(pieces.encoded_bytes_max());
        pieces.try_for_each(|piece| encode(&piece, salt, start, out))
    });
    if result.is_err() {
        out.truncate(before);
    }
    result
}

/// The physical records `record` is written as, in order, each under `split_bytes` unless a
/// single entry is larger (then `encode` refuses it, if over the real limit). Lazy, so a
/// writer can write each piece out before the next is made (`Wal::create`). A snapshot
/// over `SNAPSHOT_BYTES_MAX` (or with absurdly many voters) is refused here, before any.
pub(crate) fn pieces(record: &Record, split_bytes: u64) -> Result<Pieces<'_>, EncodeError> {
    assert!(
        split_bytes <= u64::from(PAYLOAD_BYTES_MAX),
        "records are split below the payload limit"
    );
    let pieces = match record {
        Record::Entries { shard, entries }
            if !entries.is_empty() && entries_bytes_max(entries) > split_bytes =>
        {
            Pieces::Entries {
                shard: *shard,
                entries,
                split_bytes,
            }
        }
        Record::Snapshot { shard, snapshot } => {
            let bytes = snapshot.data.len() as u64;
            if bytes > SNAPSHOT_BYTES_MAX {
                return Err(EncodeError::SnapshotTooLarge {
                    shard: *shard,
                    bytes,
                    max: SNAPSHOT_BYTES_MAX,
                });
            }
            // Voters repeat in every part: refused if they leave under half a record for
            // data, so a snapshot takes at most about twice as many parts as it needs.
            let overhead = part_overhead_bytes_max(snapshot.voters.len());
            if overhead > split_bytes / 2 {
                return Err(EncodeError::PayloadTooLarge {
                    shard: *shard,
                    kind: "snapshot voters",
                    bytes: overhead,
                    max: u32::try_from(split_bytes / 2).expect("below the payload limit"),
                });
            }
            Pieces::Snapshot {
                shard: *shard,
                snapshot,
                offset: 0,
                chunk_bytes: usize::try_from(split_bytes - overhead)
                    .expect("a chunk is below the payload limit"),
                done: false,
            }
        }
        other => Pieces::Whole(Some(other)),
    };
    Ok(pieces)
}

/// What `pieces` yields: see there.
pub(crate) enum Pieces<'a> {
    Whole(Option<&'a Record>),
    /// The entries not yet yielded.
    Entries {
        shard: u64,
        entries: &'a [WalEntry],
        split_bytes: u64,
    },
    /// Parts of `chunk_bytes` from data offset `offset` on.
    Snapshot {
        shard: u64,
        snapshot: &'a WalSnapshot,
        offset: usize,
        chunk_bytes: usize,
        done: bool,
    },
}

impl Pieces<'_> {
    /// An upper bound of the bytes a snapshot's records take (0 for other records, which
    /// the output grows for as they come).
    fn encoded_bytes_max(&self) -> usize {
        let Pieces::Snapshot {
            snapshot,
            chunk_bytes,
            ..
        } = self
        else {
            return 0;
        };
        let parts = snapshot.data.len().div_ceil(*chunk_bytes).max(1);
        let overhead = part_overhead_bytes_max(snapshot.voters.len()) as usize;
        let part_bytes = overhead + HEADER_BYTES + RECORD_ALIGN_BYTES;
        snapshot.data.len() + parts * part_bytes
    }
}

impl<'a> Iterator for Pieces<'a> {
    type Item = Cow<'a, Record>;

    fn next(&mut self) -> Option<Cow<'a, Record>> {
        match self {
            Pieces::Whole(record) => record.take().map(Cow::Borrowed),
            Pieces::Entries {
                shard,
                entries,
                split_bytes,
            } => {
                if entries.is_empty() {
                    return None;
                }
                let (chunk, rest) = entries.split_at(whole_entries_within(entries, *split_bytes));
                *entries = rest;
                // Copying the chunk costs one pass over batches this large; they are rare.
                Some(Cow::Owned(Record::Entries {
                    shard: *shard,
                    entries: chunk.to_vec(),
                }))
            }
            Pieces::Snapshot {
                shard,
                snapshot,
                offset,
                chunk_bytes,
                done,
            } => {
                if *done {
                    return None;
                }
                let data = &snapshot.data;
                let end = data.len().min(*offset + *chunk_bytes);
                let part = WalSnapshotPart {
                    index: snapshot.index,
                    term: snapshot.term,
                    voters: snapshot.voters.clone(),
                    offset: *offset as u64,
                    total: data.len() as u64,
                    data: data[*offset..end].to_vec(),
                };
                assert!(end > *offset || data.is_empty(), "every part moves forward");
                *offset = end;
                *done = end == data.len();
                Some(Cow::Owned(Record::SnapshotPart {
                    shard: *shard,
                    part,
                }))
            }
        }
    }
}

/// How many entries from the first make a record under `split_bytes` (at least one).
fn whole_entries_within(entries: &[WalEntry], split_bytes: u64) -> usize {
    let mut bytes = ENTRIES_OVERHEAD_BYTES_MAX + entry_bytes_max(&entries[0]);
    let mut to = 1;
    while to < entries.len() && bytes + entry_bytes_max(&entries[to]) <= split_bytes {
        bytes += entry_bytes_max(&entries[to]);
        to += 1;
    }
    to
}

/// An upper bound of the archived size of a part with `voters` voters, beyond its data.
fn part_overhead_bytes_max(voters: usize) -> u64 {
    PART_OVERHEAD_BYTES_MAX + VOTER_BYTES * voters as u64
}

fn entry_bytes_max(entry: &WalEntry) -> u64 {
    ENTRY_OVERHEAD_BYTES_MAX + entry.data.len() as u64 + entry.context.len() as u64
}

/// An upper bound of the archived size of `entries`.
fn entries_bytes_max(entries: &[WalEntry]) -> u64 {
    ENTRIES_OVERHEAD_BYTES_MAX + entries.iter().map(entry_bytes_max).sum::<u64>()
}

#[cfg(test)]
mod batch_test;
