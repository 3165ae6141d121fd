//! Who belongs to the fleet, as the local node knows it: the fleet id, the
//! revocations it has verified, the verified identity of every peer it
//! is connected to, and the certificates of the members it has heard of
//! (in handshakes and gossip envelopes). Shared between the transports
//! (which consult it inside each handshake), the swarm loop (which updates
//! it) and the node (which admits audit checkpoints only from members).

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
/// Most member certificates remembered at once: as many nodes as the audit
/// heads keep. Only certificates the fleet root signed get in, so the bound
/// is reached only by a fleet that large, never by an attacker.
pub const MAX_MEMBERS: usize = 100_000;

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
    /// Certificates verified against the fleet root, by node.
    members: RwLock<HashMap<NodeKey, FleetCert>>,
    /// Kept here because both transports and the loop share this.
    handshakes: crate::stats::HandshakeStats,
}

impl Membership {
    pub fn new(fleet: FleetKey) -> Arc<Self> {
        Arc::new(Self {
            fleet,
            revoked: RwLock::new(HashMap::new()),
            peers: Mutex::new(HashMap::new()),
            revocations_changed: watch::Sender::new(0),
            members: RwLock::new(HashMap::new()),
            handshakes: Default::default(),
        })
    }

    /// Handshakes accepted and refused since start.
    pub fn handshakes(&self) -> &crate::stats::HandshakeStats {
        &self.handshakes
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

    /// When the first key of `cert`'s chain (the node's own, or the
    /// issuing admin's) was revoked, if any was.
    pub fn chain_revoked_at(&self, cert: &FleetCert) -> Option<u64> {
        let revoked = self.revoked.read().unwrap_or_else(PoisonError::into_inner);
        cert.chain_keys()
            .filter_map(|k| revoked.get(&k).map(|r| r.revoked_at))
            .min()
    }

    /// Whether any key of `cert`'s chain is revoked: the node's own, or the
    /// admin's that issued it. Revoking an admin ends the membership of
    /// every node it issued a certificate to.
    pub fn chain_revoked(&self, cert: &FleetCert) -> bool {
        let revoked = self.revoked.read().unwrap_or_else(PoisonError::into_inner);
        cert.chain_keys().any(|k| revoked.contains_key(&k))
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

    /// Checks a certificate carried by a message (a gossip envelope) and
    /// remembers it. One seen before byte for byte is not verified again:
    /// the same few certificates arrive with every message.
    pub fn admit(&self, cert_bytes: &[u8], cert: &FleetCert, now: u64) -> Result<(), MemberError> {
        let known = self
            .members
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&cert.node)
            .is_some_and(|c| c.encode() == cert_bytes);
        if !known {
            cert.verify(&self.fleet, now)?;
            self.remember(cert.clone(), now);
        }
        self.check_member(&cert.node, now)
    }

    /// Remembers a certificate that was verified against the fleet root.
    /// Of two for one node, the one that expires later stays.
    fn remember(&self, cert: FleetCert, now: u64) {
        let mut members = self.members.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = members.get(&cert.node) {
            if held.expires_at >= cert.expires_at {
                return;
            }
        }
        if members.len() >= MAX_MEMBERS && !members.contains_key(&cert.node) {
            members.retain(|_, c| c.expires_at > now);
            if members.len() >= MAX_MEMBERS {
                // Still full of valid members: forget one; it is learned
                // again from its next message or handshake.
                if let Some(k) = members.keys().next().copied() {
                    members.remove(&k);
                }
            }
        }
        members.insert(cert.node, cert);
    }

    /// The certificate verified for `node` that expires last, if any.
    pub fn known(&self, node: &NodeKey) -> Option<FleetCert> {
        self.members
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(node)
            .cloned()
    }

    /// Whether `node` is a member now: a certificate verified against the
    /// fleet root is known for it, valid at `now` (Unix seconds), and
    /// neither the node nor the admin that issued it is revoked.
    pub fn is_member(&self, node: &NodeKey, now: u64) -> bool {
        self.check_member(node, now).is_ok()
    }

    /// Like [`Self::is_member`], saying why not.
    pub fn check_member(&self, node: &NodeKey, now: u64) -> Result<(), MemberError> {
        if self.is_revoked(node) {
            return Err(MemberError::Revoked);
        }
        let members = self.members.read().unwrap_or_else(PoisonError::into_inner);
        let cert = members.get(node).ok_or(MemberError::Unknown)?;
        if self.chain_revoked(cert) {
            return Err(MemberError::Revoked);
        }
        if now >= cert.expires_at {
            return Err(MemberError::Certificate(CertError::Expired {
                expires_at: cert.expires_at,
                now,
            }));
        }
        Ok(())
    }

    /// Records a peer verified by a handshake. Called by the transports,
    /// which verified its certificate, so it is also a known member.
    pub fn record_peer(&self, peer: PeerId, record: PeerRecord) {
        self.handshakes.accepted(record.security);
        self.remember(record.cert.clone(), unix_now());
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

/// Current Unix time in seconds (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Why a node is not (or no longer) a member.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemberError {
    #[error("no certificate known for this node")]
    Unknown,
    #[error("certificate refused: {0}")]
    Certificate(#[from] CertError),
    #[error("revoked")]
    Revoked,
}

impl MemberError {
    /// Whether a relay in good faith could have passed this on: it may not
    /// have the revocation yet, or its clock may disagree with ours about
    /// a validity window. Anything else (no certificate, or one the fleet
    /// root did not sign) no honest member forwards.
    pub fn is_excusable(&self) -> bool {
        matches!(
            self,
            MemberError::Revoked
                | MemberError::Certificate(CertError::Expired { .. })
                | MemberError::Certificate(CertError::NotYetValid { .. })
        )
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

    /// A gossip origin whose certificate an admin issued is a member until
    /// that admin is revoked (audit heads and envelopes ask this).
    #[test]
    fn a_member_an_admin_issued_is_one_until_the_admin_is_revoked() {
        use osmoda_fabric_proto::{FleetRoot, Role};
        let root = FleetRoot::from_secret([1; 32]);
        let admin_key = ed25519_dalek::SigningKey::from_bytes(&[2; 32]);
        let admin = root
            .issue(
                admin_key.verifying_key().to_bytes(),
                "a",
                Role::Admin,
                0,
                1000,
            )
            .unwrap();
        let cert = FleetCert::delegate(&admin, &admin_key, [7; 32], "m", 0, 1000).unwrap();
        let membership = Membership::new(root.public());
        membership.admit(&cert.encode(), &cert, 10).unwrap();
        assert!(membership.is_member(&[7; 32], 10));
        membership
            .apply_revocation(&root.revoke(admin.node, 20))
            .unwrap();
        assert_eq!(
            membership.check_member(&[7; 32], 30),
            Err(MemberError::Revoked)
        );
        assert!(membership.chain_revoked(&cert));
    }

    #[test]
    fn peer_ids_and_node_keys_round_trip() {
        let kp = ed25519::Keypair::generate();
        let node = kp.public().to_bytes();
        let peer = peer_id_of(&node).unwrap();
        assert_eq!(peer, PublicKey::from(kp.public()).to_peer_id());
        assert_eq!(node_key_of(&peer), Some(node));
    }
}
