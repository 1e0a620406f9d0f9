//! The byte form of a request one server forwards to a shard's leader on another, and of
//! its outcome (over the authenticated peer transport: `net::peer` forward frames).
//!
//! Layout: a tag byte per enum, little-endian integers, length-prefixed (u32) strings and
//! byte strings; transactions and steps as their checksummed `wire` frames, values in
//! Godot 4 encoding. A tree error keeps its type where a coordinator acts on it (not
//! found, a failed precondition) and travels as code and message otherwise
//! (`TreeError::Remote`).
//!
//! # Invariants
//! - `decode_*(encode_*(x)) == x` for every request and outcome a host or gateway acts on
//!   (tested); bytes that are not such an encoding are a typed `ForwardError`, never a
//!   panic.

use thiserror::Error;

use crate::api::{Answer, Outcome, ReplyError};
use crate::codec::{self, GodotVersion};
use crate::hlc::Timestamp;
use crate::replica::ReadTarget;
use crate::tree::{TreeError, TREE_ERROR_CODES};
use crate::txn::host::Request;
use crate::txn::intents::{Check, IntentRefusal};
use crate::txn::record::{RecordRefusal, RecoveryStart, Status};
use crate::txn::step::StepOutcome;
use crate::txn::{TxnId, TxnMeta};
use crate::wire;

/// Why forwarded bytes were refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardError {
    #[error("forwarded bytes end early")]
    Short,
    #[error("unknown tag {tag} for {what}")]
    Tag { what: &'static str, tag: u8 },
    #[error("forwarded {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
}

#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(u32::try_from(b.len()).expect("forwarded parts are below 4 GiB"));
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn ids(&mut self, shards: &[u32]) {
        self.u32(shards.len() as u32);
        shards.iter().for_each(|s| self.u32(*s));
    }
    fn txn_id(&mut self, id: TxnId) {
        self.u64(id.node);
        self.u64(id.seq);
    }
    fn meta(&mut self, meta: TxnMeta) {
        self.txn_id(meta.id);
        self.u64(meta.ts.as_u64());
        self.u32(meta.anchor);
    }
}

struct Reader<'b> {
    bytes: &'b [u8],
    at: usize,
}

impl<'b> Reader<'b> {
    fn take(&mut self, n: usize) -> Result<&'b [u8], ForwardError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or(ForwardError::Short)?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, ForwardError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, ForwardError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, ForwardError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn bytes(&mut self) -> Result<&'b [u8], ForwardError> {
        let len = self.u32()? as usize;
        self.take(len)
    }
    fn string(&mut self) -> Result<String, ForwardError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|e| ForwardError::Invalid {
            what: "string",
            reason: e.to_string(),
        })
    }
    fn ids(&mut self) -> Result<Vec<u32>, ForwardError> {
        let n = self.u32()? as usize;
        if n > self.bytes.len() {
            return Err(ForwardError::Short);
        }
        (0..n).map(|_| self.u32()).collect()
    }
    fn txn_id(&mut self) -> Result<TxnId, ForwardError> {
        Ok(TxnId {
            node: self.u64()?,
            seq: self.u64()?,
        })
    }
    fn meta(&mut self) -> Result<TxnMeta, ForwardError> {
        Ok(TxnMeta {
            id: self.txn_id()?,
            ts: Timestamp::from_u64(self.u64()?),
            anchor: self.u32()?,
        })
    }
    fn end(&self) -> Result<(), ForwardError> {
        match self.at == self.bytes.len() {
            true => Ok(()),
            false => Err(ForwardError::Invalid {
                what: "message",
                reason: "trailing bytes".into(),
            }),
        }
    }
}

fn tag(what: &'static str, tag: u8) -> ForwardError {
    ForwardError::Tag { what, tag }
}

