//! WAL record format: a fixed `bytemuck` header, then an rkyv payload, padded to 8 bytes.
//!
//! ```text
//! | magic u32 | crc32c u32 | payload_len u32 | kind u16 | version u16 | shard u64
//! | batch_start u64 | payload | pad |
//! ```
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
//!   payload over `PAYLOAD_BYTES_MAX`, an empty or non-contiguous entries record. Splitting
//!   large batches into records that fit is `batch::encode_batch`'s job.
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
/// Version 2 added `batch_start` to the header.
pub const RECORD_VERSION: u16 = 2;
pub const HEADER_BYTES: usize = std::mem::size_of::<RecordHeader>();
/// Largest payload a record may hold; a larger declared length is corruption.
pub const PAYLOAD_BYTES_MAX: u32 = 64 * 1024 * 1024;
/// Records start at multiples of this.
pub const RECORD_ALIGN_BYTES: usize = 8;

const _: () = assert!(
    HEADER_BYTES == 32,
    "the header layout is part of the disk format"
);
const _: () = assert!(
    HEADER_BYTES % RECORD_ALIGN_BYTES == 0,
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

/// A tree snapshot a leader sent: it replaces the shard's log up to `index`.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct WalSnapshot {
    pub index: u64,
    pub term: u64,
    pub voters: Vec<u64>,
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
    Snapshot {
        shard: u64,
        snapshot: WalSnapshot,
    },
}

impl Record {
    /// The shard the record belongs to.
    pub fn shard(&self) -> u64 {
        match self {
            Record::Entries { shard, .. }
            | Record::HardState { shard, .. }
            | Record::Snapshot { shard, .. } => *shard,
        }
    }
}

const KIND_ENTRIES: u16 = 1;
const KIND_HARD_STATE: u16 = 2;
const KIND_SNAPSHOT: u16 = 3;

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
            let payload = rkyv::to_bytes::<rancor::Error>(snapshot);
            (KIND_SNAPSHOT, "snapshot", payload)
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
        KIND_SNAPSHOT => {
            let snapshot =
                rkyv::from_bytes::<WalSnapshot, rancor::Error>(&aligned).map_err(invalid)?;
            Record::Snapshot { shard, snapshot }
        }
        other => return Err(RecordError::Kind(other)),
    };
    Ok(record)
}

/// Decodes the record at the start of `bytes`; returns it and its length with padding.
pub fn decode_at(bytes: &[u8], salt: u64) -> Result<(Record, usize), RecordError> {
    let frame = check_at(bytes, salt)?;
    Ok((decode_frame(&frame)?, frame.len))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALT: u64 = 0x5EED;

    pub(crate) fn entry(index: u64, term: u64) -> WalEntry {
        WalEntry {
            index,
            term,
            entry_type: 0,
            data: vec![index as u8; (index % 13) as usize],
            context: vec![],
        }
    }

    #[test]
    fn records_round_trip_and_stay_aligned() {
        let records = [
            Record::Entries {
                shard: 7,
                entries: vec![entry(1, 1), entry(2, 1)],
            },
            Record::HardState {
                shard: 7,
                state: WalHardState {
                    term: 1,
                    vote: 2,
                    commit: 2,
                },
            },
        ];
        let mut bytes = Vec::new();
        for r in &records {
            encode(r, SALT, 0, &mut bytes).expect("fits");
            assert_eq!(bytes.len() % RECORD_ALIGN_BYTES, 0);
        }
        let (first, len) = decode_at(&bytes, SALT).expect("valid");
        assert_eq!(first, records[0]);
        let (second, len2) = decode_at(&bytes[len..], SALT).expect("valid");
        assert_eq!(second, records[1]);
        assert_eq!(len + len2, bytes.len());
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let mut bytes = Vec::new();
        let record = Record::Entries {
            shard: 1,
            entries: vec![entry(5, 2)],
        };
        encode(&record, SALT, 64, &mut bytes).expect("fits");
        // Every byte of the record, padding included (rkyv archives of these types are
        // 8-aligned, so today there is none; the check keeps it so if that changes).
        for at in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[at] ^= 1 << bit;
                assert!(
                    decode_at(&damaged, SALT).is_err(),
                    "flip at byte {at} bit {bit} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn nonzero_padding_is_refused() {
        let mut header = RecordHeader {
            magic: RECORD_MAGIC,
            crc: 0,
            payload_len: 4,
            kind: KIND_HARD_STATE,
            version: RECORD_VERSION,
            shard: 1,
            batch_start: 0,
        };
        header.crc = checksum(SALT, &header, &[1, 2, 3, 4]);
        let mut bytes = bytemuck::bytes_of(&header).to_vec();
        bytes.extend_from_slice(&[1, 2, 3, 4, 0, 0, 0, 0]);
        assert_eq!(check_at(&bytes, SALT).map(|f| f.len), Ok(HEADER_BYTES + 8));
        bytes[HEADER_BYTES + 6] = 1;
        assert_eq!(
            check_at(&bytes, SALT).map(|f| f.len),
            Err(RecordError::Padding)
        );
    }

    #[test]
    fn a_record_of_another_file_fails_its_checksum() {
        let mut bytes = Vec::new();
        let record = Record::Entries {
            shard: 1,
            entries: vec![entry(5, 2)],
        };
        encode(&record, SALT, 64, &mut bytes).expect("fits");
        assert_eq!(
            check_at(&bytes, SALT + 1).map(|f| f.len),
            Err(RecordError::Checksum)
        );
    }

    #[test]
    fn records_that_cannot_be_written_whole_are_typed_errors_not_panics() {
        // calloc'd zeros: the 64 MiB is not touched until the archive copies it.
        let snapshot = WalSnapshot {
            index: 1,
            term: 1,
            voters: vec![1],
            data: vec![0; PAYLOAD_BYTES_MAX as usize],
        };
        let mut out = vec![1, 2, 3];
        let too_large = encode(&Record::Snapshot { shard: 4, snapshot }, SALT, 0, &mut out);
        assert!(matches!(
            too_large,
            Err(EncodeError::PayloadTooLarge {
                shard: 4,
                kind: "snapshot",
                ..
            })
        ));
        let empty = Record::Entries {
            shard: 4,
            entries: vec![],
        };
        assert_eq!(
            encode(&empty, SALT, 0, &mut out),
            Err(EncodeError::NoEntries { shard: 4 })
        );
        let gap = Record::Entries {
            shard: 4,
            entries: vec![entry(1, 1), entry(3, 1)],
        };
        assert_eq!(
            encode(&gap, SALT, 0, &mut out),
            Err(EncodeError::NotContiguous {
                shard: 4,
                previous: 1,
                index: 3
            })
        );
        assert_eq!(
            out,
            [1, 2, 3],
            "a refused record leaves the output unchanged"
        );
    }
}
