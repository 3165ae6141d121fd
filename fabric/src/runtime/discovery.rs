//! Discovery inside the fabric loop: what mDNS, identify and Kademlia
//! find is dialed while the node has fewer peers than its dial target;
//! peers the node remembered are dialed at their old addresses; what
//! identify says a peer listens on is passed to the application, which
//! keeps it for the next start.

use std::collections::HashMap;

use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{identify, Multiaddr, PeerId, Swarm};
use tracing::debug;

use super::{FabricLoop, KAD_BOOTSTRAP_GAP};
use crate::behaviour::FabricBehaviour;
use crate::handle::{FabricEvent, KnownPeer, MAX_IDENTIFIED_ADDRS};
use crate::membership::{node_key_of, Membership};

/// Dials a peer met before at the addresses it listened on, unless it has
/// been revoked since; the handshake checks that whoever answers there is
/// that peer.
pub(super) fn dial_known(
    swarm: &mut Swarm<FabricBehaviour>,
    membership: &Membership,
    known: &KnownPeer,
) {
    if node_key_of(&known.peer).is_none_or(|n| membership.is_revoked(&n)) {
        return;
    }
    let opts = DialOpts::peer_id(known.peer)
        .addresses(known.addrs.clone())
        .condition(PeerCondition::DisconnectedAndNotDialing)
        .build();
    if let Err(e) = swarm.dial(opts) {
        debug!(peer = %known.peer, error = %e, "dial of a known peer not started");
    }
}

impl FabricLoop {
    /// Whether discovery should look for more peers. A Kademlia query
    /// connects to the peers it asks; in a fleet of a hundred, queries made
    /// while a node already had its peers opened two connections a second
    /// per node, each a full handshake, and each new one triggered another
    /// query.
    pub(super) fn wants_peers(&self) -> bool {
        self.connected.len() < self.dial_target
    }

    pub(super) fn dial_discovered(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        if peer == *self.swarm.local_peer_id()
            || self.connected.contains_key(&peer)
            || !self.wants_peers()
            || node_key_of(&peer).is_some_and(|n| self.membership.is_revoked(&n))
            || self
                .penalties
                .is_penalized(&peer, std::time::Instant::now())
        {
            return;
        }
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            debug!(%peer, error = %e, "dial of discovered peer not started");
        }
    }

    pub(super) fn on_mdns(&mut self, found: Vec<(PeerId, Multiaddr)>) {
        let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
        for (peer, addr) in found {
            self.swarm
                .behaviour_mut()
                .kad
                .add_address(&peer, addr.clone());
            by_peer.entry(peer).or_default().push(addr);
        }
        for (peer, addrs) in by_peer {
            self.dial_discovered(peer, addrs);
        }
    }

    pub(super) fn on_identify(&mut self, peer_id: PeerId, info: identify::Info) {
        let listen_addrs: Vec<Multiaddr> = info
            .listen_addrs
            .into_iter()
            .take(MAX_IDENTIFIED_ADDRS)
            .collect();
        for addr in &listen_addrs {
            self.swarm
                .behaviour_mut()
                .kad
                .add_address(&peer_id, addr.clone());
        }
        if self.connected.contains_key(&peer_id) {
            // A member's other addresses get the pending slots kept for
            // the fleet when it connects from them later.
            for addr in &listen_addrs {
                self.swarm.behaviour_mut().early_refusal.know(addr);
            }
            self.emit(FabricEvent::PeerIdentified {
                peer: peer_id,
                listen_addrs,
            });
        }
        // A bootstrap walks every bucket; one per identify (one per
        // new connection) was most of a fleet's CPU while it formed.
        let now = std::time::Instant::now();
        if self.wants_peers()
            && self
                .last_kad_bootstrap
                .is_none_or(|t| now.duration_since(t) >= KAD_BOOTSTRAP_GAP)
        {
            self.last_kad_bootstrap = Some(now);
            let _ = self.swarm.behaviour_mut().kad.bootstrap();
        }
    }
}
