//! The hybrid post-quantum handshake against rust-libp2p's classical Noise XX.
//!
//! Two groups, each comparing both handshakes in the same run:
//!
//! - `handshake/tcp`: a loopback TCP connection, multistream-select (V1) and
//!   the security upgrade on both ends, exactly as libp2p's transport upgrade
//!   drives them, until both ends hold the secured stream. The TCP connect is
//!   inside the measured time, identically for both.
//! - `handshake/cpu`: the handshakes alone, in memory: osmoda's sans-IO
//!   `Handshake` (three messages, both sides) against snow's
//!   `Noise_XX_25519_ChaChaPoly_SHA256` (the configuration inside
//!   libp2p-noise), bare and with the libp2p identity payload (protobuf key
//!   and signature, checked like libp2p-noise checks it).
//!
//! Before the groups run, one instrumented connection per handshake prints
//! the bytes each side put on the wire, and each group's cases also run
//! interleaved (one of each in turn), which keeps load from other processes
//! on a shared machine from favouring one case; the interleaved medians and
//! their ratios are printed beside criterion's.
//!
//! Run: `cargo bench -p osmoda-fabric --bench handshake`

#[path = "../tests/common/mod.rs"]
mod common;

use std::fmt::Debug;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use common::{credentials, now};
use criterion::{criterion_group, criterion_main, Criterion};
use futures::{AsyncRead, AsyncWrite};
use libp2p::core::upgrade::{
    InboundConnectionUpgrade, Negotiated, OutboundConnectionUpgrade, UpgradeInfo, Version,
};
use libp2p::identity::{Keypair, PublicKey};
use libp2p::tcp::tokio::TcpStream;
use multistream_select::{dialer_select_proto, listener_select_proto};
use osmoda_fabric::pq_tcp::PqUpgrade;
use osmoda_fabric::proto::{FleetRoot, Handshake, LocalIdentity, NodeKey, Side};
use osmoda_fabric::Membership;
use rand::rngs::OsRng;
use snow::resolvers::CryptoResolver;
use x25519_dalek::{x25519, X25519_BASEPOINT_BYTES};

/// Runs the cases in turn, `rounds` times (after `rounds / 10` unrecorded
/// warm-up rounds), alternating their order, and prints each one's median
/// and its ratio to the first. Load from other processes that drifts during
/// the run hits every case alike, which criterion's one-after-the-other
/// groups cannot promise on a shared machine.
fn interleaved(title: &str, rounds: usize, cases: &mut [(&str, &mut dyn FnMut() -> Duration)]) {
    let n = cases.len();
    let mut samples = vec![Vec::with_capacity(rounds); n];
    for round in 0..rounds + rounds / 10 {
        for i in 0..n {
            let k = if round % 2 == 0 { i } else { n - 1 - i };
            let elapsed = (cases[k].1)();
            if round >= rounds / 10 {
                samples[k].push(elapsed);
            }
        }
    }
    let medians: Vec<Duration> = samples
        .iter_mut()
        .map(|s| {
            s.sort_unstable();
            s[s.len() / 2]
        })
        .collect();
    eprintln!("{title}, interleaved, {rounds} rounds:");
    for (k, (name, _)) in cases.iter().enumerate() {
        eprintln!(
            "  {name}: median {:.1} us, {:.3}x {}",
            medians[k].as_secs_f64() * 1e6,
            medians[k].as_secs_f64() / medians[0].as_secs_f64(),
            cases[0].0
        );
    }
}

fn timed<T>(f: impl FnOnce() -> T) -> Duration {
    let start = Instant::now();
    std::hint::black_box(f());
    start.elapsed()
}

// ---------------------------------------------------------------------------
// Loopback TCP
// ---------------------------------------------------------------------------

