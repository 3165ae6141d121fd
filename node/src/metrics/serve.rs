//! `GET /metrics`: the route the control socket mounts, and the plain TCP
//! listener of `metrics_listen`, which serves that route and nothing else.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::control::ApiError;
use crate::error::NodeError;
use crate::service::Node;

pub async fn metrics(State(node): State<Arc<Node>>) -> Response {
    match node.metrics_text().await {
        Ok(text) => ([(CONTENT_TYPE, super::CONTENT_TYPE)], text).into_response(),
        Err(e) => ApiError(e).into_response(),
    }
}

/// Binds `addr` now, so that a taken port stops the start, and serves
/// `GET /metrics` on it until `stop` resolves. Only this route: whoever
/// reaches the port must not reach the control API.
pub async fn listen(
    addr: SocketAddr,
    node: Arc<Node>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), NodeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| NodeError::Invalid(format!("metrics_listen: cannot bind {addr}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| NodeError::internal(format!("metrics_listen: {e}")))?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(node);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::warn!(error = %e, "the metrics listener stopped");
        }
    });
    Ok((bound, task))
}
