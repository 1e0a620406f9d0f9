//! Subscriptions of one shard replica: snapshot or log catch-up, then every applied change
//! touching the subscribed subtree, in apply order, and periodic resolved timestamps.
//!
//! Pure: a subscriber is a `SubId`; pushes leave as `Commands::pushes` and the driver
//! delivers them. A driver that cannot deliver one (the subscriber's bounded queue is full,
//! or it went away) drops its sink and feeds `Input::Unsubscribe` back.
//!
//! # Invariants
//! - A subscriber sees each applied change touching its subtree exactly once, in log order,
//!   after a snapshot (or a catch-up from its position) that the changes continue without a
//!   gap: start, catch-up and registration happen in one engine step.
//! - A `Resolved { hlc }` push follows every change with an HLC <= `hlc` that this replica
//!   applied: changes are published in the step that applied them, resolved pushes only
//!   after (defect 7 of issue 9 was a resolved push overtaking the changes of its wake-up).

use super::mirror;
use crate::hlc::Timestamp;
use crate::op::{is_within, Op, Txn};
use crate::replica::{Applied, LoggedChange, Replica};
use crate::txn::TxnId;
use crate::value::Value;

/// A subscription's handle, chosen by the driver.
pub type SubId = u64;

/// What a subscription delivers, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Push {
    /// The subtree (`None`: no node there yet) as of log `index`; `resync` when it replaces
    /// a stream the subscriber had (its position was compacted away, or it fell behind).
    Snapshot {
        shard: u32,
        tree: Option<Value>,
        index: u64,
        hlc: u64,
        resync: bool,
    },
    /// The ops of the transaction at `index` that touch the subtree. `hlc` is its commit
    /// timestamp; `txn` names the cross-shard transaction it is one shard's part of.
    Change {
        shard: u32,
        index: u64,
        hlc: u64,
        txn: Option<TxnId>,
        ops: Vec<Op>,
    },
    /// Every change with a commit timestamp up to `hlc` has been delivered, and no other
    /// will be (the replica's resolved timestamp: `replica::closed`).
    Resolved { hlc: u64 },
}

/// Where a resumed feed continues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// After this shard's log index (a single-shard subscription's position).
    AfterIndex(u64),
    /// With the changes whose commit timestamp is above this HLC, a merged position
    /// (`cut::Merge`): every change at or below it was delivered, so none is sent again,
    /// not even one this replica applies only later.
    AboveHlc(u64),
}

/// One subscriber of one shard.
#[derive(Debug)]
pub(super) struct Subscriber {
    pub id: SubId,
    path: String,
    /// The applied index its snapshot or catch-up reached: changes up to it were delivered.
    after: u64,
    /// Changes with a commit timestamp at or below it are never pushed (`Resume::AboveHlc`).
    skip_to: u64,
}

fn snapshot(shard: u32, replica: &Replica, path: &str, resync: bool) -> Push {
    let (tree, index, hlc) = replica.snapshot_of(path);
    Push::Snapshot {
        shard,
        tree,
        index,
        hlc: hlc.as_u64(),
        resync,
    }
}

/// The pushes that continue a subscriber's stream over logged `changes`, or `None` when
/// the log cannot: it does not hold what relocated nodes looked like, so a catch-up over a
/// relocation into the subtree becomes a snapshot instead.
fn catch_up_pushes(shard: u32, path: &str, changes: Vec<LoggedChange>) -> Option<Vec<Push>> {
    let arrives = |txn: &Txn| {
        txn.ops.iter().any(|op| {
            mirror::relocation(op).is_some_and(|(source, dest)| {
                !is_within(source, path) && (is_within(&dest, path) || is_within(path, &dest))
            })
        })
    };
    let mut pushes = Vec::new();
    for change in changes {
        if arrives(&change.txn) {
            return None;
        }
        let ops = mirror::ops_for(&change.txn.ops, &[], path);
        if !ops.is_empty() {
            pushes.push(Push::Change {
                shard,
                index: change.index,
                hlc: change.hlc.as_u64(),
                txn: change.txn_id,
                ops,
            });
        }
    }
    Some(pushes)
}

/// Starts a feed: the changes after `from` if the log still holds them and at most `room`
/// of them touch the subtree, else a snapshot (marked `resync` when the subscriber asked to
/// resume). A `from` index this replica has not applied yet but knows committed (a position
/// learnt from a faster replica) waits for the log to get there instead.
pub(super) fn start(
    shard: u32,
    replica: &mut Replica,
    id: SubId,
    path: String,
    from: Option<Resume>,
    room: usize,
    pushes: &mut Vec<(SubId, Push)>,
) -> Subscriber {
    replica.record_changes = true;
    let skip_to = match from {
        Some(Resume::AboveHlc(hlc)) => hlc,
        _ => 0,
    };
    if let Some(Resume::AfterIndex(from)) = from.filter(|f| match f {
        Resume::AfterIndex(index) => *index > replica.applied_index(),
        Resume::AboveHlc(_) => false,
    }) {
        if from <= replica.commit_index() {
            return Subscriber {
                id,
                path,
                after: from,
                skip_to,
            };
        }
    }
    let catch_up = from
        .and_then(|f| match f {
            Resume::AfterIndex(index) => replica.changes_after(index),
            Resume::AboveHlc(hlc) => replica.changes_above(Timestamp::from_u64(hlc)),
        })
        .and_then(|changes| catch_up_pushes(shard, &path, changes))
        .filter(|catch_up| catch_up.len() <= room);
    match catch_up {
        Some(catch_up) => pushes.extend(catch_up.into_iter().map(|p| (id, p))),
        None => pushes.push((id, snapshot(shard, replica, &path, from.is_some()))),
    }
    Subscriber {
        id,
        path,
        after: replica.applied_index(),
        skip_to,
    }
}

/// The pushes applied changes make for every subscriber, in apply order.
pub(super) fn publish(
    shard: u32,
    replica: &Replica,
    subs: &[Subscriber],
    applied: Vec<Applied>,
    pushes: &mut Vec<(SubId, Push)>,
) {
    for change in applied {
        for sub in subs {
            match &change {
                Applied::Txn { index, .. } | Applied::Reset { index } if *index <= sub.after => {}
                Applied::Txn { hlc, .. } if hlc.as_u64() <= sub.skip_to => {}
                Applied::Txn {
                    index,
                    hlc,
                    txn_id,
                    txn,
                    landed,
                } => {
                    let ops = mirror::ops_for(&txn.ops, landed, &sub.path);
                    if !ops.is_empty() {
                        let push = Push::Change {
                            shard,
                            index: *index,
                            hlc: hlc.as_u64(),
                            txn: *txn_id,
                            ops,
                        };
                        pushes.push((sub.id, push));
                    }
                }
                Applied::Reset { .. } => {
                    pushes.push((sub.id, snapshot(shard, replica, &sub.path, true)))
                }
            }
        }
    }
}

/// Tells every subscriber that everything up to `hlc` (the replica's resolved timestamp)
/// was sent.
pub(super) fn resolved(hlc: Timestamp, subs: &[Subscriber], pushes: &mut Vec<(SubId, Push)>) {
    let hlc = hlc.as_u64();
    pushes.extend(subs.iter().map(|sub| (sub.id, Push::Resolved { hlc })));
}
