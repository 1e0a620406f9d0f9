//! Closed and resolved timestamps (`replica::closed`): an idle leader closes with empty
//! entries, an intent at or below the closed timestamp is refused without a trace, and the
//! resolved timestamp stays below unresolved intents.

use super::intents::{leader, meta, step};
use super::settle;
use crate::hlc::Timestamp;
use crate::op::{Op, Prop, Txn};
use crate::replica::{Input, Output, Replica, ReplicaConfig, Reply};
use crate::txn::intents::IntentRefusal;
use crate::txn::step::{Step, StepOutcome};
use crate::txn::TxnMeta;
use crate::value::Value;

fn config() -> ReplicaConfig {
    ReplicaConfig {
        closed_lag_ms: 50,
        close_every_ms: 25,
        ..ReplicaConfig::new(1, vec![1])
    }
}

fn clock(replica: &mut Replica, wall_ms: u64) {
    let mut out = Output::default();
    let hlc = Timestamp::new(wall_ms, 0);
    replica.step(Input::Clock { hlc }, &mut out);
    settle(replica, &mut out);
}

fn intent(meta: TxnMeta) -> Step {
    let txn = Txn::single(Op::Set {
        path: "/root".into(),
        props: vec![Prop::new("gold", Value::Int(5))],
    });
    Step::WriteIntent {
        meta: meta.into(),
        txn,
    }
}

#[test]
fn an_idle_leader_closes_with_empty_entries_that_change_nothing() {
    let mut replica = leader(&config());
    let (tree, applied) = (
        replica.tree().snapshot_bytes().to_vec(),
        replica.applied_index(),
    );
    clock(&mut replica, 10_000);
    assert_eq!(replica.closed_ts(), Timestamp::new(9_950, 0));
    assert_eq!(replica.resolved_ts(), replica.closed_ts());
    assert_eq!(replica.applied_index(), applied + 1, "one close entry");
    assert_eq!(
        replica.tree().snapshot_bytes().to_vec(),
        tree,
        "a close entry changes no node"
    );
    // Not due again until the promise is `close_every_ms` older than it could be.
    clock(&mut replica, 10_020);
    assert_eq!(replica.close_entries, 1);
    clock(&mut replica, 10_030);
    assert_eq!(replica.close_entries, 2);
    assert_eq!(replica.closed_ts(), Timestamp::new(9_980, 0));
}

#[test]
fn an_intent_at_or_below_the_closed_timestamp_is_refused_and_holds_nothing() {
    let mut replica = leader(&config());
    clock(&mut replica, 10_000);
    let closed = replica.closed_ts();
    let old = TxnMeta {
        ts: closed,
        ..meta()
    };
    let refused = step(&mut replica, 1, intent(old));
    let expected = IntentRefusal::BelowClosed { ts: closed, closed };
    assert_eq!(
        refused,
        Reply::Stepped {
            id: 1,
            outcome: StepOutcome::IntentRefused(expected)
        }
    );
    assert_eq!(replica.resolved_ts(), closed, "nothing holds it back");
    // Just above: admitted, and the resolved timestamp waits below it until it resolves.
    let young = TxnMeta {
        ts: Timestamp::from_u64(closed.as_u64() + 1),
        ..meta()
    };
    let written = step(&mut replica, 2, intent(young));
    assert!(matches!(
        written,
        Reply::Stepped {
            outcome: StepOutcome::IntentWritten,
            ..
        }
    ));
    clock(&mut replica, 10_100);
    assert_eq!(replica.closed_ts(), Timestamp::new(10_050, 0));
    assert_eq!(replica.resolved_ts(), closed, "held just below the intent");
    let resolve = Step::Resolve {
        meta: young.into(),
        commit: true,
    };
    step(&mut replica, 3, resolve);
    assert_eq!(replica.resolved_ts(), replica.closed_ts());
}

#[test]
fn a_leader_keeps_at_most_one_close_entry_in_flight() {
    let mut replica = leader(&config());
    let unsettled = |replica: &mut Replica, wall_ms: u64| {
        let mut out = Output::default();
        replica.step(
            Input::Clock {
                hlc: Timestamp::new(wall_ms, 0),
            },
            &mut out,
        );
        out
    };
    // The first close entry is proposed and not yet durable, so not committed.
    let mut first = unsettled(&mut replica, 10_000);
    assert_eq!(replica.close_entries, 1);
    // Long past due, but another one would only queue behind it: none is proposed.
    let mut behind = unsettled(&mut replica, 10_500);
    assert_eq!(replica.close_entries, 1, "none behind an uncommitted entry");
    settle(&mut replica, &mut first);
    settle(&mut replica, &mut behind);
    assert_eq!(replica.closed_ts(), Timestamp::new(9_950, 0));
    // Committed: the next tick closes up to the clock again.
    clock(&mut replica, 10_600);
    assert_eq!(replica.close_entries, 2);
    assert_eq!(replica.closed_ts(), Timestamp::new(10_550, 0));
}

#[test]
fn changes_above_a_timestamp_are_the_log_suffix_above_it() {
    let mut replica = leader(&config());
    let mut stamps = Vec::new();
    for (id, wall_ms) in [(1, 20_000), (2, 20_010), (3, 20_020)] {
        let mut out = Output::default();
        let txn = Txn::single(Op::Set {
            path: "/root".into(),
            props: vec![Prop::new("gold", Value::Int(id as i64))],
        });
        let hlc = Timestamp::new(wall_ms, 0);
        replica.step(Input::Propose { id, txn, hlc }, &mut out);
        settle(&mut replica, &mut out);
        stamps.push(hlc);
    }
    let above = |replica: &Replica, hlc: Timestamp| -> Vec<Timestamp> {
        let changes = replica.changes_above(hlc).expect("the log holds them");
        changes.into_iter().map(|c| c.hlc).collect()
    };
    assert_eq!(above(&replica, Timestamp::new(19_000, 0)), stamps);
    assert_eq!(
        above(&replica, stamps[0]),
        stamps[1..].to_vec(),
        "above, not at"
    );
    assert_eq!(above(&replica, stamps[2]), Vec::<Timestamp>::new());
}
