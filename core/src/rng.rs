//! SplitMix64: the seeded generator of the core's only randomness (election-timeout jitter).
//! Drivers seed it, so a simulator seed replays exactly; it is not cryptographic.

/// Steele, Lea and Flood's SplitMix64 (2014): one `u64` of state, full period.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::SplitMix64;

    #[test]
    fn same_seed_same_stream_other_seed_other_stream() {
        let (mut a, mut b, mut c) = (SplitMix64::new(7), SplitMix64::new(7), SplitMix64::new(8));
        let (xs, ys, zs): (Vec<u64>, Vec<u64>, Vec<u64>) = (0..8)
            .map(|_| (a.next_u64(), b.next_u64(), c.next_u64()))
            .fold(
                (vec![], vec![], vec![]),
                |(mut x, mut y, mut z), (p, q, r)| {
                    x.push(p);
                    y.push(q);
                    z.push(r);
                    (x, y, z)
                },
            );
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
    }
}
