//! Transaction traces for validation against `specs/ParallelCommit.tla`
//! (`specs/ParallelCommitTrace.tla`): every parallel-commit step a shard applied, once per
//! log entry, as the spec action it is, plus the hosts' acknowledgements and coordinator
//! crashes. Keys are shards (one intent per transaction per shard); timestamps are ranks.
//!
//! Event → action: an applied intent `WriteIntent`; an intent refused for any reason but a
//! lock `WriteRefused` (a locked one waits: no action); an accepted STAGING record
//! `WriteStaging`; the client told committed `Ack`; a record turned COMMITTED or ABORTED
//! by its coordinator `MakeExplicit` / `AbortSelf` (a resent copy of a done step is not
//! an event); an intent applied or dropped `Resolve`; a server crash with the transaction
//! undecided `Crash`; recovery's answers `RecoverStart`, `RecoverCheck`, `RecoverDecide`
//! with their results; a coordinator's `QueryIntent` with its result. Heartbeats, expiry and pushes are not in the trace.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use treesync_core::replica::StepApplied;
use treesync_core::txn::intents::{Check, IntentRefusal};
use treesync_core::txn::record::{RecoveryStart, Status};
use treesync_core::txn::step::{Step, StepOutcome};
use treesync_core::txn::{TxnId, TxnMeta};

struct Event {
    kind: &'static str,
    txn: TxnId,
    key: Option<u32>,
    result: &'static str,
}

/// The recorder (see the module doc).
#[derive(Default)]
pub struct TxnTraceRecorder {
    seen: BTreeSet<(u32, u64)>,
    intents: BTreeSet<(TxnId, u32)>,
    metas: BTreeMap<TxnId, TxnMeta>,
    writes: BTreeMap<TxnId, BTreeSet<u32>>,
    /// Each transaction's planned writes, from its STAGING request as its coordinator sent
    /// it (before anything of it lands).
    planned: BTreeMap<TxnId, BTreeSet<u32>>,
    status: BTreeMap<TxnId, Status>,
    events: Vec<Event>,
}

fn check_name(check: Check) -> &'static str {
    match check {
        Check::Found => "found",
        Check::Prevented => "prevented",
    }
}

fn status_name(status: Status) -> &'static str {
    match status {
        Status::Staging => "staging",
        Status::Committed => "committed",
        Status::Aborted => "aborted",
    }
}

impl TxnTraceRecorder {
    fn push(&mut self, kind: &'static str, meta: TxnMeta, key: Option<u32>, result: &'static str) {
        self.metas.insert(meta.id, meta);
        if let Some(k) = key {
            self.writes.entry(meta.id).or_default().insert(k);
        }
        self.events.push(Event {
            kind,
            txn: meta.id,
            key,
            result,
        });
    }

    /// A coordinator sent `meta`'s STAGING record listing `in_flight`: its planned writes.
    pub fn plan(&mut self, meta: TxnMeta, in_flight: &[u32]) {
        self.planned
            .entry(meta.id)
            .or_insert_with(|| in_flight.iter().copied().collect());
    }

    pub fn events(&self) -> usize {
        self.events.len()
    }

    /// A step shard `shard` applied (each log entry once, whichever replica applies first),
    /// or (index 0) an intent its leader refused before proposing.
    ///
    /// Checks the spec's `ImplicitCommitIsFinal` on the way, in every simulated run (not
    /// only those TLC validates): an error if a STAGING record is aborted while every write
    /// it lists is present (applied and not yet resolved: no resolution precedes a
    /// decision), i.e. the transaction was implicitly committed.
    pub fn step(&mut self, shard: u32, applied: &StepApplied) -> Result<(), String> {
        if applied.index != 0 && !self.seen.insert((shard, applied.index)) {
            return Ok(());
        }
        let aborts = matches!(
            (&applied.step, &applied.outcome),
            (Step::AbortSelf { .. }, StepOutcome::RecordDone)
                | (
                    Step::RecoverDecide { .. },
                    StepOutcome::Decided(Status::Aborted)
                )
        );
        let id = applied.step.meta().id;
        if aborts && self.status.get(&id) == Some(&Status::Staging) {
            // The record lists what its coordinator planned (`plan`: the same request).
            let all_written =
                |l: &&BTreeSet<u32>| l.iter().all(|k| self.intents.contains(&(id, *k)));
            if let Some(listed) = self.planned.get(&id).filter(all_written) {
                return Err(format!(
                    "ImplicitCommitIsFinal: {} aborted txn {id:?}, whose STAGING record and \
                     intents on shards {listed:?} were all written (implicitly committed)",
                    applied.step.name()
                ));
            }
        }
        self.record(shard, applied);
        Ok(())
    }

