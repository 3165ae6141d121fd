//! Agents as attackers: a ring-2 agent runs its own code (tests/scripts/
//! spy.py) and tries every way out of its confinement the threat model
//! names; a ring-1 agent's approved `host_exec` runs as that agent. Real
//! node, real processes, real sockets. Needs root, as the node does to
//! confine; prints why it skips otherwise.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{agent_ids, call_as_agent, can_confine, fleet, wait_until, Node};
use serde_json::json;

const SPY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/scripts/spy.py");

fn add(node: &Node, args: &[&str]) {
    let mut all = vec!["agent", "add"];
    all.extend_from_slice(args);
    let out = node.cli(&all);
    assert!(out.status.success(), "agent add: {}", common::stderr(&out));
}

fn tcp_port(node: &Node) -> u16 {
    let addr = node.addr("tcp");
    let port = addr.split("/tcp/").nth(1).expect("a tcp address");
    port.split('/').next().unwrap().parse().unwrap()
}

fn report(node: &Node, agent: &str) -> String {
    let path = node
        .dir
        .join("agents")
        .join(agent)
        .join("workspace/report.txt");
    let mut text = String::new();
    let done = wait_until(Duration::from_secs(60), || {
        text = std::fs::read_to_string(&path).unwrap_or_default();
        text.contains("DONE")
    });
    assert!(
        done,
        "the spy did not finish; its output:\n{}",
        node.cli(&["agent", "logs", agent]).stdout.escape_ascii()
    );
    text
}

#[test]
fn a_hostile_agent_gets_nowhere_and_the_node_keeps_serving() {
    if !can_confine() || !Path::new("/usr/bin/python3").exists() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut node = fleet(tmp.path(), 1).remove(0);
    node.start_local(&[]);
    let status = node.status();
    eprintln!(
        "limits: {} ({}); confinement: {}",
        status["agents"]["limit_mode"],
        status["agents"]["limit_reason"],
        status["agents"]["confinement"]
    );
    add(
        &node,
        &[
            "victim",
            "--ring",
            "1",
            "--env",
            "VICTIM_SECRET=hunter2",
            "--",
            "/bin/sh",
            "-c",
            "exec sleep 600",
        ],
    );
    let (victim_pid, victim_uid) = agent_ids(&node, "victim");
    let outside = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let data = node.dir.display().to_string();
    let env = |k: &str, v: String| format!("{k}={v}");
    let vars = [
        env("SPY_DATA", data.clone()),
        env("SPY_VICTIM_PID", victim_pid.to_string()),
        env("SPY_NODE_PORT", tcp_port(&node).to_string()),
        env(
            "SPY_OUTSIDE_PORT",
            outside.local_addr().unwrap().port().to_string(),
        ),
    ];
    // The resolved path: the agent sees the file where it really is, and
    // nothing of the `node/..` it is spelled with here.
    let spy = std::fs::canonicalize(SPY).unwrap();
    let spy = spy.to_str().unwrap();
    let mut args = vec!["spy", "--processes", "32", "--ro", spy];
    for v in &vars {
        args.extend(["--env", v]);
    }
    args.extend(["--", "/usr/bin/python3", spy]);
    add(&node, &args);
    let (_, spy_uid) = agent_ids(&node, "spy");
    let text = report(&node, "spy");
    eprintln!("{text}");

    let moves: Vec<&str> = text.lines().filter(|l| l.starts_with("MOVE ")).collect();
    assert_eq!(moves.len(), 19, "every move reported:\n{text}");
    for line in &moves {
        assert!(line.contains(": blocked"), "{line}");
    }
    assert!(
        text.contains("OWN_WRITE ok"),
        "its own workspace is writable:\n{text}"
    );
    let forks: u32 = text
        .lines()
        .find_map(|l| l.strip_prefix("FORKS "))
        .and_then(|n| n.parse().ok())
        .expect("a fork count");
    assert!(forks < 32, "{forks} processes under a limit of 32");
    assert!(
        text.contains(&format!("UID {spy_uid} GID {spy_uid}")),
        "the spy runs under its own ids ({spy_uid}):\n{text}"
    );
    assert_ne!(spy_uid, victim_uid, "two agents, two uids");
    assert_ne!(spy_uid, 0);

    // The victim was not touched and the node still serves.
    assert_eq!(
        agent_ids(&node, "victim").0,
        victim_pid,
        "the victim lives on"
    );
    assert!(node.status()["node_id"].is_string());
    let pending = node.json(&["approvals"]);
    assert_eq!(
        pending["pending"].as_array().map(Vec::len),
        Some(0),
        "{pending}"
    );
    node.stop();
}

