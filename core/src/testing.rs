//! proptest strategies shared by the unit, property and engine tests (feature `testing`).

use proptest::collection::vec;
use proptest::prelude::*;

use crate::codec::GodotVersion;
use crate::value::Value;

/// Floats that every Godot text parser reads back exactly: small dyadic rationals.
pub fn exact_f32() -> impl Strategy<Value = f32> {
    (-4096i32..4096).prop_map(|n| n as f32 / 8.0)
}

/// Any f32 bit pattern except NaN (NaN payloads are not canonical in 32-bit fields).
pub fn any_f32() -> impl Strategy<Value = f32> {
    any::<f32>().prop_filter("no NaN", |f| !f.is_nan())
}

fn f64_value(exact: bool) -> BoxedStrategy<f64> {
    if exact {
        prop_oneof![
            (-1_000_000i64..1_000_000).prop_map(|n| n as f64 / 16.0),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(f64::NAN),
            Just(1e300),
        ]
        .boxed()
    } else {
        // Any bit pattern; NaN is canonicalised to Godot's quiet NaN by Godot itself, but our
        // codec keeps the payload in the 64-bit encoding, so every pattern round-trips.
        any::<u64>().prop_map(f64::from_bits).boxed()
    }
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 _]{0,12}",
        "[\\PC]{0,6}",
        Just(String::new()),
        Just("名前 ünïcødé 🎮".to_owned()),
    ]
}

/// Node path text in canonical form (what the decoder produces).
fn node_path_text() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        vec("[A-Za-z0-9_]{1,6}", 0..4),
        vec("[a-z_]{1,6}", 0..3),
    )
        .prop_map(|(absolute, names, subnames)| {
            let mut s = String::new();
            if absolute {
                s.push('/');
            }
            s.push_str(&names.join("/"));
            for sub in subnames {
                s.push(':');
                s.push_str(&sub);
            }
            s
        })
}

/// Values representable in `version`; `exact` restricts floats to ones any parser reads
/// back exactly (for GDScript literals).
pub fn value(version: GodotVersion, exact: bool) -> BoxedStrategy<Value> {
    let f = if exact {
        exact_f32().boxed()
    } else {
        any_f32().boxed()
    };
    let mut leaves: Vec<BoxedStrategy<Value>> = vec![
        Just(Value::Nil).boxed(),
        any::<bool>().prop_map(Value::Bool).boxed(),
        any::<i64>().prop_map(Value::Int).boxed(),
        (-100i64..100).prop_map(Value::Int).boxed(),
        f64_value(exact).prop_map(Value::Float).boxed(),
        text().prop_map(Value::String).boxed(),
        node_path_text().prop_map(Value::NodePath).boxed(),
        [f.clone(), f.clone()].prop_map(Value::Vector2).boxed(),
        [f.clone(), f.clone(), f.clone(), f.clone()]
            .prop_map(Value::Rect2)
            .boxed(),
        [f.clone(), f.clone(), f.clone()]
            .prop_map(Value::Vector3)
            .boxed(),
        vec(f.clone(), 6)
            .prop_map(|v| Value::Transform2D(to_array(v)))
            .boxed(),
        vec(f.clone(), 4)
            .prop_map(|v| Value::Plane(to_array(v)))
            .boxed(),
        vec(f.clone(), 4)
            .prop_map(|v| Value::Quaternion(to_array(v)))
            .boxed(),
        vec(f.clone(), 6)
            .prop_map(|v| Value::Aabb(to_array(v)))
            .boxed(),
        vec(f.clone(), 9)
            .prop_map(|v| Value::Basis(to_array(v)))
            .boxed(),
        vec(f.clone(), 12)
            .prop_map(|v| Value::Transform3D(to_array(v)))
            .boxed(),
        vec(f.clone(), 4)
            .prop_map(|v| Value::Color(to_array(v)))
            .boxed(),
        vec(any::<u8>(), 0..9)
            .prop_map(Value::PackedByteArray)
            .boxed(),
        vec(any::<i32>(), 0..5)
            .prop_map(Value::PackedInt32Array)
            .boxed(),
        vec(f.clone(), 0..5)
            .prop_map(Value::PackedFloat32Array)
            .boxed(),
        vec(text(), 0..4).prop_map(Value::PackedStringArray).boxed(),
        vec([f.clone(), f.clone()], 0..4)
            .prop_map(Value::PackedVector2Array)
            .boxed(),
        vec([f.clone(), f.clone(), f.clone()], 0..4)
            .prop_map(Value::PackedVector3Array)
            .boxed(),
        vec(vec(f.clone(), 4).prop_map(to_array), 0..3)
            .prop_map(Value::PackedColorArray)
            .boxed(),
    ];
    if version == GodotVersion::V4 {
        leaves.extend([
            text().prop_map(Value::StringName).boxed(),
            any::<[i32; 2]>().prop_map(Value::Vector2i).boxed(),
            any::<[i32; 4]>().prop_map(Value::Rect2i).boxed(),
            any::<[i32; 3]>().prop_map(Value::Vector3i).boxed(),
            vec(f.clone(), 4)
                .prop_map(|v| Value::Vector4(to_array(v)))
                .boxed(),
            any::<[i32; 4]>().prop_map(Value::Vector4i).boxed(),
            vec(f.clone(), 16)
                .prop_map(|v| Value::Projection(to_array(v)))
                .boxed(),
            vec(any::<i64>(), 0..4)
                .prop_map(Value::PackedInt64Array)
                .boxed(),
            vec(f64_value(exact), 0..4)
                .prop_map(Value::PackedFloat64Array)
                .boxed(),
            vec(vec(f.clone(), 4).prop_map(to_array), 0..3)
                .prop_map(Value::PackedVector4Array)
                .boxed(),
        ]);
    }
    let leaf = proptest::strategy::Union::new(leaves).boxed();
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            vec((inner.clone(), inner), 0..3).prop_map(Value::Dictionary),
        ]
    })
    .boxed()
}

fn to_array<const N: usize>(v: Vec<f32>) -> [f32; N] {
    v.try_into()
        .expect("strategy generates exactly N components")
}
