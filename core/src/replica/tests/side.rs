//! Side promises and the lease floor (`replica::side`): followers adopt a promise only from
//! their leader's term and once they applied its index, a new leader stamps above every
//! lease in its log (and, with the floor ignored, undercuts a promise: the must-fail twin),
//! and intents at or below a promise or the floor are refused before they are proposed.

use super::intents::meta;
use super::{set, timeout_now, Trio};
use crate::hlc::Timestamp;
use crate::replica::{Input, ReplicaConfig, Reply, SideClose};
use crate::txn::intents::IntentRefusal;
use crate::txn::step::{Step, StepOutcome};
use crate::txn::TxnMeta;

fn trio(ignore_leases: bool) -> Trio {
    let mut trio = Trio::with(|id| ReplicaConfig {
        closed_lag_ms: 50,
        close_every_ms: 25,
        inject_no_lease_floor: ignore_leases,
        ..ReplicaConfig::new(id, vec![1, 2, 3])
    });
    trio.elect(1, None);
    trio
}

fn clock(trio: &mut Trio, id: u64, wall_ms: u64, cut: Option<u64>) {
    let hlc = Timestamp::new(wall_ms, 0);
    trio.run(id, Input::Clock { hlc }, cut);
}

/// The side promise node `leader` made last.
fn last_promise(trio: &Trio, leader: u64) -> SideClose {
    let mut promises = trio.side.iter().filter(|(from, _)| *from == leader);
    promises.next_back().expect("a side promise").1
}

/// A lease granted at 10 000 (to 11 000), then a promise at `promise_ms` - 50.
fn promised(trio: &mut Trio, promise_ms: u64) -> SideClose {
    clock(trio, 1, 10_000, None);
    clock(trio, 1, promise_ms, None);
    let promise = last_promise(trio, 1);
    assert_eq!(promise.closed, Timestamp::new(promise_ms - 50, 0));
    promise
}

fn write(trio: &mut Trio, id: u64, request: u64, wall_ms: u64, cut: Option<u64>) -> Timestamp {
    let (txn, hlc) = (set("x", request as i64), Timestamp::new(wall_ms, 0));
    trio.run(
        id,
        Input::Propose {
            id: request,
            txn,
            hlc,
        },
        cut,
    );
    match trio.answer(request) {
        Some(Reply::Written { hlc, .. }) => *hlc,
        other => panic!("request {request} not written: {other:?}"),
    }
}

/// Node 2 leads a new term, with node 1 cut off.
fn fail_over_to_2(trio: &mut Trio) {
    let term = trio.node(1).term();
    trio.run(2, timeout_now(1, 2, term), Some(1));
    assert!(trio.node(2).is_leader(), "node 2 took over");
}

#[test]
fn followers_adopt_a_promise_of_their_leaders_term_once_they_applied_its_index() {
    let mut trio = trio(false);
    let promise = promised(&mut trio, 10_030);
    // A promise of an earlier term is not this term's leader's: ignored.
    let stale = SideClose {
        term: promise.term - 1,
        ..promise
    };
    trio.node(3).adopt_side_promise(stale);
    assert!(trio.node(3).closed_ts() < promise.closed);
    trio.node(2).adopt_side_promise(promise);
    assert_eq!(trio.node(2).closed_ts(), promise.closed);

    // Node 3 misses a write, then hears the promise made after it: it waits for the write.
    write(&mut trio, 1, 7, 10_040, Some(3));
    clock(&mut trio, 1, 10_070, Some(3));
    let after_write = last_promise(&trio, 1);
    assert!(after_write.index > trio.node(3).applied_index());
    let before = trio.node(3).closed_ts();
    trio.node(3).adopt_side_promise(after_write);
    assert_eq!(
        trio.node(3).closed_ts(),
        before,
        "not before the write applied"
    );
    for _ in 0..5 {
        trio.run(1, Input::Tick, None); // heartbeats: node 3 catches up
    }
    assert!(trio.node(3).applied_index() >= after_write.index);
    assert_eq!(trio.node(3).closed_ts(), after_write.closed, "adopted then");
}

#[test]
fn a_new_leader_stamps_above_every_lease_in_its_log() {
    let mut trio = trio(false);
    let promise = promised(&mut trio, 10_400);
    trio.node(3).adopt_side_promise(promise); // node 2 never hears it
    fail_over_to_2(&mut trio);
    // Node 2's clock is behind node 1's promise, yet it stamps above node 1's lease.
    let stamp = write(&mut trio, 2, 8, 9_000, Some(1));
    assert!(stamp > Timestamp::new(11_000, 0), "{stamp} above the lease");
    assert!(
        trio.node(3).applied_index() > promise.index,
        "node 3 applied it"
    );
}

#[test]
fn a_new_leader_ignoring_the_leases_undercuts_a_promise_its_predecessor_made() {
    // The must-fail twin of the test above: without the floor the write lands below what
    // node 3 was promised, which the simulator's committed world reports.
    let mut trio = trio(true);
    let promise = promised(&mut trio, 10_400);
    trio.node(3).adopt_side_promise(promise);
    fail_over_to_2(&mut trio);
    let stamp = write(&mut trio, 2, 8, 9_000, Some(1));
    assert!(
        stamp <= promise.closed,
        "{stamp} undercuts {}",
        promise.closed
    );
}

#[test]
fn intents_at_or_below_a_promise_or_the_floor_are_refused_before_they_are_proposed() {
    let mut trio = trio(false);
    let promise = promised(&mut trio, 10_400);
    let intent = |id: u64, ts: Timestamp| -> (u64, Step) {
        let meta = TxnMeta {
            id: crate::txn::TxnId { node: 9, seq: id },
            ts,
            ..meta()
        };
        let txn = set("y", 1);
        let step = Step::WriteIntent {
            meta: meta.into(),
            txn,
        };
        (id, step)
    };
    let refused = |trio: &mut Trio, node: u64, (id, step): (u64, Step), cut| {
        let last = trio.node(node).raw.raft.raft_log.last_index();
        let hlc = Timestamp::new(9_000, 0);
        trio.run(node, Input::Step { id, step, hlc }, cut);
        let proposed = trio.node(node).raw.raft.raft_log.last_index() > last;
        match trio.answer(id) {
            Some(Reply::Stepped {
                outcome: StepOutcome::IntentRefused(IntentRefusal::BelowClosed { closed, .. }),
                ..
            }) => Some((*closed, proposed)),
            _ => None,
        }
    };
    let at_promise = intent(1, promise.closed);
    assert_eq!(
        refused(&mut trio, 1, at_promise, None),
        Some((promise.closed, false)),
        "refused by the leader that promised, without an entry"
    );
    fail_over_to_2(&mut trio);
    let lease = Timestamp::new(11_000, 0);
    assert_eq!(
        refused(&mut trio, 2, intent(2, Timestamp::new(10_900, 0)), Some(1)),
        Some((lease, false)),
        "refused by the new leader: its floor"
    );
    let above = Timestamp::from_u64(lease.as_u64() + 1);
    assert_eq!(refused(&mut trio, 2, intent(3, above), Some(1)), None);
    assert!(matches!(
        trio.answer(3),
        Some(Reply::Stepped {
            outcome: StepOutcome::IntentWritten,
            ..
        })
    ));
}