/// A stream that counts the bytes written through it.
struct Counting<S> {
    inner: S,
    written: Arc<AtomicU64>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counting<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counting<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            self.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

type Io = Negotiated<Counting<TcpStream>>;

/// Bytes written by each end of one connection, split into the
/// multistream-select negotiation and the whole exchange.
#[derive(Debug, Default, Clone, Copy)]
struct Traffic {
    dialer_negotiation: u64,
    listener_negotiation: u64,
    dialer_total: u64,
    listener_total: u64,
}

impl Traffic {
    fn print(&self, label: &str) {
        let dh = self.dialer_total - self.dialer_negotiation;
        let lh = self.listener_total - self.listener_negotiation;
        eprintln!(
            "bytes on the wire, {label}: handshake dialer->listener {dh} B, listener->dialer {lh} B, \
             total {} B; with multistream-select {} B + {} B = {} B",
            dh + lh,
            self.dialer_total,
            self.listener_total,
            self.dialer_total + self.listener_total
        );
    }
}

async fn connect(
    listener: &tokio::net::TcpListener,
    addr: SocketAddr,
) -> io::Result<(tokio::net::TcpStream, tokio::net::TcpStream)> {
    let (dialed, accepted) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
    let dialed = dialed?;
    let (accepted, _) = accepted?;
    dialed.set_nodelay(true)?;
    accepted.set_nodelay(true)?;
    Ok((dialed, accepted))
}

/// One connection: TCP connect, multistream-select V1 and the upgrade on both
/// ends, until both hold the secured stream.
async fn secure_once<U>(
    listener: &tokio::net::TcpListener,
    addr: SocketAddr,
    dialer: U,
    responder: U,
) -> Result<Traffic, String>
where
    U: UpgradeInfo + InboundConnectionUpgrade<Io> + OutboundConnectionUpgrade<Io>,
    <U as InboundConnectionUpgrade<Io>>::Error: Debug,
    <U as OutboundConnectionUpgrade<Io>>::Error: Debug,
{
    let (dialed, accepted) = connect(listener, addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let dialer_written = Arc::new(AtomicU64::new(0));
    let listener_written = Arc::new(AtomicU64::new(0));
    let dialed = Counting {
        inner: TcpStream(dialed),
        written: dialer_written.clone(),
    };
    let accepted = Counting {
        inner: TcpStream(accepted),
        written: listener_written.clone(),
    };

    let outbound = async {
        let (info, io) = dialer_select_proto(dialed, dialer.protocol_info(), Version::V1)
            .await
            .map_err(|e| format!("dialer negotiation: {e}"))?;
        let negotiation = dialer_written.load(Ordering::Relaxed);
        let secured = dialer
            .upgrade_outbound(io, info)
            .await
            .map_err(|e| format!("outbound upgrade: {e:?}"))?;
        Ok::<_, String>((negotiation, secured))
    };
    let inbound = async {
        let (info, io) = listener_select_proto(accepted, responder.protocol_info())
            .await
            .map_err(|e| format!("listener negotiation: {e}"))?;
        let negotiation = listener_written.load(Ordering::Relaxed);
        let secured = responder
            .upgrade_inbound(io, info)
            .await
            .map_err(|e| format!("inbound upgrade: {e:?}"))?;
        Ok::<_, String>((negotiation, secured))
    };
    let (outbound, inbound) = futures::join!(outbound, inbound);
    let (dialer_negotiation, _dialer_secured) = outbound?;
    let (listener_negotiation, _listener_secured) = inbound?;
    Ok(Traffic {
        dialer_negotiation,
        listener_negotiation,
        dialer_total: dialer_written.load(Ordering::Relaxed),
        listener_total: listener_written.load(Ordering::Relaxed),
    })
}

struct TcpFixture {
    rt: tokio::runtime::Runtime,
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    noise: (libp2p::noise::Config, libp2p::noise::Config),
    hybrid: (PqUpgrade, PqUpgrade),
}

impl TcpFixture {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind loopback");
        let addr = listener.local_addr().expect("listener address");

        let root = FleetRoot::generate(&mut OsRng);
        let a = credentials(&root, "a");
        let b = credentials(&root, "b");
        // libp2p signs its X25519 static key once per `noise::Config`, as a
        // swarm does; osmoda signs its static key once per `LocalIdentity`.
        let noise = (
            libp2p::noise::Config::new(a.keypair()).expect("noise config"),
            libp2p::noise::Config::new(b.keypair()).expect("noise config"),
        );
        let hybrid = (
            PqUpgrade::new(a.handshake_identity(), Membership::new(root.public())),
            PqUpgrade::new(b.handshake_identity(), Membership::new(root.public())),
        );
        Self {
            rt,
            listener,
            addr,
            noise,
            hybrid,
        }
    }

    fn noise_once(&self) -> Traffic {
        self.rt
            .block_on(secure_once(
                &self.listener,
                self.addr,
                self.noise.0.clone(),
                self.noise.1.clone(),
            ))
            .expect("noise handshake")
    }

    fn hybrid_once(&self) -> Traffic {
        self.rt
            .block_on(secure_once(
                &self.listener,
                self.addr,
                self.hybrid.0.clone(),
                self.hybrid.1.clone(),
            ))
            .expect("hybrid handshake")
    }
}

fn tcp(c: &mut Criterion) {
    let fx = TcpFixture::new();
    let noise = fx.noise_once();
    let hybrid = fx.hybrid_once();
    noise.print("libp2p-noise XX (/noise)");
    hybrid.print(&format!(
        "osmoda hybrid XXhfs ({})",
        osmoda_fabric::pq_tcp::PROTOCOL
    ));

    interleaved(
        "handshake/tcp",
        1500,
        &mut [
            ("libp2p-noise-xx", &mut || timed(|| fx.noise_once())),
            ("osmoda-hybrid-xxhfs", &mut || timed(|| fx.hybrid_once())),
        ],
    );

    let mut group = c.benchmark_group("handshake/tcp");
    group
        .sample_size(40)
        .warm_up_time(Duration::from_secs(3))
        .measurement_time(Duration::from_secs(12));
    group.bench_function("libp2p-noise-xx", |b| b.iter(|| fx.noise_once()));
    group.bench_function("osmoda-hybrid-xxhfs", |b| b.iter(|| fx.hybrid_once()));
    group.finish();
}

// ---------------------------------------------------------------------------
// In memory
// ---------------------------------------------------------------------------

/// Runs osmoda's handshake between two identities; returns the message lengths.
fn osmoda_in_memory(a: &LocalIdentity, b: &LocalIdentity, now: u64) -> [usize; 3] {
    let mut rng = OsRng;
    let not_revoked = |_: &NodeKey| false;
    let mut i = Handshake::new(Side::Initiator, a, &mut rng);
    let mut r = Handshake::new(Side::Responder, b, &mut rng);
    let m1 = i.write_message(&mut rng).expect("message 1");
    r.read_message(&m1, now, &not_revoked).expect("read 1");
    let m2 = r.write_message(&mut rng).expect("message 2");
    i.read_message(&m2, now, &not_revoked).expect("read 2");
    let m3 = i.write_message(&mut rng).expect("message 3");
    r.read_message(&m3, now, &not_revoked).expect("read 3");
    let (_, peer_of_i) = i.finish().expect("initiator finish");
    let (_, peer_of_r) = r.finish().expect("responder finish");
    debug_assert_eq!(peer_of_i.node, b.node());
    debug_assert_eq!(peer_of_r.node, a.node());
    [m1.len(), m2.len(), m3.len()]
}

/// X25519 for snow through x25519-dalek, as libp2p-noise does it.
#[derive(Default)]
struct X25519 {
    secret: [u8; 32],
    public: [u8; 32],
}

impl snow::types::Dh for X25519 {
    fn name(&self) -> &'static str {
        "25519"
    }
    fn pub_len(&self) -> usize {
        32
    }
    fn priv_len(&self) -> usize {
        32
    }
    fn set(&mut self, privkey: &[u8]) {
        self.secret.copy_from_slice(&privkey[..32]);
        self.public = x25519(self.secret, X25519_BASEPOINT_BYTES);
    }
    fn generate(&mut self, rng: &mut dyn snow::types::Random) -> Result<(), snow::Error> {
        let mut secret = [0u8; 32];
        rng.try_fill_bytes(&mut secret)?;
        self.set(&secret);
        Ok(())
    }
    fn pubkey(&self) -> &[u8] {
        &self.public
    }
    fn privkey(&self) -> &[u8] {
        &self.secret
    }
    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        // snow hands over its whole key buffer; the key is the first 32 bytes.
        let remote: [u8; 32] = pubkey
            .get(..32)
            .and_then(|k| k.try_into().ok())
            .ok_or(snow::Error::Dh)?;
        out[..32].copy_from_slice(&x25519(self.secret, remote));
        Ok(())
    }
}

