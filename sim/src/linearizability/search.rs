//! Porcupine's `checkSingle` over one register: Wing & Gong's depth-first search over call
//! and return events, with Lowe's memo (see the parent module's `# Algorithm`).
//!
//! # Invariants
//! - The placed operations are a prefix of an order that respects real time: a call is
//!   placed only while it precedes every pending return in the list.
//! - The register value is the result of applying the placed steps in order.
//! - A memoized (bitset, value) state is never explored twice: once placed and backtracked
//!   over, it is known to have no extension to a full linearization.
//! - The list holds exactly the events of the entries not yet placed, in time order.

use super::memo::Memo;
use super::{Entry, Step, ValueId, ViolationKind, NEVER, NIL, UNSET};

/// The list's head sentinel's index.
const HEAD: u32 = 0;

/// A call or return event; node `n` of the list is `events[n - 1]`.
#[derive(Clone, Copy, Debug)]
struct Event {
    entry: u32,
    /// For a call, the node of its return; `NIL` for a return.
    return_node: u32,
}

/// The current prefix of the search.
struct Path {
    /// Bitset of the placed entries.
    linearized: Vec<u64>,
    /// Zobrist hash of `linearized`.
    hash: u64,
    register: ValueId,
    /// (call node, register before it, how), in linearization order.
    placed: Vec<(u32, ValueId, Placement)>,
}

/// Whether backtracking over a placement should try the alternatives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placement {
    /// One of several candidates: on backtrack, try the next.
    Choice,
    /// Safe to place (see `Search::run`): if it fails, so does the prefix before it.
    Forced,
}

/// The deepest dead end, for the explanation; every field holds entry indices.
pub(super) struct Stuck {
    /// The longest linearizable prefix found, in linearization order.
    pub(super) prefix: Vec<u32>,
    /// The entry whose completion came before any extension of `prefix` could place it.
    pub(super) blocked: u32,
    /// The other entries that could have gone next.
    pub(super) candidates: Vec<u32>,
}

/// Porcupine's `checkSingle` over one register.
pub(super) struct Search<'r> {
    entries: &'r [Entry],
    events: Vec<Event>,
    next: Vec<u32>,
    prev: Vec<u32>,
    pub(super) memo: Memo,
    /// Per entry, its bit in `Path::linearized`: the entries that return in invoke order,
    /// then, from the next word on, those that never do (the layout `Memo` compresses).
    bits: Vec<usize>,
    /// Zobrist key per entry.
    zobrist: Vec<u64>,
    pub(super) stuck: Option<Stuck>,
}

