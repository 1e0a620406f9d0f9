//! Parallel-commit steps through a replica's log: an intent locks what it touches against
//! plain writes and reads until it is resolved, a committed resolution changes the tree and
//! reaches subscribers, and the tables travel in snapshots.

use raft::storage::MemStorage;
use raft::Storage;

use super::{logger, set, settle};
use crate::api::ReplyError;
use crate::hlc::Timestamp;
use crate::op::{Op, Prop, Txn};
use crate::replica::{Applied, Input, Output, ReadTarget, Replica, ReplicaConfig, Reply};
use crate::txn::step::{Step, StepOutcome};
use crate::txn::{TxnId, TxnMeta};
use crate::value::Value;

pub(super) fn leader(config: &ReplicaConfig) -> Replica {
    let mut replica = Replica::new(config, MemStorage::new(), None, &logger());
    let mut out = Output::default();
    for _ in 0..30 {
        replica.step(Input::Tick, &mut out);
        settle(&mut replica, &mut out);
    }
    assert!(replica.is_leader());
    replica
}

pub(super) fn meta() -> TxnMeta {
    TxnMeta {
        id: TxnId { node: 9, seq: 1 },
        ts: Timestamp::new(5_000, 0),
        anchor: 0,
    }
}

pub(super) fn step(replica: &mut Replica, id: u64, step: Step) -> Reply {
    let mut out = Output::default();
    let hlc = Timestamp::new(6_000, 0);
    replica.step(Input::Step { id, step, hlc }, &mut out);
    let replies = settle(replica, &mut out);
    replies
        .into_iter()
        .find(
            |r| matches!(r, Reply::Stepped { id: i, .. } | Reply::Failed { id: i, .. } if *i == id),
        )
        .expect("answered")
}

fn request(replica: &mut Replica, input: Input, id: u64) -> Reply {
    let mut out = Output::default();
    replica.step(input, &mut out);
    let replies = settle(replica, &mut out);
    replies
        .into_iter()
        .find(|r| match r {
            Reply::Written { id: i, .. }
            | Reply::Read { id: i, .. }
            | Reply::Failed { id: i, .. }
            | Reply::Stepped { id: i, .. } => *i == id,
        })
        .expect("answered")
}

#[test]
fn an_intent_locks_writes_and_reads_until_resolved_and_its_resolution_is_published() {
    let mut replica = leader(&ReplicaConfig::new(1, vec![1]));
    replica.record_changes = true;
    let intent = Txn::single(Op::Set {
        path: "/root".into(),
        props: vec![Prop::new("gold", Value::Int(5))],
    });
    let written = step(
        &mut replica,
        1,
        Step::WriteIntent {
            meta: meta().into(),
            txn: intent,
        },
    );
    assert_eq!(
        written,
        Reply::Stepped {
            id: 1,
            outcome: StepOutcome::IntentWritten
        }
    );
    let hlc = Timestamp::new(6_000, 0);
    let blocked = request(
        &mut replica,
        Input::Propose {
            id: 2,
            txn: set("gold", 1),
            hlc,
        },
        2,
    );
    assert!(
        matches!(
            &blocked,
            Reply::Failed {
                error: ReplyError::Locked { .. },
                ..
            }
        ),
        "{blocked:?}"
    );
    let read = Input::Read {
        id: 3,
        path: "/root".into(),
        target: ReadTarget::Prop("gold".into()),
    };
    let blocked = request(&mut replica, read, 3);
    assert!(
        matches!(
            &blocked,
            Reply::Failed {
                error: ReplyError::Locked { .. },
                ..
            }
        ),
        "{blocked:?}"
    );
    assert_eq!(
        replica.tree().root().prop("gold"),
        None,
        "provisional, not applied"
    );

    let mut out = Output::default();
    let resolve = Step::Resolve {
        meta: meta().into(),
        commit: true,
    };
    replica.step(
        Input::Step {
            id: 4,
            step: resolve,
            hlc,
        },
        &mut out,
    );
    let replies = settle(&mut replica, &mut out);
    assert!(replies.contains(&Reply::Stepped {
        id: 4,
        outcome: StepOutcome::Resolved
    }));
    assert_eq!(replica.tree().root().prop("gold"), Some(&Value::Int(5)));
    let published = out
        .applied
        .iter()
        .any(|a| matches!(a, Applied::Txn { txn, .. } if txn.ops.len() == 1));
    assert!(
        published,
        "subscribers see the resolved intent: {:?}",
        out.applied
    );
    let changes = replica
        .changes_after(replica.applied_index() - 1)
        .expect("in the log");
    assert_eq!(
        changes.len(),
        1,
        "a resuming subscriber gets the intent's ops"
    );
    let read = Input::Read {
        id: 5,
        path: "/root".into(),
        target: ReadTarget::Prop("gold".into()),
    };
    assert!(matches!(
        request(&mut replica, read, 5),
        Reply::Read {
            value: Some(Value::Int(5)),
            ..
        }
    ));
    let late = step(
        &mut replica,
        6,
        Step::WriteIntent {
            meta: meta().into(),
            txn: set("gold", 7),
        },
    );
    assert!(
        matches!(
            late,
            Reply::Stepped {
                outcome: StepOutcome::IntentRefused(_),
                ..
            }
        ),
        "a resolved transaction writes no more intents: {late:?}"
    );
}

#[test]
fn intents_and_records_travel_in_snapshots() {
    let config = ReplicaConfig {
        compact_entries: 2,
        ..ReplicaConfig::new(1, vec![1])
    };
    let mut replica = leader(&config);
    let intent = Txn::single(Op::Create {
        parent: "/root".into(),
        name: "e".into(),
        class: "Node".into(),
        props: vec![],
    });
    step(
        &mut replica,
        1,
        Step::WriteIntent {
            meta: meta().into(),
            txn: intent,
        },
    );
    step(
        &mut replica,
        2,
        Step::WriteStaging {
            meta: meta().into(),
            in_flight: vec![0],
        },
    );
    for i in 0..6 {
        request(
            &mut replica,
            Input::Propose {
                id: 10 + i,
                txn: set("n", i as i64),
                hlc: Timestamp::new(6_000, 0),
            },
            10 + i,
        );
    }
    let snapshot = replica.raw.store().snapshot(0, 0).expect("compacted");
    let storage = MemStorage::new();
    storage
        .wl()
        .apply_snapshot(snapshot.clone())
        .expect("fresh storage");
    let restored = Replica::new(&config, storage, Some(snapshot), &logger());
    assert_eq!(
        restored.txn_tables().intents.len(),
        1,
        "the intent survived"
    );
    assert_eq!(
        restored.txn_tables().records.len(),
        1,
        "the record survived"
    );
    restored.check_invariants();
}
