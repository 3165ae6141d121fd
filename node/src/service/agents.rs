//! The agents this node runs: defined, started, stopped and removed by the
//! operator; what happens to them on their own is audited as it happens.

use osmoda_agentd::{AgentEvent, AgentEventKind, AgentStatus, AllowEntry};
use osmoda_crdt_state::{Actor, Outcome};
use tokio::sync::mpsc;

use super::{Caller, Node};
use crate::api::{AddAgent, AgentView, Removed};
use crate::error::{NodeError, NodeResult};

/// Most lines `agent logs` returns.
pub const MAX_LOG_LINES: usize = 10_000;

impl Node {
    pub(super) fn view(&self, mut status: AgentStatus) -> NodeResult<AgentView> {
        let held = self.agents.held()?.contains(&status.spec.name);
        // A stopped agent keeps its uid too.
        status.uid = status.uid.or(self.agents.uid_of(&status.spec));
        let card = self.agents.card(&status.spec.name).ok();
        Ok(AgentView { status, held, card })
    }

    /// Defines an agent and, unless asked not to or locked down, starts it.
    pub async fn agent_add(&self, by: Caller<'_>, mut body: AddAgent) -> NodeResult<AgentView> {
        body.spec.created_by = by.actor_text();
        let name = body.spec.name.clone();
        // Under a lockdown an agent is kept but not started; it starts with
        // the others after the unlock unless it was added `--no-start`.
        let start = body.start && !self.emergency.is_locked();
        let details = if body.spec.unconfined {
            "unconfined: the node's user, no namespaces, seccomp or Landlock"
        } else {
            ""
        };
        let card = super::cards::edited(crate::state::cards::Card::new(&name), body.card);
        let added = match card {
            Ok(card) => self.agents.add(body.spec, &card, !body.start).await,
            Err(e) => Err(e),
        };
        let result = match added {
            Ok(()) if start => match self.launch(&name).await {
                Ok(status) => Ok(status),
                Err(e) => {
                    // An agent that cannot start is not kept: the operator
                    // corrects it and adds it again.
                    if let Err(cleanup) = self.forget_agent(&name).await {
                        tracing::warn!(agent = %name, error = %cleanup, "cannot forget an agent that did not start");
                    }
                    Err(e)
                }
            },
            Ok(()) => self.agents.status(&name).await,
            Err(e) => Err(e),
        };
        let status = self
            .audited(by, "agent.add", &name, details, result)
            .await?;
        self.cards_changed();
        self.view(status)
    }

    pub async fn agent_list(&self) -> NodeResult<Vec<AgentView>> {
        let held = self.agents.held()?;
        Ok(self
            .agents
            .list()
            .await?
            .into_iter()
            .map(|mut status| {
                let held = held.contains(&status.spec.name);
                status.uid = status.uid.or(self.agents.uid_of(&status.spec));
                let card = self.agents.card(&status.spec.name).ok();
                AgentView { status, held, card }
            })
            .collect())
    }

    pub async fn agent_show(&self, name: &str) -> NodeResult<AgentView> {
        let status = self.agents.status(name).await?;
        self.view(status)
    }

    pub async fn agent_remove(&self, by: Caller<'_>, name: &str) -> NodeResult<Removed> {
        let result = self.forget_agent(name).await;
        self.audited(by, "agent.remove", name, "", result).await?;
        self.cards_changed();
        Ok(Removed {
            removed: name.to_owned(),
        })
    }

    /// Starts a stopped agent with a fresh credential; it is no longer held.
    pub async fn agent_start(&self, by: Caller<'_>, name: &str) -> NodeResult<AgentView> {
        let result = if self.emergency.is_locked() {
            Err(NodeError::LockedDown)
        } else {
            self.launch(name).await
        };
        let status = self.audited(by, "agent.start", name, "", result).await?;
        self.view(status)
    }

    /// Stops an agent; it stays stopped across node restarts until started.
    pub async fn agent_stop(&self, by: Caller<'_>, name: &str) -> NodeResult<AgentView> {
        let result = self.agents.stop(name).await;
        self.agent_gone(name);
        let status = self.audited(by, "agent.stop", name, "", result).await?;
        self.view(status)
    }

    /// Adds (`add`) or removes egress allowlist entries; running agents'
    /// proxies use the new list for their next connection.
    pub async fn agent_allow(
        &self,
        by: Caller<'_>,
        name: &str,
        entries: Vec<AllowEntry>,
        add: bool,
    ) -> NodeResult<AgentView> {
        let listed = entries
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ");
        let result = self.agents.change_allowlist(name, &entries, add).await;
        let action = if add { "agent.allow" } else { "agent.disallow" };
        let spec = self.audited(by, action, name, &listed, result).await?;
        self.egress_allowlist_changed(&spec);
        self.agent_show(name).await
    }

    pub async fn agent_logs(&self, name: &str, lines: usize) -> NodeResult<Vec<String>> {
        self.agents.logs(name, lines.min(MAX_LOG_LINES)).await
    }

    /// Starts the agents that are not held, at node start.
    pub async fn start_agents(&self) {
        if self.emergency.is_locked() {
            tracing::warn!("this node is locked down: agents stay stopped and tool calls are refused until `osmoda unlock`");
            return;
        }
        for (name, e) in self.launch_where(|_| true).await {
            tracing::warn!(agent = %name, error = %e, "cannot start an agent");
        }
    }
}

/// Records what happens to agents on their own (starts, exits, restarts,
/// memory kills) in the audit log, until the supervisor stops.
pub async fn audit_agent_events(
    mut events: mpsc::Receiver<AgentEvent>,
    audit: std::sync::Arc<crate::state::audit_log::AuditLog>,
) {
    while let Some(event) = events.recv().await {
        let (action, outcome, details) = match &event.kind {
            AgentEventKind::Started { pid, restarts } => (
                "agent.started",
                Outcome::Ok,
                format!("pid {pid}, restart {restarts}"),
            ),
            AgentEventKind::KilledOverMemory { .. } => (
                "agent.oom",
                Outcome::Failed("killed over its memory limit".into()),
                String::new(),
            ),
            AgentEventKind::GaveUp { reason } => {
                ("agent.gave-up", Outcome::Ok, format!("{reason:?}"))
            }
            AgentEventKind::Exited { status } => {
                ("agent.exited", Outcome::Ok, format!("{status:?}"))
            }
            _ => continue,
        };
        if let Err(e) = audit
            .record(Actor::Node, action, &event.name, outcome, &details)
            .await
        {
            tracing::warn!(error = %e, "cannot audit an agent event");
        }
    }
}
