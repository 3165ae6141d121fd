//! Sans-IO core of osmoda's tamper-evident audit log and of the audit-heads
//! state CRDT that spreads it across the fleet.
//!
//! Every node keeps an append-only log of [`AuditEntry`] records. Each entry
//! has one exact binary encoding ([`entry`]); the encodings are the leaves of
//! an RFC 9162-style Merkle tree hashed with BLAKE3 ([`merkle`]), and also
//! links of a hash chain that lets a node point at the first entry of its own
//! storage that changed. The owner signs [`Checkpoint`]s (size, root, time)
//! with its Ed25519 identity key. Others hold it to them: inclusion proofs
//! show an entry is in a signed tree, consistency proofs that a later tree
//! extends an earlier one ([`proof`]), and [`verify`] checks fetched entries,
//! naming the one that fails.
//!
//! [`AuditHeads`] gossips the latest checkpoints. When a node signs two
//! histories that cannot both be true, anyone who sees both can build
//! [`ForkEvidence`] that verifies on its own, and the CRDT replicates it.
//!
//! Invariants:
//! - **Sans-IO**: no IO, no clock, no threads, no randomness. Time is an
//!   argument (`now_ms`); storage and networking wrap this crate.
//! - **Exact encodings**: every format is versioned, big-endian, with bounded
//!   length prefixes, and decoding is the inverse of encoding on both sides:
//!   `decode(encode(x)) == x` and `encode(decode(b)) == b`. Trailing bytes
//!   are errors. Decoders check every length before reading or allocating,
//!   so no input can make them panic.
//! - **Domain separation**: leaves hash with prefix `0x00`, interior nodes
//!   with `0x01`, the chain and the checkpoint signature with context
//!   strings (`osmoda-audit-chain-v1`, `osmoda-audit-checkpoint-v1`).
//! - **Merge laws**: [`AuditHeads::merge`] is commutative, associative and
//!   idempotent, and flags every fork among the merged checkpoints whatever
//!   the order, within its per-node bound (see [`heads`] for the exact
//!   statement and what bounded memory gives up beyond it).
//! - **Verified state only**: an `AuditHeads` holds only checkpoints whose
//!   signatures verified and evidence that verified, so merging two states
//!   needs no cryptography.
//!
//! The formats are tabulated in each module and in `docs/protocol.md`.

// Outside bytes, files and answers are errors, never panics; tests may
// unwrap what they made themselves.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod checkpoint;
pub mod entry;
pub mod evidence;
pub mod heads;
pub mod log;
pub mod merkle;
pub mod proof;
pub mod verify;

pub use checkpoint::{Checkpoint, CheckpointError};
pub use entry::{Actor, AuditEntry, EntryError, Outcome};
pub use evidence::{EvidenceError, ForkEvidence};
pub use heads::{AuditHeads, HeadsError, InsertOutcome};
pub use log::{LogError, MemoryLog};
pub use merkle::Frontier;
pub use proof::{ConsistencyProof, InclusionProof, ProofError};
pub use verify::{
    standing, verify_log, verify_range, verify_served, EntryFault, Standing, VerifyError,
};

/// A 32-byte BLAKE3 output: leaf, node, root or chain value.
pub type Hash = [u8; 32];

/// Ed25519 public key of a node's identity (as in `osmoda-fabric-proto`).
pub type NodeKey = [u8; 32];
