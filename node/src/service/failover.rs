//! Moving a `--skill` task off a node that was lost: the submitting node
//! offers it to another agent with the skill once the node holding it has
//! been out of reach for [`FAILOVER_AFTER`].
//!
//! Only the submitter moves a task, and only one it does not know to have
//! ended, so completed work is never offered again. The task keeps its id
//! and context and names its new target; should the lost node come back
//! with work for the old placement, its copy's ends no longer match and it
//! is refused (`task_receive`), so one completion counts, the new one.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use osmoda_crdt_state::Actor;

use super::{now_ms, Node};
use crate::state::tasks::{Held, Party, Side, Task, TaskState, WorkSide, MAX_TASKS};

/// How long the node holding a `--skill` task may be out of reach before
/// the task is offered to another agent: long enough for a restart or a
/// link that blinks, short enough that work does not wait for a host that
/// is gone.
pub const FAILOVER_AFTER: Duration = Duration::from_secs(30);
/// How often tasks are checked for a lost node.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Since when each task's node has been out of reach, as seen here.
#[derive(Default)]
pub struct Unreachable {
    since: Mutex<HashMap<String, Instant>>,
}

impl Unreachable {
    /// Records which of `tasks` are on a node not in `live`, forgets the
    /// others, and returns those out of reach for [`FAILOVER_AFTER`].
    fn overdue(&self, tasks: &[Task], live: &HashSet<String>) -> Vec<String> {
        let mut since = self.since.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let away: HashSet<&str> = tasks
            .iter()
            .filter(|t| !live.contains(&t.to.node))
            .map(|t| t.id.as_str())
            .collect();
        since.retain(|id, _| away.contains(id.as_str()));
        for id in &away {
            if since.len() < MAX_TASKS {
                since.entry((*id).to_owned()).or_insert(now);
            }
        }
        since
            .iter()
            .filter(|(_, at)| now.duration_since(**at) >= FAILOVER_AFTER)
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn forget(&self, id: &str) {
        self.since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

impl Node {
    /// One check: every open `--skill` task submitted here whose node has
    /// been out of reach too long is offered to another agent.
    pub async fn fail_over(&self) {
        let me = self.fabric.local_peer_id().to_string();
        let open = self.tasks.list(MAX_TASKS, |t| {
            t.from.node == me && t.to.node != me && t.skill.is_some() && !t.state().is_terminal()
        });
        if open.is_empty() {
            return;
        }
        let Ok(peers) = self.fabric.peers().await else {
            return;
        };
        let live: HashSet<String> = peers.into_iter().map(|p| p.node_id).collect();
        for id in self.unreachable.overdue(&open, &live) {
            if let Err(e) = self.move_task(&id).await {
                tracing::info!(task = %id, error = %e, "a task on a lost node cannot move yet");
            }
        }
    }

    async fn move_task(&self, id: &str) -> crate::error::NodeResult<()> {
        let Some(held) = self.tasks.get(id) else {
            return Ok(());
        };
        let old = held.task.clone();
        let skill = old.skill.clone().unwrap_or_default();
        let (peer, agent) = self.place(&skill, old.from.ring).await?;
        if peer.to_string() == old.to.node {
            return Ok(());
        }
        let mut task = old.clone();
        task.to = Party {
            node: peer.to_string(),
            node_name: self.name_of(&peer).unwrap_or_default(),
            agent: Some(agent),
            ring: 0,
        };
        task.request.version += 1;
        task.work = WorkSide {
            version: 0,
            state: TaskState::Submitted,
            state_ms: now_ms(),
            status_message: None,
            messages: Vec::new(),
            artifacts: Vec::new(),
            inputs_seen: 0,
        };
        let theirs = self
            .send_task(peer, &task)
            .await
            .map_err(|e| crate::error::NodeError::Unavailable(e.reason()))?;
        let _order = self.tasks.order.lock().await;
        // Ended meanwhile (the old node came back in time): stays there.
        match self.tasks.get(id) {
            Some(now) if now.task == old => {}
            _ => return Ok(()),
        }
        task.take_side(&theirs, Side::Work);
        let acked = theirs.request.version;
        self.unreachable.forget(id);
        self.audit_later(
            Actor::Node,
            "task.failover",
            id.to_owned(),
            format!(
                "{} out of reach for {} s; offered to {}",
                old.to.label(),
                FAILOVER_AFTER.as_secs(),
                task.to.label()
            ),
        );
        self.store_task(Held { task, acked }).await
    }
}

/// Checks for lost nodes every [`CHECK_EVERY`] until the node is gone.
pub async fn watch(node: std::sync::Weak<Node>) {
    let mut timer = tokio::time::interval(CHECK_EVERY);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        timer.tick().await;
        let Some(strong) = node.upgrade() else { return };
        strong.fail_over().await;
    }
}
