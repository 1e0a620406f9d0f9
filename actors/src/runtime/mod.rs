//! The server runtime: one glommio executor per core, pinned, each owning the shards
//! `s mod cores == core`, its WAL and its peer connections.
//!
//! Cross-core traffic goes only through bounded flume mailboxes (`CoreMsg`); no state is
//! shared between cores. Core 0 also serves the minimal client protocol and routes each
//! request to the owning core.

mod client_port;
mod core_loop;
mod driver;
mod gateway_backend;
mod merged_feed;
mod raft_logger;
mod router;
pub mod txn_host;
pub mod wal_records;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};
use thiserror::Error;
use treesync_core::api::Outcome;
use treesync_core::engine::Resume;
use treesync_core::hlc::{Hlc, MAX_OFFSET_MS_DEFAULT};
use treesync_core::replica::ReadTarget;
use treesync_core::shard::ShardMap;
use treesync_core::Txn;
use treesync_net::gateway::Push;

pub use gateway_backend::{Forwarding, LocalCluster, ServerBackend};
pub use router::Router;
pub use txn_host::{HostHandle, ShardRoute};

use crate::SystemClock;

/// Messages a core's mailbox accepts. Each request carries where to send the answer.
pub enum CoreMsg {
    Propose {
        shard: u32,
        txn: Txn,
        reply: flume::Sender<Outcome>,
    },
    /// A parallel-commit step from a transaction host (`treesync_core::txn::host`).
    Step {
        shard: u32,
        step: treesync_core::txn::step::Step,
        reply: flume::Sender<Outcome>,
    },
    Read {
        shard: u32,
        path: String,
        target: ReadTarget,
        reply: flume::Sender<Outcome>,
    },
    /// Send `request` for `shard` to server `to`'s same core over the peer transport (its
    /// leader), and answer with what it answers.
    Forward {
        to: u64,
        shard: u32,
        request: treesync_core::txn::host::Request,
        reply: flume::Sender<Outcome>,
    },
    /// One line per shard of this core (operators, tests).
    Status { reply: flume::Sender<String> },
    /// Feed `sink` with the subtree at `path` (see `treesync_net::gateway::Backend`).
    Subscribe {
        shard: u32,
        path: String,
        from: Option<Resume>,
        sink: flume::Sender<Push>,
        reply: flume::Sender<Outcome>,
    },
}

/// Mailbox depth per core; senders wait (back-pressure) when it is full.
pub const CORE_MAILBOX_MAX: usize = 4096;
/// glommio's io_uring registered memory per executor (the locked-memory limit is 8 MiB).
pub const IO_MEMORY_BYTES: usize = 1024 * 1024;

/// How to run one server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub id: u64,
    /// Every server's peer address (this one's included); core c listens on port + c.
    pub peers: BTreeMap<u64, SocketAddr>,
    /// Where the minimal framed client protocol (`net::client_proto`: the load generator,
    /// tests) is served by core 0, if anywhere. The WebSocket gateway is started beside the
    /// runtime (`treesync_net::gateway::start` with a `Router` or `LocalCluster`).
    pub proto_addr: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub cores: usize,
    pub shards: u32,
    /// fdatasync every WAL batch; off only for benchmarks (warned about loudly).
    pub fsync: bool,
    /// One Raft tick; elections take 10 ticks, heartbeats 2.
    pub tick: Duration,
    /// Pin executors to CPUs (off when several servers share a machine in one process).
    pub pin: bool,
    /// Rewrite a core's WAL down to its shards' snapshots and later entries once it grows
    /// past this many bytes.
    pub wal_rewrite_bytes: u64,
    /// A replica compacts its log into a tree snapshot once this many applied entries
    /// precede it (subscribers resuming from before that get a fresh snapshot).
    pub compact_entries: u64,
    /// How far below its clock a shard leader closes timestamps (`replica::closed`):
    /// the lag of resolved timestamps, and how late a cross-shard write may arrive.
    pub closed_lag_ms: u64,
    /// The secret every server of the cluster shares: peers prove it to each other.
    pub cluster_secret: ClusterSecret,
    /// Where to dial some peers instead of their member address in `peers` (a proxy, a
    /// NAT): the member list, and so the cluster's identity, stays as it is. The Jepsen
    /// runner routes peer links through its fault-injecting proxy this way.
    pub dial: BTreeMap<u64, SocketAddr>,
    /// Test-only broken mode: reads skip ReadIndex (`ReplicaConfig::unsafe_local_reads`).
    pub unsafe_local_reads: bool,
}

