//! The per-core write-ahead log: one preallocated file, written through glommio's
//! `BufferedFile`, one `fdatasync` per appended batch (group commit).
//!
//! Not `DmaFile`: on a device that supports polled I/O, glommio puts O_DIRECT writes on its
//! poll ring, and an executor with a write in flight cannot sleep: it spins in
//! `io_uring_enter` until the write completes. That cost each idle core ~11% of a CPU
//! (closing timestamps writes an entry per shard every 25 ms) and, under one client, kept
//! three executors busy on two vCPUs (~170,000 `io_uring_enter` per second idle, 470,000
//! under load; perf, 2026-12-02). Buffered writes go through the main ring, whose
//! completions wake a parked executor; the `fdatasync` after them is what makes them
//! durable either way.
//!
//! Runs on the executor of the core that owns it (`!Send`); the core's shard actors hand it
//! their `PersistRequest`s and it appends everything ready in one batch.
//!
//! # Invariants
//! - `append` returns only after the batch is durable (unless fsync is off, which is for
//!   benchmarks only and reported loudly at open); `append_unsynced` returns once written,
//!   and the next `append` makes it durable.
//! - A batch goes at the end of the log, in writes of at most `WRITE_BYTES_MAX`, then one
//!   sync; the next batch is written only after it. Unsynced batches and the synced one
//!   after them carry one batch start, so for recovery they are one batch. Recovery's
//!   torn-tail rule rests on this (`recovery`).
//! - The file is written in whole aligned blocks: the last partial block is rewritten with
//!   the new records after it, padded with zeros, so the log on disk is always
//!   `header records… zeros…`.
//! - A file gets its name only once its header (and base, for a rewrite) is durable: it is
//!   written as `<path>.next`, synced, renamed, and the directory synced.
//! - Opening syncs the file before reading it, refuses a log with a bad header, of another
//!   cluster or corrupt before its tail, and cuts a torn tail before the first append, so a
//!   later crash can never expose stale bytes past the valid log.
//! - After a failed write or sync every append is refused (`WalError::Poisoned`) and no
//!   sync is retried: the kernel may have dropped the dirty pages and marked them clean, so
//!   a second sync could succeed over lost data (PostgreSQL's "fsyncgate"). Only a restart,
//!   which syncs and re-reads the file, recovers.

use std::path::{Path, PathBuf};

use glommio::io::{BufferedFile, OpenOptions};
use thiserror::Error;

use super::batch::{encode_batch, pieces};
use super::format::{
    encode, EncodeError, Record, HEADER_BYTES, PAYLOAD_BYTES_MAX, SNAPSHOT_BYTES_MAX,
};
use super::header::{random_salt, FileHeader, HeaderError, FILE_HEADER_BYTES};
use super::recovery::{recover, Corruption, Recovery, RecoveryError};

/// Bytes preallocated at a time (preallocated files halve fdatasync time here: MACHINE.md).
pub const PREALLOCATE_BYTES: u64 = 64 * 1024 * 1024;
/// Largest single write; a larger batch is written in several before its one sync.
pub const WRITE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Largest encoded batch one append may hold in memory: a snapshot of the largest size (a
/// batch holding one is otherwise small: the engine's `WAL_BATCH_BYTES_MAX` takes a request
/// over it alone) and 256 MiB of other records.
pub const BATCH_BYTES_MAX: usize = SNAPSHOT_BYTES_MAX as usize + 256 * 1024 * 1024;
/// Capacity the in-memory tail keeps after a large batch.
const TAIL_CAPACITY_KEEP_BYTES: usize = 1024 * 1024;
/// The unit the log is written in (the last partial one rewritten with each batch).
const BLOCK_BYTES: u64 = 4096;

fn align_down(at: u64) -> u64 {
    at / BLOCK_BYTES * BLOCK_BYTES
}

fn align_up(at: u64) -> u64 {
    at.div_ceil(BLOCK_BYTES) * BLOCK_BYTES
}

const _: () = assert!(
    BATCH_BYTES_MAX as u64
        >= SNAPSHOT_BYTES_MAX
            + SNAPSHOT_BYTES_MAX / 1024
            + 2 * (PAYLOAD_BYTES_MAX as u64 + HEADER_BYTES as u64),
    "a batch holds the largest snapshot, its parts' headers (far below 1/1024 of it) and \
     two more records of the largest size"
);
const _: () = assert!(
    WRITE_BYTES_MAX.is_multiple_of(4096),
    "writes are whole blocks"
);

/// Options of a WAL.
#[derive(Clone, Copy, Debug)]
pub struct WalOptions {
    /// `fdatasync` after every batch. Off only for benchmarks: acknowledged writes can be lost.
    pub fsync: bool,
    pub preallocate_bytes: u64,
    /// The cluster the log belongs to: written into a new file, checked at open.
    pub cluster_id: u64,
    #[cfg(test)]
    pub(crate) faults: Faults,
}

/// Test-only fault injection.
#[cfg(test)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Faults {
    /// The n-th `fdatasync` of a `Wal` (from 0, the first at open or creation) fails with EIO.
    pub(crate) eio_at_sync: Option<u32>,
}

