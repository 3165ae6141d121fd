//! Verifiers for a fetching node (a range of another node's log) and for a
//! node rechecking its own storage (a whole log). Both name the first entry
//! that fails whenever the inputs make that possible.
//!
//! - [`verify_range`] takes one inclusion proof per entry. That costs
//!   O(k log n) hashes for k entries, more than a compact range proof, but
//!   each entry stands or falls alone, so a failure names its entry exactly.
//! - [`verify_log`] recomputes the root from all entries. A root mismatch on
//!   its own says only that *some* entry differs; to say which, pass the
//!   chain values stored beside the entries: the first entry whose recomputed
//!   chain value differs from the stored one is the first that changed. If
//!   the chain was rewritten too (or is not given) the error is
//!   [`VerifyError::RootMismatch`]; the fetcher then asks the owner (or any
//!   holder of the log) for inclusion proofs and uses [`verify_range`].
//!
//! Neither checks *whose* checkpoint it is: the caller compares
//! `checkpoint.node` with the node it asked, or uses [`verify_served`],
//! which does, for a page of another node's log as a source served it.
//!
//! A valid checkpoint is still only the owner's word as of its size: a
//! relay can serve an old one. [`standing`] compares it with the owner's
//! checkpoints the fetching node already holds (its audit heads) and says
//! whether it is behind them, or contradicts one of them (a fork).

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::entry::{AuditEntry, EntryError};
use crate::evidence::ForkEvidence;
use crate::merkle::{chain_hash, leaf_hash, Frontier, CHAIN_START};
use crate::proof::{InclusionProof, ProofError};
use crate::{Hash, NodeKey};

/// Why a range or a log failed to verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("{got} entries given, the checkpoint covers {size}")]
    SizeMismatch { got: u64, size: u64 },
    #[error("range {start}..{end} is not within the checkpoint's {size} entries")]
    OutOfRange { start: u64, end: u64, size: u64 },
    #[error("{entries} entries but {other} proofs or chain values")]
    CountMismatch { entries: usize, other: usize },
    #[error("entry {seq}: {fault}")]
    Entry { seq: u64, fault: EntryFault },
    #[error("the entries do not hash to the checkpoint's root, and no entry could be singled out")]
    RootMismatch,
    #[error("the checkpoint is another node's, not the log owner's")]
    NotOwner,
}

/// What is wrong with one entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryFault {
    #[error("does not decode: {0}")]
    Decode(EntryError),
    #[error("carries sequence number {0}")]
    Sequence(u64),
    #[error("its chain value differs from the stored one")]
    ChainBreak,
    #[error("its proof is for leaf {leaf_index} of a tree of {tree_size}")]
    ProofMismatch { leaf_index: u64, tree_size: u64 },
    #[error("not included under the checkpoint's root: {0}")]
    NotIncluded(ProofError),
    #[error("left out: the checkpoint covers it, the source did not send it")]
    Missing,
}

fn fault(seq: u64, fault: EntryFault) -> VerifyError {
    VerifyError::Entry { seq, fault }
}

/// Decodes an entry and checks its position.
fn check_entry(seq: u64, bytes: &[u8]) -> Result<(), VerifyError> {
    let entry = AuditEntry::decode(bytes).map_err(|e| fault(seq, EntryFault::Decode(e)))?;
    if entry.seq != seq {
        return Err(fault(seq, EntryFault::Sequence(entry.seq)));
    }
    Ok(())
}

/// Checks encoded entries `start..start + entries.len()` of the log that
/// `checkpoint` signs, with `proofs[k]` the inclusion proof of entry
/// `start + k` in the tree of `checkpoint.size` entries.
pub fn verify_range<E: AsRef<[u8]>>(
    checkpoint: &Checkpoint,
    start: u64,
    entries: &[E],
    proofs: &[InclusionProof],
) -> Result<(), VerifyError> {
    checkpoint.verify()?;
    let size = checkpoint.size;
    let end = start.checked_add(entries.len() as u64);
    match end {
        Some(end) if end <= size => {}
        _ => {
            return Err(VerifyError::OutOfRange {
                start,
                end: end.unwrap_or(u64::MAX),
                size,
            })
        }
    }
    if proofs.len() != entries.len() {
        return Err(VerifyError::CountMismatch {
            entries: entries.len(),
            other: proofs.len(),
        });
    }
    for ((seq, bytes), proof) in (start..).zip(entries).zip(proofs) {
        let bytes = bytes.as_ref();
        check_entry(seq, bytes)?;
        if proof.leaf_index != seq || proof.tree_size != size {
            return Err(fault(
                seq,
                EntryFault::ProofMismatch {
                    leaf_index: proof.leaf_index,
                    tree_size: proof.tree_size,
                },
            ));
        }
        proof
            .verify(&leaf_hash(bytes), &checkpoint.root)
            .map_err(|e| fault(seq, EntryFault::NotIncluded(e)))?;
    }
    Ok(())
}

