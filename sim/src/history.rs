//! Recorded client histories: the JSON-lines format `treesync jepsen` writes and
//! `treesync check` decides (documented for other tools in `docs/history.md`).
//!
//! One event per line, Jepsen-style:
//!
//! ```text
//! {"index":0,"time":1200,"process":3,"type":"invoke","f":"write","key":1,"value":17}
//! {"index":1,"time":5400,"process":3,"type":"ok","f":"write","key":1,"value":17}
//! ```
//!
//! - `type`: `invoke`, then one of `ok` (took effect, with its result), `fail` (definitely
//!   did not take effect) or `info` (unknown: may or may not have taken effect).
//! - `time`: nanoseconds since the run started, monotonic, non-decreasing in file order,
//!   below `u64::MAX`. `index` (the line's number from 0) is optional and not read.
//! - `process`: who ran the op. A process has at most one outstanding op: its next
//!   `ok`/`fail`/`info` completes it. An invoke without a completion by the end of the file
//!   is treated as `info`; a runner gives a process a new id after an `info`, as Jepsen does.
//! - `f` and `value`: the register workload has `read` (ok value: an integer, or null for
//!   unset), `write` (value: integer) and `cas` (value: `[expected, new]`); the set workload
//!   `add` (value: integer) and `read_set` (ok value: array of integers). Only the invoke's
//!   value counts for writes, CASes and adds, and only the ok's for reads.
//! - `key`: `u64`; a key belongs to one workload. Other fields (`node`, `error`,
//!   `latency`, ...) are accepted and ignored.
//!
//! Entry points: `read_history` (parse and pair), `HistoryWriter` (`writer`),
//! `check_history` (`check`: the whole decision, for the command and the jepsen runner),
//! `demo` (a generator of linearizable histories, for measuring the checker).
//!
//! # Invariants
//! - A parsed `HistoryOp` has `invoke_time <= completion.time`, and the completion's `f`
//!   and `key` are the invoke's (checked per line, with the line number on error).
//! - Every key's ops are of one workload.
//! - Parsing never panics on input: every defect is a `HistoryError` naming its line.

mod check;
pub mod demo;
mod writer;

use std::collections::HashMap;
use std::io::BufRead;

use serde::Deserialize;
use serde_json::Value;

use crate::linearizability::{OpKind, Operation};

pub use check::{check_history, check_parsed, RegisterFailure, Report, Verdict, WorkloadSummary};
pub use writer::{HistoryWriteError, HistoryWriter};

/// What a process asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Read,
    Write { value: i64 },
    Cas { expected: i64, new: i64 },
    Add { element: i64 },
    ReadSet,
}

impl Call {
    /// The `f` field of its lines.
    pub fn name(&self) -> &'static str {
        match self {
            Call::Read => "read",
            Call::Write { .. } => "write",
            Call::Cas { .. } => "cas",
            Call::Add { .. } => "add",
            Call::ReadSet => "read_set",
        }
    }

    pub fn workload(&self) -> Workload {
        match self {
            Call::Read | Call::Write { .. } | Call::Cas { .. } => Workload::Register,
            Call::Add { .. } | Call::ReadSet => Workload::Set,
        }
    }
}

/// The kind of object a key is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// `read`, `write`, `cas`: checked for linearizability.
    Register,
    /// `add`, `read_set`: checked by `set_check`.
    Set,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Register => "register",
            Workload::Set => "set",
        }
    }
}

/// The result an `ok` carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// A write, CAS or add took effect.
    Done,
    /// What a read returned; `None` = unset.
    Read(Option<i64>),
    /// What a `read_set` returned.
    ReadSet(Vec<i64>),
}

/// How an op ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok(Reply),
    /// Definitely did not take effect.
    Fail,
    /// Unknown: it may or may not have taken effect.
    Info,
}

/// An op's completion line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    pub time: u64,
    /// Line number, from 1.
    pub line: usize,
    pub outcome: Outcome,
}

