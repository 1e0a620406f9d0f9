//! Server↔server transport of Raft messages.
//!
//! Each core of each server listens on `peer_addr.port + core` and keeps one outbound
//! connection per peer to the same core there (shard `s` lives on core `s mod cores`
//! everywhere, so a shard's messages always travel between matching cores). Messages produced
//! while a core handles one wake-up are buffered per destination and written with one
//! `write_all` per destination (`flush`).
//!
//! # Invariants
//! - Every queue is bounded (`OUTBOUND_BATCHES_MAX`); when a peer is slow or down, batches
//!   are dropped, which Raft tolerates as message loss. Memory never grows without bound.
//! - A malformed frame closes the connection; the peer reconnects.
//! - Every message carries the sender's HLC reading (the receiver merges it with `update`:
//!   DESIGN.md, "Time"). A message larger than `CHUNK_BYTES` (a snapshot) travels as several
//!   frames of at most `CHUNK_BYTES`, all but the last tagged `MORE`, reassembled up to
//!   `MESSAGE_BYTES_MAX`: no message is too large for the frame limit, and none is dropped
//!   for its size below that bound (a follower far behind used to never catch up).
//! - An `accept` error never stops the listener unless the listening socket itself is
//!   unusable (`accept_action`): it is logged and, after a bounded pause, accepting resumes
//!   (defect 10: one EMFILE or ECONNABORTED used to cut the server off from its peers for
//!   good, while its own outbound connections kept it looking alive).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::GlommioError;
use protobuf::Message as _;
use raft::prelude::Message;

use crate::frame::{parse_header, push_frame, HEADER_BYTES};

mod handshake;
use handshake::CHALLENGE_BYTES;
pub use handshake::{nonce as handshake_nonce, HandshakeError, PeerAuth, HANDSHAKE_TAG};

/// Batches queued per peer before new ones are dropped.
pub const OUTBOUND_BATCHES_MAX: usize = 1024;
const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(20);
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_millis(500);
/// Pause after running out of file descriptors or buffers: they come back only when some
/// connection closes, so retrying at once would spin and flood the log, while the waiting
/// peer sits in the listen backlog. Short against Raft's election timeout.
const ACCEPT_BACKOFF_EXHAUSTED: Duration = Duration::from_millis(100);
/// Pause after any other failure: a connection that died in the backlog (ECONNABORTED)
/// says nothing about the next one, but an unknown error might repeat, so never spin.
const ACCEPT_BACKOFF_OTHER: Duration = Duration::from_millis(10);
// Bounded both ways: never a spin, and a peer is unheard for far less than an election.
const _: () = assert!(ACCEPT_BACKOFF_OTHER.as_millis() >= 10);
const _: () = assert!(ACCEPT_BACKOFF_OTHER.as_millis() <= ACCEPT_BACKOFF_EXHAUSTED.as_millis());
const _: () = assert!(ACCEPT_BACKOFF_EXHAUSTED.as_millis() <= 100);

// Linux errno values (glommio runs only on Linux; `std::io::ErrorKind` has no stable kind
// for these, and `net` does not depend on libc for a handful of constants).
const EBADF: i32 = 9;
const ENOMEM: i32 = 12;
const EINVAL: i32 = 22;
const ENFILE: i32 = 23;
const EMFILE: i32 = 24;
const ENOTSOCK: i32 = 88;
const ENOBUFS: i32 = 105;

/// Inbound peer connections per core at a time (a cluster needs one per peer).
pub const INBOUND_CONNECTIONS_MAX: usize = 64;
/// How long a new connection has to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// Bodies per frame; larger messages are split (`MORE`).
pub const CHUNK_BYTES: usize = 1024 * 1024;
/// Largest reassembled message; beyond it the connection is closed as misbehaving.
pub const MESSAGE_BYTES_MAX: usize = 1024 * 1024 * 1024;
/// Tag bit of a frame that more frames of the same message follow.
pub const MORE: u32 = 1 << 31;
/// Bytes of the sender's HLC reading before each message.
const HLC_BYTES: usize = 8;
const _: () = assert!(CHUNK_BYTES <= crate::frame::FRAME_BYTES_MAX as usize);

