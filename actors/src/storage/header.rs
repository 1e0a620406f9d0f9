//! The WAL file header: what format the file is in, which cluster it belongs to, and the salt
//! every record checksum of this file is seeded with.
//!
//! ```text
//! | magic "TSWL" | crc32c u32 | version u16 | flags u16 | reserved u32 |
//! | cluster_id u64 | salt u64 |
//! ```
//! The CRC-32C covers everything after the `crc32c` field. Records follow at
//! [`FILE_HEADER_BYTES`].
//!
//! # Invariants
//! - A file is created with its header durable before it gets its final name (`Wal::create`
//!   writes `<path>.next`, syncs it and renames it), so a WAL under its real name without a
//!   valid header is damaged, never "still being created".
//! - `decode_header` checks, in order: length, magic, version, checksum. A WAL written before
//!   the header existed (format 1) starts with a record's magic and is named as such.
//! - The salt is random per file, so a record is valid only in the file it was written to:
//!   bytes inside a payload (client data) can never pass for a record of this file when
//!   recovery scans past a damaged record.

use bytemuck::{Pod, Zeroable};
use thiserror::Error;
use treesync_core::wire::crc32c;

use super::format::RECORD_MAGIC;

pub const FILE_MAGIC: [u8; 4] = *b"TSWL";
/// Format 1 had no file header; format 2 added it and each record's `batch_start`; format 3
/// writes a snapshot as parts (record kind 4), where format 2 had it whole in one record
/// (kind 3), refused above 64 MiB. A format 3 file is not one a format 2 build can read,
/// and this build refuses format 2 files (`HeaderError::Version`) as format 2 refused 1.
/// Format 4 stores a transaction's client session (`Txn::session`) in each entry and the
/// shard's session table in each snapshot (`replica::sessions`); format 3 entries and
/// snapshots do not decode as format 4 ones, so format 3 files are refused.
/// Format 5 adds each shard's transaction tables (intents, records) to its snapshots and
/// parallel-commit steps (frame kind `Step`) beside transactions in entries, and places
/// nodes by the spine (`shard::SPINE`): a format 4 file's data lives on other shards.
/// Format 6 adds the closed timestamp to each entry's context and to each snapshot
/// (`replica::closed`); format 5 snapshots do not decode as format 6 ones.
/// Format 7 adds the lease to each entry's context and to each snapshot (`replica::side`);
/// format 6 snapshots do not decode as format 7 ones.
pub const FILE_VERSION: u16 = 7;
pub const FILE_HEADER_BYTES: usize = std::mem::size_of::<FileHeader>();

const _: () = assert!(
    FILE_HEADER_BYTES == 32,
    "the header layout is part of the disk format"
);
const _: () = assert!(
    FILE_HEADER_BYTES.is_multiple_of(8),
    "records after it stay 8-aligned"
);

/// The header as it lies on disk (little-endian, like every integer in the WAL).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct FileHeader {
    pub magic: [u8; 4],
    pub crc: u32,
    pub version: u16,
    pub flags: u16,
    pub reserved: u32,
    pub cluster_id: u64,
    pub salt: u64,
}

/// Why the first bytes of a file are not a WAL header this build accepts.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    #[error("{len} bytes, shorter than the {FILE_HEADER_BYTES}-byte file header")]
    TooShort { len: usize },
    #[error("a format 1 WAL (no file header): this build reads format {FILE_VERSION} only")]
    Unversioned,
    #[error("bad magic {found:02x?}, not a treesync WAL")]
    BadMagic { found: [u8; 4] },
    #[error("unsupported format version {found} (this build reads {FILE_VERSION})")]
    Version { found: u16 },
    #[error("header checksum mismatch")]
    Checksum,
}

impl FileHeader {
    /// The header of a new file of `cluster_id`; `salt` should be random (see the invariants).
    pub fn new(cluster_id: u64, salt: u64) -> FileHeader {
        let mut header = FileHeader {
            magic: FILE_MAGIC,
            crc: 0,
            version: FILE_VERSION,
            flags: 0,
            reserved: 0,
            cluster_id,
            salt,
        };
        header.crc = header.checksum();
        header
    }

    /// The bytes that start the file.
    pub fn to_bytes(&self) -> [u8; FILE_HEADER_BYTES] {
        bytemuck::cast(*self)
    }

    fn checksum(&self) -> u32 {
        crc32c(&bytemuck::bytes_of(self)[8..])
    }
}

/// Reads and checks the header at the start of `bytes` (a whole WAL image or its prefix).
pub fn decode_header(bytes: &[u8]) -> Result<FileHeader, HeaderError> {
    if bytes.len() < FILE_HEADER_BYTES {
        return Err(HeaderError::TooShort { len: bytes.len() });
    }
    let header: FileHeader = bytemuck::pod_read_unaligned(&bytes[..FILE_HEADER_BYTES]);
    if header.magic == RECORD_MAGIC.to_le_bytes() {
        return Err(HeaderError::Unversioned);
    }
    if header.magic != FILE_MAGIC {
        return Err(HeaderError::BadMagic {
            found: header.magic,
        });
    }
    if header.version != FILE_VERSION {
        return Err(HeaderError::Version {
            found: header.version,
        });
    }
    if header.checksum() != header.crc {
        return Err(HeaderError::Checksum);
    }
    Ok(header)
}

/// A salt for a new file. Not secret: it only has to differ from what client data can guess,
/// and std's per-process random hash keys are enough for that.
pub fn random_salt() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_round_trips() {
        let header = FileHeader::new(42, 7);
        assert_eq!(decode_header(&header.to_bytes()), Ok(header));
    }

    #[test]
    fn every_flipped_header_bit_is_refused() {
        let bytes = FileHeader::new(42, 7).to_bytes();
        for at in 0..FILE_HEADER_BYTES {
            for bit in 0..8 {
                let mut damaged = bytes;
                damaged[at] ^= 1 << bit;
                assert!(
                    decode_header(&damaged).is_err(),
                    "flip at byte {at} bit {bit} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn an_unknown_format_version_is_refused_before_its_checksum_is_trusted() {
        let mut header = FileHeader::new(1, 2);
        header.version = FILE_VERSION + 1;
        header.crc = header.checksum();
        assert_eq!(
            decode_header(&header.to_bytes()),
            Err(HeaderError::Version {
                found: FILE_VERSION + 1
            })
        );
    }

    #[test]
    fn older_format_wals_are_refused_by_their_version() {
        for old in [2, 3] {
            let mut header = FileHeader::new(1, 2);
            header.version = old;
            header.crc = header.checksum();
            assert_eq!(
                decode_header(&header.to_bytes()),
                Err(HeaderError::Version { found: old })
            );
        }
    }

    #[test]
    fn a_headerless_format_1_wal_is_named_as_such() {
        let mut bytes = vec![0u8; 64];
        bytes[..4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
        assert_eq!(decode_header(&bytes), Err(HeaderError::Unversioned));
        assert_eq!(
            decode_header(&[0u8; 8]),
            Err(HeaderError::TooShort { len: 8 })
        );
    }
}
