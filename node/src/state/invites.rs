//! The enrollment tokens this admin node issued, in the store (table
//! `invites`, keyed by token id), and the desk that redeems them.
//!
//! A token is redeemed only here, by the node that issued it, so marking
//! it used needs no coordination with any other node, across a partition
//! too. Redeeming is one critical section: the record is read, checked
//! (known, unused, not expired, the proof verifies) and written back as
//! used, durably, before the enrollee gets its certificate; a second use
//! finds it used and is refused.

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use futures::future::BoxFuture;
use osmoda_crdt_state::{Actor, Outcome};
use osmoda_fabric::enroll::{Enroller, EnrollmentRequest};
use osmoda_fabric::proto::enroll::check_proof;
use osmoda_fabric::proto::{hex, FleetCert, FleetRoot, Role};
use osmoda_fabric::LiveCredentials;
use osmoda_store::{Store, StoreError};
use osmoda_wire::Reader;
use zeroize::Zeroizing;

use crate::state::audit_log::AuditLog;

const TABLE: &str = "invites";
/// Version 2 adds the role and, for an admin, how long its certificate
/// lasts; version 1 records are members'.
const VERSION: u8 = 2;
const VERSION_MEMBER_ONLY: u8 = 1;
/// Most tokens waiting to be used at once: the table is written only by
/// the operator, but each record is kept until it expires.
pub const MAX_OPEN_INVITES: usize = 1024;
/// Certificates start a minute in the past, for clocks a little behind.
const BACKDATE_SECS: u64 = 60;

/// One issued token, as the admin keeps it.
struct Record {
    secret: Zeroizing<[u8; 32]>,
    valid_until: u64,
    name: String,
    invited: Invited,
    /// Unix seconds when used; 0 while unused.
    used_at: u64,
    used_by: [u8; 32],
}

impl Record {
    fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(128));
        out.push(VERSION);
        out.extend_from_slice(&self.secret[..]);
        out.extend_from_slice(&self.valid_until.to_be_bytes());
        out.push(self.name.len() as u8);
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(&self.used_at.to_be_bytes());
        out.extend_from_slice(&self.used_by);
        match self.invited {
            Invited::Member => out.push(0),
            Invited::Admin { lasts_secs } => {
                out.push(1);
                out.extend_from_slice(&lasts_secs.to_be_bytes());
            }
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader::new(bytes);
        let version = r.u8().ok()?;
        if version != VERSION && version != VERSION_MEMBER_ONLY {
            return None;
        }
        let secret = Zeroizing::new(r.array().ok()?);
        let valid_until = r.u64().ok()?;
        let len = usize::from(r.u8().ok()?);
        let name = String::from_utf8(r.bytes(len).ok()?.to_vec()).ok()?;
        let used_at = r.u64().ok()?;
        let used_by = r.array().ok()?;
        let invited = match version {
            VERSION_MEMBER_ONLY => Invited::Member,
            _ => match r.u8().ok()? {
                0 => Invited::Member,
                1 => Invited::Admin {
                    lasts_secs: r.u64().ok()?,
                },
                _ => return None,
            },
        };
        r.finish().ok()?;
        Some(Self {
            secret,
            valid_until,
            name,
            invited,
            used_at,
            used_by,
        })
    }
}

/// What a token makes of the node that redeems it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invited {
    /// A member, certified by this admin for its configured lifetime.
    Member,
    /// An admin, certified by the fleet root (which this node must keep)
    /// for `lasts_secs`.
    Admin { lasts_secs: u64 },
}

/// Why an invite could not be made.
#[derive(Debug, thiserror::Error)]
pub enum InviteError {
    #[error("{MAX_OPEN_INVITES} invites are open; wait until some are used or expire")]
    Full,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The tokens of one admin node.
pub struct Invites {
    store: Store,
    /// Held across read, check and write of a redemption, so that two
    /// enrollees racing with one token cannot both pass.
    redeeming: tokio::sync::Mutex<()>,
}

impl Invites {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            redeeming: tokio::sync::Mutex::new(()),
        }
    }

    /// Records a new, unused token for a node to be named `name`; returns
    /// its id and secret. Expired records are dropped on the way.
    pub async fn create(
        &self,
        name: &str,
        invited: Invited,
        valid_until: u64,
        now: u64,
    ) -> Result<([u8; 16], Zeroizing<[u8; 32]>), InviteError> {
        let _guard = self.redeeming.lock().await;
        let all = self
            .store
            .scan_prefix(TABLE, &[], osmoda_store::MAX_READ_RECORDS)?;
        let mut open = 0;
        for (key, value) in &all {
            match Record::decode(value) {
                Some(r) if r.valid_until > now => open += 1,
                _ => {
                    self.store.delete(TABLE, key)?;
                }
            }
        }
        if open >= MAX_OPEN_INVITES {
            return Err(InviteError::Full);
        }
        let mut id = [0u8; 16];
        let mut secret = Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut id);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret[..]);
        let record = Record {
            secret: secret.clone(),
            valid_until,
            name: name.to_owned(),
            invited,
            used_at: 0,
            used_by: [0; 32],
        };
        self.store.put(TABLE, &id, &record.encode())?;
        Ok((id, secret))
    }

    /// Checks a redemption and marks the token used, durably. Returns the
    /// name the node was invited under; the error is the reason for the
    /// enrollee.
    async fn redeem(&self, req: &EnrollmentRequest, now: u64) -> Result<(String, Invited), String> {
        let _guard = self.redeeming.lock().await;
        let unknown = || "this node issued no such token".to_string();
        let bytes = self
            .store
            .get(TABLE, &req.token_id)
            .map_err(|e| format!("the admin cannot read its invites: {e}"))?
            .ok_or_else(unknown)?;
        let mut record = Record::decode(&bytes).ok_or_else(unknown)?;
        if record.used_at != 0 {
            return Err("this token was used already; ask for a new invite".into());
        }
        if now >= record.valid_until {
            return Err("this token expired; ask for a new invite".into());
        }
        if !check_proof(&record.secret, &req.handshake_hash, &req.node, &req.proof) {
            return Err("the token's secret does not match".into());
        }
        record.used_at = now.max(1);
        record.used_by = req.node;
        self.store
            .put(TABLE, &req.token_id, &record.encode())
            .map_err(|e| format!("the admin cannot record the token as used: {e}"))?;
        Ok((record.name, record.invited))
    }
}

