//! The libp2p behaviours a node runs, and their configuration.

use std::time::Duration;

use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    connection_limits, gossipsub, identify, identity, kad, mdns, ping, request_response,
    StreamProtocol,
};
use serde::{Deserialize, Serialize};

use crate::topics::{MeshText, Registry};

/// Kademlia on a private protocol: only fleet members speak it, and the
/// public IPFS DHT never mixes with ours.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/osmoda/kad/1.0.0");
/// Reported inside identify messages (identify itself runs on `/ipfs/id/1.0.0`).
pub const IDENTIFY_PROTOCOL_VERSION: &str = "osmoda/1";
pub const DIRECT_PROTOCOL: StreamProtocol = StreamProtocol::new("/osmoda/direct/1.0.0");
/// Largest direct request or response. Document sync rounds are the
/// largest: up to 256 shard messages of at most [`MAX_SHARD_MESSAGE`].
pub const MAX_DIRECT_MESSAGE: u64 = 16 * 1024 * 1024;
/// Largest sync message for one shard in one round (before base64).
pub const MAX_SHARD_MESSAGE: usize = 32 * 1024;
/// Revocations carried by one anti-entropy request.
pub const MAX_REVOCATIONS_PER_SYNC: usize = 4096;

/// Request of the direct (one peer to one peer) protocol.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DirectRequest {
    /// `osmoda mesh send`.
    Text(MeshText),
    /// Sent on every new connection so that revocations reach nodes that
    /// were away when they were gossiped. Hex-encoded binary revocations.
    Revocations { revocations: Vec<String> },
    /// Entries `start..start+count` of `node`'s audit log (hex of its
    /// identity key), answered by that node itself.
    AuditRange {
        node: String,
        start: u64,
        count: u32,
    },
    /// One round of Automerge sync of the knowledge shards, answered by the
    /// node with its own round.
    DocSync {
        messages: Vec<ShardMessage>,
        /// The first round of a new sync: the responder starts a new
        /// session too (sync states must begin together, or the responder
        /// would skip changes it believes the requester already has).
        #[serde(default)]
        start: bool,
    },
    /// Pairwise anti-entropy (docs/protocol.md §9): a notice of news, an
    /// offer to compare, or a push of audit heads.
    AntiEntropy(AntiEntropy),
}

/// One message of an anti-entropy exchange. A *notice* carries only
/// `summary_digest` (the sender's state changed; a receiver that differs
/// pulls). An *offer* carries the summary and `heads_digest`; the answer is
/// an offer too, with the heads when the digests differ. A *push* carries
/// heads the other side lacks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AntiEntropy {
    /// The sender's state summary, base64; empty in a notice.
    #[serde(default)]
    pub summary: String,
    /// BLAKE3 of the summary, first 16 bytes, hex.
    #[serde(default)]
    pub summary_digest: String,
    /// Digest of the audit heads the sender holds, hex; empty when the
    /// sender does not compare heads.
    #[serde(default)]
    pub heads_digest: String,
    /// Audit heads, base64 chunks.
    #[serde(default)]
    pub heads: Vec<String>,
}

/// Most audit-heads chunks one anti-entropy message may carry (60 KiB each).
pub const MAX_HEADS_CHUNKS: usize = 64;

/// A sync message for one knowledge shard; `data` is base64.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardMessage {
    pub shard: u16,
    pub data: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DirectResponse {
    Ack,
    Refused {
        reason: String,
    },
    /// The owner's latest signed checkpoint and the stored records
    /// (`chain || entry`), hex-encoded.
    AuditRange {
        checkpoint: String,
        records: Vec<String>,
    },
    DocSync {
        messages: Vec<ShardMessage>,
    },
    AntiEntropy(AntiEntropy),
}

/// Most audit records one request may ask for; keeps responses under the
/// 1 MiB message limit (records are at most 8 KiB, hex doubles them).
pub const MAX_AUDIT_RECORDS_PER_REQUEST: u32 = 48;

/// Limits on connections: a misbehaving or very large fleet cannot make a
/// node hold unbounded connection state.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_established: u32,
    pub max_pending_incoming: u32,
    pub max_per_peer: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_established: 512,
            max_pending_incoming: 64,
            max_per_peer: 2,
        }
    }
}

#[derive(NetworkBehaviour)]
pub struct FabricBehaviour {
    pub early_refusal: crate::early_refusal::Behaviour,
    pub limits: connection_limits::Behaviour,
    pub gossipsub: gossipsub::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    pub direct: request_response::json::Behaviour<DirectRequest, DirectResponse>,
}

