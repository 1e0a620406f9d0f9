//! Between the engine's persist requests and the WAL's records: what a core writes for each
//! request, and how a shard's Raft storage is rebuilt from what recovery read back.

use raft::prelude::{ConfState, Entry, EntryType, HardState, Snapshot};
use raft::storage::MemStorage;
use treesync_core::replica::PersistRequest;

use crate::storage::format::{Record, WalEntry, WalHardState, WalSnapshot};
use crate::storage::recovery::ShardLog;

/// Rebuilds a shard's Raft storage (and its last snapshot) from what the WAL recovered.
pub fn storage_from(log: Option<&ShardLog>, peers: Vec<u64>) -> (MemStorage, Option<Snapshot>) {
    let storage = MemStorage::new();
    let mut snapshot = None;
    {
        let mut core = storage.wl();
        core.set_conf_state(ConfState::from((peers, vec![])));
        if let Some(log) = log {
            if let Some(s) = &log.snapshot {
                let mut snap = Snapshot {
                    data: s.data.clone().into(),
                    ..Default::default()
                };
                let metadata = snap.mut_metadata();
                (metadata.index, metadata.term) = (s.index, s.term);
                metadata.set_conf_state(ConfState::from((s.voters.clone(), vec![])));
                core.apply_snapshot(snap.clone())
                    .expect("a fresh storage takes any snapshot");
                snapshot = Some(snap);
            }
            let entries: Vec<Entry> = log.entries.iter().map(to_raft_entry).collect();
            core.append(&entries)
                .expect("recovered logs are contiguous after their snapshot");
            if let Some(hs) = log.hard_state {
                let mut state = HardState::default();
                (state.term, state.vote, state.commit) = (hs.term, hs.vote, hs.commit);
                core.set_hardstate(state);
            }
        }
    }
    (storage, snapshot)
}

fn to_raft_entry(e: &WalEntry) -> Entry {
    let mut entry = Entry {
        index: e.index,
        term: e.term,
        data: e.data.clone().into(),
        context: e.context.clone().into(),
        ..Default::default()
    };
    entry.set_entry_type(match e.entry_type {
        1 => EntryType::EntryConfChange,
        2 => EntryType::EntryConfChangeV2,
        _ => EntryType::EntryNormal,
    });
    entry
}

/// Appends the records that persist `request` for `shard`: its snapshot whole (the WAL writes
/// it as parts of at most one record each: `storage::batch`), then its entries, then its
/// hard state. A torn batch keeps a prefix of them, and recovery raises a hard state that a
/// kept snapshot or entries got ahead of (`storage::recovery`).
pub fn to_records(shard: u32, request: &PersistRequest, records: &mut Vec<Record>) {
    let shard = u64::from(shard);
    if let Some(snap) = &request.snapshot {
        let metadata = snap.get_metadata();
        let snapshot = WalSnapshot {
            index: metadata.index,
            term: metadata.term,
            voters: metadata.get_conf_state().voters.clone(),
            data: snap.data.to_vec(),
        };
        records.push(Record::Snapshot { shard, snapshot });
    }
    if !request.entries.is_empty() {
        let entries = request
            .entries
            .iter()
            .map(|e| WalEntry {
                index: e.index,
                term: e.term,
                entry_type: u8::try_from(e.get_entry_type() as i32).expect("entry types fit u8"),
                data: e.data.to_vec(),
                context: e.context.to_vec(),
            })
            .collect();
        records.push(Record::Entries { shard, entries });
    }
    if let Some(hs) = &request.hard_state {
        records.push(Record::HardState {
            shard,
            state: WalHardState {
                term: hs.term,
                vote: hs.vote,
                commit: hs.commit,
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use raft::prelude::{HardState, Snapshot};
    use raft::Storage;

    use super::*;
    use crate::storage::batch::encode_batch_limited;
    use crate::storage::header::FileHeader;
    use crate::storage::recovery::recover;

    /// The runtime's path for a snapshot over one record: persist request, records, parts
    /// (split at 4 KiB here; at 64 MiB in `storage::wal`'s tests), recovery, Raft storage.
    #[test]
    fn a_snapshot_request_written_as_parts_is_rebuilt_by_storage_from() {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
        let mut snapshot = Snapshot {
            data: data.clone().into(),
            ..Default::default()
        };
        let metadata = snapshot.mut_metadata();
        (metadata.index, metadata.term) = (30, 3);
        metadata.set_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
        let mut hard_state = HardState::default();
        (hard_state.term, hard_state.vote, hard_state.commit) = (3, 2, 30);
        let entry = Entry {
            index: 31,
            term: 3,
            data: vec![9; 10].into(),
            ..Default::default()
        };
        let request = PersistRequest {
            number: 1,
            entries: vec![entry],
            hard_state: Some(hard_state.clone()),
            snapshot: Some(snapshot),
            must_sync: true,
        };
        let mut records = Vec::new();
        to_records(4, &request, &mut records);
        let header = FileHeader::new(1, 5);
        let mut image = header.to_bytes().to_vec();
        let start = image.len() as u64;
        encode_batch_limited(&records, header.salt, start, 4096, &mut image).expect("fits");
        let recovery = recover(&image).expect("a clean image");
        assert!(recovery.records > 12, "{} records", recovery.records);
        let (storage, recovered) = storage_from(recovery.shards.get(&4), vec![1, 2, 3]);
        let recovered = recovered.expect("the snapshot");
        assert!(recovered.data[..] == data[..], "byte-identical data");
        let metadata = recovered.get_metadata();
        assert_eq!((metadata.index, metadata.term), (30, 3));
        assert_eq!(metadata.get_conf_state().voters, [1, 2, 3]);
        let state = storage.initial_state().expect("memory");
        assert_eq!(state.hard_state, hard_state);
        assert_eq!(storage.last_index().expect("memory"), 31);
    }
}
