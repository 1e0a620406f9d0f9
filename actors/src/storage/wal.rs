//! The per-core write-ahead log: one preallocated file, written with O_DIRECT through
//! glommio's `DmaFile`, one `fdatasync` per appended batch (group commit).
//!
//! Runs on the executor of the core that owns it (`!Send`); the core's shard actors hand it
//! their `PersistRequest`s and it appends everything ready in one batch.
//!
//! # Invariants
//! - `append` returns only after the batch is durable (unless fsync is off, which is for
//!   benchmarks only and reported loudly at open).
//! - The file is written in whole aligned blocks: the last partial block is rewritten with
//!   the new records after it, padded with zeros, so the log on disk is always
//!   `records… zeros…`.
//! - Opening truncates a torn or corrupt tail (and everything after it) before the first
//!   append, so a later crash can never expose stale bytes past the valid log.

use std::path::Path;

use glommio::io::{DmaFile, OpenOptions};
use thiserror::Error;

use super::format::{encode, Record};
use super::recovery::{recover, Recovery};

/// Bytes preallocated at a time (preallocated files halve fdatasync time here: MACHINE.md).
pub const PREALLOCATE_BYTES: u64 = 64 * 1024 * 1024;
/// Largest batch one append may write.
pub const BATCH_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Options of a WAL.
#[derive(Clone, Copy, Debug)]
pub struct WalOptions {
    /// `fdatasync` after every batch. Off only for benchmarks: acknowledged writes can be lost.
    pub fsync: bool,
    pub preallocate_bytes: u64,
}

impl Default for WalOptions {
    fn default() -> WalOptions {
        WalOptions {
            fsync: true,
            preallocate_bytes: PREALLOCATE_BYTES,
        }
    }
}

/// Why the WAL failed. Any I/O error is fatal for the core's shards: the caller stops them.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WalError {
    #[error("WAL I/O on {path}: {source}")]
    Io {
        path: String,
        source: glommio::GlommioError<()>,
    },
    #[error("reading WAL {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("batch of {bytes} bytes exceeds the limit of {max}")]
    BatchTooLarge { bytes: usize, max: usize },
}

/// An open write-ahead log.
pub struct Wal {
    file: DmaFile,
    path: String,
    options: WalOptions,
    /// Bytes from `block_start` to the end of the valid log (the partial last block).
    tail: Vec<u8>,
    block_start: u64,
    allocated: u64,
}

impl Wal {
    /// Opens (or creates) the log at `path`, replays it, and truncates any torn tail.
    pub async fn open(path: &Path, options: WalOptions) -> Result<(Wal, Recovery), WalError> {
        let name = path.display().to_string();
        let io = |source| WalError::Io {
            path: name.clone(),
            source,
        };
        // A rewrite that crashed before its rename left a partial `.next` file: discard it.
        let _ = std::fs::remove_file(next_path(path)); // absent in the normal case
                                                       // Replay with one blocking read: this happens once, at startup, before the core serves
                                                       // anything. (glommio's DMA reads return EOPNOTSUPP on this kernel; writes work.)
        let image = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(WalError::Read { path: name, source }),
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .dma_open(path)
            .await
            .map_err(io)?;
        let size = image.len() as u64;
        let recovery = recover(&image);
        let valid = recovery.valid_len as u64;
        let block_start = file.align_down(valid);
        let tail = image[block_start as usize..valid as usize].to_vec();
        let mut wal = Wal {
            file,
            path: name.clone(),
            options,
            tail,
            block_start,
            allocated: size,
        };
        if let Some(torn) = &recovery.torn {
            tracing::warn!(path = %name, offset = torn.offset, reason = %torn.reason, "WAL tail is torn or corrupt: truncating it");
            // Cut everything after the valid log; it is refilled with zeros by preallocation.
            wal.file
                .truncate(file_len_after(valid, &wal.file))
                .await
                .map_err(io)?;
            wal.allocated = file_len_after(valid, &wal.file);
            wal.write_tail().await?;
        }
        if !options.fsync {
            tracing::warn!(path = %wal.path, "WAL fsync is OFF: acknowledged writes can be lost on a crash (benchmarks only)");
        }
        Ok((wal, recovery))
    }

