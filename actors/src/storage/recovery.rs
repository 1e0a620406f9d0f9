//! Rebuilding every shard's log and hard state from a WAL image at startup.
//!
//! `recover` is a pure function of the file's bytes, so the simulator runs this very code
//! over a simulated disk (torn last writes, damaged records, lost unsynced writes).
//!
//! What recovery relies on, from how `Wal` writes:
//! - The file starts with its header (`header`), durable before the file got its name.
//! - Each `Wal::append` writes one batch at the end of the log, in one or more writes, then
//!   one `fdatasync`; the next batch is written only after that sync returned. Every record
//!   carries `batch_start`, the offset of its batch's first record. Batches appended without
//!   a sync (`Wal::append_unsynced`) and the synced one after them carry the first one's
//!   start: everything between two syncs is one batch here.
//! - After the log the file holds zeros (preallocated, or cut at open), never stale records.
//!
//! # Invariants
//! - **Torn tail.** A crash can leave only the last batch partly on disk, with any of its
//!   blocks missing (writes are unordered until the sync). So at the first record that fails
//!   its framing or checksum, at offset X: if every record after X (a valid checksum with this
//!   file's salt) belongs to the batch X is in (its `batch_start` is X, or that of the record
//!   before X), or none exists, the bytes from X on are a torn tail; recovery ends there and
//!   `Wal::open` cuts them. A recovered torn batch is a prefix of its whole records.
//! - **Corruption.** If a record of another batch follows X, that later batch proves the one
//!   holding X was synced before it: `recover` fails with `Corruption::FollowedByValid` and
//!   the server refuses to start (DESIGN.md, "Durability and recovery"). A record that
//!   passes its checksum but does not decode, does not continue its shard's log or claims a
//!   wrong batch is corruption wherever it is: a torn write cannot produce a valid checksum.
//! - Damage inside the last batch reads like a torn write and is cut, although that batch may
//!   have been acknowledged: only a later write proves a batch durable, and a commit mark
//!   would cost a second sync per append. "The last batch" is everything since the last
//!   sync but one: unsynced batches and the synced one after them. With `fsync` off
//!   (benchmarks) nothing holds.
//! - **Snapshot parts.** A snapshot is written as `SnapshotPart` records in a row, all of one
//!   batch (`batch`). It counts only once whole: a first part at data offset 0, then parts
//!   each starting where the one before ended, with the same shard, index, term, voters and
//!   total, until the total is reached. Until then the shard keeps its previous snapshot (or
//!   none) and the parts are held aside (`Assembly`, `records` does not count them yet).
//!   If the log ends before the last part (a torn tail as above, or zeros where its blocks
//!   were lost), the batch was torn: the torn tail starts at the first part
//!   (`RecordError::SnapshotIncomplete`), so `valid_len` excludes the parts and `Wal::open`
//!   cuts them, and the recovered batch is a prefix of its whole logical records. A
//!   checksummed record that does not continue the parts before it (another kind, shard,
//!   batch, snapshot, or offset) is `Corruption::SnapshotInterrupted`, and a part that does
//!   not start at offset 0 with none before it is `Corruption::SnapshotPartAlone`: the
//!   writer never produces either, and a torn write cannot pass a checksum. So is a bad
//!   record after missing parts when valid records after it say a batch starts there: the
//!   parts' batch had ended, short of parts. A part's own shape (`format::check_part`) is
//!   checked when it is decoded.
//! - Each shard's entries are contiguous from its snapshot's index + 1 (or 1); an entries
//!   record starting at index i replaces the entries at and after i (Raft's log overwrite).
//! - A shard with a snapshot has a hard state whose commit is at least the snapshot's index
//!   and whose term is at least the snapshot's term: a snapshot holds only committed entries
//!   (Raft paper §7), and raft-rs panics on a hard state below its snapshot. A crash between
//!   a snapshot record and its hard state record leaves it below; recovery raises it, and
//!   `ShardLog::check_invariants` asserts it.
//! - A shard's hard-state term is at least the term of its last entry: a torn batch can keep
//!   entries without the hard state of their term (found by simulator seed 174: a replica at
//!   term 0 holding term-1 entries rejected a pre-vote and raft-rs panicked). Recovery raises
//!   the term and clears the vote, which no durable record cast in that term.

