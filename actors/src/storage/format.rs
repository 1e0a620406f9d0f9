//! WAL record format: a fixed `bytemuck` header, then an rkyv payload, padded to 8 bytes.
//!
//! ```text
//! | magic u32 | crc32c u32 | payload_len u32 | kind u16 | version u16 | shard u64
//! | batch_start u64 | payload | pad |
//! ```
//! Kinds: 1 entries (`Vec<WalEntry>`), 2 hard state (`WalHardState`), 4 snapshot part
//! (`WalSnapshotPart`). Kind 3, a whole snapshot in one record, was format 2's
//! (`header::FILE_VERSION`): it could not hold a snapshot over `PAYLOAD_BYTES_MAX`, so a
//! snapshot is now always written as one or more parts, each holding the snapshot's index,
//! term, voters and total length and the bytes `offset..offset + data.len()` of its data
//! (`batch::encode_batch` splits; `recovery` reassembles).
//! The CRC-32C is seeded with the file's salt (`header::FileHeader::salt`) and covers
//! everything after the `crc32c` field (the rest of the header and the payload), and the
//! padding must be zeros, so a torn write, a stale sector, a flipped bit anywhere in a record
//! or a record-shaped run of client bytes is caught.
//! `batch_start` is the file offset of the first record of the `Wal::append` batch this
//! record belongs to; recovery uses it to tell a torn last write from damage before it.
//!
//! # Invariants
//! - Records start 8-aligned: every encoded record is padded to a multiple of 8 bytes.
//! - `decode_at` never panics and never trusts a length before checking it against the
//!   bytes that remain.
//! - `encode` refuses (with `EncodeError`, never a panic) what it could not write whole: a
//!   payload over `PAYLOAD_BYTES_MAX`, an empty or non-contiguous entries record, a snapshot
//!   over `SNAPSHOT_BYTES_MAX`, a part whose bytes lie outside its snapshot's. Splitting
//!   large batches into records that fit is `batch::encode_batch`'s job.
//! - A part's own shape is checked when it is written and when it is read (`check_part`):
//!   `total <= SNAPSHOT_BYTES_MAX`, `offset + data.len() <= total`, and `data` is empty only
//!   in the one part of an empty snapshot. Whether parts fit together is `recovery`'s rule.
//! - Checks happen in order: framing and checksum (`check_at`: a failure may be a torn
//!   write), then version, kind and payload (`decode_frame`: a failure of a checksummed
//!   record is never a torn write).

use bytemuck::{Pod, Zeroable};
use rkyv::rancor;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};
use thiserror::Error;
use treesync_core::wire::crc32c;

pub const RECORD_MAGIC: u32 = 0x5457_414C; // "TWAL"
/// Version 2 added `batch_start` to the header. The header is unchanged since; which kinds
/// exist is the file's format version (`header::FILE_VERSION`), checked before any record.
pub const RECORD_VERSION: u16 = 2;
pub const HEADER_BYTES: usize = std::mem::size_of::<RecordHeader>();
/// Largest payload a record may hold; a larger declared length is corruption.
pub const PAYLOAD_BYTES_MAX: u32 = 64 * 1024 * 1024;
/// Records start at multiples of this.
pub const RECORD_ALIGN_BYTES: usize = 8;
/// Largest snapshot data the WAL stores (as parts of at most `PAYLOAD_BYTES_MAX` each).
/// A follower is caught up with one peer message, so every snapshot a leader can send fits;
/// a larger one is refused with `EncodeError::SnapshotTooLarge`, and a larger declared total
/// is corruption.
pub const SNAPSHOT_BYTES_MAX: u64 = 1024 * 1024 * 1024;

const _: () = assert!(
    SNAPSHOT_BYTES_MAX >= treesync_net::peer::MESSAGE_BYTES_MAX as u64,
    "every snapshot a peer can send fits the WAL"
);
const _: () = assert!(
    SNAPSHOT_BYTES_MAX <= usize::MAX as u64,
    "a snapshot is reassembled in memory"
);

const _: () = assert!(
    HEADER_BYTES == 32,
    "the header layout is part of the disk format"
);
const _: () = assert!(
    HEADER_BYTES.is_multiple_of(RECORD_ALIGN_BYTES),
    "records stay 8-aligned"
);

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct RecordHeader {
    pub magic: u32,
    pub crc: u32,
    pub payload_len: u32,
    pub kind: u16,
    pub version: u16,
    pub shard: u64,
    pub batch_start: u64,
}

/// A Raft log entry as the WAL stores it.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct WalEntry {
    pub index: u64,
    pub term: u64,
    pub entry_type: u8,
    pub data: Vec<u8>,
    pub context: Vec<u8>,
}

