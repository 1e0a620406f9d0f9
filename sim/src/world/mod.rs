//! The simulated cluster: servers of shipped engines (one per core), their WAL bytes, a
//! lossy network between them, jittered ticks, skewed and jumping clocks, and clients.
//! One `Rng` drives every choice, so a seed replays exactly.

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::rc::Rc;

use raft::prelude::{Message, MessageType};
use treesync_core::clock_offset::ClockOffsets;
use treesync_core::engine::{
    Answer, Commands, Engine, EngineConfig, Input, Outcome, Subscription, RESOLVED_EVERY_TICKS,
};
use treesync_core::hlc::{Hlc, Timestamp, WallClock, MAX_OFFSET_MS_DEFAULT};
use treesync_core::replica::{RaftView, ReplicaConfig};

use crate::checks::Observer;
use crate::clients::{Clients, Request, What, KEYS};
use crate::disk::{storage_of, SimWal};
use crate::mirrors::Mirrors;
use crate::rng::Rng;
use crate::trace::TraceRecorder;
use crate::{Bug, SeedReport, SimOptions};

mod end;
mod faults;
mod txns;

pub const SERVERS: u64 = 3;
/// Bound on inputs one external event may cascade into (ack-before-fsync feeds back).
const CASCADE_MAX: usize = 64;
/// Engine request deadline in the simulation (ticks): below the clients' timeout.
const REQUEST_TICKS: u64 = 60;
/// Entries between snapshots: small, so lagging replicas are often caught up by snapshot.
const COMPACT_ENTRIES: u64 = 16;
/// Largest clock skew between servers, below the HLC's max offset.
const SKEW_MS_MAX: u64 = 400;
const _: () = assert!(SKEW_MS_MAX < MAX_OFFSET_MS_DEFAULT);

/// A server's wall clock: simulated time (5 ms per unit) plus its skew, which jumps.
struct SimWall {
    time: Rc<Cell<u64>>,
    skew_ms: Rc<Cell<u64>>,
}

impl WallClock for SimWall {
    fn now_ms(&self) -> u64 {
        1_000_000 + self.time.get() * 5 + self.skew_ms.get()
    }
}

struct Core {
    engine: Option<Engine>,
    wal: SimWal,
}

struct Server {
    cores: Vec<Core>,
    hlc: Hlc<SimWall>,
    skew_ms: Rc<Cell<u64>>,
    up: bool,
    down_until: u64,
    /// Peers' clock offsets as this server observes them (it may stop serving).
    offsets: ClockOffsets,
    /// Refused to start (a record before its WAL's tail is corrupt): stays down.
    refused: Option<String>,
    /// Raft's state of shard 0 when the server crashed (trace runs).
    crashed: Option<RaftView>,
    boots: u64,
}

/// A Raft message on the simulated wire, stamped with its sender's HLC.
struct Flight {
    from: u64,
    to: u64,
    sent: Timestamp,
    payload: Payload,
}

/// What a peer message carries, as the runtime's transport does.
#[derive(Clone)]
enum Payload {
    Raft {
        shard: u32,
        message: Message,
    },
    /// One coalesced message of side promises for the receiver's same core.
    Side {
        core: usize,
        promises: Vec<treesync_core::replica::SidePromise>,
    },
}

/// The subtrees every server subscribes to on every shard.
const MIRRORED: [&str; 2] = ["/root", "/root/n0"];

/// A clock this far beyond the others breaks the max offset (500 ms).
const BAD_CLOCK_MS: u64 = 1_500;
const _: () = assert!(BAD_CLOCK_MS > MAX_OFFSET_MS_DEFAULT + SKEW_MS_MAX);

/// Where a token's answer goes.
enum Route {
    Client,
    Subscription,
}

