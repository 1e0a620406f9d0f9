//! One core's event loop: its shard replicas, its WAL and its peer transport.
//!
//! Each wake-up (a mailbox message, a peer batch or a tick) drains everything pending, steps
//! the replicas, sends the leaders' appends at once, then persists every shard's new entries
//! and hard state with **one** WAL append (one fdatasync: group commit) before releasing the
//! messages and replies that had to wait for it.
//!
//! # Invariants
//! - A write is answered only after its entry is durable on a quorum and applied here.
//! - Votes and append acks leave only after the WAL batch holding them is durable.
//! - Per wake-up at most `DRAIN_MAX` messages are taken, so ticks are never starved.

use std::collections::BTreeMap;
use std::time::Instant;

use std::sync::Arc;

use futures_lite::future::or;
use raft::prelude::{ConfState, Entry, EntryType, HardState, Snapshot};
use raft::storage::MemStorage;
use treesync_core::hlc::Hlc;
use treesync_core::replica::{
    Input, Output, PersistRequest, Replica, ReplicaConfig, Reply, ReplyError,
};
use treesync_net::client_proto::Response;
use treesync_net::peer::{InboundBatch, Transport};

use super::feeds::{self, Subscriber};
use super::{CoreMsg, ServerConfig};
use crate::storage::format::{Record, WalEntry, WalHardState, WalSnapshot};
use crate::storage::recovery::ShardLog;
use crate::storage::wal::{Wal, WalOptions};
use crate::SystemClock;

/// Most messages handled per wake-up before ticking and persisting.
const DRAIN_MAX: usize = 1024;
/// Bound on persist→step cycles per wake-up.
const PERSIST_ROUNDS_MAX: usize = 16;

struct Shard {
    replica: Replica,
    replies: BTreeMap<u64, flume::Sender<Response>>,
    out: Output,
    subs: Vec<Subscriber>,
}

/// Ticks between resolved-timestamp pushes to subscribers (10 ticks: 100 ms by default).
const RESOLVED_EVERY_TICKS: u64 = 10;

enum Wake {
    Inbox(CoreMsg),
    Peer(InboundBatch),
    Tick,
    Closed,
}

/// Rebuilds a shard's Raft storage (and its last snapshot) from what the WAL recovered.
fn storage_from(log: Option<&ShardLog>, peers: Vec<u64>) -> (MemStorage, Option<Snapshot>) {
    let storage = MemStorage::new();
    let mut snapshot = None;
    {
        let mut core = storage.wl();
        core.set_conf_state(ConfState::from((peers, vec![])));
        if let Some(log) = log {
            if let Some(s) = &log.snapshot {
                let mut snap = Snapshot {
                    data: s.data.clone().into(),
                    ..Default::default()
                };
                let metadata = snap.mut_metadata();
                (metadata.index, metadata.term) = (s.index, s.term);
                metadata.set_conf_state(ConfState::from((s.voters.clone(), vec![])));
                core.apply_snapshot(snap.clone())
                    .expect("a fresh storage takes any snapshot");
                snapshot = Some(snap);
            }
            let entries: Vec<Entry> = log.entries.iter().map(to_raft_entry).collect();
            core.append(&entries)
                .expect("recovered logs are contiguous after their snapshot");
            if let Some(hs) = log.hard_state {
                let mut state = HardState::default();
                (state.term, state.vote, state.commit) = (hs.term, hs.vote, hs.commit);
                core.set_hardstate(state);
            }
        }
    }
    (storage, snapshot)
}

fn to_raft_entry(e: &WalEntry) -> Entry {
    let mut entry = Entry {
        index: e.index,
        term: e.term,
        data: e.data.clone().into(),
        context: e.context.clone().into(),
        ..Default::default()
    };
    entry.set_entry_type(match e.entry_type {
        1 => EntryType::EntryConfChange,
        2 => EntryType::EntryConfChangeV2,
        _ => EntryType::EntryNormal,
    });
    entry
}

fn to_records(shard: u32, request: &PersistRequest, records: &mut Vec<Record>) {
    let shard = u64::from(shard);
    if let Some(snap) = &request.snapshot {
        let metadata = snap.get_metadata();
        let snapshot = WalSnapshot {
            index: metadata.index,
            term: metadata.term,
            voters: metadata.get_conf_state().voters.clone(),
            data: snap.data.to_vec(),
        };
        records.push(Record::Snapshot { shard, snapshot });
    }
    if !request.entries.is_empty() {
        let entries = request
            .entries
            .iter()
            .map(|e| WalEntry {
                index: e.index,
                term: e.term,
                entry_type: u8::try_from(e.get_entry_type() as i32).expect("entry types fit u8"),
                data: e.data.to_vec(),
                context: e.context.to_vec(),
            })
            .collect();
        records.push(Record::Entries { shard, entries });
    }
    if let Some(hs) = &request.hard_state {
        records.push(Record::HardState {
            shard,
            state: WalHardState {
                term: hs.term,
                vote: hs.vote,
                commit: hs.commit,
            },
        });
    }
}

