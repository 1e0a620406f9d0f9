//! The replica's Raft storage: raft-rs's `MemStorage` for entries and hard state, plus the
//! latest tree snapshot so a lagging follower can be caught up with it.
//!
//! Durability is not this type's job: it is the in-memory view that the runtime's WAL (or
//! the simulator's disk) makes durable through `PersistRequest`s.

use std::cell::RefCell;

use raft::prelude::{Entry, Snapshot};
use raft::storage::MemStorage;
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

/// `MemStorage` plus the latest snapshot with its data.
pub struct ShardStorage {
    pub mem: MemStorage,
    snapshot: RefCell<Snapshot>,
}

impl ShardStorage {
    pub fn new(mem: MemStorage) -> ShardStorage {
        ShardStorage {
            mem,
            snapshot: RefCell::new(Snapshot::default()),
        }
    }

    /// Replaces the snapshot served to lagging followers.
    pub fn set_snapshot(&self, snapshot: Snapshot) {
        self.snapshot.replace(snapshot);
    }

    pub fn snapshot_index(&self) -> u64 {
        self.snapshot.borrow().get_metadata().index
    }
}

impl Storage for ShardStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let snapshot = self.snapshot.borrow();
        if idx != 0 && idx == snapshot.get_metadata().index {
            return Ok(snapshot.get_metadata().term);
        }
        self.mem.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let snapshot = self.snapshot.borrow();
        if snapshot.get_metadata().index == 0 || snapshot.get_metadata().index < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(snapshot.clone())
    }
}