pub struct World {
    options: SimOptions,
    /// Every replica's `closed_lag_ms` in this run.
    closed_lag_ms: u64,
    rng: Rng,
    /// When and where world `tree` reads start: a stream of its own, so that adding the
    /// reads left every other choice of a seed as it was.
    reads_rng: Rng,
    now: u64,
    time: Rc<Cell<u64>>,
    cores: usize,
    shards: u32,
    servers: Vec<Server>,
    /// (due, seq) → the message in flight.
    network: BinaryHeap<Reverse<(u64, u64)>>,
    in_flight: BTreeMap<u64, Flight>,
    /// A server whose clock is beyond the max offset, until when, and its normal skew.
    bad_clock: Option<(u64, u64, u64)>,
    /// Requests refused because the server's clock was beyond the max offset.
    clock_refusals: u64,
    seq: u64,
    isolated: Option<(u64, u64)>,
    clients: Clients,
    routes: BTreeMap<u64, Route>,
    /// Subscription id → (server, shard) it mirrors.
    subs: BTreeMap<u64, (u64, u32)>,
    mirrors: Mirrors,
    /// Every server's subscriber of the whole world (merged over the shards).
    cuts: crate::cuts::Cuts,
    /// World mirrors found equal to the leaders' merged tree at the end.
    world_mirrors_equal: u64,
    /// World subscribers to start over (server, feeds to end), at the end of this step.
    world_restarts: Vec<crate::cuts::Ended>,
    /// Stuck intents the engines reported and their servers' hosts pushed.
    stuck_pushed: u64,
    next_token: u64,
    observer: Observer,
    faults_on: bool,
    corrupted_once: bool,
    /// A server to crash once the current step is routed (BUGGIFY points).
    crash_after_step: Option<u64>,
    crashes: u64,
    refused_starts: u64,
    snapshots_installed: u64,
    /// Side promises adopted by followers of engines that crashed since (`replica::side`).
    side_adopted: u64,
    logger: slog::Logger,
    pub trace: Option<TraceRecorder>,
    /// Each server's transaction host (`None` while it is down) and its boot count.
    hosts: Vec<Option<treesync_core::txn::host::TxnHost>>,
    host_boots: Vec<u64>,
    /// Requests of hosts and bank clients in flight, by token.
    host_routes: BTreeMap<u64, txns::HostRoute>,
    /// Host requests to deliver at the end of this time unit: (server, core, input).
    host_requests: VecDeque<(u64, usize, Input)>,
    bank: crate::bank::Bank,
    bank_jobs: BTreeMap<u64, txns::BankJob>,
    next_ticket: u64,
    /// Cross-shard transfers a host acknowledged as committed.
    acked_txns: Vec<(u64, Timestamp)>,
    /// Every run's parallel-commit steps: checked as they apply (ImplicitCommitIsFinal),
    /// rendered only for `--txn-trace`.
    pub txn_trace: crate::txn_trace::TxnTraceRecorder,
}

