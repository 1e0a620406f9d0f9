//! One transaction's coordinator (leader-local, on the core that took the request): the
//! parallel-commit driver of `specs/ParallelCommit.tla`.
//!
//! It asks for every participant's intent and the anchor's STAGING record at once
//! (`WriteIntent`, `WriteStaging`), answers the client as soon as all of them are written
//! (`Ack`: implicitly committed, one consensus round), then makes the record COMMITTED
//! (`MakeExplicit`), resolves every intent (`Resolve`) and drops the record. A refused intent
//! or record aborts it (`AbortSelf`) and resolves what was written. It heartbeats the record
//! while undecided. The engine executes its commands as log proposals on the named shards
//! and feeds back what they returned.
//!
//! # Invariants
//! - `AckImpliesCommit`: `Reply(Committed)` is emitted only when the STAGING record and every
//!   intent were written, at most once, and never after an abort was asked.
//! - Every command is bounded: a command whose outcome was lost is resent at most
//!   `RESENDS_MAX` times (all are idempotent), then the coordinator gives up and leaves the
//!   transaction to recovery; a refused intent waits at most `WAITS_MAX` times.
//! - Wait-die: it waits only for a younger holder; meeting an older one it aborts, so no
//!   cycle of waiting transactions forms (`BreakDeadlock` in the spec).
//! - `ImplicitCommitIsFinal`: a refusal counts towards an abort only if it is final, i.e.
//!   no other copy of that intent can still land. A copy whose outcome was lost (a
//!   deadline, a leader change) may still be in a log or a queue and apply after a later
//!   copy was refused (a leader refuses a copy below its closed timestamp before the
//!   earlier one applied, say). Aborting then could abort a transaction whose STAGING
//!   record and every intent are written: implicitly committed. So a refusal of such a
//!   shard is first checked with `QueryIntent`, which finds the intent or prevents it for
//!   good (as recovery does); found, it counts as written. This rests on one copy per
//!   shard in flight at a time: copies are sent at start, after a lost outcome, and after
//!   an `Unblocked` for a shard that waits (`waiting`), each after the previous answered.
//! - It ends (`is_done`) only after the record is forgotten or it gave up.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use super::intents::{Check, IntentRefusal};
use super::record::{RecordRefusal, Status};
use super::TxnMeta;
use crate::hlc::Timestamp;
use crate::op::Txn;
use crate::tree::TreeError;

/// Resends of a command whose outcome was lost before the coordinator gives up (with the
/// host's `RESEND_TICKS` between them: about a second, more than an election takes).
pub const RESENDS_MAX: u32 = 20;
/// Times one intent may wait for a conflicting transaction before this one aborts.
pub const WAITS_MAX: u32 = 20;

/// A proposal the engine makes for the coordinator (each is idempotent).
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    WriteIntent {
        shard: u32,
        meta: TxnMeta,
        txn: Txn,
    },
    WriteStaging {
        meta: TxnMeta,
        in_flight: Vec<u32>,
    },
    Heartbeat {
        meta: TxnMeta,
    },
    MakeExplicit {
        meta: TxnMeta,
    },
    Abort {
        meta: TxnMeta,
    },
    Resolve {
        shard: u32,
        meta: TxnMeta,
        commit: bool,
    },
    Forget {
        meta: TxnMeta,
    },
    /// Is our intent on `shard`? If not, prevent it (a lost copy can land no more).
    QueryIntent {
        shard: u32,
        meta: TxnMeta,
    },
    /// Wait until `holder` (whose intent refused ours on `shard`) is resolved, pushing it
    /// as the wait queue decides; then feed back `Unblocked { shard }`.
    Wait {
        shard: u32,
        holder: TxnMeta,
    },
    /// The client's answer (emitted once).
    Reply(TxnReply),
}

/// What the client is told.
#[derive(Clone, Debug, PartialEq)]
pub enum TxnReply {
    Committed {
        ts: Timestamp,
    },
    /// Nothing was applied; the refusal says why.
    Aborted {
        shard: u32,
        refusal: IntentRefusal,
    },
    /// Nothing was applied; the record was refused (or aborted by a pusher).
    RecordRefused(RecordRefusal),
    /// The coordinator gave up before a decision: recovery decides it later.
    Unknown,
}

