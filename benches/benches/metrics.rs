//! The metrics a request records on the hot path (`core::metrics`): one latency sample into
//! the shared histogram, and a scrape's text rendering of a server with 8 cores.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use treesync_core::metrics::Metrics;

fn bench(c: &mut Criterion) {
    let metrics = Metrics::new(8);
    let mut sample = 0u64;
    c.bench_function("metrics/record", |b| {
        b.iter(|| {
            sample = (sample + 137) % 20_000;
            metrics.commit_us.record(black_box(sample));
        })
    });
    let depths = [3usize; 8];
    c.bench_function("metrics/render_8_cores", |b| {
        b.iter(|| black_box(metrics.render(1, &depths)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
