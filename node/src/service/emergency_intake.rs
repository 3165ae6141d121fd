//! Fleet emergency commands arriving from elsewhere: gossip (checked by
//! the topic's validator before any member forwards them), a neighbour's
//! registers in anti-entropy, or the operator (one made or relayed here).
//!
//! A command is applied when it is genuine (an admin of this fleet signed
//! it, not revoked) and newer than its flag's register; news must also be
//! recent (`MAX_NEWS_AGE_MS`). What peers send that is not taken is counted
//! and audited at a bounded rate (`state/refusals.rs`), never per message.

use std::sync::Arc;
use std::time::Instant;

use libp2p::PeerId;
use osmoda_crdt_state::{Actor, Outcome};
use osmoda_fabric::proto::{EmergencyCommand, EmergencyKind};
use osmoda_fabric::Verdict;

use super::{now_ms, Node};
use crate::replication::anti_entropy::Registers;
use crate::state::emergency::Arrival;
use crate::state::refusals::Summary;

/// Register exchanges whose commands are checked at once.
pub const REGISTER_INTAKE: usize = 2;

/// What happened to a fleet command that arrived.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    Applied(EmergencyKind),
    Ignored(String),
}

/// How a fleet command reached this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Made or relayed here by the operator.
    Operator,
    /// Gossip: the member that published it (its envelope's signer) and
    /// the neighbour that relayed it here.
    Gossip { origin: PeerId, source: PeerId },
    /// A neighbour's register, in anti-entropy.
    Register(PeerId),
}

impl Via {
    fn arrival(self) -> Arrival {
        match self {
            Via::Register(_) => Arrival::Register,
            Via::Operator | Via::Gossip { .. } => Arrival::News,
        }
    }

    /// Who answers for a command not taken: the publisher, or the
    /// neighbour whose register held it.
    fn peer(self) -> Option<PeerId> {
        match self {
            Via::Operator => None,
            Via::Gossip { origin, .. } => Some(origin),
            Via::Register(peer) => Some(peer),
        }
    }

    fn details(self) -> String {
        match self {
            Via::Operator => String::new(),
            Via::Gossip { origin, source } if origin == source => {
                format!("; published and relayed by {origin}")
            }
            Via::Gossip { origin, source } => {
                format!("; published by {origin}, relayed by {source}")
            }
            Via::Register(peer) => format!("; from the register of {peer}"),
        }
    }
}

impl Node {
    /// Whether every member would accept `cmd` as genuine: an admin of this
    /// fleet, not revoked, signature and certificate valid now.
    pub(crate) fn check_command(&self, cmd: &EmergencyCommand) -> Result<(), String> {
        cmd.verify(&self.membership.fleet(), super::unix_now())
            .map_err(|e| e.to_string())?;
        if self.membership.is_revoked(&cmd.issuer.node) {
            return Err("its issuer is revoked".into());
        }
        Ok(())
    }

    /// The emergency topic's validator: a command is forwarded only when
    /// it is genuine and news to this node. Junk, forgeries and another
    /// fleet's commands are rejected (they cost the relay its score);
    /// replays, stale news and revoked issuers (the relay may not know the
    /// revocation yet) are ignored. Either way it is counted, not audited
    /// per message.
    pub fn check_news(&self, bytes: &[u8], origin: PeerId) -> Result<EmergencyCommand, Verdict> {
        let judged = EmergencyCommand::decode(bytes)
            .map_err(|e| (Verdict::Reject, format!("malformed: {e}")))
            .and_then(|cmd| {
                cmd.verify(&self.membership.fleet(), super::unix_now())
                    .map_err(|e| (Verdict::Reject, e.to_string()))?;
                if self.membership.is_revoked(&cmd.issuer.node) {
                    return Err((Verdict::Ignore, "its issuer is revoked".into()));
                }
                self.emergency
                    .admit(&cmd, now_ms(), Arrival::News)
                    .map_err(|reason| (Verdict::Ignore, reason))?;
                Ok(cmd)
            });
        judged.map_err(|(verdict, reason)| {
            tracing::debug!(%origin, ?verdict, %reason, "an emergency command not forwarded");
            self.refused(origin, &reason);
            verdict
        })
    }

    /// Counts a command from `peer` not taken, and audits the summary
    /// when one is due.
    fn refused(&self, peer: PeerId, reason: &str) {
        if let Some(summary) = self.refusals.count(peer, reason, Instant::now()) {
            self.audit_refusals(summary);
        }
    }

    /// Audits the counts of peers that went quiet since their last
    /// summary; the event loop calls it every `SUMMARY_EVERY`.
    pub fn audit_refusals_due(&self) {
        for summary in self.refusals.due(Instant::now()) {
            self.audit_refusals(summary);
        }
    }

