//! What a client request ends with, typed from the engine to the byte edge: `Outcome`.
//!
//! Every layer between a core and a client (router, gateway backend, gateway session, the
//! framed protocol) passes these values on and matches on variants, never on strings. The
//! stable wire code (`docs/protocol.md`) is produced only where bytes are written, by
//! `ReplyError::code`.
//!
//! # Invariants
//! - An error says whether the request may have taken effect: only `UnknownOutcome` may
//!   have; every other variant is a request that changed nothing (retry is safe).

use crate::hlc::Timestamp;
use crate::tree::TreeError;
use crate::value::Value;

/// What a request succeeded with.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    Written {
        index: u64,
        term: u64,
        hlc: Timestamp,
    },
    Value(Option<Value>),
    Subscribed,
    /// A parallel-commit step applied (between a coordinator and a shard; never a client's).
    Step(crate::txn::step::StepOutcome),
}

/// The answer to one request.
pub type Outcome = Result<Answer, ReplyError>;

/// Why a request did not succeed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<u64> },
    #[error("dropped (leadership changed or no read index came): it did not happen; retry")]
    Dropped,
    /// The write was proposed, then the server lost track of it (a leader's snapshot
    /// replaced the log over it, its deadline passed, or its core stopped): it may or may
    /// not have been applied.
    #[error("outcome unknown: the write may or may not have been applied")]
    UnknownOutcome,
    #[error("transaction of {bytes} bytes exceeds the limit of {max}")]
    TooLarge { bytes: usize, max: usize },
    #[error("{0} (rejected; nothing changed)")]
    Rejected(TreeError),
    /// This server's clock is beyond the HLC's max offset from a majority of the cluster:
    /// it serves nobody until that is fixed (DESIGN.md, "Time"). Nothing happened.
    #[error("this server's clock is beyond the max offset from {beyond} of {members} servers; not serving")]
    ClockOffset { beyond: usize, members: usize },
    /// The request reached a core that does not own its shard (a routing bug or a
    /// misconfigured peer): nothing happened.
    #[error("shard {shard} is not served by this core")]
    UnknownShard { shard: u32 },
    /// The request never reached a core (it stopped, or the server is shutting down).
    #[error("not applied: {reason}")]
    Unavailable { reason: String },
    #[error("invalid path: {reason}")]
    InvalidPath { reason: String },
    #[error("{reason}")]
    BadRequest { reason: String },
    #[error("malformed request: {reason}")]
    Malformed { reason: String },
    /// A resent write (same session and sequence) that the shard had already applied and
    /// rejected: this is the first copy's answer. Nothing changed, then or now.
    #[error("{message} (rejected when first sent; nothing changed)")]
    Replayed { code: &'static str, message: String },
    /// A copy of a session's write older than the last one the shard applied (a session
    /// has one write in flight at a time): nothing changed now; the older copy's own answer
    /// stands.
    #[error("sequence {seq} of this session is older than its last applied write {last}; nothing changed")]
    StaleSequence { seq: u64, last: u64 },
    /// Until the spine and parallel commits exist, a transaction stays inside one shard.
    #[error("this transaction spans shards; cross-shard transactions are not supported yet")]
    CrossShard,
    /// A cross-shard transaction holds a provisional write on what this touches; nothing
    /// changed; retry (the server retries for a while before answering this).
    #[error("transaction {} holds what this touches; nothing changed; retry", holder.id)]
    Locked { holder: crate::txn::TxnMeta },
}

impl ReplyError {
    /// A stable, machine-readable code for clients (`docs/protocol.md`).
    pub fn code(&self) -> &'static str {
        match self {
            ReplyError::NotLeader { .. } => "not_leader",
            ReplyError::Dropped => "dropped",
            ReplyError::UnknownOutcome => "unknown_outcome",
            ReplyError::TooLarge { .. } => "too_large",
            ReplyError::Rejected(e) => e.code(),
            ReplyError::UnknownShard { .. }
            | ReplyError::ClockOffset { .. }
            | ReplyError::Unavailable { .. } => "unavailable",
            ReplyError::InvalidPath { .. } => "invalid_path",
            ReplyError::BadRequest { .. } => "bad_request",
            ReplyError::Malformed { .. } => "malformed",
            ReplyError::CrossShard => "cross_shard",
            ReplyError::Replayed { code, .. } => code,
            ReplyError::StaleSequence { .. } => "stale_sequence",
            ReplyError::Locked { .. } => "locked",
        }
    }

    /// Whether the request may have taken effect (see the module invariant).
    pub fn may_have_applied(&self) -> bool {
        matches!(self, ReplyError::UnknownOutcome)
    }
}
