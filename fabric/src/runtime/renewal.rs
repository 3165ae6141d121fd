//! Certificates renewed while connections live. A node that renews hands
//! its new certificate to every connected peer; a peer checks it as a
//! handshake would (the fleet root, the time, the revocations) for the key
//! the connection was made with, and the link then lasts until the new
//! expiry instead of closing at the old one. A certificate learned from a
//! gossip envelope extends a link the same way, at the old expiry.

use libp2p::PeerId;
use osmoda_fabric_proto::FleetCert;
use tracing::{debug, info};

use super::FabricLoop;
use crate::direct::{DirectRequest, DirectResponse};
use crate::membership::{node_key_of, peer_id_of, unix_now};

impl FabricLoop {
    /// Sends this node's certificate, just renewed, to every connected peer.
    pub(super) fn announce_certificate(&mut self) {
        let cert = self.credentials.cert();
        info!(
            expires_at = cert.expires_at,
            peers = self.connected.len(),
            "certificate renewed; telling the connected peers"
        );
        let bytes = cert.encode();
        // This node's own checkpoints and messages count under the new
        // certificate too, past the old one's expiry.
        if let Err(e) = self.membership.admit(&bytes, &cert, unix_now()) {
            debug!(error = %e, "this node's renewed certificate is not valid now");
        }
        let peers: Vec<PeerId> = self.connected.keys().copied().collect();
        for peer in peers {
            // Answers come back under ids nobody waits for, and are dropped.
            self.swarm
                .behaviour_mut()
                .direct
                .send_request(&peer, DirectRequest::Certificate(bytes.clone()));
        }
    }

    /// A peer's renewed certificate, sent on a live connection.
    pub(super) fn take_renewed(&mut self, peer: PeerId, bytes: &[u8]) -> DirectResponse {
        let refused = |reason: String| DirectResponse::Refused { reason };
        let cert = match FleetCert::decode(bytes) {
            Ok(cert) => cert,
            Err(e) => return refused(format!("the certificate does not parse: {e}")),
        };
        if peer_id_of(&cert.node) != Some(peer) {
            return refused("the certificate is another node's".into());
        }
        let Some(mut record) = self.membership.peer(&peer) else {
            return refused("no verified connection from this node".into());
        };
        if cert.expires_at <= record.cert.expires_at {
            return DirectResponse::Ack;
        }
        if let Err(e) = self.membership.admit(bytes, &cert, unix_now()) {
            debug!(%peer, error = %e, "refused a renewed certificate");
            return refused(format!("not a member under it: {e}"));
        }
        record.cert = cert;
        self.extend_link(peer, record);
        DirectResponse::Ack
    }

    /// The later certificate `Membership` verified for a connected peer
    /// whose link is at its expiry, if there is one: the link lives on.
    pub(super) fn renewed_in_time(&mut self, peer: PeerId, now: u64) -> bool {
        let Some(node) = node_key_of(&peer) else {
            return false;
        };
        let Some(cert) = self.membership.known(&node) else {
            return false;
        };
        if cert.expires_at <= now || self.membership.check_member(&node, now).is_err() {
            return false;
        }
        let Some(mut record) = self.membership.peer(&peer) else {
            return false;
        };
        record.cert = cert;
        self.extend_link(peer, record);
        true
    }

    fn extend_link(&mut self, peer: PeerId, record: crate::PeerRecord) {
        let expires_at = record.cert.expires_at;
        self.membership.record_peer(peer, record);
        if let Some(link) = self.connected.get_mut(&peer) {
            link.expires_at = expires_at;
        }
        self.watch_expiry(expires_at);
    }
}
