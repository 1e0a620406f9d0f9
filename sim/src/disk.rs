//! A simulated core's WAL file: bytes written with the shipped record format
//! (`treesync_actors::storage::format`) and read back by the shipped recovery, with the
//! faults a real disk has.
//!
//! A batch is "written" when the engine hands it out and durable when its fsync completes
//! (`due`). A crash before that loses it whole, keeps it whole, or keeps a torn prefix
//! (a cut anywhere in its bytes): all three happen to real files. Corruption flips one byte
//! inside an earlier, durable batch: a record before the tail, which recovery must refuse.

use raft::prelude::Snapshot;
use std::collections::VecDeque;

use raft::storage::MemStorage;
use treesync_actors::runtime::wal_records::{storage_from, to_records};
use treesync_actors::storage::batch::encode_batch;
use treesync_actors::storage::header::FileHeader;
use treesync_actors::storage::recovery::{recover, Recovery, RecoveryError};
use treesync_core::engine::WalBatch;

use crate::rng::Rng;

/// A batch written but not yet fsynced.
pub struct Unsynced {
    pub due: u64,
    /// False for a batch that waits for the next one's fsync (`WalBatch::must_sync`).
    own_sync: bool,
    pub number: u64,
    bytes: Vec<u8>,
    /// The fsync will fail (EIO): the process stops, as the real WAL makes it.
    pub eio: bool,
}

pub struct SimWal {
    /// The file: its header, then every durable append.
    durable: Vec<u8>,
    salt: u64,
    /// Start offset of every durable append (so corruption can pick one before the tail).
    appends: Vec<usize>,
    /// The last append is whole (synced, or kept whole by a crash), not a torn piece.
    last_whole: bool,
    /// Written, not yet fsynced, in write order. The engine keeps one in flight; more only
    /// when a bug acknowledges before the fsync.
    unsynced: VecDeque<Unsynced>,
}

/// What became of a crashed core's unsynced write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashLoss {
    Lost,
    Torn,
    Kept,
}

impl SimWal {
    /// A new file of the simulated cluster (id 1), its header durable.
    pub fn new(salt: u64) -> SimWal {
        SimWal {
            durable: FileHeader::new(1, salt).to_bytes().to_vec(),
            salt,
            appends: Vec::new(),
            last_whole: true,
            unsynced: VecDeque::new(),
        }
    }

    /// Writes a batch (its fsync completes at `due`). One that need not sync
    /// (`WalBatch::must_sync`) gets no fsync of its own: the next batch's makes it durable,
    /// and both share one batch start, as `Wal::append_unsynced` writes them.
    pub fn write(&mut self, batch: &WalBatch, due: u64, eio: bool) {
        let due = self.unsynced.back().map_or(due, |w| w.due.max(due));
        let own_sync = batch.must_sync();
        let mut records = Vec::new();
        for (shard, request) in &batch.requests {
            to_records(*shard, request, &mut records);
        }
        let mut bytes = Vec::new();
        // Everything unsynced starts at the end of the durable file: one batch for recovery.
        let start = self.durable.len() as u64;
        encode_batch(&records, self.salt, start, &mut bytes)
            .expect("simulated batches are within the WAL's limits");
        self.unsynced.push_back(Unsynced {
            due,
            own_sync,
            number: batch.number,
            bytes,
            eio,
        });
    }

    /// The next fsync: when it completes and whether it fails.
    pub fn next_sync(&self) -> Option<(u64, bool)> {
        let write = self.unsynced.iter().find(|w| w.own_sync)?;
        Some((write.due, write.eio))
    }

    pub fn is_synced(&self) -> bool {
        self.unsynced.is_empty()
    }

    /// Completes the next fsync: its write and every unsynced one before it are durable.
    /// Returns the synced batch's number.
    pub fn sync(&mut self) -> u64 {
        let mut bytes = Vec::new();
        loop {
            let write = self.unsynced.pop_front().expect("a write to sync");
            bytes.extend_from_slice(&write.bytes);
            if write.own_sync {
                assert!(!write.eio, "a failed fsync makes nothing durable");
                // One append: corruption must not land between batches that share a start.
                self.append_durable(&bytes);
                self.last_whole = true;
                return write.number;
            }
        }
    }

    fn append_durable(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.appends.push(self.durable.len());
            self.durable.extend_from_slice(bytes);
        }
    }

    /// A crash: each unsynced write, in order, is kept, torn or lost, as `rng` decides;
    /// after the first that is not kept whole, nothing later reached the file.
    pub fn crash(&mut self, rng: &mut Rng) -> CrashLoss {
        let mut worst = CrashLoss::Kept;
        while let Some(write) = self.unsynced.pop_front() {
            let loss = match rng.range(0, 2) {
                0 => CrashLoss::Lost,
                1 if write.bytes.len() > 1 => {
                    let cut = rng.range(1, write.bytes.len() as u64 - 1) as usize;
                    self.append_durable(&write.bytes[..cut]);
                    self.last_whole = false;
                    CrashLoss::Torn
                }
                _ => {
                    self.append_durable(&write.bytes);
                    self.last_whole = true;
                    CrashLoss::Kept
                }
            };
            if loss != CrashLoss::Kept {
                worst = loss;
                self.unsynced.clear();
            }
        }
        worst
    }

    /// Flips one byte inside a durable append that is not the last one; false when there
    /// is no such append yet. Only while the last append is whole: a record damaged just
    /// before a torn piece reads exactly like a torn tail (the format's documented limit,
    /// `treesync_actors::storage::recovery`), so that case is not one recovery can refuse.
    pub fn corrupt_before_tail(&mut self, rng: &mut Rng) -> bool {
        if self.appends.len() < 2 || !self.last_whole {
            return false;
        }
        let which = rng.range(0, self.appends.len() as u64 - 2) as usize;
        let (start, end) = (self.appends[which], self.appends[which + 1]);
        let at = rng.range(start as u64, end as u64 - 1) as usize;
        self.durable[at] ^= 1 << rng.range(0, 7);
        true
    }

    /// Runs the shipped recovery over the durable bytes, as `Wal::open` does at start; a
    /// torn tail is cut off as the real file is. `Err` is the refusal to start.
    pub fn recover(&mut self, truncate_anywhere: bool) -> Result<Recovery, String> {
        let recovery = match recover_image(&self.durable) {
            Ok(r) => r,
            // The injected bug: the old recovery cut the log at the first bad record.
            Err((_, valid_len)) if truncate_anywhere => {
                self.durable.truncate(valid_len);
                recover_image(&self.durable).map_err(|(why, _)| why)?
            }
            Err((why, _)) => return Err(why),
        };
        self.durable.truncate(recovery.valid_len);
        self.appends.retain(|start| *start < recovery.valid_len);
        self.last_whole = true;
        Ok(recovery)
    }
}

/// The shipped recovery; `Err((why, where the valid prefix ends))` when it refuses.
fn recover_image(bytes: &[u8]) -> Result<Recovery, (String, usize)> {
    recover(bytes).map_err(|e| {
        let valid = match &e {
            RecoveryError::Corrupt { offset, .. } => *offset as usize,
            _ => 0,
        };
        (e.to_string(), valid)
    })
}

/// Each shard's Raft storage as the real runtime rebuilds it from a recovery.
pub fn storage_of(
    recovery: &Recovery,
    shard: u32,
    peers: &[u64],
) -> (MemStorage, Option<Snapshot>) {
    storage_from(recovery.shards.get(&u64::from(shard)), peers.to_vec())
}
