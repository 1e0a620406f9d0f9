//! One core's driver of the pure engine (`treesync_core::engine`): its mailbox, its WAL
//! file, its peer transport and its tick timer. All logic — shards, group commit, feeds,
//! deadlines, reply routing — is the engine's; this loop only moves inputs in and executes
//! the commands out, in the order the engine's doc prescribes.
//!
//! # Invariants
//! - A WAL batch is durable (appended and fdatasynced) before `Persisted` is fed back,
//!   unless it only moves commit indexes (`WalBatch::must_sync`): then it is written, and
//!   the next synced batch makes it durable. One fsync per write instead of two cut the
//!   one-client latency from p50 930 µs to 697 µs (docs/benchmarks.md).
//! - Inputs are drained as `driver` says (alternating clients and peers, bounded).
//! - Ticks are never starved: a tick that is due is taken before any further draining.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future::or;
use treesync_core::clock_offset::ClockOffsets;
use treesync_core::engine::{
    Commands, Engine, EngineConfig, Input, WalBatch, REQUEST_TICKS_DEFAULT, RESOLVED_EVERY_TICKS,
};
use treesync_core::hlc::{Hlc, MAX_OFFSET_MS_DEFAULT};
use treesync_core::metrics::Metrics;
use treesync_core::replica::{PersistRequest, ReplicaConfig};
use treesync_net::peer::{Forwarded, InboundBatch, PeerAuth, Transport};

use super::driver::Driver;
use super::wal_records::{storage_from, to_records};
use super::{cluster_id, CoreMsg, ServerConfig};
use crate::storage::wal::{Wal, WalOptions};
use crate::SystemClock;

/// What woke the loop up.
enum Wake {
    Inbox(super::CoreMsg),
    Peer(InboundBatch),
    Forward(Forwarded),
    Tick,
    /// Every mailbox sender is gone: the server is shutting down.
    InboxClosed,
    /// The peer listener and every connection ended: this core can no longer hear its
    /// peers. Stopping beats spinning on the closed channel half-alive (defect 10).
    PeersClosed,
}

/// Whether a wake-up ends the loop, and how: a closed channel would wake it again at once,
/// for ever (defect 10: the loop spun at 100% on a closed channel).
fn ending(wake: &Wake) -> Option<Result<(), String>> {
    match wake {
        Wake::InboxClosed => Some(Ok(())),
        Wake::PeersClosed => Some(Err("the peer listener stopped".into())),
        Wake::Inbox(_) | Wake::Peer(_) | Wake::Forward(_) | Wake::Tick => None,
    }
}

/// How core `core` authenticates its peers and itself to them.
fn peer_auth(config: &ServerConfig, core: usize) -> PeerAuth {
    let core = u32::try_from(core).expect("cores fit u32");
    let members = config.peers.keys().copied().collect();
    PeerAuth::new(
        cluster_id(config),
        config.cluster_secret.bytes(),
        config.id,
        core,
        members,
    )
}

/// A number that differs on every boot of this process (not secret, only distinct).
fn boot_nonce(core: usize) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32) ^ core as u64
}

