//! Applying committed entries to the tree, answering their proposers, and local reads.

use raft::prelude::Entry;

use super::{entry_hlc, Output, Replica, Reply, ReplyError};
use crate::path::NodePath;
use crate::shard::stable_hash;
use crate::value::Value;
use crate::wire;

impl Replica {
    pub(super) fn apply_entries(&mut self, entries: Vec<Entry>, out: &mut Output) {
        let Some(last) = entries.last().map(|e| e.index) else {
            return;
        };
        for entry in entries {
            assert_eq!(
                entry.index,
                self.applied + 1,
                "entries apply in order, exactly once"
            );
            self.applied = entry.index;
            self.digest = chain(self.digest, entry.term, &entry.data);
            let result = if entry.data.is_empty() {
                None // a new leader's empty entry
            } else {
                let hlc = entry_hlc(&entry);
                assert!(
                    hlc > self.applied_hlc,
                    "entry {} HLC {hlc} not above {}",
                    entry.index,
                    self.applied_hlc
                );
                self.applied_hlc = hlc;
                let txn = wire::decode_txn_unaligned(&entry.data).unwrap_or_else(|e| {
                    panic!(
                        "entry {} holds no transaction ({e}): the log is corrupt",
                        entry.index
                    )
                });
                Some(self.tree.apply_txn(&txn))
            };
            if let Some((id, term)) = self.pending_writes.remove(&entry.index) {
                let reply = match result {
                    _ if term != entry.term => Reply::Failed {
                        id,
                        error: ReplyError::Dropped,
                    },
                    Some(Err(e)) => Reply::Failed {
                        id,
                        error: ReplyError::Rejected(e),
                    },
                    _ => Reply::Written {
                        id,
                        index: entry.index,
                        term,
                        hlc: entry_hlc(&entry),
                    },
                };
                out.replies.push(reply);
            }
        }
        assert_eq!(self.applied, last);
        self.raw.advance_apply_to(self.applied);
        self.maybe_compact();
    }

    /// The value a read returns: the node (as Godot data) or one property, `None` if absent.
    pub(super) fn read_value(&self, path: &str, prop: Option<&str>) -> Option<Value> {
        let path = NodePath::parse(path, self.tree.limits()).ok()?;
        match prop {
            Some(prop) => self.tree.get(&path)?.prop(prop).cloned(),
            None => self.tree.subtree_value(&path),
        }
    }

    /// Reads the local tree without Raft: not linearizable. Exists so the simulator can show
    /// that its checker catches stale reads (`--inject stale-read`).
    pub fn read_local_unsafe(&self, path: &str, prop: Option<&str>) -> Option<Value> {
        self.read_value(path, prop)
    }
}

/// Next link of the applied-entries hash chain.
fn chain(digest: u64, term: u64, data: &[u8]) -> u64 {
    let mut bytes = Vec::with_capacity(16 + data.len());
    bytes.extend_from_slice(&digest.to_le_bytes());
    bytes.extend_from_slice(&term.to_le_bytes());
    bytes.extend_from_slice(data);
    stable_hash(&bytes)
}
