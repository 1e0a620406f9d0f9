//! Exactly-once writes: per shard, each client session's last applied request and its answer
//! (Raft dissertation §6.3, "Implementing linearizable semantics").
//!
//! A client that resends a write after a timeout, a dropped connection or `unknown_outcome`
//! cannot know whether the first copy was applied. With a `SessionSeq` on the write, the
//! shard's state machine applies a given `(session, seq)` at most once and answers every
//! later copy with the first copy's answer.
//!
//! The table is part of the replicated state: it changes only when an entry applies, from
//! the entry's own data and HLC, and travels in snapshots. So every replica holds the same
//! table at the same index, and a new leader answers a retry as the old one would have.
//!
//! # Bounds and expiry (what a client may rely on)
//! - A session is forgotten `SESSION_TTL_MS` of log time (entry HLC wall clock) after its
//!   last write to the shard, or earlier when the shard holds `SESSIONS_MAX` sessions and
//!   it is the least recently used. A forgotten session is new again: a retry arriving after
//!   that may apply twice. Clients therefore stop retrying long before the TTL (the Rust
//!   client gives up after seconds).
//! - One write in flight per session: `seq` increases with every new write. A copy of an
//!   older `seq` than the last applied is refused (`stale_sequence`) and changes nothing.
//!
//! # Invariants
//! - `by_age` holds exactly one `(last, session)` per entry of `by_id`, with its `last`.
//! - `by_id.len() <= SESSIONS_MAX`.

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use crate::hlc::Timestamp;
use crate::op::SessionSeq;

/// How long (log time) a shard remembers an idle session.
pub const SESSION_TTL_MS: u64 = 10 * 60 * 1000;
/// Most sessions a shard remembers.
pub const SESSIONS_MAX: usize = 65_536;

/// The answer a write got when it applied, kept for its retries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Remembered {
    Written {
        index: u64,
        term: u64,
        hlc: Timestamp,
    },
    /// The tree rejected it (nothing changed): the code and message the client saw.
    Rejected { code: &'static str, message: String },
}

/// What to do with a write of a session when its entry applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Not seen before: apply it, then `record` its answer.
    Fresh,
    /// Already applied: answer this, apply nothing.
    Duplicate(Remembered),
    /// Older than the session's last applied write: apply nothing.
    Stale { last: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Session {
    seq: u64,
    last: Timestamp,
    answer: Remembered,
}

/// Why a snapshot's session table could not be read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SessionsError {
    #[error("session table truncated at byte {at}")]
    Truncated { at: usize },
    #[error("session table: unknown answer tag {tag}")]
    UnknownTag { tag: u8 },
    #[error("session table: {count} sessions exceed the limit of {SESSIONS_MAX}")]
    TooMany { count: u64 },
    #[error("session table: rejection message is not UTF-8")]
    NotUtf8,
}

/// Every session a shard remembers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sessions {
    by_id: BTreeMap<u64, Session>,
    by_age: BTreeSet<(Timestamp, u64)>,
}

impl Sessions {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Whether a write of `key` applies.
    pub fn admit(&self, key: SessionSeq) -> Admission {
        match self.by_id.get(&key.session) {
            None => Admission::Fresh,
            Some(s) if key.seq > s.seq => Admission::Fresh,
            Some(s) if key.seq == s.seq => Admission::Duplicate(s.answer.clone()),
            Some(s) => Admission::Stale { last: s.seq },
        }
    }

    /// Remembers the answer of a fresh write applied at log time `at`.
    pub fn record(&mut self, key: SessionSeq, at: Timestamp, answer: Remembered) {
        if let Some(old) = self.by_id.remove(&key.session) {
            debug_assert!(old.seq < key.seq, "only fresh writes are recorded");
            self.by_age.remove(&(old.last, key.session));
        }
        while self.by_id.len() >= SESSIONS_MAX {
            self.evict_oldest();
        }
        self.by_age.insert((at, key.session));
        let session = Session {
            seq: key.seq,
            last: at,
            answer,
        };
        self.by_id.insert(key.session, session);
        debug_assert_eq!(self.by_id.len(), self.by_age.len());
    }

