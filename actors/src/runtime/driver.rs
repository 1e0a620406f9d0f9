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
use treesync_core::engine::{Commands, Engine, Input, Outcome, SubId, Subscription, Token};
use treesync_core::hlc::{Hlc, Timestamp};
use treesync_core::replica::ReplyError;
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
    replies: BTreeMap<Token, flume::Sender<Outcome>>,
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
            let _ = reply.try_send(self.engine.status());
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
            CoreMsg::Step { shard, step, reply } => {
                self.replies.insert(token, reply);
                let hlc = self.hlc.now();
                Input::Step {
                    token,
                    shard,
                    step,
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
                Input::Subscribe(Subscription {
                    token,
                    shard,
                    path,
                    from,
                    sub: token,
                    room,
                })
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
        self.execute_replies(commands);
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

impl Driver {
    /// Delivers a step's replies to their requesters.
    fn execute_replies(&mut self, commands: &mut Commands) {
        for (token, outcome) in commands.replies.drain(..) {
            if let Some(reply) = self.replies.remove(&token) {
                // The client may have disconnected; its answer is simply dropped.
                let _ = reply.try_send(outcome);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::prelude::{Message, MessageType};
    use raft::storage::MemStorage;
    use treesync_core::engine::{EngineConfig, REQUEST_TICKS_DEFAULT, RESOLVED_EVERY_TICKS};
    use treesync_core::hlc::MAX_OFFSET_MS_DEFAULT;
    use treesync_core::replica::{ReadTarget, ReplicaConfig};
    use treesync_net::peer::Inbound;

    fn driver() -> Driver {
        let config = EngineConfig {
            shards: vec![0],
            replica: ReplicaConfig::new(1, vec![1, 2, 3]),
            request_ticks_max: REQUEST_TICKS_DEFAULT,
            resolved_every_ticks: RESOLVED_EVERY_TICKS,
            inject_resolved_before_change: false,
        };
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let engine = Engine::new(config, |_| (MemStorage::new(), None), &logger);
        let hlc = std::sync::Arc::new(Hlc::new(SystemClock, MAX_OFFSET_MS_DEFAULT));
        Driver::new(engine, hlc, ClockOffsets::new(MAX_OFFSET_MS_DEFAULT, 3))
    }

    fn heartbeat(hlc: u64) -> InboundBatch {
        let mut message = Message::default();
        message.set_msg_type(MessageType::MsgHeartbeat);
        (message.from, message.to, message.term) = (2, 1, 1);
        vec![Inbound {
            shard: 0,
            sent_hlc: hlc,
            message,
        }]
    }

    #[test]
    fn peer_messages_are_not_starved_by_a_full_client_mailbox() {
        let mut driver = driver();
        let (inbox_tx, inbox) = flume::unbounded();
        let (peer_tx, peers) = flume::unbounded();
        let (reply, _answers) = flume::unbounded();
        for _ in 0..3 * DRAIN_MAX {
            let target = ReadTarget::Prop("x".into());
            let read = CoreMsg::Read {
                shard: 0,
                path: "/root".into(),
                target,
                reply: reply.clone(),
            };
            inbox_tx.send(read).expect("open");
        }
        let now = driver.hlc.now().as_u64();
        peer_tx.send(heartbeat(now)).expect("open");
        let mut commands = Commands::default();
        driver.drain(&inbox, &peers, &mut commands);
        assert!(
            peers.is_empty(),
            "the heartbeat was taken in the same wake-up"
        );
        assert_eq!(
            inbox.len(),
            2 * DRAIN_MAX,
            "client input is bounded per wake-up"
        );
        assert_eq!(driver.engine.replica(0).expect("shard 0").leader(), Some(2));
    }

    #[test]
    fn a_peer_message_beyond_the_max_offset_is_dropped_and_clients_are_refused() {
        let mut driver = driver();
        let ahead = Timestamp::new(driver.hlc.clock_now_ms() + 10 * MAX_OFFSET_MS_DEFAULT, 0);
        let mut commands = Commands::default();
        driver.peer(heartbeat(ahead.as_u64()), &mut commands);
        assert_eq!(
            driver.engine.replica(0).expect("shard 0").leader(),
            None,
            "not adopted"
        );
        assert!(driver.hlc.last() < ahead, "the clock did not jump");
        // One peer beyond is not yet a majority; the second makes this server stop serving.
        let mut other = heartbeat(ahead.as_u64());
        other[0].message.from = 3;
        driver.peer(other, &mut commands);
        let (reply, answers) = flume::unbounded();
        let target = ReadTarget::Prop("x".into());
        driver.client(
            CoreMsg::Read {
                shard: 0,
                path: "/root".into(),
                target,
                reply,
            },
            &mut commands,
        );
        driver.execute_replies(&mut commands);
        match answers.try_recv() {
            Ok(Err(
                error @ ReplyError::ClockOffset {
                    beyond: 2,
                    members: 3,
                },
            )) => {
                assert_eq!(error.code(), "unavailable");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}