/// Checks a whole log (entries `0..checkpoint.size`) against `checkpoint`,
/// naming the first bad entry: one that does not decode, carries the wrong
/// sequence number, or (given the stored `chain`, one value per entry)
/// breaks the chain. If every entry passes but the root differs, the error
/// is [`VerifyError::RootMismatch`].
pub fn verify_log<E: AsRef<[u8]>>(
    checkpoint: &Checkpoint,
    entries: &[E],
    chain: Option<&[Hash]>,
) -> Result<(), VerifyError> {
    checkpoint.verify()?;
    if entries.len() as u64 != checkpoint.size {
        return Err(VerifyError::SizeMismatch {
            got: entries.len() as u64,
            size: checkpoint.size,
        });
    }
    if let Some(chain) = chain {
        if chain.len() != entries.len() {
            return Err(VerifyError::CountMismatch {
                entries: entries.len(),
                other: chain.len(),
            });
        }
    }
    let mut prev = CHAIN_START;
    let mut frontier = Frontier::new();
    for (seq, bytes) in (0u64..).zip(entries) {
        let bytes = bytes.as_ref();
        check_entry(seq, bytes)?;
        if let Some(chain) = chain {
            let next = chain_hash(&prev, bytes);
            if chain.get(seq as usize) != Some(&next) {
                return Err(fault(seq, EntryFault::ChainBreak));
            }
            prev = next;
        }
        frontier.push(leaf_hash(bytes));
    }
    if frontier.root() != checkpoint.root {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}

/// Checks a page of `owner`'s log as a source (the owner or a relay)
/// served it: entries `start..` with one inclusion proof each, asked for
/// `wanted` of them. The checkpoint must be the owner's and verify; each
/// entry must decode, carry its position and be included under the
/// checkpoint's root; and every entry the checkpoint covers in the page
/// must be there, so a source that stops early fails at the first entry it
/// left out ([`EntryFault::Missing`]). Entries beyond `wanted` are checked
/// like the others; the caller shows what it asked for.
pub fn verify_served<E: AsRef<[u8]>>(
    owner: &NodeKey,
    checkpoint: &Checkpoint,
    start: u64,
    wanted: u64,
    entries: &[E],
    proofs: &[InclusionProof],
) -> Result<(), VerifyError> {
    if &checkpoint.node != owner {
        return Err(VerifyError::NotOwner);
    }
    verify_range(checkpoint, start, entries, proofs)?;
    let due = wanted.min(checkpoint.size.saturating_sub(start));
    let got = entries.len() as u64;
    if got < due {
        return Err(fault(start + got, EntryFault::Missing));
    }
    Ok(())
}

/// Where a verified checkpoint stands among the owner's checkpoints the
/// fetching node already holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// No known checkpoint of the owner is larger.
    Current,
    /// The owner has signed a larger checkpoint than the one served: what
    /// was served is true as of the smaller one, but is not the whole log.
    Behind { known: Checkpoint },
    /// The served checkpoint and a known one cannot both be true.
    Fork(ForkEvidence),
}

/// Compares `served` (verified) with `known`, the owner's checkpoints held
/// so far (verified: the audit heads hold nothing else). Same-size pairs
/// with different roots are forks. Given `leaves`, the leaf hashes of the
/// whole log `served` signs (checked against its root), a smaller known
/// checkpoint whose root is not that of the first leaves is a fork too;
/// without them (a page), only same sizes can be compared. A known
/// checkpoint larger than the one served cannot be checked against it
/// here: that is [`Standing::Behind`].
pub fn standing(served: &Checkpoint, known: &[Checkpoint], leaves: Option<&[Hash]>) -> Standing {
    let theirs = known.iter().filter(|k| k.node == served.node);
    for k in theirs.clone() {
        if let Some(ev) = ForkEvidence::same_size(k.clone(), served.clone()) {
            return Standing::Fork(ev);
        }
        if let Some(leaves) = leaves {
            if k.size > 0 && k.size < served.size {
                if let Some(ev) = ForkEvidence::inconsistent(k, served, leaves) {
                    return Standing::Fork(ev);
                }
            }
        }
    }
    match theirs.max_by_key(|k| k.size) {
        Some(k) if k.size > served.size => Standing::Behind { known: k.clone() },
        _ => Standing::Current,
    }
}
