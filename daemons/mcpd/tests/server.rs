//! An rmcp client talking to the server over an in-memory duplex, with a
//! fake forwarder standing in for the node.

use std::sync::{Arc, Mutex};

use osmoda_mcpd::{async_trait, tools, ErrorKind, ForwardError, Ring, ToolForwarder};
use rmcp::model::{CallToolRequestParams, CallToolResult, ErrorCode, JsonObject};
use rmcp::service::{RoleClient, RunningService, ServiceError};
use rmcp::ServiceExt;
use serde_json::{json, Value};

type Answer = fn(&str, &Value) -> Result<Value, ForwardError>;

struct Fake {
    calls: Mutex<Vec<(String, Value)>>,
    answer: Answer,
}

#[async_trait]
impl ToolForwarder for Fake {
    async fn call(&self, tool: &str, arguments: Value) -> Result<Value, ForwardError> {
        let answer = (self.answer)(tool, &arguments);
        self.calls
            .lock()
            .expect("lock")
            .push((tool.to_owned(), arguments));
        answer
    }
}

impl Fake {
    fn calls(&self) -> Vec<(String, Value)> {
        self.calls.lock().expect("lock").clone()
    }
}

async fn connect(answer: Answer) -> (Arc<Fake>, RunningService<RoleClient, ()>) {
    let fake = Arc::new(Fake {
        calls: Mutex::new(Vec::new()),
        answer,
    });
    let (client_io, server_io) = tokio::io::duplex(1 << 20);
    let forwarder: Arc<dyn ToolForwarder> = fake.clone();
    tokio::spawn(osmoda_mcpd::serve(forwarder, "tester".into(), server_io));
    let client = ().serve(client_io).await.expect("client handshake");
    (fake, client)
}

fn echo(tool: &str, arguments: &Value) -> Result<Value, ForwardError> {
    Ok(json!({ "tool": tool, "arguments": arguments }))
}

fn object(value: Value) -> JsonObject {
    match value {
        Value::Object(o) => o,
        other => panic!("not an object: {other}"),
    }
}

fn call(name: &'static str, arguments: Value) -> CallToolRequestParams {
    CallToolRequestParams::new(name).with_arguments(object(arguments))
}

fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn protocol_error(e: ServiceError) -> rmcp::model::ErrorData {
    match e {
        ServiceError::McpError(e) => e,
        other => panic!("expected an MCP error, got {other}"),
    }
}

