//! Operations only agents have: their own key-value space, messages to
//! other agents of this node (landing in the recipient's space under
//! `inbox/`), their status, and asking an operator ahead of a call.
//!
//! One store table holds every agent's keys as `AGENT \0 KEY`: agent names
//! cannot contain NUL, so no agent's prefix is another's, and an agent
//! only ever names the part after its own prefix.

use std::sync::atomic::{AtomicU64, Ordering};

use osmoda_store::Batch;
use serde_json::{json, Value};

use super::{now_ms, AgentCall, Node};
use crate::error::{NodeError, NodeResult};

const TABLE: &str = "agent-kv";

fn key_of(agent: &str, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(agent.len() + 1 + key.len());
    out.extend_from_slice(agent.as_bytes());
    out.push(0);
    out.extend_from_slice(key.as_bytes());
    out
}

/// The last millisecond used for an inbox key: keys are made strictly
/// increasing, so two messages from one sender in the same millisecond do
/// not overwrite each other.
static LAST_MS: AtomicU64 = AtomicU64::new(0);

fn unique_ms() -> u64 {
    let now = now_ms();
    let mut last = LAST_MS.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST_MS.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

impl Node {
    /// Writes one key durably without blocking the runtime: the store's
    /// acknowledgement is a future.
    async fn kv_put(&self, key: &[u8], value: &[u8]) -> NodeResult<()> {
        let mut batch = Batch::new();
        batch.put(TABLE, key, value);
        self.audit.store().submit_batch(batch)?.await?;
        Ok(())
    }

    pub fn kv_get(&self, call: &AgentCall, key: &str) -> NodeResult<Value> {
        let value = self
            .audit
            .store()
            .get(TABLE, &key_of(&call.who.name, key))?;
        let found = value.is_some();
        // Values are stored as given (UTF-8 text); a damaged byte is shown
        // as U+FFFD rather than failing the read.
        let value = value.map(|v| String::from_utf8_lossy(&v).into_owned());
        call.note(if found { "found" } else { "not found" }.into());
        Ok(json!({ "key": key, "found": found, "value": value }))
    }

    pub async fn kv_set(&self, call: &AgentCall, key: &str, value: &str) -> NodeResult<Value> {
        self.kv_put(&key_of(&call.who.name, key), value.as_bytes())
            .await?;
        call.note(format!("{} bytes", value.len()));
        Ok(json!({ "key": key, "stored": true }))
    }

    pub async fn kv_delete(&self, call: &AgentCall, key: &str) -> NodeResult<Value> {
        let mut batch = Batch::new();
        batch.delete(TABLE, &key_of(&call.who.name, key));
        let removed = self.audit.store().submit_batch(batch)?.await? > 0;
        call.note(if removed { "deleted" } else { "not found" }.into());
        Ok(json!({ "key": key, "deleted": removed }))
    }

    pub fn kv_list(&self, call: &AgentCall, prefix: &str, limit: usize) -> NodeResult<Value> {
        let own = key_of(&call.who.name, "");
        let prefix = key_of(&call.who.name, prefix);
        // One more than asked, to say whether there were more.
        let found = self.audit.store().scan_prefix(TABLE, &prefix, limit + 1)?;
        let truncated = found.len() > limit;
        let keys: Vec<String> = found
            .into_iter()
            .take(limit)
            .map(|(k, _)| {
                String::from_utf8_lossy(k.get(own.len()..).unwrap_or_default()).into_owned()
            })
            .collect();
        call.note(format!("{} keys", keys.len()));
        Ok(json!({ "keys": keys, "truncated": truncated }))
    }

    /// Leaves a text in another agent's `inbox/` on this node.
    pub async fn agent_message(&self, call: &AgentCall, to: &str, text: &str) -> NodeResult<Value> {
        if self.agents.spec(to)?.is_none() {
            return Err(NodeError::not_found("agent on this node named", to));
        }
        let key = format!("inbox/{}-{}", unique_ms(), call.who.name);
        self.kv_put(&key_of(to, &key), text.as_bytes()).await?;
        call.note(format!("{} bytes", text.len()));
        Ok(json!({ "delivered": true, "agent": to, "key": key }))
    }

    /// The calling agent's own state, grants and pending requests.
    pub async fn agent_self_status(&self, call: &AgentCall) -> NodeResult<Value> {
        let who = &call.who;
        let status = self.agents.status(&who.name).await?;
        let grants: Vec<_> = self
            .approvals
            .grants()
            .into_iter()
            .filter(|g| g.agent == who.name)
            .collect();
        let pending: Vec<_> = self
            .approvals
            .pending()
            .into_iter()
            .filter(|p| p.agent == who.name)
            .collect();
        Ok(json!({
            "name": who.name,
            "ring": who.ring,
            "workspace": who.workspace.display().to_string(),
            "status": status,
            "grants": grants,
            "pending_approvals": pending,
            "locked_down": self.emergency.is_locked(),
        }))
    }

    /// Puts a call in the operator's list without waiting for it: once
    /// approved, the same call with the same arguments goes through once.
    pub fn approval_request(
        &self,
        call: &AgentCall,
        tool: &str,
        arguments: Value,
        reason: &str,
    ) -> NodeResult<Value> {
        let who = &call.who;
        if who.ring != 1 {
            return Err(NodeError::Forbidden(format!(
                "ring {} agents cannot use {tool}",
                who.ring
            )));
        }
        let (id, decision) = self.approvals.request(&who.name, tool, arguments, reason)?;
        // Nobody waits: that is how `Approvals` tells an advance request.
        drop(decision);
        call.note(format!("request #{id} for {tool}"));
        Ok(json!({ "request_id": id.to_string(), "status": "pending" }))
    }

    pub fn approval_status(&self, call: &AgentCall, request_id: &str) -> NodeResult<Value> {
        let id: u64 = request_id.trim().parse().map_err(|_| {
            NodeError::Invalid(format!("request_id {request_id:?} is not a number"))
        })?;
        let status = self.approvals.status(&call.who.name, id).ok_or_else(|| {
            NodeError::not_found("approval request of this agent", format!("#{id}"))
        })?;
        call.note(status.to_string());
        Ok(json!({ "request_id": id.to_string(), "status": status }))
    }
}
