//! From the MCP server to the node: the [`ToolForwarder`] trait and the
//! forwarder used in production, HTTP/1.1 over the node's Unix socket.
//!
//! The node serves one route for agents:
//!
//! ```text
//! POST /v1/agent/call
//! authorization: Bearer <OSMODA_AGENT_TOKEN>
//! content-type: application/json
//!
//! {"tool": "knowledge_get", "arguments": {"id": "..."}}
//! ```
//!
//! and answers `200 {"result": <any JSON>}` on success, `403 {"error":
//! reason}` when the call is refused (ring, lockdown, bad token), `409
//! {"error": reason}` when the operator denied it, and any other status
//! with `{"error": message}` when it failed. The token identifies the
//! agent, so the body carries no agent name.

use std::path::{Path, PathBuf};
use std::pin::pin;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use crate::args::MAX_EXEC_TIMEOUT_SECS;

/// The route the node serves for agents' tool calls.
pub const CALL_PATH: &str = "/v1/agent/call";
/// The variable the node puts the agent's token in.
pub const TOKEN_ENV: &str = "OSMODA_AGENT_TOKEN";
/// Largest answer read from the node. A 1 MiB file read can grow up to six
/// times when JSON escapes every byte, so this leaves room for that.
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// How long a call may take by default: the longest `host_exec`, plus a
/// minute for the node's own work.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(MAX_EXEC_TIMEOUT_SECS as u64 + 60);

/// Why a forwarded call did not produce a result. Every variant is shown to
/// the agent, so each carries a reason it can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// The node will not run it: ring, lockdown, missing grant, bad token.
    #[error("refused: {reason}")]
    Refused { reason: String },
    /// The operator was asked and said no.
    #[error("denied by the operator: {reason}")]
    Denied { reason: String },
    /// The node ran it, or tried to, and it failed.
    #[error("failed: {message}")]
    Failed { message: String },
    /// The node could not be reached.
    #[error("the node is unavailable: {message}")]
    Unavailable { message: String },
}

/// Where the MCP server sends each validated call.
#[async_trait::async_trait]
pub trait ToolForwarder: Send + Sync {
    /// Runs `tool` with `arguments` (already validated against the
    /// catalogue) and returns its result.
    async fn call(&self, tool: &str, arguments: Value) -> Result<Value, ForwardError>;
}

/// The agent token cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("{TOKEN_ENV} is not set; the node gives it to the agents it starts")]
    Missing,
    #[error("the agent token must be non-empty visible ASCII")]
    Invalid,
}

/// Forwards calls to the node's agent route on its Unix socket, one
/// connection per call (calls are few, and a fresh connection cannot be
/// left half-read by a cancelled call).
#[derive(Clone)]
pub struct UnixSocketForwarder {
    socket_path: PathBuf,
    authorization: HeaderValue,
    timeout: Duration,
}

impl std::fmt::Debug for UnixSocketForwarder {
    // By hand, so the token never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnixSocketForwarder")
            .field("socket_path", &self.socket_path)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl UnixSocketForwarder {
    pub fn new(socket_path: impl Into<PathBuf>, token: &str) -> Result<Self, TokenError> {
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::Invalid);
        }
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| TokenError::Invalid)?;
        authorization.set_sensitive(true);
        Ok(Self {
            socket_path: socket_path.into(),
            authorization,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// With the token from [`TOKEN_ENV`].
    pub fn from_env(socket_path: impl Into<PathBuf>) -> Result<Self, TokenError> {
        let token = std::env::var(TOKEN_ENV).map_err(|_| TokenError::Missing)?;
        Self::new(socket_path, &token)
    }

    /// Replaces [`DEFAULT_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    async fn post(&self, body: Bytes) -> Result<(StatusCode, Bytes), ForwardError> {
        let unavailable = |what: &str, e: &dyn std::fmt::Display| ForwardError::Unavailable {
            message: format!("{what} {}: {e}", self.socket_path.display()),
        };
        let stream = tokio::net::UnixStream::connect(&self.socket_path)
            .await
            .map_err(|e| unavailable("cannot connect to", &e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unavailable("HTTP handshake on", &e))?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(CALL_PATH)
            .header(HOST, "localhost")
            .header(CONTENT_TYPE, "application/json")
            .header(AUTHORIZATION, self.authorization.clone())
            .body(Full::new(body))
            .map_err(|e| ForwardError::Failed {
                message: format!("cannot build the request: {e}"),
            })?;
        let exchange = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| unavailable("no answer on", &e))?;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| ForwardError::Failed {
                    message: format!("reading the node's answer: {e}"),
                })?
                .to_bytes();
            Ok((status, bytes))
        };
        // The connection is driven here rather than in a spawned task, so
        // a cancelled call (timeout, MCP cancellation) drops it at once.
        let mut exchange = pin!(exchange);
        let mut conn = pin!(conn);
        tokio::select! {
            result = &mut exchange => result,
            closed = &mut conn => match closed {
                // Closed after answering: the answer is still buffered.
                Ok(()) => exchange.await,
                Err(e) => Err(unavailable("connection lost on", &e)),
            },
        }
    }
}

