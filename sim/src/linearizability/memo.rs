//! The search's memo: the set of visited (linearized operations, register value) states.
//!
//! A full bitset per state would cost O(ops) bytes each, so O(ops²) for a long history of
//! one key (3 GB for 100,000 ops). States are stored encoded instead. The search gives
//! the ops that return bits `0..known` in invoke order, and the unknown ones that never
//! return (`NEVER`) the words after them. As the search proceeds in time, a linearized set
//! is all ones up to the earliest pending op, a window of about the concurrency after it,
//! and zeros beyond; so a set is stored as: the count of its leading all-ones known words,
//! the known words from there to its last non-zero known word, then every unknown word.
//!
//! # Invariants
//! - The encoding is a bijection from sets to words (`encode`): two states are equal iff
//!   their registers and encodings are.
//! - `slots` is a power of two and at most half full, so every probe sequence ends at an
//!   empty slot.
//! - State `s` owns `encoded[starts[s]..starts[s + 1]]`, `registers[s]` and `hashes[s]`;
//!   states are never removed.

use super::{ValueId, MEMO_SLOTS_MIN, NIL};

/// The set of visited (linearized set, register) states: open addressing over an arena.
pub(super) struct Memo {
    /// Words of a set as the search holds it: `known_words`, then the unknown ops' words.
    pub(super) words_per_set: usize,
    known_words: usize,
    /// The bits of the last known word that belong to ops.
    known_last_mask: u64,
    /// State `s`'s encoded set is `encoded[starts[s]..starts[s + 1]]`.
    encoded: Vec<u64>,
    starts: Vec<usize>,
    registers: Vec<ValueId>,
    hashes: Vec<u64>,
    /// State indices, `NIL` when empty; a power of two, at most half full.
    slots: Vec<u32>,
    /// The set being inserted, encoded.
    scratch: Vec<u64>,
}

impl Memo {
    /// A memo for sets of `known_bits` ops that return, then `unknown_words` more words.
    pub(super) fn new(known_bits: usize, unknown_words: usize) -> Memo {
        let known_words = known_bits.div_ceil(64);
        let known_last_mask = match known_bits % 64 {
            0 => u64::MAX,
            used => (1u64 << used) - 1,
        };
        Memo {
            words_per_set: known_words + unknown_words,
            known_words,
            known_last_mask,
            encoded: Vec::new(),
            starts: vec![0],
            registers: Vec::new(),
            hashes: Vec::new(),
            slots: vec![NIL; MEMO_SLOTS_MIN],
            scratch: Vec::with_capacity(known_words + unknown_words + 1),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.registers.len()
    }

    /// Adds the state; false if it was already there.
    pub(super) fn insert(&mut self, set: &[u64], register: ValueId, hash: u64) -> bool {
        assert_eq!(set.len(), self.words_per_set);
        self.encode(set);
        let mask = self.slots.len() - 1;
        let mut slot = hash as usize & mask;
        while self.slots[slot] != NIL {
            let state = self.slots[slot] as usize;
            if self.hashes[state] == hash
                && self.registers[state] == register
                && self.encoded(state) == self.scratch
            {
                return false;
            }
            slot = (slot + 1) & mask;
        }
        let state = u32::try_from(self.len()).expect("states_max is below u32::MAX");
        self.slots[slot] = state;
        self.encoded.extend_from_slice(&self.scratch);
        self.starts.push(self.encoded.len());
        self.registers.push(register);
        self.hashes.push(hash);
        if 2 * self.len() > self.slots.len() {
            self.grow();
        }
        true
    }

    /// `scratch` = [leading all-ones known words, known words up to the last non-zero one,
    /// every unknown word]. Decoding is unique: the length gives the middle's.
    fn encode(&mut self, set: &[u64]) {
        let known = &set[..self.known_words];
        let full = |word: usize| match word + 1 == self.known_words {
            true => self.known_last_mask,
            false => u64::MAX,
        };
        let base = (0..known.len())
            .find(|&word| known[word] != full(word))
            .unwrap_or(known.len());
        let end = known[base..]
            .iter()
            .rposition(|&word| word != 0)
            .map_or(base, |last| base + last + 1);
        self.scratch.clear();
        self.scratch.push(base as u64);
        self.scratch.extend_from_slice(&known[base..end]);
        self.scratch.extend_from_slice(&set[self.known_words..]);
    }

    fn encoded(&self, state: usize) -> &[u64] {
        &self.encoded[self.starts[state]..self.starts[state + 1]]
    }

    fn grow(&mut self) {
        self.slots = vec![NIL; 2 * self.slots.len()];
        let mask = self.slots.len() - 1;
        for (state, &hash) in (0u32..).zip(&self.hashes) {
            let mut slot = hash as usize & mask;
            while self.slots[slot] != NIL {
                slot = (slot + 1) & mask;
            }
            self.slots[slot] = state;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_sets_are_one_state_and_different_sets_are_not() {
        // 70 known bits (two words, the second partial), one unknown word.
        let mut memo = Memo::new(70, 1);
        let all_known = [u64::MAX, (1 << 6) - 1, 0];
        let sets = [
            [0, 0, 0],
            all_known,
            [u64::MAX, 0, 0],
            [u64::MAX, 1, 0],
            [u64::MAX, 0, 1],
            [0, 1, 0],
            [1, 0, 0],
            [u64::MAX, (1 << 6) - 1, 1],
        ];
        for set in &sets {
            assert!(memo.insert(set, 2, 0), "{set:?} is new");
        }
        for set in &sets {
            assert!(!memo.insert(set, 2, 0), "{set:?} was seen");
        }
        assert!(memo.insert(&all_known, 3, 0), "another register value");
        assert_eq!(memo.len(), sets.len() + 1);
    }
}
