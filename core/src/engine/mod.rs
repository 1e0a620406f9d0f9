//! The per-core engine: the shard replicas of one CPU core, their group-commit batching,
//! their feeds and resolved timestamps, request deadlines and reply routing, as one pure
//! state machine (DESIGN.md, "Shape").
//!
//! `Engine::step(Input, &mut Commands)` is all there is. The glommio runtime
//! (`treesync-actors`) and the deterministic simulator (`treesync-sim`) both drive this same
//! engine, so the simulator tests the loop that ships. A driver executes `Commands` in this
//! order: send `messages` (a leader's appends leave before its own fsync, Raft thesis
//! 10.2.1), deliver `replies` and `pushes`, then write `wal` and make it durable before
//! feeding `Input::Persisted { batch }` back.
//!
//! # Invariants
//! - At most one WAL batch is in flight; batches are made durable in the order they were
//!   handed out, so each shard's persist requests become durable in order (raft-rs async
//!   persistence requires it). A batch holds at most `WAL_BATCH_BYTES_MAX` bytes of entries
//!   and snapshots unless a single request is larger.
//! - Every request is answered exactly once: by its replica, or by its deadline
//!   (`request_ticks_max`) with `UnknownOutcome` (writes) or `Dropped` (reads).
//! - Pushes of one step are ordered: applied changes first, then resolved timestamps.

mod feeds;
pub mod mirror;

use std::collections::BTreeMap;

use raft::prelude::{Message, Snapshot};
use raft::storage::MemStorage;

use feeds::Subscriber;
pub use feeds::{Push, Resume, SubId};

use crate::hlc::Timestamp;
use crate::op::Txn;
use crate::replica::{
    Input as ReplicaInput, Output, PersistRequest, ReadTarget, Replica, ReplicaConfig, Reply,
    ReplyError,
};

/// A driver's handle for one request; its answer comes back with it.
pub type Token = u64;

/// Bytes of entries and snapshots per WAL batch before the rest waits for the next one:
/// bounds a wake-up's write and memory (24 concurrent 1 MiB writes once made a 22 MB batch
/// that stopped the core).
pub const WAL_BATCH_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Default request deadline: 1,000 ticks (10 s at the default 10 ms tick): long enough for
/// a burst of large writes on a loaded machine, short enough that nothing waits forever.
pub const REQUEST_TICKS_DEFAULT: u64 = 1_000;
/// Ticks between resolved-timestamp pushes to subscribers (100 ms at 10 ms ticks).
pub const RESOLVED_EVERY_TICKS: u64 = 10;

/// Static configuration of one core's engine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The shards this core owns (`s mod cores == core`).
    pub shards: Vec<u32>,
    /// The replica template: `id` and `peers` are this server's; `jitter_seed` is mixed with
    /// each shard's id so the shards of one core draw different timeouts.
    pub replica: ReplicaConfig,
    pub request_ticks_max: u64,
    pub resolved_every_ticks: u64,
    /// Test-only must-fail twin of the ordering invariant: publish applied changes one step
    /// late, so a resolved push can overtake them (the defect the old core loop had). Only
    /// the simulator's `--inject resolved-before-change` sets it.
    pub inject_resolved_before_change: bool,
    /// Test-only must-fail twin of the resolved timestamp: report the closed timestamp
    /// without holding it below unresolved intents (`--inject resolved-ignores-intents`).
    pub inject_resolved_ignores_intents: bool,
}

/// Whether `message` wakes a quiesced `replica` (`replica::quiesce`): everything but the
/// known leader's replication traffic in the replica's own term does — a vote request even
/// from the old leader (one that stepped down and campaigns), or a higher term.
fn wakes(replica: &Replica, message: &Message) -> bool {
    use raft::eraftpb::MessageType as T;
    let replication = matches!(
        message.get_msg_type(),
        T::MsgAppend
            | T::MsgHeartbeat
            | T::MsgSnapshot
            | T::MsgAppendResponse
            | T::MsgHeartbeatResponse
    );
    !replication
        || message.term != replica.term()
        || replica.leader() != Some(message.from) && !replica.is_leader()
}

