//! `treesync bench`: the load generator. Starts three replicas in this process on loopback
//! (fsync on unless `--no-fsync`), runs N closed-loop clients writing one property each for
//! S seconds through the client protocol, and reports committed writes/s and latency
//! percentiles (hdrhistogram, µs). Closed-loop clients wait for each answer, so latencies are
//! service times; no coordinated-omission correction applies.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use treesync_actors::runtime::{self, LocalCluster, ServerConfig};
use treesync_core::{Op, Prop, Txn, Value};
use treesync_net::client::Client;
use treesync_net::gateway::{self, GatewayLimits};
use treesync_net::ws_client::WsClient;

use crate::args::value;
use crate::bench_load::{LoadSpec, System, Workload};

struct Options {
    clients: usize,
    seconds: u64,
    value_bytes: usize,
    fsync: bool,
    json: bool,
    /// Clients write through the WebSocket gateway (Godot 4 Variants) instead of the
    /// framed protocol.
    gateway: bool,
    /// `txn`: a 2-shard transaction vs the same writes as two sequential single-shard
    /// commits vs one single-shard write (`bench_txn`), through the gateway, on 8 shards.
    txn: bool,
    /// `subscribe`: write-to-delivery latency of merged subscriptions (`bench_subscribe`)
    /// for each of these subscriber counts, on 8 shards.
    subscribe: Option<Vec<usize>>,
    closed_lag_ms: u64,
    workload: Workload,
    /// `etcd` or `treesync` (default).
    etcd: bool,
    /// An external cluster's client addresses instead of in-process replicas.
    addr: Option<Vec<SocketAddr>>,
    /// An external treesync cluster's WebSocket gateways (`txn`, `subscribe`).
    ws_addr: Vec<SocketAddr>,
    /// An external treesync cluster's shard count (`txn` pairs entities across shards).
    shards: u32,
    /// Open loop at this many requests per second (over all clients).
    rate: Option<f64>,
    /// `fill`: build a tree of this many nodes in the cluster of `--addr` (`bench_fill`).
    fill: Option<u64>,
}

