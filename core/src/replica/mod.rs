//! A shard replica: the sans-I/O driver of one `raft::RawNode` and its tree state machine.
//!
//! Inputs (`Input`) are ticks, client proposals and reads, Raft messages from peers and
//! persistence completions; outputs (`Output`) are messages to send, writes to persist and
//! replies to clients. The runtime (or the simulator) executes the outputs and feeds
//! completions back. Nothing here touches a clock, a disk or a socket.
//!
//! Persistence is asynchronous (`advance_append_async`): a `PersistRequest` must be made
//! durable — in order — before `Input::Persisted { number }` is fed back. Messages Raft wants
//! sent only after persistence (votes, append acks) are held until then; a leader's appends
//! go out at once, in parallel with its own fsync (Raft thesis 10.2.1).
//!
//! Reads are linearizable through Raft's ReadIndex (`ReadOnlyOption::Safe`), not a lease: a
//! lease would depend on bounded clock drift, which we only assume for the HLC's
//! `max_offset`, and ReadIndex costs one heartbeat round trip that is batched per tick.
//!
//! # Invariants
//! - Entries are applied in index order, each exactly once (`applied + 1 == entry.index`).
//! - A client is told "written" only for an entry applied at the index and term its proposal
//!   got: a proposal whose index was overwritten by another leader is answered `Dropped`.
//! - Messages marked "persisted" by Raft are released only after `Persisted` covers them.
//! - Entries carry an HLC timestamp (entry context); along the log, applied timestamps
//!   strictly increase, also across leader changes: a leader stamps above the largest
//!   timestamp in its log, which holds every committed entry (DESIGN.md, "Time").
//! - `digest` is a hash chain over applied entries: replicas with equal `(applied, digest)`
//!   applied the same log, and so hold the same tree (`specs/RaftLeaderElection.tla`'s
//!   StateMachineSafety).

mod apply;
mod closed;
mod quiesce;
pub mod sessions;
mod side;
mod snapshot;
mod storage;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use raft::prelude::{ConfState, Entry, HardState, Message, MessageType, Snapshot};
use raft::storage::MemStorage;
pub use raft::StateRole;
use raft::{Config, RawNode, Storage};
pub use storage::ShardStorage;

use crate::hlc::Timestamp;
use crate::limits::Limits;
use crate::op::Txn;
use crate::tree::{Tree, TreeError};
use crate::value::Value;
use crate::wire;

/// Most Raft readies drained in one step; each drains everything pending, so more than a
/// few means a bug.
const READIES_PER_STEP_MAX: usize = 64;

/// Static configuration of one replica.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// This replica's Raft id (non-zero, unique in the group).
    pub id: u64,
    /// Every member's id, this one included.
    pub peers: Vec<u64>,
    /// Ticks without a leader before campaigning (randomised by the driver's tick jitter).
    pub election_ticks: usize,
    /// Ticks between leader heartbeats.
    pub heartbeat_ticks: usize,
    /// Compact the log into a tree snapshot once this many applied entries precede it.
    pub compact_entries: u64,
    pub limits: Limits,
    /// Seeds this replica's election-timeout jitter (the driver owns it; the simulator
    /// derives it from its seed). Timeouts are drawn in `[election_ticks, 2 * election_ticks)`.
    pub jitter_seed: u64,
    /// Differs on every boot of the process (the driver picks it): read-index requests carry
    /// it, so an answer meant for a previous run can never satisfy a read of this one.
    pub boot_nonce: u64,
    /// Test-only broken mode (`treesync serve --test-unsafe-local-reads`, for the Jepsen
    /// runner's must-fail run): answer reads from the local tree at once, without ReadIndex,
    /// so a partitioned or lagging replica serves stale values. Never set in production.
    pub unsafe_local_reads: bool,
    /// 0 for the spine (and a single-shard cluster); the shard-root depth for an entity
    /// shard, whose tree makes missing ancestors above its roots (`Tree::with_placeholders`).
    pub placeholder_depth: usize,
    /// The member this group's leadership is handed to when it is caught up (the engine
    /// spreads shards evenly over the servers); `None`: whoever wins an election keeps it.
    pub preferred_leader: Option<u64>,
    /// How far below its clock a leader promises to propose nothing (`replica::closed`).
    pub closed_lag_ms: u64,
    /// Milliseconds between an idle shard leader's side promises (`replica::side`).
    pub close_every_ms: u64,
    /// How far ahead of its clock a leader's entries grant it side promises; an idle leader
    /// renews it with an empty entry every ~half of it (`replica::closed`).
    pub lease_ms: u64,
    /// Test-only must-fail twin of the lease floor: a new leader stamps above its log and
    /// clock only (`replica::tests::side`). Never set in production. The simulator cannot
    /// show this twin: in a 3-replica group every new leader first hears a vote from the
    /// old leader or from a follower that adopted the promise, and that message's HLC is
    /// above the promise (`docs/design/consistent-cuts.md`).
    pub inject_no_lease_floor: bool,
}