    /// Forgets sessions idle for `SESSION_TTL_MS` of log time before `now`.
    pub fn expire(&mut self, now: Timestamp) {
        let horizon = now.wall_ms().saturating_sub(SESSION_TTL_MS);
        while self
            .by_age
            .first()
            .is_some_and(|(last, _)| last.wall_ms() < horizon)
        {
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        if let Some((_, session)) = self.by_age.pop_first() {
            self.by_id.remove(&session);
        }
    }

    /// Checks the module invariants.
    pub fn check_invariants(&self) {
        assert_eq!(
            self.by_id.len(),
            self.by_age.len(),
            "one age entry per session"
        );
        assert!(self.by_id.len() <= SESSIONS_MAX);
        for (id, s) in &self.by_id {
            assert!(self.by_age.contains(&(s.last, *id)), "session {id} aged");
        }
    }

    /// Appends the table in the snapshot layout: count u64, then per session (id order)
    /// `id u64 | seq u64 | last u64 | tag u8` and for tag 0 `index u64 | term u64 | hlc u64`,
    /// for tag 1 `code_len u16 | code | message_len u32 | message`; little-endian.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.by_id.len() as u64).to_le_bytes());
        for (id, s) in &self.by_id {
            for word in [*id, s.seq, s.last.as_u64()] {
                out.extend_from_slice(&word.to_le_bytes());
            }
            match &s.answer {
                Remembered::Written { index, term, hlc } => {
                    out.push(0);
                    for word in [*index, *term, hlc.as_u64()] {
                        out.extend_from_slice(&word.to_le_bytes());
                    }
                }
                Remembered::Rejected { code, message } => {
                    out.push(1);
                    let code_len = u16::try_from(code.len()).expect("codes are short");
                    out.extend_from_slice(&code_len.to_le_bytes());
                    out.extend_from_slice(code.as_bytes());
                    // Messages come from `TreeError`'s Display of bounded paths and names.
                    let message = &message.as_bytes()[..message.len().min(u32::MAX as usize)];
                    out.extend_from_slice(&(message.len() as u32).to_le_bytes());
                    out.extend_from_slice(message);
                }
            }
        }
    }

    /// Reads a table written by `encode`; returns it and the bytes it took. The bytes come
    /// from a peer or the disk: anything malformed is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<(Sessions, usize), SessionsError> {
        let mut reader = Reader { bytes, at: 0 };
        let count = reader.u64()?;
        if count > SESSIONS_MAX as u64 {
            return Err(SessionsError::TooMany { count });
        }
        let mut sessions = Sessions::default();
        for _ in 0..count {
            let (id, seq, last) = (reader.u64()?, reader.u64()?, reader.u64()?);
            let answer = match reader.take(1)?[0] {
                0 => Remembered::Written {
                    index: reader.u64()?,
                    term: reader.u64()?,
                    hlc: Timestamp::from_u64(reader.u64()?),
                },
                1 => {
                    let code_len = u16::from_le_bytes(reader.array()?) as usize;
                    let code = std::str::from_utf8(reader.take(code_len)?)
                        .map_err(|_| SessionsError::NotUtf8)?;
                    let message_len = u32::from_le_bytes(reader.array()?) as usize;
                    let message = std::str::from_utf8(reader.take(message_len)?)
                        .map_err(|_| SessionsError::NotUtf8)?;
                    Remembered::Rejected {
                        code: static_code(code),
                        message: message.to_owned(),
                    }
                }
                tag => return Err(SessionsError::UnknownTag { tag }),
            };
            let last = Timestamp::from_u64(last);
            sessions.by_age.insert((last, id));
            let old = sessions.by_id.insert(id, Session { seq, last, answer });
            if let Some(old) = old {
                sessions.by_age.remove(&(old.last, id));
            }
        }
        Ok((sessions, reader.at))
    }
}

/// The rejection codes a tree can answer (`TreeError::code`), so that a decoded table keeps
/// `&'static str` codes; an unknown one (a newer build's) reads as the generic `rejected`.
fn static_code(code: &str) -> &'static str {
    const CODES: [&str; 14] = [
        "invalid_path",
        "not_found",
        "name_taken",
        "root_is_fixed",
        "cycle",
        "index_out_of_range",
        "invalid_class",
        "invalid_property",
        "invalid_signal",
        "invalid_value",
        "too_many_properties",
        "too_many_children",
        "too_many_nodes",
        "too_large",
    ];
    match code {
        "precondition_failed" => "precondition_failed",
        other => CODES
            .into_iter()
            .find(|known| *known == other)
            .unwrap_or("rejected"),
    }
}

