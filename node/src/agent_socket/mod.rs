//! The agents' socket: `POST /v1/agent/call`, tool calls from the agent
//! the kernel says is calling (see `osmoda_mcpd::forward` for the wire
//! format). A thin front: the gates below decide whether a call runs,
//! `tools.rs` maps it to one service operation, and the call's single
//! audit entry is written here once it ended.
//!
//! Every call goes through the same gates, in this order: the caller's
//! credentials (`SO_PEERCRED`, taken when it connected) name a running
//! agent (401 otherwise, 403 during a lockdown, which stops every agent);
//! a lockdown refuses everything (403); the tool
//! must be in the catalogue and the arguments must fit it (400); a ring-1
//! tool is refused to a ring-2 agent (403) and, for a ring-1 agent, waits
//! for the operator unless a grant or an advance approval covers it (409,
//! kind `denied`, when denied or expired). Every call from a known agent is
//! audited with its outcome, refusals included; calls from processes that
//! are no agent are not (the socket is open to every local user, and they
//! must not be able to fill the audit log). A call whose client hangs up midway is
//! audited too, and its pending approval withdrawn.

mod tools;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use osmoda_crdt_state::{Actor, Outcome};
use osmoda_mcpd::{Ring, ToolCall};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ErrorKind, NodeError};
use crate::metrics::ToolOutcome;
use crate::service::{AgentCall, Node};
use crate::state::approvals::Decision;

/// Largest call body: a 1 MiB file write, JSON-escaped, fits.
const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// How long a ring-1 call waits for the operator before it expires.
const APPROVAL_WAIT: Duration = Duration::from_secs(600);

pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/v1/agent/call", post(call))
        .fallback(|| async {
            reply(NodeError::not_found(
                "route on the agents' socket (it serves only POST /v1/agent/call)",
                "",
            ))
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(node)
}

/// Binds the agents' socket. Mode 0666: any local process may connect (an
/// agent runs under a uid of its own), and only a running agent's process
/// gets anything done.
pub fn bind(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(listener)
}

/// Who connected, as the kernel saw it at `connect` (`SO_PEERCRED`): not
/// something the caller says, and not something another process could
/// read from its environment and replay.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    uid: Option<u32>,
    pid: Option<i32>,
}

impl Connected<axum::serve::IncomingStream<'_, tokio::net::UnixListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::UnixListener>) -> Self {
        match stream.io().peer_cred() {
            Ok(cred) => Peer {
                uid: Some(cred.uid()),
                pid: cred.pid(),
            },
            Err(_) => Peer {
                uid: None,
                pid: None,
            },
        }
    }
}

