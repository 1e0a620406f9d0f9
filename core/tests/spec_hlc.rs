//! `specs/HybridLogicalClock.tla`'s whole state graph (the constants of
//! `specs/gen/HybridLogicalClockGen.cfg`) replayed on `core::hlc`: every path
//! `specs/gen_tests.py` wrote to `spec_paths/hlc.txt`, one `Hlc` per spec process, each
//! reading a physical clock the test sets to the spec's `pt`.
//!
//! Actions ↔ code: `Send` ~ `Hlc::now`, `Receive` ~ `Hlc::update` returning `Ok`, `Reject` ~
//! `Hlc::update` returning `RemoteTooFarAhead`, `TickCorrect`/`TickFaulty` ~ the wall clock.
//! `l`, `c` are `Hlc::last()`; `msgs`, `sends`, `ticked` (the paper's "pt ticks between
//! events", a constraint on the environment) and the ghost `lastRecv` are kept by the test.

mod spec_replay;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::rc::Rc;

use spec_replay::{Implementation, SpecPaths, SpecState};
use treesync_core::hlc::{Hlc, HlcError, Timestamp, WallClock};

const PATHS: &str = include_str!("spec_paths/hlc.txt");

/// A physical clock the test moves: the spec's `pt[p]`, in milliseconds.
#[derive(Clone, Default)]
struct ManualClock(Rc<Cell<u64>>);

impl WallClock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.get()
    }
}

/// The clock operations the spec's actions drive: `Hlc` itself, or a deliberately wrong
/// wrapper that shows the replay catches a disagreement.
trait Clock {
    fn now(&self) -> Timestamp;
    fn update(&self, remote: Timestamp) -> Result<Timestamp, HlcError>;
    fn last(&self) -> Timestamp;
}

impl<C: WallClock> Clock for Hlc<C> {
    fn now(&self) -> Timestamp {
        Hlc::now(self)
    }

    fn update(&self, remote: Timestamp) -> Result<Timestamp, HlcError> {
        Hlc::update(self, remote)
    }

    fn last(&self) -> Timestamp {
        Hlc::last(self)
    }
}

/// A message in flight, `src>dst@l.c` in the data files.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Message {
    src: String,
    dst: String,
    stamp: Timestamp,
}

impl Message {
    fn parse(text: &str) -> Message {
        let parsed = text.split_once('>').and_then(|(src, rest)| {
            let (dst, stamp) = rest.split_once('@')?;
            let (l, c) = stamp.split_once('.')?;
            let stamp = Timestamp::new(l.parse().ok()?, c.parse().ok()?);
            Some(Message {
                src: src.to_owned(),
                dst: dst.to_owned(),
                stamp,
            })
        });
        parsed.unwrap_or_else(|| panic!("not a message: {text:?}"))
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}>{}@{}", self.src, self.dst, self.stamp)
    }
}

/// One spec process: its physical clock, its HLC and the spec's bookkeeping about it.
struct Process<K> {
    wall: ManualClock,
    clock: K,
    /// `ticked[p]`: pt advanced since the last event (the spec's precondition of events).
    ticked: bool,
    /// `lastRecv[p]`: the stamp of the last message accepted.
    last_received: Timestamp,
}

/// The spec's processes and network, on real clocks.
struct Cluster<K> {
    processes: BTreeMap<String, Process<K>>,
    in_flight: BTreeSet<Message>,
    sends: u64,
}

impl<K: Clock> Cluster<K> {
    /// `clock(wall, max_offset_ms)` makes one process's clock.
    fn new(spec: &SpecPaths, clock: impl Fn(ManualClock, u64) -> K) -> Cluster<K> {
        let max_offset_ms: u64 = spec.constant("MaxOffset");
        let mut names = spec.constant_set("Correct");
        names.extend(spec.constant_set("Faulty"));
        let processes = names
            .into_iter()
            .map(|name| {
                let wall = ManualClock::default();
                let process = Process {
                    clock: clock(wall.clone(), max_offset_ms),
                    wall,
                    ticked: true,
                    last_received: Timestamp::ZERO,
                };
                (name, process)
            })
            .collect();
        Cluster {
            processes,
            in_flight: BTreeSet::new(),
            sends: 0,
        }
    }

    fn process(&mut self, name: &str) -> &mut Process<K> {
        self.processes
            .get_mut(name)
            .unwrap_or_else(|| panic!("no process {name}"))
    }

    /// Takes `message` off the network for its receiver, as Receive and Reject both do.
    fn deliver(&mut self, message: &str) -> Result<(Message, &mut Process<K>), String> {
        let message = Message::parse(message);
        if !self.in_flight.remove(&message) {
            return Err(format!("{message} is not in flight"));
        }
        let receiver = message.dst.clone();
        Ok((message, self.process(&receiver)))
    }

    /// `p1:x,p2:y` for one field of every process, in name order.
    fn each(&self, field: impl Fn(&Process<K>) -> String) -> String {
        let fields: Vec<String> = self
            .processes
            .iter()
            .map(|(name, process)| format!("{name}:{}", field(process)))
            .collect();
        fields.join(",")
    }
}