/// One invoke paired with its completion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryOp {
    pub process: u64,
    pub key: u64,
    pub call: Call,
    pub invoke_time: u64,
    /// Line number of the invoke, from 1.
    pub invoke_line: usize,
    /// `None`: no completion by the end of the history, which counts as `info`.
    pub completion: Option<Completion>,
}

impl HistoryOp {
    /// True unless it ended `ok` or `fail`.
    pub fn outcome_unknown(&self) -> bool {
        self.completion
            .as_ref()
            .is_none_or(|c| c.outcome == Outcome::Info)
    }

    /// True if it ended `fail`.
    pub fn failed(&self) -> bool {
        self.completion
            .as_ref()
            .is_some_and(|c| c.outcome == Outcome::Fail)
    }

    /// The time of an `ok` completion.
    pub fn ok_time(&self) -> Option<u64> {
        self.completion
            .as_ref()
            .and_then(|c| matches!(c.outcome, Outcome::Ok(_)).then_some(c.time))
    }

    /// The register checker's view: `None` for a failed op, an unknown read or a set op.
    pub fn register_operation(&self) -> Option<Operation> {
        let complete = match &self.completion {
            Some(Completion {
                outcome: Outcome::Fail,
                ..
            }) => return None,
            Some(Completion {
                outcome: Outcome::Ok(_),
                time,
                ..
            }) => Some(*time),
            Some(_) | None => None,
        };
        let kind = match (&self.call, &self.completion) {
            (Call::Write { value }, _) => OpKind::Write { value: *value },
            (&Call::Cas { expected, new }, _) => OpKind::Cas { expected, new },
            (Call::Read, Some(c)) => match c.outcome {
                Outcome::Ok(Reply::Read(value)) => OpKind::Read { value },
                _ => return None,
            },
            (Call::Read, None) | (Call::Add { .. } | Call::ReadSet, _) => return None,
        };
        Some(Operation {
            key: self.key,
            kind,
            invoke: self.invoke_time,
            complete,
            client: self.process,
        })
    }
}

/// A parsed history: ops in invoke order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    pub ops: Vec<HistoryOp>,
    /// Non-blank lines read.
    pub events_count: usize,
}

impl History {
    /// Each key's workload and its ops' indices in `ops`, in key order.
    pub fn keys(&self) -> std::collections::BTreeMap<u64, (Workload, Vec<usize>)> {
        let mut keys = std::collections::BTreeMap::new();
        for (index, op) in self.ops.iter().enumerate() {
            keys.entry(op.key)
                .or_insert_with(|| (op.call.workload(), Vec::new()))
                .1
                .push(index);
        }
        keys
    }
}

/// A defect of a history file, with its line number (from 1).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    #[error("line {line}: reading: {source}")]
    Io {
        line: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("line {line}: malformed event: {message}")]
    Malformed { line: usize, message: String },
    #[error("line {line}: unknown type {found:?} (expected invoke, ok, fail or info)")]
    UnknownType { line: usize, found: String },
    #[error("line {line}: unknown f {found:?} (expected read, write, cas, add or read_set)")]
    UnknownFunction { line: usize, found: String },
    #[error("line {line}: {kind} {f} needs a value of {expected}, not {found}")]
    BadValue {
        line: usize,
        kind: &'static str,
        f: &'static str,
        expected: &'static str,
        found: String,
    },
    #[error("line {line}: time {time} is before the previous event's time {previous}")]
    TimeWentBack {
        line: usize,
        time: u64,
        previous: u64,
    },
    #[error("line {line}: time {time} is reserved (times must be below 2^64 - 1)")]
    TimeReserved { line: usize, time: u64 },
    #[error("line {line}: {kind} for process {process}, which has no outstanding invoke")]
    NoInvoke {
        line: usize,
        kind: &'static str,
        process: u64,
    },
    #[error(
        "line {line}: process {process} invokes while its op invoked on line {invoke_line} \
         is outstanding"
    )]
    AlreadyPending {
        line: usize,
        process: u64,
        invoke_line: usize,
    },
    #[error(
        "line {line}: the completion's {field} {found} differs from the invoke's {expected} \
         (line {invoke_line})"
    )]
    Mismatch {
        line: usize,
        invoke_line: usize,
        field: &'static str,
        expected: String,
        found: String,
    },
    #[error(
        "line {line}: key {key} is a {workload} key here but a {first} key on line {first_line}"
    )]
    MixedKey {
        line: usize,
        key: u64,
        workload: &'static str,
        first: &'static str,
        first_line: usize,
    },
}

