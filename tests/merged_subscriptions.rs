//! Subscriptions above the shard roots through the real gateways of `treesync local`
//! (8 shards): each server merges every shard's feed (`cut::Merge`), so a subscriber of a
//! world sees each cross-shard transfer as one change, the bank whole at every `resolved`,
//! and resumes from its last `resolved` on another server without gap or duplicate; every
//! `tree` of the world, read while transfers run, holds the whole bank (a consistent cut).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use futures_util::future::join_all;
use support::local::LocalCluster;
use treesync_core::shard::ShardMap;
use treesync_core::{Limits, NodePath, Value};
use treesync_net::ws_client::{field, PushEvent, WsClient};

const PLAYERS: [&str; 6] = ["Ann", "Bob", "Cid", "Dee", "Eve", "Fay"];
const GOLD: i64 = 100;
const WORLD: &str = "/root/World";
/// Transfers each of the three writers attempts, before and after the resume.
const TRANSFERS: usize = 6;

fn run<F: Future<Output = ()>>(test: F) {
    actix_rt::System::new().block_on(test);
}

async fn connect(url: &str) -> WsClient {
    WsClient::connect(url).await.expect("connect")
}

fn s(text: &str) -> Value {
    Value::String(text.into())
}

fn dict(pairs: &[(&str, Value)]) -> Value {
    Value::Dictionary(pairs.iter().map(|(k, v)| (s(k), v.clone())).collect())
}

fn shard_of(path: &str) -> u32 {
    let map = ShardMap::new(8, 3).expect("the default layout of treesync local");
    map.shard_of(&NodePath::parse(path, &Limits::default()).expect("valid"))
        .0
}

/// Gold by player in a `tree` of the world.
fn golds(tree: &Value) -> BTreeMap<String, i64> {
    let Some(Value::Array(children)) = field(tree, "children") else {
        return BTreeMap::new();
    };
    children
        .iter()
        .filter_map(|c| {
            let Some(Value::String(name)) = field(c, "name") else {
                return None;
            };
            match field(c, "props").and_then(|p| field(p, "gold")) {
                Some(Value::Int(g)) => Some((name.clone(), *g)),
                _ => None,
            }
        })
        .collect()
}

/// What a subscriber saw: a mirror of the players' gold built only from pushes, the commit
/// timestamps of the changes, and the last `resolved`.
#[derive(Default)]
struct Mirror {
    gold: BTreeMap<String, i64>,
    changes: Vec<i64>,
    /// Each change's (hlc, txn, ops), for failure messages.
    log: Vec<(i64, Option<String>, usize)>,
    resolved: i64,
    resolutions: usize,
    /// The cut the snapshot was at (the first `resolved`): changes at or below it are in it.
    snapshot_at: Option<i64>,
    awaiting_cut: bool,
}

impl Mirror {
    /// Applies one push, checking the merged subscription's guarantees as it goes.
    fn apply(&mut self, event: PushEvent) {
        match event {
            // The cut at the `resolved` that follows it.
            PushEvent::Snapshot { tree, .. } => {
                self.gold = golds(&tree);
                self.awaiting_cut = true;
            }
            PushEvent::Change { hlc, ops, txn, .. } => {
                assert!(
                    hlc > self.resolved,
                    "a change at {hlc} after resolved {}",
                    self.resolved
                );
                for op in &ops {
                    let Some(Value::String(path)) = field(op, "path") else {
                        continue;
                    };
                    let name = path.rsplit('/').next().expect("a path").to_owned();
                    if let Some(Value::Int(g)) = field(op, "props").and_then(|p| field(p, "gold")) {
                        self.gold.insert(name, *g);
                    }
                }
                if ops.len() == 2 {
                    assert!(txn.is_some(), "a cross-shard transfer names its txn");
                }
                self.log.push((hlc, txn.clone(), ops.len()));
                self.changes.push(hlc);
            }
            PushEvent::Resolved { hlc, .. } => {
                assert!(hlc > self.resolved, "resolved grows: {hlc}");
                self.resolved = hlc;
                self.resolutions += 1;
                if std::mem::take(&mut self.awaiting_cut) {
                    self.snapshot_at = Some(hlc);
                }
                let total: i64 = self.gold.values().sum();
                assert_eq!(
                    total,
                    GOLD * PLAYERS.len() as i64,
                    "the bank is whole at resolved {hlc}: {:?}",
                    self.gold
                );
            }
            PushEvent::Overflow { .. } => panic!("no subscriber here falls behind"),
        }
    }

    /// Reads pushes until the mirror is resolved at or above `hlc`.
    async fn follow(&mut self, client: &mut WsClient, hlc: i64) {
        while self.resolved < hlc {
            let event = client.next_event().await.expect("a push");
            self.apply(event);
        }
    }
}

