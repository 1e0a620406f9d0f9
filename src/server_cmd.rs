//! `treesync serve` (one server of a cluster) and `treesync local` (three on loopback).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use std::sync::Arc;

use treesync_actors::runtime::{self, Forwarding, LocalCluster, ServerBackend, ServerConfig};
use treesync_core::replica::CLOSED_LAG_MS_DEFAULT;

/// Shards `treesync local` runs by default: the spine and 7 entity shards, so whatever a
/// newcomer tries spans shards.
pub const LOCAL_SHARDS_DEFAULT: u32 = 8;
use treesync_net::gateway::{self, Backend, GatewayLimits};

use crate::args::value;

/// Where `local` (and, by default, `serve`) serves WebSocket clients.
pub const CLIENT_ADDR_DEFAULT: &str = "127.0.0.1:7070";

/// `--client-addr`: an address, or `off`.
fn client_addr(text: &str) -> Result<Option<SocketAddr>, String> {
    if text == "off" {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|e| format!("--client-addr {text:?}: {e}"))
}

/// Starts a WebSocket gateway and prints its URL.
fn start_gateway(
    addr: SocketAddr,
    limits: &GatewayLimits,
    backend: Arc<dyn Backend>,
    who: &str,
) -> Result<(), String> {
    let started = gateway::start(addr, 1, limits.clone(), backend).map_err(|e| e.to_string())?;
    println!(
        "  clients{who}: ws://{}/ws (Godot 4 binary Variants; add ?godot=3 for Godot 3)",
        started.addr
    );
    Ok(())
}

/// Gateway limit flags shared by `serve` and `local`; returns false for other flags.
fn limit_flag(
    limits: &mut GatewayLimits,
    flag: &str,
    args: &mut std::slice::Iter<'_, String>,
) -> Result<bool, String> {
    match flag {
        "--max-message-bytes" => limits.message_bytes_max = value(flag, args.next())?,
        "--max-in-flight" => limits.in_flight_max = value(flag, args.next())?,
        "--sub-queue" => limits.sub_queue_max = value(flag, args.next())?,
        "--max-subs" => limits.subs_max = value(flag, args.next())?,
        _ => return Ok(false),
    }
    if limits.message_bytes_max == 0 || limits.in_flight_max == 0 || limits.sub_queue_max < 2 {
        return Err("gateway limits must be positive (--sub-queue at least 2)".into());
    }
    Ok(true)
}

fn parse_peers(text: &str) -> Result<BTreeMap<u64, SocketAddr>, String> {
    text.split(',')
        .map(|item| {
            let (id, addr) = item
                .split_once('=')
                .ok_or_else(|| format!("peer {item:?} is not ID=HOST:PORT"))?;
            let id = id
                .parse::<u64>()
                .map_err(|e| format!("peer id {id:?}: {e}"))?;
            let addr = addr
                .parse::<SocketAddr>()
                .map_err(|e| format!("peer address {addr:?}: {e}"))?;
            Ok((id, addr))
        })
        .collect()
}

