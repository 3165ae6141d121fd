//! The operator's side of ring-1 approvals: what waits, and the decisions.
//! Agents ask through their tools (`agent_tools.rs`); only the control
//! socket decides, so an agent never approves its own call.

use std::time::Duration;

use super::{Caller, Node};
use crate::api::{ApprovalsView, PendingView};
use crate::error::{NodeError, NodeResult};
use crate::state::approvals::Decision;

impl Node {
    pub fn approvals(&self) -> ApprovalsView {
        ApprovalsView {
            pending: self.approvals.pending(),
            grants: self.approvals.grants(),
        }
    }

    /// Approves a waiting call; `grant` ("1h") also lets the agent use that
    /// tool without asking for that long.
    pub async fn approve(
        &self,
        by: Caller<'_>,
        id: u64,
        grant: Option<&str>,
    ) -> NodeResult<PendingView> {
        let grant: Option<Duration> = match grant {
            Some(text) => Some(humantime::parse_duration(text).map_err(|e| {
                NodeError::Invalid(format!(
                    "grant {text:?} is not a duration like 30m or 1h: {e}"
                ))
            })?),
            None => None,
        };
        self.decide(by, id, Decision::Approved, grant).await
    }

    pub async fn deny(&self, by: Caller<'_>, id: u64) -> NodeResult<PendingView> {
        self.decide(by, id, Decision::Denied, None).await
    }

    async fn decide(
        &self,
        by: Caller<'_>,
        id: u64,
        decision: Decision,
        grant: Option<Duration>,
    ) -> NodeResult<PendingView> {
        if !matches!(by, Caller::Operator) {
            return Err(NodeError::Forbidden(
                "only an operator decides on approvals".into(),
            ));
        }
        let result = self.approvals.decide(id, decision, grant);
        let target = match &result {
            Ok(p) => format!("{} {} #{id}", p.agent, p.tool),
            Err(_) => format!("#{id}"),
        };
        let (action, details) = match (decision, grant) {
            (Decision::Approved, Some(d)) => (
                "approval.approve",
                format!("grant for {}", humantime::format_duration(d)),
            ),
            (Decision::Approved, None) => ("approval.approve", String::new()),
            _ => ("approval.deny", String::new()),
        };
        self.audited(by, action, &target, &details, result).await
    }
}