/// The cluster's shared secret (kept out of `Debug` output and logs).
#[derive(Clone)]
pub struct ClusterSecret(std::sync::Arc<[u8]>);

/// Fewest bytes a cluster secret may have.
pub const CLUSTER_SECRET_BYTES_MIN: usize = 16;

impl ClusterSecret {
    /// A secret of at least `CLUSTER_SECRET_BYTES_MIN` bytes.
    pub fn new(bytes: &[u8]) -> Result<ClusterSecret, StartError> {
        if bytes.len() < CLUSTER_SECRET_BYTES_MIN {
            return Err(StartError::Config(format!(
                "the cluster secret has {} bytes; at least {CLUSTER_SECRET_BYTES_MIN} are needed",
                bytes.len()
            )));
        }
        Ok(ClusterSecret(bytes.into()))
    }

    /// A fresh random secret (for a cluster of one process: `treesync local`, benchmarks).
    pub fn random() -> ClusterSecret {
        let bytes: Vec<u8> = (0..4)
            .flat_map(|_| treesync_net::peer::handshake_nonce().to_le_bytes())
            .collect();
        ClusterSecret(bytes.into())
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

/// Default `ServerConfig::compact_entries`.
pub const COMPACT_ENTRIES_DEFAULT: u64 = 10_000;

/// Default WAL size that triggers a rewrite.
pub const WAL_REWRITE_BYTES_DEFAULT: u64 = 256 * 1024 * 1024;

/// Why a server could not start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Identity(#[from] crate::storage::identity::IdentityError),
    #[error("cannot start executor for core {core}: {reason}")]
    Executor { core: usize, reason: String },
}

/// A running server: its cores' mailboxes, for embedding, and their threads.
pub struct ServerHandle {
    pub router: Router,
    /// This server's transaction host (runs on core 0); give it a route (`set_route`).
    pub host: HostHandle,
    threads: Vec<ExecutorJoinHandle<()>>,
    /// This process's hold on the data directory (released when the handle goes).
    _data_dir: crate::storage::identity::DirLock,
}

impl ServerHandle {
    /// Waits until every core stops (a core stops only on a fatal error).
    pub fn wait(self) {
        for thread in self.threads {
            // A core that panicked already reported why; nothing more to do here.
            let _ = thread.join();
        }
    }
}

/// Makes any panic, on any thread, stop the whole process (after the default report).
///
/// Why: each core is a thread owning its shards. A panic used to end only that executor
/// while the gateway and the other cores kept serving: a half-alive server that accepts
/// requests for shards nobody runs, holds its peers' votes hostage and never restarts.
/// Fail-stop is what Raft assumes of a crashed server, and a supervisor restarts it from
/// its WAL. (`panic = "abort"` in the profiles would do the same for the binary but also
/// for the simulator, which reports a panic per seed and goes on.)
pub fn fail_stop_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        eprintln!("treesync: a thread panicked; stopping the process (fail-stop)");
        std::process::abort();
    }));
}

