//! Subscriptions above the shard roots through the real gateways of `treesync local`
//! (8 shards): each server merges every shard's feed (`cut::Merge`), so a subscriber of a
//! world sees each cross-shard transfer as one change, the bank whole at every `resolved`,
//! and resumes from its last `resolved` on another server without gap or duplicate; every
//! `tree` of the world, read while transfers run, holds the whole bank (a consistent cut).

mod support;

use std::collections::{BTreeMap, BTreeSet};

use futures_util::future::join_all;
use support::local::LocalCluster;
use support::ws::{connect, dict, run, s, shard_of};
use treesync_core::Value;
use treesync_net::ws_client::{field, PushEvent, WsClient};

const PLAYERS: [&str; 6] = ["Ann", "Bob", "Cid", "Dee", "Eve", "Fay"];
const GOLD: i64 = 100;
const WORLD: &str = "/root/World";
/// Transfers each of the three writers attempts, before and after the resume.
const TRANSFERS: usize = 6;

/// Gold by player in a `tree` of the world.
fn golds(tree: &Value) -> BTreeMap<String, i64> {
    players(tree, "")
        .into_iter()
        .map(|(name, (_, g))| (name, g))
        .collect()
}

/// Every node with a `gold` property below `tree`: its world (parent's name) and gold.
fn players(tree: &Value, parent: &str) -> BTreeMap<String, (String, i64)> {
    let mut found = BTreeMap::new();
    let Some(Value::String(name)) = field(tree, "name") else {
        return found;
    };
    if let Some(Value::Int(g)) = field(tree, "props").and_then(|p| field(p, "gold")) {
        found.insert(name.clone(), (parent.to_owned(), *g));
    }
    if let Some(Value::Array(children)) = field(tree, "children") {
        for child in children {
            found.extend(players(child, name));
        }
    }
    found
}

fn last_segment(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_owned()
}

/// What a subscriber saw: a mirror of the players' gold built only from pushes, the commit
/// timestamps of the changes, and the last `resolved`.
#[derive(Default)]
struct Mirror {
    /// (world, player) → gold: a mirror of the worlds, keyed by path as a tree is.
    at: BTreeMap<(String, String), i64>,
    /// Each change received: (commit timestamp, txn, op count).
    log: Vec<(i64, Option<String>, usize)>,
    resolved: i64,
    resolutions: usize,
    /// The cut the snapshot was at (the first `resolved`): changes at or below it are in it.
    snapshot_at: Option<i64>,
    awaiting_cut: bool,
    /// Every two-op change is a transfer between shards (the first test's pairs).
    pairs_cross_shards: bool,
}

impl Mirror {
    /// Applies one push, checking the merged subscription's guarantees as it goes.
    fn apply(&mut self, event: PushEvent) {
        match event {
            // The cut at the `resolved` that follows it.
            PushEvent::Snapshot { tree, .. } => {
                let found = players(&tree, "").into_iter();
                self.at = found.map(|(name, (world, g))| ((world, name), g)).collect();
                self.awaiting_cut = true;
            }
            PushEvent::Change { hlc, ops, txn, .. } => {
                assert!(
                    hlc > self.resolved,
                    "a change at {hlc} after resolved {}",
                    self.resolved
                );
                for op in &ops {
                    self.apply_op(op);
                }
                if self.pairs_cross_shards && ops.len() == 2 {
                    assert!(
                        txn.is_some(),
                        "a cross-shard transfer is one change: {ops:?}"
                    );
                }
                self.log.push((hlc, txn.clone(), ops.len()));
            }
            PushEvent::Resolved { hlc, .. } => {
                assert!(hlc > self.resolved, "resolved grows: {hlc}");
                self.resolved = hlc;
                self.resolutions += 1;
                if std::mem::take(&mut self.awaiting_cut) {
                    self.snapshot_at = Some(hlc);
                }
                let players = self.players();
                assert!(
                    players.len() == PLAYERS.len() && self.at.len() == PLAYERS.len(),
                    "at resolved {hlc} every player is in exactly one world: {:?}",
                    self.at
                );
                let total: i64 = players.values().map(|(_, g)| g).sum();
                assert_eq!(
                    total,
                    GOLD * PLAYERS.len() as i64,
                    "the bank is whole at resolved {hlc}: {players:?}"
                );
            }
            PushEvent::Overflow { .. } => panic!("no subscriber here falls behind"),
        }
    }

