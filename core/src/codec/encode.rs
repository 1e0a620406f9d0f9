//! Value → Godot bytes.

use thiserror::Error;

use super::types::{GodotVersion, Kind};
use crate::value::Value;

/// Header flag: the int or float payload is 64 bits wide.
pub(crate) const FLAG_64: u32 = 1 << 16;

/// Why a value could not be encoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    #[error("{type_name} does not exist in {version:?}; it cannot be sent to this peer")]
    NotInVersion {
        type_name: &'static str,
        version: GodotVersion,
    },
    #[error("{what} of {len} is too long for Godot's 31-bit length fields")]
    TooLong { what: &'static str, len: usize },
}

/// Encodes one value as Godot's `var_to_bytes` (V4) or `var2bytes` (V3) would.
pub fn encode(value: &Value, version: GodotVersion) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(16);
    encode_into(value, version, &mut out)?;
    Ok(out)
}

/// Appends the encoding of `value` to `out`; on error `out` is left as it was.
pub fn encode_into(
    value: &Value,
    version: GodotVersion,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let start = out.len();
    let result = write_value(value, version, out);
    if result.is_err() {
        out.truncate(start);
    }
    debug_assert!(
        result.is_err() || (out.len() - start).is_multiple_of(4),
        "encodings are 4-aligned"
    );
    result
}

/// The length of the Godot 4 encoding, computed without allocating.
pub fn encoded_len_v4(value: &Value) -> usize {
    let mut counter = Counter(0);
    write_value(value, GodotVersion::V4, &mut counter)
        .expect("every Value type exists in Godot 4 and lengths were checked at the edge");
    counter.0
}

/// Where encoded bytes go: a buffer, or a counter that measures.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

struct Counter(usize);