/// A request for `shard` as bytes.
pub fn encode_request(shard: u32, request: &Request) -> Vec<u8> {
    let mut w = Writer::default();
    w.u32(shard);
    match request {
        Request::Read { path, target } => {
            w.u8(0);
            w.str(path);
            match target {
                ReadTarget::Prop(p) => {
                    w.u8(0);
                    w.str(p);
                }
                ReadTarget::Node => w.u8(1),
                ReadTarget::Subtree => w.u8(2),
            }
        }
        Request::Propose(txn) => {
            w.u8(1);
            w.bytes(&wire::encode_txn(txn));
        }
        Request::Step(step) => {
            w.u8(2);
            w.bytes(&wire::encode_step(step));
        }
    }
    w.0
}

pub fn decode_request(bytes: &[u8]) -> Result<(u32, Request), ForwardError> {
    let mut r = Reader { bytes, at: 0 };
    let shard = r.u32()?;
    let invalid = |what| {
        move |e: wire::WireError| ForwardError::Invalid {
            what,
            reason: e.to_string(),
        }
    };
    let request = match r.u8()? {
        0 => {
            let path = r.string()?;
            let target = match r.u8()? {
                0 => ReadTarget::Prop(r.string()?),
                1 => ReadTarget::Node,
                2 => ReadTarget::Subtree,
                t => return Err(tag("read target", t)),
            };
            Request::Read { path, target }
        }
        1 => Request::Propose(
            wire::decode_txn_unaligned(r.bytes()?).map_err(invalid("transaction"))?,
        ),
        2 => match wire::decode_entry_unaligned(r.bytes()?).map_err(invalid("step"))? {
            wire::LogEntry::Step(step) => Request::Step(step),
            wire::LogEntry::Txn(_) => return Err(tag("step", 1)),
        },
        t => return Err(tag("request", t)),
    };
    r.end()?;
    Ok((shard, request))
}

pub fn encode_outcome(outcome: &Outcome) -> Vec<u8> {
    let mut w = Writer::default();
    match outcome {
        Ok(Answer::Written { index, term, hlc }) => {
            w.u8(0);
            w.u64(*index);
            w.u64(*term);
            w.u64(hlc.as_u64());
        }
        Ok(Answer::Value(value)) => {
            w.u8(1);
            match value.as_ref().map(|v| codec::encode(v, GodotVersion::V4)) {
                Some(Ok(bytes)) => {
                    w.u8(1);
                    w.bytes(&bytes);
                }
                // A value the tree holds always encodes; none is a missing node.
                _ => w.u8(0),
            }
        }
        Ok(Answer::Subscribed) => w.u8(2),
        Ok(Answer::Step(step)) => {
            w.u8(3);
            step_outcome(&mut w, step);
        }
        Err(error) => {
            w.u8(4);
            reply_error(&mut w, error);
        }
    }
    w.0
}

pub fn decode_outcome(bytes: &[u8]) -> Result<Outcome, ForwardError> {
    let mut r = Reader { bytes, at: 0 };
    let outcome = match r.u8()? {
        0 => Ok(Answer::Written {
            index: r.u64()?,
            term: r.u64()?,
            hlc: Timestamp::from_u64(r.u64()?),
        }),
        1 => Ok(Answer::Value(match r.u8()? {
            0 => None,
            1 => Some(codec::decode(r.bytes()?, GodotVersion::V4).map_err(|e| {
                ForwardError::Invalid {
                    what: "value",
                    reason: e.to_string(),
                }
            })?),
            t => return Err(tag("value", t)),
        })),
        2 => Ok(Answer::Subscribed),
        3 => Ok(Answer::Step(read_step_outcome(&mut r)?)),
        4 => Err(read_reply_error(&mut r)?),
        t => return Err(tag("outcome", t)),
    };
    r.end()?;
    Ok(outcome)
}

fn status_code(status: Status) -> u8 {
    match status {
        Status::Staging => 0,
        Status::Committed => 1,
        Status::Aborted => 2,
    }
}

fn read_status(r: &mut Reader<'_>) -> Result<Status, ForwardError> {
    match r.u8()? {
        0 => Ok(Status::Staging),
        1 => Ok(Status::Committed),
        2 => Ok(Status::Aborted),
        t => Err(tag("status", t)),
    }
}

