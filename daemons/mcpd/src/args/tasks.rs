//! Arguments of the tools for agent cards and tasks between agents. The
//! bounds are the node's (`state/tasks.rs`, `state/cards.rs`), so that a
//! call the node would refuse for its size is refused here first.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{bytes, invalid, list, name, opt_name, range, AuditTarget, Bounded, TargetField};
use super::{MAX_AGENT_NAME_BYTES, MAX_LIMIT, MAX_NODE_BYTES, MAX_TEXT_BYTES};
use crate::catalog::ArgumentError;

/// Longest skill name, in bytes.
pub const MAX_SKILL_BYTES: usize = 48;
/// Inputs one task may start with.
pub const MAX_TASK_INPUTS: usize = 16;
/// Artifacts one task may end with.
pub const MAX_ARTIFACTS: usize = 16;
/// Largest artifact text, in bytes.
pub const MAX_ARTIFACT_BYTES: usize = 64 * 1024;
/// Longest artifact name, in bytes.
pub const MAX_ARTIFACT_NAME_BYTES: usize = 128;
/// Longest a `task_wait` waits.
pub const MAX_TASK_WAIT_SECS: u32 = 300;
/// A task id: 32 hex digits.
pub const TASK_ID_BYTES: usize = 32;

fn task_id(value: &str) -> Result<(), ArgumentError> {
    if value.len() != TASK_ID_BYTES || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid("id", "a task id is 32 hex digits"));
    }
    Ok(())
}

/// `agents_find`: the fleet's agents by skill or by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentsFind {
    /// Only agents listing this skill (case-insensitive).
    #[serde(default)]
    #[schemars(length(min = 1, max = MAX_SKILL_BYTES))]
    pub skill: Option<String>,
    /// Only agents of this name.
    #[serde(default)]
    #[schemars(length(min = 1, max = MAX_AGENT_NAME_BYTES))]
    pub name: Option<String>,
}

impl Bounded for AgentsFind {
    fn check(&self) -> Result<(), ArgumentError> {
        opt_name("skill", self.skill.as_deref(), MAX_SKILL_BYTES)?;
        opt_name("name", self.name.as_deref(), MAX_AGENT_NAME_BYTES)
    }
}

impl AuditTarget for AgentsFind {
    fn audit_target(&self) -> &str {
        self.skill
            .as_deref()
            .or(self.name.as_deref())
            .unwrap_or_default()
    }
}

/// `task_submit`: a task for `AGENT@NODE` or for an agent with a skill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskSubmit {
    /// The agent as `AGENT@NODE` (node id or name); give this or `skill`.
    #[serde(default)]
    #[schemars(length(min = 3, max = MAX_NODE_BYTES))]
    pub to: Option<String>,
    /// Any agent of the fleet advertising this skill; give this or `to`.
    #[serde(default)]
    #[schemars(length(min = 1, max = MAX_SKILL_BYTES))]
    pub skill: Option<String>,
    /// The task's input messages (1 to 16, each at most 16 KiB).
    #[schemars(length(min = 1, max = MAX_TASK_INPUTS))]
    pub input: Vec<String>,
    /// Groups related tasks (A2A's context id); a new one when absent.
    #[serde(default)]
    #[schemars(length(min = 1, max = MAX_AGENT_NAME_BYTES))]
    pub context_id: Option<String>,
}

impl Bounded for TaskSubmit {
    fn check(&self) -> Result<(), ArgumentError> {
        opt_name("to", self.to.as_deref(), MAX_NODE_BYTES)?;
        opt_name("skill", self.skill.as_deref(), MAX_SKILL_BYTES)?;
        opt_name(
            "context_id",
            self.context_id.as_deref(),
            MAX_AGENT_NAME_BYTES,
        )?;
        if self.to.is_some() == self.skill.is_some() {
            return Err(invalid("to", "give either `to` or `skill`"));
        }
        if self.input.is_empty() {
            return Err(invalid("input", "at least one input"));
        }
        list("input", &self.input, MAX_TASK_INPUTS, MAX_TEXT_BYTES)
    }
}

impl AuditTarget for TaskSubmit {
    fn audit_target(&self) -> &str {
        self.to
            .as_deref()
            .or(self.skill.as_deref())
            .unwrap_or_default()
    }
}

/// `task_status`: a task this agent submitted or was given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskId {
    /// The task's id (32 hex digits).
    #[schemars(length(min = 32, max = 32))]
    pub id: String,
}

