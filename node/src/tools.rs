//! What each tool of the catalogue does on this node, for an agent whose
//! call already passed the gates of `agent_api.rs` (token, lockdown,
//! arguments, ring, approval).
//!
//! Tools act as the agent: knowledge entries and routines it writes carry
//! `agent:NAME` as their actor, its key-value space and workspace are its
//! own, and nothing here takes a name from the arguments to decide whose
//! state to touch (except `agent_message`, which only writes into the
//! recipient's inbox). Results are JSON objects, so MCP clients get them as
//! structured content too.
//!
//! Submodules: `state` (key-value space and agent messages), `host`
//! (workspace files and `host_exec`).

mod host;
mod state;

use axum::http::StatusCode;
use libp2p::PeerId;
use osmoda_docs::{Action, ListQuery, NewRoutine, Target};
use osmoda_mcpd::args::{
    ApprovalRequest, ApprovalStatus, AuditLog, AuditVerify, KnowledgeGet, KnowledgeList,
    KnowledgePut, KnowledgeSearch, MeshBroadcast, MeshSend, NoArguments, RoutineCreate,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::agents::AgentIdentity;
use crate::api::{ApiError, ApiState};

/// A result, and a short note for the audit entry (never contents).
pub type ToolResult = Result<(Value, String), ApiError>;

/// Default number of entries a listing tool returns.
const DEFAULT_LIMIT: u32 = 100;
/// Longest audit target taken from the arguments.
const MAX_TARGET_CHARS: usize = 128;

pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        message: message.into(),
    }
}

pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
    error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// Parses arguments already validated by the caller; failing here would be
/// a catalogue bug, reported as the caller's error all the same.
fn parse<T: DeserializeOwned + osmoda_mcpd::args::Bounded>(args: &Value) -> Result<T, ApiError> {
    osmoda_mcpd::parse_arguments(args).map_err(|e| ApiError::bad_request(e.to_string()))
}

fn to_value<T: Serialize>(v: &T) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(internal)
}

fn actor(who: &AgentIdentity) -> String {
    format!("agent:{}", who.name)
}

/// What the audit entry names as the call's target: the argument saying
/// what the call is about (an id, a key, a path), never a body or value.
pub fn target(tool: &str, args: &Value) -> String {
    let field = match tool {
        "knowledge_put" => "title",
        "knowledge_get" => "id",
        "knowledge_search" => "query",
        "knowledge_list" => "tag",
        "audit_log" | "audit_verify" | "mesh_send" => "node",
        "agent_message" => "agent",
        "routine_create" => "name",
        "kv_get" | "kv_set" | "kv_delete" => "key",
        "kv_list" => "prefix",
        "file_read" | "file_write" | "file_list" | "file_delete" => "path",
        "host_exec" => "command",
        "approval_request" => "tool",
        "approval_status" => "request_id",
        _ => return String::new(),
    };
    args.get(field)
        .and_then(Value::as_str)
        .map(|s| s.chars().take(MAX_TARGET_CHARS).collect())
        .unwrap_or_default()
}

/// Runs `tool` for `who`.
pub async fn execute(s: &ApiState, who: &AgentIdentity, tool: &str, args: &Value) -> ToolResult {
    match tool {
        "knowledge_put" => knowledge_put(s, who, parse(args)?).await,
        "knowledge_get" => knowledge_get(s, parse(args)?),
        "knowledge_search" => knowledge_search(s, parse(args)?),
        "knowledge_list" => knowledge_list(s, parse(args)?),
        "audit_log" => audit_log(s, parse(args)?).await,
        "audit_verify" => audit_verify(s, parse(args)?).await,
        "mesh_peers" => {
            let NoArguments {} = parse(args)?;
            let peers = s.fabric.peers().await?;
            Ok((json!({ "peers": to_value(&peers)? }), String::new()))
        }
        "mesh_send" => mesh_send(s, parse(args)?).await,
        "mesh_broadcast" => {
            let a: MeshBroadcast = parse(args)?;
            let bytes = a.text.len();
            s.fabric.broadcast(a.text).await?;
            Ok((json!({ "sent": true }), format!("{bytes} bytes")))
        }
        "agent_message" => state::agent_message(s, who, parse(args)?).await,
        "routine_create" => routine_create(s, who, parse(args)?).await,
        "routine_list" => {
            let NoArguments {} = parse(args)?;
            Ok((
                json!({ "routines": to_value(&s.docs.routines())? }),
                String::new(),
            ))
        }
        "kv_get" => state::kv_get(s, who, parse(args)?),
        "kv_set" => state::kv_set(s, who, parse(args)?).await,
        "kv_delete" => state::kv_delete(s, who, parse(args)?).await,
        "kv_list" => state::kv_list(s, who, parse(args)?),
        "file_read" => host::file_read(who, parse(args)?).await,
        "file_write" => host::file_write(who, parse(args)?).await,
        "file_list" => host::file_list(who, parse(args)?).await,
        "file_delete" => host::file_delete(who, parse(args)?).await,
        "host_exec" => host::host_exec(who, parse(args)?).await,
        "agent_status" => {
            let NoArguments {} = parse(args)?;
            agent_status(s, who).await
        }
        "approval_request" => approval_request(s, who, parse(args)?),
        "approval_status" => approval_status(s, who, parse(args)?),
        other => Err(ApiError::bad_request(format!("unknown tool `{other}`"))),
    }
}