impl Default for WalOptions {
    fn default() -> WalOptions {
        WalOptions {
            fsync: true,
            preallocate_bytes: PREALLOCATE_BYTES,
            cluster_id: 0,
            #[cfg(test)]
            faults: Faults::default(),
        }
    }
}

/// Why the WAL failed. Every error is fatal for the core's shards: the caller stops them.
/// After `Encode` and `BatchTooLarge` the log is unchanged; after a failed write or sync it
/// refuses further appends (`Poisoned`).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WalError {
    #[error("WAL {op} on {path}: {source}")]
    Io {
        path: String,
        op: &'static str,
        source: glommio::GlommioError<()>,
    },
    #[error("WAL {op} on {path}: {source}")]
    Fs {
        path: String,
        op: &'static str,
        source: std::io::Error,
    },
    #[error("WAL {path}: batch of {bytes} bytes exceeds the limit of {max}")]
    BatchTooLarge {
        path: String,
        bytes: usize,
        max: usize,
    },
    #[error("WAL {path}: {source}")]
    Encode { path: String, source: EncodeError },
    #[error("WAL {path} is not a WAL this build reads ({reason}); refusing to start")]
    Header { path: String, reason: HeaderError },
    #[error("WAL {path} belongs to cluster {found}, not this server's cluster {expected}")]
    ClusterMismatch {
        path: String,
        expected: u64,
        found: u64,
    },
    #[error(
        "WAL {path} is corrupt at byte {offset}: {reason}; refusing to start \
         (restore this replica from its peers)"
    )]
    Corrupt {
        path: String,
        offset: u64,
        reason: Corruption,
    },
    #[error("WAL {path} refuses writes after a failed write or sync; restart to recover")]
    Poisoned { path: String },
}

/// An open write-ahead log.
pub struct Wal {
    file: BufferedFile,
    path: String,
    options: WalOptions,
    /// Seeds every record checksum of this file (from its header).
    salt: u64,
    /// Bytes from `block_start` to the end of the valid log (the partial last block).
    tail: Vec<u8>,
    block_start: u64,
    allocated: u64,
    /// Where the batches written since the last sync start (`append_unsynced`), if any.
    unsynced_from: Option<u64>,
    /// A write or sync failed: nothing may be written or synced again.
    poisoned: bool,
    #[cfg(test)]
    syncs: u32,
}

