//! Operator metrics: lock-free counters and histograms that every core and client task of a
//! server records into, and a scrape renders as Prometheus text (`/metrics` beside the
//! gateway), so an operator sees what `treesync bench` sees.
//!
//! # Invariants
//! - Recording never blocks and never allocates: one `fetch_add` per bucket and one for
//!   the sum (the hot path pays two uncontended atomic adds).
//! - A scrape is consistent on its own terms: `_count` is the sum of the bucket counts it
//!   read and the cumulative buckets never decrease with the bound; successive scrapes
//!   never see a bucket shrink, and once recorders stop, the counts equal the records
//!   (loom-checked in `loom_tests/tests/metrics.rs`). `_sum` may run a record ahead of or
//!   behind the buckets (Prometheus tolerates that; the buckets are what quantiles use).

use std::fmt::Write;

use crate::sync::{AtomicU64, Ordering};

/// Latency bucket bounds in µs (Prometheus `le` in seconds): where commit (~0.2–10 ms),
/// read and fdatasync (~0.3–2 ms here) times fall, with room for stalls.
pub const LATENCY_BOUNDS_US: &[u64] = &[
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

/// Size bucket bounds (records per WAL batch).
pub const SIZE_BOUNDS: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 1024];

/// A fixed-bucket histogram of `u64` samples (one more bucket than bounds: `+Inf`).
pub struct Histogram {
    bounds: &'static [u64],
    buckets: Vec<AtomicU64>,
    sum: AtomicU64,
}

/// What one scrape read of a `Histogram`: per-bucket (not cumulative) counts and the sum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistogramSnapshot {
    pub counts: Vec<u64>,
    pub sum: u64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

