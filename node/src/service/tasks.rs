//! Tasks between agents: submitted by an operator or an agent, for an
//! agent on this node or another, worked on through the agent's tools,
//! followed to their end by the submitter.
//!
//! The submitting node writes the task's request side, the target node
//! its work side (`state/tasks.rs`). Each change is stored, then sent to
//! the other node as the whole task on the `tasks` direct protocol; the
//! answer is the peer's copy, from which each side takes what is newer.
//! Until the peer's answer shows it holds the change, the delivery task
//! sends it again every second, so a blinking link delays a change but
//! does not lose it.

use std::time::Duration;

use libp2p::PeerId;
use osmoda_crdt_state::Actor;
use serde_json::{json, Value};

use super::task_delivery::{opposite, Sent, HELD_PREFIX};
use super::{now_ms, AgentCall, Caller, Node};
use crate::api::{SubmitTask, TaskStatusView, TaskView};
use crate::error::{NodeError, NodeResult};
use crate::state::tasks::{
    new_id, valid_id, Artifact, Held, Message, Party, RequestSide, Role, Side, Task, TaskState,
    WorkSide, MAX_MESSAGES, MAX_OPEN_FROM_NODE,
};

/// Longest a `watch` or `task_wait` waits in one call.
pub const MAX_WAIT: Duration = Duration::from_secs(300);
/// Inputs one submission may carry.
pub const MAX_INPUTS: usize = 16;

/// A change the target agent makes to its task.
pub enum WorkChange {
    Progress(String),
    InputRequired(String),
    Complete {
        text: Option<String>,
        artifacts: Vec<Artifact>,
    },
    Fail(String),
}

pub fn view(task: &Task) -> TaskView {
    let mut history: Vec<Message> = task
        .request
        .messages
        .iter()
        .chain(&task.work.messages)
        .cloned()
        .collect();
    history.sort_by_key(|m| m.ms);
    TaskView {
        id: task.id.clone(),
        context_id: task.context_id.clone(),
        from: task.from.label(),
        to: task.to.label(),
        from_party: task.from.clone(),
        to_party: task.to.clone(),
        skill: task.skill.clone(),
        status: TaskStatusView {
            state: task.work.state,
            timestamp: task.work.state_ms,
            message: task.work.status_message.clone(),
        },
        history,
        artifacts: task.work.artifacts.clone(),
        created_ms: task.created_ms,
        version: task.request.version + task.work.version,
        cancel_requested: task.request.cancel,
    }
}

fn text_message(role: Role, text: String) -> Message {
    Message {
        role,
        text,
        ms: now_ms(),
    }
}

impl Node {
    fn me(&self) -> String {
        self.fabric.local_peer_id().to_string()
    }

    /// The side this node writes and owes its peer; None for a task
    /// between two agents of this node, which has no peer.
    pub(super) fn my_side(&self, task: &Task) -> Option<Side> {
        let me = self.me();
        match (task.from.node == me, task.to.node == me) {
            (true, false) => Some(Side::Request),
            (false, true) => Some(Side::Work),
            _ => None,
        }
    }

    /// Whether a held task may make room for a new one: ended, and the
    /// peer holds what this node wrote.
    fn settled(&self, held: &Held) -> bool {
        held.task.state().is_terminal()
            && self
                .my_side(&held.task)
                .is_none_or(|side| held.acked >= held.task.version_of(side))
    }

    pub(super) async fn store_task(&self, held: Held) -> NodeResult<()> {
        self.tasks.put(held, |h| self.settled(h)).await?;
        self.tasks_kick.notify_one();
        Ok(())
    }

    fn held(&self, id: &str) -> NodeResult<Held> {
        self.tasks
            .get(id.trim())
            .ok_or_else(|| NodeError::not_found("task", id))
    }

    fn submitter(&self, by: Caller<'_>) -> Party {
        let (agent, ring) = match by {
            Caller::Operator => (None, 0),
            Caller::Agent(call) => (Some(call.who.name.clone()), call.who.ring),
            Caller::Remote(client) => (Some(client.label.clone()), client.ring),
        };
        Party {
            node: self.me(),
            node_name: self.info.name.clone(),
            agent,
            ring,
        }
    }

    /// Whether `by` may act for the submitter of `task`: the operator for
    /// any task submitted here, an agent for its own.
    fn may_submit_side(&self, by: Caller<'_>, task: &Task) -> bool {
        task.from.node == self.me()
            && match by {
                Caller::Operator => true,
                Caller::Agent(call) => task.from.agent.as_deref() == Some(&call.who.name),
                Caller::Remote(client) => task.from.agent.as_deref() == Some(&client.label),
            }
    }

