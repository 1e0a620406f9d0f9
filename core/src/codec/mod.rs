//! Godot's binary Variant serialization (`var_to_bytes` / `bytes_to_var`, and Godot 3's
//! `var2bytes` / `bytes2var`), for both type tables.
//!
//! Layout (all little-endian): a `u32` header whose low byte is the Variant type id and whose
//! bits 16.. carry flags (bit 16: 64-bit int/float), then the payload. Strings are a `u32`
//! byte length, UTF-8, zero padding to 4 bytes. Packed string arrays store each string with a
//! NUL terminator included in the length. Arrays and Dictionaries are a `u32` count (bit 31 is
//! a legacy "shared" flag, ignored) followed by the elements.
//!
//! Known to match: Godot 3 byte for byte against the real engine (Debian's godot3-server
//! 3.2.3, `tests/godot3_codec.rs`); Godot 4 against the engine's own source (`Variant::Type`
//! as of 4.3, `core/io/marshalls.cpp`, vectors from `tests/core/io/test_marshalls.h`).
//!
//! # Invariants
//! - Decoding never panics and never allocates more than the input can justify: every count
//!   is checked against the bytes that remain before anything is reserved.
//! - `decode(encode(v)) == v` for every value the version can represent, and
//!   `encode(decode(b)) == b` for every canonical encoding `b`.

mod decode;
mod encode;
mod types;

pub use decode::{decode, decode_prefix, DecodeError};
pub use encode::{encode, encode_into, encoded_len_v4, EncodeError};
pub use types::GodotVersion;
pub(crate) use types::Kind;

/// Deepest Array/Dictionary nesting the decoder accepts (Godot's own limit is 512; we keep
/// the stack small because decoding happens on executor threads).
pub const DECODE_DEPTH_MAX: usize = 64;

#[cfg(test)]
mod tests;