fn step_outcome(w: &mut Writer, step: &StepOutcome) {
    match step {
        StepOutcome::IntentWritten => w.u8(0),
        StepOutcome::IntentRefused(refusal) => {
            w.u8(1);
            match refusal {
                IntentRefusal::Closed { txn } => {
                    w.u8(0);
                    w.txn_id(*txn);
                }
                IntentRefusal::TooOld { ts, existing } => {
                    w.u8(1);
                    w.u64(ts.as_u64());
                    w.u64(existing.as_u64());
                }
                IntentRefusal::Locked { holder } => {
                    w.u8(2);
                    w.meta(*holder);
                }
                IntentRefusal::Full { nodes, max } => {
                    w.u8(3);
                    w.u64(*nodes as u64);
                    w.u64(*max as u64);
                }
                IntentRefusal::Rejected(e) => {
                    w.u8(4);
                    tree_error(w, e);
                }
                IntentRefusal::BelowClosed { ts, closed } => {
                    w.u8(5);
                    w.u64(ts.as_u64());
                    w.u64(closed.as_u64());
                }
            }
        }
        StepOutcome::RecordDone => w.u8(2),
        StepOutcome::RecordRefused(refusal) => {
            w.u8(3);
            record_refusal(w, refusal);
        }
        StepOutcome::Resolved => w.u8(4),
        StepOutcome::Started(start) => {
            w.u8(5);
            match start {
                RecoveryStart::Alive => w.u8(0),
                RecoveryStart::AbortedMissing => w.u8(1),
                RecoveryStart::Decided { status, in_flight } => {
                    w.u8(2);
                    w.u8(status_code(*status));
                    w.ids(in_flight);
                }
                RecoveryStart::Staging { in_flight } => {
                    w.u8(3);
                    w.ids(in_flight);
                }
            }
        }
        StepOutcome::Checked(check) => {
            w.u8(6);
            w.u8(matches!(check, Check::Prevented) as u8);
        }
        StepOutcome::Decided(status) => {
            w.u8(7);
            w.u8(status_code(*status));
        }
    }
}

fn record_refusal(w: &mut Writer, refusal: &RecordRefusal) {
    match refusal {
        RecordRefusal::Decided { txn, status } => {
            w.u8(0);
            w.txn_id(*txn);
            w.u8(status_code(*status));
        }
        RecordRefusal::Missing { txn } => {
            w.u8(1);
            w.txn_id(*txn);
        }
        RecordRefusal::TooOld { txn, ts } => {
            w.u8(2);
            w.txn_id(*txn);
            w.u64(ts.as_u64());
        }
    }
}

fn read_step_outcome(r: &mut Reader<'_>) -> Result<StepOutcome, ForwardError> {
    Ok(match r.u8()? {
        0 => StepOutcome::IntentWritten,
        1 => StepOutcome::IntentRefused(match r.u8()? {
            0 => IntentRefusal::Closed { txn: r.txn_id()? },
            1 => IntentRefusal::TooOld {
                ts: Timestamp::from_u64(r.u64()?),
                existing: Timestamp::from_u64(r.u64()?),
            },
            2 => IntentRefusal::Locked { holder: r.meta()? },
            3 => IntentRefusal::Full {
                nodes: r.u64()? as usize,
                max: r.u64()? as usize,
            },
            4 => IntentRefusal::Rejected(read_tree_error(r)?),
            5 => IntentRefusal::BelowClosed {
                ts: Timestamp::from_u64(r.u64()?),
                closed: Timestamp::from_u64(r.u64()?),
            },
            t => return Err(tag("intent refusal", t)),
        }),
        2 => StepOutcome::RecordDone,
        3 => StepOutcome::RecordRefused(match r.u8()? {
            0 => RecordRefusal::Decided {
                txn: r.txn_id()?,
                status: read_status(r)?,
            },
            1 => RecordRefusal::Missing { txn: r.txn_id()? },
            2 => RecordRefusal::TooOld {
                txn: r.txn_id()?,
                ts: Timestamp::from_u64(r.u64()?),
            },
            t => return Err(tag("record refusal", t)),
        }),
        4 => StepOutcome::Resolved,
        5 => StepOutcome::Started(match r.u8()? {
            0 => RecoveryStart::Alive,
            1 => RecoveryStart::AbortedMissing,
            2 => RecoveryStart::Decided {
                status: read_status(r)?,
                in_flight: r.ids()?,
            },
            3 => RecoveryStart::Staging {
                in_flight: r.ids()?,
            },
            t => return Err(tag("recovery start", t)),
        }),
        6 => StepOutcome::Checked(match r.u8()? {
            0 => Check::Found,
            _ => Check::Prevented,
        }),
        7 => StepOutcome::Decided(read_status(r)?),
        t => return Err(tag("step outcome", t)),
    })
}

