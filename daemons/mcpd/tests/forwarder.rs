//! `UnixSocketForwarder` against a small axum server on a temporary socket.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use osmoda_mcpd::forward::{CALL_PATH, MAX_RESPONSE_BYTES};
use osmoda_mcpd::{ErrorKind, ForwardError, ToolForwarder, UnixSocketForwarder};
use serde_json::{json, Value};

/// Each request's authorization header and body.
type Request = (Option<String>, Value);

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Request>>>);

/// Answers by tool name, so one server covers every status.
async fn call(
    State(seen): State<Seen>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, String) {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    seen.0
        .lock()
        .expect("lock")
        .push((auth.clone(), body.clone()));
    let (status, body) = match body["tool"].as_str().unwrap_or_default() {
        // The node's answer to a process that is no running agent.
        "agent_message" => (
            StatusCode::UNAUTHORIZED,
            json!({ "error": "the calling process is not a running agent" }),
        ),
        "knowledge_get" => (
            StatusCode::OK,
            json!({ "result": { "echo": body["arguments"] } }),
        ),
        "host_exec" => (
            StatusCode::FORBIDDEN,
            json!({ "error": "host_exec needs approval" }),
        ),
        "mesh_broadcast" => (
            StatusCode::CONFLICT,
            json!({ "error": "the operator denied it" }),
        ),
        "kv_get" => (
            StatusCode::NOT_FOUND,
            json!({ "error": "no such key", "kind": "not_found" }),
        ),
        "file_delete" => (
            StatusCode::CONFLICT,
            json!({ "error": "directory not empty", "kind": "conflict" }),
        ),
        "file_read" => return (StatusCode::INTERNAL_SERVER_ERROR, "oops".into()),
        "file_list" => return (StatusCode::OK, "x".repeat(MAX_RESPONSE_BYTES + 1)),
        _ => (StatusCode::OK, json!({ "no_result": true })),
    };
    (status, body.to_string())
}

async fn start() -> (tempfile::TempDir, PathBuf, Seen) {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("node.sock");
    let listener = tokio::net::UnixListener::bind(&socket).expect("bind");
    let seen = Seen::default();
    let app = Router::new()
        .route(CALL_PATH, post(call))
        .with_state(seen.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (dir, socket, seen)
}

#[tokio::test]
async fn posts_the_call_without_any_credential_and_maps_statuses() {
    let (_dir, socket, seen) = start().await;
    let forwarder = UnixSocketForwarder::new(&socket);

    let result = forwarder
        .call("knowledge_get", json!({ "id": "k-1" }))
        .await
        .expect("ok");
    assert_eq!(result, json!({ "echo": { "id": "k-1" } }));
    let first = seen.0.lock().expect("lock")[0].clone();
    // The node knows the caller from the socket's peer credentials: the
    // request carries no secret another process could steal and replay.
    assert_eq!(first.0, None);
    assert_eq!(
        first.1,
        json!({ "tool": "knowledge_get", "arguments": { "id": "k-1" } })
    );

    let cases = [
        (
            "host_exec",
            ForwardError::Refused {
                reason: "host_exec needs approval".into(),
            },
        ),
        (
            "mesh_broadcast",
            ForwardError::Denied {
                reason: "the operator denied it".into(),
            },
        ),
        (
            "kv_get",
            ForwardError::Failed {
                message: "HTTP 404: no such key".into(),
                kind: Some(ErrorKind::NotFound),
            },
        ),
        (
            "file_delete",
            ForwardError::Failed {
                message: "HTTP 409: directory not empty".into(),
                kind: Some(ErrorKind::Conflict),
            },
        ),
        (
            "file_read",
            ForwardError::Failed {
                message: "HTTP 500: Internal Server Error".into(),
                kind: Some(ErrorKind::Internal),
            },
        ),
    ];
    for (tool, expected) in cases {
        assert_eq!(
            forwarder.call(tool, json!({})).await,
            Err(expected),
            "{tool}"
        );
    }
    assert!(matches!(
        forwarder.call("agent_status", json!({})).await,
        Err(ForwardError::Failed { .. })
    ));
    let e = forwarder
        .call("file_list", json!({}))
        .await
        .expect_err("too large");
    assert_eq!(e.kind(), Some(ErrorKind::TooLarge), "{e}");

    // A caller that is no agent is refused, though this answer names no
    // kind.
    assert_eq!(
        forwarder.call("agent_message", json!({})).await,
        Err(ForwardError::Refused {
            reason: "the calling process is not a running agent".into()
        })
    );
}

#[tokio::test]
async fn a_missing_socket_is_unavailable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let forwarder = UnixSocketForwarder::new(dir.path().join("none.sock"));
    let e = forwarder
        .call("knowledge_get", json!({ "id": "k" }))
        .await
        .expect_err("no node");
    assert!(matches!(e, ForwardError::Unavailable { .. }), "{e:?}");
}

#[tokio::test]
async fn a_silent_node_times_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("silent.sock");
    let listener = tokio::net::UnixListener::bind(&socket).expect("bind");
    // Accepts and never answers.
    let held = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        drop(stream);
    });
    let forwarder =
        UnixSocketForwarder::new(&socket).with_timeout(std::time::Duration::from_millis(200));
    let e = forwarder
        .call("kv_get", json!({ "key": "k" }))
        .await
        .expect_err("timeout");
    assert!(
        matches!(e, ForwardError::Failed { ref message, kind: Some(ErrorKind::Unavailable) } if message.contains("did not answer")),
        "{e:?}"
    );
    held.abort();
}

/// The whole path: an MCP client, the server, this forwarder, the node.
#[tokio::test]
async fn an_mcp_call_reaches_the_node_and_back() {
    use rmcp::model::CallToolRequestParams;
    use rmcp::ServiceExt;

    let (_dir, socket, seen) = start().await;
    let forwarder: Arc<dyn ToolForwarder> = Arc::new(UnixSocketForwarder::new(&socket));
    let (client_io, server_io) = tokio::io::duplex(1 << 16);
    tokio::spawn(osmoda_mcpd::serve(forwarder, "tester".into(), server_io));
    let client = ().serve(client_io).await.expect("client");

    let arguments = json!({ "id": "k-9" }).as_object().cloned().expect("object");
    let result = client
        .call_tool(CallToolRequestParams::new("knowledge_get").with_arguments(arguments))
        .await
        .expect("call");
    assert_ne!(result.is_error, Some(true));
    assert_eq!(
        result.structured_content,
        Some(json!({ "echo": { "id": "k-9" } }))
    );

    let arguments = json!({ "command": "reboot" })
        .as_object()
        .cloned()
        .expect("object");
    let result = client
        .call_tool(CallToolRequestParams::new("host_exec").with_arguments(arguments))
        .await
        .expect("call");
    assert_eq!(result.is_error, Some(true));
    let text = result.content[0]
        .as_text()
        .map(|t| t.text.clone())
        .unwrap_or_default();
    assert_eq!(text, "refused: host_exec needs approval");
    assert_eq!(
        result.structured_content,
        Some(json!({
            "error": "refused",
            "kind": "forbidden",
            "reason": "refused: host_exec needs approval",
        }))
    );
    assert_eq!(seen.0.lock().expect("lock").len(), 2);
    client.cancel().await.expect("close");
}
