//! One typed argument struct per tool, with its bounds.
//!
//! Each struct is what the agent sends as `arguments` in an MCP
//! `tools/call`: serde reads it (`deny_unknown_fields`, so a misspelt
//! argument is an error rather than silently ignored), schemars turns its
//! doc comments and bounds into the JSON schema the agent sees, and
//! [`Bounded::check`] enforces the sizes serde cannot, and [`AuditTarget`]
//! says which argument the audit log names. The node parses the same
//! structs (see [`crate::ToolCall`]), so the MCP side and the executing
//! side cannot disagree on a field.
//!
//! Sizes are in bytes of UTF-8. The schemas state them as `maxLength`,
//! which counts characters; a string within the byte bound is always within
//! that, so the schema is never stricter than the check.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::ArgumentError;

mod tasks;
pub use tasks::*;

/// Longest key (kv keys, knowledge ids as given by agents), in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Largest kv value, in bytes.
pub const MAX_KV_VALUE_BYTES: usize = 64 * 1024;
/// Largest file read or written through the file tools, in bytes.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;
/// Longest workspace-relative path, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest mesh or agent message, in bytes (the fabric's text limit).
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
/// Knowledge bounds, the same as `osmoda-docs` enforces on the node.
pub const MAX_TITLE_BYTES: usize = 256;
pub const MAX_BODY_BYTES: usize = 256 * 1024;
pub const MAX_TAGS: usize = 32;
pub const MAX_TAG_BYTES: usize = 64;
pub const MAX_QUERY_BYTES: usize = 1024;
/// Longest node id or node name, in bytes.
pub const MAX_NODE_BYTES: usize = 128;
/// Longest agent name, in bytes.
pub const MAX_AGENT_NAME_BYTES: usize = 64;
/// Routine bounds, the same as `osmoda-docs` enforces on the node.
pub const MAX_NAME_BYTES: usize = 128;
pub const MAX_SCHEDULE_BYTES: usize = 128;
pub const MAX_COMMAND_BYTES: usize = 1024;
pub const MAX_ARGS: usize = 64;
pub const MAX_ARG_BYTES: usize = 1024;
pub const MAX_ROUTINE_TIMEOUT_SECS: u32 = 86_400;
/// Longest a `host_exec` may run.
pub const MAX_EXEC_TIMEOUT_SECS: u32 = 3_600;
/// Most items any list or search returns.
pub const MAX_LIMIT: u32 = 1_000;
/// Longest free-text reason (approval requests), in bytes.
pub const MAX_REASON_BYTES: usize = 1024;
/// Longest approval request id, in bytes.
pub const MAX_ID_BYTES: usize = 64;

/// The size checks serde cannot express.
pub trait Bounded {
    fn check(&self) -> Result<(), ArgumentError>;
}

/// What an audit entry names as a call's target: the argument saying what
/// the call is about (an id, a key, a path), never a body or a value, which
/// may be large or private. Empty when the call is about nothing in
/// particular. The catalogue requires it of every argument struct, so each
/// new tool decides its own; [`crate::ToolCall::audit_target`] bounds it.
pub trait AuditTarget {
    fn audit_target(&self) -> &str;
}

/// A field that can be an audit target: a name, or an optional one.
trait TargetField {
    fn as_target(&self) -> &str;
}

impl TargetField for String {
    fn as_target(&self) -> &str {
        self
    }
}

impl TargetField for Option<String> {
    fn as_target(&self) -> &str {
        self.as_deref().unwrap_or_default()
    }
}

/// `Struct: field` implements [`AuditTarget`] by that field.
macro_rules! audit_target_is_impl {
    ($($args:ident: $field:ident,)*) => {$(
        impl AuditTarget for $args {
            fn audit_target(&self) -> &str {
                self.$field.as_target()
            }
        }
    )*};
}

use audit_target_is_impl as audit_target_is;

