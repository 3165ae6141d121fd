//! End-to-end tests of the QUIC transport on 127.0.0.1.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::future::poll_fn;
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::core::muxing::StreamMuxer;
use libp2p::core::transport::{DialOpts, ListenerId, PortUse, TransportEvent};
use libp2p::core::{Endpoint, Transport};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use osmoda_fabric_proto::{FleetRoot, NodeKey, Role};
use quinn::crypto::rustls::QuicClientConfig;
use rand::rngs::OsRng;

use super::cert::unix_now;
use super::transport::multiaddr_to_socketaddr;
use super::{tls, QuicConfig, QuicError, QuicMuxer, QuicTransport};
use crate::{Credentials, Membership, Security};

/// Bound on every test step, far above what loopback needs.
pub(super) const STEP: Duration = Duration::from_secs(10);

pub(super) struct Node {
    pub(super) transport: QuicTransport,
    pub(super) credentials: Credentials,
    pub(super) membership: Arc<Membership>,
}

impl Node {
    pub(super) fn peer_id(&self) -> PeerId {
        self.credentials.peer_id()
    }

    fn node_key(&self) -> NodeKey {
        self.credentials.cert().node
    }
}

fn credentials(root: &FleetRoot, issued_at: u64, expires_at: u64) -> Credentials {
    let secret = ed25519_dalek::SigningKey::generate(&mut OsRng).to_bytes();
    let node = ed25519_dalek::SigningKey::from_bytes(&secret)
        .verifying_key()
        .to_bytes();
    let cert = root
        .issue(node, "node", Role::Member, issued_at, expires_at)
        .unwrap();
    Credentials::new(&secret, cert).unwrap()
}

fn node_with(root: &FleetRoot, issued_at: u64, expires_at: u64) -> Node {
    let credentials = credentials(root, issued_at, expires_at);
    let membership = Membership::new(root.public());
    let config = QuicConfig {
        handshake_timeout: Duration::from_secs(5),
        ..QuicConfig::default()
    };
    let transport = QuicTransport::new(credentials.clone(), membership.clone(), config).unwrap();
    Node {
        transport,
        credentials,
        membership,
    }
}

pub(super) fn member(root: &FleetRoot) -> Node {
    let now = unix_now();
    node_with(root, now - 10, now + 3600)
}

fn dial_opts() -> DialOpts {
    DialOpts {
        role: Endpoint::Dialer,
        port_use: PortUse::Reuse,
    }
}

pub(super) async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(STEP, future)
        .await
        .expect("test step timed out")
}

async fn next_event<T: Transport + Unpin>(
    transport: &mut T,
) -> TransportEvent<T::ListenerUpgrade, T::Error> {
    poll_fn(|cx| Pin::new(&mut *transport).poll(cx)).await
}

async fn listen<T: Transport + Unpin>(transport: &mut T) -> Multiaddr {
    let addr = "/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap();
    transport.listen_on(ListenerId::next(), addr).unwrap();
    match within(next_event(transport)).await {
        TransportEvent::NewAddress { listen_addr, .. } => listen_addr,
        _ => panic!("expected the listen address first"),
    }
}

/// Waits for one inbound connection and runs its upgrade.
async fn accept<T: Transport + Unpin>(transport: &mut T) -> Result<T::Output, T::Error> {
    loop {
        if let TransportEvent::Incoming { upgrade, .. } = next_event(transport).await {
            return upgrade.await;
        }
    }
}

/// `dialer` dials `listener`; returns (listener's result, dialer's result).
async fn connect(
    listener: &mut QuicTransport,
    dialer: &mut QuicTransport,
    addr: Multiaddr,
) -> (
    Result<(PeerId, QuicMuxer), QuicError>,
    Result<(PeerId, QuicMuxer), QuicError>,
) {
    let dial = dialer.dial(addr, dial_opts()).unwrap();
    within(futures::future::join(accept(listener), dial)).await
}

fn assert_refused<T>(result: Result<T, QuicError>, reason: &str) {
    match result {
        Ok(_) => panic!("connection accepted; expected refusal for {reason:?}"),
        Err(error) => assert!(
            error.to_string().contains(reason),
            "expected {reason:?} in {error}"
        ),
    }
}

/// The dialer of a connection the listener refused. TLS 1.3 lets a client
/// finish its handshake before the server has checked the client's
/// certificate, so the dial may succeed; the connection must then be closed
/// by the listener's refusal right away.
async fn assert_refused_dialer(result: Result<(PeerId, QuicMuxer), QuicError>) {
    if let Ok((_, mut muxer)) = result {
        let end = within(poll_fn(|cx| Pin::new(&mut muxer).poll(cx))).await;
        assert!(end.is_err(), "the refused connection stayed up");
    }
}