struct Reader<'b> {
    bytes: &'b [u8],
    at: usize,
}

impl<'b> Reader<'b> {
    fn take(&mut self, len: usize) -> Result<&'b [u8], SessionsError> {
        let end = self
            .at
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(SessionsError::Truncated { at: self.at })?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], SessionsError> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    fn u64(&mut self) -> Result<u64, SessionsError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(session: u64, seq: u64) -> SessionSeq {
        SessionSeq { session, seq }
    }

    fn written(index: u64) -> Remembered {
        Remembered::Written {
            index,
            term: 2,
            hlc: Timestamp::new(1_000, 0),
        }
    }

    #[test]
    fn a_resent_write_is_a_duplicate_and_an_older_one_stale() {
        let mut sessions = Sessions::default();
        assert_eq!(sessions.admit(key(7, 1)), Admission::Fresh);
        sessions.record(key(7, 1), Timestamp::new(1_000, 0), written(5));
        assert_eq!(sessions.admit(key(7, 1)), Admission::Duplicate(written(5)));
        assert_eq!(sessions.admit(key(7, 2)), Admission::Fresh);
        sessions.record(key(7, 3), Timestamp::new(1_001, 0), written(6));
        assert_eq!(sessions.admit(key(7, 2)), Admission::Stale { last: 3 });
        assert_eq!(sessions.admit(key(8, 1)), Admission::Fresh);
        sessions.check_invariants();
    }

    #[test]
    fn idle_sessions_expire_by_log_time() {
        let mut sessions = Sessions::default();
        sessions.record(key(1, 1), Timestamp::new(1_000, 0), written(1));
        sessions.record(key(2, 1), Timestamp::new(2_000, 0), written(2));
        sessions.expire(Timestamp::new(1_000 + SESSION_TTL_MS, 0));
        assert_eq!(sessions.len(), 2, "exactly the TTL is not yet expired");
        sessions.expire(Timestamp::new(1_001 + SESSION_TTL_MS, 0));
        assert_eq!(sessions.admit(key(1, 1)), Admission::Fresh, "forgotten");
        assert_eq!(sessions.admit(key(2, 1)), Admission::Duplicate(written(2)));
        sessions.check_invariants();
    }

    #[test]
    fn a_full_table_forgets_the_least_recently_used_session() {
        let mut sessions = Sessions::default();
        for id in 0..SESSIONS_MAX as u64 {
            sessions.record(key(id, 1), Timestamp::new(10 + id, 0), written(id));
        }
        // Session 0 writes again: session 1 is now the least recently used.
        sessions.record(key(0, 2), Timestamp::new(1_000_000, 0), written(0));
        sessions.record(key(u64::MAX, 1), Timestamp::new(1_000_001, 0), written(9));
        assert_eq!(sessions.len(), SESSIONS_MAX);
        assert_eq!(sessions.admit(key(1, 1)), Admission::Fresh, "evicted");
        assert_eq!(sessions.admit(key(0, 2)), Admission::Duplicate(written(0)));
        sessions.check_invariants();
    }

    #[test]
    fn the_table_round_trips_and_malformed_bytes_are_errors() {
        let mut sessions = Sessions::default();
        sessions.record(key(1, 4), Timestamp::new(5, 1), written(3));
        let rejected = Remembered::Rejected {
            code: "precondition_failed",
            message: "precondition 0 on /root/k does not hold".into(),
        };
        sessions.record(key(9, 2), Timestamp::new(6, 0), rejected.clone());
        let mut bytes = Vec::new();
        sessions.encode(&mut bytes);
        bytes.extend_from_slice(b"tail");
        let (back, used) = Sessions::decode(&bytes).expect("round trip");
        assert_eq!(back, sessions);
        assert_eq!(used, bytes.len() - 4);
        assert_eq!(back.admit(key(9, 2)), Admission::Duplicate(rejected));
        for cut in 0..used {
            assert!(Sessions::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad_tag = bytes.clone();
        bad_tag[8 + 24] = 7;
        assert_eq!(
            Sessions::decode(&bad_tag),
            Err(SessionsError::UnknownTag { tag: 7 })
        );
        let huge = u64::MAX.to_le_bytes();
        assert!(matches!(
            Sessions::decode(&huge),
            Err(SessionsError::TooMany { .. })
        ));
    }
}
