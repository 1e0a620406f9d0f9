//! The atomics facade: std normally, loom's under `--cfg loom` so the loom models in
//! `loom_tests/` explore every interleaving of the code that uses them.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
