//! Whose clocks are within `max_offset` of ours, and whether this server may serve.
//!
//! Every peer message carries the sender's HLC reading; its physical part against our wall
//! clock is the offset we observe (network delay only makes a peer look behind). A server
//! whose clock is beyond `max_offset` from a majority of the cluster stops serving clients
//! (DESIGN.md, "Time"; CockroachDB's rule): its timestamps could break the promised order.
//! A peer not heard from yet counts as within: we cannot tell, and a server that hears from
//! nobody cannot serve anyway (no quorum).
//!
//! # Invariants
//! - `may_serve` holds iff more than half of the members (this server included) are within.

use std::collections::BTreeMap;

#[derive(Clone, Debug)]
pub struct ClockOffsets {
    max_offset_ms: u64,
    members: usize,
    /// Peer → its wall clock minus ours at its last message (ms).
    offsets: BTreeMap<u64, i64>,
}

impl ClockOffsets {
    /// For a cluster of `members` servers, this one included.
    pub fn new(max_offset_ms: u64, members: usize) -> ClockOffsets {
        assert!(members > 0, "a cluster has at least this server");
        ClockOffsets {
            max_offset_ms,
            members,
            offsets: BTreeMap::new(),
        }
    }

    /// A message from `peer` stamped at `remote_wall_ms`, received at `local_wall_ms`.
    pub fn observe(&mut self, peer: u64, remote_wall_ms: u64, local_wall_ms: u64) {
        let offset = remote_wall_ms as i64 - local_wall_ms as i64;
        self.offsets.insert(peer, offset);
    }

    /// Members whose clocks are within `max_offset` of ours (ours included).
    pub fn within(&self) -> usize {
        let beyond = self
            .offsets
            .values()
            .filter(|o| o.unsigned_abs() > self.max_offset_ms)
            .count();
        self.members - beyond.min(self.members - 1)
    }

    pub fn may_serve(&self) -> bool {
        2 * self.within() > self.members
    }

    pub fn members(&self) -> usize {
        self.members
    }
}

#[cfg(test)]
mod tests {
    use super::ClockOffsets;

    #[test]
    fn a_server_beyond_max_offset_from_a_majority_stops_serving() {
        let mut offsets = ClockOffsets::new(500, 3);
        assert!(offsets.may_serve(), "nobody heard from yet");
        offsets.observe(2, 10_000, 10_400);
        offsets.observe(3, 10_000, 9_600);
        assert_eq!(offsets.within(), 3);
        // Our clock jumps 1.5 s ahead: both peers now look 1.1–1.9 s behind.
        offsets.observe(2, 10_000, 11_500);
        assert!(
            offsets.may_serve(),
            "one peer beyond: still a majority within"
        );
        offsets.observe(3, 10_000, 11_500);
        assert_eq!(offsets.within(), 1);
        assert!(!offsets.may_serve());
        // The clock is fixed: serving resumes with the next messages.
        offsets.observe(2, 12_000, 12_010);
        assert!(offsets.may_serve());
    }
}