/// Raft's hard state.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct WalHardState {
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
}

/// A tree snapshot a leader sent: it replaces the shard's log up to `index`. Not archived
/// itself: it is written as `WalSnapshotPart`s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalSnapshot {
    pub index: u64,
    pub term: u64,
    pub voters: Vec<u64>,
    pub data: Vec<u8>,
}

/// One record's piece of a snapshot: its metadata, repeated in every part so each can be
/// checked against the first, and the bytes `offset..offset + data.len()` of its data.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct WalSnapshotPart {
    pub index: u64,
    pub term: u64,
    pub voters: Vec<u64>,
    /// Where `data` starts in the snapshot's data.
    pub offset: u64,
    /// Bytes of the whole snapshot's data.
    pub total: u64,
    pub data: Vec<u8>,
}

/// What one record holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// Entries from `entries[0].index` on; they replace any entries at and after it.
    Entries {
        shard: u64,
        entries: Vec<WalEntry>,
    },
    HardState {
        shard: u64,
        state: WalHardState,
    },
    /// A whole snapshot, as writers hand it over. It is written as one or more
    /// `SnapshotPart` records of one batch and never read back as such: recovery
    /// reassembles the parts.
    Snapshot {
        shard: u64,
        snapshot: WalSnapshot,
    },
    /// One physical piece of a snapshot: what `decode_at` returns for a snapshot record.
    /// Written as given; writers should hand over `Snapshot` and let `batch::encode_batch`
    /// split it, since recovery refuses parts that do not fit together.
    SnapshotPart {
        shard: u64,
        part: WalSnapshotPart,
    },
}

impl Record {
    /// The shard the record belongs to.
    pub fn shard(&self) -> u64 {
        match self {
            Record::Entries { shard, .. }
            | Record::HardState { shard, .. }
            | Record::Snapshot { shard, .. }
            | Record::SnapshotPart { shard, .. } => *shard,
        }
    }
}

const KIND_ENTRIES: u16 = 1;
const KIND_HARD_STATE: u16 = 2;
// Kind 3 (a whole snapshot in one record) is format 2's; a checksummed one is corruption.
const KIND_SNAPSHOT_PART: u16 = 4;

/// Why bytes at an offset are not a valid record.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordError {
    #[error("{remaining} bytes left, less than a record header")]
    Truncated { remaining: usize },
    #[error("bad magic {found:#010x}")]
    BadMagic { found: u32 },
    #[error("payload of {declared} bytes does not fit the {remaining} bytes left")]
    PayloadTruncated { declared: u32, remaining: usize },
    #[error("checksum mismatch")]
    Checksum,
    #[error("non-zero padding after the payload")]
    Padding,
    #[error("unsupported record version {0}")]
    Version(u16),
    #[error("unknown record kind {0}")]
    Kind(u16),
    #[error("payload failed validation: {0}")]
    Payload(String),
    /// Recovery's reason for a torn tail that starts at a snapshot's first part: its batch
    /// ends before the part that would complete it.
    #[error(
        "the parts of shard {shard}'s snapshot at index {index} end after {received} of its \
         {total} bytes"
    )]
    SnapshotIncomplete {
        shard: u64,
        index: u64,
        received: u64,
        total: u64,
    },
}

/// Why a record cannot be written as given. Nothing is written when one is returned.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    #[error("shard {shard}: {kind} payload of {bytes} bytes exceeds the record limit of {max}")]
    PayloadTooLarge {
        shard: u64,
        kind: &'static str,
        bytes: u64,
        max: u32,
    },
    #[error("shard {shard}: an entries record holds no entry")]
    NoEntries { shard: u64 },
    #[error("shard {shard}: entry {index} does not follow entry {previous}")]
    NotContiguous {
        shard: u64,
        previous: u64,
        index: u64,
    },
    #[error("shard {shard}: snapshot of {bytes} bytes exceeds the WAL's limit of {max}")]
    SnapshotTooLarge { shard: u64, bytes: u64, max: u64 },
    #[error(
        "shard {shard}: snapshot part of {bytes} bytes at {offset} lies outside its {total} \
         bytes (or is empty)"
    )]
    SnapshotPartOutOfRange {
        shard: u64,
        offset: u64,
        bytes: u64,
        total: u64,
    },
}

pub(crate) fn padded(len: usize) -> usize {
    len.div_ceil(RECORD_ALIGN_BYTES) * RECORD_ALIGN_BYTES
}

