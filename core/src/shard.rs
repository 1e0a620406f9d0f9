//! The shard map: which shard (Raft group) owns a node (DESIGN.md "Sharding: one world
//! over many shards").
//!
//! A node's **shard root** is the prefix of its path made of the first `depth` segments
//! (default 3: `/root/<world>/<entity>`). Nodes above the shard roots (`/root`, the worlds)
//! live in the **spine**, shard 0, which also keeps one entry (a "dentry": name and class)
//! per shard root. Every shard root lives in an **entity shard**: the jump consistent hash
//! (Lamping & Veach 2014) of a stable 64-bit hash of the shard root over shards 1..N, unless
//! an operator pinned a prefix of it to a shard (the longest pinned prefix wins). With one
//! shard, the spine and the entities share it.
//!
//! # Invariants
//! - I1: a node at depth ≥ `depth` and its whole subtree map to one shard (they share a
//!   root); a node above that depth maps to the spine, and nothing else does.
//! - With N ≥ 2 shards no shard root maps to the spine unless pinned there.
//! - Growing from N to N+1 shards moves about 1/N of the roots, and only to the new shard.
//! - The hash is stable across processes, platforms and releases (FNV-1a + splitmix64, no
//!   per-process seed): every server computes the same map.

use thiserror::Error;

use crate::path::NodePath;

/// Identifies a shard (one Raft group).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardId(pub u32);

/// Default shard-root depth: `/root/<world>/<entity>`.
pub const SHARD_DEPTH_DEFAULT: usize = 3;

/// Why a shard map could not be built or changed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShardMapError {
    #[error("a shard map needs at least one shard")]
    NoShards,
    #[error("shard-root depth must be at least 1, got {depth}")]
    BadDepth { depth: usize },
    #[error("shard {shard} does not exist (there are {shard_count})")]
    NoSuchShard { shard: u32, shard_count: u32 },
    #[error("{prefix} is above the shard roots (depth {depth}): it lives in the spine")]
    PinAboveShardRoots { prefix: String, depth: usize },
}

/// The spine: `/root`, the nodes above the shard roots, and a dentry per shard root.
pub const SPINE: ShardId = ShardId(0);

/// Maps node paths to shards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardMap {
    shard_count: u32,
    depth: usize,
    /// Pinned prefixes, longest first, so the first match is the most specific.
    pins: Vec<(NodePath, ShardId)>,
}

impl ShardMap {
    pub fn new(shard_count: u32, depth: usize) -> Result<ShardMap, ShardMapError> {
        if shard_count == 0 {
            return Err(ShardMapError::NoShards);
        }
        if depth == 0 {
            return Err(ShardMapError::BadDepth { depth });
        }
        Ok(ShardMap {
            shard_count,
            depth,
            pins: Vec::new(),
        })
    }

    pub fn shard_count(&self) -> u32 {
        self.shard_count
    }

    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Pins every node at or below `prefix` (a shard root or below) to `shard`, replacing
    /// an earlier pin of it.
    pub fn pin(&mut self, prefix: NodePath, shard: ShardId) -> Result<(), ShardMapError> {
        if self.is_spine(&prefix) {
            return Err(ShardMapError::PinAboveShardRoots {
                prefix: prefix.as_str().to_owned(),
                depth: self.depth,
            });
        }
        if shard.0 >= self.shard_count {
            return Err(ShardMapError::NoSuchShard {
                shard: shard.0,
                shard_count: self.shard_count,
            });
        }
        self.pins.retain(|(p, _)| *p != prefix);
        self.pins.push((prefix, shard));
        self.pins.sort_by_key(|(p, _)| std::cmp::Reverse(p.depth()));
        Ok(())
    }

    /// The shard root of `path`: its first `depth` segments.
    pub fn shard_root<'p>(&self, path: &'p NodePath) -> &'p str {
        path.prefix(self.depth)
    }

    /// Whether `path` is above the shard roots (a spine node).
    pub fn is_spine(&self, path: &NodePath) -> bool {
        path.depth() < self.depth
    }

    /// Whether `path` is a shard root (it has a dentry in the spine).
    pub fn is_shard_root(&self, path: &NodePath) -> bool {
        path.depth() == self.depth
    }

    /// The shard that owns `path`.
    pub fn shard_of(&self, path: &NodePath) -> ShardId {
        if self.is_spine(path) {
            return SPINE;
        }
        if let Some((_, shard)) = self.pins.iter().find(|(prefix, _)| path.is_within(prefix)) {
            return *shard;
        }
        if self.shard_count == 1 {
            return SPINE;
        }
        let entity_shards = self.shard_count - 1;
        let bucket = jump_hash(stable_hash(self.shard_root(path).as_bytes()), entity_shards);
        assert!(
            bucket < entity_shards,
            "jump hash returns a bucket below the count"
        );
        ShardId(1 + bucket)
    }
}

