//! The two Godot type tables and the per-type payload shapes.

use crate::value::Value;

/// Which Godot major version's encoding to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GodotVersion {
    /// Godot 3.x: `var2bytes`, 27 types, PoolArrays.
    V3,
    /// Godot 4.x: `var_to_bytes`, 39 types (4.3+), PackedArrays.
    V4,
}

/// A Variant type this codec knows, independent of the version's numbering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Nil,
    Bool,
    Int,
    Float,
    String,
    StringName,
    NodePath,
    Vector2,
    Vector2i,
    Rect2,
    Rect2i,
    Vector3,
    Vector3i,
    Transform2D,
    Vector4,
    Vector4i,
    Plane,
    Quaternion,
    Aabb,
    Basis,
    Transform3D,
    Projection,
    Color,
    Dictionary,
    Array,
    PackedByteArray,
    PackedInt32Array,
    PackedInt64Array,
    PackedFloat32Array,
    PackedFloat64Array,
    PackedStringArray,
    PackedVector2Array,
    PackedVector3Array,
    PackedColorArray,
    PackedVector4Array,
    /// Types that are process-local handles in Godot: never accepted.
    Rid,
    Object,
    Callable,
    Signal,
}

/// Godot 4 `Variant::Type`, in enum order (core/variant/variant.h, 4.3+).
const V4_TABLE: [Kind; 39] = [
    Kind::Nil,
    Kind::Bool,
    Kind::Int,
    Kind::Float,
    Kind::String,
    Kind::Vector2,
    Kind::Vector2i,
    Kind::Rect2,
    Kind::Rect2i,
    Kind::Vector3,
    Kind::Vector3i,
    Kind::Transform2D,
    Kind::Vector4,
    Kind::Vector4i,
    Kind::Plane,
    Kind::Quaternion,
    Kind::Aabb,
    Kind::Basis,
    Kind::Transform3D,
    Kind::Projection,
    Kind::Color,
    Kind::StringName,
    Kind::NodePath,
    Kind::Rid,
    Kind::Object,
    Kind::Callable,
    Kind::Signal,
    Kind::Dictionary,
    Kind::Array,
    Kind::PackedByteArray,
    Kind::PackedInt32Array,
    Kind::PackedInt64Array,
    Kind::PackedFloat32Array,
    Kind::PackedFloat64Array,
    Kind::PackedStringArray,
    Kind::PackedVector2Array,
    Kind::PackedVector3Array,
    Kind::PackedColorArray,
    Kind::PackedVector4Array,
];

/// Godot 3 `Variant::Type`, in enum order (core/variant.h, 3.x).
const V3_TABLE: [Kind; 27] = [
    Kind::Nil,
    Kind::Bool,
    Kind::Int,
    Kind::Float,
    Kind::String,
    Kind::Vector2,
    Kind::Rect2,
    Kind::Vector3,
    Kind::Transform2D,
    Kind::Plane,
    Kind::Quaternion,
    Kind::Aabb,
    Kind::Basis,
    Kind::Transform3D,
    Kind::Color,
    Kind::NodePath,
    Kind::Rid,
    Kind::Object,
    Kind::Dictionary,
    Kind::Array,
    Kind::PackedByteArray,
    Kind::PackedInt32Array,
    Kind::PackedFloat32Array,
    Kind::PackedStringArray,
    Kind::PackedVector2Array,
    Kind::PackedVector3Array,
    Kind::PackedColorArray,
];

impl GodotVersion {
    fn table(self) -> &'static [Kind] {
        match self {
            GodotVersion::V3 => &V3_TABLE,
            GodotVersion::V4 => &V4_TABLE,
        }
    }

    /// The kind behind a type id, or `None` for an id past the table.
    pub(crate) fn kind_of(self, type_id: u32) -> Option<Kind> {
        self.table().get(type_id as usize).copied()
    }

    /// The type id of a kind, or `None` if this version has no such type.
    pub(crate) fn type_id(self, kind: Kind) -> Option<u32> {
        let index = self.table().iter().position(|k| *k == kind)?;
        Some(u32::try_from(index).expect("type tables have fewer than 256 entries"))
    }
}

