//! Certificate renewal. Membership certificates are short-lived (30 days by
//! default, `certificate_lifetime_days`), so a lost or stolen one is worth
//! little for long; a member renews its own while it runs, from any admin
//! node it is connected to, once two thirds of its certificate's life have
//! passed (docs/protocol.md, "Renewal").
//!
//! The admin asks nothing of the member beyond the connection itself: the
//! handshake proved the member holds its key and a valid, unrevoked
//! certificate. It signs a new one for the same key, name and role, and
//! only when the member's is due, so a member cannot make it sign (and
//! audit) without end. An admin's own certificate is the root's to renew:
//! a node that keeps the root key renews its own, other admins are renewed
//! by the root holder (`fleet invite --role admin` makes a new one).

use std::sync::Weak;
use std::time::Duration;

use libp2p::PeerId;
use osmoda_crdt_state::{Actor, Outcome};
use osmoda_fabric::proto::cert::{FleetCert, Role};
use tracing::{debug, info, warn};

use super::{unix_now, Caller, Node};
use crate::api::Renewed;
use crate::error::{NodeError, NodeResult};
use crate::replication::wire::{self, Request, Response};

/// A renewed certificate starts a minute back, for clocks a little apart.
const BACKDATE_SECS: u64 = 60;
/// Longest wait between two looks at the certificate's age.
const LOOK_AT_MOST_EVERY: Duration = Duration::from_secs(3600);

/// The instant (Unix seconds) from which a certificate is due for renewal:
/// when a third of its life is left.
pub fn due_at(cert: &FleetCert) -> u64 {
    let life = cert.expires_at.saturating_sub(cert.issued_at);
    cert.expires_at.saturating_sub(life / 3)
}

impl Node {
    /// Renews this node's certificate now: from a connected admin node (a
    /// member), or with the root key in the node's folder (the root
    /// holder). The new certificate is checked, written to the folder,
    /// then presented by every handshake, envelope and seal; connected
    /// peers are sent it, so links made before outlast the old expiry.
    pub async fn renew_certificate(&self, by: Caller<'_>) -> NodeResult<Renewed> {
        let result = self.renew_now().await;
        let details = renewal_details(&result);
        self.audited(by, "fleet.renew", &self.info.name, &details, result)
            .await
    }

    /// The renewal the node makes on its own when its certificate is due.
    async fn renew_on_time(&self) -> NodeResult<Renewed> {
        let result = self.renew_now().await;
        let outcome = match &result {
            Ok(_) => Outcome::Ok,
            Err(e) => super::outcome_of(e),
        };
        let details = renewal_details(&result);
        self.audit
            .record(
                Actor::Node,
                "fleet.renew",
                &self.info.name,
                outcome,
                &details,
            )
            .await
            .map_err(|e| NodeError::Audit(e.to_string()))?;
        result
    }

    async fn renew_now(&self) -> NodeResult<Renewed> {
        let held = self.signer.cert();
        if held.role == Role::Admin {
            return self.renew_with_root(&held);
        }
        let mut reasons = Vec::new();
        for peer in self.admins_connected().await? {
            let name = self.name_of(&peer).unwrap_or_else(|| peer.to_string());
            match wire::request(&self.fabric, peer, &Request::Renewal).await {
                Ok(Response::Renewal { cert }) => {
                    let cert = FleetCert::decode(&cert).map_err(|e| {
                        NodeError::Invalid(format!(
                            "{name} sent a certificate that does not parse: {e}"
                        ))
                    })?;
                    self.take_renewed(cert)?;
                    return Ok(Renewed {
                        expires_at: self.signer.cert().expires_at,
                        issued_by: name,
                    });
                }
                Ok(_) => reasons.push(format!("{name}: an answer of another kind")),
                Err(e) => reasons.push(format!("{name}: {e}")),
            }
        }
        if reasons.is_empty() {
            return Err(NodeError::Unavailable(
                "no admin node is connected to renew this node's certificate".into(),
            ));
        }
        Err(NodeError::Unavailable(format!(
            "no admin renewed the certificate: {}",
            reasons.join("; ")
        )))
    }

    /// Connected peers whose certificate lets them issue.
    async fn admins_connected(&self) -> NodeResult<Vec<PeerId>> {
        let peers = self.fabric.peers().await?;
        Ok(peers
            .iter()
            .filter_map(|p| p.node_id.parse::<PeerId>().ok())
            .filter(|p| {
                self.membership
                    .peer(p)
                    .is_some_and(|r| r.cert.may_issue() && !self.membership.chain_revoked(&r.cert))
            })
            .collect())
    }