impl World {
    pub fn new(options: SimOptions) -> World {
        let (cores, shards) = if options.trace { (1, 1) } else { (2, 8) };
        let mut rng = Rng::new(options.seed);
        let reads_rng = Rng::new(options.seed ^ 0x7265_6164_735f_7267);
        let time = Rc::new(Cell::new(0));
        let servers = (1..=SERVERS)
            .map(|_| {
                let skew_ms = Rc::new(Cell::new(rng.range(0, SKEW_MS_MAX)));
                let wall = SimWall {
                    time: time.clone(),
                    skew_ms: skew_ms.clone(),
                };
                Server {
                    cores: (0..cores)
                        .map(|_| Core {
                            engine: None,
                            wal: SimWal::new(rng.next_u64()),
                        })
                        .collect(),
                    hlc: Hlc::new(wall, MAX_OFFSET_MS_DEFAULT),
                    skew_ms,
                    up: false,
                    down_until: 0,
                    offsets: ClockOffsets::new(MAX_OFFSET_MS_DEFAULT, SERVERS as usize),
                    refused: None,
                    crashed: None,
                    boots: 0,
                }
            })
            .collect();
        let clients = Clients::new(SERVERS, &mut rng, shards);
        let txn_trace = options.txn_trace;
        // The closed-timestamp lag varies by seed; no lag makes a resolved timestamp cover a
        // change as soon as the next entry applies, which the ordering bug needs to show.
        let closed_lag_ms = match options.inject {
            Some(Bug::ResolvedBeforeChange) => 0,
            _ => rng.range(20, 61),
        };
        let mut world = World {
            closed_lag_ms,
            trace: options.trace.then(TraceRecorder::default),
            options,
            rng,
            reads_rng,
            now: 0,
            time,
            cores,
            shards,
            servers,
            network: BinaryHeap::new(),
            in_flight: BTreeMap::new(),
            bad_clock: None,
            clock_refusals: 0,
            seq: 0,
            isolated: None,
            clients,
            routes: BTreeMap::new(),
            subs: BTreeMap::new(),
            mirrors: Mirrors::default(),
            cuts: crate::cuts::Cuts::new(shards),
            world_mirrors_equal: 0,
            world_restarts: Vec::new(),
            stuck_pushed: 0,
            next_token: 1,
            observer: Observer::default(),
            faults_on: true,
            corrupted_once: false,
            crash_after_step: None,
            crashes: 0,
            refused_starts: 0,
            snapshots_installed: 0,
            side_adopted: 0,
            logger: slog::Logger::root(slog::Discard, slog::o!()),
            hosts: (0..SERVERS).map(|_| None).collect(),
            host_boots: vec![0; SERVERS as usize],
            host_routes: BTreeMap::new(),
            host_requests: VecDeque::new(),
            bank: crate::bank::Bank::new(shards, txn_trace),
            bank_jobs: BTreeMap::new(),
            next_ticket: 0,
            acked_txns: Vec::new(),
            txn_trace: crate::txn_trace::TxnTraceRecorder::default(),
        };
        for id in 1..=SERVERS {
            world.boot(id);
        }
        world
    }

    fn server(&mut self, id: u64) -> &mut Server {
        &mut self.servers[(id - 1) as usize]
    }

