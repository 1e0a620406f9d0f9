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

/// Raft messages for shards, as received from one connection read.
pub type InboundBatch = Vec<(u32, Message)>;

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
        my_id: u64,
        core: usize,
        peers: &BTreeMap<u64, SocketAddr>,
        inbound: flume::Sender<InboundBatch>,
    ) -> std::io::Result<Transport> {
        let listen = core_addr(peers[&my_id], core);
        let listener = TcpListener::bind(listen)
            .map_err(|e| std::io::Error::other(format!("{listen}: {e}")))?;
        glommio::spawn_local(accept_loop(listener, inbound)).detach();
        let mut outbound = BTreeMap::new();
        for (id, addr) in peers.iter().filter(|(id, _)| **id != my_id) {
            let (tx, rx) = flume::bounded(OUTBOUND_BATCHES_MAX);
            glommio::spawn_local(send_loop(core_addr(*addr, core), rx)).detach();
            outbound.insert(*id, tx);
        }
        Ok(Transport {
            outbound,
            pending: BTreeMap::new(),
            dropped_batches: 0,
        })
    }

    /// Buffers a message for its destination (sent at the next `flush`).
    pub fn send(&mut self, shard: u32, message: &Message) {
        if !self.outbound.contains_key(&message.to) {
            return; // not a peer of ours: dropped like a lost message
        }
        let body = message
            .write_to_bytes()
            .expect("encoding a Raft message to memory");
        let batch = self.pending.entry(message.to).or_default();
        if let Err(e) = push_frame(batch, shard, &body) {
            // Lost like a dropped message; Raft retries (snapshots beyond this need chunks).
            tracing::warn!(shard, to = message.to, error = %e, "raft message not sent");
        }
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

async fn send_loop(addr: SocketAddr, batches: flume::Receiver<Vec<u8>>) {
    let mut backoff = RECONNECT_BACKOFF_MIN;
    loop {
        let mut stream = match TcpStream::connect(addr).await {
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

async fn accept_loop(listener: TcpListener, inbound: flume::Sender<InboundBatch>) {
    loop {
        let error = match listener.accept().await {
            Ok(stream) => {
                // Best effort, as above.
                let _ = stream.set_nodelay(true);
                glommio::spawn_local(read_loop(stream, inbound.clone())).detach();
                continue;
            }
            Err(error) => error,
        };
        match accept_action(&error) {
            AcceptAction::Retry => {
                tracing::warn!(%error, "accepting a peer connection failed; retrying");
                glommio::timer::sleep(ACCEPT_BACKOFF_OTHER).await;
            }
            AcceptAction::Exhausted => {
                // The operator must act (raise the file descriptor limit); at most one
                // line per pause, so the log stays readable while it lasts.
                tracing::error!(%error, "out of resources accepting a peer; retrying");
                glommio::timer::sleep(ACCEPT_BACKOFF_EXHAUSTED).await;
            }
            AcceptAction::Stop => {
                // The operator must act: this core no longer hears from its peers.
                tracing::error!(%error, "the peer listener stopped");
                return;
            }
        }
    }
}

async fn read_loop(mut stream: TcpStream, inbound: flume::Sender<InboundBatch>) {
    let mut header = [0u8; HEADER_BYTES];
    while stream.read_exact(&mut header).await.is_ok() {
        let Ok(frame) = parse_header(&header) else {
            return;
        };
        let mut body = vec![0u8; frame.len as usize];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let Ok(message) = Message::parse_from_bytes(&body) else {
            tracing::warn!("malformed Raft message from a peer: closing the connection");
            return;
        };
        if inbound
            .send_async(vec![(frame.tag, message)])
            .await
            .is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
