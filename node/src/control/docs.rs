//! Control API routes for knowledge entries and routines.

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::{ApiResult, Body, Params, Shared, OPERATOR};
use crate::api::{
    Created, Done, EntryPatch, EntryView, ListParams, NewEntry, NewRoutine, Page, RoutineView,
    SearchParams,
};

pub fn routes() -> Router<std::sync::Arc<crate::service::Node>> {
    Router::new()
        .route("/v1/knowledge", post(put).get(list))
        .route("/v1/knowledge/search", get(search))
        .route(
            "/v1/knowledge/{id}",
            get(get_entry).delete(remove).patch(update),
        )
        .route("/v1/routines", post(add_routine).get(list_routines))
        .route(
            "/v1/routines/{id}",
            get(show_routine).delete(remove_routine),
        )
        .route("/v1/routines/{id}/enable", post(enable_routine))
        .route("/v1/routines/{id}/disable", post(disable_routine))
}

async fn put(State(node): Shared, body: Body<NewEntry>) -> ApiResult<Created> {
    let Json(body) = body?;
    Ok(Json(node.knowledge_put(OPERATOR, body).await?))
}

async fn update(
    State(node): Shared,
    Path(id): Path<String>,
    body: Body<EntryPatch>,
) -> ApiResult<Done> {
    let Json(body) = body?;
    Ok(Json(node.knowledge_update(OPERATOR, &id, body).await?))
}

async fn get_entry(State(node): Shared, Path(id): Path<String>) -> ApiResult<EntryView> {
    Ok(Json(node.knowledge_get(&id)?))
}

async fn remove(State(node): Shared, Path(id): Path<String>) -> ApiResult<Done> {
    Ok(Json(node.knowledge_delete(OPERATOR, &id).await?))
}

async fn list(State(node): Shared, params: Params<ListParams>) -> ApiResult<Page<EntryView>> {
    let Query(params) = params?;
    // A scan of every shard: off the async threads.
    let page = tokio::task::spawn_blocking(move || node.knowledge_list(params))
        .await
        .map_err(crate::error::NodeError::internal)??;
    Ok(Json(page))
}

async fn search(State(node): Shared, params: Params<SearchParams>) -> ApiResult<Vec<EntryView>> {
    let Query(params) = params?;
    let found = tokio::task::spawn_blocking(move || node.knowledge_search(params))
        .await
        .map_err(crate::error::NodeError::internal)??;
    Ok(Json(found))
}

async fn add_routine(State(node): Shared, body: Body<NewRoutine>) -> ApiResult<Created> {
    let Json(body) = body?;
    Ok(Json(node.routine_add(OPERATOR, body).await?))
}

async fn list_routines(State(node): Shared) -> ApiResult<Vec<RoutineView>> {
    Ok(Json(node.routine_list()))
}

async fn show_routine(State(node): Shared, Path(id): Path<String>) -> ApiResult<RoutineView> {
    Ok(Json(node.routine_show(&id)?))
}

async fn remove_routine(State(node): Shared, Path(id): Path<String>) -> ApiResult<Done> {
    Ok(Json(node.routine_remove(OPERATOR, &id).await?))
}

async fn enable_routine(State(node): Shared, Path(id): Path<String>) -> ApiResult<Done> {
    Ok(Json(node.routine_set_enabled(OPERATOR, &id, true).await?))
}

async fn disable_routine(State(node): Shared, Path(id): Path<String>) -> ApiResult<Done> {
    Ok(Json(node.routine_set_enabled(OPERATOR, &id, false).await?))
}
