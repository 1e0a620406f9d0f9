//! Cross-shard transactions in the simulation: each server runs the shipped transaction
//! host (`treesync_core::txn::host`), whose requests go to the shard's leader as the
//! server's replica knows it (as `serve` forwards them), and a bank client per server
//! drives it (`crate::bank`). A crash of a server crashes its host and every coordinator
//! on it; answers from a crashed server never come, as a dropped reply channel in the
//! runtime says `UnknownOutcome`.

use treesync_core::api::{Answer, Outcome, ReplyError};
use treesync_core::replica::ReadTarget;
use treesync_core::txn::host::{HostBug, HostCommand, HostInput, Request as HostRequest, TxnHost};
use treesync_core::txn::record::Status;
use treesync_core::txn::step::Step;
use treesync_core::Limits;

use super::*;
use crate::bank::{Job, ACCOUNTS, GOLD, WORLD};

/// Host requests run per time unit before the rest wait (bounds one unit's work).
const HOST_REQUESTS_PER_STEP_MAX: usize = 512;

fn input_token(input: &Input) -> Option<u64> {
    match input {
        Input::Read { token, .. } | Input::Propose { token, .. } | Input::Step { token, .. } => {
            Some(*token)
        }
        _ => None,
    }
}

/// Where a host's or bank client's request was sent, and for whom.
pub(super) struct HostRoute {
    pub host: u64,
    pub boot: u64,
    /// `Some`: a host request id; `None`: the bank client's read.
    pub request: Option<u64>,
    pub to: u64,
    pub write: bool,
}

/// The bank job a server's client runs, and its host ticket (transactions).
pub(super) struct BankJob {
    pub job: Job,
    pub ticket: u64,
}

impl World {
    /// A fresh host for server `id` (at boot).
    pub(super) fn start_host(&mut self, id: u64) {
        let map = treesync_core::shard::ShardMap::new(
            self.shards,
            treesync_core::shard::SHARD_DEPTH_DEFAULT,
        )
        .expect("the simulator's shard map");
        let epoch = self.host_boots[(id - 1) as usize] as u32 + 1;
        let mut host = TxnHost::new(map, Limits::default(), id, epoch);
        match self.options.inject {
            Some(Bug::RecoverySkipsChecks) => host.inject(HostBug::RecoverySkipsChecks),
            Some(Bug::AckWithoutIntents) => host.inject(HostBug::AckWithoutIntents),
            Some(Bug::TrustRefusals) => host.inject(HostBug::TrustRefusals),
            _ => {}
        }
        let slot = (id - 1) as usize;
        self.hosts[slot] = Some(host);
        self.host_boots[slot] += 1;
    }

    /// A crash of server `id`: its host and bank client die; what was routed to it is lost.
    pub(super) fn crash_host(&mut self, id: u64) {
        let slot = (id - 1) as usize;
        if let Some(host) = self.hosts[slot].take() {
            for meta in host.coordinating() {
                self.txn_trace.crash(meta);
            }
        }
        if let Some(job) = self.bank_jobs.remove(&id) {
            self.bank.done(&job.job, &Err(ReplyError::UnknownOutcome));
        }
        let lost: Vec<u64> = self
            .host_routes
            .iter()
            .filter(|(_, r)| r.to == id)
            .map(|(token, _)| *token)
            .collect();
        for token in lost {
            let write = self.host_routes[&token].write;
            let error = match write {
                true => ReplyError::UnknownOutcome,
                false => ReplyError::Unavailable {
                    reason: "the server crashed".into(),
                },
            };
            self.answer(token, &Err(error));
        }
    }

    /// Runs one input through server `id`'s host and routes what it asks for.
    pub(super) fn host_step(&mut self, id: u64, input: HostInput) {
        let slot = (id - 1) as usize;
        let Some(host) = self.hosts[slot].as_mut() else {
            return;
        };
        let mut out = Vec::new();
        host.step(input, &mut out);
        for command in out {
            match command {
                HostCommand::Request {
                    request,
                    shard,
                    what,
                } => self.route_host_request(id, Some(request), shard, what),
                HostCommand::Reply { ticket, outcome } => self.bank_answer(id, ticket, &outcome),
            }
        }
    }