impl Sink for Counter {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

fn put_u32(out: &mut impl Sink, v: u32) {
    out.put(&v.to_le_bytes());
}

fn put_len(out: &mut impl Sink, what: &'static str, len: usize) -> Result<(), EncodeError> {
    match u32::try_from(len) {
        Ok(n) if n <= i32::MAX as u32 => {
            put_u32(out, n);
            Ok(())
        }
        _ => Err(EncodeError::TooLong { what, len }),
    }
}

fn put_pad(out: &mut impl Sink, len: usize) {
    let pad = (4 - len % 4) % 4;
    out.put(&[0u8; 3][..pad]);
}

fn put_str(out: &mut impl Sink, s: &str) -> Result<(), EncodeError> {
    put_len(out, "string", s.len())?;
    out.put(s.as_bytes());
    put_pad(out, s.len());
    Ok(())
}

fn put_f32s(out: &mut impl Sink, values: &[f32]) {
    values.iter().for_each(|v| out.put(&v.to_le_bytes()));
}

fn put_i32s(out: &mut impl Sink, values: &[i32]) {
    values.iter().for_each(|v| out.put(&v.to_le_bytes()));
}

fn header_flags(value: &Value) -> u32 {
    match value {
        Value::Int(i) if i32::try_from(*i).is_err() => FLAG_64,
        // Godot: `float f = d; if (double(f) != d) flags |= 64`, so NaN is always 64-bit.
        Value::Float(d) if f64::from(*d as f32) != *d => FLAG_64,
        _ => 0,
    }
}

fn write_value(
    value: &Value,
    version: GodotVersion,
    out: &mut impl Sink,
) -> Result<(), EncodeError> {
    let kind = Kind::of(value);
    let type_name = value.type_name();
    let id = version
        .type_id(kind)
        .ok_or(EncodeError::NotInVersion { type_name, version })?;
    let flags = header_flags(value);
    put_u32(out, id | flags);
    match value {
        Value::Nil => {}
        Value::Bool(b) => put_u32(out, u32::from(*b)),
        Value::Int(i) if flags == FLAG_64 => out.put(&i.to_le_bytes()),
        Value::Int(i) => out.put(&(*i as i32).to_le_bytes()),
        Value::Float(d) if flags == FLAG_64 => out.put(&d.to_le_bytes()),
        Value::Float(d) => out.put(&(*d as f32).to_le_bytes()),
        Value::String(s) | Value::StringName(s) => put_str(out, s)?,
        Value::NodePath(text) => write_node_path(text, out)?,
        Value::Vector2(v) => put_f32s(out, v),
        Value::Vector2i(v) => put_i32s(out, v),
        Value::Vector3(v) => put_f32s(out, v),
        Value::Vector3i(v) => put_i32s(out, v),
        Value::Rect2i(v) | Value::Vector4i(v) => put_i32s(out, v),
        Value::Rect2(v)
        | Value::Vector4(v)
        | Value::Plane(v)
        | Value::Quaternion(v)
        | Value::Color(v) => put_f32s(out, v),
        Value::Transform2D(v) | Value::Aabb(v) => put_f32s(out, v),
        Value::Basis(v) => put_f32s(out, v),
        Value::Transform3D(v) => put_f32s(out, v),
        Value::Projection(v) => put_f32s(out, v),
        Value::Dictionary(pairs) => {
            put_len(out, "Dictionary", pairs.len())?;
            for (k, v) in pairs {
                write_value(k, version, out)?;
                write_value(v, version, out)?;
            }
        }
        Value::Array(items) => {
            put_len(out, "Array", items.len())?;
            items
                .iter()
                .try_for_each(|v| write_value(v, version, out))?;
        }
        _ => write_packed(value, out)?,
    }
    Ok(())
}

fn write_packed(value: &Value, out: &mut impl Sink) -> Result<(), EncodeError> {
    let what = value.type_name();
    match value {
        Value::PackedByteArray(v) => {
            put_len(out, what, v.len())?;
            out.put(v);
            put_pad(out, v.len());
        }
        Value::PackedInt32Array(v) => {
            put_len(out, what, v.len())?;
            put_i32s(out, v);
        }
        Value::PackedInt64Array(v) => {
            put_len(out, what, v.len())?;
            v.iter().for_each(|x| out.put(&x.to_le_bytes()));
        }
        Value::PackedFloat32Array(v) => {
            put_len(out, what, v.len())?;
            put_f32s(out, v);
        }
        Value::PackedFloat64Array(v) => {
            put_len(out, what, v.len())?;
            v.iter().for_each(|x| out.put(&x.to_le_bytes()));
        }
        Value::PackedStringArray(v) => {
            put_len(out, what, v.len())?;
            for s in v {
                // Godot writes each string with its NUL terminator counted in the length.
                put_len(out, "string", s.len() + 1)?;
                out.put(s.as_bytes());
                out.put(&[0]);
                put_pad(out, s.len() + 1);
            }
        }
        Value::PackedVector2Array(v) => {
            put_len(out, what, v.len())?;
            v.iter().for_each(|x| put_f32s(out, x));
        }
        Value::PackedVector3Array(v) => {
            put_len(out, what, v.len())?;
            v.iter().for_each(|x| put_f32s(out, x));
        }
        Value::PackedColorArray(v) | Value::PackedVector4Array(v) => {
            put_len(out, what, v.len())?;
            v.iter().for_each(|x| put_f32s(out, x));
        }
        other => unreachable!("write_value handles {} itself", other.type_name()),
    }
    Ok(())
}

/// Splits Godot NodePath text into (absolute, names, subnames) the way `NodePath(String)`
/// does: names before the first `:` separated by `/`, subnames after it separated by `:`.
pub(crate) fn node_path_parts(text: &str) -> (bool, Vec<&str>, Vec<&str>) {
    let absolute = text.starts_with('/');
    let (path, subpath) = match text.find(':') {
        Some(cut) => (&text[..cut], Some(&text[cut + 1..])),
        None => (text, None),
    };
    let names = path.split('/').filter(|s| !s.is_empty()).collect();
    let subnames = subpath
        .map(|s| s.split(':').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    (absolute, names, subnames)
}

fn write_node_path(text: &str, out: &mut impl Sink) -> Result<(), EncodeError> {
    let (absolute, names, subnames) = node_path_parts(text);
    // Bit 31 marks the "new" NodePath format, which every Godot since 2.1 writes.
    let name_count = u32::try_from(names.len())
        .ok()
        .filter(|n| *n <= i32::MAX as u32)
        .ok_or(EncodeError::TooLong {
            what: "NodePath",
            len: names.len(),
        })?;
    put_u32(out, name_count | 0x8000_0000);
    put_len(out, "NodePath", subnames.len())?;
    put_u32(out, u32::from(absolute));
    names
        .iter()
        .chain(subnames.iter())
        .try_for_each(|s| put_str(out, s))
}
