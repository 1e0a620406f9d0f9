//! The simulated cluster: three replicas of one shard, a lossy network, disks that lose
//! what was not fsynced on a crash, jittered clocks, and clients writing and reading
//! registers. One `Rng` drives every choice, so a seed replays exactly.

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::rc::Rc;

use raft::prelude::{ConfState, Entry, HardState, Message, Snapshot};
use raft::storage::MemStorage;
use treesync_core::hlc::{Hlc, WallClock, MAX_OFFSET_MS_DEFAULT};
use treesync_core::op::{Op, Prop, Txn};
use treesync_core::replica::{
    Input, Output, PersistRequest, RaftView, ReadTarget, Replica, ReplicaConfig, Reply,
};
use treesync_core::{wire, Value};

use crate::history::{Event, Kind, Outcome};
use crate::rng::Rng;
use crate::trace::TraceRecorder;
use crate::{Bug, SimOptions};

pub const NODES: u64 = 3;
pub const KEYS: usize = 3;
const CLIENTS: usize = 3;
const CLIENT_TIMEOUT: u64 = 80;
/// Bound on inputs one external event may cascade into (ack-before-fsync feeds back).
const CASCADE_MAX: usize = 64;

/// Durable state of one node: what survived its last fsync.
#[derive(Default)]
struct Disk {
    snapshot: Option<Snapshot>,
    /// The durable log after the snapshot.
    entries: BTreeMap<u64, Entry>,
    hard_state: HardState,
    /// Committed entries up to here were copied into the world's oracle.
    recorded: u64,
}

impl Disk {
    fn write(&mut self, request: &PersistRequest) {
        if let Some(snapshot) = &request.snapshot {
            self.snapshot = Some(snapshot.clone());
            self.entries.clear();
            self.recorded = self.recorded.max(snapshot.get_metadata().index);
        }
        if let Some(first) = request.entries.first() {
            let expected = self
                .entries
                .keys()
                .next_back()
                .map_or(self.snapshot_index(), |i| *i)
                + 1;
            assert!(
                first.index <= expected,
                "contiguous log: {} after {}",
                first.index,
                expected - 1
            );
            self.entries.split_off(&first.index);
            for e in &request.entries {
                self.entries.insert(e.index, e.clone());
            }
        }
        if let Some(hs) = &request.hard_state {
            self.hard_state = hs.clone();
        }
    }

    fn snapshot_index(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.get_metadata().index)
    }
}

/// A node's wall clock: simulated time (5 ms per unit) plus this node's fixed skew.
struct SimWall {
    time: Rc<Cell<u64>>,
    skew_ms: u64,
}

impl WallClock for SimWall {
    fn now_ms(&self) -> u64 {
        1_000_000 + self.time.get() * 5 + self.skew_ms
    }
}

/// Largest clock skew between nodes, below the HLC's max offset.
const SKEW_MS_MAX: u64 = 400;
const _: () = assert!(SKEW_MS_MAX < MAX_OFFSET_MS_DEFAULT);

struct Node {
    replica: Option<Replica>,
    hlc: Hlc<SimWall>,
    disk: Disk,
    /// Written but not yet fsynced: lost on a crash.
    fsyncs: VecDeque<(u64, PersistRequest)>,
    down_until: u64,
    /// Raft's state when the node crashed (trace runs compare the recovered state).
    crashed: Option<RaftView>,
}

struct Pending {
    request: u64,
    event: usize,
    deadline: u64,
}

struct Client {
    pending: Option<Pending>,
    leader_hint: u64,
}

pub struct World {
    options: SimOptions,
    rng: Rng,
    now: u64,
    time: Rc<Cell<u64>>,
    nodes: Vec<Node>,
    network: BinaryHeap<Reverse<(u64, u64, u64, u64)>>,
    in_flight: BTreeMap<u64, Message>,
    message_seq: u64,
    isolated: Option<(u64, u64)>,
    clients: Vec<Client>,
    requests: BTreeMap<u64, usize>,
    next_request: u64,
    pub events: Vec<Event>,
    leaders: BTreeMap<u64, u64>,
    digests: BTreeMap<u64, u64>,
    /// Every entry some node durably holds as committed, by index: the committed log, kept
    /// whole even after every replica compacted it.
    oracle: BTreeMap<u64, Entry>,
    faults_on: bool,
    pub crashes: u64,
    /// Snapshots installed by replicas that were replaced on restart (live ones are summed
    /// at the end).
    pub snapshots_installed: u64,
    pub violation: Option<String>,
    logger: slog::Logger,
    /// Spec-level events, when recording a trace (`SimOptions::trace`).
    pub trace: Option<TraceRecorder>,
}

