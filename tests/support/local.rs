//! A real `treesync local` process (3 replicas, 3 gateways) for integration tests.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The running process; killed (and its data removed) on drop.
pub struct LocalCluster {
    child: Child,
    dir: PathBuf,
    /// `ws://…/ws` of servers 1, 2 and 3.
    pub urls: Vec<String>,
    /// The peer port (core 0) of servers 1, 2 and 3.
    pub peer_ports: Vec<u16>,
}

/// A port base whose three peer ports (base + 100, 200, 300) are free right now.
fn free_port_base() -> u16 {
    let seed = 41_000 + (std::process::id() % 150) as u16 * 130;
    (0..200u16)
        .map(|i| seed.wrapping_add(i * 7) % 20_000 + 21_000)
        .find(|base| (1..=3u16).all(|i| TcpListener::bind(("127.0.0.1", base + 100 * i)).is_ok()))
        .expect("some port base is free")
}

impl LocalCluster {
    /// Starts `treesync local` with `extra` flags, its gateways on free ports.
    pub fn start(name: &str, extra: &[&str]) -> LocalCluster {
        let dir = std::env::temp_dir().join(format!("treesync-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir); // a leftover of an earlier run, if any
        let base_port = free_port_base();
        let base = base_port.to_string();
        let data = dir.display().to_string();
        let mut args = vec!["local", "--data", &data, "--port-base", &base];
        args.extend_from_slice(&["--client-addr", "127.0.0.1:0"]);
        args.extend_from_slice(extra);
        let mut child = Command::new(env!("CARGO_BIN_EXE_treesync"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn treesync local");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut urls = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("treesync local's output");
            if let Some(url) = line.split_whitespace().find(|w| w.starts_with("ws://")) {
                urls.push(url.to_owned());
                if urls.len() == 3 {
                    break;
                }
            }
        }
        assert_eq!(urls.len(), 3, "treesync local printed three client URLs");
        let peer_ports = (1..=3u16).map(|i| base_port + 100 * i).collect();
        LocalCluster {
            child,
            dir,
            urls,
            peer_ports,
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let _ = self.child.kill(); // already gone if the test killed it
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
