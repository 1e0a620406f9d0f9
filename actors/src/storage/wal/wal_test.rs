//! Tests of `Wal` on a real file (glommio needs one): durability, refusal and recovery.

use glommio::{LocalExecutorBuilder, Placement};

use super::super::format::{decode_at, WalEntry, WalHardState, WalSnapshot};
use super::super::header::decode_header;
use super::*;

/// glommio registers io_uring buffers in locked memory; stay under the 8 MiB limit.
fn run<T>(future: impl std::future::Future<Output = T>) -> T {
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(512 * 1024)
        .make()
        .expect("executor");
    executor.run(future)
}

fn entries_of(shard: u64, from: u64, n: u64, bytes: usize) -> Record {
    let entries = (from..from + n)
        .map(|i| WalEntry {
            index: i,
            term: 1,
            entry_type: 0,
            data: vec![i as u8; bytes],
            context: vec![],
        })
        .collect();
    Record::Entries { shard, entries }
}

fn entries(shard: u64, from: u64, n: u64) -> Record {
    entries_of(shard, from, n, 100)
}

fn hard_state(commit: u64) -> Record {
    Record::HardState {
        shard: 1,
        state: WalHardState {
            term: 1,
            vote: 1,
            commit,
        },
    }
}

/// A directory of its own per test, removed when the test ends (also on panic).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("treesync-wal-{}-{name}", std::process::id()));
        // A leftover from an earlier run with the same pid is stale.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    fn wal(&self) -> PathBuf {
        self.0.join("wal")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0); // best-effort cleanup
    }
}

fn options() -> WalOptions {
    WalOptions {
        preallocate_bytes: 1024 * 1024,
        cluster_id: 7,
        ..WalOptions::default()
    }
}

/// Writes three batches of one shard and returns the end offset of each.
fn three_batches(path: &Path) -> Vec<u64> {
    run(async {
        let (mut wal, _) = Wal::open(path, options()).await.expect("open");
        let mut ends = Vec::new();
        for batch in 0..3 {
            wal.append(&[entries(1, batch * 5 + 1, 5), hard_state(batch * 5)])
                .await
                .expect("append");
            ends.push(wal.len());
        }
        wal.close().await.expect("close");
        ends
    })
}

#[test]
fn appends_survive_reopen_and_batches_continue_the_log() {
    let dir = TempDir::new("reopen");
    let path = dir.wal();
    run(async {
        let (mut wal, recovery) = Wal::open(&path, options()).await.expect("open");
        assert_eq!(recovery.records, 0);
        assert!(wal.is_empty());
        for batch in 0..50u64 {
            wal.append(&[entries(1, batch * 3 + 1, 3), hard_state(batch * 3)])
                .await
                .expect("append");
        }
        wal.close().await.expect("close");
        let (wal, recovery) = Wal::open(&path, options()).await.expect("reopen");
        assert_eq!(recovery.torn, None);
        assert_eq!(recovery.records, 100);
        let log = &recovery.shards[&1];
        assert_eq!(log.entries.len(), 150);
        assert_eq!(log.hard_state.map(|h| h.commit), Some(147));
        wal.close().await.expect("close");
    });
}

#[test]
fn a_new_wal_gets_its_header_durable_under_its_final_name() {
    let dir = TempDir::new("create");
    let path = dir.wal();
    run(async {
        let (wal, recovery) = Wal::open(&path, options()).await.expect("open");
        assert_eq!(recovery.cluster_id, 7);
        assert_eq!(wal.len(), FILE_HEADER_BYTES as u64);
        wal.close().await.expect("close");
    });
    assert!(
        !next_path(&path).exists(),
        "created under .next, then renamed"
    );
    let bytes = std::fs::read(&path).expect("the file exists");
    let header = decode_header(&bytes).expect("a valid header");
    assert_eq!(header.cluster_id, 7);
    assert!(bytes[FILE_HEADER_BYTES..].iter().all(|b| *b == 0));
}

#[test]
fn another_clusters_wal_is_refused() {
    let dir = TempDir::new("cluster");
    let path = dir.wal();
    three_batches(&path);
    let other = WalOptions {
        cluster_id: 8,
        ..options()
    };
    let refused = run(Wal::open(&path, other)).map(|_| ());
    assert!(
        matches!(
            refused,
            Err(WalError::ClusterMismatch {
                expected: 8,
                found: 7,
                ..
            })
        ),
        "{refused:?}"
    );
}

