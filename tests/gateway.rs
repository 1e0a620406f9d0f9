//! The WebSocket gateway against a real `treesync local` (3 replicas, a gateway per
//! server), through the Rust client: every op, linearizable reads through another server,
//! subscriptions (snapshot, stream, resume, slow subscribers), bad input, chunking.

mod support;

use std::future::Future;

use futures_util::StreamExt;
use support::local::LocalCluster;
use treesync_core::codec::{self, GodotVersion};
use treesync_core::Value;
use treesync_net::ws_client::{field, PushEvent, WsClient, WsClientError};

fn s(text: &str) -> Value {
    Value::String(text.into())
}

fn dict(pairs: &[(&str, Value)]) -> Value {
    Value::Dictionary(pairs.iter().map(|(k, v)| (s(k), v.clone())).collect())
}

/// One shard: the subscription tests below check a single shard's feed (positions are log
/// indexes); a path above the shard roots of a multi-shard cluster is a merged subscription
/// (`tests/merged_subscriptions.rs`).
const SINGLE_SHARD: &[&str] = &["--shards", "1"];

fn run<F: Future<Output = ()>>(test: F) {
    actix_rt::System::new().block_on(test);
}

async fn connect(url: &str) -> WsClient {
    WsClient::connect(url).await.expect("connect")
}

fn int(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::Int(i)) => *i,
        other => panic!("expected an int, got {other:?}"),
    }
}

