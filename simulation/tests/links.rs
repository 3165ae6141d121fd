//! The link model over raw streams: order, latency, bandwidth, partitions,
//! stalls, hosts going down, backpressure, counters.
//!
//! Timing assertions are lower bounds only: the machine is shared, so a
//! delivery may always come later than the model says, never earlier.

mod common;

use std::time::Duration;

use common::*;
use futures::{AsyncReadExt, AsyncWriteExt, FutureExt};
use osmoda_simulation::{LinkProfile, SimConfig, SimError, CHUNK_OVERHEAD};
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);

#[tokio::test]
async fn bytes_arrive_in_order_after_the_latency() {
    let profile = LinkProfile::ideal()
        .with_latency(50 * MS)
        .with_jitter(30 * MS);
    let mut p = pair(profile).await;
    // Many small writes with jitter: FIFO must hold anyway.
    let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    let start = Instant::now();
    let writer = async {
        for piece in data.chunks(100) {
            p.client.write_all(piece).await.unwrap();
        }
    };
    let mut got = vec![0; data.len()];
    let reader = async {
        let mut first = None;
        let mut n = 0;
        while n < got.len() {
            let k = p.server.read(&mut got[n..]).await.unwrap();
            assert!(k > 0);
            first.get_or_insert_with(Instant::now);
            n += k;
        }
        first.unwrap()
    };
    let ((), first) = futures::join!(writer, reader);
    assert_eq!(got, data);
    assert!(
        first - start >= 50 * MS,
        "first byte after {:?}",
        first - start
    );

    // The other direction too, and a lone write is never early either.
    let elapsed = transfer(&mut p.server, &mut p.client, b"pong").await;
    assert!(elapsed >= 50 * MS, "{elapsed:?}");
}

#[tokio::test]
async fn dial_takes_a_round_trip() {
    let net = network(LinkProfile::ideal().with_latency(40 * MS));
    let hosts = net.add_hosts(2).unwrap();
    let (mut server, addr) = listener(&net, hosts[1]).await;
    let mut client = net.transport(hosts[0]).unwrap();
    let start = Instant::now();
    let (mut c, mut s) = connect(&mut client, &mut server, addr).await;
    assert!(start.elapsed() >= 80 * MS);
    assert_eq!(s.remote_addr(), c.local_addr());
    assert_eq!(c.remote_addr(), s.local_addr());
    assert_eq!(c.remote_addr().ip(), &net.host_ip(hosts[1]).unwrap());
    assert_eq!(
        osmoda_simulation::to_multiaddr(c.remote_addr()),
        net.host_addr(hosts[1], c.remote_addr().port()).unwrap()
    );
    transfer(&mut c, &mut s, b"hello").await;
}

#[tokio::test]
async fn partition_blocks_delivery_and_dials_until_healed() {
    let mut p = pair_with(SimConfig {
        default_profile: LinkProfile::ideal().with_latency(5 * MS),
        dial_timeout: Duration::from_millis(500),
        ..SimConfig::default()
    })
    .await;
    transfer(&mut p.client, &mut p.server, b"before").await;

    p.net.partition(&[p.a], &[p.b]).unwrap();
    assert!(!p.net.link_profile(p.a, p.b).unwrap().up);
    // Writes are accepted (buffered), nothing arrives, no error either way.
    p.client.write_all(b"during").await.unwrap();
    p.server.write_all(b"back").await.unwrap();
    assert!(!arrives_within(&mut p.server, 6, 300 * MS).await);
    assert!(!arrives_within(&mut p.client, 4, 50 * MS).await);

    // A new dial times out after the dial timeout.
    let start = Instant::now();
    let err = dial(&mut p.ta, p.addr.clone()).await.unwrap_err();
    assert!(matches!(err, SimError::TimedOut { .. }), "{err}");
    assert!(start.elapsed() >= 500 * MS);
    assert_eq!(p.net.stats(p.a).unwrap().dials_failed, 1);
    // A dial the caller gives up on (the swarm's own timeout) is counted
    // apart.
    let gave_up = tokio::time::timeout(100 * MS, dial(&mut p.ta, p.addr.clone())).await;
    assert!(gave_up.is_err());
    let stats = p.net.stats(p.a).unwrap();
    assert_eq!((stats.dials_failed, stats.dials_abandoned), (1, 1));

    p.net.heal(&[p.a], &[p.b]).unwrap();
    // Buffered data goes through after the heal, in order.
    let mut buf = [0; 6];
    p.server.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"during");
    let mut buf = [0; 4];
    p.client.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"back");
    // And new dials succeed.
    let (mut c2, mut s2) = connect(&mut p.ta, &mut p.tb, p.addr.clone()).await;
    transfer(&mut c2, &mut s2, b"after").await;
}

