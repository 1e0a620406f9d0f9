//! Durable storage of shard replicas: one write-ahead log per core shared by its shards.
//!
//! Today: the on-disk record format (`format`) and recovery from a log image (`recovery`),
//! including detection and truncation of a torn or corrupt tail. The glommio `DmaFile`
//! writer with group commit comes next (issue 4).

pub mod format;
pub mod recovery;
pub mod wal;
