//! Writes a history in the format `read_history` reads (see the parent module), one line
//! per event.
//!
//! # Invariants
//! - `index` counts the lines written, from 0.
//! - Times are non-decreasing and below `u64::MAX`: an event that would break this is
//!   refused before anything is written.
//! - A process has at most one outstanding op; a completion names the op it completes
//!   (the writer copies `f`, `key` and the invoke's value into it).

use std::collections::HashMap;
use std::io::{self, Write};

use serde::Serialize;

use super::{Call, Outcome, Reply};

/// Why an event was not written. Every variant but `Io` is the caller's misuse, and
/// leaves the writer as it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryWriteError {
    #[error("writing the history: {0}")]
    Io(#[from] io::Error),
    #[error("process {process} already has an outstanding op (index {index})")]
    AlreadyPending { process: u64, index: u64 },
    #[error("process {process} has no outstanding op to complete")]
    NotPending { process: u64 },
    #[error("time {time} is before the previous event's time {previous}")]
    TimeWentBack { time: u64, previous: u64 },
    #[error("time {time} is reserved (times must be below 2^64 - 1)")]
    TimeReserved { time: u64 },
    #[error("an ok {f} carries {expected}")]
    ReplyMismatch {
        f: &'static str,
        expected: &'static str,
    },
}

/// Writes history lines to `out`.
///
/// Events must be written in time order: a runner with many threads shares one writer
/// behind a lock and reads its clock while holding it, so that file order is time order.
pub struct HistoryWriter<W: Write> {
    out: W,
    next_index: u64,
    time_last: u64,
    /// Per process, its outstanding op: (index of the invoke, key, call).
    pending: HashMap<u64, (u64, u64, Call)>,
    buffer: Vec<u8>,
}

/// A line as serialized, fields in the documented order.
#[derive(Serialize)]
struct Line<'a> {
    index: u64,
    time: u64,
    process: u64,
    #[serde(rename = "type")]
    kind: &'static str,
    f: &'static str,
    key: u64,
    value: LineValue<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum LineValue<'a> {
    Null,
    Int(i64),
    Ints(&'a [i64]),
}

impl<W: Write> HistoryWriter<W> {
    pub fn new(out: W) -> HistoryWriter<W> {
        HistoryWriter {
            out,
            next_index: 0,
            time_last: 0,
            pending: HashMap::new(),
            buffer: Vec::with_capacity(128),
        }
    }

    /// Writes `process`'s invoke of `call` on `key` at `time`; returns the line's index.
    pub fn invoke(
        &mut self,
        time: u64,
        process: u64,
        key: u64,
        call: Call,
    ) -> Result<u64, HistoryWriteError> {
        self.check_time(time)?;
        if let Some(&(index, _, _)) = self.pending.get(&process) {
            return Err(HistoryWriteError::AlreadyPending { process, index });
        }
        let mut pair = [0; 2];
        let value = call_value(&call, &mut pair);
        let index = self.write_line(Line {
            index: self.next_index,
            time,
            process,
            kind: "invoke",
            f: call.name(),
            key,
            value,
            error: None,
        })?;
        self.pending.insert(process, (index, key, call));
        Ok(index)
    }

    /// Writes the completion of `process`'s outstanding op; returns the line's index.
    /// `error` is recorded for people (the checker ignores it). After `Outcome::Info` a
    /// runner should give the process a new id, as Jepsen does.
    pub fn complete(
        &mut self,
        time: u64,
        process: u64,
        outcome: Outcome,
        error: Option<&str>,
    ) -> Result<u64, HistoryWriteError> {
        self.check_time(time)?;
        let Some((_, key, call)) = self.pending.get(&process) else {
            return Err(HistoryWriteError::NotPending { process });
        };
        let (key, f) = (*key, call.name());
        let fits = match (&outcome, call) {
            (Outcome::Ok(Reply::Read(_)), Call::Read) => true,
            (Outcome::Ok(Reply::ReadSet(_)), Call::ReadSet) => true,
            (
                Outcome::Ok(Reply::Done),
                Call::Write { .. } | Call::Cas { .. } | Call::Add { .. },
            ) => true,
            (Outcome::Ok(_), _) => false,
            (Outcome::Fail | Outcome::Info, _) => true,
        };
        if !fits {
            let expected = match call {
                Call::Read => "Reply::Read",
                Call::ReadSet => "Reply::ReadSet",
                Call::Write { .. } | Call::Cas { .. } | Call::Add { .. } => "Reply::Done",
            };
            return Err(HistoryWriteError::ReplyMismatch { f, expected });
        }
        let mut pair = [0; 2];
        // An ok read carries what it read; every other completion echoes the invoke.
        let value = match &outcome {
            Outcome::Ok(Reply::Read(Some(v))) => LineValue::Int(*v),
            Outcome::Ok(Reply::ReadSet(elements)) => LineValue::Ints(elements),
            _ => call_value(call, &mut pair),
        };
        let kind = match outcome {
            Outcome::Ok(_) => "ok",
            Outcome::Fail => "fail",
            Outcome::Info => "info",
        };
        let index = self.write_line(Line {
            index: self.next_index,
            time,
            process,
            kind,
            f,
            key,
            value,
            error,
        })?;
        self.pending.remove(&process);
        Ok(index)
    }

    /// Processes with an outstanding op (readers count those as `info` at the end).
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The output, flushed.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }

    fn check_time(&self, time: u64) -> Result<(), HistoryWriteError> {
        if time == u64::MAX {
            return Err(HistoryWriteError::TimeReserved { time });
        }
        if time < self.time_last {
            return Err(HistoryWriteError::TimeWentBack {
                time,
                previous: self.time_last,
            });
        }
        Ok(())
    }

    /// Serializes and writes one line; on success it counts and sets the time.
    fn write_line(&mut self, line: Line<'_>) -> Result<u64, HistoryWriteError> {
        self.buffer.clear();
        serde_json::to_writer(&mut self.buffer, &line)
            .expect("a Line serializes: integers, &'static names and a string");
        self.buffer.push(b'\n');
        self.out.write_all(&self.buffer)?;
        self.time_last = line.time;
        let index = self.next_index;
        self.next_index += 1;
        Ok(index)
    }
}

/// The value an invoke of `call` carries; `pair` holds a CAS's two integers.
fn call_value<'a>(call: &Call, pair: &'a mut [i64; 2]) -> LineValue<'a> {
    match *call {
        Call::Read | Call::ReadSet => LineValue::Null,
        Call::Write { value } => LineValue::Int(value),
        Call::Add { element } => LineValue::Int(element),
        Call::Cas { expected, new } => {
            *pair = [expected, new];
            LineValue::Ints(pair)
        }
    }
}
