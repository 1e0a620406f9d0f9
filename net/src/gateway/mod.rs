//! The client gateway: WebSocket at `ws://HOST:PORT/ws`, one actix actor per session.
//!
//! Every message is one Godot Variant in Godot's binary format (Godot 4 by default,
//! `?godot=3` for Godot 3): a request Dictionary with an `id`, answered by a Dictionary
//! echoing it (`docs/protocol.md` is the contract). The gateway parses and validates; it does
//! no tree work: requests go to the cores through a `Backend` (the runtime's flume
//! mailboxes), and any server may be contacted — a request for a shard led elsewhere is
//! forwarded when the backend can reach the leader, else refused with `not_leader` naming it.
//!
//! # Invariants
//! - A request that is refused (malformed, unknown op, invalid path, wrong type, too large,
//!   overloaded) changes nothing and is answered; the session stays open. Only protocol
//!   violations (text frames, fragments out of sequence or beyond the message limit,
//!   frames over `frame_bytes_max`) close it, with
//!   a reason.
//! - No message the gateway sends exceeds `split_bytes`: larger replies go out as chunks
//!   (`{id, part, parts, chunk}`) whose concatenation is the reply's encoding, because Godot's
//!   WebSocket peers buffer about 64 KiB inbound by default.
//! - A session has at most `in_flight_max` requests in progress and `subs_max`
//!   subscriptions, each with at most `sub_queue_max` queued pushes; a subscriber that
//!   falls further behind is told and resumed from its position (never an unbounded queue).

mod reply;
mod request;
mod session;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use treesync_core::codec::GodotVersion;
use treesync_core::replica::ReadTarget;
use treesync_core::{Limits, Txn};

pub use reply::{chunks, error_reply};
pub use request::{parse, Request, RequestError};
use treesync_core::api::Outcome;

/// A boxed future the gateway awaits (backends live on other executors).
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What the gateway needs from the servers: the runtime implements it over its mailboxes.
pub trait Backend: Send + Sync + 'static {
    /// Commits `txn` (linearizable): `Answer::Written` or why not.
    fn write(&self, txn: Txn) -> BoxFuture<Outcome>;
    /// Linearizable read of a property, a node or a subtree (as Godot data).
    fn read(&self, path: String, target: ReadTarget) -> BoxFuture<Outcome>;
    /// Starts feeding `sink` with the subtree at `path`: a snapshot (or, with `from`, the
    /// changes after that log index when the log still has them), then every applied change
    /// touching it, in commit order, and resolved timestamps. `Answer::Subscribed` once
    /// started, else why not. The feed stops (the sink is dropped) when `sink` is full — the
    /// subscriber fell behind — or when its receiver is dropped.
    fn subscribe(
        &self,
        path: String,
        from: Option<u64>,
        sink: flume::Sender<Push>,
    ) -> BoxFuture<Outcome>;
    /// Whether a subscription of `path` merges shards: its pushes carry
    /// `cut::MERGED_SHARD`, and its position (what `from` takes) is the HLC of the last
    /// `resolved`, not a log index.
    fn merges(&self, _path: &str) -> bool {
        false
    }
    /// This server's metrics as Prometheus text (served at `GET /metrics`); `None`: this
    /// backend keeps none (the route answers 404).
    fn metrics(&self) -> Option<String> {
        None
    }
    /// Who leads each shard, as this server sees it (`status`: Godot data).
    fn status(&self) -> BoxFuture<Outcome> {
        Box::pin(async {
            Err(treesync_core::api::ReplyError::Unavailable {
                reason: "this server reports no status".into(),
            })
        })
    }
}

/// What a subscription delivers, in order (the engine's type, delivered as it is).
pub use treesync_core::engine::Push;

/// Gateway limits; every one bounds memory or work per session.
#[derive(Clone, Debug)]
pub struct GatewayLimits {
    /// Largest request answered (larger ones get `too_large`, the session stays).
    pub message_bytes_max: usize,
    /// Largest WebSocket frame read at all; beyond it the session is closed (size reason).
    pub frame_bytes_max: usize,
    /// Requests in progress per session; more are refused with `overloaded`.
    pub in_flight_max: usize,
    /// Largest message sent; larger replies are chunked.
    pub split_bytes: usize,
    /// Pushes queued per subscription; a subscriber further behind is told (`overflow`)
    /// and resumed from its last position.
    pub sub_queue_max: usize,
    /// Subscriptions per session.
    pub subs_max: usize,
    /// How long a write or read waits for a shard that has no leader (an election).
    pub leader_wait: Duration,
    /// Tree limits used to validate paths and values before they reach a shard.
    pub tree: Limits,
}

impl Default for GatewayLimits {
    fn default() -> Self {
        GatewayLimits {
            message_bytes_max: 1024 * 1024,
            frame_bytes_max: 4 * 1024 * 1024,
            in_flight_max: 256,
            split_bytes: 60 * 1024,
            sub_queue_max: 1024,
            subs_max: 64,
            leader_wait: Duration::from_secs(5),
            tree: Limits::default(),
        }
    }
}

/// Why the gateway did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the gateway thread stopped while starting")]
    Thread,
}

/// A running gateway.
pub struct Gateway {
    /// Where it listens (useful with port 0).
    pub addr: SocketAddr,
}

/// Godot binary format from the `godot` query parameter (`3` or `4`, default 4).
pub fn version_from_query(query: &str) -> Result<GodotVersion, String> {
    let value = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "godot")
        .map(|(_, v)| v);
    match value {
        None | Some("4") => Ok(GodotVersion::V4),
        Some("3") => Ok(GodotVersion::V3),
        Some(other) => Err(format!(
            "godot={other:?}: the Godot binary format is 3 or 4"
        )),
    }
}

/// Starts the gateway on its own thread (an actix system with `workers` threads) and
/// returns once it listens.
pub fn start(
    addr: SocketAddr,
    workers: usize,
    limits: GatewayLimits,
    backend: Arc<dyn Backend>,
) -> Result<Gateway, GatewayError> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("gateway".into())
        .spawn(move || {
            let system = actix_rt::System::new();
            system.block_on(async move {
                let state = session::Shared { backend, limits };
                let (server, bound) = match session::server(state, addr, workers) {
                    Ok(started) => started,
                    Err((addr, source)) => {
                        let _ = tx.send(Err(GatewayError::Bind { addr, source }));
                        return;
                    }
                };
                let _ = tx.send(Ok(bound));
                if let Err(e) = server.await {
                    tracing::error!(error = %e, "gateway stopped");
                }
            });
        })
        .map_err(|_| GatewayError::Thread)?;
    let addr = rx.recv().map_err(|_| GatewayError::Thread)??;
    tracing::info!(%addr, "gateway listening");
    Ok(Gateway { addr })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_godot_version_comes_from_the_query() {
        assert_eq!(version_from_query(""), Ok(GodotVersion::V4));
        assert_eq!(version_from_query("godot=3"), Ok(GodotVersion::V3));
        assert_eq!(version_from_query("x=1&godot=4"), Ok(GodotVersion::V4));
        assert!(version_from_query("godot=5").is_err());
    }
}
