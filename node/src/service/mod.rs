//! The service layer: every operation a node offers, once.
//!
//! [`Node`] holds the node's parts (`state/`, the fabric handle, the
//! replicator) and each operation is one method on it that checks its
//! input, makes the change, writes its audit entry and returns a typed
//! [`NodeError`]. The fronts are thin adapters over these methods: the
//! control API (`control/`), the agents' tool socket (`agent_socket/`), the
//! event loop for what peers send (`runtime/event_loop.rs`) and the
//! simulator (`sim/`). None of them changes state or writes the audit log
//! on its own.
//!
//! Who asks is a [`Caller`]. An operator's change gets an audit entry of
//! its own (`knowledge.put`, `agent.stop`, ...). An agent's tool call gets
//! exactly one entry for the whole call (`tool.knowledge_put`), written by
//! the agent socket once the call ended; the operations it reaches add
//! their notes to that entry instead of writing their own.

mod agent_tools;
mod agents;
mod approvals;
mod audit;
pub mod cards;
mod config_agents;
mod confine;
mod emergency;
mod emergency_intake;
pub mod failover;
mod fleet;
mod host;
pub mod knowledge;
mod mesh;
mod metrics;
mod renewal;
mod routines;
mod secrets;
mod task_delivery;
pub mod tasks;

pub use agents::audit_agent_events;
pub use confine::Confinement;
pub use emergency_intake::{Received, Via, REGISTER_INTAKE};
pub(crate) use fleet::persist_revocations;
pub use renewal::due_at;
pub(crate) use renewal::keep_renewed;
pub(crate) use task_delivery::deliver as deliver_tasks;

use std::sync::{Arc, Mutex};

use libp2p::PeerId;
use osmoda_crdt_state::{Actor, Outcome};
use osmoda_fabric::proto::FleetCert;
use osmoda_fabric::{FabricHandle, Membership};
use zeroize::Zeroizing;

use crate::api::NodeInfo;
use crate::error::{ErrorKind, NodeError, NodeResult};
use crate::replication::sync::Replicator;
use crate::state::agents::{AgentIdentity, Agents};
use crate::state::approvals::Approvals;
use crate::state::audit_log::AuditLog;
use crate::state::docs::Docs;
use crate::state::emergency::Emergency;
use crate::state::heads::FleetHeads;
use crate::state::mirrors::Mirrors;
use crate::state::refusals::Refusals;
use crate::state::vault::Vault;

/// This node's certificate and identity key, to sign fleet commands, and
/// what renewing certificates takes.
pub struct Signer {
    /// The certificate as it stands now (renewal replaces it).
    pub credentials: osmoda_fabric::LiveCredentials,
    pub identity: Zeroizing<[u8; 32]>,
    /// How long the certificates an admin node issues last.
    pub lifetime: std::time::Duration,
    /// Where the renewed certificate is kept (none in the simulator).
    pub data: Option<crate::datadir::DataDir>,
}

impl Signer {
    pub fn cert(&self) -> FleetCert {
        self.credentials.cert()
    }
}

/// A running node: its parts, and every operation on them.
pub struct Node {
    pub(crate) info: NodeInfo,
    /// `config.toml`'s labels, as the node started with them.
    pub(crate) labels: std::collections::BTreeMap<String, String>,
    pub(crate) fabric: FabricHandle,
    pub(crate) membership: Arc<Membership>,
    pub(crate) audit: Arc<AuditLog>,
    pub(crate) heads: Arc<FleetHeads>,
    pub(crate) docs: Arc<Docs>,
    pub(crate) mirrors: Mirrors,
    pub(crate) replicator: Arc<Replicator>,
    pub(crate) agents: Agents,
    pub(crate) approvals: Approvals,
    pub(crate) emergency: Emergency,
    /// Agents' confinement: what the host offers, their networks and the
    /// egress proxy.
    pub(crate) confinement: Confinement,
    pub(crate) vault: Vault,
    /// Held while an emergency command is decided and applied, so that
    /// commands take effect one at a time, in the order they are admitted.
    pub(crate) emergency_order: tokio::sync::Mutex<()>,
    /// Emergency commands from peers not taken, for audit summaries.
    pub(crate) refusals: Refusals,
    /// Register exchanges whose commands are being checked at once; more
    /// are dropped (the next exchange brings them again).
    pub(crate) register_intake: Arc<tokio::sync::Semaphore>,
    /// The enrollment tokens this node issued, on an admin node.
    pub(crate) invites: Option<Arc<crate::state::invites::Invites>>,
    pub(crate) signer: Signer,
    /// How fast each member's pushes are taken (`replication/rates.rs`).
    pub(crate) push_rates: crate::replication::rates::PushRates,
    /// The counters behind `GET /metrics` (`metrics/`).
    pub(crate) metrics: crate::metrics::Metrics,
    /// The fleet's agent cards, this node's among them.
    pub(crate) cards: crate::state::cards::FleetCards,
    /// Wakes the advertising task after a change of this node's cards.
    pub(crate) cards_kick: Arc<tokio::sync::Notify>,
    /// Tasks submitted here or given to agents here.
    pub(crate) tasks: crate::state::tasks::Tasks,
    /// Wakes the delivery task after a change of a task.
    pub(crate) tasks_kick: Arc<tokio::sync::Notify>,
    /// Since when the nodes of `--skill` tasks submitted here have been
    /// out of reach.
    pub(crate) unreachable: failover::Unreachable,
}

