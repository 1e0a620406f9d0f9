//! The WebSocket gateway's view of the servers (`treesync_net::gateway::Backend`).
//!
//! `Router` serves one server's shards: a request for a shard led elsewhere is answered
//! `NotLeader` (the gateway tells the client which server leads). `LocalCluster` holds every
//! server of this process (`treesync local`) and forwards to whichever leads the shard, so a
//! client may talk to any of them. Both are `ShardRoute`s for a transaction host, and
//! `ServerBackend` puts one under the gateway with the host: a write that stays in one
//! shard goes straight to it, any other (and one that meets an intent) through the host;
//! a `tree` above the shard roots is a consistent cut of every shard (`read_cut`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use treesync_core::api::{Answer, Outcome, ReplyError};
use treesync_core::path::NodePath;
use treesync_core::replica::ReadTarget;
use treesync_core::shard::ShardMap;
use treesync_core::txn::host::Request;
use treesync_core::txn::split;
use treesync_core::Limits;
use treesync_core::Txn;
use treesync_net::gateway::{Backend, BoxFuture, Push};

use super::txn_host::{HostHandle, ShardRoute};
use super::Router;

impl ShardRoute for Router {
    fn call(&self, shard: u32, request: Request) -> BoxFuture<Outcome> {
        let router = self.clone();
        Box::pin(async move { router.serve(shard, request).await })
    }
}

impl Router {
    /// One host request on this server's replica of `shard`.
    pub async fn serve(&self, shard: u32, request: Request) -> Outcome {
        match request {
            Request::Read { path, target } => self.read(path, target).await,
            Request::Propose(txn) => self.write_on(shard, txn).await,
            Request::Step(step) => self.step(shard, step).await,
        }
    }
}

/// One server's route in a cluster of processes (`treesync serve`): its own replica, or,
/// when that names another leader, the leader's server over the peer transport. So any
/// server accepts any request, and `not_leader` reaches no client of `serve` unless the
/// shard has no leader at all.
#[derive(Clone)]
pub struct Forwarding {
    router: Router,
    me: u64,
}

impl Forwarding {
    pub fn new(router: Router, me: u64) -> Forwarding {
        Forwarding { router, me }
    }
}

impl ShardRoute for Forwarding {
    fn call(&self, shard: u32, request: Request) -> BoxFuture<Outcome> {
        let (router, me) = (self.router.clone(), self.me);
        Box::pin(async move {
            match router.serve(shard, request.clone()).await {
                Err(ReplyError::NotLeader {
                    leader: Some(leader),
                }) if leader != me => router.forward(leader, shard, request).await,
                outcome => outcome,
            }
        })
    }
}

impl Backend for Forwarding {
    fn write(&self, txn: Txn) -> BoxFuture<Outcome> {
        Backend::write(&self.router, txn)
    }

    fn read(&self, path: String, target: ReadTarget) -> BoxFuture<Outcome> {
        Backend::read(&self.router, path, target)
    }

    /// Any replica serves a subscription: this server's.
    fn subscribe(
        &self,
        path: String,
        from: Option<u64>,
        sink: flume::Sender<Push>,
    ) -> BoxFuture<Outcome> {
        Backend::subscribe(&self.router, path, from, sink)
    }
}

impl ShardRoute for LocalCluster {
    fn call(&self, shard: u32, request: Request) -> BoxFuture<Outcome> {
        Box::pin(self.clone().follow(move |router| {
            let request = request.clone();
            async move { router.serve(shard, request).await }
        }))
    }
}

/// Times a read that met an intent is retried (after pushing its holder) before the
/// client is told `locked`: 50 × 2 ticks, about a second at 10 ms ticks.
const LOCKED_READS_MAX: usize = 50;

/// The gateway's backend over a route to the shards' leaders and this server's host.
#[derive(Clone)]
pub struct ServerBackend<R> {
    route: R,
    host: HostHandle,
    /// This server's own cores (for `status`).
    router: Router,
    map: ShardMap,
    limits: Limits,
}

impl<R: ShardRoute + Clone> ServerBackend<R> {
    /// `router` is this server's (its shard map and its status).
    pub fn new(route: R, host: HostHandle, router: Router) -> ServerBackend<R> {
        ServerBackend {
            route,
            host,
            map: router.shard_map().clone(),
            router,
            limits: Limits::default(),
        }
    }

    /// `path` parsed, when a subscription of it merges shards (`cut::shards_for`).
    fn merged_path(&self, path: &str) -> Result<Option<NodePath>, ReplyError> {
        let parsed = NodePath::parse(path, &self.limits).map_err(|e| ReplyError::InvalidPath {
            reason: e.to_string(),
        })?;
        let shards = treesync_core::cut::shards_for(&self.map, &parsed);
        Ok((shards.len() > 1).then_some(parsed))
    }

    /// The one shard a transaction touches when it needs no planning read, if so.
    fn fast_shard(&self, txn: &Txn) -> Option<u32> {
        let no_reads = split::reads_needed(txn, &self.map, &self.limits)
            .ok()?
            .is_empty();
        let empty = std::collections::BTreeMap::new();
        let plan = split::plan(txn, &self.map, &self.limits, &empty).ok()?;
        plan.single_shard().filter(|_| no_reads)
    }

