//! Fleet root keys, membership certificates and revocations.
//!
//! A fleet is named by its root's Ed25519 public key. A node is a member when
//! it holds a [`FleetCert`] for its identity key that chains to that root:
//! either signed by the root itself (version 1), or signed by an admin node
//! whose own root-signed certificate is carried inside (version 2, a chain
//! root → admin → member and never longer). Delegation lets the root key
//! stay offline while admin nodes enroll and renew members. A
//! [`Revocation`] signed by the root takes membership away for good, from
//! the node it names and from every certificate that node issued. All are
//! fixed binary formats (see `docs/protocol.md`), signed with a context
//! string so that no signature can be replayed as another kind.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use osmoda_wire::{Reader, Truncated};
use rand_core::CryptoRngCore;

use crate::{FleetKey, NodeKey};

const CERT_VERSION: u8 = 1;
const CERT_CONTEXT: &[u8] = b"osmoda-fleet-cert-v1";
const DELEGATED_VERSION: u8 = 2;
const DELEGATED_CONTEXT: &[u8] = b"osmoda-fleet-cert-v2";
const REVOCATION_VERSION: u8 = 1;
const REVOCATION_CONTEXT: &[u8] = b"osmoda-revocation-v1";

/// Longest node name, in bytes.
pub const MAX_NAME_LEN: usize = 63;
/// Longest root-signed certificate: fixed fields, the longest name, the
/// signature.
pub const MAX_ROOT_CERT_LEN: usize = 1 + 32 + 32 + 1 + 8 + 8 + 1 + MAX_NAME_LEN + 64;
/// Longest encoded certificate: a delegated one, which carries its issuer's.
pub const MAX_CERT_LEN: usize = MAX_ROOT_CERT_LEN - 64 + 1 + MAX_ROOT_CERT_LEN + 64;
/// Encoded size of a revocation.
pub const REVOCATION_LEN: usize = 1 + 32 + 32 + 8 + 64;
/// How far in the future a certificate's start may lie and still be accepted,
/// to tolerate clocks that disagree a little.
pub const CLOCK_SKEW_SECS: u64 = 300;

/// Why a certificate, revocation or name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("truncated or oversized encoding")]
    Malformed,
    #[error("unsupported format version {0}")]
    Version(u8),
    #[error("unknown role {0}")]
    UnknownRole(u8),
    #[error("invalid node name {0:?}: 1 to 63 characters from a-z, A-Z, 0-9, '.', '_', '-'")]
    BadName(String),
    #[error("signature does not verify")]
    BadSignature,
    #[error("issued for another fleet")]
    WrongFleet,
    #[error("expired at {expires_at} (now {now})")]
    Expired { expires_at: u64, now: u64 },
    #[error("not valid before {issued_at} (now {now})")]
    NotYetValid { issued_at: u64, now: u64 },
    #[error("validity ends before it starts")]
    EmptyValidity,
    #[error("invalid certificate chain: {0}")]
    Chain(&'static str),
    #[error("the signing key is not the key of the issuing certificate")]
    KeyMismatch,
}

impl From<Truncated> for CertError {
    fn from(_: Truncated) -> Self {
        CertError::Malformed
    }
}

/// What a member may do. Admins whose certificate the root signed may sign
/// fleet-wide commands and issue member certificates; a certificate an
/// admin issued is always a member's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Member,
    Admin,
}

impl Role {
    fn code(self) -> u8 {
        match self {
            Role::Member => 1,
            Role::Admin => 2,
        }
    }

    fn from_code(code: u8) -> Result<Self, CertError> {
        match code {
            1 => Ok(Role::Member),
            2 => Ok(Role::Admin),
            other => Err(CertError::UnknownRole(other)),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "member" => Ok(Role::Member),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role {other:?}: expected member or admin")),
        }
    }
}

/// Checks a node name: short, printable, safe in logs and file names.
pub fn validate_name(name: &str) -> Result<(), CertError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(CertError::BadName(name.chars().take(80).collect()))
    }
}

/// The fleet's root key pair. Whoever holds it admits and revokes members.
pub struct FleetRoot {
    key: SigningKey,
}

