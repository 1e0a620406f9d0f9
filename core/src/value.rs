//! `Value`: the Godot Variant types a node property may hold.
//!
//! The value types are also the wire types: they derive rkyv so that an operation is encoded
//! once at the gateway and read zero-copy from channels, the log and the disk (DESIGN.md,
//! "Data model"). Math types are stored as fixed arrays of their components in exactly the
//! order Godot serializes them, which keeps the codec a table instead of forty cases.
//!
//! # Invariants
//! - Equality is bitwise for floats (`NaN == NaN`, `0.0 != -0.0`): replicas compare trees
//!   byte for byte, and a value must equal itself after any round trip.
//! - Objects, Callables, Signals and RIDs have no variant here: they are process-local handles
//!   in Godot and are rejected by the decoder with a typed error.

use rkyv::{Archive, Deserialize, Serialize};

/// One Godot Variant value. Component orders follow Godot's binary serialization.
#[derive(Archive, Serialize, Deserialize, Clone, Debug)]
#[rkyv(serialize_bounds(
    __S: rkyv::ser::Writer + rkyv::ser::Allocator,
    __S::Error: rkyv::rancor::Source,
))]
#[rkyv(deserialize_bounds(__D::Error: rkyv::rancor::Source))]
#[rkyv(bytecheck(bounds(
    __C: rkyv::validation::ArchiveContext,
    __C::Error: rkyv::rancor::Source,
)))]
pub enum Value {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    /// Godot 4 only; encoded as a plain String for Godot 3 peers is *not* done implicitly.
    StringName(String),
    /// Godot NodePath text (`/root/A/B:prop:sub`), any form Godot accepts, not only absolute.
    NodePath(String),
    /// x, y
    Vector2([f32; 2]),
    Vector2i([i32; 2]),
    /// position.x, position.y, size.x, size.y
    Rect2([f32; 4]),
    Rect2i([i32; 4]),
    Vector3([f32; 3]),
    Vector3i([i32; 3]),
    /// columns x, y, origin: x.x, x.y, y.x, y.y, origin.x, origin.y
    Transform2D([f32; 6]),
    Vector4([f32; 4]),
    Vector4i([i32; 4]),
    /// normal.x, normal.y, normal.z, d
    Plane([f32; 4]),
    /// x, y, z, w
    Quaternion([f32; 4]),
    /// position.xyz, size.xyz
    Aabb([f32; 6]),
    /// rows, row-major: rows[0].xyz, rows[1].xyz, rows[2].xyz
    Basis([f32; 9]),
    /// basis rows (9, row-major) then origin (3)
    Transform3D([f32; 12]),
    /// columns, column-major: 4 × 4
    Projection([f32; 16]),
    /// r, g, b, a
    Color([f32; 4]),
    /// Key/value pairs in insertion order, as Godot iterates them.
    Dictionary(#[rkyv(omit_bounds)] Vec<(Value, Value)>),
    Array(#[rkyv(omit_bounds)] Vec<Value>),
    PackedByteArray(Vec<u8>),
    PackedInt32Array(Vec<i32>),
    PackedInt64Array(Vec<i64>),
    PackedFloat32Array(Vec<f32>),
    PackedFloat64Array(Vec<f64>),
    PackedStringArray(Vec<String>),
    PackedVector2Array(Vec<[f32; 2]>),
    PackedVector3Array(Vec<[f32; 3]>),
    PackedColorArray(Vec<[f32; 4]>),
    PackedVector4Array(Vec<[f32; 4]>),
}

impl Value {
    /// Godot's name of this value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        crate::codec::Kind::of(self).name()
    }

    /// For a Dictionary: the value under the String (or StringName) key `name`.
    pub fn field(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Dictionary(pairs) => dict_field(pairs, name),
            _ => None,
        }
    }
}

