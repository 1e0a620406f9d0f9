//! One core's driver of the pure engine (`treesync_core::engine`): its mailbox, its WAL
//! file, its peer transport and its tick timer. All logic — shards, group commit, feeds,
//! deadlines, reply routing — is the engine's; this loop only moves inputs in and executes
//! the commands out, in the order the engine's doc prescribes.
//!
//! # Invariants
//! - A WAL batch is durable (appended and fdatasynced) before `Persisted` is fed back.
//! - Client requests and peer messages are drained alternately, at most `DRAIN_MAX` of each
//!   per wake-up, so sustained client load never leaves heartbeats unread (defect 11).
//! - Ticks are never starved: a tick that is due is taken before any further draining.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use futures_lite::future::or;
use treesync_core::engine::{
    Answer, Commands, Engine, EngineConfig, Input, Outcome, SubId, Token, WalBatch,
    REQUEST_TICKS_DEFAULT, RESOLVED_EVERY_TICKS,
};
use treesync_core::hlc::Hlc;
use treesync_core::replica::{PersistRequest, ReplicaConfig, ReplyError};
use treesync_net::client_proto::Response;
use treesync_net::gateway::Push;
use treesync_net::peer::{InboundBatch, Transport};

use super::wal_records::{storage_from, to_records};
use super::{CoreMsg, ServerConfig};
use crate::storage::wal::{Wal, WalOptions};
use crate::SystemClock;

/// Most client messages, and separately most peer batches, taken per wake-up.
const DRAIN_MAX: usize = 256;

enum Wake {
    Inbox(CoreMsg),
    Peer(InboundBatch),
    Tick,
    Closed,
}

/// Where the answers of requests in the engine go.
#[derive(Default)]
struct Routes {
    replies: BTreeMap<Token, flume::Sender<Response>>,
    sinks: BTreeMap<SubId, flume::Sender<Push>>,
    next: u64,
}

impl Routes {
    fn token(&mut self) -> u64 {
        self.next += 1;
        self.next
    }
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
) -> Result<(), String> {
    let wal_path = config.data_dir.join(format!("core-{core}.wal"));
    let options = WalOptions {
        fsync: config.fsync,
        ..WalOptions::default()
    };
    let (mut wal, recovery) = Wal::open(&wal_path, options)
        .await
        .map_err(|e| e.to_string())?;
    let (peer_tx, peer_rx) = flume::bounded(super::CORE_MAILBOX_MAX);
    let mut transport =
        Transport::start(config.id, core, &config.peers, peer_tx).map_err(|e| e.to_string())?;
    let logger = slog::Logger::root(slog::Discard, slog::o!());
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
            ..ReplicaConfig::new(config.id, peers.clone())
        },
        request_ticks_max: REQUEST_TICKS_DEFAULT,
        resolved_every_ticks: RESOLVED_EVERY_TICKS,
        inject_resolved_before_change: false,
    };
    let mut engine = Engine::new(
        engine_config,
        |s| storage_from(recovery.shards.get(&u64::from(s)), peers.clone()),
        &logger,
    );
    tracing::info!(core, records = recovery.records, "core started");
    let mut routes = Routes::default();
    let mut wal_base_bytes = wal.len();
    let mut next_tick = Instant::now() + config.tick;
    let mut batch: Option<WalBatch> = None;
    loop {
        // Wait only when nothing is left to persist; otherwise take what is there and go on.
        let first = match batch {
            Some(_) => None,
            None => Some(wait(&inbox, &peer_rx, next_tick).await),
        };
        let mut commands = Commands::default();
        drain(
            first,
            &inbox,
            &peer_rx,
            &mut engine,
            &mut routes,
            &hlc,
            &mut commands,
        );
        if Instant::now() >= next_tick {
            next_tick = Instant::now() + config.tick;
            engine.step(Input::Tick, &mut commands);
        }
        execute(&mut commands, &mut transport, &mut routes, &mut engine);
        batch = batch.or(commands.wal.take());
        // One batch in flight at a time: write it, then feed its completion back.
        while let Some(done) = batch.take() {
            write_batch(&done, &mut wal).await?;
            let mut commands = Commands::default();
            engine.step(Input::Persisted { batch: done.number }, &mut commands);
            execute(&mut commands, &mut transport, &mut routes, &mut engine);
            batch = commands.wal.take();
            if !inbox.is_empty() || !peer_rx.is_empty() || Instant::now() >= next_tick {
                break; // interleave: take new inputs before the next batch
            }
        }
        // Rewrite when the log is past the limit and at least twice what the last rewrite
        // kept, so a base larger than the limit does not trigger a rewrite every wake-up.
        if batch.is_none()
            && engine.is_durable()
            && wal.len() > config.wal_rewrite_bytes.max(2 * wal_base_bytes)
        {
            rewrite_wal(&engine, &mut wal).await?;
            wal_base_bytes = wal.len();
        }
    }
}

