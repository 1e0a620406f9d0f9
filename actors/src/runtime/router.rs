//! Routing requests to the core that owns their shard (shard `s` on core `s mod cores`).

use std::sync::Arc;

use treesync_core::path::NodePath;
use treesync_core::replica::ReadTarget;
use treesync_core::shard::ShardMap;
use treesync_core::{Limits, Op, Txn};
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
}

/// The node an op addresses, which decides its shard.
fn op_path(op: &Op) -> String {
    match op {
        Op::Create { parent, name, .. } => format!("{parent}/{name}"),
        Op::Delete { path }
        | Op::Set { path, .. }
        | Op::Rename { path, .. }
        | Op::Move { path, .. } => path.clone(),
        Op::Emit { path, .. } => path.clone(),
    }
}

impl Router {
    pub fn new(inboxes: Vec<flume::Sender<CoreMsg>>, shard_map: ShardMap) -> Router {
        Router {
            inboxes: Arc::new(inboxes),
            shard_map,
            limits: Limits::default(),
        }
    }

    fn core_of(&self, shard: u32) -> &flume::Sender<CoreMsg> {
        &self.inboxes[shard as usize % self.inboxes.len()]
    }

    /// The single shard a transaction touches (cross-shard transactions come later).
    /// The single shard a transaction touches (cross-shard transactions come later), or
    /// the `Rejected` response that refuses it.
    pub fn shard_of_txn(&self, txn: &Txn) -> Result<u32, Response> {
        let mut shard = None;
        for op in &txn.ops {
            let s = self.shard_of_path(&op_path(op))?;
            if shard.is_some_and(|first| first != s) {
                return Err(Response::rejected(
                    "cross_shard",
                    "this transaction spans shards; cross-shard transactions are not supported yet",
                ));
            }
            shard = Some(s);
        }
        shard
            .ok_or_else(|| Response::rejected("bad_request", "a transaction needs at least one op"))
    }

    /// The shard owning `path`, or the `Rejected` response for an invalid path.
    pub fn shard_of_path(&self, path: &str) -> Result<u32, Response> {
        let path = NodePath::parse(path, &self.limits)
            .map_err(|e| Response::rejected("invalid_path", e.to_string()))?;
        Ok(self.shard_map.shard_of(&path).0)
    }

    async fn ask(
        &self,
        core: &flume::Sender<CoreMsg>,
        make: impl FnOnce(flume::Sender<Response>) -> CoreMsg,
    ) -> Response {
        let (tx, rx) = flume::bounded(1);
        if core.send_async(make(tx)).await.is_err() {
            return Response::Error("the core owning this shard has stopped".into());
        }
        rx.recv_async()
            .await
            .unwrap_or_else(|_| Response::Error("the core dropped the request".into()))
    }

    /// Commits `txn` on this server's replica of its shard (which must lead it).
    pub async fn write(&self, txn: Txn) -> Response {
        match self.shard_of_txn(&txn) {
            Ok(shard) => {
                self.ask(self.core_of(shard), |reply| CoreMsg::Propose {
                    shard,
                    txn,
                    reply,
                })
                .await
            }
            Err(refused) => refused,
        }
    }

    /// Linearizable read through this server's replica (raft-rs ReadIndex works from
    /// followers too: the replica answers once it applied the leader's commit index).
    pub async fn read(&self, path: String, target: ReadTarget) -> Response {
        let shard = match self.shard_of_path(&path) {
            Ok(s) => s,
            Err(refused) => return refused,
        };
        self.ask(self.core_of(shard), |reply| CoreMsg::Read {
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
    ) -> Response {
        let shard = match self.shard_of_path(&path) {
            Ok(s) => s,
            Err(refused) => return refused,
        };
        // A linearizable read first (ReadIndex, cheap: a property that cannot exist):
        // once it answers, this replica has applied every write acknowledged before the
        // subscribe, so the snapshot taken next is at least that fresh.
        let barrier = ReadTarget::Prop(String::new());
        match self.read(path.clone(), barrier).await {
            Response::Value(_) => {}
            // One may subscribe to a path before its node exists.
            Response::Rejected { code, .. } if code == "not_found" => {}
            other => return other,
        }
        self.ask(self.core_of(shard), |reply| CoreMsg::Subscribe {
            shard,
            path,
            from,
            sink,
            reply,
        })
        .await
    }

    /// Handles one client-protocol request.
    pub async fn handle(&self, kind: u32, body: &[u8]) -> Response {
        match kind {
            client_proto::WRITE => match treesync_core::wire::decode_txn_unaligned(body) {
                Ok(txn) => self.write(txn).await,
                Err(e) => Response::rejected("malformed", format!("malformed transaction: {e}")),
            },
            client_proto::READ => match client_proto::parse_read(body) {
                Ok((path, prop)) => self.read(path, prop.into()).await,
                Err(e) => Response::rejected("bad_request", e),
            },
            client_proto::STATUS => {
                let mut text = String::new();
                for core in self.inboxes.iter() {
                    if let Response::Status(s) =
                        self.ask(core, |reply| CoreMsg::Status { reply }).await
                    {
                        text.push_str(&s);
                    }
                }
                Response::Status(text)
            }
            other => Response::Error(format!("unknown request kind {other}")),
        }
    }

    /// Blocking write for embedders (call from a non-executor thread): commits `txn` on
    /// this server's replica of its shard, which must be the leader (else `NotLeader`).
    pub fn propose_blocking(&self, txn: Txn) -> Response {
        let shard = match self.shard_of_txn(&txn) {
            Ok(s) => s,
            Err(refused) => return refused,
        };
        self.ask_blocking(shard, |reply| CoreMsg::Propose { shard, txn, reply })
    }

    /// Blocking linearizable read for embedders: a node as Godot data, or one property.
    pub fn read_blocking(&self, path: &str, prop: Option<&str>) -> Response {
        let shard = match self.shard_of_path(path) {
            Ok(s) => s,
            Err(refused) => return refused,
        };
        let (path, target) = (path.to_owned(), prop.map(str::to_owned).into());
        self.ask_blocking(shard, |reply| CoreMsg::Read {
            shard,
            path,
            target,
            reply,
        })
    }

    fn ask_blocking(
        &self,
        shard: u32,
        make: impl FnOnce(flume::Sender<Response>) -> CoreMsg,
    ) -> Response {
        let (tx, rx) = flume::bounded(1);
        if self.core_of(shard).send(make(tx)).is_err() {
            return Response::Error("the core owning this shard has stopped".into());
        }
        rx.recv()
            .unwrap_or_else(|_| Response::Error("the core dropped the request".into()))
    }
}
