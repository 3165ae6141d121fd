//! `config.toml`'s `[[agents]]`, brought into the store at every start
//! through the same methods the CLI uses, so validation and audit entries
//! are the same.
//!
//! The file owns the names it lists: a missing agent is added, one whose
//! spec differs is updated to the file's. Agents the file does not name
//! (added with the CLI, or removed from the file) are left as they are:
//! deleting one would delete its workspace, which an edit of the file
//! should not do silently; `osmoda agent rm` does it.

use osmoda_agentd::AgentSpec;

use super::{Caller, Node};
use crate::api::{AddAgent, AgentView, CardEdit};
use crate::error::{NodeError, NodeResult};

impl Node {
    /// Adds the agents of `wanted` that are missing and updates those whose
    /// spec changed; returns what failed, by agent. Called before
    /// `start_agents`, which starts them.
    pub async fn reconcile_agents(
        &self,
        wanted: Vec<(AgentSpec, CardEdit)>,
    ) -> Vec<(String, NodeError)> {
        let mut failed = Vec::new();
        for (spec, card) in wanted {
            let name = spec.name.clone();
            let result = match self.agents.spec(&name) {
                Ok(None) => {
                    let add = AddAgent {
                        spec,
                        start: true,
                        card,
                    };
                    self.agent_add(Caller::Operator, add).await.map(drop)
                }
                Ok(Some(stored)) if same_spec(&stored, &spec) => {
                    self.reconcile_card(&name, card).await
                }
                Ok(Some(_)) => match self
                    .agent_update(Caller::Operator, spec, "from config.toml")
                    .await
                {
                    Ok(_) => self.reconcile_card(&name, card).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                failed.push((name, e));
            }
        }
        failed
    }

    /// Brings an agent's card to what the file gives, when that changes it.
    async fn reconcile_card(&self, name: &str, edit: CardEdit) -> NodeResult<()> {
        let stored = self.agents.card(name)?;
        if super::cards::edited(stored.clone(), edit.clone())? == stored {
            return Ok(());
        }
        self.agent_edit(Caller::Operator, name, edit)
            .await
            .map(drop)
    }

    /// Replaces an agent's spec; a running agent is stopped and started
    /// again with it, a stopped one stays stopped.
    pub async fn agent_update(
        &self,
        by: Caller<'_>,
        mut spec: AgentSpec,
        details: &str,
    ) -> NodeResult<AgentView> {
        let name = spec.name.clone();
        let result = async {
            let stored = self
                .agents
                .spec(&name)?
                .ok_or_else(|| NodeError::not_found("agent", &name))?;
            // Who made the agent stays who made it.
            spec.created_by = stored.created_by;
            let was_up = self.agents.is_up(&name).await;
            let held = self.agents.held()?.contains(&name);
            if was_up {
                self.agents.stop(&name).await?;
                self.agent_gone(&name);
            }
            self.agents.replace(spec.clone()).await?;
            self.egress_allowlist_changed(&spec);
            if was_up && !self.emergency.is_locked() {
                return self.launch(&name).await;
            }
            if was_up && !held {
                // `stop` held it; the stop was ours, not the operator's.
                self.agents
                    .set_held(std::slice::from_ref(&name), false)
                    .await?;
            }
            self.agents.status(&name).await
        }
        .await;
        let status = self
            .audited(by, "agent.update", &name, details, result)
            .await?;
        self.view(status)
    }
}

/// Specs compared without `created_by`, which the file does not say.
fn same_spec(stored: &AgentSpec, wanted: &AgentSpec) -> bool {
    let mut wanted = wanted.clone();
    wanted.created_by = stored.created_by.clone();
    *stored == wanted
}