audit_target_is! {
    KnowledgePut: title,
    KnowledgeGet: id,
    KnowledgeSearch: query,
    KnowledgeList: tag,
    AuditLog: node,
    AuditVerify: node,
    MeshSend: node,
    AgentMessage: agent,
    RoutineCreate: name,
    KvKey: key,
    KvSet: key,
    KvList: prefix,
    FilePath: path,
    FileWrite: path,
    FileList: path,
    HostExec: command,
    ApprovalRequest: tool,
    ApprovalStatus: request_id,
    SecretName: name,
}

/// `mesh_peers`, `routine_list`, `agent_status`: about nothing in particular.
impl AuditTarget for NoArguments {
    fn audit_target(&self) -> &str {
        ""
    }
}

/// `mesh_broadcast`: to every node, so to no one target.
impl AuditTarget for MeshBroadcast {
    fn audit_target(&self) -> &str {
        ""
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> ArgumentError {
    ArgumentError::Invalid {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

fn bytes(field: &str, value: &str, max: usize) -> Result<(), ArgumentError> {
    if value.len() > max {
        return Err(invalid(
            field,
            format!("{} bytes, over the limit of {max}", value.len()),
        ));
    }
    Ok(())
}

/// A required name or key: not empty, bounded, no control characters
/// (they would corrupt audit lines and terminal output on the node).
fn name(field: &str, value: &str, max: usize) -> Result<(), ArgumentError> {
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    bytes(field, value, max)?;
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(())
}

fn opt_name(field: &str, value: Option<&str>, max: usize) -> Result<(), ArgumentError> {
    value.map_or(Ok(()), |v| name(field, v, max))
}

fn list(field: &str, items: &[String], max_items: usize, max: usize) -> Result<(), ArgumentError> {
    if items.len() > max_items {
        return Err(invalid(
            field,
            format!("{} items, over the limit of {max_items}", items.len()),
        ));
    }
    for (i, item) in items.iter().enumerate() {
        bytes(&format!("{field}[{i}]"), item, max)?;
    }
    Ok(())
}

fn range(field: &str, value: u32, min: u32, max: u32) -> Result<(), ArgumentError> {
    if value < min || value > max {
        return Err(invalid(
            field,
            format!("{value} is not within {min}..={max}"),
        ));
    }
    Ok(())
}

fn limit(value: Option<u32>) -> Result<(), ArgumentError> {
    value.map_or(Ok(()), |v| range("limit", v, 1, MAX_LIMIT))
}

/// Tools that take no arguments (`{}` or no `arguments` at all).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArguments {}

impl Bounded for NoArguments {
    fn check(&self) -> Result<(), ArgumentError> {
        Ok(())
    }
}

/// `knowledge_put`: add an entry to the fleet's shared knowledge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KnowledgePut {
    /// Short title of the entry (1 to 256 bytes).
    #[schemars(length(min = 1, max = MAX_TITLE_BYTES))]
    pub title: String,
    /// Body text, at most 256 KiB.
    #[serde(default)]
    #[schemars(length(max = MAX_BODY_BYTES))]
    pub body: String,
    /// Tags to find the entry by (at most 32, each at most 64 bytes).
    #[serde(default)]
    #[schemars(length(max = MAX_TAGS))]
    pub tags: Vec<String>,
}

impl Bounded for KnowledgePut {
    fn check(&self) -> Result<(), ArgumentError> {
        name("title", &self.title, MAX_TITLE_BYTES)?;
        bytes("body", &self.body, MAX_BODY_BYTES)?;
        list("tags", &self.tags, MAX_TAGS, MAX_TAG_BYTES)
    }
}

/// `knowledge_get`: read one knowledge entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeGet {
    /// Id of the entry, as returned by `knowledge_put`, `knowledge_list` or `knowledge_search`.
    #[schemars(length(min = 1, max = MAX_KEY_BYTES))]
    pub id: String,
}

impl Bounded for KnowledgeGet {
    fn check(&self) -> Result<(), ArgumentError> {
        name("id", &self.id, MAX_KEY_BYTES)
    }
}

/// `knowledge_search`: find entries whose title or body contain every word.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeSearch {
    /// Words that must all occur (case-insensitive) in the title or body; at most 1024 bytes.
    #[schemars(length(min = 1, max = MAX_QUERY_BYTES))]
    pub query: String,
    /// Most entries to return (1 to 1000, default 100).
    #[serde(default)]
    #[schemars(range(min = 1, max = MAX_LIMIT))]
    pub limit: Option<u32>,
}

impl Bounded for KnowledgeSearch {
    fn check(&self) -> Result<(), ArgumentError> {
        name("query", &self.query, MAX_QUERY_BYTES)?;
        limit(self.limit)
    }
}

/// `knowledge_list`: list entries, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeList {
    /// Only entries carrying this exact tag.
    #[serde(default)]
    pub tag: Option<String>,
    /// Only entries whose id starts with this.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Most entries to return (1 to 1000, default 100).
    #[serde(default)]
    #[schemars(range(min = 1, max = MAX_LIMIT))]
    pub limit: Option<u32>,
}

