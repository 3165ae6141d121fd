//! Control API routes for knowledge entries and routines. Every write is
//! audited with its outcome before the answer goes out.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use osmoda_docs::{Action, EntryUpdate, ListQuery, NewRoutine, Target};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{ApiError, ApiResult, ApiState};
use crate::docs::{EntryView, RoutineView};

pub fn routes() -> Router<ApiState> {
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

/// Refusals of the document layer are the caller's mistakes (bad input,
/// unknown id); the store failing is ours.
fn refused(e: anyhow::Error) -> ApiError {
    let text = format!("{e:#}");
    let status = if e.downcast_ref::<osmoda_store::StoreError>().is_some() {
        StatusCode::INTERNAL_SERVER_ERROR
    } else if text.contains("not found") || text.contains("no such") || text.contains("unknown") {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::BAD_REQUEST
    };
    ApiError {
        status,
        message: text,
    }
}

fn not_found(what: &str, id: &str) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!("no {what} with id {id:?}"),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    title: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    tags: Vec<String>,
}

async fn put(s: State<ApiState>, body: Result<Json<PutBody>, JsonRejection>) -> ApiResult<Value> {
    let Json(b) = body?;
    let result = s.docs.put(b.title, b.body, b.tags, "operator".into()).await;
    let target = result
        .as_ref()
        .map(String::as_str)
        .unwrap_or("")
        .to_string();
    s.audit("knowledge.put", &target, &result).await?;
    let id = result.map_err(refused)?;
    Ok(Json(json!({ "ok": true, "id": id })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    title: Option<String>,
    body: Option<String>,
    tags: Option<Vec<String>>,
}

async fn update(
    s: State<ApiState>,
    Path(id): Path<String>,
    body: Result<Json<UpdateBody>, JsonRejection>,
) -> ApiResult<Value> {
    let Json(b) = body?;
    let result = s
        .docs
        .update(
            &id,
            EntryUpdate {
                title: b.title,
                body: b.body,
                tags: b.tags,
            },
        )
        .await;
    s.audit("knowledge.update", &id, &result).await?;
    result.map_err(refused)?;
    Ok(Json(json!({ "ok": true })))
}

async fn get_entry(s: State<ApiState>, Path(id): Path<String>) -> ApiResult<EntryView> {
    s.docs
        .get(&id)
        .map_err(refused)?
        .map(Json)
        .ok_or_else(|| not_found("knowledge entry", &id))
}

async fn remove(s: State<ApiState>, Path(id): Path<String>) -> ApiResult<Value> {
    let result = s.docs.delete(&id).await;
    s.audit("knowledge.delete", &id, &result).await?;
    result.map_err(refused)?;
    Ok(Json(json!({ "ok": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    tag: Option<String>,
    prefix: Option<String>,
    limit: Option<usize>,
}

async fn list(
    s: State<ApiState>,
    q: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Vec<EntryView>> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let query = ListQuery {
        tag: q.tag,
        id_prefix: q.prefix,
        limit: q.limit.unwrap_or(100).min(10_000),
        ..ListQuery::default()
    };
    Ok(Json(s.docs.list(&query)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchParams {
    q: String,
    limit: Option<usize>,
}

async fn search(
    s: State<ApiState>,
    q: Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Vec<EntryView>> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok(Json(
        s.docs
            .search(&q.q, q.limit.unwrap_or(100).min(10_000))
            .map_err(refused)?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutineBody {
    name: String,
    schedule: String,
    #[serde(default = "all")]
    target: String,
    command: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default = "default_timeout")]
    timeout_secs: u32,
    #[serde(default = "yes")]
    enabled: bool,
}

fn all() -> String {
    "all".into()
}
fn default_timeout() -> u32 {
    60
}
fn yes() -> bool {
    true
}

async fn add_routine(
    s: State<ApiState>,
    body: Result<Json<RoutineBody>, JsonRejection>,
) -> ApiResult<Value> {
    let Json(b) = body?;
    let target = Target::parse(&b.target).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let new = NewRoutine {
        id: String::new(),
        name: b.name.clone(),
        schedule: b.schedule,
        target,
        action: Action {
            command: b.command,
            args: b.args,
            timeout_secs: b.timeout_secs,
        },
        enabled: b.enabled,
        created_by: "operator".into(),
    };
    let result = s.docs.add_routine(new).await;
    let target = result
        .as_ref()
        .map(|id| format!("{id} {}", b.name))
        .unwrap_or(b.name);
    s.audit("routine.add", &target, &result).await?;
    let id = result.map_err(refused)?;
    Ok(Json(json!({ "ok": true, "id": id })))
}

async fn list_routines(s: State<ApiState>) -> ApiResult<Vec<RoutineView>> {
    Ok(Json(s.docs.routines()))
}

async fn show_routine(s: State<ApiState>, Path(id): Path<String>) -> ApiResult<RoutineView> {
    s.docs
        .routine(&id)
        .map_err(refused)?
        .map(Json)
        .ok_or_else(|| not_found("routine", &id))
}

async fn remove_routine(s: State<ApiState>, Path(id): Path<String>) -> ApiResult<Value> {
    let result = s.docs.remove_routine(&id).await;
    s.audit("routine.remove", &id, &result).await?;
    result.map_err(refused)?;
    Ok(Json(json!({ "ok": true })))
}

async fn set_enabled(s: State<ApiState>, id: String, enabled: bool) -> ApiResult<Value> {
    let result = s.docs.set_routine(&id, enabled).await;
    let action = if enabled {
        "routine.enable"
    } else {
        "routine.disable"
    };
    s.audit(action, &id, &result).await?;
    result.map_err(refused)?;
    Ok(Json(json!({ "ok": true })))
}

async fn enable_routine(s: State<ApiState>, Path(id): Path<String>) -> ApiResult<Value> {
    set_enabled(s, id, true).await
}

async fn disable_routine(s: State<ApiState>, Path(id): Path<String>) -> ApiResult<Value> {
    set_enabled(s, id, false).await
}
