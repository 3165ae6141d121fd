//! The libp2p `Transport` over quinn, structured like `libp2p-quic` 0.14.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::stream::SelectAll;
use futures::{FutureExt, StreamExt};
use libp2p::core::multiaddr::Protocol;
use libp2p::core::transport::{DialOpts, ListenerId, PortUse, TransportError, TransportEvent};
use libp2p::core::{Endpoint, Transport};
use libp2p::{Multiaddr, PeerId};
use osmoda_fabric_proto::NodeKey;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::crypto::CryptoProvider;
use socket2::{Domain, Socket, Type};

use super::connecting::establish;
use super::listener::{wake, Listener, Upgrade};
use super::live::LiveTlsCert;
use super::{tls, QuicConfig, QuicError, QuicMuxer};
use crate::membership::node_key_of;
use crate::{LiveCredentials, Membership};

/// QUIC v1 (RFC 9000), the version `/quic-v1` addresses name.
const QUIC_V1: u32 = 1;

/// libp2p transport for `/ip4|ip6/…/udp/…/quic-v1` addresses whose
/// connections are secured with hybrid post-quantum TLS 1.3 and open to
/// fleet members only. See the [module documentation](super).
pub struct QuicTransport {
    membership: Arc<Membership>,
    provider: Arc<CryptoProvider>,
    local: Arc<LiveTlsCert>,
    server_config: quinn::ServerConfig,
    transport_config: Arc<quinn::TransportConfig>,
    handshake_timeout: Duration,
    listeners: SelectAll<Listener>,
    /// Endpoints for dialing when no listener fits, keyed by "is IPv6".
    dialers: HashMap<bool, quinn::Endpoint>,
    /// Woken when a listener is added or removed outside `poll`.
    waker: Option<Waker>,
}

impl QuicTransport {
    pub fn new(
        credentials: impl Into<LiveCredentials>,
        membership: Arc<Membership>,
        config: QuicConfig,
    ) -> Result<Self, QuicError> {
        let credentials: LiveCredentials = credentials.into();
        if credentials.cert().fleet != membership.fleet() {
            return Err(QuicError::Config(
                "the node's certificate was issued for another fleet",
            ));
        }
        let transport_config = Arc::new(config.transport()?);
        let provider = Arc::new(tls::crypto_provider());
        let local = LiveTlsCert::new(credentials, provider.clone())?;
        let tls = tls::server_config(provider.clone(), local.clone(), membership.clone())?;
        let mut server_config =
            quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
        server_config.transport_config(transport_config.clone());
        // The muxer does not report address changes, so peers may not migrate.
        server_config.migration(false);
        let transport = Self {
            membership,
            provider,
            local,
            server_config,
            transport_config,
            handshake_timeout: config.handshake_timeout,
            listeners: SelectAll::new(),
            dialers: HashMap::new(),
            waker: None,
        };
        // Surface client configuration errors here rather than on every dial.
        transport.client_config(None)?;
        Ok(transport)
    }

    /// A client configuration per dial, because the verifier must know which
    /// identity key the listener has to present.
    fn client_config(&self, expected: Option<NodeKey>) -> Result<quinn::ClientConfig, QuicError> {
        let tls = tls::client_config(
            self.provider.clone(),
            self.local.clone(),
            self.membership.clone(),
            expected,
        )?;
        let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
        config.transport_config(self.transport_config.clone());
        Ok(config)
    }

