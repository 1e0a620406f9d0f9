//! A transaction's ops grouped by the shard that owns each (placeholder; see `plan`).
