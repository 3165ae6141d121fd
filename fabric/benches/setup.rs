//! Connection setup to the first application byte, over TCP and QUIC.
//!
//! Each case is a libp2p transport stack with a listener and a dialer in one
//! process on loopback. One iteration dials, waits for the secured,
//! multiplexed connection, opens one substream, writes one byte, and stops
//! when the listener has read that byte. In the same run:
//!
//! - `tcp/osmoda-hybrid`: TCP, multistream-select V1, `PqUpgrade`, yamux:
//!   the TCP stack of `osmoda_fabric::start`.
//! - `tcp/libp2p-noise`: the same stack with libp2p-noise's classical XX.
//! - `tcp/libp2p-noise-v1lazy`: libp2p-noise with multistream-select V1Lazy,
//!   the default of libp2p's `SwarmBuilder::with_tcp` (for reference).
//! - `quic/osmoda-pq`: osmoda's QUIC transport (TLS 1.3, X25519MLKEM768 only,
//!   fleet certificates).
//! - `quic/libp2p-quic`: stock libp2p-quic 0.14 (whose TLS, through
//!   libp2p-tls 0.7 and rustls' `prefer-post-quantum`, also negotiates
//!   X25519MLKEM768 between two stock peers).
//!
//! Closing each connection and waiting for the listener to see it is outside
//! the measured time. Before the criterion groups, each transport's cases
//! also run interleaved (one connection of each in turn), which keeps load
//! from other processes on a shared machine from favouring one case; both
//! the interleaved medians and criterion's are printed.
//!
//! Run: `cargo bench -p osmoda-fabric --bench setup`

#[path = "../tests/common/mod.rs"]
mod common;

use std::io;
use std::time::{Duration, Instant};

use common::credentials;
use criterion::{criterion_group, criterion_main, Criterion};
use futures::future::poll_fn;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::core::muxing::{StreamMuxerBox, StreamMuxerExt, SubstreamBox};
use libp2p::core::transport::{Boxed, DialOpts, ListenerId, PortUse, TransportEvent};
use libp2p::core::upgrade::Version;
use libp2p::core::{Endpoint, Transport};
use libp2p::identity::Keypair;
use libp2p::{noise, tcp, yamux, Multiaddr, PeerId};
use osmoda_fabric::pq_tcp::PqUpgrade;
use osmoda_fabric::proto::FleetRoot;
use osmoda_fabric::quic::{QuicConfig, QuicTransport};
use osmoda_fabric::{Credentials, Membership};
use rand::rngs::OsRng;
use tokio::sync::{mpsc, oneshot};

type Muxed = Boxed<(PeerId, StreamMuxerBox)>;

/// As in `osmoda_fabric::start`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Unrecorded rounds before the interleaved measurement. libp2p-quic needs
/// several hundred connections in a process before it reaches its steady
/// state (about a third faster than its first connections on the machine
/// these figures were taken on); the other cases need far fewer.
const WARM_UP_ROUNDS: usize = 1000;
/// Longest wait, after an iteration, for the listener to see the close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for one iteration before the benchmark gives up.
const ITERATION_TIMEOUT: Duration = Duration::from_secs(10);

fn osmoda_tcp(credentials: &Credentials, membership: std::sync::Arc<Membership>) -> Muxed {
    tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
        .upgrade(Version::V1)
        .authenticate(PqUpgrade::new(credentials.handshake_identity(), membership))
        .multiplex(yamux::Config::default())
        .timeout(HANDSHAKE_TIMEOUT)
        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
        .boxed()
}

fn libp2p_tcp(keypair: &Keypair, version: Version) -> Muxed {
    tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
        .upgrade(version)
        .authenticate(noise::Config::new(keypair).expect("noise config"))
        .multiplex(yamux::Config::default())
        .timeout(HANDSHAKE_TIMEOUT)
        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
        .boxed()
}

fn osmoda_quic(credentials: &Credentials, membership: std::sync::Arc<Membership>) -> Muxed {
    QuicTransport::new(credentials.clone(), membership, QuicConfig::default())
        .expect("osmoda QUIC transport")
        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
        .boxed()
}

fn libp2p_quic(keypair: &Keypair) -> Muxed {
    libp2p::quic::tokio::Transport::new(libp2p::quic::Config::new(keypair))
        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
        .boxed()
}

/// Polls the muxer (yamux does its IO there) until the connection ends.
async fn drive(muxer: &mut StreamMuxerBox) -> io::Error {
    loop {
        if let Err(e) = poll_fn(|cx| muxer.poll_unpin(cx)).await {
            return e;
        }
    }
}

/// What the listener side reports to the dialing side.
#[derive(Debug, PartialEq, Eq)]
enum Heard {
    /// The application byte arrived.
    Byte,
    /// The connection is gone on the listener side too.
    Closed,
}

