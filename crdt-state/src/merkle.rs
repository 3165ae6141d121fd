//! BLAKE3 hashing: the hash chain, the Merkle tree and its compact frontier.
//!
//! The tree is RFC 9162's (§2.1.1) with BLAKE3 in place of SHA-256:
//!
//! - empty tree: `BLAKE3("")`;
//! - leaf: `BLAKE3(0x00 || encoded entry)`;
//! - interior node: `BLAKE3(0x01 || left || right)`;
//! - a tree of `n > 1` leaves splits at `k`, the largest power of two
//!   smaller than `n`: the left subtree holds leaves `0..k`, the right `k..n`.
//!
//! The distinct prefixes keep a leaf from ever being read as an interior node
//! (second-preimage attacks). The chain, `chain_i = BLAKE3("osmoda-audit-chain-v1"
//! || chain_{i-1} || entry_i)` with `chain_{-1}` all zeros, is a second,
//! purely local check: the tree proves things to others, the chain lets a
//! node point at the first entry of its own storage that changed.

use crate::Hash;

const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;
const CHAIN_CONTEXT: &[u8] = b"osmoda-audit-chain-v1";

/// The chain value before the first entry.
pub const CHAIN_START: Hash = [0; 32];

/// Root of the empty tree: BLAKE3 of no input, as RFC 9162 uses SHA-256("").
pub fn empty_root() -> Hash {
    blake3::hash(b"").into()
}

/// Hash of a leaf, from the entry's exact encoding.
pub fn leaf_hash(entry_bytes: &[u8]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(&[LEAF_PREFIX]);
    h.update(entry_bytes);
    h.finalize().into()
}

/// Hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(&[NODE_PREFIX]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The next chain value. The context and `prev` have fixed lengths, so the
/// entry bytes are unambiguous without a length prefix.
pub fn chain_hash(prev: &Hash, entry_bytes: &[u8]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(CHAIN_CONTEXT);
    h.update(prev);
    h.update(entry_bytes);
    h.finalize().into()
}

/// The largest power of two strictly smaller than `n` (`n >= 2`): RFC 9162's split.
pub(crate) fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// RFC 9162 `MTH` over leaf hashes, the direct recursive way: O(n) time.
/// Proof generation and the whole-log verifier use it; logs that grow use
/// [`Frontier`] instead.
pub fn root_of(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&root_of(&leaves[..k]), &root_of(&leaves[k..]))
        }
    }
}

/// The compact range `[0, size)` of a growing tree: the roots of its perfect
/// subtrees, largest (leftmost) first, one for each set bit of `size`.
///
/// Appending is a binary increment (amortised O(1) hashes, at most 64), and
/// [`Frontier::root`] folds at most 64 roots, so a log never rereads old
/// leaves to know its current root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

impl Frontier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect subtree roots, leftmost first.
    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }

    /// Appends one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut carry = leaf;
        let mut s = self.size;
        // Each trailing one bit of the old size is a perfect subtree of the
        // same height as `carry`: merge them, as a binary counter carries.
        while s & 1 == 1 {
            // A set bit always has its subtree on the stack.
            let Some(left) = self.nodes.pop() else { break };
            carry = node_hash(&left, &carry);
            s >>= 1;
        }
        self.nodes.push(carry);
        self.size += 1;
    }

    /// The tree root. The RFC's split puts every perfect subtree but the last
    /// on the left of everything after it, so the root folds from the right.
    pub fn root(&self) -> Hash {
        let mut iter = self.nodes.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    #[test]
    fn empty_root_is_blake3_of_nothing() {
        let hex: String = empty_root().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }

    #[test]
    fn split_is_largest_smaller_power_of_two() {
        for (n, k) in [
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 4),
            (8, 4),
            (9, 8),
            (1 << 40, 1 << 39),
        ] {
            assert_eq!(split(n), k, "n={n}");
        }
        assert_eq!(split(u64::MAX), 1 << 63);
    }

    #[test]
    fn small_trees_have_the_rfc_shape() {
        let l = leaves(8);
        let n = node_hash;
        let expected = [
            empty_root(),
            l[0],
            n(&l[0], &l[1]),
            n(&n(&l[0], &l[1]), &l[2]),
            n(&n(&l[0], &l[1]), &n(&l[2], &l[3])),
            n(&n(&n(&l[0], &l[1]), &n(&l[2], &l[3])), &l[4]),
            n(&n(&n(&l[0], &l[1]), &n(&l[2], &l[3])), &n(&l[4], &l[5])),
            n(
                &n(&n(&l[0], &l[1]), &n(&l[2], &l[3])),
                &n(&n(&l[4], &l[5]), &l[6]),
            ),
            n(
                &n(&n(&l[0], &l[1]), &n(&l[2], &l[3])),
                &n(&n(&l[4], &l[5]), &n(&l[6], &l[7])),
            ),
        ];
        let mut f = Frontier::new();
        for (size, want) in expected.iter().enumerate() {
            assert_eq!(&root_of(&l[..size]), want, "recursive, n={size}");
            assert_eq!(&f.root(), want, "frontier, n={size}");
            if size < l.len() {
                f.push(l[size]);
            }
        }
    }

    #[test]
    fn frontier_matches_recursive_root_up_to_300() {
        let l = leaves(300);
        let mut f = Frontier::new();
        for size in 0..=l.len() {
            assert_eq!(f.size(), size as u64);
            assert_eq!(f.nodes().len(), size.count_ones() as usize);
            assert_eq!(f.root(), root_of(&l[..size]), "n={size}");
            if size < l.len() {
                f.push(l[size]);
            }
        }
    }

    #[test]
    fn domains_are_separated() {
        let a = [1u8; 32];
        let b = [2u8; 32];
        let mut joined = a.to_vec();
        joined.extend_from_slice(&b);
        assert_ne!(leaf_hash(&joined), node_hash(&a, &b));
        assert_ne!(chain_hash(&CHAIN_START, b"x"), leaf_hash(b"x"));
    }
}