/// Appends one record to `out`, checksummed with the file's `salt`, as part of the batch
/// whose first record is at file offset `batch_start`. On `Err`, `out` is unchanged.
pub fn encode(
    record: &Record,
    salt: u64,
    batch_start: u64,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let shard = record.shard();
    let (kind, name, payload) = match record {
        Record::Entries { entries, .. } => {
            check_entries(shard, entries)?;
            let payload = rkyv::to_bytes::<rancor::Error>(entries);
            (KIND_ENTRIES, "entries", payload)
        }
        Record::HardState { state, .. } => {
            let payload = rkyv::to_bytes::<rancor::Error>(state);
            (KIND_HARD_STATE, "hard state", payload)
        }
        Record::Snapshot { snapshot, .. } => {
            let part = whole_part(shard, snapshot)?;
            let payload = rkyv::to_bytes::<rancor::Error>(&part);
            (KIND_SNAPSHOT_PART, "snapshot", payload)
        }
        Record::SnapshotPart { part, .. } => {
            check_part(shard, part)?;
            let payload = rkyv::to_bytes::<rancor::Error>(part);
            (KIND_SNAPSHOT_PART, "snapshot part", payload)
        }
    };
    // Archiving plain integers and vectors into memory fails only on allocation failure.
    let payload = payload.expect("in-memory archive of plain data");
    let too_large = EncodeError::PayloadTooLarge {
        shard,
        kind: name,
        bytes: payload.len() as u64,
        max: PAYLOAD_BYTES_MAX,
    };
    let payload_len = u32::try_from(payload.len())
        .ok()
        .filter(|len| *len <= PAYLOAD_BYTES_MAX)
        .ok_or(too_large)?;
    let mut header = RecordHeader {
        magic: RECORD_MAGIC,
        crc: 0,
        payload_len,
        kind,
        version: RECORD_VERSION,
        shard,
        batch_start,
    };
    header.crc = checksum(salt, &header, &payload);
    let start = out.len();
    out.extend_from_slice(bytemuck::bytes_of(&header));
    out.extend_from_slice(&payload);
    out.resize(start + padded(HEADER_BYTES + payload.len()), 0);
    Ok(())
}

fn check_entries(shard: u64, entries: &[WalEntry]) -> Result<(), EncodeError> {
    if entries.is_empty() {
        return Err(EncodeError::NoEntries { shard });
    }
    match entries.windows(2).find(|w| w[1].index != w[0].index + 1) {
        Some(w) => Err(EncodeError::NotContiguous {
            shard,
            previous: w[0].index,
            index: w[1].index,
        }),
        None => Ok(()),
    }
}

/// The one part of a snapshot that fits a record whole (larger ones are refused here
/// without copying their data: `batch::encode_batch` splits them).
fn whole_part(shard: u64, snapshot: &WalSnapshot) -> Result<WalSnapshotPart, EncodeError> {
    let bytes = snapshot.data.len() as u64;
    if bytes > SNAPSHOT_BYTES_MAX {
        return Err(EncodeError::SnapshotTooLarge {
            shard,
            bytes,
            max: SNAPSHOT_BYTES_MAX,
        });
    }
    if bytes > u64::from(PAYLOAD_BYTES_MAX) {
        return Err(EncodeError::PayloadTooLarge {
            shard,
            kind: "snapshot",
            bytes,
            max: PAYLOAD_BYTES_MAX,
        });
    }
    Ok(WalSnapshotPart {
        index: snapshot.index,
        term: snapshot.term,
        voters: snapshot.voters.clone(),
        offset: 0,
        total: bytes,
        data: snapshot.data.clone(),
    })
}

/// A part's own shape (see the module's invariants); how parts fit together is recovery's.
pub(crate) fn check_part(shard: u64, part: &WalSnapshotPart) -> Result<(), EncodeError> {
    if part.total > SNAPSHOT_BYTES_MAX {
        return Err(EncodeError::SnapshotTooLarge {
            shard,
            bytes: part.total,
            max: SNAPSHOT_BYTES_MAX,
        });
    }
    let bytes = part.data.len() as u64;
    let inside = part
        .offset
        .checked_add(bytes)
        .is_some_and(|end| end <= part.total);
    // Only an empty snapshot has an empty part, so every part moves its snapshot forward.
    let moves = bytes > 0 || (part.total == 0 && part.offset == 0);
    if !inside || !moves {
        return Err(EncodeError::SnapshotPartOutOfRange {
            shard,
            offset: part.offset,
            bytes,
            total: part.total,
        });
    }
    Ok(())
}

