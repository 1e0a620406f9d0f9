//! Linearizability checker for client-observed register histories.
//!
//! Every key is an independent register (initially unset) that clients write and read. The
//! checker decides whether the operations that clients saw, with their invoke and complete
//! times, could have taken effect one at a time, each at some instant between its invoke and
//! its completion (Herlihy & Wing, "Linearizability: A Correctness Condition for Concurrent
//! Objects", 1990). It uses only those times, never a server's log order, so it also catches
//! a log that orders writes against real time.
//!
//! Entry points: `check` and `check_with`. One file on purpose: the checker is self-contained
//! and meant to be read in one sitting; `Memo` could move out if it grows.
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
//!   placed at once and is no choice point (see `Search::run`); and all values that no read
//!   returned share one memo id (`UNREAD`), since no read can tell them apart.
//! - The memo is an open-addressing table over one arena of bitsets, keyed by a Zobrist hash
//!   that is updated in O(1) per step; it allocates nothing per state.
//!
//! # Semantics
//! - A write sets the register; a read returns its current value (`None` = unset).
//! - `complete: None` means the outcome is unknown (timeout, crash, `unknown_outcome`). Such
//!   a write may take effect at any instant after its invoke, or never: it never returns, so
//!   the search may place it last, where it has no visible effect. An unknown read tells
//!   nothing and is ignored. Writes that definitely failed must be dropped by the caller.
//! - Real time: if `a.complete < b.invoke` then `a` precedes `b`. Equal times overlap.
//! - Values need not be unique. Where they are, two sound reductions shrink the search:
//!   an unknown write whose value no read returned is dropped (it can always be placed last),
//!   and an unknown write that is its value's only writer must precede every read of that
//!   value, so it is given the earliest such read's completion as its own.
//!
//! # Bounds
//! The search is exponential in the worst case. Per key it stops after
//! `CheckOptions::states_max` memoized states (default `STATES_MAX_DEFAULT`, 2 million) and
//! reports `ViolationKind::SearchBoundExceeded`: undecided, which a caller must treat as a
//! failure to investigate, never as a pass. Time is then O(states_max × pending ops) and
//! memory about states_max × (8 × ⌈ops / 64⌉ + 28) bytes (up to twice that while the vectors
//! grow): some 140 MB for 300 ops at the default. Typical histories use a few states per op.
//!
//! # Invariants
//! - The placed operations are a prefix of an order that respects real time: a call is
//!   placed only while it precedes every pending return in the list.
//! - The register value is the result of applying the placed steps in order.
//! - A memoized (bitset, value) state is never explored twice: once placed and backtracked
//!   over, it is known to have no extension to a full linearization.

use std::collections::BTreeMap;
use std::fmt;

/// How many memoized search states `check` explores per key before giving up.
pub const STATES_MAX_DEFAULT: u64 = 2_000_000;

/// How many operations an explanation lists per section.
const EXPLANATION_OPS_MAX: usize = 12;

/// The memo's initial slot count; it doubles when half full.
const MEMO_SLOTS_MIN: usize = 1024;

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

/// Checks every key's history; the first bad key (in key order) wins.
///
/// Panics if an operation completes before it was invoked: that is the caller's bug.
pub fn check_with(history: &[Operation], options: &CheckOptions) -> Result<(), Violation> {
    let mut keys: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (index, op) in history.iter().enumerate() {
        if let Some(complete) = op.complete {
            assert!(
                op.invoke <= complete,
                "operation {index} completes before it is invoked: {op:?}"
            );
        }
        keys.entry(op.key).or_default().push(index);
    }
    for (key, indices) in keys {
        let register = Register::prepare(key, history, &indices)?;
        register.search(options.states_max)?;
    }
    Ok(())
}

/// A register value as a small id: `UNSET`, `UNREAD`, or one per value some read returned.
type ValueId = u32;
const UNSET: ValueId = 0;
/// Every value that no read returned: no read can tell them apart, so they share one id and
/// the memo sees orders of such writes as one state.
const UNREAD: ValueId = 1;

