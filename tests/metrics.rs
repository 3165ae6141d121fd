//! `GET /metrics` of real nodes, on the control socket and on
//! `metrics_listen`, read by Python's `prometheus_client` parsers (the
//! Prometheus text parser and the stricter OpenMetrics one): the counters
//! move when the node works. Skips with a reason when the package is
//! missing (`.ci/run` installs it).

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{call_as_agent, can_confine, fleet, free_port, wait_until, Node};
use serde_json::{json, Value};

/// Parses the text with both parsers and prints every sample as JSON.
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.openmetrics.parser import text_string_to_metric_families as strict
text = sys.stdin.read()
list(strict(text))
print(json.dumps([[s.name, s.labels, s.value]
                  for f in text_string_to_metric_families(text) for s in f.samples]))
"#;

fn have_parser() -> bool {
    let found = Command::new("python3")
        .args([
            "-c",
            "import prometheus_client.parser, prometheus_client.openmetrics.parser",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!(
            "skipped: Python's prometheus_client package is missing \
             (`python3 -m pip install prometheus-client`)"
        );
    }
    found
}

/// Samples by name and labels (`name{a="x",b="y"}`, labels sorted).
struct Samples(BTreeMap<String, f64>);

impl Samples {
    fn parse(text: &str) -> Self {
        let mut child = Command::new("python3")
            .args(["-c", PARSE])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("python3");
        assert!(
            out.status.success(),
            "the parsers refused the text: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows: Vec<(String, BTreeMap<String, String>, f64)> =
            serde_json::from_slice(&out.stdout).expect("parsed samples");
        Samples(
            rows.into_iter()
                .map(|(name, labels, value)| {
                    let labels: Vec<String> =
                        labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                    (format!("{name}{{{}}}", labels.join(",")), value)
                })
                .collect(),
        )
    }

    /// One sample; `labels` as `a="x"`, sorted by name.
    fn get(&self, name: &str, labels: &str) -> f64 {
        let key = format!("{name}{{{labels}}}");
        *self
            .0
            .get(&key)
            .unwrap_or_else(|| panic!("no sample {key} in {:#?}", self.0.keys()))
    }
}

/// `GET /metrics` over an already connected stream; the body's text, once
/// the media type is OpenMetrics.
fn get_metrics(mut stream: impl Read + Write) -> String {
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: osmoda\r\nconnection: close\r\n\r\n")
        .expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    body.to_string()
}

fn over_socket(node: &Node) -> Samples {
    let stream =
        std::os::unix::net::UnixStream::connect(node.dir.join("control.sock")).expect("connect");
    Samples::parse(&get_metrics(stream))
}

fn over_tcp(port: u16) -> Samples {
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    Samples::parse(&get_metrics(stream))
}

/// Puts `metrics_listen` before whatever `config.toml` holds (top-level
/// keys must come before any table).
fn listen_metrics(node: &Node, port: u16) {
    let path = node.dir.join("config.toml");
    let rest = std::fs::read_to_string(&path).unwrap_or_default();
    std::fs::write(
        &path,
        format!("metrics_listen = \"127.0.0.1:{port}\"\n{rest}"),
    )
    .expect("config.toml");
}

fn put(node: &Node, title: &str) {
    let out = node.cli(&["knowledge", "put", "--title", title, "--body", "pumps"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
}

#[test]
fn counters_move_when_the_node_works() {
    if !have_parser() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = fleet(tmp.path(), 2);
    let port = free_port();
    listen_metrics(&nodes[0], port);
    nodes[0].start_local(&[]);

    let before = over_socket(&nodes[0]);
    let tcp = "transport=\"tcp\"";
    let tcp_peers = "key_exchange=\"x25519_mlkem768_noise\",transport=\"tcp\"";
    assert_eq!(before.get("osmoda_peers", tcp_peers), 0.0);
    assert_eq!(before.get("osmoda_emergency", "flag=\"lockdown\""), 0.0);
    assert!(before.get("osmoda_store_bytes", "") > 0.0);
    let appends = before.get("osmoda_audit_appends_total", "");
    assert!(appends >= 1.0, "node.start is an audit entry");

    put(&nodes[0], "Pump 3");
    let bootstrap = nodes[0].addr("tcp");
    nodes[1].start_local(&[bootstrap]);

    // The second node connects, pulls the entry by sync, and both count.
    let mut after = over_tcp(port);
    let moved = wait_until(Duration::from_secs(60), || {
        after = over_tcp(port);
        let joiner = over_socket(&nodes[1]);
        after.get("osmoda_peers", tcp_peers) >= 1.0
            && joiner.get("osmoda_replication_disagreements_total", "") >= 1.0
            && joiner.get("osmoda_sync_rounds_total", "direction=\"sent\"") >= 1.0
            && after.get("osmoda_sync_rounds_total", "direction=\"received\"") >= 1.0
    });
    assert!(moved, "no connection and sync seen:\n{:#?}", after.0);
    assert!(after.get("osmoda_handshakes_accepted_total", tcp) >= 1.0);
    // knowledge.put at least; sync entries are written in the background.
    assert!(after.get("osmoda_audit_appends_total", "") >= appends + 1.0);
    assert!(
        after.get("osmoda_audit_fsync_seconds_count", "")
            >= after.get("osmoda_audit_appends_total", "")
    );
    assert!(after.get("osmoda_sync_bytes_total", "direction=\"received\"") > 0.0);
    assert_eq!(
        after.get("osmoda_changes_refused_total", "via=\"sync\""),
        0.0
    );
    assert_eq!(
        after.get(
            "osmoda_handshakes_refused_total",
            "reason=\"other_fleet\",transport=\"tcp\""
        ),
        0.0
    );

    // A write with a peer connected is gossiped on the documents' topic.
    let published = wait_until(Duration::from_secs(30), || {
        put(&nodes[0], "Pump 4");
        over_socket(&nodes[0]).get("osmoda_gossip_published_total", "topic=\"osmoda/docs/1\"")
            >= 1.0
    });
    assert!(published, "no gossip counted on osmoda/docs/1");

    if !can_confine() {
        return;
    }
    let out = nodes[0].cli(&[
        "agent",
        "add",
        "probe",
        "--",
        "/bin/sh",
        "-c",
        "exec sleep 600",
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let (status, answer) = call_as_agent(
        &nodes[0],
        "probe",
        "knowledge_search",
        json!({ "query": "pump" }),
    );
    assert_eq!(status, 200, "{answer}");
    let (status, _) = call_as_agent(&nodes[0], "probe", "no_such_tool", Value::Null);
    assert_eq!(status, 400);
    let with_agent = over_tcp(port);
    assert_eq!(
        with_agent.get(
            "osmoda_tool_calls_total",
            "outcome=\"ok\",tool=\"knowledge_search\""
        ),
        1.0
    );
    assert_eq!(
        with_agent.get(
            "osmoda_tool_calls_total",
            "outcome=\"failed\",tool=\"unknown\""
        ),
        1.0
    );
    assert_eq!(with_agent.get("osmoda_agents", "state=\"running\""), 1.0);
}

/// The figure in docs/benchmarks.md: `/metrics` over the control socket of
/// a node with three peers. Run with
/// `cargo test --release -p osmoda-node --test metrics -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn scrape_time() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = fleet(tmp.path(), 4);
    nodes[0].start_local(&[]);
    let bootstrap = nodes[0].addr("tcp");
    for node in &mut nodes[1..] {
        node.start_local(std::slice::from_ref(&bootstrap));
    }
    let peered = wait_until(Duration::from_secs(60), || nodes[0].peer_ids().len() >= 3);
    assert!(peered, "three peers did not connect");
    let path = nodes[0].dir.join("control.sock");
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..200 {
        let started = Instant::now();
        let stream = std::os::unix::net::UnixStream::connect(&path).expect("connect");
        bytes = get_metrics(stream).len();
        times.push(started.elapsed());
    }
    times.sort();
    println!(
        "/metrics over the control socket, 200 scrapes, 3 peers: median {:?}, p90 {:?}, max {:?}, {bytes} bytes",
        times[100], times[180], times[199]
    );
}
