//! Decides a whole history: every register key for linearizability, every set key with
//! `set_check`. What `treesync check` prints, as data, so a runner can call it in-process.
//!
//! # Invariants
//! - `Report::verdict` is `Valid` only if every key was decided and none failed; a search
//!   bound exceeded is `Unknown`, never `Valid`.
//! - A `RegisterFailure`'s `violation` indices point into its own `operations`.

use std::io::BufRead;
use std::time::{Duration, Instant};

use super::{read_history, History, HistoryError, HistoryOp, Workload};
use crate::linearizability::{self, timeline, CheckOptions, Operation, Violation, ViolationKind};
use crate::set_check::{check_set, SetFailure};

/// What a check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    /// Some key is definitely not linearizable, or a set lost or invented elements.
    Invalid,
    /// No key failed, but some key's search hit `states_max`: undecided, not a pass.
    Unknown,
}

/// Counts and time for one workload's keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkloadSummary {
    pub keys: usize,
    pub ops: usize,
    /// Ops with an unknown outcome (`info`, or no completion).
    pub unknown: usize,
    /// Ops that ended `fail` (dropped by the checkers).
    pub failed: usize,
    pub elapsed: Duration,
}

/// A register key that is not linearizable, or whose search hit the bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterFailure {
    pub violation: Violation,
    /// The key's operations as checked (failed ops and unknown reads dropped).
    pub operations: Vec<Operation>,
    /// Per operation, its invoke's line in the history file (from 1).
    pub lines: Vec<usize>,
}

impl RegisterFailure {
    /// True if the search bound was hit (undecided) rather than a definite violation.
    pub fn undecided(&self) -> bool {
        matches!(
            self.violation.kind,
            ViolationKind::SearchBoundExceeded { .. }
        )
    }

    /// The timeline page (`linearizability::timeline`), naming ops by their lines.
    pub fn timeline_html(&self, title: &str) -> String {
        let name = |index: usize| format!("line {}", self.lines[index]);
        timeline::render(&timeline::TimelineInput {
            history: &self.operations,
            violation: &self.violation,
            name: &name,
            title,
        })
    }
}

/// Everything `treesync check` reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Non-blank lines read.
    pub events_count: usize,
    /// Time to read and pair the lines (zero for `check_parsed`).
    pub read_elapsed: Duration,
    pub registers: WorkloadSummary,
    pub sets: WorkloadSummary,
    /// In key order.
    pub register_failures: Vec<RegisterFailure>,
    /// In key order.
    pub set_failures: Vec<SetFailure>,
    /// Explanations of `set_failures`, in the same order.
    pub set_explanations: Vec<String>,
}

impl Report {
    pub fn verdict(&self) -> Verdict {
        let definite = self.register_failures.iter().any(|f| !f.undecided());
        if definite || !self.set_failures.is_empty() {
            Verdict::Invalid
        } else if self.register_failures.is_empty() {
            Verdict::Valid
        } else {
            Verdict::Unknown
        }
    }

    /// The failure to draw: the first definite register violation, else the first undecided.
    pub fn register_failure_to_draw(&self) -> Option<&RegisterFailure> {
        let failures = &self.register_failures;
        failures
            .iter()
            .find(|f| !f.undecided())
            .or_else(|| failures.first())
    }
}

/// Reads, pairs and decides a history (see the module docs of `history` for the format).
pub fn check_history(reader: impl BufRead, options: &CheckOptions) -> Result<Report, HistoryError> {
    let started = Instant::now();
    let history = read_history(reader)?;
    let read_elapsed = started.elapsed();
    Ok(Report {
        read_elapsed,
        ..check_parsed(&history, options)
    })
}

/// Decides an already parsed history.
pub fn check_parsed(history: &History, options: &CheckOptions) -> Report {
    let mut report = Report {
        events_count: history.events_count,
        ..Report::default()
    };
    for (key, (workload, indices)) in history.keys() {
        let started = Instant::now();
        let summary = match workload {
            Workload::Register => {
                if let Some(failure) = check_register(key, &history.ops, &indices, options) {
                    report.register_failures.push(failure);
                }
                &mut report.registers
            }
            Workload::Set => {
                if let Err(failure) = check_set(key, &history.ops, &indices) {
                    report
                        .set_explanations
                        .push(failure.explanation(&history.ops));
                    report.set_failures.push(failure);
                }
                &mut report.sets
            }
        };
        summary.keys += 1;
        summary.ops += indices.len();
        let ops = indices.iter().map(|&i| &history.ops[i]);
        summary.unknown += ops.clone().filter(|op| op.outcome_unknown()).count();
        summary.failed += ops.filter(|op| op.failed()).count();
        summary.elapsed += started.elapsed();
    }
    report
}

fn check_register(
    key: u64,
    ops: &[HistoryOp],
    indices: &[usize],
    options: &CheckOptions,
) -> Option<RegisterFailure> {
    let (mut operations, mut lines) = (Vec::new(), Vec::new());
    for &index in indices {
        if let Some(operation) = ops[index].register_operation() {
            operations.push(operation);
            lines.push(ops[index].invoke_line);
        }
    }
    assert!(operations.iter().all(|op| op.key == key), "one key's ops");
    let name = |index: usize| format!("line {}", lines[index]);
    let violation = linearizability::check_named(&operations, options, &name).err()?;
    Some(RegisterFailure {
        violation,
        operations,
        lines,
    })
}