/// Entries between snapshots in the simulation: small, so lagging replicas are often caught
/// up by snapshot instead of by entries.
const COMPACT_ENTRIES: u64 = 32;

fn config(id: u64, options: &SimOptions) -> ReplicaConfig {
    ReplicaConfig {
        // Trace runs keep whole logs: snapshots are not in the spec.
        compact_entries: if options.trace {
            1 << 40
        } else {
            COMPACT_ENTRIES
        },
        ..ReplicaConfig::new(id, (1..=NODES).collect())
    }
}

impl World {
    pub fn new(options: SimOptions) -> World {
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let mut rng = Rng::new(options.seed);
        let time = Rc::new(Cell::new(0));
        let nodes = (1..=NODES)
            .map(|id| Node {
                replica: Some(Replica::new(
                    &config(id, &options),
                    MemStorage::new(),
                    None,
                    &logger,
                )),
                hlc: Hlc::new(
                    SimWall {
                        time: time.clone(),
                        skew_ms: rng.range(0, SKEW_MS_MAX),
                    },
                    MAX_OFFSET_MS_DEFAULT,
                ),
                disk: Disk::default(),
                fsyncs: VecDeque::new(),
                down_until: 0,
                crashed: None,
            })
            .collect();
        let clients = (0..CLIENTS)
            .map(|_| Client {
                pending: None,
                leader_hint: rng.range(1, NODES),
            })
            .collect();
        let trace = options.trace.then(TraceRecorder::default);
        World {
            options,
            rng,
            now: 0,
            time,
            nodes,
            network: BinaryHeap::new(),
            in_flight: BTreeMap::new(),
            message_seq: 0,
            isolated: None,
            clients,
            requests: BTreeMap::new(),
            next_request: 1,
            events: Vec::new(),
            leaders: BTreeMap::new(),
            digests: BTreeMap::new(),
            oracle: BTreeMap::new(),
            faults_on: true,
            crashes: 0,
            snapshots_installed: 0,
            violation: None,
            logger,
            trace,
        }
    }

    fn node(&mut self, id: u64) -> &mut Node {
        &mut self.nodes[(id - 1) as usize]
    }

    /// Steps node `id` with `input` and routes everything it produces.
    fn run(&mut self, id: u64, input: Input) {
        let mut inputs = vec![input];
        for _ in 0..CASCADE_MAX {
            let Some(input) = inputs.pop() else { return };
            let mut out = Output::default();
            let tracing = self.trace.is_some();
            let Some(replica) = self.nodes[(id - 1) as usize].replica.as_mut() else {
                return;
            };
            let traced = tracing.then(|| {
                let message = match &input {
                    Input::Message(m) => Some((**m).clone()),
                    _ => None,
                };
                (message, replica.raft_view())
            });
            replica.step(input, &mut out);
            if let (Some((message, before)), Some(trace)) = (traced, self.trace.as_mut()) {
                let after = replica.raft_view();
                trace.step(id, message.as_ref(), &before, &after, &out.messages);
            }
            self.observe(id);
            for message in out.messages {
                self.send(message);
            }
            for request in out.persist {
                let due = self.now + self.rng.range(1, 4);
                let node = self.node(id);
                let due = node.fsyncs.back().map_or(due, |(d, _)| due.max(*d));
                if self.options.inject == Some(Bug::AckBeforeFsync) {
                    inputs.push(Input::Persisted {
                        number: request.number,
                    });
                }
                self.node(id).fsyncs.push_back((due, request));
            }
            for reply in out.replies {
                self.on_reply(reply);
            }
        }
        panic!("input cascade longer than {CASCADE_MAX}");
    }