/// What a proposal returned (or that it was lost).
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    IntentWritten {
        shard: u32,
    },
    IntentRefused {
        shard: u32,
        refusal: IntentRefusal,
    },
    StagingWritten,
    StagingRefused(RecordRefusal),
    HeartbeatDone(Result<(), RecordRefusal>),
    Explicit(Result<(), RecordRefusal>),
    Aborted(Result<(), RecordRefusal>),
    Resolved {
        shard: u32,
    },
    Forgotten,
    /// `QueryIntent`'s answer.
    IntentQueried {
        shard: u32,
        check: Check,
    },
    /// The conflicting transaction `Wait` named is resolved: try the intent again.
    Unblocked {
        shard: u32,
    },
    /// The outcome of `command` is unknown (deadline, leader change): resend it.
    Lost(Command),
    /// Time passed (log-free: the coordinator's own clock): heartbeat when due.
    Tick {
        now: Timestamp,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    Writing,
    /// Acked; COMMITTED being written.
    Committing,
    /// Aborting; ABORTED being written.
    Aborting,
    Resolving {
        commit: bool,
    },
    Forgetting,
    Done,
}

/// One cross-shard transaction's coordinator.
#[derive(Debug)]
pub struct Coordinator {
    meta: TxnMeta,
    parts: Vec<(u32, Txn)>,
    phase: Phase,
    written: BTreeSet<u32>,
    staged: bool,
    replied: bool,
    unresolved: BTreeSet<u32>,
    resends: u32,
    waits: u32,
    last_heartbeat: Timestamp,
    abort_reply: Option<TxnReply>,
    /// Refused intents while others are still unanswered: the abort waits for them so the
    /// client hears the reason a single tree would give (a failed precondition first).
    /// Only final refusals (see `ImplicitCommitIsFinal` in the module doc).
    refused: Vec<(u32, IntentRefusal)>,
    /// Shards one of whose intent copies had its outcome lost: it may still land.
    uncertain: BTreeSet<u32>,
    /// Refusals of uncertain shards whose `QueryIntent` is out: counted (as this refusal)
    /// once it prevented the intent, or dropped if it found it.
    querying: BTreeMap<u32, IntentRefusal>,
    /// Shards whose refused intent waits for its holder (`Command::Wait`): no copy of it is
    /// in flight until `Unblocked` resends it.
    waiting: BTreeSet<u32>,
    /// Test-only must-fail twin: answer once the record is staged, without waiting for the
    /// intents (the injected bug "implicit commit without all intents").
    ack_without_intents: bool,
    /// Test-only must-fail twin: every refusal is final (the injected bug "trust refusals":
    /// a lost copy's shard is not queried before the abort).
    trust_refusals: bool,
}

impl Coordinator {
    /// Starts `parts` (shard → its ops, each shard once) at `meta`, emitting every intent
    /// and the STAGING record at once.
    pub fn start(meta: TxnMeta, parts: Vec<(u32, Txn)>, out: &mut Vec<Command>) -> Coordinator {
        let shards: BTreeSet<u32> = parts.iter().map(|(s, _)| *s).collect();
        assert_eq!(shards.len(), parts.len(), "one part per shard");
        assert!(
            shards.len() >= 2,
            "a single-shard transaction takes the one-entry path"
        );
        for (shard, txn) in &parts {
            out.push(Command::WriteIntent {
                shard: *shard,
                meta,
                txn: txn.clone(),
            });
        }
        out.push(Command::WriteStaging {
            meta,
            in_flight: shards.iter().copied().collect(),
        });
        Coordinator {
            meta,
            parts,
            phase: Phase::Writing,
            written: BTreeSet::new(),
            staged: false,
            replied: false,
            unresolved: shards,
            resends: 0,
            waits: 0,
            last_heartbeat: meta.ts,
            abort_reply: None,
            refused: Vec::new(),
            uncertain: BTreeSet::new(),
            querying: BTreeMap::new(),
            waiting: BTreeSet::new(),
            ack_without_intents: false,
            trust_refusals: false,
        }
    }

