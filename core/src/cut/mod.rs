//! Consistent cuts across shards (DESIGN.md "Consistent cuts across shards"): one
//! subscription over several shards' feeds, released in timestamp order behind a frontier.
//!
//! A [`Merge`] takes each shard's pushes (`engine::Push`: a snapshot, then changes with
//! their commit timestamp and transaction id, and resolved timestamps) and emits one stream:
//! the merged snapshot, then changes ordered by (commit timestamp, transaction), and
//! `Resolved { hlc }` with the **frontier**, the minimum resolved timestamp over the shards.
//! A cross-shard transaction's parts (one per shard, all at its commit timestamp) leave as
//! one change. Pure: the gateway (`actors`) and the simulator drive it alike.
//!
//! # Invariants
//! - A change is released only once the frontier is at or above its timestamp, so all its
//!   parts are in (each shard's resolved timestamp follows its changes: `engine::feeds`).
//! - `Resolved { hlc }` is emitted only when every change at or below `hlc` was emitted,
//!   the snapshot included; its `hlc` grows strictly. So a mirror that applied the snapshot
//!   and every change before a `Resolved { hlc }` equals the tree at the cut `hlc`.
//! - The merged snapshot is the cut at the first `Resolved`, which is at or above every
//!   shard snapshot's timestamp (a snapshot may hold changes up to it); a resumed
//!   subscription sends no snapshot and resolves above its `from` position.
//! - A shard's change at or below the released frontier means its resolved timestamp lied:
//!   `MergeError::BehindFrontier`, never silently applied.
//! - At most `buffered_max` ops wait; more is `MergeError::Overflow` (resume from the last
//!   frontier).

mod start;
pub mod view;

use std::collections::BTreeMap;

use thiserror::Error;

use crate::engine::Push;
use crate::op::Op;
use crate::path::NodePath;
use crate::shard::{ShardMap, SPINE};
use crate::txn::TxnId;
use crate::value::Value;
use crate::Limits;

/// The `shard` a merged subscription's pushes carry when they travel as `engine::Push`
/// (the gateway's type): no shard has this id (shard ids are below `ShardMap::shard_count`,
/// a `u32`), and their `index` means nothing.
pub const MERGED_SHARD: u32 = u32::MAX;

/// What a merged subscription delivers, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum MergedPush {
    /// The subtree (`None`: no node there yet) at the cut the `Resolved` right after it
    /// names; `resync` when it replaces a stream the subscriber had.
    Snapshot { tree: Option<Value>, resync: bool },
    /// One transaction's ops (all its shards' parts) at commit timestamp `hlc`.
    Change {
        hlc: u64,
        txn: Option<TxnId>,
        ops: Vec<Op>,
    },
    /// Every change at or below `hlc` was delivered: the mirror is the cut at `hlc`, and
    /// `hlc` is the position to resume from.
    Resolved { hlc: u64 },
}

/// Why a merge cannot go on (the caller starts it again from the last frontier).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MergeError {
    #[error("shard {shard} sent a change at {hlc}, at or below the frontier {frontier} already released")]
    BehindFrontier { shard: u32, hlc: u64, frontier: u64 },
    #[error("{ops} ops wait for the frontier, more than {max}")]
    Overflow { ops: usize, max: usize },
    #[error("shard {shard} is not part of this merge")]
    UnknownShard { shard: u32 },
    #[error("shard {shard} resynchronised: its stream has a gap")]
    Resync { shard: u32 },
    #[error("shard {shard}'s snapshot and changes do not replay: {reason}")]
    Inconsistent { shard: u32, reason: String },
}

/// Where a change waits: by commit timestamp, then transaction (plain writes by shard and
/// index: they touch one shard, so their order among equal timestamps does not matter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Txn(TxnId),
    Plain { shard: u32, index: u64 },
}

impl Key {
    /// Below every key (`Txn` sorts first, and ids start at zero).
    const MIN: Key = Key::Txn(TxnId { node: 0, seq: 0 });
}

/// A waiting change's parts: each shard's ops.
type Parts = Vec<(u32, Vec<Op>)>;