#[derive(Debug, thiserror::Error)]
pub enum BehaviourError {
    #[error("gossipsub configuration: {0}")]
    Gossipsub(String),
    #[error("mDNS: {0}")]
    Mdns(#[from] std::io::Error),
}

/// Gossipsub's heartbeat.
pub(crate) const HEARTBEAT: Duration = Duration::from_millis(700);
/// Heartbeats a message stays in gossipsub's cache (its default); an
/// unvalidated one cannot be forwarded after that (`topics::VALIDATION_TIMEOUT`).
pub(crate) const HISTORY_LENGTH: usize = 5;

fn gossipsub(topics: &Registry) -> Result<gossipsub::Behaviour, BehaviourError> {
    let config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(HEARTBEAT)
        .history_length(HISTORY_LENGTH)
        // The fabric signs its own envelope and checks it once per message
        // (runtime/gossip.rs); gossipsub's signatures would be checked on
        // every duplicate copy, before deduplication.
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .message_id_fn(crate::runtime::gossip_message_id)
        // Messages are forwarded only after the fabric, or the application
        // for its topics, checked them.
        .validate_messages()
        .max_transmit_size(crate::runtime::MAX_GOSSIP_TRANSMIT)
        // Bound what one slow peer can make us buffer (the default is 5000).
        .connection_handler_queue_len(1024)
        .publish_queue_duration(Duration::from_secs(5))
        .forward_queue_duration(Duration::from_secs(1))
        .max_ihave_messages_heartbeat(10)
        .build()
        .map_err(|e| BehaviourError::Gossipsub(e.to_string()))?;
    let mut behaviour =
        gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, config)
            .map_err(|e| BehaviourError::Gossipsub(e.to_string()))?;
    behaviour
        .with_peer_score(peer_score_params(topics), peer_score_thresholds())
        .map_err(|e| BehaviourError::Gossipsub(e.to_string()))?;
    Ok(behaviour)
}

/// Scoring after the gossipsub v1.1 recommendations, scaled for small fleets:
/// invalid messages and broken promises cost; IP colocation is not penalised
/// because several nodes on one host is a normal osmoda setup. Each
/// registered topic brings its own weights.
fn peer_score_params(topics: &Registry) -> gossipsub::PeerScoreParams {
    let mut params = gossipsub::PeerScoreParams {
        ip_colocation_factor_weight: 0.0,
        behaviour_penalty_weight: -10.0,
        behaviour_penalty_decay: 0.9,
        ..Default::default()
    };
    for (hash, spec) in topics.iter() {
        let topic_params = gossipsub::TopicScoreParams {
            topic_weight: spec.score.topic_weight,
            invalid_message_deliveries_weight: spec.score.invalid_message_weight,
            invalid_message_deliveries_decay: spec.score.invalid_message_decay,
            // Small fleets may be quiet for hours: no delivery quotas.
            mesh_message_deliveries_weight: 0.0,
            mesh_failure_penalty_weight: 0.0,
            ..Default::default()
        };
        params.topics.insert(hash.clone(), topic_params);
    }
    params
}

fn peer_score_thresholds() -> gossipsub::PeerScoreThresholds {
    gossipsub::PeerScoreThresholds {
        gossip_threshold: -100.0,
        publish_threshold: -500.0,
        graylist_threshold: -1000.0,
        accept_px_threshold: 10.0,
        opportunistic_graft_threshold: 3.0,
    }
}

impl FabricBehaviour {
    pub(crate) fn new(
        keypair: &identity::Keypair,
        mdns_enabled: bool,
        limits: &Limits,
        topics: &Registry,
    ) -> Result<Self, BehaviourError> {
        let peer_id = keypair.public().to_peer_id();
        let mut kad_config = kad::Config::new(KAD_PROTOCOL);
        kad_config.set_query_timeout(Duration::from_secs(30));
        // The fabric loop bootstraps when it has peers; the built-in timer
        // would only warn on a node that is still alone.
        kad_config.set_periodic_bootstrap_interval(None);
        let mut kad =
            kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_config);
        kad.set_mode(Some(kad::Mode::Server));
        let mdns = if mdns_enabled {
            Some(mdns::tokio::Behaviour::new(
                mdns::Config {
                    query_interval: Duration::from_secs(5),
                    ..Default::default()
                },
                peer_id,
            )?)
        } else {
            None
        };
        let codec = request_response::json::codec::Codec::default()
            .set_request_size_maximum(MAX_DIRECT_MESSAGE)
            .set_response_size_maximum(MAX_DIRECT_MESSAGE);
        Ok(Self {
            early_refusal: crate::early_refusal::Behaviour::new(limits.max_established),
            limits: connection_limits::Behaviour::new(
                connection_limits::ConnectionLimits::default()
                    .with_max_established(Some(limits.max_established))
                    .with_max_pending_incoming(Some(limits.max_pending_incoming))
                    .with_max_established_per_peer(Some(limits.max_per_peer)),
            ),
            gossipsub: gossipsub(topics)?,
            kad,
            identify: identify::Behaviour::new(
                identify::Config::new(IDENTIFY_PROTOCOL_VERSION.into(), keypair.public())
                    .with_agent_version(format!("osmoda/{}", env!("CARGO_PKG_VERSION"))),
            ),
            ping: ping::Behaviour::new(
                ping::Config::new()
                    .with_interval(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(10)),
            ),
            mdns: mdns.into(),
            direct: request_response::Behaviour::with_codec(
                codec,
                [(DIRECT_PROTOCOL, request_response::ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(10))
                    .with_max_concurrent_streams(64),
            ),
        })
    }
}