impl FleetRoot {
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        Self {
            key: SigningKey::generate(rng),
        }
    }

    pub fn from_secret(secret: [u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(&secret),
        }
    }

    pub fn secret(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The fleet id.
    pub fn public(&self) -> FleetKey {
        self.key.verifying_key().to_bytes()
    }

    /// Signs a membership certificate for `node`, valid in `[issued_at, expires_at)`.
    pub fn issue(
        &self,
        node: NodeKey,
        name: &str,
        role: Role,
        issued_at: u64,
        expires_at: u64,
    ) -> Result<FleetCert, CertError> {
        validate_name(name)?;
        if expires_at <= issued_at {
            return Err(CertError::EmptyValidity);
        }
        let mut cert = FleetCert {
            fleet: self.public(),
            node,
            role,
            issued_at,
            expires_at,
            name: name.to_owned(),
            issuer: None,
            signature: [0; 64],
        };
        cert.signature = self.sign(CERT_CONTEXT, &cert.signed_bytes()).to_bytes();
        Ok(cert)
    }

    /// Signs the revocation of `node`'s membership.
    pub fn revoke(&self, node: NodeKey, revoked_at: u64) -> Revocation {
        let mut rev = Revocation {
            fleet: self.public(),
            node,
            revoked_at,
            signature: [0; 64],
        };
        rev.signature = self
            .sign(REVOCATION_CONTEXT, &rev.signed_bytes())
            .to_bytes();
        rev
    }

    pub(crate) fn sign(&self, context: &[u8], body: &[u8]) -> Signature {
        let mut msg = Vec::with_capacity(context.len() + body.len());
        msg.extend_from_slice(context);
        msg.extend_from_slice(body);
        self.key.sign(&msg)
    }
}

pub(crate) fn verify_signed(
    signer: &[u8; 32],
    context: &[u8],
    body: &[u8],
    signature: &[u8; 64],
) -> Result<(), CertError> {
    let key = VerifyingKey::from_bytes(signer).map_err(|_| CertError::BadSignature)?;
    let mut msg = Vec::with_capacity(context.len() + body.len());
    msg.extend_from_slice(context);
    msg.extend_from_slice(body);
    key.verify_strict(&msg, &Signature::from_bytes(signature))
        .map_err(|_| CertError::BadSignature)
}

/// A membership certificate: the root, or an admin the root vouches for,
/// vouches that `node` belongs to the fleet under `name` with `role` until
/// `expires_at` (Unix seconds). A verified delegated certificate never
/// outlives its issuer's, so `expires_at` is the whole chain's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetCert {
    pub fleet: FleetKey,
    pub node: NodeKey,
    pub role: Role,
    pub issued_at: u64,
    pub expires_at: u64,
    pub name: String,
    /// The admin's root-signed certificate when an admin issued this one.
    issuer: Option<Box<FleetCert>>,
    signature: [u8; 64],
}