impl Bounded for KnowledgeList {
    fn check(&self) -> Result<(), ArgumentError> {
        opt_name("tag", self.tag.as_deref(), MAX_TAG_BYTES)?;
        opt_name("prefix", self.prefix.as_deref(), MAX_KEY_BYTES)?;
        limit(self.limit)
    }
}

/// `audit_log`: read entries of an audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditLog {
    /// Another node's id to read its log instead of this node's.
    #[serde(default)]
    pub node: Option<String>,
    /// Sequence number of the first entry (default 0).
    #[serde(default)]
    pub start: u64,
    /// Most entries to return (1 to 1000, default 100).
    #[serde(default)]
    #[schemars(range(min = 1, max = MAX_LIMIT))]
    pub limit: Option<u32>,
}

impl Bounded for AuditLog {
    fn check(&self) -> Result<(), ArgumentError> {
        opt_name("node", self.node.as_deref(), MAX_NODE_BYTES)?;
        limit(self.limit)
    }
}

/// `audit_verify`: verify an audit log's hash chain and checkpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditVerify {
    /// Another node's id to verify its log instead of this node's.
    #[serde(default)]
    pub node: Option<String>,
}

impl Bounded for AuditVerify {
    fn check(&self) -> Result<(), ArgumentError> {
        opt_name("node", self.node.as_deref(), MAX_NODE_BYTES)
    }
}

/// `mesh_send`: a direct message to another node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MeshSend {
    /// The node id, or the name of a connected node.
    #[schemars(length(min = 1, max = MAX_NODE_BYTES))]
    pub node: String,
    /// The message, at most 16 KiB.
    #[schemars(length(max = MAX_TEXT_BYTES))]
    pub text: String,
}

impl Bounded for MeshSend {
    fn check(&self) -> Result<(), ArgumentError> {
        name("node", &self.node, MAX_NODE_BYTES)?;
        bytes("text", &self.text, MAX_TEXT_BYTES)
    }
}

/// `mesh_broadcast`: a message to every node of the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MeshBroadcast {
    /// The message, at most 16 KiB.
    #[schemars(length(max = MAX_TEXT_BYTES))]
    pub text: String,
}

impl Bounded for MeshBroadcast {
    fn check(&self) -> Result<(), ArgumentError> {
        bytes("text", &self.text, MAX_TEXT_BYTES)
    }
}

/// `agent_message`: a message to another agent on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentMessage {
    /// Name of the receiving agent.
    #[schemars(length(min = 1, max = MAX_AGENT_NAME_BYTES))]
    pub agent: String,
    /// The message, at most 16 KiB.
    #[schemars(length(max = MAX_TEXT_BYTES))]
    pub text: String,
}

