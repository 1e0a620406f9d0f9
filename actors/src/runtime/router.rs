//! Routing requests to the core that owns their shard (shard `s` on core `s mod cores`).

use std::sync::Arc;
use std::time::Instant;

use treesync_core::api::{Outcome, ReplyError};
use treesync_core::engine::Resume;
use treesync_core::metrics::Metrics;
use treesync_core::path::NodePath;
use treesync_core::replica::ReadTarget;
use treesync_core::shard::ShardMap;
use treesync_core::{Limits, TreeError, Txn};
use treesync_net::client_proto::{self, Response};
use treesync_net::gateway::Push;

use super::CoreMsg;

/// Cloneable handle to every core's mailbox. Usable from any thread (blocking) and from
/// executors (async). Cloning shares the senders; the mailboxes stay bounded.
#[derive(Clone)]
pub struct Router {
    inboxes: Arc<Vec<flume::Sender<CoreMsg>>>,
    shard_map: ShardMap,
    limits: Limits,
    /// This server's id (the metrics' `server` label).
    server: u64,
    metrics: Arc<Metrics>,
}

impl Router {
    pub fn new(inboxes: Vec<flume::Sender<CoreMsg>>, shard_map: ShardMap, server: u64) -> Router {
        let metrics = Arc::new(Metrics::new(inboxes.len()));
        Router {
            inboxes: Arc::new(inboxes),
            shard_map,
            limits: Limits::default(),
            server,
            metrics,
        }
    }

    /// The server's metrics (its cores record WAL and leadership figures into them).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The metrics as Prometheus text, with the cores' mailbox depths as of now.
    pub fn metrics_text(&self) -> String {
        let depths: Vec<usize> = self.inboxes.iter().map(flume::Sender::len).collect();
        self.metrics.render(self.server, &depths)
    }

    fn core_of(&self, shard: u32) -> &flume::Sender<CoreMsg> {
        &self.inboxes[shard as usize % self.inboxes.len()]
    }

    /// The single shard a transaction touches (cross-shard transactions come later), or
    /// why it is refused.
    pub fn shard_of_txn(&self, txn: &Txn) -> Result<u32, ReplyError> {
        let mut shard = None;
        for op in &txn.ops {
            let s = self.shard_of_path(&op.target_path())?;
            if shard.is_some_and(|first| first != s) {
                return Err(ReplyError::CrossShard);
            }
            shard = Some(s);
        }
        shard.ok_or_else(|| ReplyError::BadRequest {
            reason: "a transaction needs at least one op".into(),
        })
    }

    /// The shard owning `path`, or why the path is refused.
    pub fn shard_of_path(&self, path: &str) -> Result<u32, ReplyError> {
        let path = NodePath::parse(path, &self.limits).map_err(|e| ReplyError::InvalidPath {
            reason: e.to_string(),
        })?;
        Ok(self.shard_map.shard_of(&path).0)
    }

    /// Sends a request to `core` and waits for its answer. A request the core never took
    /// did not happen; one it took and then dropped unanswered (the core stopped) is a
    /// write whose outcome is unknown, or a read that did not happen. The engine answers
    /// every request it took by its deadline, so this wait is bounded while the core runs.
    /// Timed into the commit (writes) or read latency histogram.
    async fn ask(
        &self,
        core: &flume::Sender<CoreMsg>,
        write: bool,
        make: impl FnOnce(flume::Sender<Outcome>) -> CoreMsg,
    ) -> Outcome {
        let began = Instant::now();
        let outcome = self.ask_untimed(core, write, make).await;
        self.record(write, began, &outcome);
        outcome
    }

    /// Counts a request that began at `began` in the metrics (every `ask`, async or not).
    fn record(&self, write: bool, began: Instant, outcome: &Outcome) {
        let us = began.elapsed().as_micros() as u64;
        match write {
            true => self.metrics.commit_us.record(us),
            false => self.metrics.read_us.record(us),
        }
        if outcome.is_err() {
            self.metrics.failed.add(1);
        }
    }

