//! A generator of linearizable histories, to measure and demonstrate the checkers
//! (`treesync check --generate-demo`).
//!
//! One seed drives a discrete-event simulation of `processes` clients against perfect
//! registers and sets: every op takes effect at one instant between its invoke and its
//! completion, so the history is linearizable by construction. Some ops time out (`info`):
//! half of those take effect, possibly after the timeout, half never do; and the process
//! then continues under a new id, as Jepsen's do. A CAS that finds another value ends
//! `fail`, and a few writes and adds are refused (`fail`, no effect).
//!
//! # Invariants
//! - Events are written in time order (one heap of timed events), so the writer never
//!   refuses one.
//! - An op's effect precedes its completion, unless its outcome is unknown.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::io::Write;

use super::{Call, HistoryWriteError, HistoryWriter, Outcome, Reply};
use crate::rng::Rng;

/// Delay from invoke to effect, and from effect to completion (ns).
const LATENCY_MIN_NS: u64 = 50_000;
const LATENCY_MAX_NS: u64 = 2_000_000;
/// A client's pause between ops (ns).
const THINK_MAX_NS: u64 = 200_000;
/// When an op with an unknown outcome times out, after its invoke (ns).
const TIMEOUT_MIN_NS: u64 = 1_000_000;
const TIMEOUT_MAX_NS: u64 = 5_000_000;
/// Writes and adds refused outright (per mille).
const REFUSED_PER_MILLE: u64 = 10;

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoOptions {
    /// Ops invoked in all.
    pub ops: u64,
    /// Register keys are `0..register_keys`.
    pub register_keys: u64,
    /// Set keys follow the register keys. Every `read_set` returns the whole set, so
    /// histories with set keys grow quadratically: keep their ops few.
    pub set_keys: u64,
    /// Clients running at once.
    pub processes: u64,
    /// Ops whose outcome is unknown (per mille).
    pub unknown_per_mille: u64,
    pub seed: u64,
}

impl Default for DemoOptions {
    fn default() -> DemoOptions {
        DemoOptions {
            ops: 1000,
            register_keys: 20,
            set_keys: 0,
            processes: 10,
            unknown_per_mille: 10,
            seed: 1,
        }
    }
}

/// What was generated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DemoSummary {
    pub ops: u64,
    /// Ops that ended `info`.
    pub unknown: u64,
    /// Ops that ended `fail`.
    pub failed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Invoke { slot: u64 },
    Effect { op: u64 },
    Complete { op: u64 },
}

/// An op between its invoke and its last event.
struct Pending {
    slot: u64,
    process: u64,
    key: u64,
    call: Call,
    /// How it ends: `Info` if unknown, else what its effect returned (set by the effect).
    outcome: Option<Outcome>,
    /// Events still to come for it (effect and completion).
    events_left: u8,
}

struct Demo<'o, W: Write> {
    options: &'o DemoOptions,
    writer: &'o mut HistoryWriter<W>,
    rng: Rng,
    /// (time, sequence, event): the sequence keeps equal times in push order.
    events: BinaryHeap<Reverse<(u64, u64, Event)>>,
    sequence: u64,
    /// The process id each client slot runs under now.
    processes: Vec<u64>,
    pending: HashMap<u64, Pending>,
    registers: HashMap<u64, i64>,
    sets: HashMap<u64, BTreeSet<i64>>,
    value_next: i64,
    summary: DemoSummary,
}

/// Writes a linearizable history of `options.ops` ops to `writer`.
pub fn generate_demo<W: Write>(
    options: &DemoOptions,
    writer: &mut HistoryWriter<W>,
) -> Result<DemoSummary, HistoryWriteError> {
    assert!(options.processes > 0, "at least one process");
    assert!(
        options.register_keys + options.set_keys > 0,
        "at least one key"
    );
    let mut demo = Demo {
        options,
        writer,
        rng: Rng::new(options.seed),
        events: BinaryHeap::new(),
        sequence: 0,
        processes: (0..options.processes).collect(),
        pending: HashMap::new(),
        registers: HashMap::new(),
        sets: HashMap::new(),
        value_next: 1,
        summary: DemoSummary::default(),
    };
    for slot in 0..options.processes {
        let at = demo.rng.range(0, THINK_MAX_NS);
        demo.push(at, Event::Invoke { slot });
    }
    while let Some(Reverse((time, _, event))) = demo.events.pop() {
        match event {
            Event::Invoke { slot } => demo.invoke(time, slot)?,
            Event::Effect { op } => demo.effect(op),
            Event::Complete { op } => demo.complete(time, op)?,
        }
    }
    assert!(demo.pending.is_empty(), "every op ran to its end");
    Ok(demo.summary)
}