#[test]
fn host_exec_runs_as_the_calling_agent_and_the_audit_names_it() {
    if !can_confine() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut node = fleet(tmp.path(), 1).remove(0);
    node.start_local(&[]);
    add(
        &node,
        &[
            "ops",
            "--ring",
            "1",
            "--",
            "/bin/sh",
            "-c",
            "exec sleep 600",
        ],
    );
    add(
        &node,
        &[
            "bystander",
            "--ring",
            "1",
            "--",
            "/bin/sh",
            "-c",
            "exec sleep 600",
        ],
    );
    let (_, ops_uid) = agent_ids(&node, "ops");

    // The call waits for the operator; approve it from another thread.
    let approver = {
        let dir = node.dir.clone();
        std::thread::spawn(move || {
            let node = Node::at(&dir);
            let mut id = None;
            wait_until(Duration::from_secs(30), || {
                let v = node.json(&["approvals"]);
                id = v["pending"][0]["id"].as_u64();
                id.is_some()
            });
            let id = id.expect("a pending approval").to_string();
            assert!(node.cli(&["approve", &id]).status.success());
        })
    };
    let (status, answer) = call_as_agent(
        &node,
        "ops",
        "host_exec",
        json!({ "command": "/bin/sh", "args": ["-c", "id -u; id -g; touch /etc/x 2>&1 || true"] }),
    );
    approver.join().unwrap();
    assert_eq!(status, 200, "{answer}");
    let stdout = answer["result"]["stdout"].as_str().unwrap_or_default();
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some(ops_uid.to_string().as_str()), "{answer}");
    assert_eq!(lines.next(), Some(ops_uid.to_string().as_str()), "{answer}");
    let all = format!("{stdout}{}", answer["result"]["stderr"]);
    assert!(
        all.contains("Read-only") || all.contains("Permission denied"),
        "{answer}"
    );

    let log = node.json(&["audit", "log", "--limit", "1000"])["entries"].clone();
    let entries = log.as_array().cloned().unwrap_or_default();
    let exec: Vec<_> = entries
        .iter()
        .filter(|e| e["action"] == "tool.host_exec")
        .collect();
    assert_eq!(exec.len(), 1, "{log}");
    assert_eq!(exec[0]["actor"], "agent:ops", "{log}");
    node.stop();
}