    /// Sends a host (or bank) request to the leader `id`'s replica names, else anywhere.
    fn route_host_request(&mut self, id: u64, request: Option<u64>, shard: u32, what: HostRequest) {
        let core = shard as usize % self.cores;
        let hint = self.servers[(id - 1) as usize].cores[core]
            .engine
            .as_ref()
            .and_then(|e| e.replica(shard))
            .and_then(|r| r.leader());
        let to = hint.unwrap_or_else(|| self.rng.range(1, SERVERS));
        let write = !matches!(what, HostRequest::Read { .. });
        let step = matches!(what, HostRequest::Step(_));
        if let HostRequest::Step(Step::WriteStaging { meta, in_flight }) = &what {
            self.txn_trace.plan((*meta).into(), in_flight);
        }
        let boot = self.host_boots[(id - 1) as usize];
        let token = self.next_token;
        self.next_token += 1;
        self.host_routes.insert(
            token,
            HostRoute {
                host: id,
                boot,
                request,
                to,
                write,
            },
        );
        if !self.server(to).up || self.cut_off(id, to) {
            let error = ReplyError::Unavailable {
                reason: "unreachable".into(),
            };
            return self.answer(token, &Err(error));
        }
        let hlc = self.server(to).hlc.now();
        let input = what.into_input(token, shard, hlc);
        // Delivered at the end of the time unit (`deliver_host_requests`), never inside the
        // engine step whose answer caused it: a nested step of the same engine would hand
        // out a WAL batch before the outer step's batch is written.
        self.host_requests.push_back((to, core, input));
        // BUGGIFY: the coordinator's server dies right after it sent a step, at any step
        // of the protocol (intents, staging, commit, resolution, recovery). Deferred to the
        // end of the engine step being routed, as every crash inside a cascade is.
        if step && self.faults_on && self.server(id).up && self.rng.chance(10) {
            self.crash_after_step = Some(id);
        }
    }

    /// Runs the host requests queued this time unit (and those their answers queue), at
    /// most `HOST_REQUESTS_PER_STEP_MAX`; the rest wait for the next unit.
    pub(super) fn deliver_host_requests(&mut self) {
        for _ in 0..HOST_REQUESTS_PER_STEP_MAX {
            let Some((to, core, input)) = self.host_requests.pop_front() else {
                return;
            };
            if self.server(to).up {
                self.run(to, core, input);
            } else if let Some(token) = input_token(&input) {
                let error = ReplyError::UnknownOutcome;
                self.answer(token, &Err(error));
            }
        }
    }

    /// An answer for a host or bank request.
    pub(super) fn host_answer(&mut self, route: HostRoute, outcome: &Outcome) {
        let slot = (route.host - 1) as usize;
        if self.host_boots[slot] != route.boot || self.hosts[slot].is_none() {
            return; // for a host that crashed since
        }
        if let Err(ReplyError::Locked { holder }) = outcome {
            let shard = holder.anchor;
            self.host_step(
                route.host,
                HostInput::Push {
                    holder: *holder,
                    shard,
                },
            );
        }
        match route.request {
            Some(request) => {
                let input = HostInput::Answer {
                    request,
                    outcome: outcome.clone(),
                };
                self.host_step(route.host, input);
            }
            None => {
                if let Some(job) = self.bank_jobs.remove(&route.host) {
                    self.bank.done(&job.job, outcome);
                }
            }
        }
    }

    fn bank_answer(&mut self, id: u64, ticket: u64, outcome: &Outcome) {
        if self.bank_jobs.get(&id).is_none_or(|j| j.ticket != ticket) {
            return; // a ticket of a job the client gave up on when its server crashed
        }
        // Index 0: a cross-shard commit (a single-shard write names its log index).
        if let Ok(Answer::Written { index: 0, hlc, .. }) = outcome {
            self.acked_txns.push((id, *hlc));
            self.txn_trace.ack(id, *hlc);
        }
        let job = self.bank_jobs.remove(&id).expect("found above").job;
        self.bank.done(&job, outcome);
    }

    /// Each up server's bank client takes its next job.
    pub(super) fn bank_clients(&mut self) {
        for id in 1..=SERVERS {
            if !self.server(id).up || self.bank_jobs.contains_key(&id) || !self.rng.chance(100) {
                continue;
            }
            let Some(job) = self.bank.next(id, &mut self.rng) else {
                continue;
            };
            self.next_ticket += 1;
            let ticket = self.next_ticket;
            if let Job::Read(i) = job {
                self.bank_jobs.insert(id, BankJob { job, ticket });
                let path = self.bank.account(i);
                let what = HostRequest::Read {
                    path: path.clone(),
                    target: ReadTarget::Prop("gold".into()),
                };
                let shard = self.bank.shard_of(&path);
                self.route_host_request(id, None, shard, what);
                continue;
            }
            let txn = self.bank.txn(&job);
            self.bank_jobs.insert(id, BankJob { job, ticket });
            let now = self.server(id).hlc.now();
            self.host_step(id, HostInput::Begin { ticket, txn, now });
        }
    }

