//! The node's gossip topics, in one table: each topic's name, the check
//! its messages must pass before gossipsub forwards them, and what the
//! node does with those that pass. The fabric is given the table's topics
//! at start ([`fabric_topics`]) and the event loop dispatches through it
//! ([`Dispatch`]), so adding a topic is one entry in [`TABLE`].

use std::sync::Arc;

use libp2p::PeerId;
use osmoda_fabric::proto::{EmergencyCommand, FleetKey};
use osmoda_fabric::{GossipValidator, TopicSpec};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::replication::push;
use crate::service::Node;
use crate::state::heads::FleetHeads;

/// Signed audit-log checkpoints (the fleet's audit heads).
pub const AUDIT: &str = "osmoda/audit/1";
/// STOP, FREEZE, RESUME, LOCKDOWN and UNLOCK, signed by an admin.
pub const EMERGENCY: &str = "osmoda/emergency/1";
/// One local write's document change, pushed to every replica at once.
/// Whatever a push misses travels between neighbours (anti-entropy and
/// sync over direct requests).
pub const DOCS: &str = "osmoda/docs/1";

/// What validators may consult: the parts that exist before the fabric
/// starts.
#[derive(Clone)]
pub struct Checks {
    pub heads: Arc<FleetHeads>,
    pub fleet: FleetKey,
}

/// Where the event loop hands valid messages on.
pub struct Dispatch {
    pub node: Arc<Node>,
    /// Emergency commands, applied one at a time in arrival order.
    pub emergency: mpsc::Sender<(Vec<u8>, PeerId)>,
    /// Audit heads, merged off the loop.
    pub heads: mpsc::Sender<Vec<u8>>,
}

/// One gossip topic the node speaks.
pub struct NodeTopic {
    pub name: &'static str,
    /// Whether a message may be delivered and forwarded; one that fails
    /// costs its sender gossip score.
    pub validate: fn(&Checks, &[u8]) -> bool,
    /// What the node does with a message that passed.
    pub handle: fn(&Dispatch, Vec<u8>, PeerId),
}

/// Every topic of the node.
pub const TABLE: [NodeTopic; 3] = [
    NodeTopic {
        name: AUDIT,
        validate: |checks, data| checks.heads.check_gossip(data),
        handle: |dispatch, data, origin| {
            if dispatch.heads.try_send(data).is_err() {
                debug!(%origin, "audit heads dropped: too many waiting (anti-entropy repairs it)");
            }
        },
    },
    NodeTopic {
        name: DOCS,
        validate: |_, data| push::is_well_formed(data),
        // Applied in arrival order, on the loop: a spawned task could
        // apply a change before the one it depends on, and leave it to sync.
        handle: |dispatch, data, origin| {
            let node = &dispatch.node;
            push::receive(&node.docs, &node.audit, Some(origin), &data);
        },
    },
    NodeTopic {
        name: EMERGENCY,
        validate: |checks, data| emergency_is_well_formed(checks.fleet, data),
        handle: |dispatch, data, origin| {
            if dispatch.emergency.try_send((data, origin)).is_err() {
                warn!("too many emergency commands waiting; one dropped");
            }
        },
    },
];

/// A command that decodes and names this fleet. Everything else about it
/// (the issuer's role and standing, the signature, replays) is decided by
/// every member on its own (`Node::receive_emergency`), which audits what
/// it ignores; so such commands still travel.
fn emergency_is_well_formed(fleet: FleetKey, data: &[u8]) -> bool {
    EmergencyCommand::decode(data).is_ok_and(|cmd| cmd.issuer.fleet == fleet)
}

/// The table's topics, as the fabric registers them.
pub fn fabric_topics(checks: &Checks) -> Vec<TopicSpec> {
    TABLE
        .iter()
        .map(|topic| {
            let (checks, validate) = (checks.clone(), topic.validate);
            TopicSpec::new(
                topic.name,
                GossipValidator::new(move |data| validate(&checks, data)),
            )
        })
        .collect()
}

impl Dispatch {
    /// Hands a valid message to its topic's handler.
    pub fn deliver(&self, topic: &str, data: Vec<u8>, origin: PeerId) {
        match TABLE.iter().find(|t| t.name == topic) {
            Some(entry) => (entry.handle)(self, data, origin),
            None => debug!(topic, "a message on a topic the node does not handle"),
        }
    }
}
