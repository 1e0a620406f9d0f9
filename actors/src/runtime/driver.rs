//! What one core's loop does with each input and each command of its engine: routing
//! answers and pushes to their requesters, merging peers' clocks, refusing clients while
//! this server's clock is beyond the max offset (DESIGN.md, "Time").
//!
//! # Invariants
//! - Every peer message goes through `Hlc::update` before the engine sees it; one whose
//!   timestamp is beyond the max offset ahead is dropped (never adopted), as Raft tolerates.
//! - Client requests and peer messages are drained alternately, at most `DRAIN_MAX` of each
//!   per wake-up, so sustained client load never leaves heartbeats unread (defect 11).

use std::collections::BTreeMap;

use treesync_core::clock_offset::ClockOffsets;
use treesync_core::engine::{Answer, Commands, Engine, Input, Outcome, SubId, Token};
use treesync_core::hlc::{Hlc, Timestamp};
use treesync_core::replica::ReplyError;
use treesync_net::client_proto::Response;
use treesync_net::gateway::Push;
use treesync_net::peer::{InboundBatch, Transport};

use super::CoreMsg;
use crate::SystemClock;

/// Most client messages, and separately most peer batches, taken per wake-up.
pub const DRAIN_MAX: usize = 256;

/// One core's engine and everything around it that is not I/O.
pub struct Driver {
    pub engine: Engine,
    hlc: std::sync::Arc<Hlc<SystemClock>>,
    offsets: ClockOffsets,
    replies: BTreeMap<Token, flume::Sender<Response>>,
    sinks: BTreeMap<SubId, flume::Sender<Push>>,
    next_token: u64,
}

impl Driver {
    pub fn new(
        engine: Engine,
        hlc: std::sync::Arc<Hlc<SystemClock>>,
        offsets: ClockOffsets,
    ) -> Driver {
        Driver {
            engine,
            hlc,
            offsets,
            replies: BTreeMap::new(),
            sinks: BTreeMap::new(),
            next_token: 0,
        }
    }

    /// Feeds whatever is pending, alternating between the two sources.
    pub fn drain(
        &mut self,
        inbox: &flume::Receiver<CoreMsg>,
        peers: &flume::Receiver<InboundBatch>,
        commands: &mut Commands,
    ) {
        for _ in 0..DRAIN_MAX {
            let client = inbox.try_recv().ok();
            let peer = peers.try_recv().ok();
            if client.is_none() && peer.is_none() {
                return;
            }
            if let Some(batch) = peer {
                self.peer(batch, commands);
            }
            if let Some(msg) = client {
                self.client(msg, commands);
            }
        }
    }

    /// Raft messages from peers, each merged into our clock first.
    pub fn peer(&mut self, batch: InboundBatch, commands: &mut Commands) {
        for inbound in batch {
            let sent = Timestamp::from_u64(inbound.sent_hlc);
            let local_ms = self.hlc.clock_now_ms();
            self.offsets
                .observe(inbound.message.from, sent.wall_ms(), local_ms);
            if let Err(error) = self.hlc.update(sent) {
                tracing::warn!(from = inbound.message.from, %error, "peer message dropped");
                continue;
            }
            let (shard, message) = (inbound.shard, Box::new(inbound.message));
            self.engine.step(Input::Peer { shard, message }, commands);
        }
    }

    /// One mailbox message.
    pub fn client(&mut self, msg: CoreMsg, commands: &mut Commands) {
        self.next_token += 1;
        let token = self.next_token;
        if let CoreMsg::Status { reply } = msg {
            // Best effort, as every reply: the requester may have gone.
            let _ = reply.try_send(Response::Status(self.engine.status()));
            return;
        }
        let input = match msg {
            CoreMsg::Propose { shard, txn, reply } => {
                self.replies.insert(token, reply);
                let hlc = self.hlc.now();
                Input::Propose {
                    token,
                    shard,
                    txn,
                    hlc,
                }
            }
            CoreMsg::Read {
                shard,
                path,
                target,
                reply,
            } => {
                self.replies.insert(token, reply);
                Input::Read {
                    token,
                    shard,
                    path,
                    target,
                }
            }
            CoreMsg::Subscribe {
                shard,
                path,
                from,
                sink,
                reply,
            } => {
                self.replies.insert(token, reply);
                let room = sink.capacity().unwrap_or(usize::MAX) / 2;
                self.sinks.insert(token, sink);
                Input::Subscribe {
                    token,
                    shard,
                    path,
                    from,
                    sub: token,
                    room,
                }
            }
            CoreMsg::Status { .. } => unreachable!("answered above"),
        };
        if !self.offsets.may_serve() {
            let members = self.offsets.members();
            let beyond = members - self.offsets.within();
            self.sinks.remove(&token);
            commands
                .replies
                .push((token, Err(ReplyError::ClockOffset { beyond, members })));
            return;
        }
        self.engine.step(input, commands);
    }

    /// Executes a step's commands except the WAL batch: messages first (a leader's appends
    /// leave before its own fsync), then replies and pushes.
    pub fn execute(&mut self, commands: &mut Commands, transport: &mut Transport) {
        if !commands.messages.is_empty() {
            let stamp = self.hlc.now().as_u64();
            for (shard, message) in commands.messages.drain(..) {
                transport.send(shard, &message, stamp);
            }
            transport.flush();
        }
        for (token, outcome) in commands.replies.drain(..) {
            if let Some(reply) = self.replies.remove(&token) {
                // The client may have disconnected; its answer is simply dropped.
                let _ = reply.try_send(response_of(outcome));
            }
        }
        let mut gone = Vec::new();
        for (sub, push) in commands.pushes.drain(..) {
            let Some(sink) = self.sinks.get(&sub) else {
                continue; // dropped earlier in this batch of pushes
            };
            if sink.try_send(push).is_err() {
                // Full or gone: dropping the sink tells the session to resume from its position.
                self.sinks.remove(&sub);
                gone.push(sub);
            }
        }
        for sub in gone {
            let mut more = Commands::default();
            self.engine.step(Input::Unsubscribe { sub }, &mut more);
            assert!(more.is_empty(), "unsubscribing produces nothing");
        }
    }
}

/// The byte edge's view of an engine outcome.
fn response_of(outcome: Outcome) -> Response {
    match outcome {
        Ok(Answer::Written { index, term, hlc }) => Response::Written {
            index,
            term,
            hlc: hlc.as_u64(),
        },
        Ok(Answer::Value(value)) => Response::Value(value),
        Ok(Answer::Subscribed) => Response::Value(None),
        Err(ReplyError::NotLeader { leader }) => Response::NotLeader { leader },
        Err(error) => Response::rejected(error.code(), error.to_string()),
    }
}
