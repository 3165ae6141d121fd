//! An agent's MCP client for tests: `osmoda mcp` as a child process,
//! driven through rmcp as a real client would, and the calls' results.
#![allow(dead_code)]

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::ServiceExt;
use serde_json::Value;

use crate::common::Node;

pub type Client = RunningService<RoleClient, ()>;

/// `agent`'s MCP session with `node`, as its own uid.
pub async fn connect(node: &Node, agent: &str) -> Client {
    let transport = TokioChildProcess::new(tokio::task::block_in_place(|| {
        crate::common::mcp_as_agent(node, agent)
    }))
    .expect("spawn");
    ().serve(transport).await.expect("MCP handshake")
}

pub fn call(name: &'static str, arguments: Value) -> CallToolRequestParams {
    let Value::Object(map) = arguments else {
        panic!("arguments must be an object")
    };
    CallToolRequestParams::new(name).with_arguments(map)
}

/// A result's text content, joined.
pub fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A successful call's structured result.
pub async fn ok(client: &Client, params: CallToolRequestParams) -> Value {
    let name = params.name.clone();
    let result = client.call_tool(params).await.expect("call");
    assert_ne!(result.is_error, Some(true), "{name}: {}", text(&result));
    result.structured_content.unwrap_or(Value::Null)
}

/// A call that reached the node and was refused or failed: its message.
pub async fn refused(client: &Client, params: CallToolRequestParams) -> String {
    let name = params.name.clone();
    let result = client.call_tool(params).await.expect("call");
    assert_eq!(result.is_error, Some(true), "{name}: {}", text(&result));
    text(&result)
}