    /// Places a task and hands it to the target node; a task that cannot
    /// be placed (no agent, refused ring, node unreachable) fails here
    /// with the reason and is not kept.
    pub async fn task_submit(&self, by: Caller<'_>, body: SubmitTask) -> NodeResult<TaskView> {
        let result = self.submit(by, body).await;
        let (target, details) = match &result {
            Ok(t) => (t.id.clone(), format!("to {}: {}", t.to.label(), t.state())),
            Err(_) => (String::new(), String::new()),
        };
        let task = self
            .audited(by, "task.submit", &target, &details, result)
            .await?;
        Ok(view(&task))
    }

    async fn submit(&self, by: Caller<'_>, body: SubmitTask) -> NodeResult<Task> {
        let emergency = self.emergency.state();
        if emergency.lockdown || emergency.frozen {
            return Err(NodeError::Forbidden(format!(
                "this node is {}: no task is submitted until that is lifted",
                if emergency.lockdown {
                    "locked down"
                } else {
                    "frozen"
                }
            )));
        }
        if body.input.is_empty() || body.input.len() > MAX_INPUTS {
            return Err(NodeError::Invalid(format!(
                "a task takes 1 to {MAX_INPUTS} inputs"
            )));
        }
        let from = self.submitter(by);
        let (peer, agent) = match (&body.to, &body.skill) {
            (Some(to), None) => {
                let (agent, node) = to
                    .rsplit_once('@')
                    .ok_or_else(|| NodeError::Invalid(format!("--to {to:?} is not AGENT@NODE")))?;
                (self.resolve_node(node).await?, agent.to_owned())
            }
            (None, Some(skill)) => self.place(skill, from.ring).await?,
            _ => {
                return Err(NodeError::Invalid(
                    "a task goes to AGENT@NODE or to a skill: one of the two".into(),
                ))
            }
        };
        let now = now_ms();
        let task = Task {
            id: new_id(),
            context_id: body.context_id.unwrap_or_else(new_id),
            to: Party {
                node: peer.to_string(),
                node_name: self.name_of(&peer).unwrap_or_default(),
                agent: Some(agent),
                ring: 0,
            },
            from,
            skill: body.skill,
            created_ms: now,
            request: RequestSide {
                version: 1,
                messages: body
                    .input
                    .into_iter()
                    .map(|text| text_message(Role::User, text))
                    .collect(),
                cancel: false,
            },
            work: WorkSide {
                version: 0,
                state: TaskState::Submitted,
                state_ms: now,
                status_message: None,
                messages: Vec::new(),
                artifacts: Vec::new(),
                inputs_seen: 0,
            },
        };
        task.check()?;
        if peer == self.fabric.local_peer_id() {
            let _order = self.tasks.order.lock().await;
            let task = self.accepted(task, None)?;
            self.store_task(Held {
                task: task.clone(),
                acked: 0,
            })
            .await?;
            return Ok(task);
        }
        // The first delivery is the placement: unanswered, it fails here.
        let theirs = self.send_task(peer, &task).await.map_err(|e| match e {
            Sent::Refused(reason) => {
                NodeError::Forbidden(format!("{} refused the task: {reason}", task.to.label()))
            }
            Sent::Failed(reason) => NodeError::Unavailable(format!(
                "the task cannot be placed on {}: {reason}",
                task.to.label()
            )),
        })?;
        let _order = self.tasks.order.lock().await;
        let mut task = task;
        task.take_side(&theirs, Side::Work);
        let acked = theirs.request.version;
        self.store_task(Held {
            task: task.clone(),
            acked,
        })
        .await?;
        Ok(task)
    }

