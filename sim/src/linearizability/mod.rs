//! Linearizability checker for client-observed register histories.
//!
//! Every key is an independent register (initially unset) that clients write, read and
//! compare-and-set. The checker decides whether the operations that clients saw, with their
//! invoke and complete times, could have taken effect one at a time, each at some instant
//! between its invoke and its completion (Herlihy & Wing, "Linearizability: A Correctness
//! Condition for Concurrent Objects", 1990). It uses only those times, never a server's log
//! order, so it also catches a log that orders writes against real time.
//!
//! Entry points: `check`, `check_with` and `check_named`; `timeline::render` draws a
//! violation as a self-contained HTML page. This file prepares a key's history (reductions,
//! value ids, explanations); `search` is the search and `memo` its visited-state table.
//!
//! # Algorithm
//! - Keys are checked one by one: linearizability is local (Herlihy & Wing), which Knossos
//!   and Porcupine call P-compositionality.
//! - Per key it runs Porcupine's `checkSingle`: the Wing & Gong depth-first search over the
//!   history's call and return events (Wing & Gong, "Testing and Verifying Concurrent
//!   Objects", 1993), with Lowe's memoization of (set of linearized operations as a bitset,
//!   register value) (Lowe, "Testing for Linearizability", 2017). The pending events form a
//!   dancing-links list, so an operation is lifted out and put back in O(1).
//! - Two prunings beyond Porcupine, both sound: a pending read that matches the register is
//!   placed at once and is no choice point (see `Search::run`); and all values that nothing
//!   observed share one memo id (`UNREAD`), since nothing can tell them apart.
//! - The memo is an open-addressing table over one arena of bitsets, keyed by a Zobrist hash
//!   that is updated in O(1) per step; it allocates nothing per state.
//!
//! # Semantics
//! - A write sets the register; a read returns its current value (`None` = unset); a CAS
//!   `{ expected, new }` atomically sets the register to `new` if it holds `expected`.
//! - `complete: Some` means the operation took effect: the read returned that value, the
//!   CAS found `expected` and stored `new`. A CAS that failed (found another value, or any
//!   definite failure) tells nothing and must be dropped by the caller, as must writes that
//!   definitely failed.
//! - `complete: None` means the outcome is unknown (timeout, crash, `unknown_outcome`). Such
//!   a write or CAS may take effect at any instant after its invoke, or never: it never
//!   returns, so the search may place it last, where it has no visible effect. An unknown
//!   read tells nothing and is ignored.
//! - Real time: if `a.complete < b.invoke` then `a` precedes `b`. Equal times overlap.
//!
//! # Reductions
//! A value is *written* by writes of it and by CASes whose `new` it is; it is *read* by
//! known reads returning it and by known CASes expecting it; it is *observed* if it is read
//! or an unknown CAS expects it. Values need not be unique; where they are, these sound
//! reductions shrink the search:
//! - A known read (or known CAS) of a value that no write invoked by its completion wrote
//!   is rejected at once.
//! - An unknown write or CAS whose (new) value nothing observes is dropped: placed last it
//!   changes nothing, and placed earlier the next step to follow it must be a blind write.
//! - An unknown write or CAS that is its value's only writer must precede every read of
//!   that value, so it is given the earliest such read's completion as its own.
//! - An unknown CAS expecting a value that nothing writes can never take effect: dropped.
//!
//! # Bounds
//! The search is exponential in the worst case. Per key it stops after
//! `CheckOptions::states_max` memoized states (default `STATES_MAX_DEFAULT`, 2 million) and
//! reports `ViolationKind::SearchBoundExceeded`: undecided, which a caller must treat as a
//! failure to investigate, never as a pass. Time is then O(states_max × (pending ops +
//! ops / 64)). A memoized state costs about 8 × (window + ⌈unknown ops / 64⌉) + 40 bytes,
//! where the window is the linearized ops past the earliest pending one, in words (`memo`);
//! it is one or two words in histories of a few dozen concurrent clients, and at most
//! ⌈ops / 64⌉. Typical histories use one or two states per op: 100,000 ops on one key
//! take some 50 MB.
//!
//! # Invariants
//! - Every entry the search sees has `invoke <= complete` and `invoke < NEVER`;
//!   `complete == NEVER` exactly for an unknown write or CAS that never returns.
//! - A value some operation observes has its own id; only unobserved values share `UNREAD`.
//! - The search's own invariants are listed in `search`.

