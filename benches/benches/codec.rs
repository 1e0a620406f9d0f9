//! Godot Variant encode/decode (single-threaded, unpinned; the machine is noted in results).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use treesync_core::codec::{decode, encode, GodotVersion};
use treesync_core::Value;

fn update_message() -> Value {
    // The shape of a typical client write: {id, op, path, props: {position, velocity}}.
    Value::Dictionary(vec![
        (Value::String("id".into()), Value::Int(42)),
        (Value::String("op".into()), Value::String("set".into())),
        (
            Value::String("path".into()),
            Value::String("/root/World/Player1".into()),
        ),
        (
            Value::String("props".into()),
            Value::Dictionary(vec![
                (
                    Value::String("position".into()),
                    Value::Vector2([10.5, 20.25]),
                ),
                (
                    Value::String("velocity".into()),
                    Value::Vector2([1.0, -1.0]),
                ),
            ]),
        ),
    ])
}

fn bench(c: &mut Criterion) {
    let value = update_message();
    let bytes = encode(&value, GodotVersion::V4).expect("encodable");
    c.bench_function("codec/encode_set_message_v4", |b| {
        b.iter(|| encode(black_box(&value), GodotVersion::V4))
    });
    c.bench_function("codec/decode_set_message_v4", |b| {
        b.iter(|| decode(black_box(&bytes), GodotVersion::V4))
    });
    let big = Value::PackedVector2Array(vec![[1.0, 2.0]; 1024]);
    let big_bytes = encode(&big, GodotVersion::V4).expect("encodable");
    c.bench_function("codec/decode_packed_vector2_1024", |b| {
        b.iter(|| decode(black_box(&big_bytes), GodotVersion::V4))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
