//! The intents a participant shard holds: provisional writes of transactions, each at its
//! transaction's timestamp, locking what they touch until resolved. This is replicated
//! state: every method is called while applying a committed log entry, with that entry's
//! HLC as `now`, so every replica computes the same table.
//!
//! Actions of `specs/ParallelCommit.tla`: `write_intent` is `WriteIntent` (or `WriteFails`
//! when it refuses), `resolve` is `Resolve`, `recover_check` is `RecoverCheck`.
//!
//! # Invariants
//! - At most one intent per transaction per shard; no two intents hold conflicting locks.
//! - A transaction the shard *closed* (resolved here, or whose write recovery prevented
//!   here) never gets an intent again: that is what makes a prevented write stay missing
//!   (`RecoverCheck`) and a late, resent intent harmless after resolution.
//! - A closed transaction is forgotten only once its timestamp is below `horizon`, and any
//!   intent at or below `horizon` is refused as too old: forgetting lets nothing in.
//! - An intent is validated against the tree when written (preconditions included) and
//!   applies when resolved committed: between the two its locks exclude every conflicting
//!   write, and `reserved_nodes` keeps room for its creates under `nodes_max`.

use std::collections::BTreeMap;

use thiserror::Error;

use super::locks::{any_conflict, txn_locks, Lock};
use super::ts_cache::PathTimestamps;
use super::{TxnId, TxnMeta};
use crate::hlc::Timestamp;
use crate::op::Txn;
use crate::tree::{Tree, TreeError};

/// Why a shard refused an intent or a plain write (`WriteFails`).
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum IntentRefusal {
    #[error("transaction {txn}'s write here was prevented by recovery or already resolved")]
    Closed { txn: TxnId },
    #[error("a newer write ({existing}) is on a path the write at {ts} locks")]
    TooOld { ts: Timestamp, existing: Timestamp },
    #[error("the write at {ts} is at or below the shard's closed timestamp {closed}")]
    BelowClosed { ts: Timestamp, closed: Timestamp },
    #[error("transaction {} holds a conflicting intent", holder.id)]
    Locked { holder: TxnMeta },
    #[error("the shard has no room: {nodes} nodes live or reserved, at most {max}")]
    Full { nodes: usize, max: usize },
    #[error(transparent)]
    Rejected(#[from] TreeError),
}

/// A provisional write: this shard's part of a transaction.
#[derive(Clone, Debug, PartialEq)]
pub struct Intent {
    pub meta: TxnMeta,
    pub txn: Txn,
    pub locks: Vec<Lock>,
}

/// What recovery learned about one listed write (`RecoverCheck`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// The intent is here (or was resolved committed here).
    Found,
    /// It was missing and is now prevented: it can never be written.
    Prevented,
}

/// How a transaction left this shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Closed {
    Committed,
    Aborted,
    Prevented,
}

/// One shard's intents and the transactions it closed.
#[derive(Clone, Debug, Default)]
pub struct IntentTable {
    intents: BTreeMap<TxnId, Intent>,
    closed: BTreeMap<TxnId, (Timestamp, Closed)>,
    /// Committed writes' timestamps (resolved intents and plain writes) per locked path.
    writes: PathTimestamps,
    /// Intents and closed entries at or below this are refused / were forgotten.
    horizon: Timestamp,
    reserved_nodes: usize,
}

impl IntentTable {
    pub fn len(&self) -> usize {
        self.intents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.intents.is_empty()
    }

    pub fn intents(&self) -> impl Iterator<Item = &Intent> {
        self.intents.values()
    }

    pub fn get(&self, txn: &TxnId) -> Option<&Intent> {
        self.intents.get(txn)
    }

    /// The oldest unresolved intent's timestamp (what holds a resolved timestamp back).
    pub fn oldest(&self) -> Option<Timestamp> {
        self.intents.values().map(|i| i.meta.ts).min()
    }

    /// The highest committed write timestamp over `locks` (the write timestamp cache).
    pub fn last_write(&self, locks: &[Lock]) -> Timestamp {
        locks
            .iter()
            .map(|l| self.writes.max_over(l.path()))
            .max()
            .unwrap_or(self.writes.low_water())
            .max(self.horizon)
    }

    /// The intent whose locks conflict with `locks`, if any (`a write meets an intent`).
    pub fn blocking(&self, locks: &[Lock]) -> Option<&Intent> {
        self.intents
            .values()
            .find(|i| any_conflict(&i.locks, locks))
    }

