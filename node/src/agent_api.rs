//! The agents' socket: `POST /v1/agent/call`, tool calls authenticated by
//! the agent's token (see `osmoda_mcpd::forward` for the wire format).
//!
//! Every call goes through the same gates, in this order: the token names
//! the agent (401 otherwise, 403 during a lockdown, which kills every
//! token's agent); a lockdown refuses everything (403); the tool
//! must be in the catalogue and the arguments must fit it (400); a ring-1
//! tool is refused to a ring-2 agent (403) and, for a ring-1 agent, waits
//! for the operator unless a grant or an advance approval covers it (409
//! when denied or expired). Only then does `tools.rs` run it. Every call
//! from a known agent is audited with its outcome, refusals included; calls
//! without a valid token are not (the socket is open to every local user,
//! and they must not be able to fill the audit log). A call whose client
//! hangs up midway is audited too, and its pending approval withdrawn.

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
    let (tool, arguments, rejected) = match body {
        Ok(Json(b)) => (b.tool, b.arguments, None),
        Err(e) => (String::new(), Value::Null, Some(e)),
    };
    // Unknown names are audited under a fixed action, so an agent cannot
    // write arbitrary action names into the log.
    let action = match (&rejected, osmoda_mcpd::tool(&tool)) {
        (Some(_), _) => "tool.call".to_string(),
        (None, Some(info)) => format!("tool.{}", info.name),
        (None, None) => "tool.unknown".to_string(),
    };
    let mut call = Call {
        audit: s.audit.clone(),
        approvals: s.approvals.clone(),
        who,
        action,
        // An unknown tool's name goes in the target, where any text may.
        target: match osmoda_mcpd::tool(&tool) {
            Some(_) => crate::tools::target(&tool, &arguments),
            None => tool.chars().take(64).collect(),
        },
        waiting_on: None,
        done: false,
    };
    let ended = match rejected {
        Some(e) => Ended::failed(e.status(), e.body_text()),
        None => decide_and_run(&s, &mut call, &tool, arguments).await,
    };
    call.finish(ended).await
}

/// One authenticated call on its way. Dropped before `finish` (the client
/// hung up, so axum dropped the handler) it still withdraws the approval it
/// waits for and audits the call, so none goes unrecorded.
struct Call {
    audit: Arc<AuditLog>,
    approvals: Arc<Approvals>,
    who: AgentIdentity,
    action: String,
    target: String,
    /// The approval request this call waits on, if it waits.
    waiting_on: Option<u64>,
    done: bool,
}

impl Call {
    /// Audits the call, then answers. A call that cannot be audited fails,
    /// as on the control API: an unaudited action must not look done.
    async fn finish(mut self, ended: Ended) -> Response {
        self.done = true;
        let recorded = self
            .audit
            .record_in_ring(
                Actor::Agent(self.who.name.clone()),
                self.who.ring,
                &self.action,
                &self.target,
                ended.outcome,
                &ended.details,
            )
            .await;
        if let Err(e) = recorded {
            tracing::warn!(agent = %self.who.name, error = %format!("{e:#}"), "cannot audit a tool call");
            return reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot write the audit log: {e:#}"),
            );
        }
        (ended.status, Json(ended.body)).into_response()
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let details = match self.waiting_on {
            Some(id) => {
                self.approvals.withdraw(id);
                format!("approval request #{id} withdrawn")
            }
            None => String::new(),
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let audit = self.audit.clone();
        let actor = Actor::Agent(self.who.name.clone());
        let ring = self.who.ring;
        let action = std::mem::take(&mut self.action);
        let target = std::mem::take(&mut self.target);
        runtime.spawn(async move {
            let outcome = Outcome::Failed("the caller went away before the call ended".into());
            let recorded = audit
                .record_in_ring(actor, ring, &action, &target, outcome, &details)
                .await;
            if let Err(e) = recorded {
                tracing::warn!(error = %format!("{e:#}"), "cannot audit an abandoned tool call");
            }
        });
    }
}

async fn decide_and_run(s: &ApiState, call: &mut Call, tool: &str, args: Value) -> Ended {
    if s.emergency.is_locked() {
        return Ended::denied(StatusCode::FORBIDDEN, "the node is locked down".into());
    }
    let Some(info) = osmoda_mcpd::tool(tool) else {
        return Ended::failed(StatusCode::BAD_REQUEST, format!("unknown tool `{tool}`"));
    };
    if let Err(e) = osmoda_mcpd::validate_arguments(info.name, &args) {
        return Ended::failed(StatusCode::BAD_REQUEST, format!("{}: {e}", info.name));
    }
    let who = &call.who;
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
            match wait_for_operator(s, call, info.name, &args).await {
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
    match crate::tools::execute(s, &call.who, info.name, &args).await {
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
        // 409 tells the agent the operator said no; a tool that failed for
        // want of a peer (the fabric's 409) is unavailable instead.
        Err(e) if e.status == StatusCode::CONFLICT => {
            Ended::failed(StatusCode::SERVICE_UNAVAILABLE, e.message)
        }
        Err(e) => Ended::failed(e.status, e.message),
    }
}

/// Puts the call in the operator's list and waits for the decision: the
/// request id when approved, the answer to give otherwise.
async fn wait_for_operator(
    s: &ApiState,
    call: &mut Call,
    tool: &str,
    args: &Value,
) -> Result<u64, Ended> {
    let (id, decision) = s
        .approvals
        .request(&call.who.name, tool, args.clone(), "")
        .map_err(|e| Ended::failed(StatusCode::TOO_MANY_REQUESTS, format!("{e:#}")))?;
    call.waiting_on = Some(id);
    tracing::info!(agent = %call.who.name, tool, id, "tool call waits for approval");
    let decided = tokio::time::timeout(APPROVAL_WAIT, decision).await;
    call.waiting_on = None;
    // Still pending only after our own timeout; a no-op otherwise.
    s.approvals.withdraw(id);
    match decided {
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