fn default_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Parses `serve` options into a config and the WebSocket gateway's address.
pub fn serve_config(
    args: &[String],
) -> Result<(ServerConfig, Option<SocketAddr>, GatewayLimits), String> {
    let mut gateway = client_addr(CLIENT_ADDR_DEFAULT)?;
    let mut limits = GatewayLimits::default();
    let mut config = ServerConfig {
        id: 0,
        peers: BTreeMap::new(),
        proto_addr: None,
        data_dir: PathBuf::from("data"),
        cores: default_cores(),
        shards: 0,
        fsync: true,
        tick: Duration::from_millis(10),
        pin: true,
        wal_rewrite_bytes: runtime::WAL_REWRITE_BYTES_DEFAULT,
        compact_entries: runtime::COMPACT_ENTRIES_DEFAULT,
        cluster_secret: runtime::ClusterSecret::random(),
        dial: BTreeMap::new(),
        unsafe_local_reads: false,
        closed_lag_ms: CLOSED_LAG_MS_DEFAULT,
    };
    let mut secret_file: Option<PathBuf> = None;
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--id" => config.id = value(flag, args.next())?,
            "--peers" => config.peers = parse_peers(&value::<String>(flag, args.next())?)?,
            "--client-addr" => gateway = client_addr(&value::<String>(flag, args.next())?)?,
            "--proto-addr" => config.proto_addr = Some(value(flag, args.next())?),
            "--data" => config.data_dir = PathBuf::from(value::<String>(flag, args.next())?),
            "--cores" => config.cores = value(flag, args.next())?,
            "--shards" => config.shards = value(flag, args.next())?,
            "--tick-ms" => config.tick = Duration::from_millis(value(flag, args.next())?),
            "--wal-rewrite-bytes" => config.wal_rewrite_bytes = value(flag, args.next())?,
            "--compact-entries" => config.compact_entries = value(flag, args.next())?,
            "--closed-lag-ms" => config.closed_lag_ms = lag(flag, args.next())?,
            "--cluster-secret-file" => {
                secret_file = Some(value::<String>(flag, args.next())?.into())
            }
            "--no-fsync" => config.fsync = false,
            "--no-pin" => config.pin = false,
            "--dial" => config.dial = parse_peers(&value::<String>(flag, args.next())?)?,
            // Test-only faults (`treesync jepsen`): see `treesync_actors::test_hooks`.
            "--test-unsafe-local-reads" => config.unsafe_local_reads = true,
            "--test-clock-offset-file" => treesync_actors::test_hooks::set_clock_offset_file(
                value::<String>(flag, args.next())?.into(),
            ),
            "--test-disk-fault-file" => treesync_actors::test_hooks::set_disk_fault_file(
                value::<String>(flag, args.next())?.into(),
            ),
            other if limit_flag(&mut limits, other, &mut args)? => {}
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    if config.id == 0 || config.peers.is_empty() {
        return Err("serve needs --id N and --peers 1=HOST:PORT,2=HOST:PORT,...".into());
    }
    let secret_file = secret_file.ok_or(
        "serve needs --cluster-secret-file FILE: the same secret (at least 16 bytes) on every \
         server, so only the cluster's own servers can send it Raft messages",
    )?;
    let secret = std::fs::read(&secret_file)
        .map_err(|e| format!("--cluster-secret-file {}: {e}", secret_file.display()))?;
    config.cluster_secret = runtime::ClusterSecret::new(secret.trim_ascii())
        .map_err(|e| format!("--cluster-secret-file {}: {e}", secret_file.display()))?;
    if config.shards == 0 {
        config.shards = u32::try_from(config.cores).map_err(|_| "too many cores".to_owned())?;
    }
    Ok((config, gateway, limits))
}

pub fn serve(args: &[String]) -> Result<ExitCode, String> {
    let (config, gateway, limits) = serve_config(args)?;
    if !config.fsync {
        eprintln!(
            "WARNING: --no-fsync: acknowledged writes can be lost on a crash. Benchmarks only."
        );
    }
    if config.unsafe_local_reads {
        eprintln!(
            "WARNING: --test-unsafe-local-reads: reads skip ReadIndex and can be stale. \
             A deliberately broken server, for testing the Jepsen checker only."
        );
    }
    println!(
        "treesync serve: id {} · {} cores · {} shards · data {} · framed protocol {}",
        config.id,
        config.cores,
        config.shards,
        config.data_dir.display(),
        config.proto_addr.map_or("off".into(), |a| a.to_string())
    );
    let me = config.id;
    let handle = runtime::start(config).map_err(|e| e.to_string())?;
    let route = Forwarding::new(handle.router.clone(), me);
    handle.host.set_route(Arc::new(route.clone()));
    if let Some(addr) = gateway {
        let backend = ServerBackend::new(route, handle.host.clone(), handle.router.clone());
        start_gateway(addr, &limits, Arc::new(backend), "")?;
    }
    handle.wait();
    Ok(ExitCode::FAILURE)
}

