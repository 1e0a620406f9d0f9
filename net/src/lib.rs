//! treesync-net: moving bytes between servers and to clients.
//!
//! - `frame`: the fixed `bytemuck` header every frame starts with.
//! - `peer`: the server↔server transport for Raft messages (TCP, one connection per peer per
//!   core, frames batched per destination, reconnect with backoff, bounded queues).
//! - `client_proto` and `client`: a minimal request/response protocol and a blocking client,
//!   used by tests and the load generator until the WebSocket gateway (issue 5) exists.
//!
//! Forbidden: tree logic (that is `core`'s), shard state (that is `actors`').

pub mod client;
pub mod client_proto;
pub mod frame;
pub mod peer;
