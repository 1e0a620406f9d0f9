//! The transaction host of one server (leader-local, not replicated): plans each client
//! transaction over the spine and entity shards, runs its one-entry fast path or its
//! parallel commit (`Coordinator`), waits on and pushes conflicting transactions, and runs
//! recovery for the expired ones it meets (`Recovery`). The coordinator actor of DESIGN.md:
//! a pure machine whose requests the runtime (or the simulator) routes to the shards'
//! leaders and whose answers it feeds back.
//!
//! # Invariants
//! - Every `Begin` is answered by exactly one `Reply` (bounded: retries, waits and resends
//!   all have maxima; past them the answer says what happened or that it is unknown).
//! - A client is told "written" for a cross-shard transaction only when its coordinator
//!   acknowledged it (`AckImpliesCommit` is the coordinator's).
//! - At most `HOSTED_MAX` transactions are in flight; more are refused `Unavailable`.

use std::collections::BTreeMap;

use super::coordinator::{self, Coordinator, TxnReply};
use super::intents::IntentRefusal;
use super::record::RecordRefusal;
use super::recovery::{self, Recovery};
use super::split::{plan, reads_needed, Plan, PlanError};
use super::step::{Step, StepOutcome};
use super::{TxnId, TxnMeta};
use crate::api::{Answer, Outcome, ReplyError};
use crate::hlc::Timestamp;
use crate::op::Txn;
use crate::replica::ReadTarget;
use crate::shard::ShardMap;
use crate::tree::TreeError;
use crate::value::Value;
use crate::Limits;

/// Transactions one host runs at once.
pub const HOSTED_MAX: usize = 10_000;
/// Whole-transaction retries after a clean abort (a newer write, a pusher's abort).
pub const RETRIES_MAX: u32 = 8;
/// Ticks between polls of a lock holder (the coordinator's `WAITS_MAX` bounds them).
pub const WAIT_TICKS: u64 = 2;
/// Ticks a waiter waits before it pushes the holder (recovery acts only on an expired
/// one). A transaction waits only for younger holders (wait-die, `coordinator`).
pub const PUSH_TICKS: u64 = 10;
/// Ticks before a lost request is resent (a leader election is usually over by then).
pub const RESEND_TICKS: u64 = 5;

/// What the host asks a shard's leader.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// A linearizable read at `path` (the planner reads subtrees).
    Read {
        path: String,
        target: ReadTarget,
    },
    /// A single-shard transaction (the one-entry fast path).
    Propose(Txn),
    Step(Step),
}

impl Request {
    /// The engine input that runs this request on `shard`'s replica (`hlc`: the process
    /// clock, for proposals), answered under `token`.
    pub fn into_input(self, token: u64, shard: u32, hlc: Timestamp) -> crate::engine::Input {
        use crate::engine::Input;
        match self {
            Request::Read { path, target } => Input::Read {
                token,
                shard,
                path,
                target,
            },
            Request::Propose(txn) => Input::Propose {
                token,
                shard,
                txn,
                hlc,
            },
            Request::Step(step) => Input::Step {
                token,
                shard,
                step,
                hlc,
            },
        }
    }
}

