//! Operator approvals for ring-1 tool calls.
//!
//! A ring-1 agent's call to a ring-1 tool waits in the pending list until
//! an operator approves or denies it (`osmoda approvals`, `approve ID`,
//! `deny ID`), unless a standing grant covers that agent and tool. Approval
//! happens only on the control socket, which agents cannot reach through
//! their tools, so an agent never approves its own request.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::oneshot;

pub use crate::api::{GrantView, PendingView};
use crate::error::{NodeError, NodeResult};

/// Calls waiting at once, in all and per agent.
pub const MAX_PENDING: usize = 1024;
pub const MAX_PENDING_PER_AGENT: usize = 32;
/// Decisions remembered for `approval_status`.
const MAX_DECIDED: usize = 1024;
/// Standing grants kept.
const MAX_GRANTS: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Approved,
    Denied,
    /// Nobody decided in time, or the node stopped.
    Expired,
}

struct Pending {
    view: PendingView,
    waiters: Vec<oneshot::Sender<Decision>>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    pending: BTreeMap<u64, Pending>,
    decided: VecDeque<(u64, String, Decision)>,
    grants: Vec<GrantView>,
    /// Approved one-off requests not yet used: (agent, tool, arguments).
    approved_once: VecDeque<(String, String, Value)>,
}

#[derive(Default)]
pub struct Approvals {
    inner: Mutex<Inner>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Approvals {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts a call in the pending list; the receiver yields the decision.
    pub fn request(
        &self,
        agent: &str,
        tool: &str,
        arguments: Value,
        reason: &str,
    ) -> NodeResult<(u64, oneshot::Receiver<Decision>)> {
        let mut inner = self.lock();
        if inner.pending.len() >= MAX_PENDING {
            return Err(NodeError::Busy(
                "too many calls wait for approval on this node".into(),
            ));
        }
        if inner
            .pending
            .values()
            .filter(|p| p.view.agent == agent)
            .count()
            >= MAX_PENDING_PER_AGENT
        {
            return Err(NodeError::Busy(format!(
                "this agent has {MAX_PENDING_PER_AGENT} calls waiting for approval already"
            )));
        }
        inner.next_id += 1;
        let id = inner.next_id;
        let (tx, rx) = oneshot::channel();
        inner.pending.insert(
            id,
            Pending {
                view: PendingView {
                    id,
                    agent: agent.into(),
                    tool: tool.into(),
                    arguments,
                    reason: reason.chars().take(1024).collect(),
                    requested_at_ms: now_ms(),
                },
                waiters: vec![tx],
            },
        );
        Ok((id, rx))
    }

    /// An operator's decision. `grant_for` turns an approval into a standing
    /// grant for that agent and tool.
    pub fn decide(
        &self,
        id: u64,
        decision: Decision,
        grant_for: Option<Duration>,
    ) -> NodeResult<PendingView> {
        let mut inner = self.lock();
        let Some(pending) = inner.pending.remove(&id) else {
            return Err(NodeError::not_found("pending approval", id.to_string()));
        };
        if decision == Decision::Approved {
            if let Some(d) = grant_for {
                inner.grants.retain(|g| g.expires_at_ms > now_ms());
                if inner.grants.len() >= MAX_GRANTS {
                    inner.grants.remove(0);
                }
                inner.grants.push(GrantView {
                    agent: pending.view.agent.clone(),
                    tool: pending.view.tool.clone(),
                    expires_at_ms: now_ms().saturating_add(d.as_millis() as u64),
                });
            }
            if pending.waiters.iter().all(|w| w.is_closed()) {
                // Asked in advance (approval_request): the next identical
                // call goes through once.
                if inner.approved_once.len() >= MAX_DECIDED {
                    inner.approved_once.pop_front();
                }
                inner.approved_once.push_back((
                    pending.view.agent.clone(),
                    pending.view.tool.clone(),
                    pending.view.arguments.clone(),
                ));
            }
        }
        if inner.decided.len() >= MAX_DECIDED {
            inner.decided.pop_front();
        }
        inner
            .decided
            .push_back((id, pending.view.agent.clone(), decision));
        for w in pending.waiters {
            let _ = w.send(decision);
        }
        Ok(pending.view)
    }

    /// Withdraws a call whose caller went away before a decision.
    pub fn withdraw(&self, id: u64) {
        let mut inner = self.lock();
        if let Some(p) = inner.pending.remove(&id) {
            if inner.decided.len() >= MAX_DECIDED {
                inner.decided.pop_front();
            }
            inner
                .decided
                .push_back((id, p.view.agent, Decision::Expired));
        }
    }

    /// Whether a standing grant, or a one-off approval given in advance for
    /// exactly these arguments, lets the call through (a one-off is used up).
    pub fn allowed(&self, agent: &str, tool: &str, arguments: &Value) -> bool {
        let mut inner = self.lock();
        let now = now_ms();
        if inner
            .grants
            .iter()
            .any(|g| g.agent == agent && g.tool == tool && g.expires_at_ms > now)
        {
            return true;
        }
        if let Some(i) = inner
            .approved_once
            .iter()
            .position(|(a, t, args)| a == agent && t == tool && args == arguments)
        {
            inner.approved_once.remove(i);
            return true;
        }
        false
    }

    pub fn pending(&self) -> Vec<PendingView> {
        self.lock()
            .pending
            .values()
            .map(|p| p.view.clone())
            .collect()
    }

    pub fn grants(&self) -> Vec<GrantView> {
        let now = now_ms();
        self.lock()
            .grants
            .iter()
            .filter(|g| g.expires_at_ms > now)
            .cloned()
            .collect()
    }

    /// `pending`, or the decision, of a request made by `agent`.
    pub fn status(&self, agent: &str, id: u64) -> Option<&'static str> {
        let inner = self.lock();
        if inner
            .pending
            .get(&id)
            .is_some_and(|p| p.view.agent == agent)
        {
            return Some("pending");
        }
        inner
            .decided
            .iter()
            .find(|(i, a, _)| *i == id && a == agent)
            .map(|(_, _, d)| match d {
                Decision::Approved => "approved",
                Decision::Denied => "denied",
                Decision::Expired => "expired",
            })
    }

