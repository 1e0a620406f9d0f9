//! A shard's transaction state (replicated): its intents and the records it anchors, and
//! how a committed `Step` entry changes them.
//!
//! # Invariants
//! - `apply` is deterministic in (tables, tree, step, entry HLC): every replica of the shard
//!   computes the same tables and answers.
//! - The tables travel in snapshots (`to_wire`/`from_wire`), so a replica caught up by a
//!   snapshot holds the same intents and records as one that applied every entry.

use rkyv::rancor;
use rkyv::util::AlignedVec;

use super::intents::{Intent, IntentTable};
use super::record::RecordTable;
use super::step::{Step, StepOutcome, TablesWire};
use crate::hlc::Timestamp;
use crate::tree::Tree;

/// Intents and records of one shard.
#[derive(Clone, Debug, Default)]
pub struct TxnTables {
    pub intents: IntentTable,
    pub records: RecordTable,
}

impl TxnTables {
    /// Applies a committed step at log time `now`. Returns the answer and, for a resolution,
    /// the intent it resolved (a committed one changed the tree: subscribers see it).
    pub fn apply(
        &mut self,
        step: &Step,
        tree: &mut Tree,
        now: Timestamp,
    ) -> (StepOutcome, Option<Intent>) {
        let meta = step.meta();
        let record = |result: Result<(), super::record::RecordRefusal>| match result {
            Ok(()) => StepOutcome::RecordDone,
            Err(refusal) => StepOutcome::RecordRefused(refusal),
        };
        let outcome = match step {
            Step::WriteIntent { txn, .. } => {
                match self.intents.write_intent(meta, txn, tree, now) {
                    Ok(()) => StepOutcome::IntentWritten,
                    Err(refusal) => StepOutcome::IntentRefused(refusal),
                }
            }
            Step::WriteStaging { in_flight, .. } => {
                record(self.records.write_staging(meta, in_flight, now))
            }
            Step::Heartbeat { .. } => record(self.records.heartbeat(meta.id, now)),
            Step::MakeExplicit { .. } => record(self.records.make_explicit(meta.id)),
            Step::AbortSelf { .. } => record(self.records.abort(meta, now)),
            Step::Forget { .. } => {
                self.records.forget(meta.id);
                StepOutcome::RecordDone
            }
            Step::Resolve { commit, .. } => {
                let resolved = self.intents.resolve(meta.id, *commit, tree, now);
                return (StepOutcome::Resolved, resolved);
            }
            Step::RecoverStart { .. } => {
                StepOutcome::Started(self.records.recover_start(meta, now))
            }
            Step::RecoverCheck { .. } | Step::QueryIntent { .. } => {
                StepOutcome::Checked(self.intents.recover_check(meta, now))
            }
            Step::RecoverDecide { all_found, .. } => {
                match self.records.recover_decide(meta.id, *all_found) {
                    Ok(status) => StepOutcome::Decided(status),
                    Err(refusal) => StepOutcome::RecordRefused(refusal),
                }
            }
        };
        (outcome, None)
    }

    /// The tables as an rkyv payload (inside the shard snapshot).
    pub fn to_bytes(&self) -> AlignedVec {
        let mut wire = TablesWire::default();
        self.intents.to_wire(&mut wire);
        self.records.to_wire(&mut wire);
        rkyv::to_bytes::<rancor::Error>(&wire).expect("archiving to memory cannot fail")
    }

    /// Validates and rebuilds tables from `to_bytes` output.
    pub fn from_bytes(bytes: &[u8]) -> Result<TxnTables, String> {
        let aligned = crate::wire::aligned(bytes);
        let wire =
            rkyv::from_bytes::<TablesWire, rancor::Error>(&aligned).map_err(|e| e.to_string())?;
        Ok(TxnTables {
            intents: IntentTable::from_wire(&wire)?,
            records: RecordTable::from_wire(&wire)?,
        })
    }

    pub fn check_invariants(&self) {
        self.intents.check_invariants();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::{Op, Prop, Txn};
    use crate::txn::step::MetaWire;
    use crate::txn::{TxnId, TxnMeta};
    use crate::value::Value;
    use crate::Limits;

    #[test]
    fn the_tables_round_trip_through_snapshot_bytes_and_bad_bytes_are_refused() {
        let mut tree = Tree::new(Limits::default());
        let mut tables = TxnTables::default();
        let now = Timestamp::new(2_000, 0);
        let meta = |seq| TxnMeta {
            id: TxnId { node: 1, seq },
            ts: Timestamp::new(1_000 + seq, 0),
            anchor: 0,
        };
        let create = Txn::single(Op::Create {
            parent: "/root".into(),
            name: "a".into(),
            class: "Node".into(),
            props: vec![Prop::new("hp", Value::Int(1))],
        });
        let steps = [
            Step::WriteIntent {
                meta: MetaWire::from(meta(1)),
                txn: create,
            },
            Step::WriteStaging {
                meta: meta(1).into(),
                in_flight: vec![0, 3],
            },
            Step::WriteStaging {
                meta: meta(2).into(),
                in_flight: vec![0],
            },
            Step::AbortSelf {
                meta: meta(2).into(),
            },
            Step::RecoverCheck {
                meta: meta(3).into(),
            },
        ];
        for step in &steps {
            tables.apply(step, &mut tree, now);
        }
        let bytes = tables.to_bytes();
        let restored = TxnTables::from_bytes(&bytes).expect("round trip");
        assert_eq!(
            restored.to_bytes().as_slice(),
            bytes.as_slice(),
            "same bytes again"
        );
        assert_eq!(restored.intents.len(), 1);
        assert_eq!(restored.records.len(), 2);
        restored.check_invariants();
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            assert!(
                TxnTables::from_bytes(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let resolved = tables.apply(
            &Step::Resolve {
                meta: meta(1).into(),
                commit: true,
            },
            &mut tree,
            now,
        );
        assert_eq!(resolved.0, StepOutcome::Resolved);
        assert!(
            resolved.1.is_some(),
            "the committed intent is reported for feeds"
        );
        assert_eq!(tree.len(), 2, "the intent's create applied");
    }
}
