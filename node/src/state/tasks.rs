//! Tasks between agents, as this node holds them: the ones it submitted
//! and the ones its agents were given, each one record in the store's
//! `tasks` table (ids listed in `tasks-index`, so that loading never reads
//! more than one record at a time), kept in memory while the node runs.
//!
//! A task is shaped like A2A's (id, context id, status, history,
//! artifacts) and has two sides, each written by one node only: the
//! *request* (the submitter's input messages, replies and cancel) and the
//! *work* (the target agent's state, messages and artifacts). Each side
//! carries a version its writer raises on every change; a node takes a
//! side from its peer only when it is newer, so the whole task can be sent
//! again and again, in any order, and both copies end up the same. What a
//! node still owes its peer is the side it writes whose version the peer
//! has not acknowledged (`acked`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use osmoda_store::{Batch, Store};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::error::{NodeError, NodeResult};

const TASKS: &str = "tasks";
const INDEX: &str = "tasks-index";

/// Tasks one node holds, submitted and received together. When full, the
/// oldest settled task (ended, and acknowledged by its peer) makes room.
pub const MAX_TASKS: usize = 1024;
/// Tasks not ended that one other node may have given this node's
/// agents: a quarter of [`MAX_TASKS`], so that one node cannot fill the
/// table for the others.
pub const MAX_OPEN_FROM_NODE: usize = MAX_TASKS / 4;
/// Longest message text (input, progress, reply, failure), in bytes.
pub const MAX_TEXT: usize = 16 * 1024;
/// Messages on one side of a task (the submitter's inputs and replies, or
/// the agent's progress and questions).
pub const MAX_MESSAGES: usize = 64;
/// Artifacts one task may end with.
pub const MAX_ARTIFACTS: usize = 16;
/// Largest artifact text, in bytes.
pub const MAX_ARTIFACT: usize = 64 * 1024;
/// Largest task as sent and stored: both sides, every message and
/// artifact. Well inside a direct message and a store value.
pub const MAX_TASK_BYTES: usize = 512 * 1024;
/// Longest name (agent, skill, artifact, node name), in bytes.
pub const MAX_NAME: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskState {
    Submitted,
    Working,
    InputRequired,
    Completed,
    Failed,
    Canceled,
    Rejected,
}

impl TaskState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Completed | TaskState::Failed | TaskState::Canceled | TaskState::Rejected
        )
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            TaskState::Submitted => "submitted",
            TaskState::Working => "working",
            TaskState::InputRequired => "input-required",
            TaskState::Completed => "completed",
            TaskState::Failed => "failed",
            TaskState::Canceled => "canceled",
            TaskState::Rejected => "rejected",
        };
        f.write_str(text)
    }
}

/// One end of a task: a node, and the agent there (none: the operator).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Party {
    pub node: String,
    #[serde(default)]
    pub node_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The submitter's ring: 0 for the operator, an agent's own otherwise.
    #[serde(default)]
    pub ring: u8,
}

impl Party {
    /// `agent@node-name`, or `operator@node-name`.
    pub fn label(&self) -> String {
        let who = self.agent.as_deref().unwrap_or("operator");
        let at = if self.node_name.is_empty() {
            &self.node
        } else {
            &self.node_name
        };
        format!("{who}@{at}")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Agent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub text: String,
    /// Unix milliseconds.
    pub ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub name: String,
    pub text: String,
}

/// The submitter's side.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestSide {
    pub version: u64,
    pub messages: Vec<Message>,
    #[serde(default)]
    pub cancel: bool,
}

/// The target agent's side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkSide {
    pub version: u64,
    pub state: TaskState,
    /// When the state last changed, Unix milliseconds.
    pub state_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    #[serde(default)]
    pub messages: Vec<Message>,
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
    /// How many of the request's messages the agent has been given, so
    /// that a reply is told apart from what it saw before.
    #[serde(default)]
    pub inputs_seen: usize,
}

/// A task, as both nodes hold and send it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub context_id: String,
    pub from: Party,
    pub to: Party,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skill: Option<String>,
    pub created_ms: u64,
    pub request: RequestSide,
    pub work: WorkSide,
}

/// Which side a node writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Request,
    Work,
}

impl Task {
    pub fn state(&self) -> TaskState {
        self.work.state
    }

    pub fn version_of(&self, side: Side) -> u64 {
        match side {
            Side::Request => self.request.version,
            Side::Work => self.work.version,
        }
    }

