//! loom model of the metrics histogram (`treesync_core::metrics::Histogram`): cores record
//! into one histogram while a scrape reads it, every interleaving up to
//! LOOM_MAX_PREEMPTIONS.
//!
//! Proves, for every explored interleaving: successive scrapes never see a bucket shrink,
//! and once the recorders are done the buckets hold exactly what was recorded (no sample
//! lost or counted twice) and the sum is the samples' sum.
#![cfg(loom)]

use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;
use treesync_core::metrics::Histogram;

const BOUNDS: &[u64] = &[10, 100];

/// What the model drives: the real histogram, or a deliberately broken one.
trait Record: Send + Sync + 'static {
    fn record(&self, sample: u64);
    /// Per-bucket counts and the sum.
    fn read(&self) -> (Vec<u64>, u64);
}

impl Record for Histogram {
    fn record(&self, sample: u64) {
        Histogram::record(self, sample)
    }
    fn read(&self) -> (Vec<u64>, u64) {
        let snap = self.snapshot();
        (snap.counts, snap.sum)
    }
}

/// Counts with a load and a store instead of an atomic add: two cores recording into the
/// same bucket at once lose one sample. The model must catch this.
struct RacyHistogram {
    buckets: Vec<AtomicU64>,
    sum: AtomicU64,
}

impl Record for RacyHistogram {
    fn record(&self, sample: u64) {
        let at = BOUNDS.partition_point(|b| *b < sample);
        let n = self.buckets[at].load(Ordering::Relaxed);
        self.buckets[at].store(n + 1, Ordering::Relaxed);
        self.sum.fetch_add(sample, Ordering::Relaxed);
    }
    fn read(&self) -> (Vec<u64>, u64) {
        let counts = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        (counts, self.sum.load(Ordering::Relaxed))
    }
}

/// Recorders (one thread per list of samples) and one scraper reading twice meanwhile.
fn run<H: Record>(make: impl Fn() -> H + Send + Sync + 'static, recorders: Vec<Vec<u64>>) {
    loom::model(move || {
        let histogram = Arc::new(make());
        let handles: Vec<_> = recorders
            .clone()
            .into_iter()
            .map(|samples| {
                let histogram = histogram.clone();
                thread::spawn(move || {
                    for sample in samples {
                        histogram.record(sample);
                    }
                })
            })
            .collect();
        let (first, _) = histogram.read();
        let (second, _) = histogram.read();
        for (a, b) in first.iter().zip(&second) {
            assert!(
                b >= a,
                "a bucket shrank between scrapes: {first:?} then {second:?}"
            );
        }
        for handle in handles {
            handle.join().expect("no panic");
        }
        let (counts, sum) = histogram.read();
        let samples: Vec<u64> = recorders.iter().flatten().copied().collect();
        let mut expected = vec![0u64; BOUNDS.len() + 1];
        for s in &samples {
            expected[BOUNDS.partition_point(|b| b < s)] += 1;
        }
        assert_eq!(counts, expected, "every sample counted once");
        assert_eq!(sum, samples.iter().sum::<u64>(), "the sum of every sample");
        for (a, b) in second.iter().zip(&counts) {
            assert!(b >= a, "a bucket shrank after the recorders ended");
        }
    });
}

#[test]
fn two_cores_recording_into_the_same_bucket() {
    run(|| Histogram::new(BOUNDS), vec![vec![50], vec![50]]);
}

#[test]
fn two_cores_across_buckets_while_scraped() {
    run(|| Histogram::new(BOUNDS), vec![vec![5, 500], vec![50, 5]]);
}

#[test]
#[should_panic(expected = "every sample counted once")]
fn the_model_catches_a_histogram_that_loses_samples() {
    run(
        || RacyHistogram {
            buckets: (0..=BOUNDS.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        },
        vec![vec![50], vec![50]],
    );
}