mod memo;
mod search;
pub mod timeline;

use std::collections::BTreeMap;
use std::fmt;

use search::{Search, Stuck};

/// How many memoized search states `check` explores per key before giving up.
pub const STATES_MAX_DEFAULT: u64 = 2_000_000;

/// How many operations an explanation lists per section.
const EXPLANATION_OPS_MAX: usize = 12;

/// The memo's initial slot count; it doubles when half full.
const MEMO_SLOTS_MIN: usize = 1024;

/// The dancing-links list's nil, and the memo's empty slot.
const NIL: u32 = u32::MAX;

/// The completion the search gives an unknown write or CAS that may never have taken
/// effect; reserved, so operations' own times must be below it.
const NEVER: u64 = u64::MAX;

const _: () = assert!(MEMO_SLOTS_MIN.is_power_of_two());
// Memo indices and the list's nil are `u32`.
const _: () = assert!(STATES_MAX_DEFAULT < u32::MAX as u64 / 2);

/// One client operation on one register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Operation {
    pub key: u64,
    pub kind: OpKind,
    /// When the client sent the request.
    pub invoke: u64,
    /// When the client got the answer; `None` if the outcome is unknown.
    pub complete: Option<u64>,
    /// Who issued it; only used in explanations.
    pub client: u64,
}

/// What an operation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    Write {
        value: i64,
    },
    /// The value the read returned; `None` = the register was unset.
    Read {
        value: Option<i64>,
    },
    /// If the register held `expected`, it now holds `new`. Only successful (or unknown)
    /// CASes belong in a history: a failed one is dropped by the caller.
    Cas {
        expected: i64,
        new: i64,
    },
}

/// How hard `check_with` may search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckOptions {
    /// Memoized states explored per key before answering `SearchBoundExceeded`.
    pub states_max: u64,
}

impl Default for CheckOptions {
    fn default() -> CheckOptions {
        CheckOptions {
            states_max: STATES_MAX_DEFAULT,
        }
    }
}

/// Why a key's history was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ViolationKind {
    /// No order of the operations respects real time and register semantics.
    NotLinearizable,
    /// The search stopped at `CheckOptions::states_max`: undecided.
    SearchBoundExceeded { states_max: u64 },
}

/// A key whose history is not linearizable (or could not be decided).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub key: u64,
    pub kind: ViolationKind,
    /// For a human: the key, the longest linearizable prefix found, the operation that could
    /// not be placed and the ones that could have gone next, with their times.
    pub explanation: String,
    /// The same dead end for a program (`timeline`); `None` if the search met none.
    pub dead_end: Option<DeadEnd>,
}

/// The deepest dead end of the search, as indices into the checked history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadEnd {
    /// The longest linearizable prefix found, in linearization order.
    pub prefix: Vec<usize>,
    /// The operation that completed before any extension of `prefix` could place it (or,
    /// for a read of a value never written, that read).
    pub blocked: usize,
    /// The other operations that could have gone next; each led to a dead end.
    pub candidates: Vec<usize>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.explanation)
    }
}

impl std::error::Error for Violation {}

/// Checks every key's history with the default bound; the first bad key (in key order) wins.
pub fn check(history: &[Operation]) -> Result<(), Violation> {
    check_with(history, &CheckOptions::default())
}

/// Checks every key's history; the first bad key (in key order) wins. Explanations name
/// `history[i]` as `op i`.
///
/// Panics if an operation completes before it was invoked, or has a time of `u64::MAX`
/// (reserved): that is the caller's bug.
pub fn check_with(history: &[Operation], options: &CheckOptions) -> Result<(), Violation> {
    check_named(history, options, &|index| format!("op {index}"))
}

