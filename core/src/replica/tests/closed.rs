//! Closed and resolved timestamps (`replica::closed`): an idle leader renews its lease with
//! empty entries and closes by side promise in between, an intent at or below the closed
//! timestamp is refused without a trace, and the resolved timestamp stays below unresolved
//! intents.

use super::intents::{leader, meta, step};
use super::settle;
use crate::hlc::Timestamp;
use crate::op::{Op, Prop, Txn};
use crate::replica::{Input, Output, Replica, ReplicaConfig, Reply, SideClose};
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

/// Steps the clock; returns the side promise the replica made.
fn clock(replica: &mut Replica, wall_ms: u64) -> Option<SideClose> {
    let mut out = Output::default();
    let hlc = Timestamp::new(wall_ms, 0);
    replica.step(Input::Clock { hlc }, &mut out);
    let promise = out.side_close.take();
    settle(replica, &mut out);
    promise
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
fn an_idle_leader_renews_its_lease_with_empty_entries_and_closes_by_side_promise() {
    let mut replica = leader(&config());
    let (tree, applied) = (
        replica.tree().snapshot_bytes().to_vec(),
        replica.applied_index(),
    );
    // No lease yet: an empty entry grants one (1 s ahead) and closes 50 ms below the clock.
    assert_eq!(clock(&mut replica, 10_000), None);
    assert_eq!(replica.closed_ts(), Timestamp::new(9_950, 0));
    assert_eq!(replica.resolved_ts(), replica.closed_ts());
    assert_eq!(replica.applied_index(), applied + 1, "one close entry");
    assert_eq!(
        replica.tree().snapshot_bytes().to_vec(),
        tree,
        "a close entry changes no node"
    );
    // Then side promises every `close_every_ms`, without entries.
    let promise = clock(&mut replica, 10_020).expect("a side promise");
    assert_eq!(promise.closed, Timestamp::new(9_970, 0));
    assert_eq!(promise.index, applied + 1, "after the close entry");
    assert_eq!(replica.closed_ts(), promise.closed);
    assert_eq!(clock(&mut replica, 10_030), None, "not due");
    assert_eq!(replica.close_entries, 1);
    // Half a lease before it runs out, the lease is renewed with the next empty entry.
    assert!(clock(&mut replica, 10_499).is_some());
    assert_eq!(replica.close_entries, 1);
    assert_eq!(clock(&mut replica, 10_500), None, "renewing, not promising");
    assert_eq!(replica.close_entries, 2);
    assert_eq!(replica.closed_ts(), Timestamp::new(10_450, 0));
}

#[test]
fn a_side_promise_never_passes_the_applied_lease() {
    let mut replica = leader(&config());
    clock(&mut replica, 10_000);
    // Called directly, past the renewal the clock step would make first: capped.
    let promise = replica
        .side_promise(Timestamp::new(13_000, 0))
        .expect("a promise");
    assert_eq!(promise.closed, Timestamp::new(11_000, 0), "the lease");
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
fn a_leader_keeps_at_most_one_close_entry_in_flight_and_promises_nothing_behind_it() {
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
    // Long past due, but another one would only queue behind it: none is proposed, and
    // no side promise is made while an entry is unapplied.
    let mut behind = unsettled(&mut replica, 10_700);
    assert_eq!(replica.close_entries, 1, "none behind an uncommitted entry");
    assert_eq!(
        behind.side_close, None,
        "nothing promised over an unapplied entry"
    );
    settle(&mut replica, &mut first);
    settle(&mut replica, &mut behind);
    assert_eq!(replica.closed_ts(), Timestamp::new(9_950, 0));
    // Committed: the next tick renews the lease and closes up to the clock again.
    clock(&mut replica, 10_800);
    assert_eq!(replica.close_entries, 2);
    assert_eq!(replica.closed_ts(), Timestamp::new(10_750, 0));
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
