//! Who waits on whose intent, on one shard leader (leader-local; a new leader starts empty
//! and waiters simply retry), and when to push (DESIGN.md "Transactions", 4).
//!
//! Deadlocks are broken by **wound-wait** instead of a waits-for graph: a waiter older than
//! the holder (lower `(ts, id)`) pushes at once (it "wounds": recovery of a holder that is
//! not yet implicitly committed aborts it), a younger one waits and pushes only after
//! `PUSH_DELAY_TICKS` (the holder may be dead: recovery then needs its heartbeat expired).
//! Every waits-for edge that stays goes from younger to older, so no cycle can last — the
//! design's "abort the younger" without collecting a graph across shards.
//!
//! # Invariants
//! - Bounded: at most `WAITERS_MAX` waiters per shard; past it a waiter is refused (and its
//!   transaction aborts or the plain write is answered `Locked`).
//! - A waiter is released exactly once: when its holder is resolved (`release`).

use std::collections::BTreeMap;

use super::TxnId;
use crate::hlc::Timestamp;

/// Waiters one shard leader keeps.
pub const WAITERS_MAX: usize = 4_096;
/// Ticks a younger waiter waits before pushing (the holder may simply be slow).
pub const PUSH_DELAY_TICKS: u64 = 5;

/// Who waits (the engine's handle for it) and how old it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waiter<H> {
    pub handle: H,
    /// `(ts, id)` for a transaction; a plain write has none and never wounds.
    pub age: Option<(Timestamp, TxnId)>,
    pub since_tick: u64,
}

#[derive(Debug)]
struct Holder<H> {
    age: (Timestamp, TxnId),
    waiters: Vec<Waiter<H>>,
    pushed: bool,
}

/// One shard's wait queue, generic over the engine's waiter handle.
#[derive(Debug)]
pub struct WaitQueue<H> {
    holders: BTreeMap<TxnId, Holder<H>>,
    len: usize,
}

impl<H> Default for WaitQueue<H> {
    fn default() -> Self {
        WaitQueue {
            holders: BTreeMap::new(),
            len: 0,
        }
    }
}

/// The queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl<H: Clone> WaitQueue<H> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `waiter` waits for `holder`'s intent. Returns whether the holder should be pushed
    /// now (wound-wait: the waiter is older).
    pub fn wait(
        &mut self,
        holder: TxnId,
        holder_ts: Timestamp,
        waiter: Waiter<H>,
    ) -> Result<bool, Full> {
        if self.len >= WAITERS_MAX {
            return Err(Full);
        }
        let entry = self.holders.entry(holder).or_insert(Holder {
            age: (holder_ts, holder),
            waiters: Vec::new(),
            pushed: false,
        });
        let wounds = waiter.age.is_some_and(|age| age < entry.age) && !entry.pushed;
        entry.pushed |= wounds;
        entry.waiters.push(waiter);
        self.len += 1;
        assert!(self.len <= WAITERS_MAX, "bounded");
        Ok(wounds)
    }

    /// Holders whose oldest waiter has waited `PUSH_DELAY_TICKS` and that were not pushed
    /// yet: push them now (each is returned once until `repush`).
    pub fn due(&mut self, now_tick: u64) -> Vec<(TxnId, Timestamp)> {
        let mut due = Vec::new();
        for (id, holder) in &mut self.holders {
            let waited = holder
                .waiters
                .iter()
                .any(|w| now_tick >= w.since_tick + PUSH_DELAY_TICKS);
            if waited && !holder.pushed {
                holder.pushed = true;
                due.push((*id, holder.age.0));
            }
        }
        due
    }

    /// A push found the holder alive: push it again once due.
    pub fn repush(&mut self, holder: TxnId, now_tick: u64) {
        if let Some(h) = self.holders.get_mut(&holder) {
            h.pushed = false;
            for w in &mut h.waiters {
                w.since_tick = now_tick;
            }
        }
    }

    /// `holder` was resolved here: its waiters, to retry.
    pub fn release(&mut self, holder: TxnId) -> Vec<Waiter<H>> {
        let waiters = self
            .holders
            .remove(&holder)
            .map(|h| h.waiters)
            .unwrap_or_default();
        assert!(self.len >= waiters.len(), "counted");
        self.len -= waiters.len();
        waiters
    }

    /// Everyone, released (the leader stepped down: waiters retry elsewhere).
    pub fn drain(&mut self) -> Vec<Waiter<H>> {
        self.len = 0;
        std::mem::take(&mut self.holders)
            .into_values()
            .flat_map(|h| h.waiters)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seq: u64) -> TxnId {
        TxnId { node: 1, seq }
    }

    fn ts(ms: u64) -> Timestamp {
        Timestamp::new(ms, 0)
    }

    fn waiter(handle: u32, age: Option<u64>, since_tick: u64) -> Waiter<u32> {
        Waiter {
            handle,
            age: age.map(|ms| (ts(ms), id(ms))),
            since_tick,
        }
    }

    #[test]
    fn an_older_waiter_wounds_at_once_and_a_younger_one_pushes_after_the_delay() {
        let mut queue = WaitQueue::default();
        assert_eq!(
            queue.wait(id(5), ts(5), waiter(1, Some(3), 0)),
            Ok(true),
            "older"
        );
        assert_eq!(
            queue.wait(id(5), ts(5), waiter(2, Some(4), 0)),
            Ok(false),
            "pushed once"
        );
        assert_eq!(
            queue.wait(id(7), ts(7), waiter(3, Some(9), 10)),
            Ok(false),
            "younger"
        );
        assert_eq!(
            queue.wait(id(7), ts(7), waiter(4, None, 10)),
            Ok(false),
            "plain"
        );
        assert!(queue.due(10 + PUSH_DELAY_TICKS - 1).is_empty());
        assert_eq!(queue.due(10 + PUSH_DELAY_TICKS), vec![(id(7), ts(7))]);
        assert!(queue.due(100).is_empty(), "once until repushed");
        queue.repush(id(7), 100);
        assert_eq!(queue.due(100 + PUSH_DELAY_TICKS), vec![(id(7), ts(7))]);
        let released: Vec<u32> = queue.release(id(7)).iter().map(|w| w.handle).collect();
        assert_eq!(released, vec![3, 4]);
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.drain().len(), 2);
        assert!(queue.is_empty());
    }

    #[test]
    fn the_queue_is_bounded() {
        let mut queue = WaitQueue::default();
        for i in 0..WAITERS_MAX {
            queue
                .wait(id(1), ts(1), waiter(i as u32, None, 0))
                .expect("room");
        }
        assert_eq!(queue.wait(id(1), ts(1), waiter(0, None, 0)), Err(Full));
    }
}
