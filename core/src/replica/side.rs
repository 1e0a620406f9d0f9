//! Side promises: how an idle shard's closed timestamp keeps up with the clock without an
//! entry per interval (DESIGN.md "Consistent cuts across shards"; the argument is in
//! `docs/design/consistent-cuts.md` and is model-checked by `specs/ClosedTimestamps.tla`).
//!
//! Every `close_every_ms` an idle leader promises `closed = min(now - lag, lease)` by a
//! message that is no log entry: the engine coalesces its shards' promises into one message
//! per peer. `lease` is the greatest lease among the entries the leader applied (committed
//! ones), so the promise is at most a timestamp every later leader's log holds, and every
//! later leader stamps above it (its floor, `replica::closed`). That holds for a deposed
//! leader that does not know it yet, too: what it can still promise is capped by a lease
//! that already committed.
//!
//! # Invariants
//! - A leader side-promises only with every entry of its log applied, and a follower adopts
//!   a promise only from a leader of its own term and once it has applied the leader's last
//!   index at the promise: entries up to there are applied, later ones are stamped above
//!   the promise (by that leader, which never stamps at or below what it promised, or by a
//!   later one, above its floor). So `resolved_ts` keeps meaning "every change at or below
//!   it is applied here".
//! - The argument needs raft-rs's empty entry of each new term (`become_leader`): a leader
//!   with everything applied has applied an entry of its own term, so no older term's
//!   uncommitted entry can commit after its promise's index. `specs/ClosedTimestamps`'s
//!   twin `NoEmptyEntryBuggy` shows the undercut without it.
//! - Side promises are volatile: a restart forgets them and falls back to the log's closed
//!   timestamp (never above what was adopted; monotonic while the replica runs).

use super::Replica;
use crate::hlc::Timestamp;
use crate::txn::intents::IntentRefusal;
use crate::txn::step::Step;

/// A promise a shard's leader of `term` made: nothing at or below `closed` will be proposed
/// after log index `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SideClose {
    pub term: u64,
    pub index: u64,
    pub closed: Timestamp,
}

/// One shard's `SideClose` on the wire: many of them share one message per peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SidePromise {
    pub shard: u32,
    pub promise: SideClose,
}

/// Bytes of one encoded `SidePromise`: shard u32, term u64, index u64, closed u64.
const PROMISE_BYTES: usize = 28;

/// A side-promise message that is not one: the sender is misbehaving or the link corrupts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a side-promise message of {bytes} bytes is not a whole number of {PROMISE_BYTES}-byte promises")]
pub struct SideDecodeError {
    pub bytes: usize,
}

/// Encodes promises for one peer (little-endian, back to back).
pub fn encode_promises(promises: &[SidePromise]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(promises.len() * PROMISE_BYTES);
    for p in promises {
        bytes.extend_from_slice(&p.shard.to_le_bytes());
        bytes.extend_from_slice(&p.promise.term.to_le_bytes());
        bytes.extend_from_slice(&p.promise.index.to_le_bytes());
        bytes.extend_from_slice(&p.promise.closed.as_u64().to_le_bytes());
    }
    bytes
}

/// Decodes what `encode_promises` wrote; anything else is refused whole.
pub fn decode_promises(bytes: &[u8]) -> Result<Vec<SidePromise>, SideDecodeError> {
    if !bytes.len().is_multiple_of(PROMISE_BYTES) {
        return Err(SideDecodeError { bytes: bytes.len() });
    }
    let word = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8"));
    Ok(bytes
        .chunks_exact(PROMISE_BYTES)
        .map(|b| SidePromise {
            shard: u32::from_le_bytes(b[0..4].try_into().expect("4 bytes")),
            promise: SideClose {
                term: word(b, 4),
                index: word(b, 12),
                closed: Timestamp::from_u64(word(b, 20)),
            },
        })
        .collect())
}

/// A replica's side-promise and lease state.
#[derive(Debug, Default)]
pub(super) struct SideState {
    /// How far ahead of its clock a leader's entries grant it leases.
    pub lease_ms: u64,
    /// Milliseconds between an idle leader's side promises.
    pub every_ms: u64,
    /// The greatest lease among the entries in this replica's log (appended, in the log at
    /// a restart, or under its snapshot): what a new leader's floor is made of.
    pub lease_seen: Timestamp,
    /// The greatest lease among applied (committed) entries: the cap of side promises.
    pub lease_applied: Timestamp,
    /// The greatest lease this replica proposed (leases never go back).
    pub lease_proposed: Timestamp,
    /// The floor of term `floor_term`: `lease_seen` when that term's first stamp was made.
    floor: Timestamp,
    floor_term: u64,
    /// The greatest side promise this replica made as leader or adopted as follower.
    pub closed: Timestamp,
    /// Wall ms of this leader's last side promise.
    sent_ms: u64,
    /// A promise waiting for this replica to apply up to its index.
    pending: Option<SideClose>,
    /// Promises made (as leader) and adopted (as follower): status and tests.
    pub made: u64,
    pub adopted: u64,
}