    /// Ticks every up server's host.
    pub(super) fn host_ticks(&mut self, id: u64) {
        let now = self.server(id).hlc.now();
        self.host_step(id, HostInput::Tick { now });
    }

    /// The leader of `shard` with the highest term, if it committed an entry of that term
    /// and applied everything it committed.
    fn settled_leader(&self, shard: u32) -> Option<&treesync_core::replica::Replica> {
        let core = shard as usize % self.cores;
        let leader = self
            .servers
            .iter()
            .filter(|s| s.up)
            .filter_map(|s| s.cores[core].engine.as_ref()?.replica(shard))
            .filter(|r| r.is_leader())
            .max_by_key(|r| r.term())?;
        let view = leader.raft_view();
        let at = view.commit.checked_sub(view.first_index)? as usize;
        let committed_in_term = view.log_terms.get(at) == Some(&view.term);
        (committed_in_term && leader.applied_index() == view.commit).then_some(leader)
    }

    /// The leader replica of `shard`, if any.
    pub(super) fn leader_replica(&self, shard: u32) -> Option<&treesync_core::replica::Replica> {
        let leader = self.leader_of(shard)?;
        self.servers[(leader - 1) as usize].cores[shard as usize % self.cores]
            .engine
            .as_ref()?
            .replica(shard)
    }

    /// I2 over both worlds (every dentry's entity is in its shard, no entity without its
    /// dentry), and each churned entity where its acknowledged moves put it, whole.
    fn spine_checks(&self) -> Option<String> {
        let limits = Limits::default();
        let node = |p: &str| treesync_core::NodePath::parse(p, &limits).expect("valid");
        let spine = self.leader_replica(0)?;
        for world in [WORLD, crate::bank::VAULT] {
            let dentries: Vec<String> = spine
                .tree()
                .get(&node(world))
                .map(|w| w.children().map(|c| c.name().to_owned()).collect())
                .unwrap_or_default();
            for name in &dentries {
                let path = format!("{world}/{name}");
                let shard = self.bank.shard_of(&path);
                let whole = self
                    .leader_replica(shard)
                    .is_some_and(|r| r.tree().get(&node(&path)).is_some());
                if !whole {
                    return Some(format!(
                        "bank: I2: dentry {path} has no entity in shard {shard}"
                    ));
                }
            }
            for shard in 1..self.shards {
                let Some(replica) = self.leader_replica(shard) else {
                    continue;
                };
                let Some(w) = replica.tree().get(&node(world)) else {
                    continue;
                };
                if let Some(orphan) = w
                    .children()
                    .find(|c| !dentries.iter().any(|d| d == c.name()))
                {
                    return Some(format!(
                        "bank: I2: {world}/{} in shard {shard} has no dentry",
                        orphan.name()
                    ));
                }
            }
        }
        for (name, world) in self.bank.churned() {
            for w in [WORLD, crate::bank::VAULT] {
                let path = format!("{w}/{name}");
                let shard = self.bank.shard_of(&path);
                let here = self
                    .leader_replica(shard)
                    .and_then(|r| r.tree().get(&node(&path)).map(|n| n.children().count()));
                match (world == Some(w), here) {
                    (true, Some(1)) | (false, None) => {}
                    (true, found) => {
                        return Some(format!(
                            "moves: {path} should be there with its child, found {found:?}"
                        ))
                    }
                    (false, Some(_)) => return Some(format!("moves: {path} should not be there")),
                }
            }
        }
        None
    }

    /// After every step: whenever no shard's leader holds an intent, every transfer is
    /// wholly applied or not at all on the leaders, so the leaders' trees are a consistent
    /// cut and the bank's total must be what it was at the start.
    pub(super) fn bank_cut_check(&mut self) {
        if !self.bank.ready() || self.observer.violation.is_some() {
            return;
        }
        // Only a leader that committed in its term and applied all it committed shows every
        // committed change of its shard (a stale or brand-new leader may lag).
        let Some(leaders) = (0..self.shards)
            .map(|s| self.settled_leader(s))
            .collect::<Option<Vec<_>>>()
        else {
            return;
        };
        let mut total = 0;
        for i in 0..ACCOUNTS {
            let path = self.bank.account(i);
            let shard = self.bank.shard_of(&path);
            let node = treesync_core::NodePath::parse(&path, &Limits::default()).expect("valid");
            let replica = leaders[shard as usize];
            match replica
                .tree()
                .get(&node)
                .and_then(|n| n.prop("gold").cloned())
            {
                Some(treesync_core::Value::Int(g)) => total += g,
                _ => return, // not created on this leader yet
            }
        }
        let quiet = leaders.iter().all(|r| r.txn_tables().intents.is_empty());
        if quiet && total != GOLD * i64::from(ACCOUNTS) {
            let why = format!("bank: the total is {total} in a cut with no intent (after a step)");
            self.observer.violation = Some(why);
        }
    }