/// etcd's default `--max-txn-ops`.
const ETCD_TXN_OPS_MAX: usize = 128;

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        clients: 1,
        seconds: 5,
        value_bytes: 128,
        fsync: true,
        json: false,
        gateway: false,
        txn: false,
        subscribe: None,
        closed_lag_ms: treesync_core::replica::CLOSED_LAG_MS_DEFAULT,
        workload: Workload::Set,
        etcd: false,
        addr: None,
        ws_addr: Vec::new(),
        shards: crate::bench_txn::SHARDS,
        rate: None,
        fill: None,
    };
    let (mut batch, mut read_percent, mut nodes) = (16usize, 50u32, 1_000_000u64);
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--clients" => o.clients = value(flag, args.next())?,
            "--seconds" => o.seconds = value(flag, args.next())?,
            "--value-bytes" => o.value_bytes = value(flag, args.next())?,
            "--no-fsync" => o.fsync = false,
            "--json" => o.json = true,
            "--gateway" => o.gateway = true,
            "--workload" => match value::<String>(flag, args.next())?.as_str() {
                "set" => (o.workload, o.txn) = (Workload::Set, false),
                "batch" => o.workload = Workload::Batch(0),
                "mixed" => o.workload = Workload::Mixed { read_percent: 0 },
                "txn" => (o.txn, o.gateway) = (true, true),
                "subscribe" => o.subscribe = o.subscribe.or(Some(vec![1, 100])),
                "fill" => o.fill = Some(0),
                other => {
                    return Err(format!(
                        "unknown workload {other:?} (set, batch, mixed, txn, subscribe, fill)"
                    ))
                }
            },
            "--batch" => batch = value(flag, args.next())?,
            "--nodes" => nodes = value(flag, args.next())?,
            "--read-percent" => read_percent = value(flag, args.next())?,
            "--rate" => o.rate = Some(value(flag, args.next())?),
            "--system" => match value::<String>(flag, args.next())?.as_str() {
                "treesync" => o.etcd = false,
                "etcd" => o.etcd = true,
                other => return Err(format!("unknown system {other:?} (treesync, etcd)")),
            },
            "--addr" => o.addr = Some(addrs(flag, args.next())?),
            "--ws-addr" => o.ws_addr = addrs(flag, args.next())?,
            "--shards" => o.shards = value(flag, args.next())?,
            "--subscribers" => o.subscribe = Some(vec![value(flag, args.next())?]),
            "--closed-lag-ms" => o.closed_lag_ms = value(flag, args.next())?,
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    let external = o.addr.is_some();
    if o.fill.is_some() {
        if !external || o.etcd {
            return Err("fill builds a tree in a running treesync cluster: give --addr".into());
        }
        if nodes == 0 || nodes > 9_000_000 {
            return Err("--nodes must be 1 to 9000000 (Limits::nodes_max is 10 M)".into());
        }
        o.fill = Some(nodes);
    }
    // Against a running cluster, txn and subscribe are load workloads like the others:
    // `--clients` transacting clients or subscribers, the same JSON, etcd alike.
    if external && o.txn {
        (o.workload, o.txn, o.gateway) = (Workload::Txn, false, false);
    }
    if external && o.subscribe.take().is_some() {
        o.workload = Workload::Subscribe;
    }
    if external
        && !o.etcd
        && matches!(o.workload, Workload::Txn | Workload::Subscribe)
        && o.ws_addr.is_empty()
    {
        return Err(
            "txn and subscribe against treesync run through its gateways: give --ws-addr".into(),
        );
    }
    if o.workload == Workload::Subscribe && o.rate.is_some() {
        return Err("subscribe has one closed-loop writer: --rate does not apply".into());
    }
    if !external && (!o.ws_addr.is_empty() || o.shards != crate::bench_txn::SHARDS) {
        return Err("--ws-addr and --shards describe a running cluster: give --addr too".into());
    }
    if o.clients == 0 || o.seconds == 0 {
        return Err("--clients and --seconds must be at least 1".into());
    }
    o.workload = match o.workload {
        Workload::Batch(_) if batch == 0 || batch > 1024 => {
            return Err("--batch must be 1 to 1024".into())
        }
        Workload::Batch(_) => Workload::Batch(batch),
        Workload::Mixed { .. } if read_percent > 100 => {
            return Err("--read-percent must be 0 to 100".into())
        }
        Workload::Mixed { .. } => Workload::Mixed { read_percent },
        other => other,
    };
    // At most one request per microsecond per client: a faster schedule is no schedule.
    let rate_max = o.clients as f64 * 1e6;
    if o.rate
        .is_some_and(|r| !r.is_finite() || r <= 0.0 || r > rate_max)
    {
        return Err(format!(
            "--rate must be positive and at most {rate_max} (1 per µs per client)"
        ));
    }
    if (o.rate.is_some() || o.workload != Workload::Set)
        && (o.txn || o.subscribe.is_some() || o.gateway)
    {
        return Err(
            "in-process, --rate, batch and mixed run without --gateway, txn and subscribe".into(),
        );
    }
    if o.etcd && matches!(o.workload, Workload::Batch(n) if n > ETCD_TXN_OPS_MAX) {
        return Err(format!(
            "etcd takes at most {ETCD_TXN_OPS_MAX} puts per txn (--batch)"
        ));
    }
    if o.etcd && o.addr.is_none() {
        return Err("--system etcd needs --addr (its members' client addresses)".into());
    }
    if external && o.gateway {
        return Err("--gateway measures in-process replicas; against --addr, txn and subscribe use the gateways".into());
    }
    Ok(o)
}