    /// The injected bug: acknowledge before every intent is written.
    pub fn inject_ack_without_intents(&mut self) {
        self.ack_without_intents = true;
    }

    /// The injected bug: take every refusal as final.
    pub fn inject_trust_refusals(&mut self) {
        self.trust_refusals = true;
    }

    pub fn meta(&self) -> TxnMeta {
        self.meta
    }

    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Whether the client was answered.
    pub fn replied(&self) -> bool {
        self.replied
    }

    pub fn step(&mut self, event: Event, out: &mut Vec<Command>) {
        match event {
            Event::IntentWritten { shard } if self.phase == Phase::Writing => {
                self.intent_written(shard, out);
            }
            Event::IntentQueried { shard, check } if self.phase == Phase::Writing => {
                self.queried(shard, check, out);
            }
            Event::StagingWritten if self.phase == Phase::Writing => {
                self.staged = true;
                self.maybe_ack(out);
            }
            Event::IntentRefused { shard, refusal } if self.phase == Phase::Writing => {
                self.refused(shard, refusal, out);
            }
            Event::StagingRefused(refusal) if self.phase == Phase::Writing => {
                self.abort_self(TxnReply::RecordRefused(refusal), out);
            }
            // Only a shard that waits gets a new copy: a stale `Unblocked` (of an earlier
            // attempt on the same host ticket) must not put a second copy in flight beside
            // one whose refusal would then look final.
            Event::Unblocked { shard }
                if self.phase == Phase::Writing && self.waiting.remove(&shard) =>
            {
                out.push(self.intent_command(shard));
            }
            Event::Explicit(result) => self.explicit(result, out),
            Event::Aborted(result) => self.aborted(result, out),
            Event::Resolved { shard } => self.resolved(shard, out),
            Event::Forgotten if self.phase == Phase::Forgetting => self.phase = Phase::Done,
            // A pusher aborted it: only an abort is possible before our ack.
            Event::HeartbeatDone(Err(RecordRefusal::Decided { status, .. }))
                if self.phase == Phase::Writing && status == Status::Aborted =>
            {
                let refusal = RecordRefusal::Decided {
                    txn: self.meta.id,
                    status,
                };
                self.abort_self(TxnReply::RecordRefused(refusal), out);
            }
            Event::Lost(command) => self.resend(command, out),
            Event::Tick { now } => self.tick(now, out),
            // Late answers of an earlier phase (a resend's twin) change nothing.
            _ => {}
        }
    }

    fn intent_written(&mut self, shard: u32, out: &mut Vec<Command>) {
        assert!(self.unresolved.contains(&shard), "{shard} is a participant");
        self.written.insert(shard);
        // A copy landed: a refusal of another copy being queried is moot.
        self.querying.remove(&shard);
        debug_assert!(
            self.refused.iter().all(|(s, _)| *s != shard),
            "a final refusal means no copy lands"
        );
        self.maybe_ack(out);
        self.maybe_abort_refused(out);
    }

    /// `QueryIntent`'s answer for an uncertain shard's refusal: found, it is written;
    /// prevented, the refusal is final.
    fn queried(&mut self, shard: u32, check: Check, out: &mut Vec<Command>) {
        let Some(refusal) = self.querying.remove(&shard) else {
            return; // a copy landed meanwhile (or a resent query's twin)
        };
        self.uncertain.remove(&shard);
        match check {
            Check::Found => self.intent_written(shard, out),
            Check::Prevented => self.refused_finally(shard, refusal, out),
        }
    }

    fn intent_command(&self, shard: u32) -> Command {
        let (_, txn) = self
            .parts
            .iter()
            .find(|(s, _)| *s == shard)
            .expect("a participant");
        Command::WriteIntent {
            shard,
            meta: self.meta,
            txn: txn.clone(),
        }
    }

    /// Whether this transaction is older than `other` (lower timestamp, then lower id).
    fn older_than(&self, other: &TxnMeta) -> bool {
        (self.meta.ts, self.meta.id) < (other.ts, other.id)
    }