/// libp2p-noise's resolver: x25519-dalek for DH, ring for hashes and ciphers.
struct Libp2pResolver;

impl CryptoResolver for Libp2pResolver {
    fn resolve_rng(&self) -> Option<Box<dyn snow::types::Random>> {
        snow::resolvers::RingResolver.resolve_rng()
    }
    fn resolve_dh(&self, choice: &snow::params::DHChoice) -> Option<Box<dyn snow::types::Dh>> {
        match choice {
            snow::params::DHChoice::Curve25519 => Some(Box::new(X25519::default())),
            _ => None,
        }
    }
    fn resolve_hash(
        &self,
        choice: &snow::params::HashChoice,
    ) -> Option<Box<dyn snow::types::Hash>> {
        snow::resolvers::RingResolver.resolve_hash(choice)
    }
    fn resolve_cipher(
        &self,
        choice: &snow::params::CipherChoice,
    ) -> Option<Box<dyn snow::types::Cipher>> {
        snow::resolvers::RingResolver.resolve_cipher(choice)
    }
}

const NOISE_XX: &str = "Noise_XX_25519_ChaChaPoly_SHA256";
const STATIC_KEY_DOMAIN: &[u8] = b"noise-libp2p-static-key:";

/// A classical libp2p-style identity: an X25519 static key and, when
/// `with_payload`, the protobuf payload carrying the Ed25519 identity key and
/// its signature over the static key.
struct ClassicalIdentity {
    static_secret: [u8; 32],
    payload: Vec<u8>,
}

