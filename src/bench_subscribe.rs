//! `treesync bench --workload subscribe`: write-to-delivery latency of merged subscriptions.
//! On 3 in-process replicas with 8 shards, `/root/Bench` holds entities spread over the
//! entity shards; N subscribers (1 and 100 unless `--subscribers`) subscribe to the world
//! (a merged subscription: every shard behind a frontier) through the gateways of all three
//! servers, and one closed-loop writer sets a property on entity after entity. Each change a
//! subscriber receives is timed from just before its write was sent: the latency a mirror
//! sees, including the closed-timestamp lag it waits for. Also reports the CPU the idle
//! cluster burns (close entries of idle shards, heartbeats), from `/proc/self/stat`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use hdrhistogram::Histogram;
use treesync_actors::runtime::{HostHandle, LocalCluster, ServerBackend};
use treesync_core::Value;
use treesync_net::gateway::{self, GatewayLimits};
use treesync_net::ws_client::{field, PushEvent, WsClient};

/// Entities of `/root/Bench` the writer cycles through (over the 7 entity shards).
const ENTITIES: usize = 32;
/// Seconds the idle cluster is watched for its CPU use.
const IDLE_SECONDS: u64 = 5;

type Sent = Rc<RefCell<BTreeMap<i64, Instant>>>;

pub fn run(
    cluster: &LocalCluster,
    hosts: &[HostHandle],
    seconds: u64,
    subscribers: &[usize],
    json: bool,
) -> Result<ExitCode, String> {
    for (host, id) in hosts.iter().zip(1u64..) {
        host.set_route(Arc::new(cluster.starting_at(id)));
    }
    let mut urls = Vec::new();
    for (host, id) in hosts.iter().zip(1u64..) {
        let router = cluster.router(id).ok_or("every server runs")?;
        let backend = ServerBackend::new(cluster.starting_at(id), host.clone(), router);
        let limits = GatewayLimits::default();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let started =
            gateway::start(addr, 1, limits, Arc::new(backend)).map_err(|e| e.to_string())?;
        urls.push(format!("ws://{}/ws", started.addr));
    }
    eprintln!(
        "treesync bench --workload subscribe: 3 replicas on loopback, {} shards, subscribers \
         of /root/Bench spread over the 3 gateways, {seconds} s per run",
        crate::bench_txn::SHARDS
    );
    let idle = idle_cpu_percent(Duration::from_secs(IDLE_SECONDS));
    report_idle(idle, json);
    for &count in subscribers {
        let h = actix_rt::System::new().block_on(measure(&urls, count, seconds))?;
        let (p50, p99) = (h.value_at_quantile(0.5), h.value_at_quantile(0.99));
        if json {
            println!("{{\"subscribers\":{count},\"deliveries\":{},\"p50_us\":{p50},\"p99_us\":{p99},\"max_us\":{}}}", h.len(), h.max());
        } else {
            println!(
                "bench subscribe: {count:>3} subscriber(s)  {:>7} deliveries  write-to-delivery p50 {p50:>6} µs  p99 {p99:>6} µs  max {:>7} µs",
                h.len(),
                h.max()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn report_idle(idle: Option<f64>, json: bool) {
    match (idle, json) {
        (Some(pct), true) => println!("{{\"idle_cpu_percent_of_one_core\":{pct:.1}}}"),
        (Some(pct), false) => println!(
            "bench idle: 3 replicas x {} shards, no load: {pct:.1}% of one core over {IDLE_SECONDS} s (close entries, heartbeats, ticks)",
            crate::bench_txn::SHARDS
        ),
        (None, _) => eprintln!("bench idle: /proc/self/stat unreadable; idle CPU not measured"),
    }
}

/// CPU time (user + system) this process used over `window`, as a percentage of one core.
fn idle_cpu_percent(window: Duration) -> Option<f64> {
    let ticks = || -> Option<u64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some(utime + stime)
    };
    let before = ticks()?;
    std::thread::sleep(window); // the measurement window itself, not synchronisation
    let after = ticks()?;
    // Linux reports in clock ticks of 1/100 s (USER_HZ) on every architecture we run on.
    let seconds = (after - before) as f64 / 100.0;
    Some(100.0 * seconds / window.as_secs_f64())
}

/// Write-to-delivery latencies of `subscribers` merged subscriptions spread over `urls`
/// while one closed-loop writer (through `urls[0]`) sets entity after entity for `seconds`.
/// Nodes left by an earlier run against the same cluster are reused.
pub async fn measure(
    urls: &[String],
    subscribers: usize,
    seconds: u64,
) -> Result<Histogram<u64>, String> {
    let e = |e: treesync_net::ws_client::WsClientError| e.to_string();
    let mut writer = WsClient::connect(&urls[0]).await.map_err(e)?;
    let world = format!("/root/Bench{subscribers}");
    let world_name = world.trim_start_matches("/root/").to_owned();
    let names: Vec<String> = (0..ENTITIES).map(|i| format!("e{i}")).collect();
    let world_then_entities = std::iter::once(("/root", world_name.as_str()))
        .chain(names.iter().map(|name| (world.as_str(), name.as_str())));
    for (parent, name) in world_then_entities {
        match writer.create(parent, name, "Node", vec![]).await {
            Err(err) if !crate::bench_load::exists(&err.to_string()) => return Err(e(err)),
            _ => {}
        }
    }
    let mut clients = Vec::with_capacity(subscribers);
    for i in 0..subscribers {
        let mut client = WsClient::connect(&urls[i % urls.len()]).await.map_err(e)?;
        client.subscribe(&world, None).await.map_err(e)?;
        // Started: the snapshot and the cut it is at.
        loop {
            if let PushEvent::Resolved { .. } = client.next_event().await.map_err(e)? {
                break;
            }
        }
        clients.push(client);
    }
    let sent: Sent = Rc::new(RefCell::new(BTreeMap::new()));
    let histogram = Rc::new(RefCell::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
    ));
    let last = Rc::new(RefCell::new(None::<i64>));
    let write = {
        let (sent, last) = (sent.clone(), last.clone());
        async move {
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let mut i = 0i64;
            while Instant::now() < deadline {
                i += 1;
                let name = &names[i as usize % names.len()];
                sent.borrow_mut().insert(i, Instant::now());
                let prop = vec![("v".to_owned(), Value::Int(i))];
                writer
                    .set(&format!("{world}/{name}"), prop)
                    .await
                    .map_err(e)?;
            }
            *last.borrow_mut() = Some(i);
            Ok::<(), String>(())
        }
    };
    let receive = clients.into_iter().map(|mut client| {
        let (sent, histogram, last) = (sent.clone(), histogram.clone(), last.clone());
        async move {
            let mut seen = 0i64;
            loop {
                if let Some(last) = *last.borrow() {
                    if seen >= last {
                        return Ok::<(), String>(());
                    }
                }
                let PushEvent::Change { ops, .. } = client.next_event().await.map_err(e)? else {
                    continue;
                };
                let now = Instant::now();
                for op in &ops {
                    if let Some(Value::Int(v)) = field(op, "props").and_then(|p| field(p, "v")) {
                        if let Some(at) = sent.borrow().get(v) {
                            let us = now.duration_since(*at).as_micros() as u64;
                            histogram.borrow_mut().saturating_record(us);
                        }
                        seen = seen.max(*v);
                    }
                }
            }
        }
    });
    let (written, received) = futures_util::future::join(write, join_all(receive)).await;
    written?;
    for outcome in received {
        outcome?;
    }
    let h = histogram.borrow().clone();
    Ok(h)
}
