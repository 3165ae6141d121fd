//! Control API routes for agents, approvals and emergency commands. Every
//! change is audited with its outcome before the answer goes out.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use osmoda_agentd::{AgentEvent, AgentEventKind, AgentSpec, AgentStatus};
use osmoda_crdt_state::{Actor, Outcome};
use osmoda_fabric::proto::{hex, EmergencyKind};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::api::{ApiError, ApiResult, ApiState};
use crate::approvals::{Decision, GrantView, PendingView};
use crate::audit::AuditLog;
use crate::emergency::{self, Received};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/agents", post(add).get(list))
        .route("/v1/agents/{name}", get(show).delete(remove))
        .route("/v1/agents/{name}/start", post(start))
        .route("/v1/agents/{name}/stop", post(stop))
        .route("/v1/agents/{name}/logs", get(logs))
        .route("/v1/approvals", get(approvals))
        .route("/v1/approvals/{id}/approve", post(approve))
        .route("/v1/approvals/{id}/deny", post(deny))
        .route("/v1/emergency", post(command).get(state))
        .route("/v1/emergency/relay", post(relay))
}

fn failed(status: StatusCode, e: anyhow::Error) -> ApiError {
    ApiError {
        status,
        message: format!("{e:#}"),
    }
}

/// Unknown names are 404; bad specs 400; the rest is ours.
fn agent_error(e: anyhow::Error) -> ApiError {
    let text = format!("{e:#}");
    let status = if text.contains("no agent named") || text.contains("unknown agent") {
        StatusCode::NOT_FOUND
    } else if e.downcast_ref::<osmoda_agentd::SpecError>().is_some()
        || text.contains("exists already")
        || text.contains("at most")
    {
        StatusCode::BAD_REQUEST
    } else if text.contains("frozen") {
        StatusCode::CONFLICT
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    ApiError {
        status,
        message: text,
    }
}

fn locked() -> ApiError {
    ApiError {
        status: StatusCode::CONFLICT,
        message: "this node is locked down; `osmoda unlock` first".into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    spec: AgentSpec,
    #[serde(default = "yes")]
    start: bool,
}

fn yes() -> bool {
    true
}

async fn add(
    State(s): State<ApiState>,
    body: Result<Json<AddBody>, JsonRejection>,
) -> ApiResult<AgentStatus> {
    let Json(mut body) = body?;
    body.spec.created_by = "operator".into();
    let start = body.start && !s.emergency.is_locked();
    let name = body.spec.name.clone();
    let result = s.agents.add(body.spec, start).await;
    s.audit("agent.add", &name, &result).await?;
    Ok(Json(result.map_err(agent_error)?))
}

async fn list(State(s): State<ApiState>) -> ApiResult<Vec<AgentStatus>> {
    Ok(Json(s.agents.list().await.map_err(agent_error)?))
}

async fn show(State(s): State<ApiState>, Path(name): Path<String>) -> ApiResult<AgentStatus> {
    let all = s.agents.list().await.map_err(agent_error)?;
    all.into_iter()
        .find(|a| a.spec.name == name)
        .map(Json)
        .ok_or_else(|| agent_error(anyhow::anyhow!("no agent named {name:?}")))
}

async fn remove(State(s): State<ApiState>, Path(name): Path<String>) -> ApiResult<Value> {
    let result = s.agents.remove(&name).await;
    s.audit("agent.remove", &name, &result).await?;
    result.map_err(agent_error)?;
    Ok(Json(json!({ "removed": name })))
}

async fn start(State(s): State<ApiState>, Path(name): Path<String>) -> ApiResult<AgentStatus> {
    if s.emergency.is_locked() {
        return Err(locked());
    }
    let result = s.agents.start(&name).await;
    s.audit("agent.start", &name, &result).await?;
    Ok(Json(result.map_err(agent_error)?))
}

async fn stop(State(s): State<ApiState>, Path(name): Path<String>) -> ApiResult<AgentStatus> {
    let result = s.agents.stop(&name).await;
    s.audit("agent.stop", &name, &result).await?;
    Ok(Json(result.map_err(agent_error)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsQuery {
    #[serde(default = "default_lines")]
    lines: usize,
}

fn default_lines() -> usize {
    100
}

async fn logs(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    Query(q): Query<LogsQuery>,
) -> ApiResult<Vec<String>> {
    Ok(Json(
        s.agents
            .logs(&name, q.lines.min(10_000))
            .await
            .map_err(agent_error)?,
    ))
}

async fn approvals(State(s): State<ApiState>) -> ApiResult<Value> {
    let pending: Vec<PendingView> = s.approvals.pending();
    let grants: Vec<GrantView> = s.approvals.grants();
    Ok(Json(json!({ "pending": pending, "grants": grants })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    /// Makes a standing grant for this agent and tool, e.g. "1h".
    #[serde(default)]
    grant: Option<String>,
}

async fn approve(
    State(s): State<ApiState>,
    Path(id): Path<u64>,
    body: Option<Json<ApproveBody>>,
) -> ApiResult<PendingView> {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let grant: Option<Duration> = match body.grant.as_deref() {
        Some(text) => Some(humantime::parse_duration(text).map_err(|e| {
            ApiError::bad_request(format!(
                "grant {text:?} is not a duration like 30m or 1h: {e}"
            ))
        })?),
        None => None,
    };
    let result = s.approvals.decide(id, Decision::Approved, grant);
    let target = result
        .as_ref()
        .map(|p| format!("{} {} #{id}", p.agent, p.tool))
        .unwrap_or_else(|_| format!("#{id}"));
    s.audit("approval.approve", &target, &result).await?;
    Ok(Json(result.map_err(|e| failed(StatusCode::NOT_FOUND, e))?))
}

async fn deny(State(s): State<ApiState>, Path(id): Path<u64>) -> ApiResult<PendingView> {
    let result = s.approvals.decide(id, Decision::Denied, None);
    let target = result
        .as_ref()
        .map(|p| format!("{} {} #{id}", p.agent, p.tool))
        .unwrap_or_else(|_| format!("#{id}"));
    s.audit("approval.deny", &target, &result).await?;
    Ok(Json(result.map_err(|e| failed(StatusCode::NOT_FOUND, e))?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandBody {
    kind: String,
    #[serde(default)]
    fleet: bool,
}

/// `osmoda stop|freeze|resume|lockdown|unlock [--fleet]`.
async fn command(
    State(s): State<ApiState>,
    body: Result<Json<CommandBody>, JsonRejection>,
) -> ApiResult<Value> {
    let Json(body) = body?;
    let kind: EmergencyKind = body
        .kind
        .parse()
        .map_err(|e: osmoda_fabric::proto::EmergencyError| ApiError::bad_request(e.to_string()))?;
    if !body.fleet {
        if kind == EmergencyKind::Unlock {
            emergency::may_unlock(&s.cert, s.node.holds_root_key)
                .map_err(|e| failed(StatusCode::FORBIDDEN, e))?;
        }
        if kind == EmergencyKind::Lockdown {
            s.approvals.expire_all();
        }
        let result = s.emergency.apply(kind, &s.agents).await;
        s.audit(&format!("emergency.{}", kind.as_str()), "node", &result)
            .await?;
        let done = result.map_err(|e| failed(StatusCode::INTERNAL_SERVER_ERROR, e))?;
        return Ok(Json(
            json!({ "kind": kind.as_str(), "scope": "node", "result": done }),
        ));
    }
    let cmd = emergency::Emergency::sign(kind, &s.cert, &s.identity)
        .map_err(|e| failed(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let bytes = cmd.encode();
    // Published first so the fleet hears it even if applying here is slow.
    let published = emergency::publish(&s.fabric, &cmd).await;
    if kind == EmergencyKind::Lockdown {
        s.approvals.expire_all();
    }
    let here = s
        .emergency
        .receive(&bytes, &s.membership, &s.agents, &s.audit)
        .await;
    let here = match here {
        Received::Applied(_) => "applied".to_string(),
        Received::Ignored(reason) => format!("ignored: {reason}"),
    };
    Ok(Json(json!({
        "kind": kind.as_str(),
        "scope": "fleet",
        "published": published.is_ok(),
        "publish_error": published.err().map(|e| format!("{e:#}")),
        "here": here,
        "command": hex(&bytes),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RelayBody {
    command: String,
}

/// Sends an already signed command (hex) to the fleet again, for
/// operators relaying a command across a partition.
async fn relay(
    State(s): State<ApiState>,
    body: Result<Json<RelayBody>, JsonRejection>,
) -> ApiResult<Value> {
    let Json(body) = body?;
    let bytes = osmoda_fabric::proto::parse_hex_bytes(&body.command)
        .ok_or_else(|| ApiError::bad_request("the command is not hex"))?;
    let published = s
        .fabric
        .publish(osmoda_fabric::topics::EMERGENCY, bytes.clone())
        .await;
    let here = match s
        .emergency
        .receive(&bytes, &s.membership, &s.agents, &s.audit)
        .await
    {
        Received::Applied(_) => "applied".to_string(),
        Received::Ignored(reason) => format!("ignored: {reason}"),
    };
    Ok(Json(json!({
        "published": published.is_ok(),
        "here": here,
    })))
}

async fn state(State(s): State<ApiState>) -> ApiResult<Value> {
    let (mode, why) = s.agents.limit_mode();
    Ok(Json(json!({
        "emergency": s.emergency.state(),
        "limits": { "mode": mode, "reason": why },
    })))
}

/// Records what happens to agents (starts, exits, restarts, memory kills)
/// in the audit log.
pub async fn audit_agent_events(mut events: mpsc::Receiver<AgentEvent>, audit: Arc<AuditLog>) {
    while let Some(event) = events.recv().await {
        let (action, outcome, details) = match &event.kind {
            AgentEventKind::Started { pid, restarts } => (
                "agent.started",
                Outcome::Ok,
                format!("pid {pid}, restart {restarts}"),
            ),
            AgentEventKind::KilledOverMemory { .. } => (
                "agent.oom",
                Outcome::Failed("killed over its memory limit".into()),
                String::new(),
            ),
            AgentEventKind::GaveUp { reason } => {
                ("agent.gave-up", Outcome::Ok, format!("{reason:?}"))
            }
            AgentEventKind::Exited { status } => {
                ("agent.exited", Outcome::Ok, format!("{status:?}"))
            }
            _ => continue,
        };
        if let Err(e) = audit
            .record(Actor::Node, action, &event.name, outcome, &details)
            .await
        {
            tracing::warn!(error = %e, "cannot audit an agent event");
        }
    }
}
