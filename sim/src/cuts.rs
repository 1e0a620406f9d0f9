//! Subscribers of the whole world: each server merges its replicas' feeds of `/root` over
//! every shard (`core::cut::Merge`, as the gateway does) into one mirror, and at every
//! `Resolved` the mirror must be a consistent cut: the bank's total holds in it, no change
//! arrives at or below a frontier already released, it equals the world as committed at
//! that frontier (`committed`, replayed from the shards' logs), and it equals every other
//! server's mirror at the same frontier (frontiers come from closed timestamps in the
//! shards' logs, so servers reach the same ones, from different replicas and at different
//! times).
//!
//! A *reader* is a world subscriber that ends at its first `Resolved`: the consistent `tree`
//! read of the gateway (`ServerBackend::read_cut` takes the same merged snapshot and the
//! frontier after it), checked the same way.

use std::collections::BTreeMap;

use treesync_core::cut::{Merge, MergeConfig, MergeError, MergedPush};
use treesync_core::engine::Push;
use treesync_core::op::{is_within, Op};
use treesync_core::replica::Applied;
use treesync_core::shard::ShardMap;
use treesync_core::{Limits, NodePath, Tree, Value};

use crate::committed::{worlds_of, Committed};

/// The path every server's world subscriber mirrors.
pub const WORLD_PATH: &str = "/root";
/// Ops a world subscriber buffers behind its frontier before it overflows and resumes.
const BUFFERED_MAX: usize = 100_000;

struct CutSub {
    server: u64,
    merge: Merge,
    mirror: Tree,
    /// The last frontier this subscriber saw released.
    resolved: u64,
    /// `Resolved` pushes at which the bank was checked.
    checked: u64,
    /// Ends at its first `Resolved` (a consistent `tree` read).
    reader: bool,
}

/// A world subscriber that ended: its feeds are to be unsubscribed on `server`, and a new
/// subscriber started there if `again` (a resync starts over; a reader is done).
pub struct Ended {
    pub server: u64,
    pub tokens: Vec<u64>,
    pub again: bool,
}

/// Every server's world subscriber, and which engine subscription feeds which shard of it.
pub struct Cuts {
    subs: BTreeMap<u64, CutSub>,
    /// Engine subscription token → (world subscriber, shard).
    feeds: BTreeMap<u64, (u64, u32)>,
    /// `Resolved` pushes at which a whole bank was checked, over every subscriber.
    pub cuts_checked: u64,
    /// World subscribers started over after a feed's resync.
    pub restarts: u64,
    /// The bank worlds of the first mirror released at each recent frontier (and its server).
    at_frontier: BTreeMap<u64, (u64, Vec<Option<Value>>)>,
    /// `Resolved` pushes at which the mirror was compared with another server's at the same
    /// frontier.
    pub cuts_compared: u64,
    /// The world as committed, replayed from the shards' logs.
    committed: Committed,
    /// `Resolved` pushes at which the mirror equalled the committed world at its frontier.
    pub cuts_committed: u64,
    /// Readers whose snapshot was checked (bank total and the committed world).
    pub reads_checked: u64,
}

/// Frontiers whose mirrors are kept for comparison (the oldest are dropped).
const FRONTIERS_KEPT: usize = 256;

impl Cuts {
    pub fn new(shards: u32) -> Cuts {
        Cuts {
            subs: BTreeMap::new(),
            feeds: BTreeMap::new(),
            cuts_checked: 0,
            restarts: 0,
            at_frontier: BTreeMap::new(),
            cuts_compared: 0,
            committed: Committed::new(shards, treesync_core::shard::SHARD_DEPTH_DEFAULT),
            cuts_committed: 0,
            reads_checked: 0,
        }
    }

    /// A change a replica of `shard` applied, for the committed world (after each step,
    /// before its pushes are checked).
    pub fn collect(&mut self, shard: u32, applied: &Applied) -> Result<(), String> {
        self.committed.collect(shard, applied)
    }

