//! Transaction records, kept by each transaction's anchor shard. Replicated state: every
//! method runs while applying a committed entry, with the entry's HLC as `now`.
//!
//! Actions of `specs/ParallelCommit.tla`: `write_staging` is `WriteStaging`, `make_explicit`
//! is `MakeExplicit`, `abort` is `AbortSelf`, `recover_start` is `RecoverStart`,
//! `recover_decide` is `RecoverDecide`; `heartbeat` and `is_expired` are the heartbeat
//! expiry the spec's `Expire` models.
//!
//! # Invariants
//! - `DecisionsAreFinal`: a COMMITTED or ABORTED record never changes status; every method
//!   that would change one returns the decision instead.
//! - A STAGING record is never written over an ABORTED one (recovery of a transaction with
//!   no record writes an ABORTED tombstone first), so a coordinator that lost the race to
//!   recovery cannot stage.
//! - A record is dropped only once finished (decided and every intent resolved, or a
//!   tombstone) and older than `CLOSED_TTL_MS` of log time; a record at or below `horizon`
//!   is refused as too old, so dropping one lets no late STAGING record in.

use std::collections::BTreeMap;

use thiserror::Error;

use super::{after_ms, TxnId, TxnMeta, EXPIRY_MS};
use crate::hlc::Timestamp;

/// A record's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Written in parallel with the intents; committed once all of them are (implicitly).
    Staging,
    Committed,
    Aborted,
}

/// A transaction record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub meta: TxnMeta,
    pub status: Status,
    /// The participant shards holding its in-flight writes (sorted, no repeats).
    pub in_flight: Vec<u32>,
    /// Last sign of life of the coordinator (log time).
    pub heartbeat: Timestamp,
    /// Decided and every intent resolved: kept only so that a late push learns the
    /// decision, until `CLOSED_TTL_MS` of log time passed.
    pub finished: bool,
}

/// Why a record operation did not happen (the record's decision stands).
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordRefusal {
    #[error("transaction {txn} was already decided {status:?}")]
    Decided { txn: TxnId, status: Status },
    #[error("transaction {txn} has no record")]
    Missing { txn: TxnId },
    #[error("transaction {txn} at {ts} is older than the records this shard still keeps")]
    TooOld { txn: TxnId, ts: Timestamp },
}

/// What `RecoverStart` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecoveryStart {
    /// The coordinator is alive (its heartbeat has not expired): wait, do not recover.
    Alive,
    /// No record and expired: now ABORTED (a tombstone), so it can never stage.
    AbortedMissing,
    /// Already decided (`in_flight` is empty for a tombstone).
    Decided { status: Status, in_flight: Vec<u32> },
    /// STAGING and expired: check every listed write.
    Staging { in_flight: Vec<u32> },
}

/// One anchor shard's records.
#[derive(Clone, Debug, Default)]
pub struct RecordTable {
    records: BTreeMap<TxnId, Record>,
    horizon: Timestamp,
}

impl RecordTable {
    pub fn get(&self, txn: &TxnId) -> Option<&Record> {
        self.records.get(txn)
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.records.values()
    }

    fn decided(&self, txn: TxnId) -> Option<RecordRefusal> {
        let record = self.records.get(&txn)?;
        (record.status != Status::Staging).then_some(RecordRefusal::Decided {
            txn,
            status: record.status,
        })
    }

    /// `WriteStaging(t)`: the STAGING record listing the in-flight writes. Idempotent.
    pub fn write_staging(
        &mut self,
        meta: TxnMeta,
        in_flight: &[u32],
        now: Timestamp,
    ) -> Result<(), RecordRefusal> {
        self.forget_tombstones(now);
        if let Some(refusal) = self.decided(meta.id) {
            return Err(refusal);
        }
        if !self.records.contains_key(&meta.id) && meta.ts <= self.horizon {
            return Err(RecordRefusal::TooOld {
                txn: meta.id,
                ts: meta.ts,
            });
        }
        let mut in_flight = in_flight.to_vec();
        in_flight.sort_unstable();
        in_flight.dedup();
        assert!(!in_flight.is_empty(), "a transaction writes somewhere");
        let record = self.records.entry(meta.id).or_insert(Record {
            meta,
            status: Status::Staging,
            in_flight: in_flight.clone(),
            heartbeat: now,
            finished: false,
        });
        assert_eq!(
            record.in_flight, in_flight,
            "a resent record lists the same writes"
        );
        record.heartbeat = record.heartbeat.max(now);
        Ok(())
    }

    /// The coordinator is alive. Refused once decided (it should stop heartbeating).
    pub fn heartbeat(&mut self, txn: TxnId, now: Timestamp) -> Result<(), RecordRefusal> {
        if let Some(refusal) = self.decided(txn) {
            return Err(refusal);
        }
        let record = self
            .records
            .get_mut(&txn)
            .ok_or(RecordRefusal::Missing { txn })?;
        record.heartbeat = record.heartbeat.max(now);
        Ok(())
    }

    /// Whether a transaction last seen alive at `seen` (its heartbeat, or with no record
    /// its timestamp) is expired at `now`.
    pub fn is_expired(seen: Timestamp, now: Timestamp) -> bool {
        now > after_ms(seen, EXPIRY_MS)
    }

