//! Inclusion and consistency proofs, generated and verified as RFC 9162
//! §2.1.3 and §2.1.4 specify (with the hashes of [`crate::merkle`]).
//!
//! Generation works from the full list of leaf hashes and costs O(n) hashes:
//! fine for an in-memory log; a storage layer with many entries can cache
//! perfect subtree roots later without changing any proof.
//!
//! Verification follows the RFC's iterative algorithms step by step, with the
//! edge cases it leaves to the caller made explicit: a consistency proof
//! between equal sizes is empty and needs equal roots; one from the empty
//! tree is empty and needs the old root to be the empty root.
//!
//! The *expanded* consistency path is the array the RFC verifier iterates
//! over after its step 2: the proof with the old root put first when the old
//! size is a power of two (the RFC omits it because the verifier already
//! holds it). In expanded form the proof determines the old root on its own,
//! which is what fork evidence needs: see [`implied_old_root`].

use std::ops::Range;

use osmoda_wire::{put_arrays, Reader, Truncated};

use crate::merkle::{node_hash, root_of, split};
use crate::Hash;

const INCLUSION_VERSION: u8 = 1;
const CONSISTENCY_VERSION: u8 = 1;

/// Most hashes in any path: a tree of fewer than 2^64 leaves is at most 64
/// levels deep; a consistency path can add the old root once more.
pub const MAX_PATH_LEN: usize = 65;

/// Why a proof was refused or could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("index {index} is not in a tree of {size} leaves")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("sizes {old} and {new} do not describe a tree and a later tree")]
    BadSizes { old: u64, new: u64 },
    #[error("proof has the wrong number of hashes")]
    WrongLength,
    #[error("proof does not lead to the expected root")]
    RootMismatch,
    #[error("truncated or oversized proof encoding")]
    Malformed,
    #[error("unsupported proof version {0}")]
    Version(u8),
}

impl From<Truncated> for ProofError {
    fn from(_: Truncated) -> Self {
        ProofError::Malformed
    }
}

/// RFC 9162 §2.1.3.1 `PATH(index, D[n])` for the tree over `leaves`,
/// deepest sibling first.
pub fn inclusion_path(index: u64, leaves: &[Hash]) -> Result<Vec<Hash>, ProofError> {
    let size = leaves.len() as u64;
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut path = Vec::new();
    path_rec(index as usize, leaves, &mut path);
    Ok(path)
}

fn path_rec(m: usize, d: &[Hash], out: &mut Vec<Hash>) {
    if d.len() <= 1 {
        return;
    }
    let k = split(d.len() as u64) as usize;
    if m < k {
        path_rec(m, &d[..k], out);
        out.push(root_of(&d[k..]));
    } else {
        path_rec(m - k, &d[k..], out);
        out.push(root_of(&d[..k]));
    }
}

/// The audit paths of leaves `range` in the tree over `leaves`, one per
/// leaf, each as [`inclusion_path`] gives it. One pass costs O(n) hashes
/// for the whole range instead of O(n) per leaf: what a node serving a
/// page of its log pays per request.
pub fn inclusion_paths(range: Range<u64>, leaves: &[Hash]) -> Result<Vec<Vec<Hash>>, ProofError> {
    let size = leaves.len() as u64;
    if range.start > range.end || range.end > size {
        return Err(ProofError::IndexOutOfRange {
            index: range.end.max(range.start),
            size,
        });
    }
    let mut paths = vec![Vec::new(); (range.end - range.start) as usize];
    if !paths.is_empty() {
        paths_rec(leaves, 0, &range, &mut paths);
    }
    Ok(paths)
}

