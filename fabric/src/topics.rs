//! Gossip topics and the messages they carry.
//!
//! Every member subscribes to all of them. Each topic name carries a version
//! so that a format change can run beside the old one during an upgrade.

use serde::{Deserialize, Serialize};

/// Fleet administration: revocations (and later, membership changes).
pub const FLEET: &str = "osmoda/fleet/1";
/// Operator broadcasts (`osmoda mesh broadcast`).
pub const MESH: &str = "osmoda/mesh/1";
/// Signed audit-log checkpoints (replicated state).
pub const AUDIT: &str = "osmoda/audit/1";
/// STOP, FREEZE and LOCKDOWN, signed by an admin (agent supervision).
pub const EMERGENCY: &str = "osmoda/emergency/1";

/// One local write's document change, pushed to every replica at once.
/// Whatever a push misses travels between neighbours (the node's
/// anti-entropy and sync over direct requests).
pub const DOCS: &str = "osmoda/docs/1";

pub const ALL: [&str; 5] = [FLEET, MESH, AUDIT, EMERGENCY, DOCS];

/// Largest gossip message accepted on any topic.
pub const MAX_GOSSIP_MESSAGE: usize = 64 * 1024;

/// What travels on [`FLEET`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FleetMessage {
    /// A revocation in its binary form, hex-encoded.
    Revocation { revocation: String },
}

/// What travels on [`MESH`], and in direct messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeshText {
    pub text: String,
    /// Sender's clock, Unix milliseconds; informational only.
    pub sent_at_ms: u64,
}

/// Longest text of a broadcast or direct message.
pub const MAX_TEXT_LEN: usize = 16 * 1024;