#[derive(Debug)]
pub enum HostInput {
    /// A client's transaction; `now` is the process clock's reading (it becomes the
    /// transaction's timestamp and, with this server's id, its identity).
    Begin {
        ticket: u64,
        txn: Txn,
        now: Timestamp,
    },
    /// The answer to `request`.
    Answer {
        request: u64,
        outcome: Outcome,
    },
    /// A plain write or read met `holder`'s intent on `shard`: push it if it is expired.
    Push {
        holder: TxnMeta,
        shard: u32,
    },
    Tick {
        now: Timestamp,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum HostCommand {
    Request {
        request: u64,
        shard: u32,
        what: Request,
    },
    Reply {
        ticket: u64,
        outcome: Outcome,
    },
}

#[derive(Debug)]
enum Hosted {
    Reading {
        reads: BTreeMap<String, Option<Value>>,
        missing: usize,
    },
    Single {
        shard: u32,
        part: Txn,
    },
    Coordinating(Box<Coordinator>),
}

#[derive(Debug)]
struct Txnal {
    txn: Txn,
    ts: Timestamp,
    retries: u32,
    state: Hosted,
}

#[derive(Clone, Debug)]
enum Pending {
    Read {
        ticket: u64,
        path: String,
    },
    Single {
        ticket: u64,
    },
    Coord {
        ticket: u64,
        command: coordinator::Command,
    },
    Recov {
        txn: TxnId,
        command: recovery::Command,
    },
}

/// Something to do at a later tick.
#[derive(Debug)]
enum Later {
    /// Feed the coordinator this event.
    Coord(u64, coordinator::Event),
    /// Send the single-shard write again.
    Single(u64),
    /// Read again.
    Read(u64, String),
    /// Run a retried transaction.
    Restart(u64),
}

/// A deliberate bug for must-fail tests (the simulator's `--inject`): never set otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostBug {
    /// Recovery decides from the record alone, without checking the listed writes.
    RecoverySkipsChecks,
    /// The coordinator acknowledges once the record is staged, before every intent.
    AckWithoutIntents,
    /// The coordinator takes every refusal as final (no `QueryIntent` after a lost copy).
    TrustRefusals,
}

/// One server's transaction host.
pub struct TxnHost {
    bug: Option<HostBug>,
    map: ShardMap,
    limits: Limits,
    node: u64,
    /// Differs on every boot of the server: with `next_seq`, the identity of each of its
    /// transactions, never reused (a restarted host must not name a transaction as one
    /// of its previous life did: records outlive their coordinators).
    epoch: u32,
    next_seq: u32,
    ticks: u64,
    now: Timestamp,
    next_request: u64,
    txns: BTreeMap<u64, Txnal>,
    requests: BTreeMap<u64, Pending>,
    recoveries: BTreeMap<TxnId, Recovery>,
    later: Vec<(u64, Later)>,
    /// Holders someone waits on: when the wait began and whether it was pushed.
    waited: BTreeMap<TxnId, (TxnMeta, u32, u64)>,
}

impl TxnHost {
    /// `epoch` must differ on every boot of server `node` (a boot nonce).
    pub fn new(map: ShardMap, limits: Limits, node: u64, epoch: u32) -> TxnHost {
        TxnHost {
            bug: None,
            map,
            limits,
            node,
            epoch,
            next_seq: 0,
            ticks: 0,
            now: Timestamp::ZERO,
            next_request: 0,
            txns: BTreeMap::new(),
            requests: BTreeMap::new(),
            recoveries: BTreeMap::new(),
            later: Vec::new(),
            waited: BTreeMap::new(),
        }
    }

    /// Test-only: run with `bug` (see `HostBug`).
    pub fn inject(&mut self, bug: HostBug) {
        self.bug = Some(bug);
    }

    /// The transactions this host coordinates that are not decided yet (a crash of this
    /// server crashes their coordinators).
    pub fn coordinating(&self) -> Vec<TxnMeta> {
        self.txns
            .values()
            .filter_map(|t| match &t.state {
                Hosted::Coordinating(c) if !c.is_done() => Some(c.meta()),
                _ => None,
            })
            .collect()
    }

    pub fn in_flight(&self) -> usize {
        self.txns.len()
    }

    pub fn recoveries(&self) -> usize {
        self.recoveries.len()
    }

    pub fn step(&mut self, input: HostInput, out: &mut Vec<HostCommand>) {
        match input {
            HostInput::Begin { ticket, txn, now } => self.begin(ticket, txn, now, out),
            HostInput::Answer { request, outcome } => self.answer(request, outcome, out),
            HostInput::Push { holder, shard } => self.push(holder, shard, out),
            HostInput::Tick { now } => self.tick(now, out),
        }
    }

