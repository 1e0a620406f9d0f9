//! loom models of treesync's own lock-free primitives. The models are in `tests/`; they only
//! build under `RUSTFLAGS="--cfg loom"` (see the README's test command).
