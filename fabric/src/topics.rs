//! Gossip topics: the fabric's own two, and the registry every topic goes
//! through.
//!
//! The fabric knows nothing of the application's topics but what it is
//! given at start: each [`TopicSpec`] names a topic once, with the validator
//! its messages must pass before gossipsub forwards them (there is no way to
//! register a topic without one) and its peer-scoring weights. The
//! fabric's own topics are checked on its loop (a revocation costs one
//! signature); the application's are checked by the application, off the
//! loop, and reported back ([`Validator`]). Subscriptions
//! and scores come from the registry; publishing on a topic it does not
//! hold is an error, and a message on a topic it does not hold is rejected.
//! Each topic name carries a version so that a format change can run
//! beside the old one during an upgrade.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use libp2p::gossipsub::{IdentTopic, MessageId, TopicHash};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// Fleet administration: revocations (and later, membership changes).
pub const FLEET: &str = "osmoda/fleet/1";
/// Operator broadcasts (`osmoda mesh broadcast`).
pub const MESH: &str = "osmoda/mesh/1";

/// Largest gossip message accepted on any topic.
pub const MAX_GOSSIP_MESSAGE: usize = 64 * 1024;
/// Most topics one fabric registers; each costs a subscription and a
/// score entry.
pub const MAX_TOPICS: usize = 32;

/// What travels on [`FLEET`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FleetMessage {
    /// A revocation in its binary form, hex-encoded.
    Revocation { revocation: String },
}

/// What travels on [`MESH`], and in direct messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshText {
    pub text: String,
    /// Sender's clock, Unix milliseconds; informational only.
    pub sent_at_ms: u64,
}

/// Longest text of a broadcast or direct message.
pub const MAX_TEXT_LEN: usize = 16 * 1024;

/// How long a message may wait for the application's verdict. Gossipsub
/// keeps an unvalidated message in its cache for `HISTORY_LENGTH - 1` to
/// `HISTORY_LENGTH` heartbeats (2.8 to 3.5 s here) and cannot forward it
/// afterwards; the fabric gives up first, reports it ignored (not
/// forwarded, no penalty) and counts it, so that no verdict is ever lost
/// silently in gossipsub.
pub const VALIDATION_TIMEOUT: Duration = Duration::from_secs(2);
/// Messages waiting for a verdict at once, all topics together; beyond,
/// new ones are ignored at once and counted.
pub const MAX_AWAITING: usize = 1024;

/// What the application decided about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: deliver it here and forward it.
    Accept,
    /// Invalid: not forwarded, and it costs the peer that sent it.
    Reject,
    /// Not forwarded, at no cost to anyone (stale, or not checkable now).
    Ignore,
}

/// What the fabric needs to apply a verdict: the message's id and the
/// peer it came from. Hand it back with [`crate::FabricHandle::report`].
#[derive(Debug)]
pub struct Ticket {
    pub(crate) id: MessageId,
    pub(crate) source: PeerId,
    pub(crate) arrived: Instant,
}

impl Ticket {
    /// Whether the fabric has given up waiting for this verdict (it then
    /// reported the message ignored itself).
    pub fn expired(&self) -> bool {
        self.arrived.elapsed() >= VALIDATION_TIMEOUT
    }

    /// The peer that relayed the message here (gossipsub's propagation
    /// source), which is not its origin once it went through a hop.
    pub fn source(&self) -> PeerId {
        self.source
    }
}

/// A message on an application topic, waiting for its verdict. The
/// fabric already checked its envelope and that its origin is in good
/// standing; gossipsub holds it until the verdict.
#[derive(Debug)]
pub struct GossipMessage {
    pub topic: &'static str,
    /// The node that signed it, whoever relayed it.
    pub origin: PeerId,
    pub data: Vec<u8>,
    pub ticket: Ticket,
}

/// The validator of an application topic: the bounded queue its messages
/// wait in for the application, which checks them off the fabric loop and
/// reports each verdict with [`crate::FabricHandle::report`]. A message
/// that finds the queue full is ignored at once (not forwarded) and
/// counted, like one whose verdict does not come within
/// [`VALIDATION_TIMEOUT`].
#[derive(Debug, Clone)]
pub struct Validator(pub(crate) mpsc::Sender<GossipMessage>);

impl Validator {
    /// A validator whose queue holds `capacity` messages, and the end the
    /// application takes them from.
    pub fn queue(capacity: usize) -> (Self, mpsc::Receiver<GossipMessage>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self(tx), rx)
    }
}

/// Who checks a topic's messages: the fabric itself for its own topics,
/// the application's validator for the others.
#[derive(Debug, Clone)]
pub(crate) enum Route {
    /// Revocations: verified and applied by the fabric.
    Fleet,
    /// Operator texts: checked and put in the inbox by the fabric.
    Mesh,
    App(Validator),
}