fn code(result: Result<impl std::fmt::Debug, WsClientError>) -> String {
    match result {
        Err(WsClientError::Refused { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn names(node: &Value) -> Vec<Value> {
    match field(node, "children") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|c| field(c, "name").cloned().unwrap_or_else(|| c.clone()))
            .collect(),
        other => panic!("no children in {other:?}"),
    }
}

#[test]
fn every_op_works_through_the_gateway() {
    let cluster = LocalCluster::start("ops", &[]);
    run(async {
        let mut c = connect(&cluster.urls[0]).await;
        let h1 = c
            .create("/root", "World", "Node", vec![])
            .await
            .expect("create");
        let hp = vec![("hp".to_owned(), Value::Int(100))];
        let h2 = c
            .create("/root/World", "Player", "Node2D", hp)
            .await
            .expect("create");
        assert!(h2 > h1, "HLCs increase along commits");
        let position = vec![("position".to_owned(), Value::Vector2([10.0, 20.0]))];
        c.set("/root/World/Player", position).await.expect("set");
        assert_eq!(
            c.get_prop("/root/World/Player", "position")
                .await
                .expect("get"),
            Value::Vector2([10.0, 20.0])
        );
        let player = c.get("/root/World/Player").await.expect("get node");
        assert_eq!(field(&player, "class"), Some(&s("Node2D")));
        assert_eq!(names(&player), Vec::<Value>::new());
        c.create("/root/World", "Enemy", "Node2D", vec![])
            .await
            .expect("create");
        c.rename("/root/World/Enemy", "Boss").await.expect("rename");
        c.move_node("/root/World/Boss", "/root/World", Some(0))
            .await
            .expect("move");
        let world = c.get("/root/World").await.expect("get");
        assert_eq!(names(&world), vec![s("Boss"), s("Player")]);
        c.emit("/root/World/Player", "hit", vec![Value::Int(5)])
            .await
            .expect("emit");

        // A transaction whose expectation holds applies all its ops…
        let ops = vec![
            dict(&[
                ("op", s("set")),
                ("path", s("/root/World/Player")),
                ("props", dict(&[("hp", Value::Int(50))])),
            ]),
            dict(&[
                ("op", s("create")),
                ("parent", s("/root/World")),
                ("name", s("Item")),
                ("class", s("Node")),
            ]),
        ];
        let expect = vec![dict(&[
            ("path", s("/root/World/Player")),
            ("prop", s("hp")),
            ("value", Value::Int(100)),
        ])];
        c.txn(ops.clone(), expect.clone()).await.expect("txn");
        assert_eq!(
            c.get_prop("/root/World/Player", "hp").await.expect("get"),
            Value::Int(50)
        );
        // …and one whose expectation fails changes nothing.
        let before = c.tree("/root").await.expect("tree");
        assert_eq!(code(c.txn(ops, expect).await), "precondition_failed");
        assert_eq!(c.tree("/root").await.expect("tree"), before);

        c.delete("/root/World/Boss").await.expect("delete");
        assert_eq!(code(c.get("/root/World/Boss").await), "not_found");
        let tree = c.tree("/root").await.expect("tree");
        let world = &names(&tree)[0];
        assert_eq!(world, &s("World"));
        let world_node = match field(&tree, "children") {
            Some(Value::Array(children)) => children[0].clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(names(&world_node), vec![s("Player"), s("Item")]);
    });
}

#[test]
fn reads_after_writes_through_another_server_see_them() {
    let cluster = LocalCluster::start("linear", &[]);
    run(async {
        let mut clients = Vec::new();
        for url in &cluster.urls {
            clients.push(connect(url).await);
        }
        clients[0]
            .create("/root", "Counter", "Node", vec![])
            .await
            .expect("create");
        for i in 0..30i64 {
            let (writer, reader) = ((i % 3) as usize, ((i + 1) % 3) as usize);
            let props = vec![("n".to_owned(), Value::Int(i))];
            clients[writer]
                .set("/root/Counter", props)
                .await
                .expect("set");
            let read = clients[reader]
                .get_prop("/root/Counter", "n")
                .await
                .expect("get");
            assert_eq!(
                read,
                Value::Int(i),
                "server {} read after server {} wrote",
                reader + 1,
                writer + 1
            );
        }
    });
}

/// Sets `/root/Feed.n` to each of `values`, one write at a time.
async fn write_sequence(c: &mut WsClient, values: std::ops::RangeInclusive<i64>) {
    for n in values {
        c.set("/root/Feed", vec![("n".to_owned(), Value::Int(n))])
            .await
            .expect("set");
    }
}

/// The next `change` push, skipping resolved timestamps; returns (index, value of n).
async fn next_change(c: &mut WsClient) -> (i64, i64) {
    loop {
        let push = c.next_push().await.expect("push");
        match field(&push, "event") {
            Some(Value::String(e)) if e == "change" => {
                let ops = match field(&push, "ops") {
                    Some(Value::Array(ops)) => ops.clone(),
                    other => panic!("change without ops: {other:?}"),
                };
                let n = int(field(&ops[0], "props").and_then(|p| field(p, "n")));
                return (int(field(&push, "index")), n);
            }
            Some(Value::String(e)) if e == "resolved" => continue,
            other => panic!("unexpected push {other:?}: {push:?}"),
        }
    }
}

#[test]
fn a_subscription_streams_a_snapshot_then_changes_in_order() {
    let cluster = LocalCluster::start("subscribe", SINGLE_SHARD);
    run(async {
        let mut writer = connect(&cluster.urls[0]).await;
        writer
            .create("/root", "Feed", "Node", vec![])
            .await
            .expect("create");
        writer
            .create("/root", "Other", "Node", vec![])
            .await
            .expect("create");
        let mut watcher = connect(&cluster.urls[1]).await;
        let sub = watcher
            .subscribe("/root/Feed", None)
            .await
            .expect("subscribe");
        let snapshot = watcher.next_push().await.expect("snapshot");
        assert_eq!(field(&snapshot, "event"), Some(&s("snapshot")));
        assert_eq!(
            field(field(&snapshot, "tree").expect("tree"), "name"),
            Some(&s("Feed"))
        );
        let mut last_index = int(field(&snapshot, "index"));
        let mut last_hlc = 0;
        for n in 1..=20 {
            writer
                .set("/root/Other", vec![("x".to_owned(), Value::Int(n))])
                .await
                .expect("set");
            write_sequence(&mut writer, n..=n).await;
        }
        for n in 1..=20 {
            let push = loop {
                let p = watcher.next_push().await.expect("push");
                if field(&p, "event") == Some(&s("change")) {
                    break p;
                }
            };
            let index = int(field(&push, "index"));
            let hlc = int(field(&push, "hlc"));
            assert!(index > last_index && hlc > last_hlc, "commit order");
            let ops = field(&push, "ops").expect("ops");
            assert_eq!(
                ops,
                &Value::Array(vec![dict(&[
                    ("op", s("set")),
                    ("path", s("/root/Feed")),
                    ("props", dict(&[("n", Value::Int(n))])),
                ])]),
                "only changes below /root/Feed, in order"
            );
            (last_index, last_hlc) = (index, hlc);
        }
        // A resolved timestamp eventually covers the last change.
        loop {
            let push = watcher.next_push().await.expect("push");
            if field(&push, "event") == Some(&s("resolved")) && int(field(&push, "hlc")) >= last_hlc
            {
                break;
            }
        }
        // After unsubscribing, nothing more arrives for that subscription.
        watcher.unsubscribe(sub).await.expect("unsubscribe");
        assert_eq!(code(watcher.unsubscribe(sub).await), "unknown_sub");
        let again = watcher
            .subscribe("/root/Feed", None)
            .await
            .expect("subscribe");
        assert_ne!(again, sub);
        write_sequence(&mut writer, 21..=21).await;
        loop {
            let push = watcher.next_push().await.expect("push");
            assert_eq!(int(field(&push, "sub")), again, "{push:?}");
            if field(&push, "event") == Some(&s("change")) {
                break;
            }
        }
    });
}

#[test]
fn a_resumed_subscription_misses_nothing_and_repeats_nothing() {
    let cluster = LocalCluster::start("resume", SINGLE_SHARD);
    run(async {
        let mut writer = connect(&cluster.urls[0]).await;
        writer
            .create("/root", "Feed", "Node", vec![])
            .await
            .expect("create");
        let mut seen = Vec::new();
        let position = {
            let mut watcher = connect(&cluster.urls[2]).await;
            watcher
                .subscribe("/root/Feed", None)
                .await
                .expect("subscribe");
            let snapshot = watcher.next_push().await.expect("snapshot");
            assert_eq!(field(&snapshot, "event"), Some(&s("snapshot")));
            write_sequence(&mut writer, 1..=10).await;
            let mut position = 0;
            for _ in 0..10 {
                let (index, n) = next_change(&mut watcher).await;
                seen.push(n);
                position = index;
            }
            position
        }; // the watcher disconnects here
        write_sequence(&mut writer, 11..=40).await;
        let mut watcher = connect(&cluster.urls[1]).await;
        watcher
            .subscribe("/root/Feed", Some(position))
            .await
            .expect("resume");
        let mut last = position;
        while seen.len() < 40 {
            let (index, n) = next_change(&mut watcher).await;
            assert!(index > last, "positions increase");
            last = index;
            seen.push(n);
        }
        assert_eq!(seen, (1..=40).collect::<Vec<_>>(), "no gap, no duplicate");
        // A position this replica never reached gets a fresh snapshot marked as a resync.
        let mut late = connect(&cluster.urls[0]).await;
        late.subscribe("/root/Feed", Some(1 << 40))
            .await
            .expect("subscribe");
        let push = late.next_push().await.expect("push");
        assert_eq!(field(&push, "event"), Some(&s("snapshot")));
        assert_eq!(field(&push, "resync"), Some(&Value::Bool(true)));
    });
}

#[test]
fn a_slow_subscriber_is_told_and_resumed_without_a_gap() {
    let cluster = LocalCluster::start("slow", &["--sub-queue", "8", "--shards", "1"]);
    run(async {
        let mut writer = connect(&cluster.urls[0]).await;
        writer
            .create("/root", "Feed", "Node", vec![])
            .await
            .expect("create");
        let mut slow = connect(&cluster.urls[0]).await;
        slow.subscribe("/root/Feed", None).await.expect("subscribe");
        // ~25 MB of changes while the subscriber reads nothing: far more than socket buffers
        // and its queue of 8 pushes hold.
        const WRITES: i64 = 800;
        let blob = Value::PackedByteArray(vec![7; 32 * 1024]);
        for n in 1..=WRITES {
            let props = vec![
                ("n".to_owned(), Value::Int(n)),
                ("blob".to_owned(), blob.clone()),
            ];
            writer.set("/root/Feed", props).await.expect("set");
        }
        let (mut overflowed, mut last_n, mut last_index) = (false, 0, 0);
        while last_n < WRITES {
            let push = slow.next_push().await.expect("push");
            match field(&push, "event") {
                Some(Value::String(e)) if e == "overflow" => overflowed = true,
                Some(Value::String(e)) if e == "change" => {
                    let index = int(field(&push, "index"));
                    assert!(index > last_index, "no change twice");
                    last_index = index;
                    let ops = field(&push, "ops").expect("ops");
                    let Value::Array(ops) = ops else {
                        panic!("{ops:?}")
                    };
                    let n = int(field(&ops[0], "props").and_then(|p| field(p, "n")));
                    assert!(last_n == 0 || n == last_n + 1, "no gap: {last_n} then {n}");
                    last_n = n;
                }
                Some(Value::String(e)) if e == "snapshot" => {
                    let tree = field(&push, "tree").expect("tree");
                    last_n = int(field(tree, "props")
                        .and_then(|p| field(p, "n"))
                        .or(Some(&Value::Int(0))));
                    last_index = int(field(&push, "index"));
                }
                _ => {}
            }
        }
        assert!(overflowed, "the subscriber was told it fell behind");
    });
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let cluster = LocalCluster::start(
        "bad",
        &["--max-message-bytes", "65536", "--max-in-flight", "16"],
    );
    run(async {
        let mut c = connect(&cluster.urls[0]).await;
        c.create(
            "/root",
            "Keep",
            "Node",
            vec![("hp".to_owned(), Value::Int(1))],
        )
        .await
        .expect("create");
        let before = c.tree("/root").await.expect("tree");
        let refused = |reply: &Value| match field(reply, "error") {
            Some(Value::String(code)) => code.clone(),
            _ => panic!("not a refusal: {reply:?}"),
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![0xff, 0xff, 0xff, 0xff, 1], "malformed"),
            (
                codec::encode(&Value::Int(5), GodotVersion::V4).unwrap(),
                "bad_request",
            ),
            (
                enc(&[("id", Value::Int(1)), ("op", s("explode"))]),
                "unknown_op",
            ),
            (
                enc(&[
                    ("id", Value::Int(2)),
                    ("op", s("get")),
                    ("path", s("root/x")),
                ]),
                "invalid_path",
            ),
            (
                enc(&[
                    ("id", Value::Int(3)),
                    ("op", s("set")),
                    ("path", s("/root/Keep")),
                    ("props", Value::Int(5)),
                ]),
                "bad_request",
            ),
            (
                enc(&[
                    ("id", Value::Int(4)),
                    ("op", s("set")),
                    ("path", s("/root/Keep")),
                    (
                        "props",
                        dict(&[("big", Value::PackedByteArray(vec![0; 70_000]))]),
                    ),
                ]),
                "too_large",
            ),
            (
                enc(&[
                    ("id", Value::Int(5)),
                    ("op", s("create")),
                    ("parent", s("/root/Nope")),
                    ("name", s("X")),
                    ("class", s("Node")),
                ]),
                "not_found",
            ),
            (
                enc(&[
                    ("id", Value::Int(6)),
                    ("op", s("create")),
                    ("parent", s("/root")),
                    ("name", s("bad/name")),
                    ("class", s("Node")),
                ]),
                "invalid_path",
            ),
            (
                enc(&[
                    ("id", Value::Int(7)),
                    ("op", s("delete")),
                    ("path", s("/root")),
                ]),
                "root_is_fixed",
            ),
        ];
        for (bytes, expected) in cases {
            c.send_bytes(bytes).await.expect("send");
            let reply = c.receive().await.expect("a reply, not a closed session");
            assert_eq!(refused(&reply), expected, "{reply:?}");
        }
        // A flood beyond the in-flight limit: every request is answered, some refused.
        for id in 100..400 {
            c.send_bytes(enc(&[
                ("id", Value::Int(id)),
                ("op", s("get")),
                ("path", s("/root")),
            ]))
            .await
            .expect("send");
        }
        let mut overloaded = 0;
        for _ in 100..400 {
            let reply = c.receive().await.expect("reply");
            if field(&reply, "error") == Some(&s("overloaded")) {
                overloaded += 1;
            }
        }
        assert!(overloaded > 0, "the flood hit the in-flight limit");
        assert_eq!(
            c.tree("/root").await.expect("tree"),
            before,
            "nothing changed"
        );
        // A protocol violation closes the session with a reason; others keep working.
        c.send_text("hello").await.expect("send");
        match c.receive().await {
            Err(WsClientError::Closed(Some(reason))) => {
                assert!(reason.contains("binary"), "{reason}")
            }
            other => panic!("expected a close with a reason, got {other:?}"),
        }
        let mut again = connect(&cluster.urls[0]).await;
        assert_eq!(again.tree("/root").await.expect("tree"), before);
    });
}

fn enc(pairs: &[(&str, Value)]) -> Vec<u8> {
    codec::encode(&dict(pairs), GodotVersion::V4).expect("encodable")
}

#[test]
fn large_trees_arrive_in_chunks_below_64_kib_for_both_godot_versions() {
    let cluster = LocalCluster::start("chunks", &[]);
    run(async {
        let mut c = connect(&cluster.urls[0]).await;
        let text = s(&"x".repeat(2048));
        for i in 0..100 {
            let props = vec![("text".to_owned(), text.clone())];
            c.create("/root", &format!("N{i}"), "Node", props)
                .await
                .expect("create");
        }
        for url in [
            cluster.urls[1].clone(),
            format!("{}?godot=3", cluster.urls[2]),
        ] {
            let mut reader = connect(&url).await;
            let tree = reader.tree("/root").await.expect("tree");
            assert_eq!(names(&tree).len(), 100, "{url}");
            assert!(
                reader.largest_frame <= 60 * 1024,
                "{url}: a {} byte frame",
                reader.largest_frame
            );
        }
    });
}

#[test]
fn resuming_from_a_compacted_position_gets_a_fresh_snapshot() {
    let cluster = LocalCluster::start("compacted", &["--compact-entries", "8", "--shards", "1"]);
    run(async {
        let mut writer = connect(&cluster.urls[0]).await;
        writer
            .create("/root", "Feed", "Node", vec![])
            .await
            .expect("create");
        let position = {
            let mut watcher = connect(&cluster.urls[0]).await;
            watcher
                .subscribe("/root/Feed", None)
                .await
                .expect("subscribe");
            let snapshot = watcher.next_push().await.expect("snapshot");
            int(field(&snapshot, "index"))
        };
        write_sequence(&mut writer, 1..=40).await;
        let mut watcher = connect(&cluster.urls[0]).await;
        watcher
            .subscribe("/root/Feed", Some(position))
            .await
            .expect("resume");
        // The typed stream of the Rust client.
        let mut events = Box::pin(watcher.into_events());
        match events.next().await {
            Some(Ok(PushEvent::Snapshot { tree, resync, .. })) => {
                assert!(resync, "marked as a resync");
                let n = field(&tree, "props").and_then(|p| field(p, "n"));
                assert_eq!(n, Some(&Value::Int(40)));
            }
            other => panic!("expected a resync snapshot, got {other:?}"),
        }
        // The stream continues from the snapshot.
        write_sequence(&mut writer, 41..=41).await;
        loop {
            match events.next().await {
                Some(Ok(PushEvent::Resolved { .. })) => continue,
                Some(Ok(PushEvent::Change { ops, .. })) => {
                    let n = field(&ops[0], "props").and_then(|p| field(p, "n"));
                    assert_eq!(n, Some(&Value::Int(41)));
                    break;
                }
                other => panic!("expected the next change, got {other:?}"),
            }
        }
    });
}

#[test]
fn a_property_of_a_missing_node_is_not_found_but_an_unset_one_is_null() {
    let cluster = LocalCluster::start("getprop", &[]);
    run(async {
        let mut c = connect(&cluster.urls[0]).await;
        c.create("/root", "Here", "Node", vec![])
            .await
            .expect("create");
        assert_eq!(
            c.get_prop("/root/Here", "hp").await.expect("get"),
            Value::Nil
        );
        assert_eq!(code(c.get_prop("/root/Gone", "hp").await), "not_found");
        // Subscribing before the node exists is fine: the snapshot says so.
        c.subscribe("/root/Later", None).await.expect("subscribe");
        let push = c.next_push().await.expect("snapshot");
        assert_eq!(field(&push, "tree"), Some(&Value::Nil));
    });
}

#[test]
fn a_resent_write_with_the_same_session_and_seq_is_applied_once() {
    let cluster = LocalCluster::start("exactly-once", &[]);
    run(async {
        let mut a = connect(&cluster.urls[0]).await;
        let mut b = connect(&cluster.urls[1]).await;
        let create = |seq: i64| {
            vec![
                ("parent", s("/root")),
                ("name", s("Once")),
                ("class", s("Node")),
                ("session", Value::Int(0x5e55)),
                ("seq", Value::Int(seq)),
            ]
        };
        let first = a.request("create", create(1)).await.expect("first copy");
        // The resend goes through another server, as after a lost connection.
        let again = b
            .request("create", create(1))
            .await
            .expect("the copy is answered");
        assert_eq!(field(&first, "index"), field(&again, "index"));
        assert_eq!(field(&first, "hlc"), field(&again, "hlc"));
        let root = b.get("/root").await.expect("get");
        let once = names(&root).iter().filter(|n| **n == s("Once")).count();
        assert_eq!(once, 1, "{root:?}");
        // A new sequence is a new write: it applies, and fails as a duplicate name would.
        assert_eq!(code(b.request("create", create(2)).await), "name_taken");
        assert_eq!(code(a.request("create", create(1)).await), "stale_sequence");
        // The client's own writes carry a session: it is what makes its resends safe.
        let hlc = a
            .set("/root/Once", vec![("hp".into(), Value::Int(3))])
            .await;
        assert!(hlc.is_ok(), "{hlc:?}");
    });
}

/// A bare WebSocket client on a blocking socket that writes frames exactly as given, as a
/// browser does with a large message (the Rust client sends each message as one frame).
struct RawWs {
    stream: std::net::TcpStream,
}

/// WebSocket opcodes (RFC 6455 §5.2).
const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xa;

impl RawWs {
    fn connect(url: &str) -> RawWs {
        use std::io::{Read, Write};
        let rest = url.strip_prefix("ws://").expect("a ws:// URL");
        let (host, path) = rest.split_once('/').expect("a path");
        let mut stream = std::net::TcpStream::connect(host).expect("connect");
        // Not synchronisation: a server that never answers fails the test instead of
        // hanging it.
        let patience = Some(std::time::Duration::from_secs(60));
        stream.set_read_timeout(patience).expect("timeout");
        write!(
            stream,
            "GET /{path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )
        .expect("handshake");
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8];
            stream.read_exact(&mut byte).expect("handshake reply");
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
        RawWs { stream }
    }

    /// Sends one frame, masked as a client must (RFC 6455 §5.3).
    fn send(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        use std::io::Write;
        let mut frame = vec![(u8::from(fin) << 7) | opcode];
        match payload.len() {
            len if len < 126 => frame.push(0x80 | len as u8),
            len if len <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend((len as u16).to_be_bytes());
            }
            len => {
                frame.push(0x80 | 127);
                frame.extend((len as u64).to_be_bytes());
            }
        }
        let mask = [0x12, 0x34, 0x56, 0x78];
        frame.extend(mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).expect("send a frame");
    }

    /// The next data or close frame from the server, as (opcode, payload); pings and pongs
    /// are skipped. The server sends unmasked, unfragmented frames.
    fn receive(&mut self) -> (u8, Vec<u8>) {
        use std::io::Read;
        loop {
            let mut head = [0u8; 2];
            self.stream.read_exact(&mut head).expect("a frame header");
            let len = match head[1] & 0x7f {
                126 => {
                    let mut n = [0u8; 2];
                    self.stream.read_exact(&mut n).expect("a 16-bit length");
                    usize::from(u16::from_be_bytes(n))
                }
                127 => {
                    let mut n = [0u8; 8];
                    self.stream.read_exact(&mut n).expect("a 64-bit length");
                    usize::try_from(u64::from_be_bytes(n)).expect("a length that fits")
                }
                n => usize::from(n),
            };
            let mut payload = vec![0u8; len];
            self.stream
                .read_exact(&mut payload)
                .expect("a frame payload");
            match head[0] & 0x0f {
                PING | PONG => continue,
                opcode => return (opcode, payload),
            }
        }
    }

    /// The next message, which must be a binary Godot 4 Variant.
    fn receive_value(&mut self) -> Value {
        let (opcode, payload) = self.receive();
        assert_eq!(opcode, BINARY, "a binary message, not {payload:?}");
        codec::decode(&payload, GodotVersion::V4).expect("a Variant")
    }

    /// The close code the server closed with.
    fn receive_close_code(&mut self) -> u16 {
        let (opcode, payload) = self.receive();
        assert_eq!(opcode, CLOSE, "a close frame, not {payload:?}");
        u16::from_be_bytes([payload[0], payload[1]])
    }
}

#[test]
fn a_request_sent_as_several_frames_gets_the_normal_reply() {
    let cluster = LocalCluster::start("fragments", &[]);
    let a = Value::PackedByteArray(vec![1; 40_000]);
    let b = Value::PackedByteArray(vec![2; 40_000]);
    let request = enc(&[
        ("id", Value::Int(1)),
        ("op", s("create")),
        ("parent", s("/root")),
        ("name", s("Big")),
        ("class", s("Node")),
        ("props", dict(&[("a", a.clone()), ("b", b.clone())])),
    ]);
    assert!(request.len() > 64 * 1024, "{} bytes", request.len());
    let mut raw = RawWs::connect(&cluster.urls[0]);
    // Chromium's first frame of a large message carries 65,464 bytes; then a continuation,
    // a ping between fragments (RFC 6455 §5.4 allows control frames there) and the last.
    raw.send(false, BINARY, &request[..65_464]);
    raw.send(false, CONTINUATION, &request[65_464..70_000]);
    raw.send(true, PING, b"between fragments");
    raw.send(true, CONTINUATION, &request[70_000..]);
    let reply = raw.receive_value();
    assert_eq!(field(&reply, "id"), Some(&Value::Int(1)), "{reply:?}");
    assert_eq!(field(&reply, "ok"), Some(&Value::Bool(true)), "{reply:?}");
    assert!(int(field(&reply, "index")) > 0);
    // The next message on the session, fragmented too, starts afresh.
    let get = enc(&[
        ("id", Value::Int(2)),
        ("op", s("get")),
        ("path", s("/root/Big")),
        ("prop", s("b")),
    ]);
    raw.send(false, BINARY, &get[..5]);
    raw.send(false, CONTINUATION, &get[5..10]);
    raw.send(true, CONTINUATION, &get[10..]);
    let reply = raw.receive_value();
    assert_eq!(field(&reply, "id"), Some(&Value::Int(2)), "{reply:?}");
    assert_eq!(field(&reply, "value"), Some(&b));
    // Committed whole: another server reads it.
    run(async {
        let mut c = connect(&cluster.urls[1]).await;
        assert_eq!(c.get_prop("/root/Big", "a").await.expect("get"), a);
    });
}

#[test]
fn an_oversized_or_out_of_sequence_fragmented_message_closes_the_session() {
    let cluster = LocalCluster::start("fragments-bad", &["--max-message-bytes", "100000"]);
    // Over the limit before its last frame: refused at once, as an oversized frame is
    // (1009), without waiting for (or buffering) the rest.
    let mut raw = RawWs::connect(&cluster.urls[0]);
    raw.send(false, BINARY, &[0; 60_000]);
    raw.send(false, CONTINUATION, &[0; 60_000]);
    assert_eq!(raw.receive_close_code(), 1009, "message too big");
    // Fragmented text is refused as text frames are (1003).
    let mut raw = RawWs::connect(&cluster.urls[0]);
    raw.send(false, TEXT, b"hel");
    assert_eq!(raw.receive_close_code(), 1003, "unsupported data");
    // A continuation without a first frame is a protocol error (1002).
    let mut raw = RawWs::connect(&cluster.urls[0]);
    raw.send(true, CONTINUATION, b"lo");
    assert_eq!(raw.receive_close_code(), 1002, "protocol error");
    // The server goes on serving other sessions.
    run(async {
        let mut c = connect(&cluster.urls[0]).await;
        c.tree("/root").await.expect("tree");
    });
}

/// An Array nested `depth` deep (`[]` is 1).
fn nested(depth: usize) -> Value {
    (1..depth).fold(Value::Array(vec![]), |inner, _| Value::Array(vec![inner]))
}

#[test]
fn an_oversized_value_is_too_large_and_the_session_keeps_working() {
    let cluster = LocalCluster::start("too-large", &[]);
    run(async {
        let mut c = connect(&cluster.urls[0]).await;
        c.create("/root", "Keep", "Node", vec![])
            .await
            .expect("create");
        // One past each default tree limit (core::Limits), in a message under 1 MiB.
        let cases = [
            ("nesting 33 deep", nested(33)),
            ("a 65,537-byte String", s(&"x".repeat(65_537))),
            (
                "a 65,537-element PackedByteArray",
                Value::PackedByteArray(vec![0; 65_537]),
            ),
            (
                "a 300,048-byte value",
                Value::Array(vec![Value::PackedByteArray(vec![0; 60_000]); 5]),
            ),
        ];
        for (what, value) in cases {
            let props = vec![("v".to_owned(), value)];
            assert_eq!(
                code(c.set("/root/Keep", props).await),
                "too_large",
                "{what}"
            );
        }
        // A value treesync cannot store at any size (a Godot 4 Object) is invalid_value.
        c.send_bytes(vec![0x18, 0, 0, 0]).await.expect("send");
        let reply = c.receive().await.expect("a reply, not a closed session");
        assert_eq!(
            field(&reply, "error"),
            Some(&s("invalid_value")),
            "{reply:?}"
        );
        // The session keeps working, and nothing was stored.
        assert_eq!(
            c.get_prop("/root/Keep", "v").await.expect("get"),
            Value::Nil
        );
        let within = vec![("v".to_owned(), nested(32))];
        c.set("/root/Keep", within)
            .await
            .expect("a value at the limit");
    });
}