/// Refusals of the document layer are the agent's mistakes; the store
/// failing is ours (as in `docs_api.rs`).
fn doc_error(e: anyhow::Error) -> ApiError {
    let status = if e.downcast_ref::<osmoda_store::StoreError>().is_some() {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::BAD_REQUEST
    };
    error(status, format!("{e:#}"))
}

async fn knowledge_put(s: &ApiState, who: &AgentIdentity, a: KnowledgePut) -> ToolResult {
    let id = s
        .docs
        .put(a.title, a.body, a.tags, actor(who))
        .await
        .map_err(doc_error)?;
    let note = format!("id {id}");
    Ok((json!({ "id": id }), note))
}

fn knowledge_get(s: &ApiState, a: KnowledgeGet) -> ToolResult {
    match s.docs.get(&a.id).map_err(doc_error)? {
        Some(entry) => Ok((to_value(&entry)?, String::new())),
        None => Err(error(
            StatusCode::NOT_FOUND,
            format!("no knowledge entry with id {:?}", a.id),
        )),
    }
}

fn knowledge_search(s: &ApiState, a: KnowledgeSearch) -> ToolResult {
    let limit = a.limit.unwrap_or(DEFAULT_LIMIT) as usize;
    let entries = s.docs.search(&a.query, limit).map_err(doc_error)?;
    let note = format!("{} found", entries.len());
    Ok((json!({ "entries": to_value(&entries)? }), note))
}

fn knowledge_list(s: &ApiState, a: KnowledgeList) -> ToolResult {
    let query = ListQuery {
        tag: a.tag,
        id_prefix: a.prefix,
        limit: a.limit.unwrap_or(DEFAULT_LIMIT) as usize,
        ..ListQuery::default()
    };
    let entries = s.docs.list(&query);
    let note = format!("{} listed", entries.len());
    Ok((json!({ "entries": to_value(&entries)? }), note))
}

/// `None` for this node, the peer id of another one (as in `api.rs`).
fn remote_peer(s: &ApiState, node: Option<&str>) -> Result<Option<PeerId>, ApiError> {
    let Some(node) = node else { return Ok(None) };
    let peer: PeerId = node
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{node:?} is not a node id")))?;
    Ok((peer != s.fabric.local_peer_id()).then_some(peer))
}

fn gateway(e: anyhow::Error) -> ApiError {
    error(StatusCode::BAD_GATEWAY, format!("{e:#}"))
}

async fn audit_log(s: &ApiState, a: AuditLog) -> ToolResult {
    let limit = u64::from(a.limit.unwrap_or(DEFAULT_LIMIT));
    let entries = match remote_peer(s, a.node.as_deref())? {
        Some(peer) => crate::audit_remote::read_remote(&s.fabric, peer, a.start, limit)
            .await
            .map_err(gateway)?,
        None => crate::audit::read_entries(s.audit.store(), a.start, limit)
            .map_err(|e| internal(format!("{e:#}")))?,
    };
    let note = format!("from {}, {} read", a.start, entries.len());
    Ok((json!({ "entries": to_value(&entries)? }), note))
}

async fn audit_verify(s: &ApiState, a: AuditVerify) -> ToolResult {
    let report = match remote_peer(s, a.node.as_deref())? {
        Some(peer) => crate::audit_remote::verify_remote(&s.fabric, &s.mirrors, &s.heads, peer)
            .await
            .map_err(gateway)?,
        None => {
            let owner = osmoda_fabric::node_key_of(&s.fabric.local_peer_id())
                .ok_or_else(|| internal("the local node id carries no key"))?;
            crate::audit::verify_stored(s.audit.store(), &owner)
                .map_err(|e| internal(format!("{e:#}")))?
        }
    };
    let note = format!("ok: {}", report.ok);
    Ok((to_value(&report)?, note))
}

