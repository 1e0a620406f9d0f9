//! Replica tests: a single-node group elects itself, persists before acking, applies and
//! reads linearizably; proposals to followers are refused.

use raft::storage::MemStorage;

use super::*;
use crate::hlc::Timestamp;
use crate::op::{Op, Prop};
use raft::Storage;
use std::collections::BTreeSet;

pub(super) fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

pub(super) fn set(prop: &str, value: i64) -> Txn {
    Txn::single(Op::Set {
        path: "/root".into(),
        props: vec![Prop::new(prop, Value::Int(value))],
    })
}

/// Runs a single-node replica: persists every request at once and loops messages (none).
pub(super) fn settle(replica: &mut Replica, out: &mut Output) -> Vec<Reply> {
    let mut replies = Vec::new();
    for _ in 0..100 {
        replies.append(&mut out.replies);
        assert!(out.messages.is_empty(), "a single-node group sends nothing");
        let Some(last) = out.persist.last().map(|p| p.number) else {
            return replies;
        };
        out.persist.clear();
        replica.step(Input::Persisted { number: last }, out);
    }
    panic!("did not settle");
}

fn single_node_leader() -> Replica {
    let mut replica = Replica::new(
        &ReplicaConfig::new(1, vec![1]),
        MemStorage::new(),
        None,
        &logger(),
    );
    let mut out = Output::default();
    for _ in 0..30 {
        replica.step(Input::Tick, &mut out);
        settle(&mut replica, &mut out);
    }
    assert!(replica.is_leader(), "a single node elects itself");
    replica
}

#[test]
fn writes_are_acknowledged_only_after_persistence() {
    let mut replica = single_node_leader();
    let mut out = Output::default();
    replica.step(
        Input::Propose {
            id: 7,
            hlc: Timestamp::new(1000, 0),
            txn: set("hp", 5),
        },
        &mut out,
    );
    assert!(
        out.replies.is_empty(),
        "nothing is acknowledged before the entry is durable"
    );
    assert!(
        !out.persist.is_empty(),
        "the entry is handed out for persistence"
    );
    let replies = settle(&mut replica, &mut out);
    assert!(
        matches!(replies.as_slice(), [Reply::Written { id: 7, .. }]),
        "{replies:?}"
    );
    let root = replica.tree().root();
    assert_eq!(root.prop("hp"), Some(&Value::Int(5)));
}

#[test]
fn reads_see_acknowledged_writes_and_invalid_txns_are_rejected_deterministically() {
    let mut replica = single_node_leader();
    let mut out = Output::default();
    replica.step(
        Input::Propose {
            id: 1,
            hlc: Timestamp::new(1000, 0),
            txn: set("x", 1),
        },
        &mut out,
    );
    settle(&mut replica, &mut out);
    replica.step(
        Input::Read {
            id: 2,
            path: "/root".into(),
            target: ReadTarget::Prop("x".into()),
        },
        &mut out,
    );
    let replies = settle(&mut replica, &mut out);
    assert!(
        matches!(
            replies.as_slice(),
            [Reply::Read {
                id: 2,
                value: Some(Value::Int(1)),
                ..
            }]
        ),
        "{replies:?}"
    );
    let bad = Txn::single(Op::Delete {
        path: "/root".into(),
    });
    replica.step(
        Input::Propose {
            id: 3,
            txn: bad,
            hlc: Timestamp::ZERO,
        },
        &mut out,
    );
    let replies = settle(&mut replica, &mut out);
    assert!(
        matches!(
            replies.as_slice(),
            [Reply::Failed {
                id: 3,
                error: ReplyError::Rejected(_)
            }]
        ),
        "{replies:?}"
    );
}

