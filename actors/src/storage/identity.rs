//! The identity of a data directory: which cluster, node and shard layout wrote it, and a
//! lock so that one process at a time uses it (DESIGN.md, "Durability and recovery").
//!
//! `identity` is a small text file written (and fsynced, with its directory) the first time
//! a server starts on an empty directory. Every later start compares it with the server's
//! configuration and refuses a mismatch with a message naming both: a changed `--id`,
//! `--peers`, `--cores` or `--shards` would otherwise start empty replicas beside the old
//! data, or replay one node's log as another's.
//!
//! # Invariants
//! - While a `DirLock` lives, no other process (or other server in this process) holds the
//!   same directory: the lock is an exclusive `flock` on `identity.lock`, released by the OS
//!   when the process dies, so a `kill -9` never leaves a stale lock.
//! - A directory with WAL files but no identity is refused too (it predates identities or
//!   lost the file): guessing whose it is could replay it into the wrong replicas.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use thiserror::Error;

const FILE: &str = "identity";
const LOCK: &str = "identity.lock";
/// Version 2: nodes are placed by the spine (`shard::SPINE`); a version 1 directory holds
/// its shards' data where this build would not look for it, so it is refused.
const FORMAT: &str = "treesync-identity 2";

/// Who wrote a data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub cluster_id: u64,
    pub node_id: u64,
    pub cores: usize,
    pub shards: u32,
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum IdentityError {
    #[error("data directory {dir} is in use by another treesync process")]
    InUse { dir: PathBuf },
    #[error(
        "data directory {dir} belongs to {found}, but this server is {expected}: start it with \
         the configuration that wrote it, or give it another directory"
    )]
    Mismatch {
        dir: PathBuf,
        found: String,
        expected: String,
    },
    #[error("data directory {dir} holds WAL files but no identity file: refusing to guess whose they are")]
    Unidentified { dir: PathBuf },
    #[error("data directory {dir}: unreadable identity file: {reason}")]
    Malformed { dir: PathBuf, reason: String },
    #[error("data directory {dir}: {op}: {source}")]
    Io {
        dir: PathBuf,
        op: &'static str,
        source: std::io::Error,
    },
}

/// Holds a data directory for this process; dropping it releases the directory.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "node {} of cluster {:#018x} with {} cores and {} shards",
            self.node_id, self.cluster_id, self.cores, self.shards
        )
    }
}

impl Identity {
    fn to_text(&self) -> String {
        format!(
            "{FORMAT}\ncluster={:#018x}\nnode={}\ncores={}\nshards={}\n",
            self.cluster_id, self.node_id, self.cores, self.shards
        )
    }

    fn parse(text: &str) -> Result<Identity, String> {
        let mut lines = text.lines();
        match lines.next() {
            Some(FORMAT) => {}
            Some(older) if older.starts_with("treesync-identity ") => {
                return Err(format!(
                    "written by another treesync version ({older:?}, this build reads \
                     {FORMAT:?}); its data is placed on other shards: use a new directory \
                     and let the replica catch up from its peers"
                ))
            }
            _ => return Err(format!("not a {FORMAT:?} file")),
        }
        let mut field = |name: &str| -> Result<String, String> {
            let line = lines.next().ok_or(format!("no {name}"))?;
            let value = line.strip_prefix(name).and_then(|l| l.strip_prefix('='));
            value
                .map(str::to_owned)
                .ok_or(format!("expected {name}=…, found {line:?}"))
        };
        let cluster = field("cluster")?;
        let cluster_id = u64::from_str_radix(cluster.trim_start_matches("0x"), 16)
            .map_err(|e| format!("cluster {cluster:?}: {e}"))?;
        let number = |text: String| text.parse::<u64>().map_err(|e| format!("{text:?}: {e}"));
        let node_id = number(field("node")?)?;
        let cores = number(field("cores")?)? as usize;
        let shards = u32::try_from(number(field("shards")?)?).map_err(|e| e.to_string())?;
        Ok(Identity {
            cluster_id,
            node_id,
            cores,
            shards,
        })
    }

    /// Locks `dir` and checks (or, in a directory without WAL files, records) that it
    /// belongs to this identity.
    pub fn claim(&self, dir: &Path) -> Result<DirLock, IdentityError> {
        let io = |op| {
            move |source| IdentityError::Io {
                dir: dir.to_owned(),
                op,
                source,
            }
        };
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK))
            .map_err(io("open the lock file"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(IdentityError::InUse {
                    dir: dir.to_owned(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io("lock")(e)),
        }
        let path = dir.join(FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let found = Identity::parse(&text).map_err(|reason| IdentityError::Malformed {
                    dir: dir.to_owned(),
                    reason,
                })?;
                if found != *self {
                    return Err(IdentityError::Mismatch {
                        dir: dir.to_owned(),
                        found: found.to_string(),
                        expected: self.to_string(),
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if has_wal_files(dir).map_err(io("list"))? {
                    return Err(IdentityError::Unidentified {
                        dir: dir.to_owned(),
                    });
                }
                self.write(dir).map_err(io("write the identity file"))?;
            }
            Err(e) => return Err(io("read the identity file")(e)),
        }
        Ok(DirLock { _file: lock })
    }

    /// Writes `identity` durably: a temporary file, fsync, rename, fsync of the directory.
    fn write(&self, dir: &Path) -> std::io::Result<()> {
        let next = dir.join(format!("{FILE}.next"));
        let mut file = File::create(&next)?;
        file.write_all(self.to_text().as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&next, dir.join(FILE))?;
        File::open(dir)?.sync_all()
    }
}

fn has_wal_files(dir: &Path) -> std::io::Result<bool> {
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        if name.to_string_lossy().ends_with(".wal") {
            return Ok(true);
        }
    }
    Ok(false)
}