fn response_of(reply: Reply) -> (u64, Response) {
    match reply {
        Reply::Written {
            id,
            index,
            term,
            hlc,
        } => (
            id,
            Response::Written {
                index,
                term,
                hlc: hlc.as_u64(),
            },
        ),
        Reply::Read { id, value, .. } => (id, Response::Value(value)),
        Reply::Failed {
            id,
            error: ReplyError::NotLeader { leader },
        } => (id, Response::NotLeader { leader }),
        Reply::Failed { id, error } => (id, Response::rejected(error.code(), error.to_string())),
    }
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
    let mut shards: BTreeMap<u32, Shard> = (0..config.shards)
        .filter(|s| *s as usize % config.cores == core)
        .map(|s| {
            let (storage, snapshot) =
                storage_from(recovery.shards.get(&u64::from(s)), peers.clone());
            let replica = Replica::new(
                &ReplicaConfig {
                    compact_entries: config.compact_entries,
                    ..ReplicaConfig::new(config.id, peers.clone())
                },
                storage,
                snapshot,
                &logger,
            );
            (
                s,
                Shard {
                    replica,
                    replies: BTreeMap::new(),
                    out: Output::default(),
                    subs: Vec::new(),
                },
            )
        })
        .collect();
    tracing::info!(
        core,
        shards = shards.len(),
        records = recovery.records,
        "core started"
    );
    let mut next_id = 1u64;
    let mut wal_base_bytes = wal.len();
    let mut next_tick = Instant::now() + config.tick;
    let mut ticks = 0u64;
    loop {
        let wake = {
            let inbox = async { inbox.recv_async().await.map_or(Wake::Closed, Wake::Inbox) };
            let peers = async { peer_rx.recv_async().await.map_or(Wake::Closed, Wake::Peer) };
            let timer = async {
                glommio::timer::sleep(next_tick.saturating_duration_since(Instant::now())).await;
                Wake::Tick
            };
            or(inbox, or(peers, timer)).await
        };
        let mut handled = 0;
        let mut next = Some(wake);
        while let Some(wake) = next.take() {
            match wake {
                Wake::Inbox(msg) => handle(msg, &mut shards, &mut next_id, &hlc),
                Wake::Peer(batch) => {
                    for (shard, message) in batch {
                        if let Some(s) = shards.get_mut(&shard) {
                            s.replica
                                .step(Input::Message(Box::new(message)), &mut s.out);
                        }
                    }
                }
                Wake::Tick | Wake::Closed => {}
            }
            handled += 1;
            if handled < DRAIN_MAX {
                next = inbox
                    .try_recv()
                    .map(Wake::Inbox)
                    .ok()
                    .or_else(|| peer_rx.try_recv().map(Wake::Peer).ok());
            }
        }
        if Instant::now() >= next_tick {
            next_tick = Instant::now() + config.tick;
            ticks += 1;
            for s in shards.values_mut() {
                s.replica.step(Input::Tick, &mut s.out);
                if ticks % RESOLVED_EVERY_TICKS == 0 && !s.subs.is_empty() {
                    feeds::resolved(&mut s.replica, &mut s.subs);
                }
            }
        }
        persist_and_release(&mut shards, &mut wal, &mut transport).await?;
        // Rewrite when the log is past the limit and at least twice what the last rewrite
        // kept, so a base larger than the limit does not trigger a rewrite every wake-up.
        if wal.len() > config.wal_rewrite_bytes.max(2 * wal_base_bytes) {
            rewrite_wal(&shards, &mut wal).await?;
            wal_base_bytes = wal.len();
        }
    }
}

