//! Three real `treesync serve` processes on loopback: write, `kill -9` the leader, have a
//! write accepted within 1 s (DESIGN.md: "a new leader within ~1 s of a leader crash"),
//! keep writing, restart the killed server and find every acknowledged write on all three;
//! `FAILOVERS` times. Each server's WebSocket gateway then serves reads, and writes when it
//! leads (naming the leader otherwise).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use treesync_core::shard::{ShardMap, SHARD_DEPTH_DEFAULT};
use treesync_core::{Limits, NodePath, Op, Prop, Txn, Value};
use treesync_net::client::Client;
use treesync_net::ws_client::WsClient;

mod support;
use support::serve::{self, Server};

const SHARDS: u32 = 2;

/// Kill-and-restart cycles per run.
const FAILOVERS: usize = 3;

fn cluster(dir: &std::path::Path) -> (Vec<Server>, BTreeMap<u64, SocketAddr>) {
    // Tiny, so each WAL is rewritten (snapshots + tails) many times during the test.
    serve::cluster(dir, SHARDS, &["--wal-rewrite-bytes", "8192"])
}

fn set(key: u32, value: i64) -> Txn {
    Txn::single(Op::Set {
        path: "/root".into(),
        props: vec![Prop::new(format!("k{key}"), Value::Int(value))],
    })
}

/// The server that leads the shard of `/root`, according to the servers themselves.
fn leader(client: &mut Client, ids: &[u64]) -> Option<u64> {
    let map = ShardMap::new(SHARDS, SHARD_DEPTH_DEFAULT).expect("a valid shard map");
    let root = NodePath::parse("/root", &Limits::default()).expect("a valid path");
    let line = format!("shard {} role=leader", map.shard_of(&root).0);
    ids.iter().copied().find(|id| {
        client
            .status(*id)
            .is_ok_and(|s| s.lines().any(|l| l.starts_with(&line)))
    })
}

fn wait_for<T>(
    what: &str,
    deadline: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> (T, Duration) {
    let start = Instant::now();
    loop {
        if let Some(v) = probe() {
            return (v, start.elapsed());
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20)); // polling an external process
    }
}

/// Every server's WebSocket gateway serves linearizable reads (followers through Raft's
/// ReadIndex) and takes writes for every shard: one led elsewhere is forwarded to its
/// leader over the peer transport, so no client of `serve` sees `not_leader`.
fn gateways_serve_reads_and_writes_on_every_server(ids: &[u64], k0: i64) {
    actix_rt::System::new().block_on(async {
        for id in ids {
            let url = serve::gateway_url(*id);
            let mut ws = WsClient::connect(&url).await.expect("connect");
            let read = ws
                .get_prop("/root", "k0")
                .await
                .expect("read on any server");
            assert_eq!(read, Value::Int(k0), "server {id}");
            let props = vec![("gw".to_owned(), Value::Int(*id as i64))];
            if let Err(e) = ws.set("/root", props).await {
                panic!("server {id} refused a write: {e}");
            }
            let back = ws.get_prop("/root", "gw").await.expect("read back");
            assert_eq!(
                back,
                Value::Int(*id as i64),
                "server {id}'s write is read back"
            );
        }
    });
}

/// `GET /metrics` of server `id`'s gateway: the Prometheus text.
fn scrape(id: u64) -> String {
    use std::io::{Read, Write};
    let addr = serve::gateway_addr(id);
    let mut stream = std::net::TcpStream::connect(&addr).expect("the gateway listens");
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .expect("request");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("reply");
    let (head, body) = reply.split_once("\r\n\r\n").expect("headers end");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    body.to_owned()
}