impl Wal {
    /// Opens (or creates) the log at `path`, replays it, and truncates any torn tail.
    pub async fn open(path: &Path, options: WalOptions) -> Result<(Wal, Recovery), WalError> {
        let name = path.display().to_string();
        // A create or rewrite that crashed before its rename left a partial `.next`.
        remove_if_present(&next_path(path))?;
        match std::fs::metadata(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let wal = Wal::create(path, options, &[]).await?;
                let recovery = Recovery {
                    cluster_id: options.cluster_id,
                    salt: wal.salt,
                    valid_len: FILE_HEADER_BYTES,
                    ..Recovery::default()
                };
                return Ok((wal, recovery));
            }
            Err(source) => return Err(fs(&name, "stat", source)),
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .buffered_open(path)
            .await
            .map_err(|source| io(&name, "open", source))?;
        let mut wal = Wal::new(file, name, options, 0);
        // Sync before trusting what the read below returns: after a failed sync in an earlier
        // run the kernel may still hold unwritten pages or metadata of this file, or an
        // unreported error (then the start fails here). Best effort: Linux reports an error
        // once, which is why the run that saw it poisoned its log instead of retrying.
        wal.sync("fdatasync before replay").await?;
        // One blocking read: this happens once, at startup, before the core serves
        // anything. (glommio's DMA reads return EOPNOTSUPP on this kernel; writes work.)
        let image = std::fs::read(path).map_err(|source| fs(&wal.path, "read", source))?;
        let recovery = recover(&image).map_err(|e| wal.refused(e))?;
        if recovery.cluster_id != options.cluster_id {
            return Err(WalError::ClusterMismatch {
                path: wal.path,
                expected: options.cluster_id,
                found: recovery.cluster_id,
            });
        }
        let valid = recovery.valid_len as u64;
        wal.salt = recovery.salt;
        wal.block_start = align_down(valid);
        wal.tail = image[wal.block_start as usize..recovery.valid_len].to_vec();
        wal.allocated = image.len() as u64;
        if let Some(torn) = &recovery.torn {
            tracing::warn!(path = %wal.path, offset = torn.offset, reason = %torn.reason,
                "WAL ends in a torn write: cutting it");
            // Cut everything after the valid log; preallocation refills it with zeros.
            let cut = align_up(valid);
            let truncate = wal.file.truncate(cut).await;
            truncate.map_err(|source| io(&wal.path, "truncate", source))?;
            wal.allocated = cut;
            wal.write_out().await?;
            wal.sync("fdatasync after cutting the tail").await?;
        }
        if !options.fsync {
            tracing::warn!(
                path = %wal.path,
                "WAL fsync is OFF: acknowledged writes can be lost on a crash (benchmarks only)"
            );
        }
        Ok((wal, recovery))
    }

    fn new(file: BufferedFile, path: String, options: WalOptions, salt: u64) -> Wal {
        Wal {
            file,
            path,
            options,
            salt,
            tail: Vec::new(),
            block_start: 0,
            allocated: 0,
            unsynced_from: None,
            poisoned: false,
            #[cfg(test)]
            syncs: 0,
        }
    }

    /// Creates the log at `path` holding `base` (one batch): written to `<path>.next`, made
    /// durable, then renamed over `path`, so a crash leaves the old file or the new one.
    async fn create(path: &Path, options: WalOptions, base: &[Record]) -> Result<Wal, WalError> {
        let next = next_path(path);
        remove_if_present(&next)?;
        let name = next.display().to_string();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .buffered_open(&next)
            .await
            .map_err(|source| io(&name, "create", source))?;
        let salt = random_salt();
        let mut wal = Wal::new(file, name, options, salt);
        wal.tail = FileHeader::new(options.cluster_id, salt)
            .to_bytes()
            .to_vec();
        let start = FILE_HEADER_BYTES as u64;
        // Streamed physical record by record: the rename makes the base atomic, so it may be
        // larger than a batch, and a large snapshot is held encoded one part at a time.
        for record in base {
            let pieces = pieces(record, u64::from(PAYLOAD_BYTES_MAX))
                .map_err(|source| wal.encode_error(source))?;
            for piece in pieces {
                encode(&piece, salt, start, &mut wal.tail)
                    .map_err(|source| wal.encode_error(source))?;
                if wal.tail.len() >= WRITE_BYTES_MAX {
                    wal.reserve().await?;
                    wal.write_out().await?;
                }
            }
        }
        wal.reserve().await?;
        wal.write_out().await?;
        // Even with fsync off: a file is named only once durable.
        wal.sync("fdatasync").await?;
        std::fs::rename(&next, path).map_err(|source| fs(&wal.path, "rename", source))?;
        wal.path = path.display().to_string();
        // The new name is durable only once the directory is.
        sync_dir(path).map_err(|source| fs(&wal.path, "fsync of the directory", source))?;
        Ok(wal)
    }

    /// Appends a batch of records and makes it durable with one `fdatasync` (with the
    /// unsynced batches before it, if any).
    pub async fn append(&mut self, records: &[Record]) -> Result<(), WalError> {
        self.append_batch(records, true).await
    }

