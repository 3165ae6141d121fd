//! Measures what the simulation costs: N idle hosts running real libp2p
//! swarms (noise, yamux, ping every 5 s, gossipsub with a 1 s heartbeat)
//! over the simulated network, then the raw data path of one connection.
//!
//! ```text
//! cargo run -p osmoda-simulation --example idle_cost -- [hosts] [dials per host] [seconds]
//! ```
//!
//! Prints CPU time (user + system, all threads) per wall second, resident
//! memory, connections and bytes per host per second. Noise stands in for
//! the fabric's post-quantum handshake, which costs more at set-up and the
//! same afterwards (AES-GCM either way).

use std::error::Error;
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::core::transport::{DialOpts, ListenerId, PortUse, TransportEvent};
use libp2p::core::upgrade::Version;
use libp2p::core::{Endpoint, Transport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{gossipsub, noise, ping, yamux, Multiaddr, SwarmBuilder};
use osmoda_simulation::{LinkProfile, SimConfig, SimNetwork};
use tokio::time::Instant;

type BoxError = Box<dyn Error + Send + Sync>;

#[derive(NetworkBehaviour)]
struct Node {
    ping: ping::Behaviour,
    gossipsub: gossipsub::Behaviour,
}

/// User + system CPU time of the whole process.
fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the struct we pass and nothing else.
    let usage = unsafe {
        let mut u = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let hosts_n = arg(1, 500) as usize;
    let dials = arg(2, 4) as usize;
    let window = Duration::from_secs(arg(3, 20));
    let rss_start = rss_mib();

    let net = SimNetwork::new(SimConfig {
        seed: 3,
        default_profile: LinkProfile::default(),
        ..SimConfig::default()
    });
    let hosts = net.add_hosts(hosts_n)?;
    let topic = gossipsub::IdentTopic::new("idle");
    let setup = Instant::now();
    let mut swarms = Vec::new();
    for &h in &hosts {
        let transport = net.transport(h)?;
        let mut s = SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_other_transport(|key| -> Result<_, BoxError> {
                Ok(transport
                    .upgrade(Version::V1)
                    .authenticate(noise::Config::new(key)?)
                    .multiplex(yamux::Config::default()))
            })?
            .with_behaviour(|key| -> Result<_, BoxError> {
                Ok(Node {
                    ping: ping::Behaviour::new(
                        ping::Config::new()
                            .with_interval(Duration::from_secs(5))
                            .with_timeout(Duration::from_secs(10)),
                    ),
                    gossipsub: gossipsub::Behaviour::new(
                        gossipsub::MessageAuthenticity::Signed(key.clone()),
                        gossipsub::Config::default(),
                    )?,
                })
            })?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
            .build();
        s.behaviour_mut().gossipsub.subscribe(&topic)?;
        s.listen_on("/ip4/0.0.0.0/tcp/4001".parse()?)?;
        swarms.push(s);
    }
    let addrs: Vec<Multiaddr> = hosts
        .iter()
        .map(|&h| {
            format!(
                "/ip4/{}/tcp/4001",
                net.host_ip(h).unwrap_or(std::net::Ipv4Addr::UNSPECIFIED)
            )
            .parse()
        })
        .collect::<Result<_, _>>()?;
    let (conn_tx, mut conn_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    for (i, mut s) in swarms.into_iter().enumerate() {
        // Ring plus chords: steps 1, 2, 4, 8... modulo N.
        let targets: Vec<Multiaddr> = (0..dials)
            .map(|k| addrs[(i + (1 << k)) % hosts_n].clone())
            .collect();
        let conn_tx = conn_tx.clone();
        tokio::spawn(async move {
            let mut pending = Some(targets);
            loop {
                match s.select_next_some().await {
                    SwarmEvent::NewListenAddr { .. } => {
                        for t in pending.take().into_iter().flatten() {
                            let _ = s.dial(t);
                        }
                    }
                    SwarmEvent::ConnectionEstablished { .. } => {
                        let _ = conn_tx.send(());
                    }
                    _ => {}
                }
            }
        });
    }
    drop(conn_tx);
    // Each connection is reported by both ends.
    let expected = hosts_n * dials * 2;
    let mut established = 0;
    while established < expected {
        match tokio::time::timeout(Duration::from_secs(60), conn_rx.recv()).await {
            Ok(Some(())) => established += 1,
            _ => break,
        }
    }
    let setup_time = setup.elapsed();
    println!(
        "{hosts_n} hosts, {} connections up in {setup_time:.1?} (CPU {:.1?})",
        established / 2,
        cpu_time()
    );
    // Let the gossipsub meshes settle before measuring.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let before = net.all_stats();
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    let wall = t0.elapsed();
    let cpu = cpu_time() - cpu0;
    let after = net.all_stats();
    let bytes: u64 = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.since(b).bytes_sent)
        .sum();
    let rss = rss_mib();
    println!(
        "idle over {wall:.1?}: CPU {:.1} % of one core ({:.0} µs per host per second), \
         RSS {rss:.0} MiB ({:.0} KiB per host, {:.0} KiB per connection), \
         {:.0} bytes sent per host per second",
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
        1e6 * cpu.as_secs_f64() / wall.as_secs_f64() / hosts_n as f64,
        (rss - rss_start) * 1024.0 / hosts_n as f64,
        (rss - rss_start) * 1024.0 / (established / 2).max(1) as f64,
        bytes as f64 / wall.as_secs_f64() / hosts_n as f64,
    );
    raw_data_path().await
}

/// CPU per byte and per chunk of one simulated connection, no libp2p.
async fn raw_data_path() -> Result<(), BoxError> {
    let net = SimNetwork::new(SimConfig {
        default_profile: LinkProfile::ideal(),
        ..SimConfig::default()
    });
    let hosts = net.add_hosts(2)?;
    let mut server = net.transport(hosts[1])?;
    server.listen_on(ListenerId::next(), "/ip4/0.0.0.0/tcp/1".parse()?)?;
    let opts = DialOpts {
        role: Endpoint::Dialer,
        port_use: PortUse::New,
    };
    let mut client = net.transport(hosts[0])?;
    let dial = client.dial("/ip4/10.0.0.2/tcp/1".parse()?, opts)?;
    let accept = async {
        loop {
            if let TransportEvent::Incoming { upgrade, .. } =
                futures::future::poll_fn(|cx| std::pin::Pin::new(&mut server).poll(cx)).await
            {
                return upgrade.await;
            }
        }
    };
    let (c, s) = futures::join!(dial, accept);
    let (mut c, mut s) = (c?, s?);
    for (label, chunk, total) in [
        ("64 KiB writes", 64 * 1024, 1usize << 30),
        ("1 KiB writes", 1024, 1 << 27),
    ] {
        let data = vec![0u8; chunk];
        let cpu0 = cpu_time();
        let writer = async {
            let mut sent = 0;
            while sent < total {
                c.write_all(&data).await?;
                sent += chunk;
            }
            Ok::<_, std::io::Error>(())
        };
        let reader = async {
            let mut buf = vec![0u8; 64 * 1024];
            let mut got = 0;
            while got < total {
                got += s.read(&mut buf).await?;
            }
            Ok::<_, std::io::Error>(())
        };
        let (w, r) = futures::join!(writer, reader);
        w?;
        r?;
        let cpu = cpu_time() - cpu0;
        println!(
            "raw stream, {label}: {:.0} MB/s of CPU, {:.2} µs CPU per chunk",
            total as f64 / cpu.as_secs_f64() / 1e6,
            1e6 * cpu.as_secs_f64() / (total / chunk) as f64
        );
    }
    Ok(())
}