/// How long an intent may hold a shard's resolved timestamp back before its transaction is
/// pushed: well past a coordinator's expiry (`txn::EXPIRY_MS`: a push recovers only an
/// expired transaction, and aborts it), so a slow one whose heartbeats are late (a
/// partitioned coordinator) is left to finish. At expiry + one heartbeat the simulator's 30
/// seeds pushed 232 intents and their acknowledged cross-shard moves fell from 61 to 35; at
/// 3 × expiry, 37 pushes and no change.
pub const STUCK_INTENT_MS: u64 = 3 * crate::txn::EXPIRY_MS;

/// What the engine is asked to do.
#[derive(Debug)]
pub enum Input {
    /// Replicate and apply `txn` on `shard`; `hlc` is the process clock's reading.
    Propose {
        token: Token,
        shard: u32,
        txn: Txn,
        hlc: Timestamp,
    },
    /// Replicate and apply a parallel-commit step on `shard` (from a transaction host).
    Step {
        token: Token,
        shard: u32,
        step: crate::txn::step::Step,
        hlc: Timestamp,
    },
    /// Linearizable read.
    Read {
        token: Token,
        shard: u32,
        path: String,
        target: ReadTarget,
    },
    /// Start a feed (see `Subscription`).
    Subscribe(Subscription),
    /// The driver could not deliver to `sub` (its queue is full or it went away).
    Unsubscribe {
        sub: SubId,
    },
    /// A Raft message from a peer for `shard`.
    Peer {
        shard: u32,
        message: Box<Message>,
    },
    Tick,
    /// The process clock reads `hlc` (a driver sends it every tick): leaders of idle shards
    /// close timestamps with it (`replica::closed`).
    Clock {
        hlc: Timestamp,
    },
    /// The WAL batch `batch` is durable.
    Persisted {
        batch: u64,
    },
    /// Side promises of shard leaders on server `from` (`replica::side`): one message per
    /// peer and interval carries those of all its idle shards on this core.
    SidePromises {
        from: u64,
        promises: Vec<crate::replica::SidePromise>,
    },
}

pub use crate::api::{Answer, Outcome};

/// A request to feed `sub` with the subtree at `path` of `shard`, from log index `from`.
#[derive(Debug)]
pub struct Subscription {
    pub token: Token,
    pub shard: u32,
    pub path: String,
    /// Where a resumed subscriber continues (`None`: from a snapshot).
    pub from: Option<Resume>,
    pub sub: SubId,
    /// How many pushes the subscriber's queue takes now (a longer catch-up becomes a
    /// snapshot).
    pub room: usize,
}

/// Persist requests to make durable with one fsync, then feed back `Persisted { number }`.
///
/// A batch none of whose requests `must_sync` (only commit indexes moved) may be fed back
/// once written, without its own fsync: the next synced batch makes it durable, and until
/// then a crash may lose it, which Raft tolerates (a commit index is relearned from the
/// leader; etcd skips the same fsync). It must still be written before any later batch.
#[derive(Debug, PartialEq)]
pub struct WalBatch {
    pub number: u64,
    pub requests: Vec<(u32, PersistRequest)>,
}

impl WalBatch {
    /// Whether the batch needs its own fsync before `Persisted` (see the type's doc).
    pub fn must_sync(&self) -> bool {
        self.requests.iter().any(|(_, request)| request.must_sync)
    }
}

