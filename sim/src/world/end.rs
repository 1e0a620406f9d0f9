//! The end of a run: liveness, final reads, mirrors and linearizability, and the report.

use super::*;
use treesync_core::{Limits, NodePath};

/// Steps the end of a run waits for every up replica to apply what its leader committed.
const SETTLE_STEPS_MAX: usize = 400;

impl World {
    pub(super) fn leader_of(&self, shard: u32) -> Option<u64> {
        let core = shard as usize % self.cores;
        (1..=SERVERS).find(|id| {
            self.servers[(*id - 1) as usize].cores[core]
                .engine
                .as_ref()
                .and_then(|e| e.replica(shard))
                .is_some_and(|r| r.is_leader())
        })
    }

    /// Steps (boundedly) until every shard has a leader.
    pub(super) fn await_leaders(&mut self) {
        for _ in 0..SETTLE_STEPS_MAX {
            if self.commit_targets().is_some() {
                return;
            }
            self.step(false);
        }
    }

    /// Each shard's leader's commit index (`None`: a shard has no leader).
    fn commit_targets(&self) -> Option<Vec<u64>> {
        (0..self.shards)
            .map(|s| self.leader_replica(s).map(|r| r.commit_index()))
            .collect()
    }

    /// A shard without a leader or an up replica that has not applied `targets[shard]`.
    fn unsettled_shard(&self, targets: &[u64]) -> Option<(u32, Vec<u64>)> {
        (0..self.shards).find_map(|shard| {
            let core = shard as usize % self.cores;
            let applied: Vec<u64> = self
                .servers
                .iter()
                .filter(|s| s.up)
                .filter_map(|s| s.cores[core].engine.as_ref()?.replica(shard))
                .map(|r| r.applied_index())
                .collect();
            let behind = applied.iter().any(|a| *a < targets[shard as usize]);
            (self.leader_of(shard).is_none() || behind).then_some((shard, applied))
        })
    }

    /// Liveness after healing, then final reads of every register, then linearizability.
    pub fn final_checks(&mut self) -> Option<String> {
        // A leadership hand-over may be under way as healing ends: let it finish.
        self.await_leaders();
        if let Some(violation) = self.bank_checks() {
            return Some(violation);
        }
        // Leaders keep closing timestamps with empty entries, so replicas are rarely level:
        // every up replica must apply what its leader had committed when healing ended.
        self.await_leaders();
        let Some(targets) = self.commit_targets() else {
            return Some("liveness: after healing, a shard has no leader".into());
        };
        for _ in 0..SETTLE_STEPS_MAX {
            if self.unsettled_shard(&targets).is_none() {
                break;
            }
            self.step(false);
        }
        if let Some((shard, applied)) = self.unsettled_shard(&targets) {
            return Some(format!(
                "liveness: after healing, shard {shard} leader={:?} applied={applied:?}",
                self.leader_of(shard)
            ));
        }
        for shard in 0..self.shards {
            for key in 0..KEYS {
                self.await_leaders(); // a leadership hand-over may be under way
                let Some(server) = self.leader_of(shard) else {
                    return Some(format!("liveness: shard {shard} lost its leader"));
                };
                for _ in 0..200 {
                    if self.clients.idle().is_some() {
                        break;
                    }
                    self.step(false);
                }
                let Some(c) = self.clients.idle() else {
                    return Some("liveness: no idle client for the final reads".into());
                };
                let token = self.token(Route::Client);
                let request = self
                    .clients
                    .final_read(c, token, self.now, shard, key, server);
                self.send_request(token, request);
            }
        }
        for _ in 0..200 {
            if self.clients.all_idle() {
                break;
            }
            self.step(false);
        }
        self.compare_mirrors();
        self.violation().or_else(|| {
            crate::linearizability::check(&self.clients.checked_history())
                .err()
                .map(|v| format!("linearizability: {v}"))
        })
    }

    /// Once the cluster is quiet, every live subscriber's mirror equals its replica's tree.
    pub(super) fn compare_mirrors(&mut self) {
        let subs: Vec<(u64, (u64, u32))> = self.subs.iter().map(|(k, v)| (*k, *v)).collect();
        for (sub, (server, shard)) in subs {
            let core = shard as usize % self.cores;
            let Some(replica) = self.servers[(server - 1) as usize].cores[core]
                .engine
                .as_ref()
                .and_then(|e| e.replica(shard))
            else {
                continue; // a crashed server's subscriptions ended with it
            };
            if let Err(why) = self.mirrors.compare(sub, replica.tree()) {
                self.observer.mirror(server, shard, why);
            }
        }
        self.compare_world_mirrors();
    }

