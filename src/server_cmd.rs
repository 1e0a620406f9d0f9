//! `treesync serve` (one server of a cluster) and `treesync local` (three on loopback).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use treesync_actors::runtime::{self, ServerConfig};

use crate::args::value;

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

/// Parses `serve` options into a config.
pub fn serve_config(args: &[String]) -> Result<ServerConfig, String> {
    let mut config = ServerConfig {
        id: 0,
        peers: BTreeMap::new(),
        client_addr: None,
        data_dir: PathBuf::from("data"),
        cores: default_cores(),
        shards: 0,
        fsync: true,
        tick: Duration::from_millis(10),
        pin: true,
        wal_rewrite_bytes: runtime::WAL_REWRITE_BYTES_DEFAULT,
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--id" => config.id = value(flag, args.next())?,
            "--peers" => config.peers = parse_peers(&value::<String>(flag, args.next())?)?,
            "--client-addr" => config.client_addr = Some(value(flag, args.next())?),
            "--data" => config.data_dir = PathBuf::from(value::<String>(flag, args.next())?),
            "--cores" => config.cores = value(flag, args.next())?,
            "--shards" => config.shards = value(flag, args.next())?,
            "--tick-ms" => config.tick = Duration::from_millis(value(flag, args.next())?),
            "--wal-rewrite-bytes" => config.wal_rewrite_bytes = value(flag, args.next())?,
            "--no-fsync" => config.fsync = false,
            "--no-pin" => config.pin = false,
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    if config.id == 0 || config.peers.is_empty() {
        return Err("serve needs --id N and --peers 1=HOST:PORT,2=HOST:PORT,...".into());
    }
    if config.shards == 0 {
        config.shards = u32::try_from(config.cores).map_err(|_| "too many cores".to_owned())?;
    }
    Ok(config)
}

pub fn serve(args: &[String]) -> Result<ExitCode, String> {
    let config = serve_config(args)?;
    if !config.fsync {
        eprintln!(
            "WARNING: --no-fsync: acknowledged writes can be lost on a crash. Benchmarks only."
        );
    }
    println!(
        "treesync serve: id {} · {} cores · {} shards · data {} · clients {}",
        config.id,
        config.cores,
        config.shards,
        config.data_dir.display(),
        config.client_addr.map_or("off".into(), |a| a.to_string())
    );
    let handle = runtime::start(config).map_err(|e| e.to_string())?;
    handle.wait();
    Ok(ExitCode::FAILURE)
}

/// Three servers in this process on loopback, data under `./data/local`.
pub fn local(args: &[String]) -> Result<ExitCode, String> {
    let mut data = PathBuf::from("data/local");
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--data" => data = PathBuf::from(args.next().ok_or("--data needs a value")?),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    let peers: BTreeMap<u64, SocketAddr> = (1..=3u64)
        .map(|id| {
            (
                id,
                SocketAddr::from(([127, 0, 0, 1], 7100 + 100 * id as u16)),
            )
        })
        .collect();
    let mut handles = Vec::new();
    for id in 1..=3u64 {
        let config = ServerConfig {
            id,
            peers: peers.clone(),
            client_addr: Some(SocketAddr::from(([127, 0, 0, 1], 7000 + id as u16))),
            data_dir: data.join(format!("node{id}")),
            cores: 1,
            shards: 1,
            fsync: true,
            tick: Duration::from_millis(10),
            pin: false,
            wal_rewrite_bytes: runtime::WAL_REWRITE_BYTES_DEFAULT,
        };
        handles.push(runtime::start(config).map_err(|e| e.to_string())?);
    }
    println!(
        "treesync local: 3 replicas on loopback, data under {}",
        data.display()
    );
    println!(
        "  client protocol (until the WebSocket gateway arrives): 127.0.0.1:7001, :7002, :7003"
    );
    println!("  peers: 127.0.0.1:7200, :7300, :7400 — stop with Ctrl-C");
    for handle in handles {
        handle.wait();
    }
    Ok(ExitCode::FAILURE)
}
