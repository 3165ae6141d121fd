//! The fabric's public face: configuration, the handle the node holds, and
//! the plain data it answers with.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use osmoda_fabric_proto::Revocation;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::behaviour::Limits;
use crate::direct::{AppProtocol, DirectRequest, DirectResponse};
use crate::membership::Membership;
use crate::topics::{Ticket, TopicSpec, Verdict};

/// Commands waiting for the fabric loop.
pub const COMMAND_CAPACITY: usize = 256;
/// Events waiting for the node; when full, new events are dropped and counted.
pub const EVENT_CAPACITY: usize = 1024;
/// Listen addresses taken from one identify message.
pub const MAX_IDENTIFIED_ADDRS: usize = 16;

#[derive(Debug, Clone)]
pub struct FabricConfig {
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    pub mdns: bool,
    pub limits: Limits,
    /// Connections with no open stream are closed after this long.
    pub idle_timeout: Duration,
    /// Messages kept in the inbox; the oldest go first.
    pub inbox_capacity: usize,
    /// How long a connection may take from first byte to a secured, multiplexed link.
    pub handshake_timeout: Duration,
    /// The application's gossip topics, each with its validator: a
    /// message is forwarded only once the application accepted it, and one
    /// it rejects costs its sender gossip score. The fabric adds its own
    /// topics.
    pub topics: Vec<TopicSpec>,
    /// The application's protocols inside the direct protocol, each once:
    /// peers' requests for them come as [`FabricEvent::Request`], requests
    /// for any other are refused.
    pub protocols: Vec<AppProtocol>,
    /// A byte-stream transport to use instead of TCP and QUIC (the
    /// simulation's network). The fabric secures it with the same hybrid
    /// handshake and yamux as TCP; mDNS is off with it.
    pub stream_transport: Option<StreamTransportSlot>,
    /// Peers the node dials on its own from discovery; beyond this it only
    /// accepts (and dials for requests). Gossip needs only a handful.
    pub dial_target: usize,
    /// Peers met before and where they listened (the application remembers
    /// them from [`FabricEvent::PeerIdentified`]). The first `dial_target`
    /// are dialed at start, and again with the bootstrap addresses while
    /// the node has no peer: a node that restarts on new addresses finds
    /// the fleet without a bootstrap address, and the fleet learns its new
    /// address from it.
    pub known_peers: Vec<KnownPeer>,
    /// Takes enrollments on the TCP listener (`enroll::ENROLL_PROTOCOL`)
    /// when set and this node's certificate may issue: an admin node.
    pub enroller: Option<Arc<dyn crate::enroll::Enroller>>,
}

/// A peer met before, and the addresses it listened on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownPeer {
    pub peer: PeerId,
    pub addrs: Vec<Multiaddr>,
}

/// A byte stream a custom transport yields.
pub trait RawStream: futures::AsyncRead + futures::AsyncWrite + Send + Unpin + 'static {}
impl<T: futures::AsyncRead + futures::AsyncWrite + Send + Unpin + 'static> RawStream for T {}

/// A transport of raw byte streams, boxed.
pub type StreamTransport = libp2p::core::transport::Boxed<Box<dyn RawStream>>;

/// Holds a custom transport until the fabric takes it at start.
#[derive(Clone)]
pub struct StreamTransportSlot(pub Arc<Mutex<Option<StreamTransport>>>);

impl StreamTransportSlot {
    pub fn new(transport: StreamTransport) -> Self {
        Self(Arc::new(Mutex::new(Some(transport))))
    }

    pub(crate) fn take(&self) -> Option<StreamTransport> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

impl std::fmt::Debug for StreamTransportSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamTransportSlot")
    }
}

