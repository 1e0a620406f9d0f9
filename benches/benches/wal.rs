//! WAL append + fdatasync of one small batch (one entry of ~200 bytes and a hard state):
//! the durability floor of a single write; and what a write costs each replica's WAL in
//! all: the entry's batch, then the batch that moves the commit index, with its own sync
//! (before 2026-12-02) or unsynced (`Wal::append_unsynced`, now). Runs on one unpinned
//! glommio executor, on the file system of the target directory.

use criterion::{criterion_group, criterion_main, Criterion};
use glommio::{LocalExecutorBuilder, Placement};
use treesync_actors::storage::format::{Record, WalEntry, WalHardState};
use treesync_actors::storage::wal::{Wal, WalOptions};

fn batch(index: u64) -> [Record; 2] {
    let entry = WalEntry {
        index,
        term: 1,
        entry_type: 0,
        data: vec![42; 200],
        context: vec![],
    };
    let hard_state = WalHardState {
        term: 1,
        vote: 1,
        commit: index,
    };
    [
        Record::Entries {
            shard: 1,
            entries: vec![entry],
        },
        Record::HardState {
            shard: 1,
            state: hard_state,
        },
    ]
}

fn bench(c: &mut Criterion) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-wal");
    let _ = std::fs::remove_dir_all(&dir); // a leftover from an earlier run is fine to lose
    std::fs::create_dir_all(&dir).expect("bench dir");
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(512 * 1024)
        .make()
        .expect("executor");
    for (name, fsync) in [
        ("wal/append_fdatasync_1_entry", true),
        ("wal/append_no_fsync_1_entry", false),
    ] {
        let path = dir.join(name.replace('/', "_"));
        let mut wal = executor
            .run(Wal::open(
                &path,
                WalOptions {
                    fsync,
                    ..WalOptions::default()
                },
            ))
            .expect("open")
            .0;
        let mut index = 0;
        c.bench_function(name, |b| {
            b.iter(|| {
                index += 1;
                executor.run(wal.append(&batch(index))).expect("append")
            })
        });
        executor.run(wal.close()).expect("close");
    }
    for (name, commit_synced) in [
        ("wal/one_write_entry_then_commit_synced", true),
        ("wal/one_write_entry_then_commit_unsynced", false),
    ] {
        let path = dir.join(name.replace('/', "_"));
        let mut wal = executor
            .run(Wal::open(&path, WalOptions::default()))
            .expect("open")
            .0;
        let mut index = 0;
        c.bench_function(name, |b| {
            b.iter(|| {
                index += 1;
                let [entries, _] = batch(index);
                let [_, commit] = batch(index);
                executor.run(async {
                    wal.append(&[entries]).await.expect("append");
                    match commit_synced {
                        true => wal.append(&[commit]).await,
                        false => wal.append_unsynced(&[commit]).await,
                    }
                    .expect("append the commit")
                })
            })
        });
        executor.run(wal.close()).expect("close");
    }
    let _ = std::fs::remove_dir_all(&dir); // best-effort cleanup
}

criterion_group!(benches, bench);
criterion_main!(benches);