/// One Raft message for a shard, with the sender's HLC reading when it was sent.
#[derive(Clone, Debug, PartialEq)]
pub struct Inbound {
    pub shard: u32,
    pub sent_hlc: u64,
    pub message: Message,
}

/// Raft messages, as received from one connection read.
pub type InboundBatch = Vec<Inbound>;

/// The frame tag of a forwarded request or its answer (opaque bytes here: `core::forward`
/// encodes them). Shard ids stay below it.
pub const FORWARD_TAG: u32 = HANDSHAKE_TAG - 1;

/// A forwarded request or answer from peer `from` (the connection's authenticated peer),
/// with the sender's HLC reading.
#[derive(Clone, Debug, PartialEq)]
pub struct Forwarded {
    pub from: u64,
    pub sent_hlc: u64,
    pub bytes: Vec<u8>,
}

/// What one message of a peer connection is.
#[derive(Clone, Debug, PartialEq)]
pub enum Received {
    Raft(Inbound),
    Forward { sent_hlc: u64, bytes: Vec<u8> },
}

/// The address core `core` of the server at `base` listens on.
pub fn core_addr(base: SocketAddr, core: usize) -> SocketAddr {
    let port = base
        .port()
        .checked_add(u16::try_from(core).expect("cores fit u16"))
        .expect("port in range");
    SocketAddr::new(base.ip(), port)
}

/// One core's end of the transport. Lives on that core's executor.
pub struct Transport {
    outbound: BTreeMap<u64, flume::Sender<Vec<u8>>>,
    pending: BTreeMap<u64, Vec<u8>>,
    pub dropped_batches: u64,
}

impl Transport {
    /// Listens for peers on this core's port and starts one sender task per peer.
    /// Inbound messages go to `inbound`.
    pub fn start(
        auth: PeerAuth,
        peers: &BTreeMap<u64, SocketAddr>,
        inbound: flume::Sender<InboundBatch>,
        forwards: flume::Sender<Forwarded>,
    ) -> std::io::Result<Transport> {
        let (my_id, core) = (auth.me, auth.core as usize);
        let listen = core_addr(peers[&my_id], core);
        let listener = TcpListener::bind(listen)
            .map_err(|e| std::io::Error::other(format!("{listen}: {e}")))?;
        let sinks = Sinks { inbound, forwards };
        glommio::spawn_local(accept_loop(listener, sinks, auth.clone())).detach();
        let mut outbound = BTreeMap::new();
        for (id, addr) in peers.iter().filter(|(id, _)| **id != my_id) {
            let (tx, rx) = flume::bounded(OUTBOUND_BATCHES_MAX);
            let link = Link {
                addr: core_addr(*addr, core),
                to: *id,
                auth: auth.clone(),
            };
            glommio::spawn_local(send_loop(link, rx)).detach();
            outbound.insert(*id, tx);
        }
        Ok(Transport {
            outbound,
            pending: BTreeMap::new(),
            dropped_batches: 0,
        })
    }

    /// Buffers a message for its destination (sent at the next `flush`), stamped with
    /// `sent_hlc`, this server's HLC reading.
    /// Buffers forwarded bytes for peer `to` (sent at the next `flush`); unknown peers and
    /// oversized messages are dropped, which the forwarder sees as a lost answer.
    pub fn send_forward(&mut self, to: u64, bytes: &[u8], sent_hlc: u64) {
        if !self.outbound.contains_key(&to) || bytes.len() + HLC_BYTES > MESSAGE_BYTES_MAX {
            return;
        }
        let mut body = Vec::with_capacity(HLC_BYTES + bytes.len());
        body.extend_from_slice(&sent_hlc.to_le_bytes());
        body.extend_from_slice(bytes);
        push_chunks(self.pending.entry(to).or_default(), FORWARD_TAG, &body);
    }