/// Who asks for an operation.
#[derive(Clone, Copy)]
pub enum Caller<'a> {
    /// The node's operator, through the control socket.
    Operator,
    /// An agent, through a tool call.
    Agent(&'a AgentCall),
    /// A client of the A2A front, known by its bearer token.
    Remote(&'a RemoteClient),
}

/// An A2A client as its token in the configuration names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteClient {
    /// `a2a:NAME`: never an agent's name, which holds no colon.
    pub label: String,
    /// The ring its tasks come from (1 or 2).
    pub ring: u8,
}

/// One agent tool call on its way: who makes it, and what the operations
/// it reached have to say in its audit entry.
pub struct AgentCall {
    pub who: AgentIdentity,
    notes: Mutex<Vec<String>>,
}

impl AgentCall {
    pub fn new(who: AgentIdentity) -> Self {
        Self {
            who,
            notes: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn note(&self, text: String) {
        if !text.is_empty() {
            let mut notes = self.notes.lock().unwrap_or_else(|e| e.into_inner());
            // A call reaches a handful of operations; the bound only keeps
            // a bug from growing the entry.
            if notes.len() < 16 {
                notes.push(text);
            }
        }
    }

    /// The notes so far, for the call's audit entry.
    pub fn notes(&self) -> String {
        self.notes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("; ")
    }
}

impl Caller<'_> {
    /// How documents record who wrote them.
    pub fn actor_text(&self) -> String {
        match self {
            Caller::Operator => "operator".into(),
            Caller::Agent(call) => format!("agent:{}", call.who.name),
            Caller::Remote(client) => client.label.clone(),
        }
    }

    /// Who the audit entries of the caller's own operations name.
    pub(crate) fn actor(&self) -> Actor {
        match self {
            Caller::Operator => Actor::Operator,
            Caller::Agent(call) => Actor::Agent(call.who.name.clone()),
            Caller::Remote(client) => Actor::Agent(client.label.clone()),
        }
    }
}

/// How an operation's failure is written in the audit log.
fn outcome_of(e: &NodeError) -> Outcome {
    match e.kind() {
        ErrorKind::Forbidden | ErrorKind::Denied => Outcome::Denied,
        _ => Outcome::Failed(e.to_string()),
    }
}

impl Node {
    /// Facts about this node that do not change while it runs.
    pub fn info(&self) -> &NodeInfo {
        &self.info
    }

    /// Records an operation with its outcome and hands the result back. For
    /// an operator or an A2A client the entry is written now (the client's
    /// as `a2a:NAME`), and a failure to write it fails
    /// the operation: an unaudited change must not look done. For an agent,
    /// the action, target and details become a note of its call's entry.
    pub(crate) async fn audited<T>(
        &self,
        by: Caller<'_>,
        action: &str,
        target: &str,
        details: &str,
        result: NodeResult<T>,
    ) -> NodeResult<T> {
        match by {
            Caller::Operator | Caller::Remote(_) => {
                let outcome = match &result {
                    Ok(_) => Outcome::Ok,
                    Err(e) => outcome_of(e),
                };
                self.audit
                    .record(by.actor(), action, target, outcome, details)
                    .await
                    .map_err(|e| NodeError::Audit(e.to_string()))?;
            }
            Caller::Agent(call) => {
                let mut note = format!("{action} {target}").trim().to_string();
                if !details.is_empty() {
                    note.push_str(&format!(" ({details})"));
                }
                call.note(note);
            }
        }
        result
    }

    /// Records something the node did or received on its own, in the
    /// background: a replica's work must not wait for the audit's fsync.
    pub(crate) fn audit_later(&self, actor: Actor, action: &str, target: String, details: String) {
        let audit = self.audit.clone();
        let action = action.to_owned();
        tokio::spawn(async move {
            if let Err(e) = audit
                .record(actor, &action, &target, Outcome::Ok, &details)
                .await
            {
                tracing::warn!(error = %e, action, "cannot write an audit entry");
            }
        });
    }

    /// A node named by its id, or by the name in its certificate (of a
    /// connected node). A name two connected nodes share is refused.
    pub async fn resolve_node(&self, node: &str) -> NodeResult<PeerId> {
        let node = node.trim();
        if let Ok(peer) = node.parse::<PeerId>() {
            return Ok(peer);
        }
        if node == self.info.name {
            return Ok(self.fabric.local_peer_id());
        }
        let peers = self.fabric.peers().await?;
        let found: Vec<_> = peers.iter().filter(|p| p.name == node).collect();
        match found.as_slice() {
            [one] => one
                .node_id
                .parse()
                .map_err(|_| NodeError::internal("a connected node's id does not parse")),
            [] => Err(NodeError::not_found(
                "connected node with the id or name",
                node,
            )),
            many => Err(NodeError::Ambiguous {
                what: "connected node",
                name: node.to_owned(),
                ids: many.iter().map(|p| p.node_id.clone()).collect(),
            }),
        }
    }

    /// `None` for this node, the peer id of another one.
    pub(crate) async fn other_node(&self, node: Option<&str>) -> NodeResult<Option<PeerId>> {
        let Some(node) = node.filter(|n| !n.trim().is_empty()) else {
            return Ok(None);
        };
        let peer = self.resolve_node(node).await?;
        Ok((peer != self.fabric.local_peer_id()).then_some(peer))
    }

    /// The name a node's certificate gives it, when this node knows it.
    pub fn name_of(&self, peer: &PeerId) -> Option<String> {
        if *peer == self.fabric.local_peer_id() {
            return Some(self.info.name.clone());
        }
        self.membership.peer(peer).map(|r| r.cert.name)
    }
}

/// Unix seconds now (0 for a clock set before 1970).
pub fn unix_now() -> u64 {
    now_ms() / 1000
}

/// Unix milliseconds now (0 for a clock set before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