impl FleetCert {
    fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAX_CERT_LEN);
        out.push(match self.issuer {
            None => CERT_VERSION,
            Some(_) => DELEGATED_VERSION,
        });
        out.extend_from_slice(&self.fleet);
        out.extend_from_slice(&self.node);
        out.push(self.role.code());
        out.extend_from_slice(&self.issued_at.to_be_bytes());
        out.extend_from_slice(&self.expires_at.to_be_bytes());
        out.push(self.name.len() as u8);
        out.extend_from_slice(self.name.as_bytes());
        if let Some(issuer) = &self.issuer {
            let issuer = issuer.encode();
            // A root-signed certificate is at most MAX_ROOT_CERT_LEN (210).
            out.push(issuer.len() as u8);
            out.extend_from_slice(&issuer);
        }
        out
    }

    /// Signs a member's certificate with an admin's key: the chain root →
    /// admin → member. The admin's certificate must be root-signed with the
    /// admin role; the new one ends no later than the admin's.
    pub fn delegate(
        admin: &FleetCert,
        admin_key: &SigningKey,
        node: NodeKey,
        name: &str,
        issued_at: u64,
        expires_at: u64,
    ) -> Result<FleetCert, CertError> {
        validate_name(name)?;
        if !admin.may_issue() {
            return Err(CertError::Chain(
                "only an admin certificate signed by the root may issue",
            ));
        }
        if admin_key.verifying_key().to_bytes() != admin.node {
            return Err(CertError::KeyMismatch);
        }
        let expires_at = expires_at.min(admin.expires_at);
        if expires_at <= issued_at {
            return Err(CertError::EmptyValidity);
        }
        let mut cert = FleetCert {
            fleet: admin.fleet,
            node,
            role: Role::Member,
            issued_at,
            expires_at,
            name: name.to_owned(),
            issuer: Some(Box::new(admin.clone())),
            signature: [0; 64],
        };
        let mut msg = DELEGATED_CONTEXT.to_vec();
        msg.extend_from_slice(&cert.signed_bytes());
        cert.signature = admin_key.sign(&msg).to_bytes();
        Ok(cert)
    }

    /// The admin certificate that issued this one, when not the root.
    pub fn issuer(&self) -> Option<&FleetCert> {
        self.issuer.as_deref()
    }

    /// Whether this certificate lets its node issue certificates: an admin
    /// the root signed for directly.
    pub fn may_issue(&self) -> bool {
        self.role == Role::Admin && self.issuer.is_none()
    }

    /// Every node key the chain depends on: the node's own, then its
    /// issuer's. A revocation of any of them ends the membership.
    pub fn chain_keys(&self) -> impl Iterator<Item = NodeKey> + '_ {
        std::iter::once(self.node).chain(self.issuer.as_ref().map(|i| i.node))
    }

    /// Whether `is_revoked` says yes for any key of the chain.
    pub fn chain_revoked(&self, is_revoked: &dyn Fn(&NodeKey) -> bool) -> bool {
        self.chain_keys().any(|k| is_revoked(&k))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.signed_bytes();
        out.extend_from_slice(&self.signature);
        out
    }

    /// Parses a certificate, root-signed (version 1) or delegated
    /// (version 2, carrying its issuer's version 1 certificate). This checks
    /// the format only; call [`FleetCert::verify`] before trusting it.
    pub fn decode(bytes: &[u8]) -> Result<Self, CertError> {
        if bytes.len() > MAX_CERT_LEN {
            return Err(CertError::Malformed);
        }
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != CERT_VERSION && version != DELEGATED_VERSION {
            return Err(CertError::Version(version));
        }
        let fleet = r.array()?;
        let node = r.array()?;
        let role = Role::from_code(r.u8()?)?;
        let issued_at = r.u64()?;
        let expires_at = r.u64()?;
        let name_len = r.u8()? as usize;
        let name = r.bytes(name_len)?;
        let name = String::from_utf8(name.to_vec())
            .map_err(|_| CertError::BadName(String::from_utf8_lossy(name).into_owned()))?;
        let issuer = if version == DELEGATED_VERSION {
            let len = r.u8()? as usize;
            let bytes = r.bytes(len)?;
            // Only a root-signed certificate issues: the chain stops here.
            if bytes.first() != Some(&CERT_VERSION) {
                return Err(CertError::Chain(
                    "the issuer's certificate is not root-signed",
                ));
            }
            Some(Box::new(FleetCert::decode(bytes)?))
        } else {
            None
        };
        let signature = r.array()?;
        r.finish()?;
        validate_name(&name)?;
        Ok(FleetCert {
            fleet,
            node,
            role,
            issued_at,
            expires_at,
            name,
            issuer,
            signature,
        })
    }

    /// Checks the chain to `fleet`'s root (signatures, the issuer's right
    /// to issue) and the validity window of every certificate in it.
    /// Revocation is the caller's to check, over [`Self::chain_keys`].
    pub fn verify(&self, fleet: &FleetKey, now: u64) -> Result<(), CertError> {
        if &self.fleet != fleet {
            return Err(CertError::WrongFleet);
        }
        match &self.issuer {
            None => verify_signed(
                &self.fleet,
                CERT_CONTEXT,
                &self.signed_bytes(),
                &self.signature,
            )?,
            Some(issuer) => {
                issuer.verify(fleet, now)?;
                if !issuer.may_issue() {
                    return Err(CertError::Chain("the issuer is not an admin"));
                }
                if self.role != Role::Member {
                    return Err(CertError::Chain(
                        "an admin may issue member certificates only",
                    ));
                }
                if self.expires_at > issuer.expires_at {
                    return Err(CertError::Chain("it outlives its issuer's certificate"));
                }
                verify_signed(
                    &issuer.node,
                    DELEGATED_CONTEXT,
                    &self.signed_bytes(),
                    &self.signature,
                )?;
            }
        }
        if now >= self.expires_at {
            return Err(CertError::Expired {
                expires_at: self.expires_at,
                now,
            });
        }
        if self.issued_at > now.saturating_add(CLOCK_SKEW_SECS) {
            return Err(CertError::NotYetValid {
                issued_at: self.issued_at,
                now,
            });
        }
        Ok(())
    }
}

/// The root's word that `node` is no longer a member, from `revoked_at` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub fleet: FleetKey,
    pub node: NodeKey,
    pub revoked_at: u64,
    signature: [u8; 64],
}

