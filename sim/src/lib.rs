//! treesync-sim: deterministic simulation of a treesync cluster (FoundationDB-style).
//!
//! Three servers, each with two cores and eight shards (shard `s` on core `s mod 2`), run
//! on one thread. Every core is the shipped engine (`treesync_core::engine::Engine`) and
//! every core's WAL is bytes written with the shipped record format and read back by the
//! shipped recovery (`treesync_actors::storage`), so the simulator tests the code that
//! ships, not a copy of its loop. One seed drives: a lossy network (loss, duplication,
//! delay, reordering, partitions), WAL faults (lost unsynced writes, torn last writes,
//! a corrupted record before the tail, EIO on fsync), crashes of one server, a majority
//! and all of them, jittered ticks, skewed and jumping wall clocks, and clients running
//! every tree op. Each run checks, after every step:
//! - every engine's `check_invariants()`;
//! - election safety per shard: at most one leader per term;
//! - state machine safety per shard: replicas that applied the same index hold the same
//!   hash chain of applied entries, and an acknowledged write's (index, term) is what
//!   replicas applied there;
//! - feeds: a subscriber never receives a change with an HLC at or below a resolved
//!   timestamp it was already sent, and changes arrive in index order;
//! - a server whose WAL was corrupted before its tail refuses to start (never truncates);
//!
//! and at the end, after a heal phase: liveness (every shard has a leader and all replicas
//! applied the same index) and linearizability of every register from the clients'
//! invoke/complete times alone (`linearizability`), final reads included.
//!
//! `Bug` turns on a deliberate bug so anyone can watch a check catch it.
//!
//! The checkers also decide histories recorded outside the simulator: `history` reads and
//! writes the JSON-lines format of `treesync jepsen` (`docs/history.md`), and
//! `check_history` decides one (registers by `linearizability`, sets by `set_check`), as
//! `treesync check` does.
//!
//! With `SimOptions::trace` a run uses one core and one shard and records its Raft steps
//! as spec actions (`trace`), for TLC to check against `specs/RaftLeaderElectionTrace.tla`.

mod bank;
mod checks;
mod clients;
mod committed;
mod cuts;
mod disk;
pub mod history;
pub mod linearizability;
mod mirrors;
mod rng;
pub mod set_check;
pub mod trace;
pub mod txn_trace;
mod world;

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

pub use history::{check_history, Report, Verdict};
pub use linearizability::{OpKind, Operation, Violation};
use world::World;

/// A deliberate bug, for showing that the checks catch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// Acknowledge appends and votes before the fsync completes.
    AckBeforeFsync,
    /// Serve reads from the local tree of whichever replica is asked, without ReadIndex.
    StaleRead,
    /// A restart loses the vote of the persisted hard state (as `RaftLeaderElectionBuggy`).
    ForgetVote,
    /// Recovery truncates the WAL at a corrupted record wherever it is (the old behaviour:
    /// every later record, acknowledged entries and votes included, is silently lost).
    TruncateCorruptMiddle,
    /// Resolved timestamps are pushed before the changes applied in the same tick.
    ResolvedBeforeChange,
    /// Recovery decides a transaction from its record alone, skipping the in-flight check.
    RecoverySkipsChecks,
    /// A coordinator acknowledges once its record is staged, before every intent.
    AckWithoutIntents,
    /// A coordinator takes every refusal of an intent as final, though an earlier copy of
    /// it whose outcome was lost may still land (no `QueryIntent`).
    TrustRefusals,
    /// Resolved timestamps are the closed timestamp, not held below unresolved intents.
    ResolvedIgnoresIntents,
    /// A merged subscription releases changes by the largest resolved timestamp among its
    /// shards instead of the smallest (the frontier).
    ReleaseBeforeFrontier,
}