pub fn run(args: &[String]) -> Result<ExitCode, String> {
    let o = parse(args)?;
    if let Some(addrs) = &o.addr {
        let system = match o.etcd {
            true => System::Etcd(addrs.clone()),
            false => System::Treesync {
                servers: (1u64..).zip(addrs.iter().copied()).collect(),
                gateways: o.ws_addr.iter().map(|a| format!("ws://{a}/ws")).collect(),
                shards: o.shards,
            },
        };
        if let Some(nodes) = o.fill {
            crate::bench_fill::run(&system, nodes, o.json)?;
            return Ok(ExitCode::SUCCESS);
        }
        return load(&o, system);
    }
    let data = std::env::temp_dir().join(format!("treesync-bench-{}", std::process::id()));
    let base = 27_000u16;
    let peers: BTreeMap<u64, SocketAddr> = (1..=3u64)
        .map(|id| {
            (
                id,
                SocketAddr::from(([127, 0, 0, 1], base + 10 * id as u16)),
            )
        })
        .collect();
    let clients: BTreeMap<u64, SocketAddr> = (1..=3u64)
        .map(|id| {
            (
                id,
                SocketAddr::from(([127, 0, 0, 1], base + 50 + id as u16)),
            )
        })
        .collect();
    let mut routers = BTreeMap::new();
    let mut hosts = Vec::new();
    let secret = runtime::ClusterSecret::random();
    for id in 1..=3u64 {
        let config = ServerConfig {
            id,
            peers: peers.clone(),
            proto_addr: Some(clients[&id]),
            data_dir: data.join(format!("node{id}")),
            cores: 1,
            shards: match o.txn || o.subscribe.is_some() {
                true => crate::bench_txn::SHARDS,
                false => 1,
            },
            fsync: o.fsync,
            tick: Duration::from_millis(10),
            pin: false,
            wal_rewrite_bytes: runtime::WAL_REWRITE_BYTES_DEFAULT,
            compact_entries: runtime::COMPACT_ENTRIES_DEFAULT,
            cluster_secret: secret.clone(),
            dial: BTreeMap::new(),
            unsafe_local_reads: false,
            closed_lag_ms: o.closed_lag_ms,
        };
        // The servers run until the process exits at the end of the benchmark.
        let handle = runtime::start(config).map_err(|e| e.to_string())?;
        routers.insert(id, handle.router.clone());
        hosts.push(handle.host.clone());
        std::mem::forget(handle); // the servers run until the process exits
    }
    if let Some(subscribers) = &o.subscribe {
        let cluster = LocalCluster::new(routers);
        return crate::bench_subscribe::run(&cluster, &hosts, o.seconds, subscribers, o.json);
    }
    if o.txn {
        let cluster = LocalCluster::new(routers);
        return crate::bench_txn::run(&cluster, &hosts, o.seconds, o.json, o.fsync);
    }
    let url = if o.gateway {
        let backend = Arc::new(LocalCluster::new(routers));
        let limits = GatewayLimits::default();
        let started = gateway::start(SocketAddr::from(([127, 0, 0, 1], 0)), 1, limits, backend)
            .map_err(|e| e.to_string())?;
        Some(format!("ws://{}/ws", started.addr))
    } else {
        None
    };
    eprintln!(
        "treesync bench: 3 replicas on loopback (fsync {}), {} client(s){}, {} s, {}-byte values",
        if o.fsync { "on" } else { "OFF" },
        o.clients,
        if o.gateway {
            " through the WebSocket gateway"
        } else {
            ""
        },
        o.seconds,
        o.value_bytes
    );
    let Some(url) = url else {
        let system = System::Treesync {
            servers: clients,
            gateways: Vec::new(),
            shards: 1,
        };
        let result = load(&o, system);
        let _ = std::fs::remove_dir_all(&data); // best-effort cleanup of the benchmark's data
        return result;
    };
    // Warm-up: the first write waits for an election.
    Client::new(clients.clone())
        .write(&write(0, 0, o.value_bytes))
        .map_err(|e| e.to_string())?;
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(o.seconds);
    let workers: Vec<_> = (0..o.clients)
        .map(|c| {
            let (done, value_bytes, url) = (done.clone(), o.value_bytes, url.clone());
            std::thread::spawn(move || gateway_client(&url, c, value_bytes, deadline, &done))
        })
        .collect();
    crate::bench_load::show_progress(&done, start, deadline, "treesync set via gateway");
    let mut total = crate::bench_load::histogram();
    for worker in workers {
        let histogram = worker
            .join()
            .map_err(|_| "a client thread panicked".to_owned())??;
        total.add(&histogram).map_err(|e| e.to_string())?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let writes = total.len();
    let (p50, p99, p999) = (
        total.value_at_quantile(0.5),
        total.value_at_quantile(0.99),
        total.value_at_quantile(0.999),
    );
    let rate = writes as f64 / elapsed;
    let _ = std::fs::remove_dir_all(&data); // best-effort cleanup of the benchmark's data
    if o.json {
        println!(
            "{{\"clients\":{},\"gateway\":{},\"seconds\":{elapsed:.2},\"fsync\":{},\"value_bytes\":{},\"writes\":{writes},\"writes_per_s\":{rate:.0},\"p50_us\":{p50},\"p99_us\":{p99},\"p999_us\":{p999},\"max_us\":{}}}",
            o.clients, o.gateway, o.fsync, o.value_bytes, total.max()
        );
    } else {
        println!("bench: {writes} writes in {elapsed:.1} s = {rate:.0} writes/s; latency p50 {p50} µs, p99 {p99} µs, p99.9 {p999} µs, max {} µs", total.max());
    }
    Ok(ExitCode::SUCCESS)
}

/// The set, batch and mixed workloads through `bench_load`, reported as text or JSON.
fn load(o: &Options, system: System) -> Result<ExitCode, String> {
    let spec = LoadSpec {
        system,
        workload: o.workload,
        clients: o.clients,
        seconds: o.seconds,
        value_bytes: o.value_bytes,
        rate: o.rate,
    };
    let report = match spec.workload {
        Workload::Subscribe => crate::bench_watch::run(&spec)?,
        _ => crate::bench_load::run(&spec)?,
    };
    // An external cluster's fsync setting is its own (unknown here); in-process ones
    // follow --no-fsync.
    let fsync = o.addr.is_none().then_some(o.fsync);
    match o.json {
        true => println!("{}", crate::bench_load::json(&spec, &report, fsync)),
        false => println!("{}", crate::bench_load::summary(&spec, &report)),
    }
    Ok(ExitCode::SUCCESS)
}

/// A comma-separated list of socket addresses.
fn addrs(flag: &str, list: Option<&String>) -> Result<Vec<SocketAddr>, String> {
    let list: String = value(flag, list)?;
    list.split(',')
        .map(|a| a.trim().parse().map_err(|e| format!("{flag} {a:?}: {e}")))
        .collect()
}

/// One closed-loop client writing through the WebSocket gateway (its own actix runtime).
fn gateway_client(
    url: &str,
    c: usize,
    value_bytes: usize,
    deadline: Instant,
    done: &AtomicU64,
) -> Result<Histogram<u64>, String> {
    actix_rt::System::new().block_on(async {
        let mut histogram = crate::bench_load::histogram();
        let mut client = WsClient::connect(url).await.map_err(|e| e.to_string())?;
        let mut i = 0u64;
        while Instant::now() < deadline {
            let Prop { name, value } = client_prop(c, i, value_bytes);
            let began = Instant::now();
            client
                .set("/root", vec![(name, value)])
                .await
                .map_err(|e| e.to_string())?;
            histogram.saturating_record(began.elapsed().as_micros() as u64);
            done.fetch_add(1, Ordering::Relaxed);
            i += 1;
        }
        Ok(histogram)
    })
}

/// Client `client`'s `i`-th value: property `c<client>` of `/root`, `value_bytes` long.
fn client_prop(client: usize, i: u64, value_bytes: usize) -> Prop {
    let mut text = format!("{client}:{i}:");
    text.extend(std::iter::repeat_n(
        'x',
        value_bytes.saturating_sub(text.len()),
    ));
    Prop::new(format!("c{client}"), Value::String(text))
}

/// The framed protocol's write of `client_prop`.
fn write(client: usize, i: u64, value_bytes: usize) -> Txn {
    Txn::single(Op::Set {
        path: "/root".into(),
        props: vec![client_prop(client, i, value_bytes)],
    })
}