    /// Once quiet, each world subscriber whose frontier passed every leader's last entry
    /// holds the bank's worlds as the leaders do, merged over the shards.
    fn compare_world_mirrors(&mut self) {
        // No client writes any more: once every frontier passes what the leaders applied
        // now, the mirrors must hold it (close entries keep coming, changes do not).
        let now = (0..self.shards)
            .filter_map(|s| self.leader_replica(s))
            .map(|r| r.applied_hlc().as_u64())
            .max()
            .unwrap_or(0);
        for _ in 0..SETTLE_STEPS_MAX {
            if self.cuts.mirrors().all(|(_, _, resolved)| resolved >= now) {
                break;
            }
            self.step(false);
        }
        let Some(leaders) = (0..self.shards)
            .map(|s| self.leader_replica(s))
            .collect::<Option<Vec<_>>>()
        else {
            return;
        };
        let map = treesync_core::shard::ShardMap::new(
            self.shards,
            treesync_core::shard::SHARD_DEPTH_DEFAULT,
        )
        .expect("valid");
        let owner =
            |p: &str| NodePath::parse(p, &Limits::default()).map_or(0, |p| map.shard_of(&p).0);
        let worlds: Vec<(NodePath, Option<treesync_core::Value>)> = crate::cuts::WORLDS
            .iter()
            .map(|w| {
                let path = NodePath::parse(w, &Limits::default()).expect("valid");
                let snapshots: Vec<_> = leaders
                    .iter()
                    .enumerate()
                    .map(|(s, r)| (s as u32, r.tree().subtree_value(&path)))
                    .collect();
                let merged =
                    treesync_core::cut::view::merged_tree(w, &snapshots, map.depth(), owner);
                (path, merged)
            })
            .collect();
        let mut equal = 0;
        for (server, mirror, resolved) in self.cuts.mirrors() {
            if resolved < now {
                continue; // its frontier has not passed everything yet
            }
            if let Some((path, _)) = worlds.iter().find(|(p, v)| mirror.subtree_value(p) != *v) {
                let why = format!(
                    "cut: server {server}'s mirror of {} at {resolved} differs from the leaders' merged tree",
                    path.as_str()
                );
                self.observer.violation.get_or_insert(why);
                return;
            }
            equal += 1;
        }
        self.world_mirrors_equal += equal;
    }

    pub fn report(&mut self, violation: Option<String>) -> SeedReport {
        let live: u64 = self
            .servers
            .iter()
            .flat_map(|s| s.cores.iter())
            .filter_map(|c| c.engine.as_ref())
            .flat_map(|e| e.replicas().map(|(_, r)| r.snapshots_installed))
            .sum();
        let adopted: u64 = self
            .servers
            .iter()
            .flat_map(|s| s.cores.iter())
            .filter_map(|c| c.engine.as_ref())
            .flat_map(|e| e.replicas().map(|(_, r)| r.side_promise_counts().1))
            .sum();
        SeedReport {
            seed: self.options.seed,
            side_adopted: self.side_adopted + adopted,
            violation,
            writes_acked: self.clients.writes_acked,
            reads_ok: self.clients.reads_ok,
            crashes: self.crashes,
            refused_starts: self.refused_starts,
            clock_refusals: self.clock_refusals,
            snapshots_installed: self.snapshots_installed + live,
            pushes: self.observer.pushes,
            leaders_preferred: (0..self.shards)
                .filter(|s| self.leader_of(*s) == Some(u64::from(*s) % SERVERS + 1))
                .count() as u64,
            // Shards whose preferred member is up (one that refused to start stays down).
            shards: (0..self.shards)
                .filter(|s| self.servers[(u64::from(*s) % SERVERS) as usize].up)
                .count() as u64,
            trace: self.trace.take(),
            txn_trace: self.options.txn_trace.then(|| self.txn_trace.render()),
            transfers: (self.bank.committed, self.bank.aborted, self.bank.unknown),
            churn: self.bank.churn_ok,
            cuts_checked: self.cuts.cuts_checked,
            world_mirrors_equal: self.world_mirrors_equal,
            cuts_compared: self.cuts.cuts_compared,
            cuts_committed: self.cuts.cuts_committed,
            reads_checked: self.cuts.reads_checked,
            stuck_pushed: self.stuck_pushed,
        }
    }
}
