//! The local control API: HTTP/JSON on a Unix socket (mode 0600) in the data
//! folder. A thin front over the service layer: each route parses its
//! request into an `api` type, calls one `Node` method as the operator, and
//! answers with the `api` type it returns. Errors answer with the status of
//! their kind (`NodeError::kind`) and an `ErrorBody`. `docs/api.md` lists
//! the routes.

mod agents;
mod docs;
mod secrets;
mod tasks;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::api::{
    AuditLogView, Done, ErrorBody, ForkView, HeadView, InboxEntry, InviteBody, InviteView,
    LogQuery, PeerInfo, RecordBody, Recorded, Renewed, RevokeBody, Revoked, SendBody, Sent,
    StatusView, TextBody, VerifyBody, VerifyReport,
};
use crate::error::{ErrorKind, NodeError};
use crate::service::{Caller, Node};

/// Largest request body the control socket reads: the largest entry the
/// node accepts, JSON-escaped at its worst (`\u0001`: 6 bytes a byte),
/// fits, so the socket never refuses what the documents would take.
const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
const _: () = assert!(
    6 * (osmoda_docs::MAX_BODY_BYTES
        + osmoda_docs::MAX_TITLE_BYTES
        + osmoda_docs::MAX_TAGS * osmoda_docs::MAX_TAG_BYTES)
        + 64 * 1024
        <= MAX_BODY_BYTES
);