pub async fn run(
    core: usize,
    config: ServerConfig,
    inbox: flume::Receiver<CoreMsg>,
    hlc: Arc<Hlc<SystemClock>>,
    host: super::txn_host::HostHandle,
    metrics: Arc<Metrics>,
) -> Result<(), String> {
    let wal_path = config.data_dir.join(format!("core-{core}.wal"));
    let options = WalOptions {
        fsync: config.fsync,
        cluster_id: cluster_id(&config),
        ..WalOptions::default()
    };
    let (mut wal, recovery) = Wal::open(&wal_path, options)
        .await
        .map_err(|e| e.to_string())?;
    let (peer_tx, peer_rx) = flume::bounded(super::CORE_MAILBOX_MAX);
    let (forward_tx, forward_rx) = flume::bounded(super::CORE_MAILBOX_MAX);
    // Our own entry is where we listen; the others are where we dial them.
    let mut routes = config.peers.clone();
    routes.extend(config.dial.iter().filter(|(id, _)| **id != config.id));
    let mut transport = Transport::start(peer_auth(&config, core), &routes, peer_tx, forward_tx)
        .map_err(|e| e.to_string())?;
    let logger = super::raft_logger::logger();
    let peers: Vec<u64> = config.peers.keys().copied().collect();
    let nonce = boot_nonce(core);
    let engine_config = EngineConfig {
        shards: (0..config.shards)
            .filter(|s| *s as usize % config.cores == core)
            .collect(),
        replica: ReplicaConfig {
            compact_entries: config.compact_entries,
            jitter_seed: nonce,
            boot_nonce: nonce,
            unsafe_local_reads: config.unsafe_local_reads,
            closed_lag_ms: config.closed_lag_ms,
            close_every_ms: (config.closed_lag_ms / 2).max(1),
            ..ReplicaConfig::new(config.id, peers.clone())
        },
        request_ticks_max: REQUEST_TICKS_DEFAULT,
        resolved_every_ticks: RESOLVED_EVERY_TICKS,
        inject_resolved_before_change: false,
        inject_resolved_ignores_intents: false,
    };
    let engine = Engine::new(
        engine_config,
        |s| storage_from(recovery.shards.get(&u64::from(s)), peers.clone()),
        &logger,
    );
    tracing::info!(core, records = recovery.records, "core started");
    let offsets = ClockOffsets::new(MAX_OFFSET_MS_DEFAULT, config.peers.len());
    let mut driver = Driver::new(engine, hlc, offsets).with_host(host);
    let mut wal_base_bytes = wal.len();
    let mut next_tick = Instant::now() + config.tick;
    let mut tick_timer = TickTimer::default();
    let mut batch: Option<WalBatch> = None;
    let (mut led, mut ticks) = (BTreeSet::new(), 0u64);
    loop {
        let mut commands = Commands::default();
        // Wait only when nothing is left to persist; otherwise take what is there and go on.
        if batch.is_none() {
            let wake = wait(&inbox, &peer_rx, &forward_rx, &mut tick_timer, next_tick).await;
            if let Some(end) = ending(&wake) {
                return end;
            }
            match wake {
                Wake::Inbox(msg) => driver.client(msg, &mut commands),
                Wake::Peer(inbound) => driver.peer(inbound, &mut commands),
                Wake::Forward(forwarded) => driver.forwarded(forwarded, &mut commands),
                Wake::Tick | Wake::InboxClosed | Wake::PeersClosed => {}
            }
        }
        driver.drain(&inbox, &peer_rx, &mut commands);
        for forwarded in forward_rx.try_iter().take(super::driver::DRAIN_MAX) {
            driver.forwarded(forwarded, &mut commands);
        }
        if Instant::now() >= next_tick {
            next_tick = Instant::now() + config.tick;
            driver.engine.step(Input::Tick, &mut commands);
            let hlc = driver.clock();
            driver.engine.step(Input::Clock { hlc }, &mut commands);
            driver.tick();
            ticks += 1;
            // Every 10th tick: cheap even for thousands of idle shards; an election takes
            // longer than 10 ticks, so no leadership change is missed between looks.
            if ticks % 10 == 0 {
                observe_leaders(&driver.engine, core, &metrics, &mut led);
            }
        }
        driver.execute(&mut commands, &mut transport);
        batch = batch.or(commands.wal.take());
        // Rewrite when the log is past the limit and at least twice what the last rewrite
        // kept, so a base larger than the limit does not trigger a rewrite every wake-up.
        let rewrite_due = |wal: &Wal| wal.len() > config.wal_rewrite_bytes.max(2 * wal_base_bytes);
        // One batch in flight at a time: write it, then feed its completion back.
        while let Some(done) = batch.take() {
            let started = Instant::now();
            let records = write_batch(&done, &mut wal).await?;
            let took = started.elapsed();
            if records > 0 {
                metrics.wal_write_us.record(took.as_micros() as u64);
                metrics.wal_batch_records.record(records as u64);
            }
            // The loop neither ticks nor reads peers meanwhile: a batch near an election
            // timeout (100-200 ms) costs this server its leaderships.
            if took > SLOW_BATCH {
                tracing::warn!(?took, shards = done.requests.len(), "slow WAL batch");
            }
            let mut commands = Commands::default();
            let persisted = Input::Persisted { batch: done.number };
            driver.engine.step(persisted, &mut commands);
            driver.execute(&mut commands, &mut transport);
            batch = commands.wal.take();
            let waiting = !inbox.is_empty()
                || !peer_rx.is_empty()
                || !forward_rx.is_empty()
                || Instant::now() >= next_tick;
            // Interleave: take new inputs before the next batch, unless a rewrite is due:
            // then persist until the engine is durable, or steady load would starve the
            // rewrite and the log would grow without bound.
            if waiting && !rewrite_due(&wal) {
                break;
            }
        }
        if batch.is_none() && driver.engine.is_durable() && rewrite_due(&wal) {
            rewrite_wal(&driver.engine, &mut wal).await?;
            wal_base_bytes = wal.len();
        }
    }
}

