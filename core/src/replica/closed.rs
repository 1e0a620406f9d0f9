//! Closed and resolved timestamps (DESIGN.md "Consistent cuts across shards").
//!
//! A leader **closes** timestamps: each entry it proposes carries, beside its own HLC, a
//! promise `closed` that nothing at or below it will be proposed after the entry. The promise
//! is part of the entry (its context), so every replica learns it with the log, and a new
//! leader inherits every promise its predecessors committed (Leader Completeness) — unlike a
//! side channel, which a new leader with a slower clock could break (why the promise lives in
//! the log: `docs/design/consistent-cuts.md`). A shard with no writes gets an empty *close
//! entry* every `close_every_ms`, so its closed timestamp keeps up with the clock.
//!
//! A replica's **resolved timestamp** is `min(closed, oldest unresolved intent's ts - 1)`:
//! every change at or below it is applied here and final.
//!
//! # Invariants
//! - `closed` (the maximum promise among applied entries) never decreases, and every entry
//!   applied after the one that made a promise has an HLC above it: a plain write's HLC is
//!   above its own entry's promise (`propose_stamped` asserts it) and HLCs grow along the log.
//! - An intent at or below `closed` is refused at apply (`IntentRefusal::BelowClosed`), a
//!   deterministic check every replica makes alike; its coordinator retries higher. A
//!   leader refuses one at or below its side promises or its floor before proposing it
//!   (`Replica::refuse_below_side`), so none enters the log.
//! - A leader stamps above its floor: the greatest `lease` among the entries in its log
//!   when its term began, which includes every committed one (Leader Completeness), so no
//!   side promise any earlier leader made (each at most a committed lease) is undercut.
//! - Hence `resolved_ts` never decreases while the replica runs, and no change with a
//!   timestamp at or below a resolved timestamp it reported is applied afterwards.

use super::Replica;
use crate::hlc::Timestamp;
use raft::prelude::Entry;

/// Bytes of an entry's context: its HLC, the closed timestamp it promises, then its lease
/// (each u64 little-endian). A leader's empty entry carries none (all read as zero).
pub(super) const CONTEXT_BYTES: usize = 24;

/// Default distance a leader keeps its promise below its clock: an intent whose
/// transaction took longer than this from its timestamp to reach the shard is refused and
/// retried, so it must be above a loaded transaction's planning time.
pub const CLOSED_LAG_MS_DEFAULT: u64 = 50;
/// Default milliseconds between an idle shard leader's side promises.
pub const CLOSE_EVERY_MS_DEFAULT: u64 = 25;
/// Default lease: how far above its clock a leader's entries let it promise by side message.
/// A new leader stamps above the last lease (up to this much ahead of its clock after a
/// failover, which delays merged pushes by as much once); an idle leader renews it with an
/// empty entry every ~half of it.
pub const LEASE_MS_DEFAULT: u64 = 1_000;

/// The context of an entry stamped `hlc` that promises `closed` and grants `lease`.
pub(super) fn context(hlc: Timestamp, closed: Timestamp, lease: Timestamp) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(CONTEXT_BYTES);
    for word in [hlc, closed, lease] {
        bytes.extend_from_slice(&word.as_u64().to_le_bytes());
    }
    bytes
}

/// The HLC an entry carries in its context (zero for a leader's empty entry).
pub fn entry_hlc(entry: &Entry) -> Timestamp {
    word(&entry.context, 0)
}

/// The closed timestamp an entry promises (zero when it carries none).
pub fn entry_closed(entry: &Entry) -> Timestamp {
    word(&entry.context, 8)
}

/// The lease an entry grants its leader's side promises (zero when it carries none).
pub fn entry_lease(entry: &Entry) -> Timestamp {
    word(&entry.context, 16)
}

fn word(context: &[u8], at: usize) -> Timestamp {
    let bytes: Option<[u8; 8]> = context.get(at..at + 8).and_then(|b| b.try_into().ok());
    Timestamp::from_u64(bytes.map_or(0, u64::from_le_bytes))
}

