//! Control API routes for agent cards and tasks between agents.

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::{ApiResult, Body, Params, Shared, OPERATOR};
use crate::api::{
    AgentView, CardEdit, CardQuery, FleetCardView, SubmitTask, TaskListQuery, TaskReplyBody,
    TaskView, TaskWatchQuery,
};
use crate::service::tasks::task_id;

pub fn routes() -> Router<std::sync::Arc<crate::service::Node>> {
    Router::new()
        .route("/v1/agents/{name}/card", post(edit))
        .route("/v1/cards", get(cards))
        .route("/v1/tasks", post(submit).get(list))
        .route("/v1/tasks/{id}", get(show))
        .route("/v1/tasks/{id}/cancel", post(cancel))
        .route("/v1/tasks/{id}/reply", post(reply))
}

async fn edit(
    State(node): Shared,
    Path(name): Path<String>,
    body: Body<CardEdit>,
) -> ApiResult<AgentView> {
    let Json(body) = body?;
    Ok(Json(node.agent_edit(OPERATOR, &name, body).await?))
}

async fn cards(State(node): Shared, query: Params<CardQuery>) -> ApiResult<Vec<FleetCardView>> {
    let Query(query) = query?;
    Ok(Json(node.fleet_cards(&query).await?))
}

async fn submit(State(node): Shared, body: Body<SubmitTask>) -> ApiResult<TaskView> {
    let Json(body) = body?;
    Ok(Json(node.task_submit(OPERATOR, body).await?))
}

async fn list(State(node): Shared, query: Params<TaskListQuery>) -> ApiResult<Vec<TaskView>> {
    let Query(query) = query?;
    Ok(Json(node.task_list(query.limit)))
}

/// One task; with `after`, once its version passes it (`task watch`).
async fn show(
    State(node): Shared,
    Path(id): Path<String>,
    query: Params<TaskWatchQuery>,
) -> ApiResult<TaskView> {
    let Query(query) = query?;
    let id = task_id(&id)?;
    let wait = query.wait.unwrap_or(30);
    Ok(Json(node.task_watch(id, query.after, wait).await?))
}

async fn cancel(State(node): Shared, Path(id): Path<String>) -> ApiResult<TaskView> {
    Ok(Json(node.task_cancel(OPERATOR, task_id(&id)?).await?))
}

async fn reply(
    State(node): Shared,
    Path(id): Path<String>,
    body: Body<TaskReplyBody>,
) -> ApiResult<TaskView> {
    let Json(body) = body?;
    Ok(Json(
        node.task_reply(OPERATOR, task_id(&id)?, body.input).await?,
    ))
}
