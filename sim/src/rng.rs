//! The simulator's only source of randomness: SplitMix64, seeded once per run, so that a
//! seed reproduces a run exactly.

/// The core's SplitMix64 with the helpers the simulator draws with.
pub struct Rng(treesync_core::rng::SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(treesync_core::rng::SplitMix64::new(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `low..=high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high, "empty range");
        low + self.next_u64() % (high - low + 1)
    }

    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.next_u64() % 1000 < per_mille
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn same_seed_same_sequence() {
        let (mut a, mut b) = (Rng::new(42), Rng::new(42));
        assert!((0..100).all(|_| a.next_u64() == b.next_u64()));
        let mut c = Rng::new(43);
        assert_ne!(Rng::new(42).next_u64(), c.next_u64());
        assert!((0..1000)
            .map(|_| c.range(3, 5))
            .all(|x| (3..=5).contains(&x)));
    }
}