/// The timestamp just below `ts` (zero stays zero).
pub fn just_below(ts: Timestamp) -> Timestamp {
    Timestamp::from_u64(ts.as_u64().saturating_sub(1))
}

impl Replica {
    /// The greatest closed timestamp this replica knows: among applied entries, or by a side
    /// promise (made as leader, or adopted as follower: `replica::side`).
    pub fn closed_ts(&self) -> Timestamp {
        self.closed.max(self.side.closed)
    }

    /// `min(closed, oldest unresolved intent's ts - 1)`: every change at or below it is
    /// applied on this replica and final.
    pub fn resolved_ts(&self) -> Timestamp {
        let closed = self.closed_ts();
        match self.tables.intents.oldest_ts() {
            Some(oldest) => closed.min(just_below(oldest)),
            None => closed,
        }
    }

    /// The promise an entry stamped `stamp` makes when the clock reads `now`: `lag` below
    /// the clock, at least every side promise made and the floor, and below the entry.
    pub(super) fn promise(&self, stamp: Timestamp, now: Timestamp) -> Timestamp {
        let lagged = Timestamp::new(now.wall_ms().saturating_sub(self.closed_lag_ms), 0);
        let floor = self.side.floor_if_current(self.term());
        lagged
            .max(self.side.closed)
            .max(floor)
            .min(just_below(stamp))
    }

    /// The lease an entry proposed when the clock reads `now` grants: `lease_ms` ahead.
    pub(super) fn lease(&mut self, now: Timestamp) -> Timestamp {
        let lease = Timestamp::new(now.wall_ms().saturating_add(self.side.lease_ms), 0);
        self.side.lease_proposed = self.side.lease_proposed.max(lease);
        self.side.lease_proposed
    }

    /// Records what applying `entry` promised and granted; returns the closed timestamp that
    /// held before it.
    pub(super) fn learn_closed(&mut self, entry: &Entry) -> Timestamp {
        let before = self.closed;
        self.closed = self.closed.max(entry_closed(entry));
        self.side.lease_applied = self.side.lease_applied.max(entry_lease(entry));
        before
    }

    /// A leader whose applied lease runs out within half a lease renews it with an empty
    /// entry (which changes nothing and answers nobody): idle shards append one every
    /// ~`lease_ms / 2` and close by side promise in between (`replica::side`).
    pub(super) fn renew_lease(&mut self, now: Timestamp) {
        if !self.is_leader() {
            return;
        }
        // One close entry in flight at most: one proposed behind uncommitted entries renews
        // nothing sooner (it commits after them), and under load a pile of them only adds
        // fsyncs and appends to the backlog (24 concurrent 1 MiB writes met election storms).
        let log = &self.raw.raft.raft_log;
        if log.committed < log.last_index() {
            return;
        }
        let due = self
            .side
            .lease_applied
            .wall_ms()
            .saturating_sub(self.side.lease_ms / 2);
        if now.wall_ms() < due {
            return;
        }
        let stamp = self.next_stamp(now);
        let closed = self.promise(stamp, now);
        let lease = self.lease(now);
        if self
            .raw
            .propose(context(stamp, closed, lease), Vec::new())
            .is_ok()
        {
            self.max_log_hlc = stamp;
            self.close_entries += 1;
        }
    }

    /// The HLC a proposal made when the clock reads `now` gets: above every one in the log,
    /// every side promise and the floor of this term.
    pub(super) fn next_stamp(&mut self, now: Timestamp) -> Timestamp {
        let inject = self.inject_no_lease_floor;
        let floor = self.side.floor(self.term(), inject);
        // The floor alone keeps a new leader above its predecessor's promises; the ones it
        // adopted itself are a second guard, which the must-fail twin drops too (else the
        // twin shows only when the new leader missed the last promise).
        let adopted = if inject {
            Timestamp::ZERO
        } else {
            self.side.closed
        };
        let above = self.max_log_hlc.max(adopted).max(floor);
        now.max(Timestamp::from_u64(above.as_u64() + 1))
    }
}
