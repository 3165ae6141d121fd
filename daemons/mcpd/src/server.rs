//! The MCP server an agent talks to (`osmoda mcp --agent NAME`): rmcp's
//! [`ServerHandler`] over the catalogue, forwarding every call.
//!
//! What it does, in order, for a `tools/call`:
//! 1. an unknown tool is a protocol error (invalid params);
//! 2. arguments that do not fit the tool's struct are a protocol error
//!    (invalid params) naming the field, and nothing is forwarded;
//! 3. the call goes to the [`ToolForwarder`]; its result becomes the text
//!    content (and, for objects, the structured content) of the answer;
//! 4. a refused, denied, failed or unreachable call becomes an `isError`
//!    result carrying the reason, because that is what an agent's model
//!    reads and can act on (protocol errors are often hidden from it); its
//!    structured content adds the kind of failure (`not_found`, `invalid`,
//!    ...), for an agent to branch on.
//!
//! It decides nothing about trust: rings, grants, approvals, lockdown and
//! audit are the node's, behind the forwarder. The listed ring is a hint to
//! the agent, not a control.

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    Implementation, ListToolsResult, MetaObject, PaginatedRequestParams, ServerCapabilities,
    ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::IntoTransport;
use rmcp::{ServerHandler, ServiceExt};
use serde_json::{json, Map, Value};

use crate::catalog::{self, ArgumentError, Ring, ToolInfo};
use crate::forward::{ForwardError, ToolForwarder};