    /// `Ack(t)`: staged and every intent written.
    fn maybe_ack(&mut self, out: &mut Vec<Command>) {
        let intents_written = self.written.len() == self.parts.len() || self.ack_without_intents;
        if !self.staged || !intents_written {
            return;
        }
        assert!(!self.replied, "acked once");
        self.replied = true;
        out.push(Command::Reply(TxnReply::Committed { ts: self.meta.ts }));
        self.phase = Phase::Committing;
        out.push(Command::MakeExplicit { meta: self.meta });
    }

    fn refused(&mut self, shard: u32, refusal: IntentRefusal, out: &mut Vec<Command>) {
        match refusal {
            // Wait-die: an older transaction waits for a younger holder; a younger one gives
            // up at once (and is retried), so every wait goes from older to younger and no
            // cycle of waits can form (the spec's `BreakDeadlock`: the youngest gives up).
            IntentRefusal::Locked { holder }
                if self.waits < WAITS_MAX && self.older_than(&holder) =>
            {
                self.waits += 1;
                self.waiting.insert(shard);
                out.push(Command::Wait { shard, holder });
            }
            // Another copy may still land: find it or prevent it first.
            refusal if self.uncertain.contains(&shard) && !self.trust_refusals => {
                if let Entry::Vacant(querying) = self.querying.entry(shard) {
                    querying.insert(refusal);
                    out.push(Command::QueryIntent {
                        shard,
                        meta: self.meta,
                    });
                }
            }
            refusal => {
                self.uncertain.remove(&shard); // (only the injected bug gets here uncertain)
                self.refused_finally(shard, refusal, out)
            }
        }
    }

    /// A refusal no copy of the intent can outlive.
    fn refused_finally(&mut self, shard: u32, refusal: IntentRefusal, out: &mut Vec<Command>) {
        debug_assert!(!self.uncertain.contains(&shard), "final only when certain");
        self.refused.retain(|(s, _)| *s != shard);
        self.refused.push((shard, refusal));
        self.maybe_abort_refused(out);
    }

    /// Aborts once a precondition failed, or once every intent answered with at least one
    /// refusal; the reason is a failed precondition if any, else a timestamp refusal if any
    /// (the host retries higher, and the retry decides the rest), else the lowest shard's.
    /// Without the second rule a part refused for its timestamp and another rejected for
    /// a reason a retry would have reported differently (a precondition that fails at the
    /// later timestamp) answered with the latter: `tests/gateway.rs` met it under load.
    fn maybe_abort_refused(&mut self, out: &mut Vec<Command>) {
        if self.phase != Phase::Writing || self.refused.is_empty() {
            return;
        }
        let precondition = |r: &IntentRefusal| {
            matches!(
                r,
                IntentRefusal::Rejected(TreeError::PreconditionFailed { .. })
            )
        };
        let answered = self.written.len() + self.refused.len() == self.parts.len();
        self.refused.sort_by_key(|(s, _)| *s);
        let failed = self.refused.iter().position(|(_, r)| precondition(r));
        if failed.is_none() && !answered {
            return;
        }
        let too_low = |r: &IntentRefusal| {
            matches!(
                r,
                IntentRefusal::BelowClosed { .. } | IntentRefusal::TooOld { .. }
            )
        };
        let retry = self.refused.iter().position(|(_, r)| too_low(r));
        let (shard, refusal) = self.refused.swap_remove(failed.or(retry).unwrap_or(0));
        self.abort_self(TxnReply::Aborted { shard, refusal }, out);
    }

    /// `AbortSelf(t)`.
    fn abort_self(&mut self, reply: TxnReply, out: &mut Vec<Command>) {
        assert!(!self.replied, "an acked transaction is never aborted");
        self.abort_reply = Some(reply);
        self.phase = Phase::Aborting;
        out.push(Command::Abort { meta: self.meta });
    }

