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

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use protobuf::Message as _;
use raft::prelude::Message;

use crate::frame::{parse_header, push_frame, HEADER_BYTES};

/// Batches queued per peer before new ones are dropped.
pub const OUTBOUND_BATCHES_MAX: usize = 1024;
const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(20);
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_millis(500);

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

async fn accept_loop(listener: TcpListener, inbound: flume::Sender<InboundBatch>) {
    while let Ok(stream) = listener.accept().await {
        // Best effort, as above.
        let _ = stream.set_nodelay(true);
        glommio::spawn_local(read_loop(stream, inbound.clone())).detach();
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