    /// Appends a batch of records without syncing it: the next `append` makes it durable.
    /// For what Raft does not need durable (raft-rs's `must_sync` is false: only the commit
    /// index moved), as etcd does. Until that sync, a crash may lose it or tear it.
    pub async fn append_unsynced(&mut self, records: &[Record]) -> Result<(), WalError> {
        self.append_batch(records, false).await
    }

    async fn append_batch(&mut self, records: &[Record], sync: bool) -> Result<(), WalError> {
        if self.poisoned {
            return Err(self.poisoned_error());
        }
        if records.is_empty() {
            return Ok(());
        }
        let before = self.tail.len();
        // Everything written since the last sync is one batch for recovery: its blocks may
        // reach the disk in any order until that sync, so they must share one torn tail.
        let start = match self.options.fsync {
            true => self.unsynced_from.unwrap_or(self.len()),
            false => self.len(),
        };
        encode_batch(records, self.salt, start, &mut self.tail)
            .map_err(|source| self.encode_error(source))?;
        let bytes = self.tail.len() - before;
        if bytes > BATCH_BYTES_MAX {
            self.tail.truncate(before);
            return Err(WalError::BatchTooLarge {
                path: self.path.clone(),
                bytes,
                max: BATCH_BYTES_MAX,
            });
        }
        if let Err(e) = self.reserve().await {
            self.tail.truncate(before);
            return Err(e);
        }
        self.write_out().await?;
        if self.options.fsync && sync {
            self.sync("fdatasync").await?;
            self.unsynced_from = None;
        } else {
            self.unsynced_from = Some(start);
        }
        Ok(())
    }

    /// Preallocates space up to the end of `tail`. Writes nothing: the log is unchanged on
    /// `Err`.
    async fn reserve(&mut self) -> Result<(), WalError> {
        let end = self.len();
        if end <= self.allocated {
            return Ok(());
        }
        let step = self.options.preallocate_bytes.max(1);
        let target = end.div_ceil(step) * step;
        let allocate = self.file.pre_allocate(target, false).await;
        allocate.map_err(|source| io(&self.path, "preallocate", source))?;
        self.allocated = target;
        Ok(())
    }

    /// Writes `tail` at `block_start` in whole blocks, the last one zero-padded, in writes of
    /// at most `WRITE_BYTES_MAX`, then keeps only the partial last block. Does not sync.
    async fn write_out(&mut self) -> Result<(), WalError> {
        let end = self.len();
        assert!(
            end <= self.allocated,
            "space is reserved before it is written"
        );
        assert!(
            self.tail.len() <= BATCH_BYTES_MAX + WRITE_BYTES_MAX,
            "the tail holds at most a batch"
        );
        let total = align_up(self.tail.len().max(1) as u64) as usize;
        let step = align_down(WRITE_BYTES_MAX as u64) as usize;
        assert!(step > 0, "a write holds at least one block");
        let mut at = 0;
        while at < total {
            let len = step.min(total - at);
            let data = &self.tail[at.min(self.tail.len())..(at + len).min(self.tail.len())];
            let mut buffer = Vec::with_capacity(len);
            buffer.extend_from_slice(data);
            buffer.resize(len, 0);
            let written = match injected(crate::test_hooks::DiskFault::Full) {
                Some(error) => Err(error),
                None => {
                    self.file
                        .write_at(buffer, self.block_start + at as u64)
                        .await
                }
            };
            let written = written.map_err(|source| {
                self.poisoned = true;
                io(&self.path, "write", source)
            })?;
            if written != len {
                // A short write (the disk filled up mid-write): the log is not what it
                // should be past here, and only a restart's recovery may decide what is.
                self.poisoned = true;
                return Err(io(
                    &self.path,
                    "write",
                    glommio::GlommioError::IoError(std::io::Error::new(
                        std::io::ErrorKind::WriteZero,
                        format!("wrote {written} of {len} bytes"),
                    )),
                ));
            }
            at += len;
        }
        let new_start = align_down(end);
        self.tail.drain(..(new_start - self.block_start) as usize);
        self.block_start = new_start;
        self.tail.shrink_to(TAIL_CAPACITY_KEEP_BYTES);
        Ok(())
    }