    /// Records leadership and applied digests after every step (the safety checks).
    fn observe(&mut self, id: u64) {
        let replica = self.nodes[(id - 1) as usize]
            .replica
            .as_ref()
            .expect("observed nodes are up");
        let (term, leader, applied, digest) = (
            replica.term(),
            replica.is_leader(),
            replica.applied_index(),
            replica.digest(),
        );
        if leader {
            let first = *self.leaders.entry(term).or_insert(id);
            if first != id && self.violation.is_none() {
                self.violation = Some(format!(
                    "election safety: nodes {first} and {id} both led term {term}"
                ));
            }
        }
        if applied > 0 {
            let first = *self.digests.entry(applied).or_insert(digest);
            if first != digest && self.violation.is_none() {
                self.violation = Some(format!(
                    "state machine safety: node {id} applied a different log up to index {applied}"
                ));
            }
        }
    }

    fn send(&mut self, message: Message) {
        let faults = self.faults_on;
        if faults && self.rng.chance(20) {
            return; // lost
        }
        let copies = if faults && self.rng.chance(20) { 2 } else { 1 };
        for _ in 0..copies {
            let at = self.now + self.rng.range(1, 4);
            self.message_seq += 1;
            self.network
                .push(Reverse((at, self.message_seq, message.from, message.to)));
            self.in_flight.insert(self.message_seq, message.clone());
        }
    }

    fn cut_off(&self, a: u64, b: u64) -> bool {
        matches!(self.isolated, Some((node, until)) if self.now < until && (node == a || node == b))
    }

    fn deliver_messages(&mut self) {
        while let Some(Reverse((at, seq, from, to))) = self.network.peek().copied() {
            if at > self.now {
                break;
            }
            self.network.pop();
            let message = self
                .in_flight
                .remove(&seq)
                .expect("every queued message is stored");
            if !self.cut_off(from, to) {
                self.run(to, Input::Message(Box::new(message)));
            }
        }
    }

    fn complete_fsyncs(&mut self) {
        let now = self.now;
        for id in 1..=NODES {
            while self
                .node(id)
                .fsyncs
                .front()
                .is_some_and(|(due, _)| *due <= now)
            {
                let (_, request) = self.node(id).fsyncs.pop_front().expect("front exists");
                self.node(id).disk.write(&request);
                self.record_committed(id);
                if self.options.inject != Some(Bug::AckBeforeFsync) {
                    self.run(
                        id,
                        Input::Persisted {
                            number: request.number,
                        },
                    );
                }
            }
        }
    }

    fn crash(&mut self, id: u64) {
        let down_for = self.rng.range(5, 40);
        let now = self.now;
        let node = self.node(id);
        let installed = node.replica.as_ref().map_or(0, |r| r.snapshots_installed);
        node.crashed = node.replica.as_ref().map(Replica::raft_view);
        node.replica = None;
        node.fsyncs.clear(); // un-fsynced writes are lost
        node.down_until = now + down_for;
        self.crashes += 1;
        self.snapshots_installed += installed;
    }

    /// Rebuilds a replica from its disk, as a process restart replays its WAL.
    fn restart(&mut self, id: u64) {
        let storage = MemStorage::new();
        let disk = &self.nodes[(id - 1) as usize].disk;
        {
            let mut core = storage.wl();
            core.set_conf_state(ConfState::from(((1..=NODES).collect::<Vec<_>>(), vec![])));
            if let Some(snapshot) = &disk.snapshot {
                core.apply_snapshot(snapshot.clone())
                    .expect("a fresh storage takes any snapshot");
            }
            let entries: Vec<Entry> = disk.entries.values().cloned().collect();
            core.append(&entries)
                .expect("the disk log is contiguous after its snapshot");
            let mut hard_state = disk.hard_state.clone();
            if self.options.inject == Some(Bug::ForgetVote) {
                hard_state.vote = 0;
            }
            core.set_hardstate(hard_state);
        }
        let config = config(id, &self.options);
        let replica = Replica::new(&config, storage, disk.snapshot.clone(), &self.logger);
        let crashed = self.node(id).crashed.take();
        if let (Some(trace), Some(crashed)) = (self.trace.as_mut(), crashed) {
            trace.restart(id, &crashed, &replica.raft_view());
        }
        self.node(id).replica = Some(replica);
    }