impl Histogram {
    /// `bounds` must be strictly increasing (asserted: a boundary bug, not input).
    pub fn new(bounds: &'static [u64]) -> Histogram {
        assert!(
            bounds.windows(2).all(|w| w[0] < w[1]),
            "histogram bounds must increase"
        );
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    /// Counts `sample` in the first bucket whose bound is at least `sample` (else `+Inf`).
    pub fn record(&self, sample: u64) {
        let at = self.bounds.partition_point(|bound| *bound < sample);
        debug_assert!(at < self.buckets.len());
        // Relaxed: each counter is monotone on its own; nothing else is published by it.
        self.buckets[at].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(sample, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            sum: self.sum.load(Ordering::Relaxed),
        }
    }

    /// Appends the histogram as Prometheus text; `scale` divides bounds and sum (1e6 turns
    /// µs into seconds, 1.0 keeps sizes).
    pub fn render(&self, out: &mut String, name: &str, help: &str, labels: &str, scale: f64) {
        let snap = self.snapshot();
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&snap.counts) {
            cumulative += count;
            let le = *bound as f64 / scale;
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        let total = snap.count();
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {total}");
        let braces = |l: &str| match l.is_empty() {
            true => String::new(),
            false => format!("{{{l}}}"),
        };
        let sum = snap.sum as f64 / scale;
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(out, "{name}_count{} {total}", braces(labels));
    }
}

/// A monotone counter.
pub struct Counter(AtomicU64);

impl Counter {
    pub fn new() -> Counter {
        Counter(AtomicU64::new(0))
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Default for Counter {
    fn default() -> Self {
        Counter::new()
    }
}

/// A value one writer sets and scrapes read (per core: the shards it leads).
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn new() -> Gauge {
        Gauge(AtomicU64::new(0))
    }
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Default for Gauge {
    fn default() -> Self {
        Gauge::new()
    }
}

/// One server's metrics (shared by its cores, its client port and its gateway).
pub struct Metrics {
    /// Write latency inside the server: proposal to outcome, µs.
    pub commit_us: Histogram,
    /// Linearizable read latency inside the server, µs.
    pub read_us: Histogram,
    /// WAL batch append including its fdatasync, µs.
    pub wal_write_us: Histogram,
    /// Records per WAL batch.
    pub wal_batch_records: Histogram,
    /// Requests answered with an error (refused, unavailable, lost).
    pub failed: Counter,
    /// Per core: the shards whose leader this server is.
    pub leaders: Vec<Gauge>,
    /// Per core: leaderships this server gained (each one an election it won).
    pub leaderships_gained: Vec<Counter>,
    /// Per core: replicas in total.
    pub replicas: Vec<Gauge>,
}

impl Metrics {
    pub fn new(cores: usize) -> Metrics {
        Metrics {
            commit_us: Histogram::new(LATENCY_BOUNDS_US),
            read_us: Histogram::new(LATENCY_BOUNDS_US),
            wal_write_us: Histogram::new(LATENCY_BOUNDS_US),
            wal_batch_records: Histogram::new(SIZE_BOUNDS),
            failed: Counter::new(),
            leaders: (0..cores).map(|_| Gauge::new()).collect(),
            leaderships_gained: (0..cores).map(|_| Counter::new()).collect(),
            replicas: (0..cores).map(|_| Gauge::new()).collect(),
        }
    }

    /// Prometheus text exposition (format 0.0.4); `queue_depths` are the cores' mailbox
    /// lengths at scrape time.
    pub fn render(&self, server: u64, queue_depths: &[usize]) -> String {
        let mut out = String::new();
        let id = format!("server=\"{server}\"");
        let us = 1e6;
        self.commit_us.render(
            &mut out,
            "treesync_commit_latency_seconds",
            "Write latency inside the server, proposal to outcome.",
            &id,
            us,
        );
        self.read_us.render(
            &mut out,
            "treesync_read_latency_seconds",
            "Linearizable read latency inside the server.",
            &id,
            us,
        );
        self.wal_write_us.render(
            &mut out,
            "treesync_wal_write_seconds",
            "WAL batch append including fdatasync.",
            &id,
            us,
        );
        self.wal_batch_records.render(
            &mut out,
            "treesync_wal_batch_records",
            "Records per WAL batch (group commit).",
            &id,
            1.0,
        );
        let _ = writeln!(out, "# HELP treesync_requests_failed_total Requests answered with an error.\n# TYPE treesync_requests_failed_total counter\ntreesync_requests_failed_total{{{id}}} {}", self.failed.get());
        let per_core = |out: &mut String, name: &str, kind: &str, help: &str, values: Vec<u64>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (core, v) in values.iter().enumerate() {
                let _ = writeln!(out, "{name}{{{id},core=\"{core}\"}} {v}");
            }
        };
        per_core(
            &mut out,
            "treesync_core_queue_depth",
            "gauge",
            "Messages waiting in the core's mailbox.",
            queue_depths.iter().map(|d| *d as u64).collect(),
        );
        per_core(
            &mut out,
            "treesync_shard_leaders",
            "gauge",
            "Shards of the core this server leads.",
            self.leaders.iter().map(Gauge::get).collect(),
        );
        per_core(
            &mut out,
            "treesync_shard_replicas",
            "gauge",
            "Replicas the core runs.",
            self.replicas.iter().map(Gauge::get).collect(),
        );
        per_core(
            &mut out,
            "treesync_leaderships_gained_total",
            "counter",
            "Elections this server won, per core.",
            self.leaderships_gained.iter().map(Counter::get).collect(),
        );
        out
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn samples_land_in_the_first_bucket_whose_bound_holds_them() {
        let h = Histogram::new(&[10, 100]);
        for sample in [0, 10, 11, 100, 101, 5_000] {
            h.record(sample);
        }
        let snap = h.snapshot();
        assert_eq!(snap.counts, vec![2, 2, 2]);
        assert_eq!(snap.sum, 5_222);
    }

    #[test]
    fn the_text_is_cumulative_and_its_count_is_the_inf_bucket() {
        let m = Metrics::new(2);
        for us in [40, 700, 700, 3_000_000] {
            m.commit_us.record(us);
        }
        m.leaders[1].set(3);
        m.leaderships_gained[0].add(2);
        let text = m.render(7, &[5, 0]);
        for line in [
            "treesync_commit_latency_seconds_bucket{server=\"7\",le=\"0.00005\"} 1",
            "treesync_commit_latency_seconds_bucket{server=\"7\",le=\"0.001\"} 3",
            "treesync_commit_latency_seconds_bucket{server=\"7\",le=\"+Inf\"} 4",
            "treesync_commit_latency_seconds_count{server=\"7\"} 4",
            "treesync_core_queue_depth{server=\"7\",core=\"0\"} 5",
            "treesync_shard_leaders{server=\"7\",core=\"1\"} 3",
            "treesync_leaderships_gained_total{server=\"7\",core=\"0\"} 2",
            "# TYPE treesync_wal_batch_records histogram",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing from\n{text}"
            );
        }
        let sum: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("treesync_commit_latency_seconds_sum{server=\"7\"} "))
            .expect("a sum")
            .parse()
            .expect("a number");
        assert!((sum - 3.00144).abs() < 1e-9, "{sum}");
    }

    #[test]
    #[should_panic(expected = "must increase")]
    fn unordered_bounds_are_refused() {
        let _ = Histogram::new(&[5, 5]);
    }
}