/// Ticks between a leader's checks whether to hand leadership to the preferred member.
pub const BALANCE_EVERY_TICKS: u64 = 50;

impl ReplicaConfig {
    pub fn new(id: u64, peers: Vec<u64>) -> ReplicaConfig {
        ReplicaConfig {
            id,
            peers,
            election_ticks: 10,
            heartbeat_ticks: 2,
            compact_entries: 10_000,
            limits: Limits::default(),
            jitter_seed: id,
            boot_nonce: 0,
            unsafe_local_reads: false,
            placeholder_depth: 0,
            preferred_leader: None,
            closed_lag_ms: CLOSED_LAG_MS_DEFAULT,
            close_every_ms: CLOSE_EVERY_MS_DEFAULT,
            lease_ms: LEASE_MS_DEFAULT,
            inject_no_lease_floor: false,
        }
    }
}

/// What the replica is asked to do.
#[derive(Debug)]
pub enum Input {
    Tick,
    /// The process clock reads `hlc`: an idle leader closes timestamps (`replica::closed`).
    Clock {
        hlc: Timestamp,
    },
    /// A side promise from this shard's leader (`replica::side`).
    SidePromise(SideClose),
    /// Replicate and apply a transaction; answered with `Reply::Written` or `Reply::Failed`.
    /// `hlc` is the process clock's reading; the entry gets a timestamp at least that high
    /// and above every timestamp already in this replica's log.
    Propose {
        id: u64,
        txn: Txn,
        hlc: Timestamp,
    },
    /// Replicate and apply a parallel-commit step; answered with `Reply::Stepped`.
    Step {
        id: u64,
        step: crate::txn::step::Step,
        hlc: Timestamp,
    },
    /// Linearizable read of a node, its subtree or one property.
    Read {
        id: u64,
        path: String,
        target: ReadTarget,
    },
    /// A Raft message from a peer.
    Message(Box<Message>),
    /// Every `PersistRequest` up to `number` is durable.
    Persisted {
        number: u64,
    },
}

/// What a read returns of the node at its path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadTarget {
    /// One property (`None` when unset; a missing node is `NotFound`).
    Prop(String),
    /// The node: `{name, class, props, children: [names]}`.
    Node,
    /// The whole subtree: `{name, class, props, children: [subtrees]}`.
    Subtree,
}

impl From<Option<String>> for ReadTarget {
    /// A property if named, else the subtree (the framed protocol's and embedders' reads).
    fn from(prop: Option<String>) -> ReadTarget {
        prop.map_or(ReadTarget::Subtree, ReadTarget::Prop)
    }
}

/// Something to make durable before `Input::Persisted { number }`.
#[derive(Clone, Debug, PartialEq)]
pub struct PersistRequest {
    pub number: u64,
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
    /// A snapshot received from the leader; it replaces the log up to its index.
    pub snapshot: Option<Snapshot>,
    /// False when only the commit index changed: an fsync may be skipped (not reordered).
    pub must_sync: bool,
}

pub use crate::api::ReplyError;

/// An answer to a client request.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    Written {
        id: u64,
        index: u64,
        term: u64,
        hlc: Timestamp,
    },
    Read {
        id: u64,
        index: u64,
        value: Option<Value>,
    },
    Failed {
        id: u64,
        error: ReplyError,
    },
    /// A step applied at `index` and answered `outcome`.
    Stepped {
        id: u64,
        outcome: crate::txn::step::StepOutcome,
    },
}

/// A change to the replica's tree, for subscribers (recorded when `record_changes` is on).
#[derive(Clone, Debug, PartialEq)]
pub enum Applied {
    /// The transaction at `index` applied (rejected ones changed nothing and are left out).
    Txn {
        index: u64,
        /// The commit timestamp: the entry's HLC, or a resolved intent's transaction's.
        hlc: Timestamp,
        /// The cross-shard transaction this is one shard's part of (`None`: a plain write).
        txn_id: Option<crate::txn::TxnId>,
        txn: Txn,
        /// For each rename or move (by op index): `Create` ops of the relocated subtree as
        /// it was after the transaction (`engine::mirror`).
        landed: Vec<(usize, Vec<crate::op::Op>)>,
    },
    /// A snapshot from the leader replaced the tree up to `index`: subscribers must resync.
    Reset { index: u64 },
}

