//! Timestamp caches (DESIGN.md "Transactions", 5): per path, the highest timestamp of a
//! committed write (`IntentTable`'s write cache, replicated) or of a read (a leader's read
//! cache, leader-local). An intent at `ts` on a path whose cache holds a timestamp >= `ts`
//! would commit under a newer write or change a value a newer read already returned
//! (`WriteTooOld` in `specs/ParallelCommit.tla`), so it is refused and the transaction
//! retries above.
//!
//! # Invariants
//! - Bounded: at most `PATHS_MAX` paths; evicting one raises `low_water` to at least its
//!   timestamp, so `max_over` never answers lower than the truth (it may answer higher, which
//!   only costs a retry).
//! - `max_over(p)` covers p's ancestors and descendants too: a delete of `/root/w` at t
//!   excludes an intent at t' <= t on `/root/w/a`.

use std::collections::BTreeMap;

use crate::hlc::Timestamp;
use crate::op::is_within;

/// Paths a cache remembers individually before it folds the oldest into its low-water mark.
pub const PATHS_MAX: usize = 65_536;

/// Highest timestamp per path, with a floor for everything forgotten.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathTimestamps {
    by_path: BTreeMap<String, Timestamp>,
    low_water: Timestamp,
}

impl PathTimestamps {
    /// An empty cache that answers at least `low_water` for every path (a new leader's read
    /// cache starts at its clock: reads served by the old leader were below it).
    pub fn new(low_water: Timestamp) -> PathTimestamps {
        PathTimestamps {
            by_path: BTreeMap::new(),
            low_water,
        }
    }

    pub fn low_water(&self) -> Timestamp {
        self.low_water
    }

    pub fn len(&self) -> usize {
        self.by_path.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }

    /// Records `ts` on `path` (a lower timestamp than the one held changes nothing).
    pub fn record(&mut self, path: &str, ts: Timestamp) {
        if ts <= self.low_water {
            return;
        }
        let held = self.by_path.entry(path.to_owned()).or_insert(ts);
        *held = (*held).max(ts);
        if self.by_path.len() > PATHS_MAX {
            self.evict_oldest();
        }
        assert!(self.by_path.len() <= PATHS_MAX, "the cache is bounded");
    }

    /// Folds the older half of the paths into the low-water mark: amortised O(log n) per
    /// record, where evicting one path at a time would scan the map on every write.
    fn evict_oldest(&mut self) {
        let mut stamps: Vec<Timestamp> = self.by_path.values().copied().collect();
        let middle = stamps.len() / 2;
        let (_, cut, _) = stamps.select_nth_unstable(middle);
        let cut = *cut;
        self.by_path.retain(|_, ts| *ts > cut);
        self.low_water = self.low_water.max(cut);
    }

    /// The highest timestamp recorded on `path`, an ancestor of it or a descendant.
    pub fn max_over(&self, path: &str) -> Timestamp {
        let mut max = self.low_water;
        let mut ancestor = path;
        loop {
            if let Some(ts) = self.by_path.get(ancestor) {
                max = max.max(*ts);
            }
            match ancestor.rfind('/') {
                Some(cut) if cut > 0 => ancestor = &ancestor[..cut],
                _ => break,
            }
        }
        let below = format!("{path}/");
        for (p, ts) in self.by_path.range(below.clone()..) {
            if !p.starts_with(&below) {
                break;
            }
            debug_assert!(is_within(p, path));
            max = max.max(*ts);
        }
        max
    }

    /// Every remembered path (ordered) and the floor: what a snapshot carries.
    pub fn entries(&self) -> impl Iterator<Item = (&str, Timestamp)> {
        self.by_path.iter().map(|(p, ts)| (p.as_str(), *ts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(ms: u64) -> Timestamp {
        Timestamp::new(ms, 0)
    }

    #[test]
    fn a_path_sees_its_ancestors_and_descendants_but_not_its_siblings() {
        let mut cache = PathTimestamps::default();
        cache.record("/root/w", ts(5));
        cache.record("/root/w/a/b", ts(9));
        cache.record("/root/w/ab", ts(20));
        assert_eq!(
            cache.max_over("/root/w/a"),
            ts(9),
            "ancestor 5, descendant 9"
        );
        assert_eq!(cache.max_over("/root/w/c"), ts(5));
        assert_eq!(cache.max_over("/root/v"), Timestamp::ZERO);
        assert_eq!(cache.max_over("/root/w"), ts(20));
    }

    #[test]
    fn eviction_never_lowers_an_answer() {
        let mut cache = PathTimestamps::default();
        let count = PATHS_MAX as u64 + 1;
        for i in 0..count {
            cache.record(&format!("/root/w/e{i}"), ts(i + 1));
        }
        assert!(cache.len() <= PATHS_MAX / 2 + 1, "the older half went");
        let floor = cache.low_water();
        assert!(floor >= ts(count / 2) && floor < ts(count), "{floor}");
        for i in [0, count / 2, count - 1] {
            assert!(
                cache.max_over(&format!("/root/w/e{i}")) >= ts(i + 1),
                "e{i}"
            );
        }
        assert_eq!(cache.max_over("/root/other"), floor);
        let before = cache.len();
        cache.record("/root/w/late", floor);
        assert_eq!(cache.len(), before, "at or below the floor adds nothing");
    }
}
