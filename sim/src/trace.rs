//! Trace recording for validation against `specs/RaftLeaderElection.tla`.
//!
//! Every replica step is turned into the spec actions it performs, each with the values the
//! acting server must hold afterwards; `specs/RaftLeaderElectionTrace.tla` replays them and
//! TLC decides whether some behaviour of the spec matches the whole trace.
//!
//! The mapping from raft-rs to the spec (which has no PreVote, and one entry per message):
//! - a pre-candidate is a spec follower; pre-vote messages are not events;
//! - becoming a candidate is `Timeout`; adopting a higher term is `UpdateTerm`;
//! - a granted vote is `HandleRVReq` (a refused one changes nothing, so it is not an event);
//! - a `MsgAppend` of k entries is k one-entry `AppendEntries` (k `HandleAEReq` on the
//!   receiver), an empty one a heartbeat at its prev index; `MsgHeartbeat` is an empty
//!   append at its commit index (raft-rs caps it at the follower's match);
//! - a leader or candidate that steps down in its term (CheckQuorum, a lost election) is
//!   `StepDown`; a new entry on a leader is `ClientRequest`; a leader's commit is
//!   `AdvanceCommitIndex`; a restart is `Restart`.
//!
//! Runs recorded this way have no log compaction (snapshots are not in the spec) and crash a
//! node only when its disk holds everything it wrote (the spec's log is the persisted log;
//! raft-rs's in-memory log equals it exactly then). See `SimOptions::trace`.

use std::fmt::Write as _;

use raft::prelude::{Message, MessageType};
use treesync_core::replica::{RaftView, StateRole};

/// One spec action and what the acting server holds after it (`None`: not checked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceEvent {
    pub kind: &'static str,
    pub node: u64,
    /// The other server: message source, or destination of `AppendEntries`.
    pub peer: u64,
    /// Message term (message events), else the term the node holds after.
    pub term: Option<u64>,
    /// prevLogIndex (`AppendEntries`, `HandleAEReq`) or matchIndex (`HandleAEResp`).
    pub index: u64,
    /// Entries in the message (0 or 1).
    pub n: u64,
    pub role: Option<&'static str>,
    /// `Some(0)`: no vote.
    pub vote: Option<u64>,
    /// (length, term of the last entry) of the log after.
    pub log: Option<(u64, u64)>,
    pub commit: Option<u64>,
}

impl TraceEvent {
    fn new(kind: &'static str, node: u64) -> TraceEvent {
        TraceEvent {
            kind,
            node,
            peer: 0,
            term: None,
            index: 0,
            n: 0,
            role: None,
            vote: None,
            log: None,
            commit: None,
        }
    }
}

fn spec_role(role: StateRole) -> &'static str {
    match role {
        StateRole::Leader => "leader",
        StateRole::Candidate => "candidate",
        StateRole::Follower | StateRole::PreCandidate => "follower",
    }
}

fn log_of(view: &RaftView) -> (u64, u64) {
    (
        view.last_index(),
        view.log_terms.last().copied().unwrap_or(0),
    )
}

fn term_at(view: &RaftView, index: u64) -> Option<u64> {
    if index == 0 {
        return Some(0);
    }
    let offset = index.checked_sub(view.first_index)?;
    view.log_terms.get(offset as usize).copied()
}

/// The events of one run, in the order the single-threaded simulator performed them (which
/// respects happens-before: a message is recorded sent before it is recorded received).
#[derive(Clone, Debug, Default)]
pub struct TraceRecorder {
    pub events: Vec<TraceEvent>,
    /// Something the spec cannot express happened (the trace is then not written).
    pub unsupported: Option<String>,
    pub restarts: u64,
    /// Restarts whose recovered vote differs from the vote before the crash.
    pub votes_lost: u64,
    /// Nodes whose spec commit index may lag raft-rs's: a restart zeroes the spec's (it is
    /// volatile there) while raft-rs recovers its own from the hard state, and raft-rs may
    /// advance it in a step no event states. Until the next advance an append states (the
    /// spec then matches it exactly), theirs is not checked.
    commit_unknown: std::collections::BTreeSet<u64>,
}