    /// Checks every bound; a task over one is refused whole, naming it.
    pub fn check(&self) -> NodeResult<()> {
        let too = |what: String| Err(NodeError::TooLarge(what));
        if !valid_id(&self.id) || self.context_id.len() > MAX_NAME {
            return Err(NodeError::Invalid("a task id is 32 hex digits".into()));
        }
        for name in [
            self.from.agent.as_deref().unwrap_or(""),
            self.to.agent.as_deref().unwrap_or(""),
            self.skill.as_deref().unwrap_or(""),
            &self.from.node,
            &self.to.node,
            &self.from.node_name,
            &self.to.node_name,
        ] {
            if name.len() > MAX_NAME || name.chars().any(char::is_control) {
                return Err(NodeError::Invalid(format!(
                    "a name of a task is over {MAX_NAME} bytes or holds control characters"
                )));
            }
        }
        for side in [&self.request.messages, &self.work.messages] {
            if side.len() > MAX_MESSAGES {
                return too(format!(
                    "a task holds at most {MAX_MESSAGES} messages from each side"
                ));
            }
            if side.iter().any(|m| m.text.len() > MAX_TEXT) {
                return too(format!("a task message holds at most {MAX_TEXT} bytes"));
            }
        }
        if self
            .work
            .status_message
            .as_ref()
            .is_some_and(|m| m.len() > MAX_TEXT)
        {
            return too(format!("a status message holds at most {MAX_TEXT} bytes"));
        }
        if self.work.artifacts.len() > MAX_ARTIFACTS {
            return too(format!(
                "a task ends with at most {MAX_ARTIFACTS} artifacts"
            ));
        }
        for a in &self.work.artifacts {
            if a.text.len() > MAX_ARTIFACT || a.name.len() > MAX_NAME {
                return too(format!(
                    "an artifact holds at most {MAX_ARTIFACT} bytes and a name of {MAX_NAME}"
                ));
            }
        }
        let bytes = self.encode()?.len();
        if bytes > MAX_TASK_BYTES {
            return too(format!(
                "a task is at most {MAX_TASK_BYTES} bytes, this one {bytes}"
            ));
        }
        Ok(())
    }

    pub fn encode(&self) -> NodeResult<Vec<u8>> {
        serde_json::to_vec(self).map_err(NodeError::internal)
    }

    /// A task as a peer sent it: bounded before it is parsed, checked after.
    pub fn decode(bytes: &[u8]) -> NodeResult<Task> {
        if bytes.len() > MAX_TASK_BYTES {
            return Err(NodeError::TooLarge(format!(
                "a task is at most {MAX_TASK_BYTES} bytes"
            )));
        }
        let task: Task = serde_json::from_slice(bytes)
            .map_err(|e| NodeError::Invalid(format!("a task that does not parse: {e}")))?;
        task.check()?;
        Ok(task)
    }

    /// Takes the peer's newer copy of `side`; whether anything changed.
    pub fn take_side(&mut self, from: &Task, side: Side) -> bool {
        match side {
            Side::Request if from.request.version > self.request.version => {
                self.request = from.request.clone();
                true
            }
            Side::Work if from.work.version > self.work.version => {
                self.work = from.work.clone();
                true
            }
            _ => false,
        }
    }
}

pub fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A fresh task id: 16 random bytes in hex.
pub fn new_id() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A task with what this node knows of its delivery.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Held {
    pub task: Task,
    /// The version of this node's side the peer holds.
    pub acked: u64,
}

pub struct Tasks {
    store: Store,
    held: Mutex<BTreeMap<String, Held>>,
    /// Raised on every change, so that watchers wake.
    changes: watch::Sender<u64>,
    /// Held from reading a task to storing its change, so that two
    /// changes to tasks (an agent's and a peer's) never overwrite each
    /// other.
    pub order: tokio::sync::Mutex<()>,
}

fn damaged(e: impl std::fmt::Display) -> NodeError {
    NodeError::Internal(format!("a stored task is damaged: {e}"))
}