impl Default for FabricConfig {
    fn default() -> Self {
        Self {
            listen: vec![
                "/ip4/0.0.0.0/tcp/0"
                    .parse()
                    .unwrap_or_else(|_| unreachable!()),
                "/ip4/0.0.0.0/udp/0/quic-v1"
                    .parse()
                    .unwrap_or_else(|_| unreachable!()),
            ],
            bootstrap: Vec::new(),
            mdns: true,
            limits: Limits::default(),
            idle_timeout: Duration::from_secs(3600),
            inbox_capacity: 1000,
            handshake_timeout: Duration::from_secs(10),
            topics: Vec::new(),
            protocols: Vec::new(),
            stream_transport: None,
            dial_target: 64,
            known_peers: Vec::new(),
            enroller: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FabricError {
    #[error("the fabric has stopped")]
    Stopped,
    #[error("no connected peer subscribes to the topic yet; the message was not sent")]
    NoPeers,
    #[error("message of {0} bytes is too large")]
    TooLarge(usize),
    #[error("peer {0} is not connected")]
    NotConnected(PeerId),
    #[error("the peer did not take the message: {0}")]
    Delivery(String),
    #[error("publish failed: {0}")]
    Publish(String),
    #[error("no topic {0} is registered")]
    UnknownTopic(String),
    #[error("no direct protocol {0} is registered")]
    UnknownProtocol(u16),
    #[error("revocation refused: {0}")]
    Revocation(#[from] crate::membership::RevocationError),
    #[error("dial failed: {0}")]
    Dial(String),
}

/// One connected peer, as `osmoda peers` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerInfo {
    pub node_id: String,
    pub name: String,
    pub role: String,
    pub address: String,
    pub transport: String,
    pub key_exchange: String,
    pub rtt_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FabricStatus {
    pub node_id: String,
    pub listen: Vec<String>,
    pub connected_peers: usize,
    pub revocations: usize,
    pub events_dropped: u64,
    /// Gossip messages waiting for the application's verdict now.
    #[serde(default)]
    pub gossip_awaiting: usize,
    /// Gossip messages ignored because their topic's queue, or the
    /// fabric's count of messages awaiting a verdict, was full.
    #[serde(default)]
    pub gossip_dropped: u64,
    /// Gossip messages ignored because their verdict did not come in time.
    #[serde(default)]
    pub gossip_expired: u64,
    /// Gossip counts since start, one per registered topic.
    #[serde(default)]
    pub topics: Vec<TopicCounts>,
}

/// One registered topic's gossip since start.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TopicCounts {
    pub topic: String,
    /// Messages published by this node.
    pub published: u64,
    /// Messages that arrived (after gossipsub dropped duplicates).
    pub received: u64,
    /// Arrivals the fabric did not take: they failed the origin checks,
    /// a fabric topic's check, or found the verdict queue full (the
    /// application's own verdicts are its to count).
    pub dropped: u64,
}

/// A message that arrived for the operator (`osmoda mesh inbox`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboxEntry {
    /// `broadcast` or `direct`.
    pub kind: String,
    pub from: String,
    pub from_name: Option<String>,
    pub text: String,
    pub sent_at_ms: u64,
    pub received_at_ms: u64,
}

/// Bounded store of received messages.
pub struct Inbox {
    entries: VecDeque<InboxEntry>,
    capacity: usize,
    received: u64,
}

impl Inbox {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            capacity: capacity.max(1),
            received: 0,
        }
    }

    pub fn push(&mut self, entry: InboxEntry) {
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
        self.received += 1;
    }

    pub fn entries(&self) -> Vec<InboxEntry> {
        self.entries.iter().cloned().collect()
    }

    /// Messages received since start, including those pushed out.
    pub fn received(&self) -> u64 {
        self.received
    }
}

/// What the fabric reports to the node.
#[derive(Debug, Clone)]
pub enum FabricEvent {
    /// A new, verified revocation; the node persists it. `from` is the peer
    /// it came from, or `None` when it was applied through the handle.
    Revoked {
        revocation: Revocation,
        from: Option<PeerId>,
    },
    PeerConnected(PeerId),
    PeerDisconnected(PeerId),
    /// What a connected peer's identify message said it listens on (at
    /// most [`MAX_IDENTIFIED_ADDRS`] addresses).
    PeerIdentified {
        peer: PeerId,
        listen_addrs: Vec<Multiaddr>,
    },
    /// A peer's request on one of the application's protocols, its body
    /// as it came; answer it with [`FabricHandle::respond`] and this `id`.
    Request {
        id: u64,
        peer: PeerId,
        protocol: u16,
        body: Vec<u8>,
    },
}

