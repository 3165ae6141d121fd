//! Networking shell of osmoda.
//!
//! Wraps the sans-IO core (`osmoda-fabric-proto`) for libp2p and tokio: the
//! hybrid post-quantum security upgrade for TCP, a QUIC transport restricted
//! to X25519MLKEM768, membership checks inside every handshake, discovery
//! (mDNS, bootstrap, Kademlia), gossip and direct messages.

// Outside bytes, files and answers are errors, never panics; tests may
// unwrap what they made themselves.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod credentials;
mod early_refusal;
pub mod enroll;
pub mod membership;
mod pending;
pub mod quic;

pub use credentials::{Credentials, LiveCredentials, RenewalError};
pub use membership::{
    node_key_of, peer_id_of, unix_now, MemberError, Membership, PeerRecord, Security,
};
pub use osmoda_fabric_proto as proto;
pub mod behaviour;
pub mod direct;
pub mod handle;
pub mod pq_tcp;
pub mod runtime;
pub mod stats;
pub mod topics;

pub use direct::{AppProtocol, DirectRequest, DirectResponse};
pub use handle::{
    FabricConfig, FabricError, FabricEvent, FabricHandle, FabricStatus, InboxEntry, KnownPeer,
    PeerInfo, RawStream, StreamTransport, StreamTransportSlot, TopicCounts,
};
pub use runtime::{start, StartError};
pub use topics::{GossipMessage, Ticket, TopicScore, TopicSpec, Validator, Verdict};
