//! Nemeses: the faults a Jepsen run injects into its cluster, one kind per run, in cycles
//! of `FAULT_HOLD` faulty and `QUIET` healthy time.
//!
//! Every fault is undone by `Cluster::heal` (links joined, clocks and disks healthy, every
//! server running), which the runner calls after the last cycle.

use std::time::Duration;

use treesync_core::rng::SplitMix64;

use super::cluster::Cluster;

/// How long a fault lasts, and the healthy time between faults.
pub const FAULT_HOLD: Duration = Duration::from_millis(2500);
pub const QUIET: Duration = Duration::from_millis(1500);

/// Beyond `MAX_OFFSET_MS_DEFAULT` (500 ms): such a server must stop serving.
const CLOCK_BEYOND_MS: i64 = 2_000;
/// Within the max offset: the cluster must work on.
const CLOCK_WITHIN_MS: i64 = 250;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nemesis {
    None,
    KillOne,
    KillMajority,
    KillAll,
    Pause,
    Partition,
    Clock,
    Disk,
}

impl Nemesis {
    pub const ALL: [Nemesis; 8] = [
        Nemesis::None,
        Nemesis::KillOne,
        Nemesis::KillMajority,
        Nemesis::KillAll,
        Nemesis::Pause,
        Nemesis::Partition,
        Nemesis::Clock,
        Nemesis::Disk,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Nemesis::None => "none",
            Nemesis::KillOne => "kill-one",
            Nemesis::KillMajority => "kill-majority",
            Nemesis::KillAll => "kill-all",
            Nemesis::Pause => "pause",
            Nemesis::Partition => "partition",
            Nemesis::Clock => "clock",
            Nemesis::Disk => "disk",
        }
    }

    pub fn parse(name: &str) -> Option<Nemesis> {
        Nemesis::ALL.into_iter().find(|n| n.name() == name)
    }
}

/// Picks `count` distinct servers.
fn pick(rng: &mut SplitMix64, ids: &[u64], count: usize) -> Vec<u64> {
    let mut pool = ids.to_vec();
    let mut chosen = Vec::with_capacity(count);
    while chosen.len() < count && !pool.is_empty() {
        let at = (rng.next_u64() % pool.len() as u64) as usize;
        chosen.push(pool.swap_remove(at));
    }
    chosen.sort_unstable();
    chosen
}

/// Injects the `cycle`-th fault; returns what it did, for the progress line and the log.
pub fn inject(
    nemesis: Nemesis,
    cluster: &mut Cluster,
    rng: &mut SplitMix64,
    cycle: u64,
) -> Result<String, String> {
    let ids = cluster.ids();
    let majority = ids.len() / 2 + 1;
    Ok(match nemesis {
        Nemesis::None => "nothing".into(),
        Nemesis::KillOne | Nemesis::KillMajority | Nemesis::KillAll => {
            let count = match nemesis {
                Nemesis::KillOne => 1,
                Nemesis::KillMajority => majority,
                _ => ids.len(),
            };
            let victims = pick(rng, &ids, count);
            for &id in &victims {
                cluster.kill(id);
            }
            format!("kill -9 {victims:?}")
        }
        Nemesis::Pause => {
            let victims = pick(rng, &ids, 1 + (cycle % 2) as usize);
            for &id in &victims {
                cluster.pause(id, true);
            }
            format!("SIGSTOP {victims:?}")
        }
        Nemesis::Partition => {
            // A minority cut off from the majority (which alternates between cycles).
            let side = pick(rng, &ids, ids.len() - majority);
            cluster.proxy.isolate(&side);
            format!("partition {side:?} | rest")
        }
        Nemesis::Clock => {
            let victim = pick(rng, &ids, 1)[0];
            let sign = if rng.next_u64().is_multiple_of(2) {
                1
            } else {
                -1
            };
            let offset = sign
                * if cycle.is_multiple_of(2) {
                    CLOCK_WITHIN_MS
                } else {
                    CLOCK_BEYOND_MS
                };
            cluster.set_clock_offset(victim, offset)?;
            format!("clock of [{victim}] {offset:+} ms")
        }
        Nemesis::Disk => {
            let victim = pick(rng, &ids, 1)[0];
            let fault = if cycle.is_multiple_of(2) {
                "eio"
            } else {
                "full"
            };
            cluster.set_disk_fault(victim, fault)?;
            format!("disk of [{victim}]: {fault}")
        }
    })
}

/// Undoes a cycle's fault. A disk fault stops the victim's core for good (its WAL is
/// poisoned: DESIGN.md, "Durability and recovery"), so that server is restarted, as an
/// operator would after replacing the disk.
pub fn heal(cluster: &mut Cluster) -> Result<(), String> {
    for id in cluster.ids() {
        if cluster.has_disk_fault(id) {
            cluster.kill(id);
        }
    }
    cluster.heal()
}
