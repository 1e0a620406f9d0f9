//! treesync-net: moving bytes between servers and to clients.
//!
//! - `frame`: the fixed `bytemuck` header every frame starts with.
//! - `peer`: the server↔server transport for Raft messages (TCP, one connection per peer per
//!   core, frames batched per destination, reconnect with backoff, bounded queues).
//! - `gateway`: the WebSocket gateway for clients (Godot binary Variants, `docs/protocol.md`).
//! - `ws_client`: the Rust client of the gateway (async, on actix/tokio).
//! - `client_proto` and `client`: a minimal framed request/response protocol and a blocking
//!   client, used by the load generator and the kill -9 test.
//!
//! Forbidden: tree logic (that is `core`'s), shard state (that is `actors`').

pub mod client;
pub mod client_proto;
pub mod frame;
pub mod gateway;
pub mod peer;
pub mod ws_client;
