//! Cross-shard transactions by parallel commits (DESIGN.md "Transactions: parallel
//! commits"; `specs/ParallelCommit.tla`), as pure machines, one per role:
//!
//! - [`record::RecordTable`]: the transaction records an anchor shard keeps (replicated
//!   state): `WriteStaging`, `MakeExplicit`, `AbortSelf`, `RecoverStart`, `RecoverDecide`,
//!   heartbeats and expiry.
//! - [`intents::IntentTable`]: the intents a participant shard keeps (replicated state):
//!   `WriteIntent`/`WriteFails` (locks, prevented writes, the write timestamp cache),
//!   `Resolve`, `RecoverCheck`.
//! - [`coordinator::Coordinator`]: one transaction's driver (leader-local): proposes the
//!   intents and the STAGING record in parallel, answers at implicit commit (`Ack`), then
//!   makes the record explicit and resolves.
//! - [`recovery::Recovery`]: what a pusher runs on an expired transaction.
//! - [`host::TxnHost`]: one server's transactions: planning, the coordinators, waits
//!   (wait-die), pushes and recovery.
//! - [`split`]: a transaction's ops grouped by shard.
//!
//! Each machine is `step(input, &mut Vec<Command>)` or a method per TLA+ action; none does
//! I/O: the engine proposes what they ask for and feeds the results back.
//!
//! # Invariants (named as in `specs/ParallelCommit.tla`)
//! - `AckImpliesCommit`: a client is told "committed" only after the record was STAGED and
//!   every intent written, and nothing can then abort the transaction: recovery finds every
//!   listed write (they are locked until resolved) and commits.
//! - `DecisionsAreFinal`: a COMMITTED or ABORTED record never changes (`RecordTable`).
//! - `Atomicity`: intents are applied to the tree only by resolving a COMMITTED record and
//!   dropped only for an ABORTED one; a shard never takes an intent of a transaction it
//!   closed (resolved or prevented).
//! - `NoConflictingCommits`: conflicting intents exclude each other (locks), and an intent
//!   below a committed write on any path it locks is refused (`WriteTooOld`): committed
//!   writes to a path are in timestamp order.

pub mod coordinator;
pub mod host;
pub mod intents;
pub mod locks;
pub mod record;
pub mod recovery;
pub mod split;
pub mod step;
pub mod tables;
pub mod ts_cache;

use rkyv::{Archive, Deserialize, Serialize};

use crate::hlc::Timestamp;

/// A transaction's identity: the server that coordinates it and that server's counter.
/// Unique without coordination; ordered so ties between equal timestamps break the same way
/// on every server.
#[derive(
    Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
pub struct TxnId {
    pub node: u64,
    pub seq: u64,
}

impl std::fmt::Display for TxnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.node, self.seq)
    }
}

/// What every participant and the anchor know about a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnMeta {
    pub id: TxnId,
    /// The commit timestamp: every intent is written at it, and the resolved values carry it.
    pub ts: Timestamp,
    /// The shard holding the transaction record.
    pub anchor: u32,
}

/// A transaction is expired (its coordinator presumed dead, so a pusher may recover it) once
/// this long has passed without a heartbeat: 5× the heartbeat interval (DESIGN.md).
pub const HEARTBEAT_INTERVAL_MS: u64 = 200;
pub const EXPIRY_MS: u64 = 5 * HEARTBEAT_INTERVAL_MS;
const _: () = assert!(HEARTBEAT_INTERVAL_MS < EXPIRY_MS);

/// Log time after which a shard forgets a closed transaction (resolved, prevented, or a
/// record's tombstone): an intent or record that arrives later is refused as too old, so
/// forgetting never lets a late write in.
pub const CLOSED_TTL_MS: u64 = 60_000;
const _: () = assert!(EXPIRY_MS < CLOSED_TTL_MS);

/// Raises `horizon` to `CLOSED_TTL_MS` of log time before `now`; returns the new horizon
/// when it moved (what is at or below it may now be forgotten), `None` otherwise.
pub(crate) fn raise_horizon(horizon: &mut Timestamp, now: Timestamp) -> Option<Timestamp> {
    let cutoff = Timestamp::new(now.wall_ms().checked_sub(CLOSED_TTL_MS)?, 0);
    if cutoff <= *horizon {
        return None;
    }
    *horizon = cutoff;
    Some(cutoff)
}

/// `ts` plus `ms` milliseconds (saturating at the largest timestamp).
pub fn after_ms(ts: Timestamp, ms: u64) -> Timestamp {
    let wall = ts.wall_ms().saturating_add(ms).min(crate::hlc::WALL_MS_MAX);
    Timestamp::new(wall, ts.logical())
}

#[cfg(test)]
mod model_test;
