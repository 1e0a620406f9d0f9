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
//! - The client sink gets the merge's output in order, a batch (which ends with its
//!   `Resolved`) whole or not at all; or the feed ends (sink dropped): when the client fell
//!   `sub_queue_max` behind, when a shard's feed ended or when the merge failed; the gateway
//!   then tells the client `overflow` and starts again from the last frontier. A shard
//!   stream with a gap restarts the merge here, from a snapshot marked `resync`.
//! - The thread ends once the client's side of the sink is gone (checked every push).
//! - One thread per merged subscription, blocked on its feeds: simple, and bounded by the
//!   gateway's subscription limits; folding them into the cores' executors is issue 13's.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use treesync_core::api::{Answer, Outcome, ReplyError};
use treesync_core::cut::{Merge, MergeConfig, MergeError, MergedPush, MERGED_SHARD};
use treesync_core::engine::Resume;
use treesync_core::hlc::{Timestamp, WallClock, MAX_OFFSET_MS_DEFAULT};
use treesync_core::path::NodePath;
use treesync_core::shard::ShardMap;
use treesync_net::gateway::Push;

use super::Router;
use crate::SystemClock;

/// Pushes queued per shard feed of a merge before the core drops it (as it drops a slow
/// single-shard subscriber).
const SHARD_QUEUE_MAX: usize = 4096;
/// Ops a merge holds while the frontier lags, before it gives up (`MergeError::Overflow`).
const BUFFERED_OPS_MAX: usize = 100_000;

/// What a merged subscription covers and where it gets its feeds.
struct Source {
    router: Router,
    map: ShardMap,
    path: NodePath,
}

impl Source {
    /// Subscribes this server's replica of every shard the merge covers, resuming above
    /// `from` if given; the merge and its feeds.
    async fn open(&self, from: Option<u64>) -> Result<Feeds, ReplyError> {
        let config = MergeConfig {
            path: self.path.as_str().to_owned(),
            map: self.map.clone(),
            from,
            buffered_max: BUFFERED_OPS_MAX,
            inject_release_early: false,
        };
        let merge = Merge::new(config, &self.path);
        let mut feeds = Vec::new();
        for shard in treesync_core::cut::shards_for(&self.map, &self.path) {
            let (tx, rx) = flume::bounded(SHARD_QUEUE_MAX);
            let resume = from.map(Resume::AboveHlc);
            self.router
                .subscribe_shard(shard, self.path.as_str().to_owned(), resume, tx)
                .await?;
            feeds.push((shard, rx));
        }
        Ok((merge, feeds))
    }