    /// The endpoint to dial `remote` from: with port reuse a listener's (so
    /// the peer sees our listening port) or a shared dialing endpoint.
    fn endpoint_for(
        &mut self,
        remote: SocketAddr,
        port_use: PortUse,
    ) -> Result<quinn::Endpoint, QuicError> {
        if port_use == PortUse::Reuse {
            if let Some(listener) = self.listeners.iter().find(|l| l.can_dial(&remote)) {
                return Ok(listener.endpoint.clone());
            }
            if let Some(endpoint) = self.dialers.get(&remote.is_ipv6()) {
                return Ok(endpoint.clone());
            }
        }
        let local: SocketAddr = if remote.is_ipv6() {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let endpoint = new_endpoint(local, None)?;
        if port_use == PortUse::Reuse {
            self.dialers.insert(remote.is_ipv6(), endpoint.clone());
        }
        Ok(endpoint)
    }
}

impl Transport for QuicTransport {
    type Output = (PeerId, QuicMuxer);
    type Error = QuicError;
    type ListenerUpgrade = Upgrade;
    type Dial = Upgrade;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        let (socket_addr, _) = multiaddr_to_socketaddr(&addr)
            .ok_or_else(|| TransportError::MultiaddrNotSupported(addr.clone()))?;
        let endpoint = new_endpoint(socket_addr, Some(self.server_config.clone()))
            .map_err(TransportError::Other)?;
        let listener = Listener::new(
            id,
            endpoint,
            self.handshake_timeout,
            self.membership.clone(),
        )
        .map_err(TransportError::Other)?;
        self.listeners.push(listener);
        // Dial from the listener from now on; the old dialing endpoint goes
        // away once its last connection ends.
        self.dialers.remove(&socket_addr.is_ipv6());
        wake(&mut self.waker);
        Ok(())
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        match self
            .listeners
            .iter_mut()
            .find(|l| l.id == id && !l.is_closed())
        {
            Some(listener) => {
                listener.close(Ok(()));
                wake(&mut self.waker);
                true
            }
            None => false,
        }
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        let (remote, peer) = multiaddr_to_socketaddr(&addr)
            .ok_or_else(|| TransportError::MultiaddrNotSupported(addr.clone()))?;
        if remote.port() == 0 || remote.ip().is_unspecified() {
            return Err(TransportError::MultiaddrNotSupported(addr));
        }
        if opts.role == Endpoint::Listener {
            return Err(TransportError::Other(QuicError::DialAsListener));
        }
        // osmoda peer ids embed the Ed25519 key; any other id cannot be a member.
        let expected = match peer {
            Some(peer) => Some(
                node_key_of(&peer).ok_or_else(|| TransportError::MultiaddrNotSupported(addr))?,
            ),
            None => None,
        };
        let client_config = self
            .client_config(expected)
            .map_err(TransportError::Other)?;
        let endpoint = self
            .endpoint_for(remote, opts.port_use)
            .map_err(TransportError::Other)?;
        let timeout = self.handshake_timeout;
        let membership = self.membership.clone();
        Ok(async move {
            let connecting = endpoint.connect_with(client_config, remote, tls::SERVER_NAME)?;
            establish(connecting, timeout, membership, peer).await
        }
        .boxed())
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        if let Poll::Ready(Some(event)) = self.listeners.poll_next_unpin(cx) {
            return Poll::Ready(event);
        }
        self.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// A quinn endpoint on a fresh UDP socket bound to `addr`.
fn new_endpoint(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> Result<quinn::Endpoint, QuicError> {
    // quinn spawns its driver on the current tokio runtime and would panic
    // without one.
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(QuicError::NoRuntime);
    }
    let socket = bind_udp(addr)?;
    let mut config = quinn::EndpointConfig::default();
    config.supported_versions(vec![QUIC_V1]);
    Ok(quinn::Endpoint::new(
        config,
        server,
        socket,
        Arc::new(quinn::TokioRuntime),
    )?)
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if addr.is_ipv6() {
        // Leave IPv4 to its own listener, possibly on the same port.
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// `/ip4|ip6/<ip>/udp/<port>/quic-v1[/p2p/<peer>]` to a socket address and
/// the optional peer id.
pub(crate) fn multiaddr_to_socketaddr(addr: &Multiaddr) -> Option<(SocketAddr, Option<PeerId>)> {
    let mut iter = addr.iter();
    let ip = match iter.next()? {
        Protocol::Ip4(ip) => ip.into(),
        Protocol::Ip6(ip) => ip.into(),
        _ => return None,
    };
    let Protocol::Udp(port) = iter.next()? else {
        return None;
    };
    let Protocol::QuicV1 = iter.next()? else {
        return None;
    };
    let peer = match iter.next() {
        None => None,
        Some(Protocol::P2p(peer)) => Some(peer),
        Some(_) => return None,
    };
    if iter.next().is_some() {
        return None;
    }
    Some((SocketAddr::new(ip, port), peer))
}

pub(crate) fn socketaddr_to_multiaddr(addr: &SocketAddr) -> Multiaddr {
    Multiaddr::empty()
        .with(addr.ip().into())
        .with(Protocol::Udp(addr.port()))
        .with(Protocol::QuicV1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quic_multiaddr_parsing() {
        let peer = PeerId::random();
        let cases: [(&str, Option<(&str, bool)>); 7] = [
            (
                "/ip4/127.0.0.1/udp/1234/quic-v1",
                Some(("127.0.0.1:1234", false)),
            ),
            ("/ip6/::1/udp/1234/quic-v1", Some(("[::1]:1234", false))),
            (
                &format!("/ip4/10.0.0.1/udp/9/quic-v1/p2p/{peer}"),
                Some(("10.0.0.1:9", true)),
            ),
            ("/ip4/127.0.0.1/udp/1234", None),
            ("/ip4/127.0.0.1/udp/1234/quic", None),
            ("/ip4/127.0.0.1/tcp/1234/quic-v1", None),
            ("/dns/example.com/udp/1234/quic-v1", None),
        ];
        for (text, expected) in cases {
            let parsed = multiaddr_to_socketaddr(&text.parse().unwrap());
            match expected {
                None => assert!(parsed.is_none(), "{text}"),
                Some((sock, has_peer)) => {
                    let (addr, p) = parsed.unwrap();
                    assert_eq!(addr, sock.parse().unwrap());
                    assert_eq!(p == Some(peer), has_peer);
                }
            }
        }
        let addr: SocketAddr = "127.0.0.1:4001".parse().unwrap();
        assert_eq!(
            multiaddr_to_socketaddr(&socketaddr_to_multiaddr(&addr)),
            Some((addr, None))
        );
    }
}
