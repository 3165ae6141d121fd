//! Signed checkpoints: a node's word that its log had `size` entries with
//! Merkle root `root` at `time_ms`.
//!
//! Layout (big-endian), exactly 145 bytes:
//!
//! | field | size |
//! |---|---|
//! | version | 1 (`0x01`) |
//! | node | 32 (the owner's Ed25519 public key) |
//! | size | 8 |
//! | root | 32 |
//! | time_ms | 8 (Unix milliseconds) |
//! | signature | 64: the node's Ed25519 signature over `"osmoda-audit-checkpoint-v1" || all fields above` |
//!
//! A checkpoint is valid when the signature verifies strictly under `node`
//! and, for `size == 0`, `root` is the empty root (an empty log has exactly
//! one root, so anything else is nonsense a signer should not get away with).

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use osmoda_wire::{Reader, Truncated};

use crate::merkle::empty_root;
use crate::{Hash, NodeKey};

const CHECKPOINT_VERSION: u8 = 1;
const CHECKPOINT_CONTEXT: &[u8] = b"osmoda-audit-checkpoint-v1";

/// Encoded size of a checkpoint.
pub const CHECKPOINT_LEN: usize = 1 + 32 + 8 + 32 + 8 + 64;

/// Why a checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("truncated or oversized checkpoint encoding")]
    Malformed,
    #[error("unsupported checkpoint version {0}")]
    Version(u8),
    #[error("signature does not verify")]
    BadSignature,
    #[error("a checkpoint of size 0 must carry the empty root")]
    EmptyRoot,
}

impl From<Truncated> for CheckpointError {
    fn from(_: Truncated) -> Self {
        CheckpointError::Malformed
    }
}

/// A signed tree head.
///
/// The derived order (node, size, root, time, signature) is total over
/// distinct checkpoints; the audit heads CRDT uses it to pick heads and to
/// break ties between checkpoints of equal size deterministically.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Checkpoint {
    pub node: NodeKey,
    pub size: u64,
    pub root: Hash,
    pub time_ms: u64,
    signature: [u8; 64],
}

impl Checkpoint {
    /// Signs a checkpoint with the log owner's key.
    pub fn sign(key: &SigningKey, size: u64, root: Hash, time_ms: u64) -> Self {
        let mut cp = Checkpoint {
            node: key.verifying_key().to_bytes(),
            size,
            root,
            time_ms,
            signature: [0; 64],
        };
        let msg = cp.signed_message();
        cp.signature = key.sign(&msg).to_bytes();
        cp
    }

    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }

    fn body(&self) -> [u8; CHECKPOINT_LEN - 64] {
        let mut out = [0u8; CHECKPOINT_LEN - 64];
        out[0] = CHECKPOINT_VERSION;
        out[1..33].copy_from_slice(&self.node);
        out[33..41].copy_from_slice(&self.size.to_be_bytes());
        out[41..73].copy_from_slice(&self.root);
        out[73..81].copy_from_slice(&self.time_ms.to_be_bytes());
        out
    }

    fn signed_message(&self) -> Vec<u8> {
        let mut msg = CHECKPOINT_CONTEXT.to_vec();
        msg.extend_from_slice(&self.body());
        msg
    }

    pub fn encode(&self) -> [u8; CHECKPOINT_LEN] {
        let mut out = [0u8; CHECKPOINT_LEN];
        out[..CHECKPOINT_LEN - 64].copy_from_slice(&self.body());
        out[CHECKPOINT_LEN - 64..].copy_from_slice(&self.signature);
        out
    }

    /// Parses a checkpoint. This checks the format only; call
    /// [`Checkpoint::verify`] before trusting it.
    pub fn decode(bytes: &[u8]) -> Result<Self, CheckpointError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != CHECKPOINT_VERSION {
            return Err(CheckpointError::Version(version));
        }
        let cp = Checkpoint {
            node: r.array()?,
            size: r.u64()?,
            root: r.array()?,
            time_ms: r.u64()?,
            signature: r.array()?,
        };
        r.finish()?;
        Ok(cp)
    }

    pub(crate) fn decode_from(r: &mut Reader<'_>) -> Result<Self, CheckpointError> {
        Self::decode(r.bytes(CHECKPOINT_LEN)?)
    }

    /// Checks the owner's signature (strictly: no malleable encodings, no
    /// small-order keys) and the empty-root rule.
    pub fn verify(&self) -> Result<(), CheckpointError> {
        let key =
            VerifyingKey::from_bytes(&self.node).map_err(|_| CheckpointError::BadSignature)?;
        key.verify_strict(
            &self.signed_message(),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| CheckpointError::BadSignature)?;
        if self.size == 0 && self.root != empty_root() {
            return Err(CheckpointError::EmptyRoot);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn round_trips_and_verifies() {
        let cp = Checkpoint::sign(&key(1), 5, [9; 32], 1234);
        let bytes = cp.encode();
        let back = Checkpoint::decode(&bytes).unwrap();
        assert_eq!(back, cp);
        assert_eq!(back.encode(), bytes);
        back.verify().unwrap();
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let bytes = Checkpoint::sign(&key(2), 7, [3; 32], 99).encode();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes;
                b[i] ^= 1 << bit;
                let ok = Checkpoint::decode(&b).and_then(|c| c.verify());
                assert!(ok.is_err(), "byte {i} bit {bit} accepted");
            }
        }
    }

    #[test]
    fn empty_log_needs_empty_root() {
        Checkpoint::sign(&key(3), 0, empty_root(), 1)
            .verify()
            .unwrap();
        assert_eq!(
            Checkpoint::sign(&key(3), 0, [0; 32], 1).verify(),
            Err(CheckpointError::EmptyRoot)
        );
    }

    #[test]
    fn length_is_exact() {
        let bytes = Checkpoint::sign(&key(4), 1, [1; 32], 1).encode();
        assert!(Checkpoint::decode(&bytes[..CHECKPOINT_LEN - 1]).is_err());
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert_eq!(Checkpoint::decode(&longer), Err(CheckpointError::Malformed));
    }
}