    /// Ends every wait (the node stops or locks down).
    pub fn expire_all(&self) {
        let ids: Vec<u64> = self.lock().pending.keys().copied().collect();
        for id in ids {
            let _ = self.decide(id, Decision::Expired, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn a_waiting_call_gets_the_operators_decision() {
        let a = Approvals::default();
        let (id, rx) = a
            .request("bot", "host_exec", json!({"command": "ls"}), "")
            .unwrap();
        assert_eq!(a.pending().len(), 1);
        a.decide(id, Decision::Denied, None).unwrap();
        assert_eq!(rx.await.unwrap(), Decision::Denied);
        assert_eq!(a.status("bot", id), Some("denied"));
        assert_eq!(a.status("other", id), None, "another agent cannot see it");
        assert!(
            a.decide(id, Decision::Approved, None).is_err(),
            "decided once"
        );
    }

    #[test]
    fn grants_and_advance_approvals() {
        let a = Approvals::default();
        let args = json!({"text": "hi"});
        let (id, rx) = a
            .request("bot", "mesh_broadcast", args.clone(), "")
            .unwrap();
        drop(rx); // asked in advance: nobody waits
        a.decide(id, Decision::Approved, None).unwrap();
        assert!(!a.allowed("bot", "mesh_broadcast", &json!({"text": "other"})));
        assert!(a.allowed("bot", "mesh_broadcast", &args));
        assert!(!a.allowed("bot", "mesh_broadcast", &args), "used once");

        let (id, _rx) = a.request("bot", "host_exec", json!({}), "").unwrap();
        a.decide(id, Decision::Approved, Some(Duration::from_secs(60)))
            .unwrap();
        assert!(a.allowed("bot", "host_exec", &json!({"anything": 1})));
        assert!(!a.allowed("other", "host_exec", &json!({})));
    }

    #[test]
    fn pending_is_bounded_per_agent() {
        let a = Approvals::default();
        let mut keep = Vec::new();
        for _ in 0..MAX_PENDING_PER_AGENT {
            keep.push(a.request("bot", "host_exec", json!({}), "").unwrap());
        }
        assert!(a.request("bot", "host_exec", json!({}), "").is_err());
        assert!(a.request("other", "host_exec", json!({}), "").is_ok());
    }
}
