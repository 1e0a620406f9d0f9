//! Codec tests: Godot 4 byte vectors from the engine's `tests/core/io/test_marshalls.h`,
//! layout cases, hostile input, and encode∘decode identity for both versions.

use proptest::prelude::*;

use super::*;
use crate::value::Value;
use GodotVersion::{V3, V4};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    let text: String = text.split_whitespace().collect();
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("test vectors are hex"))
        .collect()
}

/// Checks `value` ⇄ `bytes` both ways.
fn both_ways(value: Value, version: GodotVersion, bytes: &str) {
    let expected = unhex(bytes);
    let encoded = encode(&value, version).expect("encodable");
    assert_eq!(hex(&encoded), hex(&expected), "encoding of {value:?}");
    assert_eq!(decode(&expected, version).expect("decodable"), value);
}

#[test]
fn godot4_engine_vectors() {
    // test_marshalls.h: "NIL Variant encoding", "INT 32/64 bit", "FLOAT single/double".
    both_ways(Value::Nil, V4, "00000000");
    both_ways(Value::Int(0x1234_5678), V4, "02000000 78563412");
    both_ways(Value::Float(0.15625), V4, "03000000 0000203e");
    both_ways(
        Value::Float(0.333_333_333_333_333_3),
        V4,
        "03000100 555555555555d53f",
    );
}

#[test]
fn godot4_engine_vector_int64_exact() {
    // The engine's test value 0x0f123456789abcdef, i.e. 0xf123456789abcdef as u64.
    let value = Value::Int(0xf123_4567_89ab_cdefu64 as i64);
    both_ways(value, V4, "02000100 efcdab89674523f1");
}

#[test]
fn godot4_typed_containers_are_refused_with_a_typed_error() {
    // test_marshalls.h "Typed array decoding": Array[int] with one 64-bit element.
    let typed = unhex("1c000100 02000000 01000000 02000100 efcdab89674523f1");
    assert!(matches!(
        decode(&typed, V4),
        Err(DecodeError::UnsupportedFlags {
            type_name: "Array",
            ..
        })
    ));
}

#[test]
fn layouts_of_strings_paths_and_packed_arrays() {
    both_ways(
        Value::String("abcde".into()),
        V4,
        "04000000 05000000 6162636465000000",
    );
    both_ways(Value::String(String::new()), V3, "04000000 00000000");
    both_ways(
        Value::StringName("ab".into()),
        V4,
        "15000000 02000000 61620000",
    );
    // Matches the bytes godot3-server 3.2.3 wrote for var2bytes(NodePath("/root/a:bc")).
    let path =
        "0f000000 02000080 01000000 01000000 04000000 726f6f74 01000000 61000000 02000000 62630000";
    both_ways(Value::NodePath("/root/a:bc".into()), V3, path);
    both_ways(
        Value::NodePath("/root/a:bc".into()),
        V4,
        &path.replacen("0f", "16", 1),
    );
    both_ways(
        Value::NodePath(":x".into()),
        V4,
        "16000000 00000080 01000000 00000000 01000000 78000000",
    );
    // Godot 3 PoolStringArray: NUL counted in each length, then padding.
    both_ways(
        Value::PackedStringArray(vec!["a".into(), "bcd".into()]),
        V3,
        "17000000 02000000 02000000 61000000 04000000 62636400",
    );
    both_ways(
        Value::PackedByteArray(vec![1, 2, 3, 4, 5]),
        V4,
        "1d000000 05000000 0102030405000000",
    );
    both_ways(Value::Vector2i([1, -1]), V4, "06000000 01000000 ffffffff");
    both_ways(Value::Vector2([1.0, 2.0]), V3, "05000000 0000803f 00000040");
    both_ways(
        Value::Array(vec![Value::Bool(true)]),
        V4,
        "1c000000 01000000 01000000 01000000",
    );
    both_ways(
        Value::Dictionary(vec![(Value::Int(1), Value::Nil)]),
        V3,
        "12000000 01000000 02000000 01000000 00000000",
    );
    both_ways(
        Value::PackedInt64Array(vec![-1]),
        V4,
        "1f000000 01000000 ffffffffffffffff",
    );
}

#[test]
fn floats_pick_the_narrowest_exact_width() {
    assert_eq!(encode(&Value::Float(1.5), V4).expect("ok").len(), 8);
    assert_eq!(
        encode(&Value::Float(f64::INFINITY), V4).expect("ok").len(),
        8
    );
    assert_eq!(encode(&Value::Float(0.1), V4).expect("ok").len(), 12);
    assert_eq!(encode(&Value::Float(f64::NAN), V3).expect("ok").len(), 12);
    assert_eq!(
        encode(&Value::Int(i64::from(i32::MIN)), V4)
            .expect("ok")
            .len(),
        8
    );
    assert_eq!(
        encode(&Value::Int(i64::from(i32::MAX) + 1), V4)
            .expect("ok")
            .len(),
        12
    );
}

