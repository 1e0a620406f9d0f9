//! Hybrid Logical Clock (Kulkarni, Demirbas et al., "Logical Physical Clocks", 2014).
//!
//! A timestamp packs `(l, c)` into one `u64`: the high 48 bits are wall milliseconds `l`, the
//! low 16 bits the logical counter `c`. Packed this way, the paper's rules collapse into
//! integer maxima, so one `AtomicU64` holds a process's clock and a compare-and-swap loop
//! updates it without locks:
//! - `now()`:       `new = max(old + 1, pt << 16)`
//! - `update(r)`:   `new = max(max(old, r) + 1, pt << 16)`
//!
//! `old + 1` carries a full logical counter into the millisecond field: the clock then runs
//! ahead of wall time by 1 ms instead of wrapping or stalling, and never goes backwards.
//!
//! # Invariants (checked by `loom_tests/tests/hlc.rs` and `specs/HybridLogicalClock.tla`)
//! - Every timestamp returned by one `Hlc` is unique and, per thread, strictly increasing.
//! - `update(r)` returns a timestamp `> r`.
//! - A remote timestamp more than `max_offset_ms` ahead of local wall time is rejected and
//!   counted, never adopted.

use std::fmt;

use thiserror::Error;

use crate::sync::{AtomicU64, Ordering};

/// Bits of the logical counter.
pub const LOGICAL_BITS: u32 = 16;
/// Largest wall-clock millisecond value a timestamp can hold (year 10889).
pub const WALL_MS_MAX: u64 = (1 << (64 - LOGICAL_BITS)) - 1;
/// Default bound on clock offset between servers.
pub const MAX_OFFSET_MS_DEFAULT: u64 = 500;

/// A packed HLC timestamp; orders like `(wall_ms, logical)`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    pub const ZERO: Timestamp = Timestamp(0);

    pub fn new(wall_ms: u64, logical: u16) -> Timestamp {
        assert!(
            wall_ms <= WALL_MS_MAX,
            "wall clock {wall_ms} ms does not fit in 48 bits"
        );
        Timestamp(wall_ms << LOGICAL_BITS | u64::from(logical))
    }

    pub const fn from_u64(packed: u64) -> Timestamp {
        Timestamp(packed)
    }

    pub const fn as_u64(self) -> u64 {
        self.0
    }

    pub const fn wall_ms(self) -> u64 {
        self.0 >> LOGICAL_BITS
    }

    pub const fn logical(self) -> u16 {
        (self.0 & 0xFFFF) as u16
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.wall_ms(), self.logical())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The physical clock an HLC reads; injected so tests and the simulator control time.
pub trait WallClock {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

impl<C: WallClock + ?Sized> WallClock for &C {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
}

/// Why a remote timestamp was not adopted.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HlcError {
    #[error("remote timestamp {remote} is more than {max_offset_ms} ms ahead of local wall time {local_wall_ms} ms")]
    RemoteTooFarAhead {
        remote: Timestamp,
        local_wall_ms: u64,
        max_offset_ms: u64,
    },
}

/// A process's hybrid logical clock; shareable between threads.
pub struct Hlc<C> {
    state: AtomicU64,
    rejected_count: AtomicU64,
    clock: C,
    max_offset_ms: u64,
}

impl<C: WallClock> Hlc<C> {
    pub fn new(clock: C, max_offset_ms: u64) -> Hlc<C> {
        Hlc {
            state: AtomicU64::new(0),
            rejected_count: AtomicU64::new(0),
            clock,
            max_offset_ms,
        }
    }

    fn wall(&self) -> u64 {
        let pt = self.clock.now_ms();
        assert!(
            pt <= WALL_MS_MAX,
            "wall clock {pt} ms does not fit in 48 bits"
        );
        pt
    }

    /// A new timestamp for a local or send event.
    pub fn now(&self) -> Timestamp {
        let physical = self.wall() << LOGICAL_BITS;
        self.advance(|old| next_after(old, physical))
    }

    /// Merges a timestamp received from another process and returns one greater than both.
    pub fn update(&self, remote: Timestamp) -> Result<Timestamp, HlcError> {
        let pt = self.wall();
        if remote.wall_ms() > pt.saturating_add(self.max_offset_ms) {
            self.rejected_count.fetch_add(1, Ordering::Relaxed);
            let max_offset_ms = self.max_offset_ms;
            return Err(HlcError::RemoteTooFarAhead {
                remote,
                local_wall_ms: pt,
                max_offset_ms,
            });
        }
        let physical = pt << LOGICAL_BITS;
        let ts = self.advance(|old| next_after(old.max(remote.0), physical));
        assert!(
            ts > remote,
            "update must return a timestamp above the remote one"
        );
        Ok(ts)
    }

    /// The wall clock's reading now (ms), for observing peers' clock offsets.
    pub fn clock_now_ms(&self) -> u64 {
        self.wall()
    }

    /// The last timestamp handed out, without advancing.
    pub fn last(&self) -> Timestamp {
        Timestamp(self.state.load(Ordering::Acquire))
    }

    /// How many remote timestamps were rejected for being too far ahead.
    pub fn rejected_count(&self) -> u64 {
        self.rejected_count.load(Ordering::Relaxed)
    }