/// What a step produced; the caller executes it and clears it.
#[derive(Debug, Default)]
pub struct Output {
    pub messages: Vec<Message>,
    pub persist: Vec<PersistRequest>,
    pub replies: Vec<Reply>,
    /// Tree changes in apply order (only while `Replica::record_changes` is set).
    pub applied: Vec<Applied>,
    /// Parallel-commit steps applied, in log order (only while `record_steps` is set: the
    /// simulator's transaction traces).
    pub steps: Vec<StepApplied>,
    /// A side promise this leader made: the engine sends it to every peer (`replica::side`).
    pub side_close: Option<SideClose>,
}

/// A step a replica applied: at `index`, what it answered, whether it resolved an intent.
#[derive(Clone, Debug, PartialEq)]
pub struct StepApplied {
    /// The entry's log index; 0 (no entry has it) for an intent a leader refused before
    /// proposing it (`refuse_below_side`): answered once, never in the log.
    pub index: u64,
    pub step: crate::txn::step::Step,
    pub outcome: crate::txn::step::StepOutcome,
    pub resolved_intent: bool,
}

/// A copy of Raft's state at one instant (see `Replica::raft_view`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftView {
    pub term: u64,
    /// The vote cast in `term` (0: none).
    pub vote: u64,
    pub role: StateRole,
    pub commit: u64,
    /// Index of `log_terms[0]`.
    pub first_index: u64,
    pub log_terms: Vec<u64>,
    /// The leader's view of each peer's replicated index (meaningful on a leader only).
    pub matched: BTreeMap<u64, u64>,
}

impl RaftView {
    pub fn last_index(&self) -> u64 {
        self.first_index + self.log_terms.len() as u64 - 1
    }
}

/// One replica of one shard.
pub struct Replica {
    raw: RawNode<ShardStorage>,
    tree: Tree,
    peers: Vec<u64>,
    compact_entries: u64,
    applied: u64,
    digest: u64,
    /// Proposals awaiting their entry: index → (request id, term proposed in).
    pending_writes: BTreeMap<u64, (u64, u64)>,
    /// Reads awaiting a read index: request id → (path, prop).
    /// Reads awaiting their read index or its apply: request id → (path, target, tick issued).
    pending_reads: BTreeMap<u64, (String, ReadTarget, u64)>,
    /// Ticks seen; reads older than `read_timeout_ticks` without a read index are failed.
    ticks: u64,
    read_timeout_ticks: u64,
    /// Reads whose read index is known, waiting for `applied` to reach it.
    ready_reads: Vec<(u64, u64)>,
    /// Messages to release once the persist request with this number is durable.
    held: VecDeque<(u64, Vec<Message>)>,
    /// Largest HLC in this replica's log (entries appended or proposed): a new leader's
    /// timestamps start above it, hence above every committed one (Leader Completeness).
    max_log_hlc: Timestamp,
    /// HLC of the last applied entry that carried one; strictly increasing along the log.
    applied_hlc: Timestamp,
    /// The greatest closed timestamp among applied entries (`replica::closed`).
    closed: Timestamp,
    closed_lag_ms: u64,
    /// Leases, the floor and side promises (`replica::side`).
    side: side::SideState,
    inject_no_lease_floor: bool,
    /// Empty close entries this replica proposed (idle shards; status and benchmarks).
    pub close_entries: u64,
    /// Snapshots received from a leader and installed (not counting restarts).
    pub snapshots_installed: u64,
    /// Record applied changes in `Output::applied` (on while anyone subscribes).
    pub record_changes: bool,
    /// Record applied steps in `Output::steps` (the simulator's transaction traces).
    pub record_steps: bool,
    /// Indexes still in the log whose transaction the tree rejected (they changed nothing;
    /// `changes_after` leaves them out).
    rejected: BTreeSet<u64>,
    /// Each client session's last applied write and its answer (exactly-once retries).
    sessions: sessions::Sessions,
    /// Intents on this shard and the transaction records it anchors (parallel commits).
    tables: crate::txn::tables::TxnTables,
    /// Committed resolutions still in the log, by index: the intent's ops, for subscribers
    /// resuming there (`changes_after`); the entry itself only names the transaction.
    resolved: BTreeMap<u64, (Txn, Timestamp, crate::txn::TxnId)>,
    /// Election timeout jitter: our own draw replaces raft-rs's thread-RNG one, so runs are
    /// reproducible (see `jitter_election_timeout`).
    jitter: crate::rng::SplitMix64,
    election_ticks: usize,
    election_timeout: usize,
    /// (term, role) when the timeout was last drawn: a change means raft-rs reset it.
    timeout_drawn_at: (u64, StateRole),
    boot_nonce: u64,
    unsafe_local_reads: bool,
    preferred_leader: Option<u64>,
    /// Leadership transfers this replica started (operators, tests).
    pub transfers_started: u64,
}