fn tree_error(w: &mut Writer, error: &TreeError) {
    match error {
        TreeError::NotFound { path } => {
            w.u8(0);
            w.str(path);
        }
        TreeError::PreconditionFailed { index, path } => {
            w.u8(1);
            w.u64(*index as u64);
            w.str(path);
        }
        other => {
            w.u8(2);
            w.str(other.code());
            w.str(&other.to_string());
        }
    }
}

fn known_code(code: &str) -> &'static str {
    TREE_ERROR_CODES
        .iter()
        .find(|c| **c == code)
        .copied()
        .unwrap_or("rejected")
}

fn read_tree_error(r: &mut Reader<'_>) -> Result<TreeError, ForwardError> {
    Ok(match r.u8()? {
        0 => TreeError::NotFound { path: r.string()? },
        1 => TreeError::PreconditionFailed {
            index: r.u64()? as usize,
            path: r.string()?,
        },
        2 => TreeError::Remote {
            code: known_code(&r.string()?),
            message: r.string()?,
        },
        t => return Err(tag("tree error", t)),
    })
}

fn reply_error(w: &mut Writer, error: &ReplyError) {
    let text = |w: &mut Writer, tag: u8, s: &str| {
        w.u8(tag);
        w.str(s);
    };
    match error {
        ReplyError::NotLeader { leader } => {
            w.u8(0);
            w.u64(leader.unwrap_or(0));
        }
        ReplyError::Dropped => w.u8(1),
        ReplyError::UnknownOutcome => w.u8(2),
        ReplyError::TooLarge { bytes, max } => {
            w.u8(3);
            w.u64(*bytes as u64);
            w.u64(*max as u64);
        }
        ReplyError::Rejected(e) => {
            w.u8(4);
            tree_error(w, e);
        }
        ReplyError::ClockOffset { beyond, members } => {
            w.u8(5);
            w.u64(*beyond as u64);
            w.u64(*members as u64);
        }
        ReplyError::UnknownShard { shard } => {
            w.u8(6);
            w.u32(*shard);
        }
        ReplyError::Unavailable { reason } => text(w, 7, reason),
        ReplyError::InvalidPath { reason } => text(w, 8, reason),
        ReplyError::BadRequest { reason } => text(w, 9, reason),
        ReplyError::Malformed { reason } => text(w, 10, reason),
        ReplyError::Replayed { code, message } => {
            w.u8(11);
            w.str(code);
            w.str(message);
        }
        ReplyError::StaleSequence { seq, last } => {
            w.u8(12);
            w.u64(*seq);
            w.u64(*last);
        }
        ReplyError::CrossShard => w.u8(13),
        ReplyError::Locked { holder } => {
            w.u8(14);
            w.meta(*holder);
        }
    }
}