/// As `check_with`, with explanations naming `history[i]` as `name(i)` (say, its line in a
/// history file).
pub fn check_named(
    history: &[Operation],
    options: &CheckOptions,
    name: &dyn Fn(usize) -> String,
) -> Result<(), Violation> {
    let mut keys: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (index, op) in history.iter().enumerate() {
        let last = op.complete.unwrap_or(op.invoke);
        assert!(
            op.invoke <= last,
            "operation {index} completes before it is invoked: {op:?}"
        );
        assert!(
            last < NEVER,
            "operation {index} uses the reserved time: {op:?}"
        );
        keys.entry(op.key).or_default().push(index);
    }
    for (key, indices) in keys {
        let register = Register::prepare(key, history, &indices, name)?;
        register.search(options.states_max)?;
    }
    Ok(())
}

/// A register value as a small id: `UNSET`, `UNREAD`, or one per observed value.
type ValueId = u32;
const UNSET: ValueId = 0;
/// Every value that nothing observed: nothing can tell them apart, so they share one id and
/// the memo sees orders of such writes as one state.
const UNREAD: ValueId = 1;

/// What an entry does to the register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Write(ValueId),
    Read(ValueId),
    Cas { expected: ValueId, new: ValueId },
}

impl Step {
    /// The register's value after this step, or `None` if the step cannot happen now.
    fn apply(self, register: ValueId) -> Option<ValueId> {
        match self {
            Step::Write(value) => Some(value),
            Step::Read(value) => (value == register).then_some(value),
            Step::Cas { expected, new } => (expected == register).then_some(new),
        }
    }
}

/// One operation of one key as the search sees it.
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Index into the caller's history, for explanations.
    op: usize,
    step: Step,
    invoke: u64,
    /// `NEVER` for an unknown write or CAS that never returns.
    complete: u64,
}

/// One key's history, reduced and ready to search.
struct Register<'h> {
    key: u64,
    history: &'h [Operation],
    entries: Vec<Entry>,
    /// Operations of the key before reduction.
    ops_count: usize,
    name: &'h dyn Fn(usize) -> String,
}

/// What a value's writes and reads look like, for the reductions.
#[derive(Clone, Copy, Default)]
struct ValueUse {
    id: ValueId,
    /// Writes of it and CASes (known or not) whose `new` it is.
    writes_count: u32,
    /// Earliest invoke among its writers.
    invoke_min: u64,
    /// Earliest completion among the known reads that returned it and the known CASes
    /// that expected it.
    read_complete_min: Option<u64>,
    /// Some known read, or some CAS whatever its outcome, compares the register with it.
    observed: bool,
}

/// The value a known read or known CAS found in the register, with the completion time.
fn read_of(op: &Operation) -> Option<(i64, u64)> {
    match (op.kind, op.complete) {
        (OpKind::Read { value: Some(v) }, Some(complete)) => Some((v, complete)),
        (OpKind::Cas { expected, .. }, Some(complete)) => Some((expected, complete)),
        _ => None,
    }
}

/// The value a write or CAS (known or not) stores if it takes effect.
fn written_by(op: &Operation) -> Option<i64> {
    match op.kind {
        OpKind::Write { value } => Some(value),
        OpKind::Cas { new, .. } => Some(new),
        OpKind::Read { .. } => None,
    }
}

