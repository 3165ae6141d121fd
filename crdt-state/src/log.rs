//! `MemoryLog`: a node's own audit log, held in memory.
//!
//! It keeps, per entry, the exact encoding, the leaf hash and the chain
//! value, plus the [`Frontier`] so that the current root costs O(log n)
//! after every append. A storage layer wraps it (or mirrors it): it persists
//! `(encoded entry, chain value)` per sequence number and rebuilds the log at
//! start-up with [`MemoryLog::append_encoded`], which rechecks everything.

use std::ops::Range;

use ed25519_dalek::SigningKey;

use crate::checkpoint::Checkpoint;
use crate::entry::{AuditEntry, EntryError};
use crate::merkle::{chain_hash, leaf_hash, root_of, Frontier, CHAIN_START};
use crate::proof::{
    consistency_path, inclusion_path, inclusion_paths, ConsistencyProof, InclusionProof, ProofError,
};
use crate::verify::{verify_log, VerifyError};
use crate::{Hash, NodeKey};

/// Why an append or a read was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("entry: {0}")]
    Entry(#[from] EntryError),
    #[error("entry has sequence number {found}, the log expects {expected}")]
    Sequence { expected: u64, found: u64 },
    #[error("range {start}..{end} is not within the log's {len} entries")]
    OutOfRange { start: u64, end: u64, len: u64 },
    #[error("proof: {0}")]
    Proof(#[from] ProofError),
}

/// An append-only audit log with its owner's signing key.
pub struct MemoryLog {
    key: SigningKey,
    entries: Vec<Vec<u8>>,
    leaves: Vec<Hash>,
    chain: Vec<Hash>,
    frontier: Frontier,
}

impl std::fmt::Debug for MemoryLog {
    // The signing key stays out of debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryLog")
            .field("owner", &self.owner())
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl MemoryLog {
    pub fn new(key: SigningKey) -> Self {
        Self {
            key,
            entries: Vec::new(),
            leaves: Vec::new(),
            chain: Vec::new(),
            frontier: Frontier::new(),
        }
    }

    /// The owner's public key, which signs this log's checkpoints.
    pub fn owner(&self) -> NodeKey {
        self.key.verifying_key().to_bytes()
    }

    pub fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends an entry. The log assigns `seq` (the next position): whatever
    /// the caller put there is replaced, so no caller can leave a gap.
    pub fn append(&mut self, mut entry: AuditEntry) -> Result<u64, LogError> {
        entry.seq = self.len();
        let bytes = entry.encode()?;
        Ok(self.push(bytes))
    }

    /// Appends an entry already encoded (read back from storage): it must
    /// decode and carry the next sequence number.
    pub fn append_encoded(&mut self, bytes: &[u8]) -> Result<u64, LogError> {
        let entry = AuditEntry::decode(bytes)?;
        if entry.seq != self.len() {
            return Err(LogError::Sequence {
                expected: self.len(),
                found: entry.seq,
            });
        }
        Ok(self.push(bytes.to_vec()))
    }

    fn push(&mut self, bytes: Vec<u8>) -> u64 {
        let seq = self.len();
        let prev = self.chain.last().copied().unwrap_or(CHAIN_START);
        let leaf = leaf_hash(&bytes);
        self.chain.push(chain_hash(&prev, &bytes));
        self.leaves.push(leaf);
        self.frontier.push(leaf);
        self.entries.push(bytes);
        seq
    }

    /// The current Merkle root, from the frontier: O(log n).
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// The root the log had at `size` entries: O(size).
    pub fn root_at(&self, size: u64) -> Result<Hash, LogError> {
        Ok(root_of(self.leaves_to(size)?))
    }

    /// The chain value after the last entry (`CHAIN_START` when empty).
    pub fn chain_head(&self) -> Hash {
        self.chain.last().copied().unwrap_or(CHAIN_START)
    }

    /// The chain value after each entry, by sequence number: what storage
    /// keeps beside the entries so [`verify_log`] can name a changed entry.
    pub fn chain(&self) -> &[Hash] {
        &self.chain
    }

    /// Leaf hashes, by sequence number.
    pub fn leaves(&self) -> &[Hash] {
        &self.leaves
    }

    /// Signs a checkpoint of the log as it is now. Sign again only after the
    /// log grew: re-signing one size fills peers' bounded history with repeats.
    pub fn checkpoint(&self, now_ms: u64) -> Checkpoint {
        Checkpoint::sign(&self.key, self.len(), self.root(), now_ms)
    }

    /// The audit path of entry `seq` in the tree of the first `size` entries.
    pub fn inclusion_proof(&self, seq: u64, size: u64) -> Result<InclusionProof, LogError> {
        let path = inclusion_path(seq, self.leaves_to(size)?)?;
        Ok(InclusionProof {
            leaf_index: seq,
            tree_size: size,
            path,
        })
    }

    /// The audit paths of entries `range` in the tree of the first `size`
    /// entries, in one O(size) pass.
    pub fn inclusion_proofs(
        &self,
        range: Range<u64>,
        size: u64,
    ) -> Result<Vec<InclusionProof>, LogError> {
        let paths = inclusion_paths(range.clone(), self.leaves_to(size)?)?;
        Ok(range
            .zip(paths)
            .map(|(leaf_index, path)| InclusionProof {
                leaf_index,
                tree_size: size,
                path,
            })
            .collect())
    }

    /// The consistency proof from the first `m` entries to the first `n`.
    pub fn consistency_proof(&self, m: u64, n: u64) -> Result<ConsistencyProof, LogError> {
        let path = consistency_path(m, self.leaves_to(n)?)?;
        Ok(ConsistencyProof {
            old_size: m,
            new_size: n,
            path,
        })
    }

    /// Encoded entries `range.start..range.end`.
    pub fn entries(&self, range: Range<u64>) -> Result<&[Vec<u8>], LogError> {
        let len = self.len();
        if range.start > range.end || range.end > len {
            return Err(LogError::OutOfRange {
                start: range.start,
                end: range.end,
                len,
            });
        }
        Ok(&self.entries[range.start as usize..range.end as usize])
    }

    /// The decoded entry `seq`.
    pub fn entry(&self, seq: u64) -> Option<AuditEntry> {
        let bytes = self.entries.get(usize::try_from(seq).ok()?)?;
        AuditEntry::decode(bytes).ok()
    }

    /// Rechecks the first `checkpoint.size` entries against the checkpoint,
    /// with the stored chain: what a node runs over its own storage.
    pub fn verify(&self, checkpoint: &Checkpoint) -> Result<(), VerifyError> {
        // A checkpoint larger than the log fails in verify_log as a size mismatch.
        let n = checkpoint.size.min(self.len()) as usize;
        verify_log(checkpoint, &self.entries[..n], Some(&self.chain[..n]))
    }

    fn leaves_to(&self, size: u64) -> Result<&[Hash], LogError> {
        let len = self.len();
        if size > len {
            return Err(LogError::OutOfRange {
                start: 0,
                end: size,
                len,
            });
        }
        Ok(&self.leaves[..size as usize])
    }
}
