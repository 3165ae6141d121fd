//! The interface between the harness and the nodes under test.
//!
//! The harness does not depend on the node: the node crate implements
//! `Fleet` over real nodes (one per simulated host, node `i` on
//! `HostId(i)`, each swarm built on `SimNetwork::transport`), and the runner
//! drives it. Division of work:
//!
//! - the runner owns every network control: partitions, heals, stalls, link
//!   profiles, and the host up/down flag around `crash` and `start` (host
//!   down before `crash`, so the crash resets every connection at once like
//!   a dying process; host up before `start`);
//! - the fleet owns the node processes: start with or without the old data
//!   folder, abrupt stop, one operation at a time, and what a node holds.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::SimError;

/// A failure reported by the fleet (a node that did not start, an op that
/// was refused). Plain text: the harness only records it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FleetError(pub String);

impl FleetError {
    pub fn new(message: impl fmt::Display) -> Self {
        FleetError(message.to_string())
    }
}

impl From<SimError> for FleetError {
    fn from(e: SimError) -> Self {
        FleetError(e.to_string())
    }
}

/// What a workload operation does on the node it is applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpKind {
    /// Put a knowledge entry (replicated document).
    KnowledgePut,
    /// Append an audit record to the node's own log.
    AuditAppend,
    /// Add a routine (replicated document).
    RoutineAdd,
    /// Publish a gossip message to the fleet.
    Broadcast,
}

impl OpKind {
    /// Durable kinds are stored and synced, so every node must end up
    /// holding them; a broadcast is best-effort (a node that is down or cut
    /// off when it is sent never gets it) and is only measured.
    pub fn durable(self) -> bool {
        !matches!(self, OpKind::Broadcast)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::KnowledgePut => "knowledge-put",
            OpKind::AuditAppend => "audit-append",
            OpKind::RoutineAdd => "routine-add",
            OpKind::Broadcast => "broadcast",
        }
    }
}

/// One workload operation, fixed by the schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Operation {
    /// Unique in the run, from 1, in schedule order.
    pub id: u64,
    pub kind: OpKind,
    /// The node it is applied to.
    pub node: usize,
    /// Payload bytes (the length of `body()`).
    pub size: usize,
}

/// The prefix of every op key; `Operation::id_from_key` parses it back.
pub const OP_KEY_PREFIX: &str = "sim-op-";

impl Operation {
    /// A stable name for what the op creates (knowledge key, routine name,
    /// audit record subject, message tag), from which a node recovers the
    /// op id it reports in `Observation::new_ops`.
    pub fn key(&self) -> String {
        format!("{OP_KEY_PREFIX}{:010}", self.id)
    }

    pub fn id_from_key(key: &str) -> Option<u64> {
        key.strip_prefix(OP_KEY_PREFIX)?.parse().ok()
    }

    /// `size` bytes of ASCII text starting with the key, the rest
    /// deterministic filler from the id (so payloads differ per op but are
    /// reproducible).
    pub fn body(&self) -> String {
        let mut s = self.key();
        s.push(' ');
        let mut x = self.id;
        while s.len() < self.size {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            s.push(char::from(b'a' + (x >> 59) as u8 % 26));
        }
        s.truncate(self.size);
        s
    }
}

/// One move of a rogue member (a `rogue` fault): a member with its real key
/// and certificate that sends what an honest node never would, through
/// its own fabric. Every one must be refused by every honest node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Attack {
    /// Edit an entry another node wrote.
    EditForeign,
    /// Delete an entry another node wrote.
    DeleteForeign,
    /// Write a change under another node's actor (sealed with its own key).
    ForgeActor,
    /// Send a change that carries no seal.
    Unsealed,
    /// Add a routine (admins only: routines run as code on members).
    RoutineAdd,
    /// Publish bytes that are no emergency command on the emergency topic.
    EmergencyJunk,
}

