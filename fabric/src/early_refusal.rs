//! Refusing connections before the handshake while the node is full.
//!
//! `connection_limits` counts established connections only once they are
//! established, so a full node still pays a whole hybrid handshake (and so
//! does the dialer) before it refuses. In a simulated idle fleet of a
//! hundred whose Kademlia queries kept landing on full nodes, that was
//! about 18,000 refused handshakes in 45 s. This behaviour refuses inbound and outbound
//! connections at the pending stage when the node already holds its limit;
//! `connection_limits` stays, for what only the established stage knows
//! (connections per peer, and the race of several pending at once).
//!
//! It also keeps the inbound connections still in their handshake in
//! check (`pending.rs`): per address, and with slots kept for addresses
//! members connected from.

use std::collections::HashSet;
use std::convert::Infallible;
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::swarm::{
    behaviour::ConnectionEstablished, dummy, ConnectionClosed, ConnectionDenied, ConnectionId,
    FromSwarm, ListenFailure, NetworkBehaviour, THandler, THandlerInEvent, THandlerOutEvent,
    ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

use crate::behaviour::Limits;
use crate::pending::{Pending, PendingLimits};

#[derive(Debug, thiserror::Error)]
#[error("this node holds its limit of {0} connections")]
struct Full(usize);

pub struct Behaviour {
    max: usize,
    established: HashSet<ConnectionId>,
    pending: Pending,
}

impl Behaviour {
    pub fn new(limits: &Limits) -> Self {
        Self {
            max: limits.max_established as usize,
            established: HashSet::new(),
            pending: Pending::new(PendingLimits {
                total: limits.max_pending_incoming as usize,
                per_ip: limits.max_pending_per_ip as usize,
                reserved_for_known: limits.pending_reserved_for_known as usize,
            }),
        }
    }

    /// Remembers an address a member listens on or connected from: its
    /// connections get the pending slots kept for the fleet.
    pub fn know(&mut self, addr: &Multiaddr) {
        self.pending.know(addr);
    }

    fn check(&self) -> Result<(), ConnectionDenied> {
        if self.established.len() >= self.max {
            return Err(ConnectionDenied::new(Full(self.max)));
        }
        Ok(())
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        _: &Multiaddr,
        from: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.check()?;
        self.pending.admit(id, from).map_err(ConnectionDenied::new)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: Option<PeerId>,
        _: &[Multiaddr],
        _: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.check().map(|()| Vec::new())
    }

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                connection_id,
                endpoint,
                ..
            }) => {
                self.established.insert(connection_id);
                self.pending.release(connection_id);
                // Only a verified member gets this far: both transports
                // check membership inside the handshake.
                self.pending.know(endpoint.get_remote_address());
            }
            FromSwarm::ListenFailure(ListenFailure { connection_id, .. }) => {
                self.pending.release(connection_id);
            }
            FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) => {
                self.established.remove(&connection_id);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}
