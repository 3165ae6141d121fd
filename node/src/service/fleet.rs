//! Fleet membership as the running node sees it: revocations made here or
//! received from peers.

use std::sync::Weak;

use libp2p::PeerId;
use osmoda_crdt_state::Actor;
use osmoda_fabric::proto::{parse_hex_bytes, EnrollToken, Revocation};
use osmoda_fabric::Membership;
use tokio::sync::watch;

use super::{Caller, Node};
use crate::api::{InviteBody, InviteView, RevokeBody, Revoked};
use crate::datadir::DataDir;
use crate::error::{NodeError, NodeResult};
use crate::state::invites::Invited;

/// Longest an enrollment token may stay usable: a week.
pub const MAX_INVITE_TTL_SECS: u64 = 7 * 24 * 3600;
/// How long an enrolled admin's certificate lasts unless the invite says:
/// as long as the root's direct token gives by default.
pub const ADMIN_VALIDITY_SECS: u64 = 365 * 24 * 3600;

impl Node {
    /// Makes a one-time enrollment token that this admin node redeems
    /// (`osmoda fleet invite`): recorded unused, audited, never logged.
    pub async fn invite(&self, by: Caller<'_>, body: InviteBody) -> NodeResult<InviteView> {
        let result = self.make_invite(&body).await;
        let details = match body.role.as_deref() {
            Some("admin") => "enrollment token, admin",
            _ => "enrollment token",
        };
        self.audited(by, "fleet.invite", &body.name, details, result)
            .await
    }

    async fn make_invite(&self, body: &InviteBody) -> NodeResult<InviteView> {
        let invites = self.invites.as_ref().ok_or_else(|| {
            NodeError::Forbidden(
                "this node is not an admin the fleet root signed for, so it cannot enroll nodes; \
                 invite from such an admin, or with the root key (--root-key)"
                    .into(),
            )
        })?;
        osmoda_fabric::proto::cert::validate_name(&body.name)
            .map_err(|e| NodeError::Invalid(e.to_string()))?;
        if body.ttl_secs == 0 || body.ttl_secs > MAX_INVITE_TTL_SECS {
            return Err(NodeError::Invalid(format!(
                "a token lasts 1 s to {MAX_INVITE_TTL_SECS} s (a week)"
            )));
        }
        let invited = match body.role.as_deref() {
            None | Some("member") => Invited::Member,
            Some("admin") if self.info.holds_root_key => Invited::Admin {
                lasts_secs: body.valid_for_secs.unwrap_or(ADMIN_VALIDITY_SECS),
            },
            Some("admin") => {
                return Err(NodeError::Forbidden(
                    "only the node that keeps the root key in its folder enrolls admins; \
                     or invite with the root key (--root-key FILE), whose token carries the new node's key"
                        .into(),
                ))
            }
            Some(other) => {
                return Err(NodeError::Invalid(format!(
                    "role {other:?}: member or admin"
                )))
            }
        };
        if body.valid_for_secs == Some(0) {
            return Err(NodeError::Invalid(
                "a certificate lasts at least 1 s".into(),
            ));
        }
        let now = super::unix_now();
        let valid_until = now.saturating_add(body.ttl_secs);
        let (id, secret) = invites
            .create(&body.name, invited, valid_until, now)
            .await
            .map_err(|e| match e {
                crate::state::invites::InviteError::Full => NodeError::Busy(e.to_string()),
                other => NodeError::Internal(other.to_string()),
            })?;
        let status = self.fabric.status().await?;
        let mut addresses = body.addresses.clone();
        for addr in status.listen {
            addresses.push(format!("{addr}/p2p/{}", self.info.node_id));
        }
        addresses.truncate(osmoda_fabric::proto::token::MAX_BOOTSTRAP);
        let token = EnrollToken {
            fleet_name: self.info.fleet.name.clone(),
            fleet: self.membership.fleet(),
            admin: self.signer.cert().node,
            id,
            secret,
            valid_until,
            addresses: addresses.clone(),
        }
        .encode()
        .map_err(|e| NodeError::Invalid(e.to_string()))?;
        Ok(InviteView {
            token: token.to_string(),
            name: body.name.clone(),
            valid_until,
            admin: self.info.node_id.clone(),
            addresses,
        })
    }

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

    /// A new revocation the fabric verified and applied, brought by a
    /// peer: audited. Storing it does not wait for this event, which is
    /// dropped while the event channel is full (`persist_revocations`).
    pub(crate) async fn on_revoked(&self, revocation: &Revocation, from: Option<PeerId>) {
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

/// Stores the revocation list whenever a revocation is recorded, however
/// it came (`osmoda fleet revoke`, gossip, anti-entropy). It waits on
/// `Membership::watch_revocations`, which keeps only the latest count and
/// so never drops a change; several that come together are written once.
/// Ends when the membership is dropped with its node.
pub(crate) async fn persist_revocations(
    data: DataDir,
    membership: Weak<Membership>,
    mut changes: watch::Receiver<usize>,
) {
    while changes.changed().await.is_ok() {
        let Some(membership) = membership.upgrade() else {
            return;
        };
        let all = membership.revocations();
        drop(membership);
        let data = data.clone();
        match tokio::task::spawn_blocking(move || data.write_revocations(&all)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot store revocations"),
            Err(e) => tracing::warn!(error = %e, "cannot store revocations"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use osmoda_fabric::proto::{FleetRoot, Role};
    use osmoda_fabric::{Credentials, FabricConfig};
    use rand::rngs::OsRng;

    use super::*;
    use std::sync::Arc;

    /// Revocations reach the file while the fabric's event channel is full
    /// (nobody reads it here): storing hangs on the membership, not on the
    /// `Revoked` events, most of which are dropped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn revocations_are_stored_while_the_event_channel_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().to_path_buf());
        let root = FleetRoot::generate(&mut OsRng);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let key = ed25519_dalek::SigningKey::generate(&mut OsRng);
        let cert = root
            .issue(
                key.verifying_key().to_bytes(),
                "n",
                Role::Member,
                now - 60,
                now + 3600,
            )
            .unwrap();
        let credentials = Credentials::new(&key.to_bytes(), cert).unwrap();
        let membership = Membership::new(root.public());
        let task = tokio::spawn(persist_revocations(
            data.clone(),
            Arc::downgrade(&membership),
            membership.watch_revocations(),
        ));
        let config = FabricConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            mdns: false,
            ..FabricConfig::default()
        };
        let (fabric, events, fabric_task) =
            osmoda_fabric::start(credentials, membership.clone(), config).unwrap();
        let n = osmoda_fabric::handle::EVENT_CAPACITY + 100;
        for i in 0..n {
            let mut node = [0u8; 32];
            node[..8].copy_from_slice(&(i as u64).to_be_bytes());
            assert!(fabric.revoke(root.revoke(node, now)).await.unwrap());
        }
        assert!(fabric.status().await.unwrap().events_dropped >= 100);
        let mut stored = 0;
        for _ in 0..200 {
            stored = data.revocations().unwrap().len();
            if stored == n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(stored, n, "not every revocation was stored");
        fabric.shutdown().await;
        fabric_task.await.unwrap();
        drop((fabric, events, membership));
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the task ends with its membership")
            .unwrap();
    }
}