    pub fn send(&mut self, shard: u32, message: &Message, sent_hlc: u64) {
        assert!(
            shard < FORWARD_TAG,
            "shard ids stay below the forward and handshake tags"
        );
        if !self.outbound.contains_key(&message.to) {
            return; // not a peer of ours: dropped like a lost message
        }
        let mut body = sent_hlc.to_le_bytes().to_vec();
        message
            .write_to_vec(&mut body)
            .expect("encoding a Raft message to memory");
        if body.len() > MESSAGE_BYTES_MAX {
            // The receiver would refuse it; Raft sees a lost message (the operator must act).
            tracing::error!(
                shard,
                to = message.to,
                bytes = body.len(),
                "raft message too large"
            );
            return;
        }
        push_chunks(self.pending.entry(message.to).or_default(), shard, &body);
    }

    /// Hands each destination its batch (one write per destination).
    pub fn flush(&mut self) {
        for (peer, batch) in std::mem::take(&mut self.pending) {
            if self.outbound[&peer].try_send(batch).is_err() {
                self.dropped_batches += 1;
            }
        }
    }
}

/// Where a send loop connects and how it proves itself there.
struct Link {
    addr: SocketAddr,
    to: u64,
    auth: PeerAuth,
}

/// Connects to `link` and answers its challenge with a hello.
async fn connect(link: &Link) -> std::io::Result<TcpStream> {
    let mut stream = TcpStream::connect(link.addr).await?;
    let (tag, challenge) = within(HANDSHAKE_TIMEOUT, read_frame(&mut stream)).await?;
    let challenge = <[u8; CHALLENGE_BYTES]>::try_from(challenge.as_slice())
        .ok()
        .filter(|_| tag == HANDSHAKE_TAG)
        .ok_or_else(|| std::io::Error::other("a peer sent no challenge"))?;
    let hello = link.auth.hello(link.to, u64::from_le_bytes(challenge));
    let mut frame = Vec::new();
    push_frame(&mut frame, HANDSHAKE_TAG, &hello).expect("a hello fits a frame");
    stream.write_all(&frame).await?;
    Ok(stream)
}

/// One frame: (tag, body).
async fn read_frame(stream: &mut TcpStream) -> std::io::Result<(u32, Vec<u8>)> {
    let mut header = [0u8; HEADER_BYTES];
    stream.read_exact(&mut header).await?;
    let frame = parse_header(&header)
        .map_err(|len| std::io::Error::other(format!("a frame of {len} bytes")))?;
    let mut body = vec![0u8; frame.len as usize];
    stream.read_exact(&mut body).await?;
    Ok((frame.tag, body))
}

/// `io` or a timeout error after `limit`.
async fn within<T>(
    limit: Duration,
    io: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    let timer = async {
        glommio::timer::sleep(limit).await;
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "handshake timed out",
        ))
    };
    futures_lite::future::or(io, timer).await
}

async fn send_loop(link: Link, batches: flume::Receiver<Vec<u8>>) {
    let mut backoff = RECONNECT_BACKOFF_MIN;
    loop {
        let mut stream = match connect(&link).await {
            Ok(stream) => stream,
            Err(_) => {
                // The peer is down or starting: drop what queued up meanwhile, retry later.
                batches.drain().for_each(drop);
                glommio::timer::sleep(backoff).await;
                backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
                continue;
            }
        };
        backoff = RECONNECT_BACKOFF_MIN;
        // Best effort: without it small frames wait for Nagle, with it they go out at once.
        let _ = stream.set_nodelay(true);
        while let Ok(mut batch) = batches.recv_async().await {
            // Coalesce whatever else queued meanwhile into the same write.
            while let Ok(more) = batches.try_recv() {
                batch.extend_from_slice(&more);
            }
            if stream.write_all(&batch).await.is_err() {
                break;
            }
        }
        if batches.is_disconnected() {
            return;
        }
    }
}