#[tokio::test]
async fn quic_members_connect_and_exchange_bytes() {
    let root = FleetRoot::generate(&mut OsRng);
    let mut a = member(&root);
    let mut b = member(&root);
    let addr = listen(&mut a.transport).await;
    let (socket, _) = multiaddr_to_socketaddr(&addr).unwrap();
    assert_ne!(socket.port(), 0, "the real port is reported");

    let dial_addr = addr.with(Protocol::P2p(a.peer_id()));
    let (accepted, dialed) = connect(&mut a.transport, &mut b.transport, dial_addr).await;
    let (seen_by_a, mut muxer_a) = accepted.unwrap();
    let (seen_by_b, mut muxer_b) = dialed.unwrap();
    assert_eq!(seen_by_a, b.peer_id());
    assert_eq!(seen_by_b, a.peer_id());
    let record = a.membership.peer(&b.peer_id()).unwrap();
    assert_eq!(record.security, Security::TlsHybrid);
    assert_eq!(&record.cert, b.credentials.cert());
    assert!(b.membership.peer(&a.peer_id()).is_some());

    within(async {
        let mut out = poll_fn(|cx| Pin::new(&mut muxer_b).poll_outbound(cx))
            .await
            .unwrap();
        // A QUIC stream reaches the peer with its first bytes.
        out.write_all(b"ping").await.unwrap();
        let mut inbound = poll_fn(|cx| Pin::new(&mut muxer_a).poll_inbound(cx))
            .await
            .unwrap();
        let mut buf = [0u8; 4];
        inbound.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        inbound.write_all(b"pong").await.unwrap();
        inbound.close().await.unwrap();
        inbound.close().await.unwrap(); // closing twice is harmless
        let mut reply = Vec::new();
        out.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, b"pong");
        out.close().await.unwrap();
        let mut rest = Vec::new();
        inbound.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        poll_fn(|cx| Pin::new(&mut muxer_b).poll_close(cx))
            .await
            .unwrap();
        // The other side learns that the connection is over.
        assert!(poll_fn(|cx| Pin::new(&mut muxer_a).poll(cx)).await.is_err());
    })
    .await;
}

#[tokio::test]
async fn quic_dialing_the_wrong_peer_id_fails() {
    let root = FleetRoot::generate(&mut OsRng);
    let mut a = member(&root);
    let mut b = member(&root);
    let c = member(&root);
    let addr = listen(&mut a.transport)
        .await
        .with(Protocol::P2p(c.peer_id()));
    let (_, dialed) = connect(&mut a.transport, &mut b.transport, addr).await;
    assert_refused(dialed, "not the node that was dialed");
    assert!(b.membership.peer(&a.peer_id()).is_none());
}

#[tokio::test]
async fn quic_peer_of_another_fleet_fails() {
    let root = FleetRoot::generate(&mut OsRng);
    let other_root = FleetRoot::generate(&mut OsRng);
    let mut a = member(&root);
    let mut stranger = member(&other_root);
    let addr = listen(&mut a.transport).await;
    let (accepted, dialed) = connect(&mut a.transport, &mut stranger.transport, addr).await;
    // The stranger refuses our certificate first, and we never admit it.
    assert_refused(dialed, "issued for another fleet");
    assert!(accepted.is_err());
    assert!(a.membership.peer(&stranger.peer_id()).is_none());
}

#[tokio::test]
async fn quic_expired_certificate_fails_both_ways() {
    let root = FleetRoot::generate(&mut OsRng);
    let now = unix_now();
    let mut a = member(&root);
    let mut expired = node_with(&root, now - 7200, now - 10);
    // Inbound: we refuse the expired dialer's client certificate.
    let addr = listen(&mut a.transport).await;
    let (accepted, dialed) = connect(&mut a.transport, &mut expired.transport, addr).await;
    assert_refused(accepted, "expired at");
    assert_refused_dialer(dialed).await;
    // Outbound: we refuse the expired listener's server certificate.
    let addr = listen(&mut expired.transport).await;
    let (accepted, dialed) = connect(&mut expired.transport, &mut a.transport, addr).await;
    assert_refused(dialed, "expired at");
    assert!(accepted.is_err());
    assert!(a.membership.peer(&expired.peer_id()).is_none());
}