#[test]
fn a_wal_with_a_bad_header_is_refused() {
    let dir = TempDir::new("header");
    let path = dir.wal();
    three_batches(&path);
    let good = std::fs::read(&path).expect("read");
    for (at, reason) in [
        (0, "bad magic"),
        (8, "unsupported format version"),
        (20, "checksum"),
    ] {
        let mut bytes = good.clone();
        bytes[at] ^= 0x10;
        std::fs::write(&path, &bytes).expect("write");
        let refused = run(Wal::open(&path, options())).map(|_| ());
        assert!(
            matches!(refused, Err(WalError::Header { .. })),
            "{refused:?}"
        );
        let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains(reason), "{message}");
        assert_eq!(std::fs::read(&path).expect("read"), bytes, "left untouched");
    }
}

/// The defect this guards against: a damaged record in the middle of the log was taken for
/// a torn tail, and everything after it was deleted at open.
#[test]
fn a_damaged_record_before_the_last_write_fails_open_with_path_and_offset() {
    let dir = TempDir::new("corrupt");
    let path = dir.wal();
    let ends = three_batches(&path);
    let mut bytes = std::fs::read(&path).expect("read");
    // The second batch starts where the first ended; damage its entries' payload.
    let offset = ends[0];
    bytes[offset as usize + 40] ^= 0x01;
    std::fs::write(&path, &bytes).expect("write");
    let refused = run(Wal::open(&path, options())).map(|_| ());
    let message = match &refused {
        Err(e @ WalError::Corrupt { offset: at, .. }) if *at == offset => e.to_string(),
        other => panic!("expected corruption at {offset}: {other:?}"),
    };
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains(&format!("byte {offset}")), "{message}");
    assert_eq!(
        std::fs::read(&path).expect("read"),
        bytes,
        "nothing was truncated"
    );
}

#[test]
fn a_torn_tail_is_cut_and_appending_continues_after_the_valid_log() {
    let dir = TempDir::new("torn");
    let path = dir.wal();
    let ends = three_batches(&path);
    // A torn last write: damage the third batch's entries.
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[ends[1] as usize + 40] ^= 0xFF;
    std::fs::write(&path, &bytes).expect("write");
    run(async {
        let (mut wal, recovery) = Wal::open(&path, options()).await.expect("open");
        assert_eq!(recovery.torn.map(|t| t.offset as u64), Some(ends[1]));
        assert_eq!(recovery.shards[&1].entries.len(), 10, "two batches survive");
        assert_eq!(wal.len(), ends[1]);
        wal.append(&[entries(1, 11, 2)])
            .await
            .expect("append after cut");
        wal.close().await.expect("close");
        let (_, recovery) = Wal::open(&path, options()).await.expect("reopen");
        assert_eq!(recovery.torn, None);
        assert_eq!(recovery.shards[&1].entries.len(), 12);
    });
}

#[test]
fn rewrite_replaces_the_log_with_its_base_and_appends_continue() {
    let dir = TempDir::new("rewrite");
    let path = dir.wal();
    run(async {
        let (mut wal, _) = Wal::open(&path, options()).await.expect("open");
        for i in 0..20 {
            wal.append(&[entries(1, i * 5 + 1, 5)])
                .await
                .expect("append");
        }
        let big = wal.len();
        wal.rewrite(&[entries(1, 1, 100), hard_state(100)])
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
        let (_, recovery) = Wal::open(&path, options()).await.expect("reopen");
        assert_eq!(recovery.torn, None);
        assert_eq!(recovery.cluster_id, 7, "the rewrite wrote the header");
        assert_eq!(recovery.shards[&1].entries.len(), 101);
        assert_eq!(recovery.shards[&1].hard_state.map(|h| h.commit), Some(100));
    });
}

