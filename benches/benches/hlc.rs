//! HLC now() and update(), uncontended, with the system clock.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use treesync_actors::SystemClock;
use treesync_core::hlc::{Hlc, MAX_OFFSET_MS_DEFAULT};

fn bench(c: &mut Criterion) {
    let hlc = Hlc::new(SystemClock, MAX_OFFSET_MS_DEFAULT);
    c.bench_function("hlc/now", |b| b.iter(|| black_box(hlc.now())));
    let remote = hlc.now();
    c.bench_function("hlc/update", |b| b.iter(|| hlc.update(black_box(remote))));
}

criterion_group!(benches, bench);
criterion_main!(benches);
