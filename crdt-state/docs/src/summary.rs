//! Heads summaries: what a node gossips so peers can tell which knowledge
//! shards differ without exchanging the shards.
//!
//! Encoding (version 1), big-endian, exact (trailing bytes are an error):
//!
//! ```text
//! u8   version = 1
//! u16  shard count (must equal SHARD_COUNT)
//! u16  n, the number of listed shards (<= shard count)
//! n ×  { u16 shard index, strictly increasing; [u8; 16] heads digest }
//! ```
//!
//! Shards without changes are left out (an empty shard equals a missing
//! one), so the summary of a fresh node is 5 bytes and a full one is
//! 5 + 256 × 18 = 4,613 bytes. The digest is the first 16 bytes of a
//! domain-separated BLAKE3 of the sorted heads: two shards with the same
//! digest have the same heads with overwhelming probability (2^-128 per
//! pair), and different heads mean the shard needs a sync.

use std::collections::BTreeMap;

use automerge::ChangeHash;

use crate::error::SummaryError;
use crate::shard::{ShardId, SHARD_COUNT};

const VERSION: u8 = 1;
const HEADER: usize = 5;
const ITEM: usize = 2 + 16;
/// Largest encoded summary.
pub const MAX_SUMMARY_BYTES: usize = HEADER + SHARD_COUNT as usize * ITEM;

/// A digest of a document's heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HeadsDigest(pub [u8; 16]);

/// Digest of heads (any order: they are sorted first).
pub fn heads_digest(heads: &[ChangeHash]) -> HeadsDigest {
    let mut sorted = heads.to_vec();
    sorted.sort();
    sorted.dedup();
    let mut h = blake3::Hasher::new_derive_key("osmoda-docs heads digest v1");
    h.update(&(sorted.len() as u64).to_be_bytes());
    for head in &sorted {
        h.update(&head.0);
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize().as_bytes()[..16]);
    HeadsDigest(out)
}

/// Per-shard heads digests of a knowledge store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeadsSummary {
    shards: BTreeMap<ShardId, HeadsDigest>,
}

impl HeadsSummary {
    pub fn insert(&mut self, shard: ShardId, digest: HeadsDigest) {
        self.shards.insert(shard, digest);
    }

    pub fn get(&self, shard: ShardId) -> Option<HeadsDigest> {
        self.shards.get(&shard).copied()
    }

    pub fn len(&self) -> usize {
        self.shards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.shards.len() * ITEM);
        out.push(VERSION);
        out.extend_from_slice(&SHARD_COUNT.to_be_bytes());
        // At most SHARD_COUNT entries, which fits a u16.
        out.extend_from_slice(&(self.shards.len() as u16).to_be_bytes());
        for (shard, digest) in &self.shards {
            out.extend_from_slice(&shard.index().to_be_bytes());
            out.extend_from_slice(&digest.0);
        }
        out
    }

    /// Decodes a summary from a peer (untrusted bytes).
    pub fn decode(bytes: &[u8]) -> Result<Self, SummaryError> {
        let header = bytes.get(..HEADER).ok_or(SummaryError::Truncated)?;
        if header[0] != VERSION {
            return Err(SummaryError::Version(header[0]));
        }
        let count = u16::from_be_bytes([header[1], header[2]]);
        if count != SHARD_COUNT {
            return Err(SummaryError::ShardCount {
                got: count,
                expected: SHARD_COUNT,
            });
        }
        let n = u16::from_be_bytes([header[3], header[4]]);
        if n > SHARD_COUNT {
            return Err(SummaryError::TooManyEntries(n));
        }
        let body_len = usize::from(n) * ITEM;
        let body = bytes
            .get(HEADER..HEADER + body_len)
            .ok_or(SummaryError::Truncated)?;
        let trailing = bytes.len() - HEADER - body_len;
        if trailing != 0 {
            return Err(SummaryError::Trailing(trailing));
        }
        let mut shards = BTreeMap::new();
        let mut last: Option<u16> = None;
        for item in body.chunks_exact(ITEM) {
            let index = u16::from_be_bytes([item[0], item[1]]);
            let shard = ShardId::new(index).ok_or(SummaryError::Order(index))?;
            if last.is_some_and(|l| index <= l) {
                return Err(SummaryError::Order(index));
            }
            last = Some(index);
            let mut digest = [0u8; 16];
            digest.copy_from_slice(&item[2..]);
            shards.insert(shard, HeadsDigest(digest));
        }
        Ok(Self { shards })
    }

    /// Shards whose heads differ between two summaries (present on one side
    /// only, or with different digests): only these need a sync session.
    pub fn differing_shards(&self, other: &HeadsSummary) -> Vec<ShardId> {
        ShardId::all()
            .filter(|s| self.shards.get(s) != other.shards.get(s))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(items: &[(u16, u8)]) -> HeadsSummary {
        let mut s = HeadsSummary::default();
        for &(i, d) in items {
            s.insert(ShardId::new(i).expect("in range"), HeadsDigest([d; 16]));
        }
        s
    }

    #[test]
    fn round_trip_and_size() {
        let s = summary(&[(0, 1), (7, 2), (255, 3)]);
        let bytes = s.encode();
        assert_eq!(bytes.len(), HEADER + 3 * ITEM);
        assert_eq!(HeadsSummary::decode(&bytes), Ok(s));
        let full = summary(&(0..SHARD_COUNT).map(|i| (i, 9)).collect::<Vec<_>>());
        assert_eq!(full.encode().len(), MAX_SUMMARY_BYTES);
        assert_eq!(HeadsSummary::default().encode().len(), HEADER);
    }

    #[test]
    fn decode_is_exact() {
        let bytes = summary(&[(3, 1), (4, 2)]).encode();
        for cut in 0..bytes.len() {
            assert!(HeadsSummary::decode(&bytes[..cut]).is_err(), "cut {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(HeadsSummary::decode(&long), Err(SummaryError::Trailing(1)));
        let mut swapped = bytes.clone();
        swapped[HEADER..HEADER + 2].copy_from_slice(&5u16.to_be_bytes());
        assert_eq!(HeadsSummary::decode(&swapped), Err(SummaryError::Order(4)));
        let mut version = bytes;
        version[0] = 2;
        assert_eq!(
            HeadsSummary::decode(&version),
            Err(SummaryError::Version(2))
        );
    }

    #[test]
    fn differing_shards_lists_changed_and_one_sided() {
        let a = summary(&[(1, 1), (2, 2), (3, 3)]);
        let b = summary(&[(1, 1), (2, 9), (4, 4)]);
        let ids: Vec<u16> = a.differing_shards(&b).iter().map(|s| s.index()).collect();
        assert_eq!(ids, vec![2, 3, 4]);
        assert!(a.differing_shards(&a).is_empty());
    }

    #[test]
    fn digest_ignores_order() {
        let h1 = ChangeHash([1; 32]);
        let h2 = ChangeHash([2; 32]);
        assert_eq!(heads_digest(&[h1, h2]), heads_digest(&[h2, h1]));
        assert_ne!(heads_digest(&[h1]), heads_digest(&[h2]));
    }
}