/// The defect this guards against: a batch over 16 MiB stopped the core.
#[test]
fn a_24_mib_batch_is_appended_and_recovered_whole() {
    let dir = TempDir::new("large");
    let path = dir.wal();
    let mib = 1024 * 1024;
    let batch: Vec<Record> = (0..24)
        .map(|i| entries_of(1 + i % 2, i / 2 + 1, 1, mib))
        .collect();
    run(async {
        let (mut wal, _) = Wal::open(&path, options()).await.expect("open");
        wal.append(&[entries(3, 1, 1)]).await.expect("append");
        wal.append(&batch).await.expect("a large batch");
        assert!(wal.len() > 24 * mib as u64);
        wal.append(&[entries(3, 2, 1)]).await.expect("append after");
        wal.close().await.expect("close");
        let (wal, recovery) = Wal::open(&path, options()).await.expect("reopen");
        assert_eq!(recovery.torn, None);
        assert_eq!(recovery.records, 26);
        for shard in [1, 2] {
            let log = &recovery.shards[&shard];
            assert_eq!(log.entries.len(), 12);
            assert!(log.entries.iter().all(|e| e.data.len() == mib));
        }
        assert_eq!(recovery.shards[&3].entries.len(), 2);
        wal.close().await.expect("close");
    });
}

/// fsyncgate: after a failed fdatasync the dirty pages may be gone while marked clean; a
/// retry could succeed over lost data. The log must refuse, not retry.
#[test]
fn a_failed_fdatasync_poisons_the_wal_and_is_never_retried() {
    let dir = TempDir::new("eio");
    let path = dir.wal();
    // Sync 0 makes the new file's header durable; sync 1 is the first append's.
    let faulty = WalOptions {
        faults: Faults {
            eio_at_sync: Some(1),
        },
        ..options()
    };
    run(async {
        let (mut wal, _) = Wal::open(&path, faulty).await.expect("open");
        let failed = wal.append(&[entries(1, 1, 1)]).await;
        assert!(
            matches!(
                failed,
                Err(WalError::Io {
                    op: "fdatasync",
                    ..
                })
            ),
            "{failed:?}"
        );
        for _ in 0..3 {
            let refused = wal.append(&[entries(1, 1, 1)]).await;
            assert!(
                matches!(refused, Err(WalError::Poisoned { .. })),
                "{refused:?}"
            );
        }
        let refused = wal.rewrite(&[entries(1, 1, 1)]).await;
        assert!(
            matches!(refused, Err(WalError::Poisoned { .. })),
            "{refused:?}"
        );
        assert_eq!(wal.syncs, 2, "no sync after the failed one");
        wal.close().await.expect("close");
    });
}

#[test]
fn open_refuses_to_start_when_the_sync_before_replay_fails() {
    let dir = TempDir::new("eio-open");
    let path = dir.wal();
    three_batches(&path);
    let faulty = WalOptions {
        faults: Faults {
            eio_at_sync: Some(0),
        },
        ..options()
    };
    let refused = run(Wal::open(&path, faulty)).map(|_| ());
    assert!(
        matches!(
            refused,
            Err(WalError::Io {
                op: "fdatasync before replay",
                ..
            })
        ),
        "{refused:?}"
    );
}

#[test]
fn the_first_record_follows_the_header() {
    let dir = TempDir::new("layout");
    let path = dir.wal();
    three_batches(&path);
    let bytes = std::fs::read(&path).expect("read");
    let salt = decode_header(&bytes).expect("header").salt;
    let (first, _) = decode_at(&bytes[FILE_HEADER_BYTES..], salt).expect("a record");
    assert_eq!(first, entries(1, 1, 5));
}

const MIB: usize = 1024 * 1024;

/// `bytes` of data whose 1 MiB blocks differ (each starts with its number), so a part
/// written out of place, twice or not at all shows. Built from blocks: a loop per byte is
/// slow in a debug build.
fn distinct_bytes(bytes: usize) -> Vec<u8> {
    let block: Vec<u8> = (0..(MIB / 8) as u64)
        .flat_map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes())
        .collect();
    let mut data = Vec::with_capacity(bytes);
    for number in 0u64.. {
        let at = data.len();
        if at == bytes {
            break;
        }
        data.extend_from_slice(&block[..MIB.min(bytes - at)]);
        let mark = number.to_le_bytes();
        let marked = mark.len().min(data.len() - at);
        data[at..at + marked].copy_from_slice(&mark[..marked]);
    }
    data
}

