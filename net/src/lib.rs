//! treesync-net: peer transport and client gateway.
//!
//! Status: not built yet. The peer transport (issue 4) and the WebSocket gateway speaking
//! Godot's binary Variant format (issue 5) will live here; today this crate is empty and
//! nothing depends on it.