    /// `fdatasync`, once: a failure poisons the log, so the same pages are never synced again.
    async fn sync(&mut self, op: &'static str) -> Result<(), WalError> {
        assert!(!self.poisoned, "a poisoned log is never synced again");
        let result = match self.injected_eio() {
            Some(error) => Err(error),
            None => self.file.fdatasync().await,
        };
        result.map_err(|source| {
            self.poisoned = true;
            tracing::error!(
                path = %self.path,
                %source,
                "WAL sync failed: the log refuses further writes"
            );
            io(&self.path, op, source)
        })
    }

    #[cfg(test)]
    fn injected_eio(&mut self) -> Option<glommio::GlommioError<()>> {
        let n = self.syncs;
        self.syncs += 1;
        const EIO: i32 = 5;
        (self.options.faults.eio_at_sync == Some(n))
            .then(|| glommio::GlommioError::IoError(std::io::Error::from_raw_os_error(EIO)))
    }

    #[cfg(not(test))]
    fn injected_eio(&mut self) -> Option<glommio::GlommioError<()>> {
        injected(crate::test_hooks::DiskFault::Eio)
    }

    /// Bytes of valid log in the file, its header included.
    pub fn len(&self) -> u64 {
        self.block_start + self.tail.len() as u64
    }

    /// True when the log holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() <= FILE_HEADER_BYTES as u64
    }

    /// Replaces the whole log with `base` (each shard's snapshot, later entries and hard
    /// state): written to `<path>.next`, made durable, then renamed over the log, so a crash
    /// at any point leaves either the old log or the new one, never a mix.
    pub async fn rewrite(&mut self, base: &[Record]) -> Result<(), WalError> {
        if self.poisoned {
            return Err(self.poisoned_error());
        }
        // A snapshot over the limit is refused before a file is created for it.
        for record in base {
            pieces(record, u64::from(PAYLOAD_BYTES_MAX))
                .map_err(|source| self.encode_error(source))?;
        }
        let fresh = Wal::create(&PathBuf::from(&self.path), self.options, base).await?;
        let old = std::mem::replace(self, fresh);
        old.close().await
    }

    /// Closes the file.
    pub async fn close(self) -> Result<(), WalError> {
        let path = self.path;
        self.file
            .close()
            .await
            .map_err(|source| io(&path, "close", source))
    }

    fn poisoned_error(&self) -> WalError {
        WalError::Poisoned {
            path: self.path.clone(),
        }
    }

    fn encode_error(&self, source: EncodeError) -> WalError {
        WalError::Encode {
            path: self.path.clone(),
            source,
        }
    }

    fn refused(&self, error: RecoveryError) -> WalError {
        let path = self.path.clone();
        match error {
            RecoveryError::Header(reason) => WalError::Header { path, reason },
            RecoveryError::Corrupt { offset, reason } => WalError::Corrupt {
                path,
                offset,
                reason,
            },
        }
    }
}

/// The error a test's disk fault file asks for (`test_hooks`), if it asks for `fault`.
fn injected(fault: crate::test_hooks::DiskFault) -> Option<glommio::GlommioError<()>> {
    use crate::test_hooks::DiskFault;
    const EIO: i32 = 5;
    const ENOSPC: i32 = 28;
    let code = match crate::test_hooks::disk_fault()? {
        found if found != fault => return None,
        DiskFault::Eio => EIO,
        DiskFault::Full => ENOSPC,
    };
    Some(glommio::GlommioError::IoError(
        std::io::Error::from_raw_os_error(code),
    ))
}

fn io(path: &str, op: &'static str, source: glommio::GlommioError<()>) -> WalError {
    WalError::Io {
        path: path.to_owned(),
        op,
        source,
    }
}

fn fs(path: &str, op: &'static str, source: std::io::Error) -> WalError {
    WalError::Fs {
        path: path.to_owned(),
        op,
        source,
    }
}

fn next_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".next");
    name.into()
}

fn remove_if_present(path: &Path) -> Result<(), WalError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(fs(&path.display().to_string(), "remove", e))
        }
        _ => Ok(()),
    }
}

/// Makes a new or renamed directory entry durable.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod wal_test;