    /// Whether transaction `id` holds an intent here.
    pub fn holds(&self, id: TxnId) -> bool {
        self.intents.contains_key(&id)
    }

    /// The timestamp of the oldest unresolved intent, if any (what holds a resolved
    /// timestamp back).
    pub fn oldest_ts(&self) -> Option<Timestamp> {
        self.intents.values().map(|i| i.meta.ts).min()
    }

    /// `WriteIntent(t, k)`, or `WriteFails(t, k)` with the reason. Idempotent: a resent copy
    /// of an intent already held is accepted again.
    pub fn write_intent(
        &mut self,
        meta: TxnMeta,
        txn: &Txn,
        tree: &mut Tree,
        now: Timestamp,
    ) -> Result<(), IntentRefusal> {
        self.forget_closed(now);
        if let Some(held) = self.intents.get(&meta.id) {
            assert_eq!(held.meta, meta, "one transaction, one timestamp and anchor");
            return Ok(());
        }
        if self.closed.contains_key(&meta.id) {
            return Err(IntentRefusal::Closed { txn: meta.id });
        }
        let locks = txn_locks(txn);
        if let Some(holder) = self.blocking(&locks) {
            return Err(IntentRefusal::Locked {
                holder: holder.meta,
            });
        }
        let existing = self.last_write(&locks);
        if existing >= meta.ts {
            return Err(IntentRefusal::TooOld {
                ts: meta.ts,
                existing,
            });
        }
        self.check_room(txn, tree)?;
        tree.check_txn(txn)?;
        self.reserved_nodes += Tree::nodes_created_by(txn);
        let intent = Intent {
            meta,
            txn: txn.clone(),
            locks,
        };
        self.intents.insert(meta.id, intent);
        Ok(())
    }

    /// Whether a plain (single-shard, non-transactional) write may apply now: no intent
    /// locks what it touches and there is room for it beside the reserved creates. On `Ok`
    /// the caller applies it to the tree and then calls `record_plain_write`.
    pub fn admit_plain(&self, txn: &Txn, tree: &Tree) -> Result<Vec<Lock>, IntentRefusal> {
        let locks = txn_locks(txn);
        if let Some(holder) = self.blocking(&locks) {
            return Err(IntentRefusal::Locked {
                holder: holder.meta,
            });
        }
        self.check_room(txn, tree)?;
        Ok(locks)
    }

    /// Records a plain write that applied at `hlc` in the write timestamp cache.
    pub fn record_plain_write(&mut self, locks: &[Lock], hlc: Timestamp) {
        for lock in locks {
            self.writes.record(lock.path(), hlc);
        }
    }

    fn check_room(&self, txn: &Txn, tree: &Tree) -> Result<(), IntentRefusal> {
        let nodes = tree.len() + self.reserved_nodes + Tree::nodes_created_by(txn);
        let max = tree.limits().nodes_max;
        if nodes > max {
            return Err(IntentRefusal::Full { nodes, max });
        }
        Ok(())
    }

    /// `Resolve(t, k)`: applies a committed transaction's intent to the tree, or drops an
    /// aborted one's; either way the transaction is closed here. Returns the intent it
    /// resolved (`None`: none was here — resolving also closes, so a late intent is refused).
    pub fn resolve(
        &mut self,
        txn: TxnId,
        commit: bool,
        tree: &mut Tree,
        now: Timestamp,
    ) -> Option<Intent> {
        let intent = self.intents.remove(&txn);
        let outcome = if commit {
            Closed::Committed
        } else {
            Closed::Aborted
        };
        let ts = intent.as_ref().map_or(now, |i| i.meta.ts);
        self.closed.entry(txn).or_insert((ts, outcome));
        let intent = intent?;
        let created = Tree::nodes_created_by(&intent.txn);
        assert!(
            self.reserved_nodes >= created,
            "reservations are counted per intent"
        );
        self.reserved_nodes -= created;
        if commit {
            tree.apply_txn(&intent.txn).unwrap_or_else(|e| {
                panic!("intent of {txn} was validated and locked, yet does not apply: {e}")
            });
            for lock in &intent.locks {
                self.writes.record(lock.path(), intent.meta.ts);
            }
        }
        Some(intent)
    }