    /// `open(None)`, waiting out a shard without a leader (an election, a hand-over): the
    /// gateway's own subscribe retries so too (`session::patiently`).
    async fn reopen(&self) -> Result<Feeds, ReplyError> {
        let mut attempts = 0;
        loop {
            match self.open(None).await {
                Err(ReplyError::NotLeader { .. } | ReplyError::Unavailable { .. })
                    if attempts < REOPEN_ATTEMPTS_MAX =>
                {
                    attempts += 1;
                    // This thread's own wait for an election elsewhere; nothing else runs here.
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                outcome => return outcome,
            }
        }
    }
}

/// Attempts to resubscribe a resynchronising merge (20 ms apart: about 2 s).
const REOPEN_ATTEMPTS_MAX: usize = 100;

type Feeds = (Merge, Vec<(u32, flume::Receiver<Push>)>);

/// Starts a merged subscription of `path` (above the shard roots) on `router`'s server.
/// A `from` ahead of this server's clock by more than the max offset names a position no
/// frontier has reached: refused, rather than a feed that could never release anything.
pub async fn subscribe(
    router: Router,
    map: ShardMap,
    path: NodePath,
    from: Option<u64>,
    sink: flume::Sender<Push>,
) -> Outcome {
    if let Some(from) = from {
        let ahead = Timestamp::from_u64(from).wall_ms();
        let limit = SystemClock.now_ms().saturating_add(MAX_OFFSET_MS_DEFAULT);
        if ahead > limit {
            return Err(ReplyError::BadRequest {
                reason: format!("\"from\" {from} is a position no server has reached yet"),
            });
        }
    }
    let source = Source { router, map, path };
    let feeds = source.open(from).await?;
    let name = format!("merge {}", source.path.as_str());
    std::thread::Builder::new()
        .name(name)
        .spawn(move || futures_lite::future::block_on(forward(source, feeds, sink)))
        .map_err(|e| ReplyError::Unavailable {
            reason: format!("cannot start a merged subscription: {e}"),
        })?;
    Ok(Answer::Subscribed)
}

/// Feeds the merge from its shard feeds and forwards what it releases to `sink` until the
/// client goes away or falls behind, or a feed ends. A shard whose stream has a gap
/// (`MergeError::Resync`: a compacted log behind the resume position, a long catch-up, a
/// snapshot installed on this replica) starts the whole merge over from fresh snapshots,
/// and the client gets the merged one marked `resync`, as `docs/protocol.md` promises.
async fn forward(source: Source, feeds: Feeds, sink: flume::Sender<Push>) {
    let (mut merge, mut feeds) = feeds;
    let mut resync = false;
    let mut out = Vec::new();
    for turn in 0.. {
        if sink.is_disconnected() {
            return; // unsubscribed, or the session ended: drop the shard feeds
        }
        let Some((shard, push)) = next_push(&feeds, turn).await else {
            tracing::debug!("a shard feed of a merged subscription ended");
            return;
        };
        match merge.push(shard, push, &mut out) {
            Ok(()) => {}
            Err(MergeError::Resync { shard }) => {
                tracing::debug!(shard, "a merged subscription resynchronises");
                (merge, feeds) = match source.reopen().await {
                    Ok(fresh) => fresh,
                    Err(error) => {
                        tracing::warn!(%error, "a merged subscription cannot resynchronise");
                        return;
                    }
                };
                (resync, out) = (true, Vec::new());
                continue;
            }
            Err(error) => {
                tracing::warn!(%error, "merged subscription restarts");
                return;
            }
        }
        let pushes = as_pushes(std::mem::take(&mut out), &mut resync);
        // All of a batch or none: each ends with its `Resolved`, so a client never holds
        // changes past its position, and the restart after an overflow repeats nothing. A
        // batch larger than the whole queue would overflow again on every restart: it
        // goes out as the client reads it instead.
        let capacity = sink.capacity().unwrap_or(usize::MAX);
        if pushes.len() <= capacity && pushes.len() > capacity - sink.len() {
            tracing::debug!(pushes = pushes.len(), "a merged subscriber fell behind");
            return; // the client fell behind: the gateway tells it and resumes
        }
        for push in pushes {
            if sink.send_async(push).await.is_err() {
                return;
            }
        }
    }
}

/// The merge's output as gateway pushes: no shard and no index (`MERGED_SHARD`); a snapshot
/// carries the frontier it is the cut at (the `Resolved` that always follows it).
/// A snapshot after a resynchronisation is marked so (`resync` is then cleared).
fn as_pushes(merged: Vec<MergedPush>, resync: &mut bool) -> Vec<Push> {
    // A batch's snapshot comes before the first `Resolved` of the batch, which names its cut
    // (`Merge::push` starts before it releases).
    let cut = merged.iter().find_map(|push| match push {
        MergedPush::Resolved { hlc } => Some(*hlc),
        _ => None,
    });
    let as_push = |push| match push {
        MergedPush::Snapshot {
            tree,
            resync: again,
        } => Push::Snapshot {
            shard: MERGED_SHARD,
            tree,
            index: 0,
            hlc: cut.expect("a merged snapshot is followed by its frontier"),
            resync: again || std::mem::take(resync),
        },
        MergedPush::Change { hlc, txn, ops } => Push::Change {
            shard: MERGED_SHARD,
            index: 0,
            hlc,
            txn,
            ops,
        },
        MergedPush::Resolved { hlc } => Push::Resolved { hlc },
    };
    merged.into_iter().map(as_push).collect()
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
