//! The node's side of sealed changes (`osmoda_docs::Authority`): it seals
//! what this node writes with its node key, and judges a peer's change by
//! the certificate its seal names.
//!
//! A verdict depends only on the change, its seal and certificate, the
//! fleet root and the revocations, never on the time it arrives: the
//! certificate is checked at the change's own time (its validity window
//! must cover it), and a revocation refuses what its member made from the
//! second it was revoked on. Revocations spread to every member, so every
//! replica comes to the same verdicts; a replica that took a revoked
//! member's change before it heard of the revocation keeps it (see
//! docs/protocol.md, "Sealed changes").

use std::sync::Arc;

use ed25519_dalek::{Signer, SigningKey, Verifier};
use osmoda_docs::{sealed_message, Authority, ChangeHash, Seal, Standing};
use osmoda_fabric::proto::cert::{FleetCert, Role};
use osmoda_fabric::{LiveCredentials, Membership};

/// Seals with this node's key; judges by the fleet's root and revocations.
pub struct NodeAuthority {
    key: SigningKey,
    /// The certificate this node writes under, as renewal leaves it.
    credentials: LiveCredentials,
    standing: Standing,
    membership: Arc<Membership>,
}

impl std::fmt::Debug for NodeAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeAuthority")
            .field("standing", &self.standing)
            .finish_non_exhaustive()
    }
}

fn standing(role: Role) -> Standing {
    match role {
        Role::Admin => Standing::Admin,
        Role::Member => Standing::Member,
    }
}

impl NodeAuthority {
    /// Renewal keeps the role, so the standing is taken once.
    pub fn new(
        key: SigningKey,
        credentials: impl Into<LiveCredentials>,
        membership: Arc<Membership>,
    ) -> Self {
        let credentials = credentials.into();
        Self {
            key,
            standing: standing(credentials.cert().role),
            credentials,
            membership,
        }
    }
}

impl Authority for NodeAuthority {
    fn credential(&self) -> Vec<u8> {
        self.credentials.cert().encode()
    }

    fn standing(&self) -> Standing {
        self.standing
    }

    fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }

    fn judge(
        &self,
        actor: &[u8],
        hash: &ChangeHash,
        time_ms: i64,
        seal: &Seal,
        credential: &[u8],
    ) -> Result<Standing, String> {
        let cert = FleetCert::decode(credential).map_err(|e| format!("its certificate: {e}"))?;
        let at = u64::try_from(time_ms.max(0) / 1000).unwrap_or(0);
        cert.verify(&self.membership.fleet(), at)
            .map_err(|e| format!("its certificate at the change's time: {e}"))?;
        let author = osmoda_fabric::peer_id_of(&cert.node)
            .ok_or("its certificate names no valid node key")?
            .to_string();
        if author.as_bytes() != actor {
            return Err(format!(
                "the change is written as {} but sealed by {author}",
                String::from_utf8_lossy(actor)
            ));
        }
        let key = ed25519_dalek::VerifyingKey::from_bytes(&cert.node)
            .map_err(|_| "its certificate names no valid node key")?;
        let signature = ed25519_dalek::Signature::from_bytes(&seal.signature);
        key.verify(&sealed_message(hash, &seal.credential), &signature)
            .map_err(|_| "the signature does not match")?;
        // The node's own revocation, or its issuing admin's.
        if let Some(revoked_at) = self.membership.chain_revoked_at(&cert) {
            if at >= revoked_at {
                return Err(format!("{author} (or the admin that issued its certificate) was revoked at {revoked_at}"));
            }
        }
        Ok(standing(cert.role))
    }
}