    /// Appends a batch of records and makes it durable with one `fdatasync`.
    pub async fn append(&mut self, records: &[Record]) -> Result<(), WalError> {
        let before = self.tail.len();
        for record in records {
            encode(record, &mut self.tail);
        }
        let bytes = self.tail.len() - before;
        if bytes > BATCH_BYTES_MAX {
            self.tail.truncate(before);
            return Err(WalError::BatchTooLarge {
                bytes,
                max: BATCH_BYTES_MAX,
            });
        }
        let end = self.block_start + self.tail.len() as u64;
        if end > self.allocated {
            let target =
                end.div_ceil(self.options.preallocate_bytes) * self.options.preallocate_bytes;
            let io = |source| WalError::Io {
                path: self.path.clone(),
                source,
            };
            self.file.pre_allocate(target, false).await.map_err(io)?;
            self.allocated = target;
        }
        self.write_tail().await?;
        // Keep only the new partial block for the next batch.
        let new_start = self.file.align_down(end);
        self.tail.drain(..(new_start - self.block_start) as usize);
        self.block_start = new_start;
        Ok(())
    }

    /// Writes `tail` at `block_start`, zero-padded to whole blocks, then syncs.
    async fn write_tail(&mut self) -> Result<(), WalError> {
        let io = |source| WalError::Io {
            path: self.path.clone(),
            source,
        };
        let len = self.file.align_up(self.tail.len().max(1) as u64) as usize;
        let mut buffer = self.file.alloc_dma_buffer(len);
        let bytes = buffer.as_bytes_mut();
        bytes[..self.tail.len()].copy_from_slice(&self.tail);
        bytes[self.tail.len()..].fill(0);
        let written = self
            .file
            .write_at(buffer, self.block_start)
            .await
            .map_err(io)?;
        assert_eq!(written, len, "a DMA write of whole blocks completes whole");
        if self.options.fsync {
            self.file.fdatasync().await.map_err(io)?;
        }
        Ok(())
    }

    /// Bytes of valid log in the file.
    pub fn len(&self) -> u64 {
        self.block_start + self.tail.len() as u64
    }

    /// True when the log holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces the whole log with `base` (each shard's snapshot, later entries and hard
    /// state): written to `<path>.next`, made durable, then renamed over the log, so a crash
    /// at any point leaves either the old log or the new one, never a mix.
    pub async fn rewrite(&mut self, base: &[Record]) -> Result<(), WalError> {
        let path = std::path::PathBuf::from(&self.path);
        let next = next_path(&path);
        let (mut fresh, _) = Wal::open(&next, self.options).await?;
        fresh.append(base).await?;
        let rename = |source| WalError::Read {
            path: self.path.clone(),
            source,
        };
        std::fs::rename(&next, &path).map_err(rename)?;
        if let Some(dir) = path.parent() {
            // The rename is durable only once the directory is.
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(rename)?;
        }
        fresh.path = self.path.clone();
        let old = std::mem::replace(self, fresh);
        old.close().await
    }

    /// Closes the file.
    pub async fn close(self) -> Result<(), WalError> {
        let path = self.path;
        self.file
            .close()
            .await
            .map_err(|source| WalError::Io { path, source })
    }
}

fn next_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".next");
    name.into()
}

fn file_len_after(valid: u64, file: &DmaFile) -> u64 {
    file.align_up(valid)
}

#[cfg(test)]
mod tests {
    use glommio::{LocalExecutorBuilder, Placement};

    use super::super::format::{WalEntry, WalHardState};
    use super::*;

    /// glommio registers io_uring buffers in locked memory; stay under the 8 MiB limit.
    fn run<T>(future: impl std::future::Future<Output = T>) -> T {
        let executor = LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(512 * 1024)
            .make()
            .expect("executor");
        executor.run(future)
    }

    fn entries(shard: u64, from: u64, n: u64) -> Record {
        let entries = (from..from + n)
            .map(|i| WalEntry {
                index: i,
                term: 1,
                entry_type: 0,
                data: vec![7; 100],
                context: vec![],
            })
            .collect();
        Record::Entries { shard, entries }
    }