    fn explicit(&mut self, result: Result<(), RecordRefusal>, out: &mut Vec<Command>) {
        if self.phase != Phase::Committing {
            return;
        }
        if let Err(refusal) = result {
            // AckImpliesCommit: recovery of an implicitly committed txn commits it.
            let committed = matches!(
                refusal,
                RecordRefusal::Decided {
                    status: Status::Committed,
                    ..
                }
            );
            assert!(
                committed,
                "acked {} but its record says {refusal}",
                self.meta.id
            );
        }
        self.resolve_all(true, out);
    }

    fn aborted(&mut self, result: Result<(), RecordRefusal>, out: &mut Vec<Command>) {
        if self.phase != Phase::Aborting {
            return;
        }
        let reply = self.abort_reply.take().expect("aborting with a reason");
        match result {
            Ok(())
            | Err(RecordRefusal::Decided {
                status: Status::Aborted,
                ..
            }) => {
                self.answer(reply, out);
                self.resolve_all(false, out);
            }
            // Recovery found every write and committed it before our abort: it committed.
            Err(RecordRefusal::Decided {
                status: Status::Committed,
                ..
            }) => {
                self.answer(TxnReply::Committed { ts: self.meta.ts }, out);
                self.resolve_all(true, out);
            }
            Err(other) => panic!("aborting {}: unexpected {other}", self.meta.id),
        }
    }

    fn answer(&mut self, reply: TxnReply, out: &mut Vec<Command>) {
        if !self.replied {
            self.replied = true;
            out.push(Command::Reply(reply));
        }
    }

    fn resolve_all(&mut self, commit: bool, out: &mut Vec<Command>) {
        self.phase = Phase::Resolving { commit };
        for shard in &self.unresolved {
            out.push(Command::Resolve {
                shard: *shard,
                meta: self.meta,
                commit,
            });
        }
    }

    fn resolved(&mut self, shard: u32, out: &mut Vec<Command>) {
        if !matches!(self.phase, Phase::Resolving { .. }) {
            return;
        }
        self.unresolved.remove(&shard);
        if self.unresolved.is_empty() {
            self.phase = Phase::Forgetting;
            out.push(Command::Forget { meta: self.meta });
        }
    }

    /// Whether `command` still belongs to the current phase (a lost intent must not be
    /// resent once the transaction is aborting, say).
    fn is_current(&self, command: &Command) -> bool {
        match (&self.phase, command) {
            (Phase::Writing, Command::WriteIntent { shard, .. }) => !self.written.contains(shard),
            (Phase::Writing, Command::QueryIntent { shard, .. }) => {
                self.querying.contains_key(shard)
            }
            (Phase::Writing, Command::WriteStaging { .. }) => !self.staged,
            (Phase::Committing, Command::MakeExplicit { .. }) => true,
            (Phase::Aborting, Command::Abort { .. }) => true,
            (Phase::Resolving { .. }, Command::Resolve { shard, .. }) => {
                self.unresolved.contains(shard)
            }
            (Phase::Forgetting, Command::Forget { .. }) => true,
            _ => false,
        }
    }

    fn resend(&mut self, command: Command, out: &mut Vec<Command>) {
        if let Command::WriteIntent { shard, .. } = &command {
            // Whatever happens to this copy is unknown: it may land after any later one.
            if !self.written.contains(shard) {
                self.uncertain.insert(*shard);
            }
        }
        if !self.is_current(&command) {
            return;
        }
        if self.resends >= RESENDS_MAX {
            // Give up: the record (if any) expires and a pusher recovers the transaction.
            self.answer(TxnReply::Unknown, out);
            self.phase = Phase::Done;
            return;
        }
        self.resends += 1;
        out.push(command);
    }

    fn tick(&mut self, now: Timestamp, out: &mut Vec<Command>) {
        let undecided = matches!(self.phase, Phase::Writing | Phase::Committing);
        let due = super::after_ms(self.last_heartbeat, super::HEARTBEAT_INTERVAL_MS);
        if undecided && now >= due {
            self.last_heartbeat = now;
            out.push(Command::Heartbeat { meta: self.meta });
        }
    }
}

#[cfg(test)]
#[path = "coordinator_test.rs"]
mod tests;
