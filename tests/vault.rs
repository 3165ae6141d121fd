//! The agents' vault: every `osmoda secret` command against a real node,
//! with values piped on standard input that never show up in the node's
//! output, its audit log or in clear in any file of its folder; the
//! `secret_get` tool over MCP from real agents, and in process with
//! `credentials_for`, granted, refused and locked down; and tampered
//! ciphertexts refused with an error.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Output, Stdio};

use common::{fleet, stderr, wait_until, Node};
use osmoda_fabric::proto::{FleetRoot, Role};
use osmoda_node::api::{LogQuery, NewSecret, SecretValue};
use osmoda_node::datadir::FleetInfo;
use osmoda_node::error::{ErrorKind, NodeError};
use osmoda_node::runtime::builder::Running;
use osmoda_node::service::{AgentCall, Caller, Node as Service};
use osmoda_node::sim::SimHost;
use osmoda_node::state::agents::AgentIdentity;
use osmoda_simulation::{SimConfig, SimNetwork};
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::ServiceExt;
use serde_json::{json, Value};

const FIRST: &str = "vault-test-VALUE-first-7f3a9c1e";
const SECOND: &str = "vault-test-VALUE-second-b42d8e07";
const OTHER: &str = "vault-test-VALUE-other-51c6aa90";

/// Runs `osmoda ARGS` with `input` on standard input.
fn piped(node: &Node, args: &[&str], input: &str) -> Output {
    let mut child = node
        .command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run osmoda");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write the value");
    let out = child.wait_with_output().expect("wait for osmoda");
    for value in [FIRST, SECOND, OTHER] {
        let shown = [&out.stdout, &out.stderr];
        assert!(
            !shown.iter().any(|b| contains(b, value)),
            "{args:?} showed a value"
        );
    }
    out
}

fn ok(out: &Output, what: &str) {
    assert!(out.status.success(), "{what}: {}", stderr(out));
}

fn refused(out: &Output, code: i32, needle: &str) {
    assert_eq!(out.status.code(), Some(code), "{}", stderr(out));
    assert!(
        stderr(out).contains(needle),
        "{needle:?} in {}",
        stderr(out)
    );
}

