//! Recovery of a transaction whose coordinator stopped (its heartbeat expired), run by a
//! pusher that met one of its intents (`RecoverStart`, `RecoverCheck`, `RecoverDecide` in
//! `specs/ParallelCommit.tla`; CockroachDB's `txnrecovery` manager).
//!
//! It reads the record: none → the anchor writes an ABORTED tombstone; decided → resolve;
//! STAGING → ask every listed shard whether the write is there, *preventing* each missing
//! one at the transaction's timestamp, then decide COMMITTED only if all were found. It may
//! race the coordinator: the record table keeps decisions final, and a prevented write can
//! never be written, so both sides agree (`AckImpliesCommit`).
//!
//! # Invariants
//! - `RecoverDecide` is asked only after every listed write was checked; `all_found` is true
//!   iff none was prevented.
//! - The intents are resolved only with the record's decision.

use std::collections::BTreeSet;

use super::intents::Check;
use super::record::{RecoveryStart, Status};
use super::TxnMeta;

/// A proposal the engine makes for recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    RecoverStart {
        meta: TxnMeta,
    },
    RecoverCheck {
        shard: u32,
        meta: TxnMeta,
    },
    RecoverDecide {
        meta: TxnMeta,
        all_found: bool,
    },
    Resolve {
        shard: u32,
        meta: TxnMeta,
        commit: bool,
    },
}

/// What a proposal returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Started(RecoveryStart),
    Checked {
        shard: u32,
        check: Check,
    },
    Decided(Status),
    /// The record is gone at `RecoverDecide`: its coordinator decided it and resolved every
    /// intent before dropping it, so there is nothing left to do.
    Forgotten,
    Resolved {
        shard: u32,
    },
}

/// How recovery ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The coordinator is alive: wait for it.
    Alive,
    Decided(Status),
    /// Finished by its coordinator meanwhile.
    Forgotten,
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    Starting,
    Checking,
    Deciding,
    Resolving(Status),
    Done(Outcome),
}

/// One recovery attempt.
#[derive(Debug)]
pub struct Recovery {
    meta: TxnMeta,
    /// The shard where the pusher met the intent (resolved even with no record).
    met_on: u32,
    in_flight: BTreeSet<u32>,
    found: BTreeSet<u32>,
    missing: BTreeSet<u32>,
    unresolved: BTreeSet<u32>,
    phase: Phase,
    /// Test-only must-fail twin: decide without checking the listed writes (the injected
    /// bug "recovery skipping the in-flight check").
    skip_checks: bool,
}

impl Recovery {
    pub fn start(meta: TxnMeta, met_on: u32, out: &mut Vec<Command>) -> Recovery {
        out.push(Command::RecoverStart { meta });
        Recovery {
            meta,
            met_on,
            in_flight: BTreeSet::new(),
            found: BTreeSet::new(),
            missing: BTreeSet::new(),
            unresolved: BTreeSet::new(),
            phase: Phase::Starting,
            skip_checks: false,
        }
    }

    /// The injected bug: decide COMMITTED from the record alone.
    pub fn inject_skip_checks(&mut self) {
        self.skip_checks = true;
    }

    pub fn meta(&self) -> TxnMeta {
        self.meta
    }

    pub fn outcome(&self) -> Option<Outcome> {
        match self.phase {
            Phase::Done(outcome) => Some(outcome),
            _ => None,
        }
    }

    pub fn step(&mut self, event: Event, out: &mut Vec<Command>) {
        match (&self.phase, event) {
            (Phase::Starting, Event::Started(start)) => self.started(start, out),
            (Phase::Checking, Event::Checked { shard, check }) => {
                assert!(self.in_flight.contains(&shard), "{shard} was listed");
                match check {
                    Check::Found => self.found.insert(shard),
                    Check::Prevented => self.missing.insert(shard),
                };
                self.maybe_decide(out);
            }
            (Phase::Deciding, Event::Decided(status)) => self.resolve(status, out),
            (Phase::Deciding, Event::Forgotten) => self.phase = Phase::Done(Outcome::Forgotten),
            (Phase::Resolving(status), Event::Resolved { shard }) => {
                let status = *status;
                self.unresolved.remove(&shard);
                if self.unresolved.is_empty() {
                    self.phase = Phase::Done(Outcome::Decided(status));
                }
            }
            _ => {}
        }
    }

    fn started(&mut self, start: RecoveryStart, out: &mut Vec<Command>) {
        match start {
            RecoveryStart::Alive => self.phase = Phase::Done(Outcome::Alive),
            RecoveryStart::AbortedMissing => self.resolve(Status::Aborted, out),
            RecoveryStart::Decided { status, in_flight } => {
                self.in_flight = in_flight.into_iter().collect();
                self.resolve(status, out)
            }
            RecoveryStart::Staging { in_flight } => {
                self.in_flight = in_flight.into_iter().collect();
                assert!(!self.in_flight.is_empty(), "a record lists its writes");
                self.phase = Phase::Checking;
                if self.skip_checks {
                    self.found = self.in_flight.clone();
                    self.maybe_decide(out);
                    return;
                }
                for shard in &self.in_flight {
                    out.push(Command::RecoverCheck {
                        shard: *shard,
                        meta: self.meta,
                    });
                }
            }
        }
    }

    fn maybe_decide(&mut self, out: &mut Vec<Command>) {
        let checked = self.found.len() + self.missing.len();
        if checked < self.in_flight.len() {
            return;
        }
        assert_eq!(
            checked,
            self.in_flight.len(),
            "each listed write checked once"
        );
        self.phase = Phase::Deciding;
        out.push(Command::RecoverDecide {
            meta: self.meta,
            all_found: self.missing.is_empty(),
        });
    }

    fn resolve(&mut self, status: Status, out: &mut Vec<Command>) {
        assert_ne!(status, Status::Staging, "resolve with a decision");
        self.unresolved = self.in_flight.clone();
        self.unresolved.insert(self.met_on);
        for shard in &self.unresolved {
            out.push(Command::Resolve {
                shard: *shard,
                meta: self.meta,
                commit: status == Status::Committed,
            });
        }
        self.phase = Phase::Resolving(status);
    }
}