/// The sum of every sample of metric `name` (all its label sets).
fn total(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Each server's `/metrics` shows its own work: commits (its gateway's writes, forwarded
/// or not), reads, WAL batches and their fdatasync, the replicas it runs; over the three,
/// every shard has exactly one leader once leadership settled.
fn metrics_show_what_each_server_did(ids: &[u64]) {
    for &id in ids {
        let text = scrape(id);
        for name in [
            "treesync_commit_latency_seconds_count",
            "treesync_read_latency_seconds_count",
            "treesync_wal_write_seconds_count",
            "treesync_wal_batch_records_count",
        ] {
            assert!(total(&text, name) >= 1.0, "server {id}: {name} in\n{text}");
        }
        assert_eq!(
            total(&text, "treesync_shard_replicas"),
            f64::from(SHARDS),
            "server {id}"
        );
    }
    wait_for(
        "one leader per shard in the metrics",
        Duration::from_secs(10),
        || {
            let leaders: f64 = ids
                .iter()
                .map(|id| total(&scrape(*id), "treesync_shard_leaders"))
                .sum();
            (leaders == f64::from(SHARDS)).then_some(())
        },
    );
    let won: f64 = ids
        .iter()
        .map(|id| total(&scrape(*id), "treesync_leaderships_gained_total"))
        .sum();
    assert!(
        won >= f64::from(SHARDS),
        "every shard elected a leader at least once: {won}"
    );
}

#[test]
fn kill_the_leader_and_lose_nothing() {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cluster-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir); // fresh data; a leftover from an older run is fine to lose
    let (mut servers, clients) = cluster(&dir);
    servers.iter_mut().for_each(Server::start);
    let mut client = Client::new(clients.clone());
    let mut acked: BTreeMap<u32, i64> = BTreeMap::new();
    for i in 0..40u32 {
        client
            .write(&set(i % 8, i64::from(i)))
            .expect("write before the crash");
        acked.insert(i % 8, i64::from(i));
    }
    let ids: Vec<u64> = servers.iter().map(|s| s.id).collect();
    let mut failovers = Vec::new();
    for cycle in 0..FAILOVERS {
        let (old_leader, _) = wait_for("a leader", Duration::from_secs(5), || {
            leader(&mut client, &ids)
        });
        servers
            .iter_mut()
            .find(|s| s.id == old_leader)
            .expect("leader is ours")
            .kill9();
        // From the kill to the first write the survivors accept: election timeout (seeded
        // jitter, 100-200 ms), pre-vote and vote round trips, the new leader's first commit.
        let killed = Instant::now();
        let first = 1_000 + cycle as i64;
        client
            .write(&set(0, first))
            .expect("a write after the crash");
        let elapsed = killed.elapsed();
        acked.insert(0, first);
        failovers.push(elapsed);
        eprintln!(
            "cycle {cycle}: server {old_leader} killed; a write was accepted after {elapsed:?}"
        );
        assert!(
            elapsed < Duration::from_secs(1),
            "a write took {elapsed:?} after the leader was killed"
        );
        for i in 40..80u32 {
            let value = i64::from(i) + 100 * cycle as i64;
            client
                .write(&set(i % 8, value))
                .expect("write after the crash");
            acked.insert(i % 8, value);
        }
        servers
            .iter_mut()
            .find(|s| s.id == old_leader)
            .expect("ours")
            .start();
        for &id in &ids {
            wait_for(
                "every write on every server",
                Duration::from_secs(10),
                || {
                    acked
                        .iter()
                        .all(|(k, v)| {
                            client.read_at(id, "/root", &format!("k{k}")).ok()
                                == Some(Some(Value::Int(*v)))
                        })
                        .then_some(())
                },
            );
        }
    }
    eprintln!("failover times (kill to first accepted write): {failovers:?}");
    for (k, v) in &acked {
        assert_eq!(
            client
                .read("/root", Some(&format!("k{k}")))
                .expect("linearizable read"),
            Some(Value::Int(*v))
        );
    }
    gateways_serve_reads_and_writes_on_every_server(&ids, acked[&0]);
    metrics_show_what_each_server_did(&ids);
    drop(servers);
    let _ = std::fs::remove_dir_all(&dir); // best-effort cleanup
}
