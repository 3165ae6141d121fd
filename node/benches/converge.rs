//! Time for five real nodes on loopback to agree again after a partition.
//!
//! Each round: {n3, n4} stop while {n0, n1, n2} write K entries; then
//! {n0, n1, n2} stop while {n3, n4} write K entries; then {n0, n1, n2} come
//! back. Measured: from the moment the last returning node answers its API
//! until every node lists every entry (polled through the CLI, so the
//! resolution is that of one poll of five nodes, about 50 ms).
//!
//! `cargo bench -p osmoda-node --bench converge` (K and rounds from the
//! environment: CONVERGE_ENTRIES, CONVERGE_ROUNDS).

#[path = "../../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{fleet, Node};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn start(node: &mut Node, ports: &[u16], i: usize) {
    let listen = format!("/ip4/127.0.0.1/tcp/{}", ports[i]);
    let mut args = vec!["--no-mdns".to_string(), "--listen".into(), listen];
    for (_, port) in ports.iter().enumerate().filter(|(j, _)| *j != i) {
        args.push("--bootstrap".into());
        args.push(format!("/ip4/127.0.0.1/tcp/{port}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    node.start(&args);
}

fn count(node: &Node) -> usize {
    let out = node.cli(&["--json", "knowledge", "list", "--limit", "10000"]);
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|v| v["items"].as_array().map(Vec::len))
        .unwrap_or(0)
}

fn write(node: &Node, tag: &str, k: usize) {
    for i in 0..k {
        let title = format!("{tag} {i}");
        let out = node.cli(&["knowledge", "put", "--title", &title, "--body", "converge"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let k = env("CONVERGE_ENTRIES", 100);
    let rounds = env("CONVERGE_ROUNDS", 5);
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut nodes = fleet(tmp.path(), 5);
    let ports: Vec<u16> = (0..5).map(|_| free_port()).collect();
    for (i, node) in nodes.iter_mut().enumerate() {
        start(node, &ports, i);
    }
    let mut total = 0;
    let mut times = Vec::new();
    for round in 0..rounds {
        nodes[3].stop();
        nodes[4].stop();
        write(&nodes[0], &format!("r{round} side A"), k);
        for node in &mut nodes[..3] {
            node.stop();
        }
        for i in [3, 4] {
            start(&mut nodes[i], &ports, i);
        }
        write(&nodes[3], &format!("r{round} side B"), k);
        let launched = Instant::now();
        for (i, node) in nodes.iter_mut().enumerate().take(3) {
            start(node, &ports, i);
        }
        total += 2 * k;
        let healed = Instant::now();
        loop {
            if nodes.iter().all(|n| count(n) == total) {
                break;
            }
            assert!(
                healed.elapsed() < Duration::from_secs(120),
                "no convergence after two minutes"
            );
        }
        let (t, from_launch) = (healed.elapsed(), launched.elapsed());
        println!(
            "round {round}: {k}+{k} new entries, converged {t:?} after the last node was up, \
             {from_launch:?} after the first was launched"
        );
        times.push((t, from_launch));
    }
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    println!(
        "converge after heal, 5 nodes, {k}+{k} entries per round, {rounds} rounds: \
         median {:?} after the last node was up, {:?} after the first was launched",
        median(times.iter().map(|t| t.0).collect()),
        median(times.iter().map(|t| t.1).collect()),
    );
    for node in &mut nodes {
        node.stop();
    }
}