impl<K: Clock> Implementation for Cluster<K> {
    fn step(&mut self, action: &str) -> Result<(), String> {
        let words: Vec<&str> = action.split(' ').collect();
        match words.as_slice() {
            ["TickCorrect" | "TickFaulty", name, pt] => {
                let process = self.process(name);
                process.wall.0.set(pt.parse().expect("pt is a number"));
                process.ticked = true;
            }
            ["Send", src, dst] => {
                let process = self.process(src);
                let stamp = process.clock.now();
                process.ticked = false;
                let message = Message {
                    src: (*src).to_owned(),
                    dst: (*dst).to_owned(),
                    stamp,
                };
                self.in_flight.insert(message);
                self.sends += 1;
            }
            ["Receive", message] => {
                let (message, receiver) = self.deliver(message)?;
                receiver.clock.update(message.stamp).map_err(|e| {
                    format!("the spec receives {message}; the implementation refused: {e}")
                })?;
                receiver.ticked = false;
                receiver.last_received = message.stamp;
            }
            ["Reject", message] => {
                let (message, receiver) = self.deliver(message)?;
                match receiver.clock.update(message.stamp) {
                    Err(HlcError::RemoteTooFarAhead { .. }) => {}
                    Ok(stamp) => {
                        return Err(format!(
                            "the spec rejects {message}; the implementation took it as {stamp}"
                        ))
                    }
                    Err(other) => return Err(format!("{message}: unexpected error {other}")),
                }
            }
            _ => panic!("not a HybridLogicalClock action: {action:?}"),
        }
        Ok(())
    }

    fn state(&self) -> SpecState {
        let messages: BTreeSet<String> = self.in_flight.iter().map(|m| m.to_string()).collect();
        let messages: Vec<String> = messages.into_iter().collect();
        let flag = |on: bool| if on { "T" } else { "F" }.to_owned();
        [
            ("pt", self.each(|p| p.wall.0.get().to_string())),
            ("l", self.each(|p| p.clock.last().wall_ms().to_string())),
            ("c", self.each(|p| p.clock.last().logical().to_string())),
            ("ticked", self.each(|p| flag(p.ticked))),
            ("sends", self.sends.to_string()),
            ("lastRecv", self.each(|p| p.last_received.to_string())),
            ("msgs", messages.join(",")),
        ]
        .into_iter()
        .map(|(variable, value)| (variable.to_owned(), value))
        .collect()
    }
}

#[test]
fn hlc_agrees_with_every_path_of_the_spec() {
    let spec = SpecPaths::parse(PATHS);
    let replayed = spec_replay::replay(&spec, || Cluster::new(&spec, Hlc::new))
        .unwrap_or_else(|mismatch| panic!("core::hlc disagrees with the spec at {mismatch}"));
    eprintln!(
        "HybridLogicalClock: {} generated tests (paths), {} steps, {} spec states",
        replayed.paths, replayed.steps, replayed.states
    );
    assert!(replayed.paths > 1000, "the whole graph, not a sample");
}

/// A receive that drops the remote logical counter (`update` of `(r.l, 0)`): the paper's
/// `max(c, r.c) + 1` and `r.c + 1` cases then come out too low.
struct IgnoresRemoteCounter<C>(Hlc<C>);

impl<C: WallClock> Clock for IgnoresRemoteCounter<C> {
    fn now(&self) -> Timestamp {
        self.0.now()
    }

    fn update(&self, remote: Timestamp) -> Result<Timestamp, HlcError> {
        self.0.update(Timestamp::new(remote.wall_ms(), 0))
    }

    fn last(&self) -> Timestamp {
        self.0.last()
    }
}

#[test]
fn replay_catches_a_receive_that_ignores_the_remote_counter() {
    let spec = SpecPaths::parse(PATHS);
    let wrong = |wall, max_offset_ms| IgnoresRemoteCounter(Hlc::new(wall, max_offset_ms));
    let mismatch = spec_replay::replay(&spec, || Cluster::new(&spec, wrong))
        .expect_err("a clock that ignores the remote counter must disagree with the spec");
    eprintln!("caught, as it must be: {mismatch}");
    let words: Vec<&str> = mismatch.action.split(' ').collect();
    let ["Receive", message] = words.as_slice() else {
        panic!("the first disagreement must be a Receive: {mismatch}");
    };
    assert!(
        Message::parse(message).stamp.logical() > 0,
        "only a nonzero remote counter can be lost: {mismatch}"
    );
    let variables: Vec<&str> = mismatch
        .differences
        .iter()
        .map(|d| d.variable.as_str())
        .collect();
    assert_eq!(variables, ["c"], "{mismatch}");
    assert_eq!(mismatch.refused, None, "{mismatch}");
}

#[test]
fn replay_catches_a_receive_without_the_max_offset_guard() {
    let spec = SpecPaths::parse(PATHS);
    // No offset is too far ahead: the guard never fires.
    let unguarded = |wall, _max_offset_ms| Hlc::new(wall, u64::MAX);
    let mismatch = spec_replay::replay(&spec, || Cluster::new(&spec, unguarded))
        .expect_err("a clock without the max-offset guard must disagree with the spec");
    eprintln!("caught, as it must be: {mismatch}");
    assert!(mismatch.action.starts_with("Reject "), "{mismatch}");
    let refused = mismatch.refused.as_deref().unwrap_or_default();
    assert!(refused.contains("the spec rejects"), "{mismatch}");
    assert!(
        mismatch.differences.iter().any(|d| d.variable == "l"),
        "the receiver adopted the faulty clock's l: {mismatch}"
    );
}
