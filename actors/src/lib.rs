//! treesync-actors: runs the pure core on real hardware.
//!
//! Status: the process wall clock and the WAL's on-disk format and recovery
//! (`storage::format`, `storage::recovery`: checksummed records, torn-tail detection) live
//! here today. The glommio executors, shard and coordinator actors and the WAL writer with
//! group commit described in DESIGN.md are not built yet (issue 4); nothing in this crate
//! pretends otherwise.
//!
//! Forbidden dependencies: none beyond the design's (glommio, flume, raft).

pub mod runtime;
pub mod storage;
pub mod test_hooks;

use std::time::{SystemTime, UNIX_EPOCH};

use treesync_core::hlc::WallClock;

/// The operating system's wall clock, for [`treesync_core::hlc::Hlc`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now_ms(&self) -> u64 {
        // A clock before 1970 is an operator error the HLC cannot fix; report it as 0 so the
        // HLC keeps counting logically rather than crashing the server.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        now.saturating_add_signed(test_hooks::clock_offset_ms())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_is_after_2026() {
        // 2026-01-01T00:00:00Z in ms: a clock reading below it means the conversion is wrong.
        assert!(SystemClock.now_ms() > 1_767_225_600_000);
    }
}