/// Returns the root of `d` (leaves `offset..offset + d.len()`) and appends
/// to the path of every leaf of `range` below it the sibling roots, deepest
/// first (a child's siblings are pushed before its parent's).
fn paths_rec(d: &[Hash], offset: u64, range: &Range<u64>, paths: &mut [Vec<Hash>]) -> Hash {
    let end = offset + d.len() as u64;
    if d.len() <= 1 || end <= range.start || offset >= range.end {
        return root_of(d);
    }
    let k = split(d.len() as u64) as usize;
    let mid = offset + k as u64;
    let left = paths_rec(&d[..k], offset, range, paths);
    let right = paths_rec(&d[k..], mid, range, paths);
    for seq in range.start.max(offset)..range.end.min(end) {
        let sibling = if seq < mid { right } else { left };
        paths[(seq - range.start) as usize].push(sibling);
    }
    node_hash(&left, &right)
}

/// RFC 9162 §2.1.4.1 `PROOF(m, D[n])` with `n = leaves.len()`; empty when
/// `m == 0` or `m == n`.
pub fn consistency_path(m: u64, leaves: &[Hash]) -> Result<Vec<Hash>, ProofError> {
    let n = leaves.len() as u64;
    if m > n {
        return Err(ProofError::BadSizes { old: m, new: n });
    }
    let mut path = Vec::new();
    if m > 0 {
        subproof(m as usize, leaves, true, &mut path);
    }
    Ok(path)
}

/// The expanded path (see the module doc): what [`implied_old_root`] and
/// fork evidence take. Requires `0 < m < n`.
pub fn expanded_consistency_path(m: u64, leaves: &[Hash]) -> Result<Vec<Hash>, ProofError> {
    let n = leaves.len() as u64;
    if m == 0 || m >= n {
        return Err(ProofError::BadSizes { old: m, new: n });
    }
    let mut path = consistency_path(m, leaves)?;
    if m.is_power_of_two() {
        path.insert(0, root_of(&leaves[..m as usize]));
    }
    Ok(path)
}

fn subproof(m: usize, d: &[Hash], complete: bool, out: &mut Vec<Hash>) {
    let n = d.len();
    if m == n {
        if !complete {
            out.push(root_of(d));
        }
        return;
    }
    let k = split(n as u64) as usize;
    if m <= k {
        subproof(m, &d[..k], complete, out);
        out.push(root_of(&d[k..]));
    } else {
        subproof(m - k, &d[k..], false, out);
        out.push(root_of(&d[..k]));
    }
}

/// RFC 9162 §2.1.3.2: checks that `leaf` is leaf `index` of the tree of
/// `size` leaves whose root is `root`.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    path: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if snode == 0 {
            return Err(ProofError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            // A no-op when LSB(fn) is set, as the RFC's condition says.
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength);
    }
    if &r != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2 steps 3 to 7 over an expanded path: returns the old