/// Bytes of a read-index context: boot nonce, then request id (both little-endian u64).
const READ_CONTEXT_BYTES: usize = 16;

impl Replica {
    /// A replica over `storage` (empty for a new group; reloaded from the WAL on restart,
    /// with `snapshot` already applied to it when the log starts after one). The tree is
    /// restored from the snapshot and committed entries after it are re-applied.
    pub fn new(
        config: &ReplicaConfig,
        storage: MemStorage,
        snapshot: Option<Snapshot>,
        logger: &slog::Logger,
    ) -> Replica {
        assert!(
            config.peers.contains(&config.id),
            "a replica is one of its group's peers"
        );
        let raft_config = Config {
            id: config.id,
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            // raft-rs draws timeouts in this range from the thread RNG, which would make runs
            // irreproducible; `jitter_election_timeout` overrides each draw with a seeded one
            // in the same range before it is ever consulted (on tick).
            min_election_tick: config.election_ticks,
            max_election_tick: 2 * config.election_ticks,
            pre_vote: true,
            check_quorum: true,
            max_inflight_msgs: 256,
            max_size_per_msg: 1024 * 1024,
            applied: snapshot.as_ref().map_or(0, |s| s.get_metadata().index),
            ..Config::default()
        };
        raft_config.validate().expect("replica config is valid");
        // A brand-new group: record its members (a restarted replica reloads them).
        if Storage::initial_state(&storage)
            .expect("memory storage")
            .conf_state
            .voters
            .is_empty()
        {
            storage
                .wl()
                .set_conf_state(ConfState::from((config.peers.clone(), vec![])));
        }
        // Timestamps already in the log (a restart): new proposals must stamp above them.
        let (first, last) = (
            storage.first_index().expect("memory storage"),
            storage.last_index().expect("memory storage"),
        );
        // And a leader's floor covers the leases in it (`replica::closed`).
        let (mut max_log_hlc, mut lease_seen) = (Timestamp::ZERO, Timestamp::ZERO);
        if last >= first {
            let context = raft::GetEntriesContext::empty(false);
            let entries = storage
                .entries(first, last + 1, None, context)
                .expect("entries in range");
            for entry in &entries {
                max_log_hlc = max_log_hlc.max(entry_hlc(entry));
                lease_seen = lease_seen.max(closed::entry_lease(entry));
            }
        }
        let raw = RawNode::new(&raft_config, ShardStorage::new(storage), logger)
            .expect("replica config is valid");
        let mut replica = Replica {
            raw,
            tree: Tree::new(config.limits.clone()).with_placeholders(config.placeholder_depth),
            peers: config.peers.clone(),
            compact_entries: config.compact_entries,
            applied: 0,
            digest: 0,
            pending_writes: BTreeMap::new(),
            pending_reads: BTreeMap::new(),
            ticks: 0,
            read_timeout_ticks: 2 * config.election_ticks as u64,
            ready_reads: Vec::new(),
            held: VecDeque::new(),
            max_log_hlc,
            applied_hlc: Timestamp::ZERO,
            closed: Timestamp::ZERO,
            closed_lag_ms: config.closed_lag_ms,
            side: side::SideState::new(config.lease_ms, config.close_every_ms, lease_seen),
            inject_no_lease_floor: config.inject_no_lease_floor,
            close_entries: 0,
            snapshots_installed: 0,
            record_changes: false,
            record_steps: false,
            rejected: BTreeSet::new(),
            sessions: sessions::Sessions::default(),
            tables: crate::txn::tables::TxnTables::default(),
            resolved: BTreeMap::new(),
            jitter: crate::rng::SplitMix64::new(config.jitter_seed),
            election_ticks: config.election_ticks,
            election_timeout: config.election_ticks,
            timeout_drawn_at: (u64::MAX, StateRole::Follower),
            boot_nonce: config.boot_nonce,
            unsafe_local_reads: config.unsafe_local_reads,
            preferred_leader: config.preferred_leader.filter(|p| config.peers.contains(p)),
            transfers_started: 0,
        };
        replica.jitter_election_timeout();
        if let Some(snapshot) = snapshot {
            replica.install_snapshot(&snapshot);
        }
        replica
    }