impl Bounded for AgentMessage {
    fn check(&self) -> Result<(), ArgumentError> {
        name("agent", &self.agent, MAX_AGENT_NAME_BYTES)?;
        bytes("text", &self.text, MAX_TEXT_BYTES)
    }
}

fn all() -> String {
    "all".into()
}
fn sixty() -> u32 {
    60
}
fn yes() -> bool {
    true
}

/// `routine_create`: a command the fleet runs on a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoutineCreate {
    /// Human-readable name (1 to 128 bytes).
    #[schemars(length(min = 1, max = MAX_NAME_BYTES))]
    pub name: String,
    /// A cron expression (`0 3 * * *`) or an interval (`every 5m`; units s, m, h, d).
    #[schemars(length(min = 1, max = MAX_SCHEDULE_BYTES))]
    pub schedule: String,
    /// Where it runs: `all`, `nodes:a,b` or `label:key=value` (default `all`).
    #[serde(default = "all")]
    #[schemars(length(min = 1, max = MAX_COMMAND_BYTES))]
    pub target: String,
    /// Program to run (no shell).
    #[schemars(length(min = 1, max = MAX_COMMAND_BYTES))]
    pub command: String,
    /// Its arguments (at most 64, each at most 1024 bytes).
    #[serde(default)]
    #[schemars(length(max = MAX_ARGS))]
    pub args: Vec<String>,
    /// Seconds before the run is killed (1 to 86400, default 60).
    #[serde(default = "sixty")]
    #[schemars(range(min = 1, max = MAX_ROUTINE_TIMEOUT_SECS))]
    pub timeout_secs: u32,
    /// Whether it starts enabled (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl Bounded for RoutineCreate {
    fn check(&self) -> Result<(), ArgumentError> {
        name("name", &self.name, MAX_NAME_BYTES)?;
        name("schedule", &self.schedule, MAX_SCHEDULE_BYTES)?;
        name("target", &self.target, MAX_COMMAND_BYTES)?;
        name("command", &self.command, MAX_COMMAND_BYTES)?;
        list("args", &self.args, MAX_ARGS, MAX_ARG_BYTES)?;
        range(
            "timeout_secs",
            self.timeout_secs,
            1,
            MAX_ROUTINE_TIMEOUT_SECS,
        )
    }
}

/// `kv_get` and `kv_delete`: one key of the agent's own key-value space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KvKey {
    /// The key (1 to 256 bytes).
    #[schemars(length(min = 1, max = MAX_KEY_BYTES))]
    pub key: String,
}

impl Bounded for KvKey {
    fn check(&self) -> Result<(), ArgumentError> {
        name("key", &self.key, MAX_KEY_BYTES)
    }
}

/// `kv_set`: store a value under a key of the agent's own key-value space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KvSet {
    /// The key (1 to 256 bytes).
    #[schemars(length(min = 1, max = MAX_KEY_BYTES))]
    pub key: String,
    /// The value, at most 64 KiB.
    #[schemars(length(max = MAX_KV_VALUE_BYTES))]
    pub value: String,
}

impl Bounded for KvSet {
    fn check(&self) -> Result<(), ArgumentError> {
        name("key", &self.key, MAX_KEY_BYTES)?;
        bytes("value", &self.value, MAX_KV_VALUE_BYTES)
    }
}

/// `kv_list`: list the keys of the agent's own key-value space.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KvList {
    /// Only keys starting with this.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Most keys to return (1 to 1000, default 100).
    #[serde(default)]
    #[schemars(range(min = 1, max = MAX_LIMIT))]
    pub limit: Option<u32>,
}

impl Bounded for KvList {
    fn check(&self) -> Result<(), ArgumentError> {
        opt_name("prefix", self.prefix.as_deref(), MAX_KEY_BYTES)?;
        limit(self.limit)
    }
}

