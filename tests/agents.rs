//! Agents run by real `osmoda run` processes: restarts after crashes,
//! workspaces kept across stop and start, the emergency commands (stop,
//! freeze, resume, lockdown, unlock), lockdown surviving a node restart,
//! and memory limits.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{fleet, wait_until, Node};
use serde_json::{json, Value};

/// One running node of its own fleet.
fn node(tmp: &Path) -> Node {
    let mut nodes = fleet(tmp, 1);
    let mut node = nodes.remove(0);
    node.start_local(&[]);
    node
}

fn add(node: &Node, name: &str, extra: &[&str], script: &str) {
    let mut args = vec!["agent", "add", name];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "/bin/sh", "-c", script]);
    let out = node.cli(&args);
    assert!(
        out.status.success(),
        "agent add {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn show(node: &Node, name: &str) -> Value {
    node.json(&["agent", "show", name])
}

fn state(node: &Node, name: &str) -> String {
    show(node, name)["state"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn wait_state(node: &Node, name: &str, want: &str) {
    let reached = wait_until(Duration::from_secs(30), || state(node, name) == want);
    assert!(
        reached,
        "agent {name} never reached {want}: {}",
        show(node, name)
    );
}

fn workspace(node: &Node, name: &str) -> PathBuf {
    node.dir.join("agents").join(name).join("workspace")
}

/// A raw HTTP/1.1 request on a Unix socket: (status, JSON body).
fn http(socket: &Path, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let mut stream = UnixStream::connect(socket).expect("connect");
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    // One write: a server that answers before reading a body it does not
    // want would otherwise break the pipe under a second one.
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: osmoda\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn emergency_state(node: &Node) -> Value {
    let (status, v) = http(
        &node.dir.join("control.sock"),
        "GET",
        "/v1/emergency",
        &Value::Null,
    );
    assert_eq!(status, 200, "{v}");
    v
}

#[test]
fn a_crashing_agent_is_restarted() {
    let tmp = tempfile::tempdir().unwrap();
    let node = node(tmp.path());
    add(&node, "crashy", &[], "echo up; exit 1");
    let restarted = wait_until(Duration::from_secs(30), || {
        show(&node, "crashy")["restarts"].as_u64().unwrap_or(0) >= 2
    });
    assert!(restarted, "{}", show(&node, "crashy"));
    let v = show(&node, "crashy");
    assert_eq!(v["last_exit"]["code"], 1, "{v}");
    let logs = node.json(&["agent", "logs", "crashy"]);
    assert!(logs.to_string().contains("up"), "{logs}");
}

#[test]
fn a_workspace_survives_stop_and_start() {
    let tmp = tempfile::tempdir().unwrap();
    let node = node(tmp.path());
    // First run writes the note; a later run finds it and says so.
    let script = r#"cd "$OSMODA_AGENT_WORKSPACE" || exit 3
        if [ -f note.txt ]; then cp note.txt found.txt; else echo hello > note.txt; fi
        exec sleep 600"#;
    add(&node, "keeper", &[], script);
    let ws = workspace(&node, "keeper");
    // A file appears before its bytes: wait for the content.
    let holds = |name: &str| std::fs::read_to_string(ws.join(name)).is_ok_and(|t| t == "hello\n");
    assert!(wait_until(Duration::from_secs(30), || holds("note.txt")));
    assert!(!ws.join("found.txt").exists());
    let out = node.cli(&["agent", "stop", "keeper"]);
    assert!(out.status.success());
    assert_eq!(state(&node, "keeper"), "stopped");
    let out = node.cli(&["agent", "start", "keeper"]);
    assert!(out.status.success());
    assert!(
        wait_until(Duration::from_secs(30), || holds("found.txt")),
        "the second run did not find its note"
    );
}

#[test]
fn stop_freeze_and_resume_act_on_every_agent() {
    let tmp = tempfile::tempdir().unwrap();
    let node = node(tmp.path());
    add(&node, "one", &[], "exec sleep 600");
    add(&node, "two", &[], "exec sleep 600");
    wait_state(&node, "one", "running");
    wait_state(&node, "two", "running");

    assert!(node.cli(&["freeze"]).status.success());
    assert_eq!(state(&node, "one"), "frozen");
    assert_eq!(state(&node, "two"), "frozen");
    assert!(node.cli(&["resume"]).status.success());
    assert_eq!(state(&node, "one"), "running");
    assert_eq!(state(&node, "two"), "running");

    assert!(node.cli(&["stop"]).status.success());
    wait_state(&node, "one", "stopped");
    wait_state(&node, "two", "stopped");
    // The node itself goes on serving.
    assert!(node.status()["node_id"].is_string());
    let actions = node.json(&["audit", "log", "--limit", "1000"])["entries"]
        .clone()
        .to_string();
    for kind in ["freeze", "resume", "stop"] {
        assert!(actions.contains(&format!("emergency.{kind}")), "{kind}");
    }
}

#[test]
fn lockdown_kills_refuses_and_survives_a_restart() {
    if !common::can_confine() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut node = node(tmp.path());
    add(
        &node,
        "locked",
        &["--ring", "1"],
        "env > env.txt; exec sleep 600",
    );
    // A connection the agent opened before the lockdown, kept open: it
    // still speaks for a uid whose agent is gone.
    let (_, uid) = common::agent_ids(&node, "locked");
    let socket = common::agent_socket(&node, "locked");
    let mut stream = common::connect_as(uid, &socket).expect("connect as the agent");
    let call = json!({ "tool": "kv_set", "arguments": { "key": "k", "value": "v" } });
    let (status, v) = common::request(&mut stream, "POST", "/v1/agent/call", &call);
    assert_eq!(status, 200, "before the lockdown: {v}");

    assert!(node.cli(&["lockdown"]).status.success());
    assert_ne!(state(&node, "locked"), "running");
    let (status, v) = common::request(&mut stream, "POST", "/v1/agent/call", &call);
    assert_eq!(status, 403, "{v}");
    assert!(v["error"].as_str().unwrap().contains("locked down"), "{v}");
    let out = node.cli(&["agent", "start", "locked"]);
    assert_eq!(out.status.code(), Some(4), "agent start under lockdown");

    // Across a restart: still locked, the agent not started.
    node.stop();
    node.start_local(&[]);
    assert_eq!(emergency_state(&node)["lockdown"], true);
    let agents = node.json(&["agent", "list"]);
    for a in agents.as_array().unwrap() {
        assert_eq!(a["state"]["state"], "stopped", "{a}");
    }
    assert_eq!(
        node.cli(&["agent", "start", "locked"]).status.code(),
        Some(4)
    );

    // The fleet creator holds the root key, so it may lift the lockdown.
    let out = node.cli(&["unlock"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(emergency_state(&node)["lockdown"], false);
    assert!(node.cli(&["agent", "start", "locked"]).status.success());
    wait_state(&node, "locked", "running");
}

#[test]
fn an_agent_over_its_memory_limit_is_stopped() {
    let python = ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(python) = python else {
        eprintln!("skipped: no python3 in /usr/bin or /usr/local/bin");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let node = node(tmp.path());
    let out = node.cli(&[
        "agent",
        "add",
        "hungry",
        "--memory",
        "64M",
        "--restart",
        "never",
        "--",
        python,
        "-c",
        "import time; b = bytearray(256 * 1024 * 1024); time.sleep(600)",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A cgroup (v2 or v1) kills it (an OOM kill); under rlimits the
    // allocation fails and python exits with an error. Either way it does
    // not live on.
    let ended = wait_until(Duration::from_secs(30), || {
        let v = show(&node, "hungry");
        v["oom_kills"].as_u64().unwrap_or(0) > 0
            || matches!(
                v["state"]["state"].as_str(),
                Some("exited") | Some("failed")
            )
    });
    let v = show(&node, "hungry");
    assert!(ended, "{v}");
    assert_ne!(v["last_exit"], json!({ "kind": "code", "code": 0 }), "{v}");
    eprintln!("memory limit by {}: {}", v["limit_mode"], v["last_exit"]);
}

#[test]
fn an_operators_stop_holds_across_restarts_and_a_broken_agent_is_not_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = node(tmp.path());
    add(&node, "kept", &["--restart", "always"], "exec sleep 600");
    add(&node, "held", &[], "exec sleep 600");
    wait_state(&node, "held", "running");
    assert!(node.cli(&["agent", "stop", "held"]).status.success());
    assert_eq!(show(&node, "held")["held"], true);

    node.stop();
    node.start_local(&[]);
    wait_state(&node, "kept", "running");
    assert_eq!(state(&node, "held"), "stopped", "a stopped agent came back");
    let status = node.status();
    assert_eq!(status["agents"]["held_down"], json!(["held"]), "{status}");
    assert!(node.cli(&["agent", "start", "held"]).status.success());
    wait_state(&node, "held", "running");
    assert_eq!(show(&node, "held")["held"], false);

    // A command that cannot run is refused and not kept: the corrected
    // definition under the same name is accepted.
    let out = node.cli(&["agent", "add", "typo", "--", "/nonexistent/agent"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/agent"));
    let names: Vec<String> = node
        .json(&["agent", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["spec"]["name"].as_str().unwrap().to_string())
        .collect();
    assert!(!names.contains(&"typo".to_string()), "{names:?}");
    add(&node, "typo", &[], "exec sleep 600");
    wait_state(&node, "typo", "running");

    // Logs of an agent that does not exist: an error, not silence.
    let out = node.cli(&["agent", "logs", "nobody"]);
    assert_eq!(out.status.code(), Some(5));
}

#[test]
fn after_an_unlock_restart_always_agents_run_and_the_others_say_they_are_held() {
    let tmp = tempfile::tempdir().unwrap();
    let node = node(tmp.path());
    add(&node, "always", &["--restart", "always"], "exec sleep 600");
    add(&node, "once", &["--restart", "never"], "exec sleep 600");
    wait_state(&node, "always", "running");
    wait_state(&node, "once", "running");
    // Nothing to lift yet: no agent is touched.
    let idle = node.json(&["unlock"]);
    assert!(
        idle["here"].as_str().unwrap().contains("not locked down"),
        "{idle}"
    );
    assert_eq!(show(&node, "once")["held"], false);

    assert!(node.cli(&["lockdown"]).status.success());
    wait_state(&node, "always", "stopped");
    // Added under the lockdown: kept, started with the others after it.
    add(&node, "late", &["--restart", "always"], "exec sleep 600");
    assert_eq!(state(&node, "late"), "stopped");
    let unlock = node.json(&["unlock"]);
    let here = unlock["here"].as_str().unwrap();
    assert!(
        here.contains("2 agent(s) with restart=always started"),
        "{here}"
    );
    assert!(here.contains("once"), "{here}");
    wait_state(&node, "always", "running");
    wait_state(&node, "late", "running");
    assert_eq!(state(&node, "once"), "stopped");
    assert_eq!(show(&node, "once")["held"], true);
    assert_eq!(node.status()["agents"]["held_down"], json!(["once"]));
    let text = node.cli(&["status"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("stay stopped until started: once"));
}
