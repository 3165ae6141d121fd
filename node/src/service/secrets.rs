//! Secrets for agents: the operator sets, grants, revokes, rotates and
//! removes them; the node releases each to the agents it is granted to,
//! when it starts them (`credentials_for`) or when one asks
//! (`secret_get`). Every operation is audited with the secret's name as
//! its target, never its value. Under a lockdown nothing is released, to
//! any agent or tool; the operator may still change the vault (rotating a
//! leaked value is what a lockdown is for).

use osmoda_crdt_state::{Actor, Outcome};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::{outcome_of, AgentCall, Caller, Node};
use crate::api::{NewSecret, Removed, SecretValue, SecretView};
use crate::error::{NodeError, NodeResult};
use crate::state::vault::{Released, VaultError};

impl Node {
    /// Stores a new secret, granted to `body.agents`. One that exists is
    /// refused: a new value is a rotation.
    pub async fn secret_set(&self, by: Caller<'_>, body: NewSecret) -> NodeResult<SecretView> {
        let result = self
            .vault
            .create(&body.name, body.value.expose().as_bytes(), &body.agents)
            .await;
        let details = match body.agents.as_slice() {
            [] => String::new(),
            agents => format!("granted to {}", agents.join(", ")),
        };
        self.audited(by, "secret.set", &body.name, &details, result)
            .await
    }

    pub fn secret_list(&self) -> NodeResult<Vec<SecretView>> {
        self.vault.list()
    }

    pub fn secret_show(&self, name: &str) -> NodeResult<SecretView> {
        self.vault.show(name)
    }

    /// Grants a secret to an agent, which sees it at its next start (or
    /// at once through `secret_get`).
    pub async fn secret_grant(
        &self,
        by: Caller<'_>,
        name: &str,
        agent: &str,
    ) -> NodeResult<SecretView> {
        let result = self.vault.grant(name, agent).await;
        let details = format!("agent {agent}");
        self.audited(by, "secret.grant", name, &details, result)
            .await
    }

    /// Takes a secret from an agent; a process already running keeps what
    /// it read, so rotate the value too when it must not.
    pub async fn secret_revoke(
        &self,
        by: Caller<'_>,
        name: &str,
        agent: &str,
    ) -> NodeResult<SecretView> {
        let result = self.vault.revoke(name, agent).await;
        let details = format!("agent {agent}");
        self.audited(by, "secret.revoke", name, &details, result)
            .await
    }

    /// A new value under the same name, one version up; agents get it at
    /// their next start or `secret_get`.
    pub async fn secret_rotate(
        &self,
        by: Caller<'_>,
        name: &str,
        value: &SecretValue,
    ) -> NodeResult<SecretView> {
        let result = self.vault.rotate(name, value.expose().as_bytes()).await;
        let details = match &result {
            Ok(view) => format!("version {}", view.version),
            Err(_) => String::new(),
        };
        self.audited(by, "secret.rotate", name, &details, result)
            .await
    }

    pub async fn secret_rm(&self, by: Caller<'_>, name: &str) -> NodeResult<Removed> {
        let result = self.vault.remove(name).await;
        self.audited(by, "secret.rm", name, "", result).await?;
        Ok(Removed {
            removed: name.to_owned(),
        })
    }

    /// The secrets granted to `agent`, opened, for the node to hand it as
    /// it starts. Audited as one `secret.release` entry naming them (none
    /// when nothing is granted); refused while the node is locked down.
    pub async fn credentials_for(
        &self,
        agent: &str,
    ) -> NodeResult<Vec<(String, Zeroizing<Vec<u8>>)>> {
        let result = if self.emergency.is_locked() {
            Err(NodeError::LockedDown)
        } else {
            self.vault.release_all(agent)
        };
        let (outcome, details) = match &result {
            Ok(released) if released.is_empty() => return Ok(Vec::new()),
            Ok(released) => (Outcome::Ok, names(released)),
            Err(e) => (outcome_of(e), String::new()),
        };
        self.audit
            .record(Actor::Node, "secret.release", agent, outcome, &details)
            .await
            .map_err(|e| NodeError::Audit(e.to_string()))?;
        Ok(result?.into_iter().map(|r| (r.name, r.value)).collect())
    }

    /// The `secret_get` tool: one secret granted to the calling agent, as
    /// `{name, version, value}`. Not granted and not there are the same
    /// refusal; nothing is released under a lockdown.
    pub async fn secret_get(&self, call: &AgentCall, name: &str) -> NodeResult<Value> {
        let result = if self.emergency.is_locked() {
            Err(NodeError::LockedDown)
        } else {
            self.vault.release_one(&call.who.name, name)
        };
        let details = match &result {
            Ok(r) => format!("version {}", r.version),
            Err(_) => String::new(),
        };
        let released = self
            .audited(Caller::Agent(call), "secret.get", name, &details, result)
            .await?;
        let text = std::str::from_utf8(&released.value)
            .map_err(|_| VaultError::NotText(released.name.clone()))?;
        Ok(json!({
            "name": released.name,
            "version": released.version,
            "value": text,
        }))
    }
}

fn names(released: &[Released]) -> String {
    released
        .iter()
        .map(|r| format!("{} v{}", r.name, r.version))
        .collect::<Vec<_>>()
        .join(", ")
}
