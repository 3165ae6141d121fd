//! Emergency commands on this node: `stop`, `freeze`, `resume`, `lockdown`,
//! `unlock`, given by the local operator or by an admin for the whole fleet
//! (signed, over `osmoda/emergency/1`).
//!
//! The lockdown flag and the order of the last fleet command applied are
//! stored durably: a lockdown survives a restart (agents are not started),
//! and a replayed fleet command is recognised after one too.

use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use osmoda_crdt_state::{Actor, Outcome};
use osmoda_fabric::proto::{
    admit, hex, parse_hex, Admission, EmergencyCommand, EmergencyKind, FleetCert, Role,
};
use osmoda_fabric::{topics, FabricHandle, Membership};
use osmoda_store::Store;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::agents::Agents;
use crate::audit::AuditLog;

const TABLE: &str = "emergency";
const KEY: &[u8] = b"state";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EmergencyState {
    pub lockdown: bool,
    pub frozen: bool,
    /// The last fleet command applied: its time and nonce (hex).
    pub last_fleet_command: Option<(u64, String)>,
    /// What it was and who signed it, for `status`.
    pub last_fleet_kind: Option<String>,
    pub last_fleet_issuer: Option<String>,
}

pub struct Emergency {
    store: Store,
    state: Mutex<EmergencyState>,
}

/// What happened to a fleet command that arrived.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    Applied(EmergencyKind),
    Ignored(String),
}

impl Emergency {
    pub fn open(store: Store) -> Result<Self> {
        let state = match store.get(TABLE, KEY)? {
            Some(bytes) => {
                serde_json::from_slice(&bytes).context("the stored emergency state is damaged")?
            }
            None => EmergencyState::default(),
        };
        Ok(Self {
            store,
            state: Mutex::new(state),
        })
    }

    pub fn state(&self) -> EmergencyState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn is_locked(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .lockdown
    }

    fn save(&self, state: &EmergencyState) -> Result<()> {
        self.store.put(TABLE, KEY, &serde_json::to_vec(state)?)?;
        Ok(())
    }

    /// Does what `kind` says to this node's agents; stores the new state
    /// before acting, so a crash halfway leaves the stricter state.
    pub async fn apply(&self, kind: EmergencyKind, agents: &Agents) -> Result<String> {
        let mut next = self.state();
        match kind {
            EmergencyKind::Lockdown => next.lockdown = true,
            EmergencyKind::Unlock => next.lockdown = false,
            EmergencyKind::Freeze => next.frozen = true,
            EmergencyKind::Resume | EmergencyKind::Stop => next.frozen = false,
        }
        self.save(&next)?;
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = next;
        Ok(match kind {
            EmergencyKind::Stop => format!("{} agent(s) stopped", agents.stop_all().await?),
            EmergencyKind::Freeze => format!("{} agent(s) frozen", agents.freeze_all().await?),
            EmergencyKind::Resume => format!("{} agent(s) resumed", agents.resume_all().await?),
            EmergencyKind::Lockdown => format!(
                "{} agent(s) killed; tool calls refused until unlock",
                agents.kill_all().await?
            ),
            EmergencyKind::Unlock => {
                "lockdown lifted; start agents with `osmoda agent start`".to_string()
            }
        })
    }

    /// Signs a fleet command with this node's identity.
    pub fn sign(
        kind: EmergencyKind,
        cert: &FleetCert,
        identity: &[u8; 32],
    ) -> Result<EmergencyCommand> {
        let key = ed25519_dalek::SigningKey::from_bytes(identity);
        // Milliseconds: two commands within one second must still order
        // by time, not by their random nonces.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Ok(EmergencyCommand::sign(
            kind,
            now,
            cert.clone(),
            &key,
            &mut rand::rngs::OsRng,
        )?)
    }

    /// Checks a fleet command and applies it when an admin signed it and it
    /// is newer than the last one applied. Either way the outcome is audited.
    pub async fn receive(
        &self,
        bytes: &[u8],
        membership: &Membership,
        agents: &Agents,
        audit: &AuditLog,
    ) -> Received {
        let now = crate::fleet::unix_now();
        let verdict = match EmergencyCommand::decode(bytes) {
            Err(e) => Err((None, format!("malformed: {e}"))),
            Ok(cmd) => match cmd.verify(&membership.fleet(), now) {
                Err(e) => Err((Some(cmd), e.to_string())),
                Ok(()) if membership.is_revoked(&cmd.issuer.node) => {
                    Err((Some(cmd), "the issuer is revoked".into()))
                }
                Ok(()) => {
                    let last = self
                        .state()
                        .last_fleet_command
                        .and_then(|(t, n)| Some((t, parse_hex::<16>(&n)?)));
                    match admit(last, &cmd, now.saturating_mul(1000)) {
                        Admission::Apply => Ok(cmd),
                        Admission::Replay => Err((
                            Some(cmd),
                            "replay: not newer than the last command applied".into(),
                        )),
                        Admission::FromTheFuture => Err((Some(cmd), "dated in the future".into())),
                    }
                }
            },
        };
        match verdict {
            Ok(cmd) => {
                let mut state = self.state();
                state.last_fleet_command = Some((cmd.issued_at_ms, hex(&cmd.nonce)));
                state.last_fleet_kind = Some(cmd.kind.as_str().into());
                state.last_fleet_issuer =
                    osmoda_fabric::peer_id_of(&cmd.issuer.node).map(|p| p.to_string());
                let saved = self.save(&state);
                *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
                let outcome = match saved {
                    Ok(()) => self.apply(cmd.kind, agents).await,
                    Err(e) => Err(e),
                };
                let (result, details) = match &outcome {
                    Ok(d) => (Outcome::Ok, d.clone()),
                    Err(e) => (Outcome::Failed(format!("{e:#}")), String::new()),
                };
                info!(kind = cmd.kind.as_str(), issuer = %cmd.issuer.name, "fleet emergency command applied");
                if let Err(e) = audit
                    .record(
                        Actor::Peer(cmd.issuer.node),
                        &format!("emergency.{}", cmd.kind.as_str()),
                        "fleet",
                        result,
                        &details,
                    )
                    .await
                {
                    warn!(error = %e, "cannot audit an emergency command");
                }
                Received::Applied(cmd.kind)
            }
            Err((cmd, reason)) => {
                warn!(%reason, "fleet emergency command ignored");
                let (actor, action) = match &cmd {
                    Some(c) => (
                        Actor::Peer(c.issuer.node),
                        format!("emergency.{}", c.kind.as_str()),
                    ),
                    None => (Actor::Node, "emergency.unknown".into()),
                };
                let _ = audit
                    .record(
                        actor,
                        &action,
                        "fleet",
                        Outcome::Denied,
                        &format!("ignored: {reason}"),
                    )
                    .await;
                Received::Ignored(reason)
            }
        }
    }
}

/// Publishes a signed command to the fleet.
pub async fn publish(fabric: &FabricHandle, cmd: &EmergencyCommand) -> Result<()> {
    fabric
        .publish(topics::EMERGENCY, cmd.encode())
        .await
        .context("cannot publish the command (no peer connected?)")
}

/// Whether this node may lift a lockdown on its own: an admin member or
/// the holder of the fleet root key.
pub fn may_unlock(cert: &FleetCert, holds_root: bool) -> Result<()> {
    if cert.role == Role::Admin || holds_root {
        return Ok(());
    }
    bail!("lifting a lockdown needs an admin: run `osmoda unlock --fleet` on an admin node")
}
