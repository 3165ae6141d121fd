//! Emergency commands: STOP, FREEZE, RESUME, LOCKDOWN and UNLOCK, on this
//! node (its operator) or on the whole fleet (signed by an admin, gossiped
//! on `osmoda/emergency/1`, checked and applied by every member).
//!
//! Commands are applied one at a time (`Node::emergency_order`): a fleet
//! command is checked against its flag's register, recorded and acted on
//! under that lock, so two commands that arrive together, in any order,
//! leave the newer one in force. Fleet commands from elsewhere (gossip,
//! neighbours' registers) are `emergency_intake.rs`'s.

use osmoda_agentd::RestartPolicy;
use osmoda_fabric::proto::{hex, parse_hex_bytes, EmergencyCommand, EmergencyKind, Role};

use crate::runtime::topics;
use crate::state::emergency::Arrival;

use super::emergency_intake::{Received, Via};
use super::{now_ms, Caller, Node};
use crate::api::{EmergencyOutcome, EmergencyView};
use crate::error::{NodeError, NodeResult};

fn parse_kind(kind: &str) -> NodeResult<EmergencyKind> {
    kind.parse()
        .map_err(|e: osmoda_fabric::proto::EmergencyError| NodeError::Invalid(e.to_string()))
}

impl Node {
    pub fn emergency_state(&self) -> EmergencyView {
        let state = self.emergency.state();
        let (limit_mode, limit_reason) = self.agents.limit_mode();
        EmergencyView {
            lockdown: state.lockdown,
            frozen: state.frozen,
            last_fleet_kind: state.last_fleet_kind,
            last_fleet_issuer: state.last_fleet_issuer,
            last_fleet_issued_ms: state.last_fleet_command.map(|(t, _)| t),
            refused_commands: self.refusals.total(),
            limit_mode,
            limit_reason,
        }
    }

    /// `osmoda stop|freeze|resume|lockdown|unlock [--fleet]`.
    pub async fn emergency(
        &self,
        by: Caller<'_>,
        kind: &str,
        fleet: bool,
    ) -> NodeResult<EmergencyOutcome> {
        let kind = parse_kind(kind)?;
        if !matches!(by, Caller::Operator) {
            return Err(NodeError::Forbidden(
                "emergency commands are the operator's".into(),
            ));
        }
        if fleet {
            return self.emergency_fleet(by, kind).await;
        }
        if kind == EmergencyKind::Unlock {
            self.may_unlock()?;
        }
        let result = {
            let _order = self.emergency_order.lock().await;
            let was_locked = self.emergency.is_locked();
            match self.emergency.set_flags(kind).await {
                Ok(()) => self.act(kind, was_locked).await,
                Err(e) => Err(e),
            }
        };
        let action = format!("emergency.{}", kind.as_str());
        let here = self.audited(by, &action, "node", "", result).await?;
        Ok(EmergencyOutcome {
            kind: kind.as_str().into(),
            scope: "node".into(),
            here,
            published: None,
            publish_error: None,
            command: None,
        })
    }

    /// Signs a fleet command, checks that members will take it, publishes
    /// it and applies it here.
    async fn emergency_fleet(
        &self,
        by: Caller<'_>,
        kind: EmergencyKind,
    ) -> NodeResult<EmergencyOutcome> {
        if self.signer.cert().role != Role::Admin {
            let action = format!("emergency.{}", kind.as_str());
            let refused = Err(NodeError::Forbidden(format!(
                "fleet commands need an admin's certificate and this node is a {}; every member would ignore it. Run it on an admin node, or drop --fleet",
                self.signer.cert().role
            )));
            return self.audited(by, &action, "fleet", "", refused).await;
        }
        let key = ed25519_dalek::SigningKey::from_bytes(&self.signer.identity);
        // Milliseconds: two commands within one second must still order
        // by time, not by their random nonces.
        let cmd = EmergencyCommand::sign(
            kind,
            now_ms(),
            self.signer.cert(),
            &key,
            &mut rand::rngs::OsRng,
        )
        .map_err(NodeError::internal)?;
        self.check_command(&cmd).map_err(NodeError::Invalid)?;
        let bytes = cmd.encode();
        // Published first, so the fleet hears it even if applying here is
        // slow (a stop waits for every agent's grace period).
        let published = self.fabric.publish(topics::EMERGENCY, bytes.clone()).await;
        if kind == EmergencyKind::Lockdown {
            self.approvals.expire_all();
        }
        let here = match self.receive_emergency(&bytes, Via::Operator).await {
            Received::Applied(_) => "applied".to_string(),
            Received::Ignored(reason) => format!("ignored: {reason}"),
        };
        Ok(EmergencyOutcome {
            kind: kind.as_str().into(),
            scope: "fleet".into(),
            here,
            published: Some(published.is_ok()),
            publish_error: published.err().map(|e| e.to_string()),
            command: Some(hex(&bytes)),
        })
    }

