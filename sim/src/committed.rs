//! The world as committed, at any timestamp: the oracle world mirrors are compared with.
//!
//! Every shard's committed changes are collected as its replicas apply them (the first
//! replica to apply an index reports it: Raft gives them one log), each with its commit
//! timestamp, and
//! replayed in (commit timestamp, transaction) order, a transaction's parts on all shards
//! together as one merged view shows them (`cut::view::merged_ops`: the spine's dentries
//! left out). The bank's worlds after the last change at or below `F` are "the tree read at
//! frontier `F`". This owes nothing to what it checks: not to the feeds, not to
//! `cut::Merge`'s buffering and release, not to resolved timestamps.
//!
//! A change collected at or below a frontier some subscriber was already given is itself a
//! violation: resolved promised that nothing more would commit there.

use std::collections::BTreeMap;

use treesync_core::cut::view::merged_ops;
use treesync_core::op::Op;
use treesync_core::replica::Applied;
use treesync_core::txn::TxnId;
use treesync_core::{Limits, NodePath, Tree, Value};

/// The bank's worlds, as `cuts` compares them (`cuts::WORLDS` order).
pub type Worlds = Vec<Option<Value>>;

/// Replayed states kept for frontiers older than the newest (the oldest are dropped).
const STATES_KEPT: usize = 4096;

/// (commit timestamp, transaction, shard, log index): the replay order.
type ChangeKey = (u64, Option<TxnId>, u32, u64);

pub struct Committed {
    /// Per shard: the log index collected up to.
    collected: Vec<u64>,
    /// Collected changes above `replayed_to`, by replay order: their ops.
    pending: BTreeMap<ChangeKey, Vec<Op>>,
    root_depth: usize,
    one_shard: bool,
    tree: Tree,
    /// Every change at or below it is in `tree`: the highest frontier asked for.
    replayed_to: u64,
    /// The worlds after each replayed change, by its timestamp.
    states: BTreeMap<u64, Worlds>,
    /// The newest state dropped from `states` (at first: nothing committed, at 0). Frontiers
    /// below it cannot be checked any more.
    base: (u64, Worlds),
}

impl Committed {
    pub fn new(shards: u32, root_depth: usize) -> Committed {
        Committed {
            collected: vec![0; shards as usize],
            pending: BTreeMap::new(),
            root_depth,
            one_shard: shards == 1,
            tree: Tree::new(Limits::default()),
            replayed_to: 0,
            states: BTreeMap::new(),
            base: (0, vec![None; crate::cuts::WORLDS.len()]),
        }
    }

    /// A change a replica of `shard` applied; one at an index already collected (another
    /// replica's, or a replay after a restart) is the same change. `Err`: a change committed
    /// at or below a frontier already given out.
    pub fn collect(&mut self, shard: u32, applied: &Applied) -> Result<(), String> {
        let Applied::Txn {
            index,
            hlc,
            txn_id,
            txn,
            ..
        } = applied
        else {
            return Ok(()); // a snapshot install: what it holds was collected where it applied
        };
        if *index <= self.collected[shard as usize] {
            return Ok(());
        }
        self.collected[shard as usize] = *index;
        let hlc = hlc.as_u64();
        if hlc <= self.replayed_to {
            return Err(format!(
                "cut (committed world): shard {shard} committed a change at {hlc} (index {index}) after frontier {} was released",
                self.replayed_to
            ));
        }
        self.pending
            .insert((hlc, *txn_id, shard, *index), txn.ops.clone());
        Ok(())
    }

    /// The bank's worlds as committed at `frontier` (`None`: too old to tell). A frontier
    /// given out means every change at or below it is committed and applied on the
    /// subscriber's server, so collected: the replay may pass it.
    pub fn at(&mut self, frontier: u64) -> Result<Option<&Worlds>, String> {
        if frontier > self.replayed_to {
            self.replay_to(frontier)?;
        }
        Ok(match self.states.range(..=frontier).next_back() {
            Some((_, worlds)) => Some(worlds),
            None if frontier >= self.base.0 => Some(&self.base.1),
            None => None,
        })
    }

    fn replay_to(&mut self, frontier: u64) -> Result<(), String> {
        while let Some(entry) = self.pending.first_entry() {
            if entry.key().0 > frontier {
                break;
            }
            let ((hlc, txn, shard, _), ops) = entry.remove_entry();
            // A cross-shard transaction: all its parts at once (collected: they committed
            // at `hlc`, at or below a frontier given out).
            let mut parts = vec![(shard, ops)];
            while let Some(next) = self.pending.first_entry() {
                if txn.is_none() || (next.key().0, next.key().1) != (hlc, txn) {
                    break;
                }
                let ((_, _, shard, _), ops) = next.remove_entry();
                parts.push((shard, ops));
            }
            let merged = merged_ops(&parts, self.root_depth, self.one_shard);
            for op in merged.iter().filter(|op| crate::cuts::banked(op)) {
                self.tree.apply_op(op).map_err(|e| {
                    format!(
                        "cut (committed world): cannot apply {} at {hlc} ({e})",
                        op.name()
                    )
                })?;
            }
            self.states.insert(hlc, worlds_of(&self.tree));
            if self.states.len() > STATES_KEPT {
                if let Some(dropped) = self.states.pop_first() {
                    self.base = dropped;
                }
            }
        }
        self.replayed_to = frontier;
        Ok(())
    }
}

/// The bank's worlds held by `tree`.
pub fn worlds_of(tree: &Tree) -> Worlds {
    crate::cuts::WORLDS
        .iter()
        .map(|w| NodePath::parse(w, &Limits::default()).expect("valid"))
        .map(|w| tree.subtree_value(&w))
        .collect()
}