    pub fn id(&self) -> u64 {
        self.raw.raft.id
    }

    /// Every member of this shard's group, this one included.
    pub fn peers(&self) -> &[u64] {
        &self.peers
    }

    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// The leader this replica knows of.
    pub fn leader(&self) -> Option<u64> {
        Some(self.raw.raft.leader_id).filter(|id| *id != raft::INVALID_ID)
    }

    /// The highest log index this replica knows to be committed (it applies up to it).
    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    pub fn applied_index(&self) -> u64 {
        self.applied
    }

    /// Hash chain over every applied entry (see the module invariants).
    pub fn digest(&self) -> u64 {
        self.digest
    }

    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// One line of Raft internals, for operators and failing simulator seeds.
    pub fn debug_state(&self) -> String {
        let r = &self.raw.raft;
        let log = &r.raft_log;
        let progress: Vec<String> = r
            .prs()
            .iter()
            .map(|(id, p)| {
                format!(
                    "{id}:match={},next={},state={:?}",
                    p.matched, p.next_idx, p.state
                )
            })
            .collect();
        format!(
            "id={} term={} role={:?} leader={} commit={} persisted={} applied={}/{} first={} last={} snap={} prs=[{}]",
            r.id,
            r.term,
            r.state,
            r.leader_id,
            log.committed,
            log.persisted,
            log.applied,
            self.applied,
            self.raw.store().first_index().unwrap_or(0),
            self.raw.store().last_index().unwrap_or(0),
            self.raw.store().snapshot_index(),
            progress.join(" ")
        )
    }

    /// Raft's state in the terms of `specs/RaftLeaderElection.tla`, for trace validation:
    /// term, vote, role, commit index and the term of every entry still in the log.
    pub fn raft_view(&self) -> RaftView {
        let r = &self.raw.raft;
        let log = &r.raft_log;
        let first = log.first_index();
        let log_terms = (first..=log.last_index())
            .map(|i| {
                log.term(i)
                    .expect("indexes between first and last have terms")
            })
            .collect();
        RaftView {
            term: r.term,
            vote: r.vote,
            role: r.state,
            commit: log.committed,
            first_index: first,
            log_terms,
            matched: r.prs().iter().map(|(id, p)| (*id, p.matched)).collect(),
        }
    }

    /// HLC of the last applied transaction (zero before any).
    pub fn applied_hlc(&self) -> Timestamp {
        self.applied_hlc
    }

    /// Runs one input and everything Raft makes ready because of it.
    pub fn step(&mut self, input: Input, out: &mut Output) {
        match input {
            Input::Tick => {
                self.raw
                    .raft
                    .set_randomized_election_timeout(self.election_timeout);
                self.raw.tick();
                self.ticks += 1;
                self.expire_reads(out);
                if self.ticks.is_multiple_of(BALANCE_EVERY_TICKS) {
                    self.balance_leadership();
                }
            }
            Input::Clock { hlc } => {
                let proposed = self.close_entries;
                self.renew_lease(hlc);
                if let Some(promise) = self.side_promise(hlc) {
                    out.side_close = Some(promise);
                }
                // Nothing for Raft unless a close entry was proposed: the previous step left
                // nothing ready, so skipping the drain (raft-rs's has_ready walks the log's
                // bounds) is exact and spares every idle shard's clock step.
                if self.close_entries == proposed {
                    return;
                }
            }
            Input::SidePromise(promise) => self.adopt_side_promise(promise),
            Input::Propose { id, txn, hlc } => {
                let data = wire::encode_txn(&txn);
                self.propose(id, &data, hlc, out)
            }
            Input::Step { id, step, hlc } => {
                // The entry's HLC is above the transaction's timestamp (an HLC receive: the
                // coordinator's clock may be ahead), so every later entry of this log is too
                // and changes applied after this one never carry an older timestamp.
                let hlc = hlc.max(Timestamp::from_u64(step.meta().ts.as_u64() + 1));
                if let Some(refusal) = self.refuse_below_side(&step) {
                    let outcome = crate::txn::step::StepOutcome::IntentRefused(refusal);
                    if self.record_steps {
                        out.steps.push(StepApplied {
                            index: 0,
                            step: step.clone(),
                            outcome: outcome.clone(),
                            resolved_intent: false,
                        });
                    }
                    out.replies.push(Reply::Stepped { id, outcome });
                } else {
                    let data = wire::encode_step(&step);
                    self.propose(id, &data, hlc, out)
                }
            }
            Input::Read { id, path, target } if self.unsafe_local_reads => {
                let value = self.read_local_unsafe(&path, &target);
                let index = self.applied;
                out.replies.push(Reply::Read { id, index, value });
            }
            Input::Read { id, path, target } => {
                if self.leader().is_none() {
                    // raft-rs drops a read index request when no leader is known.
                    let error = ReplyError::NotLeader { leader: None };
                    out.replies.push(Reply::Failed { id, error });
                } else {
                    self.pending_reads.insert(id, (path, target, self.ticks));
                    let mut context = self.boot_nonce.to_le_bytes().to_vec();
                    context.extend_from_slice(&id.to_le_bytes());
                    self.raw.read_index(context);
                }
            }
            Input::Message(message) => {
                // Errors here are messages for an unknown peer or local-only types from the
                // network: dropping them is what Raft expects of a lossy network.
                let _ = self.raw.step(*message);
            }
            Input::Persisted { number } => self.on_persisted(number, out),
        }
        self.drain_ready(out);
        self.jitter_election_timeout();
    }