    fn advance(&self, next: impl Fn(u64) -> u64) -> Timestamp {
        let mut old = self.state.load(Ordering::Acquire);
        loop {
            let new = next(old);
            debug_assert!(new > old, "the clock never stands still or goes back");
            match self
                .state
                .compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Timestamp(new),
                Err(current) => old = current,
            }
        }
    }
}

/// `max(base + 1, physical)`: the HLC send/receive rule on packed timestamps.
fn next_after(base: u64, physical: u64) -> u64 {
    let bumped = base
        .checked_add(1)
        .expect("HLC exhausted: 2^48 ms of logical time used");
    bumped.max(physical)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    struct ManualClock(Cell<u64>);

    impl WallClock for ManualClock {
        fn now_ms(&self) -> u64 {
            self.0.get()
        }
    }

    #[test]
    fn now_follows_wall_time_and_counts_within_a_millisecond() {
        let hlc = Hlc::new(ManualClock(Cell::new(1000)), 500);
        assert_eq!(hlc.now(), Timestamp::new(1000, 0));
        assert_eq!(hlc.now(), Timestamp::new(1000, 1));
        hlc.clock.0.set(1005);
        assert_eq!(hlc.now(), Timestamp::new(1005, 0));
        hlc.clock.0.set(900); // the wall clock stepped back: the HLC does not
        assert_eq!(hlc.now(), Timestamp::new(1005, 1));
    }

    #[test]
    fn update_follows_the_paper_cases() {
        let hlc = Hlc::new(ManualClock(Cell::new(1000)), 500);
        // Remote ahead in l: adopt it, c = r.c + 1.
        assert_eq!(
            hlc.update(Timestamp::new(1200, 7)),
            Ok(Timestamp::new(1200, 8))
        );
        // Equal l: c = max(c, r.c) + 1.
        assert_eq!(
            hlc.update(Timestamp::new(1200, 3)),
            Ok(Timestamp::new(1200, 9))
        );
        // Remote behind: c + 1.
        assert_eq!(
            hlc.update(Timestamp::new(10, 0)),
            Ok(Timestamp::new(1200, 10))
        );
        // Wall clock ahead of both: c = 0.
        hlc.clock.0.set(2000);
        assert_eq!(
            hlc.update(Timestamp::new(1500, 4)),
            Ok(Timestamp::new(2000, 0))
        );
    }

    #[test]
    fn remote_beyond_max_offset_is_rejected_and_counted() {
        let hlc = Hlc::new(ManualClock(Cell::new(1000)), 500);
        let before = hlc.now();
        assert_eq!(
            hlc.update(Timestamp::new(1500, 0)).map(|t| t.wall_ms()),
            Ok(1500)
        );
        let err = hlc
            .update(Timestamp::new(1501, 0))
            .expect_err("too far ahead");
        assert!(matches!(
            err,
            HlcError::RemoteTooFarAhead {
                local_wall_ms: 1000,
                ..
            }
        ));
        assert_eq!(hlc.rejected_count(), 1);
        assert!(
            hlc.last() < Timestamp::new(1501, 0),
            "the rejected time was not adopted"
        );
        assert!(hlc.last() > before);
    }

    #[test]
    fn logical_overflow_carries_into_milliseconds() {
        let hlc = Hlc::new(ManualClock(Cell::new(1000)), 500);
        hlc.update(Timestamp::new(1000, u16::MAX - 1))
            .expect("within offset");
        assert_eq!(hlc.now(), Timestamp::new(1001, 0));
        assert_eq!(hlc.now(), Timestamp::new(1001, 1));
    }

    #[test]
    fn timestamps_order_like_pairs() {
        assert!(Timestamp::new(5, 0) > Timestamp::new(4, u16::MAX));
        assert_eq!(Timestamp::new(5, 3).wall_ms(), 5);
        assert_eq!(Timestamp::new(5, 3).logical(), 3);
        assert_eq!(
            Timestamp::from_u64(Timestamp::new(5, 3).as_u64()),
            Timestamp::new(5, 3)
        );
    }

    proptest::proptest! {
        /// Model test: any interleaving of wall-clock moves, now() and update() on one thread
        /// yields strictly increasing timestamps, each update above its remote, and l never
        /// more than max_offset ahead of the largest wall time seen (the paper's bound).
        #[test]
        fn monotonic_and_bounded(steps in proptest::collection::vec((0u8..3, 0u64..2000, 0u16..4), 1..200)) {
            let hlc = Hlc::new(ManualClock(Cell::new(0)), 500);
            let mut last = Timestamp::ZERO;
            let mut wall_max = 0;
            for (kind, x, c) in steps {
                let ts = match kind {
                    0 => { hlc.clock.0.set(x); wall_max = wall_max.max(x); continue; }
                    1 => hlc.now(),
                    _ => match hlc.update(Timestamp::new(x, c)) {
                        Ok(ts) => { proptest::prop_assert!(ts > Timestamp::new(x, c)); ts }
                        Err(_) => { proptest::prop_assert!(x > hlc.clock.0.get() + 500); continue; }
                    },
                };
                proptest::prop_assert!(ts > last);
                proptest::prop_assert!(ts.wall_ms() <= wall_max + 500 + 1);
                last = ts;
            }
        }
    }
}
