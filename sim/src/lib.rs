//! treesync-sim: deterministic simulation of one treesync shard (FoundationDB-style).
//!
//! The whole group — three `core::replica::Replica`s — runs on one thread over a simulated
//! network (loss, duplication, delay and reordering, partitions), simulated disks (a crash
//! loses every write not yet fsynced), jittered ticks and skewed wall clocks (up to 400 ms
//! apart, feeding each node's HLC), driven by one seed. Clients write
//! and read registers. Each run checks:
//! - election safety: at most one leader per term;
//! - state machine safety: replicas that applied the same index applied the same log
//!   (hash chain of applied entries);
//! - durability: every acknowledged write is in every replica's committed log after a heal
//!   phase (no faults, everyone restarted);
//! - liveness after healing: a leader exists and all replicas applied the same index;
//! - linearizability per key (see `history`);
//! - HLC order: applied timestamps strictly increase along the log, across leader changes
//!   and skewed clocks (asserted by every replica as it applies).
//!
//! `Bug` turns on a deliberate bug so anyone can watch a check catch it.
//!
//! Replicas compact their logs every 32 entries, so lagging or restarted replicas are often
//! caught up by a tree snapshot rather than by entries.
//!
//! With `SimOptions::trace` a run also records its Raft steps as spec actions (`trace`), for
//! TLC to check against `specs/RaftLeaderElectionTrace.tla`.
//!
//! Not simulated yet: several shards per node.

mod history;
mod rng;
pub mod trace;
mod world;

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

pub use history::{check as check_history, Event, Kind, Outcome};
use world::{World, KEYS};

/// A deliberate bug, for showing that the checks catch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// Acknowledge appends and votes before the fsync completes.
    AckBeforeFsync,
    /// Serve reads from the local tree of whichever replica is asked, without ReadIndex.
    StaleRead,
    /// A restart loses the vote of the persisted hard state (as `RaftLeaderElectionBuggy`).
    ForgetVote,
}

impl Bug {
    pub const ALL: [Bug; 3] = [Bug::AckBeforeFsync, Bug::StaleRead, Bug::ForgetVote];

    pub fn name(self) -> &'static str {
        match self {
            Bug::AckBeforeFsync => "ack-before-fsync",
            Bug::StaleRead => "stale-read",
            Bug::ForgetVote => "forget-vote",
        }
    }
}

impl std::str::FromStr for Bug {
    type Err = String;
    fn from_str(s: &str) -> Result<Bug, String> {
        Bug::ALL.into_iter().find(|b| b.name() == s).ok_or_else(|| {
            let known: Vec<&str> = Bug::ALL.iter().map(|b| b.name()).collect();
            format!("unknown bug {s:?} (known: {})", known.join(", "))
        })
    }
}

/// What one run does.
#[derive(Clone, Debug)]
pub struct SimOptions {
    pub seed: u64,
    /// Simulated time units with faults and client traffic.
    pub steps: u64,
    /// Time units of the heal phase (no faults, no new client traffic).
    pub heal_steps: u64,
    /// Chance per time unit (per mille) of crashing a node.
    pub crash_per_mille: u64,
    pub inject: Option<Bug>,
    /// Record a trace for `specs/RaftLeaderElectionTrace.tla`. Such runs differ: no log
    /// compaction, and crashes only of nodes whose writes are all durable (see `trace`).
    pub trace: bool,
}

impl SimOptions {
    pub fn new(seed: u64) -> SimOptions {
        SimOptions {
            seed,
            steps: 1500,
            heal_steps: 600,
            crash_per_mille: 8,
            inject: None,
            trace: false,
        }
    }
}

/// The result of one seed.
#[derive(Clone, Debug)]
pub struct SeedReport {
    pub seed: u64,
    /// The first violated property, if any.
    pub violation: Option<String>,
    pub writes_acked: usize,
    pub reads_ok: usize,
    pub crashes: u64,
    /// Times a lagging replica was caught up by a snapshot.
    pub snapshots_installed: u64,
    /// The recorded trace (runs with `SimOptions::trace`).
    pub trace: Option<trace::TraceRecorder>,
}

impl fmt::Display for SeedReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.violation {
            Some(v) => write!(f, "seed {}: FAILED: {v}", self.seed),
            None => write!(
                f,
                "seed {}: ok ({} writes acknowledged, {} reads, {} crashes, {} snapshots installed)",
                self.seed, self.writes_acked, self.reads_ok, self.crashes, self.snapshots_installed
            ),
        }
    }
}

/// Runs one seed; a panic inside the cluster is reported as a violation.
pub fn run_seed(options: &SimOptions) -> SeedReport {
    let seed = options.seed;
    match catch_unwind(AssertUnwindSafe(|| simulate(options))) {
        Ok(report) => report,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "unknown panic".into());
            SeedReport {
                seed,
                violation: Some(format!("panic: {message}")),
                writes_acked: 0,
                reads_ok: 0,
                crashes: 0,
                snapshots_installed: 0,
                trace: None,
            }
        }
    }
}

fn simulate(options: &SimOptions) -> SeedReport {
    let mut world = World::new(options.clone());
    for _ in 0..options.steps {
        world.step(true);
    }
    world.heal();
    for _ in 0..options.heal_steps {
        world.step(false);
    }
    let violation = world.violation.clone().or_else(|| final_checks(&mut world));
    let writes_acked = world
        .events
        .iter()
        .filter(|e| {
            matches!(
                (e.kind, e.outcome),
                (Kind::Write { .. }, Outcome::Ok { .. })
            )
        })
        .count();
    let reads_ok = world
        .events
        .iter()
        .filter(|e| matches!((e.kind, e.outcome), (Kind::Read { .. }, Outcome::Ok { .. })))
        .count();
    SeedReport {
        seed: options.seed,
        violation,
        writes_acked,
        reads_ok,
        crashes: world.crashes,
        snapshots_installed: world.total_snapshots_installed(),
        trace: world.trace.take(),
    }
}

fn final_checks(world: &mut World) -> Option<String> {
    let applied = world.applied();
    if !world.has_leader() || applied.iter().any(|a| *a != applied[0]) {
        return Some(format!(
            "liveness: after healing, leader={} applied={applied:?}; {}",
            world.has_leader(),
            world.debug_state()
        ));
    }
    // Linearizable reads of every key after healing: a lost write shows up here too.
    for key in 0..KEYS {
        if !world.final_read(key) {
            return Some("liveness: no idle client for the final reads".into());
        }
        for _ in 0..200 {
            if world.idle() {
                break;
            }
            world.step(false);
        }
    }
    let committed = match world.committed_values() {
        Ok(c) => c,
        Err(e) => return Some(e),
    };
    for e in &world.events {
        if let (Kind::Write { value }, Outcome::Ok { index }) = (e.kind, e.outcome) {
            if committed.get(&value) != Some(&index) {
                return Some(format!("durability: acknowledged write {value} at index {index} is not in the committed log"));
            }
        }
    }
    world.violation.clone().or_else(|| {
        history::check(&world.events, &committed)
            .err()
            .map(|e| format!("linearizability: {e}"))
    })
}

/// Runs `seeds` consecutive seeds from `first`; returns every report.
pub fn run_seeds(first: u64, seeds: u64, template: &SimOptions) -> Vec<SeedReport> {
    (first..first + seeds)
        .map(|seed| {
            run_seed(&SimOptions {
                seed,
                ..template.clone()
            })
        })
        .collect()
}