    fn request(&mut self, shard: u32, what: Request, pending: Pending, out: &mut Vec<HostCommand>) {
        self.next_request += 1;
        let request = self.next_request;
        self.requests.insert(request, pending);
        out.push(HostCommand::Request {
            request,
            shard,
            what,
        });
    }

    fn reply(&mut self, ticket: u64, outcome: Outcome, out: &mut Vec<HostCommand>) {
        let removed = self.txns.remove(&ticket);
        assert!(removed.is_some(), "ticket {ticket} answered once");
        out.push(HostCommand::Reply { ticket, outcome });
    }

    fn begin(&mut self, ticket: u64, txn: Txn, now: Timestamp, out: &mut Vec<HostCommand>) {
        self.now = self.now.max(now);
        if self.txns.len() >= HOSTED_MAX {
            let reason = format!("{HOSTED_MAX} transactions in flight on this server");
            out.push(HostCommand::Reply {
                ticket,
                outcome: Err(ReplyError::Unavailable { reason }),
            });
            return;
        }
        let reads = match reads_needed(&txn, &self.map, &self.limits) {
            Ok(reads) => reads,
            Err(e) => {
                out.push(HostCommand::Reply {
                    ticket,
                    outcome: Err(plan_error(e)),
                });
                return;
            }
        };
        let state = Hosted::Reading {
            reads: BTreeMap::new(),
            missing: reads.len(),
        };
        let ts = self.fresh_ts(now);
        self.txns.insert(
            ticket,
            Txnal {
                txn,
                ts,
                retries: 0,
                state,
            },
        );
        for path in reads {
            self.read(ticket, path, out);
        }
        self.maybe_plan(ticket, out);
    }

    /// A timestamp above every one this host handed out (it names the transaction too).
    fn fresh_ts(&mut self, at_least: Timestamp) -> Timestamp {
        let next = Timestamp::from_u64(self.now.as_u64() + 1);
        self.now = next.max(at_least);
        self.now
    }

    fn read(&mut self, ticket: u64, path: String, out: &mut Vec<HostCommand>) {
        let shard = match crate::path::NodePath::parse(&path, &self.limits) {
            Ok(p) => self.map.shard_of(&p).0,
            Err(_) => unreachable!("the planner asks only for valid paths"),
        };
        let what = Request::Read {
            path: path.clone(),
            target: ReadTarget::Subtree,
        };
        self.request(shard, what, Pending::Read { ticket, path }, out);
    }

    fn maybe_plan(&mut self, ticket: u64, out: &mut Vec<HostCommand>) {
        let Some(hosted) = self.txns.get(&ticket) else {
            return;
        };
        let Hosted::Reading { reads, missing: 0 } = &hosted.state else {
            return;
        };
        match plan(&hosted.txn, &self.map, &self.limits, reads) {
            Err(e) => self.reply(ticket, Err(plan_error(e)), out),
            Ok(plan) => self.run(ticket, plan, out),
        }
    }