use std::collections::BTreeMap;

use thiserror::Error;

use super::format::{
    check_at, decode_frame, Frame, Record, RecordError, WalEntry, WalHardState, WalSnapshot,
    RECORD_ALIGN_BYTES, RECORD_MAGIC, SNAPSHOT_BYTES_MAX,
};
use super::header::{decode_header, HeaderError, FILE_HEADER_BYTES};

mod assembly;
use assembly::Assembly;

/// One shard's recovered durable state. See the module's invariants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardLog {
    /// The last snapshot received; `entries` continue after its index.
    pub snapshot: Option<WalSnapshot>,
    pub entries: Vec<WalEntry>,
    pub hard_state: Option<WalHardState>,
}

/// Where the valid log ends and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub offset: usize,
    pub reason: RecordError,
}

/// The result of replaying a WAL image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// The cluster the file belongs to (from its header).
    pub cluster_id: u64,
    /// The salt of the file's record checksums (from its header).
    pub salt: u64,
    pub shards: BTreeMap<u64, ShardLog>,
    /// Bytes of header and valid records; the file is cut to this length.
    pub valid_len: usize,
    /// Physical records replayed.
    pub records: usize,
    pub torn: Option<TornTail>,
}

/// Why a WAL image cannot be trusted. The server must not start on it.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecoveryError {
    #[error("file header: {0}")]
    Header(#[from] HeaderError),
    #[error("corrupt record at byte {offset}: {reason}")]
    Corrupt { offset: u64, reason: Corruption },
}

/// What is wrong with a corrupt record.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    #[error(
        "{error}, yet a later write's record follows at byte {next_offset} \
         (its batch starts at byte {next_batch_start}), so this one had been synced"
    )]
    FollowedByValid {
        error: RecordError,
        next_offset: u64,
        next_batch_start: u64,
    },
    #[error("checksummed but undecodable: {0}")]
    Undecodable(RecordError),
    #[error("claims its batch starts at byte {found}, neither its own offset nor {previous:?}")]
    BatchStart { found: u64, previous: Option<u64> },
    #[error(
        "shard {shard}: entries from {first} neither continue nor overwrite its log \
         {base}..={last}"
    )]
    Discontinuous {
        shard: u64,
        first: u64,
        base: u64,
        last: u64,
    },
    #[error(
        "shard {shard}: the snapshot at index {index} has {received} of its {total} bytes, \
         and this record is not its next part"
    )]
    SnapshotInterrupted {
        shard: u64,
        index: u64,
        received: u64,
        total: u64,
    },
    #[error(
        "shard {shard}: a part of the snapshot at index {index} starts at byte {offset} of \
         its data, with no part before it"
    )]
    SnapshotPartAlone { shard: u64, index: u64, offset: u64 },
}