impl Bug {
    pub const ALL: [Bug; 10] = [
        Bug::AckBeforeFsync,
        Bug::StaleRead,
        Bug::ForgetVote,
        Bug::TruncateCorruptMiddle,
        Bug::ResolvedBeforeChange,
        Bug::RecoverySkipsChecks,
        Bug::AckWithoutIntents,
        Bug::TrustRefusals,
        Bug::ResolvedIgnoresIntents,
        Bug::ReleaseBeforeFrontier,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Bug::AckBeforeFsync => "ack-before-fsync",
            Bug::StaleRead => "stale-read",
            Bug::ForgetVote => "forget-vote",
            Bug::TruncateCorruptMiddle => "truncate-corrupt-middle",
            Bug::ResolvedBeforeChange => "resolved-before-change",
            Bug::RecoverySkipsChecks => "recovery-skips-checks",
            Bug::AckWithoutIntents => "ack-without-intents",
            Bug::TrustRefusals => "trust-refusals",
            Bug::ResolvedIgnoresIntents => "resolved-ignores-intents",
            Bug::ReleaseBeforeFrontier => "release-before-frontier",
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
    /// Chance per time unit (per mille) of a crash (of one, a majority or all servers).
    pub crash_per_mille: u64,
    /// Chance per crash (per mille) that a record before the WAL's tail is corrupted on one
    /// server's disk (at most one server per run, so a majority stays whole).
    pub corrupt_per_mille: u64,
    pub inject: Option<Bug>,
    /// Record a trace for `specs/RaftLeaderElectionTrace.tla`. Such runs differ: no log
    /// compaction, and crashes only of nodes whose writes are all durable (see `trace`).
    pub trace: bool,
    /// Record the parallel-commit steps for `specs/ParallelCommitTrace.tla`
    /// (`SeedReport::txn_trace`).
    pub txn_trace: bool,
}

impl SimOptions {
    pub fn new(seed: u64) -> SimOptions {
        SimOptions {
            seed,
            steps: 1000,
            heal_steps: 400,
            crash_per_mille: 6,
            corrupt_per_mille: 100,
            inject: None,
            txn_trace: false,
            trace: false,
        }
    }
}

/// The result of one seed.
#[derive(Clone, Debug, Default)]
pub struct SeedReport {
    pub seed: u64,
    /// The first violated property, if any.
    pub violation: Option<String>,
    pub writes_acked: usize,
    pub reads_ok: usize,
    pub crashes: u64,
    /// Servers that refused to start because a record before their WAL's tail was corrupt.
    pub refused_starts: u64,
    /// Times a lagging replica was caught up by a snapshot.
    pub snapshots_installed: u64,
    /// Side promises followers adopted (idle shards closing without entries).
    pub side_adopted: u64,
    /// Client requests refused because the server's clock was beyond the max offset.
    pub clock_refusals: u64,
    /// Feed pushes the subscribers received.
    pub pushes: u64,
    /// After healing: shards led by their preferred member, and shards whose preferred
    /// member is up (leadership is handed to it once it is caught up).
    pub leaders_preferred: u64,
    pub shards: u64,
    /// The recorded trace (runs with `SimOptions::trace`).
    pub trace: Option<trace::TraceRecorder>,
    /// The transaction trace as the TLA+ module `TxnTrace` (runs with `txn_trace`).
    pub txn_trace: Option<String>,
    /// Cross-shard transfers committed / aborted / of unknown outcome, as the bank saw them.
    pub transfers: (u64, u64, u64),
    /// Entity creates, moves between worlds and deletes acknowledged (cross-shard).
    pub churn: u64,
    /// `Resolved` pushes at which a world subscriber held every account (bank total checked),
    /// and world mirrors that equalled the leaders' merged tree at the end.
    pub cuts_checked: u64,
    pub world_mirrors_equal: u64,
    /// `Resolved` pushes at which a world mirror equalled another server's at the same
    /// frontier.
    pub cuts_compared: u64,
    /// `Resolved` pushes at which a world mirror or tree read equalled the world as
    /// committed at its frontier (replayed from the shards' logs), and tree reads checked.
    pub cuts_committed: u64,
    pub reads_checked: u64,
    /// Intents that held a leader's resolved timestamp back past `engine::STUCK_INTENT_MS`
    /// and were pushed.
    pub stuck_pushed: u64,
}

impl fmt::Display for SeedReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.violation {
            Some(v) => write!(f, "seed {}: FAILED: {v}", self.seed),
            None => write!(
                f,
                "seed {}: ok ({} writes acknowledged, {} reads, {} crashes, {} refused starts, \
                 {} snapshots installed, {} pushes, {} refused for clock offset, transfers \
                 {}/{}/{} committed/aborted/unknown)",
                self.seed,
                self.writes_acked,
                self.reads_ok,
                self.crashes,
                self.refused_starts,
                self.snapshots_installed,
                self.pushes,
                self.clock_refusals,
                self.transfers.0,
                self.transfers.1,
                self.transfers.2
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
                violation: Some(classify_panic(&message)),
                ..SeedReport::default()
            }
        }
    }
}

/// Names the property a panic inside the cluster shows broken, where raft-rs's own checks
/// say it: a leader telling a follower to commit past the follower's log means that log
/// lost entries it had acknowledged.
fn classify_panic(message: &str) -> String {
    if message.contains("to_commit") && message.contains("out of range") {
        return format!(
            "durability: a replica lost log entries it had acknowledged (raft-rs: {message})"
        );
    }
    format!("panic: {message}")
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
    let violation = world.violation().or_else(|| world.final_checks());
    world.report(violation)
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