    fn run(&mut self, ticket: u64, plan: Plan, out: &mut Vec<HostCommand>) {
        let hosted = self.txns.get_mut(&ticket).expect("planning a hosted txn");
        if let Some(shard) = plan.single_shard() {
            let part = plan.parts.into_iter().next().expect("one part").1;
            hosted.state = Hosted::Single {
                shard,
                part: part.clone(),
            };
            self.request(
                shard,
                Request::Propose(part),
                Pending::Single { ticket },
                out,
            );
            return;
        }
        let anchor = plan.parts.last().expect("two or more parts").0;
        // The commit timestamp is taken now, after the planning reads and any back-off, not
        // when the transaction arrived: its intents must reach each shard before that shard
        // closes the timestamp (`replica::closed`), which a read or a back-off could outlast.
        let planned = hosted.ts;
        let ts = self.fresh_ts(planned);
        self.next_seq = self
            .next_seq
            .checked_add(1)
            .expect("2^32 transactions per boot");
        let seq = u64::from(self.epoch) << 32 | u64::from(self.next_seq);
        let meta = TxnMeta {
            id: TxnId {
                node: self.node,
                seq,
            },
            ts,
            anchor,
        };
        let hosted = self.txns.get_mut(&ticket).expect("planning a hosted txn");
        hosted.ts = ts;
        let mut commands = Vec::new();
        let mut coordinator = Coordinator::start(meta, plan.parts, &mut commands);
        match self.bug {
            Some(HostBug::AckWithoutIntents) => coordinator.inject_ack_without_intents(),
            Some(HostBug::TrustRefusals) => coordinator.inject_trust_refusals(),
            _ => {}
        }
        hosted.state = Hosted::Coordinating(Box::new(coordinator));
        self.execute(ticket, commands, out);
    }

    /// Routes a coordinator's commands.
    fn execute(
        &mut self,
        ticket: u64,
        commands: Vec<coordinator::Command>,
        out: &mut Vec<HostCommand>,
    ) {
        use coordinator::Command as C;
        let mut replies = Vec::new();
        for command in commands {
            let (shard, step) = match &command {
                C::WriteIntent { shard, meta, txn } => (
                    *shard,
                    Step::WriteIntent {
                        meta: (*meta).into(),
                        txn: txn.clone(),
                    },
                ),
                C::WriteStaging { meta, in_flight } => (
                    meta.anchor,
                    Step::WriteStaging {
                        meta: (*meta).into(),
                        in_flight: in_flight.clone(),
                    },
                ),
                C::Heartbeat { meta } => (
                    meta.anchor,
                    Step::Heartbeat {
                        meta: (*meta).into(),
                    },
                ),
                C::MakeExplicit { meta } => (
                    meta.anchor,
                    Step::MakeExplicit {
                        meta: (*meta).into(),
                    },
                ),
                C::Abort { meta } => (
                    meta.anchor,
                    Step::AbortSelf {
                        meta: (*meta).into(),
                    },
                ),
                C::Resolve {
                    shard,
                    meta,
                    commit,
                } => (
                    *shard,
                    Step::Resolve {
                        meta: (*meta).into(),
                        commit: *commit,
                    },
                ),
                C::Forget { meta } => (
                    meta.anchor,
                    Step::Forget {
                        meta: (*meta).into(),
                    },
                ),
                C::QueryIntent { shard, meta } => (
                    *shard,
                    Step::QueryIntent {
                        meta: (*meta).into(),
                    },
                ),
                C::Wait { shard, holder } => {
                    let event = coordinator::Event::Unblocked { shard: *shard };
                    self.wait(*holder, *shard, Later::Coord(ticket, event), out);
                    continue;
                }
                C::Reply(reply) => {
                    replies.push(reply.clone());
                    continue;
                }
            };
            self.request(
                shard,
                Request::Step(step),
                Pending::Coord { ticket, command },
                out,
            );
        }
        let done = matches!(
            self.txns.get(&ticket).map(|h| &h.state),
            Some(Hosted::Coordinating(c)) if c.is_done()
        );
        // After the requests: a retry moves this coordinator to another ticket, and its
        // requests with it.
        for reply in replies {
            self.coordinator_replied(ticket, reply, done, out);
        }
        if done {
            self.txns.remove(&ticket);
        }
    }