/// What an entry does to the register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Write(ValueId),
    Read(ValueId),
}

impl Step {
    /// The register's value after this step, or `None` if the step cannot happen now.
    fn apply(self, register: ValueId) -> Option<ValueId> {
        match self {
            Step::Write(value) => Some(value),
            Step::Read(value) => (value == register).then_some(value),
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
    /// `u64::MAX` for an unknown write that never returns.
    complete: u64,
}

/// One key's history, reduced and ready to search.
struct Register<'h> {
    key: u64,
    history: &'h [Operation],
    entries: Vec<Entry>,
    /// Operations of the key before reduction.
    ops_count: usize,
}

/// What a value's writes and reads look like, for the reductions.
#[derive(Clone, Copy, Default)]
struct ValueUse {
    id: ValueId,
    writes_count: u32,
    /// Earliest invoke among its writes.
    invoke_min: u64,
    /// Earliest completion among the known reads that returned it.
    read_complete_min: Option<u64>,
}

impl<'h> Register<'h> {
    /// Builds the key's entries; rejects at once a read of a value no write could have made.
    fn prepare(
        key: u64,
        history: &'h [Operation],
        indices: &[usize],
    ) -> Result<Register<'h>, Violation> {
        let uses = value_uses(history, indices);
        let mut register = Register {
            key,
            history,
            entries: Vec::with_capacity(indices.len()),
            ops_count: indices.len(),
        };
        // First every read, so that the writes below may rely on `invoke_min <= complete`.
        for &index in indices {
            let op = &history[index];
            if let (OpKind::Read { value: Some(v) }, Some(complete)) = (op.kind, op.complete) {
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

    /// A read returned a value that no write invoked before the read completed wrote.
    fn unwritten(&self, index: usize) -> Violation {
        Violation {
            key: self.key,
            kind: ViolationKind::NotLinearizable,
            explanation: format!(
                "key {}: not linearizable: op {index}: {} returned a value that no write of \
                 this key invoked by the read's completion wrote",
                self.key,
                describe(&self.history[index])
            ),
        }
    }

    /// Runs the search; `Err` if no linearization exists or the bound was hit.
    fn search(&self, states_max: u64) -> Result<(), Violation> {
        let mut search = Search::new(self);
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
                 unobserved writes; {} states explored).",
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
        Violation {
            key: self.key,
            kind,
            explanation,
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
        format!("op {index}: {}", describe(&self.history[index]))
    }

    /// What the register holds after `prefix`: its last write's value.
    fn value_after(&self, prefix: &[u32]) -> String {
        let last_write = prefix.iter().rev().find_map(|&entry| {
            match self.history[self.entries[entry as usize].op].kind {
                OpKind::Write { value } => Some(value),
                OpKind::Read { .. } => None,
            }
        });
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
            let used = uses[&value];
            let complete = match (complete, used.read_complete_min) {
                (Some(complete), _) => complete,
                // Never observed: it can always go last, where it changes nothing.
                (None, None) => return None,
                // The only writer of its value precedes every read of that value.
                (None, Some(read)) if used.writes_count == 1 => read,
                (None, Some(_)) => u64::MAX,
            };
            (Step::Write(used.id), complete)
        }
    };
    assert!(
        op.invoke <= complete,
        "checked by check_with and prepare: {op:?}"
    );
    Some(Entry {
        op: index,
        step,
        invoke: op.invoke,
        complete,
    })
}

/// Per written value: its id, writers and earliest read.
fn value_uses(history: &[Operation], indices: &[usize]) -> BTreeMap<i64, ValueUse> {
    let mut uses: BTreeMap<i64, ValueUse> = BTreeMap::new();
    for &index in indices {
        let op = &history[index];
        if let OpKind::Write { value } = op.kind {
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
        if let (OpKind::Read { value: Some(v) }, Some(complete)) = (op.kind, op.complete) {
            if let Some(used) = uses.get_mut(&v) {
                let earliest = used.read_complete_min.map_or(complete, |c| c.min(complete));
                used.read_complete_min = Some(earliest);
            }
        }
    }
    let mut read_values = (UNREAD + 1)..;
    for used in uses.values_mut() {
        used.id = match used.read_complete_min {
            None => UNREAD,
            Some(_) => read_values.next().expect("fewer values than u32::MAX"),
        };
    }
    uses
}

/// `client 3 write 5 [invoke 10, complete 20]`.
fn describe(op: &Operation) -> String {
    let action = match op.kind {
        OpKind::Write { value } => format!("write {value}"),
        OpKind::Read { value: Some(value) } => format!("read {value}"),
        OpKind::Read { value: None } => "read unset".to_string(),
    };
    let complete = match op.complete {
        Some(complete) => complete.to_string(),
        None => "unknown".to_string(),
    };
    format!(
        "client {} {action} [invoke {}, complete {complete}]",
        op.client, op.invoke
    )
}

/// The list's nil and its head sentinel's index.
const NIL: u32 = u32::MAX;
const HEAD: u32 = 0;

/// A call or return event; node `n` of the list is `events[n - 1]`.
#[derive(Clone, Copy, Debug)]
struct Event {
    entry: u32,
    /// For a call, the node of its return; `NIL` for a return.
    return_node: u32,
}

/// The current prefix of the search.
struct Path {
    /// Bitset of the placed entries.
    linearized: Vec<u64>,
    /// Zobrist hash of `linearized`.
    hash: u64,
    register: ValueId,
    /// (call node, register before it, how), in linearization order.
    placed: Vec<(u32, ValueId, Placement)>,
}

/// Whether backtracking over a placement should try the alternatives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placement {
    /// One of several candidates: on backtrack, try the next.
    Choice,
    /// Safe to place (see `Search::run`): if it fails, so does the prefix before it.
    Forced,
}

/// The deepest dead end, for the explanation.
struct Stuck {
    prefix: Vec<u32>,
    blocked: u32,
    candidates: Vec<u32>,
}

/// Porcupine's `checkSingle` over one register.
struct Search<'r> {
    entries: &'r [Entry],
    events: Vec<Event>,
    next: Vec<u32>,
    prev: Vec<u32>,
    memo: Memo,
    /// Zobrist key per entry.
    zobrist: Vec<u64>,
    stuck: Option<Stuck>,
}

impl<'r> Search<'r> {
    fn new(register: &'r Register<'_>) -> Search<'r> {
        let entries = &register.entries[..];
        let mut order: Vec<(u64, bool, u32)> = Vec::with_capacity(2 * entries.len());
        for (entry, e) in (0u32..).zip(entries) {
            // At equal times calls sort first (`false < true`): the operations overlap.
            order.push((e.invoke, false, entry));
            order.push((e.complete, true, entry));
        }
        order.sort_unstable();
        let mut return_node = vec![NIL; entries.len()];
        for (node, &(_, is_return, entry)) in (1u32..).zip(&order) {
            if is_return {
                return_node[entry as usize] = node;
            }
        }
        let events = order
            .iter()
            .map(|&(_, is_return, entry)| Event {
                entry,
                return_node: if is_return {
                    NIL
                } else {
                    return_node[entry as usize]
                },
            })
            .collect();
        let nodes = u32::try_from(order.len() + 1).expect("checked in prepare");
        let mut next: Vec<u32> = (1..=nodes).collect();
        next[nodes as usize - 1] = NIL;
        let prev: Vec<u32> = (0..nodes).map(|n| n.wrapping_sub(1)).collect();
        Search {
            entries,
            events,
            next,
            prev,
            memo: Memo::new(entries.len().div_ceil(64)),
            zobrist: (0..entries.len() as u64)
                .map(|e| mix(e.wrapping_add(1)))
                .collect(),
            stuck: None,
        }
    }

