//! Subscriptions of one shard replica: snapshot or log catch-up, then every applied change
//! touching the subscribed subtree, in apply order, and periodic resolved timestamps.
//!
//! # Invariants
//! - A subscriber sees each applied change touching its subtree exactly once, in log order,
//!   after a snapshot (or a catch-up from its position) that the changes continue without a
//!   gap: start, catch-up and registration happen in one step of the core's single thread.
//! - A subscriber's queue is bounded (`flume::bounded`): when a push does not fit, the feed
//!   is dropped at once (never buffered here) and the gateway resumes it from its position.

use treesync_core::op::Op;
use treesync_core::replica::{Applied, Replica};
use treesync_net::client_proto::Response;
use treesync_net::gateway::Push;

pub struct Subscriber {
    path: String,
    sink: flume::Sender<Push>,
    /// The applied index its snapshot or catch-up reached: changes up to it were delivered
    /// (an `Output` may still hold some of them when the subscription starts).
    after: u64,
}

/// Sends or reports that the subscriber must go (queue full or receiver gone).
fn deliver(sink: &flume::Sender<Push>, push: Push) -> bool {
    sink.try_send(push).is_ok()
}

fn touching(ops: &[Op], path: &str) -> Vec<Op> {
    ops.iter().filter(|op| op.touches(path)).cloned().collect()
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

/// Starts a feed: the changes after `from` if the log still holds them and they fit the
/// queue, else a snapshot (marked `resync` when the subscriber asked to resume). A `from`
/// this replica has not applied yet but knows committed (a position learnt from a faster
/// replica) waits for the log to get there instead.
pub fn start(
    shard: u32,
    replica: &mut Replica,
    subs: &mut Vec<Subscriber>,
    path: String,
    from: Option<u64>,
    sink: flume::Sender<Push>,
) -> Response {
    if let Some(from) = from.filter(|f| *f > replica.applied_index()) {
        if from <= replica.commit_index() {
            subs.push(Subscriber {
                path,
                sink,
                after: from,
            });
            replica.record_changes = true;
            return Response::Value(None);
        }
    }
    let room = sink.capacity().unwrap_or(usize::MAX) / 2;
    let catch_up = from
        .and_then(|f| replica.changes_after(f))
        .map(|changes| {
            changes
                .into_iter()
                .filter_map(|(index, hlc, txn)| {
                    let ops = touching(&txn.ops, &path);
                    (!ops.is_empty()).then_some(Push::Change {
                        shard,
                        index,
                        hlc: hlc.as_u64(),
                        ops,
                    })
                })
                .collect::<Vec<_>>()
        })
        .filter(|pushes| pushes.len() <= room);
    let delivered = match catch_up {
        Some(pushes) => pushes.into_iter().all(|p| deliver(&sink, p)),
        None => deliver(&sink, snapshot(shard, replica, &path, from.is_some())),
    };
    if delivered {
        let after = replica.applied_index();
        subs.push(Subscriber { path, sink, after });
        replica.record_changes = true;
    }
    Response::Value(None)
}

/// Feeds every subscriber the applied changes touching its subtree; drops the ones that
/// cannot take them.
pub fn publish(
    shard: u32,
    replica: &mut Replica,
    subs: &mut Vec<Subscriber>,
    applied: Vec<Applied>,
) {
    for change in applied {
        subs.retain(|sub| match &change {
            Applied::Txn { index, .. } | Applied::Reset { index } if *index <= sub.after => true,
            Applied::Txn { index, hlc, txn } => {
                let ops = touching(&txn.ops, &sub.path);
                ops.is_empty()
                    || deliver(
                        &sub.sink,
                        Push::Change {
                            shard,
                            index: *index,
                            hlc: hlc.as_u64(),
                            ops,
                        },
                    )
            }
            Applied::Reset { .. } => deliver(&sub.sink, snapshot(shard, replica, &sub.path, true)),
        });
    }
    replica.record_changes = !subs.is_empty();
}

/// Tells every subscriber that everything up to the replica's applied HLC was delivered.
pub fn resolved(replica: &mut Replica, subs: &mut Vec<Subscriber>) {
    let hlc = replica.applied_hlc().as_u64();
    subs.retain(|sub| deliver(&sub.sink, Push::Resolved { hlc }));
    replica.record_changes = !subs.is_empty();
}
