//! Each tool of the catalogue mapped to one service operation, for an
//! agent whose call already passed the gates (token, lockdown, arguments,
//! ring, approval).
//!
//! Tools act as the agent: knowledge entries and routines it writes carry
//! `agent:NAME` as their actor, its key-value space and workspace are its
//! own, a secret is read only when granted to it, and nothing here takes a
//! name from the arguments to decide whose state to touch (except
//! `agent_message`, which only writes into the recipient's inbox). Results are JSON objects, so MCP clients get them as
//! structured content too.

use osmoda_mcpd::ToolCall;
use serde::Serialize;
use serde_json::{json, Value};

use crate::api::{
    CardQuery, ListParams, LogQuery, NewEntry, NewRoutine, SearchParams, SubmitTask, VerifyBody,
};
use crate::error::{NodeError, NodeResult};
use crate::service::tasks::{task_id, WorkChange};
use crate::service::{AgentCall, Caller, Node};
use crate::state::tasks::Artifact;

/// Default number of entries a listing tool returns.
const DEFAULT_LIMIT: u32 = 100;

fn to_value<T: Serialize>(v: &T) -> NodeResult<Value> {
    serde_json::to_value(v).map_err(NodeError::internal)
}

/// Runs one parsed call for the agent making `call`. One arm per tool and
/// no wildcard: a tool added to the catalogue without an arm here does not
/// compile.
pub async fn execute(node: &Node, call: &AgentCall, tool: ToolCall) -> NodeResult<Value> {
    let by = Caller::Agent(call);
    match tool {
        ToolCall::KnowledgePut(a) => {
            let new = NewEntry {
                title: a.title,
                body: a.body,
                tags: a.tags,
            };
            let created = node.knowledge_put(by, new).await?;
            Ok(json!({ "id": created.id }))
        }
        ToolCall::KnowledgeGet(a) => to_value(&node.knowledge_get(&a.id)?),
        ToolCall::KnowledgeSearch(a) => {
            let entries = node.knowledge_search(SearchParams {
                q: a.query,
                limit: Some(a.limit.unwrap_or(DEFAULT_LIMIT) as usize),
            })?;
            call.note(format!("{} found", entries.len()));
            Ok(json!({ "entries": to_value(&entries)? }))
        }
        ToolCall::KnowledgeList(a) => {
            let page = node.knowledge_list(ListParams {
                tag: a.tag,
                prefix: a.prefix,
                limit: Some(a.limit.unwrap_or(DEFAULT_LIMIT) as usize),
                cursor: None,
            })?;
            call.note(format!("{} listed", page.items.len()));
            Ok(json!({ "entries": to_value(&page.items)?, "more": page.next_cursor.is_some() }))
        }
        ToolCall::AuditLog(a) => {
            let view = node
                .audit_log(LogQuery {
                    node: a.node,
                    start: a.start,
                    limit: u64::from(a.limit.unwrap_or(DEFAULT_LIMIT)),
                })
                .await?;
            call.note(format!("from {}, {} read", a.start, view.entries.len()));
            to_value(&view)
        }
        ToolCall::AuditVerify(a) => {
            let report = node.audit_verify(VerifyBody { node: a.node }).await?;
            call.note(format!("ok: {}", report.ok));
            to_value(&report)
        }
        ToolCall::MeshPeers(_) => Ok(json!({ "peers": to_value(&node.peers().await?)? })),
        ToolCall::MeshSend(a) => {
            let sent = node.send(by, &a.node, a.text).await?;
            Ok(json!({ "sent": true, "node_id": sent.node_id }))
        }
        ToolCall::MeshBroadcast(a) => {
            node.broadcast(by, a.text).await?;
            Ok(json!({ "sent": true }))
        }
        ToolCall::AgentMessage(a) => node.agent_message(call, &a.agent, &a.text).await,
        ToolCall::RoutineCreate(a) => {
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
        ToolCall::RoutineList(_) => Ok(json!({ "routines": to_value(&node.routine_list())? })),
        ToolCall::KvGet(a) => node.kv_get(call, &a.key),
        ToolCall::KvSet(a) => node.kv_set(call, &a.key, &a.value).await,
        ToolCall::KvDelete(a) => node.kv_delete(call, &a.key).await,
        ToolCall::KvList(a) => {
            let limit = a.limit.unwrap_or(DEFAULT_LIMIT) as usize;
            node.kv_list(call, a.prefix.as_deref().unwrap_or(""), limit)
        }
        ToolCall::FileRead(a) => node.file_read(call, a).await,
        ToolCall::FileWrite(a) => node.file_write(call, a).await,
        ToolCall::FileList(a) => node.file_list(call, a).await,
        ToolCall::FileDelete(a) => node.file_delete(call, a).await,
        ToolCall::HostExec(a) => node.host_exec(call, a).await,
        ToolCall::AgentStatus(_) => node.agent_self_status(call).await,
        ToolCall::ApprovalRequest(a) => {
            node.approval_request(call, &a.tool, a.arguments, &a.reason)
        }
        ToolCall::ApprovalStatus(a) => node.approval_status(call, &a.request_id),
        ToolCall::SecretGet(a) => node.secret_get(call, &a.name).await,
        ToolCall::AgentsFind(a) => {
            let query = CardQuery {
                skill: a.skill,
                name: a.name,
            };
            let found = node.fleet_cards(&query).await?;
            call.note(format!("{} found", found.len()));
            Ok(json!({ "agents": to_value(&found)? }))
        }
        ToolCall::TaskSubmit(a) => {
            let body = SubmitTask {
                to: a.to,
                skill: a.skill,
                input: a.input,
                context_id: a.context_id,
            };
            to_value(&node.task_submit(by, body).await?)
        }
        ToolCall::TaskStatus(a) => node.task_status(call, task_id(&a.id)?),
        ToolCall::TaskWait(a) => {
            let secs = a.timeout_secs.unwrap_or(60);
            let wait = std::time::Duration::from_secs(u64::from(secs));
            node.task_wait(call, task_id(&a.id)?, wait).await
        }
        ToolCall::TaskReply(a) => to_value(&node.task_reply(by, task_id(&a.id)?, a.text).await?),
        ToolCall::TaskInbox(a) => {
            let limit = a.limit.unwrap_or(DEFAULT_LIMIT) as usize;
            node.task_inbox(call, a.state.as_deref(), limit)
        }
        ToolCall::TaskUpdate(a) => {
            let change = WorkChange::Progress(a.text);
            node.task_work(call, task_id(&a.id)?, change).await
        }
        ToolCall::TaskComplete(a) => {
            let artifacts = a
                .artifacts
                .into_iter()
                .map(|a| Artifact {
                    name: a.name,
                    text: a.text,
                })
                .collect();
            let change = WorkChange::Complete {
                text: a.text,
                artifacts,
            };
            node.task_work(call, task_id(&a.id)?, change).await
        }
        ToolCall::TaskFail(a) => {
            let change = WorkChange::Fail(a.text);
            node.task_work(call, task_id(&a.id)?, change).await
        }
        ToolCall::TaskInputRequired(a) => {
            let change = WorkChange::InputRequired(a.text);
            node.task_work(call, task_id(&a.id)?, change).await
        }
    }
}