    /// A world subscriber `id` on `server` (a reader if `reader`), fed by `tokens` (one
    /// engine subscription per shard, in shard order).
    pub fn subscribed(
        &mut self,
        id: u64,
        server: u64,
        map: &ShardMap,
        tokens: &[u64],
        early: bool,
        reader: bool,
    ) {
        let config = MergeConfig {
            path: WORLD_PATH.into(),
            map: map.clone(),
            from: None,
            buffered_max: BUFFERED_MAX,
            inject_release_early: early,
        };
        let path = NodePath::parse(WORLD_PATH, &Limits::default()).expect("valid");
        let merge = Merge::new(config, &path);
        for (shard, token) in tokens.iter().enumerate() {
            self.feeds.insert(*token, (id, shard as u32));
        }
        let sub = CutSub {
            server,
            merge,
            mirror: Tree::new(Limits::default()),
            resolved: 0,
            checked: 0,
            reader,
        };
        self.subs.insert(id, sub);
    }

    /// Whether engine subscription `token` feeds a world subscriber.
    pub fn feeds(&self, token: u64) -> bool {
        self.feeds.contains_key(&token)
    }

    /// A crashed server's world subscribers end with it.
    pub fn server_crashed(&mut self, server: u64) {
        self.subs.retain(|_, s| s.server != server);
        let subs = &self.subs;
        self.feeds.retain(|_, (id, _)| subs.contains_key(id));
    }

    /// One shard's push for engine subscription `token`; `accounts`: the bank's account
    /// paths and the total they must hold. `Err` names a violation; `Ok(Some(_))`: the
    /// subscriber ended.
    pub fn push(
        &mut self,
        token: u64,
        push: Push,
        accounts: &[String],
        total: i64,
    ) -> Result<Option<Ended>, String> {
        let Some((id, shard)) = self.feeds.get(&token).copied() else {
            return Ok(None);
        };
        let sub = self.subs.get_mut(&id).expect("a fed subscriber exists");
        let mut out = Vec::new();
        match sub.merge.push(shard, push, &mut out) {
            Ok(()) => {}
            // A replica caught up by a snapshot has a gap in its feed: start over (the
            // gateway resumes from the last frontier; a fresh snapshot is as good here).
            Err(MergeError::Resync { .. }) => return Ok(Some(self.end(id, true))),
            Err(e) => {
                return Err(format!(
                    "cut: server {}'s world subscriber: {e}",
                    sub.server
                ))
            }
        }
        for merged in out {
            match merged {
                MergedPush::Snapshot { tree, .. } => sub.mirror = rebuilt(tree.as_ref())?,
                MergedPush::Change { hlc, ops, .. } => {
                    if hlc <= sub.resolved {
                        return Err(format!(
                            "cut: a change at {hlc} after resolved {} on server {}",
                            sub.resolved, sub.server
                        ));
                    }
                    let ops: Vec<Op> = ops.into_iter().filter(banked).collect();
                    apply(&mut sub.mirror, &ops)?;
                }
                MergedPush::Resolved { hlc } => {
                    sub.resolved = hlc;
                    if bank_total(&sub.mirror, accounts).is_some_and(|t| t != total) {
                        return Err(format!(
                            "cut: the bank's total is {:?} at resolved {hlc} on server {} (must be {total})",
                            bank_total(&sub.mirror, accounts),
                            sub.server
                        ));
                    }
                    sub.checked += 1;
                    self.cuts_checked += u64::from(bank_total(&sub.mirror, accounts).is_some());
                    let worlds = worlds_of(&sub.mirror);
                    if let Some(committed) = self.committed.at(hlc)? {
                        if *committed != worlds {
                            return Err(format!(
                                "cut (committed world): at frontier {hlc} server {}'s {} differs from it: {:.600} vs {:.600}",
                                sub.server,
                                if sub.reader { "tree read" } else { "mirror" },
                                format!("{worlds:?}"), format!("{committed:?}")
                            ));
                        }
                        self.cuts_committed += 1;
                    }
                    if sub.reader {
                        self.reads_checked += 1;
                        return Ok(Some(self.end(id, false)));
                    }
                    match self.at_frontier.get(&hlc) {
                        Some((other, seen)) if *other != sub.server => {
                            if *seen != worlds {
                                return Err(format!(
                                    "cut: at frontier {hlc} server {}'s mirror differs from server {other}'s",
                                    sub.server
                                ));
                            }
                            self.cuts_compared += 1;
                        }
                        Some(_) => {}
                        None => {
                            self.at_frontier.insert(hlc, (sub.server, worlds));
                            if self.at_frontier.len() > FRONTIERS_KEPT {
                                self.at_frontier.pop_first();
                            }
                        }
                    }
                }
            }
        }
        Ok(None)
    }

