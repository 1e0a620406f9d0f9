//! Durable storage of shard replicas: one write-ahead log per core shared by its shards.
//!
//! - `header`: the file header (format version, cluster id, checksum salt).
//! - `format`: one checksummed record; `batch`: one append's records as bytes (entries and
//!   snapshots over one record's limit split into several).
//! - `recovery`: replaying a log image, a pure function of its bytes: a torn tail is cut,
//!   corruption before it is refused.
//! - `wal`: the glommio `BufferedFile` writer with group commit (one fdatasync per batch).
//! - `identity`: who wrote a data directory, and the lock that gives it to one process.
//!
//! A simulator can build disk images with `header::FileHeader` and `batch::encode_batch`
//! (or `batch::encode_image`) and replay them with `recovery::recover`.

pub mod batch;
pub mod format;
pub mod header;
pub mod identity;
pub mod recovery;
pub mod wal;
