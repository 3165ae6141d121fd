//! Real nodes on loopback refuse everyone outside the fleet, over TCP and
//! QUIC, and keep serving their members while junk arrives on their ports.

mod common;

use common::{member_until, now};

use std::time::Duration;

use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, ping, tcp, tls, yamux, Multiaddr};
use osmoda_fabric::behaviour::Limits;
use osmoda_fabric::proto::FleetRoot;
use osmoda_fabric::stats::Refusal;
use osmoda_fabric::{Credentials, FabricConfig, FabricHandle, Membership, Security};
use rand::rngs::OsRng;
use tokio::io::AsyncWriteExt;

struct Node {
    handle: FabricHandle,
    membership: std::sync::Arc<Membership>,
    tcp: Multiaddr,
    quic: Multiaddr,
}

async fn start(credentials: Credentials, fleet: [u8; 32]) -> Node {
    start_with(credentials, fleet, Limits::default()).await
}

async fn start_with(credentials: Credentials, fleet: [u8; 32], limits: Limits) -> Node {
    let membership = Membership::new(fleet);
    let config = FabricConfig {
        limits,
        listen: vec![
            "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
            "/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap(),
        ],
        mdns: false,
        handshake_timeout: Duration::from_secs(5),
        ..FabricConfig::default()
    };
    let (handle, mut events, _task) =
        osmoda_fabric::start(credentials, membership.clone(), config).unwrap();
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    let mut listen = Vec::new();
    for _ in 0..100 {
        listen = handle.status().await.unwrap().listen;
        if listen.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let find = |p: &str| -> Multiaddr {
        listen
            .iter()
            .find(|a| a.contains(p))
            .unwrap_or_else(|| panic!("no {p} in {listen:?}"))
            .parse()
            .unwrap()
    };
    Node {
        tcp: find("/tcp/"),
        quic: find("/quic-v1"),
        handle,
        membership,
    }
}

async fn peer_count(node: &Node) -> usize {
    node.handle.peers().await.unwrap().len()
}

async fn wait_for_peers(node: &Node, n: usize) -> bool {
    for _ in 0..100 {
        if peer_count(node).await == n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A fleet node `a` with one good member `c` connected to it.
async fn fleet_of_two() -> (FleetRoot, Node, Node) {
    let root = FleetRoot::generate(&mut OsRng);
    let a = start(member_until(&root, "a", now() + 3600), root.public()).await;
    let c = start(member_until(&root, "c", now() + 3600), root.public()).await;
    c.handle.dial(a.tcp.clone()).await.unwrap();
    assert!(wait_for_peers(&a, 1).await, "good member did not connect");
    (root, a, c)
}

/// `a` still serves its member: a broadcast from `c` arrives.
async fn still_serving(a: &Node, c: &Node, text: &str) {
    assert_eq!(
        peer_count(a).await,
        1,
        "a lost its member or admitted an outsider"
    );
    let mut sent = false;
    for _ in 0..50 {
        if c.handle.broadcast(text.to_string()).await.is_ok() {
            sent = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sent, "c could not broadcast");
    for _ in 0..50 {
        if a.handle.inbox().iter().any(|m| m.text == text) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("a did not receive {text:?} from its member");
}

/// An outsider running the osmoda stack with `creds` tries both transports;
/// `a` counts each refusal under `reason`. None: the outsider refuses `a`'s
/// certificate before `a` sees its own, so `a` has nothing to count.
async fn outsider_is_refused(
    a: &Node,
    c: &Node,
    creds: Credentials,
    fleet: [u8; 32],
    label: &str,
    reason: Option<Refusal>,
) {
    outsider_is_refused_on(a, c, creds, fleet, label, true, reason).await
}

async fn outsider_is_refused_on(
    a: &Node,
    c: &Node,
    creds: Credentials,
    fleet: [u8; 32],
    label: &str,
    quic: bool,
    reason: Option<Refusal>,
) {
    let rogue = start(creds, fleet).await;
    let mut targets = vec![(a.tcp.clone(), Security::NoiseHybrid)];
    if quic {
        targets.push((a.quic.clone(), Security::TlsHybrid));
    }
    for (addr, security) in targets {
        let refused = || reason.map(|r| a.membership.handshakes().refused_count(security, r));
        let before = refused();
        let _ = rogue.handle.dial(addr.clone()).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            peer_count(&rogue).await,
            0,
            "{label}: outsider connected over {addr}"
        );
        assert!(rogue.handle.inbox().is_empty());
        assert!(
            refused() > before || reason.is_none(),
            "{label}: no refusal ({reason:?}) counted over {addr}"
        );
    }
    still_serving(a, c, &format!("after {label}")).await;
    rogue.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_of_other_fleets_expired_revoked_and_uncertified_peers_are_refused() {
    let (root, a, c) = fleet_of_two().await;

    let other = FleetRoot::generate(&mut OsRng);
    outsider_is_refused(
        &a,
        &c,
        member_until(&other, "x", now() + 3600),
        other.public(),
        "another fleet",
        None,
    )
    .await;

    outsider_is_refused(
        &a,
        &c,
        member_until(&root, "old", now() - 1),
        root.public(),
        "an expired certificate",
        Some(Refusal::Expired),
    )
    .await;

    let bare = member_until(&root, "bare", now() + 3600)
        .presenting_certificate_bytes(Vec::new())
        .unwrap();
    // The hook replaces the certificate in the TCP handshake only.
    outsider_is_refused_on(
        &a,
        &c,
        bare,
        root.public(),
        "no certificate",
        false,
        Some(Refusal::Malformed),
    )
    .await;

    let revoked = member_until(&root, "gone", now() + 3600);
    let rev = root.revoke(revoked.cert().node, now());
    assert!(a.handle.revoke(rev).await.unwrap());
    outsider_is_refused(
        &a,
        &c,
        revoked,
        root.public(),
        "a revoked node",
        Some(Refusal::Revoked),
    )
    .await;
}

async fn stock_peer_fails(transport: &str, target: Multiaddr) {
    let builder = libp2p::SwarmBuilder::with_new_identity().with_tokio();
    let mut swarm = match transport {
        "noise" => builder
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(|_| ping::Behaviour::default())
            .unwrap()
            .build(),
        "tls" => builder
            .with_tcp(
                tcp::Config::default(),
                tls::Config::new,
                yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(|_| ping::Behaviour::default())
            .unwrap()
            .build(),
        _ => builder
            .with_quic()
            .with_behaviour(|_| ping::Behaviour::default())
            .unwrap()
            .build(),
    };
    swarm.dial(target.clone()).unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { .. } => return Err("connected"),
                SwarmEvent::OutgoingConnectionError { .. } => return Ok(()),
                _ => {}
            }
        }
    })
    .await;
    assert_eq!(
        outcome,
        Ok(Ok(())),
        "stock libp2p peer with {transport} reached {target}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_libp2p_peers_are_refused() {
    let (_root, a, c) = fleet_of_two().await;
    let tcp_addr = a.tcp.clone();
    stock_peer_fails("noise", tcp_addr.clone()).await;
    stock_peer_fails("tls", tcp_addr).await;
    stock_peer_fails("quic", a.quic.clone()).await;
    still_serving(&a, &c, "after stock peers").await;
}

fn socket_addr(addr: &Multiaddr) -> std::net::SocketAddr {
    use libp2p::multiaddr::Protocol;
    let mut ip = None;
    let mut port = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(std::net::IpAddr::V4(a)),
            Protocol::Tcp(p) | Protocol::Udp(p) => port = Some(p),
            _ => {}
        }
    }
    std::net::SocketAddr::new(ip.unwrap(), port.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_on_the_ports_does_not_disturb_the_node() {
    let (_root, a, c) = fleet_of_two().await;
    let tcp = socket_addr(&a.tcp);
    let multistream = |proto: &str| {
        let mut out = Vec::new();
        for line in ["/multistream/1.0.0\n", &format!("{proto}\n")] {
            out.push(line.len() as u8);
            out.extend_from_slice(line.as_bytes());
        }
        out
    };
    let pq = multistream(osmoda_fabric::pq_tcp::PROTOCOL);
    let mut oversized = pq.clone();
    oversized.extend_from_slice(&[0xff, 0xff]);
    oversized.extend(std::iter::repeat_n(0xAB, 70_000));
    let mut truncated = pq.clone();
    truncated.extend_from_slice(&[0x04, 0xc0]);
    truncated.extend(std::iter::repeat_n(7, 100));
    let mut wrong_len = pq.clone();
    wrong_len.extend_from_slice(&[0x00, 0x05, 1, 2, 3, 4, 5]);
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("random bytes", random.clone()),
        ("oversized handshake frame", oversized),
        ("truncated handshake", truncated),
        ("short handshake message", wrong_len),
        ("empty", Vec::new()),
    ];
    for (label, bytes) in cases {
        for _ in 0..5 {
            let mut stream = tokio::net::TcpStream::connect(tcp).await.unwrap();
            let _ = stream.write_all(&bytes).await;
            let _ = stream.shutdown().await;
        }
        still_serving(&a, &c, label).await;
    }
    // Junk datagrams at the QUIC port.
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let quic = socket_addr(&a.quic);
    for size in [1usize, 20, 1200, 1500] {
        for _ in 0..20 {
            let _ = udp.send_to(&random[..size.min(random.len())], quic).await;
        }
    }
    still_serving(&a, &c, "after junk datagrams").await;
}

#[tokio::test]
async fn a_full_node_refuses_before_the_handshake() {
    let root = FleetRoot::generate(&mut OsRng);
    let limits = Limits {
        max_established: 1,
        ..Limits::default()
    };
    let a = start_with(
        member_until(&root, "a", now() + 3600),
        root.public(),
        limits,
    )
    .await;
    let b = start(member_until(&root, "b", now() + 3600), root.public()).await;
    b.handle.dial(a.tcp.clone()).await.unwrap();
    assert!(
        wait_for_peers(&a, 1).await,
        "the first member did not connect"
    );
    let c = start(member_until(&root, "c", now() + 3600), root.public()).await;
    let c_id = c.handle.local_peer_id();
    for addr in [a.tcp.clone(), a.quic.clone()] {
        let _ = c.handle.dial(addr).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(peer_count(&c).await, 0, "c got in past the limit");
    // The handshake records the peer; a refusal before it leaves no trace.
    assert!(
        a.membership.peer(&c_id).is_none(),
        "a ran a handshake with c although it was full"
    );
    assert_eq!(peer_count(&a).await, 1, "a lost its member");
}
