//! `treesync bench --workload txn`: what a cross-shard transaction costs. On 3 in-process
//! replicas with 8 shards, through the WebSocket gateway, one closed-loop client runs for
//! `seconds` each: (1) a single-shard write (one property of one entity), (2) a 2-shard
//! transaction (one property of each of two entities on different shards, atomically, by
//! parallel commit), (3) the 2PC-like baseline: the same two writes as two sequential
//! single-shard commits (two consensus rounds, not atomic). Reports p50/p99 of each.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use treesync_actors::runtime::{HostHandle, LocalCluster, ServerBackend};
use treesync_core::Value;
use treesync_net::gateway::{self, GatewayLimits};
use treesync_net::ws_client::WsClient;

/// Shards of the benchmark's cluster: the spine and 7 entity shards.
pub const SHARDS: u32 = 8;

fn s(text: &str) -> Value {
    Value::String(text.into())
}

fn dict(pairs: &[(&str, Value)]) -> Value {
    Value::Dictionary(pairs.iter().map(|(k, v)| (s(k), v.clone())).collect())
}

/// A transaction's `set` op (request-shaped, `docs/protocol.md`): `prop` of `path` to `value`.
pub fn set_op(path: &str, prop: &str, value: Value) -> Value {
    dict(&[
        ("op", s("set")),
        ("path", s(path)),
        ("props", dict(&[(prop, value)])),
    ])
}

/// Pairs of entities of `/root/Bench` on different entity shards. The client cycles
/// through them, so a transaction does not wait for the previous one's intents to be
/// resolved (that is contention, not the cost of a commit).
fn pairs() -> Vec<(String, String)> {
    let names = (0..64).map(|i| format!("/root/Bench/e{i}")).collect();
    crate::bench_load::pairs_across_shards(names, SHARDS).expect("valid paths and map")
}

pub fn run(
    cluster: &LocalCluster,
    hosts: &[HostHandle],
    seconds: u64,
    json: bool,
    fsync: bool,
) -> Result<ExitCode, String> {
    for (host, id) in hosts.iter().zip(1u64..) {
        host.set_route(Arc::new(cluster.starting_at(id)));
    }
    let router = cluster.router(1).ok_or("server 1 runs")?;
    let backend = ServerBackend::new(cluster.starting_at(1), hosts[0].clone(), router);
    let started = gateway::start(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        1,
        GatewayLimits::default(),
        Arc::new(backend),
    )
    .map_err(|e| e.to_string())?;
    let url = format!("ws://{}/ws", started.addr);
    eprintln!(
        "treesync bench --workload txn: 3 replicas on loopback, {SHARDS} shards (fsync {}), \
         one client through the gateway, {seconds} s per kind",
        if fsync { "on" } else { "OFF" }
    );
    let results = actix_rt::System::new().block_on(measure(&url, seconds))?;
    for (kind, h) in &results {
        let (p50, p99) = (h.value_at_quantile(0.5), h.value_at_quantile(0.99));
        if json {
            println!("{{\"kind\":\"{kind}\",\"ops\":{},\"p50_us\":{p50},\"p99_us\":{p99},\"max_us\":{}}}", h.len(), h.max());
        } else {
            println!(
                "bench {kind:<28} {:>6} ops  p50 {p50:>6} µs  p99 {p99:>6} µs  max {:>7} µs",
                h.len(),
                h.max()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn measure(url: &str, seconds: u64) -> Result<Vec<(&'static str, Histogram<u64>)>, String> {
    let e = |e: treesync_net::ws_client::WsClientError| e.to_string();
    let mut c = WsClient::connect(url).await.map_err(e)?;
    let pairs = pairs();
    c.create("/root", "Bench", "Node", vec![])
        .await
        .map_err(e)?;
    for path in pairs.iter().flat_map(|(a, b)| [a, b]) {
        let name = path.rsplit('/').next().expect("named");
        c.create("/root/Bench", name, "Node", vec![])
            .await
            .map_err(e)?;
    }
    let set = |path: &str, v: i64| set_op(path, "v", Value::Int(v));
    let mut out = Vec::new();
    for kind in [
        "single-shard write",
        "2-shard txn (parallel commit)",
        "2 sequential writes",
    ] {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut i = 0i64;
        while Instant::now() < deadline {
            i += 1;
            let (a, b) = &pairs[i as usize % pairs.len()];
            let began = Instant::now();
            match kind {
                "single-shard write" => {
                    c.set(a, vec![("v".into(), Value::Int(i))])
                        .await
                        .map_err(e)?;
                }
                "2-shard txn (parallel commit)" => {
                    c.txn(vec![set(a, i), set(b, i)], vec![]).await.map_err(e)?;
                }
                _ => {
                    c.set(a, vec![("v".into(), Value::Int(i))])
                        .await
                        .map_err(e)?;
                    c.set(b, vec![("v".into(), Value::Int(i))])
                        .await
                        .map_err(e)?;
                }
            }
            h.saturating_record(began.elapsed().as_micros() as u64);
        }
        out.push((kind, h));
    }
    Ok(out)
}