impl<'h> Register<'h> {
    /// Builds the key's entries; rejects at once a read of a value no write could have made.
    fn prepare(
        key: u64,
        history: &'h [Operation],
        indices: &[usize],
        name: &'h dyn Fn(usize) -> String,
    ) -> Result<Register<'h>, Violation> {
        let uses = value_uses(history, indices);
        let mut register = Register {
            key,
            history,
            entries: Vec::with_capacity(indices.len()),
            ops_count: indices.len(),
            name,
        };
        // First every read, so that the writes below may rely on `invoke_min <= complete`.
        for &index in indices {
            if let Some((v, complete)) = read_of(&history[index]) {
                if uses.get(&v).is_none_or(|used| used.invoke_min > complete) {
                    return Err(register.unwritten(index));
                }
            }
        }
        for &index in indices {
            if let Some(entry) = entry(history, index, &uses) {
                register.entries.push(entry);
            }
        }
        assert!(
            u32::try_from(2 * register.entries.len() + 1).is_ok(),
            "key {key}: too many operations"
        );
        Ok(register)
    }

    /// A read (or CAS) found a value that no write invoked before its completion wrote.
    fn unwritten(&self, index: usize) -> Violation {
        let what = match self.history[index].kind {
            OpKind::Cas { .. } => "succeeded on an expected value",
            _ => "returned a value",
        };
        Violation {
            key: self.key,
            kind: ViolationKind::NotLinearizable,
            explanation: format!(
                "key {}: not linearizable: {}: {} {what} that no write or CAS of this key \
                 invoked by its completion wrote",
                self.key,
                (self.name)(index),
                describe(&self.history[index])
            ),
            dead_end: Some(DeadEnd {
                prefix: Vec::new(),
                blocked: index,
                candidates: Vec::new(),
            }),
        }
    }

    /// Runs the search; `Err` if no linearization exists or the bound was hit.
    fn search(&self, states_max: u64) -> Result<(), Violation> {
        let mut search = Search::new(&self.entries);
        match search.run(states_max) {
            Ok(()) => Ok(()),
            Err(kind) => Err(self.violation(kind, &search)),
        }
    }

    fn violation(&self, kind: ViolationKind, search: &Search) -> Violation {
        let mut explanation = match kind {
            ViolationKind::NotLinearizable => format!(
                "key {}: not linearizable: no order of its {} operations respects real time \
                 and register semantics ({} searched after dropping unknown-outcome reads and \
                 unobserved writes and CASes; {} states explored).",
                self.key,
                self.ops_count,
                self.entries.len(),
                search.memo.len()
            ),
            ViolationKind::SearchBoundExceeded { states_max } => format!(
                "key {}: search bound exceeded: explored {states_max} states (states_max) \
                 without deciding whether its {} operations ({} searched) are linearizable; \
                 treat as a failure.",
                self.key,
                self.ops_count,
                self.entries.len()
            ),
        };
        if let Some(stuck) = &search.stuck {
            explanation.push_str(&self.describe_stuck(stuck));
        }
        let op_of = |entry: &u32| self.entries[*entry as usize].op;
        Violation {
            key: self.key,
            kind,
            explanation,
            dead_end: search.stuck.as_ref().map(|stuck| DeadEnd {
                prefix: stuck.prefix.iter().map(op_of).collect(),
                blocked: op_of(&stuck.blocked),
                candidates: stuck.candidates.iter().map(op_of).collect(),
            }),
        }
    }

    /// The deepest dead end: the prefix, the blocked operation and the other candidates.
    fn describe_stuck(&self, stuck: &Stuck) -> String {
        let mut text = format!(
            "\nLongest linearizable prefix found ({} ops), leaving the register {}:",
            stuck.prefix.len(),
            self.value_after(&stuck.prefix)
        );
        let hidden = stuck.prefix.len().saturating_sub(EXPLANATION_OPS_MAX);
        if hidden > 0 {
            text.push_str(&format!("\n  ... {hidden} earlier ops"));
        }
        for (position, &entry) in stuck.prefix.iter().enumerate().skip(hidden) {
            let op = self.describe_entry(entry);
            text.push_str(&format!("\n  #{} {op}", position + 1));
        }
        text.push_str(&format!(
            "\nThen this op completed without a place in any extension of that prefix:\n  {}",
            self.describe_entry(stuck.blocked)
        ));
        text.push_str("\nOther ops that could have gone next (each led to a dead end):");
        if stuck.candidates.is_empty() {
            text.push_str(" none");
        }
        for &entry in stuck.candidates.iter().take(EXPLANATION_OPS_MAX) {
            text.push_str(&format!("\n  {}", self.describe_entry(entry)));
        }
        let hidden = stuck.candidates.len().saturating_sub(EXPLANATION_OPS_MAX);
        if hidden > 0 {
            text.push_str(&format!("\n  ... {hidden} more"));
        }
        text
    }

    fn describe_entry(&self, entry: u32) -> String {
        let index = self.entries[entry as usize].op;
        format!("{}: {}", (self.name)(index), describe(&self.history[index]))
    }

    /// What the register holds after `prefix`: its last write's or CAS's value.
    fn value_after(&self, prefix: &[u32]) -> String {
        let last_write = prefix
            .iter()
            .rev()
            .find_map(|&entry| written_by(&self.history[self.entries[entry as usize].op]));
        match last_write {
            None => "unset".to_string(),
            Some(value) => format!("= {value}"),
        }
    }
}

