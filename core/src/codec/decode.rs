//! Godot bytes → Value, for untrusted input.
//!
//! # Invariants
//! - Never panics, whatever the input.
//! - Never reserves memory for more elements than the remaining input could hold (each
//!   element's minimum encoded size times the count is checked first), so a 20-byte message
//!   claiming 2^31 elements is an error, not an allocation.
//! - Recursion is bounded by [`super::DECODE_DEPTH_MAX`].

use thiserror::Error;

use super::encode::FLAG_64;
use super::types::{GodotVersion, Kind};
use super::DECODE_DEPTH_MAX;
use crate::value::Value;

/// Why bytes could not be decoded as a Variant.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("input ends at byte {at}, {needed} more bytes were needed")]
    Truncated { at: usize, needed: usize },
    #[error("unknown Variant type id {type_id} for Godot {version:?}")]
    UnknownType { type_id: u32, version: GodotVersion },
    #[error("{type_name} values cannot be stored in treesync")]
    Unsupported { type_name: &'static str },
    #[error("unsupported header flags {flags:#x} on {type_name} (typed containers and double-precision builds are not supported)")]
    UnsupportedFlags { type_name: &'static str, flags: u32 },
    #[error("{what} at byte {at} declares {count} elements but only {remaining} bytes remain")]
    CountTooLarge {
        what: &'static str,
        at: usize,
        count: u64,
        remaining: usize,
    },
    #[error("string at byte {at} is not valid UTF-8")]
    InvalidUtf8 { at: usize },
    #[error("values nested deeper than {max} levels")]
    TooDeep { max: usize },
    #[error("{extra} unexpected bytes after the value")]
    TrailingBytes { extra: usize },
}

/// Decodes exactly one value that fills the whole buffer.
pub fn decode(bytes: &[u8], version: GodotVersion) -> Result<Value, DecodeError> {
    let (value, used) = decode_prefix(bytes, version)?;
    match bytes.len() - used {
        0 => Ok(value),
        extra => Err(DecodeError::TrailingBytes { extra }),
    }
}

/// Decodes one value from the start of `bytes`; returns it and the bytes it used.
pub fn decode_prefix(bytes: &[u8], version: GodotVersion) -> Result<(Value, usize), DecodeError> {
    let mut reader = Reader {
        bytes,
        at: 0,
        version,
    };
    let value = reader.value(0)?;
    debug_assert!(reader.at <= bytes.len());
    Ok((value, reader.at))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    version: GodotVersion,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated {
                at: self.at,
                needed: n - self.remaining(),
            });
        }
        let slice = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let slice = self.take(N)?;
        Ok(slice.try_into().expect("take returned N bytes"))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn f32(&mut self) -> Result<f32, DecodeError> {
        Ok(f32::from_le_bytes(self.array()?))
    }

    fn f64(&mut self) -> Result<f64, DecodeError> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    fn f32s<const N: usize>(&mut self) -> Result<[f32; N], DecodeError> {
        let mut out = [0.0f32; N];
        for slot in &mut out {
            *slot = self.f32()?;
        }
        Ok(out)
    }

    fn i32s<const N: usize>(&mut self) -> Result<[i32; N], DecodeError> {
        let mut out = [0i32; N];
        for slot in &mut out {
            *slot = self.i32()?;
        }
        Ok(out)
    }

    /// Reads an element count (bit 31, Godot's legacy "shared" flag, masked off when
    /// `masked`) and checks that `count * min_bytes` bytes remain before anything is reserved.
    fn count(
        &mut self,
        what: &'static str,
        min_bytes: usize,
        masked: bool,
    ) -> Result<usize, DecodeError> {
        let at = self.at;
        let raw = self.u32()?;
        let count = if masked { raw & 0x7FFF_FFFF } else { raw };
        let needed = u64::from(count) * min_bytes as u64;
        let remaining = self.remaining();
        if needed > remaining as u64 || (!masked && count > i32::MAX as u32) {
            return Err(DecodeError::CountTooLarge {
                what,
                at,
                count: u64::from(count),
                remaining,
            });
        }
        Ok(count as usize)
    }

    /// A length-prefixed, 4-padded UTF-8 string. `nul_terminated` strips the NUL that
    /// packed string arrays include in the length.
    fn string(&mut self, nul_terminated: bool) -> Result<String, DecodeError> {
        let len = self.count("string", 1, false)?;
        let pad = (4 - len % 4) % 4;
        let at = self.at;
        let raw = self.take(len)?;
        self.take(pad)?;
        let text = match (nul_terminated, raw.split_last()) {
            (true, Some((0, body))) => body,
            _ => raw,
        };
        let text = std::str::from_utf8(text).map_err(|_| DecodeError::InvalidUtf8 { at })?;
        Ok(text.to_owned())
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > DECODE_DEPTH_MAX {
            return Err(DecodeError::TooDeep {
                max: DECODE_DEPTH_MAX,
            });
        }
        let header = self.u32()?;
        let type_id = header & 0xFF;
        let flags = header & !0xFF;
        let version = self.version;
        let kind = version
            .kind_of(type_id)
            .ok_or(DecodeError::UnknownType { type_id, version })?;
        let allowed = if matches!(kind, Kind::Int | Kind::Float) {
            FLAG_64
        } else {
            0
        };
        if flags & !allowed != 0 {
            return Err(DecodeError::UnsupportedFlags {
                type_name: kind.name(),
                flags,
            });
        }
        let wide = flags & FLAG_64 != 0;
        Ok(match kind {
            Kind::Nil => Value::Nil,
            Kind::Bool => Value::Bool(self.u32()? != 0),
            Kind::Int if wide => Value::Int(self.i64()?),
            Kind::Int => Value::Int(i64::from(self.i32()?)),
            Kind::Float if wide => Value::Float(self.f64()?),
            Kind::Float => Value::Float(f64::from(self.f32()?)),
            Kind::String => Value::String(self.string(false)?),
            Kind::StringName => Value::StringName(self.string(false)?),
            Kind::NodePath => Value::NodePath(self.node_path()?),
            Kind::Vector2 => Value::Vector2(self.f32s()?),
            Kind::Vector2i => Value::Vector2i(self.i32s()?),
            Kind::Rect2 => Value::Rect2(self.f32s()?),
            Kind::Rect2i => Value::Rect2i(self.i32s()?),
            Kind::Vector3 => Value::Vector3(self.f32s()?),
            Kind::Vector3i => Value::Vector3i(self.i32s()?),
            Kind::Transform2D => Value::Transform2D(self.f32s()?),
            Kind::Vector4 => Value::Vector4(self.f32s()?),
            Kind::Vector4i => Value::Vector4i(self.i32s()?),
            Kind::Plane => Value::Plane(self.f32s()?),
            Kind::Quaternion => Value::Quaternion(self.f32s()?),
            Kind::Aabb => Value::Aabb(self.f32s()?),
            Kind::Basis => Value::Basis(self.f32s()?),
            Kind::Transform3D => Value::Transform3D(self.f32s()?),
            Kind::Projection => Value::Projection(self.f32s()?),
            Kind::Color => Value::Color(self.f32s()?),
            Kind::Dictionary => {
                let count = self.count("Dictionary", 8, true)?;
                let mut pairs = Vec::with_capacity(count);
                for _ in 0..count {
                    let key = self.value(depth + 1)?;
                    pairs.push((key, self.value(depth + 1)?));
                }
                Value::Dictionary(pairs)
            }
            Kind::Array => {
                let count = self.count("Array", 4, true)?;
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    items.push(self.value(depth + 1)?);
                }
                Value::Array(items)
            }
            Kind::Rid | Kind::Object | Kind::Callable | Kind::Signal => {
                return Err(DecodeError::Unsupported {
                    type_name: kind.name(),
                });
            }
            packed => self.packed(packed)?,
        })
    }

    fn packed(&mut self, kind: Kind) -> Result<Value, DecodeError> {
        let what = kind.name();
        Ok(match kind {
            Kind::PackedByteArray => {
                let count = self.count(what, 1, false)?;
                let bytes = self.take(count)?.to_vec();
                self.take((4 - count % 4) % 4)?;
                Value::PackedByteArray(bytes)
            }
            Kind::PackedInt32Array => Value::PackedInt32Array(self.elements(what, 4, Self::i32)?),
            Kind::PackedInt64Array => Value::PackedInt64Array(self.elements(what, 8, Self::i64)?),
            Kind::PackedFloat32Array => {
                Value::PackedFloat32Array(self.elements(what, 4, Self::f32)?)
            }
            Kind::PackedFloat64Array => {
                Value::PackedFloat64Array(self.elements(what, 8, Self::f64)?)
            }
            Kind::PackedStringArray => {
                Value::PackedStringArray(self.elements(what, 4, |r| r.string(true))?)
            }
            Kind::PackedVector2Array => {
                Value::PackedVector2Array(self.elements(what, 8, Self::f32s)?)
            }
            Kind::PackedVector3Array => {
                Value::PackedVector3Array(self.elements(what, 12, Self::f32s)?)
            }
            Kind::PackedColorArray => {
                Value::PackedColorArray(self.elements(what, 16, Self::f32s)?)
            }
            Kind::PackedVector4Array => {
                Value::PackedVector4Array(self.elements(what, 16, Self::f32s)?)
            }
            other => unreachable!("value() decodes {} itself", other.name()),
        })
    }

    fn elements<T>(
        &mut self,
        what: &'static str,
        min_bytes: usize,
        mut read: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let count = self.count(what, min_bytes, false)?;
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(read(self)?);
        }
        Ok(out)
    }

    fn node_path(&mut self) -> Result<String, DecodeError> {
        let at = self.at;
        let head = self.u32()?;
        if head & 0x8000_0000 == 0 {
            // Godot 2.0's format, a plain string; Godot 3 and 4 refuse it too.
            return Err(DecodeError::Unsupported {
                type_name: "old-format NodePath",
            });
        }
        let names = u64::from(head & 0x7FFF_FFFF);
        let mut subnames = u64::from(self.u32()?);
        let flags = self.u32()?;
        if flags & 2 != 0 {
            subnames += 1; // obsolete format: the property was stored separately
        }
        let total = names + subnames;
        if total * 4 > self.remaining() as u64 {
            let remaining = self.remaining();
            return Err(DecodeError::CountTooLarge {
                what: "NodePath",
                at,
                count: total,
                remaining,
            });
        }
        let mut text = String::new();
        if flags & 1 != 0 {
            text.push('/');
        }
        for index in 0..total {
            let part = self.string(false)?;
            let separator = match index {
                i if i >= names => ":",
                0 => "",
                _ => "/",
            };
            text.push_str(separator);
            text.push_str(&part);
        }
        Ok(text)
    }
}