    fn temp_path(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("treesync-wal-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir.join("wal")
    }

    #[test]
    fn appends_survive_reopen_and_batches_continue_the_log() {
        let path = temp_path("reopen");
        run(async {
            let options = WalOptions {
                fsync: true,
                preallocate_bytes: 1024 * 1024,
            };
            let (mut wal, recovery) = Wal::open(&path, options).await.expect("open");
            assert_eq!(recovery.records, 0);
            for batch in 0..50u64 {
                let hs = Record::HardState {
                    shard: 1,
                    state: WalHardState {
                        term: 1,
                        vote: 1,
                        commit: batch * 3,
                    },
                };
                wal.append(&[entries(1, batch * 3 + 1, 3), hs])
                    .await
                    .expect("append");
            }
            wal.close().await.expect("close");
            let (wal, recovery) = Wal::open(&path, options).await.expect("reopen");
            assert_eq!(recovery.torn, None);
            assert_eq!(recovery.records, 100);
            let log = &recovery.shards[&1];
            assert_eq!(log.entries.len(), 150);
            assert_eq!(log.hard_state.map(|h| h.commit), Some(147));
            wal.close().await.expect("close");
        });
        let _ = std::fs::remove_dir_all(path.parent().expect("has dir")); // best-effort cleanup
    }

    #[test]
    fn rewrite_replaces_the_log_with_its_base_and_appends_continue() {
        let path = temp_path("rewrite");
        let options = WalOptions {
            fsync: true,
            preallocate_bytes: 1024 * 1024,
        };
        run(async {
            let (mut wal, _) = Wal::open(&path, options).await.expect("open");
            for i in 0..20 {
                wal.append(&[entries(1, i * 5 + 1, 5)])
                    .await
                    .expect("append");
            }
            let big = wal.len();
            let hs = Record::HardState {
                shard: 1,
                state: WalHardState {
                    term: 2,
                    vote: 1,
                    commit: 100,
                },
            };
            wal.rewrite(&[entries(1, 1, 100), hs.clone()])
                .await
                .expect("rewrite");
            assert!(wal.len() < big, "the rewritten log is smaller");
            wal.append(&[entries(1, 101, 1)])
                .await
                .expect("append after rewrite");
            wal.close().await.expect("close");
            assert!(
                !next_path(&path).exists(),
                "the temporary file was renamed away"
            );
            let (_, recovery) = Wal::open(&path, options).await.expect("reopen");
            assert_eq!(recovery.torn, None);
            assert_eq!(recovery.shards[&1].entries.len(), 101);
            assert_eq!(recovery.shards[&1].hard_state.map(|h| h.commit), Some(100));
        });
        let _ = std::fs::remove_dir_all(path.parent().expect("has dir")); // best-effort cleanup
    }

    #[test]
    fn a_torn_tail_is_cut_and_appending_continues_after_the_valid_log() {
        let path = temp_path("torn");
        let options = WalOptions {
            fsync: true,
            preallocate_bytes: 1024 * 1024,
        };
        run(async {
            let (mut wal, _) = Wal::open(&path, options).await.expect("open");
            wal.append(&[entries(1, 1, 5)]).await.expect("append");
            wal.append(&[entries(1, 6, 5)]).await.expect("append");
            wal.close().await.expect("close");
        });
        // Simulate a torn write: damage the second record's last payload bytes.
        let mut bytes = std::fs::read(&path).expect("read");
        let valid = recover(&bytes).valid_len;
        bytes[valid - 12] ^= 0xFF;
        std::fs::write(&path, &bytes).expect("write");
        run(async {
            let (mut wal, recovery) = Wal::open(&path, options).await.expect("open");
            assert!(recovery.torn.is_some(), "the damaged record is detected");
            assert_eq!(
                recovery.shards[&1].entries.len(),
                5,
                "only the first record survives"
            );
            wal.append(&[entries(1, 6, 2)])
                .await
                .expect("append after cut");
            wal.close().await.expect("close");
            let (_, recovery) = Wal::open(&path, options).await.expect("reopen");
            assert_eq!(recovery.torn, None);
            assert_eq!(recovery.shards[&1].entries.len(), 7);
        });
        let _ = std::fs::remove_dir_all(path.parent().expect("has dir")); // best-effort cleanup
    }
}