fn checksum(salt: u64, header: &RecordHeader, payload: &[u8]) -> u32 {
    let mut covered = Vec::with_capacity(8 + HEADER_BYTES - 8 + payload.len());
    covered.extend_from_slice(&salt.to_le_bytes());
    covered.extend_from_slice(&bytemuck::bytes_of(header)[8..]);
    covered.extend_from_slice(payload);
    crc32c(&covered)
}

/// A record whose framing and checksum are valid; its payload is not decoded yet.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    pub header: RecordHeader,
    pub payload: &'a [u8],
    /// Bytes the record takes with its padding (less if the image ends inside the padding).
    pub len: usize,
}

/// Checks the framing and checksum of the record at the start of `bytes`. A failure here is
/// what a torn or lost write looks like.
pub fn check_at(bytes: &[u8], salt: u64) -> Result<Frame<'_>, RecordError> {
    if bytes.len() < HEADER_BYTES {
        return Err(RecordError::Truncated {
            remaining: bytes.len(),
        });
    }
    let header: RecordHeader = bytemuck::pod_read_unaligned(&bytes[..HEADER_BYTES]);
    if header.magic != RECORD_MAGIC {
        return Err(RecordError::BadMagic {
            found: header.magic,
        });
    }
    let remaining = bytes.len() - HEADER_BYTES;
    if header.payload_len > PAYLOAD_BYTES_MAX || header.payload_len as usize > remaining {
        return Err(RecordError::PayloadTruncated {
            declared: header.payload_len,
            remaining,
        });
    }
    let payload = &bytes[HEADER_BYTES..HEADER_BYTES + header.payload_len as usize];
    if checksum(salt, &header, payload) != header.crc {
        return Err(RecordError::Checksum);
    }
    let len = padded(HEADER_BYTES + payload.len()).min(bytes.len());
    // The writer pads with zeros; checking them too means no byte of a record can change
    // unnoticed.
    if bytes[HEADER_BYTES + payload.len()..len]
        .iter()
        .any(|b| *b != 0)
    {
        return Err(RecordError::Padding);
    }
    Ok(Frame {
        header,
        payload,
        len,
    })
}

/// Decodes a checksummed frame. A failure here is never a torn write: these are the bytes
/// that were written, so they come from another version or a writer bug.
pub fn decode_frame(frame: &Frame<'_>) -> Result<Record, RecordError> {
    let header = &frame.header;
    if header.version != RECORD_VERSION {
        return Err(RecordError::Version(header.version));
    }
    let mut aligned = AlignedVec::<16>::with_capacity(frame.payload.len());
    aligned.extend_from_slice(frame.payload);
    let invalid = |e: rancor::Error| RecordError::Payload(e.to_string());
    let shard = header.shard;
    let record = match header.kind {
        KIND_ENTRIES => {
            let entries =
                rkyv::from_bytes::<Vec<WalEntry>, rancor::Error>(&aligned).map_err(invalid)?;
            if let Err(e) = check_entries(shard, &entries) {
                return Err(RecordError::Payload(e.to_string()));
            }
            Record::Entries { shard, entries }
        }
        KIND_HARD_STATE => {
            let state =
                rkyv::from_bytes::<WalHardState, rancor::Error>(&aligned).map_err(invalid)?;
            Record::HardState { shard, state }
        }
        KIND_SNAPSHOT_PART => {
            let archived = rkyv::access::<ArchivedWalSnapshotPart, rancor::Error>(&aligned)
                .map_err(invalid)?;
            let part = part_from(archived);
            if let Err(e) = check_part(shard, &part) {
                return Err(RecordError::Payload(e.to_string()));
            }
            Record::SnapshotPart { shard, part }
        }
        other => return Err(RecordError::Kind(other)),
    };
    Ok(record)
}

/// `rkyv::deserialize` by hand, so the data (up to 64 MiB) is one copy rather than a loop
/// over its bytes (which a debug build runs byte by byte).
fn part_from(archived: &ArchivedWalSnapshotPart) -> WalSnapshotPart {
    WalSnapshotPart {
        index: archived.index.to_native(),
        term: archived.term.to_native(),
        voters: archived.voters.iter().map(|v| v.to_native()).collect(),
        offset: archived.offset.to_native(),
        total: archived.total.to_native(),
        data: archived.data.as_slice().to_vec(),
    }
}

/// Decodes the record at the start of `bytes`; returns it and its length with padding.
pub fn decode_at(bytes: &[u8], salt: u64) -> Result<(Record, usize), RecordError> {
    let frame = check_at(bytes, salt)?;
    Ok((decode_frame(&frame)?, frame.len))
}

#[cfg(test)]
mod format_test;