/// The admin node's enrollment desk: redeems a token, then issues the
/// enrollee's certificate under this node's admin certificate.
#[derive(Clone)]
pub struct EnrollDesk {
    pub invites: Arc<Invites>,
    pub key: SigningKey,
    /// This admin's certificate as it stands (renewal replaces it).
    pub credentials: LiveCredentials,
    pub lifetime: Duration,
    pub audit: Arc<AuditLog>,
    /// The fleet root, on the node that keeps it in its folder: only it
    /// enrolls admins.
    pub root: Option<Arc<FleetRoot>>,
}

impl std::fmt::Debug for EnrollDesk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollDesk")
            .field("admin", &hex(&self.credentials.cert().node))
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl EnrollDesk {
    async fn serve(&self, req: EnrollmentRequest) -> Result<FleetCert, String> {
        let now = crate::service::unix_now();
        let node_id = osmoda_fabric::peer_id_of(&req.node)
            .map(|p| p.to_string())
            .unwrap_or_default();
        let from = now.saturating_sub(BACKDATE_SECS);
        let result = match self.invites.redeem(&req, now).await {
            Ok((name, Invited::Member)) => FleetCert::delegate(
                &self.credentials.cert(),
                &self.key,
                req.node,
                &name,
                from,
                now.saturating_add(self.lifetime.as_secs()),
            )
            .map_err(|e| format!("the admin cannot issue: {e}")),
            Ok((name, Invited::Admin { lasts_secs })) => match &self.root {
                Some(root) => root
                    .issue(
                        req.node,
                        &name,
                        Role::Admin,
                        from,
                        from.saturating_add(lasts_secs),
                    )
                    .map_err(|e| format!("the root cannot issue: {e}")),
                None => Err("this node no longer keeps the root key, which admins need".into()),
            },
            Err(reason) => Err(reason),
        };
        let (target, outcome) = match &result {
            Ok(cert) => (format!("{} {node_id}", cert.name), Outcome::Ok),
            Err(reason) => (node_id, Outcome::Failed(reason.clone())),
        };
        let details = format!("token {}", hex(&req.token_id));
        if let Err(e) = self
            .audit
            .record(
                Actor::Peer(req.node),
                "fleet.enroll",
                &target,
                outcome,
                &details,
            )
            .await
        {
            tracing::warn!(error = %e, "cannot audit an enrollment");
        }
        result
    }
}

impl Enroller for EnrollDesk {
    fn enroll(&self, request: EnrollmentRequest) -> BoxFuture<'static, Result<FleetCert, String>> {
        let desk = self.clone();
        Box::pin(async move { desk.serve(request).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_exactly() {
        for invited in [Invited::Member, Invited::Admin { lasts_secs: 99 }] {
            let r = Record {
                secret: Zeroizing::new([1; 32]),
                valid_until: 7,
                name: "edge-1".into(),
                invited,
                used_at: 0,
                used_by: [2; 32],
            };
            let bytes = r.encode();
            let back = Record::decode(&bytes).unwrap();
            assert_eq!(back.invited, invited);
            assert_eq!(back.encode(), bytes);
            assert!(Record::decode(&bytes[..bytes.len() - 1]).is_none());
        }
    }

    #[test]
    fn version_1_records_are_members() {
        let r = Record {
            secret: Zeroizing::new([1; 32]),
            valid_until: 7,
            name: "edge-1".into(),
            invited: Invited::Member,
            used_at: 0,
            used_by: [2; 32],
        };
        let mut bytes = r.encode().to_vec();
        bytes[0] = VERSION_MEMBER_ONLY;
        bytes.pop();
        assert_eq!(Record::decode(&bytes).unwrap().invited, Invited::Member);
    }
}