impl Kind {
    pub(crate) fn of(value: &Value) -> Kind {
        match value {
            Value::Nil => Kind::Nil,
            Value::Bool(_) => Kind::Bool,
            Value::Int(_) => Kind::Int,
            Value::Float(_) => Kind::Float,
            Value::String(_) => Kind::String,
            Value::StringName(_) => Kind::StringName,
            Value::NodePath(_) => Kind::NodePath,
            Value::Vector2(_) => Kind::Vector2,
            Value::Vector2i(_) => Kind::Vector2i,
            Value::Rect2(_) => Kind::Rect2,
            Value::Rect2i(_) => Kind::Rect2i,
            Value::Vector3(_) => Kind::Vector3,
            Value::Vector3i(_) => Kind::Vector3i,
            Value::Transform2D(_) => Kind::Transform2D,
            Value::Vector4(_) => Kind::Vector4,
            Value::Vector4i(_) => Kind::Vector4i,
            Value::Plane(_) => Kind::Plane,
            Value::Quaternion(_) => Kind::Quaternion,
            Value::Aabb(_) => Kind::Aabb,
            Value::Basis(_) => Kind::Basis,
            Value::Transform3D(_) => Kind::Transform3D,
            Value::Projection(_) => Kind::Projection,
            Value::Color(_) => Kind::Color,
            Value::Dictionary(_) => Kind::Dictionary,
            Value::Array(_) => Kind::Array,
            Value::PackedByteArray(_) => Kind::PackedByteArray,
            Value::PackedInt32Array(_) => Kind::PackedInt32Array,
            Value::PackedInt64Array(_) => Kind::PackedInt64Array,
            Value::PackedFloat32Array(_) => Kind::PackedFloat32Array,
            Value::PackedFloat64Array(_) => Kind::PackedFloat64Array,
            Value::PackedStringArray(_) => Kind::PackedStringArray,
            Value::PackedVector2Array(_) => Kind::PackedVector2Array,
            Value::PackedVector3Array(_) => Kind::PackedVector3Array,
            Value::PackedColorArray(_) => Kind::PackedColorArray,
            Value::PackedVector4Array(_) => Kind::PackedVector4Array,
        }
    }

    /// Godot's name of the type, for error messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Nil => "Nil",
            Kind::Bool => "bool",
            Kind::Int => "int",
            Kind::Float => "float",
            Kind::String => "String",
            Kind::StringName => "StringName",
            Kind::NodePath => "NodePath",
            Kind::Vector2 => "Vector2",
            Kind::Vector2i => "Vector2i",
            Kind::Rect2 => "Rect2",
            Kind::Rect2i => "Rect2i",
            Kind::Vector3 => "Vector3",
            Kind::Vector3i => "Vector3i",
            Kind::Transform2D => "Transform2D",
            Kind::Vector4 => "Vector4",
            Kind::Vector4i => "Vector4i",
            Kind::Plane => "Plane",
            Kind::Quaternion => "Quaternion",
            Kind::Aabb => "AABB",
            Kind::Basis => "Basis",
            Kind::Transform3D => "Transform3D",
            Kind::Projection => "Projection",
            Kind::Color => "Color",
            Kind::Dictionary => "Dictionary",
            Kind::Array => "Array",
            Kind::PackedByteArray => "PackedByteArray",
            Kind::PackedInt32Array => "PackedInt32Array",
            Kind::PackedInt64Array => "PackedInt64Array",
            Kind::PackedFloat32Array => "PackedFloat32Array",
            Kind::PackedFloat64Array => "PackedFloat64Array",
            Kind::PackedStringArray => "PackedStringArray",
            Kind::PackedVector2Array => "PackedVector2Array",
            Kind::PackedVector3Array => "PackedVector3Array",
            Kind::PackedColorArray => "PackedColorArray",
            Kind::PackedVector4Array => "PackedVector4Array",
            Kind::Rid => "RID",
            Kind::Object => "Object",
            Kind::Callable => "Callable",
            Kind::Signal => "Signal",
        }
    }
}