pub(crate) enum Command {
    Status(oneshot::Sender<FabricStatus>),
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    Broadcast {
        text: String,
        reply: oneshot::Sender<Result<(), FabricError>>,
    },
    Request {
        peer: PeerId,
        request: DirectRequest,
        reply: oneshot::Sender<Result<DirectResponse, FabricError>>,
    },
    Respond {
        id: u64,
        response: DirectResponse,
    },
    Report {
        ticket: Ticket,
        verdict: Verdict,
    },
    Publish {
        topic: &'static str,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), FabricError>>,
    },
    Revoke {
        revocation: Revocation,
        reply: oneshot::Sender<Result<bool, FabricError>>,
    },
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<(), FabricError>>,
    },
    Penalize {
        peer: PeerId,
        reason: String,
    },
    Shutdown,
}

/// Cheap to clone; every method talks to the fabric loop.
#[derive(Clone)]
pub struct FabricHandle {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) inbox: Arc<Mutex<Inbox>>,
    pub(crate) membership: Arc<Membership>,
    pub(crate) local_peer_id: PeerId,
}

impl FabricHandle {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, FabricError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| FabricError::Stopped)?;
        rx.await.map_err(|_| FabricError::Stopped)
    }

    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    pub fn membership(&self) -> &Arc<Membership> {
        &self.membership
    }

    pub async fn status(&self) -> Result<FabricStatus, FabricError> {
        self.ask(Command::Status).await
    }

    pub async fn peers(&self) -> Result<Vec<PeerInfo>, FabricError> {
        self.ask(Command::Peers).await
    }

    pub async fn broadcast(&self, text: String) -> Result<(), FabricError> {
        self.ask(|reply| Command::Broadcast { text, reply }).await?
    }

    /// Sends a text to one connected member and waits for its acknowledgement.
    pub async fn send(&self, peer: PeerId, text: String) -> Result<(), FabricError> {
        if text.len() > crate::topics::MAX_TEXT_LEN {
            return Err(FabricError::TooLarge(text.len()));
        }
        let request = DirectRequest::Text(crate::topics::MeshText {
            text,
            sent_at_ms: crate::runtime::now_ms(),
        });
        match self.request(peer, request).await? {
            DirectResponse::Ack => Ok(()),
            DirectResponse::Refused { reason } => Err(FabricError::Delivery(reason)),
            other => Err(FabricError::Delivery(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    /// Sends a direct request to a connected peer and waits for the answer;
    /// an application request must be on a registered protocol.
    pub async fn request(
        &self,
        peer: PeerId,
        request: DirectRequest,
    ) -> Result<DirectResponse, FabricError> {
        self.ask(|reply| Command::Request {
            peer,
            request,
            reply,
        })
        .await?
    }

    /// Answers a [`FabricEvent::Request`].
    pub async fn respond(&self, id: u64, response: DirectResponse) {
        let _ = self.commands.send(Command::Respond { id, response }).await;
    }

    /// The verdict on a message of an application topic: gossipsub
    /// forwards it only when it is `Accept`. A verdict that comes after
    /// [`crate::topics::VALIDATION_TIMEOUT`] is dropped.
    pub async fn report(&self, ticket: Ticket, verdict: Verdict) {
        let _ = self
            .commands
            .send(Command::Report { ticket, verdict })
            .await;
    }

    /// Publishes raw bytes on a registered topic.
    pub async fn publish(&self, topic: &'static str, data: Vec<u8>) -> Result<(), FabricError> {
        self.ask(|reply| Command::Publish { topic, data, reply })
            .await?
    }

    /// Applies a revocation, cuts the node off and spreads the word.
    /// Returns whether the revocation was new.
    pub async fn revoke(&self, revocation: Revocation) -> Result<bool, FabricError> {
        self.ask(|reply| Command::Revoke { revocation, reply })
            .await?
    }

    pub async fn dial(&self, addr: Multiaddr) -> Result<(), FabricError> {
        self.ask(|reply| Command::Dial { addr, reply }).await?
    }

    /// Disconnects a peer that misbehaved and keeps it out for a while
    /// (five minutes); gossip from it is ignored meanwhile.
    pub async fn penalize(&self, peer: PeerId, reason: impl Into<String>) {
        let reason = reason.into();
        let _ = self.commands.send(Command::Penalize { peer, reason }).await;
    }

    pub fn inbox(&self) -> Vec<InboxEntry> {
        self.inbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entries()
    }

    /// Asks the loop to stop; it closes every connection before it returns.
    pub async fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown).await;
    }
}