#[test]
fn compaction_keeps_the_tree_and_a_snapshot_restores_it() {
    let config = ReplicaConfig {
        compact_entries: 4,
        ..ReplicaConfig::new(1, vec![1])
    };
    let mut replica = Replica::new(&config, MemStorage::new(), None, &logger());
    let mut out = Output::default();
    for _ in 0..30 {
        replica.step(Input::Tick, &mut out);
        settle(&mut replica, &mut out);
    }
    for i in 0..20 {
        replica.step(
            Input::Propose {
                id: i,
                txn: set("n", i as i64),
                hlc: Timestamp::new(1000, 0),
            },
            &mut out,
        );
        settle(&mut replica, &mut out);
    }
    let snapshot = replica
        .raw
        .store()
        .snapshot(0, 0)
        .expect("compaction took a snapshot");
    assert!(
        snapshot.get_metadata().index >= 16,
        "compacted every 4 entries"
    );
    assert!(
        replica.raw.store().first_index().expect("memory") > 1,
        "old entries are gone"
    );
    // A replica restored from that snapshot has the same tree and hash chain position.
    let storage = MemStorage::new();
    storage
        .wl()
        .apply_snapshot(snapshot.clone())
        .expect("fresh storage");
    let restored = Replica::new(&config, storage, Some(snapshot.clone()), &logger());
    assert_eq!(restored.applied_index(), snapshot.get_metadata().index);
    assert!(restored.tree().root().prop("n").is_some());
    assert!(restored.applied_hlc() > Timestamp::ZERO);
}

#[test]
fn a_follower_refuses_proposals_and_names_no_leader_yet() {
    let mut replica = Replica::new(
        &ReplicaConfig::new(1, vec![1, 2, 3]),
        MemStorage::new(),
        None,
        &logger(),
    );
    let mut out = Output::default();
    replica.step(
        Input::Propose {
            id: 9,
            hlc: Timestamp::new(1000, 0),
            txn: set("x", 1),
        },
        &mut out,
    );
    assert_eq!(
        out.replies,
        vec![Reply::Failed {
            id: 9,
            error: ReplyError::NotLeader { leader: None }
        }]
    );
}

fn follower(id: u64, seed: u64, nonce: u64) -> Replica {
    let config = ReplicaConfig {
        jitter_seed: seed,
        boot_nonce: nonce,
        ..ReplicaConfig::new(id, vec![1, 2, 3])
    };
    Replica::new(&config, MemStorage::new(), None, &logger())
}

/// Ticks a lone follower until it starts a (pre-)vote; returns how many ticks that took.
fn ticks_until_campaign(replica: &mut Replica) -> usize {
    for tick in 1..=100 {
        let mut out = Output::default();
        replica.step(Input::Tick, &mut out);
        let campaigning = out.messages.iter().any(|m| {
            matches!(
                m.get_msg_type(),
                MessageType::MsgRequestPreVote | MessageType::MsgRequestVote
            )
        });
        if campaigning {
            return tick;
        }
    }
    panic!("never campaigned");
}

#[test]
fn election_timeouts_are_jittered_from_the_driver_seed_and_replay_exactly() {
    let timeouts: Vec<usize> = (1..=20)
        .map(|seed| follower(1, seed, 0).election_timeout())
        .collect();
    assert!(
        timeouts.iter().all(|t| (10..20).contains(t)),
        "{timeouts:?}"
    );
    let distinct: BTreeSet<usize> = timeouts.iter().copied().collect();
    assert!(distinct.len() >= 4, "timeouts are spread: {timeouts:?}");
    assert_eq!(
        follower(1, 7, 0).election_timeout(),
        follower(1, 7, 0).election_timeout()
    );
    // The drawn timeout is the one raft-rs uses: a follower campaigns exactly then.
    for seed in [3, 11, 19] {
        let mut replica = follower(1, seed, 0);
        let expected = replica.election_timeout();
        assert_eq!(ticks_until_campaign(&mut replica), expected, "seed {seed}");
    }
}

fn message(kind: MessageType, from: u64, to: u64, term: u64) -> Message {
    let mut m = Message::default();
    m.set_msg_type(kind);
    (m.from, m.to, m.term) = (from, to, term);
    m
}

fn read_index_response(to: u64, context: Vec<u8>) -> Input {
    let mut m = message(MessageType::MsgReadIndexResp, 1, to, 1);
    m.index = 0;
    m.entries = vec![Entry {
        data: context.into(),
        ..Default::default()
    }]
    .into();
    Input::Message(Box::new(m))
}