/// Shrinks the WAL to what the shards still need: their snapshots, later entries and hard
/// states (replicas compact their logs into snapshots, so this stays bounded).
async fn rewrite_wal(shards: &BTreeMap<u32, Shard>, wal: &mut Wal) -> Result<(), String> {
    let before = wal.len();
    let mut records = Vec::new();
    for (id, s) in shards {
        let (snapshot, entries, hard_state) = s.replica.durable_base();
        let request = PersistRequest {
            number: 0,
            entries,
            hard_state: Some(hard_state),
            snapshot,
            must_sync: true,
        };
        to_records(*id, &request, &mut records);
    }
    wal.rewrite(&records).await.map_err(|e| e.to_string())?;
    tracing::info!(before, after = wal.len(), "WAL rewritten");
    Ok(())
}

fn handle(
    msg: CoreMsg,
    shards: &mut BTreeMap<u32, Shard>,
    next_id: &mut u64,
    hlc: &Hlc<SystemClock>,
) {
    let missing = |reply: flume::Sender<Response>| {
        // The requester may have gone away; nothing else to do then.
        let _ = reply.try_send(Response::Error("this core does not own that shard".into()));
    };
    match msg {
        CoreMsg::Propose { shard, txn, reply } => match shards.get_mut(&shard) {
            Some(s) => {
                let id = *next_id;
                *next_id += 1;
                s.replies.insert(id, reply);
                s.replica.step(
                    Input::Propose {
                        id,
                        txn,
                        hlc: hlc.now(),
                    },
                    &mut s.out,
                );
            }
            None => missing(reply),
        },
        CoreMsg::Read {
            shard,
            path,
            target,
            reply,
        } => match shards.get_mut(&shard) {
            Some(s) => {
                let id = *next_id;
                *next_id += 1;
                s.replies.insert(id, reply);
                s.replica.step(Input::Read { id, path, target }, &mut s.out);
            }
            None => missing(reply),
        },
        CoreMsg::LocalRead {
            shard,
            path,
            target,
            reply,
        } => match shards.get(&shard) {
            // Best effort like every reply: the requester may have gone.
            Some(s) => {
                drop(reply.try_send(Response::Value(s.replica.read_local_unsafe(&path, &target))))
            }
            None => missing(reply),
        },
        CoreMsg::Subscribe {
            shard,
            path,
            from,
            sink,
            reply,
        } => match shards.get_mut(&shard) {
            Some(s) => {
                let started = feeds::start(shard, &mut s.replica, &mut s.subs, path, from, sink);
                // Best effort, as every reply.
                let _ = reply.try_send(started);
            }
            None => missing(reply),
        },
        CoreMsg::Status { reply } => {
            let text: String = shards
                .iter()
                .map(|(id, s)| {
                    let r = &s.replica;
                    let role = if r.is_leader() { "leader" } else { "follower" };
                    format!(
                        "shard {id} role={role} term={} applied={} leader={}\n",
                        r.term(),
                        r.applied_index(),
                        r.leader().unwrap_or(0)
                    )
                })
                .collect();
            // Best effort, as above.
            let _ = reply.try_send(Response::Status(text));
        }
    }
}

/// Sends what may go now, persists every shard's pending writes in one WAL batch, then
/// feeds the completions back and repeats until nothing is left to persist.
async fn persist_and_release(
    shards: &mut BTreeMap<u32, Shard>,
    wal: &mut Wal,
    transport: &mut Transport,
) -> Result<(), String> {
    for _ in 0..PERSIST_ROUNDS_MAX {
        let mut records = Vec::new();
        let mut persisted: Vec<(u32, u64)> = Vec::new();
        for (id, s) in shards.iter_mut() {
            for message in s.out.messages.drain(..) {
                transport.send(*id, &message);
            }
            if !s.out.applied.is_empty() {
                let applied = std::mem::take(&mut s.out.applied);
                feeds::publish(*id, &mut s.replica, &mut s.subs, applied);
            }
            for reply in s.out.replies.drain(..) {
                let (request, response) = response_of(reply);
                if let Some(tx) = s.replies.remove(&request) {
                    // The client may have disconnected; its answer is simply dropped.
                    let _ = tx.try_send(response);
                }
            }
            for request in s.out.persist.drain(..) {
                to_records(*id, &request, &mut records);
                persisted.retain(|(shard, _)| shard != id);
                persisted.push((*id, request.number));
            }
        }
        // Leaders' appends leave before our own fsync (Raft thesis 10.2.1).
        transport.flush();
        if persisted.is_empty() {
            return Ok(());
        }
        if !records.is_empty() {
            wal.append(&records).await.map_err(|e| e.to_string())?;
        }
        for (id, number) in persisted {
            let s = shards.get_mut(&id).expect("persisted shards exist");
            s.replica.step(Input::Persisted { number }, &mut s.out);
        }
    }
    Ok(())
}
