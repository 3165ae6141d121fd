//! Gossip throughput between two in-process fabric nodes, and what an idle
//! node costs in memory and CPU.
//!
//! Not a criterion benchmark: it runs once and prints its figures.
//!
//! 1. Idle node: process RSS before starting one node and after it has
//!    idled (listening on TCP and QUIC, no peer, mDNS off) for
//!    `IDLE_SECS`, and the process CPU time over that idle window.
//! 2. Idle pair: a second node connects over TCP; RSS and CPU over another
//!    idle window, now with ping, gossipsub heartbeats and Kademlia running
//!    between them.
//! 3. Gossip: the second node broadcasts `MESSAGES` texts of 1 KiB
//!    (`FabricHandle::broadcast`, retried on backpressure) and the first
//!    counts them in its inbox; `ROUNDS` rounds.
//!
//! Run: `cargo bench -p osmoda-fabric --bench gossip`

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::credentials;
use futures::StreamExt;
use libp2p::Multiaddr;
use osmoda_fabric::proto::FleetRoot;
use osmoda_fabric::{Credentials, FabricConfig, FabricError, FabricHandle, Membership};
use rand::rngs::OsRng;

const IDLE_SECS: u64 = 10;
const MESSAGES: usize = 5000;
const MESSAGE_LEN: usize = 1024;
const ROUNDS: usize = 3;
/// Broadcasts in flight at once.
const IN_FLIGHT: usize = 32;
/// Retries of one broadcast (about 1 ms apart) before the run gives up.
const MAX_RETRIES: u64 = 20_000;
const ROUND_TIMEOUT: Duration = Duration::from_secs(180);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Resident set size of this process, in KiB (`VmRSS`, or `VmHWM` for the peak).
fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn rss_kib() -> u64 {
    proc_status_kib("VmRSS:").unwrap_or(0)
}

/// User plus system CPU time of the whole process.
fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage only writes a `rusage` through the pointer, which
    // points at one; an all-zero `rusage` is valid if it fails.
    let (rc, usage) = unsafe {
        let rc = libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        (rc, usage.assume_init())
    };
    if rc != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

struct Node {
    handle: FabricHandle,
    tcp: Multiaddr,
}