impl Attack {
    /// Every move, in the order a rogue fault cycles through them.
    pub const ALL: [Attack; 6] = [
        Attack::EditForeign,
        Attack::DeleteForeign,
        Attack::ForgeActor,
        Attack::Unsealed,
        Attack::RoutineAdd,
        Attack::EmergencyJunk,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Attack::EditForeign => "edit-foreign",
            Attack::DeleteForeign => "delete-foreign",
            Attack::ForgeActor => "forge-actor",
            Attack::Unsealed => "unsealed",
            Attack::RoutineAdd => "routine-add",
            Attack::EmergencyJunk => "emergency-junk",
        }
    }
}

/// What one attempt of a rogue member came to on its side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttackOutcome {
    /// Published. `refused`: the verdict of the fleet's rules on it, where
    /// the fleet can tell (`Some(true)`: every honest replica refuses it).
    Sent { refused: Option<bool> },
    /// Nothing to aim at yet (e.g. no entry of another node held).
    NoTarget,
}

/// How to start a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartSpec {
    /// Start with an empty data folder (first start, late join, restart
    /// after a crash that lost the disk); otherwise reopen the old one.
    pub fresh_disk: bool,
    /// Nodes to dial at start (their hosts' addresses), from the topology.
    pub bootstrap: Vec<usize>,
}

/// What one node holds right now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observation {
    /// Digest of the replicated documents (e.g. of the sorted document
    /// heads): equal on two nodes iff they hold the same document state.
    pub state_digest: [u8; 16],
    /// Digest of the audit-heads CRDT state (checkpoints and evidence).
    pub audit_heads_digest: [u8; 16],
    /// Op ids this node holds that it has not reported since it was last
    /// started; after a start it reports everything it holds again.
    /// Reporting more (even everything, every time) is correct, only slower.
    pub new_ops: Vec<u64>,
    /// Forks this node has evidence of.
    pub forks_known: usize,
}

/// A node's final self-check, after quiescence.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyOutcome {
    /// Every audit log the node holds verifies (chains, signatures,
    /// checkpoints); `audit_errors` says which did not.
    pub audit_ok: bool,
    pub audit_errors: Vec<String>,
    /// Forks the node has evidence of.
    pub forks_detected: usize,
    /// Every op id the node holds now (complete, not incremental), as it
    /// was written: an entry since edited or deleted is not held.
    pub held_ops: Vec<u64>,
    /// What of a rogue member's writes this node holds (a routine, an
    /// entry, an emergency state it set): empty on an honest node.
    pub rogue_held: Vec<String>,
}

/// The nodes under test, driven by `runner::run`. Node indexes are
/// `0..scenario.nodes`; node `i` runs on `HostId(i)` of the network given
/// to `run`. Calls never overlap (one task drives the fleet).
#[async_trait]
pub trait Fleet: Send {
    /// Starts node `node` (its host is already up) and returns once it
    /// serves operations; it dials `spec.bootstrap` itself.
    async fn start(&mut self, node: usize, spec: StartSpec) -> Result<(), FleetError>;

    /// Stops the node abruptly, as a crash would: no goodbye, nothing
    /// flushed that was not already (its host is already down).
    async fn crash(&mut self, node: usize) -> Result<(), FleetError>;

    /// Applies one operation on `node`; `Ok` means the node acknowledged it
    /// (for durable kinds: it is on the node's disk).
    async fn apply(&mut self, node: usize, op: &Operation) -> Result<(), FleetError>;

    /// What the node holds; `None` if it is down. Called for every node
    /// every `observe_every`, so it must be cheap (no IO, no waiting).
    fn observe(&mut self, node: usize) -> Option<Observation>;

    /// The final self-check of a live node.
    async fn verify(&mut self, node: usize) -> Result<VerifyOutcome, FleetError>;

    /// Makes `node`, a member with real credentials, try `attack` (see
    /// [`Attack`]). Fleets that cannot play a rogue member say so.
    async fn attack(&mut self, node: usize, attack: Attack) -> Result<AttackOutcome, FleetError> {
        let _ = node;
        Err(FleetError::new(format!(
            "this fleet cannot make a node rogue ({} not supported)",
            attack.as_str()
        )))
    }

    /// Forks the fleet injected on purpose, if any: then every node must
    /// detect exactly this many (otherwise: as many as any node knows).
    fn expected_forks(&self) -> Option<usize> {
        None
    }
}