/// One line as written; other fields are ignored.
#[derive(Deserialize)]
struct RawEvent {
    time: u64,
    process: u64,
    #[serde(rename = "type")]
    kind: String,
    f: String,
    key: u64,
    #[serde(default)]
    value: Value,
}

/// What a line says happened.
enum Kind {
    Invoke,
    Complete { name: &'static str, ok: bool },
}

/// Pairs each invoke with its process's next completion.
struct Pairing {
    history: History,
    /// Per process, the index in `ops` of its outstanding op.
    pending: HashMap<u64, usize>,
    /// Per key, its workload and the line that first used it.
    workloads: HashMap<u64, (Workload, usize)>,
    time_last: u64,
}

/// Parses and pairs a history; blank lines are skipped.
pub fn read_history(reader: impl BufRead) -> Result<History, HistoryError> {
    let mut pairing = Pairing {
        history: History::default(),
        pending: HashMap::new(),
        workloads: HashMap::new(),
        time_last: 0,
    };
    for (number, text) in reader.lines().enumerate() {
        let line = number + 1;
        let text = text.map_err(|source| HistoryError::Io { line, source })?;
        if text.trim().is_empty() {
            continue;
        }
        pairing.history.events_count += 1;
        pairing.event(line, &text)?;
    }
    Ok(pairing.history)
}

impl Pairing {
    fn event(&mut self, line: usize, text: &str) -> Result<(), HistoryError> {
        let raw: RawEvent = serde_json::from_str(text).map_err(|e| HistoryError::Malformed {
            line,
            message: without_position(&e),
        })?;
        if raw.time == u64::MAX {
            return Err(HistoryError::TimeReserved {
                line,
                time: raw.time,
            });
        }
        if raw.time < self.time_last {
            return Err(HistoryError::TimeWentBack {
                line,
                time: raw.time,
                previous: self.time_last,
            });
        }
        self.time_last = raw.time;
        let kind = match raw.kind.as_str() {
            "invoke" => Kind::Invoke,
            "ok" => Kind::Complete {
                name: "ok",
                ok: true,
            },
            "fail" => Kind::Complete {
                name: "fail",
                ok: false,
            },
            "info" => Kind::Complete {
                name: "info",
                ok: false,
            },
            _ => {
                return Err(HistoryError::UnknownType {
                    line,
                    found: raw.kind,
                })
            }
        };
        match kind {
            Kind::Invoke => self.invoke(line, raw),
            Kind::Complete { name, ok } => self.complete(line, raw, name, ok),
        }
    }

    fn invoke(&mut self, line: usize, raw: RawEvent) -> Result<(), HistoryError> {
        if let Some(&outstanding) = self.pending.get(&raw.process) {
            return Err(HistoryError::AlreadyPending {
                line,
                process: raw.process,
                invoke_line: self.history.ops[outstanding].invoke_line,
            });
        }
        let call = parse_call(line, &raw.f, &raw.value)?;
        let workload = call.workload();
        let (first, first_line) = *self.workloads.entry(raw.key).or_insert((workload, line));
        if first != workload {
            return Err(HistoryError::MixedKey {
                line,
                key: raw.key,
                workload: workload.name(),
                first: first.name(),
                first_line,
            });
        }
        self.pending.insert(raw.process, self.history.ops.len());
        self.history.ops.push(HistoryOp {
            process: raw.process,
            key: raw.key,
            call,
            invoke_time: raw.time,
            invoke_line: line,
            completion: None,
        });
        Ok(())
    }