/// What a step asks the driver to do (see the module doc for the order).
#[derive(Debug, Default)]
pub struct Commands {
    /// Parallel-commit steps replicas applied (only with `Engine::record_steps`).
    pub steps: Vec<(u32, crate::replica::StepApplied)>,
    /// Every tree change replicas applied, in apply order (only with
    /// `Engine::record_applied`: the simulator's history of what committed).
    pub applied: Vec<(u32, crate::replica::Applied)>,
    /// Transactions whose intents have held a leader's resolved timestamp back for
    /// `STUCK_INTENT_MS` (by shard): the driver asks its transaction host to push each
    /// (`HostInput::Push` at the holder's anchor), which recovers an abandoned one.
    pub stuck_intents: Vec<(u32, crate::txn::TxnMeta)>,
    pub messages: Vec<(u32, Message)>,
    /// Side promises of this core's idle shard leaders, one message per peer (`replica::side`):
    /// the driver sends each with `Input::SidePromises` semantics to that peer's same core.
    pub side_promises: Vec<(u64, Vec<crate::replica::SidePromise>)>,
    pub replies: Vec<(Token, Outcome)>,
    pub pushes: Vec<(SubId, Push)>,
    pub wal: Option<WalBatch>,
}

impl Commands {
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
            && self.side_promises.is_empty()
            && self.replies.is_empty()
            && self.pushes.is_empty()
            && self.stuck_intents.is_empty()
            && self.wal.is_none()
    }
}

#[derive(Debug)]
struct Pending {
    token: Token,
    issued_tick: u64,
    write: bool,
}

struct Slot {
    replica: Replica,
    out: Output,
    /// Replica request id → the driver's request.
    pending: BTreeMap<u64, Pending>,
    subs: Vec<Subscriber>,
    /// Change pushes held back one step (only with `inject_resolved_before_change`).
    delayed: Vec<(SubId, Push)>,
    /// Copy every applied change into `Commands::applied` (`Engine::record_applied`).
    record_applied: bool,
    /// When this shard last reported a stuck intent (wall ms of the clock then).
    stuck_reported_ms: u64,
    /// The replica ticks at least until this engine tick (a message from a server other
    /// than its leader woke it: `replica::quiesce`).
    awake_until: u64,
}

/// One core's shards and everything between them and the driver.
pub struct Engine {
    config: EngineConfig,
    slots: BTreeMap<u32, Slot>,
    next_request: u64,
    ticks: u64,
    /// Persist requests not yet handed out in a batch, in production order.
    unsynced: Vec<(u32, PersistRequest)>,
    /// The batch being made durable: its number and each shard's last request number in it.
    in_flight: Option<(u64, Vec<(u32, u64)>)>,
    next_batch: u64,
    /// Peer server → the engine tick it was last heard from (a Raft message or side
    /// promises, keepalives included): quiesced followers tick again when their leader's
    /// server falls silent.
    heard: BTreeMap<u64, u64>,
    /// Ticks skipped by quiesced replicas (for tests and the idle benchmark).
    quiet_ticks: u64,
}

impl Engine {
    /// An engine over each shard's recovered Raft storage (and last snapshot).
    pub fn new(
        config: EngineConfig,
        mut recovered: impl FnMut(u32) -> (MemStorage, Option<Snapshot>),
        logger: &slog::Logger,
    ) -> Engine {
        assert!(config.request_ticks_max > 0, "requests need a deadline");
        assert!(
            config.resolved_every_ticks > 0,
            "resolved pushes need a period"
        );
        let slots = config
            .shards
            .iter()
            .map(|shard| {
                let (storage, snapshot) = recovered(*shard);
                let replica_config = ReplicaConfig {
                    jitter_seed: config.replica.jitter_seed
                        ^ u64::from(*shard).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    // Every shard but the spine is an entity shard (DESIGN.md "Sharding").
                    placeholder_depth: match *shard {
                        0 => 0,
                        _ => crate::shard::SHARD_DEPTH_DEFAULT,
                    },
                    // Shard s is led by the (s mod n)-th member: leaders spread evenly.
                    preferred_leader: config
                        .replica
                        .peers
                        .get(*shard as usize % config.replica.peers.len().max(1))
                        .copied(),
                    ..config.replica.clone()
                };
                let slot = Slot {
                    replica: Replica::new(&replica_config, storage, snapshot, logger),
                    out: Output::default(),
                    pending: BTreeMap::new(),
                    subs: Vec::new(),
                    delayed: Vec::new(),
                    record_applied: false,
                    stuck_reported_ms: 0,
                    awake_until: 0,
                };
                (*shard, slot)
            })
            .collect();
        Engine {
            config,
            slots,
            next_request: 1,
            ticks: 0,
            unsynced: Vec::new(),
            in_flight: None,
            next_batch: 1,
            heard: BTreeMap::new(),
            quiet_ticks: 0,
        }
    }