/// What an accept loop does after `accept` failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AcceptAction {
    /// One connection failed (ECONNABORTED, EPROTO, …) or the cause is unknown: pause
    /// `ACCEPT_BACKOFF_OTHER`, then accept again.
    Retry,
    /// Out of file descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): the operator
    /// should raise a limit; pause `ACCEPT_BACKOFF_EXHAUSTED`, then accept again.
    Exhausted,
    /// The listening socket is unusable (closed, not a listening socket): retrying would
    /// fail forever, so the loop ends and says so.
    Stop,
}

/// The decision of an accept loop on `error`: a pure leaf so that every case is tested.
fn accept_action(error: &GlommioError<()>) -> AcceptAction {
    let io = match error {
        GlommioError::IoError(io) | GlommioError::EnhancedIoError { source: io, .. } => io,
        GlommioError::Closed(_) => return AcceptAction::Stop,
        _ => return AcceptAction::Retry,
    };
    match io.raw_os_error() {
        Some(EBADF | EINVAL | ENOTSOCK) => AcceptAction::Stop,
        Some(EMFILE | ENFILE | ENOBUFS | ENOMEM) => AcceptAction::Exhausted,
        _ => AcceptAction::Retry,
    }
}

/// Where a connection's messages go.
#[derive(Clone)]
struct Sinks {
    inbound: flume::Sender<InboundBatch>,
    forwards: flume::Sender<Forwarded>,
}

async fn accept_loop(listener: TcpListener, sinks: Sinks, auth: PeerAuth) {
    let live = std::rc::Rc::new(std::cell::Cell::new(0usize));
    loop {
        let error = match listener.accept().await {
            Ok(stream) if live.get() >= INBOUND_CONNECTIONS_MAX => {
                tracing::warn!(live = live.get(), "too many peer connections; refused one");
                drop(stream);
                continue;
            }
            Ok(stream) => {
                // Best effort, as above.
                let _ = stream.set_nodelay(true);
                live.set(live.get() + 1);
                let (sinks, auth, live) = (sinks.clone(), auth.clone(), live.clone());
                glommio::spawn_local(async move {
                    read_loop(stream, sinks, &auth).await;
                    live.set(live.get() - 1);
                })
                .detach();
                continue;
            }
            Err(error) => error,
        };
        if !survive_accept_error(&error, "peer").await {
            // The operator must act: this core no longer hears from its peers (its loop
            // stops the process once every connection is gone).
            return;
        }
    }
}

/// Logs a failed `accept` of `listener` (e.g. "peer", "client") and pauses as
/// `accept_action` says; false when the listening socket is unusable and the loop must end.
/// Every accept loop of the server goes through here (defect 10: one error used to end a
/// listener for good).
pub async fn survive_accept_error(error: &GlommioError<()>, listener: &str) -> bool {
    match accept_action(error) {
        AcceptAction::Retry => {
            tracing::warn!(%error, listener, "accept failed; retrying");
            glommio::timer::sleep(ACCEPT_BACKOFF_OTHER).await;
            true
        }
        AcceptAction::Exhausted => {
            // The operator must act (raise the file descriptor limit); at most one line
            // per pause, so the log stays readable while it lasts.
            tracing::error!(%error, listener, "out of resources accepting; retrying");
            glommio::timer::sleep(ACCEPT_BACKOFF_EXHAUSTED).await;
            true
        }
        AcceptAction::Stop => {
            tracing::error!(%error, listener, "the listener stopped");
            false
        }
    }
}

/// Appends `body` as frames of at most `CHUNK_BYTES`, all but the last tagged `MORE`.
pub fn push_chunks(out: &mut Vec<u8>, shard: u32, body: &[u8]) {
    let mut chunks = body.chunks(CHUNK_BYTES).peekable();
    while let Some(chunk) = chunks.next() {
        let tag = if chunks.peek().is_some() {
            shard | MORE
        } else {
            shard
        };
        push_frame(out, tag, chunk).expect("chunks are below the frame limit");
    }
}

/// Why a peer's stream is closed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    #[error("a chunk of shard {got} continues a message of shard {expected}")]
    MixedChunks { expected: u32, got: u32 },
    #[error("a message over {MESSAGE_BYTES_MAX} bytes")]
    TooLarge,
    #[error("a message without its HLC stamp")]
    NoStamp,
    #[error("a malformed Raft message")]
    Malformed,
}

