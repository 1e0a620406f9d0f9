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
use treesync_core::forward;
use treesync_core::hlc::{Hlc, Timestamp};
use treesync_core::replica::ReplyError;
use treesync_core::txn::host::Request;
use treesync_net::gateway::Push;
use treesync_net::peer::{Forwarded, InboundBatch, Transport};

use super::router::lost;
use super::CoreMsg;
use crate::SystemClock;

/// Most client messages, and separately most peer batches, taken per wake-up.
pub const DRAIN_MAX: usize = 256;
/// Ticks a forwarded request waits for its answer from the leader's server before it is
/// answered `UnknownOutcome` (a write) or `Unavailable` (a read): 3 s at 10 ms ticks.
pub const FORWARD_TICKS_MAX: u64 = 300;

/// Forward message kinds (first byte), then a request id (u64), then the payload.
const FORWARD_REQUEST: u8 = 0;
const FORWARD_REPLY: u8 = 1;
/// Side promises of the sender's idle shard leaders on this core (`replica::side`); the
/// request id is unused (zero).
const SIDE_PROMISES: u8 = 2;

/// Where an answer goes.
enum ReplyTo {
    Local(flume::Sender<Outcome>),
    /// A request a peer forwarded: answer over the transport.
    Remote {
        peer: u64,
        request: u64,
    },
}

/// A request this core forwarded and waits on.
struct Awaited {
    reply: flume::Sender<Outcome>,
    issued_tick: u64,
    write: bool,
}