    /// A new task for an agent of this node, as its target takes it:
    /// submitted, or rejected with the reason.
    fn accepted(&self, mut task: Task, from: Option<PeerId>) -> NodeResult<Task> {
        let agent = task.to.agent.clone().unwrap_or_default();
        let ring = self.ring_vouched(task.from.ring, from);
        let refusal = match self.agents.card(&agent) {
            Err(NodeError::NotFound { .. }) => Some(format!("no agent {agent:?} on this node")),
            Err(e) => return Err(e),
            Ok(card) if !card.accept_rings.contains(&ring) => Some(format!(
                "{agent} takes tasks from rings {:?}, not from ring {ring}{}",
                card.accept_rings,
                if ring != task.from.ring {
                    format!(" (ring {} as a member node claims it)", task.from.ring)
                } else {
                    String::new()
                }
            )),
            Ok(_) => None,
        };
        let now = now_ms();
        task.work = WorkSide {
            version: 1,
            state: if refusal.is_some() {
                TaskState::Rejected
            } else {
                TaskState::Submitted
            },
            state_ms: now,
            status_message: refusal.clone(),
            messages: Vec::new(),
            artifacts: Vec::new(),
            inputs_seen: task.request.messages.len(),
        };
        let details = format!(
            "from {} (ring {ring}) to agent {agent}: {}{}",
            task.from.label(),
            task.work.state,
            refusal.map(|r| format!(" ({r})")).unwrap_or_default()
        );
        self.audit_later(
            self.actor_of(from),
            "task.receive",
            task.id.clone(),
            details,
        );
        Ok(task)
    }

    /// The ring a task's submitter counts as here. Another node's claim is
    /// its own word: an admin node's is taken as it is, a member node's
    /// never as the operator's (ring 0), so a member node cannot pass its
    /// tasks off as an operator's to agents that take only those.
    fn ring_vouched(&self, claimed: u8, from: Option<PeerId>) -> u8 {
        let Some(peer) = from else {
            return claimed;
        };
        let admin = self
            .membership
            .peer(&peer)
            .is_some_and(|r| r.cert.role == osmoda_fabric::proto::Role::Admin);
        if admin {
            claimed
        } else {
            claimed.max(1)
        }
    }

    /// Takes the side `peer` writes from its copy when it is newer: a new
    /// request is acted on, a new state of the work audited.
    pub(super) fn take_peer_side(&self, task: &mut Task, theirs: &Task, side: Side, peer: PeerId) {
        let before = task.state();
        if !task.take_side(theirs, side) {
            return;
        }
        if side == Side::Request {
            self.requested(task, Some(peer));
        } else if task.state() != before {
            self.audit_later(
                self.actor_of(Some(peer)),
                "task.status",
                task.id.clone(),
                format!("{}: {}", task.to.label(), task.state()),
            );
        }
    }

    pub(super) fn actor_of(&self, peer: Option<PeerId>) -> Actor {
        peer.and_then(|p| self.membership.peer(&p))
            .map_or(Actor::Node, |r| Actor::Peer(r.cert.node))
    }

    /// A peer's copy of a task: new (for an agent here) or a change of
    /// the side that peer writes. The answer is this node's copy.
    pub async fn task_receive(&self, peer: PeerId, body: &[u8]) -> Result<Vec<u8>, String> {
        // Under an emergency nothing comes in either, and no answer
        // carries this node's copy out: the sender keeps what it owes.
        if self.tasks_held() {
            return Err(format!(
                "{HELD_PREFIX} this node is under LOCKDOWN or FREEZE; send it again after"
            ));
        }
        let theirs = Task::decode(body).map_err(|e| e.to_string())?;
        let sender = peer.to_string();
        let me = self.me();
        let side = if theirs.from.node == sender && theirs.to.node == me {
            Side::Request
        } else if theirs.to.node == sender && theirs.from.node == me {
            Side::Work
        } else {
            return Err("the task is neither from nor for the sending node".into());
        };
        let _order = self.tasks.order.lock().await;
        let task = match (self.tasks.get(&theirs.id), side) {
            (None, Side::Request) => {
                let open = self
                    .tasks
                    .count(|t| t.from.node == sender && !t.state().is_terminal());
                if open >= MAX_OPEN_FROM_NODE {
                    return Err(format!(
                        "this node holds at most {MAX_OPEN_FROM_NODE} open tasks from one node"
                    ));
                }
                let task = self
                    .accepted(theirs, Some(peer))
                    .map_err(|e| e.to_string())?;
                self.store_task(Held {
                    task: task.clone(),
                    acked: 0,
                })
                .await
                .map_err(|e| e.to_string())?;
                task
            }
            (None, Side::Work) => return Err("no such task here".into()),
            (Some(mut held), side) => {
                if held.task.from != theirs.from || held.task.to != theirs.to {
                    return Err("the task's ends do not match this node's copy".into());
                }
                held.acked = held.acked.max(theirs.version_of(opposite(side)));
                self.take_peer_side(&mut held.task, &theirs, side, peer);
                let task = held.task.clone();
                self.store_task(held).await.map_err(|e| e.to_string())?;
                task
            }
        };
        task.encode().map_err(|e| e.to_string())
    }