fn snapshot_of(bytes: usize) -> WalSnapshot {
    WalSnapshot {
        index: 500,
        term: 4,
        voters: vec![1, 2, 3],
        data: distinct_bytes(bytes),
    }
}

fn hard_state_at(term: u64, commit: u64) -> Record {
    Record::HardState {
        shard: 1,
        state: WalHardState {
            term,
            vote: 2,
            commit,
        },
    }
}

/// The defect this guards against: a snapshot over the 64 MiB record limit (a follower
/// caught up with a large tree) failed the append, stopped the process, and the leader sent
/// it again after the restart: a crash loop.
#[test]
fn a_100_mib_snapshot_is_appended_and_recovered_byte_identical() {
    let dir = TempDir::new("snapshot");
    let path = dir.wal();
    // Not a multiple of the part size, nor of 8: the last part is short and unaligned.
    let snapshot = snapshot_of(100 * MIB + 12_345);
    run(async {
        let (mut wal, _) = Wal::open(&path, options()).await.expect("open");
        wal.append(&[entries(2, 1, 3)]).await.expect("append");
        let caught_up = Record::Snapshot {
            shard: 1,
            snapshot: snapshot.clone(),
        };
        wal.append(&[caught_up, hard_state_at(4, 500)])
            .await
            .expect("a snapshot over the record limit");
        assert!(wal.len() > 100 * MIB as u64);
        wal.append(&[entries(1, 501, 2)])
            .await
            .expect("append after the snapshot");
        wal.close().await.expect("close");
        let (wal, recovery) = Wal::open(&path, options()).await.expect("reopen");
        assert_eq!(recovery.torn, None);
        // Entries, two parts of at most 64 MiB, the hard state, entries.
        assert_eq!(recovery.records, 5);
        let log = &recovery.shards[&1];
        let recovered = log.snapshot.as_ref().expect("the snapshot");
        assert_eq!((recovered.index, recovered.term), (500, 4));
        assert_eq!(recovered.voters, [1, 2, 3]);
        assert_eq!(recovered.data.len(), snapshot.data.len());
        assert!(recovered.data == snapshot.data, "byte-identical data");
        assert_eq!(
            log.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
            [501, 502]
        );
        assert_eq!(recovery.shards[&2].entries.len(), 3);
        wal.close().await.expect("close");
    });
}

/// The same defect on the rewrite path: a core rewriting its WAL writes each shard's
/// snapshot, and one over 64 MiB failed the rewrite.
#[test]
fn rewrite_keeps_a_snapshot_over_the_record_limit() {
    let dir = TempDir::new("rewrite-snapshot");
    let path = dir.wal();
    let snapshot = snapshot_of(PAYLOAD_BYTES_MAX as usize + MIB + 7);
    run(async {
        let (mut wal, _) = Wal::open(&path, options()).await.expect("open");
        for i in 0..20 {
            wal.append(&[entries(1, i * 5 + 1, 5)])
                .await
                .expect("append");
        }
        let base = [
            Record::Snapshot {
                shard: 1,
                snapshot: snapshot.clone(),
            },
            entries(1, 501, 3),
            hard_state_at(4, 503),
        ];
        wal.rewrite(&base).await.expect("rewrite");
        wal.append(&[entries(1, 504, 1)])
            .await
            .expect("append after rewrite");
        wal.close().await.expect("close");
        let (wal, recovery) = Wal::open(&path, options()).await.expect("reopen");
        assert_eq!(recovery.torn, None);
        let log = &recovery.shards[&1];
        let recovered = log.snapshot.as_ref().expect("the snapshot");
        assert!(
            recovered == &snapshot,
            "the rewritten snapshot, byte-identical"
        );
        assert_eq!(
            log.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
            [501, 502, 503, 504]
        );
        wal.close().await.expect("close");
    });
}

