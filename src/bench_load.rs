//! The load loop of `treesync bench` for the `set`, `batch`, `mixed` and `txn` workloads,
//! against treesync (framed protocol; `txn` through the WebSocket gateway, which runs
//! cross-shard transactions) or etcd (its JSON gateway, `etcd_http`): N client threads, each
//! with its own connection, closed-loop (each waits for its answer) or open-loop (`--rate`:
//! requests leave on a fixed schedule and latency is measured from the scheduled send time,
//! so a stall counts for every request it delayed: no coordinated omission).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use treesync_core::shard::{ShardMap, SHARD_DEPTH_DEFAULT};
use treesync_core::{Limits, NodePath, Op, Prop, Txn, Value};
use treesync_net::client::Client;
use treesync_net::ws_client::WsClient;

use crate::etcd_http::EtcdHttp;

/// What is measured.
#[derive(Clone, Debug)]
pub enum System {
    Treesync {
        /// Servers by replica id (framed protocol).
        servers: BTreeMap<u64, SocketAddr>,
        /// Their WebSocket gateways (`ws://…/ws`), for `txn` and `subscribe`.
        gateways: Vec<String>,
        /// The cluster's shard count (where entities land: `txn` pairs them across shards).
        shards: u32,
    },
    /// etcd members' client URLs (host:port of the JSON gateway).
    Etcd(Vec<SocketAddr>),
}

impl System {
    pub fn name(&self) -> &'static str {
        match self {
            System::Treesync { .. } => "treesync",
            System::Etcd(_) => "etcd",
        }
    }
}

/// What each request does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Workload {
    /// One property (etcd: one key) per write.
    Set,
    /// `n` property updates in one message (treesync: one op, one entry; etcd: a txn of n
    /// puts): the game-tick pattern.
    Batch(usize),
    /// Linearizable reads and single writes, `read_percent` of them reads.
    Mixed { read_percent: u32 },
    /// One property of each of two entities on different shards, atomically (treesync: a
    /// parallel commit through the gateway; etcd: a txn of two puts).
    Txn,
    /// Write-to-delivery latency of `clients` subscribers (`bench_watch`).
    Subscribe,
}

impl Workload {
    pub fn name(&self) -> &'static str {
        match self {
            Workload::Set => "set",
            Workload::Batch(_) => "batch",
            Workload::Mixed { .. } => "mixed",
            Workload::Txn => "txn",
            Workload::Subscribe => "subscribe",
        }
    }

    /// Whether the `i`-th request of `client` is a read (spread evenly, deterministic).
    fn is_read(&self, client: usize, i: u64) -> bool {
        match self {
            Workload::Mixed { read_percent } => {
                (i * 37 + client as u64) % 100 < u64::from(*read_percent)
            }
            Workload::Set | Workload::Batch(_) | Workload::Txn | Workload::Subscribe => false,
        }
    }
}

#[derive(Clone, Debug)]
pub struct LoadSpec {
    pub system: System,
    pub workload: Workload,
    pub clients: usize,
    pub seconds: u64,
    pub value_bytes: usize,
    /// Open loop: requests per second over all clients.
    pub rate: Option<f64>,
}

/// What a run measured.
pub struct LoadReport {
    pub writes: Histogram<u64>,
    pub reads: Histogram<u64>,
    pub elapsed: f64,
    /// Open loop: requests scheduled before the end but never sent, because the system fell
    /// behind the offered rate (their lateness is not in the histograms: report it).
    pub unsent: u64,
}

/// Prints `label` and the requests completed in each second (from `done`) on one
/// stderr line until `deadline`.
pub fn show_progress(done: &AtomicU64, start: Instant, deadline: Instant, label: &str) {
    let mut last = 0;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1)); // progress report cadence, not synchronisation
        let now = done.load(Ordering::Relaxed);
        eprint!(
            "\r  {label}: t={:>3.0}s {:>8} requests/s ",
            start.elapsed().as_secs_f64(),
            now - last
        );
        last = now;
    }
    eprintln!();
}

/// A latency histogram in µs, 1 µs to 60 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

/// One client's connection.
enum Conn {
    Treesync(Client),
    Etcd(EtcdHttp),
    /// A gateway session on its own actix runtime, driven one request at a time (`txn`),
    /// with this client's entity pairs (the two of a pair on different shards).
    Gateway {
        runtime: actix_rt::SystemRunner,
        session: Box<WsClient>,
        pairs: Vec<(String, String)>,
    },
}

/// Entities per client for `txn`: enough that pairs across shards exist and a client's
/// next transaction rarely meets the previous one's intents still being resolved.
const TXN_ENTITIES: usize = 12;