/// root `fr` and the new root `sr` the path implies. Requires `0 < m < n`.
fn walk(m: u64, n: u64, expanded: &[Hash]) -> Result<(Hash, Hash), ProofError> {
    let Some((first, rest)) = expanded.split_first() else {
        return Err(ProofError::WrongLength);
    };
    let (mut fnode, mut snode) = (m - 1, n - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if snode == 0 {
            return Err(ProofError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength);
    }
    Ok((fr, sr))
}

/// RFC 9162 §2.1.4.2: checks that the tree of `m` leaves with root
/// `old_root` is a prefix of the tree of `n` leaves with root `new_root`.
pub fn verify_consistency(
    m: u64,
    n: u64,
    old_root: &Hash,
    new_root: &Hash,
    path: &[Hash],
) -> Result<(), ProofError> {
    if m > n {
        return Err(ProofError::BadSizes { old: m, new: n });
    }
    if m == n || m == 0 {
        if !path.is_empty() {
            return Err(ProofError::WrongLength);
        }
        let same = if m == 0 {
            *old_root == crate::merkle::empty_root()
        } else {
            old_root == new_root
        };
        return if same {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    // Step 1: an empty path proves nothing between different sizes.
    if path.is_empty() {
        return Err(ProofError::WrongLength);
    }
    // Step 2: the RFC omits the old root when it is a whole subtree.
    let mut expanded = Vec::with_capacity(path.len() + 1);
    if m.is_power_of_two() {
        expanded.push(*old_root);
    }
    expanded.extend_from_slice(path);
    let (fr, sr) = walk(m, n, &expanded)?;
    if &fr != old_root || &sr != new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The root of the first `m` leaves implied by an expanded consistency path
/// that leads to `new_root` (the RFC verifier's `fr` once `sr` matched).
///
/// By collision resistance no other old root is consistent with `new_root`
/// for these sizes, so a signed checkpoint of size `m` with another root
/// proves its signer signed two incompatible histories.
pub fn implied_old_root(
    m: u64,
    n: u64,
    expanded: &[Hash],
    new_root: &Hash,
) -> Result<Hash, ProofError> {
    if m == 0 || m >= n {
        return Err(ProofError::BadSizes { old: m, new: n });
    }
    let (fr, sr) = walk(m, n, expanded)?;
    if &sr != new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(fr)
}

/// An audit path for one leaf, in the wire form a fetching node receives.
///
/// | field | size |
/// |---|---|
/// | version | 1 (`0x01`) |
/// | leaf_index | 8 |
/// | tree_size | 8 |
/// | count, path | 1 + 32 × count (count ≤ 65) |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    pub leaf_index: u64,
    pub tree_size: u64,
    pub path: Vec<Hash>,
}

/// A consistency path between two sizes (not expanded), in wire form.
///
/// | field | size |
/// |---|---|
/// | version | 1 (`0x01`) |
/// | old_size | 8 |
/// | new_size | 8 |
/// | count, path | 1 + 32 × count (count ≤ 65) |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    pub old_size: u64,
    pub new_size: u64,
    pub path: Vec<Hash>,
}

fn encode_sized(version: u8, a: u64, b: u64, path: &[Hash]) -> Result<Vec<u8>, ProofError> {
    if path.len() > MAX_PATH_LEN {
        return Err(ProofError::WrongLength);
    }
    let mut out = Vec::with_capacity(18 + 32 * path.len());
    out.push(version);
    out.extend_from_slice(&a.to_be_bytes());
    out.extend_from_slice(&b.to_be_bytes());
    put_arrays(&mut out, path);
    Ok(out)
}

fn decode_sized(version: u8, bytes: &[u8]) -> Result<(u64, u64, Vec<Hash>), ProofError> {
    let mut r = Reader::new(bytes);
    let v = r.u8()?;
    if v != version {
        return Err(ProofError::Version(v));
    }
    let a = r.u64()?;
    let b = r.u64()?;
    let path = r.arrays(MAX_PATH_LEN)?;
    r.finish()?;
    Ok((a, b, path))
}

impl InclusionProof {
    /// Fails only for a path longer than [`MAX_PATH_LEN`].
    pub fn encode(&self) -> Result<Vec<u8>, ProofError> {
        encode_sized(
            INCLUSION_VERSION,
            self.leaf_index,
            self.tree_size,
            &self.path,
        )
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ProofError> {
        let (leaf_index, tree_size, path) = decode_sized(INCLUSION_VERSION, bytes)?;
        Ok(Self {
            leaf_index,
            tree_size,
            path,
        })
    }

    /// Checks that `leaf` is included at `leaf_index` under `root`.
    pub fn verify(&self, leaf: &Hash, root: &Hash) -> Result<(), ProofError> {
        verify_inclusion(leaf, self.leaf_index, self.tree_size, &self.path, root)
    }
}

impl ConsistencyProof {
    /// Fails only for a path longer than [`MAX_PATH_LEN`].
    pub fn encode(&self) -> Result<Vec<u8>, ProofError> {
        encode_sized(
            CONSISTENCY_VERSION,
            self.old_size,
            self.new_size,
            &self.path,
        )
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ProofError> {
        let (old_size, new_size, path) = decode_sized(CONSISTENCY_VERSION, bytes)?;
        Ok(Self {
            old_size,
            new_size,
            path,
        })
    }

    pub fn verify(&self, old_root: &Hash, new_root: &Hash) -> Result<(), ProofError> {
        verify_consistency(self.old_size, self.new_size, old_root, new_root, &self.path)
    }
}
