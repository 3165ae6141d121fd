//! The agents' socket: `POST /v1/agent/call`, tool calls authenticated by
//! the agent's token (see `osmoda_mcpd::forward` for the wire format).
//!
//! Every call goes through the same gates, in this order: the token names
//! the agent (401 otherwise); a lockdown refuses everything (403); the tool
//! must be in the catalogue and the arguments must fit it (400); a ring-1
//! tool is refused to a ring-2 agent (403) and, for a ring-1 agent, waits
//! for the operator unless a grant or an advance approval covers it (409
//! when denied or expired). Only then does `tools.rs` run it. Every call
//! from a known agent is audited with its outcome, refusals included; calls
//! without a valid token are not (the socket is open to every local user,
//! and they must not be able to fill the audit log).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use osmoda_crdt_state::{Actor, Outcome};
use osmoda_mcpd::Ring;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::agents::AgentIdentity;
use crate::api::ApiState;
use crate::approvals::{Approvals, Decision};
use crate::audit::AuditLog;

/// Largest call body: a 1 MiB file write, JSON-escaped, fits.
const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// How long a ring-1 call waits for the operator before it expires.
const APPROVAL_WAIT: Duration = Duration::from_secs(600);

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/agent/call", post(call))
        .fallback(|| async {
            reply(
                StatusCode::NOT_FOUND,
                "the agents' socket serves only POST /v1/agent/call",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Binds the agents' socket. Mode 0666: any local process may connect, and
/// only a live agent token gets anything done.
pub fn bind(path: &Path) -> Result<tokio::net::UnixListener> {
    if path.exists() {
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale {}", path.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("cannot bind {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    Ok(listener)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallBody {
    tool: String,
    #[serde(default)]
    arguments: Value,
}

fn reply(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// How a call ended: the answer, and what the audit log says about it.
struct Ended {
    status: StatusCode,
    body: Value,
    outcome: Outcome,
    details: String,
}

impl Ended {
    fn ok(result: Value, details: String) -> Self {
        Self {
            status: StatusCode::OK,
            body: json!({ "result": result }),
            outcome: Outcome::Ok,
            details,
        }
    }

    /// Refused by a rule (403) or by the operator (409): audited as denied.
    fn denied(status: StatusCode, message: String) -> Self {
        Self {
            status,
            body: json!({ "error": message }),
            outcome: Outcome::Denied,
            details: message,
        }
    }

    fn failed(status: StatusCode, message: String) -> Self {
        Self {
            status,
            body: json!({ "error": message }),
            outcome: Outcome::Failed(message),
            details: String::new(),
        }
    }
}

async fn call(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Result<Json<CallBody>, JsonRejection>,
) -> Response {
    // The token first: without it nothing else is looked at or audited.
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(who) = token.and_then(|t| s.agents.authenticate(t)) else {
        // A lockdown kills every agent and so every token; a leftover MCP
        // process still learns why its calls fail.
        if s.emergency.is_locked() {
            return reply(StatusCode::FORBIDDEN, "the node is locked down");
        }
        return reply(
            StatusCode::UNAUTHORIZED,
            "no valid agent token (OSMODA_AGENT_TOKEN of a running agent)",
        );
    };
    let (tool, arguments) = match body {
        Ok(Json(b)) => (b.tool, b.arguments),
        Err(e) => {
            let ended = Ended::failed(e.status(), e.body_text());
            return finish(&s.audit, &who, "call", "", ended).await;
        }
    };
    // Unknown names are audited under a fixed action, so an agent cannot
    // write arbitrary action names into the log.
    let action = match osmoda_mcpd::tool(&tool) {
        Some(info) => info.name,
        None => "unknown",
    };
    let target = crate::tools::target(&tool, &arguments);
    let ended = decide_and_run(&s, &who, &tool, arguments).await;
    finish(&s.audit, &who, action, &target, ended).await
}

/// Audits the call, then answers. A call that cannot be audited fails, as
/// on the control API: an unaudited action must not look done.
async fn finish(
    audit: &AuditLog,
    who: &AgentIdentity,
    action: &str,
    target: &str,
    ended: Ended,
) -> Response {
    let recorded = audit
        .record_in_ring(
            Actor::Agent(who.name.clone()),
            who.ring,
            &format!("tool.{action}"),
            target,
            ended.outcome,
            &ended.details,
        )
        .await;
    if let Err(e) = recorded {
        tracing::warn!(agent = %who.name, error = %format!("{e:#}"), "cannot audit a tool call");
        return reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot write the audit log: {e:#}"),
        );
    }
    (ended.status, Json(ended.body)).into_response()
}

async fn decide_and_run(s: &ApiState, who: &AgentIdentity, tool: &str, args: Value) -> Ended {
    if s.emergency.is_locked() {
        return Ended::denied(StatusCode::FORBIDDEN, "the node is locked down".into());
    }
    let Some(info) = osmoda_mcpd::tool(tool) else {
        return Ended::failed(StatusCode::BAD_REQUEST, format!("unknown tool `{tool}`"));
    };
    if let Err(e) = osmoda_mcpd::validate_arguments(info.name, &args) {
        return Ended::failed(StatusCode::BAD_REQUEST, format!("{}: {e}", info.name));
    }
    let mut details = String::new();
    if info.ring == Ring::One {
        // Only ring 1 reaches ring-1 tools; anything else counts as ring 2.
        if who.ring != 1 {
            return Ended::denied(
                StatusCode::FORBIDDEN,
                format!("ring {} agents cannot use {}", who.ring, info.name),
            );
        }
        if s.approvals.allowed(&who.name, info.name, &args) {
            details = "granted".into();
        } else {
            match wait_for_operator(s, who, info.name, &args).await {
                Ok(id) => details = format!("approved #{id}"),
                Err(ended) => return ended,
            }
            // A lockdown while the call waited expires it; one that came
            // just after the approval must still stop it.
            if s.emergency.is_locked() {
                return Ended::denied(StatusCode::FORBIDDEN, "the node is locked down".into());
            }
        }
    }
    match crate::tools::execute(s, who, info.name, &args).await {
        Ok((result, note)) => {
            if !note.is_empty() {
                if !details.is_empty() {
                    details.push_str("; ");
                }
                details.push_str(&note);
            }
            Ended::ok(result, details)
        }
        Err(e) if e.status == StatusCode::FORBIDDEN => Ended::denied(e.status, e.message),
        Err(e) => Ended::failed(e.status, e.message),
    }
}

/// Withdraws a pending request when the waiting call goes away before a
/// decision (the client hung up, so axum dropped the handler). Harmless
/// after a decision: the request is no longer pending then.
struct WithdrawOnDrop {
    approvals: Arc<Approvals>,
    id: u64,
}

impl Drop for WithdrawOnDrop {
    fn drop(&mut self) {
        self.approvals.withdraw(self.id);
    }
}

/// Puts the call in the operator's list and waits for the decision: the
/// request id when approved, the answer to give otherwise.
async fn wait_for_operator(
    s: &ApiState,
    who: &AgentIdentity,
    tool: &str,
    args: &Value,
) -> Result<u64, Ended> {
    let (id, decision) = s
        .approvals
        .request(&who.name, tool, args.clone(), "")
        .map_err(|e| Ended::failed(StatusCode::TOO_MANY_REQUESTS, format!("{e:#}")))?;
    let _withdraw = WithdrawOnDrop {
        approvals: s.approvals.clone(),
        id,
    };
    tracing::info!(agent = %who.name, tool, id, "tool call waits for approval");
    match tokio::time::timeout(APPROVAL_WAIT, decision).await {
        Ok(Ok(Decision::Approved)) => Ok(id),
        Ok(Ok(Decision::Denied)) => Err(Ended::denied(
            StatusCode::CONFLICT,
            format!("denied by the operator (request #{id})"),
        )),
        // Expired, the sender dropped (node stopping), or our own timeout.
        Ok(Ok(Decision::Expired)) | Ok(Err(_)) | Err(_) => Err(Ended::denied(
            StatusCode::CONFLICT,
            format!("expired: no operator decision on request #{id}"),
        )),
    }
}