/// A node that cannot confine (here: not root) refuses to start an agent,
/// saying which layers are missing, unless the operator asked for
/// `--unconfined`, which the audit log records.
#[test]
fn without_privileges_an_agent_starts_only_when_explicitly_unconfined() {
    if !can_confine() {
        return;
    }
    use std::os::unix::process::CommandExt;
    const USER: u32 = 4242;
    let tmp = tempfile::tempdir().unwrap();
    let mut node = fleet(tmp.path(), 1).remove(0);
    // The node's data folder, handed to an ordinary user.
    let chown = std::process::Command::new("chown")
        .args(["-R", &format!("{USER}:{USER}")])
        .arg(tmp.path())
        .status()
        .unwrap();
    assert!(chown.success());
    let mut cmd = node.command(&["run", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"]);
    cmd.uid(USER).gid(USER);
    node.start_with(cmd);
    let status = node.status();
    let layers = status["agents"]["confinement"].to_string();
    assert!(
        layers.contains("missing"),
        "status names the missing layers: {layers}"
    );

    let out = node.cli(&[
        "agent",
        "add",
        "plain",
        "--",
        "/bin/sh",
        "-c",
        "exec sleep 600",
    ]);
    assert_eq!(out.status.code(), Some(6), "{}", common::stderr(&out));
    let said = common::stderr(&out);
    assert!(
        said.contains("cannot confine") && said.contains("--unconfined"),
        "{said}"
    );
    let list = node.json(&["agent", "list"]);
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(0),
        "a refused agent is not kept"
    );

    let out = node.cli(&[
        "agent",
        "add",
        "plain",
        "--unconfined",
        "--",
        "/bin/sh",
        "-c",
        "exec sleep 600",
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let shown = node.json(&["agent", "show", "plain"]);
    assert_eq!(shown["state"]["state"], "running", "{shown}");
    assert!(
        shown["uid"].is_null(),
        "it runs as the node's user: {shown}"
    );
    let log = node.json(&["audit", "log", "--limit", "1000"])["entries"]
        .clone()
        .to_string();
    assert!(
        log.contains("unconfined"),
        "the audit log records it: {log}"
    );
    node.stop();
}

/// A tiny HTTP server on the host's loopback answering `body` to every
/// request, until the test ends.
fn serve(body: &'static str) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = [0u8; 4096];
            let _ = stream.read(&mut head);
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    port
}

/// The egress proxy is the only way out: an ordinary client (Python's
/// urllib, through the HTTP_PROXY the node sets) reaches the allowed
/// port, gets 403 on the other, and cannot connect directly; each attempt
/// is in the audit log with its byte counts.
#[test]
fn egress_goes_only_where_the_allowlist_says_and_is_audited() {
    if !can_confine() || !Path::new("/usr/bin/python3").exists() {
        return;
    }
    let allowed = serve("allowed-answer");
    let other = serve("other-answer");
    let tmp = tempfile::tempdir().unwrap();
    let mut node = fleet(tmp.path(), 1).remove(0);
    node.start_local(&[]);
    let script = format!(
        r#"
import os, socket, urllib.request, urllib.error
out = []
def fetch(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{{port}}/", timeout=10) as r:
            return f"{{r.status}} {{r.read().decode()}}"
    except urllib.error.HTTPError as e:
        return f"{{e.code}} {{e.read().decode().strip()}}"
    except Exception as e:
        return f"error {{e}}"
out.append("ALLOWED " + fetch({allowed}))
out.append("OTHER " + fetch({other}))
try:
    socket.create_connection(("127.0.0.1", {allowed}), timeout=3)
    out.append("DIRECT connected")
except Exception as e:
    out.append(f"DIRECT refused {{e}}")
out.append("PROXY " + os.environ.get("HTTP_PROXY", "unset"))
open("egress.txt", "w").write("\n".join(out) + "\nDONE\n")
"#
    );
    let entry = format!("127.0.0.1:{allowed}");
    add(
        &node,
        &[
            "fetcher",
            "--allow",
            &entry,
            "--restart",
            "never",
            "--",
            "/usr/bin/python3",
            "-c",
            &script,
        ],
    );
    let path = node.dir.join("agents/fetcher/workspace/egress.txt");
    let mut text = String::new();
    let done = wait_until(Duration::from_secs(60), || {
        text = std::fs::read_to_string(&path).unwrap_or_default();
        text.contains("DONE")
    });
    assert!(done, "the fetcher did not finish: {text}");
    eprintln!("{text}");
    assert!(text.contains("ALLOWED 200 allowed-answer"), "{text}");
    assert!(text.contains("OTHER 403"), "{text}");
    assert!(text.contains("not in"), "the refusal says why: {text}");
    assert!(text.contains("DIRECT refused"), "{text}");
    assert!(text.contains("PROXY http://127.0.0.1:3128"), "{text}");

    let log = node.json(&["audit", "log", "--limit", "1000"])["entries"].clone();
    let egress: Vec<_> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "egress.connect")
        .collect();
    assert_eq!(egress.len(), 2, "one entry per attempt: {log}");
    let ok = egress
        .iter()
        .find(|e| e["target"] == entry.as_str())
        .expect("the allowed attempt");
    assert_eq!(ok["actor"], "agent:fetcher");
    assert_eq!(ok["outcome"], "ok");
    let details = ok["details"].as_str().unwrap();
    assert!(
        details.contains("up ") && details.contains("down "),
        "{details}"
    );
    assert!(!details.contains("down 0 B"), "bytes came back: {details}");
    let refused = egress
        .iter()
        .find(|e| e["target"] == format!("127.0.0.1:{other}").as_str())
        .expect("the refused attempt");
    assert_eq!(refused["outcome"], "denied", "{refused}");

    // A new entry takes effect for the running agent's next connection.
    let entry_other = format!("127.0.0.1:{other}");
    let out = node.cli(&["agent", "allow", "fetcher", &entry_other]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let shown = node.json(&["agent", "show", "fetcher"]);
    assert!(shown.to_string().contains(&entry_other), "{shown}");
    node.stop();
}