/// A WAL batch slower than this is logged.
const SLOW_BATCH: Duration = Duration::from_millis(100);

/// The timer of the next tick, kept across wake-ups until it fires or the tick moves: an
/// io_uring timeout armed and cancelled at every wake-up cost each core ~half its CPU in
/// `io_uring_enter` (arm, cancel, task work) at one client's ~450 writes/s (perf, 2-vCPU VM).
#[derive(Default)]
struct TickTimer {
    armed: Option<(Instant, std::pin::Pin<Box<glommio::timer::Timer>>)>,
}

impl TickTimer {
    /// Resolves at `at` (at once if it passed).
    async fn until(&mut self, at: Instant) {
        if self
            .armed
            .as_ref()
            .is_none_or(|(deadline, _)| *deadline != at)
        {
            let timer = glommio::timer::Timer::new(at.saturating_duration_since(Instant::now()));
            self.armed = Some((at, Box::pin(timer)));
        }
        if let Some((_, timer)) = self.armed.as_mut() {
            timer.as_mut().await;
        }
        self.armed = None;
    }
}

async fn wait(
    inbox: &flume::Receiver<CoreMsg>,
    peer_rx: &flume::Receiver<InboundBatch>,
    forward_rx: &flume::Receiver<Forwarded>,
    tick_timer: &mut TickTimer,
    next_tick: Instant,
) -> Wake {
    // The forward channel closes with the peer listener, which `peers` reports.
    let forwards = async {
        match forward_rx.recv_async().await {
            Ok(forwarded) => Wake::Forward(forwarded),
            Err(_) => std::future::pending().await,
        }
    };
    let inbox = async {
        inbox
            .recv_async()
            .await
            .map_or(Wake::InboxClosed, Wake::Inbox)
    };
    let peers = async {
        peer_rx
            .recv_async()
            .await
            .map_or(Wake::PeersClosed, Wake::Peer)
    };
    let timer = async {
        tick_timer.until(next_tick).await;
        Wake::Tick
    };
    or(inbox, or(peers, or(forwards, timer))).await
}

/// Writes the batch's records (synced unless none of it must be); returns how many.
async fn write_batch(batch: &WalBatch, wal: &mut Wal) -> Result<usize, String> {
    let mut records = Vec::new();
    for (shard, request) in &batch.requests {
        to_records(*shard, request, &mut records);
    }
    if records.is_empty() {
        return Ok(0);
    }
    let written = match batch.must_sync() {
        true => wal.append(&records).await,
        false => wal.append_unsynced(&records).await,
    };
    written.map(|()| records.len()).map_err(|e| e.to_string())
}

/// Publishes how many of this core's shards this server leads and runs, and counts each
/// leadership gained since the last look (`led`: the shards led then).
fn observe_leaders(engine: &Engine, core: usize, metrics: &Metrics, led: &mut BTreeSet<u32>) {
    let now: BTreeSet<u32> = engine
        .replicas()
        .filter(|(_, r)| r.is_leader())
        .map(|(shard, _)| shard)
        .collect();
    // `Metrics::new(cores)` made one of each per core.
    metrics.leaders[core].set(now.len() as u64);
    metrics.replicas[core].set(engine.replicas().count() as u64);
    metrics.leaderships_gained[core].add(now.difference(led).count() as u64);
    *led = now;
}

/// Shrinks the WAL to what the shards still need: their snapshots, later entries and hard
/// states (replicas compact their logs into snapshots, so this stays bounded).
async fn rewrite_wal(engine: &Engine, wal: &mut Wal) -> Result<(), String> {
    let before = wal.len();
    let mut records = Vec::new();
    for (id, replica) in engine.replicas() {
        let (snapshot, entries, hard_state) = replica.durable_base();
        let request = PersistRequest {
            number: 0,
            entries,
            hard_state: Some(hard_state),
            snapshot,
            must_sync: true,
        };
        to_records(id, &request, &mut records);
    }
    wal.rewrite(&records).await.map_err(|e| e.to_string())?;
    tracing::info!(before, after = wal.len(), "WAL rewritten");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_channel_ends_the_loop_instead_of_waking_it_forever() {
        assert_eq!(ending(&Wake::InboxClosed), Some(Ok(())));
        assert!(matches!(ending(&Wake::PeersClosed), Some(Err(e)) if e.contains("peer")));
        assert_eq!(ending(&Wake::Tick), None);
        assert_eq!(ending(&Wake::Peer(Vec::new())), None);
    }
}