    /// Draws a new election timeout whenever raft-rs reset its own (every reset changes the
    /// term or the role), in `[election_ticks, 2 * election_ticks)` from the seeded RNG, so a
    /// split vote is broken within one timeout instead of by timing noise (defect 16).
    fn jitter_election_timeout(&mut self) {
        let now = (self.raw.raft.term, self.raw.raft.state);
        if now == self.timeout_drawn_at {
            return;
        }
        self.timeout_drawn_at = now;
        let span = self.election_ticks as u64;
        self.election_timeout = self.election_ticks + (self.jitter.next_u64() % span) as usize;
        debug_assert!(self.election_timeout < 2 * self.election_ticks);
    }

    /// Checks what must hold between steps (the simulator runs it after every step).
    pub fn check_invariants(&self) {
        let log = &self.raw.raft.raft_log;
        assert!(
            self.applied <= log.committed,
            "applied {} beyond commit",
            self.applied
        );
        assert!(
            log.applied <= self.applied,
            "raft counts as applied only what the tree applied"
        );
        assert!(
            self.held
                .iter()
                .zip(self.held.iter().skip(1))
                .all(|(a, b)| a.0 < b.0),
            "held messages wait for increasing persist numbers"
        );
        assert!(
            self.pending_writes
                .values()
                .all(|(_, term)| *term <= self.term()),
            "no proposal from a future term"
        );
        assert!(
            self.ready_reads
                .iter()
                .all(|(id, _)| self.pending_reads.contains_key(id)),
            "every read index belongs to a waiting read"
        );
        assert!(
            (self.election_ticks..2 * self.election_ticks).contains(&self.election_timeout),
            "election timeout {} outside its jitter range",
            self.election_timeout
        );
        self.tree.check_invariants();
        self.sessions.check_invariants();
        self.tables.check_invariants();
    }

    /// This shard's intents and transaction records.
    pub fn txn_tables(&self) -> &crate::txn::tables::TxnTables {
        &self.tables
    }

    /// Hands leadership to the preferred member once it holds every entry and was heard
    /// from recently (raft-rs `transfer_leader`: the transferee campaigns at once, so the
    /// group is without a leader for about one round trip). Spreads shard leaders evenly
    /// over the servers instead of leaving them wherever elections fell.
    fn balance_leadership(&mut self) {
        let Some(preferred) = self.preferred_leader else {
            return;
        };
        if !self.is_leader() || preferred == self.id() || self.raw.raft.lead_transferee.is_some() {
            return;
        }
        let last = self.raw.raft.raft_log.last_index();
        let caught_up = self
            .raw
            .raft
            .prs()
            .get(preferred)
            // At most the newest entry in flight (idle leaders keep appending close
            // entries): raft-rs sends it and then hands over.
            .is_some_and(|p| p.recent_active && p.matched + 1 >= last);
        if caught_up {
            self.raw.transfer_leader(preferred);
            self.transfers_started += 1;
        }
    }

    /// The election timeout in ticks this replica uses now.
    pub fn election_timeout(&self) -> usize {
        self.election_timeout
    }