    /// The client's answer from a coordinator (it may go on resolving afterwards).
    fn coordinator_replied(
        &mut self,
        ticket: u64,
        reply: TxnReply,
        done: bool,
        out: &mut Vec<HostCommand>,
    ) {
        let outcome = match reply {
            TxnReply::Committed { ts } => Ok(Answer::Written {
                index: 0,
                term: 0,
                hlc: ts,
            }),
            TxnReply::Aborted {
                refusal:
                    IntentRefusal::TooOld { existing, .. }
                    | IntentRefusal::BelowClosed {
                        closed: existing, ..
                    },
                ..
            } => {
                return self.retry(ticket, existing, out);
            }
            TxnReply::Aborted {
                refusal: IntentRefusal::Closed { .. },
                ..
            }
            | TxnReply::RecordRefused(_) => return self.retry(ticket, self.now, out),
            // Died (wait-die) or waited too long: push the holder (it may be abandoned),
            // then run again once it had time to finish.
            TxnReply::Aborted {
                refusal: IntentRefusal::Locked { holder },
                shard,
            } => {
                self.push(holder, shard, out);
                return self.retry(ticket, self.now, out);
            }
            TxnReply::Aborted {
                refusal: IntentRefusal::Rejected(e),
                ..
            } => Err(ReplyError::Rejected(e)),
            TxnReply::Aborted {
                refusal: IntentRefusal::Full { nodes, max },
                ..
            } => Err(ReplyError::Rejected(TreeError::TooManyNodes {
                count: nodes,
                max,
            })),
            TxnReply::Unknown => Err(ReplyError::UnknownOutcome),
        };
        out.push(HostCommand::Reply { ticket, outcome });
        // The coordinator lives on to resolve, under a ticket no client waits for.
        if !done {
            if let Some(hosted) = self.txns.remove(&ticket) {
                self.keep_resolving(hosted);
            }
        }
    }

    /// Runs an aborted transaction again, whole, above `above` (a fresh identity).
    fn retry(&mut self, ticket: u64, above: Timestamp, out: &mut Vec<HostCommand>) {
        let Some(old) = self.txns.remove(&ticket) else {
            return;
        };
        if old.retries >= RETRIES_MAX {
            let reason = format!("aborted {RETRIES_MAX} times by conflicting writes; retry later");
            out.push(HostCommand::Reply {
                ticket,
                outcome: Err(ReplyError::Unavailable { reason }),
            });
            // The aborted coordinator still resolves its intents: keep it under a new key.
            self.keep_resolving(old);
            return;
        }
        let ts = self.fresh_ts(Timestamp::from_u64(above.as_u64() + 1));
        let retries = old.retries + 1;
        let txn = old.txn.clone();
        self.keep_resolving(old);
        // Planned again after a back-off, longer each time: the transaction it lost to
        // needs time to finish.
        let state = Hosted::Reading {
            reads: BTreeMap::new(),
            missing: usize::MAX,
        };
        self.txns.insert(
            ticket,
            Txnal {
                txn,
                ts,
                retries,
                state,
            },
        );
        let due = self.ticks + WAIT_TICKS * u64::from(retries);
        self.later.push((due, Later::Restart(ticket)));
    }

    /// Issues a retried transaction's planning reads, or plans it.
    fn restart(&mut self, ticket: u64, out: &mut Vec<HostCommand>) {
        let Some(hosted) = self.txns.get_mut(&ticket) else {
            return;
        };
        let reads = reads_needed(&hosted.txn, &self.map, &self.limits).expect("planned before");
        hosted.state = Hosted::Reading {
            reads: BTreeMap::new(),
            missing: reads.len(),
        };
        for path in reads {
            self.read(ticket, path, out);
        }
        self.maybe_plan(ticket, out);
    }

    /// An answered or abandoned coordinator that still has intents to resolve runs on under
    /// a ticket no client waits for.
    fn keep_resolving(&mut self, old: Txnal) {
        let Hosted::Coordinating(c) = &old.state else {
            return;
        };
        if c.is_done() {
            return;
        }
        self.next_request += 1;
        let ticket = u64::MAX - self.next_request;
        let id = c.meta().id;
        for pending in self.requests.values_mut() {
            if let Pending::Coord { ticket: t, command } = pending {
                if command_txn(command) == Some(id) {
                    *t = ticket;
                }
            }
        }
        for (_, later) in &mut self.later {
            if let Later::Coord(t, event) = later {
                if matches!(event, coordinator::Event::Lost(c) if command_txn(c) == Some(id)) {
                    *t = ticket;
                }
            }
        }
        let previous = self.txns.insert(
            ticket,
            Txnal {
                retries: u32::MAX,
                ..old
            },
        );
        assert!(previous.is_none(), "resolver tickets are fresh");
    }

