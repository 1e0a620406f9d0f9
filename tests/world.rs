//! One world over many shards, through the real gateways of `treesync local` (8 shards by
//! default): entities created through any server are whole in `tree` and `get` from every
//! server; transfers between entities on different shards are atomic; moves between worlds
//! keep subtrees and properties; deleting a world leaves nothing behind in any shard.

mod support;

use support::local::LocalCluster;
use support::ws::{connect, dict, run, s, shard_of};
use treesync_core::Value;
use treesync_net::ws_client::field;

fn names(node: &Value) -> Vec<String> {
    match field(node, "children") {
        Some(Value::Array(children)) => children
            .iter()
            .filter_map(|c| match field(c, "name") {
                Some(Value::String(n)) => Some(n.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn child<'v>(node: &'v Value, name: &str) -> &'v Value {
    match field(node, "children") {
        Some(Value::Array(children)) => children
            .iter()
            .find(|c| field(c, "name") == Some(&s(name)))
            .unwrap_or_else(|| panic!("no child {name}")),
        _ => panic!("no children"),
    }
}

fn gold(node: &Value) -> i64 {
    match field(node, "props").and_then(|p| field(p, "gold")) {
        Some(Value::Int(g)) => *g,
        other => panic!("gold: {other:?}"),
    }
}

const PLAYERS: [&str; 6] = ["Ann", "Bob", "Cid", "Dee", "Eve", "Fay"];

#[test]
fn a_world_over_many_shards_is_whole_from_every_server() {
    let cluster = LocalCluster::start("world", &[]);
    run(async {
        let mut clients = Vec::new();
        for url in &cluster.urls {
            clients.push(connect(url).await);
        }
        clients[0]
            .create("/root", "World", "Node2D", vec![])
            .await
            .expect("world");
        clients[0]
            .create("/root", "Zone2", "Node2D", vec![])
            .await
            .expect("zone");
        for (i, name) in PLAYERS.iter().enumerate() {
            let props = vec![("gold".to_owned(), Value::Int(100))];
            let c = &mut clients[i % 3];
            c.create("/root/World", name, "Player", props)
                .await
                .expect("player");
            let player = format!("/root/World/{name}");
            c.create(&player, "Bag", "Node", vec![]).await.expect("bag");
        }
        let shards: std::collections::BTreeSet<u32> = PLAYERS
            .iter()
            .map(|n| shard_of(&format!("/root/World/{n}")))
            .collect();
        assert!(shards.len() >= 3, "the players span shards: {shards:?}");
        for c in clients.iter_mut() {
            let tree = c.tree("/root/World").await.expect("tree");
            assert_eq!(names(&tree), PLAYERS.to_vec(), "every player, in order");
            for name in PLAYERS {
                let player = child(&tree, name);
                assert_eq!(gold(player), 100, "{name}'s props come from its shard");
                assert_eq!(names(player), vec!["Bag"], "{name}'s subtree too");
            }
            let summary = c.get("/root/World").await.expect("get");
            let listed: Vec<Value> = PLAYERS.iter().map(|n| s(n)).collect();
            assert_eq!(
                field(&summary, "children"),
                Some(&Value::Array(listed)),
                "by name"
            );
        }

        // Transfers between players of different shards, atomic with preconditions.
        let (from, to) = PLAYERS
            .iter()
            .flat_map(|a| PLAYERS.iter().map(move |b| (*a, *b)))
            .find(|(a, b)| {
                shard_of(&format!("/root/World/{a}")) != shard_of(&format!("/root/World/{b}"))
            })
            .expect("two players on different shards");
        let set = |name: &str, gold: i64| {
            dict(&[
                ("op", s("set")),
                ("path", s(&format!("/root/World/{name}"))),
                ("props", dict(&[("gold", Value::Int(gold))])),
            ])
        };
        let expect = |name: &str, gold: i64| {
            dict(&[
                ("path", s(&format!("/root/World/{name}"))),
                ("prop", s("gold")),
                ("value", Value::Int(gold)),
            ])
        };
        let ops = vec![set(from, 70), set(to, 130)];
        clients[1]
            .txn(ops.clone(), vec![expect(from, 100), expect(to, 100)])
            .await
            .expect("transfer");
        let stale = clients[2]
            .txn(ops, vec![expect(from, 100), expect(to, 100)])
            .await;
        assert!(
            stale.is_err(),
            "the same transfer again fails its preconditions"
        );
        for c in clients.iter_mut() {
            let tree = c.tree("/root/World").await.expect("tree");
            assert_eq!(gold(child(&tree, from)) + gold(child(&tree, to)), 200);
            assert_eq!(gold(child(&tree, from)), 70);
        }

        // A player moves to another world: its subtree and props go with it.
        clients[2]
            .move_node(&format!("/root/World/{from}"), "/root/Zone2", None)
            .await
            .expect("move");
        for c in clients.iter_mut() {
            let zone = c.tree("/root/Zone2").await.expect("tree");
            assert_eq!(names(&zone), vec![from]);
            assert_eq!(gold(child(&zone, from)), 70);
            assert_eq!(names(child(&zone, from)), vec!["Bag"]);
            let world = c.tree("/root/World").await.expect("tree");
            assert!(!names(&world).contains(&from.to_owned()), "gone from World");
        }
        clients[0]
            .rename(&format!("/root/Zone2/{from}"), "Renamed")
            .await
            .expect("rename");
        let zone = clients[1].tree("/root/Zone2").await.expect("tree");
        assert_eq!(names(&zone), vec!["Renamed"]);
        assert_eq!(gold(child(&zone, "Renamed")), 70);

        // Deleting a world deletes every entity below it, in every shard.
        clients[0].delete("/root/World").await.expect("delete");
        for c in clients.iter_mut() {
            let root = c.tree("/root").await.expect("tree");
            assert_eq!(names(&root), vec!["Zone2"]);
            for name in PLAYERS {
                let gone = c.get(&format!("/root/World/{name}")).await;
                assert!(gone.is_err(), "{name} left nothing behind");
            }
        }
        // A world re-created under the old name starts empty.
        clients[0]
            .create("/root", "World", "Node2D", vec![])
            .await
            .expect("again");
        let world = clients[2].tree("/root/World").await.expect("tree");
        assert!(names(&world).is_empty());
    });
}
