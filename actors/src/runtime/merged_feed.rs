//! Subscriptions above the shard roots: every shard's feed of the path, merged behind a
//! frontier (`treesync_core::cut::Merge`), delivered to one gateway sink.
//!
//! A merged subscription subscribes this server's replica of every shard (linearizable, as
//! a single-shard one), then a thread of its own takes their pushes, feeds the merge and
//! forwards what it releases. Its pushes carry `cut::MERGED_SHARD` and no log index: the
//! position a client keeps is the frontier of the last `resolved`, and resuming `from` it
//! starts every shard's feed with the changes whose commit timestamp is above it
//! (`engine::Resume::AboveHlc`), so nothing is delivered twice or missed, from any server.
//!
//! # Invariants
//! - The client sink gets the merge's output in order, or the feed ends (sink dropped):
//!   when the client fell `sub_queue_max` behind, when a shard's feed ended or when the
//!   merge failed (`MergeError`); the gateway then tells the client `overflow` and starts
//!   again from the last frontier, or from a snapshot.
//! - One thread per merged subscription, blocked on its feeds: simple, and bounded by the
//!   gateway's subscription limits; folding them into the cores' executors is issue 13's.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use treesync_core::api::{Answer, Outcome, ReplyError};
use treesync_core::cut::{Merge, MergeConfig, MergedPush, MERGED_SHARD};
use treesync_core::engine::Resume;
use treesync_core::path::NodePath;
use treesync_core::shard::ShardMap;
use treesync_net::gateway::Push;

use super::Router;

/// Pushes queued per shard feed of a merge before the core drops it (as it drops a slow
/// single-shard subscriber).
const SHARD_QUEUE_MAX: usize = 4096;
/// Ops a merge holds while the frontier lags, before it gives up (`MergeError::Overflow`).
const BUFFERED_OPS_MAX: usize = 100_000;

/// Starts a merged subscription of `path` (above the shard roots) on `router`'s server.
pub async fn subscribe(
    router: Router,
    map: ShardMap,
    path: NodePath,
    from: Option<u64>,
    sink: flume::Sender<Push>,
) -> Outcome {
    let config = MergeConfig {
        path: path.as_str().to_owned(),
        map: map.clone(),
        from,
        buffered_max: BUFFERED_OPS_MAX,
        inject_release_early: false,
    };
    let merge = Merge::new(config, &path);
    let mut feeds = Vec::new();
    for shard in treesync_core::cut::shards_for(&map, &path) {
        let (tx, rx) = flume::bounded(SHARD_QUEUE_MAX);
        let resume = from.map(Resume::AboveHlc);
        router
            .subscribe_shard(shard, path.as_str().to_owned(), resume, tx)
            .await?;
        feeds.push((shard, rx));
    }
    let name = format!("merge {}", path.as_str());
    std::thread::Builder::new()
        .name(name)
        .spawn(move || futures_lite::future::block_on(forward(merge, feeds, sink)))
        .map_err(|e| ReplyError::Unavailable {
            reason: format!("cannot start a merged subscription: {e}"),
        })?;
    Ok(Answer::Subscribed)
}

/// Feeds `merge` from `feeds` and forwards its output to `sink` until one of them ends.
async fn forward(
    mut merge: Merge,
    feeds: Vec<(u32, flume::Receiver<Push>)>,
    sink: flume::Sender<Push>,
) {
    let mut out = Vec::new();
    for turn in 0.. {
        let Some((shard, push)) = next_push(&feeds, turn).await else {
            tracing::debug!("a shard feed of a merged subscription ended");
            return;
        };
        if let Err(error) = merge.push(shard, push, &mut out) {
            tracing::warn!(%error, "merged subscription restarts");
            return;
        }
        for push in as_pushes(out.drain(..)) {
            if sink.try_send(push).is_err() {
                return; // the client fell behind or went away: the gateway takes over
            }
        }
    }
}

/// The merge's output as gateway pushes: no shard and no index (`MERGED_SHARD`); a snapshot
/// carries the frontier it is the cut at (the `Resolved` that always follows it).
fn as_pushes(merged: impl Iterator<Item = MergedPush>) -> Vec<Push> {
    let merged: Vec<MergedPush> = merged.collect();
    let mut pushes = Vec::with_capacity(merged.len());
    for (at, push) in merged.iter().enumerate() {
        pushes.push(match push.clone() {
            MergedPush::Snapshot { tree, resync } => {
                let hlc = match merged.get(at + 1) {
                    Some(MergedPush::Resolved { hlc }) => *hlc,
                    _ => unreachable!("a merged snapshot is followed by its frontier"),
                };
                Push::Snapshot {
                    shard: MERGED_SHARD,
                    tree,
                    index: 0,
                    hlc,
                    resync,
                }
            }
            MergedPush::Change { hlc, txn, ops } => Push::Change {
                shard: MERGED_SHARD,
                index: 0,
                hlc,
                txn,
                ops,
            },
            MergedPush::Resolved { hlc } => Push::Resolved { hlc },
        });
    }
    pushes
}

/// The next push of any feed (`None` once one of them ended), looking first at a different
/// feed each `turn` so a busy shard does not starve the others (the frontier needs them all).
fn next_push(
    feeds: &[(u32, flume::Receiver<Push>)],
    turn: usize,
) -> impl Future<Output = Option<(u32, Push)>> + '_ {
    let start = turn % feeds.len().max(1);
    let mut receiving: Vec<_> = feeds[start..]
        .iter()
        .chain(&feeds[..start])
        .map(|(shard, rx)| (*shard, rx.recv_async()))
        .collect();
    std::future::poll_fn(move |cx: &mut Context<'_>| {
        for (shard, fut) in receiving.iter_mut() {
            if let Poll::Ready(result) = Pin::new(fut).poll(cx) {
                return Poll::Ready(result.ok().map(|push| (*shard, push)));
            }
        }
        Poll::Pending
    })
}
