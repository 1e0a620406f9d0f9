//! Applying committed entries to the tree, answering their proposers, and local reads.

use raft::prelude::Entry;
use raft::Storage;

use super::sessions::{Admission, Remembered};
use super::{entry_hlc, Applied, Output, ReadTarget, Replica, Reply, ReplyError};
use crate::engine::mirror;
use crate::hlc::Timestamp;
use crate::op::Txn;
use crate::path::NodePath;
use crate::shard::stable_hash;
use crate::tree::TreeError;
use crate::txn::intents::IntentRefusal;
use crate::txn::step::Step;
use crate::txn::{TxnId, TxnMeta};
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
            let closed_before = self.learn_closed(&entry);
            let hlc = entry_hlc(&entry);
            if !entry.data.is_empty() || hlc > Timestamp::ZERO {
                assert!(
                    hlc > self.applied_hlc && hlc > closed_before,
                    "entry {} HLC {hlc} not above {} (applied) and {closed_before} (closed)",
                    entry.index,
                    self.applied_hlc
                );
                // The side promises' guarantee (`replica::side`); only the must-fail twin's
                // unit test breaks it on purpose.
                assert!(
                    hlc > self.side.closed || self.inject_no_lease_floor,
                    "entry {} HLC {hlc} not above the side promise {}",
                    entry.index,
                    self.side.closed
                );
                self.applied_hlc = hlc;
            }
            let result = if entry.data.is_empty() {
                None // a new leader's empty entry, or a close entry (`replica::closed`)
            } else {
                let entry_data = wire::decode_entry_unaligned(&entry.data).unwrap_or_else(|e| {
                    panic!(
                        "entry {} holds no transaction or step ({e}): the log is corrupt",
                        entry.index
                    )
                });
                let txn = match entry_data {
                    wire::LogEntry::Txn(txn) => txn,
                    wire::LogEntry::Step(step) => {
                        let at = (entry.index, entry.term, hlc, closed_before);
                        self.apply_step(&step, at, out);
                        continue;
                    }
                };
                let outcome = self.apply_txn(&txn, entry.index, entry.term, hlc);
                match &outcome {
                    EntryOutcome::Applied if self.record_changes => {
                        self.publish(entry.index, (hlc, None), txn, out);
                    }
                    EntryOutcome::Applied => {}
                    // Changed nothing: feeds and `changes_after` leave it out.
                    _ => {
                        self.rejected.insert(entry.index);
                    }
                }
                Some(outcome)
            };
            if let Some((id, term)) = self.pending_writes.remove(&entry.index) {
                let written = |index, term, hlc| Reply::Written {
                    id,
                    index,
                    term,
                    hlc,
                };
                let failed = |error| Reply::Failed { id, error };
                let reply = match result {
                    _ if term != entry.term => failed(ReplyError::Dropped),
                    None | Some(EntryOutcome::Applied) => {
                        written(entry.index, term, entry_hlc(&entry))
                    }
                    Some(EntryOutcome::Rejected(e)) => failed(ReplyError::Rejected(e)),
                    Some(EntryOutcome::Replayed(Remembered::Written { index, term, hlc })) => {
                        written(index, term, hlc)
                    }
                    Some(EntryOutcome::Replayed(Remembered::Rejected { code, message })) => {
                        failed(ReplyError::Replayed { code, message })
                    }
                    Some(EntryOutcome::Stale { seq, last }) => {
                        failed(ReplyError::StaleSequence { seq, last })
                    }
                    Some(EntryOutcome::Locked(holder)) => failed(ReplyError::Locked { holder }),
                };
                out.replies.push(reply);
            }
        }
        assert_eq!(self.applied, last);
        self.raw.advance_apply_to(self.applied);
        self.maybe_compact();
    }

    /// Hands an applied change to subscribers, with what relocated nodes look like now (a
    /// mirror that never saw them gets them as creates: `engine::mirror`).
    /// `at`: the change's commit timestamp and, for a cross-shard transaction, its id.
    fn publish(&mut self, index: u64, at: (Timestamp, Option<TxnId>), txn: Txn, out: &mut Output) {
        let (hlc, txn_id) = at;
        let landed = txn
            .ops
            .iter()
            .enumerate()
            .filter_map(|(i, op)| {
                let (_, dest) = mirror::relocation(op)?;
                Some((i, mirror::creates_of(&self.tree, &dest)))
            })
            .collect();
        out.applied.push(Applied::Txn {
            index,
            hlc,
            txn_id,
            txn,
            landed,
        });
    }

    /// Applies a committed parallel-commit step and answers its proposer. Only a committed
    /// resolution changes the tree; its ops are what subscribers see.
    /// `at`: the entry's index, term and HLC, and the closed timestamp before it (an intent
    /// at or below it is refused: `replica::closed`).
    fn apply_step(&mut self, step: &Step, at: (u64, u64, Timestamp, Timestamp), out: &mut Output) {
        let (index, entry_term, hlc, closed) = at;
        self.sessions.expire(hlc);
        let meta = step.meta();
        assert!(
            meta.ts < hlc,
            "a step's entry is stamped above its transaction"
        );
        let below_closed = matches!(step, Step::WriteIntent { .. })
            && meta.ts <= closed
            && !self.tables.intents.holds(meta.id);
        let (outcome, resolved) = if below_closed {
            let refusal = IntentRefusal::BelowClosed {
                ts: meta.ts,
                closed,
            };
            (crate::txn::step::StepOutcome::IntentRefused(refusal), None)
        } else {
            self.tables.apply(step, &mut self.tree, hlc)
        };
        if self.record_steps {
            out.steps.push(super::StepApplied {
                index,
                step: step.clone(),
                outcome: outcome.clone(),
                resolved_intent: resolved.is_some(),
            });
        }
        let committed = matches!(step, Step::Resolve { commit: true, .. });
        match resolved.filter(|_| committed) {
            Some(intent) => {
                let (ts, id) = (intent.meta.ts, Some(intent.meta.id));
                self.resolved
                    .insert(index, (intent.txn.clone(), ts, intent.meta.id));
                if self.record_changes {
                    self.publish(index, (ts, id), intent.txn, out);
                }
            }
            None => {
                self.rejected.insert(index);
            }
        }
        if let Some((id, term)) = self.pending_writes.remove(&index) {
            let reply = match term == entry_term {
                true => Reply::Stepped { id, outcome },
                false => Reply::Failed {
                    id,
                    error: ReplyError::Dropped,
                },
            };
            out.replies.push(reply);
        }
    }

    /// Applies a committed transaction to the tree, at most once per session sequence
    /// (`sessions`): a resent copy is answered with the first copy's answer. A transaction
    /// that touches what an intent locks changes nothing and is answered `Locked`.
    fn apply_txn(&mut self, txn: &Txn, index: u64, term: u64, hlc: Timestamp) -> EntryOutcome {
        self.sessions.expire(hlc);
        let locks = match self.tables.intents.admit_plain(txn, &self.tree) {
            Ok(locks) => locks,
            Err(IntentRefusal::Locked { holder }) => return EntryOutcome::Locked(holder),
            Err(IntentRefusal::Rejected(e)) => return EntryOutcome::Rejected(e),
            Err(IntentRefusal::Full { nodes, max }) => {
                return EntryOutcome::Rejected(TreeError::TooManyNodes { count: nodes, max })
            }
            Err(other) => unreachable!("a plain write is never refused for {other}"),
        };
        let outcome = self.apply_admitted(txn, index, term, hlc);
        if matches!(outcome, EntryOutcome::Applied) {
            self.tables.intents.record_plain_write(&locks, hlc);
        }
        outcome
    }

    fn apply_admitted(&mut self, txn: &Txn, index: u64, term: u64, hlc: Timestamp) -> EntryOutcome {
        let Some(key) = txn.session else {
            return match self.tree.apply_txn(txn) {
                Ok(()) => EntryOutcome::Applied,
                Err(e) => EntryOutcome::Rejected(e),
            };
        };
        match self.sessions.admit(key) {
            Admission::Duplicate(answer) => EntryOutcome::Replayed(answer),
            Admission::Stale { last } => EntryOutcome::Stale { seq: key.seq, last },
            Admission::Fresh => {
                let (outcome, answer) = match self.tree.apply_txn(txn) {
                    Ok(()) => (
                        EntryOutcome::Applied,
                        Remembered::Written { index, term, hlc },
                    ),
                    Err(e) => {
                        let answer = Remembered::Rejected {
                            code: e.code(),
                            message: e.to_string(),
                        };
                        (EntryOutcome::Rejected(e), answer)
                    }
                };
                self.sessions.record(key, hlc, answer);
                outcome
            }
        }
    }

    /// Whether a node exists at `path` (an invalid path names no node).
    pub(super) fn node_exists(&self, path: &str) -> bool {
        NodePath::parse(path, self.tree.limits())
            .ok()
            .is_some_and(|p| self.tree.get(&p).is_some())
    }

    /// The value a read returns (Godot data), `None` if absent.
    pub(super) fn read_value(&self, path: &str, target: &ReadTarget) -> Option<Value> {
        let path = NodePath::parse(path, self.tree.limits()).ok()?;
        match target {
            ReadTarget::Prop(prop) => self.tree.get(&path)?.prop(prop).cloned(),
            ReadTarget::Node => self.tree.node_summary(&path),
            ReadTarget::Subtree => self.tree.subtree_value(&path),
        }
    }

    /// The applied transactions after index `from`, in log order, for a subscriber resuming
    /// there; `None` when the log no longer holds them (compacted: resync from a snapshot)
    /// or `from` is beyond what this replica applied.
    pub fn changes_after(&self, from: u64) -> Option<Vec<LoggedChange>> {
        let first = self.raw.store().first_index().expect("memory storage");
        if from + 1 < first || from > self.applied {
            return None;
        }
        let entries = self.applied_entries_from(from + 1)?;
        Some(self.logged_changes(&entries))
    }

    /// The applied changes whose commit timestamp is above `hlc`, in log order, for a
    /// subscriber resuming at a merged position; `None` when the log no longer holds all of
    /// them (compacted: resync from a snapshot).
    ///
    /// Entry HLCs grow along the log and a change's commit timestamp is at most its entry's
    /// HLC (a resolve entry is stamped above its transaction), so every such change is in the
    /// suffix of entries stamped above `hlc`. The log holds all of that suffix if it holds an
    /// entry stamped at or below `hlc`, or was never compacted.
    pub fn changes_above(&self, hlc: Timestamp) -> Option<Vec<LoggedChange>> {
        if self.applied_hlc <= hlc {
            return Some(Vec::new());
        }
        let first = self.raw.store().first_index().expect("memory storage");
        let entries = self.applied_entries_from(first)?;
        let stamped = |e: &&Entry| entry_hlc(e) != Timestamp::ZERO;
        let whole = first <= 1
            || entries
                .iter()
                .find(stamped)
                .is_some_and(|e| entry_hlc(e) <= hlc);
        if !whole {
            return None;
        }
        // Linear, not a binary search: a new leader's empty entry carries no HLC (zero).
        let above = entries.iter().position(|e| entry_hlc(e) > hlc);
        let mut changes = self.logged_changes(&entries[above.unwrap_or(entries.len())..]);
        changes.retain(|c| c.hlc > hlc);
        Some(changes)
    }

    /// Applied entries from index `from` on (`None`: the store cannot give them).
    fn applied_entries_from(&self, from: u64) -> Option<Vec<Entry>> {
        if from > self.applied {
            return Some(Vec::new());
        }
        let context = raft::GetEntriesContext::empty(false);
        self.raw
            .store()
            .entries(from, self.applied + 1, None, context)
            .ok()
    }

    /// The changes `entries` made: transactions and resolved intents, with their commit
    /// timestamps (rejected transactions, steps that changed nothing and empty entries are
    /// left out).
    fn logged_changes(&self, entries: &[Entry]) -> Vec<LoggedChange> {
        entries
            .iter()
            .filter(|e| !e.data.is_empty() && !self.rejected.contains(&e.index))
            .map(|e| match self.resolved.get(&e.index) {
                Some((txn, ts, id)) => LoggedChange {
                    index: e.index,
                    hlc: *ts,
                    txn_id: Some(*id),
                    txn: txn.clone(),
                },
                None => LoggedChange {
                    index: e.index,
                    hlc: entry_hlc(e),
                    txn_id: None,
                    txn: wire::decode_txn_unaligned(&e.data)
                        .expect("applied entries that are not steps hold transactions"),
                },
            })
            .collect()
    }

    /// The subtree at `path` as Godot data (`None`: no such node), with the index and HLC
    /// it reflects: the starting point of a subscription.
    pub fn snapshot_of(&self, path: &str) -> (Option<Value>, u64, Timestamp) {
        let tree = self.read_value(path, &ReadTarget::Subtree);
        (tree, self.applied, self.applied_hlc)
    }

    /// Reads the local tree without Raft: not linearizable. Exists so the simulator can show
    /// that its checker catches stale reads (`--inject stale-read`).
    pub fn read_local_unsafe(&self, path: &str, target: &ReadTarget) -> Option<Value> {
        self.read_value(path, target)
    }
}

/// An applied change still in the log (`Replica::changes_after`).
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedChange {
    pub index: u64,
    /// Its commit timestamp: the entry's HLC, or a resolved intent's transaction timestamp.
    pub hlc: Timestamp,
    /// The cross-shard transaction it is part of, if any.
    pub txn_id: Option<TxnId>,
    pub txn: Txn,
}

/// What applying one committed transaction did.
enum EntryOutcome {
    Applied,
    Rejected(TreeError),
    /// A resent copy of a session's write: the first copy's answer.
    Replayed(Remembered),
    /// A copy older than the session's last applied write.
    Stale {
        seq: u64,
        last: u64,
    },
    /// An intent holds what it touches (nothing changed; retry).
    Locked(TxnMeta),
}

/// Next link of the applied-entries hash chain.
fn chain(digest: u64, term: u64, data: &[u8]) -> u64 {
    let mut bytes = Vec::with_capacity(16 + data.len());
    bytes.extend_from_slice(&digest.to_le_bytes());
    bytes.extend_from_slice(&term.to_le_bytes());
    bytes.extend_from_slice(data);
    stable_hash(&bytes)
}