impl TraceRecorder {
    /// Records the spec actions of one replica step: `input` is the Raft message it handled
    /// (if any), `sent` what it sent at once.
    pub fn step(
        &mut self,
        id: u64,
        input: Option<&Message>,
        before: &RaftView,
        after: &RaftView,
        sent: &[Message],
    ) {
        if before.first_index != 1 || after.first_index != 1 {
            self.unsupported
                .get_or_insert_with(|| "log compaction (snapshots are not in the spec)".into());
        }
        let first_event = self.events.len();
        let mut role = spec_role(before.role);
        let mut log = log_of(before);
        let became_candidate =
            after.role == StateRole::Candidate && after.term == before.term + 1 && after.vote == id;
        if after.term > before.term && !became_candidate {
            let mut e = TraceEvent::new("UpdateTerm", id);
            (e.term, e.role, e.vote) = (Some(after.term), Some("follower"), Some(0));
            self.events.push(e);
            role = "follower";
        }
        if let Some(m) = input.filter(|m| m.term == after.term) {
            role = self.handle(id, m, before, after, role, &mut log);
        }
        if became_candidate {
            let mut e = TraceEvent::new("Timeout", id);
            (e.term, e.role, e.vote) = (Some(after.term), Some("candidate"), Some(id));
            self.events.push(e);
            role = "candidate";
        }
        let now = spec_role(after.role);
        if now == "follower" && role != "follower" {
            let mut e = TraceEvent::new("StepDown", id);
            (e.term, e.role) = (Some(after.term), Some("follower"));
            self.events.push(e);
        }
        if now == "leader" && role != "leader" {
            let mut e = TraceEvent::new("BecomeLeader", id);
            (e.term, e.role) = (Some(after.term), Some("leader"));
            self.events.push(e);
        }
        if now == "leader" {
            for index in log.0 + 1..=after.last_index() {
                let mut e = TraceEvent::new("ClientRequest", id);
                e.log = Some((index, after.term));
                self.events.push(e);
            }
            if after.commit > before.commit {
                let mut e = TraceEvent::new("AdvanceCommitIndex", id);
                e.commit = Some(after.commit);
                self.events.push(e);
                self.commit_unknown.remove(&id); // stated again from here on
            }
        }
        // A commit advance no event of this step states (raft-rs moved it in a way the
        // mapping above does not turn into an event) leaves the spec's behind, legitimately:
        // stop checking this node's until the next advance an event states.
        let stated = self.events[first_event..]
            .iter()
            .any(|e| e.node == id && e.commit == Some(after.commit));
        if after.commit != before.commit && !stated {
            self.commit_unknown.insert(id);
        }
        for m in sent {
            self.sent(id, m, after);
        }
    }