    /// Runs one input and everything it makes ready; appends what to do to `commands`.
    pub fn step(&mut self, input: Input, commands: &mut Commands) {
        match input {
            Input::Propose {
                token,
                shard,
                txn,
                hlc,
            } => self.request(token, shard, true, commands, |id| ReplicaInput::Propose {
                id,
                txn,
                hlc,
            }),
            Input::Step {
                token,
                shard,
                step,
                hlc,
            } => self.request(token, shard, true, commands, |id| ReplicaInput::Step {
                id,
                step,
                hlc,
            }),
            Input::Read {
                token,
                shard,
                path,
                target,
            } => self.request(token, shard, false, commands, |id| ReplicaInput::Read {
                id,
                path,
                target,
            }),
            Input::Subscribe(subscription) => self.subscribe(subscription, commands),
            Input::Unsubscribe { sub } => self.unsubscribe(sub),
            Input::Peer { shard, message } => {
                // Messages for shards this core does not own come from a misconfigured peer:
                // dropping them is what Raft expects of a lossy network.
                self.heard.insert(message.from, self.ticks);
                if let Some(slot) = self.slots.get_mut(&shard) {
                    if wakes(&slot.replica, &message) {
                        let window = 2 * slot.replica.election_timeout() as u64;
                        slot.awake_until = self.ticks + window;
                    }
                    self.step_replica(shard, ReplicaInput::Message(message), commands);
                }
            }
            Input::Tick => self.tick(commands),
            Input::Clock { hlc } => {
                let shards: Vec<u32> = self.slots.keys().copied().collect();
                for shard in shards {
                    self.step_replica(shard, ReplicaInput::Clock { hlc }, commands);
                    self.report_stuck_intent(shard, hlc, commands);
                }
                self.keepalives(commands);
            }
            Input::Persisted { batch } => self.persisted(batch, commands),
            Input::SidePromises { from, promises } => {
                self.heard.insert(from, self.ticks);
                for p in promises {
                    // A promise for a shard this core does not own comes from a misconfigured
                    // peer: dropped, as a lost message would be.
                    let Some(slot) = self.slots.get_mut(&p.shard) else {
                        continue;
                    };
                    if slot.replica.leader() == Some(from) || slot.replica.leader().is_none() {
                        slot.replica.adopt_side_promise(p.promise);
                    }
                }
            }
        }
        self.hand_out_batch(commands);
    }

    fn request(
        &mut self,
        token: Token,
        shard: u32,
        write: bool,
        commands: &mut Commands,
        input: impl FnOnce(u64) -> ReplicaInput,
    ) {
        let Some(slot) = self.slots.get_mut(&shard) else {
            commands
                .replies
                .push((token, Err(ReplyError::UnknownShard { shard })));
            return;
        };
        let id = self.next_request;
        self.next_request += 1;
        let issued_tick = self.ticks;
        let previous = slot.pending.insert(
            id,
            Pending {
                token,
                issued_tick,
                write,
            },
        );
        assert!(previous.is_none(), "request ids are never reused");
        self.step_replica(shard, input(id), commands);
    }

    fn subscribe(&mut self, subscription: Subscription, commands: &mut Commands) {
        let Subscription {
            token,
            shard,
            path,
            from,
            sub,
            room,
        } = subscription;
        let Some(slot) = self.slots.get_mut(&shard) else {
            commands
                .replies
                .push((token, Err(ReplyError::UnknownShard { shard })));
            return;
        };
        // Changes the replica applied but this engine has not published yet go out first,
        // so the new subscriber's start point is exact.
        let delay = self.config.inject_resolved_before_change;
        Self::collect(shard, slot, &mut self.unsynced, delay, commands);
        let replica = &mut slot.replica;
        let subscriber = feeds::start(shard, replica, sub, path, from, room, &mut commands.pushes);
        slot.subs.push(subscriber);
        commands.replies.push((token, Ok(Answer::Subscribed)));
    }