    /// Ends world subscriber `id`; `again`: a new one replaces it.
    fn end(&mut self, id: u64, again: bool) -> Ended {
        let sub = self.subs.remove(&id).expect("a fed subscriber exists");
        let tokens: Vec<u64> = self
            .feeds
            .iter()
            .filter(|(_, (s, _))| *s == id)
            .map(|(t, _)| *t)
            .collect();
        for token in &tokens {
            self.feeds.remove(token);
        }
        self.restarts += u64::from(again);
        Ended {
            server: sub.server,
            tokens,
            again: again && !sub.reader,
        }
    }

    /// Each live world subscriber's mirror and last frontier (readers are not mirrors).
    pub fn mirrors(&self) -> impl Iterator<Item = (u64, &Tree, u64)> {
        self.subs
            .values()
            .filter(|s| !s.reader)
            .map(|s| (s.server, &s.mirror, s.resolved))
    }
}

/// The total gold of `accounts` in `tree`, or `None` if one of them is missing (not created
/// yet, or moved by the churn's relocations).
fn bank_total(tree: &Tree, accounts: &[String]) -> Option<i64> {
    accounts.iter().try_fold(0, |sum, path| {
        let path = NodePath::parse(path, &Limits::default()).ok()?;
        match tree.get(&path)?.prop("gold")? {
            Value::Int(gold) => Some(sum + gold),
            _ => None,
        }
    })
}

/// The worlds a world mirror holds. The register workload writes `/root/n*` on every shard
/// directly, below the shard map (each shard is its own register space), so those nodes are
/// no one world and are left out; the bank's worlds are placed by the shard map.
pub(crate) const WORLDS: [&str; 2] = [crate::bank::WORLD, crate::bank::VAULT];

fn in_worlds(path: &str) -> bool {
    WORLDS.iter().any(|w| is_within(path, w))
}

/// Whether `op` changes the bank's worlds (a move between them stays in them).
pub(crate) fn banked(op: &Op) -> bool {
    match op {
        Op::Move {
            path, new_parent, ..
        } => in_worlds(path) && in_worlds(new_parent),
        _ => in_worlds(&op.target_path()),
    }
}

/// A mirror holding the bank's worlds of a merged snapshot of `/root`.
fn rebuilt(tree: Option<&Value>) -> Result<Tree, String> {
    let mut mirror = Tree::new(Limits::default());
    if let Some(tree) = tree {
        let ops: Vec<Op> = crate::mirrors::root_ops(tree)?
            .into_iter()
            .filter(banked)
            .collect();
        apply(&mut mirror, &ops)?;
    }
    Ok(mirror)
}

fn apply(tree: &mut Tree, ops: &[Op]) -> Result<(), String> {
    for op in ops {
        tree.apply_op(op)
            .map_err(|e| format!("cut: the world mirror cannot apply {} ({e})", op.name()))?;
    }
    Ok(())
}