    /// `MakeExplicit(t)`: STAGING → COMMITTED (idempotent on COMMITTED).
    pub fn make_explicit(&mut self, txn: TxnId) -> Result<(), RecordRefusal> {
        self.decide(txn, Status::Committed)
    }

    /// `AbortSelf(t)`: STAGING or no record → ABORTED (idempotent on ABORTED).
    pub fn abort(&mut self, meta: TxnMeta, now: Timestamp) -> Result<(), RecordRefusal> {
        if !self.records.contains_key(&meta.id) {
            self.insert_tombstone(meta, now);
            return Ok(());
        }
        self.decide(meta.id, Status::Aborted)
    }

    fn decide(&mut self, txn: TxnId, status: Status) -> Result<(), RecordRefusal> {
        let record = self
            .records
            .get_mut(&txn)
            .ok_or(RecordRefusal::Missing { txn })?;
        match record.status {
            Status::Staging => {
                record.status = status;
                Ok(())
            }
            same if same == status => Ok(()),
            decided => Err(RecordRefusal::Decided {
                txn,
                status: decided,
            }),
        }
    }

    fn insert_tombstone(&mut self, meta: TxnMeta, now: Timestamp) {
        let previous = self.records.insert(
            meta.id,
            Record {
                meta,
                status: Status::Aborted,
                in_flight: Vec::new(),
                heartbeat: now,
                finished: true,
            },
        );
        assert!(previous.is_none(), "a tombstone replaces no record");
    }

    /// `RecoverStart(t)`, by a pusher that met an intent of `meta` at `now`.
    pub fn recover_start(&mut self, meta: TxnMeta, now: Timestamp) -> RecoveryStart {
        self.forget_tombstones(now);
        let Some(record) = self.records.get(&meta.id) else {
            if !Self::is_expired(meta.ts, now) {
                return RecoveryStart::Alive;
            }
            // At or below the horizon a STAGING record is refused anyway: no tombstone needed.
            if meta.ts > self.horizon {
                self.insert_tombstone(meta, now);
            }
            return RecoveryStart::AbortedMissing;
        };
        match record.status {
            Status::Staging if !Self::is_expired(record.heartbeat, now) => RecoveryStart::Alive,
            Status::Staging => RecoveryStart::Staging {
                in_flight: record.in_flight.clone(),
            },
            status => RecoveryStart::Decided {
                status,
                in_flight: record.in_flight.clone(),
            },
        }
    }

    /// `RecoverDecide(t)`: COMMITTED if every listed write was found, else ABORTED; a record
    /// already decided keeps its decision, which is returned.
    pub fn recover_decide(&mut self, txn: TxnId, all_found: bool) -> Result<Status, RecordRefusal> {
        let status = if all_found {
            Status::Committed
        } else {
            Status::Aborted
        };
        match self.decide(txn, status) {
            Ok(()) => Ok(status),
            Err(RecordRefusal::Decided { status, .. }) => Ok(status),
            Err(other) => Err(other),
        }
    }

    /// Marks a decided record finished once every intent is resolved (the coordinator's
    /// last step): it is dropped after `CLOSED_TTL_MS`, so a late push still learns the
    /// decision rather than aborting a committed transaction's record (`DecisionsAreFinal`).
    pub fn forget(&mut self, txn: TxnId) {
        if self.decided(txn).is_some() {
            let record = self.records.get_mut(&txn).expect("decided, so present");
            record.finished = true;
            record.in_flight.clear();
        }
    }

    fn forget_tombstones(&mut self, now: Timestamp) {
        let Some(cutoff) = super::raise_horizon(&mut self.horizon, now) else {
            return;
        };
        // Only finished records and tombstones go: a STAGING one waits for recovery and an
        // unfinished COMMITTED one for its intents' resolution, whatever their age. A record
        // resent for a dropped one is at or below the horizon: refused.
        self.records
            .retain(|_, r| !r.finished || r.heartbeat.max(r.meta.ts) > cutoff);
    }
}

impl RecordTable {
    /// The snapshot form (see `step::TablesWire`).
    pub(super) fn to_wire(&self, wire: &mut super::step::TablesWire) {
        use super::step::{status_code, RecordWire};
        wire.records = self
            .records
            .values()
            .map(|r| RecordWire {
                meta: r.meta.into(),
                status: status_code(r.status),
                in_flight: r.in_flight.clone(),
                heartbeat: r.heartbeat.as_u64(),
                finished: r.finished,
            })
            .collect();
        wire.records_horizon = self.horizon.as_u64();
    }

    /// Rebuilds the table from a snapshot (validated, never trusted).
    pub(super) fn from_wire(wire: &super::step::TablesWire) -> Result<RecordTable, String> {
        let mut table = RecordTable {
            horizon: Timestamp::from_u64(wire.records_horizon),
            ..RecordTable::default()
        };
        for r in &wire.records {
            let meta: TxnMeta = r.meta.into();
            let status = super::step::status_of(r.status)
                .ok_or_else(|| format!("record of {}: unknown status {}", meta.id, r.status))?;
            let record = Record {
                meta,
                status,
                in_flight: r.in_flight.clone(),
                heartbeat: Timestamp::from_u64(r.heartbeat),
                finished: r.finished,
            };
            if table.records.insert(meta.id, record).is_some() {
                return Err(format!("two records of {}", meta.id));
            }
        }
        Ok(table)
    }
}