impl ClassicalIdentity {
    fn new(with_payload: bool) -> Self {
        let mut static_secret = [0u8; 32];
        rand::RngCore::fill_bytes(&mut OsRng, &mut static_secret);
        let payload = if with_payload {
            let keypair = Keypair::generate_ed25519();
            let static_public = x25519(static_secret, X25519_BASEPOINT_BYTES);
            let sig = keypair
                .sign(&[STATIC_KEY_DOMAIN, &static_public[..]].concat())
                .expect("sign static key");
            let key = keypair.public().encode_protobuf();
            // NoiseHandshakePayload { identity_key = 1, identity_sig = 2 }.
            let mut out = vec![0x0a, key.len() as u8];
            out.extend_from_slice(&key);
            out.extend_from_slice(&[0x12, sig.len() as u8]);
            out.extend_from_slice(&sig);
            out
        } else {
            Vec::new()
        };
        Self {
            static_secret,
            payload,
        }
    }
}

/// What libp2p-noise does with a received payload: decode the identity key,
/// check its signature over the remote static key, derive the peer id.
fn check_payload(payload: &[u8], remote_static: Option<&[u8]>) {
    if payload.is_empty() {
        return;
    }
    let key_len = payload[1] as usize;
    let key = &payload[2..2 + key_len];
    let sig = &payload[2 + key_len + 2..];
    let key = PublicKey::try_decode_protobuf(key).expect("identity key");
    let remote_static = remote_static.expect("remote static key");
    assert!(key.verify(&[STATIC_KEY_DOMAIN, remote_static].concat(), sig));
    std::hint::black_box(key.to_peer_id());
}