async fn wait(
    inbox: &flume::Receiver<CoreMsg>,
    peer_rx: &flume::Receiver<InboundBatch>,
    next_tick: Instant,
) -> Wake {
    let inbox = async { inbox.recv_async().await.map_or(Wake::Closed, Wake::Inbox) };
    let peers = async { peer_rx.recv_async().await.map_or(Wake::Closed, Wake::Peer) };
    let timer = async {
        glommio::timer::sleep(next_tick.saturating_duration_since(Instant::now())).await;
        Wake::Tick
    };
    or(inbox, or(peers, timer)).await
}

/// Feeds the first wake and then whatever is pending, alternating between the two sources.
fn drain(
    first: Option<Wake>,
    inbox: &flume::Receiver<CoreMsg>,
    peer_rx: &flume::Receiver<InboundBatch>,
    engine: &mut Engine,
    routes: &mut Routes,
    hlc: &Hlc<SystemClock>,
    commands: &mut Commands,
) {
    if let Some(wake) = first {
        feed(wake, engine, routes, hlc, commands);
    }
    for _ in 0..DRAIN_MAX {
        let client = inbox.try_recv().ok().map(Wake::Inbox);
        let peer = peer_rx.try_recv().ok().map(Wake::Peer);
        if client.is_none() && peer.is_none() {
            return;
        }
        for wake in [peer, client].into_iter().flatten() {
            feed(wake, engine, routes, hlc, commands);
        }
    }
}

fn feed(
    wake: Wake,
    engine: &mut Engine,
    routes: &mut Routes,
    hlc: &Hlc<SystemClock>,
    commands: &mut Commands,
) {
    match wake {
        Wake::Inbox(msg) => handle(msg, engine, routes, hlc, commands),
        Wake::Peer(batch) => {
            for (shard, message) in batch {
                let message = Box::new(message);
                engine.step(Input::Peer { shard, message }, commands);
            }
        }
        Wake::Tick | Wake::Closed => {}
    }
}

fn handle(
    msg: CoreMsg,
    engine: &mut Engine,
    routes: &mut Routes,
    hlc: &Hlc<SystemClock>,
    commands: &mut Commands,
) {
    let token = routes.token();
    let input = match msg {
        CoreMsg::Propose { shard, txn, reply } => {
            routes.replies.insert(token, reply);
            let hlc = hlc.now();
            Input::Propose {
                token,
                shard,
                txn,
                hlc,
            }
        }
        CoreMsg::Read {
            shard,
            path,
            target,
            reply,
        } => {
            routes.replies.insert(token, reply);
            Input::Read {
                token,
                shard,
                path,
                target,
            }
        }
        CoreMsg::Subscribe {
            shard,
            path,
            from,
            sink,
            reply,
        } => {
            routes.replies.insert(token, reply);
            let room = sink.capacity().unwrap_or(usize::MAX) / 2;
            routes.sinks.insert(token, sink);
            Input::Subscribe {
                token,
                shard,
                path,
                from,
                sub: token,
                room,
            }
        }
        CoreMsg::Status { reply } => {
            // Best effort, as every reply: the requester may have gone.
            let _ = reply.try_send(Response::Status(engine.status()));
            return;
        }
    };
    engine.step(input, commands);
}

/// Executes a step's commands except the WAL batch: messages first (a leader's appends
/// leave before its own fsync), then replies and pushes.
fn execute(
    commands: &mut Commands,
    transport: &mut Transport,
    routes: &mut Routes,
    engine: &mut Engine,
) {
    for (shard, message) in commands.messages.drain(..) {
        transport.send(shard, &message);
    }
    transport.flush();
    for (token, outcome) in commands.replies.drain(..) {
        if let Some(reply) = routes.replies.remove(&token) {
            // The client may have disconnected; its answer is simply dropped.
            let _ = reply.try_send(response_of(outcome));
        }
    }
    let mut gone = Vec::new();
    for (sub, push) in commands.pushes.drain(..) {
        let Some(sink) = routes.sinks.get(&sub) else {
            continue; // dropped earlier in this batch of pushes
        };
        if sink.try_send(push).is_err() {
            // Full or gone: dropping the sink tells the session to resume from its position.
            routes.sinks.remove(&sub);
            gone.push(sub);
        }
    }
    for sub in gone {
        let mut more = Commands::default();
        engine.step(Input::Unsubscribe { sub }, &mut more);
        assert!(more.is_empty(), "unsubscribing produces nothing");
    }
}

async fn write_batch(batch: &WalBatch, wal: &mut Wal) -> Result<(), String> {
    let mut records = Vec::new();
    for (shard, request) in &batch.requests {
        to_records(*shard, request, &mut records);
    }
    if records.is_empty() {
        return Ok(());
    }
    wal.append(&records).await.map_err(|e| e.to_string())
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

/// The byte edge's view of an engine outcome.
fn response_of(outcome: Outcome) -> Response {
    match outcome {
        Ok(Answer::Written { index, term, hlc }) => Response::Written {
            index,
            term,
            hlc: hlc.as_u64(),
        },
        Ok(Answer::Value(value)) => Response::Value(value),
        Ok(Answer::Subscribed) => Response::Value(None),
        Err(ReplyError::NotLeader { leader }) => Response::NotLeader { leader },
        Err(error) => Response::rejected(error.code(), error.to_string()),
    }
}