impl SideState {
    pub fn new(lease_ms: u64, every_ms: u64, lease_seen: Timestamp) -> SideState {
        SideState {
            lease_ms,
            every_ms,
            lease_seen,
            ..SideState::default()
        }
    }

    /// The floor of `term`, fixed at its first call in that term: the greatest lease in the
    /// log then, before any entry of this term (whose own leases must not raise it).
    /// `ignore_leases` is the must-fail twin of `replica::tests::side`.
    pub fn floor(&mut self, term: u64, ignore_leases: bool) -> Timestamp {
        if self.floor_term != term {
            self.floor_term = term;
            self.floor = if ignore_leases {
                Timestamp::ZERO
            } else {
                self.lease_seen
            };
        }
        self.floor
    }

    /// The floor if it was fixed in `term`, else zero.
    pub fn floor_if_current(&self, term: u64) -> Timestamp {
        if self.floor_term == term {
            self.floor
        } else {
            Timestamp::ZERO
        }
    }
}

impl Replica {
    /// As leader, every `close_every_ms` with nothing unapplied: promise `min(now - lag,
    /// lease)` if that closes more than the log and earlier promises did.
    pub(super) fn side_promise(&mut self, now: Timestamp) -> Option<SideClose> {
        let last = self.raw.raft.raft_log.last_index();
        if !self.is_leader() || self.applied < last {
            return None;
        }
        if now.wall_ms() < self.side.sent_ms.saturating_add(self.side.every_ms) {
            return None;
        }
        let lagged = Timestamp::new(now.wall_ms().saturating_sub(self.closed_lag_ms), 0);
        let closed = lagged.min(self.side.lease_applied);
        if closed <= self.closed_ts() {
            return None;
        }
        debug_assert!(closed <= now, "a promise is not above the clock");
        self.side.closed = closed;
        self.side.sent_ms = now.wall_ms();
        self.side.made += 1;
        Some(SideClose {
            term: self.term(),
            index: last,
            closed,
        })
    }

    /// A promise from this shard's leader: adopted once this replica applied its index, if
    /// it came from the leader of this replica's term.
    pub fn adopt_side_promise(&mut self, promise: SideClose) {
        if self.is_leader() || promise.term != self.term() {
            return;
        }
        if self.applied >= promise.index {
            if promise.closed > self.side.closed {
                self.side.closed = promise.closed;
                self.side.adopted += 1;
            }
            return;
        }
        let newer = self
            .side
            .pending
            .is_none_or(|p| p.term != promise.term || p.closed < promise.closed);
        if newer {
            self.side.pending = Some(promise);
        }
    }

    /// Adopts the waiting promise once the log is applied up to its index.
    pub(super) fn adopt_pending_side_promise(&mut self) {
        let Some(pending) = self.side.pending else {
            return;
        };
        if self.applied >= pending.index || pending.term != self.term() {
            self.side.pending = None;
            self.adopt_side_promise(pending);
        }
    }

    /// A leader's refusal of a new intent at or below what it promised by side message or
    /// what its floor covers (an earlier leader's promises): the log's closed timestamp,
    /// which the apply-time check uses, does not hold them.
    pub(super) fn refuse_below_side(&mut self, step: &Step) -> Option<IntentRefusal> {
        if !matches!(step, Step::WriteIntent { .. }) {
            return None;
        }
        let meta = step.meta();
        if !self.is_leader() || self.tables.intents.holds(meta.id) {
            return None;
        }
        let floor = self.side.floor(self.term(), self.inject_no_lease_floor);
        let closed = self.side.closed.max(floor);
        (meta.ts <= closed).then_some(IntentRefusal::BelowClosed {
            ts: meta.ts,
            closed,
        })
    }

    /// Side promises this replica made as leader and adopted as follower.
    pub fn side_promise_counts(&self) -> (u64, u64) {
        (self.side.made, self.side.adopted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promises_round_trip_and_a_torn_message_is_refused_whole() {
        let promises = vec![
            SidePromise {
                shard: 7,
                promise: SideClose {
                    term: 3,
                    index: 41,
                    closed: Timestamp::new(1_000, 2),
                },
            },
            SidePromise {
                shard: u32::MAX,
                promise: SideClose {
                    term: u64::MAX,
                    index: 0,
                    closed: Timestamp::ZERO,
                },
            },
        ];
        let bytes = encode_promises(&promises);
        assert_eq!(decode_promises(&bytes), Ok(promises));
        assert_eq!(decode_promises(&[]), Ok(Vec::new()));
        assert_eq!(
            decode_promises(&bytes[..bytes.len() - 1]),
            Err(SideDecodeError {
                bytes: bytes.len() - 1
            })
        );
    }
}
