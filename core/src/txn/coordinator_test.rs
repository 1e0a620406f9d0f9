//! The coordinator's steps in isolation (its protocol runs whole in `model_test.rs`).

use super::*;
use crate::hlc::Timestamp;
use crate::op::{Op, Prop};
use crate::value::Value;

fn coordinator(parts: u32) -> Coordinator {
    let meta = TxnMeta {
        id: crate::txn::TxnId { node: 1, seq: 1 },
        ts: Timestamp::new(1_000, 0),
        anchor: 0,
    };
    let txn = Txn::single(Op::Set {
        path: "/root".into(),
        props: vec![Prop::new("x", Value::Int(1))],
    });
    let parts = (0..parts).map(|s| (s, txn.clone())).collect();
    Coordinator::start(meta, parts, &mut Vec::new())
}

fn refuse(c: &mut Coordinator, shard: u32, refusal: IntentRefusal) -> Vec<Command> {
    let mut out = Vec::new();
    c.step(Event::IntentRefused { shard, refusal }, &mut out);
    out
}

fn abort_reason(c: &Coordinator) -> Option<&IntentRefusal> {
    match &c.abort_reply {
        Some(TxnReply::Aborted { refusal, .. }) => Some(refusal),
        _ => None,
    }
}

#[test]
fn a_timestamp_refusal_is_reported_before_a_rejection_so_the_retry_decides() {
    let mut c = coordinator(2);
    let name_taken = IntentRefusal::Rejected(TreeError::NameTaken {
        parent: "/root".into(),
        name: "Item".into(),
    });
    refuse(&mut c, 0, name_taken.clone());
    assert_eq!(abort_reason(&c), None, "waits for every part");
    let below = IntentRefusal::BelowClosed {
        ts: Timestamp::new(1_000, 0),
        closed: Timestamp::new(1_200, 0),
    };
    refuse(&mut c, 1, below.clone());
    assert_eq!(abort_reason(&c), Some(&below));

    // Without a timestamp refusal: the lowest shard's reason, as before.
    let mut c = coordinator(2);
    let closed = IntentRefusal::Closed { txn: c.meta().id };
    refuse(&mut c, 1, closed);
    refuse(&mut c, 0, name_taken.clone());
    assert_eq!(abort_reason(&c), Some(&name_taken));
}

fn lose(c: &mut Coordinator, command: Command) -> Vec<Command> {
    let mut out = Vec::new();
    c.step(Event::Lost(command), &mut out);
    out
}

fn step(c: &mut Coordinator, event: Event) -> Vec<Command> {
    let mut out = Vec::new();
    c.step(event, &mut out);
    out
}

fn aborts(out: &[Command]) -> bool {
    out.iter().any(|c| matches!(c, Command::Abort { .. }))
}

fn below_closed() -> IntentRefusal {
    IntentRefusal::BelowClosed {
        ts: Timestamp::new(1_000, 0),
        closed: Timestamp::new(1_200, 0),
    }
}

/// Shard 1's first copy is lost and resent; the resent copy is refused (as a leader
/// refuses below its closed timestamp before the first copy applied).
fn refused_after_a_lost_copy() -> (Coordinator, Vec<Command>) {
    let mut c = coordinator(2);
    step(&mut c, Event::IntentWritten { shard: 0 });
    step(&mut c, Event::StagingWritten);
    let intent = c.intent_command(1);
    assert_eq!(lose(&mut c, intent.clone()), vec![intent], "resent");
    let out = refuse(&mut c, 1, below_closed());
    (c, out)
}

#[test]
fn a_refusal_after_a_lost_copy_is_queried_and_a_found_intent_commits() {
    let (mut c, out) = refused_after_a_lost_copy();
    let meta = c.meta();
    assert_eq!(
        out,
        vec![Command::QueryIntent { shard: 1, meta }],
        "no abort yet"
    );
    // The lost copy had landed: staged and every intent written, so it commits.
    let out = step(
        &mut c,
        Event::IntentQueried {
            shard: 1,
            check: Check::Found,
        },
    );
    assert!(out.contains(&Command::Reply(TxnReply::Committed { ts: meta.ts })));
    assert!(out.contains(&Command::MakeExplicit { meta }));
    assert!(!aborts(&out));
}

#[test]
fn a_refusal_after_a_lost_copy_aborts_once_the_query_prevented_it() {
    let (mut c, _) = refused_after_a_lost_copy();
    let lost_query = Command::QueryIntent {
        shard: 1,
        meta: c.meta(),
    };
    assert_eq!(lose(&mut c, lost_query.clone()), vec![lost_query], "resent");
    let out = step(
        &mut c,
        Event::IntentQueried {
            shard: 1,
            check: Check::Prevented,
        },
    );
    assert!(aborts(&out), "{out:?}");
    assert_eq!(
        abort_reason(&c),
        Some(&below_closed()),
        "the refusal's reason"
    );
}

#[test]
fn a_copy_landing_while_its_refusal_is_queried_counts_as_written() {
    let (mut c, _) = refused_after_a_lost_copy();
    let out = step(&mut c, Event::IntentWritten { shard: 1 });
    assert!(out.contains(&Command::Reply(TxnReply::Committed { ts: c.meta().ts })));
    let late = step(
        &mut c,
        Event::IntentQueried {
            shard: 1,
            check: Check::Found,
        },
    );
    assert!(
        late.is_empty(),
        "the query's answer changes nothing: {late:?}"
    );
}

#[test]
fn a_refusal_without_a_lost_copy_is_final() {
    let mut c = coordinator(2);
    step(&mut c, Event::IntentWritten { shard: 0 });
    let out = refuse(&mut c, 1, below_closed());
    assert!(aborts(&out), "no query: the only copy was refused");
}

#[test]
fn the_injected_bug_trusts_a_refusal_after_a_lost_copy() {
    let mut c = coordinator(2);
    c.inject_trust_refusals();
    step(&mut c, Event::IntentWritten { shard: 0 });
    let intent = c.intent_command(1);
    lose(&mut c, intent);
    let out = refuse(&mut c, 1, below_closed());
    assert!(aborts(&out), "the bug aborts at once: {out:?}");
}

#[test]
fn a_stale_unblocked_sends_no_second_copy() {
    let mut c = coordinator(2);
    let stale = step(&mut c, Event::Unblocked { shard: 1 });
    assert!(stale.is_empty(), "shard 1 never waited: {stale:?}");
    let younger = TxnMeta {
        id: crate::txn::TxnId { node: 2, seq: 1 },
        ts: Timestamp::new(2_000, 0),
        anchor: 1,
    };
    let wait = refuse(&mut c, 1, IntentRefusal::Locked { holder: younger });
    assert_eq!(
        wait,
        vec![Command::Wait {
            shard: 1,
            holder: younger
        }]
    );
    let resent = step(&mut c, Event::Unblocked { shard: 1 });
    assert_eq!(
        resent,
        vec![c.intent_command(1)],
        "the waiting intent is resent"
    );
    assert!(
        step(&mut c, Event::Unblocked { shard: 1 }).is_empty(),
        "once"
    );
}
