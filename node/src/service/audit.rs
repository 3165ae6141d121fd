//! Reading and verifying audit logs: this node's, and other members' logs
//! fetched from their owner or from any member that holds a verified copy.

use libp2p::PeerId;
use osmoda_crdt_state::Outcome;

use super::{Caller, Node};
use crate::api::{
    AuditLogView, ForkView, HeadView, LogQuery, RecordBody, Recorded, VerifyBody, VerifyReport,
};
use crate::error::{NodeError, NodeResult};
use crate::runtime::event_loop::report_forks;
use crate::state::audit_log;
use crate::state::remote;

/// Actions the CLI may record on its own: what it does without the node
/// (folder-level fleet administration). Anything else is refused, so the
/// control socket cannot be used to write arbitrary actions into the log.
pub const CLI_ACTIONS: [&str; 4] = ["fleet.create", "fleet.invite", "fleet.join", "fleet.revoke"];

impl Node {
    /// Entries `start..start+limit` of this node's log, or of another
    /// node's: fetched from its owner or a relay, each entry verified
    /// against the owner's checkpoint, with where they came from and how
    /// that checkpoint compares with the fleet's audit heads.
    pub async fn audit_log(&self, query: LogQuery) -> NodeResult<AuditLogView> {
        let mut view = match self.other_node(query.node.as_deref()).await? {
            Some(peer) => {
                let (view, forks) =
                    remote::read_remote(&self.fabric, &self.heads, peer, query.start, query.limit)
                        .await?;
                report_forks(self, forks);
                view
            }
            None => AuditLogView {
                entries: audit_log::read_entries(self.audit.store(), query.start, query.limit)?,
                source: None,
            },
        };
        for entry in &mut view.entries {
            entry.actor_name = entry
                .actor
                .strip_prefix("peer:")
                .and_then(|id| id.parse::<PeerId>().ok())
                .and_then(|peer| self.name_of(&peer));
        }
        Ok(view)
    }

    /// Checks this node's stored log, or fetches another node's whole log
    /// and checks it against the checkpoint its owner signed.
    pub async fn audit_verify(&self, body: VerifyBody) -> NodeResult<VerifyReport> {
        if let Some(peer) = self.other_node(body.node.as_deref()).await? {
            let (report, forks) =
                remote::verify_remote(&self.fabric, &self.mirrors, &self.heads, peer).await?;
            report_forks(self, forks);
            return Ok(report);
        }
        let owner = self.signer.cert().node;
        let store = self.audit.store().clone();
        // Reads and hashes the whole log: off the async threads.
        tokio::task::spawn_blocking(move || audit_log::verify_stored(&store, &owner))
            .await
            .map_err(NodeError::internal)?
    }

    pub fn audit_heads(&self) -> Vec<HeadView> {
        let mut heads = self.heads.heads();
        for head in &mut heads {
            head.name = head
                .node_id
                .parse::<PeerId>()
                .ok()
                .and_then(|p| self.name_of(&p));
        }
        heads
    }

    pub fn audit_forks(&self) -> Vec<ForkView> {
        self.heads.forks()
    }

    /// Records an action the CLI took on its own while the node holds the
    /// store (an invite signed with the root key).
    pub async fn audit_record(&self, by: Caller<'_>, body: RecordBody) -> NodeResult<Recorded> {
        if !CLI_ACTIONS.contains(&body.action.as_str()) {
            return Err(NodeError::Invalid(format!(
                "{:?} is not an action the CLI records (one of {})",
                body.action,
                CLI_ACTIONS.join(", ")
            )));
        }
        let actor = by.actor();
        let seq = self
            .audit
            .record(
                actor,
                &body.action,
                &body.target,
                Outcome::Ok,
                &body.details,
            )
            .await
            .map_err(|e| NodeError::Audit(e.to_string()))?;
        Ok(Recorded { seq })
    }
}