    fn answer(&mut self, request: u64, outcome: Outcome, out: &mut Vec<HostCommand>) {
        let Some(pending) = self.requests.remove(&request) else {
            return;
        };
        match pending {
            Pending::Read { ticket, path } => self.read_answered(ticket, path, outcome, out),
            Pending::Single { ticket } => self.single_answered(ticket, outcome, out),
            Pending::Coord { ticket, command } => {
                let event = coordinator_event(&command, outcome);
                let lost = matches!(event, coordinator::Event::Lost(_));
                if lost {
                    self.later
                        .push((self.ticks + RESEND_TICKS, Later::Coord(ticket, event)));
                } else {
                    self.feed(ticket, event, out);
                }
            }
            Pending::Recov { txn, command } => self.recovery_answered(txn, &command, outcome, out),
        }
    }

    fn feed(&mut self, ticket: u64, event: coordinator::Event, out: &mut Vec<HostCommand>) {
        let Some(Txnal {
            state: Hosted::Coordinating(c),
            ..
        }) = self.txns.get_mut(&ticket)
        else {
            return;
        };
        let mut commands = Vec::new();
        c.step(event, &mut commands);
        self.execute(ticket, commands, out);
    }

    fn read_answered(
        &mut self,
        ticket: u64,
        path: String,
        outcome: Outcome,
        out: &mut Vec<HostCommand>,
    ) {
        let value = match outcome {
            Ok(Answer::Value(value)) => value,
            Err(ReplyError::Rejected(TreeError::NotFound { .. })) => None,
            Err(ReplyError::Locked { holder }) => {
                let shard = holder.anchor;
                return self.wait(holder, shard, Later::Read(ticket, path), out);
            }
            Err(e) if retryable(&e) => {
                self.later
                    .push((self.ticks + RESEND_TICKS, Later::Read(ticket, path)));
                return;
            }
            Err(e) => return self.reply(ticket, Err(e), out),
            Ok(other) => unreachable!("a read answers a value, not {other:?}"),
        };
        let Some(Txnal {
            state: Hosted::Reading { reads, missing },
            ..
        }) = self.txns.get_mut(&ticket)
        else {
            return;
        };
        if reads.insert(path, value).is_none() {
            *missing -= 1;
        }
        self.maybe_plan(ticket, out);
    }

    fn single_answered(&mut self, ticket: u64, outcome: Outcome, out: &mut Vec<HostCommand>) {
        match outcome {
            Err(ReplyError::Locked { holder }) => {
                let Some(Txnal {
                    state: Hosted::Single { shard, .. },
                    ..
                }) = self.txns.get(&ticket)
                else {
                    return;
                };
                let shard = *shard;
                self.wait(holder, shard, Later::Single(ticket), out);
            }
            Err(ReplyError::NotLeader { .. } | ReplyError::Dropped) => {
                self.later
                    .push((self.ticks + RESEND_TICKS, Later::Single(ticket)));
            }
            outcome => self.reply(ticket, outcome, out),
        }
    }

    /// Waits on `holder` (polling every `WAIT_TICKS`; the waiter's own bound applies), and
    /// pushes it once it has been waited on for `PUSH_TICKS`.
    fn wait(&mut self, holder: TxnMeta, shard: u32, then: Later, out: &mut Vec<HostCommand>) {
        let entry = self
            .waited
            .entry(holder.id)
            .or_insert((holder, shard, self.ticks));
        let waited = self.ticks - entry.2;
        if waited >= PUSH_TICKS {
            entry.2 = self.ticks;
            self.push(holder, shard, out);
        }
        self.later.push((self.ticks + WAIT_TICKS, then));
    }

