//! Quiescence: an idle shard stops ticking (DESIGN.md "Performance targets": 10,000 idle
//! groups under 2% of a core; `docs/design/quiescence.md`).
//!
//! Ticks drive only timers: a leader's heartbeats (and check-quorum), a follower's election
//! timeout. Skipping them never affects safety — Raft is safe under any timing — only
//! liveness, which the engine keeps: a leader skips ticks only while nothing is in flight
//! (everything replicated to every voter, committed and applied, no read waiting), so no
//! retransmission it would drive is pending; a follower skips them only while its leader's
//! server is heard from on this core (every core sends each peer at least a keepalive every
//! heartbeat interval, `Engine::tick`), so a dead leader's followers resume their election
//! timers within an election timeout of the silence; and any message from a server other
//! than the known leader (a candidate's vote request, a new leader's append) wakes a
//! replica for two election timeouts. A request wakes a leader by making it not idle.

use raft::StateRole;

use super::Replica;

impl Replica {
    /// Whether this replica's next tick can be skipped; `leader_heard` says whether its
    /// leader's server was heard from within an election timeout (engine-tracked).
    pub fn quiescent(&self, leader_heard: bool) -> bool {
        let raft = &self.raw.raft;
        match raft.state {
            StateRole::Leader => {
                let last = raft.raft_log.last_index();
                // A leader off its preferred server keeps ticking: its tick hands the
                // shard back (`balance_leadership`) once the preferred one caught up.
                self.preferred_leader.is_none_or(|p| p == self.id())
                    && raft.raft_log.committed == last
                    && self.applied == last
                    && raft.lead_transferee.is_none()
                    && self.pending_reads.is_empty()
                    && raft.prs().iter().all(|(_, p)| p.matched == last)
            }
            StateRole::Follower => self.leader().is_some() && leader_heard,
            StateRole::Candidate | StateRole::PreCandidate => false,
        }
    }

    /// The configured heartbeat interval in ticks.
    pub fn heartbeat_ticks(&self) -> u64 {
        self.raw.raft.heartbeat_timeout() as u64
    }
}
