//! The fabric loop: one task owns the libp2p swarm; commands, swarm events
//! and timers are its only inputs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::timeout::TransportTimeout;
use libp2p::core::transport::Transport as _;
use libp2p::core::upgrade::Version;
use libp2p::swarm::SwarmEvent;
use libp2p::{
    gossipsub, identify, kad, mdns, ping, request_response, tcp, yamux, Multiaddr, PeerId, Swarm,
};
use osmoda_fabric_proto::Revocation;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::behaviour::{BehaviourError, FabricBehaviour, FabricBehaviourEvent};
use crate::direct::{AppProtocol, DirectRequest, DirectResponse, MAX_REVOCATIONS_PER_SYNC};
use crate::handle::{
    Command, FabricConfig, FabricError, FabricEvent, FabricHandle, FabricStatus, Inbox, KnownPeer,
    PeerInfo, COMMAND_CAPACITY, EVENT_CAPACITY,
};
use crate::membership::{peer_id_of, Membership, Security};
use crate::pq_tcp::PqUpgrade;

mod direct;
mod discovery;
mod expiry;
mod gossip;
mod links;
mod origin;
mod penalty;
mod renewal;
mod replay;

use crate::topics::{self, FleetMessage, Registry};
use crate::LiveCredentials;
use penalty::PenaltyBox;
use replay::Replay;

pub(crate) use gossip::{message_id as gossip_message_id, MAX_TRANSMIT as MAX_GOSSIP_TRANSMIT};

