//! Framing of rkyv-archived values: versioned, length-checked and checksummed, so that bytes
//! from the network or the disk are validated before anyone reads them zero-copy.
//!
//! Frame layout (16 bytes of header, so the payload of a 16-aligned frame stays 16-aligned):
//! `magic "TSYN" | version u16 | kind u16 | payload_len u32 | crc32c(payload) u32 | payload`.
//!
//! # Invariants
//! - `access_*` returns an archived value only if magic, version, kind, length and checksum
//!   match and rkyv's validation (bytecheck) accepts the payload.
//! - Frames are read where they lie: a frame whose payload is not aligned for the archived
//!   type is rejected (`Invalid`), never copied silently. Keep frames in `AlignedVec`s.

use rkyv::rancor;
use rkyv::util::AlignedVec;
use thiserror::Error;

use crate::op::{ArchivedTxn, Txn};
use crate::tree::{ArchivedTreeSnapshot, TreeSnapshot};
use crate::txn::step::{ArchivedStep, Step};

pub const MAGIC: [u8; 4] = *b"TSYN";
pub const VERSION: u16 = 1;
pub const HEADER_BYTES: usize = 16;

/// What a frame holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum FrameKind {
    Txn = 1,
    TreeSnapshot = 2,
    /// A parallel-commit step (`txn::step::Step`) in a Raft entry.
    Step = 3,
}

/// Why a frame was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    #[error("frame of {len} bytes is shorter than its {HEADER_BYTES}-byte header")]
    TooShort { len: usize },
    #[error("bad magic {found:02x?}")]
    BadMagic { found: [u8; 4] },
    #[error("unsupported frame version {found} (this build reads {VERSION})")]
    UnsupportedVersion { found: u16 },
    #[error("expected a {expected:?} frame, found kind {found}")]
    WrongKind { expected: FrameKind, found: u16 },
    #[error("header declares {declared} payload bytes, frame has {actual}")]
    LengthMismatch { declared: u32, actual: usize },
    #[error("checksum mismatch: header {declared:#010x}, payload {actual:#010x}")]
    ChecksumMismatch { declared: u32, actual: u32 },
    #[error("payload failed validation: {reason}")]
    Invalid { reason: String },
}

/// Archives a transaction into a frame.
pub fn encode_txn(txn: &Txn) -> AlignedVec {
    let payload = rkyv::to_bytes::<rancor::Error>(txn).expect("archiving to memory cannot fail");
    frame(FrameKind::Txn, &payload)
}

/// Validates a transaction frame and returns the archived transaction, zero-copy.
pub fn access_txn(bytes: &[u8]) -> Result<&ArchivedTxn, WireError> {
    let payload = payload(bytes, FrameKind::Txn)?;
    rkyv::access::<ArchivedTxn, rancor::Error>(payload).map_err(invalid)
}

/// Copies bytes of unknown alignment (a Raft entry, a socket read) into a buffer aligned
/// for validated rkyv access.
pub fn aligned(bytes: &[u8]) -> AlignedVec {
    let mut frame = AlignedVec::with_capacity(bytes.len());
    frame.extend_from_slice(bytes);
    frame
}

/// `decode_txn` for bytes of unknown alignment (one copy).
pub fn decode_txn_unaligned(bytes: &[u8]) -> Result<Txn, WireError> {
    decode_txn(&aligned(bytes))
}

/// Validates and deserializes a transaction frame.
pub fn decode_txn(bytes: &[u8]) -> Result<Txn, WireError> {
    rkyv::deserialize::<Txn, rancor::Error>(access_txn(bytes)?).map_err(invalid)
}

/// Archives a parallel-commit step into a frame (a Raft entry beside transactions).
pub fn encode_step(step: &Step) -> AlignedVec {
    let payload = rkyv::to_bytes::<rancor::Error>(step).expect("archiving to memory cannot fail");
    frame(FrameKind::Step, &payload)
}

/// What a Raft entry holds.
#[derive(Clone, Debug, PartialEq)]
pub enum LogEntry {
    Txn(Txn),
    Step(Step),
}

/// Validates and deserializes a Raft entry's frame (a transaction or a step), from bytes of
/// unknown alignment.
pub fn decode_entry_unaligned(bytes: &[u8]) -> Result<LogEntry, WireError> {
    let frame = aligned(bytes);
    let kind = frame.get(6..8).map(|k| u16::from_le_bytes([k[0], k[1]]));
    if kind == Some(FrameKind::Step as u16) {
        let payload = payload(&frame, FrameKind::Step)?;
        let archived = rkyv::access::<ArchivedStep, rancor::Error>(payload).map_err(invalid)?;
        let step = rkyv::deserialize::<Step, rancor::Error>(archived).map_err(invalid)?;
        return Ok(LogEntry::Step(step));
    }
    decode_txn(&frame).map(LogEntry::Txn)
}

/// Archives a tree snapshot into a frame.
pub fn encode_snapshot(snapshot: &TreeSnapshot) -> AlignedVec {
    let payload =
        rkyv::to_bytes::<rancor::Error>(snapshot).expect("archiving to memory cannot fail");
    frame(FrameKind::TreeSnapshot, &payload)
}

/// Validates a snapshot frame and returns the archived snapshot, zero-copy.
pub fn access_snapshot(bytes: &[u8]) -> Result<&ArchivedTreeSnapshot, WireError> {
    let payload = payload(bytes, FrameKind::TreeSnapshot)?;
    rkyv::access::<ArchivedTreeSnapshot, rancor::Error>(payload).map_err(invalid)
}

