//! Who belongs to the fleet, as the local node knows it: the fleet id, the
//! revocations it has verified, and the verified identity of every peer it
//! is connected to. Shared between the transports (which consult it inside
//! each handshake) and the swarm loop (which updates it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use libp2p::identity::{ed25519, PublicKey};
use libp2p::PeerId;
use osmoda_fabric_proto::{CertError, FleetCert, FleetKey, NodeKey, Revocation};
use tokio::sync::watch;

/// Most revocations kept; a fleet that revokes more must be recreated. The
/// bound exists because revocations arrive from the network.
pub const MAX_REVOCATIONS: usize = 100_000;
/// Most verified peers remembered at once.
pub const MAX_PEER_RECORDS: usize = 10_000;

/// The libp2p peer id of a node identity key.
pub fn peer_id_of(node: &NodeKey) -> Option<PeerId> {
    let key = ed25519::PublicKey::try_from_bytes(node).ok()?;
    Some(PublicKey::from(key).to_peer_id())
}

/// The node identity key inside a peer id, for the Ed25519 ids osmoda uses.
pub fn node_key_of(peer: &PeerId) -> Option<NodeKey> {
    let multihash = peer.as_ref();
    if multihash.code() != 0 {
        return None; // only identity multihashes carry the key itself
    }
    let key = PublicKey::try_decode_protobuf(multihash.digest()).ok()?;
    Some(key.try_into_ed25519().ok()?.to_bytes())
}

/// How a connection was secured, as shown by `osmoda peers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Security {
    /// TCP with `Noise_XXhfs_25519+MLKEM768_AESGCM_SHA256`.
    NoiseHybrid,
    /// QUIC with TLS 1.3 and the X25519MLKEM768 group.
    TlsHybrid,
}

impl Security {
    /// How a connection with this remote address was secured: QUIC runs
    /// TLS, everything else runs the Noise upgrade. A peer may hold one
    /// connection of each kind, so this is per connection, not per peer.
    pub fn of_address(addr: &libp2p::Multiaddr) -> Self {
        if addr
            .iter()
            .any(|p| matches!(p, libp2p::multiaddr::Protocol::QuicV1))
        {
            Security::TlsHybrid
        } else {
            Security::NoiseHybrid
        }
    }

    pub fn transport(self) -> &'static str {
        match self {
            Security::NoiseHybrid => "tcp",
            Security::TlsHybrid => "quic",
        }
    }

    pub fn key_exchange(self) -> &'static str {
        match self {
            Security::NoiseHybrid => "X25519+ML-KEM-768 (Noise XXhfs)",
            Security::TlsHybrid => "X25519MLKEM768 (TLS 1.3)",
        }
    }
}

/// A peer whose certificate was verified in a handshake.
#[derive(Debug, Clone)]
pub struct PeerRecord {
    pub cert: FleetCert,
    pub security: Security,
}

/// Thread-safe view of the fleet's membership.
pub struct Membership {
    fleet: FleetKey,
    revoked: RwLock<HashMap<NodeKey, Revocation>>,
    peers: Mutex<HashMap<PeerId, PeerRecord>>,
    /// The number of revocations, sent on every new one. Whoever stores
    /// them waits on it: a watch keeps only the latest value, so it is
    /// bounded and never loses the fact that something changed, where the
    /// fabric's event channel drops events while it is full.
    revocations_changed: watch::Sender<usize>,
}

impl Membership {
    pub fn new(fleet: FleetKey) -> Arc<Self> {
        Arc::new(Self {
            fleet,
            revoked: RwLock::new(HashMap::new()),
            peers: Mutex::new(HashMap::new()),
            revocations_changed: watch::Sender::new(0),
        })
    }

    /// Wakes on every revocation recorded after this call (however many
    /// came in between, one wake-up: read them all with
    /// [`Membership::revocations`]). For persisting them.
    pub fn watch_revocations(&self) -> watch::Receiver<usize> {
        self.revocations_changed.subscribe()
    }

    pub fn fleet(&self) -> FleetKey {
        self.fleet
    }

    pub fn is_revoked(&self, node: &NodeKey) -> bool {
        self.revoked
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(node)
    }

    /// Every revocation known, for persistence and anti-entropy.
    pub fn revocations(&self) -> Vec<Revocation> {
        self.revoked
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Checks a revocation's signature and records it. Returns whether it was new.
    pub fn apply_revocation(&self, rev: &Revocation) -> Result<bool, RevocationError> {
        rev.verify(&self.fleet)?;
        let mut revoked = self.revoked.write().unwrap_or_else(PoisonError::into_inner);
        if revoked.contains_key(&rev.node) {
            return Ok(false);
        }
        if revoked.len() >= MAX_REVOCATIONS {
            return Err(RevocationError::Full);
        }
        revoked.insert(rev.node, rev.clone());
        let count = revoked.len();
        drop(revoked);
        self.revocations_changed.send_replace(count);
        Ok(true)
    }

    /// Records a peer verified by a handshake. Called by the transports.
    pub fn record_peer(&self, peer: PeerId, record: PeerRecord) {
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        if peers.len() >= MAX_PEER_RECORDS && !peers.contains_key(&peer) {
            // Forget an arbitrary entry: records are refreshed on every handshake.
            if let Some(k) = peers.keys().next().copied() {
                peers.remove(&k);
            }
        }
        peers.insert(peer, record);
    }

    pub fn peer(&self, peer: &PeerId) -> Option<PeerRecord> {
        self.peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(peer)
            .cloned()
    }

    pub fn forget_peer(&self, peer: &PeerId) {
        self.peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(peer);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    #[error("revocation refused: {0}")]
    Invalid(#[from] CertError),
    #[error("the revocation list is full ({MAX_REVOCATIONS} entries)")]
    Full,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_ids_and_node_keys_round_trip() {
        let kp = ed25519::Keypair::generate();
        let node = kp.public().to_bytes();
        let peer = peer_id_of(&node).unwrap();
        assert_eq!(peer, PublicKey::from(kp.public()).to_peer_id());
        assert_eq!(node_key_of(&peer), Some(node));
    }
}