    /// `RecoverCheck(t, k)`: is `meta`'s write here? If not, prevent it, atomically.
    pub fn recover_check(&mut self, meta: TxnMeta, now: Timestamp) -> Check {
        self.forget_closed(now);
        if self.intents.contains_key(&meta.id) {
            return Check::Found;
        }
        match self.closed.get(&meta.id) {
            Some((_, Closed::Committed)) => Check::Found,
            Some(_) => Check::Prevented,
            None if meta.ts <= self.horizon => Check::Prevented, // refused as too old anyway
            None => {
                self.closed.insert(meta.id, (meta.ts, Closed::Prevented));
                Check::Prevented
            }
        }
    }

    /// Forgets closed transactions older than `CLOSED_TTL_MS` of log time, raising the
    /// horizon above them first.
    fn forget_closed(&mut self, now: Timestamp) {
        let Some(cutoff) = super::raise_horizon(&mut self.horizon, now) else {
            return;
        };
        self.closed.retain(|_, (ts, _)| *ts > cutoff);
        debug_assert!(self.closed.values().all(|(ts, _)| *ts > self.horizon));
    }

    /// Checks the invariants in the module doc (O(n²) in intents: tests and the simulator).
    pub fn check_invariants(&self) {
        let intents: Vec<&Intent> = self.intents.values().collect();
        for (i, a) in intents.iter().enumerate() {
            assert!(
                !self.closed.contains_key(&a.meta.id),
                "{} is open and closed",
                a.meta.id
            );
            for b in &intents[i + 1..] {
                assert!(
                    !any_conflict(&a.locks, &b.locks),
                    "{} and {} hold conflicting locks",
                    a.meta.id,
                    b.meta.id
                );
            }
        }
        let reserved: usize = intents.iter().map(|i| Tree::nodes_created_by(&i.txn)).sum();
        assert_eq!(
            reserved, self.reserved_nodes,
            "reservations match the intents"
        );
    }
}

impl IntentTable {
    /// The snapshot form (see `step::TablesWire`).
    pub(super) fn to_wire(&self, wire: &mut super::step::TablesWire) {
        use super::step::IntentWire;
        wire.intents = self
            .intents
            .values()
            .map(|i| IntentWire {
                meta: i.meta.into(),
                txn: i.txn.clone(),
            })
            .collect();
        wire.closed = self
            .closed
            .iter()
            .map(|(id, (ts, how))| {
                let code = match how {
                    Closed::Committed => 0,
                    Closed::Aborted => 1,
                    Closed::Prevented => 2,
                };
                (*id, ts.as_u64(), code)
            })
            .collect();
        wire.writes = self
            .writes
            .entries()
            .map(|(p, ts)| (p.to_owned(), ts.as_u64()))
            .collect();
        wire.writes_low_water = self.writes.low_water().as_u64();
        wire.intents_horizon = self.horizon.as_u64();
    }

    /// Rebuilds the table from a snapshot (from the WAL or a peer: validated, never
    /// trusted); locks and reservations are recomputed.
    pub(super) fn from_wire(wire: &super::step::TablesWire) -> Result<IntentTable, String> {
        let mut table = IntentTable {
            writes: PathTimestamps::new(Timestamp::from_u64(wire.writes_low_water)),
            horizon: Timestamp::from_u64(wire.intents_horizon),
            ..IntentTable::default()
        };
        for (path, ts) in &wire.writes {
            table.writes.record(path, Timestamp::from_u64(*ts));
        }
        for (id, ts, code) in &wire.closed {
            let how = match code {
                0 => Closed::Committed,
                1 => Closed::Aborted,
                2 => Closed::Prevented,
                other => return Err(format!("closed transaction {id}: unknown kind {other}")),
            };
            table.closed.insert(*id, (Timestamp::from_u64(*ts), how));
        }
        for intent in &wire.intents {
            let meta: TxnMeta = intent.meta.into();
            let locks = txn_locks(&intent.txn);
            if table.blocking(&locks).is_some() || table.closed.contains_key(&meta.id) {
                return Err(format!("intent of {} conflicts in the snapshot", meta.id));
            }
            table.reserved_nodes += Tree::nodes_created_by(&intent.txn);
            let previous = table.intents.insert(
                meta.id,
                Intent {
                    meta,
                    txn: intent.txn.clone(),
                    locks,
                },
            );
            if previous.is_some() {
                return Err(format!("two intents of {}", meta.id));
            }
        }
        Ok(table)
    }
}