    /// Wing & Gong's search with Lowe's memo; `Err` says why no linearization was found.
    ///
    /// One pruning beyond Porcupine: a pending read that matches the register is placed at
    /// once and is no choice point. If a linearization extends the prefix, moving that read
    /// to just after the prefix gives another one: it changes nothing, and no pending
    /// operation completed before it was invoked (its call precedes every pending return).
    fn run(&mut self, states_max: u64) -> Result<(), ViolationKind> {
        let mut path = Path {
            linearized: vec![0u64; self.memo.words_per_set],
            hash: 0,
            register: UNSET,
            placed: Vec::with_capacity(self.entries.len()),
        };
        let mut node = self.next[HEAD as usize];
        let mut level_start = true;
        while self.next[HEAD as usize] != NIL {
            if level_start {
                level_start = false;
                if let Some(read) = self.matching_read(path.register) {
                    if self.place(&mut path, read, Placement::Forced, states_max)? {
                        (node, level_start) = (self.next[HEAD as usize], true);
                    } else {
                        // Explored and failed before, so this prefix fails too.
                        node = self.backtrack(&mut path)?;
                    }
                    continue;
                }
            }
            assert_ne!(node, NIL, "the list always ends with a return event");
            let event = self.events[node as usize - 1];
            if event.return_node == NIL {
                self.note_dead_end(&path.placed, event.entry, node);
                node = self.backtrack(&mut path)?;
            } else if self.place(&mut path, node, Placement::Choice, states_max)? {
                (node, level_start) = (self.next[HEAD as usize], true);
            } else {
                node = self.next[node as usize];
            }
        }
        debug_assert_eq!(
            path.linearized
                .iter()
                .map(|w| w.count_ones() as usize)
                .sum::<usize>(),
            self.entries.len()
        );
        Ok(())
    }