/// Replays `bytes` (a whole WAL file).
pub fn recover(bytes: &[u8]) -> Result<Recovery, RecoveryError> {
    let header = decode_header(bytes)?;
    let mut recovery = Recovery {
        cluster_id: header.cluster_id,
        salt: header.salt,
        ..Recovery::default()
    };
    let mut offset = FILE_HEADER_BYTES;
    let mut previous_batch = None;
    let mut assembly: Option<Assembly> = None;
    while offset < bytes.len() {
        // Preallocated space reads as zeros: a clean end of the log, not a torn record.
        if bytes[offset..].iter().all(|b| *b == 0) {
            break;
        }
        let frame = match check_at(&bytes[offset..], header.salt) {
            Ok(frame) => frame,
            Err(reason) => {
                let (torn, later) = torn_tail(bytes, header.salt, offset, previous_batch, reason)?;
                if let Some(parts) = assembly
                    .as_ref()
                    .filter(|a| later.is_some_and(|b| b != a.batch))
                {
                    // A batch starts at the bad record, so the one before it, holding the
                    // parts, had ended: its snapshot is missing parts.
                    return Err(RecoveryError::Corrupt {
                        offset: offset as u64,
                        reason: parts.interrupted(),
                    });
                }
                recovery.torn = Some(torn);
                break;
            }
        };
        let corrupt = |reason| RecoveryError::Corrupt {
            offset: offset as u64,
            reason,
        };
        let batch = frame.header.batch_start;
        if batch != offset as u64 && Some(batch) != previous_batch {
            return Err(corrupt(Corruption::BatchStart {
                found: batch,
                previous: previous_batch,
            }));
        }
        let record = decode_frame(&frame).map_err(|e| corrupt(Corruption::Undecodable(e)))?;
        let place = Place { offset, batch };
        replay(&mut recovery, &mut assembly, record, place).map_err(corrupt)?;
        previous_batch = Some(batch);
        offset += frame.len;
    }
    if let Some(assembly) = assembly {
        // The log ends before the snapshot's last part: its batch was torn (had a later
        // batch followed, the loop would have refused that batch's first record).
        recovery.torn = Some(assembly.torn_tail());
        offset = assembly.start;
    }
    recovery.valid_len = offset;
    for log in recovery.shards.values_mut() {
        settle_hard_state(log);
        log.check_invariants();
    }
    Ok(recovery)
}

/// Decides whether the bad record at `offset` starts a torn tail or is corruption (see the
/// module's invariants); `previous_batch` is the batch of the last good record. With the
/// torn tail comes the batch of the valid records after it, if any.
fn torn_tail(
    bytes: &[u8],
    salt: u64,
    offset: usize,
    previous_batch: Option<u64>,
    reason: RecordError,
) -> Result<(TornTail, Option<u64>), RecoveryError> {
    assert_eq!(offset % RECORD_ALIGN_BYTES, 0, "records start aligned");
    let mut torn_batch = None;
    let mut at = offset + RECORD_ALIGN_BYTES;
    while let Some((found, frame)) = next_frame(bytes, salt, at) {
        let batch = frame.header.batch_start;
        let same = match torn_batch {
            Some(torn) => batch == torn,
            None => batch == offset as u64 || Some(batch) == previous_batch,
        };
        if !same {
            return Err(RecoveryError::Corrupt {
                offset: offset as u64,
                reason: Corruption::FollowedByValid {
                    error: reason,
                    next_offset: found as u64,
                    next_batch_start: batch,
                },
            });
        }
        torn_batch = Some(batch);
        at = found + frame.len;
    }
    Ok((TornTail { offset, reason }, torn_batch))
}

/// The first record of this file (its checksum valid with `salt`) at an aligned offset at or
/// after `from`. The magic is compared first, so scanning zeros costs one compare per word.
fn next_frame(bytes: &[u8], salt: u64, from: usize) -> Option<(usize, Frame<'_>)> {
    let magic = RECORD_MAGIC.to_le_bytes();
    (from..bytes.len())
        .step_by(RECORD_ALIGN_BYTES)
        .filter(|at| bytes[*at..].starts_with(&magic))
        .find_map(|at| check_at(&bytes[at..], salt).ok().map(|frame| (at, frame)))
}

/// Where a record lies: its file offset and its batch's.
#[derive(Clone, Copy, Debug)]
struct Place {
    offset: usize,
    batch: u64,
}

/// Replays one checksummed record: a snapshot part goes to `assembly` (and the snapshot is
/// applied once whole), anything else is applied, unless parts are missing before it.
fn replay(
    recovery: &mut Recovery,
    assembly: &mut Option<Assembly>,
    record: Record,
    place: Place,
) -> Result<(), Corruption> {
    let growing = match (assembly.take(), record) {
        (Some(mut growing), record) => {
            growing.push(record, place.batch)?;
            growing
        }
        (None, Record::SnapshotPart { shard, part }) => Assembly::start(shard, part, place)?,
        (None, record) => {
            apply(&mut recovery.shards, record)?;
            recovery.records += 1;
            return Ok(());
        }
    };
    if growing.is_whole() {
        recovery.records += growing.records;
        apply(&mut recovery.shards, growing.into_snapshot())?;
    } else {
        *assembly = Some(growing);
    }
    Ok(())
}