/// Listener side of one connection: upgrade, accept the substream, read the
/// byte, report it, then hold the connection until the dialer drops it.
async fn accept_one(
    upgrade: futures::future::BoxFuture<'static, io::Result<(PeerId, StreamMuxerBox)>>,
    heard: &mpsc::UnboundedSender<Heard>,
) -> io::Result<()> {
    let (_peer, mut muxer) = upgrade.await?;
    let mut stream = poll_fn(|cx| muxer.poll_inbound_unpin(cx)).await?;
    let mut byte = [0u8; 1];
    tokio::select! {
        read = stream.read_exact(&mut byte) => read?,
        e = drive(&mut muxer) => return Err(e),
    }
    let _ = heard.send(Heard::Byte);
    // The connection ends when the dialer closes it. libp2p-quic's muxer
    // never reports that from `poll`, so also watch the substream.
    let mut rest = [0u8; 16];
    tokio::select! {
        _ = drive(&mut muxer) => {}
        _ = stream.read(&mut rest) => {}
    }
    Ok(())
}

/// Runs the listening transport and hands every inbound connection to
/// [`accept_one`].
async fn serve(
    mut transport: Muxed,
    addr: oneshot::Sender<Multiaddr>,
    heard: mpsc::UnboundedSender<Heard>,
) {
    let mut addr = Some(addr);
    while let Some(event) = transport.next().await {
        match event {
            TransportEvent::NewAddress { listen_addr, .. } => {
                if let Some(tx) = addr.take() {
                    let _ = tx.send(listen_addr);
                }
            }
            TransportEvent::Incoming { upgrade, .. } => {
                let heard = heard.clone();
                tokio::spawn(async move {
                    // The dialer dropping the connection ends every task
                    // with an error; only failures before the byte matter,
                    // and the dialer sees those as a timeout.
                    let _ = accept_one(upgrade, &heard).await;
                    let _ = heard.send(Heard::Closed);
                });
            }
            TransportEvent::ListenerError { error, .. } => eprintln!("listener error: {error}"),
            TransportEvent::ListenerClosed { reason, .. } => {
                eprintln!("listener closed: {reason:?}");
                return;
            }
            _ => {}
        }
    }
}

/// Waits for `what` from the listener side, skipping anything older.
async fn wait_for(heard: &mut mpsc::UnboundedReceiver<Heard>, what: Heard) -> io::Result<()> {
    loop {
        match heard.recv().await {
            Some(h) if h == what => return Ok(()),
            Some(_) => {}
            None => return Err(io::Error::other("listener stopped")),
        }
    }
}

struct Case {
    dialer: Muxed,
    target: Multiaddr,
    port_use: PortUse,
    heard: mpsc::UnboundedReceiver<Heard>,
    /// Connections the listener had not seen closed within `CLOSE_TIMEOUT`.
    unclosed: u64,
}

/// What a finished iteration holds; dropped outside the measured time.
type Connection = (StreamMuxerBox, SubstreamBox);

impl Case {
    async fn new(
        mut listener: Muxed,
        dialer: Muxed,
        listen: &str,
        port_use: PortUse,
    ) -> Result<Self, String> {
        let listen: Multiaddr = listen.parse().map_err(|e| format!("{listen}: {e}"))?;
        listener
            .listen_on(ListenerId::next(), listen)
            .map_err(|e| format!("listen: {e}"))?;
        let (addr_tx, addr_rx) = oneshot::channel();
        let (heard_tx, heard) = mpsc::unbounded_channel();
        tokio::spawn(serve(listener, addr_tx, heard_tx));
        let target = addr_rx
            .await
            .map_err(|_| "the listener reported no address".to_string())?;
        Ok(Self {
            dialer,
            target,
            port_use,
            heard,
            unclosed: 0,
        })
    }

    async fn connect(&mut self) -> io::Result<Connection> {
        let opts = DialOpts {
            role: Endpoint::Dialer,
            port_use: self.port_use,
        };
        let (_peer, mut muxer) = self
            .dialer
            .dial(self.target.clone(), opts)
            .map_err(io::Error::other)?
            .await?;
        let mut stream = poll_fn(|cx| muxer.poll_outbound_unpin(cx)).await?;
        let heard = &mut self.heard;
        let send = async {
            stream.write_all(&[0x2a]).await?;
            stream.flush().await?;
            wait_for(heard, Heard::Byte).await
        };
        tokio::select! {
            sent = send => sent?,
            e = drive(&mut muxer) => return Err(e),
        }
        Ok((muxer, stream))
    }

    /// One measured connection. Then, unmeasured, closes it and waits until
    /// the listener has seen it close, so that no teardown overlaps the
    /// next measurement.
    async fn measure(&mut self) -> io::Result<Duration> {
        let start = Instant::now();
        let connection = tokio::time::timeout(ITERATION_TIMEOUT, self.connect())
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connection setup timed out"))??;
        let elapsed = start.elapsed();
        let (muxer, stream) = connection;
        drop(stream);
        // Dropping is not enough for every muxer: libp2p-quic's connection
        // lingers until its idle timeout unless closed.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, muxer.close()).await;
        let closed = wait_for(&mut self.heard, Heard::Closed);
        if !matches!(
            tokio::time::timeout(CLOSE_TIMEOUT, closed).await,
            Ok(Ok(()))
        ) {
            self.unclosed += 1;
        }
        Ok(elapsed)
    }
}

