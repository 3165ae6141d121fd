//! From the MCP server to the node: the [`ToolForwarder`] trait and the
//! forwarder used in production, HTTP/1.1 over the node's Unix socket.
//!
//! The node serves one route for agents:
//!
//! ```text
//! POST /v1/agent/call
//! content-type: application/json
//!
//! {"tool": "knowledge_get", "arguments": {"id": "..."}}
//! ```
//!
//! The node identifies the agent from the connecting process's credentials
//! (`SO_PEERCRED`: each agent runs under a uid of its own), so the request
//! carries neither an agent name nor a secret. The
//! node answers `200 {"result": <any JSON>}` on success and otherwise
//! `{"error": message, "kind": KIND}`, KIND being an [`ErrorKind`]:
//!
//! | KIND          | status | meaning                                         |
//! |---------------|--------|-------------------------------------------------|
//! | `invalid`     | 400    | the call or its arguments are wrong             |
//! | `not_found`   | 404    | no such entry, key, file, node or request       |
//! | `conflict`    | 409    | the current state does not allow it             |
//! | `forbidden`   | 403    | a rule refuses it: ring, grant, lockdown, caller |
//! | `denied`      | 409    | the operator said no, or did not answer in time |
//! | `unavailable` | 503    | something it needs cannot be reached now        |
//! | `upstream`    | 502    | another node failed to answer it                |
//! | `too_large`   | 413    | an argument or the answer is over a bound       |
//! | `busy`        | 429    | too much is pending; retry later                |
//! | `internal`    | 500    | the node's own fault                            |
//!
//! The kind, not the status, tells `forbidden` ([`ForwardError::Refused`])
//! from `denied` ([`ForwardError::Denied`]) and both from the rest
//! ([`ForwardError::Failed`]). An answer without a known kind is read by
//! its status: 401 and 403 refused, 409 denied, any other failed, with the
//! kind of that status.

use std::fmt;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::time::Duration;

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::args::MAX_EXEC_TIMEOUT_SECS;

/// The route the node serves for agents' tool calls.
pub const CALL_PATH: &str = "/v1/agent/call";
/// The variable the node puts its agents' socket path in.
pub const SOCKET_ENV: &str = "OSMODA_AGENT_SOCKET";
/// Largest answer read from the node. A 1 MiB file read can grow up to six
/// times when JSON escapes every byte, so this leaves room for that.
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// How long a call may take by default: the longest `host_exec`, plus a
/// minute for the node's own work.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(MAX_EXEC_TIMEOUT_SECS as u64 + 60);

/// What kind of failure a call met, as the node names it in `"kind"`, so
/// an agent can tell "no such entry" from a bad argument without reading
/// the message. The statuses are the node's for each kind (see the table
/// in the [module documentation](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Invalid,
    NotFound,
    Conflict,
    Forbidden,
    Denied,
    Unavailable,
    Upstream,
    TooLarge,
    Busy,
    Internal,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::Invalid,
        ErrorKind::NotFound,
        ErrorKind::Conflict,
        ErrorKind::Forbidden,
        ErrorKind::Denied,
        ErrorKind::Unavailable,
        ErrorKind::Upstream,
        ErrorKind::TooLarge,
        ErrorKind::Busy,
        ErrorKind::Internal,
    ];

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Invalid => "invalid",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Denied => "denied",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Upstream => "upstream",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Busy => "busy",
            ErrorKind::Internal => "internal",
        }
    }

    /// The kind with this wire name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The status the node answers with for this kind.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::Invalid => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict | ErrorKind::Denied => StatusCode::CONFLICT,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Upstream => StatusCode::BAD_GATEWAY,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Busy => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The kind an answer without one is read as. A bare 409 is `denied`:
    /// a node that names no kind answers 409 for nothing else.
    pub fn of_status(status: StatusCode) -> Option<Self> {
        Some(match status.as_u16() {
            401 | 403 => ErrorKind::Forbidden,
            404 => ErrorKind::NotFound,
            409 => ErrorKind::Denied,
            413 => ErrorKind::TooLarge,
            429 => ErrorKind::Busy,
            502 | 504 => ErrorKind::Upstream,
            503 => ErrorKind::Unavailable,
            400..=499 => ErrorKind::Invalid,
            500..=599 => ErrorKind::Internal,
            _ => return None,
        })
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a forwarded call did not produce a result. Every variant is shown to
/// the agent, so each carries a reason it can act on, and a kind
/// ([`ForwardError::kind`]) it can branch on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// The node will not run it: ring, lockdown, missing grant, a caller
    /// that is no running agent (kind `forbidden`).
    #[error("refused: {reason}")]
    Refused { reason: String },
    /// The operator was asked and said no, or did not answer in time (kind
    /// `denied`).
    #[error("denied by the operator: {reason}")]
    Denied { reason: String },
    /// The node ran it, or tried to, and it failed; or the answer could not
    /// be had. `kind` is the node's, or what this side knows of the
    /// failure; `None` when the call was given up here (cancelled).
    #[error("failed: {message}")]
    Failed {
        message: String,
        kind: Option<ErrorKind>,
    },
    /// The node could not be reached (kind `unavailable`).
    #[error("the node is unavailable: {message}")]
    Unavailable { message: String },
}