fn read_context(nonce: u64, id: u64) -> Vec<u8> {
    [nonce.to_le_bytes(), id.to_le_bytes()].concat()
}

#[test]
fn a_read_index_answer_meant_for_a_previous_boot_does_not_serve_a_new_read() {
    let mut replica = follower(2, 1, 42);
    let mut out = Output::default();
    // A heartbeat makes node 1 this follower's leader in term 1.
    replica.step(
        Input::Message(Box::new(message(MessageType::MsgHeartbeat, 1, 2, 1))),
        &mut out,
    );
    assert_eq!(replica.leader(), Some(1));
    let read = Input::Read {
        id: 1,
        path: "/root".into(),
        target: ReadTarget::Prop("x".into()),
    };
    replica.step(read, &mut out);
    // The same request id from the previous boot (nonce 41), answered late: ignored.
    replica.step(read_index_response(2, read_context(41, 1)), &mut out);
    assert!(out.replies.is_empty(), "{:?}", out.replies);
    // An answer for a read id nobody is waiting for: ignored too.
    replica.step(read_index_response(2, read_context(42, 9)), &mut out);
    assert!(out.replies.is_empty(), "{:?}", out.replies);
    replica.step(read_index_response(2, read_context(42, 1)), &mut out);
    assert!(
        matches!(out.replies.as_slice(), [Reply::Read { id: 1, .. }]),
        "{:?}",
        out.replies
    );
}

/// Three replicas wired by hand: messages are delivered unless `cut` isolates a node;
/// persistence completes at once.
pub(super) struct Trio {
    replicas: Vec<Replica>,
    pub(super) replies: Vec<Reply>,
    /// Side promises the replicas made: (leader, promise), delivered by the test.
    pub(super) side: Vec<(u64, SideClose)>,
}

impl Trio {
    pub(super) fn new() -> Trio {
        Trio::compacting_every(10_000)
    }

    fn compacting_every(compact_entries: u64) -> Trio {
        Trio::with(|id| ReplicaConfig {
            compact_entries,
            ..ReplicaConfig::new(id, vec![1, 2, 3])
        })
    }

    /// Three replicas configured by `config(id)` (each with its own jitter seed).
    pub(super) fn with(config: impl Fn(u64) -> ReplicaConfig) -> Trio {
        let replicas = (1..=3)
            .map(|id| {
                let config = ReplicaConfig {
                    jitter_seed: id,
                    ..config(id)
                };
                Replica::new(&config, MemStorage::new(), None, &logger())
            })
            .collect();
        Trio {
            replicas,
            replies: Vec::new(),
            side: Vec::new(),
        }
    }

    pub(super) fn node(&mut self, id: u64) -> &mut Replica {
        &mut self.replicas[(id - 1) as usize]
    }

    /// Steps `id` with `input`, then delivers everything that follows (except to or from
    /// `cut`) until the group is quiet.
    pub(super) fn run(&mut self, id: u64, input: Input, cut: Option<u64>) {
        let mut work = vec![(id, input)];
        for _ in 0..10_000 {
            let Some((to, input)) = work.pop() else {
                return;
            };
            let mut out = Output::default();
            self.node(to).step(input, &mut out);
            self.replies.append(&mut out.replies);
            if let Some(promise) = out.side_close.take() {
                self.side.push((to, promise));
            }
            for request in out.persist {
                work.push((
                    to,
                    Input::Persisted {
                        number: request.number,
                    },
                ));
            }
            for m in out.messages {
                if cut != Some(m.from) && cut != Some(m.to) {
                    work.push((m.to, Input::Message(Box::new(m))));
                }
            }
        }
        panic!("the group never went quiet");
    }

    /// Proposals `ids` on node `id` while it is cut off from the others.
    fn propose_alone(&mut self, id: u64, ids: std::ops::RangeInclusive<u64>) {
        for request in ids {
            let txn = set("x", request as i64);
            let hlc = Timestamp::new(1000 + request, 0);
            let input = Input::Propose {
                id: request,
                hlc,
                txn,
            };
            self.run(id, input, Some(id));
        }
    }

