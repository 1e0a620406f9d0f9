//! Byte-for-byte check of our Godot 3 encoder and decoder against the real engine.
//!
//! Runs Debian's `godot3-server` headless with a generated GDScript that builds a wide set of
//! values (hand-picked edge cases plus seeded random ones) and writes `var2bytes` of each to
//! a file. Our encoding of the same values must equal the engine's bytes, and our decoder must
//! read the engine's bytes back to equal values. The README's test command installs the
//! engine; set TREESYNC_GODOT3 to use another binary.

mod support;

use std::path::PathBuf;
use std::process::Command;

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use support::gdscript;
use treesync_core::codec::{decode, encode, GodotVersion};
use treesync_core::Value;

const RANDOM_CASES: usize = 400;

fn edge_cases() -> Vec<Value> {
    let s = |t: &str| Value::String(t.into());
    vec![
        Value::Nil,
        Value::Bool(true),
        Value::Bool(false),
        Value::Int(0),
        Value::Int(-1),
        Value::Int(i64::from(i32::MAX)),
        Value::Int(i64::from(i32::MIN)),
        Value::Int(i64::from(i32::MAX) + 1),
        Value::Int(i64::from(i32::MIN) - 1),
        Value::Int(i64::MAX),
        Value::Int(i64::MIN),
        Value::Float(0.5),
        Value::Float(-1234.0625),
        Value::Float(1e300),
        Value::Float(f64::NAN),
        Value::Float(f64::INFINITY),
        Value::Float(f64::NEG_INFINITY),
        s(""),
        s("abc"),
        s("abcd"),
        s("ünïcødé 名前 🎮"),
        s("quote\" backslash\\ newline\n tab\t"),
        Value::NodePath("/root/World/Player1".into()),
        Value::NodePath("/root/a:position:x".into()),
        Value::NodePath("Child/Grandchild".into()),
        Value::NodePath("".into()),
        Value::Vector2([1.5, -2.25]),
        Value::Rect2([0.0, 1.0, 2.0, 3.0]),
        Value::Vector3([1.0, 2.0, 3.0]),
        Value::Transform2D([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        Value::Plane([0.0, 1.0, 0.0, 5.0]),
        Value::Quaternion([0.0, 0.0, 0.0, 1.0]),
        Value::Aabb([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        Value::Basis([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]),
        Value::Transform3D([
            1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0,
        ]),
        Value::Color([0.25, 0.5, 0.75, 1.0]),
        Value::Array(vec![]),
        Value::Array(vec![
            Value::Int(1),
            s("two"),
            Value::Array(vec![Value::Nil]),
        ]),
        Value::Dictionary(vec![]),
        Value::Dictionary(vec![
            (s("hp"), Value::Int(100)),
            (Value::Vector2([1.0, 2.0]), Value::Bool(true)),
        ]),
        Value::PackedByteArray(vec![]),
        Value::PackedByteArray(vec![1, 2, 3, 255, 0]),
        Value::PackedInt32Array(vec![i32::MIN, -1, 0, i32::MAX]),
        Value::PackedFloat32Array(vec![0.5, -0.0, f32::INFINITY]),
        Value::PackedStringArray(vec!["".into(), "abc".into(), "abcd".into(), "名前".into()]),
        Value::PackedVector2Array(vec![[1.0, 2.0], [3.0, 4.0]]),
        Value::PackedVector3Array(vec![[1.0, 2.0, 3.0]]),
        Value::PackedColorArray(vec![[1.0, 0.0, 0.0, 1.0]]),
    ]
}

/// Godot merges equal dictionary keys and hashes floats loosely: keep only dictionaries whose
/// keys are float-free and distinct, so both sides describe the same dictionary.
fn godot_safe(value: &Value) -> bool {
    fn has_float(v: &Value) -> bool {
        match v {
            Value::Float(_) => true,
            Value::Array(items) => items.iter().any(has_float),
            Value::Dictionary(pairs) => pairs.iter().any(|(k, v)| has_float(k) || has_float(v)),
            _ => false,
        }
    }
    match value {
        Value::Array(items) => items.iter().all(godot_safe),
        Value::Dictionary(pairs) => {
            let keys: Vec<Vec<u8>> = pairs
                .iter()
                .filter_map(|(k, _)| encode(k, GodotVersion::V3).ok())
                .collect();
            let distinct = keys.iter().enumerate().all(|(i, k)| !keys[..i].contains(k));
            distinct
                && pairs.iter().all(|(k, v)| {
                    !has_float(k) && !matches!(k, Value::Nil) && godot_safe(k) && godot_safe(v)
                })
        }
        _ => true,
    }
}

fn random_cases() -> Vec<Value> {
    let seed = [7u8; 32];
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed),
    );
    let strategy = treesync_core::testing::value(GodotVersion::V3, true);
    let mut out = Vec::new();
    while out.len() < RANDOM_CASES {
        let value = strategy
            .new_tree(&mut runner)
            .expect("strategy generates")
            .current();
        if godot_safe(&value) {
            out.push(value);
        }
    }
    out
}

fn godot_binary() -> String {
    std::env::var("TREESYNC_GODOT3").unwrap_or_else(|_| "godot3-server".into())
}

/// Runs the engine on `values`; returns its `var2bytes` output for each.
fn engine_encodings(values: &[Value]) -> Vec<Vec<u8>> {
    let dir = std::env::temp_dir().join(format!("treesync-godot3-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out_path: PathBuf = dir.join("out.bin");
    let mut script = String::from("extends SceneTree\n\nfunc _init():\n\tvar vals = []\n");
    for value in values {
        let expr = gdscript::expr(value).expect("only Godot 3 values are generated");
        script.push_str(&format!("\tvals.append({expr})\n"));
    }
    script.push_str(&format!(
        "\tvar f = File.new()\n\tif f.open(\"{}\", File.WRITE) != OK:\n\t\tquit(3)\n\t\treturn\n\
         \tfor v in vals:\n\t\tvar b = var2bytes(v)\n\t\tf.store_32(b.size())\n\t\tf.store_buffer(b)\n\
         \tf.close()\n\tquit(0)\n",
        out_path.display()
    ));
    let script_path = dir.join("encode.gd");
    std::fs::write(&script_path, script).expect("write script");
    let output = Command::new("timeout")
        .args(["120", &godot_binary(), "--no-window", "-s"])
        .arg(&script_path)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e}; the README's test command installs godot3-server",
                godot_binary()
            )
        });
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "godot failed ({}):\n{stderr}",
        output.status
    );
    assert!(
        !stderr.contains("SCRIPT ERROR") && !stderr.contains("Parse Error"),
        "GDScript error:\n{stderr}"
    );
    let bytes = std::fs::read(&out_path)
        .unwrap_or_else(|e| panic!("godot wrote no output ({e}):\n{stderr}"));
    let _ = std::fs::remove_dir_all(&dir); // Best effort: a leftover temp dir is harmless.
    let mut records = Vec::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        records.push(rest[4..4 + len].to_vec());
        rest = &rest[4 + len..];
    }
    records
}

