//! The libp2p behaviours a node runs, and their configuration.

use std::time::Duration;

use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    connection_limits, gossipsub, identify, identity, kad, mdns, ping, request_response,
    StreamProtocol,
};

use crate::direct::{DirectCodec, DIRECT_PROTOCOL};
use crate::topics::Registry;

/// Kademlia on a private protocol: only fleet members speak it, and the
/// public IPFS DHT never mixes with ours.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/osmoda/kad/1.0.0");
/// Reported inside identify messages (identify itself runs on `/ipfs/id/1.0.0`).
pub const IDENTIFY_PROTOCOL_VERSION: &str = "osmoda/1";
/// Limits on connections: a misbehaving or very large fleet, or a stranger
/// flooding the ports, cannot make a node hold unbounded connection state
/// nor keep members out.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_established: u32,
    /// Inbound connections in their handshake at once, from anyone.
    pub max_pending_incoming: u32,
    /// Inbound connections in their handshake at once from one IP address:
    /// one stranger cannot take the whole pool.
    pub max_pending_per_ip: u32,
    /// Pending slots (out of `max_pending_incoming`) that only addresses
    /// members connected from or listen on may take: strangers from many
    /// addresses cannot take the whole pool either.
    pub pending_reserved_for_known: u32,
    pub max_per_peer: u32,
    /// How long an inbound connection may take from accept to a secured,
    /// multiplexed link, at most (`FabricConfig::handshake_timeout` bounds
    /// it too). Shorter than a dial's: an idle stranger's connection
    /// holds a pending slot until then.
    pub inbound_handshake_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_established: 512,
            max_pending_incoming: 64,
            max_pending_per_ip: 8,
            pending_reserved_for_known: 16,
            max_per_peer: 2,
            inbound_handshake_timeout: Duration::from_secs(5),
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
    pub direct: request_response::Behaviour<DirectCodec>,
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
        Ok(Self {
            // Counts pending inbound connections itself (per address, and
            // with slots kept for members), so `connection_limits` does not.
            early_refusal: crate::early_refusal::Behaviour::new(limits),
            limits: connection_limits::Behaviour::new(
                connection_limits::ConnectionLimits::default()
                    .with_max_established(Some(limits.max_established))
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
                DirectCodec,
                [(DIRECT_PROTOCOL, request_response::ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(10))
                    .with_max_concurrent_streams(64),
            ),
        })
    }
}