/// Every file under `dir`, with its bytes.
fn files(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            files(&path, out);
        } else if kind.is_file() {
            out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn secret_commands_work_and_never_show_a_value() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = fleet(tmp.path(), 1);
    let node = &mut nodes[0];
    node.start_local(&[]);

    let set = piped(
        node,
        &[
            "secret",
            "set",
            "api-token",
            "--agent",
            "scribe",
            "--agent",
            "watcher",
        ],
        &format!("{FIRST}\n"),
    );
    ok(&set, "secret set");
    let mode = std::fs::metadata(node.dir.join("vault.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    ok(
        &piped(node, &["secret", "set", "db-password"], OTHER),
        "set",
    );

    // Refusals that name the problem.
    let again = piped(node, &["secret", "set", "api-token"], SECOND);
    refused(&again, 4, "secret rotate api-token");
    refused(&piped(node, &["secret", "set", "empty"], "\n"), 1, "empty");
    refused(
        &piped(node, &["secret", "set", "Bad Name"], SECOND),
        4,
        "Bad Name",
    );
    refused(&node.cli(&["secret", "rotate", "nothing"]), 1, "empty");
    refused(
        &piped(node, &["secret", "rotate", "nothing"], SECOND),
        5,
        "nothing",
    );

    let list = node.json(&["secret", "list"]);
    let items = list.as_array().unwrap();
    assert_eq!(items.len(), 2, "{list}");
    assert_eq!(items[0]["name"], "api-token");
    assert_eq!(items[0]["version"], 1);
    assert_eq!(items[0]["agents"], serde_json::json!(["scribe", "watcher"]));
    assert!(items[0].get("value").is_none(), "{list}");

    let granted = node.json(&["secret", "grant", "api-token", "--agent", "third"]);
    assert_eq!(
        granted["agents"],
        serde_json::json!(["scribe", "third", "watcher"])
    );
    let revoked = node.json(&["secret", "revoke", "api-token", "--agent", "watcher"]);
    assert_eq!(revoked["agents"], serde_json::json!(["scribe", "third"]));
    let twice = node.cli(&["secret", "revoke", "api-token", "--agent", "watcher"]);
    refused(&twice, 5, "watcher");

    ok(
        &piped(node, &["secret", "rotate", "api-token"], SECOND),
        "rotate",
    );
    let shown = node.json(&["secret", "list"]);
    assert_eq!(shown[0]["version"], 2, "{shown}");
    let text = node.cli(&["secret", "list"]);
    ok(&text, "secret list");
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.contains("api-token") && text.contains("scribe, third"),
        "{text}"
    );

    ok(&node.cli(&["secret", "rm", "db-password"]), "rm");
    refused(
        &node.cli(&["secret", "rm", "db-password"]),
        5,
        "db-password",
    );
    assert_eq!(node.json(&["secret", "list"]).as_array().unwrap().len(), 1);

    // The audit names every change and its secret, never a value.
    let audit = node.cli(&["audit", "log", "--limit", "4096"]);
    ok(&audit, "audit log");
    let audit_json = node.cli(&["--json", "audit", "log", "--limit", "4096"]);
    for out in [&audit, &audit_json] {
        let text = String::from_utf8_lossy(&out.stdout);
        for action in [
            "secret.set",
            "secret.grant",
            "secret.revoke",
            "secret.rotate",
            "secret.rm",
        ] {
            assert!(text.contains(action), "{action} missing:\n{text}");
        }
        assert!(text.contains("api-token") && text.contains("db-password"));
        for value in [FIRST, SECOND, OTHER] {
            assert!(!text.contains(value), "a value in the audit log:\n{text}");
        }
    }

    // A key others may read is refused.
    node.stop();
    let key = node.dir.join("vault.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    node.start_local(&[]);
    refused(
        &piped(node, &["secret", "rotate", "api-token"], OTHER),
        4,
        "chmod 600",
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    node.stop();

    let log = node.log();
    assert!(log.contains("node"), "the node wrote no log");
    let mut all = Vec::new();
    files(tmp.path(), &mut all);
    assert!(all.iter().any(|(p, _)| p.ends_with("state.redb")));
    for (path, bytes) in &all {
        for value in [FIRST, SECOND, OTHER] {
            assert!(!contains(bytes, value), "a value in clear in {path}");
        }
    }

    // A byte of the sealed value flipped on disk: an error, not a panic.
    let redb = node.dir.join("state.redb");
    let mut bytes = std::fs::read(&redb).unwrap();
    let marker = b"\"sealed\":\"";
    let mut flipped = 0;
    let mut from = 0;
    while let Some(at) = bytes[from..]
        .windows(marker.len())
        .position(|w| w == marker)
    {
        let byte = from + at + marker.len() + 12;
        bytes[byte] = if bytes[byte] == b'A' { b'B' } else { b'A' };
        flipped += 1;
        from = byte;
    }
    assert!(flipped > 0, "no sealed value found in state.redb");
    std::fs::write(&redb, &bytes).unwrap();
    node.start_local(&[]);
    let damaged = node.cli(&["secret", "list"]);
    assert_eq!(damaged.status.code(), Some(1), "{}", stderr(&damaged));
    // The store's checksum names the table and the key (hex).
    let said = stderr(&damaged);
    assert!(
        said.contains("\"secrets\"") && said.contains("corrupt"),
        "{said}"
    );
    assert!(node.is_running(), "the node stopped:\n{}", node.log());
    node.stop();
}

/// One node on the simulated network, its folder in `dir`.
async fn start(dir: &Path) -> (SimNetwork, Running, osmoda_store::Store) {
    let net = SimNetwork::new(SimConfig::default());
    let root = FleetRoot::generate(&mut rand::rngs::OsRng);
    let host = net.add_host().unwrap();
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let cert = root
        .issue(
            key.verifying_key().to_bytes(),
            "n0",
            Role::Admin,
            now - 60,
            now + 86_400,
        )
        .unwrap();
    let fleet = FleetInfo {
        name: "test".into(),
        id: osmoda_fabric::proto::hex(&root.public()),
    };
    let store = osmoda_store::Store::open(dir.join("state.redb")).unwrap();
    let at = SimHost {
        net: &net,
        host,
        port: 4001,
    };
    let running = at
        .builder(store.clone(), key.to_bytes(), cert, fleet, dir)
        .unwrap()
        .start()
        .await
        .unwrap();
    (net, running, store)
}

fn agent(name: &str) -> AgentCall {
    AgentCall::new(AgentIdentity {
        name: name.into(),
        ring: 2,
        workspace: "/nonexistent".into(),
        uid: None,
    })
}

async fn set(node: &Service, name: &str, value: &str, agents: &[&str]) {
    let body = NewSecret {
        name: name.into(),
        value: SecretValue::new(value.into()),
        agents: agents.iter().map(|a| a.to_string()).collect(),
    };
    node.secret_set(Caller::Operator, body).await.unwrap();
}

fn forbidden(result: Result<serde_json::Value, NodeError>) -> String {
    let e = result.expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::Forbidden, "{e}");
    e.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_read_only_what_is_granted_and_nothing_under_lockdown() {
    let tmp = tempfile::tempdir().unwrap();
    let (_net, running, _store) = start(tmp.path()).await;
    let node = running.node.clone();
    set(&node, "api-token", FIRST, &["scribe"]).await;
    set(&node, "db-password", OTHER, &["watcher"]).await;

    let scribe = agent("scribe");
    let got = node.secret_get(&scribe, "api-token").await.unwrap();
    assert_eq!(got["value"], FIRST);
    assert_eq!(got["version"], 1);
    assert_eq!(got["name"], "api-token");
    assert!(scribe.notes().contains("api-token"), "{}", scribe.notes());
    assert!(!scribe.notes().contains(FIRST));

    // Another agent: an ungranted secret and a missing one look the same.
    let watcher = agent("watcher");
    let ungranted = forbidden(node.secret_get(&watcher, "api-token").await);
    let missing = forbidden(node.secret_get(&watcher, "api-tokex").await);
    assert_eq!(
        ungranted.replace("api-token", "N"),
        missing.replace("api-tokex", "N")
    );
    assert!(!ungranted.contains(FIRST));

    // What the node hands an agent as it starts, audited by name.
    let released = node.credentials_for("scribe").await.unwrap();
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].0, "api-token");
    assert_eq!(released[0].1.as_slice(), FIRST.as_bytes());
    assert!(node.credentials_for("nobody").await.unwrap().is_empty());

    node.secret_rotate(
        Caller::Operator,
        "api-token",
        &SecretValue::new(SECOND.into()),
    )
    .await
    .unwrap();
    let got = node.secret_get(&scribe, "api-token").await.unwrap();
    assert_eq!(
        (got["value"].as_str(), got["version"].as_u64()),
        (Some(SECOND), Some(2))
    );

    node.emergency(Caller::Operator, "lockdown", false)
        .await
        .unwrap();
    let locked = node.secret_get(&scribe, "api-token").await.unwrap_err();
    assert!(matches!(locked, NodeError::LockedDown), "{locked}");
    let locked = node.credentials_for("scribe").await.unwrap_err();
    assert!(matches!(locked, NodeError::LockedDown), "{locked}");

    let log = node
        .audit_log(LogQuery {
            node: None,
            start: 0,
            limit: 4096,
        })
        .await
        .unwrap()
        .entries;
    let releases: Vec<_> = log
        .iter()
        .filter(|e| e.action == "secret.release")
        .collect();
    assert_eq!(releases.len(), 2, "{log:?}");
    assert_eq!(releases[0].target, "scribe");
    assert!(
        releases[0].details.contains("api-token"),
        "{:?}",
        releases[0]
    );
    assert_eq!(releases[0].outcome, "ok");
    assert_eq!(releases[1].outcome, "denied");
    assert!(log
        .iter()
        .any(|e| e.action == "secret.rotate" && e.target == "api-token"));
    let text = format!("{log:?}");
    for value in [FIRST, SECOND, OTHER] {
        assert!(!text.contains(value), "a value in the audit log");
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_or_moved_ciphertext_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (_net, running, store) = start(tmp.path()).await;
    let node = running.node.clone();
    set(&node, "alpha", FIRST, &["scribe"]).await;
    set(&node, "beta", SECOND, &["scribe"]).await;
    let scribe = agent("scribe");
    assert_eq!(node.credentials_for("scribe").await.unwrap().len(), 2);

    // alpha's record copied over beta's: same version, wrong name.
    let alpha = store.get("secrets", b"alpha").unwrap().unwrap();
    store.put("secrets", b"beta", &alpha).unwrap();
    let moved = node.secret_get(&scribe, "beta").await.unwrap_err();
    assert_eq!(moved.kind(), ErrorKind::Internal, "{moved}");
    assert!(moved.to_string().contains("does not open"), "{moved}");
    assert!(node.credentials_for("scribe").await.is_err());

    // One byte of alpha's ciphertext flipped.
    let mut record: serde_json::Value = serde_json::from_slice(&alpha).unwrap();
    let sealed = record["sealed"].as_str().unwrap().to_string();
    let mut raw = base64_decode(&sealed);
    let last = raw.len() - 1;
    raw[last / 2] ^= 0x40;
    record["sealed"] = base64_encode(&raw).into();
    store
        .put("secrets", b"alpha", &serde_json::to_vec(&record).unwrap())
        .unwrap();
    let flipped = node.secret_get(&scribe, "alpha").await.unwrap_err();
    assert!(flipped.to_string().contains("does not open"), "{flipped}");
    // The listing still works: only the values are lost.
    assert_eq!(node.secret_list().unwrap().len(), 2);
    running.shutdown().await;
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

type Client = RunningService<RoleClient, ()>;

/// An agent that writes down what its credentials folder holds (each
/// file's mode, owner and content), then waits.
fn add_agent(node: &Node, name: &str) {
    let script = r#"for f in "${CREDENTIALS_DIRECTORY:-/nonexistent}"/*; do [ -f "$f" ] && echo "$(basename "$f") $(stat -c %a:%u "$f") $(cat "$f")"; done > seen.txt 2>&1; echo end >> seen.txt; exec sleep 600"#;
    let out = tokio::task::block_in_place(|| {
        node.cli(&["agent", "add", name, "--", "/bin/sh", "-c", script])
    });
    ok(&out, "agent add");
}

/// What the agent found in its credentials folder at its start.
fn seen(node: &Node, name: &str) -> String {
    let path = node
        .dir
        .join("agents")
        .join(name)
        .join("workspace/seen.txt");
    let mut text = String::new();
    let done = tokio::task::block_in_place(|| {
        wait_until(std::time::Duration::from_secs(30), || {
            text = std::fs::read_to_string(&path).unwrap_or_default();
            text.contains("end")
        })
    });
    assert!(done, "agent {name} did not look at its credentials");
    std::fs::remove_file(&path).unwrap();
    text
}

/// An MCP client as the agent's own runs it.
async fn connect(node: &Node, name: &str) -> Client {
    let cmd = tokio::task::block_in_place(|| common::mcp_as_agent(node, name));
    let transport = TokioChildProcess::new(cmd).expect("spawn osmoda mcp");
    ().serve(transport).await.expect("MCP handshake")
}

async fn secret_get(client: &Client, name: &str) -> CallToolResult {
    let Value::Object(arguments) = json!({ "name": name }) else {
        unreachable!()
    };
    let params = CallToolRequestParams::new("secret_get").with_arguments(arguments);
    client.call_tool(params).await.expect("call")
}

fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_read_granted_secrets_over_mcp_and_the_audit_names_them() {
    if !common::can_confine() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = fleet(tmp.path(), 1);
    let node = &mut nodes[0];
    tokio::task::block_in_place(|| node.start_local(&[]));
    let set = tokio::task::block_in_place(|| {
        piped(
            node,
            &["secret", "set", "api-token", "--agent", "scribe"],
            FIRST,
        )
    });
    ok(&set, "secret set");
    add_agent(node, "scribe");
    add_agent(node, "watcher");
    // As files, as systemd's LoadCredential gives them: only the granted
    // agent has one, readable by it alone.
    let (_, scribe_uid) = tokio::task::block_in_place(|| common::agent_ids(node, "scribe"));
    assert_eq!(
        seen(node, "scribe"),
        format!("api-token 400:{scribe_uid} {FIRST}\nend\n")
    );
    assert_eq!(seen(node, "watcher"), "end\n");
    let scribe = connect(node, "scribe").await;
    let watcher = connect(node, "watcher").await;

    let got = secret_get(&scribe, "api-token").await;
    assert_ne!(got.is_error, Some(true), "{}", text(&got));
    let got = got.structured_content.expect("a structured result");
    assert_eq!(
        got,
        json!({ "name": "api-token", "version": 1, "value": FIRST })
    );

    let ungranted = secret_get(&watcher, "api-token").await;
    let missing = secret_get(&watcher, "api-tokex").await;
    assert_eq!(ungranted.is_error, Some(true));
    assert_eq!(missing.is_error, Some(true));
    assert!(
        text(&ungranted).contains("not granted"),
        "{}",
        text(&ungranted)
    );
    assert_eq!(
        text(&ungranted).replace("api-token", "N"),
        text(&missing).replace("api-tokex", "N")
    );

    let audit = tokio::task::block_in_place(|| {
        node.json(&["audit", "log", "--limit", "4096"])["entries"].clone()
    });
    let calls: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "tool.secret_get")
        .collect();
    assert_eq!(calls.len(), 3, "{audit}");
    assert_eq!(calls[0]["actor"], "agent:scribe", "{audit}");
    assert_eq!(calls[0]["target"], "api-token");
    assert_eq!(calls[0]["outcome"], "ok");
    assert_eq!(calls[1]["actor"], "agent:watcher");
    assert_eq!(calls[1]["outcome"], "denied");
    assert!(
        !audit.to_string().contains(FIRST),
        "a value in the audit log"
    );

    // A rotation reaches the agent at its next start.
    let _ = scribe.cancel().await;
    let rotated =
        tokio::task::block_in_place(|| piped(node, &["secret", "rotate", "api-token"], SECOND));
    ok(&rotated, "secret rotate");
    for step in ["stop", "start"] {
        let out = tokio::task::block_in_place(|| node.cli(&["agent", step, "scribe"]));
        ok(&out, step);
    }
    let (_, again) = tokio::task::block_in_place(|| common::agent_ids(node, "scribe"));
    assert_eq!(again, scribe_uid, "an agent keeps its uid across restarts");
    assert_eq!(
        seen(node, "scribe"),
        format!("api-token 400:{scribe_uid} {SECOND}\nend\n")
    );

    // Under a lockdown nothing is released: the agents are gone with their
    // credential files, and every process of their uids with them (the
    // MCP client started as the agent included).
    let scribe = connect(node, "scribe").await;
    let locked = tokio::task::block_in_place(|| node.cli(&["lockdown"]));
    ok(&locked, "lockdown");
    let params = CallToolRequestParams::new("secret_get")
        .with_arguments(json!({ "name": "api-token" }).as_object().unwrap().clone());
    // An error either way; none at all when the client was killed with
    // the agent's uid.
    if let Ok(result) = scribe.call_tool(params).await {
        assert_eq!(result.is_error, Some(true), "{}", text(&result));
    }
    let _ = scribe.cancel().await;
    let _ = watcher.cancel().await;
    tokio::task::block_in_place(|| node.stop());
    assert!(!node.log().contains(FIRST), "a value in the node's log");
    assert!(!node.log().contains(SECOND), "a value in the node's log");
}
