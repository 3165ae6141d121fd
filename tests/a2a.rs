//! The A2A front against the official A2A Python SDK (`pip install
//! a2a-sdk`, done by `.ci/run`): a real node with a confined agent that
//! works its tasks through MCP; the SDK's client fetches the agent's
//! card, sends a message, streams the task to completion, reads it back,
//! cancels a second task, and is refused with a wrong token. The task went through the same
//! service method as `osmoda task submit`: the audit log names the
//! client.

mod common;
#[path = "common/mcp_client.rs"]
mod mcp_client;

use std::process::Stdio;
use std::time::Duration;

use common::{fleet, free_port, wait_until, Node};
use mcp_client::{call, ok, Client};
use rmcp::transport::TokioChildProcess;
use rmcp::ServiceExt;
use serde_json::{json, Value};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/scripts/a2a_client.py"
);
const TOKEN: &str = "a2a-test-token-0123456789abcdef";

fn python_has_a2a() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import a2a.client, a2a.types, httpx"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The first task in the agent's inbox, once there is one.
async fn first_task(client: &Client) -> Value {
    for _ in 0..600 {
        let inbox = ok(client, call("task_inbox", json!({}))).await;
        if let Some(task) = inbox["tasks"].as_array().and_then(|t| t.first()) {
            return task.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no task reached the agent's inbox");
}

fn start(node: &mut Node, port: u16) {
    let config = format!(
        "[a2a]\nlisten = \"127.0.0.1:{port}\"\n\
         tokens = [{{ name = \"ci\", token_file = \"a2a.token\", ring = 1 }}]\n"
    );
    std::fs::write(node.dir.join("config.toml"), config).unwrap();
    std::fs::write(node.dir.join("a2a.token"), format!("{TOKEN}\n")).unwrap();
    node.start_local(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_a2a_python_sdk_streams_a_task_an_agent_completes() {
    if !python_has_a2a() {
        eprintln!(
            "skipped: python3 with the `a2a-sdk` package is not installed (.ci/run installs it)"
        );
        return;
    }
    if !common::can_confine() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut node = fleet(tmp.path(), 1).remove(0);
    let port = free_port();
    tokio::task::block_in_place(|| start(&mut node, port));
    let added = tokio::task::block_in_place(|| {
        node.cli(&[
            "agent",
            "add",
            "worker",
            "--ring",
            "2",
            "--skill",
            "summarize",
            "--accept-rings",
            "1",
            "--",
            "/bin/sh",
            "-c",
            "exec sleep 600",
        ])
    });
    assert!(added.status.success(), "{}", common::stderr(&added));

    let client = tokio::process::Command::new("python3")
        .arg(SCRIPT)
        .arg(format!("http://127.0.0.1:{port}"))
        .arg("worker")
        .arg(node.dir.join("a2a.token"))
        .arg("a2a-wrong-token-0123456789abcdef")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3");

    let transport = TokioChildProcess::new(tokio::task::block_in_place(|| {
        common::mcp_as_agent(&node, "worker")
    }))
    .expect("spawn");
    let worker: Client = ().serve(transport).await.expect("MCP handshake");
    let task = first_task(&worker).await;
    let id = task["id"].as_str().expect("an id").to_string();
    assert_eq!(task["from"], "a2a:ci@n0", "{task}");
    assert!(
        task["history"].to_string().contains("the quick brown fox"),
        "{task}"
    );
    ok(
        &worker,
        call("task_update", json!({ "id": id, "text": "reading" })),
    )
    .await;
    ok(
        &worker,
        call(
            "task_complete",
            json!({ "id": id, "artifacts": [{ "name": "summary", "text": "a fox" }] }),
        ),
    )
    .await;

    let out = tokio::time::timeout(Duration::from_secs(120), client.wait_with_output())
        .await
        .expect("the A2A client finished in time")
        .expect("the A2A client ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.lines().last() == Some("ok"),
        "the A2A client failed:\n{stdout}\n{}\nnode log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        node.log()
    );
    assert!(stdout.contains("TASK_STATE_COMPLETED"), "{stdout}");

    // The same audit entries as a task from the CLI, naming the client.
    let audited = tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(20), || {
            let log = node.json(&["audit", "log", "--limit", "1000"]);
            log["entries"].as_array().is_some_and(|entries| {
                entries
                    .iter()
                    .any(|e| e["action"] == "task.submit" && e.to_string().contains("a2a:ci"))
            })
        })
    });
    assert!(audited, "no task.submit entry names the A2A client");
}