    fn propose(&mut self, id: u64, data: &[u8], hlc: Timestamp, out: &mut Output) {
        if !self.is_leader() {
            let error = ReplyError::NotLeader {
                leader: self.leader(),
            };
            out.replies.push(Reply::Failed { id, error });
            return;
        }
        let max = self.tree.limits().message_bytes_max;
        if data.len() > max {
            let error = ReplyError::TooLarge {
                bytes: data.len(),
                max,
            };
            out.replies.push(Reply::Failed { id, error });
            return;
        }
        let stamp = self.next_stamp(hlc);
        let closed = self.promise(stamp, hlc);
        debug_assert!(closed < stamp, "an entry's promise is below the entry");
        let lease = self.lease(hlc);
        match self
            .raw
            .propose(closed::context(stamp, closed, lease), data.to_vec())
        {
            Ok(()) => {
                self.max_log_hlc = stamp;
                let index = self.raw.raft.raft_log.last_index();
                let previous = self.pending_writes.insert(index, (id, self.term()));
                // A proposal of an earlier term at this index was cut from our log (we lead
                // again and the index is free): by Leader Completeness it never committed.
                if let Some((old_id, old_term)) = previous {
                    assert!(old_term < self.term(), "one proposal per index per term");
                    out.replies.push(Reply::Failed {
                        id: old_id,
                        error: ReplyError::Dropped,
                    });
                }
            }
            Err(_) => out.replies.push(Reply::Failed {
                id,
                error: ReplyError::Dropped,
            }),
        }
    }

    fn on_persisted(&mut self, number: u64, out: &mut Output) {
        self.raw.on_persist_ready(number);
        // A snapshot installed into the tree counts as applied for Raft once it is durable.
        let log = &self.raw.raft.raft_log;
        if log.applied < self.applied && self.applied <= log.persisted.min(log.committed) {
            self.raw.advance_apply_to(self.applied);
        }
        while self.held.front().is_some_and(|(n, _)| *n <= number) {
            let (_, messages) = self.held.pop_front().expect("front exists");
            out.messages.extend(messages);
        }
    }

    fn drain_ready(&mut self, out: &mut Output) {
        for _ in 0..READIES_PER_STEP_MAX {
            if !self.raw.has_ready() {
                self.serve_reads(out);
                self.adopt_pending_side_promise();
                return;
            }
            let mut ready = self.raw.ready();
            let messages = ready.take_messages();
            // Snapshots we send are reported as done at once: our transport does not confirm
            // delivery, and a lost one is noticed when the follower rejects the next probe.
            let snapshot_targets: Vec<u64> = messages
                .iter()
                .filter(|m| m.get_msg_type() == MessageType::MsgSnapshot)
                .map(|m| m.to)
                .collect();
            out.messages.extend(messages);
            let snapshot = (!ready.snapshot().is_empty()).then(|| ready.snapshot().clone());
            if let Some(snapshot) = &snapshot {
                self.raw
                    .store()
                    .mem
                    .wl()
                    .apply_snapshot(snapshot.clone())
                    .expect("a newer snapshot");
                self.install_snapshot(snapshot);
                self.snapshots_installed += 1;
                self.forget_writes_covered_by(snapshot.get_metadata().index, out);
                if self.record_changes {
                    out.applied.push(Applied::Reset {
                        index: self.applied,
                    });
                }
            }
            let committed = ready.take_committed_entries();
            self.apply_entries(committed, out);
            for state in ready.take_read_states() {
                // Only answers to reads of this boot that still wait: a delayed answer to a
                // previous run's read (same id, older index) would make a new read stale.
                if let Some(id) = self.read_context_id(&state.request_ctx) {
                    self.ready_reads.push((id, state.index));
                }
            }
            self.stage(ready, snapshot, out);
            for to in snapshot_targets {
                self.raw.report_snapshot(to, raft::SnapshotStatus::Finish);
            }
        }
        panic!("more than {READIES_PER_STEP_MAX} readies in one step");
    }

    /// Answers the proposals a leader's snapshot replaced the log over: their entries are
    /// gone, so whether they were the ones committed is unknown here.
    fn forget_writes_covered_by(&mut self, index: u64, out: &mut Output) {
        let later = self.pending_writes.split_off(&(index + 1));
        let covered = std::mem::replace(&mut self.pending_writes, later);
        for (id, _) in covered.into_values() {
            out.replies.push(Reply::Failed {
                id,
                error: ReplyError::UnknownOutcome,
            });
        }
    }