#[tokio::test]
async fn one_way_partition_blocks_one_direction() {
    let mut p = pair(LinkProfile::ideal().with_latency(5 * MS)).await;
    p.net.partition_one_way(&[p.a], &[p.b]).unwrap();
    p.client.write_all(b"lost").await.unwrap();
    assert!(!arrives_within(&mut p.server, 4, 200 * MS).await);
    // b → a still flows.
    transfer(&mut p.server, &mut p.client, b"fine").await;
    p.net.heal_one_way(&[p.a], &[p.b]).unwrap();
    let mut buf = [0; 4];
    p.server.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"lost");
}

#[tokio::test]
async fn heal_all_restores_every_link() {
    let net = network(LinkProfile::ideal());
    let hosts = net.add_hosts(4).unwrap();
    net.partition(&hosts[..2], &hosts[2..]).unwrap();
    net.partition_one_way(&[hosts[0]], &[hosts[1]]).unwrap();
    net.heal_all();
    for &a in &hosts {
        for &b in &hosts {
            assert_eq!(net.link_profile(a, b).unwrap(), LinkProfile::ideal());
        }
    }
}

#[tokio::test]
async fn host_down_resets_connections_and_refuses_dials() {
    let mut p = pair(LinkProfile::ideal().with_latency(5 * MS)).await;
    p.net.set_host_up(p.b, false).unwrap();
    assert!(!p.net.is_host_up(p.b).unwrap());
    let mut buf = [0; 1];
    let err = p.client.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    let err = p.client.write(b"x").await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    let err = p.server.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);

    let err = dial(&mut p.ta, p.addr.clone()).await.unwrap_err();
    assert!(matches!(err, SimError::Refused(_)), "{err}");
    // A down host cannot dial either.
    let a_addr = osmoda_simulation::to_multiaddr(std::net::SocketAddrV4::new(
        p.net.host_ip(p.a).unwrap(),
        1,
    ));
    let err = dial(&mut p.tb, a_addr).await.unwrap_err();
    assert_eq!(err, SimError::HostDown(p.b));

    // Back up: the listener accepts again.
    p.net.set_host_up(p.b, true).unwrap();
    let (mut c, mut s) = connect(&mut p.ta, &mut p.tb, p.addr.clone()).await;
    transfer(&mut c, &mut s, b"again").await;
}

#[tokio::test]
async fn dial_errors() {
    let net = network(LinkProfile::ideal());
    let hosts = net.add_hosts(2).unwrap();
    let mut t = net.transport(hosts[0]).unwrap();
    let err = dial(&mut t, "/ip4/10.9.9.9/tcp/1".parse().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, SimError::NoRoute(_)), "{err}");
    let err = dial(&mut t, "/ip4/10.0.0.2/tcp/1".parse().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, SimError::Refused(_)), "{err}");
    assert_eq!(net.stats(hosts[0]).unwrap().dials_failed, 2);
    // Not ours: left to other transports.
    use libp2p::core::Transport;
    let quic: libp2p::Multiaddr = "/ip4/10.0.0.2/udp/1/quic-v1".parse().unwrap();
    assert!(matches!(
        t.dial(quic, dial_opts()),
        Err(libp2p::core::transport::TransportError::MultiaddrNotSupported(_))
    ));
    // Listening on someone else's IP, or twice on one port, fails.
    let id = libp2p::core::transport::ListenerId::next();
    assert!(t
        .listen_on(id, "/ip4/10.0.0.2/tcp/5".parse().unwrap())
        .is_err());
    t.listen_on(id, "/ip4/10.0.0.1/tcp/5".parse().unwrap())
        .unwrap();
    let mut t2 = net.transport(hosts[0]).unwrap();
    assert!(t2
        .listen_on(
            libp2p::core::transport::ListenerId::next(),
            "/ip4/0.0.0.0/tcp/5".parse().unwrap()
        )
        .is_err());
    // Removing the listener frees the port and reports the closing.
    assert!(t.remove_listener(id));
    assert!(matches!(
        next_event(&mut t).await,
        libp2p::core::transport::TransportEvent::ListenerClosed { .. }
    ));
    t2.listen_on(
        libp2p::core::transport::ListenerId::next(),
        "/ip4/0.0.0.0/tcp/5".parse().unwrap(),
    )
    .unwrap();
}

fn dial_opts() -> libp2p::core::transport::DialOpts {
    libp2p::core::transport::DialOpts {
        role: libp2p::core::Endpoint::Dialer,
        port_use: libp2p::core::transport::PortUse::New,
    }
}