    fn complete(
        &mut self,
        line: usize,
        raw: RawEvent,
        kind: &'static str,
        ok: bool,
    ) -> Result<(), HistoryError> {
        let Some(index) = self.pending.remove(&raw.process) else {
            return Err(HistoryError::NoInvoke {
                line,
                kind,
                process: raw.process,
            });
        };
        let op = &mut self.history.ops[index];
        let mismatch = |field, expected: String, found: String| HistoryError::Mismatch {
            line,
            invoke_line: op.invoke_line,
            field,
            expected,
            found,
        };
        if raw.f != op.call.name() {
            return Err(mismatch("f", op.call.name().into(), format!("{:?}", raw.f)));
        }
        if raw.key != op.key {
            return Err(mismatch("key", op.key.to_string(), raw.key.to_string()));
        }
        let outcome = match (kind, ok) {
            (_, true) => Outcome::Ok(parse_reply(line, &op.call, &raw.value)?),
            ("fail", false) => Outcome::Fail,
            _ => Outcome::Info,
        };
        assert!(op.invoke_time <= raw.time, "times are non-decreasing");
        op.completion = Some(Completion {
            time: raw.time,
            line,
            outcome,
        });
        Ok(())
    }
}

/// serde_json's message without its " at line 1 column N" (we parse one line at a time).
fn without_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rsplit_once(" at line ") {
        Some((message, _)) => format!("{message} (column {})", error.column()),
        None => text,
    }
}

fn parse_call(line: usize, f: &str, value: &Value) -> Result<Call, HistoryError> {
    let bad = |f: &'static str, expected: &'static str| HistoryError::BadValue {
        line,
        kind: "invoke",
        f,
        expected,
        found: value.to_string(),
    };
    match f {
        "read" => Ok(Call::Read),
        "read_set" => Ok(Call::ReadSet),
        "write" => Ok(Call::Write {
            value: value.as_i64().ok_or_else(|| bad("write", "an integer"))?,
        }),
        "add" => Ok(Call::Add {
            element: value.as_i64().ok_or_else(|| bad("add", "an integer"))?,
        }),
        "cas" => match value.as_array().map(|pair| pair.as_slice()) {
            Some([expected, new]) => match (expected.as_i64(), new.as_i64()) {
                (Some(expected), Some(new)) => Ok(Call::Cas { expected, new }),
                _ => Err(bad("cas", "[expected, new] (integers)")),
            },
            _ => Err(bad("cas", "[expected, new] (integers)")),
        },
        _ => Err(HistoryError::UnknownFunction {
            line,
            found: f.to_string(),
        }),
    }
}

fn parse_reply(line: usize, call: &Call, value: &Value) -> Result<Reply, HistoryError> {
    let bad = |expected: &'static str| HistoryError::BadValue {
        line,
        kind: "ok",
        f: call.name(),
        expected,
        found: value.to_string(),
    };
    match call {
        Call::Read => match value {
            Value::Null => Ok(Reply::Read(None)),
            _ => Ok(Reply::Read(Some(
                value.as_i64().ok_or_else(|| bad("an integer or null"))?,
            ))),
        },
        Call::ReadSet => {
            let elements = value
                .as_array()
                .ok_or_else(|| bad("an array of integers"))?;
            let set: Option<Vec<i64>> = elements.iter().map(Value::as_i64).collect();
            Ok(Reply::ReadSet(
                set.ok_or_else(|| bad("an array of integers"))?,
            ))
        }
        Call::Write { .. } | Call::Cas { .. } | Call::Add { .. } => Ok(Reply::Done),
    }
}

#[cfg(test)]
mod tests;