impl<'r> Search<'r> {
    pub(super) fn new(entries: &'r [Entry]) -> Search<'r> {
        let mut order: Vec<(u64, bool, u32)> = Vec::with_capacity(2 * entries.len());
        for (entry, e) in (0u32..).zip(entries) {
            // At equal times calls sort first (`false < true`): the operations overlap.
            order.push((e.invoke, false, entry));
            order.push((e.complete, true, entry));
        }
        order.sort_unstable();
        let mut return_node = vec![NIL; entries.len()];
        for (node, &(_, is_return, entry)) in (1u32..).zip(&order) {
            if is_return {
                return_node[entry as usize] = node;
            }
        }
        let events = order
            .iter()
            .map(|&(_, is_return, entry)| Event {
                entry,
                return_node: if is_return {
                    NIL
                } else {
                    return_node[entry as usize]
                },
            })
            .collect();
        let nodes = u32::try_from(order.len() + 1).expect("checked in prepare");
        let mut next: Vec<u32> = (1..=nodes).collect();
        next[nodes as usize - 1] = NIL;
        let prev: Vec<u32> = (0..nodes).map(|n| n.wrapping_sub(1)).collect();
        let (bits, known) = bit_layout(entries);
        Search {
            entries,
            events,
            next,
            prev,
            memo: Memo::new(known, (entries.len() - known).div_ceil(64)),
            bits,
            zobrist: (0..entries.len() as u64)
                .map(|e| mix(e.wrapping_add(1)))
                .collect(),
            stuck: None,
        }
    }

    /// Wing & Gong's search with Lowe's memo; `Err` says why no linearization was found.
    ///
    /// One pruning beyond Porcupine: a pending read that matches the register is placed at
    /// once and is no choice point. If a linearization extends the prefix, moving that read
    /// to just after the prefix gives another one: it changes nothing, and no pending
    /// operation completed before it was invoked (its call precedes every pending return).
    ///
    /// The search succeeds once every pending operation is an unknown write or CAS that
    /// never returns (`NEVER`): each of them may never have taken effect.
    pub(super) fn run(&mut self, states_max: u64) -> Result<(), ViolationKind> {
        let mut path = Path {
            linearized: vec![0u64; self.memo.words_per_set],
            hash: 0,
            register: UNSET,
            placed: Vec::with_capacity(self.entries.len()),
        };
        let mut node = self.next[HEAD as usize];
        let mut level_start = true;
        while self.next[HEAD as usize] != NIL {
            if level_start {
                level_start = false;
                if let Some(read) = self.matching_read(path.register) {
                    if self.place(&mut path, read, Placement::Forced, states_max)? {
                        (node, level_start) = (self.next[HEAD as usize], true);
                    } else {
                        // Explored and failed before, so this prefix fails too.
                        node = self.backtrack(&mut path)?;
                    }
                    continue;
                }
            }
            assert_ne!(node, NIL, "the list always ends with a return event");
            let event = self.events[node as usize - 1];
            if event.return_node == NIL {
                if self.entries[event.entry as usize].complete == NEVER {
                    // Returns are in time order and every call precedes `NEVER`, so what
                    // is pending never returns: a linearization that leaves it out.
                    break;
                }
                self.note_dead_end(&path.placed, event.entry, node);
                node = self.backtrack(&mut path)?;
            } else if self.place(&mut path, node, Placement::Choice, states_max)? {
                (node, level_start) = (self.next[HEAD as usize], true);
            } else {
                node = self.next[node as usize];
            }
        }
        debug_assert!(self.entries.iter().enumerate().all(|(entry, e)| {
            let bit = self.bits[entry];
            e.complete == NEVER || path.linearized[bit / 64] >> (bit % 64) & 1 == 1
        }));
        Ok(())
    }

    /// The first pending read that the register's value satisfies.
    fn matching_read(&self, register: ValueId) -> Option<u32> {
        let mut node = self.next[HEAD as usize];
        while node != NIL {
            let event = self.events[node as usize - 1];
            if event.return_node == NIL {
                return None;
            }
            if self.entries[event.entry as usize].step == Step::Read(register) {
                return Some(node);
            }
            node = self.next[node as usize];
        }
        None
    }

    /// Places the call at `node` if its step applies and the state it leads to is new.
    fn place(
        &mut self,
        path: &mut Path,
        node: u32,
        placement: Placement,
        states_max: u64,
    ) -> Result<bool, ViolationKind> {
        let entry = self.events[node as usize - 1].entry as usize;
        let Some(after) = self.entries[entry].step.apply(path.register) else {
            return Ok(false);
        };
        flip(&mut path.linearized, self.bits[entry]);
        let hash = path.hash ^ self.zobrist[entry] ^ mix(u64::from(after) << 32);
        if !self.memo.insert(&path.linearized, after, hash) {
            flip(&mut path.linearized, self.bits[entry]);
            return Ok(false);
        }
        if self.memo.len() as u64 > states_max {
            return Err(ViolationKind::SearchBoundExceeded { states_max });
        }
        path.hash ^= self.zobrist[entry];
        path.placed.push((node, path.register, placement));
        path.register = after;
        self.lift(node);
        Ok(true)
    }

    /// Undoes placements up to and including the last choice; returns where to look next.
    fn backtrack(&mut self, path: &mut Path) -> Result<u32, ViolationKind> {
        loop {
            let Some((call, before, placement)) = path.placed.pop() else {
                return Err(ViolationKind::NotLinearizable);
            };
            let entry = self.events[call as usize - 1].entry as usize;
            flip(&mut path.linearized, self.bits[entry]);
            path.hash ^= self.zobrist[entry];
            path.register = before;
            self.unlift(call);
            if placement == Placement::Choice {
                return Ok(self.next[call as usize]);
            }
        }
    }

    /// Remembers the deepest point where an operation's completion came before it was placed.
    fn note_dead_end(&mut self, placed: &[(u32, ValueId, Placement)], blocked: u32, node: u32) {
        if self
            .stuck
            .as_ref()
            .is_some_and(|s| s.prefix.len() >= placed.len())
        {
            return;
        }
        let mut candidates = Vec::new();
        let mut at = self.next[HEAD as usize];
        while at != node {
            let entry = self.events[at as usize - 1].entry;
            if entry != blocked {
                candidates.push(entry);
            }
            at = self.next[at as usize];
        }
        self.stuck = Some(Stuck {
            prefix: placed
                .iter()
                .map(|&(call, _, _)| self.events[call as usize - 1].entry)
                .collect(),
            blocked,
            candidates,
        });
    }

    /// Takes a call and its return out of the list.
    fn lift(&mut self, call: u32) {
        let ret = self.events[call as usize - 1].return_node;
        self.unlink(call);
        self.unlink(ret);
    }

    /// Undoes `lift`, in reverse order (dancing links).
    fn unlift(&mut self, call: u32) {
        let ret = self.events[call as usize - 1].return_node;
        self.relink(ret);
        self.relink(call);
    }

    fn unlink(&mut self, node: u32) {
        let (before, after) = (self.prev[node as usize], self.next[node as usize]);
        self.next[before as usize] = after;
        if after != NIL {
            self.prev[after as usize] = before;
        }
    }

    fn relink(&mut self, node: u32) {
        let (before, after) = (self.prev[node as usize], self.next[node as usize]);
        self.next[before as usize] = node;
        if after != NIL {
            self.prev[after as usize] = node;
        }
    }
}

fn flip(set: &mut [u64], bit: usize) {
    set[bit / 64] ^= 1 << (bit % 64);
}

/// Each entry's bit (see `Search::bits`), and how many entries return.
fn bit_layout(entries: &[Entry]) -> (Vec<usize>, usize) {
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_unstable_by_key(|&e| (entries[e].complete == NEVER, entries[e].invoke, e));
    let known = entries.iter().filter(|e| e.complete != NEVER).count();
    let mut bits = vec![0; entries.len()];
    for (rank, &entry) in order.iter().enumerate() {
        bits[entry] = match rank < known {
            true => rank,
            false => known.div_ceil(64) * 64 + (rank - known),
        };
    }
    (bits, known)
}

/// SplitMix64's finalizer: a bijection that spreads every input bit.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