#[test]
fn godot4_only_types_are_refused_for_godot3() {
    for value in [
        Value::StringName("x".into()),
        Value::Vector2i([0, 0]),
        Value::Projection([0.0; 16]),
        Value::PackedInt64Array(vec![]),
        Value::Array(vec![Value::Vector4([0.0; 4])]),
    ] {
        let mut out = vec![7u8];
        let err = encode_into(&value, V3, &mut out).expect_err("not in Godot 3");
        assert!(
            matches!(err, EncodeError::NotInVersion { version: V3, .. }),
            "{err}"
        );
        assert_eq!(out, [7], "a failed encode leaves the buffer as it was");
    }
}

#[test]
fn hostile_lengths_are_errors_not_allocations() {
    // A PackedByteArray claiming 2^31 - 1 bytes in a 20-byte buffer.
    let mut bytes = unhex("1d000000 ffffff7f");
    bytes.extend([0u8; 12]);
    assert!(matches!(
        decode(&bytes, V4),
        Err(DecodeError::CountTooLarge { .. })
    ));
    // An Array claiming 2^31 - 1 elements.
    let array = unhex("1c000000 ffffff7f 00000000");
    assert!(matches!(
        decode(&array, V4),
        Err(DecodeError::CountTooLarge {
            count: 0x7fff_ffff,
            ..
        })
    ));
    // A string longer than what remains.
    assert!(matches!(
        decode(&unhex("04000000 10000000 6162"), V4),
        Err(DecodeError::CountTooLarge { .. })
    ));
    // A NodePath with 2^31 - 1 names.
    let path = unhex("16000000 ffffffff ffffffff 01000000");
    assert!(matches!(
        decode(&path, V4),
        Err(DecodeError::CountTooLarge { .. })
    ));
}

#[test]
fn malformed_input_gets_a_typed_error() {
    assert!(matches!(
        decode(&[], V4),
        Err(DecodeError::Truncated { at: 0, needed: 4 })
    ));
    assert!(matches!(
        decode(&unhex("02000000 0102"), V4),
        Err(DecodeError::Truncated { .. })
    ));
    assert!(matches!(
        decode(&unhex("ff000000"), V4),
        Err(DecodeError::UnknownType { type_id: 255, .. })
    ));
    assert!(matches!(
        decode(&unhex("1b000000"), V3),
        Err(DecodeError::UnknownType { type_id: 27, .. })
    ));
    assert!(matches!(
        decode(&unhex("18000000"), V4),
        Err(DecodeError::Unsupported {
            type_name: "Object"
        })
    ));
    assert!(matches!(
        decode(&unhex("11000000"), V3),
        Err(DecodeError::Unsupported {
            type_name: "Object"
        })
    ));
    assert!(matches!(
        decode(&unhex("19000000"), V4),
        Err(DecodeError::Unsupported {
            type_name: "Callable"
        })
    ));
    assert!(matches!(
        decode(&unhex("04000000 02000000 ff fe 0000"), V4),
        Err(DecodeError::InvalidUtf8 { .. })
    ));
    assert!(matches!(
        decode(&unhex("00000000 00"), V4),
        Err(DecodeError::TrailingBytes { extra: 1 })
    ));
    assert!(matches!(
        decode(&unhex("05000100 00000000 00000000"), V4),
        Err(DecodeError::UnsupportedFlags { .. })
    ));
}

#[test]
fn nesting_is_bounded() {
    let mut bytes = Vec::new();
    for _ in 0..=DECODE_DEPTH_MAX + 1 {
        bytes.extend(unhex("1c000000 01000000"));
    }
    bytes.extend(unhex("00000000"));
    assert!(matches!(
        decode(&bytes, V4),
        Err(DecodeError::TooDeep { .. })
    ));
}

fn roundtrip(value: &Value, version: GodotVersion) -> Result<(), TestCaseError> {
    let bytes = encode(value, version).expect("strategy only makes encodable values");
    prop_assert_eq!(bytes.len() % 4, 0);
    let back = decode(&bytes, version).expect("our own encoding decodes");
    prop_assert_eq!(&back, value);
    prop_assert_eq!(encode(&back, version).expect("re-encodes"), bytes);
    Ok(())
}

proptest! {
    #[test]
    fn encode_decode_is_identity_godot4(value in crate::testing::value(V4, false)) {
        roundtrip(&value, V4)?;
        prop_assert_eq!(encoded_len_v4(&value), encode(&value, V4).expect("encodable").len());
    }

    #[test]
    fn encode_decode_is_identity_godot3(value in crate::testing::value(V3, false)) {
        roundtrip(&value, V3)?;
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        for version in [V3, V4] {
            if let Ok(value) = decode(&bytes, version) {
                // Whatever decodes must encode again (possibly more canonically).
                prop_assert!(encode(&value, version).is_ok());
            }
        }
    }

    #[test]
    fn mutated_encodings_never_panic(
        value in crate::testing::value(V4, false),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = encode(&value, V4).expect("encodable");
        for (index, byte) in flips {
            let at = index.index(bytes.len());
            bytes[at] = byte;
        }
        let _ = decode(&bytes, V4); // Only the absence of a panic is checked here.
    }
}