fn ops_in(parts: &Parts) -> usize {
    parts.iter().map(|(_, ops)| ops.len()).sum()
}

#[derive(Default)]
struct ShardFeed {
    snapshot: Option<(Option<Value>, u64)>,
    resolved: u64,
}

/// Static description of what a merge covers.
#[derive(Clone, Debug)]
pub struct MergeConfig {
    /// The subscribed path (valid: `NodePath::parse` accepted it).
    pub path: String,
    pub map: ShardMap,
    /// A resumed subscription's position: changes at or below it were delivered (no
    /// snapshot is sent).
    pub from: Option<u64>,
    pub buffered_max: usize,
    /// Test-only must-fail twin: release by the largest resolved timestamp, not the
    /// smallest (the simulator's `--inject release-before-frontier`).
    pub inject_release_early: bool,
}

/// One merged subscription.
pub struct Merge {
    config: MergeConfig,
    /// The parsed path's shard-root depth and whether the cluster has one shard.
    root_depth: usize,
    one_shard: bool,
    feeds: BTreeMap<u32, ShardFeed>,
    waiting: BTreeMap<(u64, Key), Parts>,
    waiting_ops: usize,
    /// The last frontier emitted (or the resume position).
    released: u64,
    /// The first `Resolved` must reach this (the snapshots' timestamps).
    floor: u64,
    started: bool,
}

/// The shards a subscription of `path` merges: every shard for a path above the shard roots
/// (any entity may appear below it, and merging them all from the start makes entities that
/// arrive or leave do so atomically), else the path's own shard.
pub fn shards_for(map: &ShardMap, path: &NodePath) -> Vec<u32> {
    match map.is_spine(path) && map.shard_count() > 1 {
        true => (0..map.shard_count()).collect(),
        false => vec![map.shard_of(path).0],
    }
}

impl Merge {
    /// A merge of `shards_for(config.map, path)`; `path` is `config.path` parsed.
    pub fn new(config: MergeConfig, path: &NodePath) -> Merge {
        assert_eq!(
            path.as_str(),
            config.path,
            "the parsed path is the config's"
        );
        let feeds = shards_for(&config.map, path)
            .into_iter()
            .map(|s| (s, ShardFeed::default()))
            .collect();
        let released = config.from.unwrap_or(0);
        Merge {
            root_depth: config.map.depth(),
            one_shard: config.map.shard_count() == 1,
            started: config.from.is_some(),
            released,
            floor: released,
            feeds,
            waiting: BTreeMap::new(),
            waiting_ops: 0,
            config,
        }
    }

    /// The last frontier released: the position a subscriber resumes from.
    pub fn position(&self) -> Option<u64> {
        (self.started && self.released >= self.floor && self.released > 0).then_some(self.released)
    }

    /// Takes one of `shard`'s pushes; appends what may be delivered now to `out`.
    pub fn push(
        &mut self,
        shard: u32,
        push: Push,
        out: &mut Vec<MergedPush>,
    ) -> Result<(), MergeError> {
        let resuming = self.config.from.is_some();
        let feed = self
            .feeds
            .get_mut(&shard)
            .ok_or(MergeError::UnknownShard { shard })?;
        match push {
            Push::Snapshot { resync: true, .. } if resuming || self.started => {
                return Err(MergeError::Resync { shard });
            }
            Push::Snapshot { tree, hlc, .. } => {
                // A second snapshot before the start (the replica was caught up by one) holds
                // every change its stream sent so far: those stop waiting.
                feed.snapshot = Some((tree, hlc));
                self.drop_waiting(shard);
            }
            Push::Change {
                hlc,
                txn,
                ops,
                index,
                ..
            } => {
                if hlc <= self.released && self.position().is_some() {
                    return Err(MergeError::BehindFrontier {
                        shard,
                        hlc,
                        frontier: self.released,
                    });
                }
                let key = match txn {
                    Some(id) => Key::Txn(id),
                    None => Key::Plain { shard, index },
                };
                self.waiting_ops += ops.len();
                self.waiting
                    .entry((hlc, key))
                    .or_default()
                    .push((shard, ops));
                if self.waiting_ops > self.config.buffered_max {
                    return Err(MergeError::Overflow {
                        ops: self.waiting_ops,
                        max: self.config.buffered_max,
                    });
                }
            }
            Push::Resolved { hlc } => feed.resolved = feed.resolved.max(hlc),
        }
        self.start(out)?;
        self.release(out);
        Ok(())
    }

