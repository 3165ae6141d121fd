//! Fork evidence: self-verifying proof that a node signed two histories that
//! cannot both be true.
//!
//! Anyone can check it with nothing but the bytes: both checkpoints carry the
//! node's signature, and the rest is hashing. An honest node can never be
//! framed, because producing either kind for it would need a forged
//! signature or a BLAKE3 collision.
//!
//! Layout (big-endian):
//!
//! | field | size |
//! |---|---|
//! | version | 1 (`0x01`) |
//! | kind | 1: `0x01` same size, `0x02` inconsistent |
//! | same size: a, b | 145 + 145 (checkpoints, `a < b` in checkpoint order) |
//! | inconsistent: older, newer | 145 + 145 (`older.size < newer.size`) |
//! | inconsistent: count, path | 1 + 32 × count (count ≤ 65): the expanded consistency path |

use osmoda_wire::{put_arrays, Reader, Truncated};

use crate::checkpoint::{Checkpoint, CheckpointError, CHECKPOINT_LEN};
use crate::proof::{expanded_consistency_path, implied_old_root, ProofError, MAX_PATH_LEN};
use crate::{Hash, NodeKey};

const EVIDENCE_VERSION: u8 = 1;
const KIND_SAME_SIZE: u8 = 1;
const KIND_INCONSISTENT: u8 = 2;

/// Longest encoded evidence.
pub const MAX_EVIDENCE_LEN: usize = 2 + 2 * CHECKPOINT_LEN + 1 + 32 * MAX_PATH_LEN;

/// Why evidence was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    #[error("truncated or oversized evidence encoding")]
    Malformed,
    #[error("unsupported evidence version {0}")]
    Version(u8),
    #[error("unknown evidence kind {0}")]
    UnknownKind(u8),
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("the checkpoints are of different nodes")]
    DifferentNodes,
    #[error("the checkpoints do not contradict each other")]
    NoContradiction,
    #[error("checkpoints are not in canonical order")]
    NotCanonical,
    #[error("consistency path: {0}")]
    Proof(#[from] ProofError),
}

impl From<Truncated> for EvidenceError {
    fn from(_: Truncated) -> Self {
        EvidenceError::Malformed
    }
}

/// Proof that one node forked its log.
///
/// The derived order is only a deterministic tie-breaker for the bounded
/// evidence sets in [`crate::AuditHeads`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ForkEvidence {
    /// Two signed checkpoints of one size with different roots; `a < b`.
    SameSize { a: Checkpoint, b: Checkpoint },
    /// `newer` commits, through `path`, to a first-`older.size`-leaves root
    /// other than `older.root`. `path` is the expanded consistency path from
    /// `older.size` to `newer.size` (see [`crate::proof`]).
    Inconsistent {
        older: Checkpoint,
        newer: Checkpoint,
        path: Vec<Hash>,
    },
}

impl ForkEvidence {
    /// Builds same-size evidence in canonical order, if the two checkpoints
    /// contradict each other. Signatures are checked by [`Self::verify`].
    pub fn same_size(x: Checkpoint, y: Checkpoint) -> Option<Self> {
        if x.node != y.node || x.size != y.size || x.root == y.root {
            return None;
        }
        let (a, b) = if x < y { (x, y) } else { (y, x) };
        Some(ForkEvidence::SameSize { a, b })
    }

    /// What a fetching node builds after it obtained the leaves of `newer`'s
    /// tree and checked them against `newer.root`: evidence if the first
    /// `older.size` of them do not hash to `older.root`. `leaves` must be
    /// exactly `newer.size` leaf hashes.
    pub fn inconsistent(older: &Checkpoint, newer: &Checkpoint, leaves: &[Hash]) -> Option<Self> {
        if older.node != newer.node || leaves.len() as u64 != newer.size {
            return None;
        }
        let path = expanded_consistency_path(older.size, leaves).ok()?;
        let ev = ForkEvidence::Inconsistent {
            older: older.clone(),
            newer: newer.clone(),
            path,
        };
        ev.verify().ok()?;
        Some(ev)
    }

    /// The node that forked.
    pub fn node(&self) -> &NodeKey {
        match self {
            ForkEvidence::SameSize { a, .. } => &a.node,
            ForkEvidence::Inconsistent { older, .. } => &older.node,
        }
    }

    /// Checks the evidence completely: both signatures, one node, and the
    /// contradiction itself.
    pub fn verify(&self) -> Result<(), EvidenceError> {
        match self {
            ForkEvidence::SameSize { a, b } => {
                if a.node != b.node {
                    return Err(EvidenceError::DifferentNodes);
                }
                if a >= b {
                    return Err(EvidenceError::NotCanonical);
                }
                if a.size != b.size || a.root == b.root {
                    return Err(EvidenceError::NoContradiction);
                }
                a.verify()?;
                b.verify()?;
            }
            ForkEvidence::Inconsistent { older, newer, path } => {
                if older.node != newer.node {
                    return Err(EvidenceError::DifferentNodes);
                }
                // A checkpoint of size 0 has the one empty root (checked by
                // verify), so it cannot contradict anything.
                if older.size == 0 || older.size >= newer.size {
                    return Err(EvidenceError::NoContradiction);
                }
                older.verify()?;
                newer.verify()?;
                let implied = implied_old_root(older.size, newer.size, path, &newer.root)?;
                if implied == older.root {
                    return Err(EvidenceError::NoContradiction);
                }
            }
        }
        Ok(())
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAX_EVIDENCE_LEN);
        out.push(EVIDENCE_VERSION);
        match self {
            ForkEvidence::SameSize { a, b } => {
                out.push(KIND_SAME_SIZE);
                out.extend_from_slice(&a.encode());
                out.extend_from_slice(&b.encode());
            }
            ForkEvidence::Inconsistent { older, newer, path } => {
                out.push(KIND_INCONSISTENT);
                out.extend_from_slice(&older.encode());
                out.extend_from_slice(&newer.encode());
                // Verified evidence has at most MAX_PATH_LEN hashes; an
                // unverified longer path is cut here and then fails to decode
                // as the same value, never silently verifies.
                put_arrays(&mut out, &path[..path.len().min(MAX_PATH_LEN)]);
            }
        }
        out
    }

    /// Parses evidence. This checks the format only; call
    /// [`ForkEvidence::verify`] before trusting it.
    pub fn decode(bytes: &[u8]) -> Result<Self, EvidenceError> {
        if bytes.len() > MAX_EVIDENCE_LEN {
            return Err(EvidenceError::Malformed);
        }
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != EVIDENCE_VERSION {
            return Err(EvidenceError::Version(version));
        }
        let kind = r.u8()?;
        let ev = match kind {
            KIND_SAME_SIZE => ForkEvidence::SameSize {
                a: Checkpoint::decode_from(&mut r)?,
                b: Checkpoint::decode_from(&mut r)?,
            },
            KIND_INCONSISTENT => ForkEvidence::Inconsistent {
                older: Checkpoint::decode_from(&mut r)?,
                newer: Checkpoint::decode_from(&mut r)?,
                path: r.arrays(MAX_PATH_LEN)?,
            },
            other => return Err(EvidenceError::UnknownKind(other)),
        };
        r.finish()?;
        Ok(ev)
    }
}
