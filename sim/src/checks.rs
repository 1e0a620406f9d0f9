//! The safety properties checked after every step: election safety and state machine
//! safety per shard, unique acknowledgements per log index, and feed order.

use std::collections::BTreeMap;

use treesync_core::engine::Push;

/// Observations of one run; the first violated property is kept.
#[derive(Default)]
pub struct Observer {
    /// (shard, term) → the server that led it.
    leaders: BTreeMap<(u32, u64), u64>,
    /// (shard, applied index) → the hash chain of applied entries there.
    digests: BTreeMap<(u32, u64), u64>,
    /// (shard, index) → the term a write was acknowledged at.
    acked: BTreeMap<(u32, u64), u64>,
    /// (server, shard) → the latest (term, candidate) it granted a vote to.
    votes: BTreeMap<(u64, u32), (u64, u64)>,
    /// Subscription → what it saw last.
    feeds: BTreeMap<u64, FeedState>,
    pub violation: Option<String>,
    pub pushes: u64,
}

#[derive(Clone, Copy, Default)]
struct FeedState {
    index: u64,
    resolved: u64,
}

impl Observer {
    fn fail(&mut self, why: impl FnOnce() -> String) {
        if self.violation.is_none() {
            self.violation = Some(why());
        }
    }

    /// A replica's state after a step.
    pub fn replica(
        &mut self,
        server: u64,
        shard: u32,
        term: u64,
        leads: bool,
        applied: (u64, u64),
    ) {
        if leads {
            let first = *self.leaders.entry((shard, term)).or_insert(server);
            if first != server {
                self.fail(|| {
                    format!("election safety: servers {first} and {server} both led shard {shard} in term {term}")
                });
            }
        }
        let (index, digest) = applied;
        if index > 0 {
            let first = *self.digests.entry((shard, index)).or_insert(digest);
            if first != digest {
                self.fail(|| {
                    format!("state machine safety: server {server} applied a different log of shard {shard} up to index {index}")
                });
            }
        }
    }

    /// A push a mirror could not apply, or a mirror that differs from its replica.
    pub fn mirror(&mut self, server: u64, shard: u32, why: String) {
        self.fail(|| format!("feed replay: server {server} shard {shard}: {why}"));
    }

    /// A write acknowledged at (index, term): two acknowledgements at one index with
    /// different terms mean one of them was lost.
    pub fn acknowledged(&mut self, shard: u32, index: u64, term: u64) {
        let first = *self.acked.entry((shard, index)).or_insert(term);
        if first != term {
            self.fail(|| {
                format!("durability: shard {shard} acknowledged writes at index {index} in terms {first} and {term}: one was lost")
            });
        }
    }

    /// `server` granted its vote in `term` to `candidate` (the message has left it).
    pub fn voted(&mut self, server: u64, shard: u32, term: u64, candidate: u64) {
        self.votes.insert((server, shard), (term, candidate));
    }

    /// What a restart recovered: a vote granted in the recovered term must have survived
    /// (Raft persists `votedFor` before answering; forgetting it allows two leaders).
    pub fn recovered(&mut self, server: u64, shard: u32, term: u64, vote: u64) {
        let Some((voted_term, candidate)) = self.votes.get(&(server, shard)).copied() else {
            return;
        };
        if voted_term == term && vote != candidate {
            self.fail(|| {
                format!("vote durability: server {server} granted its shard {shard} vote in term {term} to {candidate} but recovered vote {vote}")
            });
        }
    }

    /// A subscriber is (re)started: its stream begins again.
    pub fn subscribed(&mut self, sub: u64) {
        self.feeds.insert(sub, FeedState::default());
    }

    /// One push to subscription `sub` (of `shard` on `server`).
    pub fn push(&mut self, sub: u64, server: u64, shard: u32, push: &Push) {
        self.pushes += 1;
        let state = self.feeds.entry(sub).or_default();
        let before = *state;
        let why = match push {
            Push::Snapshot { index, .. } => {
                state.index = *index;
                None
            }
            Push::Change { index, hlc, .. } => {
                state.index = *index;
                if *index <= before.index {
                    Some(format!("feed order: server {server} shard {shard}: change at index {index} after index {}", before.index))
                } else if *hlc <= before.resolved {
                    Some(format!("resolved order: server {server} shard {shard}: change at index {index} with HLC {hlc} after resolved {}", before.resolved))
                } else {
                    None
                }
            }
            Push::Resolved { hlc } => {
                state.resolved = state.resolved.max(*hlc);
                None
            }
        };
        if let Some(why) = why {
            self.fail(|| why);
        }
    }
}