/// Runs Noise XX between two classical identities; returns the message lengths.
fn snow_in_memory(a: &ClassicalIdentity, b: &ClassicalIdentity) -> [usize; 3] {
    let params: snow::params::NoiseParams = NOISE_XX.parse().expect("noise params");
    let mut i = snow::Builder::with_resolver(params.clone(), Box::new(Libp2pResolver))
        .local_private_key(&a.static_secret)
        .expect("initiator key")
        .build_initiator()
        .expect("initiator");
    let mut r = snow::Builder::with_resolver(params, Box::new(Libp2pResolver))
        .local_private_key(&b.static_secret)
        .expect("responder key")
        .build_responder()
        .expect("responder");
    let mut msg = [0u8; 1024];
    let mut payload = [0u8; 1024];
    let n1 = i.write_message(&[], &mut msg).expect("message 1");
    r.read_message(&msg[..n1], &mut payload).expect("read 1");
    let n2 = r.write_message(&b.payload, &mut msg).expect("message 2");
    let p2 = i.read_message(&msg[..n2], &mut payload).expect("read 2");
    check_payload(&payload[..p2], i.get_remote_static());
    let n3 = i.write_message(&a.payload, &mut msg).expect("message 3");
    let p3 = r.read_message(&msg[..n3], &mut payload).expect("read 3");
    check_payload(&payload[..p3], r.get_remote_static());
    std::hint::black_box(i.into_transport_mode().expect("initiator transport"));
    std::hint::black_box(r.into_transport_mode().expect("responder transport"));
    [n1, n2, n3]
}

fn cpu(c: &mut Criterion) {
    let root = FleetRoot::generate(&mut OsRng);
    let a = credentials(&root, "a").handshake_identity();
    let b = credentials(&root, "b").handshake_identity();
    let t = now();
    let bare = (ClassicalIdentity::new(false), ClassicalIdentity::new(false));
    let libp2p = (ClassicalIdentity::new(true), ClassicalIdentity::new(true));

    let framed = |m: [usize; 3]| m.iter().map(|n| n + 2).sum::<usize>();
    let hybrid_msgs = osmoda_in_memory(&a, &b, t);
    let bare_msgs = snow_in_memory(&bare.0, &bare.1);
    let libp2p_msgs = snow_in_memory(&libp2p.0, &libp2p.1);
    eprintln!(
        "handshake messages, osmoda XXhfs hybrid: {hybrid_msgs:?} B, {} B with 2-byte length prefixes",
        framed(hybrid_msgs)
    );
    eprintln!(
        "handshake messages, Noise XX with libp2p payload: {libp2p_msgs:?} B, {} B with 2-byte length prefixes",
        framed(libp2p_msgs)
    );
    eprintln!(
        "handshake messages, bare Noise XX: {bare_msgs:?} B, {} B with 2-byte length prefixes",
        framed(bare_msgs)
    );

    interleaved(
        "handshake/cpu",
        2000,
        &mut [
            ("snow-xx-libp2p-payload", &mut || {
                timed(|| snow_in_memory(&libp2p.0, &libp2p.1))
            }),
            ("snow-xx-bare", &mut || {
                timed(|| snow_in_memory(&bare.0, &bare.1))
            }),
            ("osmoda-hybrid-xxhfs", &mut || {
                timed(|| osmoda_in_memory(&a, &b, t))
            }),
        ],
    );

    let mut group = c.benchmark_group("handshake/cpu");
    group
        .sample_size(50)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8));
    group.bench_function("snow-xx-bare", |bch| {
        bch.iter(|| snow_in_memory(&bare.0, &bare.1))
    });
    group.bench_function("snow-xx-libp2p-payload", |bch| {
        bch.iter(|| snow_in_memory(&libp2p.0, &libp2p.1))
    });
    group.bench_function("osmoda-hybrid-xxhfs", |bch| {
        bch.iter(|| osmoda_in_memory(&a, &b, t))
    });
    group.finish();
}

criterion_group!(benches, tcp, cpu);
criterion_main!(benches);