/// Validates and deserializes a snapshot frame.
pub fn decode_snapshot(bytes: &[u8]) -> Result<TreeSnapshot, WireError> {
    rkyv::deserialize::<TreeSnapshot, rancor::Error>(access_snapshot(bytes)?).map_err(invalid)
}

fn invalid(error: rancor::Error) -> WireError {
    WireError::Invalid {
        reason: error.to_string(),
    }
}

fn frame(kind: FrameKind, payload: &[u8]) -> AlignedVec {
    let len = u32::try_from(payload.len()).expect("archived values are below 4 GiB");
    let mut out = AlignedVec::with_capacity(HEADER_BYTES + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(kind as u16).to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn payload(bytes: &[u8], expected: FrameKind) -> Result<&[u8], WireError> {
    if bytes.len() < HEADER_BYTES {
        return Err(WireError::TooShort { len: bytes.len() });
    }
    let field = |at: usize, n: usize| &bytes[at..at + n];
    let magic: [u8; 4] = field(0, 4).try_into().expect("4 bytes");
    if magic != MAGIC {
        return Err(WireError::BadMagic { found: magic });
    }
    let u16_at = |at| u16::from_le_bytes(field(at, 2).try_into().expect("2 bytes"));
    let u32_at = |at| u32::from_le_bytes(field(at, 4).try_into().expect("4 bytes"));
    if u16_at(4) != VERSION {
        return Err(WireError::UnsupportedVersion { found: u16_at(4) });
    }
    if u16_at(6) != expected as u16 {
        return Err(WireError::WrongKind {
            expected,
            found: u16_at(6),
        });
    }
    let payload = &bytes[HEADER_BYTES..];
    let declared = u32_at(8);
    if declared as usize != payload.len() {
        return Err(WireError::LengthMismatch {
            declared,
            actual: payload.len(),
        });
    }
    let (declared, actual) = (u32_at(12), crc32c(payload));
    if declared != actual {
        return Err(WireError::ChecksumMismatch { declared, actual });
    }
    Ok(payload)
}

const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// CRC-32C (Castagnoli), the checksum of iSCSI, ext4 and most log formats.
pub fn crc32c(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |crc, b| {
        CRC32C_TABLE[((crc ^ u32::from(*b)) & 0xFF) as usize] ^ (crc >> 8)
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::op::{Op, Prop};
    use crate::value::Value;

    fn sample_txn() -> Txn {
        Txn::single(Op::Set {
            path: "/root/World/Player1".into(),
            props: vec![Prop::new("position", Value::Vector2([1.0, 2.0]))],
        })
    }

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn frames_round_trip_and_read_zero_copy() {
        let txn = sample_txn();
        let bytes = encode_txn(&txn);
        let archived = access_txn(&bytes).expect("valid frame");
        match &archived.ops[0] {
            crate::op::ArchivedOp::Set { path, props } => {
                assert_eq!(path.as_str(), "/root/World/Player1");
                assert_eq!(props[0].name.as_str(), "position");
            }
            _ => panic!("the archived op is not a Set"),
        }
        assert_eq!(decode_txn(&bytes), Ok(txn));
    }

    #[test]
    fn damaged_frames_are_refused() {
        let bytes = encode_txn(&sample_txn()).to_vec();
        let aligned = |mutate: &dyn Fn(&mut Vec<u8>)| {
            let mut b = bytes.clone();
            mutate(&mut b);
            let mut v = AlignedVec::<16>::new();
            v.extend_from_slice(&b);
            decode_txn(&v)
        };
        assert!(matches!(
            aligned(&|b| b.truncate(3)),
            Err(WireError::TooShort { len: 3 })
        ));
        assert!(matches!(
            aligned(&|b| b[0] = b'X'),
            Err(WireError::BadMagic { .. })
        ));
        assert!(matches!(
            aligned(&|b| b[4] = 9),
            Err(WireError::UnsupportedVersion { found: 9 })
        ));
        assert!(matches!(
            aligned(&|b| b[6] = 2),
            Err(WireError::WrongKind { found: 2, .. })
        ));
        assert!(matches!(
            aligned(&|b| {
                b.pop();
            }),
            Err(WireError::LengthMismatch { .. })
        ));
        assert!(matches!(
            aligned(&|b| {
                let n = b.len() - 1;
                b[n] ^= 1;
            }),
            Err(WireError::ChecksumMismatch { .. })
        ));
    }

    proptest! {
        /// Random payloads with a correct header and checksum: rkyv's validation must catch
        /// whatever is not a valid archive, without panicking.
        #[test]
        fn random_payloads_with_valid_checksums_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..200)) {
            let framed = frame(FrameKind::Txn, &payload);
            let _ = decode_txn(&framed);
            let snap = frame(FrameKind::TreeSnapshot, &payload);
            let _ = decode_snapshot(&snap);
        }

        #[test]
        fn any_txn_round_trips(values in proptest::collection::vec(crate::testing::value(crate::codec::GodotVersion::V4, false), 0..4)) {
            let txn = Txn::single(Op::Emit { path: "/root".into(), signal: "hit".into(), args: values });
            prop_assert_eq!(decode_txn(&encode_txn(&txn)), Ok(txn));
        }
    }
}