/// How often the loop retries bootstrap addresses while it has no peer.
const BOOTSTRAP_RETRY: Duration = Duration::from_secs(5);
/// How often Kademlia refreshes its view of the fleet.
const KAD_REFRESH: Duration = Duration::from_secs(30);
/// Least time between two Kademlia bootstraps started by identify.
const KAD_BOOTSTRAP_GAP: Duration = Duration::from_secs(10);
/// How often the loop gives up on verdicts that did not come in time: a
/// message is ignored 2 to 2.5 s after it arrived, before gossipsub
/// forgets it (`topics::VALIDATION_TIMEOUT`).
const VERDICT_SWEEP: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Behaviour(#[from] BehaviourError),
    #[error("transport setup: {0}")]
    Transport(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
    #[error("gossip topics: {0}")]
    Topics(#[from] topics::RegistryError),
    #[error("direct protocols: {0}")]
    Protocols(#[from] crate::direct::ProtocolsError),
}

/// An error with its sources, for errors (like libp2p's `TransportError`)
/// whose own message leaves the cause to `source()`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        // Many errors already print their source; do not repeat it.
        if !out.contains(&part) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&part);
        }
        source = s.source();
    }
    out
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Builds the swarm, starts listening and spawns the loop.
pub fn start(
    credentials: impl Into<LiveCredentials>,
    membership: Arc<Membership>,
    config: FabricConfig,
) -> Result<(FabricHandle, mpsc::Receiver<FabricEvent>, JoinHandle<()>), StartError> {
    let credentials: LiveCredentials = credentials.into();
    let keypair = credentials.current().keypair().clone();
    // This node is a member too: its own checkpoints and messages count.
    let own = credentials.cert();
    if let Err(e) = membership.admit(&own.encode(), &own, crate::membership::unix_now()) {
        warn!(error = %e, "this node's own certificate is not valid now");
    }
    let topics = Registry::new(config.topics.clone())?;
    crate::direct::check_protocols(&config.protocols)?;
    let mut tcp_security = PqUpgrade::live(credentials.clone(), membership.clone());
    if let Some(enroller) = config.enroller.clone() {
        tcp_security = tcp_security.with_enroller(enroller);
    }
    let handshake_timeout = config.handshake_timeout;
    // An inbound connection holds a pending slot until its handshake ends;
    // an idle stranger's must not hold it for a dial's whole allowance.
    let inbound_timeout = config
        .limits
        .inbound_handshake_timeout
        .min(handshake_timeout);
    let custom = config
        .stream_transport
        .as_ref()
        .and_then(|slot| slot.take());
    let behaviour = FabricBehaviour::new(
        &keypair,
        config.mdns && custom.is_none(),
        &config.limits,
        &topics,
    )?;
    let idle = config.idle_timeout;
    let mut swarm = match custom {
        Some(streams) => libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_other_transport(|_| {
                TransportTimeout::with_ingoing_timeout(
                    streams
                        .upgrade(Version::V1)
                        .authenticate(tcp_security)
                        .multiplex(yamux::Config::default())
                        .timeout(handshake_timeout),
                    inbound_timeout,
                )
            })
            .map_err(|e| StartError::Transport(e.to_string()))?
            .with_behaviour(|_| behaviour)
            .map_err(|e| StartError::Transport(e.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build(),
        None => {
            let quic = crate::quic::QuicTransport::new(
                credentials.clone(),
                membership.clone(),
                crate::quic::QuicConfig {
                    handshake_timeout,
                    ..Default::default()
                },
            )
            .map_err(|e| StartError::Transport(e.to_string()))?;
            libp2p::SwarmBuilder::with_existing_identity(keypair)
                .with_tokio()
                .with_other_transport(|_| {
                    TransportTimeout::with_ingoing_timeout(
                        tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                            .upgrade(Version::V1)
                            .authenticate(tcp_security)
                            .multiplex(yamux::Config::default())
                            .timeout(handshake_timeout),
                        inbound_timeout,
                    )
                })
                .map_err(|e| StartError::Transport(e.to_string()))?
                .with_other_transport(|_| {
                    TransportTimeout::with_ingoing_timeout(
                        quic.map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer))),
                        inbound_timeout,
                    )
                })
                .map_err(|e| StartError::Transport(e.to_string()))?
                .with_behaviour(|_| behaviour)
                .map_err(|e| StartError::Transport(e.to_string()))?
                .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
                .build()
        }
    };

    for (_, spec) in topics.iter() {
        // Subscribing only fails for topics over the size limit, never for these.
        let _ = swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&gossipsub::IdentTopic::new(spec.name()));
    }
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| StartError::Listen {
                addr: addr.clone(),
                reason: error_chain(&e),
            })?;
    }
    for addr in &config.bootstrap {
        swarm.behaviour_mut().early_refusal.know(addr);
        if let Err(e) = swarm.dial(addr.clone()) {
            warn!(%addr, error = %e, "bootstrap dial failed");
        }
    }
    let mut known_peers = config.known_peers;
    known_peers.truncate(config.dial_target);
    for known in &known_peers {
        for addr in &known.addrs {
            swarm
                .behaviour_mut()
                .kad
                .add_address(&known.peer, addr.clone());
            swarm.behaviour_mut().early_refusal.know(addr);
        }
        discovery::dial_known(&mut swarm, &membership, known);
    }

    let (commands, command_rx) = mpsc::channel(COMMAND_CAPACITY);
    let (events, event_rx) = mpsc::channel(EVENT_CAPACITY);
    let inbox = Arc::new(Mutex::new(Inbox::new(config.inbox_capacity)));
    let local_peer_id = *swarm.local_peer_id();
    let handle = FabricHandle {
        commands,
        inbox: inbox.clone(),
        membership: membership.clone(),
        local_peer_id,
    };
    let fabric = FabricLoop {
        swarm,
        membership,
        inbox,
        events,
        events_dropped: 0,
        awaiting: HashMap::new(),
        gossip_dropped: 0,
        gossip_expired: 0,
        topic_counts: Default::default(),
        bootstrap: config.bootstrap,
        known_peers,
        listen_addrs: Vec::new(),
        connected: HashMap::new(),
        link_budget: links::budget(config.limits.max_established),
        rtt: HashMap::new(),
        pending_requests: HashMap::new(),
        pending_inbound: HashMap::new(),
        next_inbound: 0,
        penalties: PenaltyBox::default(),
        topics,
        protocols: config.protocols,
        renewals: credentials.watch_renewals(),
        credentials,
        replay: Replay::default(),
        // Distinct across restarts without stored state, like gossipsub's own.
        gossip_seqno: std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
        last_kad_bootstrap: None,
        dial_target: config.dial_target,
        expiry_timer: expiry::idle_timer(),
    };
    let task = tokio::spawn(fabric.run(command_rx));
    Ok((handle, event_rx, task))
}