    /// What a change of the request side does to the work, here where the
    /// work is written: a cancel ends the task, a reply lets the agent go
    /// on from input-required.
    pub(super) fn requested(&self, task: &mut Task, from: Option<PeerId>) {
        let state = task.work.state;
        if state.is_terminal() {
            return;
        }
        let (action, new_state, message) = if task.request.cancel {
            (
                "task.cancel",
                TaskState::Canceled,
                "canceled by the submitter",
            )
        } else if task.request.messages.len() > task.work.inputs_seen {
            ("task.reply", TaskState::Working, "the submitter replied")
        } else {
            return;
        };
        task.work.inputs_seen = task.request.messages.len();
        task.work.state = if new_state == TaskState::Working && state == TaskState::Submitted {
            TaskState::Submitted
        } else {
            new_state
        };
        task.work.state_ms = now_ms();
        task.work.status_message = Some(message.into());
        task.work.version += 1;
        self.audit_later(
            self.actor_of(from),
            action,
            task.id.clone(),
            format!("{} for agent {}", task.from.label(), task.to.label()),
        );
    }

    /// Changes the request side (as the submitter) and stores it.
    async fn change_request(
        &self,
        by: Caller<'_>,
        id: &str,
        change: impl FnOnce(&mut Task) -> NodeResult<()>,
    ) -> NodeResult<Task> {
        let _order = self.tasks.order.lock().await;
        let mut held = self.held(id)?;
        if !self.may_submit_side(by, &held.task) {
            return Err(NodeError::not_found("task submitted by the caller", id));
        }
        if held.task.state().is_terminal() {
            return Err(NodeError::Conflict(format!(
                "task {id} has ended: {}",
                held.task.state()
            )));
        }
        change(&mut held.task)?;
        held.task.request.version += 1;
        if self.my_side(&held.task).is_none() {
            self.requested(&mut held.task, None);
        }
        held.task.check()?;
        let task = held.task.clone();
        self.store_task(held).await?;
        Ok(task)
    }

    /// Asks for the task's end; the agent sees it canceled in its inbox.
    pub async fn task_cancel(&self, by: Caller<'_>, id: &str) -> NodeResult<TaskView> {
        let result = self
            .change_request(by, id, |task| {
                task.request.cancel = true;
                Ok(())
            })
            .await;
        let task = self.audited(by, "task.cancel", id, "", result).await?;
        Ok(view(&task))
    }

    /// The submitter's answer to a task that asked for input.
    pub async fn task_reply(
        &self,
        by: Caller<'_>,
        id: &str,
        input: String,
    ) -> NodeResult<TaskView> {
        let bytes = input.len();
        let result = self
            .change_request(by, id, |task| {
                if task.request.messages.len() >= MAX_MESSAGES {
                    return Err(NodeError::TooLarge(format!(
                        "a task holds at most {MAX_MESSAGES} messages from each side"
                    )));
                }
                task.request.messages.push(text_message(Role::User, input));
                Ok(())
            })
            .await;
        let details = format!("{bytes} bytes");
        let task = self.audited(by, "task.reply", id, &details, result).await?;
        Ok(view(&task))
    }

    /// Tasks submitted here or given to agents here, newest first.
    pub fn task_list(&self, limit: usize) -> Vec<TaskView> {
        self.tasks
            .list(limit.min(crate::state::tasks::MAX_TASKS), |_| true)
            .iter()
            .map(view)
            .collect()
    }

    pub fn task_show(&self, id: &str) -> NodeResult<TaskView> {
        Ok(view(&self.held(id)?.task))
    }

    /// A task `by` submitted here; any other is not found, so that a
    /// client learns nothing of the tasks of others.
    pub fn task_show_as(&self, by: Caller<'_>, id: &str) -> NodeResult<TaskView> {
        let task = self.held(id)?.task;
        if !self.may_submit_side(by, &task) {
            return Err(NodeError::not_found("task submitted by the caller", id));
        }
        Ok(view(&task))
    }

    /// The task once `done` says so, or after `wait` as it is then.
    async fn wait_for(
        &self,
        id: &str,
        wait: Duration,
        done: impl Fn(&Task) -> bool,
    ) -> NodeResult<Task> {
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        let mut changes = self.tasks.watch();
        loop {
            let task = self.held(id)?.task;
            if done(&task) {
                return Ok(task);
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => return Ok(task),
            }
        }
    }