/// The value under the String (or StringName) key `name` of a Dictionary's pairs (the
/// first, as Godot keeps one per key).
pub fn dict_field<'a>(pairs: &'a [(Value, Value)], name: &str) -> Option<&'a Value> {
    pairs
        .iter()
        .find(|(k, _)| matches!(k, Value::String(k) | Value::StringName(k) if k == name))
        .map(|(_, v)| v)
}

fn f32s_eq(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

fn f32_rows_eq<const N: usize>(a: &[[f32; N]], b: &[[f32; N]]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| f32s_eq(x, y))
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        use Value as V;
        match (self, other) {
            (V::Nil, V::Nil) => true,
            (V::Bool(a), V::Bool(b)) => a == b,
            (V::Int(a), V::Int(b)) => a == b,
            (V::Float(a), V::Float(b)) => a.to_bits() == b.to_bits(),
            (V::String(a), V::String(b))
            | (V::StringName(a), V::StringName(b))
            | (V::NodePath(a), V::NodePath(b)) => a == b,
            (V::Vector2(a), V::Vector2(b)) => f32s_eq(a, b),
            (V::Vector2i(a), V::Vector2i(b)) => a == b,
            (V::Vector3(a), V::Vector3(b)) => f32s_eq(a, b),
            (V::Vector3i(a), V::Vector3i(b)) => a == b,
            (V::Rect2i(a), V::Rect2i(b)) | (V::Vector4i(a), V::Vector4i(b)) => a == b,
            (V::Rect2(a), V::Rect2(b))
            | (V::Vector4(a), V::Vector4(b))
            | (V::Plane(a), V::Plane(b))
            | (V::Quaternion(a), V::Quaternion(b))
            | (V::Color(a), V::Color(b)) => f32s_eq(a, b),
            (V::Transform2D(a), V::Transform2D(b)) | (V::Aabb(a), V::Aabb(b)) => f32s_eq(a, b),
            (V::Basis(a), V::Basis(b)) => f32s_eq(a, b),
            (V::Transform3D(a), V::Transform3D(b)) => f32s_eq(a, b),
            (V::Projection(a), V::Projection(b)) => f32s_eq(a, b),
            (V::Dictionary(a), V::Dictionary(b)) => a == b,
            (V::Array(a), V::Array(b)) => a == b,
            (V::PackedByteArray(a), V::PackedByteArray(b)) => a == b,
            (V::PackedInt32Array(a), V::PackedInt32Array(b)) => a == b,
            (V::PackedInt64Array(a), V::PackedInt64Array(b)) => a == b,
            (V::PackedFloat32Array(a), V::PackedFloat32Array(b)) => f32s_eq(a, b),
            (V::PackedFloat64Array(a), V::PackedFloat64Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
            }
            (V::PackedStringArray(a), V::PackedStringArray(b)) => a == b,
            (V::PackedVector2Array(a), V::PackedVector2Array(b)) => f32_rows_eq(a, b),
            (V::PackedVector3Array(a), V::PackedVector3Array(b)) => f32_rows_eq(a, b),
            (V::PackedColorArray(a), V::PackedColorArray(b))
            | (V::PackedVector4Array(a), V::PackedVector4Array(b)) => f32_rows_eq(a, b),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equality_is_bitwise_for_floats() {
        assert_eq!(Value::Float(f64::NAN), Value::Float(f64::NAN));
        assert_ne!(Value::Float(0.0), Value::Float(-0.0));
        assert_eq!(
            Value::Vector2([f32::NAN, 1.0]),
            Value::Vector2([f32::NAN, 1.0])
        );
        assert_ne!(Value::Vector2([1.0, 2.0]), Value::Vector2([2.0, 1.0]));
    }

    #[test]
    fn different_types_are_never_equal() {
        assert_ne!(Value::String("a".into()), Value::StringName("a".into()));
        assert_ne!(Value::Int(1), Value::Float(1.0));
        assert_ne!(Value::Rect2([0.0; 4]), Value::Color([0.0; 4]));
    }
}