    /// Starts recovery of `holder` (met on `shard`) unless one runs; recovery itself tells
    /// a live holder from an expired one.
    fn push(&mut self, holder: TxnMeta, shard: u32, out: &mut Vec<HostCommand>) {
        if self.recoveries.contains_key(&holder.id) {
            return;
        }
        let mut commands = Vec::new();
        let mut recovery = Recovery::start(holder, shard, &mut commands);
        if self.bug == Some(HostBug::RecoverySkipsChecks) {
            recovery.inject_skip_checks();
        }
        self.recoveries.insert(holder.id, recovery);
        self.execute_recovery(holder.id, commands, out);
    }

    fn execute_recovery(
        &mut self,
        txn: TxnId,
        commands: Vec<recovery::Command>,
        out: &mut Vec<HostCommand>,
    ) {
        use recovery::Command as C;
        for command in commands {
            let (shard, step) = match &command {
                C::RecoverStart { meta } => (
                    meta.anchor,
                    Step::RecoverStart {
                        meta: (*meta).into(),
                    },
                ),
                C::RecoverCheck { shard, meta } => (
                    *shard,
                    Step::RecoverCheck {
                        meta: (*meta).into(),
                    },
                ),
                C::RecoverDecide { meta, all_found } => (
                    meta.anchor,
                    Step::RecoverDecide {
                        meta: (*meta).into(),
                        all_found: *all_found,
                    },
                ),
                C::Resolve {
                    shard,
                    meta,
                    commit,
                } => (
                    *shard,
                    Step::Resolve {
                        meta: (*meta).into(),
                        commit: *commit,
                    },
                ),
            };
            self.request(
                shard,
                Request::Step(step),
                Pending::Recov { txn, command },
                out,
            );
        }
        let finished = self
            .recoveries
            .get(&txn)
            .is_some_and(|r| r.outcome().is_some());
        if finished {
            self.recoveries.remove(&txn);
            self.waited.remove(&txn);
        }
    }

    fn recovery_answered(
        &mut self,
        txn: TxnId,
        command: &recovery::Command,
        outcome: Outcome,
        out: &mut Vec<HostCommand>,
    ) {
        let event = match (command, outcome) {
            (_, Ok(Answer::Step(StepOutcome::Started(start)))) => recovery::Event::Started(start),
            (
                recovery::Command::RecoverCheck { shard, .. },
                Ok(Answer::Step(StepOutcome::Checked(check))),
            ) => recovery::Event::Checked {
                shard: *shard,
                check,
            },
            (_, Ok(Answer::Step(StepOutcome::Decided(status)))) => recovery::Event::Decided(status),
            (_, Ok(Answer::Step(StepOutcome::RecordRefused(RecordRefusal::Missing { .. })))) => {
                recovery::Event::Forgotten
            }
            (recovery::Command::Resolve { shard, .. }, Ok(Answer::Step(StepOutcome::Resolved))) => {
                recovery::Event::Resolved { shard: *shard }
            }
            // Anything else (a lost step, a leader change): abandon; the next push restarts.
            _ => {
                self.recoveries.remove(&txn);
                return;
            }
        };
        let Some(recovery) = self.recoveries.get_mut(&txn) else {
            return;
        };
        let mut commands = Vec::new();
        recovery.step(event, &mut commands);
        self.execute_recovery(txn, commands, out);
    }