impl Bounded for TaskId {
    fn check(&self) -> Result<(), ArgumentError> {
        task_id(&self.id)
    }
}

/// `task_wait`: the task once it ended or asks for input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskWait {
    /// The task's id (32 hex digits).
    #[schemars(length(min = 32, max = 32))]
    pub id: String,
    /// Longest wait in seconds (1 to 300, default 60); the task as it is then.
    #[serde(default)]
    #[schemars(range(min = 1, max = MAX_TASK_WAIT_SECS))]
    pub timeout_secs: Option<u32>,
}

impl Bounded for TaskWait {
    fn check(&self) -> Result<(), ArgumentError> {
        task_id(&self.id)?;
        self.timeout_secs
            .map_or(Ok(()), |t| range("timeout_secs", t, 1, MAX_TASK_WAIT_SECS))
    }
}

/// A message about a task: progress, a question, a failure, a reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskText {
    /// The task's id (32 hex digits).
    #[schemars(length(min = 32, max = 32))]
    pub id: String,
    /// The message, at most 16 KiB.
    #[schemars(length(min = 1, max = MAX_TEXT_BYTES))]
    pub text: String,
}

impl Bounded for TaskText {
    fn check(&self) -> Result<(), ArgumentError> {
        task_id(&self.id)?;
        if self.text.is_empty() {
            return Err(invalid("text", "must not be empty"));
        }
        bytes("text", &self.text, MAX_TEXT_BYTES)
    }
}

/// `task_inbox`: the tasks given to this agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskInbox {
    /// Only tasks in this state: submitted, working, input-required,
    /// completed, failed, canceled or rejected.
    #[serde(default)]
    #[schemars(length(min = 1, max = 16))]
    pub state: Option<String>,
    /// Most tasks to return, newest first (1 to 1000, default 100).
    #[serde(default)]
    #[schemars(range(min = 1, max = MAX_LIMIT))]
    pub limit: Option<u32>,
}

const STATES: [&str; 7] = [
    "submitted",
    "working",
    "input-required",
    "completed",
    "failed",
    "canceled",
    "rejected",
];

impl Bounded for TaskInbox {
    fn check(&self) -> Result<(), ArgumentError> {
        if let Some(state) = &self.state {
            if !STATES.contains(&state.as_str()) {
                return Err(invalid("state", format!("one of {}", STATES.join(", "))));
            }
        }
        self.limit
            .map_or(Ok(()), |v| range("limit", v, 1, MAX_LIMIT))
    }
}

impl AuditTarget for TaskInbox {
    fn audit_target(&self) -> &str {
        self.state.as_deref().unwrap_or_default()
    }
}

/// One result of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArtifactArg {
    /// Its name (1 to 128 bytes).
    #[schemars(length(min = 1, max = MAX_ARTIFACT_NAME_BYTES))]
    pub name: String,
    /// Its content, at most 64 KiB of text.
    #[schemars(length(max = MAX_ARTIFACT_BYTES))]
    pub text: String,
}

/// `task_complete`: the task done, with its artifacts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskComplete {
    /// The task's id (32 hex digits).
    #[schemars(length(min = 32, max = 32))]
    pub id: String,
    /// A last message, at most 16 KiB.
    #[serde(default)]
    #[schemars(length(max = MAX_TEXT_BYTES))]
    pub text: Option<String>,
    /// The results (at most 16).
    #[serde(default)]
    #[schemars(length(max = MAX_ARTIFACTS))]
    pub artifacts: Vec<ArtifactArg>,
}

impl Bounded for TaskComplete {
    fn check(&self) -> Result<(), ArgumentError> {
        task_id(&self.id)?;
        if let Some(text) = &self.text {
            bytes("text", text, MAX_TEXT_BYTES)?;
        }
        if self.artifacts.len() > MAX_ARTIFACTS {
            return Err(invalid(
                "artifacts",
                format!("at most {MAX_ARTIFACTS} artifacts"),
            ));
        }
        for (i, a) in self.artifacts.iter().enumerate() {
            name(
                &format!("artifacts[{i}].name"),
                &a.name,
                MAX_ARTIFACT_NAME_BYTES,
            )?;
            bytes(&format!("artifacts[{i}].text"), &a.text, MAX_ARTIFACT_BYTES)?;
        }
        Ok(())
    }
}

super::audit_target_is! {
    TaskId: id,
    TaskWait: id,
    TaskText: id,
    TaskComplete: id,
}