    /// The pending read a read-index context belongs to (boot nonce and request id), if any.
    fn read_context_id(&self, context: &[u8]) -> Option<u64> {
        let bytes = <[u8; READ_CONTEXT_BYTES]>::try_from(context).ok()?;
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let (nonce, id) = (word(0), word(8));
        (nonce == self.boot_nonce && self.pending_reads.contains_key(&id)).then_some(id)
    }

    /// Makes a ready's entries and hard state readable by Raft (memory) and asks the driver
    /// to make them durable; holds the messages that must wait for that.
    fn stage(&mut self, mut ready: raft::Ready, snapshot: Option<Snapshot>, out: &mut Output) {
        let entries = ready.entries().clone();
        for entry in &entries {
            self.max_log_hlc = self.max_log_hlc.max(entry_hlc(entry));
            self.side.lease_seen = self.side.lease_seen.max(closed::entry_lease(entry));
        }
        let hard_state = ready.hs().cloned();
        let persisted_messages = ready.take_persisted_messages();
        let (number, must_sync) = (ready.number(), ready.must_sync());
        {
            let store = self.raw.store();
            let mut core = store.mem.wl();
            if !entries.is_empty() {
                core.append(&entries)
                    .expect("raft hands out appendable entries");
            }
            if let Some(hs) = &hard_state {
                core.set_hardstate(hs.clone());
            }
        }
        self.raw.advance_append_async(ready);
        if entries.is_empty() && hard_state.is_none() && snapshot.is_none() && self.held.is_empty()
        {
            self.raw.on_persist_ready(number);
            out.messages.extend(persisted_messages);
            return;
        }
        out.persist.push(PersistRequest {
            number,
            entries,
            hard_state,
            snapshot,
            must_sync,
        });
        self.held.push_back((number, persisted_messages));
    }

    /// Fails reads whose read index never came (raft-rs drops read index requests it cannot
    /// serve: a leader that has not committed in its term, a lost forward, a leader change);
    /// the client may retry (`Dropped`).
    fn expire_reads(&mut self, out: &mut Output) {
        let cutoff = self.ticks.saturating_sub(self.read_timeout_ticks);
        let waiting: BTreeSet<u64> = self.ready_reads.iter().map(|(id, _)| *id).collect();
        let expired: Vec<u64> = self
            .pending_reads
            .iter()
            .filter(|(id, (_, _, issued))| *issued < cutoff && !waiting.contains(id))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.pending_reads.remove(&id);
            out.replies.push(Reply::Failed {
                id,
                error: ReplyError::Dropped,
            });
        }
    }

    fn serve_reads(&mut self, out: &mut Output) {
        let applied = self.applied;
        let (ready, waiting): (Vec<_>, Vec<_>) = self
            .ready_reads
            .drain(..)
            .partition(|(_, index)| *index <= applied);
        self.ready_reads = waiting;
        for (id, _) in ready {
            let Some((path, target, _)) = self.pending_reads.remove(&id) else {
                continue;
            };
            // A property of a node that does not exist is an error, not an unset property.
            if matches!(target, ReadTarget::Prop(_)) && !self.node_exists(&path) {
                let error = ReplyError::Rejected(TreeError::NotFound { path });
                out.replies.push(Reply::Failed { id, error });
                continue;
            }
            // A provisional write may be implicitly committed already: a read must not show
            // the old value as current, so it waits (the client or gateway retries).
            if let Some(holder) = self.tables.intents.blocking(&[read_lock(&path, &target)]) {
                let holder = holder.meta;
                out.replies.push(Reply::Failed {
                    id,
                    error: ReplyError::Locked { holder },
                });
                continue;
            }
            let value = self.read_value(&path, &target);
            out.replies.push(Reply::Read {
                id,
                index: applied,
                value,
            });
        }
    }
}

/// What a read of `target` at `path` must not see half of.
fn read_lock(path: &str, target: &ReadTarget) -> crate::txn::locks::Lock {
    use crate::txn::locks::Lock;
    match target {
        ReadTarget::Subtree => Lock::Subtree(path.to_owned()),
        ReadTarget::Node | ReadTarget::Prop(_) => Lock::Node(path.to_owned()),
    }
}

pub use apply::LoggedChange;
pub use closed::{
    entry_closed, entry_hlc, entry_lease, CLOSED_LAG_MS_DEFAULT, CLOSE_EVERY_MS_DEFAULT,
    LEASE_MS_DEFAULT,
};
pub use side::{decode_promises, encode_promises, SideClose, SideDecodeError, SidePromise};

#[cfg(test)]
mod tests;