    /// The first pending read that the register's value satisfies.
    fn matching_read(&self, register: ValueId) -> Option<u32> {
        let mut node = self.next[HEAD as usize];
        while node != NIL {
            let event = self.events[node as usize - 1];
            if event.return_node == NIL {
                return None;
            }
            if self.entries[event.entry as usize].step == Step::Read(register) {
                return Some(node);
            }
            node = self.next[node as usize];
        }
        None
    }

    /// Places the call at `node` if its step applies and the state it leads to is new.
    fn place(
        &mut self,
        path: &mut Path,
        node: u32,
        placement: Placement,
        states_max: u64,
    ) -> Result<bool, ViolationKind> {
        let entry = self.events[node as usize - 1].entry as usize;
        let Some(after) = self.entries[entry].step.apply(path.register) else {
            return Ok(false);
        };
        flip(&mut path.linearized, entry);
        let hash = path.hash ^ self.zobrist[entry] ^ mix(u64::from(after) << 32);
        if !self.memo.insert(&path.linearized, after, hash) {
            flip(&mut path.linearized, entry);
            return Ok(false);
        }
        if self.memo.len() as u64 > states_max {
            return Err(ViolationKind::SearchBoundExceeded { states_max });
        }
        path.hash ^= self.zobrist[entry];
        path.placed.push((node, path.register, placement));
        path.register = after;
        self.lift(node);
        Ok(true)
    }

    /// Undoes placements up to and including the last choice; returns where to look next.
    fn backtrack(&mut self, path: &mut Path) -> Result<u32, ViolationKind> {
        loop {
            let Some((call, before, placement)) = path.placed.pop() else {
                return Err(ViolationKind::NotLinearizable);
            };
            let entry = self.events[call as usize - 1].entry as usize;
            flip(&mut path.linearized, entry);
            path.hash ^= self.zobrist[entry];
            path.register = before;
            self.unlift(call);
            if placement == Placement::Choice {
                return Ok(self.next[call as usize]);
            }
        }
    }