    async fn write(self, txn: Txn) -> Outcome {
        if let Some(shard) = self.fast_shard(&txn) {
            match self.route.call(shard, Request::Propose(txn.clone())).await {
                Err(ReplyError::Locked { holder }) => self.host.push(holder, shard),
                outcome => return outcome,
            }
        }
        self.host.transact(txn).await
    }

    /// A read of one shard, waiting out intents (pushing their holders).
    async fn read_shard(&self, shard: u32, path: String, target: ReadTarget) -> Outcome {
        let router_read = |path: String, target: ReadTarget| {
            let route = self.route.clone();
            async move { route.read(shard, path, target).await }
        };
        for _ in 0..LOCKED_READS_MAX {
            match router_read(path.clone(), target.clone()).await {
                Err(ReplyError::Locked { holder }) => {
                    self.host.push(holder, shard);
                    self.host.after(2).await;
                }
                outcome => return outcome,
            }
        }
        router_read(path, target).await
    }

    async fn read(self, path: String, target: ReadTarget) -> Outcome {
        let parsed = NodePath::parse(&path, &self.limits).map_err(|e| ReplyError::InvalidPath {
            reason: e.to_string(),
        })?;
        let shard = self.map.shard_of(&parsed).0;
        match self.merged_path(&path)? {
            Some(parsed) if target == ReadTarget::Subtree => self.read_cut(parsed).await,
            _ => self.read_shard(shard, path, target).await,
        }
    }

    /// The subtree above the shard roots at one timestamp: the snapshot a merged
    /// subscription starts with, a true cut at a frontier that every shard's linearizable
    /// snapshot is at or below (`cut::Merge`). So it holds every write acknowledged before
    /// the read, and of each cross-shard transaction all or nothing. It waits for the
    /// frontier, about the closed-timestamp lag.
    async fn read_cut(&self, path: NodePath) -> Outcome {
        let (sink, feed) = flume::bounded(CUT_READ_PUSHES_MAX);
        let (router, map) = (self.router.clone(), self.map.clone());
        let snapshot = async {
            super::merged_feed::subscribe(router, map, path, None, sink).await?;
            match feed.recv_async().await {
                Ok(Push::Snapshot { tree, .. }) => Ok(Answer::Value(tree)),
                _ => Err(ReplyError::Unavailable {
                    reason: "the shards' feeds ended before a consistent cut".into(),
                }),
            }
        };
        let late = async {
            self.host.after(CUT_READ_TICKS_MAX).await;
            Err(ReplyError::Unavailable {
                reason: "no consistent cut across the shards in time (a shard without a leader?)"
                    .into(),
            })
        };
        // Dropping `feed` ends the merge and its shard feeds.
        futures_lite::future::or(snapshot, late).await
    }
}

/// Pushes a consistent read's merge may queue (it reads one, the snapshot).
const CUT_READ_PUSHES_MAX: usize = 16;
/// Ticks a consistent read waits for the shards' frontier (about 5 s at 10 ms ticks).
const CUT_READ_TICKS_MAX: u64 = 500;

/// A route's read of one shard.
trait RouteRead {
    fn read(&self, shard: u32, path: String, target: ReadTarget) -> BoxFuture<Outcome>;
}

impl<R: ShardRoute> RouteRead for R {
    fn read(&self, shard: u32, path: String, target: ReadTarget) -> BoxFuture<Outcome> {
        self.call(shard, Request::Read { path, target })
    }
}

impl<R: ShardRoute + Clone + Backend> Backend for ServerBackend<R> {
    fn write(&self, txn: Txn) -> BoxFuture<Outcome> {
        Box::pin(self.clone().write(txn))
    }

    fn read(&self, path: String, target: ReadTarget) -> BoxFuture<Outcome> {
        Box::pin(self.clone().read(path, target))
    }

    /// A path above the shard roots merges every shard's feed on this server
    /// (`merged_feed`); any other is one shard's feed.
    fn subscribe(
        &self,
        path: String,
        from: Option<u64>,
        sink: flume::Sender<Push>,
    ) -> BoxFuture<Outcome> {
        let parsed = match self.merged_path(&path) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return self.route.subscribe(path, from, sink),
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        let (router, map) = (self.router.clone(), self.map.clone());
        Box::pin(super::merged_feed::subscribe(
            router, map, parsed, from, sink,
        ))
    }

    fn merges(&self, path: &str) -> bool {
        matches!(self.merged_path(path), Ok(Some(_)))
    }

    fn metrics(&self) -> Option<String> {
        Some(self.router.metrics_text())
    }

    fn status(&self) -> BoxFuture<Outcome> {
        let router = self.router.clone();
        Box::pin(async move { Ok(Answer::Value(Some(status_value(&router.status().await)))) })
    }
}