/// Starts a server. Installs `fail_stop_on_panic` first.
pub fn start(config: ServerConfig) -> Result<ServerHandle, StartError> {
    validate(&config)?;
    fail_stop_on_panic();
    std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    })?;
    let identity = crate::storage::identity::Identity {
        cluster_id: cluster_id(&config),
        node_id: config.id,
        cores: config.cores,
        shards: config.shards,
    };
    let data_dir = identity.claim(&config.data_dir)?;
    let shard_map = ShardMap::new(config.shards, treesync_core::shard::SHARD_DEPTH_DEFAULT)
        .map_err(|e| StartError::Config(e.to_string()))?;
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..config.cores)
        .map(|_| flume::bounded(CORE_MAILBOX_MAX))
        .unzip();
    let router = Router::new(senders, shard_map.clone(), config.id);
    let (host, host_inbox, host_self) = txn_host::mailbox();
    let mut host_parts = Some((host_inbox, host_self));
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // One hybrid logical clock per process, shared by its cores (one AtomicU64).
    let hlc = std::sync::Arc::new(Hlc::new(SystemClock, MAX_OFFSET_MS_DEFAULT));
    let mut threads = Vec::new();
    for (core, inbox) in receivers.into_iter().enumerate() {
        let placement = if config.pin {
            Placement::Fixed(core % cpus)
        } else {
            Placement::Unbound
        };
        let (config, router, hlc, host) =
            (config.clone(), router.clone(), hlc.clone(), host.clone());
        let metrics = router.metrics().clone();
        let host_task = match core {
            0 => host_parts.take().map(|(inbox, me)| {
                let limits = treesync_core::Limits::default();
                let host = treesync_core::txn::host::TxnHost::new(
                    shard_map.clone(),
                    limits,
                    config.id,
                    boot_epoch(),
                );
                (host, inbox, me)
            }),
            _ => None,
        };
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("treesync-{}-core{core}", config.id))
            .io_memory(IO_MEMORY_BYTES)
            .spawn(move || async move {
                if core == 0 {
                    if let Some(addr) = config.proto_addr {
                        glommio::spawn_local(client_port::serve(addr, router.clone())).detach();
                    }
                }
                if let Some((host, inbox, me)) = host_task {
                    let run = txn_host::run(host, inbox, me, hlc.clone(), config.tick);
                    glommio::spawn_local(run).detach();
                }
                if let Err(e) = core_loop::run(core, config, inbox, hlc, host, metrics).await {
                    tracing::error!(core, error = %e, "core stopped");
                    eprintln!("treesync: core {core} stopped: {e}");
                    std::process::exit(1);
                }
            })
            .map_err(|e| StartError::Executor {
                core,
                reason: e.to_string(),
            })?;
        threads.push(handle);
    }
    Ok(ServerHandle {
        router,
        host,
        threads,
        _data_dir: data_dir,
    })
}

/// A number that differs on every boot of this process: the transaction host's epoch
/// (with its counter, transaction ids are never reused across restarts).
fn boot_epoch() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    (nanos as u32) ^ std::process::id().rotate_left(16)
}

/// The cluster id of a configuration: a hash of its members, cores and shards, stamped on
/// WAL files and the data directory's identity, so that another cluster's or layout's data
/// is refused at start rather than replayed into the wrong replicas. (An operator-chosen,
/// persisted cluster id would let members change; membership changes do not exist yet.)
pub fn cluster_id(config: &ServerConfig) -> u64 {
    let members: Vec<String> = config
        .peers
        .iter()
        .map(|(id, a)| format!("{id}={a}"))
        .collect();
    let layout = format!(
        "{};cores={};shards={}",
        members.join(","),
        config.cores,
        config.shards
    );
    treesync_core::shard::stable_hash(layout.as_bytes())
}

fn validate(config: &ServerConfig) -> Result<(), StartError> {
    let bad = |m: String| Err(StartError::Config(m));
    if !config.peers.contains_key(&config.id) {
        return bad(format!("server id {} is not in the peer list", config.id));
    }
    if config.peers.contains_key(&0) {
        return bad("server ids start at 1".into());
    }
    if config.cores == 0 || config.shards == 0 {
        return bad("cores and shards must be at least 1".into());
    }
    if config.tick.is_zero() {
        return bad("tick must be positive".into());
    }
    Ok(())
}
