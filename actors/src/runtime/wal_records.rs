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
