//! raft-rs logs through `slog`; this drain hands its records to `tracing` (target `raft`),
//! so `RUST_LOG=raft=debug` shows elections, leadership transfers and dropped proposals
//! beside our own logs instead of discarding them.

/// A `slog` drain that re-emits every record as a `tracing` event with target `raft`.
/// raft-rs's `info` (elections, term changes: several per shard on start) becomes `debug`
/// here, so a server with thousands of shards does not flood the default log.
pub struct TracingDrain;

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record<'_>, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
        let message = record.msg();
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "raft", "{message}")
            }
            slog::Level::Warning => tracing::warn!(target: "raft", "{message}"),
            slog::Level::Info | slog::Level::Debug => tracing::debug!(target: "raft", "{message}"),
            slog::Level::Trace => tracing::trace!(target: "raft", "{message}"),
        }
        Ok(())
    }
}

/// The logger every replica of this process gets.
pub fn logger() -> slog::Logger {
    slog::Logger::root(TracingDrain, slog::o!())
}
