//! WAL record format: a fixed `bytemuck` header, then an rkyv payload, padded to 8 bytes.
//!
//! ```text
//! | magic u32 | crc32c u32 | payload_len u32 | kind u16 | version u16 | shard u64 | payload | pad |
//! ```
//! The CRC-32C covers everything after the `crc32c` field (the rest of the header and the
//! payload), so a torn write, a stale sector or a flipped bit anywhere in a record is caught.
//!
//! # Invariants
//! - Records start 8-aligned; `encoded_len` is a multiple of 8.
//! - `decode_at` never panics and never trusts a length before checking it against the
//!   bytes that remain.

use bytemuck::{Pod, Zeroable};
use rkyv::rancor;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};
use thiserror::Error;
use treesync_core::wire::crc32c;

pub const RECORD_MAGIC: u32 = 0x5457_414C; // "TWAL"
pub const RECORD_VERSION: u16 = 1;
pub const HEADER_BYTES: usize = std::mem::size_of::<RecordHeader>();
/// Largest payload a record may declare; a larger length is corruption.
pub const PAYLOAD_BYTES_MAX: u32 = 64 * 1024 * 1024;

const _: () = assert!(
    HEADER_BYTES == 24,
    "the header layout is part of the disk format"
);
const _: () = assert!(HEADER_BYTES % 8 == 0, "records stay 8-aligned");

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct RecordHeader {
    pub magic: u32,
    pub crc: u32,
    pub payload_len: u32,
    pub kind: u16,
    pub version: u16,
    pub shard: u64,
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
    #[error("unsupported record version {0}")]
    Version(u16),
    #[error("unknown record kind {0}")]
    Kind(u16),
    #[error("payload failed validation: {0}")]
    Payload(String),
}

fn padded(len: usize) -> usize {
    len.div_ceil(8) * 8
}

/// Appends one record to `out`.
pub fn encode(record: &Record, out: &mut Vec<u8>) {
    let (kind, shard, payload) = match record {
        Record::Entries { shard, entries } => {
            assert!(
                !entries.is_empty(),
                "an entries record holds at least one entry"
            );
            (
                KIND_ENTRIES,
                *shard,
                rkyv::to_bytes::<rancor::Error>(entries).expect("in-memory archive"),
            )
        }
        Record::HardState { shard, state } => (
            KIND_HARD_STATE,
            *shard,
            rkyv::to_bytes::<rancor::Error>(state).expect("in-memory archive"),
        ),
        Record::Snapshot { shard, snapshot } => (
            KIND_SNAPSHOT,
            *shard,
            rkyv::to_bytes::<rancor::Error>(snapshot).expect("in-memory archive"),
        ),
    };
    let payload_len = u32::try_from(payload.len()).expect("payload under 4 GiB");
    assert!(
        payload_len <= PAYLOAD_BYTES_MAX,
        "record payload too large: split the batch"
    );
    let mut header = RecordHeader {
        magic: RECORD_MAGIC,
        crc: 0,
        payload_len,
        kind,
        version: RECORD_VERSION,
        shard,
    };
    header.crc = checksum(&header, &payload);
    let start = out.len();
    out.extend_from_slice(bytemuck::bytes_of(&header));
    out.extend_from_slice(&payload);
    out.resize(start + padded(HEADER_BYTES + payload.len()), 0);
}

fn checksum(header: &RecordHeader, payload: &[u8]) -> u32 {
    let mut covered = Vec::with_capacity(HEADER_BYTES - 8 + payload.len());
    covered.extend_from_slice(&bytemuck::bytes_of(header)[8..]);
    covered.extend_from_slice(payload);
    crc32c(&covered)
}

/// Decodes the record at the start of `bytes`; returns it and its length with padding.
pub fn decode_at(bytes: &[u8]) -> Result<(Record, usize), RecordError> {
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
    if checksum(&header, payload) != header.crc {
        return Err(RecordError::Checksum);
    }
    if header.version != RECORD_VERSION {
        return Err(RecordError::Version(header.version));
    }
    let mut aligned = AlignedVec::<16>::with_capacity(payload.len());
    aligned.extend_from_slice(payload);
    let invalid = |e: rancor::Error| RecordError::Payload(e.to_string());
    let record = match header.kind {
        KIND_ENTRIES => {
            let entries =
                rkyv::from_bytes::<Vec<WalEntry>, rancor::Error>(&aligned).map_err(invalid)?;
            if entries.is_empty() || entries.windows(2).any(|w| w[1].index != w[0].index + 1) {
                return Err(RecordError::Payload(
                    "entries are empty or not contiguous".into(),
                ));
            }
            Record::Entries {
                shard: header.shard,
                entries,
            }
        }
        KIND_HARD_STATE => {
            let state =
                rkyv::from_bytes::<WalHardState, rancor::Error>(&aligned).map_err(invalid)?;
            Record::HardState {
                shard: header.shard,
                state,
            }
        }
        KIND_SNAPSHOT => {
            let snapshot =
                rkyv::from_bytes::<WalSnapshot, rancor::Error>(&aligned).map_err(invalid)?;
            Record::Snapshot {
                shard: header.shard,
                snapshot,
            }
        }
        other => return Err(RecordError::Kind(other)),
    };
    let len = padded(HEADER_BYTES + header.payload_len as usize).min(bytes.len());
    Ok((record, len))
}

#[cfg(test)]
mod tests {
    use super::*;

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
            encode(r, &mut bytes);
            assert_eq!(bytes.len() % 8, 0);
        }
        let (first, len) = decode_at(&bytes).expect("valid");
        assert_eq!(first, records[0]);
        let (second, len2) = decode_at(&bytes[len..]).expect("valid");
        assert_eq!(second, records[1]);
        assert_eq!(len + len2, bytes.len());
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let mut bytes = Vec::new();
        encode(
            &Record::Entries {
                shard: 1,
                entries: vec![entry(5, 2)],
            },
            &mut bytes,
        );
        let payload_end = HEADER_BYTES
            + bytemuck::pod_read_unaligned::<RecordHeader>(&bytes[..HEADER_BYTES]).payload_len
                as usize;
        for at in 0..payload_end {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[at] ^= 1 << bit;
                assert!(
                    decode_at(&damaged).is_err(),
                    "flip at byte {at} bit {bit} went unnoticed"
                );
            }
        }
    }
}