    fn tick(&mut self, now: Timestamp, out: &mut Vec<HostCommand>) {
        self.ticks += 1;
        self.now = self.now.max(now);
        let due: Vec<Later>;
        (due, self.later) = {
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.later)
                .into_iter()
                .partition(|(at, _)| *at <= self.ticks);
            (due.into_iter().map(|(_, l)| l).collect(), later)
        };
        for later in due {
            match later {
                Later::Coord(ticket, event) => self.feed(ticket, event, out),
                Later::Single(ticket) => {
                    let Some(Txnal {
                        state: Hosted::Single { shard, part },
                        ..
                    }) = self.txns.get(&ticket)
                    else {
                        continue;
                    };
                    let (shard, part) = (*shard, part.clone());
                    self.request(
                        shard,
                        Request::Propose(part),
                        Pending::Single { ticket },
                        out,
                    );
                }
                Later::Read(ticket, path) => {
                    if self.txns.contains_key(&ticket) {
                        self.read(ticket, path, out);
                    }
                }
                Later::Restart(ticket) => self.restart(ticket, out),
            }
        }
        let tickets: Vec<u64> = self.txns.keys().copied().collect();
        for ticket in tickets {
            self.feed(ticket, coordinator::Event::Tick { now }, out);
        }
    }
}

fn command_txn(command: &coordinator::Command) -> Option<TxnId> {
    use coordinator::Command as C;
    match command {
        C::WriteIntent { meta, .. }
        | C::WriteStaging { meta, .. }
        | C::Heartbeat { meta }
        | C::MakeExplicit { meta }
        | C::Abort { meta }
        | C::Resolve { meta, .. }
        | C::Forget { meta }
        | C::QueryIntent { meta, .. } => Some(meta.id),
        C::Wait { .. } | C::Reply(_) => None,
    }
}

/// Errors after which a request certainly did nothing and may simply be sent again.
fn retryable(error: &ReplyError) -> bool {
    matches!(
        error,
        ReplyError::NotLeader { .. } | ReplyError::Dropped | ReplyError::Unavailable { .. }
    )
}

/// What a step's answer means to the coordinator that asked.
fn coordinator_event(command: &coordinator::Command, outcome: Outcome) -> coordinator::Event {
    use coordinator::{Command as C, Event as E};
    let step = match outcome {
        Ok(Answer::Step(step)) => step,
        _ => return E::Lost(command.clone()),
    };
    let record = |step: StepOutcome| match step {
        StepOutcome::RecordDone => Ok(()),
        StepOutcome::RecordRefused(refusal) => Err(refusal),
        other => unreachable!("a record step answers a record outcome, not {other:?}"),
    };
    match command {
        C::WriteIntent { shard, .. } => match step {
            StepOutcome::IntentWritten => E::IntentWritten { shard: *shard },
            StepOutcome::IntentRefused(refusal) => E::IntentRefused {
                shard: *shard,
                refusal,
            },
            other => unreachable!("an intent answers an intent outcome, not {other:?}"),
        },
        C::WriteStaging { .. } => match record(step) {
            Ok(()) => E::StagingWritten,
            Err(refusal) => E::StagingRefused(refusal),
        },
        C::Heartbeat { .. } => E::HeartbeatDone(record(step)),
        C::MakeExplicit { .. } => E::Explicit(record(step)),
        C::Abort { .. } => E::Aborted(record(step)),
        C::Resolve { shard, .. } => E::Resolved { shard: *shard },
        C::Forget { .. } => E::Forgotten,
        C::QueryIntent { shard, .. } => match step {
            StepOutcome::Checked(check) => E::IntentQueried {
                shard: *shard,
                check,
            },
            other => unreachable!("a query answers a check, not {other:?}"),
        },
        C::Wait { .. } | C::Reply(_) => unreachable!("not sent to a shard"),
    }
}

fn plan_error(error: PlanError) -> ReplyError {
    match error {
        PlanError::InvalidPath { reason, .. } => ReplyError::InvalidPath { reason },
        PlanError::NotFound { path } => ReplyError::Rejected(TreeError::NotFound { path }),
        PlanError::Empty => ReplyError::BadRequest {
            reason: error.to_string(),
        },
        other => ReplyError::BadRequest {
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
#[path = "host_test.rs"]
mod tests;
