//! One server's transaction host (`treesync_core::txn::host::TxnHost`: planning, parallel
//! commits, waits, pushes and recovery) as a task on core 0's executor. Its requests go to
//! the shards' leaders through a `ShardRoute` (this server's cores through their mailboxes;
//! in `treesync local`, every server of the process); their answers and a tick come back
//! to it through its mailbox.
//!
//! Runs on: core 0's glommio executor. Sent to by: the gateway backends (`transact`,
//! `push`, `after`), its own request tasks (answers) and its ticker.
//!
//! # Invariants
//! - Every `transact` is answered (the host answers every `Begin`; a host that stopped
//!   answers nothing and the caller sees `Unavailable`).
//! - The mailbox is bounded (`HOST_MAILBOX_MAX`): senders wait when it is full.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use treesync_core::api::{Outcome, ReplyError};
use treesync_core::hlc::Hlc;
use treesync_core::replica::ReadTarget;
use treesync_core::txn::host::{HostCommand, HostInput, Request, TxnHost};
use treesync_core::txn::TxnMeta;
use treesync_core::Txn;
use treesync_net::gateway::BoxFuture;

use crate::SystemClock;

/// Mailbox depth of a host.
pub const HOST_MAILBOX_MAX: usize = 4096;

/// Where a host's requests go: the leader of a shard (following hints as needed).
pub trait ShardRoute: Send + Sync + 'static {
    fn call(&self, shard: u32, request: Request) -> BoxFuture<Outcome>;
}

/// What a host's mailbox carries (see `HostHandle`).
pub enum HostMsg {
    Begin {
        txn: Txn,
        reply: flume::Sender<Outcome>,
    },
    Push {
        holder: TxnMeta,
        shard: u32,
    },
    /// Answer `reply` after `ticks` ticks (a timer for callers off glommio).
    After {
        ticks: u64,
        reply: flume::Sender<()>,
    },
    Route(Arc<dyn ShardRoute>),
    Answer {
        request: u64,
        outcome: Outcome,
    },
    Tick,
}

/// A handle to a running host (cloneable; usable from any thread).
#[derive(Clone)]
pub struct HostHandle {
    inbox: flume::Sender<HostMsg>,
}

fn stopped() -> ReplyError {
    ReplyError::Unavailable {
        reason: "this server's transaction host has stopped".into(),
    }
}

impl HostHandle {
    /// Runs `txn` (any shards) and answers as the host does.
    pub async fn transact(&self, txn: Txn) -> Outcome {
        let (reply, answer) = flume::bounded(1);
        if self
            .inbox
            .send_async(HostMsg::Begin { txn, reply })
            .await
            .is_err()
        {
            return Err(stopped());
        }
        answer.recv_async().await.unwrap_or_else(|_| Err(stopped()))
    }

    /// A request met `holder`'s intent on `shard`: let the host push it.
    pub fn push(&self, holder: TxnMeta, shard: u32) {
        // Best effort: a full mailbox means the host is busy pushing already.
        let _ = self.inbox.try_send(HostMsg::Push { holder, shard });
    }

    /// Resolves after `ticks` of the host's ticks.
    pub async fn after(&self, ticks: u64) {
        let (reply, done) = flume::bounded(1);
        if self
            .inbox
            .send_async(HostMsg::After { ticks, reply })
            .await
            .is_ok()
        {
            let _ = done.recv_async().await; // a stopped host ends the wait too
        }
    }

    /// Sets where requests go (before it, the host holds every request it gets).
    pub fn set_route(&self, route: Arc<dyn ShardRoute>) {
        let _ = self.inbox.send(HostMsg::Route(route)); // a stopped host needs no route
    }
}

/// A host's mailbox, and the handle to it.
pub fn mailbox() -> (HostHandle, flume::Receiver<HostMsg>, flume::Sender<HostMsg>) {
    let (tx, rx) = flume::bounded(HOST_MAILBOX_MAX);
    (HostHandle { inbox: tx.clone() }, rx, tx)
}

/// The host's task: waits for a route, then serves its mailbox until every handle is gone.
pub async fn run(
    mut host: TxnHost,
    inbox: flume::Receiver<HostMsg>,
    me: flume::Sender<HostMsg>,
    hlc: Arc<Hlc<SystemClock>>,
    tick: Duration,
) {
    let ticker = me.clone();
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(tick).await;
            if ticker.send_async(HostMsg::Tick).await.is_err() {
                return;
            }
        }
    })
    .detach();
    let mut route: Option<Arc<dyn ShardRoute>> = None;
    let mut held = Vec::new();
    let mut replies: BTreeMap<u64, flume::Sender<Outcome>> = BTreeMap::new();
    let mut timers: Vec<(u64, flume::Sender<()>)> = Vec::new();
    let (mut next_ticket, mut ticks) = (0u64, 0u64);
    while let Ok(msg) = inbox.recv_async().await {
        let mut out = Vec::new();
        match msg {
            HostMsg::Route(r) => {
                route = Some(r);
                out.append(&mut held);
            }
            HostMsg::Begin { txn, reply } => {
                next_ticket += 1;
                replies.insert(next_ticket, reply);
                let input = HostInput::Begin {
                    ticket: next_ticket,
                    txn,
                    now: hlc.now(),
                };
                host.step(input, &mut out);
            }
            HostMsg::Push { holder, shard } => {
                host.step(HostInput::Push { holder, shard }, &mut out)
            }
            HostMsg::After { ticks: wait, reply } => timers.push((ticks + wait, reply)),
            HostMsg::Answer { request, outcome } => {
                host.step(HostInput::Answer { request, outcome }, &mut out)
            }
            HostMsg::Tick => {
                ticks += 1;
                host.step(HostInput::Tick { now: hlc.now() }, &mut out);
                timers.retain(|(due, reply)| {
                    let fire = *due <= ticks;
                    if fire {
                        let _ = reply.try_send(()); // the waiter may have gone
                    }
                    !fire
                });
            }
        }
        for command in out {
            match command {
                HostCommand::Reply { ticket, outcome } => {
                    if let Some(reply) = replies.remove(&ticket) {
                        let _ = reply.try_send(outcome); // the client may have gone
                    }
                }
                HostCommand::Request {
                    request,
                    shard,
                    what,
                } => match &route {
                    None => held.push(HostCommand::Request {
                        request,
                        shard,
                        what,
                    }),
                    Some(route) => {
                        let (route, me) = (route.clone(), me.clone());
                        glommio::spawn_local(async move {
                            let outcome = route.call(shard, what).await;
                            let _ = me.send_async(HostMsg::Answer { request, outcome }).await;
                        })
                        .detach();
                    }
                },
            }
        }
    }
}

/// The subtree read a host's planner asks for.
pub fn planner_read() -> ReadTarget {
    ReadTarget::Subtree
}