    /// Remembers the deepest point where an operation's completion came before it was placed.
    fn note_dead_end(&mut self, placed: &[(u32, ValueId, Placement)], blocked: u32, node: u32) {
        if self
            .stuck
            .as_ref()
            .is_some_and(|s| s.prefix.len() >= placed.len())
        {
            return;
        }
        let mut candidates = Vec::new();
        let mut at = self.next[HEAD as usize];
        while at != node {
            let entry = self.events[at as usize - 1].entry;
            if entry != blocked {
                candidates.push(entry);
            }
            at = self.next[at as usize];
        }
        self.stuck = Some(Stuck {
            prefix: placed
                .iter()
                .map(|&(call, _, _)| self.events[call as usize - 1].entry)
                .collect(),
            blocked,
            candidates,
        });
    }

    /// Takes a call and its return out of the list.
    fn lift(&mut self, call: u32) {
        let ret = self.events[call as usize - 1].return_node;
        self.unlink(call);
        self.unlink(ret);
    }

    /// Undoes `lift`, in reverse order (dancing links).
    fn unlift(&mut self, call: u32) {
        let ret = self.events[call as usize - 1].return_node;
        self.relink(ret);
        self.relink(call);
    }

    fn unlink(&mut self, node: u32) {
        let (before, after) = (self.prev[node as usize], self.next[node as usize]);
        self.next[before as usize] = after;
        if after != NIL {
            self.prev[after as usize] = before;
        }
    }

    fn relink(&mut self, node: u32) {
        let (before, after) = (self.prev[node as usize], self.next[node as usize]);
        self.next[before as usize] = node;
        if after != NIL {
            self.prev[after as usize] = node;
        }
    }
}

fn flip(set: &mut [u64], entry: usize) {
    set[entry / 64] ^= 1 << (entry % 64);
}

/// SplitMix64's finalizer: a bijection that spreads every input bit.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The set of visited (linearized set, register) states: open addressing over an arena.
struct Memo {
    words_per_set: usize,
    /// State `s` owns `sets[s * words_per_set..][..words_per_set]`.
    sets: Vec<u64>,
    registers: Vec<ValueId>,
    hashes: Vec<u64>,
    /// State indices, `NIL` when empty; a power of two, at most half full.
    slots: Vec<u32>,
}

impl Memo {
    fn new(words_per_set: usize) -> Memo {
        Memo {
            words_per_set,
            sets: Vec::new(),
            registers: Vec::new(),
            hashes: Vec::new(),
            slots: vec![NIL; MEMO_SLOTS_MIN],
        }
    }

    fn len(&self) -> usize {
        self.registers.len()
    }

    /// Adds the state; false if it was already there.
    fn insert(&mut self, set: &[u64], register: ValueId, hash: u64) -> bool {
        assert_eq!(set.len(), self.words_per_set);
        let mask = self.slots.len() - 1;
        let mut slot = hash as usize & mask;
        while self.slots[slot] != NIL {
            let state = self.slots[slot] as usize;
            if self.hashes[state] == hash
                && self.registers[state] == register
                && self.set(state) == set
            {
                return false;
            }
            slot = (slot + 1) & mask;
        }
        let state = u32::try_from(self.len()).expect("states_max is below u32::MAX");
        self.slots[slot] = state;
        self.sets.extend_from_slice(set);
        self.registers.push(register);
        self.hashes.push(hash);
        if 2 * self.len() > self.slots.len() {
            self.grow();
        }
        true
    }

    fn set(&self, state: usize) -> &[u64] {
        &self.sets[state * self.words_per_set..][..self.words_per_set]
    }

    fn grow(&mut self) {
        self.slots = vec![NIL; 2 * self.slots.len()];
        let mask = self.slots.len() - 1;
        for (state, &hash) in (0u32..).zip(&self.hashes) {
            let mut slot = hash as usize & mask;
            while self.slots[slot] != NIL {
                slot = (slot + 1) & mask;
            }
            self.slots[slot] = state;
        }
    }
}

#[cfg(test)]
mod tests;
