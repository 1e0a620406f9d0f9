//! treesync-core: the pure core of treesync.
//!
//! Purpose: the data model (node paths, Godot Variant values, ops and transactions), the
//! deterministic tree state machine, Godot's binary Variant codec (Godot 3 and 4), the hybrid
//! logical clock, the shard map, and rkyv wire framing.
//!
//! Forbidden here: I/O of any kind, async, threads, glommio, flume, `Instant::now`, ambient
//! randomness (see `clippy.toml`). Time comes in through [`hlc::WallClock`]; everything else
//! is a function of its inputs, so the simulator and every replica compute the same results.
//!
//! The model types (`Value`, `Op`, `Txn`, `TreeSnapshot`) derive rkyv themselves rather than
//! living in `wire`: they *are* the wire form, read zero-copy from the log. `wire` holds the
//! versioned, checksummed framing and the validated access to those archives.
//!
//! Entry points: [`tree::Tree`] (`apply_op`, `apply_txn`, `to_snapshot`, `restore`),
//! [`codec::encode`] / [`codec::decode`], [`hlc::Hlc`], [`shard::ShardMap`], [`wire`].
#![forbid(unsafe_code)]

pub mod api;
pub mod clock_offset;
pub mod codec;
pub mod cut;
pub mod engine;
pub mod forward;
pub mod hlc;
pub mod limits;
pub mod metrics;
pub mod op;
pub mod path;
pub mod replica;
pub mod rng;
pub mod shard;
mod sync;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod text;
pub mod tree;
pub mod txn;
pub mod value;
pub mod wire;

pub use limits::Limits;
pub use op::{Expect, Op, Precondition, Prop, SessionSeq, Txn};
pub use path::NodePath;
pub use tree::{Tree, TreeError};
pub use value::Value;