    fn faults(&mut self) {
        for id in 1..=NODES {
            if self.node(id).replica.is_none() && self.now >= self.node(id).down_until {
                self.restart(id);
            }
        }
        if !self.faults_on {
            return;
        }
        let all_up = self.nodes.iter().all(|n| n.replica.is_some());
        if all_up && self.rng.chance(self.options.crash_per_mille) {
            let id = self.rng.range(1, NODES);
            // Trace runs crash a node only when its disk holds all it wrote: the spec's
            // persisted state is then exactly the replica's (see `trace`).
            if !self.options.trace || self.node(id).fsyncs.is_empty() {
                self.crash(id);
            }
        }
        if self.isolated.is_none_or(|(_, until)| self.now >= until) && self.rng.chance(3) {
            let (node, length) = (self.rng.range(1, NODES), self.rng.range(10, 80));
            self.isolated = Some((node, self.now + length));
        }
    }

    fn ticks(&mut self) {
        for id in 1..=NODES {
            // Jitter: clocks tick at slightly different rates, which also spreads elections.
            if self.node(id).replica.is_some() && self.rng.chance(800) {
                self.run(id, Input::Tick);
            }
        }
    }

    fn clients(&mut self, issue: bool) {
        for c in 0..CLIENTS {
            if let Some(p) = &self.clients[c].pending {
                if self.now >= p.deadline {
                    let p = self.clients[c].pending.take().expect("checked");
                    self.requests.remove(&p.request);
                    self.finish(p.event, Outcome::Unknown, None);
                    self.clients[c].leader_hint = self.rng.range(1, NODES);
                }
                continue;
            }
            if issue && self.rng.chance(300) {
                let key = self.rng.range(0, KEYS as u64 - 1) as usize;
                let write = self.rng.chance(600);
                self.issue(c, key, write);
            }
        }
    }

    fn issue(&mut self, client: usize, key: usize, write: bool) {
        let request = self.next_request;
        self.next_request += 1;
        let node = self.clients[client].leader_hint;
        let value = request as i64;
        let kind = if write {
            Kind::Write { value }
        } else {
            Kind::Read { value: None }
        };
        self.events.push(Event {
            key,
            kind,
            invoke: self.now,
            complete: u64::MAX,
            outcome: Outcome::Unknown,
        });
        let event = self.events.len() - 1;
        self.clients[client].pending = Some(Pending {
            request,
            event,
            deadline: self.now + CLIENT_TIMEOUT,
        });
        self.requests.insert(request, client);
        let prop = format!("k{key}");
        if write {
            let txn = Txn::single(Op::Set {
                path: "/root".into(),
                props: vec![Prop::new(prop, Value::Int(value))],
            });
            let hlc = self.node(node).hlc.now();
            self.run(
                node,
                Input::Propose {
                    id: request,
                    txn,
                    hlc,
                },
            );
        } else if self.options.inject == Some(Bug::StaleRead) {
            let value = self
                .node(node)
                .replica
                .as_ref()
                .map(|r| r.read_local_unsafe("/root", &ReadTarget::Prop(prop.clone())));
            if let Some(value) = value {
                self.on_reply(Reply::Read {
                    id: request,
                    index: 0,
                    value,
                });
            }
        } else {
            self.run(
                node,
                Input::Read {
                    id: request,
                    path: "/root".into(),
                    target: ReadTarget::Prop(prop),
                },
            );
        }
    }

    fn on_reply(&mut self, reply: Reply) {
        let id = match &reply {
            Reply::Written { id, .. } | Reply::Read { id, .. } | Reply::Failed { id, .. } => *id,
        };
        let Some(client) = self.requests.remove(&id) else {
            return;
        };
        let pending = self.clients[client]
            .pending
            .take()
            .expect("a request has a pending op");
        match reply {
            Reply::Written { index, .. } => self.finish(pending.event, Outcome::Ok { index }, None),
            Reply::Read { value, .. } => {
                let value = match value {
                    Some(Value::Int(v)) => Some(v),
                    _ => None,
                };
                self.finish(pending.event, Outcome::Ok { index: 0 }, Some(value));
            }
            Reply::Failed { error, .. } => {
                if let treesync_core::replica::ReplyError::NotLeader { leader: Some(l) } = error {
                    self.clients[client].leader_hint = l;
                } else {
                    self.clients[client].leader_hint = self.rng.range(1, NODES);
                }
                self.finish(pending.event, Outcome::Failed, None);
            }
        }
    }