    /// Once every shard's snapshot is in and the frontier passed all of them: the merged
    /// snapshot, a true cut at the frontier. Each shard's snapshot holds only changes at or
    /// below its timestamp, and every change of it at or below the frontier that the
    /// snapshot lacks is waiting here: applied to the snapshot, they give the shard's state
    /// at the frontier, on every shard alike.
    fn start(&mut self, out: &mut Vec<MergedPush>) -> Result<(), MergeError> {
        if self.started || self.feeds.values().any(|f| f.snapshot.is_none()) {
            return Ok(());
        }
        self.floor = self
            .feeds
            .values()
            .filter_map(|f| f.snapshot.as_ref().map(|(_, hlc)| *hlc))
            .max()
            .unwrap_or(0);
        let frontier = self.frontier();
        if frontier < self.floor {
            return Ok(());
        }
        let mut below = self.waiting.split_off(&(frontier + 1, Key::MIN));
        std::mem::swap(&mut below, &mut self.waiting);
        self.waiting_ops = self.waiting.values().map(ops_in).sum();
        let path = NodePath::parse(&self.config.path, &Limits::default())
            .expect("the merge's path is valid");
        let mut snapshots = Vec::new();
        for (shard, feed) in &mut self.feeds {
            let (snapshot, _) = feed.snapshot.take().expect("every snapshot is in");
            let changes = below
                .values()
                .flat_map(|parts| parts.iter().filter(|(s, _)| s == shard))
                .map(|(_, ops)| ops.as_slice());
            let state = start::shard_at(&path, snapshot.as_ref(), changes, self.root_depth)
                .map_err(|reason| MergeError::Inconsistent {
                    shard: *shard,
                    reason,
                })?;
            snapshots.push((*shard, state));
        }
        let map = &self.config.map;
        let owner = |root: &str| {
            NodePath::parse(root, &Limits::default()).map_or(SPINE.0, |p| map.shard_of(&p).0)
        };
        let tree = view::merged_tree(&self.config.path, &snapshots, self.root_depth, owner);
        out.push(MergedPush::Snapshot {
            tree,
            resync: false,
        });
        self.started = true;
        self.released = frontier;
        out.push(MergedPush::Resolved { hlc: frontier });
        Ok(())
    }

    fn drop_waiting(&mut self, shard: u32) {
        for parts in self.waiting.values_mut() {
            parts.retain(|(s, _)| *s != shard);
        }
        self.waiting.retain(|_, parts| !parts.is_empty());
        self.waiting_ops = self.waiting.values().map(ops_in).sum();
    }

    fn frontier(&self) -> u64 {
        let resolved = self.feeds.values().map(|f| f.resolved);
        match self.config.inject_release_early {
            true => resolved.max().unwrap_or(0),
            false => resolved.min().unwrap_or(0),
        }
    }

    fn release(&mut self, out: &mut Vec<MergedPush>) {
        if !self.started {
            return;
        }
        let frontier = self.frontier();
        while let Some(entry) = self.waiting.first_entry() {
            let (hlc, key) = *entry.key();
            if hlc > frontier {
                break;
            }
            let parts = entry.remove();
            self.waiting_ops -= ops_in(&parts);
            let ops = view::merged_ops(&parts, self.root_depth, self.one_shard);
            let txn = match key {
                Key::Txn(id) => Some(id),
                Key::Plain { .. } => None,
            };
            if !ops.is_empty() {
                out.push(MergedPush::Change { hlc, txn, ops });
            }
        }
        if frontier > self.released && frontier >= self.floor {
            self.released = frontier;
            out.push(MergedPush::Resolved { hlc: frontier });
        }
    }
}

#[cfg(test)]
mod tests;