    /// The root holder's own renewal, for as long as the certificate it
    /// replaces was given (the founder's lasts ten years).
    fn renew_with_root(&self, held: &FleetCert) -> NodeResult<Renewed> {
        let data = self.signer.data.as_ref().filter(|d| d.has_root()).ok_or_else(|| {
            NodeError::Forbidden(
                "an admin's certificate is renewed by the root key's holder: run `osmoda fleet invite --role admin` there"
                    .into(),
            )
        })?;
        let root = data.fleet_root(None)?;
        let now = unix_now();
        let span = held.expires_at.saturating_sub(held.issued_at);
        let cert = root
            .issue(
                held.node,
                &held.name,
                held.role,
                now.saturating_sub(BACKDATE_SECS),
                now.saturating_sub(BACKDATE_SECS).saturating_add(span),
            )
            .map_err(|e| NodeError::Internal(format!("cannot sign the renewal: {e}")))?;
        self.take_renewed(cert)?;
        Ok(Renewed {
            expires_at: self.signer.cert().expires_at,
            issued_by: "root".into(),
        })
    }

    /// Checks a renewed certificate, keeps it, then presents it.
    fn take_renewed(&self, cert: FleetCert) -> NodeResult<()> {
        let now = unix_now();
        // Checked before it is written: a folder never holds a certificate
        // the node would refuse.
        self.signer
            .credentials
            .check_renewal(&cert, now)
            .map_err(|e| NodeError::Invalid(e.to_string()))?;
        if let Some(data) = &self.signer.data {
            data.write_cert(&cert)?;
        }
        self.signer
            .credentials
            .renew(cert, now)
            .map_err(|e| NodeError::Invalid(e.to_string()))
    }

    /// An admin's side: a connected member asks for its certificate to be
    /// renewed. The answer is the new certificate, or why not. Only a
    /// certificate issued is audited: a refusal changes nothing, and a
    /// member asking again and again must not fill the admin's log.
    pub(crate) async fn renew_for(&self, peer: PeerId) -> Result<Response, String> {
        let name = self.name_of(&peer).unwrap_or_else(|| peer.to_string());
        let cert = self.issue_renewal(peer).inspect_err(|reason| {
            debug!(%peer, %name, %reason, "refused to renew a certificate");
        })?;
        let actor = osmoda_fabric::node_key_of(&peer).map_or(Actor::Node, Actor::Peer);
        let details = format!("until {}", cert.expires_at);
        if let Err(e) = self
            .audit
            .record(actor, "fleet.renew", &name, Outcome::Ok, &details)
            .await
        {
            return Err(format!("cannot audit the renewal: {e}"));
        }
        Ok(Response::Renewal {
            cert: cert.encode(),
        })
    }

    fn issue_renewal(&self, peer: PeerId) -> Result<FleetCert, String> {
        let own = self.signer.cert();
        if !own.may_issue() {
            return Err("this node does not issue certificates".into());
        }
        let record = self
            .membership
            .peer(&peer)
            .ok_or("no verified connection from this node")?;
        let held = record.cert;
        if held.role != Role::Member {
            return Err("an admin's certificate is renewed by the root key's holder".into());
        }
        if self.membership.chain_revoked(&held) {
            return Err("its membership is revoked".into());
        }
        let now = unix_now();
        // Due when less than half of what this admin would give is left:
        // one signature per member per half lifetime at most.
        let lifetime = self.signer.lifetime.as_secs();
        if held.expires_at.saturating_sub(now) > lifetime / 2 {
            return Err(format!(
                "not due: the certificate is valid until {}",
                held.expires_at
            ));
        }
        let key = ed25519_dalek::SigningKey::from_bytes(&self.signer.identity);
        let cert = FleetCert::delegate(
            &own,
            &key,
            held.node,
            &held.name,
            now.saturating_sub(BACKDATE_SECS),
            now.saturating_add(lifetime),
        )
        .map_err(|e| format!("cannot issue: {e}"))?;
        if cert.expires_at <= held.expires_at {
            return Err(format!(
                "this admin's own certificate ends at {}, no later than the member's",
                own.expires_at
            ));
        }
        Ok(cert)
    }
}

fn renewal_details(result: &NodeResult<Renewed>) -> String {
    match result {
        Ok(r) => format!("until {} from {}", r.expires_at, r.issued_by),
        Err(_) => String::new(),
    }
}

/// Renews the node's certificate whenever it is due, for as long as the
/// node lives; a failed attempt is tried again a little later (sooner as
/// the expiry nears).
pub(crate) async fn keep_renewed(node: Weak<Node>) {
    loop {
        let Some(cert) = node.upgrade().map(|n| n.signer.cert()) else {
            return;
        };
        let now = unix_now();
        let due = due_at(&cert);
        if now < due {
            let wait = Duration::from_secs(due - now).min(LOOK_AT_MOST_EVERY);
            tokio::time::sleep(wait).await;
            continue;
        }
        let Some(live) = node.upgrade() else {
            return;
        };
        match live.renew_on_time().await {
            Ok(renewed) => {
                info!(expires_at = renewed.expires_at, by = %renewed.issued_by, "certificate renewed")
            }
            Err(e) => {
                warn!(error = %e, expires_at = cert.expires_at, "cannot renew the certificate yet")
            }
        }
        drop(live);
        let left = cert.expires_at.saturating_sub(now);
        tokio::time::sleep(Duration::from_secs((left / 20).clamp(1, 60))).await;
    }
}