/// Applies one checksummed record (a snapshot once reassembled). One that would leave a gap
/// in a shard's log is corruption: the writer never produces one.
fn apply(shards: &mut BTreeMap<u64, ShardLog>, record: Record) -> Result<(), Corruption> {
    match record {
        Record::Entries { shard, entries } => {
            let log = shards.entry(shard).or_default();
            let first = entries[0].index;
            let base = log.base();
            let last = log.entries.last().map_or(base - 1, |e| e.index);
            if first < base || first > last + 1 {
                return Err(Corruption::Discontinuous {
                    shard,
                    first,
                    base,
                    last,
                });
            }
            log.entries.truncate((first - base) as usize);
            log.entries.extend(entries);
        }
        Record::HardState { shard, state } => {
            shards.entry(shard).or_default().hard_state = Some(state)
        }
        Record::Snapshot { shard, snapshot } => {
            let log = shards.entry(shard).or_default();
            log.entries.clear();
            log.snapshot = Some(snapshot);
        }
        Record::SnapshotPart { shard, part } => unreachable!(
            "shard {shard}: part at {} of snapshot {} applied before reassembly",
            part.offset, part.index
        ),
    }
    Ok(())
}

/// Raises the hard state to what the log shows: a snapshot is committed by definition, and
/// a replica's term is at least that of every entry it holds. (The runtime persists a
/// snapshot or entries and their hard state in one batch, but a torn batch can keep the
/// first without the second; raft-rs then panics at start, or answers a pre-vote at term 0.)
fn settle_hard_state(log: &mut ShardLog) {
    let snapshot = log.snapshot.as_ref().map(|s| (s.index, s.term));
    let last_entry_term = log.entries.last().map(|e| e.term);
    let floor = snapshot.map(|(_, t)| t).max(last_entry_term);
    let Some(floor) = floor else {
        return;
    };
    let state = log.hard_state.get_or_insert_with(WalHardState::default);
    if state.term < floor {
        // The vote was cast in an older term. No vote in the raised term can have been
        // sent: it would have been persisted in a later hard state record than this one.
        state.term = floor;
        state.vote = 0;
    }
    if let Some((index, _)) = snapshot {
        state.commit = state.commit.max(index);
    }
}

impl ShardLog {
    /// The index of the first entry the log may hold.
    fn base(&self) -> u64 {
        self.snapshot.as_ref().map_or(1, |s| s.index + 1)
    }

    /// Panics if the recovered log breaks the module's invariants (a bug in recovery).
    pub fn check_invariants(&self) {
        if let Some(first) = self.entries.first() {
            assert_eq!(first.index, self.base(), "entries start after the snapshot");
        }
        debug_assert!(
            self.entries
                .windows(2)
                .all(|w| w[1].index == w[0].index + 1),
            "entries are contiguous"
        );
        if let (Some(last), Some(state)) = (self.entries.last(), self.hard_state) {
            assert!(
                state.term >= last.term,
                "term {} below the last entry's term {}",
                state.term,
                last.term
            );
        }
        if let Some(snapshot) = &self.snapshot {
            assert!(
                snapshot.data.len() as u64 <= SNAPSHOT_BYTES_MAX,
                "a snapshot of {} bytes passed the limit",
                snapshot.data.len()
            );
            let state = self
                .hard_state
                .expect("recovery gives a shard with a snapshot a hard state");
            assert!(
                state.commit >= snapshot.index,
                "commit {} below the snapshot index {}",
                state.commit,
                snapshot.index
            );
            assert!(
                state.term >= snapshot.term,
                "term {} below the snapshot term {}",
                state.term,
                snapshot.term
            );
        }
    }
}

#[cfg(test)]
mod recovery_test;