    /// One op of a change, on the players it touches (sets, creates, deletes and moves of
    /// entities; a move across shards may come as a delete and a create).
    fn apply_op(&mut self, op: &Value) {
        let text = |name| match field(op, name) {
            Some(Value::String(t)) => t.clone(),
            _ => String::new(),
        };
        let gold = field(op, "props").and_then(|p| field(p, "gold")).cloned();
        // A path's world and entity: `/root/World/Ann` → ("World", "Ann").
        let at = |path: &str| {
            let mut segments = path.rsplit('/');
            let name = segments.next().unwrap_or_default().to_owned();
            (segments.next().unwrap_or_default().to_owned(), name)
        };
        match text("op").as_str() {
            "set" => {
                if let (Some(Value::Int(g)), Some(player)) =
                    (gold, self.at.get_mut(&at(&text("path"))))
                {
                    *player = g;
                }
            }
            "create" => {
                if let Some(Value::Int(g)) = gold {
                    self.at
                        .insert((last_segment(&text("parent")), text("name")), g);
                }
            }
            "delete" => {
                self.at.remove(&at(&text("path")));
            }
            "move" => {
                if let Some(g) = self.at.remove(&at(&text("path"))) {
                    let name = last_segment(&text("path"));
                    self.at.insert((last_segment(&text("parent")), name), g);
                }
            }
            _ => {}
        }
    }

    /// Player → (world, gold) (a player in two worlds shows once here, twice in `at`).
    fn players(&self) -> BTreeMap<String, (String, i64)> {
        let at = self.at.iter();
        at.map(|((world, name), g)| (name.clone(), (world.clone(), *g)))
            .collect()
    }

    /// Player → gold.
    fn gold(&self) -> BTreeMap<String, i64> {
        self.players()
            .into_iter()
            .map(|(n, (_, g))| (n, g))
            .collect()
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
            let mirror = Mirror {
                pairs_cross_shards: true,
                ..Mirror::default()
            };
            subscribers.push((client, mirror));
        }

        let first = transfers(&mut writers, &pairs).await;
        assert!(first.len() >= TRANSFERS, "transfers commit: {first:?}");
        let last = *first.iter().max().expect("some committed");
        for (client, mirror) in subscribers.iter_mut() {
            mirror.follow(client, last).await;
            let cut = mirror.snapshot_at.expect("a snapshot came first");
            let committed: BTreeSet<i64> = first.iter().copied().filter(|h| *h > cut).collect();
            assert_unique(&mirror.log);
            let seen: BTreeSet<i64> = mirror.log.iter().map(|(hlc, ..)| *hlc).collect();
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
        let seen: BTreeSet<i64> = mirror.log.iter().map(|(hlc, ..)| *hlc).collect();
        for hlc in &second {
            assert!(
                seen.contains(hlc),
                "transfer at {hlc} reached the resumed mirror"
            );
        }
        // The mirror built from pushes equals the cluster's tree.
        let tree = writers[1].tree(WORLD).await.expect("tree");
        assert_eq!(
            mirror.gold(),
            golds(&tree),
            "the resumed mirror is the tree"
        );
        for (client, other) in subscribers.iter_mut() {
            other.follow(client, last).await;
            assert_eq!(other.gold(), golds(&tree), "every mirror is the tree");
        }
    });
}