fn read_reply_error(r: &mut Reader<'_>) -> Result<ReplyError, ForwardError> {
    Ok(match r.u8()? {
        0 => ReplyError::NotLeader {
            leader: Some(r.u64()?).filter(|l| *l != 0),
        },
        1 => ReplyError::Dropped,
        2 => ReplyError::UnknownOutcome,
        3 => ReplyError::TooLarge {
            bytes: r.u64()? as usize,
            max: r.u64()? as usize,
        },
        4 => ReplyError::Rejected(read_tree_error(r)?),
        5 => ReplyError::ClockOffset {
            beyond: r.u64()? as usize,
            members: r.u64()? as usize,
        },
        6 => ReplyError::UnknownShard { shard: r.u32()? },
        7 => ReplyError::Unavailable {
            reason: r.string()?,
        },
        8 => ReplyError::InvalidPath {
            reason: r.string()?,
        },
        9 => ReplyError::BadRequest {
            reason: r.string()?,
        },
        10 => ReplyError::Malformed {
            reason: r.string()?,
        },
        11 => ReplyError::Replayed {
            code: known_code(&r.string()?),
            message: r.string()?,
        },
        12 => ReplyError::StaleSequence {
            seq: r.u64()?,
            last: r.u64()?,
        },
        13 => ReplyError::CrossShard,
        14 => ReplyError::Locked { holder: r.meta()? },
        t => return Err(tag("reply error", t)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::{Op, Prop, Txn};
    use crate::txn::step::Step;
    use crate::value::Value;

    fn meta() -> TxnMeta {
        TxnMeta {
            id: TxnId { node: 2, seq: 77 },
            ts: Timestamp::new(9, 3),
            anchor: 5,
        }
    }

    #[test]
    fn requests_and_outcomes_round_trip_and_every_truncation_is_refused() {
        let txn = Txn::single(Op::Set {
            path: "/root/a".into(),
            props: vec![Prop::new("x", Value::Int(3))],
        });
        let requests = [
            Request::Read {
                path: "/root/a".into(),
                target: ReadTarget::Prop("x".into()),
            },
            Request::Read {
                path: "/root".into(),
                target: ReadTarget::Subtree,
            },
            Request::Propose(txn.clone()),
            Request::Step(Step::WriteIntent {
                meta: meta().into(),
                txn,
            }),
            Request::Step(Step::RecoverDecide {
                meta: meta().into(),
                all_found: true,
            }),
        ];
        for request in &requests {
            let bytes = encode_request(4, request);
            assert_eq!(decode_request(&bytes), Ok((4, request.clone())));
            for cut in 0..bytes.len() {
                assert!(
                    decode_request(&bytes[..cut]).is_err(),
                    "{request:?} cut at {cut}"
                );
            }
        }
        let outcomes: Vec<Outcome> = vec![
            Ok(Answer::Written {
                index: 4,
                term: 2,
                hlc: Timestamp::new(5, 1),
            }),
            Ok(Answer::Value(Some(Value::Vector2([1.0, 2.0])))),
            Ok(Answer::Value(None)),
            Ok(Answer::Step(StepOutcome::IntentRefused(
                IntentRefusal::Locked { holder: meta() },
            ))),
            Ok(Answer::Step(StepOutcome::IntentRefused(
                IntentRefusal::Rejected(TreeError::PreconditionFailed {
                    index: 1,
                    path: "/root/b".into(),
                }),
            ))),
            Ok(Answer::Step(StepOutcome::Started(RecoveryStart::Staging {
                in_flight: vec![1, 3],
            }))),
            Ok(Answer::Step(StepOutcome::RecordRefused(
                RecordRefusal::Decided {
                    txn: meta().id,
                    status: Status::Committed,
                },
            ))),
            Ok(Answer::Step(StepOutcome::Checked(Check::Prevented))),
            Err(ReplyError::NotLeader { leader: Some(3) }),
            Err(ReplyError::NotLeader { leader: None }),
            Err(ReplyError::Locked { holder: meta() }),
            Err(ReplyError::Rejected(TreeError::NotFound {
                path: "/root/z".into(),
            })),
            Err(ReplyError::UnknownOutcome),
        ];
        for outcome in &outcomes {
            let bytes = encode_outcome(outcome);
            assert_eq!(&decode_outcome(&bytes).expect("decodes"), outcome);
            for cut in 0..bytes.len() {
                assert!(
                    decode_outcome(&bytes[..cut]).is_err(),
                    "{outcome:?} cut at {cut}"
                );
            }
        }
        let other = TreeError::NameTaken {
            parent: "/root".into(),
            name: "a".into(),
        };
        let bytes = encode_outcome(&Err(ReplyError::Rejected(other.clone())));
        match decode_outcome(&bytes) {
            Ok(Err(ReplyError::Rejected(remote))) => {
                assert_eq!(remote.code(), other.code());
                assert_eq!(remote.to_string(), other.to_string());
            }
            decoded => panic!("{decoded:?}"),
        }
    }
}
