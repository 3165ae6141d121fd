//! Connection floods from strangers on loopback: idle TCP connections from
//! one or several addresses (distinct 127.x.y.z sources) do not keep a
//! member out, are limited per address, and are closed after the inbound
//! handshake timeout.

mod common;

use common::credentials;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;
use osmoda_fabric::behaviour::Limits;
use osmoda_fabric::proto::FleetRoot;
use osmoda_fabric::{Credentials, FabricConfig, FabricHandle};
use rand::rngs::OsRng;

struct Node {
    handle: FabricHandle,
    tcp: Multiaddr,
}

async fn start(credentials: Credentials, fleet: [u8; 32], limits: Limits) -> Node {
    let config = FabricConfig {
        limits,
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        mdns: false,
        ..FabricConfig::default()
    };
    let membership = osmoda_fabric::Membership::new(fleet);
    let (handle, mut events, _task) =
        osmoda_fabric::start(credentials, membership, config).unwrap();
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    for _ in 0..100 {
        if let Some(tcp) = handle.status().await.unwrap().listen.first() {
            return Node {
                tcp: tcp.parse().unwrap(),
                handle,
            };
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the node did not listen");
}

fn socket_addr(addr: &Multiaddr) -> SocketAddr {
    let mut ip = None;
    let mut port = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(IpAddr::V4(a)),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    SocketAddr::new(ip.unwrap(), port.unwrap())
}

/// `n` idle TCP connections to `to` from the source address `from`; they
/// send nothing. Nonblocking std sockets, to tell open from closed.
async fn flood(from: Ipv4Addr, to: SocketAddr, n: usize) -> Vec<std::net::TcpStream> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(from.into(), 0)).unwrap();
        out.push(socket.connect(to).await.unwrap().into_std().unwrap());
    }
    out
}

/// How many of the sockets the node has not closed.
fn still_open(sockets: &[std::net::TcpStream]) -> usize {
    use std::io::Read;
    let mut buf = [0u8; 64];
    sockets
        .iter()
        .filter(|s| {
            let mut s: &std::net::TcpStream = s;
            matches!(s.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count()
}

/// How long `member` takes from the dial to a working link with `to`.
async fn connect_time(member: &Node, to: &Node, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    member.handle.dial(to.tcp.clone()).await.unwrap();
    while started.elapsed() < within {
        if !member.handle.peers().await.unwrap().is_empty() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// The tests here count sockets to the exact slot. Run side by side, the
/// second one at times found one fewer of its strangers' connections open
/// than it admitted (11 of 12); alone it never did. So they take turns.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Idle connections are closed after this long in these tests.
const TIMEOUT: Duration = Duration::from_secs(4);

fn test_limits() -> Limits {
    Limits {
        max_pending_per_ip: 4,
        inbound_handshake_timeout: TIMEOUT,
        ..Limits::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_address_does_not_keep_a_member_out() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let root = FleetRoot::generate(&mut OsRng);
    let a = start(credentials(&root, "a"), root.public(), test_limits()).await;
    let target = socket_addr(&a.tcp);

    // The time without a flood, to a node of its own: a member that
    // connected to `a` would make 127.0.0.1 a known address there, and the
    // member below must come as a stranger.
    let calm = start(credentials(&root, "calm"), root.public(), test_limits()).await;
    let b = start(credentials(&root, "b"), root.public(), Limits::default()).await;
    let quiet = connect_time(&b, &calm, Duration::from_secs(10))
        .await
        .expect("a member could not connect without a flood");

    let flood_start = Instant::now();
    let first = flood(Ipv4Addr::new(127, 0, 0, 2), target, 200).await;
    let c = start(credentials(&root, "c"), root.public(), Limits::default()).await;
    let flooded = connect_time(&c, &a, Duration::from_secs(3))
        .await
        .expect("a member could not connect during a flood of 200 idle connections");
    eprintln!(
        "member connect time: {:.1} ms without a flood, {:.1} ms under a flood of 200 idle \
         connections from one address",
        quiet.as_secs_f64() * 1000.0,
        flooded.as_secs_f64() * 1000.0
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        still_open(&first),
        4,
        "one address holds more (or fewer) pending connections than its limit"
    );
    // Another address is limited on its own, while the first holds its share.
    let second_start = Instant::now();
    let second = flood(Ipv4Addr::new(127, 0, 0, 3), target, 50).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(still_open(&second), 4, "the second address was not limited");
    assert_eq!(still_open(&first), 4);
    assert!(
        flood_start.elapsed() < TIMEOUT,
        "the machine was too slow for the counts above to mean anything"
    );

    // Idle connections are closed once the inbound handshake timeout passes.
    let margin = Duration::from_millis(1500);
    tokio::time::sleep_until((second_start + TIMEOUT + margin).into()).await;
    assert_eq!(
        still_open(&first),
        0,
        "idle connections outlived the timeout"
    );
    assert_eq!(
        still_open(&second),
        0,
        "idle connections outlived the timeout"
    );
    assert_eq!(a.handle.peers().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_from_many_addresses_leave_room_for_known_members() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let root = FleetRoot::generate(&mut OsRng);
    let limits = Limits {
        max_pending_incoming: 16,
        pending_reserved_for_known: 4,
        // Long enough that the strangers still hold their slots when the
        // member comes.
        inbound_handshake_timeout: Duration::from_secs(8),
        ..test_limits()
    };
    let a = start(credentials(&root, "a"), root.public(), limits).await;
    let target = socket_addr(&a.tcp);
    // A member connects from 127.0.0.1, which becomes a known address.
    let b = start(credentials(&root, "b"), root.public(), Limits::default()).await;
    connect_time(&b, &a, Duration::from_secs(10))
        .await
        .expect("the first member could not connect");

    // Five addresses, four idle connections each: 20 strangers for the 12
    // slots open to them.
    let mut held = Vec::new();
    for i in 1..=5 {
        held.extend(flood(Ipv4Addr::new(127, 0, 1, i), target, 4).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(still_open(&held), 12, "strangers took the reserved slots");
    let late = flood(Ipv4Addr::new(127, 0, 2, 1), target, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(still_open(&late), 0, "a new stranger got past a full pool");

    // A member from a known address still gets in.
    let c = start(credentials(&root, "c"), root.public(), Limits::default()).await;
    let took = connect_time(&c, &a, Duration::from_secs(3))
        .await
        .expect("a member from a known address was kept out by strangers");
    eprintln!(
        "member connect time from a known address, strangers holding their whole share: {:.1} ms",
        took.as_secs_f64() * 1000.0
    );
    assert!(
        still_open(&held) > 0,
        "the flood ended before the member came"
    );
}