    fn audit_refusals(&self, summary: Summary) {
        let actor = self
            .membership
            .peer(&summary.peer)
            .map(|record| Actor::Peer(record.cert.node))
            .unwrap_or(Actor::Node);
        let details = format!(
            "{} emergency command(s) from {} not taken; the latest: {}",
            summary.count, summary.peer, summary.reason
        );
        let (audit, target) = (self.audit.clone(), summary.peer.to_string());
        tokio::spawn(async move {
            let denied = Outcome::Denied;
            let written = audit.record(actor, "emergency.refused", &target, denied, &details);
            if let Err(e) = written.await {
                tracing::warn!(error = %e, "cannot audit refused emergency commands");
            }
        });
    }

    /// A neighbour's registers, from anti-entropy: each command newer than
    /// ours is checked and applied as if it came by gossip, off the
    /// caller. While [`REGISTER_INTAKE`] exchanges are being checked, more
    /// are dropped; the next exchange brings them again.
    pub fn take_registers(self: &Arc<Self>, peer: PeerId, commands: Vec<Vec<u8>>) {
        let Ok(permit) = self.register_intake.clone().try_acquire_owned() else {
            return;
        };
        let node = self.clone();
        tokio::spawn(async move {
            for bytes in commands {
                match EmergencyCommand::decode(&bytes) {
                    // Only a newer one is worth its signatures.
                    Ok(cmd) if !node.emergency.is_newer(&cmd) => continue,
                    Ok(_) => {}
                    Err(e) => {
                        node.refused(peer, &format!("malformed register: {e}"));
                        continue;
                    }
                }
                node.receive_emergency(&bytes, Via::Register(peer)).await;
            }
            drop(permit);
        });
    }

    /// A fleet command (from gossip, a neighbour's register, or made
    /// here): checked, and applied if an admin signed it and it is newer
    /// than its flag's register (and, as news, recent). Applied commands
    /// are audited with the issuer and the way they came; the operator's
    /// ignored ones too, peers' ones are counted (`refused`).
    pub async fn receive_emergency(&self, bytes: &[u8], via: Via) -> Received {
        let _order = self.emergency_order.lock().await;
        let verdict = match EmergencyCommand::decode(bytes) {
            Err(e) => Err((None, format!("malformed: {e}"))),
            Ok(cmd) => match self.check_command(&cmd) {
                Err(reason) => Err((Some(cmd), reason)),
                Ok(()) => match self.emergency.admit(&cmd, now_ms(), via.arrival()) {
                    Ok(()) => Ok(cmd),
                    Err(reason) => Err((Some(cmd), reason)),
                },
            },
        };
        let cmd = match verdict {
            Ok(cmd) => cmd,
            Err((cmd, reason)) => {
                self.not_taken(cmd.as_ref(), &reason, via).await;
                return Received::Ignored(reason);
            }
        };
        let was_locked = self.emergency.is_locked();
        let outcome = match self.emergency.record_fleet(&cmd).await {
            Ok(()) => self.act(cmd.kind, was_locked).await,
            Err(e) => Err(e),
        };
        let (result, details) = match outcome {
            Ok(d) => (Outcome::Ok, format!("{d}{}", via.details())),
            Err(e) => (Outcome::Failed(e.to_string()), via.details()),
        };
        tracing::info!(kind = cmd.kind.as_str(), issuer = %cmd.issuer.name, ?via, "fleet emergency command applied");
        let action = format!("emergency.{}", cmd.kind.as_str());
        let actor = Actor::Peer(cmd.issuer.node);
        if let Err(e) = self
            .audit
            .record(actor, &action, "fleet", result, &details)
            .await
        {
            tracing::warn!(error = %e, "cannot audit an emergency command");
        }
        Received::Applied(cmd.kind)
    }

    /// A command not taken: the operator's is audited with the reason, a
    /// peer's counted; an older register entry is no news at all.
    async fn not_taken(&self, cmd: Option<&EmergencyCommand>, reason: &str, via: Via) {
        tracing::info!(%reason, ?via, "fleet emergency command ignored");
        if let Some(peer) = via.peer() {
            if !(matches!(via, Via::Register(_)) && reason.starts_with("replay")) {
                self.refused(peer, reason);
            }
            return;
        }
        let (actor, action) = match cmd {
            Some(c) => (
                Actor::Peer(c.issuer.node),
                format!("emergency.{}", c.kind.as_str()),
            ),
            None => (Actor::Node, "emergency.unknown".into()),
        };
        let details = format!("ignored: {reason}");
        if let Err(e) = self
            .audit
            .record(actor, &action, "fleet", Outcome::Denied, &details)
            .await
        {
            tracing::warn!(error = %e, "cannot audit an ignored emergency command");
        }
    }
}

/// The node's registers, for anti-entropy.
impl Registers for Arc<Node> {
    fn held(&self) -> Vec<Vec<u8>> {
        self.emergency.registers()
    }

    fn digest(&self) -> [u8; 16] {
        self.emergency.digest()
    }

    fn take(&self, peer: PeerId, commands: Vec<Vec<u8>>) {
        self.take_registers(peer, commands);
    }
}
