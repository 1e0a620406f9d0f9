//! The servers of a Jepsen run: real `treesync serve` processes on loopback, each with its
//! own data directory, log file and fault files, whose peer links all pass through the
//! fault-injecting proxy (`proxy`).
//!
//! # Invariants
//! - A server is `Running`, `Paused` (SIGSTOP) or `Down` (killed, or exited by itself after
//!   a disk fault); `heal` brings every server back to `Running` with healthy fault files.
//! - Data directories are never removed between restarts: a restart is a crash recovery.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::proxy::Proxy;

/// How a server is doing, as the nemesis left it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Running,
    Paused,
    Down,
}

struct Server {
    args: Vec<String>,
    log: PathBuf,
    clock_file: PathBuf,
    disk_file: PathBuf,
    child: Option<Child>,
    state: State,
}

/// The cluster under test.
pub struct Cluster {
    servers: BTreeMap<u64, Server>,
    /// `ws://127.0.0.1:PORT/ws` per server.
    pub urls: BTreeMap<u64, String>,
    pub proxy: Proxy,
    exe: PathBuf,
}

/// A free loopback port (bound and released: the OS does not hand it out again soon).
fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl Cluster {
    /// Starts `count` servers under `dir` (`broken_reads`: the test-only unsafe read mode).
    pub fn start(dir: &Path, count: u64, broken_reads: bool) -> Result<Cluster, String> {
        let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
        let secret = dir.join("cluster.secret");
        let secret_text: String = (0..4)
            .map(|_| format!("{:016x}", treesync_net::peer::handshake_nonce()))
            .collect();
        std::fs::write(&secret, secret_text).map_err(|e| format!("{}: {e}", secret.display()))?;
        let ids: Vec<u64> = (1..=count).collect();
        let mut peers = BTreeMap::new();
        for &id in &ids {
            peers.insert(id, loopback(free_port()?));
        }
        let proxy = Proxy::start(&peers)?;
        let members = join(peers.iter().map(|(id, a)| format!("{id}={a}")));
        let mut servers = BTreeMap::new();
        let mut urls = BTreeMap::new();
        for &id in &ids {
            let client = loopback(free_port()?);
            urls.insert(id, format!("ws://{client}/ws"));
            let dial = join(
                ids.iter()
                    .filter(|j| **j != id)
                    .map(|j| format!("{j}={}", proxy.entrance(id, *j))),
            );
            let node = dir.join(format!("node{id}"));
            let (clock_file, disk_file) =
                (node.with_extension("clock"), node.with_extension("disk"));
            let mut args: Vec<String> = [
                "serve",
                "--id",
                &id.to_string(),
                "--peers",
                &members,
                "--dial",
                &dial,
                "--client-addr",
                &client.to_string(),
                "--data",
                &node.display().to_string(),
                "--cores",
                "1",
                "--shards",
                "4", // the spine and three entity shards (`bank::SHARDS`)
                "--no-pin",
                "--cluster-secret-file",
                &secret.display().to_string(),
                "--test-clock-offset-file",
                &clock_file.display().to_string(),
                "--test-disk-fault-file",
                &disk_file.display().to_string(),
            ]
            .map(String::from)
            .to_vec();
            if broken_reads {
                args.push("--test-unsafe-local-reads".into());
            }
            let server = Server {
                args,
                log: node.with_extension("log"),
                clock_file,
                disk_file,
                child: None,
                state: State::Down,
            };
            servers.insert(id, server);
        }
        let mut cluster = Cluster {
            servers,
            urls,
            proxy,
            exe,
        };
        for id in ids {
            cluster.heal_fault_files(id)?;
            cluster.restart(id)?;
        }
        Ok(cluster)
    }

    pub fn ids(&self) -> Vec<u64> {
        self.servers.keys().copied().collect()
    }

    pub fn state(&self, id: u64) -> State {
        self.servers[&id].state
    }

    fn server(&mut self, id: u64) -> &mut Server {
        self.servers.get_mut(&id).expect("a server of this cluster")
    }

    /// Starts a server that is down; its output is appended to its log.
    pub fn restart(&mut self, id: u64) -> Result<(), String> {
        let exe = self.exe.clone();
        let server = self.server(id);
        if server.state != State::Down {
            return Ok(());
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&server.log)
            .map_err(|e| format!("{}: {e}", server.log.display()))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(exe)
            .args(&server.args)
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(|e| format!("starting server {id}: {e}"))?;
        server.child = Some(child);
        server.state = State::Running;
        Ok(())
    }

    /// `kill -9`: the process dies at once, whatever it was doing.
    pub fn kill(&mut self, id: u64) {
        let server = self.server(id);
        if let Some(mut child) = server.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        server.state = State::Down;
    }

    /// SIGSTOP (`pause = true`) or SIGCONT.
    pub fn pause(&mut self, id: u64, pause: bool) {
        let server = self.server(id);
        let Some(child) = &server.child else {
            return;
        };
        let signal = if pause { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let done = unsafe { libc::kill(child.id() as libc::pid_t, signal) } == 0;
        if done {
            server.state = if pause { State::Paused } else { State::Running };
        }
    }

    /// Writes the server's clock offset file (milliseconds added to its wall clock).
    pub fn set_clock_offset(&mut self, id: u64, offset_ms: i64) -> Result<(), String> {
        let path = self.server(id).clock_file.clone();
        write_file(&path, &offset_ms.to_string())
    }

    /// Writes the server's disk fault file: `eio`, `full` or "" (healthy).
    pub fn set_disk_fault(&mut self, id: u64, fault: &str) -> Result<(), String> {
        let path = self.server(id).disk_file.clone();
        write_file(&path, fault)
    }

    /// Whether the server's disk fault file asks for a fault now.
    pub fn has_disk_fault(&self, id: u64) -> bool {
        std::fs::read_to_string(&self.servers[&id].disk_file)
            .is_ok_and(|text| !text.trim().is_empty())
    }

    fn heal_fault_files(&mut self, id: u64) -> Result<(), String> {
        self.set_clock_offset(id, 0)?;
        self.set_disk_fault(id, "")
    }

    /// Notes servers that exited by themselves (a disk fault stops a server): `Down`.
    pub fn reap(&mut self) -> Vec<u64> {
        let mut exited = Vec::new();
        for (id, server) in &mut self.servers {
            if let Some(child) = &mut server.child {
                if let Ok(Some(_)) = child.try_wait() {
                    server.child = None;
                    server.state = State::Down;
                    exited.push(*id);
                }
            }
        }
        exited
    }

    /// Every fault undone: links joined, clocks and disks healthy, every server running.
    pub fn heal(&mut self) -> Result<(), String> {
        self.proxy.join_all();
        for id in self.ids() {
            self.heal_fault_files(id)?;
            if self.state(id) == State::Paused {
                self.pause(id, false);
            }
        }
        self.reap();
        for id in self.ids() {
            self.restart(id)?;
        }
        Ok(())
    }

    /// Stops every server (SIGCONT first, so a paused one can die).
    pub fn stop(&mut self) {
        for id in self.ids() {
            self.pause(id, false);
            self.kill(id);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    let mut file = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(",")
}
