//! Tree state machine: Set on an existing node, Create+Delete, snapshot.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use treesync_benches::{game_tree, position_update};
use treesync_core::{Op, Prop, Value};

fn bench(c: &mut Criterion) {
    let mut tree = game_tree(10, 1000);
    let mut x = 0.0f32;
    c.bench_function("tree/set_existing_10k_nodes", |b| {
        b.iter(|| {
            x += 1.0;
            tree.apply_op(black_box(&position_update("/root/World7/E512", x)))
                .expect("applies")
        })
    });
    let create = Op::Create {
        parent: "/root/World3".into(),
        name: "Bullet".into(),
        class: "Area2D".into(),
        props: vec![Prop::new("position", Value::Vector2([1.0, 2.0]))],
    };
    let delete = Op::Delete {
        path: "/root/World3/Bullet".into(),
    };
    c.bench_function("tree/create_then_delete_10k_nodes", |b| {
        b.iter(|| {
            tree.apply_op(black_box(&create)).expect("creates");
            tree.apply_op(black_box(&delete)).expect("deletes");
        })
    });
    let small = game_tree(1, 1000);
    c.bench_function("tree/snapshot_bytes_1k_nodes", |b| {
        b.iter(|| small.snapshot_bytes())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