/// Gossipsub scoring of one topic (v1.1's P4, invalid deliveries): what a
/// peer pays for each message that fails validation, and how fast it is
/// forgiven. Small fleets may be quiet for hours, so no topic sets
/// delivery quotas.
#[derive(Debug, Clone, Copy)]
pub struct TopicScore {
    pub topic_weight: f64,
    pub invalid_message_weight: f64,
    pub invalid_message_decay: f64,
}

impl Default for TopicScore {
    fn default() -> Self {
        Self {
            topic_weight: 1.0,
            invalid_message_weight: -100.0,
            invalid_message_decay: 0.5,
        }
    }
}

/// One gossip topic, registered once.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub(crate) name: &'static str,
    pub(crate) route: Route,
    pub(crate) score: TopicScore,
}

impl TopicSpec {
    /// An application topic: every message that passes the fabric's own
    /// checks (envelope signature, origin standing) goes to `validator`,
    /// and is forwarded only once the application accepted it.
    pub fn new(name: &'static str, validator: Validator) -> Self {
        Self {
            name,
            route: Route::App(validator),
            score: TopicScore::default(),
        }
    }

    pub fn with_score(mut self, score: TopicScore) -> Self {
        self.score = score;
        self
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    fn own(name: &'static str, route: Route) -> Self {
        Self {
            name,
            route,
            score: TopicScore::default(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("topic {0} is registered twice")]
    Duplicate(&'static str),
    #[error("more than {MAX_TOPICS} topics")]
    TooMany,
    #[error("an empty topic name")]
    Empty,
}

/// Every topic this fabric speaks, with its hash.
#[derive(Debug, Clone)]
pub(crate) struct Registry {
    topics: Vec<(TopicHash, TopicSpec)>,
}

impl Registry {
    /// The fabric's own topics and the application's, each exactly once.
    pub(crate) fn new(app: Vec<TopicSpec>) -> Result<Self, RegistryError> {
        let own = [
            TopicSpec::own(FLEET, Route::Fleet),
            TopicSpec::own(MESH, Route::Mesh),
        ];
        if own.len() + app.len() > MAX_TOPICS {
            return Err(RegistryError::TooMany);
        }
        let mut seen = HashSet::new();
        let mut topics = Vec::new();
        for spec in own.into_iter().chain(app) {
            if spec.name.is_empty() {
                return Err(RegistryError::Empty);
            }
            if !seen.insert(spec.name) {
                return Err(RegistryError::Duplicate(spec.name));
            }
            topics.push((IdentTopic::new(spec.name).hash(), spec));
        }
        Ok(Self { topics })
    }

    pub(crate) fn by_hash(&self, hash: &TopicHash) -> Option<&TopicSpec> {
        self.topics
            .iter()
            .find(|(h, _)| h == hash)
            .map(|(_, spec)| spec)
    }

    pub(crate) fn by_name(&self, name: &str) -> Option<&TopicSpec> {
        self.topics
            .iter()
            .find(|(_, spec)| spec.name == name)
            .map(|(_, spec)| spec)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&TopicHash, &TopicSpec)> {
        self.topics.iter().map(|(h, s)| (h, s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: &'static str) -> TopicSpec {
        TopicSpec::new(name, Validator::queue(1).0)
    }

    #[test]
    fn the_fabric_gives_up_on_a_verdict_before_gossipsub_forgets_the_message() {
        use crate::behaviour::{HEARTBEAT, HISTORY_LENGTH};
        let forgotten_after = HEARTBEAT * (HISTORY_LENGTH as u32 - 1);
        // The loop sweeps every 500 ms (`runtime::VERDICT_SWEEP`).
        assert!(VALIDATION_TIMEOUT + Duration::from_millis(500) < forgotten_after);
    }

    #[test]
    fn each_topic_is_registered_once_beside_the_fabrics_own() {
        let registry = Registry::new(vec![app("a/1"), app("b/1")]).unwrap();
        let names: Vec<_> = registry.iter().map(|(_, s)| s.name).collect();
        assert_eq!(names, [FLEET, MESH, "a/1", "b/1"]);
        let hash = IdentTopic::new("b/1").hash();
        assert_eq!(registry.by_hash(&hash).map(|s| s.name), Some("b/1"));
        assert!(registry.by_name("c/1").is_none());
        assert!(registry.by_hash(&IdentTopic::new("c/1").hash()).is_none());
    }

    #[test]
    fn duplicates_and_the_fabrics_own_names_are_refused() {
        assert_eq!(
            Registry::new(vec![app("a/1"), app("a/1")]).unwrap_err(),
            RegistryError::Duplicate("a/1")
        );
        assert_eq!(
            Registry::new(vec![app(MESH)]).unwrap_err(),
            RegistryError::Duplicate(MESH)
        );
        assert_eq!(
            Registry::new(vec![app("")]).unwrap_err(),
            RegistryError::Empty
        );
        let many = (0..MAX_TOPICS).map(|_| app("x")).collect();
        assert_eq!(Registry::new(many).unwrap_err(), RegistryError::TooMany);
    }
}
