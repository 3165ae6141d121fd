//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::pin::Pin;
use std::time::Duration;

use futures::future::poll_fn;
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::core::transport::{DialOpts, ListenerId, PortUse, TransportEvent};
use libp2p::core::{Endpoint, Transport};
use libp2p::Multiaddr;
use osmoda_simulation::{
    HostId, LinkProfile, SimConfig, SimError, SimNetwork, SimStream, SimTransport,
};
use tokio::time::Instant;

pub fn network(profile: LinkProfile) -> SimNetwork {
    SimNetwork::new(SimConfig {
        seed: 42,
        default_profile: profile,
        ..SimConfig::default()
    })
}

/// A host's transport listening on port 0, with its reported address.
pub async fn listener(net: &SimNetwork, host: HostId) -> (SimTransport, Multiaddr) {
    let mut t = net.transport(host).unwrap();
    t.listen_on(ListenerId::next(), "/ip4/0.0.0.0/tcp/0".parse().unwrap())
        .unwrap();
    match next_event(&mut t).await {
        TransportEvent::NewAddress { listen_addr, .. } => (t, listen_addr),
        _ => panic!("expected NewAddress"),
    }
}

pub async fn next_event(
    t: &mut SimTransport,
) -> TransportEvent<<SimTransport as Transport>::ListenerUpgrade, SimError> {
    poll_fn(|cx| Pin::new(&mut *t).poll(cx)).await
}

pub fn dial(
    t: &mut SimTransport,
    addr: Multiaddr,
) -> impl std::future::Future<Output = Result<SimStream, SimError>> {
    t.dial(
        addr,
        DialOpts {
            role: Endpoint::Dialer,
            port_use: PortUse::New,
        },
    )
    .unwrap()
}

/// Dials `addr` from `from` and accepts on `server`.
pub async fn connect(
    from: &mut SimTransport,
    server: &mut SimTransport,
    addr: Multiaddr,
) -> (SimStream, SimStream) {
    let dialing = dial(from, addr);
    let accepting = async {
        match next_event(server).await {
            TransportEvent::Incoming { upgrade, .. } => upgrade.await.unwrap(),
            _ => panic!("expected Incoming"),
        }
    };
    let (d, a) = futures::join!(dialing, accepting);
    (d.unwrap(), a)
}

/// Two hosts, a listener on the second, and one connection (client, server).
pub struct Pair {
    pub net: SimNetwork,
    pub a: HostId,
    pub b: HostId,
    pub ta: SimTransport,
    pub tb: SimTransport,
    pub addr: Multiaddr,
    pub client: SimStream,
    pub server: SimStream,
}

pub async fn pair_with(config: SimConfig) -> Pair {
    let net = SimNetwork::new(config);
    let a = net.add_host().unwrap();
    let b = net.add_host().unwrap();
    let (mut tb, addr) = listener(&net, b).await;
    let mut ta = net.transport(a).unwrap();
    let (client, server) = connect(&mut ta, &mut tb, addr.clone()).await;
    Pair {
        net,
        a,
        b,
        ta,
        tb,
        addr,
        client,
        server,
    }
}

pub async fn pair(profile: LinkProfile) -> Pair {
    pair_with(SimConfig {
        seed: 42,
        default_profile: profile,
        ..SimConfig::default()
    })
    .await
}

/// Whether `n` bytes can be read within `wait` (used only to show that
/// nothing arrives; never as an upper bound on delivery).
pub async fn arrives_within(s: &mut SimStream, n: usize, wait: Duration) -> bool {
    let mut buf = vec![0; n];
    tokio::time::timeout(wait, s.read_exact(&mut buf))
        .await
        .is_ok()
}

/// Writes `data`, reads it back on `to`, returns the time it took.
pub async fn transfer(from: &mut SimStream, to: &mut SimStream, data: &[u8]) -> Duration {
    let start = Instant::now();
    let mut got = vec![0; data.len()];
    let (w, r) = futures::join!(from.write_all(data), to.read_exact(&mut got));
    w.unwrap();
    r.unwrap();
    assert_eq!(got, data);
    start.elapsed()
}