    async fn ask_untimed(
        &self,
        core: &flume::Sender<CoreMsg>,
        write: bool,
        make: impl FnOnce(flume::Sender<Outcome>) -> CoreMsg,
    ) -> Outcome {
        let (tx, rx) = flume::bounded(1);
        if core.send_async(make(tx)).await.is_err() {
            return Err(stopped());
        }
        rx.recv_async().await.unwrap_or_else(|_| Err(lost(write)))
    }

    /// Commits `txn` on this server's replica of its shard (which must lead it).
    pub async fn write(&self, txn: Txn) -> Outcome {
        let shard = self.shard_of_txn(&txn)?;
        self.ask(self.core_of(shard), true, |reply| CoreMsg::Propose {
            shard,
            txn,
            reply,
        })
        .await
    }

    /// Commits `txn` on this server's replica of `shard` (which must lead it), as planned:
    /// a plan's part may hold ops on dentries whose paths map to other shards.
    pub async fn write_on(&self, shard: u32, txn: Txn) -> Outcome {
        self.ask(self.core_of(shard), true, |reply| CoreMsg::Propose {
            shard,
            txn,
            reply,
        })
        .await
    }

    /// Proposes a parallel-commit step on this server's replica of `shard`.
    pub async fn step(&self, shard: u32, step: treesync_core::txn::step::Step) -> Outcome {
        self.ask(self.core_of(shard), true, |reply| CoreMsg::Step {
            shard,
            step,
            reply,
        })
        .await
    }

    /// Sends `request` for `shard` to server `to` (its leader) over the peer transport of
    /// the core that owns the shard, and waits for its answer (bounded by the core).
    pub async fn forward(
        &self,
        to: u64,
        shard: u32,
        request: treesync_core::txn::host::Request,
    ) -> Outcome {
        let write = !matches!(request, treesync_core::txn::host::Request::Read { .. });
        self.ask(self.core_of(shard), write, |reply| CoreMsg::Forward {
            to,
            shard,
            request,
            reply,
        })
        .await
    }

    /// The shard map requests are routed by.
    pub fn shard_map(&self) -> &ShardMap {
        &self.shard_map
    }

    /// Linearizable read through this server's replica (raft-rs ReadIndex works from
    /// followers too: the replica answers once it applied the leader's commit index).
    pub async fn read(&self, path: String, target: ReadTarget) -> Outcome {
        let shard = self.shard_of_path(&path)?;
        self.ask(self.core_of(shard), false, |reply| CoreMsg::Read {
            shard,
            path,
            target,
            reply,
        })
        .await
    }

    /// Subscribes `sink` to the subtree at `path` on this server's replica of its shard
    /// (any replica serves subscriptions: changes arrive as it applies them). The snapshot
    /// is linearizable: it holds every write acknowledged before the subscribe.
    pub async fn subscribe(
        &self,
        path: String,
        from: Option<u64>,
        sink: flume::Sender<Push>,
    ) -> Outcome {
        let shard = self.shard_of_path(&path)?;
        self.subscribe_shard(shard, path, from.map(Resume::AfterIndex), sink)
            .await
    }

    /// Subscribes `sink` to what `shard` holds of the subtree at `path` (for a path above
    /// the shard roots, an entity shard holds the entities below it: `cut::Merge` merges
    /// such feeds), linearizable as `subscribe`.
    pub async fn subscribe_shard(
        &self,
        shard: u32,
        path: String,
        from: Option<Resume>,
        sink: flume::Sender<Push>,
    ) -> Outcome {
        // A linearizable read first (ReadIndex, cheap: a property that cannot exist):
        // once it answers, this replica has applied every write acknowledged before the
        // subscribe, so the snapshot taken next is at least that fresh.
        let barrier = ReadTarget::Prop(String::new());
        let read = self.ask(self.core_of(shard), false, |reply| CoreMsg::Read {
            shard,
            path: path.clone(),
            target: barrier,
            reply,
        });
        match read.await {
            // One may subscribe to a path before its node exists; an intent there is
            // reported after the read index applied (the feed holds its resolved timestamp
            // below it until it resolves).
            Ok(_)
            | Err(ReplyError::Rejected(TreeError::NotFound { .. }))
            | Err(ReplyError::Locked { .. }) => {}
            Err(other) => return Err(other),
        }
        self.ask_untimed(self.core_of(shard), false, |reply| CoreMsg::Subscribe {
            shard,
            path,
            from,
            sink,
            reply,
        })
        .await
    }

