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

use std::collections::HashSet;
use std::convert::Infallible;
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::swarm::{
    behaviour::ConnectionEstablished, dummy, ConnectionClosed, ConnectionDenied, ConnectionId,
    FromSwarm, NetworkBehaviour, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

#[derive(Debug, thiserror::Error)]
#[error("this node holds its limit of {0} connections")]
struct Full(usize);

pub struct Behaviour {
    max: usize,
    established: HashSet<ConnectionId>,
}

impl Behaviour {
    pub fn new(max_established: u32) -> Self {
        Self {
            max: max_established as usize,
            established: HashSet::new(),
        }
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
        _: ConnectionId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.check()
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
            FromSwarm::ConnectionEstablished(ConnectionEstablished { connection_id, .. }) => {
                self.established.insert(connection_id);
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