    fn record(&mut self, shard: u32, applied: &StepApplied) {
        let meta = applied.step.meta();
        let status = self.status.get(&meta.id).copied();
        match (&applied.step, &applied.outcome) {
            // A resent copy of an intent already held is no second action.
            (Step::WriteIntent { .. }, StepOutcome::IntentWritten)
                if self.intents.insert((meta.id, shard)) =>
            {
                self.push("WriteIntent", meta, Some(shard), "none");
            }
            (
                Step::WriteIntent { .. },
                StepOutcome::IntentRefused(IntentRefusal::Locked { .. }),
            ) => {}
            (Step::WriteIntent { .. }, StepOutcome::IntentRefused(refusal)) => {
                let result = match refusal {
                    IntentRefusal::Closed { .. } => "closed",
                    IntentRefusal::TooOld { .. } => "tooold",
                    _ => "rejected",
                };
                self.push("WriteRefused", meta, Some(shard), result)
            }
            (Step::WriteStaging { in_flight, .. }, StepOutcome::RecordDone) if status.is_none() => {
                self.writes
                    .entry(meta.id)
                    .or_default()
                    .extend(in_flight.iter().copied());
                self.status.insert(meta.id, Status::Staging);
                self.push("WriteStaging", meta, None, "none");
            }
            (Step::MakeExplicit { .. }, StepOutcome::RecordDone)
                if status == Some(Status::Staging) =>
            {
                self.status.insert(meta.id, Status::Committed);
                self.push("MakeExplicit", meta, None, "none");
            }
            (Step::AbortSelf { .. }, StepOutcome::RecordDone)
                if matches!(status, None | Some(Status::Staging)) =>
            {
                self.status.insert(meta.id, Status::Aborted);
                self.push("AbortSelf", meta, None, "none");
            }
            (Step::Resolve { commit, .. }, StepOutcome::Resolved) if applied.resolved_intent => {
                let result = if *commit { "committed" } else { "aborted" };
                self.push("Resolve", meta, Some(shard), result);
            }
            (Step::RecoverStart { .. }, StepOutcome::Started(start)) => {
                let result = match start {
                    RecoveryStart::Alive => "alive",
                    RecoveryStart::AbortedMissing => {
                        self.status.entry(meta.id).or_insert(Status::Aborted);
                        "aborted"
                    }
                    RecoveryStart::Decided { status, .. } => status_name(*status),
                    RecoveryStart::Staging { .. } => "staging",
                };
                self.push("RecoverStart", meta, None, result);
            }
            (Step::RecoverCheck { .. }, StepOutcome::Checked(check)) => {
                self.push("RecoverCheck", meta, Some(shard), check_name(*check));
            }
            (Step::QueryIntent { .. }, StepOutcome::Checked(check)) => {
                self.push("QueryIntent", meta, Some(shard), check_name(*check));
            }
            (Step::RecoverDecide { .. }, StepOutcome::Decided(decided)) => {
                self.status.insert(meta.id, *decided);
                self.push("RecoverDecide", meta, None, status_name(*decided));
            }
            _ => {}
        }
    }

    /// The host of server `node` told a client that its transaction at `ts` committed.
    pub fn ack(&mut self, node: u64, ts: treesync_core::hlc::Timestamp) {
        let meta = self
            .metas
            .values()
            .find(|m| m.id.node == node && m.ts == ts)
            .copied();
        if let Some(meta) = meta {
            self.push("Ack", meta, None, "none");
        }
    }

    /// The coordinator of `meta` crashed with its server.
    pub fn crash(&mut self, meta: TxnMeta) {
        let decided = matches!(
            self.status.get(&meta.id),
            Some(Status::Committed | Status::Aborted)
        );
        if !decided && self.metas.contains_key(&meta.id) {
            self.push("Crash", meta, None, "none");
        }
    }

    /// The trace as the module `TxnTrace`.
    pub fn render(&self) -> String {
        let mut order: Vec<&TxnMeta> = self.metas.values().collect();
        order.sort_by_key(|m| (m.ts, m.id));
        let names: BTreeMap<TxnId, String> = order
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id, format!("t{}", i + 1)))
            .collect();
        let name = |id: &TxnId| names[id].clone();
        let writes_of = |id: &TxnId| -> BTreeSet<u32> {
            let mut w = self.planned.get(id).cloned().unwrap_or_default();
            w.extend(self.writes.get(id).into_iter().flatten().copied());
            w
        };
        let keys: BTreeSet<u32> = order.iter().flat_map(|m| writes_of(&m.id)).collect();
        let quoted = |items: Vec<String>| {
            items
                .iter()
                .map(|i| format!("\"{i}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut out = String::from("---- MODULE TxnTrace ----\n");
        let txns: Vec<String> = order.iter().map(|m| name(&m.id)).collect();
        let _ = writeln!(out, "TraceTxns == {{{}}}", quoted(txns.clone()));
        let _ = writeln!(
            out,
            "TraceKeys == {{{}}}",
            quoted(keys.iter().map(|k| format!("k{k}")).collect())
        );
        let case = |f: &dyn Fn(&TxnMeta, usize) -> String| -> String {
            let arms: Vec<String> = order
                .iter()
                .enumerate()
                .map(|(i, m)| format!("t = \"{}\" -> {}", name(&m.id), f(m, i)))
                .collect();
            match arms.is_empty() {
                true => "[t \\in TraceTxns |-> 0]".into(),
                false => format!("[t \\in TraceTxns |-> CASE {}]", arms.join(" [] ")),
            }
        };
        // Planned as well as seen: a transaction that failed before any of its writes
        // landed (its only event an AbortSelf tombstone) still writes keys.
        let writes = |m: &TxnMeta, _: usize| {
            let keys = writes_of(&m.id);
            format!(
                "{{{}}}",
                quoted(keys.iter().map(|k| format!("k{k}")).collect())
            )
        };
        let _ = writeln!(out, "TraceWrites == {}", case(&writes));
        let _ = writeln!(out, "TraceTS == {}", case(&|_, i| (i + 1).to_string()));
        out.push_str("TraceEvents == <<\n");
        let lines: Vec<String> = self
            .events
            .iter()
            .map(|e| {
                let key = e.key.map_or("none".into(), |k| format!("k{k}"));
                format!(
                    "  [kind |-> \"{}\", t |-> \"{}\", k |-> \"{key}\", result |-> \"{}\"]",
                    e.kind,
                    name(&e.txn),
                    e.result
                )
            })
            .collect();
        out.push_str(&lines.join(",\n"));
        out.push_str("\n>>\n====\n");
        out
    }
}
