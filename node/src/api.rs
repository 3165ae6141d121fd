//! The local control API: HTTP/JSON on a Unix socket (mode 0600) in the data
//! folder. The CLI is its first client; `docs/api.md` lists the routes.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use libp2p::PeerId;
use osmoda_fabric::proto::Revocation;
use osmoda_fabric::{FabricError, FabricHandle};
use serde::{Deserialize, Serialize};
use serde_json::json;

use std::sync::Arc;

use osmoda_crdt_state::{Actor, Outcome};

use crate::audit::AuditLog;
use crate::datadir::FleetInfo;
use osmoda_fabric::proto::parse_hex_bytes;

#[derive(Clone)]
pub struct ApiState {
    pub fabric: FabricHandle,
    pub node: NodeInfo,
    pub audit: Arc<AuditLog>,
    pub heads: Arc<crate::heads::FleetHeads>,
    pub docs: Arc<crate::docs::Docs>,
    pub mirrors: crate::audit_remote::Mirrors,
    pub agents: Arc<crate::agents::Agents>,
    pub approvals: Arc<crate::approvals::Approvals>,
    pub emergency: Arc<crate::emergency::Emergency>,
    pub membership: Arc<osmoda_fabric::Membership>,
    /// This node's certificate and identity key, to sign fleet commands.
    pub cert: osmoda_fabric::proto::FleetCert,
    pub identity: Arc<zeroize::Zeroizing<[u8; 32]>>,
}

impl ApiState {
    /// Audits an operator's action with the outcome it had. A failure to
    /// audit fails the request: an unaudited change must not look done.
    pub(crate) async fn audit<T, E: std::fmt::Display>(
        &self,
        action: &str,
        target: &str,
        result: &Result<T, E>,
    ) -> Result<(), ApiError> {
        let outcome = match result {
            Ok(_) => Outcome::Ok,
            Err(e) => Outcome::Failed(e.to_string()),
        };
        self.audit
            .record(Actor::Operator, action, target, outcome, "")
            .await
            .map(|_| ())
            .map_err(|e| ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: format!("cannot write the audit log: {e:#}"),
            })
    }
}

/// Facts about this node that do not change while it runs.
#[derive(Debug, Clone, Serialize)]
pub struct NodeInfo {
    pub node_id: String,
    pub name: String,
    pub role: String,
    pub fleet: FleetInfo,
    pub certificate_expires_at: u64,
    pub holds_root_key: bool,
    pub version: &'static str,
}