    fn unsubscribe(&mut self, sub: SubId) {
        for slot in self.slots.values_mut() {
            slot.subs.retain(|s| s.id != sub);
            slot.replica.record_changes = slot.record_applied || !slot.subs.is_empty();
        }
    }

    fn tick(&mut self, commands: &mut Commands) {
        self.ticks += 1;
        let resolve = self.ticks.is_multiple_of(self.config.resolved_every_ticks);
        let shards: Vec<u32> = self.slots.keys().copied().collect();
        for shard in shards {
            let mark = commands.pushes.len();
            match self.quiet(shard) {
                true => self.quiet_ticks += 1,
                false => self.step_replica(shard, ReplicaInput::Tick, commands),
            }
            self.expire(shard, commands);
            let slot = self.slots.get(&shard).expect("own shard");
            if resolve && !slot.subs.is_empty() {
                let hlc = match self.config.inject_resolved_ignores_intents {
                    true => slot.replica.closed_ts(),
                    false => slot.replica.resolved_ts(),
                };
                let mut resolved = Vec::new();
                feeds::resolved(hlc, &slot.subs, &mut resolved);
                // The injected bug puts them before the changes this tick released.
                let at = match self.config.inject_resolved_before_change {
                    true => mark,
                    false => commands.pushes.len(),
                };
                commands.pushes.splice(at..at, resolved);
            }
        }
    }

    /// Whether `shard`'s replica skips this tick (`replica::quiesce`): not woken, no
    /// request waiting, and idle as its role defines it.
    fn quiet(&self, shard: u32) -> bool {
        let slot = &self.slots[&shard];
        let replica = &slot.replica;
        let window = replica.election_timeout() as u64;
        let leader_heard = replica.leader().is_some_and(|leader| {
            leader == replica.id()
                || self
                    .heard
                    .get(&leader)
                    .is_some_and(|at| self.ticks <= at + window)
        });
        self.ticks >= slot.awake_until && slot.pending.is_empty() && replica.quiescent(leader_heard)
    }

    /// Every heartbeat interval, an empty side-promise message to each peer this tick sends
    /// none: a keepalive, so a server whose shards all sleep is still heard from.
    fn keepalives(&self, commands: &mut Commands) {
        let Some(slot) = self.slots.values().next() else {
            return;
        };
        let every = slot.replica.heartbeat_ticks().max(1);
        if !self.ticks.is_multiple_of(every) {
            return;
        }
        let me = slot.replica.id();
        for peer in slot.replica.peers().iter().copied().filter(|p| *p != me) {
            if !commands.side_promises.iter().any(|(to, _)| *to == peer) {
                commands.side_promises.push((peer, Vec::new()));
            }
        }
    }

    /// Ticks skipped so far by quiesced replicas.
    pub fn quiet_ticks(&self) -> u64 {
        self.quiet_ticks
    }

    /// A leader whose oldest intent is `STUCK_INTENT_MS` older than the clock reports its
    /// transaction (at most once per `STUCK_INTENT_MS`): until it resolves, the shard's
    /// resolved timestamp, and every merged subscriber's frontier, stays below it. A live
    /// coordinator resolves its intents within `EXPIRY_MS` of its last heartbeat or is
    /// expired; a push then recovers the abandoned transaction (`txn::recovery`).
    fn report_stuck_intent(&mut self, shard: u32, now: Timestamp, commands: &mut Commands) {
        let slot = self.slots.get_mut(&shard).expect("own shard");
        let now_ms = now.wall_ms();
        if !slot.replica.is_leader() || slot.stuck_reported_ms + STUCK_INTENT_MS > now_ms {
            return;
        }
        let oldest = slot
            .replica
            .txn_tables()
            .intents
            .intents()
            .map(|i| i.meta)
            .min_by_key(|m| m.ts);
        if let Some(meta) = oldest.filter(|m| m.ts.wall_ms() + STUCK_INTENT_MS <= now_ms) {
            slot.stuck_reported_ms = now_ms;
            commands.stuck_intents.push((shard, meta));
        }
    }