    /// Sends an already signed command (hex) to the fleet again, for an
    /// operator carrying it across a partition. A command no member would
    /// take (malformed, not an admin's, another fleet's, a revoked
    /// issuer's, not newer than this node's register for its flag, or
    /// older than `MAX_NEWS_AGE_MS`) is refused here, before anything is
    /// published.
    pub async fn relay(&self, by: Caller<'_>, command: &str) -> NodeResult<EmergencyOutcome> {
        let checked = parse_hex_bytes(command.trim())
            .ok_or_else(|| NodeError::Invalid("the command is not hex".into()))
            .and_then(|bytes| {
                let cmd = EmergencyCommand::decode(&bytes)
                    .map_err(|e| NodeError::Invalid(format!("the command is malformed: {e}")))?;
                self.check_command(&cmd).map_err(NodeError::Invalid)?;
                self.emergency
                    .admit(&cmd, now_ms(), Arrival::News)
                    .map_err(|reason| {
                        NodeError::Invalid(format!("the fleet would ignore it: {reason}"))
                    })?;
                Ok((cmd, bytes))
            });
        let target = match &checked {
            Ok((cmd, _)) => cmd.kind.as_str().to_string(),
            Err(_) => "?".into(),
        };
        let (cmd, bytes) = self
            .audited(by, "emergency.relay", &target, "", checked)
            .await?;
        let published = self.fabric.publish(topics::EMERGENCY, bytes.clone()).await;
        let here = match self.receive_emergency(&bytes, Via::Operator).await {
            Received::Applied(_) => "applied".to_string(),
            Received::Ignored(reason) => format!("ignored: {reason}"),
        };
        Ok(EmergencyOutcome {
            kind: cmd.kind.as_str().into(),
            scope: "fleet".into(),
            here,
            published: Some(published.is_ok()),
            publish_error: published.err().map(|e| e.to_string()),
            command: None,
        })
    }

    /// Whether this node may lift a lockdown on its own: an admin member or
    /// the holder of the fleet root key.
    fn may_unlock(&self) -> NodeResult<()> {
        if self.signer.cert().role == Role::Admin || self.info.holds_root_key {
            return Ok(());
        }
        Err(NodeError::Forbidden(
            "lifting a lockdown needs an admin: run `osmoda unlock --fleet` on an admin node"
                .into(),
        ))
    }

    /// Does what `kind` says to this node's agents. Called with the
    /// emergency order held, after the new flags are stored; `was_locked`
    /// is whether a lockdown was in force before.
    pub(super) async fn act(&self, kind: EmergencyKind, was_locked: bool) -> NodeResult<String> {
        Ok(match kind {
            EmergencyKind::Stop => {
                let names: Vec<String> = self.agents.specs()?.into_iter().map(|s| s.name).collect();
                self.agents.set_held(&names, true).await?;
                let stopped = self.agents.stop_all().await?;
                self.all_agents_gone();
                format!("{stopped} agent(s) stopped; they stay stopped until started")
            }
            EmergencyKind::Freeze => format!("{} agent(s) frozen", self.agents.freeze_all().await?),
            EmergencyKind::Resume => {
                format!("{} agent(s) resumed", self.agents.resume_all().await?)
            }
            EmergencyKind::Lockdown => {
                self.approvals.expire_all();
                let killed = self.agents.kill_all().await?;
                // Their networks go with them: no proxy listens for a
                // locked-down node's agents.
                self.all_agents_gone();
                format!(
                    "{killed} agent(s) killed; egress, vault and tool calls refused until unlock"
                )
            }
            EmergencyKind::Unlock if !was_locked => "not locked down; nothing to lift".to_string(),
            EmergencyKind::Unlock => self.after_unlock().await?,
        })
    }

    /// Agents whose restart policy is `always` start again; the others stay
    /// stopped (held) until an operator starts them, and `status` says so.
    async fn after_unlock(&self) -> NodeResult<String> {
        let held = self.agents.held()?;
        let (always, other): (Vec<_>, Vec<_>) = self
            .agents
            .specs()?
            .into_iter()
            .filter(|s| !held.contains(&s.name))
            .partition(|s| s.restart == RestartPolicy::Always);
        let stay: Vec<String> = other.into_iter().map(|s| s.name).collect();
        self.agents.set_held(&stay, true).await?;
        let failed = self
            .launch_where(|s| s.restart == RestartPolicy::Always)
            .await;
        for (name, e) in &failed {
            tracing::warn!(agent = %name, error = %e, "cannot start an agent after unlock");
        }
        let started = always.len() - failed.len();
        let mut text = format!("lockdown lifted; {started} agent(s) with restart=always started");
        if !stay.is_empty() {
            text.push_str(&format!(
                "; {} stay stopped ({}): start them with `osmoda agent start NAME`",
                stay.len(),
                stay.join(", ")
            ));
        }
        if !failed.is_empty() {
            text.push_str(&format!("; {} failed to start", failed.len()));
        }
        Ok(text)
    }
}
