//! The WebSocket gateway's view of the servers (`treesync_net::gateway::Backend`).
//!
//! `Router` serves one server's shards: a request for a shard led elsewhere is answered
//! `NotLeader` (the gateway tells the client which server leads). `LocalCluster` holds every
//! server of this process (`treesync local`) and forwards to whichever leads the shard, so a
//! client may talk to any of them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use treesync_core::api::{Outcome, ReplyError};
use treesync_core::replica::ReadTarget;
use treesync_core::Txn;
use treesync_net::gateway::{Backend, BoxFuture, Push};

use super::Router;

impl Backend for Router {
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
