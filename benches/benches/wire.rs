//! rkyv framing: validated zero-copy access to an archived op, and encoding one.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use treesync_benches::position_update;
use treesync_core::op::ArchivedOp;
use treesync_core::{wire, Txn};

fn bench(c: &mut Criterion) {
    let txn = Txn::single(position_update("/root/World7/E512", 3.0));
    let frame = wire::encode_txn(&txn);
    c.bench_function("wire/access_txn_validated", |b| {
        b.iter(|| {
            let archived = wire::access_txn(black_box(&frame)).expect("valid");
            match &archived.ops[0] {
                ArchivedOp::Set { path, .. } => path.len(),
                _ => 0,
            }
        })
    });
    c.bench_function("wire/encode_txn", |b| {
        b.iter(|| wire::encode_txn(black_box(&txn)))
    });
    c.bench_function("wire/decode_txn", |b| {
        b.iter(|| wire::decode_txn(black_box(&frame)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