/// Reassembles one connection's frames into messages.
#[derive(Default)]
pub struct Reassembly {
    partial: Vec<u8>,
    shard: Option<u32>,
}

impl Reassembly {
    /// Takes one frame; returns the message it completes, if any.
    pub fn frame(&mut self, tag: u32, body: &[u8]) -> Result<Option<Received>, InboundError> {
        let (shard, more) = (tag & !MORE, tag & MORE != 0);
        if let Some(expected) = self.shard.filter(|s| *s != shard) {
            return Err(InboundError::MixedChunks {
                expected,
                got: shard,
            });
        }
        if self.partial.len() + body.len() > MESSAGE_BYTES_MAX {
            return Err(InboundError::TooLarge);
        }
        self.partial.extend_from_slice(body);
        if more {
            self.shard = Some(shard);
            return Ok(None);
        }
        self.shard = None;
        let whole = std::mem::take(&mut self.partial);
        let (stamp, message) = whole
            .split_at_checked(HLC_BYTES)
            .ok_or(InboundError::NoStamp)?;
        let sent_hlc = u64::from_le_bytes(stamp.try_into().expect("8 bytes"));
        if shard == FORWARD_TAG {
            let bytes = message.to_vec();
            return Ok(Some(Received::Forward { sent_hlc, bytes }));
        }
        let message = Message::parse_from_bytes(message).map_err(|_| InboundError::Malformed)?;
        Ok(Some(Received::Raft(Inbound {
            shard,
            sent_hlc,
            message,
        })))
    }
}

/// Challenges a new connection; returns the peer its hello proves, or `None` to close it.
async fn authenticate(stream: &mut TcpStream, auth: &PeerAuth) -> Option<u64> {
    let challenge = handshake::nonce();
    let mut frame = Vec::new();
    push_frame(&mut frame, HANDSHAKE_TAG, &challenge.to_le_bytes()).expect("8 bytes fit");
    stream.write_all(&frame).await.ok()?;
    let (tag, hello) = within(HANDSHAKE_TIMEOUT, read_frame(stream)).await.ok()?;
    if tag != HANDSHAKE_TAG {
        tracing::warn!("a peer connection sent no hello: closed");
        return None;
    }
    match auth.verify(&hello, challenge) {
        Ok(peer) => Some(peer),
        Err(error) => {
            tracing::warn!(%error, "a peer connection failed authentication: closed");
            None
        }
    }
}