    /// Every core's status lines.
    pub async fn status(&self) -> String {
        let mut text = String::new();
        for core in self.inboxes.iter() {
            let (tx, rx) = flume::bounded(1);
            if core.send_async(CoreMsg::Status { reply: tx }).await.is_ok() {
                text.push_str(&rx.recv_async().await.unwrap_or_default());
            }
        }
        text
    }

    /// Handles one framed-protocol request (its byte edge: outcomes become `Response`s).
    pub async fn handle(&self, kind: u32, body: &[u8]) -> Response {
        match kind {
            client_proto::WRITE => match treesync_core::wire::decode_txn_unaligned(body) {
                Ok(txn) => self.write(txn).await.into(),
                Err(e) => Response::from(Err(ReplyError::Malformed {
                    reason: format!("transaction: {e}"),
                })),
            },
            client_proto::READ => match client_proto::parse_read(body) {
                Ok((path, prop)) => self.read(path, prop.into()).await.into(),
                Err(reason) => Response::from(Err(ReplyError::BadRequest { reason })),
            },
            client_proto::STATUS => Response::Status(self.status().await),
            other => Response::Error(format!("unknown request kind {other}")),
        }
    }

    /// Blocking write for embedders (call from a non-executor thread): commits `txn` on
    /// this server's replica of its shard, which must be the leader (else `NotLeader`).
    pub fn propose_blocking(&self, txn: Txn) -> Outcome {
        let shard = self.shard_of_txn(&txn)?;
        self.ask_blocking(shard, true, |reply| CoreMsg::Propose { shard, txn, reply })
    }

    /// Blocking linearizable read for embedders: a node as Godot data, or one property.
    pub fn read_blocking(&self, path: &str, prop: Option<&str>) -> Outcome {
        let shard = self.shard_of_path(path)?;
        let (path, target) = (path.to_owned(), prop.map(str::to_owned).into());
        self.ask_blocking(shard, false, |reply| CoreMsg::Read {
            shard,
            path,
            target,
            reply,
        })
    }

    fn ask_blocking(
        &self,
        shard: u32,
        write: bool,
        make: impl FnOnce(flume::Sender<Outcome>) -> CoreMsg,
    ) -> Outcome {
        let began = Instant::now();
        let (tx, rx) = flume::bounded(1);
        let outcome = match self.core_of(shard).send(make(tx)) {
            Ok(()) => rx.recv().unwrap_or_else(|_| Err(lost(write))),
            Err(_) => Err(stopped()),
        };
        self.record(write, began, &outcome);
        outcome
    }
}

fn stopped() -> ReplyError {
    ReplyError::Unavailable {
        reason: "the core owning this shard has stopped".into(),
    }
}

/// A request a core took and dropped unanswered: a write may have been proposed.
pub(super) fn lost(write: bool) -> ReplyError {
    match write {
        true => ReplyError::UnknownOutcome,
        false => stopped(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retired_local_read_is_refused_without_reaching_a_core() {
        // No core is behind this router: a request that reached one would get "stopped".
        let (core, _inbox) = flume::bounded(1);
        let map = ShardMap::new(1, treesync_core::shard::SHARD_DEPTH_DEFAULT).expect("map");
        let router = Router::new(vec![core], map, 1);
        let response = futures_lite::future::block_on(router.handle(3, b"/root\nk0"));
        assert_eq!(response, Response::Error("unknown request kind 3".into()));
    }
}