impl<W: Write> Demo<'_, W> {
    fn push(&mut self, time: u64, event: Event) {
        self.sequence += 1;
        self.events.push(Reverse((time, self.sequence, event)));
    }

    fn latency(&mut self) -> u64 {
        self.rng.range(LATENCY_MIN_NS, LATENCY_MAX_NS)
    }

    fn invoke(&mut self, now: u64, slot: u64) -> Result<(), HistoryWriteError> {
        if self.summary.ops == self.options.ops {
            return Ok(());
        }
        self.summary.ops += 1;
        let keys = self.options.register_keys + self.options.set_keys;
        let key = self.rng.range(0, keys - 1);
        let call = self.choose(key);
        let process = self.processes[slot as usize];
        let op = self.writer.invoke(now, process, key, call.clone())?;
        let refused = matches!(call, Call::Write { .. } | Call::Add { .. })
            && self.rng.chance(REFUSED_PER_MILLE);
        let unknown = !refused && self.rng.chance(self.options.unknown_per_mille);
        let mut pending = Pending {
            slot,
            process,
            key,
            call,
            outcome: None,
            events_left: 2,
        };
        if refused {
            pending.outcome = Some(Outcome::Fail);
            pending.events_left = 1;
            let at = now + self.latency();
            self.push(at, Event::Complete { op });
        } else if unknown {
            pending.outcome = Some(Outcome::Info);
            let timeout = now + self.rng.range(TIMEOUT_MIN_NS, TIMEOUT_MAX_NS);
            if self.rng.chance(500) {
                // Takes effect, maybe after the client gave up.
                let at = now + self.rng.range(0, 2 * TIMEOUT_MAX_NS);
                self.push(at, Event::Effect { op });
            } else {
                pending.events_left = 1;
            }
            self.push(timeout, Event::Complete { op });
        } else {
            let effect = now + self.latency();
            let complete = effect + self.latency();
            self.push(effect, Event::Effect { op });
            self.push(complete, Event::Complete { op });
        }
        self.pending.insert(op, pending);
        Ok(())
    }

    /// A call on `key`: reads, writes and CASes (from the current value) on registers;
    /// mostly adds on sets.
    fn choose(&mut self, key: u64) -> Call {
        let roll = self.rng.range(0, 99);
        if key >= self.options.register_keys {
            return match roll {
                0..=79 => Call::Add {
                    element: self.fresh_value(),
                },
                _ => Call::ReadSet,
            };
        }
        match (roll, self.registers.get(&key).copied()) {
            (0..=39, _) => Call::Read,
            (40..=74, _) | (_, None) => Call::Write {
                value: self.fresh_value(),
            },
            (_, Some(current)) => Call::Cas {
                expected: current,
                new: self.fresh_value(),
            },
        }
    }

    fn fresh_value(&mut self) -> i64 {
        self.value_next += 1;
        self.value_next
    }

    /// The op takes effect now: the register or set changes, and its result is fixed.
    fn effect(&mut self, op: u64) {
        let pending = self
            .pending
            .get_mut(&op)
            .expect("an effect's op is pending");
        let key = pending.key;
        let register = self.registers.get(&key).copied();
        let outcome = match pending.call {
            Call::Read => Outcome::Ok(Reply::Read(register)),
            Call::Write { value } => {
                self.registers.insert(key, value);
                Outcome::Ok(Reply::Done)
            }
            Call::Cas { expected, new } if register == Some(expected) => {
                self.registers.insert(key, new);
                Outcome::Ok(Reply::Done)
            }
            Call::Cas { .. } => Outcome::Fail,
            Call::Add { element } => {
                self.sets.entry(key).or_default().insert(element);
                Outcome::Ok(Reply::Done)
            }
            Call::ReadSet => {
                let set = self.sets.get(&key);
                Outcome::Ok(Reply::ReadSet(set.into_iter().flatten().copied().collect()))
            }
        };
        if pending.outcome.is_none() {
            pending.outcome = Some(outcome);
        }
        self.finish(op);
    }

    fn complete(&mut self, now: u64, op: u64) -> Result<(), HistoryWriteError> {
        let pending = self.pending.get(&op).expect("a completion's op is pending");
        let outcome = pending
            .outcome
            .clone()
            .expect("set at invoke or by the effect, which comes first");
        let (slot, process) = (pending.slot, pending.process);
        match outcome {
            Outcome::Info => {
                self.summary.unknown += 1;
                // As Jepsen: a process whose op is in doubt continues under a new id.
                self.processes[slot as usize] += self.options.processes;
            }
            Outcome::Fail => self.summary.failed += 1,
            Outcome::Ok(_) => {}
        }
        self.writer.complete(now, process, outcome, None)?;
        self.finish(op);
        let at = now + self.rng.range(0, THINK_MAX_NS);
        self.push(at, Event::Invoke { slot });
        Ok(())
    }

    fn finish(&mut self, op: u64) {
        let pending = self
            .pending
            .get_mut(&op)
            .expect("pending until its last event");
        pending.events_left -= 1;
        if pending.events_left == 0 {
            self.pending.remove(&op);
        }
    }
}