    /// The task when its version passes `after` (at once without one).
    pub async fn task_watch(
        &self,
        id: &str,
        after: Option<u64>,
        wait: u64,
    ) -> NodeResult<TaskView> {
        let Some(after) = after else {
            return self.task_show(id);
        };
        let wait = Duration::from_secs(wait.min(60));
        let task = self
            .wait_for(id, wait, |t| {
                t.request.version + t.work.version > after || t.state().is_terminal()
            })
            .await?;
        Ok(view(&task))
    }

    /// An agent's view of a task it submitted or was given.
    fn agent_task(&self, call: &AgentCall, id: &str) -> NodeResult<Task> {
        let task = self.held(id)?.task;
        let me = self.me();
        let name = Some(call.who.name.as_str());
        let mine = (task.from.node == me && task.from.agent.as_deref() == name)
            || (task.to.node == me && task.to.agent.as_deref() == name);
        if !mine {
            return Err(NodeError::not_found("task of this agent", id));
        }
        Ok(task)
    }

    pub fn task_status(&self, call: &AgentCall, id: &str) -> NodeResult<Value> {
        let task = self.agent_task(call, id)?;
        call.note(task.state().to_string());
        serde_json::to_value(view(&task)).map_err(NodeError::internal)
    }

    /// Waits until the task ended or asks for input, at most `timeout`.
    pub async fn task_wait(
        &self,
        call: &AgentCall,
        id: &str,
        timeout: Duration,
    ) -> NodeResult<Value> {
        self.agent_task(call, id)?;
        let task = self
            .wait_for(id, timeout, |t| {
                t.state().is_terminal() || t.state() == TaskState::InputRequired
            })
            .await?;
        call.note(task.state().to_string());
        serde_json::to_value(view(&task)).map_err(NodeError::internal)
    }

    /// The calling agent's tasks, newest first; `state` picks one state.
    pub fn task_inbox(
        &self,
        call: &AgentCall,
        state: Option<&str>,
        limit: usize,
    ) -> NodeResult<Value> {
        let me = self.me();
        let name = call.who.name.clone();
        let tasks = self.tasks.list(limit, |t| {
            t.to.node == me
                && t.to.agent.as_deref() == Some(&name)
                && state.is_none_or(|s| t.state().to_string() == s)
        });
        call.note(format!("{} tasks", tasks.len()));
        let views: Vec<TaskView> = tasks.iter().map(view).collect();
        Ok(json!({ "tasks": views }))
    }

    /// The target agent's change to its task.
    pub async fn task_work(
        &self,
        call: &AgentCall,
        id: &str,
        change: WorkChange,
    ) -> NodeResult<Value> {
        let _order = self.tasks.order.lock().await;
        let mut held = self.held(id)?;
        let me = self.me();
        if held.task.to.node != me || held.task.to.agent.as_deref() != Some(&call.who.name) {
            return Err(NodeError::not_found("task given to this agent", id));
        }
        let work = &mut held.task.work;
        if work.state.is_terminal() {
            return Err(NodeError::Conflict(format!(
                "task {id} has ended: {}",
                work.state
            )));
        }
        let (state, text) = match change {
            WorkChange::Progress(text) => (TaskState::Working, Some(text)),
            WorkChange::InputRequired(text) => (TaskState::InputRequired, Some(text)),
            WorkChange::Fail(text) => (TaskState::Failed, Some(text)),
            WorkChange::Complete { text, artifacts } => {
                work.artifacts.extend(artifacts);
                (TaskState::Completed, text)
            }
        };
        if let Some(text) = &text {
            work.messages.push(text_message(Role::Agent, text.clone()));
        }
        work.status_message = text;
        work.state = state;
        work.state_ms = now_ms();
        work.version += 1;
        held.task.check()?;
        call.note(format!("{}: {state}", held.task.from.label()));
        let task = held.task.clone();
        self.store_task(held).await?;
        serde_json::to_value(view(&task)).map_err(NodeError::internal)
    }
}

/// Parses a task id as an agent or the operator gives it.
pub fn task_id(id: &str) -> NodeResult<&str> {
    let id = id.trim();
    if valid_id(id) {
        Ok(id)
    } else {
        Err(NodeError::Invalid(format!(
            "{id:?} is not a task id (32 hex digits)"
        )))
    }
}