/// `{shards: [{shard, role, leader, term, applied}], leaders: {server: shards led}}` from
/// the cores' status lines (`Engine::status`).
fn status_value(lines: &str) -> treesync_core::Value {
    use treesync_core::Value;
    let key = |k: &str| Value::String(k.into());
    let mut shards = Vec::new();
    let mut leaders: std::collections::BTreeMap<i64, i64> = std::collections::BTreeMap::new();
    for line in lines.lines() {
        let mut words = line.split_whitespace();
        let (Some("shard"), Some(id)) = (words.next(), words.next()) else {
            continue;
        };
        let mut entry = vec![(key("shard"), Value::Int(id.parse().unwrap_or(-1)))];
        for word in words {
            let Some((name, value)) = word.split_once('=') else {
                continue;
            };
            let value = match value.parse::<i64>() {
                Ok(n) => Value::Int(n),
                Err(_) => Value::String(value.into()),
            };
            if name == "leader" {
                if let Value::Int(l) = value {
                    *leaders.entry(l).or_default() += 1;
                }
            }
            entry.push((key(name), value));
        }
        shards.push(Value::Dictionary(entry));
    }
    let leaders = leaders
        .into_iter()
        .map(|(l, n)| (Value::Int(l), Value::Int(n)))
        .collect();
    Value::Dictionary(vec![
        (key("shards"), Value::Array(shards)),
        (key("leaders"), Value::Dictionary(leaders)),
    ])
}

impl Backend for Router {
    fn metrics(&self) -> Option<String> {
        Some(self.metrics_text())
    }

    fn write(&self, txn: Txn) -> BoxFuture<Outcome> {
        let router = self.clone();
        Box::pin(async move { router.write(txn).await })
    }

    fn read(&self, path: String, target: ReadTarget) -> BoxFuture<Outcome> {
        let router = self.clone();
        Box::pin(async move { router.read(path, target).await })
    }

    fn subscribe(
        &self,
        path: String,
        from: Option<u64>,
        sink: flume::Sender<Push>,
    ) -> BoxFuture<Outcome> {
        let router = self.clone();
        Box::pin(async move { router.subscribe(path, from, sink).await })
    }
}

/// Hops a request makes following leader hints before giving up (an election in progress).
const HOPS_MAX: usize = 3;

/// Every server of this process; requests follow leader hints between them. Cloning shares
/// the routers and the hint.
#[derive(Clone)]
pub struct LocalCluster {
    routers: Arc<BTreeMap<u64, Router>>,
    /// The server that last led (a hint: shards may have different leaders).
    hint: Arc<AtomicU64>,
}

impl LocalCluster {
    /// `routers`: server id → that server's router. Panics if empty (a programming error).
    pub fn new(routers: BTreeMap<u64, Router>) -> LocalCluster {
        let first = *routers.keys().next().expect("at least one server");
        LocalCluster {
            routers: Arc::new(routers),
            hint: Arc::new(AtomicU64::new(first)),
        }
    }

    /// Server `id`'s router, if it is one of these.
    pub fn router(&self, id: u64) -> Option<Router> {
        self.routers.get(&id).cloned()
    }

    /// The same servers, trying `server` first (each server's gateway starts with itself).
    pub fn starting_at(&self, server: u64) -> LocalCluster {
        LocalCluster {
            routers: self.routers.clone(),
            hint: Arc::new(AtomicU64::new(server)),
        }
    }

    async fn follow<F, Fut>(self, ask: F) -> Outcome
    where
        F: Fn(Router) -> Fut,
        Fut: std::future::Future<Output = Outcome>,
    {
        let mut server = self.hint.load(Ordering::Relaxed);
        let mut response = Err(ReplyError::NotLeader { leader: None });
        for _ in 0..HOPS_MAX {
            let Some(router) = self.routers.get(&server) else {
                break;
            };
            response = ask(router.clone()).await;
            match response {
                Err(ReplyError::NotLeader {
                    leader: Some(leader),
                }) if leader != server && self.routers.contains_key(&leader) => {
                    self.hint.store(leader, Ordering::Relaxed);
                    server = leader;
                }
                _ => break,
            }
        }
        response
    }
}

impl Backend for LocalCluster {
    fn write(&self, txn: Txn) -> BoxFuture<Outcome> {
        Box::pin(self.clone().follow(move |router| {
            let txn = txn.clone();
            async move { router.write(txn).await }
        }))
    }

    fn read(&self, path: String, target: ReadTarget) -> BoxFuture<Outcome> {
        Box::pin(self.clone().follow(move |router| {
            let (path, target) = (path.clone(), target.clone());
            async move { router.read(path, target).await }
        }))
    }

    /// Any replica serves a subscription: the hinted one (this gateway's own server unless
    /// a request learnt of a leader elsewhere).
    fn subscribe(
        &self,
        path: String,
        from: Option<u64>,
        sink: flume::Sender<Push>,
    ) -> BoxFuture<Outcome> {
        let server = self.hint.load(Ordering::Relaxed);
        let router = self.routers.get(&server).cloned();
        Box::pin(async move {
            match router {
                Some(router) => router.subscribe(path, from, sink).await,
                None => Err(ReplyError::Unavailable {
                    reason: "no server in this process".into(),
                }),
            }
        })
    }
}