#[tokio::test]
async fn lists_every_tool_with_an_object_schema() {
    let (_, client) = connect(echo).await;
    let listed = client.list_all_tools().await.expect("list tools");
    assert_eq!(listed.len(), tools().len());
    for info in tools() {
        let tool = listed
            .iter()
            .find(|t| t.name == info.name)
            .unwrap_or_else(|| panic!("{} missing", info.name));
        assert_eq!(
            tool.input_schema.get("type"),
            Some(&json!("object")),
            "{}",
            info.name
        );
        let ring = tool
            .meta
            .as_ref()
            .and_then(|m| m.0.get("osmoda/ring"))
            .and_then(Value::as_u64);
        assert_eq!(ring, Some(u64::from(info.ring.number())), "{}", info.name);
        let description = tool.description.as_deref().unwrap_or_default();
        assert_eq!(
            description.contains("ring 1"),
            info.ring == Ring::One,
            "{}",
            info.name
        );
    }
    let get = listed
        .iter()
        .find(|t| t.name == "knowledge_get")
        .expect("knowledge_get");
    assert_eq!(
        get.input_schema["properties"]["id"]["type"],
        json!("string")
    );
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn a_call_is_forwarded_and_its_result_returned() {
    let (fake, client) = connect(echo).await;
    let result = client
        .call_tool(call("knowledge_get", json!({ "id": "k-1" })))
        .await
        .expect("call");
    assert_ne!(result.is_error, Some(true));
    let expected = json!({ "tool": "knowledge_get", "arguments": { "id": "k-1" } });
    assert_eq!(
        serde_json::from_str::<Value>(&text(&result)).expect("json text"),
        expected
    );
    assert_eq!(result.structured_content, Some(expected));
    assert_eq!(
        fake.calls(),
        vec![("knowledge_get".to_owned(), json!({ "id": "k-1" }))]
    );
    // No arguments at all is `{}` for a tool without arguments.
    let result = client
        .call_tool(CallToolRequestParams::new("mesh_peers"))
        .await
        .expect("call without arguments");
    assert_ne!(result.is_error, Some(true));
    assert_eq!(fake.calls()[1], ("mesh_peers".to_owned(), json!({})));
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn a_wrong_argument_type_names_the_field_and_is_not_forwarded() {
    let (fake, client) = connect(echo).await;
    let e = client
        .call_tool(call(
            "host_exec",
            json!({ "command": "ls", "timeout_secs": "soon" }),
        ))
        .await
        .map(|r| text(&r))
        .expect_err("wrong type");
    let e = protocol_error(e);
    assert_eq!(e.code, ErrorCode::INVALID_PARAMS);
    assert!(e.message.contains("timeout_secs"), "{}", e.message);
    assert_eq!(
        e.data,
        Some(json!({ "tool": "host_exec", "field": "timeout_secs" }))
    );

    for (tool, arguments, field) in [
        ("knowledge_get", json!({}), "id"),
        ("knowledge_get", json!({ "id": "x", "extra": 1 }), "extra"),
        (
            "kv_set",
            json!({ "key": "k", "value": "v".repeat(64 * 1024 + 1) }),
            "value",
        ),
        (
            "host_exec",
            json!({ "command": "ls", "args": ["a", 2] }),
            "args[1]",
        ),
    ] {
        let e = protocol_error(
            client
                .call_tool(call(tool, arguments))
                .await
                .map(|r| text(&r))
                .expect_err(tool),
        );
        assert_eq!(e.code, ErrorCode::INVALID_PARAMS);
        assert!(e.message.contains(field), "{field}: {}", e.message);
    }
    assert!(fake.calls().is_empty(), "the forwarder was called");
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn an_unknown_tool_is_an_error() {
    let (fake, client) = connect(echo).await;
    let e = protocol_error(
        client
            .call_tool(call("rm_rf", json!({})))
            .await
            .map(|r| text(&r))
            .expect_err("unknown tool"),
    );
    assert_eq!(e.code, ErrorCode::INVALID_PARAMS);
    assert!(e.message.contains("rm_rf"), "{}", e.message);
    assert!(fake.calls().is_empty());
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn refused_denied_and_failed_calls_are_error_results_with_the_reason() {
    fn refuse(tool: &str, _: &Value) -> Result<Value, ForwardError> {
        match tool {
            "host_exec" => Err(ForwardError::Refused {
                reason: "host_exec is ring 1 and not granted".into(),
            }),
            "mesh_broadcast" => Err(ForwardError::Denied {
                reason: "operator said no".into(),
            }),
            "kv_get" => Err(ForwardError::Unavailable {
                message: "socket gone".into(),
            }),
            "knowledge_get" => Err(ForwardError::Failed {
                message: "HTTP 404: no entry k-1".into(),
                kind: Some(ErrorKind::NotFound),
            }),
            _ => Err(ForwardError::Failed {
                message: "disk full".into(),
                kind: Some(ErrorKind::Internal),
            }),
        }
    }
    let (fake, client) = connect(refuse).await;
    for (tool, arguments, ended, kind, reason) in [
        (
            "host_exec",
            json!({ "command": "ls" }),
            "refused",
            "forbidden",
            "not granted",
        ),
        (
            "mesh_broadcast",
            json!({ "text": "hi" }),
            "denied",
            "denied",
            "operator said no",
        ),
        (
            "kv_get",
            json!({ "key": "k" }),
            "unavailable",
            "unavailable",
            "socket gone",
        ),
        (
            "knowledge_get",
            json!({ "id": "k-1" }),
            "failed",
            "not_found",
            "no entry k-1",
        ),
        (
            "file_write",
            json!({ "path": "a", "content": "" }),
            "failed",
            "internal",
            "disk full",
        ),
    ] {
        let result = client.call_tool(call(tool, arguments)).await.expect(tool);
        assert_eq!(result.is_error, Some(true), "{tool}");
        assert!(text(&result).contains(reason), "{tool}: {}", text(&result));
        let structured = result.structured_content.expect("structured error");
        assert_eq!(structured["error"], json!(ended), "{tool}");
        assert_eq!(structured["kind"], json!(kind), "{tool}");
        assert!(
            structured["reason"]
                .as_str()
                .is_some_and(|r| r.contains(reason)),
            "{tool}"
        );
    }
    assert_eq!(fake.calls().len(), 5);
    client.cancel().await.expect("close");
}
