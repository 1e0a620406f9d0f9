//! loom model of the lock-free HLC (`treesync_core::hlc`): concurrent `now()` and `update()`
//! from 2–3 threads, every interleaving up to LOOM_MAX_PREEMPTIONS.
//!
//! Proves, for every explored interleaving: all returned timestamps are unique, each thread's
//! timestamps strictly increase, and `update(r)` returns a value above `r`.
#![cfg(loom)]

use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;
use treesync_core::hlc::{Hlc, Timestamp, WallClock};

/// A wall clock that advances by `step_ms` at every reading (0: time stands still, which
/// forces the logical-counter path).
struct SteppingClock {
    now_ms: AtomicU64,
    step_ms: u64,
}

impl WallClock for SteppingClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.fetch_add(self.step_ms, Ordering::Relaxed)
    }
}

/// What the model drives: the real HLC, or a deliberately broken one.
trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
    fn update(&self, remote: Timestamp) -> Timestamp;
    fn last(&self) -> Timestamp;
}

impl Clock for Hlc<SteppingClock> {
    fn now(&self) -> Timestamp {
        Hlc::now(self)
    }
    fn update(&self, remote: Timestamp) -> Timestamp {
        Hlc::update(self, remote).expect("remote within max offset")
    }
    fn last(&self) -> Timestamp {
        Hlc::last(self)
    }
}

/// The same rules with a load and a store instead of compare-and-swap: two threads can read
/// the same old value and hand out the same timestamp. The model must catch this.
struct RacyHlc(AtomicU64);

impl Clock for RacyHlc {
    fn now(&self) -> Timestamp {
        let next = self.0.load(Ordering::Acquire) + 1;
        self.0.store(next, Ordering::Release);
        Timestamp::from_u64(next)
    }
    fn update(&self, remote: Timestamp) -> Timestamp {
        let next = self.0.load(Ordering::Acquire).max(remote.as_u64()) + 1;
        self.0.store(next, Ordering::Release);
        Timestamp::from_u64(next)
    }
    fn last(&self) -> Timestamp {
        Timestamp::from_u64(self.0.load(Ordering::Acquire))
    }
}

#[derive(Clone, Copy)]
enum Call {
    Now,
    Update(Timestamp),
}

fn run(step_ms: u64, threads: Vec<Vec<Call>>) {
    run_with(
        move || {
            Hlc::new(
                SteppingClock {
                    now_ms: AtomicU64::new(1000),
                    step_ms,
                },
                500,
            )
        },
        threads,
    );
}

fn run_with<C: Clock>(make: impl Fn() -> C + Send + Sync + 'static, threads: Vec<Vec<Call>>) {
    loom::model(move || {
        let hlc = Arc::new(make());
        let handles: Vec<_> = threads
            .clone()
            .into_iter()
            .map(|calls| {
                let hlc = hlc.clone();
                thread::spawn(move || {
                    let mut seen = Vec::new();
                    for call in calls {
                        let ts = match call {
                            Call::Now => hlc.now(),
                            Call::Update(remote) => {
                                let ts = hlc.update(remote);
                                assert!(ts > remote, "update({remote:?}) returned {ts:?}");
                                ts
                            }
                        };
                        if let Some(last) = seen.last() {
                            assert!(ts > *last, "per-thread order: {ts:?} after {last:?}");
                        }
                        seen.push(ts);
                    }
                    seen
                })
            })
            .collect();
        let mut all: Vec<Timestamp> = handles
            .into_iter()
            .flat_map(|h| h.join().expect("no panic"))
            .collect();
        let count = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), count, "every timestamp is unique");
        assert!(
            hlc.last() >= *all.last().expect("some calls"),
            "the clock holds the largest"
        );
    });
}

#[test]
fn two_threads_now_and_update_frozen_clock() {
    let ahead = Timestamp::new(1200, 5);
    run(
        0,
        vec![
            vec![Call::Now, Call::Update(ahead)],
            vec![Call::Update(Timestamp::new(1000, 3)), Call::Now],
        ],
    );
}

#[test]
fn two_threads_advancing_clock() {
    run(
        1,
        vec![
            vec![Call::Now, Call::Now],
            vec![Call::Update(Timestamp::new(1001, 9)), Call::Now],
        ],
    );
}

#[test]
fn three_threads_mixed() {
    let remote = Timestamp::new(1000, u16::MAX); // forces a logical carry into the next ms
    run(
        0,
        vec![
            vec![Call::Now],
            vec![Call::Update(remote)],
            vec![Call::Now, Call::Now],
        ],
    );
}

#[test]
#[should_panic(expected = "every timestamp is unique")]
fn the_model_catches_a_racy_clock() {
    run_with(
        || RacyHlc(AtomicU64::new(0)),
        vec![vec![Call::Now], vec![Call::Now]],
    );
}