#[tokio::test]
async fn bandwidth_limits_throughput_and_is_shared_by_the_link() {
    let profile = LinkProfile::ideal()
        .with_latency(MS)
        .with_bandwidth(Some(1_000_000));
    let mut p = pair(profile).await;
    let data = vec![7u8; 500_000];
    let elapsed = transfer(&mut p.client, &mut p.server, &data).await;
    assert!(elapsed >= 499 * MS, "500 kB at 1 MB/s took {elapsed:?}");

    // A second connection on the same link waits behind a big message on
    // the first.
    let (mut c2, mut s2) = connect(&mut p.ta, &mut p.tb, p.addr.clone()).await;
    let big = vec![1u8; 300_000];
    let start = Instant::now();
    p.client.write_all(&big).await.unwrap();
    c2.write_all(b"!").await.unwrap();
    let mut one = [0; 1];
    s2.read_exact(&mut one).await.unwrap();
    assert!(start.elapsed() >= 299 * MS, "{:?}", start.elapsed());
    let mut rest = vec![0; big.len()];
    p.server.read_exact(&mut rest).await.unwrap();
}

#[tokio::test]
async fn writers_block_when_the_buffer_is_full() {
    let mut p = pair_with(SimConfig {
        default_profile: LinkProfile::ideal(),
        buffer_bytes: 100_000,
        ..SimConfig::default()
    })
    .await;
    p.net.partition(&[p.a], &[p.b]).unwrap();
    let chunk = vec![0u8; 30_000];
    let mut written = 0;
    let mut chunks = 0;
    while let Some(r) = p.client.write(&chunk).now_or_never() {
        written += r.unwrap();
        chunks += 1;
    }
    // The bound counts each chunk's overhead too.
    assert_eq!(written + chunks * CHUNK_OVERHEAD, 100_000);
    // Reading frees space and wakes the writer.
    p.net.heal(&[p.a], &[p.b]).unwrap();
    let mut buf = vec![0; 50_000];
    let (w, r) = futures::join!(p.client.write_all(&chunk), p.server.read_exact(&mut buf));
    w.unwrap();
    r.unwrap();
}

#[tokio::test]
async fn stall_holds_data_for_its_duration() {
    let mut p = pair(LinkProfile::ideal().with_latency(MS)).await;
    p.net.stall(p.a, p.b, 300 * MS).unwrap();
    let elapsed = transfer(&mut p.client, &mut p.server, b"late").await;
    assert!(elapsed >= 299 * MS, "{elapsed:?}");
    // Only that direction.
    transfer(&mut p.server, &mut p.client, b"on time").await;
}

#[tokio::test]
async fn close_delivers_eof_after_the_data() {
    let mut p = pair(LinkProfile::ideal().with_latency(20 * MS)).await;
    p.client.write_all(b"last words").await.unwrap();
    p.client.close().await.unwrap();
    let mut got = Vec::new();
    p.server.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"last words");
    // Dropping is a close too; writes towards a dropped peer are discarded.
    drop(p.server);
    let mut got = Vec::new();
    p.client.read_to_end(&mut got).await.unwrap();
    assert!(got.is_empty());
}

#[tokio::test]
async fn counters_track_traffic_and_connections() {
    let mut p = pair(LinkProfile::ideal()).await;
    transfer(&mut p.client, &mut p.server, &[1; 1000]).await;
    transfer(&mut p.server, &mut p.client, &[2; 10]).await;
    let a = p.net.stats(p.a).unwrap();
    let b = p.net.stats(p.b).unwrap();
    assert_eq!((a.bytes_sent, a.bytes_received), (1000, 10));
    assert_eq!((b.bytes_sent, b.bytes_received), (10, 1000));
    assert_eq!((a.chunks_sent, b.chunks_received), (1, 1));
    assert_eq!((a.connections_opened, b.connections_opened), (1, 1));
    drop(p.client);
    drop(p.server);
    let all = p.net.all_stats();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|s| s.connections_closed == 1));
    assert_eq!(all[0].since(&a).bytes_sent, 0);
}

#[tokio::test]
async fn profile_changes_apply_to_live_connections() {
    let mut p = pair(LinkProfile::ideal()).await;
    p.net
        .set_link(p.a, p.b, LinkProfile::ideal().with_latency(150 * MS))
        .unwrap();
    let elapsed = transfer(&mut p.client, &mut p.server, b"slow").await;
    assert!(elapsed >= 150 * MS, "{elapsed:?}");
    p.net
        .set_default_profile(LinkProfile::ideal().with_latency(100 * MS))
        .unwrap();
    let elapsed = transfer(&mut p.server, &mut p.client, b"slower").await;
    assert!(elapsed >= 100 * MS, "{elapsed:?}");
    assert!(p
        .net
        .set_link(p.a, p.b, LinkProfile::ideal().with_loss(2.0))
        .is_err());
}