fn bench_case(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    name: &str,
    case: &mut Case,
) {
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += case.measure().await.expect("connection setup");
                }
                total
            })
        })
    });
}

/// Runs one connection of each named case in turn, `WARM_UP_ROUNDS`
/// unrecorded and then `rounds` recorded times, alternating the order, and
/// prints each case's median and its ratio to the first. Load from other
/// processes that drifts during the run hits every case alike.
fn interleaved(
    rt: &tokio::runtime::Runtime,
    rounds: usize,
    cases: &mut [(&str, Result<Case, String>)],
    names: &[&str],
) {
    let mut live: Vec<(&str, &mut Case)> = cases
        .iter_mut()
        .filter(|(name, _)| names.contains(name))
        .filter_map(|(name, case)| case.as_mut().ok().map(|c| (*name, c)))
        .collect();
    let n = live.len();
    if n == 0 {
        return;
    }
    let mut samples = vec![Vec::with_capacity(rounds); n];
    rt.block_on(async {
        for round in 0..WARM_UP_ROUNDS + rounds {
            for i in 0..n {
                let k = if round % 2 == 0 { i } else { n - 1 - i };
                let elapsed = live[k].1.measure().await.expect("connection setup");
                if round >= WARM_UP_ROUNDS {
                    samples[k].push(elapsed);
                }
            }
        }
    });
    let medians: Vec<f64> = samples
        .iter_mut()
        .map(|s| {
            s.sort_unstable();
            s[s.len() / 2].as_secs_f64()
        })
        .collect();
    eprintln!("setup, interleaved, {rounds} rounds:");
    for (k, (name, _)) in live.iter().enumerate() {
        eprintln!(
            "  {name}: median {:.1} us, {:.3}x {}",
            medians[k] * 1e6,
            medians[k] / medians[0],
            live[0].0
        );
    }
}

fn setup(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let root = FleetRoot::generate(&mut OsRng);
    let a = credentials(&root, "a");
    let b = credentials(&root, "b");
    let (ka, kb) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let membership = || Membership::new(root.public());
    let tcp_addr = "/ip4/127.0.0.1/tcp/0";
    let quic_addr = "/ip4/127.0.0.1/udp/0/quic-v1";

    let mut cases = rt.block_on(async {
        let cases: Vec<(&str, Result<Case, String>)> = vec![
            (
                "tcp/libp2p-noise",
                Case::new(
                    libp2p_tcp(&kb, Version::V1),
                    libp2p_tcp(&ka, Version::V1),
                    tcp_addr,
                    PortUse::New,
                )
                .await,
            ),
            (
                "tcp/libp2p-noise-v1lazy",
                Case::new(
                    libp2p_tcp(&kb, Version::V1Lazy),
                    libp2p_tcp(&ka, Version::V1Lazy),
                    tcp_addr,
                    PortUse::New,
                )
                .await,
            ),
            (
                "tcp/osmoda-hybrid",
                Case::new(
                    osmoda_tcp(&b, membership()),
                    osmoda_tcp(&a, membership()),
                    tcp_addr,
                    PortUse::New,
                )
                .await,
            ),
            (
                "quic/libp2p-quic",
                Case::new(
                    libp2p_quic(&kb),
                    libp2p_quic(&ka),
                    quic_addr,
                    PortUse::Reuse,
                )
                .await,
            ),
            (
                "quic/osmoda-pq",
                Case::new(
                    osmoda_quic(&b, membership()),
                    osmoda_quic(&a, membership()),
                    quic_addr,
                    PortUse::Reuse,
                )
                .await,
            ),
        ];
        cases
    });

    interleaved(
        &rt,
        600,
        &mut cases,
        &[
            "tcp/libp2p-noise",
            "tcp/osmoda-hybrid",
            "tcp/libp2p-noise-v1lazy",
        ],
    );
    interleaved(
        &rt,
        600,
        &mut cases,
        &["quic/libp2p-quic", "quic/osmoda-pq"],
    );

    let mut group = c.benchmark_group("setup");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(3))
        .measurement_time(Duration::from_secs(10));
    for (name, case) in &mut cases {
        match case {
            Ok(case) => bench_case(&mut group, &rt, name, case),
            Err(e) => eprintln!("{name}: not measured, setup failed: {e}"),
        }
    }
    group.finish();
    for (name, case) in &cases {
        if let Ok(case) = case {
            if case.unclosed > 0 {
                eprintln!(
                    "{name}: {} connections not seen closed by the listener within {CLOSE_TIMEOUT:?}",
                    case.unclosed
                );
            }
        }
    }
}

criterion_group!(benches, setup);
criterion_main!(benches);