    /// The answer to request `id`, if any came.
    pub(super) fn answer(&self, id: u64) -> Option<&Reply> {
        self.replies.iter().find(|r| match r {
            Reply::Written { id: i, .. }
            | Reply::Read { id: i, .. }
            | Reply::Failed { id: i, .. }
            | Reply::Stepped { id: i, .. } => *i == id,
        })
    }

    /// Ticks `id` until it leads (messages to and from `cut` are lost).
    pub(super) fn elect(&mut self, id: u64, cut: Option<u64>) {
        for _ in 0..100 {
            if self.node(id).is_leader() {
                return;
            }
            self.run(id, Input::Tick, cut);
        }
        panic!("node {id} was not elected");
    }
}

/// A leader-transfer nudge (raft-rs campaigns at once on it, past pre-vote and leases).
pub(super) fn timeout_now(from: u64, to: u64, term: u64) -> Input {
    Input::Message(Box::new(message(
        MessageType::MsgTimeoutNow,
        from,
        to,
        term,
    )))
}

#[test]
fn a_re_elected_leader_answers_proposals_its_cut_tail_lost_instead_of_asserting() {
    let mut trio = Trio::new();
    trio.elect(1, None);
    assert_eq!(trio.node(1).term(), 1);
    // Isolated, node 1 proposes three writes (indexes 2, 3, 4 of term 1) nobody gets.
    trio.propose_alone(1, 1..=3);
    assert_eq!(trio.node(1).raft_view().last_index(), 4);
    // Node 2 leads term 2 without them; node 1 rejoins and its tail is cut.
    trio.run(2, timeout_now(1, 2, 1), Some(1));
    assert!(trio.node(2).is_leader());
    for _ in 0..5 {
        trio.run(2, Input::Tick, None);
    }
    let view = trio.node(1).raft_view();
    assert!(!trio.node(1).is_leader(), "node 1 followed the newer term");
    assert_eq!(
        (view.term, view.last_index()),
        (2, 2),
        "node 1's tail was cut: {view:?}"
    );
    // Node 1 leads again (term 3, its empty entry at index 3) and proposes at index 4.
    trio.run(1, timeout_now(2, 1, 2), Some(2));
    assert!(trio.node(1).is_leader());
    let input = Input::Propose {
        id: 9,
        hlc: Timestamp::new(5000, 0),
        txn: set("x", 9),
    };
    trio.run(1, input, Some(2));
    for id in 1..=3 {
        assert_eq!(
            trio.answer(id),
            Some(&Reply::Failed {
                id,
                error: ReplyError::Dropped
            }),
            "proposal {id} of the cut tail"
        );
    }
    assert!(
        matches!(trio.answer(9), Some(Reply::Written { id: 9, .. })),
        "{:?}",
        trio.replies
    );
}

#[test]
fn proposals_a_snapshot_install_covers_are_answered_unknown_outcome() {
    let mut trio = Trio::compacting_every(4);
    trio.elect(1, None);
    trio.propose_alone(1, 1..=3);
    // Node 2 leads without node 1, commits more than a compaction's worth and compacts.
    trio.run(2, timeout_now(1, 2, 1), Some(1));
    for id in 10..20 {
        let txn = set("y", id as i64);
        let input = Input::Propose {
            id,
            hlc: Timestamp::new(2000 + id, 0),
            txn,
        };
        trio.run(2, input, Some(1));
    }
    // Node 1 rejoins: it is caught up by a snapshot over the indexes it proposed at.
    for _ in 0..5 {
        trio.run(2, Input::Tick, None);
    }
    assert_eq!(trio.node(1).snapshots_installed, 1);
    for id in 1..=3 {
        assert_eq!(
            trio.answer(id),
            Some(&Reply::Failed {
                id,
                error: ReplyError::UnknownOutcome
            }),
            "proposal {id}: the snapshot replaced its entry, whose fate node 1 cannot know"
        );
    }
}

mod closed;
mod intents;
mod sessions;
mod side;
