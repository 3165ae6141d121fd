//! Control API routes for the agents' secrets. Values travel only in
//! request bodies, never in a path or a query string (which proxies and
//! shells keep), and no route answers with one.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::{ApiResult, Body, Shared, OPERATOR};
use crate::api::{NewSecret, Removed, RotateSecret, SecretAgent, SecretView};

pub fn routes() -> Router<std::sync::Arc<crate::service::Node>> {
    Router::new()
        .route("/v1/secrets", post(set).get(list))
        .route("/v1/secrets/{name}", get(show).delete(remove))
        .route("/v1/secrets/{name}/grant", post(grant))
        .route("/v1/secrets/{name}/revoke", post(revoke))
        .route("/v1/secrets/{name}/rotate", post(rotate))
}

async fn set(State(node): Shared, body: Body<NewSecret>) -> ApiResult<SecretView> {
    let Json(body) = body?;
    Ok(Json(node.secret_set(OPERATOR, body).await?))
}

async fn list(State(node): Shared) -> ApiResult<Vec<SecretView>> {
    Ok(Json(node.secret_list()?))
}

async fn show(State(node): Shared, Path(name): Path<String>) -> ApiResult<SecretView> {
    Ok(Json(node.secret_show(&name)?))
}

async fn remove(State(node): Shared, Path(name): Path<String>) -> ApiResult<Removed> {
    Ok(Json(node.secret_rm(OPERATOR, &name).await?))
}

async fn grant(
    State(node): Shared,
    Path(name): Path<String>,
    body: Body<SecretAgent>,
) -> ApiResult<SecretView> {
    let Json(body) = body?;
    Ok(Json(node.secret_grant(OPERATOR, &name, &body.agent).await?))
}

async fn revoke(
    State(node): Shared,
    Path(name): Path<String>,
    body: Body<SecretAgent>,
) -> ApiResult<SecretView> {
    let Json(body) = body?;
    Ok(Json(
        node.secret_revoke(OPERATOR, &name, &body.agent).await?,
    ))
}

async fn rotate(
    State(node): Shared,
    Path(name): Path<String>,
    body: Body<RotateSecret>,
) -> ApiResult<SecretView> {
    let Json(body) = body?;
    Ok(Json(
        node.secret_rotate(OPERATOR, &name, &body.value).await?,
    ))
}