impl Tasks {
    /// Loads every stored task, one record at a time.
    pub fn open(store: Store) -> NodeResult<Self> {
        let mut held = BTreeMap::new();
        for (id, _) in store.scan_prefix(INDEX, b"", MAX_TASKS)? {
            let Some(bytes) = store.get(TASKS, &id)? else {
                continue;
            };
            let one: Held = serde_json::from_slice(&bytes).map_err(damaged)?;
            held.insert(one.task.id.clone(), one);
        }
        Ok(Self {
            store,
            held: Mutex::new(held),
            changes: watch::channel(0).0,
            order: tokio::sync::Mutex::new(()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, id: &str) -> Option<Held> {
        self.lock().get(id).cloned()
    }

    /// Every task `pick` chooses, newest first, at most `limit`.
    pub fn list(&self, limit: usize, pick: impl Fn(&Task) -> bool) -> Vec<Task> {
        let mut found: Vec<Task> = self
            .lock()
            .values()
            .filter(|h| pick(&h.task))
            .map(|h| h.task.clone())
            .collect();
        found.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(b.id.cmp(&a.id)));
        found.truncate(limit);
        found
    }

    /// How many held tasks `pick` chooses.
    pub fn count(&self, pick: impl Fn(&Task) -> bool) -> usize {
        self.lock().values().filter(|h| pick(&h.task)).count()
    }

    /// Tasks whose side written here the peer has not acknowledged.
    pub fn owed(&self, mine: impl Fn(&Task) -> Option<Side>) -> Vec<Task> {
        self.lock()
            .values()
            .filter(|h| mine(&h.task).is_some_and(|side| h.task.version_of(side) > h.acked))
            .map(|h| h.task.clone())
            .collect()
    }

    pub fn watch(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Stores a task durably, then holds it. A new task past
    /// [`MAX_TASKS`] takes the place of the oldest settled one, or is
    /// refused naming the limit.
    pub async fn put(&self, held: Held, settled: impl Fn(&Held) -> bool) -> NodeResult<()> {
        held.task.check()?;
        let bytes = serde_json::to_vec(&held).map_err(NodeError::internal)?;
        let id = held.task.id.clone();
        let mut batch = Batch::new();
        let evict = {
            let map = self.lock();
            if map.contains_key(&id) || map.len() < MAX_TASKS {
                None
            } else {
                let oldest = map
                    .values()
                    .filter(|h| settled(h))
                    .min_by_key(|h| h.task.created_ms)
                    .map(|h| h.task.id.clone());
                match oldest {
                    Some(old) => Some(old),
                    None => {
                        return Err(NodeError::Busy(format!(
                            "this node holds at most {MAX_TASKS} tasks and none of them has ended"
                        )))
                    }
                }
            }
        };
        if let Some(old) = &evict {
            batch.delete(TASKS, old.as_bytes());
            batch.delete(INDEX, old.as_bytes());
        }
        batch.put(TASKS, id.as_bytes(), &bytes);
        batch.put(INDEX, id.as_bytes(), b"");
        self.store.submit_batch(batch)?.await?;
        {
            let mut map = self.lock();
            if let Some(old) = evict {
                map.remove(&old);
            }
            map.insert(id, held);
        }
        self.changes.send_modify(|n| *n += 1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> Task {
        let party = |node: &str, agent: Option<&str>| Party {
            node: node.into(),
            node_name: node.into(),
            agent: agent.map(Into::into),
            ring: 2,
        };
        Task {
            id: new_id(),
            context_id: new_id(),
            from: party("a", Some("asker")),
            to: party("b", Some("worker")),
            skill: None,
            created_ms: 1,
            request: RequestSide {
                version: 1,
                messages: vec![Message {
                    role: Role::User,
                    text: "hi".into(),
                    ms: 1,
                }],
                cancel: false,
            },
            work: WorkSide {
                version: 1,
                state: TaskState::Submitted,
                state_ms: 1,
                status_message: None,
                messages: Vec::new(),
                artifacts: Vec::new(),
                inputs_seen: 1,
            },
        }
    }

    #[test]
    fn each_side_takes_only_a_newer_copy_of_the_others() {
        let mut mine = task();
        let mut theirs = mine.clone();
        theirs.work.version = 3;
        theirs.work.state = TaskState::Completed;
        theirs.request.cancel = true;
        theirs.request.version = 9;
        // Only the side the peer writes is taken.
        assert!(mine.take_side(&theirs, Side::Work));
        assert_eq!(mine.state(), TaskState::Completed);
        assert!(!mine.request.cancel);
        // An older copy, arriving late, changes nothing.
        let mut stale = theirs.clone();
        stale.work.version = 2;
        stale.work.state = TaskState::Working;
        assert!(!mine.take_side(&stale, Side::Work));
        assert_eq!(mine.state(), TaskState::Completed);
    }

    #[test]
    fn a_task_over_a_bound_is_refused_naming_it() {
        let mut big = task();
        big.work.artifacts = (0..=MAX_ARTIFACTS)
            .map(|i| Artifact {
                name: format!("a{i}"),
                text: String::new(),
            })
            .collect();
        let e = big.check().expect_err("too many artifacts");
        assert!(e.to_string().contains(&MAX_ARTIFACTS.to_string()), "{e}");
        let mut long = task();
        long.request.messages[0].text = "x".repeat(MAX_TEXT + 1);
        assert!(long.check().is_err());
        let bytes = task().encode().expect("encodes");
        assert_eq!(Task::decode(&bytes).expect("decodes"), task_with_id(&bytes));
        assert!(Task::decode(&vec![b' '; MAX_TASK_BYTES + 1]).is_err());
        assert!(Task::decode(b"{\"id\": 1}").is_err());
    }

    fn task_with_id(bytes: &[u8]) -> Task {
        serde_json::from_slice(bytes).expect("parses")
    }
}
