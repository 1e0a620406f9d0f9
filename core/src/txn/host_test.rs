//! The host over in-memory shards that apply requests as a shard's log would: entities
//! created across the spine and their shards, transfers between entities of different
//! shards, conflicting transactions, and a host that dies mid-commit recovered by another.

use std::collections::BTreeMap;

use super::*;
use crate::op::{Expect, Op, Precondition, Prop};
use crate::path::NodePath;
use crate::tree::Tree;
use crate::txn::tables::TxnTables;

const SHARDS: u32 = 4;

struct Shard {
    tree: Tree,
    tables: TxnTables,
}

struct Cluster {
    shards: Vec<Shard>,
    now_ms: u64,
    /// Requests not yet delivered: (host, request, shard, what).
    queue: Vec<(usize, u64, u32, Request)>,
    replies: BTreeMap<(usize, u64), Outcome>,
}

impl Cluster {
    fn new() -> Cluster {
        let shards = (0..SHARDS)
            .map(|s| Shard {
                tree: match s {
                    0 => Tree::new(Limits::default()),
                    _ => Tree::new(Limits::default()).with_placeholders(3),
                },
                tables: TxnTables::default(),
            })
            .collect();
        Cluster {
            shards,
            now_ms: 10_000,
            queue: Vec::new(),
            replies: BTreeMap::new(),
        }
    }

    fn now(&self) -> Timestamp {
        Timestamp::new(self.now_ms, 0)
    }

    /// Applies one request on its shard, as the replica does.
    fn apply(&mut self, shard: u32, what: &Request) -> Outcome {
        self.now_ms += 1;
        let now = self.now();
        let s = &mut self.shards[shard as usize];
        match what {
            Request::Read { path, .. } => {
                let parsed = NodePath::parse(path, &Limits::default()).expect("valid");
                let lock = crate::txn::locks::Lock::Subtree(path.clone());
                if let Some(holder) = s.tables.intents.blocking(&[lock]) {
                    return Err(ReplyError::Locked {
                        holder: holder.meta,
                    });
                }
                Ok(Answer::Value(s.tree.subtree_value(&parsed)))
            }
            Request::Propose(txn) => {
                let locks = match s.tables.intents.admit_plain(txn, &s.tree) {
                    Ok(locks) => locks,
                    Err(IntentRefusal::Locked { holder }) => {
                        return Err(ReplyError::Locked { holder })
                    }
                    Err(other) => panic!("{other}"),
                };
                s.tree.apply_txn(txn).map_err(ReplyError::Rejected)?;
                s.tables.intents.record_plain_write(&locks, now);
                Ok(Answer::Written {
                    index: 1,
                    term: 1,
                    hlc: now,
                })
            }
            Request::Step(step) => Ok(Answer::Step(s.tables.apply(step, &mut s.tree, now).0)),
        }
    }