/// A node id, or the name of exactly one connected node (as in `api.rs`).
async fn resolve_node(s: &ApiState, node: &str) -> Result<PeerId, ApiError> {
    if let Ok(peer) = node.parse::<PeerId>() {
        return Ok(peer);
    }
    let peers = s.fabric.peers().await?;
    let found: Vec<_> = peers.iter().filter(|p| p.name == node).collect();
    match found.as_slice() {
        [one] => one
            .node_id
            .parse()
            .map_err(|_| internal("the peer id of a connected node is invalid")),
        [] => Err(error(
            StatusCode::NOT_FOUND,
            format!("no connected node has the id or name {node:?}"),
        )),
        _ => Err(ApiError::bad_request(format!(
            "several connected nodes are named {node:?}; use the node id"
        ))),
    }
}

async fn mesh_send(s: &ApiState, a: MeshSend) -> ToolResult {
    let peer = resolve_node(s, &a.node).await?;
    let bytes = a.text.len();
    s.fabric.send(peer, a.text).await?;
    Ok((
        json!({ "sent": true, "node_id": peer.to_string() }),
        format!("{bytes} bytes to {peer}"),
    ))
}

async fn routine_create(s: &ApiState, who: &AgentIdentity, a: RoutineCreate) -> ToolResult {
    let target = Target::parse(&a.target).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let new = NewRoutine {
        id: String::new(),
        name: a.name,
        schedule: a.schedule,
        target,
        action: Action {
            command: a.command,
            args: a.args,
            timeout_secs: a.timeout_secs,
        },
        enabled: a.enabled,
        created_by: actor(who),
    };
    let id = s.docs.add_routine(new).await.map_err(doc_error)?;
    let note = format!("id {id}");
    Ok((json!({ "id": id }), note))
}

async fn agent_status(s: &ApiState, who: &AgentIdentity) -> ToolResult {
    let status = s
        .agents
        .status(&who.name)
        .await
        .map_err(|e| internal(format!("{e:#}")))?;
    let grants: Vec<_> = s
        .approvals
        .grants()
        .into_iter()
        .filter(|g| g.agent == who.name)
        .collect();
    let pending: Vec<_> = s
        .approvals
        .pending()
        .into_iter()
        .filter(|p| p.agent == who.name)
        .collect();
    Ok((
        json!({
            "name": who.name,
            "ring": who.ring,
            "workspace": who.workspace.display().to_string(),
            "status": to_value(&status)?,
            "grants": to_value(&grants)?,
            "pending_approvals": to_value(&pending)?,
            "locked_down": s.emergency.is_locked(),
        }),
        String::new(),
    ))
}

/// Puts a call in the operator's list without waiting for it: once
/// approved, the same call with the same arguments goes through once.
fn approval_request(s: &ApiState, who: &AgentIdentity, a: ApprovalRequest) -> ToolResult {
    if who.ring != 1 {
        return Err(error(
            StatusCode::FORBIDDEN,
            format!("ring {} agents cannot use {}", who.ring, a.tool),
        ));
    }
    let (id, decision) = s
        .approvals
        .request(&who.name, &a.tool, a.arguments, &a.reason)
        .map_err(|e| error(StatusCode::TOO_MANY_REQUESTS, format!("{e:#}")))?;
    // Nobody waits: that is how `Approvals` tells an advance request.
    drop(decision);
    Ok((
        json!({ "request_id": id.to_string(), "status": "pending" }),
        format!("request #{id} for {}", a.tool),
    ))
}

fn approval_status(s: &ApiState, who: &AgentIdentity, a: ApprovalStatus) -> ToolResult {
    let id: u64 = a.request_id.trim().parse().map_err(|_| {
        ApiError::bad_request(format!("request_id {:?} is not a number", a.request_id))
    })?;
    match s.approvals.status(&who.name, id) {
        Some(status) => Ok((
            json!({ "request_id": id.to_string(), "status": status }),
            status.to_string(),
        )),
        None => Err(error(
            StatusCode::NOT_FOUND,
            format!("this agent has no approval request #{id} (or it is long gone)"),
        )),
    }
}