/// Three servers in this process on loopback, data under `./data/local`, each with a
/// WebSocket gateway (default 127.0.0.1:7070, :7071, :7072; port 0 picks free ones) that
/// forwards each request to its shard's leader.
/// `--closed-lag-ms`: at least 1 ms (a leader never closes its own entry's timestamp) and
/// at most a minute (a cross-shard write waits at most that for its shards to take it).
fn lag(flag: &str, arg: Option<&String>) -> Result<u64, String> {
    let ms: u64 = value(flag, arg)?;
    match ms {
        1..=60_000 => Ok(ms),
        _ => Err(format!("{flag} {ms}: must be between 1 and 60000 ms")),
    }
}

pub fn local(args: &[String]) -> Result<ExitCode, String> {
    let mut data = PathBuf::from("data/local");
    let mut gateway = client_addr(CLIENT_ADDR_DEFAULT)?;
    let mut port_base: u16 = 7100;
    let mut compact_entries = runtime::COMPACT_ENTRIES_DEFAULT;
    let mut closed_lag_ms = CLOSED_LAG_MS_DEFAULT;
    let mut shards = LOCAL_SHARDS_DEFAULT;
    let mut limits = GatewayLimits::default();
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--data" => data = PathBuf::from(value::<String>(flag, args.next())?),
            "--shards" => shards = value(flag, args.next())?,
            "--client-addr" => gateway = client_addr(&value::<String>(flag, args.next())?)?,
            "--port-base" => port_base = value(flag, args.next())?,
            "--compact-entries" => compact_entries = value(flag, args.next())?,
            "--closed-lag-ms" => closed_lag_ms = lag(flag, args.next())?,
            other if limit_flag(&mut limits, other, &mut args)? => {}
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    let port = |id: u64| {
        port_base
            .checked_add(100 * id as u16)
            .ok_or_else(|| format!("--port-base {port_base} leaves no room for 3 peers"))
    };
    let mut peers = BTreeMap::new();
    for id in 1..=3u64 {
        peers.insert(id, SocketAddr::from(([127, 0, 0, 1], port(id)?)));
    }
    // One process, one secret: its three servers share it, nobody else knows it.
    let secret = runtime::ClusterSecret::random();
    let mut handles = Vec::new();
    for id in 1..=3u64 {
        let config = ServerConfig {
            id,
            peers: peers.clone(),
            proto_addr: None,
            data_dir: data.join(format!("node{id}")),
            cores: 1,
            shards,
            fsync: true,
            tick: Duration::from_millis(10),
            pin: false,
            wal_rewrite_bytes: runtime::WAL_REWRITE_BYTES_DEFAULT,
            compact_entries,
            cluster_secret: secret.clone(),
            dial: BTreeMap::new(),
            unsafe_local_reads: false,
            closed_lag_ms,
        };
        handles.push(runtime::start(config).map_err(|e| e.to_string())?);
    }
    println!(
        "treesync local: 3 replicas on loopback, {shards} shards (the spine and {} entity \
         shards), data under {}",
        shards.saturating_sub(1).max(1),
        data.display()
    );
    println!(
        "  peers: 127.0.0.1:{}, :{}, :{} — stop with Ctrl-C",
        port(1)?,
        port(2)?,
        port(3)?
    );
    if let Some(addr) = gateway {
        let routers = handles
            .iter()
            .zip(1u64..)
            .map(|(h, id)| (id, h.router.clone()))
            .collect();
        let cluster = LocalCluster::new(routers);
        for (handle, id) in handles.iter().zip(1u64..) {
            handle.host.set_route(Arc::new(cluster.starting_at(id)));
        }
        for id in 1..=3u16 {
            let mut addr = addr;
            if addr.port() != 0 {
                let port = addr
                    .port()
                    .checked_add(id - 1)
                    .ok_or("--client-addr port too high")?;
                addr.set_port(port);
            }
            let handle = &handles[usize::from(id) - 1];
            let route = cluster.starting_at(u64::from(id));
            let backend = ServerBackend::new(route, handle.host.clone(), handle.router.clone());
            let backend = Arc::new(backend);
            start_gateway(addr, &limits, backend, &format!(" of server {id}"))?;
        }
    }
    for handle in handles {
        handle.wait();
    }
    Ok(ExitCode::FAILURE)
}
