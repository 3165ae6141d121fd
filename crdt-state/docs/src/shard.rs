//! Sharding of the knowledge collection: an entry lives in the shard picked
//! by a hash of its id, so a node can place an entry without looking
//! anything up, and every node agrees on the placement.

use std::fmt;

/// Number of knowledge shards. A fleet-wide constant: the placement of
/// every entry, and the heads summary, depend on it.
///
/// 256 keeps each shard small (100,000 entries of ~200 B bodies give ~390
/// entries and some 100 KiB per shard, so saving a dirty shard after one
/// write is cheap) while the gossiped heads summary stays a few KiB (at most
/// 256 × 18 bytes). Fewer shards make every save and every sync of a hot
/// shard bigger; more make the summary and the per-document overhead grow.
pub const SHARD_COUNT: u16 = 256;

/// The index of a knowledge shard, `0..SHARD_COUNT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardId(u16);

impl ShardId {
    /// `None` when `index >= SHARD_COUNT`.
    pub fn new(index: u16) -> Option<Self> {
        (index < SHARD_COUNT).then_some(Self(index))
    }

    /// The shard of an entry id: the first two bytes of its BLAKE3 hash,
    /// modulo the shard count. (BLAKE3 rather than a std hasher, which may
    /// differ between builds, since every node must agree.)
    pub fn of(id: &str) -> Self {
        let digest = blake3::hash(id.as_bytes());
        let b = digest.as_bytes();
        Self(u16::from_be_bytes([b[0], b[1]]) % SHARD_COUNT)
    }

    pub fn index(self) -> u16 {
        self.0
    }

    /// Every shard, in order.
    pub fn all() -> impl Iterator<Item = ShardId> {
        (0..SHARD_COUNT).map(ShardId)
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_is_stable_and_spread() {
        assert_eq!(ShardId::of("abc"), ShardId::of("abc"));
        let mut counts = vec![0u32; SHARD_COUNT as usize];
        for i in 0..25_600u32 {
            counts[ShardId::of(&format!("e{i}")).index() as usize] += 1;
        }
        // 100 expected per shard; a hash this good stays well within 2x.
        assert!(
            counts.iter().all(|&c| (50..=150).contains(&c)),
            "{counts:?}"
        );
        assert!(ShardId::new(SHARD_COUNT).is_none());
    }
}
