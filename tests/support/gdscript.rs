//! Values as Godot 3 GDScript expressions, so the real engine can build and encode them.

use treesync_core::Value;

fn float(x: f64) -> String {
    if x.is_nan() {
        "NAN".into()
    } else if x.is_infinite() {
        if x > 0.0 {
            "INF".into()
        } else {
            "-INF".into()
        }
    } else if x == x.trunc() && x.abs() < 1e15 {
        format!("{x:.1}")
    } else {
        format!("{x:?}")
    }
}

fn floats(xs: &[f32]) -> String {
    xs.iter()
        .map(|x| float(f64::from(*x)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A GDScript string literal: Godot's text syntax for strings (same escapes).
fn string(s: &str) -> String {
    treesync_core::text::format(&Value::String(s.to_owned()))
}

fn list<T>(items: &[T], f: impl Fn(&T) -> String) -> String {
    items.iter().map(f).collect::<Vec<_>>().join(", ")
}

/// A GDScript 3 expression that evaluates to `value`; `None` for Godot-4-only types.
pub fn expr(value: &Value) -> Option<String> {
    Some(match value {
        Value::Nil => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i64::MIN) => "(-9223372036854775807 - 1)".into(),
        Value::Int(i) => format!("({i})"),
        Value::Float(x) => format!("({})", float(*x)),
        Value::String(s) => string(s),
        Value::NodePath(p) => format!("NodePath({})", string(p)),
        Value::Vector2(v) => format!("Vector2({})", floats(v)),
        Value::Rect2(v) => format!("Rect2({})", floats(v)),
        Value::Vector3(v) => format!("Vector3({})", floats(v)),
        Value::Transform2D(v) => {
            format!(
                "Transform2D(Vector2({}), Vector2({}), Vector2({}))",
                floats(&v[0..2]),
                floats(&v[2..4]),
                floats(&v[4..6])
            )
        }
        Value::Plane(v) => format!("Plane({})", floats(v)),
        Value::Quaternion(v) => format!("Quat({})", floats(v)),
        Value::Aabb(v) => format!(
            "AABB(Vector3({}), Vector3({}))",
            floats(&v[0..3]),
            floats(&v[3..6])
        ),
        Value::Basis(v) => basis(&v[..]),
        Value::Transform3D(v) => format!(
            "Transform({}, Vector3({}))",
            basis(&v[0..9]),
            floats(&v[9..12])
        ),
        Value::Color(v) => format!("Color({})", floats(v)),
        Value::Dictionary(pairs) => {
            let items: Option<Vec<String>> = pairs
                .iter()
                .map(|(k, v)| Some(format!("{}: {}", expr(k)?, expr(v)?)))
                .collect();
            format!("{{{}}}", items?.join(", "))
        }
        Value::Array(items) => {
            let items: Option<Vec<String>> = items.iter().map(expr).collect();
            format!("[{}]", items?.join(", "))
        }
        Value::PackedByteArray(v) => format!("PoolByteArray([{}])", list(v, u8::to_string)),
        Value::PackedInt32Array(v) => format!("PoolIntArray([{}])", list(v, |i| format!("({i})"))),
        Value::PackedFloat32Array(v) => format!("PoolRealArray([{}])", floats(v)),
        Value::PackedStringArray(v) => format!("PoolStringArray([{}])", list(v, |s| string(s))),
        Value::PackedVector2Array(v) => format!(
            "PoolVector2Array([{}])",
            list(v, |x| format!("Vector2({})", floats(x)))
        ),
        Value::PackedVector3Array(v) => format!(
            "PoolVector3Array([{}])",
            list(v, |x| format!("Vector3({})", floats(x)))
        ),
        Value::PackedColorArray(v) => format!(
            "PoolColorArray([{}])",
            list(v, |x| format!("Color({})", floats(x)))
        ),
        _ => return None,
    })
}

/// GDScript's `Basis(x_axis, y_axis, z_axis)` takes columns; our layout is rows.
fn basis(rows: &[f32]) -> String {
    let column = |j: usize| floats(&[rows[j], rows[3 + j], rows[6 + j]]);
    format!(
        "Basis(Vector3({}), Vector3({}), Vector3({}))",
        column(0),
        column(1),
        column(2)
    )
}