    fn token(&mut self, route: Route) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        self.routes.insert(token, route);
        token
    }

    fn engine_config(&self, id: u64, core: usize, boots: u64) -> EngineConfig {
        let compact_entries = if self.options.trace {
            1 << 40
        } else {
            COMPACT_ENTRIES
        };
        let seed = self.options.seed;
        EngineConfig {
            shards: (0..self.shards)
                .filter(|s| *s as usize % self.cores == core)
                .collect(),
            replica: ReplicaConfig {
                compact_entries,
                jitter_seed: seed ^ (id << 48) ^ (boots << 32) ^ core as u64,
                boot_nonce: boots,
                closed_lag_ms: self.closed_lag_ms,
                // As the runtime: side promises every lag / 2.
                close_every_ms: (self.closed_lag_ms / 2).max(1),
                // 60-180 ms: a renewal entry every ~1.5 lags and side promises between, and
                // below the clocks' skew (up to 400 ms), so a new leader's floor matters.
                // Longer leases cost the simulator's frequent failovers transactions: at
                // 10 lags, 120 seeds committed 25% fewer transfers (floors far ahead refuse
                // intents); at 3 lags, as many as without side promises.
                lease_ms: 3 * self.closed_lag_ms.max(20),
                ..ReplicaConfig::new(id, (1..=SERVERS).collect())
            },
            request_ticks_max: REQUEST_TICKS,
            resolved_every_ticks: RESOLVED_EVERY_TICKS,
            inject_resolved_before_change: self.options.inject == Some(Bug::ResolvedBeforeChange),
            inject_resolved_ignores_intents: self.options.inject
                == Some(Bug::ResolvedIgnoresIntents),
        }
    }

    /// Steps core `core` of server `id` with `input` and routes everything it produces.
    fn run(&mut self, id: u64, core: usize, input: Input) {
        let mut inputs = VecDeque::from([input]);
        for _ in 0..CASCADE_MAX {
            let Some(input) = inputs.pop_front() else {
                return;
            };
            let tracing = self.trace.is_some();
            let server = &mut self.servers[(id - 1) as usize];
            let Some(engine) = server.cores[core].engine.as_mut() else {
                return;
            };
            let traced = tracing.then(|| {
                let message = match &input {
                    Input::Peer { message, .. } => Some((**message).clone()),
                    _ => None,
                };
                (message, engine.replica(0).expect("shard 0").raft_view())
            });
            let mut commands = Commands::default();
            engine.step(input, &mut commands);
            engine.check_invariants();
            if let (Some((message, before)), Some(trace)) = (traced, self.trace.as_mut()) {
                let after = engine.replica(0).expect("shard 0").raft_view();
                let sent: Vec<Message> = commands.messages.iter().map(|(_, m)| m.clone()).collect();
                trace.step(id, message.as_ref(), &before, &after, &sent);
            }
            self.observe(id, core);
            for (shard, applied) in &commands.applied {
                if let Err(why) = self.cuts.collect(*shard, applied) {
                    self.observer.violation.get_or_insert(why);
                }
            }
            for (shard, applied) in &commands.steps {
                if let Err(why) = self.txn_trace.step(*shard, applied) {
                    self.observer.violation.get_or_insert(why);
                }
            }
            if let Some(persisted) = self.route(id, core, commands) {
                inputs.push_back(persisted);
            }
            if let Some(victim) = self.crash_after_step.take() {
                if self.server(victim).up {
                    self.crash(victim);
                    let quick = self.now + self.rng.range(1, 4);
                    self.server(victim).down_until = quick;
                }
                // Another server's crash must not drop this one's queued `Persisted` (of a
                // batch that needed no fsync): its engine would wait for it for ever.
                if victim == id {
                    return;
                }
            }
        }
        panic!("input cascade longer than {CASCADE_MAX}");
    }

    fn observe(&mut self, id: u64, core: usize) {
        let engine = self.servers[(id - 1) as usize].cores[core]
            .engine
            .as_ref()
            .expect("observed engines run");
        for (shard, r) in engine.replicas() {
            let applied = (r.applied_index(), r.digest());
            self.observer
                .replica(id, shard, r.term(), r.is_leader(), applied);
        }
    }

    /// Executes a step's commands; returns `Persisted` for a batch that needs no fsync
    /// (`WalBatch::must_sync`), or when the bug acknowledges a write before its fsync.
    fn route(&mut self, id: u64, core: usize, commands: Commands) -> Option<Input> {
        for (shard, message) in commands.messages {
            // BUGGIFY: crash right after granting a vote (a vote must survive the restart).
            let granted =
                message.get_msg_type() == MessageType::MsgRequestVoteResponse && !message.reject;
            if granted {
                self.observer.voted(id, shard, message.term, message.to);
                if self.faults_on && !self.options.trace && self.rng.chance(100) {
                    self.crash_after_step = Some(id);
                }
            }
            self.send(id, shard, message);
        }
        for (to, promises) in commands.side_promises {
            self.send_payload(id, to, Payload::Side { core, promises });
        }
        for (token, outcome) in commands.replies {
            self.answer(token, &outcome);
        }
        let mut restarts = Vec::new();
        for (sub, push) in commands.pushes {
            if self.cuts.feeds(sub) {
                let total = crate::bank::GOLD * i64::from(crate::bank::ACCOUNTS);
                match self.cuts.push(sub, push, self.bank.accounts(), total) {
                    Ok(None) => {}
                    Ok(Some(restart)) => restarts.push(restart),
                    Err(why) => {
                        self.observer.violation.get_or_insert(why);
                    }
                }
                continue;
            }
            if let Some((server, shard)) = self.subs.get(&sub).copied() {
                self.observer.push(sub, server, shard, &push);
                if let Err(why) = self.mirrors.push(sub, &push) {
                    self.observer.mirror(server, shard, why);
                }
            }
        }
        self.world_restarts.extend(restarts);
        // Intents that held a resolved timestamp back too long: this server's host pushes
        // their transactions, as the runtime's does.
        for (_, holder) in commands.stuck_intents {
            self.stuck_pushed += 1;
            let shard = holder.anchor;
            self.host_step(
                id,
                treesync_core::txn::host::HostInput::Push { holder, shard },
            );
        }
        let batch = commands.wal?;
        let due = self.now + self.rng.range(1, 3);
        let eio = self.faults_on && !self.options.trace && self.rng.chance(2);
        let number = batch.number;
        // Only what moves commit indexes is acknowledged once written (`WalBatch::must_sync`).
        let early = !batch.must_sync() || self.options.inject == Some(Bug::AckBeforeFsync);
        self.server(id).cores[core]
            .wal
            .write(&batch, due, eio && batch.must_sync());
        early.then_some(Input::Persisted { batch: number })
    }

    fn answer(&mut self, token: u64, outcome: &Outcome) {
        if let Some(route) = self.host_routes.remove(&token) {
            return self.host_answer(route, outcome);
        }
        match self.routes.remove(&token) {
            Some(Route::Client) => {
                if let Some((shard, index, term)) =
                    self.clients.answer(token, outcome, self.now, &mut self.rng)
                {
                    self.observer.acknowledged(shard, index, term);
                }
            }
            Some(Route::Subscription) => {
                assert_eq!(outcome, &Ok(Answer::Subscribed), "subscriptions start");
            }
            None => {}
        }
    }

    fn send(&mut self, from: u64, shard: u32, message: Message) {
        let to = message.to;
        self.send_payload(from, to, Payload::Raft { shard, message });
    }

    /// Queues a peer message: lost, duplicated and delayed as the faults say.
    fn send_payload(&mut self, from: u64, to: u64, payload: Payload) {
        let faults = self.faults_on;
        if faults && self.rng.chance(20) {
            return; // lost
        }
        let sent = self.server(from).hlc.now();
        let copies = if faults && self.rng.chance(20) { 2 } else { 1 };
        for _ in 0..copies {
            let at = self.now + self.rng.range(1, 3);
            self.seq += 1;
            self.network.push(Reverse((at, self.seq)));
            let flight = Flight {
                from,
                to,
                sent,
                payload: payload.clone(),
            };
            self.in_flight.insert(self.seq, flight);
        }
    }

    fn cut_off(&self, a: u64, b: u64) -> bool {
        matches!(self.isolated, Some((node, until)) if self.now < until && (node == a || node == b))
    }

    fn deliver_messages(&mut self) {
        while let Some(Reverse((at, seq))) = self.network.peek().copied() {
            if at > self.now {
                break;
            }
            self.network.pop();
            let Flight {
                from,
                to,
                sent,
                payload,
            } = self
                .in_flight
                .remove(&seq)
                .expect("every queued message is stored");
            if self.cut_off(from, to) || !self.server(to).up {
                continue;
            }
            // As the runtime's driver: observe the offset, merge the clock, drop what is
            // beyond the max offset ahead.
            let server = self.server(to);
            let local_ms = server.hlc.clock_now_ms();
            server.offsets.observe(from, sent.wall_ms(), local_ms);
            if server.hlc.update(sent).is_err() {
                continue;
            }
            match payload {
                Payload::Raft { shard, message } => {
                    let core = shard as usize % self.cores;
                    let message = Box::new(message);
                    self.run(to, core, Input::Peer { shard, message });
                }
                Payload::Side { core, promises } => {
                    self.run(to, core, Input::SidePromises { from, promises });
                }
            }
        }
    }

    fn complete_fsyncs(&mut self) {
        for id in 1..=SERVERS {
            for core in 0..self.cores {
                let next = self.server(id).cores[core].wal.next_sync();
                let Some((_, eio)) = next.filter(|(due, _)| *due <= self.now) else {
                    continue;
                };
                if eio {
                    // The real WAL stops the process on a failed fsync (never retries it).
                    self.crash(id);
                    break;
                }
                let number = self.server(id).cores[core].wal.sync();
                if self.options.inject != Some(Bug::AckBeforeFsync) {
                    self.run(id, core, Input::Persisted { batch: number });
                }
            }
        }
    }

    fn ticks(&mut self) {
        for id in 1..=SERVERS {
            // Jitter: clocks tick at slightly different rates.
            if self.server(id).up && self.rng.chance(800) {
                let hlc = self.server(id).hlc.now();
                for core in 0..self.cores {
                    self.run(id, core, Input::Tick);
                    self.run(id, core, Input::Clock { hlc });
                }
                self.host_ticks(id);
            }
        }
    }

    fn clients(&mut self, issue: bool) {
        self.clients.expire(self.now, &mut self.rng);
        if !issue {
            return;
        }
        self.bank_clients();
        while let Some(c) = self.clients.idle() {
            if !self.rng.chance(300) {
                return;
            }
            let token = self.token(Route::Client);
            let request = self
                .clients
                .issue(c, token, self.now, &mut self.rng, self.shards);
            self.send_request(token, request);
        }
    }

    fn send_request(&mut self, token: u64, request: Request) {
        let Request {
            shard,
            server,
            what,
        } = request;
        let core = shard as usize % self.cores;
        if !self.server(server).up {
            return; // nobody answers: the client times out
        }
        let offsets = &self.server(server).offsets;
        if !offsets.may_serve() {
            let (members, beyond) = (offsets.members(), offsets.members() - offsets.within());
            self.clock_refusals += 1;
            let error = treesync_core::replica::ReplyError::ClockOffset { beyond, members };
            self.answer(token, &Err(error));
            return;
        }
        let input = match what {
            What::Write(txn) => {
                let hlc = self.server(server).hlc.now();
                Input::Propose {
                    token,
                    shard,
                    txn,
                    hlc,
                }
            }
            What::Read { path, target } if self.options.inject == Some(Bug::StaleRead) => {
                let engine = self.server(server).cores[core].engine.as_ref().expect("up");
                let value = engine
                    .replica(shard)
                    .expect("own shard")
                    .read_local_unsafe(&path, &target);
                self.answer(token, &Ok(Answer::Value(value)));
                return;
            }
            What::Read { path, target } => Input::Read {
                token,
                shard,
                path,
                target,
            },
        };
        self.run(server, core, input);
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
        self.read_world(issue);
        self.deliver_host_requests();
        self.bank_cut_check();
        self.restart_world_subscribers();
    }

    /// World subscribers that ended: their feeds end, and a new subscriber (a fresh
    /// snapshot) replaces one whose feed resynchronised, while the server is up.
    fn restart_world_subscribers(&mut self) {
        for ended in std::mem::take(&mut self.world_restarts) {
            if !self.server(ended.server).up {
                continue;
            }
            for sub in ended.tokens {
                for core in 0..self.cores {
                    self.run(ended.server, core, Input::Unsubscribe { sub });
                }
            }
            if ended.again {
                self.subscribe_world(ended.server, false);
            }
        }
    }

    /// Stops injecting faults (the heal phase).
    pub fn heal(&mut self) {
        self.faults_on = false;
        self.isolated = None;
        if let Some((id, _, normal)) = self.bad_clock.take() {
            self.server(id).skew_ms.set(normal);
        }
    }

    pub fn violation(&self) -> Option<String> {
        self.observer.violation.clone()
    }
}