async fn read_loop(mut stream: TcpStream, sinks: Sinks, auth: &PeerAuth) {
    let Some(peer) = authenticate(&mut stream, auth).await else {
        return;
    };
    let mut header = [0u8; HEADER_BYTES];
    let mut reassembly = Reassembly::default();
    while stream.read_exact(&mut header).await.is_ok() {
        let Ok(frame) = parse_header(&header) else {
            return;
        };
        let mut body = vec![0u8; frame.len as usize];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let message = match reassembly.frame(frame.tag, &body) {
            Ok(Some(Received::Raft(message))) => message,
            Ok(Some(Received::Forward { sent_hlc, bytes })) => {
                let forwarded = Forwarded {
                    from: peer,
                    sent_hlc,
                    bytes,
                };
                if sinks.forwards.send_async(forwarded).await.is_err() {
                    return;
                }
                continue;
            }
            Ok(None) => continue,
            Err(error) => {
                tracing::warn!(%error, peer, "bad frames from a peer: closing the connection");
                return;
            }
        };
        if !handshake::message_fits(peer, auth.me, &message.message) {
            let (from, to) = (message.message.from, message.message.to);
            tracing::warn!(
                peer,
                from,
                to,
                "a message not from its connection's peer: dropped"
            );
            continue;
        }
        if sinks.inbound.send_async(vec![message]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(bytes: &[u8]) -> Vec<(u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let header = parse_header(bytes[at..at + HEADER_BYTES].try_into().expect("8"))
                .expect("valid header");
            let start = at + HEADER_BYTES;
            let end = start + header.len as usize;
            out.push((header.tag, bytes[start..end].to_vec()));
            at = end;
        }
        out
    }

    fn snapshot_message(bytes: usize) -> Message {
        let mut m = Message::default();
        m.set_msg_type(raft::prelude::MessageType::MsgSnapshot);
        (m.from, m.to, m.term) = (1, 2, 3);
        m.mut_snapshot().data = vec![7u8; bytes].into();
        m
    }

    #[test]
    fn a_message_over_the_frame_limit_travels_in_chunks_with_its_hlc() {
        let message = snapshot_message(crate::frame::FRAME_BYTES_MAX as usize + 3);
        let mut body = 42u64.to_le_bytes().to_vec();
        message.write_to_vec(&mut body).expect("encodes");
        let mut wire = Vec::new();
        push_chunks(&mut wire, 5, &body);
        let frames = frames(&wire);
        assert!(frames.len() > 16, "split into {} frames", frames.len());
        assert!(frames.iter().all(|(_, b)| b.len() <= CHUNK_BYTES));
        let mut reassembly = Reassembly::default();
        let mut done = Vec::new();
        for (tag, body) in &frames {
            if let Some(Received::Raft(m)) = reassembly.frame(*tag, body).expect("valid frames") {
                done.push(m);
            }
        }
        assert_eq!(done.len(), 1, "one message out of all the frames");
        assert_eq!((done[0].shard, done[0].sent_hlc), (5, 42));
        assert_eq!(done[0].message, message);
    }

    #[test]
    fn a_forward_frame_is_opaque_bytes_with_its_hlc() {
        let mut body = 7u64.to_le_bytes().to_vec();
        body.extend_from_slice(b"request");
        let mut wire = Vec::new();
        push_chunks(&mut wire, FORWARD_TAG, &body);
        let (tag, frame) = frames(&wire).remove(0);
        let received = Reassembly::default().frame(tag, &frame).expect("valid");
        let bytes = b"request".to_vec();
        assert_eq!(received, Some(Received::Forward { sent_hlc: 7, bytes }));
    }

    #[test]
    fn interleaved_or_unstamped_frames_close_the_connection() {
        let mut reassembly = Reassembly::default();
        assert_eq!(reassembly.frame(1 | MORE, b"abc"), Ok(None));
        assert_eq!(
            reassembly.frame(2, b"def"),
            Err(InboundError::MixedChunks {
                expected: 1,
                got: 2
            })
        );
        assert_eq!(
            Reassembly::default().frame(1, b"abc"),
            Err(InboundError::NoStamp)
        );
    }

    fn os(errno: i32) -> GlommioError<()> {
        GlommioError::IoError(std::io::Error::from_raw_os_error(errno))
    }

    #[test]
    fn accept_errors_pause_and_retry_unless_the_listener_is_unusable() {
        const EPERM: i32 = 1;
        const EPROTO: i32 = 71;
        const ECONNABORTED: i32 = 103;
        for errno in [EMFILE, ENFILE, ENOBUFS, ENOMEM] {
            assert_eq!(
                accept_action(&os(errno)),
                AcceptAction::Exhausted,
                "errno {errno}"
            );
        }
        for errno in [ECONNABORTED, EPROTO, EPERM] {
            assert_eq!(
                accept_action(&os(errno)),
                AcceptAction::Retry,
                "errno {errno}"
            );
        }
        let enhanced = GlommioError::EnhancedIoError {
            source: std::io::Error::from_raw_os_error(EMFILE),
            op: "accept",
            path: None,
            fd: Some(3),
        };
        assert_eq!(accept_action(&enhanced), AcceptAction::Exhausted);
        let timed_out = GlommioError::TimedOut(Duration::ZERO);
        assert_eq!(accept_action(&timed_out), AcceptAction::Retry);
        for errno in [EBADF, EINVAL, ENOTSOCK] {
            assert_eq!(
                accept_action(&os(errno)),
                AcceptAction::Stop,
                "errno {errno}"
            );
        }
    }
}
