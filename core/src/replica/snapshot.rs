//! Tree snapshots for Raft: taking one to compact the log, and installing one a leader sent.
//!
//! Snapshot data: `digest u64 | applied_hlc u64 | closed u64 | lease u64 | session table |
//! tables_len u64 | transaction tables | Tree::snapshot_bytes()` (the sessions as `Sessions::encode` writes
//! them, the intents and records as `TxnTables::to_bytes`, the tree as a checksummed rkyv
//! frame), so a replica caught up by snapshot continues the same hash chain, HLC order,
//! closed timestamp, exactly-once answers and transactions as the replicas that applied every entry.

use raft::prelude::{ConfState, Snapshot};
use raft::Storage;

use super::sessions::Sessions;
use super::Replica;
use crate::hlc::Timestamp;
use crate::tree::Tree;
use crate::txn::tables::TxnTables;

const PREFIX_BYTES: usize = 32;

impl Replica {
    /// Compacts the log once `compact_entries` applied entries precede `applied`.
    pub(super) fn maybe_compact(&mut self) {
        let first = self.raw.store().first_index().expect("memory storage");
        // Only what Raft itself counts as applied may go (after a snapshot install it lags
        // until the snapshot is durable).
        if self.applied < first + self.compact_entries
            || self.raw.raft.raft_log.applied != self.applied
        {
            return;
        }
        let term = self
            .raw
            .store()
            .term(self.applied)
            .expect("the applied entry is in the log");
        let mut snapshot = Snapshot::default();
        let tree_bytes = self.tree.snapshot_bytes();
        let mut data = Vec::with_capacity(PREFIX_BYTES + tree_bytes.len());
        data.extend_from_slice(&self.digest.to_le_bytes());
        data.extend_from_slice(&self.applied_hlc.as_u64().to_le_bytes());
        data.extend_from_slice(&self.closed.as_u64().to_le_bytes());
        data.extend_from_slice(&self.side.lease_applied.as_u64().to_le_bytes());
        self.sessions.encode(&mut data);
        let tables = self.tables.to_bytes();
        data.extend_from_slice(&(tables.len() as u64).to_le_bytes());
        data.extend_from_slice(&tables);
        data.extend_from_slice(&tree_bytes);
        snapshot.data = data.into();
        let metadata = snapshot.mut_metadata();
        metadata.index = self.applied;
        metadata.term = term;
        metadata.set_conf_state(ConfState::from((self.peers.clone(), vec![])));
        let store = self.raw.store();
        store.set_snapshot(snapshot);
        store
            .mem
            .wl()
            .compact(self.applied)
            .expect("compacting below the applied index");
        self.rejected = self.rejected.split_off(&self.applied);
        self.resolved = self.resolved.split_off(&self.applied);
        assert_eq!(
            store.first_index().expect("memory storage"),
            self.applied,
            "entries before the snapshot are gone"
        );
    }

    /// What must survive a rewrite of the WAL: the latest snapshot (if any), the entries after
    /// it and the hard state. Call only when nothing is waiting to be persisted.
    pub fn durable_base(
        &self,
    ) -> (
        Option<Snapshot>,
        Vec<raft::prelude::Entry>,
        raft::prelude::HardState,
    ) {
        assert!(
            self.held.is_empty(),
            "the base is taken only when every write is durable"
        );
        let store = self.raw.store();
        let snapshot_index = store.snapshot_index();
        let snapshot =
            (snapshot_index > 0).then(|| store.snapshot(0, 0).expect("a snapshot is stored"));
        let (first, last) = (
            store.first_index().expect("memory"),
            store.last_index().expect("memory"),
        );
        let low = first.max(snapshot_index + 1);
        let entries = if last >= low {
            store
                .entries(low, last + 1, None, raft::GetEntriesContext::empty(false))
                .expect("entries in range")
        } else {
            Vec::new()
        };
        let hard_state = store.initial_state().expect("memory").hard_state;
        (snapshot, entries, hard_state)
    }

    /// Replaces the tree with a snapshot's (a leader caught us up, or a restart).
    pub(super) fn install_snapshot(&mut self, snapshot: &Snapshot) {
        let index = snapshot.get_metadata().index;
        assert!(
            index >= self.applied,
            "snapshots only move a replica forward"
        );
        let data = &snapshot.data;
        assert!(
            data.len() > PREFIX_BYTES,
            "snapshot data holds the digest, HLC and tree"
        );
        let word = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes"));
        let (sessions, sessions_len) =
            Sessions::decode(&data[PREFIX_BYTES..]).unwrap_or_else(|e| {
                panic!("snapshot at {index} from a peer or the WAL is invalid: {e}")
            });
        let invalid = |e: String| -> ! {
            panic!("snapshot at {index} from a peer or the WAL is invalid: {e}")
        };
        let at = PREFIX_BYTES + sessions_len;
        let tables_len = data
            .get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
            .unwrap_or_else(|| invalid("no transaction tables".into()));
        let tables_end = (at + 8)
            .checked_add(tables_len)
            .filter(|end| *end <= data.len())
            .unwrap_or_else(|| invalid(format!("transaction tables of {tables_len} bytes")));
        let tables =
            TxnTables::from_bytes(&data[at + 8..tables_end]).unwrap_or_else(|e| invalid(e));
        let placeholders = self.tree.placeholder_depth();
        self.tree = Tree::restore(
            &crate::wire::aligned(&data[tables_end..]),
            self.tree.limits().clone(),
        )
        .unwrap_or_else(|e| invalid(e.to_string()))
        .with_placeholders(placeholders);
        self.tables = tables;
        self.resolved.clear();
        self.sessions = sessions;
        self.digest = word(0);
        self.applied_hlc = Timestamp::from_u64(word(8));
        self.closed = Timestamp::from_u64(word(16));
        // A new leader's floor covers the leases the snapshot compacted away.
        let lease = Timestamp::from_u64(word(24));
        self.side.lease_applied = self.side.lease_applied.max(lease);
        self.side.lease_seen = self.side.lease_seen.max(lease);
        self.max_log_hlc = self.max_log_hlc.max(self.applied_hlc);
        self.applied = index;
        self.rejected.clear();
        self.raw.store().set_snapshot(snapshot.clone());
    }
}