impl Conn {
    fn open(spec: &LoadSpec, client: usize) -> Result<Conn, String> {
        Ok(match (&spec.system, spec.workload) {
            (
                System::Treesync {
                    gateways, shards, ..
                },
                Workload::Txn,
            ) => {
                if gateways.is_empty() {
                    return Err("txn runs through treesync's gateways: give --ws-addr".into());
                }
                let url = &gateways[client % gateways.len()];
                let runtime = actix_rt::System::new();
                let session = runtime
                    .block_on(WsClient::connect(url))
                    .map(Box::new)
                    .map_err(|e| format!("{url}: {e}"))?;
                Conn::Gateway {
                    runtime,
                    session,
                    pairs: entity_pairs(client, *shards)?,
                }
            }
            (System::Treesync { servers, .. }, _) => Conn::Treesync(Client::new(servers.clone())),
            // Spread clients over the members, as a load balancer would; etcd's followers
            // forward proposals to the leader.
            (System::Etcd(members), _) => {
                Conn::Etcd(EtcdHttp::connect(members[client % members.len()])?)
            }
        })
    }

    /// Request `i` of `client`; true when it was a read.
    fn request(&mut self, spec: &LoadSpec, client: usize, i: u64) -> Result<bool, String> {
        let read = spec.workload.is_read(client, i);
        let value = value_of(client, i, spec.value_bytes);
        let key = format!("c{client}");
        match self {
            Conn::Treesync(c) if read => c
                .read("/root", Some(&key))
                .map(drop)
                .map_err(|e| e.to_string())?,
            Conn::Etcd(c) if read => c.get(&key)?,
            Conn::Treesync(c) => {
                let ops = match spec.workload {
                    // One property of each of n nodes (`prepare` created them).
                    Workload::Batch(n) => (0..n)
                        .map(|j| Op::Set {
                            path: format!("/root/{key}/n{j}"),
                            props: vec![Prop::new("state", Value::String(value.clone()))],
                        })
                        .collect(),
                    _ => vec![Op::Set {
                        path: "/root".into(),
                        props: vec![Prop::new(key, Value::String(value))],
                    }],
                };
                let txn = Txn {
                    expect: Vec::new(),
                    ops,
                    session: None,
                };
                c.write(&txn).map(drop).map_err(|e| e.to_string())?;
            }
            Conn::Gateway {
                runtime,
                session,
                pairs,
            } => {
                let (a, b) = &pairs[i as usize % pairs.len()];
                let set =
                    |path: &str| crate::bench_txn::set_op(path, "v", Value::String(value.clone()));
                runtime
                    .block_on(session.txn(vec![set(a), set(b)], vec![]))
                    .map_err(|e| e.to_string())?;
            }
            Conn::Etcd(c) => match spec.workload {
                Workload::Batch(n) => {
                    let pairs: Vec<(String, Vec<u8>)> = (0..n)
                        .map(|j| (format!("{key}/n{j}"), value.clone().into_bytes()))
                        .collect();
                    c.put_all(&pairs)?;
                }
                Workload::Txn => {
                    let k = i % TXN_ENTITIES as u64;
                    c.put_all(&[
                        (format!("{key}/a{k}"), value.clone().into_bytes()),
                        (format!("{key}/b{k}"), value.into_bytes()),
                    ])?;
                }
                _ => c.put(&key, value.as_bytes()).map(drop)?,
            },
        }
        Ok(read)
    }
}

/// `client`'s `txn` entities (`/root/Bench/c<client>e<k>`) paired across shards.
fn entity_pairs(client: usize, shards: u32) -> Result<Vec<(String, String)>, String> {
    let names = (0..TXN_ENTITIES)
        .map(|k| format!("/root/Bench/c{client}e{k}"))
        .collect();
    let pairs = pairs_across_shards(names, shards)?;
    match pairs.is_empty() {
        true => Err(format!(
            "no two of client {client}'s entities are on different shards of {shards}: txn needs --shards of at least 3 (the spine and two entity shards)"
        )),
        false => Ok(pairs),
    }
}

/// `paths` paired greedily so that the two of each pair live on different shards of a
/// `shards`-shard map (paths left without a partner are dropped).
pub fn pairs_across_shards(
    mut free: Vec<String>,
    shards: u32,
) -> Result<Vec<(String, String)>, String> {
    let map = ShardMap::new(shards, SHARD_DEPTH_DEFAULT).map_err(|e| e.to_string())?;
    let limits = Limits::default();
    let shard_of = |p: &str| {
        NodePath::parse(p, &limits)
            .map(|path| map.shard_of(&path))
            .map_err(|e| e.to_string())
    };
    let mut pairs = Vec::new();
    while let Some(a) = free.pop() {
        let home = shard_of(&a)?;
        let mut other = None;
        for (at, b) in free.iter().enumerate() {
            if shard_of(b)? != home {
                other = Some(at);
                break;
            }
        }
        if let Some(at) = other {
            pairs.push((a, free.remove(at)));
        }
    }
    Ok(pairs)
}