/// Offsets of NodePath padding bytes in the Godot 3 encoding of `value` placed at `at`.
/// Godot 3.x's `encode_variant` skips those bytes without writing them (it writes zeros for
/// every other padding), so the engine's output holds whatever memory was there; we write
/// zeros and treat these bytes as don't-care.
fn node_path_padding(value: &Value, at: usize, out: &mut Vec<usize>) {
    let len = |v: &Value| encode(v, GodotVersion::V3).expect("Godot 3 value").len();
    match value {
        Value::NodePath(text) => {
            let (path, subpath) = text.split_once(':').unwrap_or((text, ""));
            let parts = path
                .split('/')
                .chain(subpath.split(':'))
                .filter(|p| !p.is_empty());
            let mut offset = at + 16;
            for part in parts {
                let padded = part.len().div_ceil(4) * 4;
                out.extend(offset + 4 + part.len()..offset + 4 + padded);
                offset += 4 + padded;
            }
        }
        Value::Array(items) => {
            let mut offset = at + 8;
            for item in items {
                node_path_padding(item, offset, out);
                offset += len(item);
            }
        }
        Value::Dictionary(pairs) => {
            let mut offset = at + 8;
            for (k, v) in pairs {
                node_path_padding(k, offset, out);
                offset += len(k);
                node_path_padding(v, offset, out);
                offset += len(v);
            }
        }
        _ => {}
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn godot3_engine_encodes_exactly_like_us_and_we_decode_it() {
    let mut values = edge_cases();
    values.extend(random_cases());
    let engine = engine_encodings(&values);
    assert_eq!(engine.len(), values.len(), "one record per value");
    for (index, (value, theirs)) in values.iter().zip(&engine).enumerate() {
        let ours = encode(value, GodotVersion::V3).expect("Godot 3 value");
        let mut dont_care = Vec::new();
        node_path_padding(value, 0, &mut dont_care);
        let mut theirs_masked = theirs.clone();
        let end = theirs_masked.len();
        for at in dont_care.into_iter().filter(|at| *at < end) {
            assert_eq!(ours[at], 0, "we pad with zeros");
            theirs_masked[at] = 0;
        }
        assert_eq!(
            hex(&ours),
            hex(&theirs_masked),
            "case {index}: encoding of {value:?}"
        );
        let decoded =
            decode(theirs, GodotVersion::V3).unwrap_or_else(|e| panic!("case {index}: {e}"));
        assert_eq!(&decoded, value, "case {index}: decoding the engine's bytes");
    }
}