    /// Runs hosts until nothing is in flight, delivering requests in `order` and ticking.
    fn settle(&mut self, hosts: &mut [Option<TxnHost>], mut out: Vec<(usize, HostCommand)>) {
        for round in 0..10_000 {
            for (h, command) in out.drain(..) {
                match command {
                    HostCommand::Request {
                        request,
                        shard,
                        what,
                    } => self.queue.push((h, request, shard, what)),
                    HostCommand::Reply { ticket, outcome } => {
                        assert!(
                            self.replies.insert((h, ticket), outcome).is_none(),
                            "answered once"
                        );
                    }
                }
            }
            if let Some((h, request, shard, what)) =
                (!self.queue.is_empty()).then(|| self.queue.remove(0))
            {
                let outcome = self.apply(shard, &what);
                if let Some(host) = hosts[h].as_mut() {
                    let mut more = Vec::new();
                    host.step(HostInput::Answer { request, outcome }, &mut more);
                    out.extend(more.into_iter().map(|c| (h, c)));
                }
                continue;
            }
            let busy = hosts
                .iter()
                .flatten()
                .any(|h| h.in_flight() > 0 || h.recoveries() > 0);
            let intents = self.shards.iter().any(|s| !s.tables.intents.is_empty());
            if !busy && !intents && round > 0 {
                return;
            }
            self.now_ms += 50;
            for (h, host) in hosts.iter_mut().enumerate() {
                if let Some(host) = host {
                    let mut more = Vec::new();
                    host.step(
                        HostInput::Tick {
                            now: Timestamp::new(self.now_ms, 0),
                        },
                        &mut more,
                    );
                    out.extend(more.into_iter().map(|c| (h, c)));
                }
            }
            // A leftover intent with no live coordinator is met by a reader on host 0.
            if !busy && intents {
                let met: Vec<(TxnMeta, u32)> = self
                    .shards
                    .iter()
                    .enumerate()
                    .flat_map(|(s, shard)| {
                        shard
                            .tables
                            .intents
                            .intents()
                            .map(move |i| (i.meta, s as u32))
                    })
                    .collect();
                let host = hosts[0].as_mut().expect("host 0 lives");
                for (holder, shard) in met {
                    let mut more = Vec::new();
                    host.step(HostInput::Push { holder, shard }, &mut more);
                    out.extend(more.into_iter().map(|c| (0, c)));
                }
            }
        }
        for host in hosts.iter().flatten() {
            eprintln!(
                "in flight {:?}",
                host.txns
                    .iter()
                    .map(|(t, h)| (
                        t,
                        format!("{:?}", h.state)
                            .chars()
                            .take(300)
                            .collect::<String>()
                    ))
                    .collect::<Vec<_>>()
            );
            eprintln!("later {:?}", host.later.len());
        }
        panic!("did not settle");
    }

    fn begin(
        &mut self,
        hosts: &mut [Option<TxnHost>],
        h: usize,
        ticket: u64,
        txn: Txn,
    ) -> Vec<(usize, HostCommand)> {
        let mut out = Vec::new();
        let now = self.now();
        hosts[h]
            .as_mut()
            .expect("live")
            .step(HostInput::Begin { ticket, txn, now }, &mut out);
        out.into_iter().map(|c| (h, c)).collect()
    }

    fn run(&mut self, hosts: &mut [Option<TxnHost>], ticket: u64, txn: Txn) -> Outcome {
        let out = self.begin(hosts, 0, ticket, txn);
        self.settle(hosts, out);
        self.replies.remove(&(0, ticket)).expect("answered")
    }

    fn gold(&self, path: &str) -> i64 {
        let map = ShardMap::new(SHARDS, 3).expect("map");
        let parsed = NodePath::parse(path, &Limits::default()).expect("valid");
        let shard = map.shard_of(&parsed).0 as usize;
        match self.shards[shard]
            .tree
            .get(&parsed)
            .and_then(|n| n.prop("gold").cloned())
        {
            Some(Value::Int(g)) => g,
            other => panic!("{path}: {other:?}"),
        }
    }
}

fn hosts(n: usize) -> Vec<Option<TxnHost>> {
    (0..n)
        .map(|i| {
            Some(TxnHost::new(
                ShardMap::new(SHARDS, 3).expect("map"),
                Limits::default(),
                i as u64 + 1,
                7,
            ))
        })
        .collect()
}

fn create(parent: &str, name: &str, gold: i64) -> Txn {
    Txn::single(Op::Create {
        parent: parent.into(),
        name: name.into(),
        class: "Player".into(),
        props: vec![Prop::new("gold", Value::Int(gold))],
    })
}

fn transfer(cluster: &Cluster, from: &str, to: &str, amount: i64) -> Txn {
    let (a, b) = (cluster.gold(from), cluster.gold(to));
    let set = |path: &str, gold: i64| Op::Set {
        path: path.into(),
        props: vec![Prop::new("gold", Value::Int(gold))],
    };
    let expect = |path: &str, gold: i64| Precondition {
        path: path.into(),
        expect: Expect::PropEquals {
            prop: "gold".into(),
            value: Value::Int(gold),
        },
    };
    Txn {
        expect: vec![expect(from, a), expect(to, b)],
        ops: vec![set(from, a - amount), set(to, b + amount)],
        session: None,
    }
}

