//! Delivery of tasks between nodes: each change of a side is stored, then
//! sent as the whole task until the peer's answer shows it holds it
//! (`service/tasks.rs` makes the changes; docs/protocol.md §11.2).

use std::time::Duration;

use libp2p::PeerId;

use super::Node;
use crate::replication::wire::{self, Request, Response};
use crate::state::tasks::{Side, Task};

/// How often owed changes are sent again.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Tasks sent in one delivery round; the rest wait for the next.
const ROUND: usize = 64;

/// How a refusal for an emergency starts: the sender takes it as "not
/// delivered yet", never as the peer's decision (docs/protocol.md §11.2).
pub(super) const HELD_PREFIX: &str = "held:";

impl Node {
    /// Sends the task to its other node; the peer's copy back.
    pub(super) async fn send_task(&self, peer: PeerId, task: &Task) -> Result<Task, Sent> {
        let body = task.encode().map_err(|e| Sent::Failed(e.to_string()))?;
        match wire::request(&self.fabric, peer, &Request::Task(body)).await {
            Ok(Response::Task(bytes)) => {
                Task::decode(&bytes).map_err(|e| Sent::Refused(e.to_string()))
            }
            Ok(_) => Err(Sent::Refused("an answer of another protocol".into())),
            // Held for an emergency: not a decision, so sent again later.
            Err(wire::Failure::Refused(reason)) if reason.starts_with(HELD_PREFIX) => {
                Err(Sent::Failed(reason))
            }
            Err(wire::Failure::Refused(reason)) => Err(Sent::Refused(reason)),
            Err(e) => Err(Sent::Failed(e.to_string())),
        }
    }

    /// Whether tasks stop here for a LOCKDOWN or FREEZE.
    pub(super) fn tasks_held(&self) -> bool {
        let emergency = self.emergency.state();
        emergency.lockdown || emergency.frozen
    }

    /// One round of delivery: every task whose side written here its peer
    /// has not acknowledged is sent again. A peer that does not answer is
    /// skipped for the rest of the round.
    pub async fn deliver_tasks(&self) {
        // Under LOCKDOWN and FREEZE nothing leaves this node: what is owed
        // goes out once they are lifted (the loop looks every second).
        if self.tasks_held() {
            return;
        }
        let owed = self.tasks.owed(|t| self.my_side(t));
        let mut down: Vec<PeerId> = Vec::new();
        for task in owed.into_iter().take(ROUND) {
            let Some(side) = self.my_side(&task) else {
                continue;
            };
            let other = match side {
                Side::Request => &task.to.node,
                Side::Work => &task.from.node,
            };
            let Ok(peer) = other.parse::<PeerId>() else {
                continue;
            };
            if down.contains(&peer) {
                continue;
            }
            let answer = self.send_task(peer, &task).await;
            let _order = self.tasks.order.lock().await;
            let Some(mut held) = self.tasks.get(&task.id) else {
                continue;
            };
            match answer {
                Ok(theirs) => {
                    held.acked = held.acked.max(theirs.version_of(side));
                    self.take_peer_side(&mut held.task, &theirs, opposite(side), peer);
                }
                Err(Sent::Refused(reason)) => {
                    // The peer decided; sending again would not change it.
                    tracing::warn!(task = %task.id, %reason, "a task's change refused by its peer");
                    held.acked = held.task.version_of(side);
                }
                Err(Sent::Failed(reason)) => {
                    tracing::debug!(task = %task.id, %reason, "a task's change not delivered yet");
                    down.push(peer);
                    continue;
                }
            }
            if let Err(e) = self.store_task(held).await {
                tracing::warn!(task = %task.id, error = %e, "cannot store a task");
            }
        }
    }
}

pub(super) fn opposite(side: Side) -> Side {
    match side {
        Side::Request => Side::Work,
        Side::Work => Side::Request,
    }
}

/// Why sending a task came to nothing.
pub(super) enum Sent {
    /// The peer answered no.
    Refused(String),
    /// No answer: sent again later.
    Failed(String),
}

impl Sent {
    pub(super) fn reason(self) -> String {
        match self {
            Sent::Refused(reason) => format!("refused: {reason}"),
            Sent::Failed(reason) => reason,
        }
    }
}

/// Sends what is owed every [`RETRY_EVERY`], and at once after a change,
/// until the node is gone.
pub async fn deliver(node: std::sync::Weak<Node>) {
    loop {
        let Some(strong) = node.upgrade() else { return };
        strong.deliver_tasks().await;
        let kick = strong.tasks_kick.clone();
        drop(strong);
        let _ = tokio::time::timeout(RETRY_EVERY, kick.notified()).await;
    }
}
