//! Test-only faults of a real server process, for `treesync jepsen`'s nemeses: a wall clock
//! offset and a failing disk, each controlled through a file the test writes while the
//! server runs (`treesync serve --test-clock-offset-file F --test-disk-fault-file F`).
//!
//! Unset (the default, and always in production) the hooks cost one `OnceLock` check.
//! They never change what a healthy server does; they only make its clock or its disk lie,
//! as real ones do.
//!
//! - Clock offset file: one signed integer, milliseconds added to the OS wall clock (empty
//!   or missing: 0). Re-read at most every `REREAD_EVERY`.
//! - Disk fault file: `eio` makes every WAL `fdatasync` fail with EIO; `full` makes every
//!   WAL write fail with ENOSPC; empty or missing: a healthy disk. Read at each sync/write.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

static CLOCK_OFFSET_FILE: OnceLock<PathBuf> = OnceLock::new();
static DISK_FAULT_FILE: OnceLock<PathBuf> = OnceLock::new();
static CLOCK_OFFSET: Mutex<Option<(Instant, i64)>> = Mutex::new(None);

const REREAD_EVERY: Duration = Duration::from_millis(50);

/// A fault the disk fault file asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskFault {
    /// `fdatasync` fails with EIO.
    Eio,
    /// Writes fail with ENOSPC.
    Full,
}

/// Makes the process wall clock read `path`'s offset. Once per process; later calls are
/// ignored (the first file stays in charge).
pub fn set_clock_offset_file(path: PathBuf) {
    let _ = CLOCK_OFFSET_FILE.set(path);
}

/// Makes the WAL consult `path` for disk faults. Once per process.
pub fn set_disk_fault_file(path: PathBuf) {
    let _ = DISK_FAULT_FILE.set(path);
}

/// Milliseconds to add to the OS wall clock (0 unless a test set an offset).
pub fn clock_offset_ms() -> i64 {
    let Some(path) = CLOCK_OFFSET_FILE.get() else {
        return 0;
    };
    let mut cached = CLOCK_OFFSET.lock().unwrap_or_else(|e| e.into_inner());
    match *cached {
        Some((read_at, offset)) if read_at.elapsed() < REREAD_EVERY => offset,
        _ => {
            let offset = std::fs::read_to_string(path)
                .ok()
                .and_then(|text| text.trim().parse::<i64>().ok())
                .unwrap_or(0);
            *cached = Some((Instant::now(), offset));
            offset
        }
    }
}

/// The disk fault in force now, if a test asked for one.
pub fn disk_fault() -> Option<DiskFault> {
    let path = DISK_FAULT_FILE.get()?;
    match std::fs::read_to_string(path).ok()?.trim() {
        "eio" => Some(DiskFault::Eio),
        "full" => Some(DiskFault::Full),
        _ => None,
    }
}
