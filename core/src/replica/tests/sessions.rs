//! Exactly-once writes: a resent (session, seq) is answered with the first answer and
//! applied once, on the leader that applied it and on one that learned it from a snapshot.

use super::*;
use crate::op::SessionSeq;

fn create(name: &str, session: Option<(u64, u64)>) -> Txn {
    Txn {
        session: session.map(|(session, seq)| SessionSeq { session, seq }),
        ..Txn::single(Op::Create {
            parent: "/root".into(),
            name: name.into(),
            class: "Node".into(),
            props: vec![],
        })
    }
}

fn propose(replica: &mut Replica, id: u64, txn: Txn) -> Reply {
    let mut out = Output::default();
    let hlc = Timestamp::new(1_000 + id, 0);
    replica.step(Input::Propose { id, hlc, txn }, &mut out);
    let replies = settle(replica, &mut out);
    assert_eq!(replies.len(), 1, "{replies:?}");
    replies.into_iter().next().expect("one reply")
}

fn written_index(reply: &Reply) -> u64 {
    match reply {
        Reply::Written { index, .. } => *index,
        other => panic!("expected a write, got {other:?}"),
    }
}

#[test]
fn a_resent_write_is_applied_once_and_answered_with_the_first_answer() {
    let mut replica = single_node_leader();
    let first = propose(&mut replica, 1, create("K", Some((5, 1))));
    // Without a session the copy would fail with name_taken: it would be applied again.
    let again = propose(&mut replica, 2, create("K", Some((5, 1))));
    let (first_index, again_index) = (written_index(&first), written_index(&again));
    assert_eq!(first_index, again_index, "the copy gets the first answer");
    assert_eq!(replica.tree().len(), 2, "root and one K");
    let unsessioned = propose(&mut replica, 3, create("K", None));
    match &unsessioned {
        Reply::Failed {
            error: ReplyError::Rejected(e),
            ..
        } => assert_eq!(e.code(), "name_taken"),
        other => panic!("expected name_taken, got {other:?}"),
    }
    let next = propose(&mut replica, 4, create("L", Some((5, 2))));
    assert!(written_index(&next) > first_index);
    let stale = propose(&mut replica, 5, create("M", Some((5, 1))));
    assert_eq!(
        stale,
        Reply::Failed {
            id: 5,
            error: ReplyError::StaleSequence { seq: 1, last: 2 }
        }
    );
    assert_eq!(replica.tree().len(), 3, "no M");
    replica.check_invariants();
}

#[test]
fn a_resent_rejected_write_stays_rejected_though_it_would_apply_now() {
    let mut replica = single_node_leader();
    let delete = Txn {
        session: Some(SessionSeq { session: 6, seq: 1 }),
        ..Txn::single(Op::Delete {
            path: "/root/K".into(),
        })
    };
    let first = propose(&mut replica, 1, delete.clone());
    match &first {
        Reply::Failed {
            error: ReplyError::Rejected(e),
            ..
        } => assert_eq!(e.code(), "not_found"),
        other => panic!("expected not_found, got {other:?}"),
    }
    propose(&mut replica, 2, create("K", None));
    let again = propose(&mut replica, 3, delete);
    match again {
        Reply::Failed {
            error: ReplyError::Replayed { code, .. },
            ..
        } => assert_eq!(code, "not_found"),
        other => panic!("expected the first rejection, got {other:?}"),
    }
    assert_eq!(replica.tree().len(), 2, "K survives the resent delete");
}

#[test]
fn a_leader_that_learned_the_session_from_a_snapshot_answers_the_retry() {
    let mut trio = Trio::compacting_every(4);
    trio.elect(1, None);
    // Node 3 is cut off while the write and enough others to compact commit.
    let write = |id: u64, txn: Txn| Input::Propose {
        id,
        hlc: Timestamp::new(1_000 + id, 0),
        txn,
    };
    trio.run(1, write(1, create("K", Some((7, 1)))), Some(3));
    for id in 2..12 {
        trio.run(1, write(id, set("y", id as i64)), Some(3));
    }
    let original = trio.answer(1).cloned().expect("the write was answered");
    for _ in 0..5 {
        trio.run(1, Input::Tick, None);
    }
    assert_eq!(trio.node(3).snapshots_installed, 1, "caught up by snapshot");
    let term = trio.node(1).term();
    trio.run(3, timeout_now(1, 3, term), None);
    assert!(trio.node(3).is_leader());
    trio.run(3, write(20, create("K", Some((7, 1)))), None);
    let retry = trio.answer(20).cloned().expect("the retry was answered");
    assert_eq!(written_index(&retry), written_index(&original));
    for id in 1..=3 {
        let tree = trio.node(id).tree();
        assert_eq!(tree.len(), 2, "node {id} holds root and one K");
        trio.node(id).check_invariants();
    }
}