/// One core's engine and everything around it that is not I/O.
pub struct Driver {
    pub engine: Engine,
    hlc: std::sync::Arc<Hlc<SystemClock>>,
    offsets: ClockOffsets,
    replies: BTreeMap<Token, ReplyTo>,
    sinks: BTreeMap<SubId, flume::Sender<Push>>,
    next_token: u64,
    /// Requests forwarded to other servers, by request id.
    awaited: BTreeMap<u64, Awaited>,
    /// Forward messages to send at the next `execute`: (peer, bytes).
    forward_out: Vec<(u64, Vec<u8>)>,
    ticks: u64,
    /// This server's transaction host: pushes the transactions of stuck intents.
    host: Option<super::txn_host::HostHandle>,
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
            awaited: BTreeMap::new(),
            forward_out: Vec::new(),
            ticks: 0,
            host: None,
        }
    }

    /// The host that pushes transactions whose intents hold a resolved timestamp back
    /// (`Commands::stuck_intents`); without one they wait for a conflicting request.
    pub fn with_host(mut self, host: super::txn_host::HostHandle) -> Driver {
        self.host = Some(host);
        self
    }

    /// Hands each stuck intent's transaction to the host to push, at the holder's anchor
    /// (where its record is), as a request that met the intent would.
    fn push_stuck_intents(&mut self, commands: &mut Commands) {
        for (_, holder) in commands.stuck_intents.drain(..) {
            tracing::debug!(txn = %holder.id, "pushing a transaction whose intents hold resolved back");
            if let Some(host) = &self.host {
                host.push(holder, holder.anchor);
            }
        }
    }

    /// A forwarded request or answer from a peer, merged into our clock first.
    pub fn forwarded(&mut self, forwarded: Forwarded, commands: &mut Commands) {
        if let Err(error) = self.hlc.update(Timestamp::from_u64(forwarded.sent_hlc)) {
            tracing::warn!(from = forwarded.from, %error, "forwarded message dropped");
            return;
        }
        let bytes = &forwarded.bytes;
        let (Some(kind), Some(id)) = (bytes.first(), bytes.get(1..9)) else {
            return tracing::warn!(from = forwarded.from, "a short forward message: dropped");
        };
        let request = u64::from_le_bytes(id.try_into().expect("8 bytes"));
        let payload = &bytes[9..];
        match *kind {
            FORWARD_REQUEST => match forward::decode_request(payload) {
                Ok((shard, what)) => {
                    let to = ReplyTo::Remote {
                        peer: forwarded.from,
                        request,
                    };
                    self.serve_forwarded(shard, what, to, commands);
                }
                Err(error) => tracing::warn!(from = forwarded.from, %error, "bad forward: dropped"),
            },
            FORWARD_REPLY => match (
                forward::decode_outcome(payload),
                self.awaited.remove(&request),
            ) {
                (Ok(outcome), Some(awaited)) => {
                    let _ = awaited.reply.try_send(outcome); // the requester may have gone
                }
                (Err(error), Some(awaited)) => {
                    tracing::warn!(from = forwarded.from, %error, "bad forwarded answer");
                    let _ = awaited.reply.try_send(Err(lost(awaited.write)));
                }
                (_, None) => {} // answered already (expired)
            },
            SIDE_PROMISES => match treesync_core::replica::decode_promises(payload) {
                Ok(promises) => {
                    let from = forwarded.from;
                    self.engine
                        .step(Input::SidePromises { from, promises }, commands);
                }
                Err(error) => tracing::warn!(from = forwarded.from, %error, "bad side promises"),
            },
            other => tracing::warn!(from = forwarded.from, kind = other, "unknown forward kind"),
        }
    }

    /// Runs a peer's forwarded request on this core's engine.
    fn serve_forwarded(&mut self, shard: u32, what: Request, to: ReplyTo, commands: &mut Commands) {
        self.next_token += 1;
        let token = self.next_token;
        self.replies.insert(token, to);
        let input = what.into_input(token, shard, self.hlc.now());
        self.serve(token, input, commands);
    }

    /// This server's clock now.
    pub fn clock(&self) -> Timestamp {
        self.hlc.now()
    }

    /// Answers forwarded requests whose answer did not come in time.
    pub fn tick(&mut self) {
        self.ticks += 1;
        let cutoff = self.ticks.saturating_sub(FORWARD_TICKS_MAX);
        let expired: Vec<u64> = self
            .awaited
            .iter()
            .filter(|(_, a)| a.issued_tick < cutoff)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let awaited = self.awaited.remove(&id).expect("listed");
            let _ = awaited.reply.try_send(Err(lost(awaited.write))); // may have gone
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
        if let CoreMsg::Forward {
            to,
            shard,
            request,
            reply,
        } = msg
        {
            let write = !matches!(request, Request::Read { .. });
            self.awaited.insert(
                token,
                Awaited {
                    reply,
                    issued_tick: self.ticks,
                    write,
                },
            );
            let mut bytes = vec![FORWARD_REQUEST];
            bytes.extend_from_slice(&token.to_le_bytes());
            bytes.extend_from_slice(&forward::encode_request(shard, &request));
            self.forward_out.push((to, bytes));
            return;
        }
        let input = match msg {
            CoreMsg::Propose { shard, txn, reply } => {
                self.replies.insert(token, ReplyTo::Local(reply));
                let hlc = self.hlc.now();
                Input::Propose {
                    token,
                    shard,
                    txn,
                    hlc,
                }
            }
            CoreMsg::Step { shard, step, reply } => {
                self.replies.insert(token, ReplyTo::Local(reply));
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
                self.replies.insert(token, ReplyTo::Local(reply));
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
                self.replies.insert(token, ReplyTo::Local(reply));
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
            CoreMsg::Status { .. } | CoreMsg::Forward { .. } => unreachable!("handled above"),
        };
        self.serve(token, input, commands);
    }

    /// Steps the engine with a request, unless this server's clock is beyond the max offset.
    fn serve(&mut self, token: Token, input: Input, commands: &mut Commands) {
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
        let stamp = self.hlc.now().as_u64();
        for (shard, message) in commands.messages.drain(..) {
            transport.send(shard, &message, stamp);
        }
        for (peer, promises) in commands.side_promises.drain(..) {
            self.forward_out
                .push((peer, side_promises_message(&promises)));
        }
        // Answers to forwarded requests travel back over the transport too.
        self.execute_replies(commands);
        for (peer, bytes) in self.forward_out.drain(..) {
            transport.send_forward(peer, &bytes, stamp);
        }
        transport.flush();
        self.push_stuck_intents(commands);
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

/// The forward message that carries one peer's side promises (the request id is unused).
fn side_promises_message(promises: &[treesync_core::replica::SidePromise]) -> Vec<u8> {
    let mut bytes = vec![SIDE_PROMISES];
    bytes.extend_from_slice(&0u64.to_le_bytes());
    bytes.extend_from_slice(&treesync_core::replica::encode_promises(promises));
    bytes
}

impl Driver {
    /// Delivers a step's replies to their requesters.
    fn execute_replies(&mut self, commands: &mut Commands) {
        for (token, outcome) in commands.replies.drain(..) {
            match self.replies.remove(&token) {
                // The client may have disconnected; its answer is simply dropped.
                Some(ReplyTo::Local(reply)) => drop(reply.try_send(outcome)),
                Some(ReplyTo::Remote { peer, request }) => {
                    let mut bytes = vec![FORWARD_REPLY];
                    bytes.extend_from_slice(&request.to_le_bytes());
                    bytes.extend_from_slice(&forward::encode_outcome(&outcome));
                    self.forward_out.push((peer, bytes));
                }
                None => {}
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
            inject_resolved_ignores_intents: false,
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
    fn a_peers_side_promises_reach_the_replicas_and_a_torn_message_changes_nothing() {
        use treesync_core::replica::{SideClose, SidePromise};
        let mut driver = driver();
        let closed = Timestamp::new(5_000, 0);
        let promise = SidePromise {
            shard: 0,
            promise: SideClose {
                term: 0,
                index: 0,
                closed,
            },
        };
        let sent_hlc = driver.clock().as_u64();
        let mut torn = side_promises_message(&[promise]);
        torn.pop();
        let mut commands = Commands::default();
        let forwarded = |bytes| Forwarded {
            from: 2,
            sent_hlc,
            bytes,
        };
        driver.forwarded(forwarded(torn), &mut commands);
        let replica = |d: &Driver| d.engine.replica(0).expect("shard 0").closed_ts();
        assert_eq!(
            replica(&driver),
            Timestamp::ZERO,
            "a torn message is dropped"
        );
        driver.forwarded(forwarded(side_promises_message(&[promise])), &mut commands);
        assert_eq!(replica(&driver), closed, "the follower adopted it");
        assert!(commands.is_empty());
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

    #[test]
    fn a_stuck_intent_is_handed_to_the_host_at_its_anchor() {
        let (host, inbox, _) = super::super::txn_host::mailbox();
        let mut driver = driver().with_host(host);
        let holder = treesync_core::txn::TxnMeta {
            id: treesync_core::txn::TxnId { node: 2, seq: 7 },
            ts: Timestamp::new(1_000, 0),
            anchor: 3,
        };
        let mut commands = Commands::default();
        commands.stuck_intents.push((0, holder));
        driver.push_stuck_intents(&mut commands);
        assert!(commands.stuck_intents.is_empty(), "handed on once");
        match inbox.try_recv() {
            Ok(super::super::txn_host::HostMsg::Push {
                holder: pushed,
                shard,
            }) => {
                assert_eq!((pushed, shard), (holder, 3), "pushed at its record's shard");
            }
            _ => panic!("the host was not asked to push"),
        }
    }
}