    /// After healing: readers meet every leftover intent (an up server's host pushes them) until
    /// none is left; then the bank's total, I1/I2 of its accounts and every acknowledged
    /// transfer's commit are checked.
    pub(super) fn bank_checks(&mut self) -> Option<String> {
        for _ in 0..40 {
            let leftovers: Vec<(treesync_core::txn::TxnMeta, u32)> = (0..self.shards)
                .filter_map(|s| Some((s, self.leader_replica(s)?)))
                .flat_map(|(s, r)| {
                    r.txn_tables()
                        .intents
                        .intents()
                        .map(move |i| (i.meta, s))
                        .collect::<Vec<_>>()
                })
                .collect();
            if leftovers.is_empty() && self.hosts.iter().flatten().all(|h| h.in_flight() == 0) {
                break;
            }
            let Some(reader) = (1..=SERVERS).find(|id| self.hosts[(*id - 1) as usize].is_some())
            else {
                return Some("liveness: no server is up after healing".into());
            };
            for (holder, shard) in leftovers {
                self.host_step(reader, HostInput::Push { holder, shard });
            }
            for _ in 0..50 {
                self.step(false);
            }
        }
        for shard in 0..self.shards {
            let Some(replica) = self.leader_replica(shard) else {
                continue;
            };
            if let Some(intent) = replica.txn_tables().intents.intents().next() {
                let record = self
                    .leader_replica(intent.meta.anchor)
                    .and_then(|r| r.txn_tables().records.get(&intent.meta.id).cloned());
                return Some(format!(
                    "bank: intent of {} (anchor {}) left on shard {shard} after healing; record {record:?}",
                    intent.meta.id, intent.meta.anchor
                ));
            }
        }
        if !self.bank.ready() {
            return None; // the run ended before the accounts existed: nothing to check
        }
        // A leadership hand-over may be under way (a transfer to a follower one entry
        // behind fails and a new election follows): let it finish before reading.
        self.await_leaders();
        // A leadership hand-over may be under way (a transfer to a follower one entry
        // behind fails and a new election follows): let it finish before reading.
        self.await_leaders();
        let mut total = 0;
        for i in 0..ACCOUNTS {
            let path = self.bank.account(i);
            let shard = self.bank.shard_of(&path);
            let Some(replica) = self.leader_replica(shard) else {
                return Some(format!("bank: shard {shard} has no leader"));
            };
            let node = treesync_core::NodePath::parse(&path, &Limits::default()).expect("valid");
            match replica
                .tree()
                .get(&node)
                .and_then(|n| n.prop("gold").cloned())
            {
                Some(treesync_core::Value::Int(g)) => total += g,
                other => return Some(format!("bank: I2: {path} in shard {shard} holds {other:?}")),
            }
            let spine = self.leader_replica(0)?;
            if spine.tree().get(&node).is_none() {
                return Some(format!("bank: I2: {path} has no dentry in the spine"));
            }
        }
        if let Some(violation) = self.spine_checks() {
            return Some(violation);
        }
        if total != GOLD * i64::from(ACCOUNTS) {
            return Some(format!(
                "bank: the total is {total}, not {}",
                GOLD * i64::from(ACCOUNTS)
            ));
        }
        for (node, ts) in self.acked_txns.clone() {
            let committed = (0..self.shards).any(|s| {
                self.leader_replica(s).is_some_and(|r| {
                    r.txn_tables().records.records().any(|rec| {
                        rec.meta.id.node == node
                            && rec.meta.ts == ts
                            && rec.status == Status::Committed
                    })
                })
            });
            if !committed {
                return Some(format!(
                    "AckImpliesCommit: server {node}'s transfer at {ts} was acknowledged, its record is not committed"
                ));
            }
        }
        let _ = WORLD;
        None
    }
}
