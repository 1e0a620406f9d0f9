//! Three real `treesync serve` processes on loopback, each with its gateway: what the
//! `kill -9` tests start, kill and restart.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

pub struct Server {
    pub id: u64,
    args: Vec<String>,
    child: Option<Child>,
}

impl Server {
    pub fn start(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_treesync"))
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn treesync serve");
        self.child = Some(child);
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
            child.wait().expect("reap");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The ports of this run start here: peers at +3, +6, +9, framed clients at +21..+23,
/// gateways at +31..+33. Chosen once, where all of them are free right now (a pid formula
/// alone collided with other tests' ports).
pub fn base_port() -> u16 {
    static BASE: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| {
        let offsets = [3u16, 6, 9, 21, 22, 23, 31, 32, 33];
        let seed = std::process::id() as u64;
        (0..2_000u64)
            .map(|i| 20_000 + ((seed + i * 7) % 4_000) as u16 * 10)
            .find(|base| {
                offsets
                    .iter()
                    .all(|o| std::net::TcpListener::bind(("127.0.0.1", base + o)).is_ok())
            })
            .expect("some port range is free")
    })
}

/// Server `id`'s gateway address (`host:port`).
pub fn gateway_addr(id: u64) -> String {
    format!("127.0.0.1:{}", base_port() + 30 + id as u16)
}

/// Server `id`'s gateway.
pub fn gateway_url(id: u64) -> String {
    format!("ws://{}/ws", gateway_addr(id))
}

/// Three servers of `shards` shards on 2 cores each (not started), with `extra` flags, and
/// their framed-protocol addresses.
pub fn cluster(
    dir: &std::path::Path,
    shards: u32,
    extra: &[&str],
) -> (Vec<Server>, BTreeMap<u64, SocketAddr>) {
    let base = base_port();
    std::fs::create_dir_all(dir).expect("the test's data directory");
    let secret = dir.join("cluster.secret");
    std::fs::write(&secret, "a secret only these three servers share\n").expect("secret file");
    let peers: Vec<String> = (1..=3u16)
        .map(|i| format!("{i}=127.0.0.1:{}", base + 3 * i))
        .collect();
    let clients: BTreeMap<u64, SocketAddr> = (1..=3u64)
        .map(|i| (i, SocketAddr::from(([127, 0, 0, 1], base + 20 + i as u16))))
        .collect();
    let servers = (1..=3u64)
        .map(|id| {
            let mut args: Vec<String> = [
                "serve",
                "--id",
                &id.to_string(),
                "--peers",
                &peers.join(","),
                "--proto-addr",
                &clients[&id].to_string(),
                "--client-addr",
                &gateway_addr(id),
                "--data",
                &dir.join(format!("node{id}")).display().to_string(),
                "--cores",
                "2",
                "--shards",
                &shards.to_string(),
                "--no-pin",
                "--cluster-secret-file",
                &secret.display().to_string(),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            args.extend(extra.iter().map(|s| s.to_string()));
            Server {
                id,
                args,
                child: None,
            }
        })
        .collect();
    (servers, clients)
}