#[async_trait::async_trait]
impl ToolForwarder for UnixSocketForwarder {
    async fn call(&self, tool: &str, arguments: Value) -> Result<Value, ForwardError> {
        let body =
            serde_json::to_vec(&json!({ "tool": tool, "arguments": arguments })).map_err(|e| {
                ForwardError::Failed {
                    message: format!("cannot encode the call: {e}"),
                }
            })?;
        let (status, bytes) = tokio::time::timeout(self.timeout, self.post(Bytes::from(body)))
            .await
            .map_err(|_| ForwardError::Failed {
                message: format!(
                    "the node did not answer within {} s",
                    self.timeout.as_secs()
                ),
            })??;
        answer(status, &bytes)
    }
}

/// Maps the node's answer to a result or a [`ForwardError`].
fn answer(status: StatusCode, bytes: &[u8]) -> Result<Value, ForwardError> {
    let body: Option<Value> = serde_json::from_slice(bytes).ok();
    if status.is_success() {
        return match body {
            Some(Value::Object(mut object)) => {
                object.remove("result").ok_or_else(|| ForwardError::Failed {
                    message: "the node's answer has no `result`".into(),
                })
            }
            _ => Err(ForwardError::Failed {
                message: format!(
                    "the node answered {status} with a body that is not a JSON object"
                ),
            }),
        };
    }
    let reason = body
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("no reason given")
                .to_owned()
        });
    Err(match status {
        StatusCode::FORBIDDEN => ForwardError::Refused { reason },
        StatusCode::CONFLICT => ForwardError::Denied { reason },
        _ => ForwardError::Failed {
            message: format!("HTTP {}: {reason}", status.as_u16()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_map_to_results_and_errors() {
        let ok = answer(StatusCode::OK, br#"{"result":{"a":1}}"#);
        assert_eq!(ok, Ok(json!({"a": 1})));
        assert!(matches!(
            answer(StatusCode::OK, br#"{"other":1}"#),
            Err(ForwardError::Failed { .. })
        ));
        assert!(matches!(
            answer(StatusCode::OK, b"not json"),
            Err(ForwardError::Failed { .. })
        ));
        assert_eq!(
            answer(StatusCode::FORBIDDEN, br#"{"error":"ring 1"}"#),
            Err(ForwardError::Refused {
                reason: "ring 1".into()
            })
        );
        assert_eq!(
            answer(StatusCode::CONFLICT, br#"{"error":"no"}"#),
            Err(ForwardError::Denied {
                reason: "no".into()
            })
        );
        assert_eq!(
            answer(StatusCode::BAD_GATEWAY, b""),
            Err(ForwardError::Failed {
                message: "HTTP 502: Bad Gateway".into()
            })
        );
    }

    #[test]
    fn tokens_must_be_visible_ascii_and_stay_out_of_debug() {
        assert_eq!(
            UnixSocketForwarder::new("/x", "").err(),
            Some(TokenError::Invalid)
        );
        assert_eq!(
            UnixSocketForwarder::new("/x", "a b").err(),
            Some(TokenError::Invalid)
        );
        assert_eq!(
            UnixSocketForwarder::new("/x", "tok\n").err(),
            Some(TokenError::Invalid)
        );
        let f = UnixSocketForwarder::new("/x", "s3cret").map_err(|e| e.to_string());
        assert!(!format!("{f:?}").contains("s3cret"));
    }
}
