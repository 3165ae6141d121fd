//! Each tool of the catalogue mapped to one service operation, for an
//! agent whose call already passed the gates (token, lockdown, arguments,
//! ring, approval).
//!
//! Tools act as the agent: knowledge entries and routines it writes carry
//! `agent:NAME` as their actor, its key-value space and workspace are its
//! own, and nothing here takes a name from the arguments to decide whose
//! state to touch (except `agent_message`, which only writes into the
//! recipient's inbox). Results are JSON objects, so MCP clients get them as
//! structured content too.

use osmoda_mcpd::args::{
    AgentMessage, ApprovalRequest, ApprovalStatus, AuditLog, AuditVerify, KnowledgeGet,
    KnowledgeList, KnowledgePut, KnowledgeSearch, KvKey, KvList, KvSet, MeshBroadcast, MeshSend,
    NoArguments, RoutineCreate,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::api::{ListParams, LogQuery, NewEntry, NewRoutine, SearchParams, VerifyBody};
use crate::error::{NodeError, NodeResult};
use crate::service::{AgentCall, Caller, Node};

/// Default number of entries a listing tool returns.
const DEFAULT_LIMIT: u32 = 100;
/// Longest audit target taken from the arguments.
const MAX_TARGET_CHARS: usize = 128;

/// Parses arguments already validated by the caller; failing here would be
/// a catalogue bug, reported as the caller's error all the same.
fn parse<T: DeserializeOwned + osmoda_mcpd::args::Bounded>(args: &Value) -> NodeResult<T> {
    osmoda_mcpd::parse_arguments(args).map_err(|e| NodeError::Invalid(e.to_string()))
}

fn to_value<T: Serialize>(v: &T) -> NodeResult<Value> {
    serde_json::to_value(v).map_err(NodeError::internal)
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

/// Runs `tool` for the agent making `call`.
pub async fn execute(node: &Node, call: &AgentCall, tool: &str, args: &Value) -> NodeResult<Value> {
    let by = Caller::Agent(call);
    match tool {
        "knowledge_put" => {
            let a: KnowledgePut = parse(args)?;
            let new = NewEntry {
                title: a.title,
                body: a.body,
                tags: a.tags,
            };
            let created = node.knowledge_put(by, new).await?;
            Ok(json!({ "id": created.id }))
        }
        "knowledge_get" => {
            let a: KnowledgeGet = parse(args)?;
            to_value(&node.knowledge_get(&a.id)?)
        }
        "knowledge_search" => {
            let a: KnowledgeSearch = parse(args)?;
            let entries = node.knowledge_search(SearchParams {
                q: a.query,
                limit: Some(a.limit.unwrap_or(DEFAULT_LIMIT) as usize),
            })?;
            call.note(format!("{} found", entries.len()));
            Ok(json!({ "entries": to_value(&entries)? }))
        }
        "knowledge_list" => {
            let a: KnowledgeList = parse(args)?;
            let page = node.knowledge_list(ListParams {
                tag: a.tag,
                prefix: a.prefix,
                limit: Some(a.limit.unwrap_or(DEFAULT_LIMIT) as usize),
                cursor: None,
            })?;
            call.note(format!("{} listed", page.items.len()));
            Ok(json!({ "entries": to_value(&page.items)?, "more": page.next_cursor.is_some() }))
        }
        "audit_log" => {
            let a: AuditLog = parse(args)?;
            let entries = node
                .audit_log(LogQuery {
                    node: a.node,
                    start: a.start,
                    limit: u64::from(a.limit.unwrap_or(DEFAULT_LIMIT)),
                })
                .await?;
            call.note(format!("from {}, {} read", a.start, entries.len()));
            Ok(json!({ "entries": to_value(&entries)? }))
        }
        "audit_verify" => {
            let a: AuditVerify = parse(args)?;
            let report = node.audit_verify(VerifyBody { node: a.node }).await?;
            call.note(format!("ok: {}", report.ok));
            to_value(&report)
        }
        "mesh_peers" => {
            let NoArguments {} = parse(args)?;
            Ok(json!({ "peers": to_value(&node.peers().await?)? }))
        }
        "mesh_send" => {
            let a: MeshSend = parse(args)?;
            let sent = node.send(by, &a.node, a.text).await?;
            Ok(json!({ "sent": true, "node_id": sent.node_id }))
        }
        "mesh_broadcast" => {
            let a: MeshBroadcast = parse(args)?;
            node.broadcast(by, a.text).await?;
            Ok(json!({ "sent": true }))
        }
        "agent_message" => {
            let a: AgentMessage = parse(args)?;
            node.agent_message(call, &a.agent, &a.text).await
        }
        "routine_create" => {
            let a: RoutineCreate = parse(args)?;
            let new = NewRoutine {
                name: a.name,
                schedule: a.schedule,
                target: a.target,
                command: a.command,
                args: a.args,
                timeout_secs: a.timeout_secs,
                enabled: a.enabled,
            };
            let created = node.routine_add(by, new).await?;
            Ok(json!({ "id": created.id }))
        }
        "routine_list" => {
            let NoArguments {} = parse(args)?;
            Ok(json!({ "routines": to_value(&node.routine_list())? }))
        }
        "kv_get" => {
            let a: KvKey = parse(args)?;
            node.kv_get(call, &a.key)
        }
        "kv_set" => {
            let a: KvSet = parse(args)?;
            node.kv_set(call, &a.key, &a.value).await
        }
        "kv_delete" => {
            let a: KvKey = parse(args)?;
            node.kv_delete(call, &a.key).await
        }
        "kv_list" => {
            let a: KvList = parse(args)?;
            let limit = a.limit.unwrap_or(DEFAULT_LIMIT) as usize;
            node.kv_list(call, a.prefix.as_deref().unwrap_or(""), limit)
        }
        "file_read" => node.file_read(call, parse(args)?).await,
        "file_write" => node.file_write(call, parse(args)?).await,
        "file_list" => node.file_list(call, parse(args)?).await,
        "file_delete" => node.file_delete(call, parse(args)?).await,
        "host_exec" => node.host_exec(call, parse(args)?).await,
        "agent_status" => {
            let NoArguments {} = parse(args)?;
            node.agent_self_status(call).await
        }
        "approval_request" => {
            let a: ApprovalRequest = parse(args)?;
            node.approval_request(call, &a.tool, a.arguments, &a.reason)
        }
        "approval_status" => {
            let a: ApprovalStatus = parse(args)?;
            node.approval_status(call, &a.request_id)
        }
        other => Err(NodeError::Invalid(format!("unknown tool `{other}`"))),
    }
}
