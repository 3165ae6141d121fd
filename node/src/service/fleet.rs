//! Fleet membership as the running node sees it: revocations made here or
//! received from peers.

use libp2p::PeerId;
use osmoda_crdt_state::Actor;
use osmoda_fabric::proto::{parse_hex_bytes, Revocation};

use super::{Caller, Node};
use crate::api::{RevokeBody, Revoked};
use crate::error::{NodeError, NodeResult};

impl Node {
    /// Applies a revocation signed with the root key (`osmoda fleet
    /// revoke`): the fabric cuts the node off and spreads the word.
    pub async fn revoke(&self, by: Caller<'_>, body: RevokeBody) -> NodeResult<Revoked> {
        let bytes = parse_hex_bytes(body.revocation.trim())
            .ok_or_else(|| NodeError::Invalid("the revocation is not hex".into()))?;
        let rev = Revocation::decode(&bytes)
            .map_err(|e| NodeError::Invalid(format!("the revocation is malformed: {e}")))?;
        let target = osmoda_fabric::peer_id_of(&rev.node)
            .map(|p| p.to_string())
            .unwrap_or_default();
        let result = self.fabric.revoke(rev).await.map_err(Into::into);
        let new = self
            .audited(by, "fleet.revoke", &target, "", result)
            .await?;
        Ok(Revoked { new })
    }

    /// A new revocation the fabric verified and applied: stored, and, when
    /// a peer brought it, audited.
    pub(crate) async fn on_revoked(&self, revocation: &Revocation, from: Option<PeerId>) {
        if let Some(data) = &self.data {
            let all = self.membership.revocations();
            let data = data.clone();
            let stored = tokio::task::spawn_blocking(move || data.write_revocations(&all)).await;
            match stored {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot store revocations"),
                Err(e) => tracing::warn!(error = %e, "cannot store revocations"),
            }
        }
        // Revocations made here are audited by `revoke`.
        if let Some(peer) = from {
            let actor = osmoda_fabric::node_key_of(&peer)
                .map(Actor::Peer)
                .unwrap_or(Actor::Node);
            let target = osmoda_fabric::peer_id_of(&revocation.node)
                .map(|p| p.to_string())
                .unwrap_or_default();
            self.audit_later(
                actor,
                "fleet.revocation",
                target,
                "received from a peer".into(),
            );
        }
    }
}