/// An error on its way out: the status of its kind, and an `ErrorBody`.
pub struct ApiError(pub NodeError);

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        ApiError(e)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError(NodeError::Invalid(format!(
                "the request is over the {MAX_BODY_BYTES}-byte limit"
            )));
        }
        ApiError(NodeError::Invalid(e.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError(NodeError::Invalid(e.body_text()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = self.0.kind();
        let status = kind.status();
        let body = ErrorBody {
            error: self.0.to_string(),
            kind,
        };
        (status, Json(body)).into_response()
    }
}

pub(crate) type ApiResult<T> = Result<Json<T>, ApiError>;
pub(crate) type Body<T> = Result<Json<T>, JsonRejection>;
pub(crate) type Params<T> = Result<Query<T>, QueryRejection>;
pub(crate) type Shared = State<Arc<Node>>;

/// The operator: whoever reaches this socket (mode 0600, in the node's
/// folder) acts as the node's operator.
pub(crate) const OPERATOR: Caller<'static> = Caller::Operator;

pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/peers", get(peers))
        .route("/v1/mesh/broadcast", post(broadcast))
        .route("/v1/mesh/send", post(send))
        .route("/v1/mesh/inbox", get(inbox))
        .route("/v1/fleet/revocations", post(revoke))
        .route("/v1/fleet/invites", post(invite))
        .route("/v1/fleet/renewal", post(renew))
        .route("/v1/audit/log", get(audit_log))
        .route("/v1/audit/verify", post(audit_verify))
        .route("/v1/audit/record", post(audit_record))
        .route("/v1/audit/heads", get(audit_heads))
        .route("/v1/audit/forks", get(audit_forks))
        .route("/metrics", get(crate::metrics::serve::metrics))
        .merge(docs::routes())
        .merge(agents::routes())
        .merge(secrets::routes())
        .merge(tasks::routes())
        .fallback(|| async { ApiError(NodeError::not_found("route (see docs/api.md)", "")) })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(node)
}

/// Binds the socket with mode 0600, replacing a stale one from a crash.
/// Only the node's own user and root are served, whatever the mode.
pub fn bind(path: &Path) -> Result<OperatorListener, NodeError> {
    if path.as_os_str().len() >= 100 {
        return Err(NodeError::Invalid(format!(
            "the control socket path {} is too long for a Unix socket; use a shorter --data folder",
            path.display()
        )));
    }
    let failed =
        |e: std::io::Error| NodeError::Internal(format!("cannot bind {}: {e}", path.display()));
    if path.exists() {
        // The data folder lock is held, so no live node owns this socket.
        std::fs::remove_file(path).map_err(failed)?;
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(failed)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(failed)?;
    // The socket is the node's own: its owner is the node's effective uid.
    let node_uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(path).map_err(failed)?);
    Ok(OperatorListener {
        inner: listener,
        node_uid,
        last_warning: None,
    })
}

/// The control socket's listener. A connection from a process running as
/// neither the node's user nor root is closed before a byte is read (the
/// kernel's `SO_PEERCRED`), so a socket mode loosened by hand, or an agent
/// that reaches the file, cannot drive the node: agents run under uids of
/// their own.
pub struct OperatorListener {
    inner: tokio::net::UnixListener,
    node_uid: u32,
    /// When a refusal was last logged as a warning: a process that keeps
    /// knocking gets one warning every 10 s, the rest at debug level.
    last_warning: Option<std::time::Instant>,
}

impl OperatorListener {
    fn allows(&self, uid: u32) -> bool {
        uid == self.node_uid || uid == 0
    }

    fn refused(&mut self, uid: Option<u32>, pid: Option<i32>, error: Option<std::io::Error>) {
        let now = std::time::Instant::now();
        if self
            .last_warning
            .is_some_and(|t| now.duration_since(t) < std::time::Duration::from_secs(10))
        {
            tracing::debug!(?uid, ?pid, ?error, "control socket: refused a connection");
            return;
        }
        self.last_warning = Some(now);
        match error {
            None => tracing::warn!(
                ?uid,
                ?pid,
                "control socket: refused a process of another user"
            ),
            Some(e) => {
                tracing::warn!(error = %e, "control socket: cannot tell who connected; refused")
            }
        }
    }
}

impl axum::serve::Listener for OperatorListener {
    type Io = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
            match io.peer_cred() {
                Ok(peer) if self.allows(peer.uid()) => return (io, addr),
                Ok(peer) => self.refused(Some(peer.uid()), peer.pid(), None),
                Err(e) => self.refused(None, None, Some(e)),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// The kind of an error answer, for clients reading an `ErrorBody`.
pub fn kind_of(status: u16, body: &[u8]) -> ErrorKind {
    serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .map(|b| b.kind)
        .or_else(|| {
            StatusCode::from_u16(status)
                .ok()
                .and_then(ErrorKind::of_status)
        })
        .unwrap_or(ErrorKind::Internal)
}

async fn status(State(node): Shared) -> ApiResult<StatusView> {
    Ok(Json(node.status().await?))
}

async fn peers(State(node): Shared) -> ApiResult<Vec<PeerInfo>> {
    Ok(Json(node.peers().await?))
}

async fn broadcast(State(node): Shared, body: Body<TextBody>) -> ApiResult<Done> {
    let Json(body) = body?;
    Ok(Json(node.broadcast(OPERATOR, body.text).await?))
}

async fn send(State(node): Shared, body: Body<SendBody>) -> ApiResult<Sent> {
    let Json(body) = body?;
    Ok(Json(node.send(OPERATOR, &body.node, body.text).await?))
}

async fn inbox(State(node): Shared) -> ApiResult<Vec<InboxEntry>> {
    Ok(Json(node.inbox()))
}

async fn revoke(State(node): Shared, body: Body<RevokeBody>) -> ApiResult<Revoked> {
    let Json(body) = body?;
    Ok(Json(node.revoke(OPERATOR, body).await?))
}

async fn invite(State(node): Shared, body: Body<InviteBody>) -> ApiResult<InviteView> {
    let Json(body) = body?;
    Ok(Json(node.invite(OPERATOR, body).await?))
}

async fn renew(State(node): Shared) -> ApiResult<Renewed> {
    Ok(Json(node.renew_certificate(OPERATOR).await?))
}

async fn audit_log(State(node): Shared, query: Params<LogQuery>) -> ApiResult<AuditLogView> {
    let Query(query) = query?;
    Ok(Json(node.audit_log(query).await?))
}

async fn audit_verify(State(node): Shared, body: Body<VerifyBody>) -> ApiResult<VerifyReport> {
    let Json(body) = body?;
    Ok(Json(node.audit_verify(body).await?))
}

async fn audit_record(State(node): Shared, body: Body<RecordBody>) -> ApiResult<Recorded> {
    let Json(body) = body?;
    Ok(Json(node.audit_record(OPERATOR, body).await?))
}

async fn audit_heads(State(node): Shared) -> ApiResult<Vec<HeadView>> {
    Ok(Json(node.audit_heads()))
}

async fn audit_forks(State(node): Shared) -> ApiResult<Vec<ForkView>> {
    Ok(Json(node.audit_forks()))
}