    /// A message handled in the node's current term; returns the spec role after it.
    fn handle(
        &mut self,
        id: u64,
        m: &Message,
        before: &RaftView,
        after: &RaftView,
        role: &'static str,
        log: &mut (u64, u64),
    ) -> &'static str {
        match m.get_msg_type() {
            MessageType::MsgRequestVote
                if after.vote == m.from && (before.vote != m.from || before.term != m.term) =>
            {
                let mut e = self.message_event("HandleRVReq", id, m);
                e.vote = Some(m.from);
                self.events.push(e);
            }
            MessageType::MsgRequestVoteResponse if !m.reject && role == "candidate" => {
                let e = self.message_event("HandleRVResp", id, m);
                self.events.push(e);
            }
            MessageType::MsgAppend => {
                let pieces = self.append_pieces(m, before);
                let last = pieces.len() - 1;
                for (i, (prev, n)) in pieces.into_iter().enumerate() {
                    let mut e = self.message_event("HandleAEReq", id, m);
                    (e.index, e.n, e.role) = (prev, n, Some("follower"));
                    if i == last {
                        e.log = Some(log_of(after));
                        e.commit = self.follower_commit(id, m.from, before, after);
                    }
                    self.events.push(e);
                }
                *log = log_of(after);
                return "follower";
            }
            MessageType::MsgHeartbeat => {
                let mut e = self.message_event("HandleAEReq", id, m);
                (e.index, e.role, e.log) = (m.commit, Some("follower"), Some(*log));
                e.commit = self.follower_commit(id, m.from, before, after);
                self.events.push(e);
                return "follower";
            }
            MessageType::MsgAppendResponse if !m.reject && role == "leader" => {
                let before_match = before.matched.get(&m.from).copied().unwrap_or(0);
                if m.index > before_match {
                    let mut e = self.message_event("HandleAEResp", id, m);
                    e.index = m.index;
                    self.events.push(e);
                }
            }
            MessageType::MsgSnapshot => {
                self.unsupported
                    .get_or_insert_with(|| "a snapshot was sent (not in the spec)".into());
            }
            _ => {}
        }
        role
    }

    /// The commit index a follower holds after an append, where the spec's must equal it.
    /// Checked, not left open: a follower may hold several appends of the same prefix sent
    /// at different commit indexes, and each choice would be a distinct spec state until a
    /// later event told them apart (8 states per event instead of 1).
    /// A leader whose own commit index is unchecked sends the spec's messages an unknown
    /// one, so what a follower takes from it is unchecked too (seed 4: a follower whose
    /// commit advanced unstated won an election).
    fn follower_commit(
        &mut self,
        id: u64,
        leader: u64,
        before: &RaftView,
        after: &RaftView,
    ) -> Option<u64> {
        if self.commit_unknown.contains(&leader) {
            self.commit_unknown.insert(id);
            return None;
        }
        if after.commit > before.commit {
            self.commit_unknown.remove(&id);
        }
        (!self.commit_unknown.contains(&id)).then_some(after.commit)
    }

    /// The one-entry spec messages a follower handles for one raft-rs `MsgAppend`, as
    /// (prevLogIndex, entries): raft-rs answers an append below its commit index with its
    /// commit index and ignores the rest; it rejects a mismatched one at the first entry.
    fn append_pieces(&self, m: &Message, before: &RaftView) -> Vec<(u64, u64)> {
        let k = m.entries.len() as u64;
        let all: Vec<(u64, u64)> = if k == 0 {
            vec![(m.index, 0)]
        } else {
            (0..k).map(|j| (m.index + j, 1)).collect()
        };
        if m.index < before.commit {
            let keep = (before.commit - m.index).min(k).max(1) as usize;
            return all.into_iter().take(keep).collect();
        }
        if term_at(before, m.index) != Some(m.log_term) {
            return all.into_iter().take(1).collect();
        }
        all
    }

    fn message_event(&self, kind: &'static str, id: u64, m: &Message) -> TraceEvent {
        let mut e = TraceEvent::new(kind, id);
        (e.peer, e.term) = (m.from, Some(m.term));
        e
    }

    /// A leader's appends and heartbeats, as the spec's one-entry `AppendEntries`.
    fn sent(&mut self, id: u64, m: &Message, view: &RaftView) {
        let pieces: Vec<(u64, u64)> = match m.get_msg_type() {
            MessageType::MsgAppend if m.entries.is_empty() => vec![(m.index, 0)],
            MessageType::MsgAppend => (0..m.entries.len() as u64)
                .map(|j| (m.index + j, 1))
                .collect(),
            MessageType::MsgHeartbeat => vec![(m.commit, 0)],
            MessageType::MsgSnapshot => {
                self.unsupported
                    .get_or_insert_with(|| "a snapshot was sent (not in the spec)".into());
                return;
            }
            _ => return,
        };
        if view.role != StateRole::Leader {
            self.unsupported
                .get_or_insert_with(|| format!("node {id} sent appends while not leader"));
        }
        for (prev, n) in pieces {
            let mut e = TraceEvent::new("AppendEntries", id);
            (e.peer, e.term, e.index, e.n) = (m.to, Some(m.term), prev, n);
            self.events.push(e);
        }
    }

    /// A restarted node: its persisted term, vote and log must be what the spec kept.
    pub fn restart(&mut self, id: u64, crashed: &RaftView, recovered: &RaftView) {
        self.restarts += 1;
        self.commit_unknown.insert(id);
        if (crashed.term, crashed.vote) != (recovered.term, recovered.vote) {
            self.votes_lost += 1;
        }
        let mut e = TraceEvent::new("Restart", id);
        (e.term, e.role, e.vote, e.log) = (
            Some(recovered.term),
            Some("follower"),
            Some(recovered.vote),
            Some(log_of(recovered)),
        );
        self.events.push(e);
    }

    /// The trace as a TLA+ module `RaftTrace` defining `Trace`, a sequence of records
    /// (`-1` and `""` mark fields the spec does not check for that event).
    pub fn to_tla(&self, title: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "---- MODULE RaftTrace ----");
        let _ = writeln!(out, "\\* {title}: {} events", self.events.len());
        let _ = writeln!(out, "EXTENDS Integers\nTrace == <<");
        for (i, e) in self.events.iter().enumerate() {
            let server = |s: u64| {
                if s == 0 {
                    "\"nil\"".to_owned()
                } else {
                    format!("\"s{s}\"")
                }
            };
            let int = |v: Option<u64>| v.map_or("-1".to_owned(), |v| v.to_string());
            let (len, last) = e.log.map_or((-1i64, -1i64), |(l, t)| (l as i64, t as i64));
            let _ = writeln!(
                out,
                "  [kind |-> \"{}\", node |-> {}, peer |-> {}, term |-> {}, index |-> {}, n |-> {}, role |-> \"{}\", vote |-> {}, len |-> {len}, last |-> {last}, commit |-> {}]{}",
                e.kind,
                server(e.node),
                server(e.peer),
                int(e.term),
                e.index,
                e.n,
                e.role.unwrap_or(""),
                e.vote.map_or("\"\"".to_owned(), server),
                int(e.commit),
                if i + 1 == self.events.len() { "" } else { "," }
            );
        }
        let _ = writeln!(out, ">>\n====");
        out
    }
}