/// Serves the agents' socket until the listener fails.
pub async fn serve(listener: tokio::net::UnixListener, node: Arc<Node>) {
    let app = router(node).into_make_service_with_connect_info::<Peer>();
    if let Err(e) = axum::serve(listener, app).await {
        tracing::warn!(error = %e, "the agents' socket stopped");
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallBody {
    tool: String,
    #[serde(default)]
    arguments: Value,
}

fn status_of(kind: ErrorKind) -> StatusCode {
    kind.status()
}

fn error_body(kind: ErrorKind, message: String) -> Value {
    json!({ "error": message, "kind": kind })
}

fn reply(e: NodeError) -> Response {
    let kind = e.kind();
    (status_of(kind), Json(error_body(kind, e.to_string()))).into_response()
}

/// How a call ended: the answer, and what the audit log says about it.
struct Ended {
    status: StatusCode,
    body: Value,
    outcome: Outcome,
}

impl Ended {
    fn ok(result: Value) -> Self {
        Self {
            status: StatusCode::OK,
            body: json!({ "result": result }),
            outcome: Outcome::Ok,
        }
    }

    fn failed(e: NodeError) -> Self {
        let kind = e.kind();
        let message = e.to_string();
        let outcome = match kind {
            ErrorKind::Forbidden | ErrorKind::Denied => Outcome::Denied,
            _ => Outcome::Failed(message.clone()),
        };
        Self {
            status: status_of(kind),
            body: error_body(kind, message),
            outcome,
        }
    }
}

async fn call(
    State(node): State<Arc<Node>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    body: Result<Json<CallBody>, JsonRejection>,
) -> Response {
    // Who calls first: for anyone but a running agent nothing else is
    // looked at or audited.
    let who = match peer.uid {
        Some(uid) => node.agents.identify(uid, peer.pid).await,
        None => None,
    };
    let Some(who) = who else {
        // A lockdown stops every agent; a leftover MCP process still
        // learns why its calls fail.
        if node.emergency.is_locked() {
            return reply(NodeError::LockedDown);
        }
        return (
            StatusCode::UNAUTHORIZED,
            Json(error_body(
                ErrorKind::Forbidden,
                "the calling process is not a running agent of this node".into(),
            )),
        )
            .into_response();
    };
    let (tool, arguments, rejected) = match body {
        Ok(Json(b)) => (b.tool, b.arguments, None),
        Err(e) => (String::new(), Value::Null, Some(e)),
    };
    let info = osmoda_mcpd::tool(&tool);
    let parsed = info.map(|_| ToolCall::parse(&tool, &arguments));
    // Unknown names are audited under a fixed action, so an agent cannot
    // write arbitrary action names into the log.
    let action = match (&rejected, info) {
        (Some(_), _) => "tool.call".to_string(),
        (None, Some(info)) => format!("tool.{}", info.name),
        (None, None) => "tool.unknown".to_string(),
    };
    let target = match &parsed {
        Some(Ok(call)) => call.audit_target(),
        Some(Err(_)) => String::new(),
        // An unknown tool's name goes in the target, where any text may.
        None => tool.chars().take(64).collect(),
    };
    let mut call = Call {
        tool: info.map_or("unknown", |i| i.name),
        node: node.clone(),
        agent: Arc::new(AgentCall::new(who)),
        action,
        target,
        details: String::new(),
        waiting_on: None,
        done: false,
    };
    let ended = match (rejected, parsed) {
        (Some(e), _) => Ended::failed(NodeError::Invalid(e.body_text())),
        (None, None) => Ended::failed(NodeError::Invalid(format!("unknown tool `{tool}`"))),
        (None, Some(Err(e))) => Ended::failed(NodeError::Invalid(format!("{tool}: {e}"))),
        (None, Some(Ok(tool_call))) => {
            match decide_and_run(&mut call, tool_call, &arguments).await {
                Ok(result) => Ended::ok(result),
                Err(e) => Ended::failed(e),
            }
        }
    };
    call.finish(ended).await
}

/// One authenticated call on its way. Dropped before `finish` (the client
/// hung up, so axum dropped the handler) it still withdraws the approval it
/// waits for and audits the call, so none goes unrecorded.
struct Call {
    /// The catalogue's name, or `unknown`: a bounded metrics label.
    tool: &'static str,
    node: Arc<Node>,
    agent: Arc<AgentCall>,
    action: String,
    target: String,
    /// How the call got through the gates (granted, approved #N).
    details: String,
    /// The approval request this call waits on, if it waits.
    waiting_on: Option<u64>,
    done: bool,
}

impl Call {
    fn details(&self) -> String {
        let notes = self.agent.notes();
        match (self.details.is_empty(), notes.is_empty()) {
            (true, _) => notes,
            (false, true) => self.details.clone(),
            (false, false) => format!("{}; {notes}", self.details),
        }
    }

    /// Audits the call, then answers. A call that cannot be audited fails,
    /// as on the control API: an unaudited action must not look done.
    async fn finish(mut self, ended: Ended) -> Response {
        self.done = true;
        let counted = match &ended.outcome {
            Outcome::Ok => ToolOutcome::Ok,
            Outcome::Denied => ToolOutcome::Denied,
            _ => ToolOutcome::Failed,
        };
        self.node.metrics.tool_call(self.tool, counted);
        let who = &self.agent.who;
        let recorded = self
            .node
            .audit
            .record_in_ring(
                Actor::Agent(who.name.clone()),
                who.ring,
                &self.action,
                &self.target,
                ended.outcome,
                &self.details(),
            )
            .await;
        if let Err(e) = recorded {
            tracing::warn!(agent = %who.name, error = %e, "cannot audit a tool call");
            return reply(NodeError::Audit(e.to_string()));
        }
        (ended.status, Json(ended.body)).into_response()
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.node
            .metrics
            .tool_call(self.tool, ToolOutcome::Abandoned);
        let mut details = self.details();
        if let Some(id) = self.waiting_on {
            self.node.approvals.withdraw(id);
            details = format!("approval request #{id} withdrawn");
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let audit = self.node.audit.clone();
        let actor = Actor::Agent(self.agent.who.name.clone());
        let ring = self.agent.who.ring;
        let action = std::mem::take(&mut self.action);
        let target = std::mem::take(&mut self.target);
        runtime.spawn(async move {
            let outcome = Outcome::Failed("the caller went away before the call ended".into());
            let recorded = audit
                .record_in_ring(actor, ring, &action, &target, outcome, &details)
                .await;
            if let Err(e) = recorded {
                tracing::warn!(error = %e, "cannot audit an abandoned tool call");
            }
        });
    }
}

async fn decide_and_run(call: &mut Call, tool: ToolCall, args: &Value) -> Result<Value, NodeError> {
    let node = call.node.clone();
    if node.emergency.is_locked() {
        return Err(NodeError::LockedDown);
    }
    let info = tool.info();
    if info.ring == Ring::One {
        let who = call.agent.who.clone();
        // Only ring 1 reaches ring-1 tools; anything else counts as ring 2.
        if who.ring != 1 {
            return Err(NodeError::Forbidden(format!(
                "ring {} agents cannot use {}",
                who.ring, info.name
            )));
        }
        if node.approvals.allowed(&who.name, info.name, args) {
            call.details = "granted".into();
        } else {
            let id = wait_for_operator(call, info.name, args).await?;
            call.details = format!("approved #{id}");
            // A lockdown while the call waited expires it; one that came
            // just after the approval must still stop it.
            if node.emergency.is_locked() {
                return Err(NodeError::LockedDown);
            }
        }
    }
    tools::execute(&node, &call.agent, tool).await
}

/// Puts the call in the operator's list and waits for the decision: the
/// request id when approved, the refusal otherwise.
async fn wait_for_operator(call: &mut Call, tool: &str, args: &Value) -> Result<u64, NodeError> {
    let node = call.node.clone();
    let agent = call.agent.who.name.clone();
    let (id, decision) = node.approvals.request(&agent, tool, args.clone(), "")?;
    call.waiting_on = Some(id);
    tracing::info!(agent = %agent, tool, id, "tool call waits for approval");
    let decided = tokio::time::timeout(APPROVAL_WAIT, decision).await;
    call.waiting_on = None;
    // Still pending only after our own timeout; a no-op otherwise.
    node.approvals.withdraw(id);
    match decided {
        Ok(Ok(Decision::Approved)) => Ok(id),
        Ok(Ok(Decision::Denied)) => Err(NodeError::Denied(format!(
            "denied by the operator (request #{id})"
        ))),
        // Expired, the sender dropped (node stopping), or our own timeout.
        Ok(Ok(Decision::Expired)) | Ok(Err(_)) | Err(_) => Err(NodeError::Denied(format!(
            "expired: no operator decision on request #{id}"
        ))),
    }
}