/// The server could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("MCP initialisation failed: {0}")]
    Initialize(#[source] Box<rmcp::service::ServerInitializeError>),
    #[error("the MCP service task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// The MCP server for one agent.
#[derive(Clone)]
pub struct McpServer {
    forwarder: Arc<dyn ToolForwarder>,
    agent: String,
    tools: Arc<Vec<Tool>>,
}

impl McpServer {
    pub fn new(forwarder: Arc<dyn ToolForwarder>, agent_name: String) -> Self {
        let tools = catalog::tools().iter().map(to_mcp_tool).collect();
        Self {
            forwarder,
            agent: agent_name,
            tools: Arc::new(tools),
        }
    }
}

/// Serves one agent on stdin/stdout until the client goes away. Nothing
/// else may write to stdout meanwhile: logs go to stderr.
pub async fn serve_stdio(
    forwarder: Arc<dyn ToolForwarder>,
    agent_name: String,
) -> Result<(), McpError> {
    serve(forwarder, agent_name, rmcp::transport::stdio()).await
}

/// Serves one agent on any rmcp transport (a pair of streams, a duplex)
/// until the client goes away.
pub async fn serve<T, E, A>(
    forwarder: Arc<dyn ToolForwarder>,
    agent_name: String,
    transport: T,
) -> Result<(), McpError>
where
    T: IntoTransport<RoleServer, E, A>,
    E: std::error::Error + Send + Sync + 'static,
{
    let agent = agent_name.clone();
    let running = McpServer::new(forwarder, agent_name)
        .serve(transport)
        .await
        .map_err(|e| McpError::Initialize(Box::new(e)))?;
    tracing::info!(agent = %agent, "MCP session started");
    let reason = running.waiting().await.map_err(McpError::Task)?;
    tracing::info!(agent = %agent, ?reason, "MCP session ended");
    Ok(())
}

fn to_mcp_tool(info: &ToolInfo) -> Tool {
    let description = match info.ring {
        Ring::One => format!(
            "{} [ring 1: needs the operator's approval unless granted; see approval_request]",
            info.description
        ),
        Ring::Two => info.description.to_owned(),
    };
    let mut meta = Map::new();
    meta.insert("osmoda/ring".into(), json!(info.ring.number()));
    Tool::new(info.name, description, info.input_schema.clone()).with_meta(MetaObject(meta))
}

fn invalid_params(tool: &str, error: &ArgumentError) -> ErrorData {
    let data = match error.field() {
        Some(field) => json!({ "tool": tool, "field": field }),
        None => json!({ "tool": tool }),
    };
    ErrorData::invalid_params(format!("{tool}: {error}"), Some(data))
}

fn success(result: Value) -> CallToolResult {
    // serde_json cannot fail to print a Value it parsed; the fallback only
    // keeps this total.
    let text = serde_json::to_string(&result).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    let mut out = CallToolResult::success(vec![ContentBlock::text(text)]);
    if result.is_object() {
        out.structured_content = Some(result);
    }
    out
}

/// An `isError` result: the text is the reason; the structured content
/// says how the call ended (`error`), what kind of failure it met (`kind`,
/// an [`ErrorKind`](crate::forward::ErrorKind) name, left out when none is
/// known) and why (`reason`).
fn failure(error: &ForwardError) -> CallToolResult {
    let ended = match error {
        ForwardError::Refused { .. } => "refused",
        ForwardError::Denied { .. } => "denied",
        ForwardError::Failed { .. } => "failed",
        ForwardError::Unavailable { .. } => "unavailable",
    };
    let reason = error.to_string();
    let mut structured = json!({ "error": ended, "reason": reason });
    if let Some(kind) = error.kind() {
        structured["kind"] = json!(kind.as_str());
    }
    let mut out = CallToolResult::error(vec![ContentBlock::text(reason)]);
    out.structured_content = Some(structured);
    out
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "osmoda-mcpd",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(format!(
                "Tools of the osmoda node, for agent {}. Ring-1 tools need the operator's \
                 approval unless granted: ask ahead with approval_request.",
                self.agent
            ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools.as_ref().clone()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.as_ref();
        let Some(tool) = catalog::tool(name) else {
            return Err(invalid_params(
                name,
                &ArgumentError::UnknownTool(name.to_owned()),
            ));
        };
        let arguments = Value::Object(request.arguments.unwrap_or_default());
        if let Err(e) = catalog::validate_arguments(tool.name, &arguments) {
            tracing::debug!(agent = %self.agent, tool = tool.name, error = %e, "arguments refused");
            return Err(invalid_params(tool.name, &e));
        }
        // A client's `notifications/cancelled` drops the forwarded call
        // (and its connection to the node) instead of letting it run on.
        let outcome = tokio::select! {
            outcome = self.forwarder.call(tool.name, arguments) => outcome,
            () = context.ct.cancelled() => Err(ForwardError::Failed {
                message: "cancelled by the client".into(),
                kind: None,
            }),
        };
        let result = match outcome {
            Ok(value) => success(value),
            Err(e) => {
                tracing::info!(agent = %self.agent, tool = tool.name, error = %e, "call not completed");
                failure(&e)
            }
        };
        Ok(result.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::ErrorKind;

    #[test]
    fn failures_carry_how_the_call_ended_its_kind_and_the_reason() {
        let cases = [
            (
                ForwardError::Refused {
                    reason: "ring 2".into(),
                },
                json!({ "error": "refused", "kind": "forbidden", "reason": "refused: ring 2" }),
            ),
            (
                ForwardError::Denied {
                    reason: "no".into(),
                },
                json!({ "error": "denied", "kind": "denied", "reason": "denied by the operator: no" }),
            ),
            (
                ForwardError::Failed {
                    message: "HTTP 404: no entry k-1".into(),
                    kind: Some(ErrorKind::NotFound),
                },
                json!({ "error": "failed", "kind": "not_found", "reason": "failed: HTTP 404: no entry k-1" }),
            ),
            (
                ForwardError::Failed {
                    message: "HTTP 400: bad id".into(),
                    kind: Some(ErrorKind::Invalid),
                },
                json!({ "error": "failed", "kind": "invalid", "reason": "failed: HTTP 400: bad id" }),
            ),
            (
                ForwardError::Unavailable {
                    message: "socket gone".into(),
                },
                json!({ "error": "unavailable", "kind": "unavailable", "reason": "the node is unavailable: socket gone" }),
            ),
            (
                ForwardError::Failed {
                    message: "cancelled by the client".into(),
                    kind: None,
                },
                json!({ "error": "failed", "reason": "failed: cancelled by the client" }),
            ),
        ];
        for (error, expected) in cases {
            let result = failure(&error);
            assert_eq!(result.is_error, Some(true), "{error}");
            assert_eq!(result.structured_content, Some(expected), "{error}");
        }
    }
}
