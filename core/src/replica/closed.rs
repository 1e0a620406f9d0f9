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
//!   deterministic check every replica makes alike; its coordinator retries higher.
//! - Hence `resolved_ts` never decreases while the replica runs, and no change with a
//!   timestamp at or below a resolved timestamp it reported is applied afterwards.

use super::Replica;
use crate::hlc::Timestamp;
use raft::prelude::Entry;

/// Bytes of an entry's context: its HLC, then the closed timestamp it promises (both u64
/// little-endian). Entries written before closed timestamps existed carry the HLC only.
pub(super) const CONTEXT_BYTES: usize = 16;

/// Default distance a leader keeps its promise below its clock: an intent whose
/// transaction took longer than this from its timestamp to reach the shard is refused and
/// retried, so it must be above a loaded transaction's planning time.
pub const CLOSED_LAG_MS_DEFAULT: u64 = 50;
/// Default milliseconds an idle shard's leader waits before closing again with an empty entry.
pub const CLOSE_EVERY_MS_DEFAULT: u64 = 25;

/// The context of an entry stamped `hlc` that promises `closed`.
pub(super) fn context(hlc: Timestamp, closed: Timestamp) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(CONTEXT_BYTES);
    bytes.extend_from_slice(&hlc.as_u64().to_le_bytes());
    bytes.extend_from_slice(&closed.as_u64().to_le_bytes());
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

fn word(context: &[u8], at: usize) -> Timestamp {
    let bytes: Option<[u8; 8]> = context.get(at..at + 8).and_then(|b| b.try_into().ok());
    Timestamp::from_u64(bytes.map_or(0, u64::from_le_bytes))
}

/// The timestamp just below `ts` (zero stays zero).
pub fn just_below(ts: Timestamp) -> Timestamp {
    Timestamp::from_u64(ts.as_u64().saturating_sub(1))
}

impl Replica {
    /// The greatest closed timestamp among applied entries.
    pub fn closed_ts(&self) -> Timestamp {
        self.closed
    }

    /// `min(closed, oldest unresolved intent's ts - 1)`: every change at or below it is
    /// applied on this replica and final.
    pub fn resolved_ts(&self) -> Timestamp {
        match self.tables.intents.oldest_ts() {
            Some(oldest) => self.closed.min(just_below(oldest)),
            None => self.closed,
        }
    }

    /// The promise an entry stamped `stamp` makes when the clock reads `now`: `lag` below
    /// the clock, and below the entry itself.
    pub(super) fn promise(&self, stamp: Timestamp, now: Timestamp) -> Timestamp {
        let lagged = Timestamp::new(now.wall_ms().saturating_sub(self.closed_lag_ms), 0);
        lagged.min(just_below(stamp))
    }

    /// Records what applying `entry` promised; returns the closed timestamp that held before
    /// it (what the entry's own intents are checked against).
    pub(super) fn learn_closed(&mut self, entry: &Entry) -> Timestamp {
        let before = self.closed;
        self.closed = self.closed.max(entry_closed(entry));
        before
    }

    /// A leader whose shard proposed nothing for `close_every_ms` closes up to `now - lag`
    /// with an empty entry (which changes nothing and answers nobody).
    pub(super) fn close_idle(&mut self, now: Timestamp) {
        if !self.is_leader() {
            return;
        }
        // One close entry in flight at most: one proposed behind uncommitted entries closes
        // nothing sooner (it commits after them), and under load a pile of them only adds
        // fsyncs and appends to the backlog (24 concurrent 1 MiB writes met election storms).
        let log = &self.raw.raft.raft_log;
        if log.committed < log.last_index() {
            return;
        }
        let due = self.closed_proposed.wall_ms() + self.closed_lag_ms + self.close_every_ms;
        if now.wall_ms() < due {
            return;
        }
        let stamp = self.next_stamp(now);
        let closed = self.promise(stamp, now);
        if self.raw.propose(context(stamp, closed), Vec::new()).is_ok() {
            self.max_log_hlc = stamp;
            self.closed_proposed = closed;
            self.close_entries += 1;
        }
    }

    /// The HLC a proposal made when the clock reads `now` gets: above every one in the log.
    pub(super) fn next_stamp(&self, now: Timestamp) -> Timestamp {
        now.max(Timestamp::from_u64(self.max_log_hlc.as_u64() + 1))
    }
}