impl ForwardError {
    /// What kind of failure it is, when known.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            ForwardError::Refused { .. } => Some(ErrorKind::Forbidden),
            ForwardError::Denied { .. } => Some(ErrorKind::Denied),
            ForwardError::Failed { kind, .. } => *kind,
            ForwardError::Unavailable { .. } => Some(ErrorKind::Unavailable),
        }
    }
}

/// Where the MCP server sends each validated call.
#[async_trait::async_trait]
pub trait ToolForwarder: Send + Sync {
    /// Runs `tool` with `arguments` (already validated against the
    /// catalogue) and returns its result.
    async fn call(&self, tool: &str, arguments: Value) -> Result<Value, ForwardError>;
}

/// Forwards calls to the node's agent route on its Unix socket, one
/// connection per call (calls are few, and a fresh connection cannot be
/// left half-read by a cancelled call).
#[derive(Debug, Clone)]
pub struct UnixSocketForwarder {
    socket_path: PathBuf,
    timeout: Duration,
}

impl UnixSocketForwarder {
    pub fn new(socket_path: impl Into<PathBuf>) -> Self {
        Self {
            socket_path: socket_path.into(),
            timeout: DEFAULT_TIMEOUT,
        }
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
            .body(Full::new(body))
            .map_err(|e| ForwardError::Failed {
                message: format!("cannot build the request: {e}"),
                kind: Some(ErrorKind::Internal),
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
                    kind: Some(if e.is::<LengthLimitError>() {
                        ErrorKind::TooLarge
                    } else {
                        ErrorKind::Unavailable
                    }),
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
                    kind: Some(ErrorKind::Internal),
                }
            })?;
        let (status, bytes) = tokio::time::timeout(self.timeout, self.post(Bytes::from(body)))
            .await
            .map_err(|_| ForwardError::Failed {
                message: format!(
                    "the node did not answer within {} s",
                    self.timeout.as_secs()
                ),
                kind: Some(ErrorKind::Unavailable),
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
                    kind: Some(ErrorKind::Internal),
                })
            }
            _ => Err(ForwardError::Failed {
                message: format!(
                    "the node answered {status} with a body that is not a JSON object"
                ),
                kind: Some(ErrorKind::Internal),
            }),
        };
    }
    let field = |name: &str| body.as_ref()?.get(name)?.as_str();
    let reason = field("error").map(str::to_owned).unwrap_or_else(|| {
        status
            .canonical_reason()
            .unwrap_or("no reason given")
            .to_owned()
    });
    // A kind this side does not know (a newer node's) falls back on the
    // status, like an answer without one.
    let kind = field("kind")
        .and_then(ErrorKind::from_name)
        .or_else(|| ErrorKind::of_status(status));
    Err(match kind {
        Some(ErrorKind::Forbidden) => ForwardError::Refused { reason },
        Some(ErrorKind::Denied) => ForwardError::Denied { reason },
        kind => ForwardError::Failed {
            message: format!("HTTP {}: {reason}", status.as_u16()),
            kind,
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
        for malformed in [&br#"{"other":1}"#[..], b"not json"] {
            assert_eq!(
                answer(StatusCode::OK, malformed).map_err(|e| e.kind()),
                Err(Some(ErrorKind::Internal))
            );
        }
        assert_eq!(
            answer(
                StatusCode::FORBIDDEN,
                br#"{"error":"ring 1","kind":"forbidden"}"#
            ),
            Err(ForwardError::Refused {
                reason: "ring 1".into()
            })
        );
        assert_eq!(
            answer(StatusCode::CONFLICT, br#"{"error":"no","kind":"denied"}"#),
            Err(ForwardError::Denied {
                reason: "no".into()
            })
        );
        assert_eq!(
            answer(
                StatusCode::NOT_FOUND,
                br#"{"error":"no entry k-1","kind":"not_found"}"#
            ),
            Err(ForwardError::Failed {
                message: "HTTP 404: no entry k-1".into(),
                kind: Some(ErrorKind::NotFound),
            })
        );
        assert_eq!(
            answer(StatusCode::BAD_GATEWAY, b""),
            Err(ForwardError::Failed {
                message: "HTTP 502: Bad Gateway".into(),
                kind: Some(ErrorKind::Upstream),
            })
        );
    }

    #[test]
    fn the_kind_decides_over_the_status() {
        // A 409 that is a conflict is no operator's denial.
        assert_eq!(
            answer(
                StatusCode::CONFLICT,
                br#"{"error":"not empty","kind":"conflict"}"#
            ),
            Err(ForwardError::Failed {
                message: "HTTP 409: not empty".into(),
                kind: Some(ErrorKind::Conflict),
            })
        );
        // A kind this side does not know falls back on the status.
        assert_eq!(
            answer(StatusCode::CONFLICT, br#"{"error":"no","kind":"vetoed"}"#),
            Err(ForwardError::Denied {
                reason: "no".into()
            })
        );
        // A kind that is not a string is no kind.
        assert_eq!(
            answer(StatusCode::NOT_FOUND, br#"{"error":"gone","kind":7}"#).map_err(|e| e.kind()),
            Err(Some(ErrorKind::NotFound))
        );
    }

    #[test]
    fn every_kind_survives_the_node_s_answer() {
        for kind in ErrorKind::ALL {
            let body = json!({ "error": "e", "kind": kind }).to_string();
            let got = answer(kind.status(), body.as_bytes()).map_err(|e| e.kind());
            assert_eq!(got, Err(Some(kind)), "{kind}");
            assert_eq!(ErrorKind::from_name(kind.as_str()), Some(kind));
            assert_eq!(serde_json::to_value(kind).ok(), Some(json!(kind.as_str())));
            // Without its kind, an answer is read by its status alone:
            // right for every kind but `conflict`, which shares 409 with
            // `denied`.
            let bare = answer(kind.status(), br#"{"error":"e"}"#).map_err(|e| e.kind());
            if kind != ErrorKind::Conflict {
                assert_eq!(bare, Err(Some(kind)), "{kind} without its kind");
            }
        }
    }

    #[test]
    fn answers_without_a_kind_are_read_by_their_status() {
        let cases = [
            (StatusCode::UNAUTHORIZED, Some(ErrorKind::Forbidden)),
            (StatusCode::UNPROCESSABLE_ENTITY, Some(ErrorKind::Invalid)),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, Some(ErrorKind::Invalid)),
            (StatusCode::GATEWAY_TIMEOUT, Some(ErrorKind::Upstream)),
            (StatusCode::NOT_IMPLEMENTED, Some(ErrorKind::Internal)),
            (StatusCode::PERMANENT_REDIRECT, None),
        ];
        for (status, kind) in cases {
            assert_eq!(ErrorKind::of_status(status), kind, "{status}");
        }
        assert_eq!(
            answer(StatusCode::UNAUTHORIZED, br#"{"error":"bad token"}"#),
            Err(ForwardError::Refused {
                reason: "bad token".into()
            })
        );
    }
}
