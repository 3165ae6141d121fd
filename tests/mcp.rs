//! The node's tools over MCP, end to end: an rmcp client starts `osmoda mcp
//! --agent NAME` as a child process under a live agent's uid (as the
//! agent's own MCP client does inside it), and every gate of the node
//! shows through it (rings, approvals, workspace confinement, argument
//! checks, the audit log).

mod common;
#[path = "common/mcp_client.rs"]
mod mcp_client;

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{fleet, wait_until, Node, BIN};
use mcp_client::{call, connect, ok, refused, text};
use rmcp::model::ErrorCode;
use rmcp::service::ServiceError;
use rmcp::transport::TokioChildProcess;
use rmcp::ServiceExt;
use serde_json::{json, Value};

/// Runs a CLI command from inside the async test without stalling the
/// runtime (the MCP clients' tasks go on meanwhile).
fn cli(node: &Node, args: &[&str]) -> Output {
    tokio::task::block_in_place(|| node.cli(args))
}

fn cli_json(node: &Node, args: &[&str]) -> Value {
    tokio::task::block_in_place(|| node.json(args))
}

fn add_agent(node: &Node, name: &str, ring: &str) {
    let out = cli(
        node,
        &[
            "agent",
            "add",
            name,
            "--ring",
            ring,
            "--",
            "/bin/sh",
            "-c",
            "env > env.txt; exec sleep 600",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn workspace(node: &Node, name: &str) -> PathBuf {
    node.dir.join("agents").join(name).join("workspace")
}

/// Waits for the one pending approval of `agent` and returns its id.
fn pending_id(node: &Node, agent: &str) -> u64 {
    let mut id = None;
    let seen = wait_until(Duration::from_secs(30), || {
        let v = cli_json(node, &["approvals"]);
        id = v["pending"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["agent"] == agent)
            .and_then(|p| p["id"].as_u64());
        id.is_some()
    });
    assert!(seen, "no pending approval for {agent}");
    id.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_over_mcp_pass_the_nodes_gates() {
    if !common::can_confine() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut node = fleet(tmp.path(), 1).remove(0);
    tokio::task::block_in_place(|| node.start_local(&[]));
    add_agent(&node, "low", "2");
    add_agent(&node, "high", "1");
    let low = connect(&node, "low").await;
    let high = connect(&node, "high").await;

    let listed = low.list_all_tools().await.expect("list tools");
    assert_eq!(listed.len(), osmoda_mcpd::tools().len());

    // Ring 1 tools: refused to ring 2, waiting for the operator on ring 1.
    let put = json!({ "title": "runbook", "body": "restart the thing", "tags": ["ops"] });
    let message = refused(&low, call("knowledge_put", put.clone())).await;
    assert!(
        message.contains("refused") && message.contains("ring 2"),
        "{message}"
    );

    let peer = high.peer().clone();
    let waiting = tokio::spawn({
        let put = put.clone();
        async move { peer.call_tool(call("knowledge_put", put)).await }
    });
    let id = pending_id(&node, "high");
    assert!(!waiting.is_finished(), "the call did not wait");
    let out = cli(&node, &["approve", &id.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result = waiting.await.unwrap().expect("approved call");
    assert_ne!(result.is_error, Some(true), "{}", text(&result));
    let entry_id = result.structured_content.unwrap()["id"]
        .as_str()
        .expect("an id")
        .to_string();
    let shown = cli_json(&node, &["knowledge", "get", &entry_id]);
    assert_eq!(shown["actor"], "agent:high", "{shown}");

    let peer = high.peer().clone();
    let waiting = tokio::spawn(async move {
        peer.call_tool(call("knowledge_put", json!({ "title": "second" })))
            .await
    });
    let id = pending_id(&node, "high");
    assert!(cli(&node, &["deny", &id.to_string()]).status.success());
    let result = waiting.await.unwrap().expect("denied call");
    assert_eq!(result.is_error, Some(true));
    assert!(text(&result).contains("denied"), "{}", text(&result));

    // A waiting call the client gives up on leaves the operator's list.
    let peer = high.peer().clone();
    let waiting = tokio::spawn(async move {
        peer.call_tool(call("mesh_broadcast", json!({ "text": "hi" })))
            .await
    });
    pending_id(&node, "high");
    waiting.abort();
    let withdrawn = tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(30), || {
            cli_json(&node, &["approvals"])["pending"]
                .as_array()
                .is_some_and(|p| p.is_empty())
        })
    });
    assert!(withdrawn, "the abandoned call is still pending");

    // Ring 2 reads the entry ring 1 wrote.
    let got = ok(&low, call("knowledge_get", json!({ "id": entry_id }))).await;
    assert_eq!(got["title"], "runbook");
    // A missing entry is the same kind of error here as on the control
    // API (404 `not_found`, exit code 5 in the CLI).
    let missing = low
        .call_tool(call("knowledge_get", json!({ "id": "no-such-entry" })))
        .await
        .expect("call");
    assert_eq!(missing.is_error, Some(true));
    let content = missing.structured_content.unwrap_or_default();
    assert_eq!(content["kind"], "not_found", "{content}");
    let cli_missing = cli(&node, &["knowledge", "get", "no-such-entry"]);
    assert_eq!(cli_missing.status.code(), Some(5));

    // Files stay inside the workspace.
    let note = json!({ "path": "notes/a.txt", "content": "hello from low" });
    ok(&low, call("file_write", note)).await;
    let read = ok(&low, call("file_read", json!({ "path": "notes/a.txt" }))).await;
    assert_eq!(read["content"], "hello from low");
    let on_disk = std::fs::read_to_string(workspace(&node, "low").join("notes/a.txt")).unwrap();
    assert_eq!(on_disk, "hello from low");
    // Written with the agent's own file permissions: the file and the
    // folder made for it are the agent's.
    let (_, low_uid) = tokio::task::block_in_place(|| common::agent_ids(&node, "low"));
    for made in ["notes", "notes/a.txt"] {
        let meta = std::fs::metadata(workspace(&node, "low").join(made)).unwrap();
        assert_eq!(
            std::os::unix::fs::MetadataExt::uid(&meta),
            low_uid,
            "{made}"
        );
    }
    for path in ["../../identity.key", "/etc/passwd"] {
        let message = refused(&low, call("file_read", json!({ "path": path }))).await;
        assert!(message.contains("refused"), "{path}: {message}");
    }
    std::os::unix::fs::symlink(
        node.dir.join("identity.key"),
        workspace(&node, "low").join("key"),
    )
    .unwrap();
    let message = refused(&low, call("file_read", json!({ "path": "key" }))).await;
    assert!(
        message.contains("refused") && message.contains("link"),
        "{message}"
    );

    // Arguments that do not fit are a protocol error, never forwarded.
    match low
        .call_tool(call("knowledge_get", json!({ "id": 5 })))
        .await
    {
        Err(ServiceError::McpError(e)) => {
            assert_eq!(e.code, ErrorCode::INVALID_PARAMS);
            assert!(e.message.contains("id"), "{}", e.message);
        }
        other => panic!("expected an MCP error, got {other:?}"),
    }

    // Latency of a small read through the whole path.
    let mut times = Vec::with_capacity(200);
    for _ in 0..200 {
        let started = Instant::now();
        ok(&low, call("knowledge_get", json!({ "id": entry_id }))).await;
        times.push(started.elapsed());
    }
    times.sort();
    eprintln!(
        "knowledge_get over MCP, 200 calls: median {:?}, p99 {:?}, max {:?}",
        times[100], times[197], times[199]
    );

    // Every call that reached the node is in the audit log, by agent.
    let log = cli_json(&node, &["audit", "log", "--limit", "4096"])["entries"].clone();
    let calls = |agent: &str| -> Vec<Value> {
        log.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["actor"] == format!("agent:{agent}"))
            .cloned()
            .collect()
    };
    let low_calls = calls("low");
    // put, 2 gets, write, read, 3 refused reads, 200 gets.
    assert_eq!(low_calls.len(), 208, "{low_calls:?}");
    assert_eq!(low_calls[0]["action"], "tool.knowledge_put");
    assert_eq!(low_calls[0]["outcome"], "denied");
    let high_calls = calls("high");
    // Approved, denied, withdrawn (audited when the caller went away).
    assert_eq!(high_calls.len(), 3, "{high_calls:?}");
    assert_eq!(high_calls[0]["outcome"], "ok");
    assert!(high_calls[0]["details"]
        .as_str()
        .unwrap()
        .contains("approved"));
    assert_eq!(high_calls[1]["outcome"], "denied");
    assert!(low_calls.iter().all(|e| e["ring"] == 2));
    assert!(high_calls.iter().all(|e| e["ring"] == 1));

    low.cancel().await.expect("close");
    high.cancel().await.expect("close");
    tokio::task::block_in_place(|| node.stop());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_is_no_agent_gets_nothing() {
    if !common::can_confine() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut node = fleet(tmp.path(), 1).remove(0);
    tokio::task::block_in_place(|| node.start_local(&[]));
    add_agent(&node, "real", "1");
    // The node's own user, outside every agent: what a process that read
    // an agent's name and socket path from anywhere would be.
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("--data")
        .arg(&node.dir)
        .args(["mcp", "--agent", "real"])
        .env_remove("OSMODA_DATA");
    let client = ().serve(TokioChildProcess::new(cmd).unwrap()).await.unwrap();
    let result = client
        .call_tool(call("kv_set", json!({ "key": "k", "value": "v" })))
        .await
        .expect("an answer");
    assert_eq!(result.is_error, Some(true));
    assert!(
        text(&result).contains("not a running agent"),
        "{}",
        text(&result)
    );
    // Nothing was recorded for it: the socket is open to every local user.
    let log = cli_json(&node, &["audit", "log", "--limit", "1000"])["entries"].clone();
    assert!(
        !log.to_string().contains("tool.kv_set"),
        "a stranger's call reached the audit log"
    );
    client.cancel().await.unwrap();
    tokio::task::block_in_place(|| node.stop());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_advance_approvals_and_the_agents_own_state() {
    if !common::can_confine() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut node = fleet(tmp.path(), 1).remove(0);
    tokio::task::block_in_place(|| node.start_local(&[]));
    add_agent(&node, "low", "2");
    add_agent(&node, "high", "1");
    let low = connect(&node, "low").await;
    let high = connect(&node, "high").await;

    // Asking in advance: ring 2 may not; ring 1 gets an id to follow.
    let ask =
        json!({ "tool": "mesh_broadcast", "arguments": { "text": "hello" }, "reason": "greet" });
    let message = refused(&low, call("approval_request", ask.clone())).await;
    assert!(message.contains("refused"), "{message}");
    let asked = ok(&high, call("approval_request", ask)).await;
    let request_id = asked["request_id"].as_str().unwrap().to_string();
    let status = json!({ "request_id": request_id });
    let st = ok(&high, call("approval_status", status.clone())).await;
    assert_eq!(st["status"], "pending");
    refused(&low, call("approval_status", status.clone())).await;
    assert!(cli(&node, &["approve", &request_id]).status.success());
    let st = ok(&high, call("approval_status", status)).await;
    assert_eq!(st["status"], "approved");
    // The approved call goes through at once (and fails: no peer to hear it).
    let result = high
        .call_tool(call("mesh_broadcast", json!({ "text": "hello" })))
        .await
        .expect("call");
    assert_eq!(result.is_error, Some(true));
    assert!(text(&result).contains("503"), "{}", text(&result));

    // host_exec: approved once with a standing grant, then no more waiting.
    let peer = high.peer().clone();
    let first = tokio::spawn(async move {
        peer.call_tool(call("host_exec", json!({ "command": "pwd" })))
            .await
    });
    let id = pending_id(&node, "high");
    let out = cli(&node, &["approve", &id.to_string(), "--grant", "1h"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result = first.await.unwrap().expect("host_exec");
    let pwd = result.structured_content.unwrap();
    let ws = workspace(&node, "high").canonicalize().unwrap();
    assert_eq!(pwd["stdout"].as_str().unwrap().trim(), ws.to_str().unwrap());
    assert_eq!(pwd["exit_code"], 0);
    let slow = json!({ "command": "/bin/sh", "args": ["-c", "echo started; exec sleep 30"], "timeout_secs": 1 });
    let started = Instant::now();
    let r = ok(&high, call("host_exec", slow)).await;
    assert_eq!(r["timed_out"], true, "{r}");
    assert_eq!(r["stdout"], "started\n");
    assert!(started.elapsed() < Duration::from_secs(10));
    let big = json!({ "command": "head", "args": ["-c", "100000", "/dev/zero"] });
    let r = ok(&high, call("host_exec", big)).await;
    assert_eq!(r["stdout_bytes"], 100_000);
    assert_eq!(r["stdout_truncated"], true);

    // Each agent's key-value space is its own; messages land in the inbox.
    ok(
        &low,
        call("kv_set", json!({ "key": "colour", "value": "blue" })),
    )
    .await;
    let got = ok(&low, call("kv_get", json!({ "key": "colour" }))).await;
    assert_eq!(got["value"], "blue");
    let other = ok(&high, call("kv_get", json!({ "key": "colour" }))).await;
    assert_eq!(other["found"], false);
    let text_to_low = json!({ "agent": "low", "text": "hi low" });
    ok(&high, call("agent_message", text_to_low)).await;
    let nobody = json!({ "agent": "nobody", "text": "hi" });
    refused(&high, call("agent_message", nobody)).await;
    let inbox = ok(&low, call("kv_list", json!({ "prefix": "inbox/" }))).await;
    let keys = inbox["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{inbox}");
    assert!(keys[0].as_str().unwrap().ends_with("-high"), "{inbox}");
    let msg = ok(&low, call("kv_get", json!({ "key": keys[0] }))).await;
    assert_eq!(msg["value"], "hi low");
    let all = ok(&low, call("kv_list", json!({}))).await;
    assert_eq!(all["keys"].as_array().unwrap().len(), 2, "{all}");
    let gone = ok(&low, call("kv_delete", json!({ "key": "colour" }))).await;
    assert_eq!(gone["deleted"], true);

    let me = ok(&low, call("agent_status", json!({}))).await;
    assert_eq!(me["name"], "low");
    assert_eq!(me["ring"], 2);
    assert_eq!(me["status"]["state"]["state"], "running");

    let log = cli_json(&node, &["audit", "log", "--limit", "4096"])["entries"].clone();
    let details: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "agent:high" && e["action"] == "tool.host_exec")
        .map(|e| e["details"].as_str().unwrap())
        .collect();
    assert_eq!(details.len(), 3, "{details:?}");
    assert!(details[0].starts_with("approved"), "{details:?}");
    assert!(details[1].starts_with("granted"), "{details:?}");

    low.cancel().await.expect("close");
    high.cancel().await.expect("close");
    tokio::task::block_in_place(|| node.stop());
}
