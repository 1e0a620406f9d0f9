//! Reassembling a snapshot from its parts during recovery (the module's invariant
//! **Snapshot parts**): the parts so far, and whether the next record continues them.

use super::super::format::{Record, RecordError, WalSnapshot, WalSnapshotPart};
use super::{Corruption, Place, TornTail};

/// A snapshot whose parts are being read (see the module's invariants).
#[derive(Debug)]
pub(super) struct Assembly {
    shard: u64,
    /// File offset of the first part: where the log is cut if the parts end early.
    pub(super) start: usize,
    /// The batch of every part.
    pub(super) batch: u64,
    /// The first part, with the data of every later part appended.
    part: WalSnapshotPart,
    /// Physical records read so far.
    pub(super) records: usize,
}

impl Assembly {
    /// Starts a snapshot at its first part; a later part with none before it is corruption.
    pub(super) fn start(
        shard: u64,
        mut part: WalSnapshotPart,
        place: Place,
    ) -> Result<Assembly, Corruption> {
        if part.offset != 0 {
            return Err(Corruption::SnapshotPartAlone {
                shard,
                index: part.index,
                offset: part.offset,
            });
        }
        let total = usize::try_from(part.total).expect("decoding checked total against the max");
        part.data.reserve_exact(total - part.data.len());
        Ok(Assembly {
            shard,
            start: place.offset,
            batch: place.batch,
            part,
            records: 1,
        })
    }

    fn received(&self) -> u64 {
        self.part.data.len() as u64
    }

    pub(super) fn is_whole(&self) -> bool {
        self.received() == self.part.total
    }

    /// Appends `record` if it is the next part of this snapshot, in the same batch.
    pub(super) fn push(&mut self, record: Record, batch: u64) -> Result<(), Corruption> {
        let Record::SnapshotPart { shard, part } = record else {
            return Err(self.interrupted());
        };
        let first = &self.part;
        let next = shard == self.shard
            && batch == self.batch
            && part.index == first.index
            && part.term == first.term
            && part.total == first.total
            && part.voters == first.voters
            && part.offset == self.received();
        if !next {
            return Err(self.interrupted());
        }
        self.part.data.extend_from_slice(&part.data);
        self.records += 1;
        assert!(
            self.received() <= self.part.total,
            "a part lies inside its snapshot (format::check_part)"
        );
        Ok(())
    }

    pub(super) fn interrupted(&self) -> Corruption {
        Corruption::SnapshotInterrupted {
            shard: self.shard,
            index: self.part.index,
            received: self.received(),
            total: self.part.total,
        }
    }

    pub(super) fn torn_tail(&self) -> TornTail {
        TornTail {
            offset: self.start,
            reason: RecordError::SnapshotIncomplete {
                shard: self.shard,
                index: self.part.index,
                received: self.received(),
                total: self.part.total,
            },
        }
    }

    pub(super) fn into_snapshot(self) -> Record {
        assert!(self.is_whole(), "only a whole snapshot is applied");
        let part = self.part;
        Record::Snapshot {
            shard: self.shard,
            snapshot: WalSnapshot {
                index: part.index,
                term: part.term,
                voters: part.voters,
                data: part.data,
            },
        }
    }
}