/// FNV-1a over the bytes, finished with splitmix64 so that similar roots spread well.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Jump consistent hash: a bucket in `0..buckets` such that growing `buckets` by one moves
/// only the keys that land in the new bucket.
pub fn jump_hash(mut key: u64, buckets: u32) -> u32 {
    assert!(buckets > 0, "jump hash needs at least one bucket");
    let (mut b, mut j) = (-1i64, 0i64);
    while j < i64::from(buckets) {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    u32::try_from(b).expect("b is in 0..buckets")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::limits::Limits;

    fn path(text: &str) -> NodePath {
        NodePath::parse(text, &Limits::default()).expect("valid test path")
    }

    fn roots(n: usize) -> Vec<NodePath> {
        (0..n)
            .map(|i| path(&format!("/root/World{}/Entity{i}", i % 7)))
            .collect()
    }

    #[test]
    fn growing_moves_about_one_over_n_plus_one_and_only_to_the_new_shard() {
        let roots = roots(20_000);
        for n in [2u32, 4, 8, 31] {
            let (before, after) = (
                ShardMap::new(n, 3).expect("ok"),
                ShardMap::new(n + 1, 3).expect("ok"),
            );
            let mut moved = 0usize;
            for r in &roots {
                let (a, b) = (before.shard_of(r), after.shard_of(r));
                if a != b {
                    assert_eq!(b, ShardId(n), "a root only moves to the new shard");
                    moved += 1;
                }
            }
            let expected = roots.len() as f64 / f64::from(n);
            let ratio = moved as f64 / expected;
            assert!(
                (0.85..1.15).contains(&ratio),
                "n={n}: moved {moved}, expected ≈{expected}"
            );
        }
    }

    #[test]
    fn shards_are_balanced() {
        let map = ShardMap::new(16, 3).expect("ok");
        let mut counts = [0usize; 16];
        for r in roots(30_000) {
            counts[map.shard_of(&r).0 as usize] += 1;
        }
        assert_eq!(counts[0], 0, "no shard root in the spine");
        for c in &counts[1..] {
            assert!((1600..2400).contains(c), "unbalanced: {counts:?}");
        }
    }

    #[test]
    fn pins_override_the_hash_and_the_longest_wins() {
        let mut map = ShardMap::new(8, 3).expect("ok");
        map.pin(path("/root/Lobby/Boss"), ShardId(5)).expect("ok");
        map.pin(path("/root/Lobby/Boss/Arm"), ShardId(6))
            .expect("ok");
        assert_eq!(map.shard_of(&path("/root/Lobby/Boss/Leg")), ShardId(5));
        assert_eq!(map.shard_of(&path("/root/Lobby/Boss/Arm/Hand")), ShardId(6));
        assert_eq!(
            map.shard_of(&path("/root/Lobby")),
            SPINE,
            "a world is a spine node"
        );
        assert_eq!(
            map.pin(path("/root/Lobby"), ShardId(5)),
            Err(ShardMapError::PinAboveShardRoots {
                prefix: "/root/Lobby".into(),
                depth: 3
            })
        );
        assert!(matches!(
            map.pin(path("/root/X/Y"), ShardId(8)),
            Err(ShardMapError::NoSuchShard { .. })
        ));
        assert!(matches!(ShardMap::new(0, 3), Err(ShardMapError::NoShards)));
        assert!(matches!(
            ShardMap::new(1, 0),
            Err(ShardMapError::BadDepth { depth: 0 })
        ));
    }

    #[test]
    fn hash_is_stable() {
        // Pinned values (cross-checked with an independent Python implementation): changing
        // the hash would move every shard root on upgrade.
        assert_eq!(stable_hash(b""), 17_665_956_581_633_026_203);
        assert_eq!(
            stable_hash(b"/root/World/Player1"),
            16_146_498_017_649_532_495
        );
        assert_eq!(jump_hash(stable_hash(b"/root/World/Player1"), 10), 4);
        assert_eq!(jump_hash(stable_hash(b"/root/World/Player1"), 1000), 159);
        assert_eq!(jump_hash(12_345, 1000), 938);
        assert_eq!(jump_hash(12_345, 1), 0);
    }

    #[test]
    fn the_spine_holds_everything_above_the_shard_roots() {
        let map = ShardMap::new(4, 3).expect("ok");
        assert_eq!(map.shard_of(&path("/root")), SPINE);
        assert_eq!(map.shard_of(&path("/root/World")), SPINE);
        assert_ne!(map.shard_of(&path("/root/World/Player")), SPINE);
        let single = ShardMap::new(1, 3).expect("ok");
        assert_eq!(
            single.shard_of(&path("/root/World/Player/Gun")),
            SPINE,
            "one shard"
        );
    }

    proptest! {
        #[test]
        fn a_subtree_stays_with_its_root(
            world in "[A-Za-z]{1,8}", entity in "[A-Za-z0-9]{1,8}",
            below in proptest::collection::vec("[a-z]{1,5}", 0..5), shards in 1u32..64,
        ) {
            let map = ShardMap::new(shards, 3).expect("ok");
            let root = path(&format!("/root/{world}/{entity}"));
            let mut node = root.clone();
            for name in below {
                node = node.child(&name, &Limits::default()).expect("valid");
                prop_assert_eq!(map.shard_of(&node), map.shard_of(&root));
            }
        }
    }
}
