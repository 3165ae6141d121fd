//! The control API's types for agent cards and tasks between agents.

use serde::{Deserialize, Serialize};

use crate::state::cards::Card;
use crate::state::tasks::{Artifact, Message, Party, TaskState};

/// `POST /v1/agents/{name}/card`, and the card part of `POST /v1/agents`:
/// each field given replaces the card's.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardEdit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skills: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_rings: Option<Vec<u8>>,
}

/// `GET /v1/cards?skill=S&name=N`: the fleet's advertised agents.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skill: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// One agent of the fleet as its node advertised it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetCardView {
    pub node_id: String,
    pub node_name: String,
    /// This node, or a node connected now.
    pub live: bool,
    /// Seconds since this node received the set (0 for its own).
    pub age_secs: u64,
    #[serde(flatten)]
    pub card: Card,
}

/// `POST /v1/tasks`: a task for `AGENT@NODE` or for any agent with a skill.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitTask {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skill: Option<String>,
    /// The input messages, in order.
    pub input: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_id: Option<String>,
}

/// `GET /v1/tasks?limit=N`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskListQuery {
    #[serde(default = "default_task_limit")]
    pub limit: usize,
}

fn default_task_limit() -> usize {
    100
}

/// `GET /v1/tasks/{id}?after=V&wait=S`: answered when the task's version
/// passes `after`, or after `wait` seconds (at most 60) as it is.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskWatchQuery {
    #[serde(default)]
    pub after: Option<u64>,
    #[serde(default)]
    pub wait: Option<u64>,
}

/// `POST /v1/tasks/{id}/reply`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskReplyBody {
    pub input: String,
}

/// A task's status, as A2A shapes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskStatusView {
    pub state: TaskState,
    /// Unix milliseconds of the last change of state.
    pub timestamp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A task, as A2A shapes it, with where it runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskView {
    pub id: String,
    pub context_id: String,
    /// `agent@node` (or `operator@node`) of the submitter.
    pub from: String,
    /// `agent@node` of the agent the task is for.
    pub to: String,
    pub from_party: Party,
    pub to_party: Party,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skill: Option<String>,
    pub status: TaskStatusView,
    /// Both sides' messages, oldest first.
    pub history: Vec<Message>,
    pub artifacts: Vec<Artifact>,
    pub created_ms: u64,
    /// Raised by every change of either side (`watch` waits past it).
    pub version: u64,
    /// Whether a cancel was asked for.
    pub cancel_requested: bool,
}