/// `file_read` and `file_delete`: one path inside the agent's workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilePath {
    /// Path relative to the workspace; no `..`, no leading `/`, no symbolic links.
    #[schemars(length(min = 1, max = MAX_PATH_BYTES))]
    pub path: String,
}

impl Bounded for FilePath {
    fn check(&self) -> Result<(), ArgumentError> {
        name("path", &self.path, MAX_PATH_BYTES)
    }
}

/// `file_write`: create or replace a file inside the agent's workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileWrite {
    /// Path relative to the workspace; missing parent directories are created.
    #[schemars(length(min = 1, max = MAX_PATH_BYTES))]
    pub path: String,
    /// The whole new content (UTF-8 text), at most 1 MiB.
    #[schemars(length(max = MAX_FILE_BYTES))]
    pub content: String,
}

impl Bounded for FileWrite {
    fn check(&self) -> Result<(), ArgumentError> {
        name("path", &self.path, MAX_PATH_BYTES)?;
        bytes("content", &self.content, MAX_FILE_BYTES)
    }
}

/// `file_list`: list a directory inside the agent's workspace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileList {
    /// Directory relative to the workspace (default: the workspace itself).
    #[serde(default)]
    pub path: Option<String>,
}

impl Bounded for FileList {
    fn check(&self) -> Result<(), ArgumentError> {
        opt_name("path", self.path.as_deref(), MAX_PATH_BYTES)
    }
}

/// `host_exec`: run a program on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostExec {
    /// Program to run (no shell; a bare name is looked up in PATH).
    #[schemars(length(min = 1, max = MAX_COMMAND_BYTES))]
    pub command: String,
    /// Its arguments (at most 64, each at most 1024 bytes).
    #[serde(default)]
    #[schemars(length(max = MAX_ARGS))]
    pub args: Vec<String>,
    /// Seconds before it is killed (1 to 3600, default 60).
    #[serde(default = "sixty")]
    #[schemars(range(min = 1, max = MAX_EXEC_TIMEOUT_SECS))]
    pub timeout_secs: u32,
}

impl Bounded for HostExec {
    fn check(&self) -> Result<(), ArgumentError> {
        name("command", &self.command, MAX_COMMAND_BYTES)?;
        list("args", &self.args, MAX_ARGS, MAX_ARG_BYTES)?;
        range("timeout_secs", self.timeout_secs, 1, MAX_EXEC_TIMEOUT_SECS)
    }
}

/// `approval_request`: ask the operator in advance to approve a ring-1 call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRequest {
    /// Name of the ring-1 tool to be approved, e.g. `host_exec`.
    #[schemars(length(min = 1, max = MAX_NAME_BYTES))]
    pub tool: String,
    /// The exact arguments the call will carry; they are checked against that tool.
    #[serde(default = "empty_object")]
    #[schemars(with = "serde_json::Map<String, Value>")]
    pub arguments: Value,
    /// Why the agent needs it, shown to the operator (at most 1024 bytes).
    #[schemars(length(min = 1, max = MAX_REASON_BYTES))]
    pub reason: String,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

// The check of `ApprovalRequest` needs the catalogue; it lives in
// `catalog.rs` beside `validate_arguments`.

/// `approval_status`: where an approval request stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalStatus {
    /// The id `approval_request` returned.
    #[schemars(length(min = 1, max = MAX_ID_BYTES))]
    pub request_id: String,
}

impl Bounded for ApprovalStatus {
    fn check(&self) -> Result<(), ArgumentError> {
        name("request_id", &self.request_id, MAX_ID_BYTES)
    }
}

/// `secret_get`: one secret the operator granted to this agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretName {
    /// The secret's name, as the operator set it (1 to 64 bytes).
    #[schemars(length(min = 1, max = MAX_AGENT_NAME_BYTES))]
    pub name: String,
}

impl Bounded for SecretName {
    fn check(&self) -> Result<(), ArgumentError> {
        name("name", &self.name, MAX_AGENT_NAME_BYTES)
    }
}