/// Attempts at creating one `txn` entity while other clients create theirs.
const CREATE_ATTEMPTS: u32 = 100;

/// Whether a create failed only because the node is there (from an earlier run or client).
pub fn exists(error: &str) -> bool {
    error.contains("already has a child")
}

/// Creates what `client`'s requests need: for a treesync batch, the node `/root/c<client>`
/// with `n` children; for a treesync txn, `/root/Bench` and the client's entities. Nodes
/// left by an earlier run against the same cluster are kept.
fn prepare(conn: &mut Conn, spec: &LoadSpec, client: usize) -> Result<(), String> {
    match (conn, spec.workload) {
        (Conn::Treesync(c), Workload::Batch(n)) => {
            let name = format!("c{client}");
            let create = |parent: String, name: String| Op::Create {
                parent,
                name,
                class: "Node2D".into(),
                props: Vec::new(),
            };
            let mut ops = vec![create("/root".into(), name.clone())];
            ops.extend((0..n).map(|j| create(format!("/root/{name}"), format!("n{j}"))));
            let txn = Txn {
                expect: Vec::new(),
                ops,
                session: None,
            };
            match c.write(&txn) {
                Err(e) if !exists(&e.to_string()) => Err(e.to_string()),
                _ => Ok(()),
            }
        }
        (
            Conn::Gateway {
                runtime,
                session,
                pairs,
            },
            _,
        ) => runtime.block_on(async {
            let nodes = pairs.iter().flat_map(|(a, b)| [a, b]);
            let world = std::iter::once(("/root", "Bench"));
            let entities = nodes.map(|path| ("/root/Bench", &path["/root/Bench/".len()..]));
            for (parent, name) in world.chain(entities) {
                // Many clients creating entities of one world at once conflict on its
                // dentries (wait-die aborts: "retry later"): retry, boundedly.
                let mut attempts = 0;
                loop {
                    match session.create(parent, name, "Node", vec![]).await {
                        Err(e)
                            if e.to_string().contains("retry later")
                                && attempts < CREATE_ATTEMPTS =>
                        {
                            attempts += 1;
                        }
                        Err(e) if !exists(&e.to_string()) => return Err(e.to_string()),
                        _ => break,
                    }
                }
            }
            Ok(())
        }),
        _ => Ok(()),
    }
}

/// Client `client`'s `i`-th value, `value_bytes` long.
fn value_of(client: usize, i: u64, value_bytes: usize) -> String {
    let mut text = format!("{client}:{i}:");
    text.extend(std::iter::repeat_n(
        'x',
        value_bytes.saturating_sub(text.len()),
    ));
    text
}