impl Revocation {
    fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(REVOCATION_LEN);
        out.push(REVOCATION_VERSION);
        out.extend_from_slice(&self.fleet);
        out.extend_from_slice(&self.node);
        out.extend_from_slice(&self.revoked_at.to_be_bytes());
        out
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.signed_bytes();
        out.extend_from_slice(&self.signature);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CertError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != REVOCATION_VERSION {
            return Err(CertError::Version(version));
        }
        let rev = Revocation {
            fleet: r.array()?,
            node: r.array()?,
            revoked_at: r.u64()?,
            signature: r.array()?,
        };
        r.finish()?;
        Ok(rev)
    }

    /// Checks that the fleet's root signed this revocation.
    pub fn verify(&self, fleet: &FleetKey) -> Result<(), CertError> {
        if &self.fleet != fleet {
            return Err(CertError::WrongFleet);
        }
        verify_signed(
            &self.fleet,
            REVOCATION_CONTEXT,
            &self.signed_bytes(),
            &self.signature,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::OsRng;

    fn node() -> NodeKey {
        SigningKey::generate(&mut OsRng).verifying_key().to_bytes()
    }

    #[test]
    fn certificate_round_trips_and_verifies() {
        let root = FleetRoot::generate(&mut OsRng);
        let cert = root.issue(node(), "edge-1", Role::Admin, 100, 200).unwrap();
        let decoded = FleetCert::decode(&cert.encode()).unwrap();
        assert_eq!(decoded, cert);
        decoded.verify(&root.public(), 150).unwrap();
        assert_eq!(decoded.role, Role::Admin);
    }

    #[test]
    fn certificate_refusals() {
        let root = FleetRoot::generate(&mut OsRng);
        let other = FleetRoot::generate(&mut OsRng);
        let cert = root.issue(node(), "n", Role::Member, 1000, 2000).unwrap();
        assert_eq!(
            cert.verify(&other.public(), 1500),
            Err(CertError::WrongFleet)
        );
        assert!(matches!(
            cert.verify(&root.public(), 2000),
            Err(CertError::Expired { .. })
        ));
        assert!(matches!(
            cert.verify(&root.public(), 1000 - CLOCK_SKEW_SECS - 1),
            Err(CertError::NotYetValid { .. })
        ));
        // A certificate signed by another root but claiming this fleet.
        let mut forged = other.issue(node(), "n", Role::Admin, 1000, 2000).unwrap();
        forged.fleet = root.public();
        assert_eq!(
            forged.verify(&root.public(), 1500),
            Err(CertError::BadSignature)
        );
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let root = FleetRoot::generate(&mut OsRng);
        let bytes = root
            .issue(node(), "edge", Role::Member, 10, 20)
            .unwrap()
            .encode();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            let ok = FleetCert::decode(&b).and_then(|c| c.verify(&root.public(), 15));
            assert!(ok.is_err(), "flipped byte {i} accepted");
        }
    }

    fn admin(root: &FleetRoot, expires_at: u64) -> (SigningKey, FleetCert) {
        let key = SigningKey::generate(&mut OsRng);
        let cert = root
            .issue(
                key.verifying_key().to_bytes(),
                "adm",
                Role::Admin,
                100,
                expires_at,
            )
            .unwrap();
        (key, cert)
    }

    #[test]
    fn an_admin_issues_a_member_certificate_that_chains_to_the_root() {
        let root = FleetRoot::generate(&mut OsRng);
        let (key, adm) = admin(&root, 5000);
        let member = node();
        let cert = FleetCert::delegate(&adm, &key, member, "m1", 100, 9000).unwrap();
        // Clamped to the admin's own end.
        assert_eq!(cert.expires_at, 5000);
        let bytes = cert.encode();
        assert!(bytes.len() <= MAX_CERT_LEN);
        let back = FleetCert::decode(&bytes).unwrap();
        assert_eq!(back, cert);
        back.verify(&root.public(), 200).unwrap();
        assert_eq!(back.role, Role::Member);
        assert_eq!(back.issuer().map(|i| i.node), Some(adm.node));
        assert_eq!(
            back.chain_keys().collect::<Vec<_>>(),
            vec![member, adm.node]
        );
        assert!(back.chain_revoked(&|k| *k == adm.node));
        assert!(!back.chain_revoked(&|k| *k == root.public()));
        assert!(!back.may_issue());
        // The admin's expiry ends the chain.
        assert!(matches!(
            back.verify(&root.public(), 5000),
            Err(CertError::Expired { .. })
        ));
        let other = FleetRoot::generate(&mut OsRng);
        assert_eq!(
            back.verify(&other.public(), 200),
            Err(CertError::WrongFleet)
        );
    }

    #[test]
    fn only_a_root_signed_admin_issues_and_only_members() {
        let root = FleetRoot::generate(&mut OsRng);
        let key = SigningKey::generate(&mut OsRng);
        let plain = root
            .issue(key.verifying_key().to_bytes(), "m", Role::Member, 100, 5000)
            .unwrap();
        assert!(matches!(
            FleetCert::delegate(&plain, &key, node(), "x", 100, 200),
            Err(CertError::Chain(_))
        ));
        let (akey, adm) = admin(&root, 5000);
        assert_eq!(
            FleetCert::delegate(&adm, &key, node(), "x", 100, 200),
            Err(CertError::KeyMismatch)
        );
        // A member's key signing over an admin-looking chain is refused:
        // forge by re-signing the admin's chain with another key.
        let member = FleetCert::delegate(&adm, &akey, node(), "x", 100, 200).unwrap();
        let mut forged = member.clone();
        forged.role = Role::Admin;
        assert!(forged.verify(&root.public(), 150).is_err());
        // A delegated certificate cannot issue: the chain is at most two.
        assert!(matches!(
            FleetCert::delegate(&member, &akey, node(), "y", 100, 200),
            Err(CertError::Chain(_))
        ));
        // A delegated certificate carried as the issuer is refused at decode.
        let mut nested = member.encode();
        let inner = member.encode();
        let at = nested.len() - 64 - adm.encode().len() - 1;
        nested.truncate(at);
        nested.push(inner.len() as u8);
        nested.extend_from_slice(&inner);
        nested.extend_from_slice(&[0; 64]);
        assert!(FleetCert::decode(&nested).is_err());
    }

    #[test]
    fn every_flipped_byte_of_a_chain_is_refused() {
        let root = FleetRoot::generate(&mut OsRng);
        let (key, adm) = admin(&root, 5000);
        let bytes = FleetCert::delegate(&adm, &key, node(), "m", 100, 4000)
            .unwrap()
            .encode();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            let ok = FleetCert::decode(&b).and_then(|c| c.verify(&root.public(), 150));
            assert!(ok.is_err(), "flipped byte {i} accepted");
        }
    }

    proptest::proptest! {
        /// Random bytes and certificates with one byte changed never panic
        /// the decoder, and what decodes encodes back exactly.
        #[test]
        fn hostile_bytes_decode_exactly_or_not_at_all(
            junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..MAX_CERT_LEN + 8),
            at in proptest::prelude::any::<proptest::sample::Index>(),
            byte in proptest::prelude::any::<u8>(),
        ) {
            let root = FleetRoot::from_secret([5; 32]);
            let key = SigningKey::from_bytes(&[6; 32]);
            let adm = root
                .issue(key.verifying_key().to_bytes(), "a", Role::Admin, 0, 100)
                .unwrap();
            let mut valid = FleetCert::delegate(&adm, &key, [7; 32], "m", 0, 100)
                .unwrap()
                .encode();
            let i = at.index(valid.len());
            valid[i] = byte;
            for input in [junk, valid] {
                if let Ok(cert) = FleetCert::decode(&input) {
                    proptest::prop_assert_eq!(cert.encode(), input);
                    let _ = cert.verify(&root.public(), 50);
                }
            }
        }
    }

    #[test]
    fn bad_names_are_refused() {
        let root = FleetRoot::generate(&mut OsRng);
        for name in ["", "a b", "ä", &"x".repeat(64), "x\n"] {
            assert!(root.issue(node(), name, Role::Member, 1, 2).is_err());
        }
    }

    #[test]
    fn revocation_round_trips_and_rejects_tampering() {
        let root = FleetRoot::generate(&mut OsRng);
        let rev = root.revoke(node(), 42);
        let bytes = rev.encode();
        assert_eq!(bytes.len(), REVOCATION_LEN);
        Revocation::decode(&bytes)
            .unwrap()
            .verify(&root.public())
            .unwrap();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x80;
            let ok = Revocation::decode(&b).and_then(|r| r.verify(&root.public()));
            assert!(ok.is_err(), "flipped byte {i} accepted");
        }
    }
}