/// An error with the status code that says whose fault it is.
pub struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl From<FabricError> for ApiError {
    fn from(e: FabricError) -> Self {
        let status = match &e {
            FabricError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            FabricError::NoPeers | FabricError::NotConnected(_) => StatusCode::CONFLICT,
            FabricError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            FabricError::Revocation(_) | FabricError::Dial(_) => StatusCode::BAD_REQUEST,
            FabricError::Delivery(_) | FabricError::Publish(_) => StatusCode::BAD_GATEWAY,
        };
        Self {
            status,
            message: e.to_string(),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        Self {
            status: e.status(),
            message: e.body_text(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

pub(crate) type ApiResult<T> = std::result::Result<Json<T>, ApiError>;

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/peers", get(peers))
        .route("/v1/mesh/broadcast", post(broadcast))
        .route("/v1/mesh/send", post(send))
        .route("/v1/mesh/inbox", get(inbox))
        .route("/v1/fleet/revocations", post(revoke))
        .route("/v1/audit/log", get(audit_log))
        .route("/v1/audit/verify", post(audit_verify))
        .route("/v1/audit/record", post(audit_record))
        .route("/v1/audit/heads", get(audit_heads))
        .route("/v1/audit/forks", get(audit_forks))
        .merge(crate::docs_api::routes())
        .merge(crate::agents_api::routes())
        .fallback(|| async {
            ApiError {
                status: StatusCode::NOT_FOUND,
                message: "no such route; see docs/api.md".into(),
            }
        })
        .layer(axum::extract::DefaultBodyLimit::max(256 * 1024))
        .with_state(state)
}

/// Binds the socket with mode 0600, replacing a stale one from a crash.
pub fn bind(path: &Path) -> Result<tokio::net::UnixListener> {
    if path.as_os_str().len() >= 100 {
        anyhow::bail!(
            "the control socket path {} is too long for a Unix socket; use a shorter --data folder",
            path.display()
        );
    }
    if path.exists() {
        // The data folder lock is held, so no live node owns this socket.
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale {}", path.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("cannot bind {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

#[derive(Serialize)]
struct Status {
    #[serde(flatten)]
    node: NodeInfo,
    #[serde(flatten)]
    fabric: osmoda_fabric::FabricStatus,
    agents: AgentsStatus,
}

#[derive(Serialize)]
struct AgentsStatus {
    count: usize,
    /// "cgroup-v2" or "rlimits": how agents' limits are enforced here.
    limit_mode: String,
    limit_reason: String,
    lockdown: bool,
    frozen: bool,
}

async fn status(State(s): State<ApiState>) -> ApiResult<Status> {
    let (limit_mode, limit_reason) = s.agents.limit_mode();
    let emergency = s.emergency.state();
    Ok(Json(Status {
        node: s.node.clone(),
        fabric: s.fabric.status().await?,
        agents: AgentsStatus {
            count: s.agents.specs().map(|v| v.len()).unwrap_or(0),
            limit_mode,
            limit_reason,
            lockdown: emergency.lockdown,
            frozen: emergency.frozen,
        },
    }))
}

async fn peers(State(s): State<ApiState>) -> ApiResult<Vec<osmoda_fabric::PeerInfo>> {
    Ok(Json(s.fabric.peers().await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TextBody {
    text: String,
}

async fn broadcast(
    State(s): State<ApiState>,
    body: std::result::Result<Json<TextBody>, JsonRejection>,
) -> ApiResult<serde_json::Value> {
    let Json(body) = body?;
    let bytes = body.text.len();
    let result = s.fabric.broadcast(body.text).await;
    s.audit("mesh.broadcast", &format!("{bytes} bytes"), &result)
        .await?;
    result?;
    Ok(Json(json!({ "ok": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    /// A node id (peer id) or the name of a connected node.
    node: String,
    text: String,
}

async fn send(
    State(s): State<ApiState>,
    body: std::result::Result<Json<SendBody>, JsonRejection>,
) -> ApiResult<serde_json::Value> {
    let Json(body) = body?;
    let peer = match body.node.parse::<PeerId>() {
        Ok(peer) => peer,
        Err(_) => {
            let peers = s.fabric.peers().await?;
            let found: Vec<_> = peers.iter().filter(|p| p.name == body.node).collect();
            match found.as_slice() {
                [one] => one
                    .node_id
                    .parse()
                    .map_err(|_| ApiError::bad_request("peer id of a connected node is invalid"))?,
                [] => {
                    return Err(ApiError {
                        status: StatusCode::NOT_FOUND,
                        message: format!("no connected node has the id or name {:?}", body.node),
                    })
                }
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "several connected nodes are named {:?}; use the node id",
                        body.node
                    )))
                }
            }
        }
    };
    let result = s.fabric.send(peer, body.text).await;
    s.audit("mesh.send", &peer.to_string(), &result).await?;
    result?;
    Ok(Json(json!({ "ok": true, "node_id": peer.to_string() })))
}

async fn inbox(State(s): State<ApiState>) -> ApiResult<Vec<osmoda_fabric::InboxEntry>> {
    Ok(Json(s.fabric.inbox()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    /// A signed revocation in hex, as `osmoda fleet revoke` makes it.
    revocation: String,
}

async fn revoke(
    State(s): State<ApiState>,
    body: std::result::Result<Json<RevokeBody>, JsonRejection>,
) -> ApiResult<serde_json::Value> {
    let Json(body) = body?;
    let bytes = parse_hex_bytes(body.revocation.trim())
        .ok_or_else(|| ApiError::bad_request("revocation is not hex"))?;
    let rev = Revocation::decode(&bytes)
        .map_err(|e| ApiError::bad_request(format!("revocation is malformed: {e}")))?;
    let target = osmoda_fabric::peer_id_of(&rev.node)
        .map(|p| p.to_string())
        .unwrap_or_default();
    let result = s.fabric.revoke(rev).await;
    s.audit("fleet.revoke", &target, &result).await?;
    let new = result?;
    Ok(Json(json!({ "ok": true, "new": new })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    /// Another node's id: fetch from that node instead of reading our own.
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    start: u64,
    #[serde(default = "default_limit")]
    limit: u64,
}

fn default_limit() -> u64 {
    100
}

fn internal(e: anyhow::Error) -> ApiError {
    ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: format!("{e:#}"),
    }
}

async fn audit_log(
    State(s): State<ApiState>,
    query: std::result::Result<
        axum::extract::Query<LogQuery>,
        axum::extract::rejection::QueryRejection,
    >,
) -> ApiResult<Vec<crate::audit::EntryView>> {
    let axum::extract::Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let entries = match remote_peer(&s, q.node.as_deref())? {
        Some(peer) => crate::audit_remote::read_remote(&s.fabric, peer, q.start, q.limit)
            .await
            .map_err(gateway)?,
        None => crate::audit::read_entries(s.audit.store(), q.start, q.limit).map_err(internal)?,
    };
    Ok(Json(entries))
}

fn gateway(e: anyhow::Error) -> ApiError {
    ApiError {
        status: StatusCode::BAD_GATEWAY,
        message: format!("{e:#}"),
    }
}

/// `None` for this node; the peer id of another node.
fn remote_peer(s: &ApiState, node: Option<&str>) -> Result<Option<PeerId>, ApiError> {
    let Some(node) = node else { return Ok(None) };
    let peer: PeerId = node
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{node:?} is not a node id")))?;
    Ok((peer != s.fabric.local_peer_id()).then_some(peer))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct VerifyBody {
    #[serde(default)]
    node: Option<String>,
}

async fn audit_verify(
    State(s): State<ApiState>,
    body: std::result::Result<Json<VerifyBody>, JsonRejection>,
) -> ApiResult<crate::audit::VerifyReport> {
    let Json(body) = body?;
    if let Some(peer) = remote_peer(&s, body.node.as_deref())? {
        let report = crate::audit_remote::verify_remote(&s.fabric, &s.mirrors, &s.heads, peer)
            .await
            .map_err(gateway)?;
        return Ok(Json(report));
    }
    let owner = osmoda_fabric::node_key_of(&s.fabric.local_peer_id())
        .ok_or_else(|| internal(anyhow::anyhow!("local node id carries no key")))?;
    Ok(Json(
        crate::audit::verify_stored(s.audit.store(), &owner).map_err(internal)?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordBody {
    action: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    details: String,
}

/// Lets the CLI audit what it did on its own (an invite signed with the root
/// key) while the node holds the store.
async fn audit_record(
    State(s): State<ApiState>,
    body: std::result::Result<Json<RecordBody>, JsonRejection>,
) -> ApiResult<serde_json::Value> {
    let Json(body) = body?;
    let seq = s
        .audit
        .record(
            Actor::Operator,
            &body.action,
            &body.target,
            Outcome::Ok,
            &body.details,
        )
        .await
        .map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
    Ok(Json(json!({ "ok": true, "seq": seq })))
}

async fn audit_heads(State(s): State<ApiState>) -> ApiResult<Vec<crate::heads::HeadView>> {
    Ok(Json(s.heads.heads()))
}

async fn audit_forks(State(s): State<ApiState>) -> ApiResult<Vec<crate::heads::ForkView>> {
    Ok(Json(s.heads.forks()))
}