    fn finish(&mut self, event: usize, outcome: Outcome, read: Option<Option<i64>>) {
        let e = &mut self.events[event];
        e.complete = self.now;
        e.outcome = outcome;
        if let (Kind::Read { value }, Some(v)) = (&mut e.kind, read) {
            *value = v;
        }
    }

    /// One unit of simulated time.
    pub fn step(&mut self, issue: bool) {
        self.now += 1;
        self.time.set(self.now);
        self.faults();
        self.deliver_messages();
        self.complete_fsyncs();
        self.ticks();
        self.clients(issue);
    }

    /// Stops injecting faults (the heal phase).
    pub fn heal(&mut self) {
        self.faults_on = false;
        self.isolated = None;
    }

    /// Durable committed log of node `id`: value written → index.
    /// Copies node `id`'s newly committed durable entries into the oracle; two nodes
    /// holding different committed entries at one index violate state machine safety.
    fn record_committed(&mut self, id: u64) {
        let disk = &mut self.nodes[(id - 1) as usize].disk;
        let commit = disk.hard_state.commit;
        if commit <= disk.recorded {
            return;
        }
        for (index, entry) in disk.entries.range(disk.recorded + 1..=commit) {
            let known = self.oracle.entry(*index).or_insert_with(|| entry.clone());
            if (known.term != entry.term || known.data != entry.data) && self.violation.is_none() {
                self.violation = Some(format!(
                    "state machine safety: node {id} committed a different entry at {index}"
                ));
            }
        }
        disk.recorded = disk
            .recorded
            .max(commit.min(disk.entries.keys().next_back().copied().unwrap_or(0)));
    }

    /// The committed log: value written → index.
    pub fn committed_values(&self) -> Result<BTreeMap<i64, u64>, String> {
        let mut out = BTreeMap::new();
        for entry in self.oracle.values().filter(|e| !e.data.is_empty()) {
            let txn = wire::decode_txn_unaligned(&entry.data)
                .expect("the simulator only proposes valid txns");
            for op in &txn.ops {
                if let Op::Set { props, .. } = op {
                    for prop in props {
                        if let Value::Int(v) = prop.value {
                            out.insert(v, entry.index);
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    pub fn applied(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|n| n.replica.as_ref().map_or(0, Replica::applied_index))
            .collect()
    }

    /// Every replica's Raft internals, for failure reports.
    pub fn debug_state(&self) -> String {
        let states: Vec<String> = self
            .nodes
            .iter()
            .map(|n| {
                n.replica
                    .as_ref()
                    .map_or("down".into(), Replica::debug_state)
            })
            .collect();
        states.join(" | ")
    }

    /// Snapshots installed from leaders so far, by every replica.
    pub fn total_snapshots_installed(&self) -> u64 {
        self.snapshots_installed
            + self
                .nodes
                .iter()
                .filter_map(|n| n.replica.as_ref())
                .map(|r| r.snapshots_installed)
                .sum::<u64>()
    }

    pub fn has_leader(&self) -> bool {
        self.nodes
            .iter()
            .any(|n| n.replica.as_ref().is_some_and(Replica::is_leader))
    }

    /// Issues one linearizable read of `key` from an idle client; returns false if none is idle.
    pub fn final_read(&mut self, key: usize) -> bool {
        let Some(c) = self.clients.iter().position(|c| c.pending.is_none()) else {
            return false;
        };
        let leader = (1..=NODES).find(|id| {
            self.nodes[(*id - 1) as usize]
                .replica
                .as_ref()
                .is_some_and(Replica::is_leader)
        });
        self.clients[c].leader_hint = leader.unwrap_or(1);
        self.issue(c, key, false);
        true
    }

    pub fn idle(&self) -> bool {
        self.clients.iter().all(|c| c.pending.is_none())
    }
}