struct FabricLoop {
    swarm: Swarm<FabricBehaviour>,
    membership: Arc<Membership>,
    inbox: Arc<Mutex<Inbox>>,
    events: mpsc::Sender<FabricEvent>,
    events_dropped: u64,
    /// Gossip messages handed to the application, waiting for its verdict:
    /// the peer each came from, and when. At most `topics::MAX_AWAITING`.
    awaiting: HashMap<gossipsub::MessageId, (PeerId, std::time::Instant)>,
    gossip_dropped: u64,
    gossip_expired: u64,
    /// Keyed by registered topics only (`gossip.rs`), so peers cannot add
    /// keys.
    topic_counts: std::collections::BTreeMap<&'static str, gossip::Counts>,
    bootstrap: Vec<Multiaddr>,
    /// Peers met before, dialed with the bootstrap addresses.
    known_peers: Vec<KnownPeer>,
    /// Addresses the listeners are bound to, with unspecified IPs expanded.
    listen_addrs: Vec<Multiaddr>,
    /// One entry per connected peer.
    connected: HashMap<PeerId, links::Link>,
    /// Links kept once trimmed (`links.rs`).
    link_budget: usize,
    rtt: HashMap<PeerId, Duration>,
    /// Our requests waiting for an answer; bounded by the request timeout.
    pending_requests: HashMap<
        request_response::OutboundRequestId,
        tokio::sync::oneshot::Sender<Result<DirectResponse, FabricError>>,
    >,
    /// Peers' requests handed to the node, waiting for its answer.
    pending_inbound: HashMap<u64, request_response::ResponseChannel<DirectResponse>>,
    next_inbound: u64,
    penalties: PenaltyBox,
    /// Every topic this node speaks, and who validates its messages.
    topics: Registry,
    /// The application's protocols inside the direct protocol.
    protocols: Vec<AppProtocol>,
    /// The key that signs the envelope of every message this node
    /// publishes, and the certificate each envelope carries (so that
    /// members who never met this node can tell it is one); renewal
    /// replaces the certificate while the loop runs.
    credentials: LiveCredentials,
    /// Wakes after a renewal, to hand the new certificate to every peer.
    renewals: tokio::sync::watch::Receiver<u64>,
    /// Each gossip origin's sequence window.
    replay: Replay,
    gossip_seqno: u64,
    last_kad_bootstrap: Option<std::time::Instant>,
    dial_target: usize,
    /// Fires when the first connected peer's certificate expires.
    expiry_timer: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl FabricLoop {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut bootstrap_timer = tokio::time::interval(BOOTSTRAP_RETRY);
        let mut kad_timer = tokio::time::interval(KAD_REFRESH);
        let mut trim_timer = tokio::time::interval(links::TRIM_EVERY);
        let mut verdict_timer = tokio::time::interval(VERDICT_SWEEP);
        let mut membership_timer = tokio::time::interval(expiry::CHECK_EVERY);
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(command) => self.on_command(command),
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                _ = bootstrap_timer.tick() => {
                    if self.connected.is_empty() {
                        for addr in self.bootstrap.clone() {
                            let _ = self.swarm.dial(addr);
                        }
                        for known in &self.known_peers {
                            discovery::dial_known(&mut self.swarm, &self.membership, known);
                        }
                    }
                }
                _ = trim_timer.tick() => self.trim_links(std::time::Instant::now()),
                _ = verdict_timer.tick() => self.expire_verdicts(),
                _ = membership_timer.tick() => self.close_expired(),
                Ok(()) = self.renewals.changed() => self.announce_certificate(),
                _ = self.expiry_timer.as_mut() => self.close_expired(),
                _ = kad_timer.tick() => {
                    if !self.connected.is_empty() && self.wants_peers() {
                        let _ = self.swarm.behaviour_mut().kad.bootstrap();
                    }
                    for peer in self.penalties.expired(std::time::Instant::now()) {
                        self.swarm.behaviour_mut().gossipsub.remove_blacklisted_peer(&peer);
                    }
                }
            }
        }
        let peers: Vec<PeerId> = self.connected.keys().copied().collect();
        for peer in peers {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        info!("fabric stopped");
    }

    fn emit(&mut self, event: FabricEvent) {
        if self.events.try_send(event).is_err() {
            self.events_dropped += 1;
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Status(reply) => {
                let _ = reply.send(FabricStatus {
                    node_id: self.swarm.local_peer_id().to_string(),
                    listen: self.listen_addrs.iter().map(|a| a.to_string()).collect(),
                    connected_peers: self.connected.len(),
                    revocations: self.membership.revocations().len(),
                    events_dropped: self.events_dropped,
                    gossip_awaiting: self.awaiting.len(),
                    gossip_dropped: self.gossip_dropped,
                    gossip_expired: self.gossip_expired,
                    topics: self.topic_counts(),
                });
            }
            Command::Peers(reply) => {
                let _ = reply.send(self.peer_infos());
            }
            Command::Broadcast { text, reply } => {
                let _ = reply.send(self.broadcast(text));
            }
            Command::Request {
                peer,
                request,
                reply,
            } => self.send_request(peer, request, reply),
            Command::Respond { id, response } => self.respond(id, response),
            Command::Report { ticket, verdict } => self.apply_verdict(ticket, verdict),
            Command::Publish { topic, data, reply } => {
                let _ = reply.send(self.publish(topic, data));
            }
            Command::Revoke { revocation, reply } => {
                let result = self.apply_revocation(&revocation, true, None);
                let _ = reply.send(result);
            }
            Command::Dial { addr, reply } => {
                let _ = reply.send(
                    self.swarm
                        .dial(addr)
                        .map_err(|e| FabricError::Dial(e.to_string())),
                );
            }
            Command::Penalize { peer, reason } => self.penalize(peer, &reason),
            Command::Shutdown => {}
        }
    }

    /// Disconnects a peer and keeps it out for a while (`penalty.rs`).
    fn penalize(&mut self, peer: PeerId, reason: &str) {
        warn!(%peer, %reason, "peer misbehaved; disconnected and kept out for a while");
        self.penalties.penalize(peer, std::time::Instant::now());
        self.swarm.behaviour_mut().gossipsub.blacklist_peer(&peer);
        let _ = self.swarm.disconnect_peer_id(peer);
    }

    fn peer_infos(&self) -> Vec<PeerInfo> {
        let mut out: Vec<PeerInfo> = self
            .connected
            .iter()
            .filter_map(|(peer, links::Link { addr, .. })| {
                let record = self.membership.peer(peer)?;
                let security = Security::of_address(addr);
                Some(PeerInfo {
                    node_id: peer.to_string(),
                    name: record.cert.name.clone(),
                    role: record.cert.role.to_string(),
                    address: addr.to_string(),
                    transport: security.transport().to_string(),
                    key_exchange: security.key_exchange().to_string(),
                    rtt_ms: self.rtt.get(peer).map(|d| d.as_secs_f64() * 1000.0),
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Verifies and records a revocation; if it is new, cuts the node off,
    /// tells the node, and (when `announce`) gossips it.
    fn apply_revocation(
        &mut self,
        rev: &Revocation,
        announce: bool,
        from: Option<PeerId>,
    ) -> Result<bool, FabricError> {
        let new = self.membership.apply_revocation(rev)?;
        if !new {
            return Ok(false);
        }
        if let Some(peer) = peer_id_of(&rev.node) {
            if peer == *self.swarm.local_peer_id() {
                warn!("this node's own membership has been revoked; the fleet will refuse it");
            } else {
                info!(%peer, "revoked; closing its connections");
                let _ = self.swarm.disconnect_peer_id(peer);
                self.membership.forget_peer(&peer);
            }
        }
        // An admin's revocation ends the members it issued too: close their
        // connections now rather than at the next periodic check.
        self.close_expired();
        self.emit(FabricEvent::Revoked {
            revocation: rev.clone(),
            from,
        });
        if announce {
            let msg = FleetMessage::Revocation {
                revocation: osmoda_fabric_proto::hex(&rev.encode()),
            };
            if let Ok(data) = serde_json::to_vec(&msg) {
                // With no peer yet, anti-entropy carries it on the next connection.
                let _ = self.publish(topics::FLEET, data);
            }
        }
        Ok(true)
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<FabricBehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                self.listen_addrs.push(address);
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.retain(|a| a != &address);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                if self
                    .penalties
                    .is_penalized(&peer_id, std::time::Instant::now())
                {
                    debug!(%peer_id, "penalized peer; closing");
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                let record = match self.membership.peer(&peer_id) {
                    Some(record) if !self.membership.chain_revoked(&record.cert) => record,
                    _ => {
                        // Every transport records the peer in its handshake; a
                        // connection without a record did not pass one.
                        warn!(%peer_id, "connection without a verified membership; closing");
                        let _ = self.swarm.disconnect_peer_id(peer_id);
                        return;
                    }
                };
                let expires_at = record.cert.expires_at;
                let addr = endpoint.get_remote_address().clone();
                self.connected
                    .entry(peer_id)
                    .and_modify(|link| {
                        link.addr = addr.clone();
                        link.expires_at = expires_at;
                    })
                    .or_insert_with(|| links::Link {
                        addr,
                        since: std::time::Instant::now(),
                        expires_at,
                    });
                self.watch_expiry(expires_at);
                if num_established.get() == 1 {
                    info!(%peer_id, addr = %endpoint.get_remote_address(), "peer connected");
                    self.sync_revocations(peer_id);
                    self.emit(FabricEvent::PeerConnected(peer_id));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.connected.remove(&peer_id);
                self.rtt.remove(&peer_id);
                info!(%peer_id, "peer disconnected");
                self.emit(FabricEvent::PeerDisconnected(peer_id));
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                debug!(%send_back_addr, %error, "incoming connection refused");
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                debug!(?peer_id, %error, "outgoing connection failed");
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn sync_revocations(&mut self, peer: PeerId) {
        let revocations: Vec<Revocation> = self
            .membership
            .revocations()
            .into_iter()
            .take(MAX_REVOCATIONS_PER_SYNC)
            .collect();
        if !revocations.is_empty() {
            self.swarm
                .behaviour_mut()
                .direct
                .send_request(&peer, DirectRequest::Revocations(revocations));
        }
    }

    fn on_behaviour_event(&mut self, event: FabricBehaviourEvent) {
        match event {
            FabricBehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => {
                if let Some(acceptance) = self.on_gossip(&message_id, propagation_source, message) {
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .gossipsub
                        .report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            acceptance,
                        );
                }
            }
            FabricBehaviourEvent::Mdns(mdns::Event::Discovered(found)) => self.on_mdns(found),
            FabricBehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                self.on_identify(peer_id, info)
            }
            FabricBehaviourEvent::Kad(kad::Event::RoutingUpdated {
                peer, addresses, ..
            }) => {
                self.dial_discovered(peer, addresses.into_vec());
            }
            FabricBehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            }) if self.connected.contains_key(&peer) => {
                self.rtt.insert(peer, rtt);
            }
            FabricBehaviourEvent::Ping(ping::Event {
                peer,
                connection,
                result: Err(error),
            }) => {
                // A link that stopped answering pings is dead; closing it
                // lets discovery and bootstrap find the peer again.
                debug!(%peer, %error, "ping failed; closing the connection");
                self.swarm.close_connection(connection);
            }
            FabricBehaviourEvent::Direct(event) => self.on_direct(event),
            _ => {}
        }
    }
}