#[test]
fn a_snapshot_over_snapshot_bytes_max_is_refused_and_the_log_is_unchanged() {
    let dir = TempDir::new("snapshot-max");
    let path = dir.wal();
    // calloc'd zeros: refused before a byte of it is read.
    let huge = Record::Snapshot {
        shard: 1,
        snapshot: WalSnapshot {
            index: 9,
            term: 1,
            voters: vec![1],
            data: vec![0; SNAPSHOT_BYTES_MAX as usize + 1],
        },
    };
    run(async {
        let (mut wal, _) = Wal::open(&path, options()).await.expect("open");
        wal.append(&[entries(1, 1, 2)]).await.expect("append");
        let len = wal.len();
        let batch = [hard_state(1), huge];
        for refused in [wal.append(&batch).await, wal.rewrite(&batch[1..]).await] {
            assert!(
                matches!(
                    refused,
                    Err(WalError::Encode {
                        source: EncodeError::SnapshotTooLarge { shard: 1, .. },
                        ..
                    })
                ),
                "{refused:?}"
            );
            assert_eq!(wal.len(), len, "nothing was written");
        }
        assert!(
            !next_path(&path).exists(),
            "no file was made for the rewrite"
        );
        wal.append(&[entries(1, 3, 1)])
            .await
            .expect("the log still takes appends");
        wal.close().await.expect("close");
        let (wal, recovery) = Wal::open(&path, options()).await.expect("reopen");
        assert_eq!(recovery.torn, None);
        assert_eq!(recovery.shards[&1].entries.len(), 3);
        let commit = recovery.shards[&1].hard_state.map(|h| h.commit);
        assert_eq!(
            commit,
            Some(0),
            "the refused batch's hard state is not there"
        );
        wal.close().await.expect("close");
    });
}

#[test]
fn an_unsynced_batch_shares_the_next_synced_batchs_torn_tail() {
    let dir = TempDir::new("unsynced");
    let path = dir.wal();
    let ends = run(async {
        let (mut wal, _) = Wal::open(&path, options()).await.expect("open");
        wal.append(&[entries(1, 1, 5), hard_state(0)])
            .await
            .expect("a synced batch");
        let synced = wal.len();
        // Only the commit index moved: written, synced by the next append.
        wal.append_unsynced(&[hard_state(5)])
            .await
            .expect("an unsynced batch");
        let unsynced = wal.len();
        wal.append(&[entries(1, 6, 5)])
            .await
            .expect("the next sync");
        let end = wal.len();
        wal.close().await.expect("close");
        [synced, unsynced, end]
    });
    // Whole, the three batches replay.
    run(async {
        let (wal, recovery) = Wal::open(&path, options()).await.expect("open");
        assert_eq!(recovery.torn, None);
        assert_eq!(recovery.shards[&1].entries.len(), 10);
        wal.close().await.expect("close");
    });
    // Before that sync their blocks could land in any order: the unsynced batch damaged
    // with the next one whole is a torn tail of both, not corruption before the tail.
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[ends[0] as usize + 40] ^= 0xFF;
    std::fs::write(&path, &bytes).expect("write");
    run(async {
        let (wal, recovery) = Wal::open(&path, options()).await.expect("open");
        assert_eq!(recovery.torn.map(|t| t.offset as u64), Some(ends[0]));
        assert_eq!(
            recovery.shards[&1].entries.len(),
            5,
            "the synced batch survives"
        );
        assert_eq!(recovery.shards[&1].hard_state.map(|h| h.commit), Some(0));
        assert_eq!(wal.len(), ends[0]);
        wal.close().await.expect("close");
    });
    assert!(ends[1] < ends[2]);
}

#[test]
fn a_synced_batch_stays_corruption_when_a_later_one_follows() {
    let dir = TempDir::new("synced-then-unsynced");
    let path = dir.wal();
    let first_end = run(async {
        let (mut wal, _) = Wal::open(&path, options()).await.expect("open");
        wal.append(&[entries(1, 1, 5)]).await.expect("synced");
        let end = wal.len();
        wal.append_unsynced(&[hard_state(5)])
            .await
            .expect("unsynced");
        wal.append(&[entries(1, 6, 5)]).await.expect("synced");
        wal.close().await.expect("close");
        end
    });
    // Damage inside the first (synced) batch: the later batches prove it was durable.
    let mut bytes = std::fs::read(&path).expect("read");
    let offset = FILE_HEADER_BYTES + 40;
    assert!((offset as u64) < first_end);
    bytes[offset] ^= 0xFF;
    std::fs::write(&path, &bytes).expect("write");
    let refused = run(Wal::open(&path, options())).map(|_| ());
    assert!(
        matches!(refused, Err(WalError::Corrupt { .. })),
        "{refused:?}"
    );
}