/// A transfer of 1 gold between two players on different shards (with preconditions):
/// the commit timestamp, or `None` if it was refused (a concurrent one changed them).
async fn transfer(client: &mut WsClient, from: &str, to: &str) -> Option<i64> {
    let world = client.tree(WORLD).await.expect("tree");
    let gold = golds(&world);
    // A `tree` above the shard roots is one cut: never half of a concurrent transfer.
    let total: i64 = gold.values().sum();
    assert_eq!(
        total,
        GOLD * PLAYERS.len() as i64,
        "a consistent read: {gold:?}"
    );
    let (a, b) = (gold[from], gold[to]);
    let set = |name: &str, gold: i64| {
        dict(&[
            ("op", s("set")),
            ("path", s(&format!("{WORLD}/{name}"))),
            ("props", dict(&[("gold", Value::Int(gold))])),
        ])
    };
    let expect = |name: &str, gold: i64| {
        dict(&[
            ("path", s(&format!("{WORLD}/{name}"))),
            ("prop", s("gold")),
            ("value", Value::Int(gold)),
        ])
    };
    let ops = vec![set(from, a - 1), set(to, b + 1)];
    let outcome = client.txn(ops, vec![expect(from, a), expect(to, b)]).await;
    outcome.ok().map(|hlc| hlc as i64)
}

/// Each writer transfers between its own pair of players on different shards.
async fn transfers(writers: &mut [WsClient], pairs: &[(&str, &str)]) -> Vec<i64> {
    let runs = writers
        .iter_mut()
        .zip(pairs)
        .map(|(client, (from, to))| async move {
            let mut committed = Vec::new();
            for _ in 0..TRANSFERS {
                committed.extend(transfer(client, from, to).await);
            }
            committed
        });
    join_all(runs).await.into_iter().flatten().collect()
}

/// No change came twice: each is one (commit timestamp, transaction). Two transactions of
/// different servers may share a timestamp (HLCs are per server); their ids differ.
fn assert_unique(log: &[(i64, Option<String>, usize)]) {
    let keys: BTreeSet<(i64, Option<String>)> = log
        .iter()
        .map(|(hlc, txn, _)| (*hlc, txn.clone()))
        .collect();
    assert_eq!(keys.len(), log.len(), "no change twice: {log:?}");
}

#[test]
fn merged_subscribers_see_whole_transfers_and_resume_on_another_server() {
    let cluster = LocalCluster::start("merged-subscriptions", &[]);
    run(async {
        let mut writers = Vec::new();
        for url in &cluster.urls {
            writers.push(connect(url).await);
        }
        writers[0]
            .create("/root", "World", "Node2D", vec![])
            .await
            .expect("world");
        for name in PLAYERS {
            let props = vec![("gold".to_owned(), Value::Int(GOLD))];
            writers[0]
                .create(WORLD, name, "Player", props)
                .await
                .expect("player");
        }
        let mut pairs = Vec::new();
        for a in PLAYERS {
            for b in PLAYERS {
                let used = pairs
                    .iter()
                    .any(|(x, y)| [x, y].contains(&&a) || [x, y].contains(&&b));
                if a != b
                    && !used
                    && shard_of(&format!("{WORLD}/{a}")) != shard_of(&format!("{WORLD}/{b}"))
                {
                    pairs.push((a, b));
                }
            }
        }
        assert_eq!(
            pairs.len(),
            3,
            "three disjoint pairs across shards: {pairs:?}"
        );

        // A merged subscriber on every server.
        let mut subscribers = Vec::new();
        for url in &cluster.urls {
            let mut client = connect(url).await;
            let reply = client
                .request("subscribe", vec![("path", s(WORLD))])
                .await
                .expect("subscribe");
            assert_eq!(field(&reply, "merged"), Some(&Value::Bool(true)));
            subscribers.push((client, Mirror::default()));
        }

        let first = transfers(&mut writers, &pairs).await;
        assert!(first.len() >= TRANSFERS, "transfers commit: {first:?}");
        let last = *first.iter().max().expect("some committed");
        for (client, mirror) in subscribers.iter_mut() {
            mirror.follow(client, last).await;
            let cut = mirror.snapshot_at.expect("a snapshot came first");
            let committed: BTreeSet<i64> = first.iter().copied().filter(|h| *h > cut).collect();
            assert_unique(&mirror.log);
            let seen: BTreeSet<i64> = mirror.changes.iter().copied().collect();
            assert!(
                committed.is_subset(&seen),
                "every committed transfer came as a change: {committed:?} vs {seen:?}"
            );
            assert!(mirror.resolutions > 0);
        }

        // Server 1's subscriber leaves at its last resolved and resumes on server 3.
        let (gone, mut mirror) = subscribers.remove(0);
        drop(gone);
        let position = mirror.resolved;
        let second = transfers(&mut writers, &pairs).await;
        let mut resumed = connect(&cluster.urls[2]).await;
        resumed
            .subscribe(WORLD, Some(position))
            .await
            .expect("resume");
        let last = *second.iter().max().unwrap_or(&position);
        mirror.follow(&mut resumed, last).await;
        assert_unique(&mirror.log);
        let seen: BTreeSet<i64> = mirror.changes.iter().copied().collect();
        for hlc in &second {
            assert!(
                seen.contains(hlc),
                "transfer at {hlc} reached the resumed mirror"
            );
        }
        // The mirror built from pushes equals the cluster's tree.
        let tree = writers[1].tree(WORLD).await.expect("tree");
        assert_eq!(mirror.gold, golds(&tree), "the resumed mirror is the tree");
        for (client, other) in subscribers.iter_mut() {
            other.follow(client, last).await;
            assert_eq!(other.gold, golds(&tree), "every mirror is the tree");
        }
    });
}