/// The search's view of `history[index]`, or `None` if the search can do without it.
fn entry(history: &[Operation], index: usize, uses: &BTreeMap<i64, ValueUse>) -> Option<Entry> {
    let op = &history[index];
    let (step, complete) = match (op.kind, op.complete) {
        (OpKind::Read { .. }, None) => return None,
        (OpKind::Read { value: None }, Some(complete)) => (Step::Read(UNSET), complete),
        (OpKind::Read { value: Some(v) }, Some(complete)) => (Step::Read(uses[&v].id), complete),
        (OpKind::Write { value }, complete) => {
            let complete = writer_complete(complete, &uses[&value])?;
            (Step::Write(uses[&value].id), complete)
        }
        (OpKind::Cas { expected, new }, complete) => {
            // Known CASes' expected values passed `prepare`'s check; an unknown CAS whose
            // expected value nothing writes never took effect.
            let expected = uses.get(&expected)?.id;
            let complete = writer_complete(complete, &uses[&new])?;
            (
                Step::Cas {
                    expected,
                    new: uses[&new].id,
                },
                complete,
            )
        }
    };
    assert!(
        op.invoke <= complete,
        "checked by check_named and prepare: {op:?}"
    );
    Some(Entry {
        op: index,
        step,
        invoke: op.invoke,
        complete,
    })
}

/// The completion the search gives a write or CAS of a value `used`, or `None` to drop it.
fn writer_complete(complete: Option<u64>, used: &ValueUse) -> Option<u64> {
    match (complete, used.read_complete_min) {
        (Some(complete), _) => Some(complete),
        // Never observed: it can always go last, where it changes nothing.
        (None, _) if !used.observed => None,
        // The only writer of its value precedes every read of that value.
        (None, Some(read)) if used.writes_count == 1 => Some(read),
        (None, _) => Some(NEVER),
    }
}

/// Per written value: its id, writers and earliest read.
fn value_uses(history: &[Operation], indices: &[usize]) -> BTreeMap<i64, ValueUse> {
    let mut uses: BTreeMap<i64, ValueUse> = BTreeMap::new();
    for &index in indices {
        let op = &history[index];
        if let Some(value) = written_by(op) {
            let used = uses.entry(value).or_insert(ValueUse {
                invoke_min: u64::MAX,
                ..ValueUse::default()
            });
            used.writes_count += 1;
            used.invoke_min = used.invoke_min.min(op.invoke);
        }
    }
    for &index in indices {
        let op = &history[index];
        if let Some((v, complete)) = read_of(op) {
            if let Some(used) = uses.get_mut(&v) {
                let earliest = used.read_complete_min.map_or(complete, |c| c.min(complete));
                used.read_complete_min = Some(earliest);
                used.observed = true;
            }
        }
        if let OpKind::Cas { expected, .. } = op.kind {
            if let Some(used) = uses.get_mut(&expected) {
                used.observed = true;
            }
        }
    }
    let mut observed_values = (UNREAD + 1)..;
    for used in uses.values_mut() {
        used.id = match used.observed {
            false => UNREAD,
            true => observed_values.next().expect("fewer values than u32::MAX"),
        };
    }
    uses
}

/// `client 3 write 5 [invoke 10, complete 20]`.
fn describe(op: &Operation) -> String {
    let complete = match op.complete {
        Some(complete) => complete.to_string(),
        None => "unknown".to_string(),
    };
    format!(
        "client {} {} [invoke {}, complete {complete}]",
        op.client,
        describe_kind(&op.kind),
        op.invoke
    )
}

/// `write 5`, `read unset`, `cas 5->6`.
fn describe_kind(kind: &OpKind) -> String {
    match *kind {
        OpKind::Write { value } => format!("write {value}"),
        OpKind::Read { value: Some(value) } => format!("read {value}"),
        OpKind::Read { value: None } => "read unset".to_string(),
        OpKind::Cas { expected, new } => format!("cas {expected}->{new}"),
    }
}

#[cfg(test)]
mod tests;