    /// Answers requests past their deadline: a write may still apply later, so its outcome
    /// is unknown; a read did not happen.
    fn expire(&mut self, shard: u32, commands: &mut Commands) {
        let cutoff = self.ticks.saturating_sub(self.config.request_ticks_max);
        let slot = self.slots.get_mut(&shard).expect("own shard");
        let expired: Vec<u64> = slot
            .pending
            .iter()
            .filter(|(_, p)| p.issued_tick < cutoff)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let pending = slot.pending.remove(&id).expect("listed above");
            let error = match pending.write {
                true => ReplyError::UnknownOutcome,
                false => ReplyError::Dropped,
            };
            commands.replies.push((pending.token, Err(error)));
        }
    }

    fn persisted(&mut self, batch: u64, commands: &mut Commands) {
        let (number, shards) = self
            .in_flight
            .take()
            .expect("Persisted answers the batch in flight");
        assert_eq!(number, batch, "batches are made durable in order");
        for (shard, request_number) in shards {
            let input = ReplicaInput::Persisted {
                number: request_number,
            };
            self.step_replica(shard, input, commands);
        }
    }

    fn step_replica(&mut self, shard: u32, input: ReplicaInput, commands: &mut Commands) {
        let slot = self.slots.get_mut(&shard).expect("own shard");
        slot.replica.step(input, &mut slot.out);
        let delay = self.config.inject_resolved_before_change;
        Self::collect(shard, slot, &mut self.unsynced, delay, commands);
    }

    /// Moves what a replica step produced into the commands, in the order the module doc
    /// promises: changes are published before anything later (a resolved push) is added.
    fn collect(
        shard: u32,
        slot: &mut Slot,
        unsynced: &mut Vec<(u32, PersistRequest)>,
        delay_changes: bool,
        commands: &mut Commands,
    ) {
        let out = &mut slot.out;
        commands
            .messages
            .extend(out.messages.drain(..).map(|m| (shard, m)));
        if let Some(promise) = out.side_close.take() {
            let me = slot.replica.id();
            for peer in slot.replica.peers().iter().copied().filter(|p| *p != me) {
                let side = crate::replica::SidePromise { shard, promise };
                match commands
                    .side_promises
                    .iter_mut()
                    .find(|(to, _)| *to == peer)
                {
                    Some((_, promises)) => promises.push(side),
                    None => commands.side_promises.push((peer, vec![side])),
                }
            }
        }
        commands
            .steps
            .extend(out.steps.drain(..).map(|s| (shard, s)));
        for reply in out.replies.drain(..) {
            let (id, outcome) = outcome_of(reply);
            // A request past its deadline was answered already; its late answer is dropped.
            if let Some(pending) = slot.pending.remove(&id) {
                commands.replies.push((pending.token, outcome));
            }
        }
        let mut changes = Vec::new();
        if !out.applied.is_empty() {
            let applied = std::mem::take(&mut out.applied);
            if slot.record_applied {
                commands
                    .applied
                    .extend(applied.iter().map(|a| (shard, a.clone())));
            }
            feeds::publish(shard, &slot.replica, &slot.subs, applied, &mut changes);
        }
        if delay_changes {
            commands.pushes.append(&mut slot.delayed);
            slot.delayed = changes;
        } else {
            commands.pushes.append(&mut changes);
        }
        unsynced.extend(out.persist.drain(..).map(|p| (shard, p)));
    }

    /// Hands the driver the next WAL batch when none is in flight.
    fn hand_out_batch(&mut self, commands: &mut Commands) {
        if self.in_flight.is_some() || self.unsynced.is_empty() {
            return;
        }
        let mut bytes = 0;
        let mut take = 0;
        for (_, request) in &self.unsynced {
            let size = persist_bytes(request);
            if take > 0 && bytes + size > WAL_BATCH_BYTES_MAX {
                break;
            }
            bytes += size;
            take += 1;
        }
        let requests: Vec<(u32, PersistRequest)> = self.unsynced.drain(..take).collect();
        let mut last: Vec<(u32, u64)> = Vec::new();
        for (shard, request) in &requests {
            last.retain(|(s, _)| s != shard);
            last.push((*shard, request.number));
        }
        let number = self.next_batch;
        self.next_batch += 1;
        self.in_flight = Some((number, last));
        assert!(commands.wal.is_none(), "one batch per step");
        commands.wal = Some(WalBatch { number, requests });
    }

    /// Whether every persist request handed out so far was written and none waits: the
    /// moment a WAL rewrite may take each shard's `durable_base`. (A batch that needed no
    /// fsync may be written but unsynced: the rewrite syncs the new file, so that is fine.)
    /// `Persisted` of such a batch may come before its bytes are durable only because one
    /// batch is in flight at a time: everything before it was synced first.
    pub fn is_durable(&self) -> bool {
        self.in_flight.is_none() && self.unsynced.is_empty()
    }

    pub fn replica(&self, shard: u32) -> Option<&Replica> {
        self.slots.get(&shard).map(|s| &s.replica)
    }

    pub fn replicas(&self) -> impl Iterator<Item = (u32, &Replica)> {
        self.slots.iter().map(|(id, s)| (*id, &s.replica))
    }

    /// Requests waiting for an answer, over all shards.
    pub fn pending_requests(&self) -> usize {
        self.slots.values().map(|s| s.pending.len()).sum()
    }

    /// Records every applied parallel-commit step in `Commands::steps` (the simulator's
    /// transaction traces).
    pub fn record_steps(&mut self) {
        for slot in self.slots.values_mut() {
            slot.replica.record_steps = true;
        }
    }

    /// Records every tree change replicas apply in `Commands::applied`, subscribed or not.
    pub fn record_applied(&mut self) {
        for slot in self.slots.values_mut() {
            slot.record_applied = true;
            slot.replica.record_changes = true;
        }
    }

    /// One line per shard: role, term, applied index, leader.
    pub fn status(&self) -> String {
        self.slots
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
            .collect()
    }

    /// Checks what must hold between steps (the simulator runs it after every step).
    pub fn check_invariants(&self) {
        if let Some((number, shards)) = &self.in_flight {
            assert!(
                *number < self.next_batch,
                "the batch in flight was handed out"
            );
            assert!(!shards.is_empty(), "a batch persists something");
        }
        for (id, slot) in &self.slots {
            assert!(slot.out.messages.is_empty(), "shard {id}: output collected");
            assert!(slot.out.persist.is_empty(), "shard {id}: output collected");
            assert!(
                slot.out.side_close.is_none(),
                "shard {id}: output collected"
            );
            assert!(
                slot.pending.keys().all(|r| *r < self.next_request),
                "shard {id}: pending requests were issued"
            );
            assert!(
                slot.pending
                    .values()
                    .all(|p| p.issued_tick + self.config.request_ticks_max >= self.ticks),
                "shard {id}: no request outlives its deadline"
            );
            slot.replica.check_invariants();
        }
    }
}

fn persist_bytes(request: &PersistRequest) -> usize {
    let entries: usize = request
        .entries
        .iter()
        .map(|e| e.data.len() + e.context.len())
        .sum();
    entries + request.snapshot.as_ref().map_or(0, |s| s.data.len())
}

fn outcome_of(reply: Reply) -> (u64, Outcome) {
    match reply {
        Reply::Written {
            id,
            index,
            term,
            hlc,
        } => (id, Ok(Answer::Written { index, term, hlc })),
        Reply::Read { id, value, .. } => (id, Ok(Answer::Value(value))),
        Reply::Failed { id, error } => (id, Err(error)),
        Reply::Stepped { id, outcome } => (id, Ok(Answer::Step(outcome))),
    }
}

#[cfg(test)]
mod tests;
