//! Control API routes for agents, approvals and emergency commands.

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::{ApiResult, Body, Params, Shared, OPERATOR};
use crate::api::{
    AddAgent, AgentView, AllowBody, ApprovalsView, ApproveBody, EmergencyBody, EmergencyOutcome,
    EmergencyView, LogsQuery, PendingView, RelayBody, Removed,
};

pub fn routes() -> Router<std::sync::Arc<crate::service::Node>> {
    Router::new()
        .route("/v1/agents", post(add).get(list))
        .route("/v1/agents/{name}", get(show).delete(remove))
        .route("/v1/agents/{name}/start", post(start))
        .route("/v1/agents/{name}/stop", post(stop))
        .route("/v1/agents/{name}/logs", get(logs))
        .route("/v1/agents/{name}/allow", post(allow))
        .route("/v1/agents/{name}/disallow", post(disallow))
        .route("/v1/approvals", get(approvals))
        .route("/v1/approvals/{id}/approve", post(approve))
        .route("/v1/approvals/{id}/deny", post(deny))
        .route("/v1/emergency", post(command).get(state))
        .route("/v1/emergency/relay", post(relay))
}

async fn add(State(node): Shared, body: Body<AddAgent>) -> ApiResult<AgentView> {
    let Json(body) = body?;
    Ok(Json(node.agent_add(OPERATOR, body).await?))
}

async fn list(State(node): Shared) -> ApiResult<Vec<AgentView>> {
    Ok(Json(node.agent_list().await?))
}

async fn show(State(node): Shared, Path(name): Path<String>) -> ApiResult<AgentView> {
    Ok(Json(node.agent_show(&name).await?))
}

async fn remove(State(node): Shared, Path(name): Path<String>) -> ApiResult<Removed> {
    Ok(Json(node.agent_remove(OPERATOR, &name).await?))
}

async fn start(State(node): Shared, Path(name): Path<String>) -> ApiResult<AgentView> {
    Ok(Json(node.agent_start(OPERATOR, &name).await?))
}

async fn stop(State(node): Shared, Path(name): Path<String>) -> ApiResult<AgentView> {
    Ok(Json(node.agent_stop(OPERATOR, &name).await?))
}

async fn allow(state: Shared, name: Path<String>, body: Body<AllowBody>) -> ApiResult<AgentView> {
    change_allowlist(state, name, body, true).await
}

async fn disallow(
    state: Shared,
    name: Path<String>,
    body: Body<AllowBody>,
) -> ApiResult<AgentView> {
    change_allowlist(state, name, body, false).await
}

async fn change_allowlist(
    State(node): Shared,
    Path(name): Path<String>,
    body: Body<AllowBody>,
    add: bool,
) -> ApiResult<AgentView> {
    let Json(body) = body?;
    Ok(Json(
        node.agent_allow(OPERATOR, &name, body.entries, add).await?,
    ))
}

async fn logs(
    State(node): Shared,
    Path(name): Path<String>,
    query: Params<LogsQuery>,
) -> ApiResult<Vec<String>> {
    let Query(query) = query?;
    Ok(Json(node.agent_logs(&name, query.lines).await?))
}

async fn approvals(State(node): Shared) -> ApiResult<ApprovalsView> {
    Ok(Json(node.approvals()))
}

async fn approve(
    State(node): Shared,
    Path(id): Path<u64>,
    body: Option<Json<ApproveBody>>,
) -> ApiResult<PendingView> {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    Ok(Json(
        node.approve(OPERATOR, id, body.grant.as_deref()).await?,
    ))
}

async fn deny(State(node): Shared, Path(id): Path<u64>) -> ApiResult<PendingView> {
    Ok(Json(node.deny(OPERATOR, id).await?))
}

/// `osmoda stop|freeze|resume|lockdown|unlock [--fleet]`.
async fn command(State(node): Shared, body: Body<EmergencyBody>) -> ApiResult<EmergencyOutcome> {
    let Json(body) = body?;
    Ok(Json(
        node.emergency(OPERATOR, &body.kind, body.fleet).await?,
    ))
}

/// Sends an already signed command (hex) to the fleet again.
async fn relay(State(node): Shared, body: Body<RelayBody>) -> ApiResult<EmergencyOutcome> {
    let Json(body) = body?;
    Ok(Json(node.relay(OPERATOR, &body.command).await?))
}

async fn state(State(node): Shared) -> ApiResult<EmergencyView> {
    Ok(Json(node.emergency_state()))
}