/// Five players in one world, at least two of them on different entity shards.
fn world(cluster: &mut Cluster, hosts: &mut [Option<TxnHost>]) -> Vec<String> {
    assert!(cluster.run(hosts, 1, create("/root", "World", 0)).is_ok());
    let names: Vec<String> = ["Ann", "Bob", "Cid", "Dee", "Eve"]
        .iter()
        .map(|n| format!("/root/World/{n}"))
        .collect();
    for (i, path) in names.iter().enumerate() {
        let name = path.rsplit('/').next().expect("named");
        let outcome = cluster.run(hosts, 10 + i as u64, create("/root/World", name, 100));
        assert!(
            matches!(outcome, Ok(Answer::Written { .. })),
            "{name}: {outcome:?}"
        );
    }
    names
}

#[test]
fn entities_made_through_the_host_are_whole_in_the_spine_and_their_shards() {
    let mut cluster = Cluster::new();
    let mut hosts = hosts(1);
    let names = world(&mut cluster, &mut hosts);
    let spine = cluster.shards[0]
        .tree
        .get(&NodePath::parse("/root/World", &Limits::default()).expect("ok"))
        .expect("world");
    assert_eq!(spine.children().count(), 5, "a dentry per entity");
    for path in &names {
        assert_eq!(cluster.gold(path), 100);
    }
    assert!(
        cluster.shards.iter().all(|s| s.tables.intents.is_empty()),
        "every intent resolved"
    );
}

#[test]
fn transfers_between_shards_commit_atomically_and_conflicts_wait() {
    let mut cluster = Cluster::new();
    let mut hosts = hosts(2);
    let names = world(&mut cluster, &mut hosts);
    let map = ShardMap::new(SHARDS, 3).expect("map");
    let shard = |p: &str| map.shard_of(&NodePath::parse(p, &Limits::default()).expect("ok"));
    let (a, b) = names
        .iter()
        .flat_map(|a| names.iter().map(move |b| (a, b)))
        .find(|(a, b)| shard(a) != shard(b))
        .expect("two players on different shards");
    // Two transfers at once from two hosts over the same accounts: both read the same
    // balances, so the second to take its intents fails its precondition or waits, and
    // the money is conserved either way.
    let first = transfer(&cluster, a, b, 10);
    let second = transfer(&cluster, b, a, 3);
    let mut out = cluster.begin(&mut hosts, 0, 100, first);
    out.extend(cluster.begin(&mut hosts, 1, 200, second));
    cluster.settle(&mut hosts, out);
    let one = cluster.replies.remove(&(0, 100)).expect("answered");
    let two = cluster.replies.remove(&(1, 200)).expect("answered");
    assert!(one.is_ok() || two.is_ok(), "{one:?} / {two:?}");
    assert_eq!(cluster.gold(a) + cluster.gold(b), 200, "money is conserved");
    let moved = match (one.is_ok(), two.is_ok()) {
        (true, true) => -7,
        (true, false) => -10,
        (false, true) => 3,
        (false, false) => unreachable!(),
    };
    assert_eq!(cluster.gold(a), 100 + moved);
}

#[test]
fn a_transaction_whose_host_died_mid_commit_is_recovered_by_a_pusher() {
    let mut cluster = Cluster::new();
    let mut hosts = hosts(2);
    let names = world(&mut cluster, &mut hosts);
    let txn = transfer(&cluster, &names[0], &names[1], 40);
    // Host 1 starts the transfer; half its requests reach their shards, then it dies.
    let out = cluster.begin(&mut hosts, 1, 7, txn);
    let requests: Vec<(usize, u64, u32, Request)> = out
        .into_iter()
        .filter_map(|(h, c)| match c {
            HostCommand::Request {
                request,
                shard,
                what,
            } => Some((h, request, shard, what)),
            HostCommand::Reply { .. } => None,
        })
        .collect();
    for (_, _, shard, what) in requests.iter().take(requests.len() / 2 + 1) {
        let _ = cluster.apply(*shard, what);
    }
    hosts[1] = None;
    // Host 0 meets the leftover intents, waits out the expiry and recovers.
    cluster.now_ms += super::super::EXPIRY_MS + 1;
    cluster.settle(&mut hosts, Vec::new());
    assert!(
        cluster.shards.iter().all(|s| s.tables.intents.is_empty()),
        "recovery resolved them"
    );
    let sum = cluster.gold(&names[0]) + cluster.gold(&names[1]);
    assert_eq!(sum, 200, "all or nothing");
}
