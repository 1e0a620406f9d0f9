//! The log form of parallel-commit steps: what a coordinator or a recovering pusher proposes
//! to a shard (`Step`, an rkyv frame of kind `Step` in a Raft entry, beside plain `Txn`
//! entries), what applying it answers (`StepOutcome`), and the snapshot form of a shard's
//! transaction tables (`TablesWire`).
//!
//! These derive rkyv here rather than in `wire` for the reason `op` does: they *are* the
//! wire form, read from the log.

use rkyv::{Archive, Deserialize, Serialize};

use super::intents::{Check, IntentRefusal};
use super::record::{RecordRefusal, RecoveryStart, Status};
use super::{TxnId, TxnMeta};
use crate::hlc::Timestamp;
use crate::op::Txn;

/// `TxnMeta` as stored.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaWire {
    pub id: TxnId,
    pub ts: u64,
    pub anchor: u32,
}

impl From<TxnMeta> for MetaWire {
    fn from(meta: TxnMeta) -> MetaWire {
        MetaWire {
            id: meta.id,
            ts: meta.ts.as_u64(),
            anchor: meta.anchor,
        }
    }
}

impl From<MetaWire> for TxnMeta {
    fn from(meta: MetaWire) -> TxnMeta {
        TxnMeta {
            id: meta.id,
            ts: Timestamp::from_u64(meta.ts),
            anchor: meta.anchor,
        }
    }
}

/// One parallel-commit action, proposed to the shard that performs it (named as in
/// `specs/ParallelCommit.tla`).
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Step {
    WriteIntent {
        meta: MetaWire,
        txn: Txn,
    },
    WriteStaging {
        meta: MetaWire,
        in_flight: Vec<u32>,
    },
    Heartbeat {
        meta: MetaWire,
    },
    MakeExplicit {
        meta: MetaWire,
    },
    AbortSelf {
        meta: MetaWire,
    },
    Resolve {
        meta: MetaWire,
        commit: bool,
    },
    Forget {
        meta: MetaWire,
    },
    RecoverStart {
        meta: MetaWire,
    },
    RecoverCheck {
        meta: MetaWire,
    },
    RecoverDecide {
        meta: MetaWire,
        all_found: bool,
    },
    /// The coordinator's own `RecoverCheck` (CockroachDB's QueryIntent with prevention):
    /// is its intent here? If not, prevent it. Asked before counting a refusal of a shard
    /// one of whose copies was lost, since that copy may still land (`specs/
    /// ParallelCommitTrace.tla`, `QueryIntent`).
    QueryIntent {
        meta: MetaWire,
    },
}

impl Step {
    pub fn meta(&self) -> TxnMeta {
        let meta = match self {
            Step::WriteIntent { meta, .. }
            | Step::WriteStaging { meta, .. }
            | Step::Heartbeat { meta }
            | Step::MakeExplicit { meta }
            | Step::AbortSelf { meta }
            | Step::Resolve { meta, .. }
            | Step::Forget { meta }
            | Step::RecoverStart { meta }
            | Step::RecoverCheck { meta }
            | Step::RecoverDecide { meta, .. }
            | Step::QueryIntent { meta } => *meta,
        };
        meta.into()
    }

    /// The action's name in the spec (for traces and logs).
    pub fn name(&self) -> &'static str {
        match self {
            Step::WriteIntent { .. } => "WriteIntent",
            Step::WriteStaging { .. } => "WriteStaging",
            Step::Heartbeat { .. } => "Heartbeat",
            Step::MakeExplicit { .. } => "MakeExplicit",
            Step::AbortSelf { .. } => "AbortSelf",
            Step::Resolve { .. } => "Resolve",
            Step::Forget { .. } => "Forget",
            Step::RecoverStart { .. } => "RecoverStart",
            Step::RecoverCheck { .. } => "RecoverCheck",
            Step::RecoverDecide { .. } => "RecoverDecide",
            Step::QueryIntent { .. } => "QueryIntent",
        }
    }
}

/// What applying a step answered.
#[derive(Clone, Debug, PartialEq)]
pub enum StepOutcome {
    IntentWritten,
    IntentRefused(IntentRefusal),
    /// A record step (staging, heartbeat, commit, abort, forget) happened.
    RecordDone,
    RecordRefused(RecordRefusal),
    Resolved,
    Started(RecoveryStart),
    Checked(Check),
    Decided(Status),
}

/// An intent as a snapshot keeps it (its locks are recomputed from the txn).
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct IntentWire {
    pub meta: MetaWire,
    pub txn: Txn,
}

/// A record as a snapshot keeps it.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RecordWire {
    pub meta: MetaWire,
    /// 0 staging, 1 committed, 2 aborted.
    pub status: u8,
    pub in_flight: Vec<u32>,
    pub heartbeat: u64,
    pub finished: bool,
}

/// A shard's transaction tables as a snapshot keeps them.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct TablesWire {
    pub intents: Vec<IntentWire>,
    /// (txn, ts, 0 committed / 1 aborted / 2 prevented)
    pub closed: Vec<(TxnId, u64, u8)>,
    pub writes: Vec<(String, u64)>,
    pub writes_low_water: u64,
    pub intents_horizon: u64,
    pub records: Vec<RecordWire>,
    pub records_horizon: u64,
}

pub(super) fn status_code(status: Status) -> u8 {
    match status {
        Status::Staging => 0,
        Status::Committed => 1,
        Status::Aborted => 2,
    }
}

pub(super) fn status_of(code: u8) -> Option<Status> {
    match code {
        0 => Some(Status::Staging),
        1 => Some(Status::Committed),
        2 => Some(Status::Aborted),
        _ => None,
    }
}