async fn start(credentials: Credentials, membership: Arc<Membership>) -> Node {
    let config = FabricConfig {
        listen: vec![
            "/ip4/127.0.0.1/tcp/0".parse().expect("tcp address"),
            "/ip4/127.0.0.1/udp/0/quic-v1"
                .parse()
                .expect("quic address"),
        ],
        mdns: false,
        inbox_capacity: 100_000,
        ..FabricConfig::default()
    };
    let (handle, mut events, _task) =
        osmoda_fabric::start(credentials, membership, config).expect("start node");
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    for _ in 0..100 {
        let listen = handle.status().await.expect("status").listen;
        if listen.len() >= 2 {
            let tcp = listen
                .iter()
                .find(|a| a.contains("/tcp/"))
                .expect("tcp listener")
                .parse()
                .expect("tcp address");
            return Node { handle, tcp };
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("node did not start listening");
}

async fn wait_for_peer(node: &Node) {
    for _ in 0..200 {
        if node.handle.peers().await.map(|p| p.len()).unwrap_or(0) == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nodes did not connect");
}

/// Idles for `IDLE_SECS`; returns the process CPU time spent meanwhile.
async fn idle() -> Duration {
    let cpu = cpu_time();
    tokio::time::sleep(Duration::from_secs(IDLE_SECS)).await;
    cpu_time().saturating_sub(cpu)
}

fn cpu_share(cpu: Duration) -> f64 {
    100.0 * cpu.as_secs_f64() / IDLE_SECS as f64
}

/// Broadcasts until the fabric takes the message; returns the retries.
async fn broadcast(handle: &FabricHandle, text: String) -> u64 {
    let mut retries = 0;
    loop {
        match handle.broadcast(text.clone()).await {
            Ok(()) => return retries,
            // No subscribed peer yet, or gossipsub's queue for the peer is full.
            Err(e @ (FabricError::NoPeers | FabricError::Publish(_))) => {
                retries += 1;
                assert!(retries < MAX_RETRIES, "broadcast still refused: {e}");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(e) => panic!("broadcast failed: {e}"),
        }
    }
}

fn text(round: usize, i: usize) -> String {
    let mut text = format!("bench-{round}-{i:06}-");
    text.extend(std::iter::repeat_n('x', MESSAGE_LEN - text.len()));
    text
}

struct Round {
    received: usize,
    /// First broadcast handed to the fabric to last message in the inbox.
    elapsed: Duration,
    /// Time for all broadcasts to be accepted by the sending fabric.
    publish: Duration,
    retries: u64,
    latency_p50_ms: u64,
    latency_p99_ms: u64,
    cpu: Duration,
}

async fn round(sender: &Node, receiver: &Node, round: usize) -> Round {
    let prefix = format!("bench-{round}-");
    let cpu = cpu_time();
    let start_ms = now_ms();
    let start = Instant::now();
    let retries: u64 = futures::stream::iter(0..MESSAGES)
        .map(|i| broadcast(&sender.handle, text(round, i)))
        .buffer_unordered(IN_FLIGHT)
        .fold(0, |acc, r| async move { acc + r })
        .await;
    let publish = start.elapsed();

    let mut entries = Vec::new();
    while start.elapsed() < ROUND_TIMEOUT {
        entries = receiver.handle.inbox();
        entries.retain(|e| e.text.starts_with(&prefix));
        if entries.len() >= MESSAGES {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu = cpu_time().saturating_sub(cpu);
    let last_ms = entries
        .iter()
        .map(|e| e.received_at_ms)
        .max()
        .unwrap_or(start_ms);
    let mut latencies: Vec<u64> = entries
        .iter()
        .map(|e| e.received_at_ms.saturating_sub(e.sent_at_ms))
        .collect();
    latencies.sort_unstable();
    let pct = |p: usize| {
        latencies
            .get((latencies.len() * p / 100).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    Round {
        received: entries.len(),
        elapsed: Duration::from_millis(last_ms.saturating_sub(start_ms).max(1)),
        publish,
        retries,
        latency_p50_ms: pct(50),
        latency_p99_ms: pct(99),
        cpu,
    }
}

async fn run() {
    let root = FleetRoot::generate(&mut OsRng);
    let (ca, cb) = (credentials(&root, "a"), credentials(&root, "b"));

    // 1. One idle node.
    let rss_before = rss_kib();
    let a = start(ca, Membership::new(root.public())).await;
    let cpu_one = idle().await;
    let rss_one = rss_kib();
    println!("== idle node (alone, listening on TCP and QUIC, mDNS off) ==");
    println!(
        "RSS: {rss_before} KiB before start, {rss_one} KiB after {IDLE_SECS} s idle: +{} KiB",
        rss_one.saturating_sub(rss_before)
    );
    println!(
        "CPU over {IDLE_SECS} s idle: {:.1} ms ({:.3} % of one core)",
        cpu_one.as_secs_f64() * 1e3,
        cpu_share(cpu_one)
    );

    // 2. An idle pair.
    let b = start(cb, Membership::new(root.public())).await;
    b.handle.dial(a.tcp.clone()).await.expect("dial");
    wait_for_peer(&a).await;
    wait_for_peer(&b).await;
    let rss_two_start = rss_kib();
    let cpu_two = idle().await;
    let rss_two = rss_kib();
    println!("== idle pair (two nodes in this process, connected over TCP) ==");
    println!(
        "RSS: {rss_two_start} KiB right after connecting, {rss_two} KiB after {IDLE_SECS} s idle \
         (+{} KiB over the single idle node)",
        rss_two.saturating_sub(rss_one)
    );
    println!(
        "CPU over {IDLE_SECS} s idle, both nodes: {:.1} ms ({:.3} % of one core), {:.1} ms per node",
        cpu_two.as_secs_f64() * 1e3,
        cpu_share(cpu_two),
        cpu_two.as_secs_f64() * 1e3 / 2.0
    );

    // 3. Gossip from b to a. A first message makes sure the mesh is up.
    let warmup = Instant::now();
    broadcast(&b.handle, "warm-up".to_string()).await;
    while !a.handle.inbox().iter().any(|e| e.text == "warm-up") {
        assert!(warmup.elapsed() < ROUND_TIMEOUT, "warm-up broadcast lost");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "== gossip: {MESSAGES} broadcasts of {MESSAGE_LEN} B text, {IN_FLIGHT} in flight, b -> a =="
    );
    let mut rates = Vec::new();
    for r in 0..ROUNDS {
        let res = round(&b, &a, r).await;
        let rate = res.received as f64 / res.elapsed.as_secs_f64();
        rates.push(rate);
        println!(
            "round {r}: {}/{MESSAGES} received in {:.3} s: {rate:.0} msg/s ({:.2} MiB/s of text); \
             publish side done in {:.3} s with {} retries; latency p50 {} ms, p99 {} ms; \
             process CPU {:.2} s ({:.0} us per message)",
            res.received,
            res.elapsed.as_secs_f64(),
            rate * MESSAGE_LEN as f64 / (1024.0 * 1024.0),
            res.publish.as_secs_f64(),
            res.retries,
            res.latency_p50_ms,
            res.latency_p99_ms,
            res.cpu.as_secs_f64(),
            res.cpu.as_secs_f64() * 1e6 / res.received.max(1) as f64,
        );
    }
    rates.sort_by(f64::total_cmp);
    println!("median: {:.0} msg/s", rates[rates.len() / 2]);
    println!(
        "RSS after gossip: {} KiB (peak {} KiB)",
        rss_kib(),
        proc_status_kib("VmHWM:").unwrap_or(0)
    );

    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

fn main() {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "tokio: multi-threaded runtime, 2 workers; {} CPUs online",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    rt.block_on(run());
}
