//! Each agent's own key-value space, and messages between agents (which
//! land in the recipient's key-value space under `inbox/`).
//!
//! One store table holds every agent's keys as `AGENT \0 KEY`: agent names
//! cannot contain NUL, so no agent's prefix is another's, and an agent
//! only ever names the part after its own prefix.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::StatusCode;
use osmoda_mcpd::args::{AgentMessage, KvKey, KvList, KvSet};
use osmoda_store::Batch;
use serde_json::json;

use super::{error, internal, ToolResult, DEFAULT_LIMIT};
use crate::agents::AgentIdentity;
use crate::api::{ApiError, ApiState};

const TABLE: &str = "agent-kv";

fn key_of(agent: &str, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(agent.len() + 1 + key.len());
    out.extend_from_slice(agent.as_bytes());
    out.push(0);
    out.extend_from_slice(key.as_bytes());
    out
}

fn store_error(e: osmoda_store::StoreError) -> ApiError {
    internal(format!("the store: {e}"))
}

/// Writes one key durably without blocking the runtime: the store's
/// acknowledgement is a future.
async fn put(s: &ApiState, key: &[u8], value: &[u8]) -> Result<(), ApiError> {
    let mut batch = Batch::new();
    batch.put(TABLE, key, value);
    let ack = s.audit.store().submit_batch(batch).map_err(store_error)?;
    ack.await.map_err(store_error)?;
    Ok(())
}

pub(super) fn kv_get(s: &ApiState, who: &AgentIdentity, a: KvKey) -> ToolResult {
    let value = s
        .audit
        .store()
        .get(TABLE, &key_of(&who.name, &a.key))
        .map_err(store_error)?;
    let found = value.is_some();
    // Values are stored as given (UTF-8 text); a damaged byte is shown as
    // U+FFFD rather than failing the read.
    let value = value.map(|v| String::from_utf8_lossy(&v).into_owned());
    Ok((
        json!({ "key": a.key, "found": found, "value": value }),
        if found { "found" } else { "not found" }.into(),
    ))
}

pub(super) async fn kv_set(s: &ApiState, who: &AgentIdentity, a: KvSet) -> ToolResult {
    put(s, &key_of(&who.name, &a.key), a.value.as_bytes()).await?;
    Ok((
        json!({ "key": a.key, "stored": true }),
        format!("{} bytes", a.value.len()),
    ))
}

pub(super) async fn kv_delete(s: &ApiState, who: &AgentIdentity, a: KvKey) -> ToolResult {
    let mut batch = Batch::new();
    batch.delete(TABLE, &key_of(&who.name, &a.key));
    let ack = s.audit.store().submit_batch(batch).map_err(store_error)?;
    let removed = ack.await.map_err(store_error)? > 0;
    Ok((
        json!({ "key": a.key, "deleted": removed }),
        if removed { "deleted" } else { "not found" }.into(),
    ))
}

pub(super) fn kv_list(s: &ApiState, who: &AgentIdentity, a: KvList) -> ToolResult {
    let limit = a.limit.unwrap_or(DEFAULT_LIMIT) as usize;
    let own = key_of(&who.name, "");
    let prefix = key_of(&who.name, a.prefix.as_deref().unwrap_or(""));
    // One more than asked, to say whether there were more.
    let found = s
        .audit
        .store()
        .scan_prefix(TABLE, &prefix, limit + 1)
        .map_err(store_error)?;
    let truncated = found.len() > limit;
    let keys: Vec<String> = found
        .into_iter()
        .take(limit)
        .map(|(k, _)| String::from_utf8_lossy(k.get(own.len()..).unwrap_or_default()).into_owned())
        .collect();
    let note = format!("{} keys", keys.len());
    Ok((json!({ "keys": keys, "truncated": truncated }), note))
}

/// The last millisecond used for an inbox key: keys are made strictly
/// increasing, so two messages from one sender in the same millisecond do
/// not overwrite each other.
static LAST_MS: AtomicU64 = AtomicU64::new(0);

fn unique_ms() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut last = LAST_MS.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST_MS.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

pub(super) async fn agent_message(
    s: &ApiState,
    who: &AgentIdentity,
    a: AgentMessage,
) -> ToolResult {
    let exists = s
        .agents
        .spec(&a.agent)
        .map_err(|e| internal(format!("{e:#}")))?
        .is_some();
    if !exists {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("no agent named {:?} on this node", a.agent),
        ));
    }
    let key = format!("inbox/{}-{}", unique_ms(), who.name);
    put(s, &key_of(&a.agent, &key), a.text.as_bytes()).await?;
    Ok((
        json!({ "delivered": true, "agent": a.agent, "key": key }),
        format!("{} bytes", a.text.len()),
    ))
}