/// Runs the load and prints a progress line per second on stderr.
pub fn run(spec: &LoadSpec) -> Result<LoadReport, String> {
    // Warm-up: the first request may wait for an election; every client's key exists.
    let set = LoadSpec {
        workload: Workload::Set,
        ..spec.clone()
    };
    let mut warm = Conn::open(&set, 0)?;
    for client in 0..spec.clients {
        warm.request(&set, client, 0)?;
    }
    // Each client connects and creates what it needs, then waits for the common start.
    let (ready_tx, ready) = std::sync::mpsc::channel::<()>();
    let done = Arc::new(AtomicU64::new(0));
    let (workers, starts): (Vec<_>, Vec<_>) = (0..spec.clients)
        .map(|client| {
            let (spec, done, ready) = (spec.clone(), done.clone(), ready_tx.clone());
            let (start_tx, start) = std::sync::mpsc::channel::<Schedule>();
            let worker = std::thread::spawn(move || {
                let mut conn = Conn::open(&spec, client)?;
                prepare(&mut conn, &spec, client)?;
                let _ = ready.send(()); // the receiver waits for every client
                drop(ready); // once all are ready or failed, the receiver stops waiting
                let schedule = start
                    .recv()
                    .map_err(|_| "the run was abandoned".to_owned())?;
                client_loop(&spec, &mut conn, client, schedule, &done)
            });
            (worker, start_tx)
        })
        .unzip();
    drop(ready_tx);
    for _ in 0..spec.clients {
        if ready.recv().is_err() {
            break; // a client failed: its error comes out of the join below
        }
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs(spec.seconds);
    // Open loop: each client sends every `interval`, clients staggered evenly.
    let interval = spec
        .rate
        .map(|rate| Duration::from_secs_f64(spec.clients as f64 / rate.max(1e-3)));
    for go in starts {
        let _ = go.send(Schedule {
            start,
            deadline,
            interval,
        }); // a client that already failed reports it at the join
    }
    let label = format!(
        "{} {} x{}",
        spec.system.name(),
        spec.workload.name(),
        spec.clients
    );
    show_progress(&done, start, deadline, &label);
    let (mut writes, mut reads, mut unsent) = (histogram(), histogram(), 0);
    for worker in workers {
        let measured = worker
            .join()
            .map_err(|_| "a client thread panicked".to_owned())??;
        writes.add(&measured.writes).map_err(|e| e.to_string())?;
        reads.add(&measured.reads).map_err(|e| e.to_string())?;
        unsent += measured.unsent;
    }
    Ok(LoadReport {
        writes,
        reads,
        elapsed: start.elapsed().as_secs_f64(),
        unsent,
    })
}

/// When a run starts and ends, and (open loop) how often each client sends.
#[derive(Clone, Copy)]
struct Schedule {
    start: Instant,
    deadline: Instant,
    interval: Option<Duration>,
}

/// One client's requests until the deadline. Open loop: request `i` is due at
/// `start + offset + i × interval` and its latency counts from then; once the deadline
/// passes, the requests still due before it are counted as unsent, not sent late.
fn client_loop(
    spec: &LoadSpec,
    conn: &mut Conn,
    client: usize,
    schedule: Schedule,
    done: &AtomicU64,
) -> Result<LoadReport, String> {
    let Schedule {
        start,
        deadline,
        interval,
    } = schedule;
    let (mut writes, mut reads) = (histogram(), histogram());
    let offset = interval.map(|d| d.mul_f64(client as f64 / spec.clients as f64));
    let due = |i: u64| match (interval, offset) {
        (Some(every), Some(offset)) => Some(start + offset + every.mul_f64(i as f64)),
        _ => None,
    };
    let mut i = 0u64;
    let mut unsent = 0;
    loop {
        let scheduled = due(i).unwrap_or_else(Instant::now);
        if scheduled >= deadline {
            break;
        }
        if Instant::now() >= deadline {
            unsent = (i..)
                .take_while(|k| due(*k).is_some_and(|t| t < deadline))
                .count() as u64;
            break;
        }
        if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait); // the open loop's send schedule
        }
        let read = conn.request(spec, client, i + 1)?;
        let took = scheduled.elapsed().as_micros() as u64;
        match read {
            true => reads.saturating_record(took),
            false => writes.saturating_record(took),
        }
        done.fetch_add(1, Ordering::Relaxed);
        i += 1;
    }
    Ok(LoadReport {
        writes,
        reads,
        elapsed: start.elapsed().as_secs_f64(),
        unsent,
    })
}

/// One JSON object describing a run (the comparison script's input).
pub fn json(spec: &LoadSpec, report: &LoadReport, fsync: Option<bool>) -> String {
    let quantiles = |h: &Histogram<u64>| {
        format!(
            "{{\"count\":{},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{}}}",
            h.len(),
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max()
        )
    };
    let total = report.writes.len() + report.reads.len();
    format!(
        "{{\"system\":\"{}\",\"workload\":\"{}\",\"batch\":{},\"clients\":{},\"mode\":\"{}\",\"rate\":{},\"fsync\":{},\"value_bytes\":{},\"seconds\":{:.2},\"requests_per_s\":{:.0},\"unsent\":{},\"writes\":{},\"reads\":{}}}",
        spec.system.name(),
        spec.workload.name(),
        match spec.workload {
            Workload::Batch(n) => n,
            _ => 1,
        },
        spec.clients,
        if spec.rate.is_some() { "open" } else { "closed" },
        spec.rate.map_or("null".into(), |r| format!("{r:.0}")),
        fsync.map_or("null".into(), |f| f.to_string()),
        spec.value_bytes,
        report.elapsed,
        total as f64 / report.elapsed,
        report.unsent,
        quantiles(&report.writes),
        quantiles(&report.reads),
    )
}

/// The human summary line.
pub fn summary(spec: &LoadSpec, report: &LoadReport) -> String {
    let line = |what: &str, h: &Histogram<u64>| {
        format!(
            "{} {what} = {:.0}/s, p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
            h.len(),
            h.len() as f64 / report.elapsed,
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max()
        )
    };
    let mut out = format!(
        "bench: {} {} x{} ({}) in {:.1} s: {}",
        spec.system.name(),
        spec.workload.name(),
        spec.clients,
        spec.rate
            .map_or("closed loop".into(), |r| format!("open loop at {r:.0}/s")),
        report.elapsed,
        line("writes", &report.writes)
    );
    if !report.reads.is_empty() {
        out += &format!("; {}", line("reads", &report.reads));
    }
    if report.unsent > 0 {
        out += &format!(
            "; {} requests due before the end were never sent (the system fell behind the rate)",
            report.unsent
        );
    }
    out
}