/// Evaluates a client call until it succeeds: servers that just started (or just lost one
/// of them) have no leaders yet. Polls real processes every 20 ms, for at most 30 s.
macro_rules! until_ok {
    ($what:expr, $call:expr) => {{
        let started = std::time::Instant::now();
        loop {
            match $call.await {
                Ok(value) => break value,
                Err(error) if started.elapsed() < std::time::Duration::from_secs(30) => {
                    let _ = error;
                    // Polling an external process, not synchronisation within the test.
                    actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(error) => panic!("{}: {error:?}", $what),
            }
        }
    }};
}

/// Player `round % 6` moves to the other world every third round; otherwise it gives one
/// gold to the next player (wherever both are), with preconditions. Every `tree` of `/root`
/// read on the way holds the whole bank. Returns the commit timestamps of what committed
/// and how many moves did.
async fn world_rounds(writer: &mut WsClient, rounds: std::ops::Range<usize>) -> (Vec<i64>, usize) {
    let (mut hlcs, mut moves) = (Vec::new(), 0);
    for round in rounds {
        let (a, b) = (PLAYERS[round % 6], PLAYERS[(round + 1) % 6]);
        let Ok(tree) = writer.tree("/root").await else {
            continue; // a server just died: the next round reads again
        };
        let now = players(&tree, "");
        let total: i64 = now.values().map(|(_, g)| g).sum();
        assert_eq!(total, GOLD * 6, "a consistent read of /root: {now:?}");
        let (world_a, gold_a) = now[a].clone();
        let path_a = format!("/root/{world_a}/{a}");
        if round % 3 == 0 {
            let there = if world_a == "World" {
                "/root/Zone"
            } else {
                WORLD
            };
            if let Ok(hlc) = writer.move_node(&path_a, there, None).await {
                hlcs.push(hlc as i64);
                moves += 1;
            }
            continue;
        }
        let (world_b, gold_b) = now[b].clone();
        let path_b = format!("/root/{world_b}/{b}");
        let set = |p: &str, g: i64| {
            let props = dict(&[("gold", Value::Int(g))]);
            dict(&[("op", s("set")), ("path", s(p)), ("props", props)])
        };
        let expect = |p: &str, g: i64| {
            dict(&[
                ("path", s(p)),
                ("prop", s("gold")),
                ("value", Value::Int(g)),
            ])
        };
        let ops = vec![set(&path_a, gold_a - 1), set(&path_b, gold_b + 1)];
        let expects = vec![expect(&path_a, gold_a), expect(&path_b, gold_b)];
        hlcs.extend(writer.txn(ops, expects).await.ok().map(|h| h as i64));
    }
    (hlcs, moves)
}

/// Three real `treesync serve` processes (8 shards): merged subscribers of `/root` on each
/// while players are given gold and moved between two worlds; the server of the first
/// subscriber is killed with `kill -9`, and the subscriber resumes on another server from
/// its last `resolved`. Every mirror, built only from pushes, ends equal to the cluster's
/// tree (players, their worlds and gold), no change came twice, none at or below a
/// `resolved` already received, and no player was ever in two worlds.
#[test]
fn merged_subscribers_resume_on_another_server_after_kill_9() {
    let dir = std::env::temp_dir().join(format!("treesync-merged-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir); // a leftover of an earlier run, if any
    let (mut servers, _) = support::serve::cluster(&dir, 8, &[]);
    for server in servers.iter_mut() {
        server.start();
    }
    let url = support::serve::gateway_url;
    run(async {
        let mut writer = until_ok!("connect", WsClient::connect(&url(2)));
        for world in ["World", "Zone"] {
            until_ok!("a world", writer.create("/root", world, "Node2D", vec![]));
        }
        for name in PLAYERS {
            let props = vec![("gold".to_owned(), Value::Int(GOLD))];
            until_ok!(
                "a player",
                writer.create(WORLD, name, "Player", props.clone())
            );
        }
        let mut subscribers = Vec::new();
        for id in 1..=3 {
            let mut client = until_ok!("connect", WsClient::connect(&url(id)));
            until_ok!("subscribe", client.subscribe("/root", None));
            subscribers.push((client, Mirror::default()));
        }
        let (mut committed, mut moves) = world_rounds(&mut writer, 0..12).await;
        let (mut gone, mut mirror) = subscribers.remove(0);
        let first = *committed.iter().max().expect("writes committed");
        mirror.follow(&mut gone, first).await;
        servers[0].kill9();
        // What the killed server sent before it died is valid; then its stream ends.
        while let Ok(event) = gone.next_event().await {
            mirror.apply(event);
        }
        let position = mirror.resolved;
        let (more, more_moves) = world_rounds(&mut writer, 12..24).await;
        committed.extend(more);
        moves += more_moves;
        let mut resumed = until_ok!("connect", WsClient::connect(&url(3)));
        until_ok!("resume", resumed.subscribe("/root", Some(position)));
        let last = *committed.iter().max().expect("writes committed");
        mirror.follow(&mut resumed, last).await;
        assert_unique(&mirror.log);
        let tree = until_ok!("tree", writer.tree("/root"));
        let cluster = players(&tree, "");
        assert_eq!(mirror.players(), cluster, "the resumed mirror is the tree");
        for (client, other) in subscribers.iter_mut() {
            other.follow(client, last).await;
            assert_unique(&other.log);
            assert_eq!(other.players(), cluster, "every mirror is the tree");
        }
        assert!(
            committed.len() >= 12,
            "most writes committed: {}",
            committed.len()
        );
        assert!(moves >= 4, "players moved between worlds: {moves}");
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// A resume from a position the shards' logs no longer hold (compacted after 20 entries)
/// gets the merged snapshot marked `resync` and goes on from there, instead of failing and
/// restarting forever; a `from` no server has reached is refused.
#[test]
fn a_resume_behind_compacted_logs_gets_a_resync_snapshot() {
    let cluster = LocalCluster::start("merged-resync", &["--compact-entries", "20"]);
    run(async {
        let mut writer = connect(&cluster.urls[0]).await;
        writer
            .create("/root", "World", "Node2D", vec![])
            .await
            .expect("world");
        let mut created = 0;
        for name in PLAYERS {
            let props = vec![("gold".to_owned(), Value::Int(GOLD))];
            created = writer
                .create(WORLD, name, "Player", props)
                .await
                .expect("player") as i64;
        }
        let mut gone = connect(&cluster.urls[0]).await;
        gone.subscribe(WORLD, None).await.expect("subscribe");
        let mut mirror = Mirror::default();
        mirror.follow(&mut gone, created).await;
        drop(gone);
        let position = mirror.resolved;
        // Far more entries than a log keeps, on every player's shard.
        let mut last = 0;
        for i in 0..150 {
            let path = format!("{WORLD}/{}", PLAYERS[i % PLAYERS.len()]);
            let xp = vec![("xp".to_owned(), Value::Int(i as i64))];
            last = writer.set(&path, xp).await.expect("set") as i64;
        }
        let mut resumed = connect(&cluster.urls[1]).await;
        resumed
            .subscribe(WORLD, Some(position))
            .await
            .expect("resume");
        match resumed.next_event().await.expect("a push") {
            event @ PushEvent::Snapshot { resync: true, .. } => mirror.apply(event),
            other => panic!("a resync snapshot first, not {other:?}"),
        }
        mirror.follow(&mut resumed, last).await;
        let tree = writer.tree(WORLD).await.expect("tree");
        assert_eq!(
            mirror.gold(),
            golds(&tree),
            "the resynchronised mirror is the tree"
        );

        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as u64;
        let future = treesync_core::hlc::Timestamp::new(now_ms + 600_000, 0).as_u64() as i64;
        let refused = resumed.subscribe(WORLD, Some(future)).await;
        assert!(
            matches!(&refused, Err(treesync_net::ws_client::WsClientError::Refused { code, .. }) if code == "bad_request"),
            "a from ahead of every clock: {refused:?}"
        );
    });
}