#[tokio::test]
async fn quic_revoked_peer_fails_both_ways() {
    let root = FleetRoot::generate(&mut OsRng);
    let mut a = member(&root);
    let mut revoked = member(&root);
    a.membership
        .apply_revocation(&root.revoke(revoked.node_key(), unix_now()))
        .unwrap();
    // Inbound: we refuse the revoked dialer's client certificate.
    let addr = listen(&mut a.transport).await;
    let (accepted, dialed) = connect(&mut a.transport, &mut revoked.transport, addr).await;
    assert_refused(accepted, "revoked");
    assert_refused_dialer(dialed).await;
    // Outbound: we refuse the revoked listener's server certificate.
    let addr = listen(&mut revoked.transport).await;
    let (accepted, dialed) = connect(&mut revoked.transport, &mut a.transport, addr).await;
    assert_refused(dialed, "revoked");
    assert!(accepted.is_err());
    assert!(a.membership.peer(&revoked.peer_id()).is_none());
}

#[tokio::test]
async fn quic_stock_libp2p_peer_fails_both_ways() {
    let root = FleetRoot::generate(&mut OsRng);
    let mut ours = member(&root);
    let keypair = libp2p::identity::Keypair::generate_ed25519();
    let mut stock = libp2p::quic::tokio::Transport::new(libp2p::quic::Config::new(&keypair));

    let addr = listen(&mut ours.transport).await;
    let dial = stock.dial(addr, dial_opts()).unwrap();
    let (accepted, dialed) = within(futures::future::join(accept(&mut ours.transport), dial)).await;
    assert!(accepted.is_err(), "we admitted a stock libp2p peer");
    assert!(dialed.is_err(), "a stock libp2p peer accepted us");

    let addr = listen(&mut stock).await;
    let dial = ours.transport.dial(addr, dial_opts()).unwrap();
    let (accepted, dialed) = within(futures::future::join(accept(&mut stock), dial)).await;
    assert!(accepted.is_err(), "a stock libp2p listener admitted us");
    assert!(dialed.is_err(), "we accepted a stock libp2p listener");
    assert!(ours
        .membership
        .peer(&keypair.public().to_peer_id())
        .is_none());
}

#[tokio::test]
async fn quic_classical_only_client_cannot_handshake() {
    let root = FleetRoot::generate(&mut OsRng);
    let mut ours = member(&root);
    let addr = listen(&mut ours.transport).await;
    let (server, _) = multiaddr_to_socketaddr(&addr).unwrap();

    // A fleet member in every respect except that it offers only X25519.
    let client_creds = credentials(&root, unix_now() - 10, unix_now() + 3600);
    let local =
        super::live::LiveTlsCert::new(client_creds.into(), Arc::new(tls::crypto_provider()))
            .unwrap();
    let mut classical = rustls::crypto::ring::default_provider();
    classical.kx_groups = vec![rustls::crypto::ring::kx_group::X25519];
    let tls = tls::client_config(
        Arc::new(classical),
        local,
        Membership::new(root.public()),
        None,
    )
    .unwrap();
    let config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).unwrap()));
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let connecting = endpoint.connect_with(config, server, "osmoda").unwrap();

    let (accepted, dialed) = within(futures::future::join(
        accept(&mut ours.transport),
        connecting,
    ))
    .await;
    assert!(
        dialed.is_err(),
        "a classical-only client completed a handshake"
    );
    assert_refused(accepted, "NoKxGroupsInCommon");
}

#[tokio::test]
async fn quic_listener_reports_addresses_and_closes() {
    let root = FleetRoot::generate(&mut OsRng);
    let mut a = member(&root);
    let id = ListenerId::next();
    let addr = "/ip4/0.0.0.0/udp/0/quic-v1".parse().unwrap();
    a.transport.listen_on(id, addr).unwrap();
    // Interface addresses (or the bound address, without interface events),
    // always with the real port.
    match within(next_event(&mut a.transport)).await {
        TransportEvent::NewAddress { listen_addr, .. } => {
            let (socket, _) = multiaddr_to_socketaddr(&listen_addr).unwrap();
            assert!(socket.is_ipv4());
            assert_ne!(socket.port(), 0);
        }
        _ => panic!("expected a listen address"),
    }
    assert!(a.transport.remove_listener(id));
    let closed = within(async {
        loop {
            if let TransportEvent::ListenerClosed {
                listener_id,
                reason,
            } = next_event(&mut a.transport).await
            {
                return (listener_id, reason);
            }
        }
    })
    .await;
    assert_eq!(closed.0, id);
    assert!(closed.1.is_ok());
    assert!(!a.transport.remove_listener(id));
    let bad = "/ip4/127.0.0.1/tcp/1/quic-v1".parse().unwrap();
    assert!(a.transport.listen_on(ListenerId::next(), bad).is_err());
}
