//! The X.509 certificate a node presents in TLS, and the checks on a peer's.
//!
//! The certificate is self-signed by the node's Ed25519 identity key and
//! carries the node's fleet certificate in a private extension. X.509 is only
//! the envelope rustls requires: trust comes from the fleet root's signature
//! on the fleet certificate, so names, dates and key usages are not used.

use std::time::{SystemTime, UNIX_EPOCH};

use ed25519_dalek::{Signature, VerifyingKey};
use osmoda_fabric_proto::{CertError, FleetCert, NodeKey};
use rcgen::{CertificateParams, CustomExtension, DistinguishedName, DnType, KeyPair};
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use x509_parser::der_parser::der::parse_der_octetstring;
use x509_parser::der_parser::oid::Oid;
use x509_parser::prelude::{FromDer, X509Certificate};
use zeroize::Zeroizing;

use crate::{Credentials, Membership};

/// OID of the extension that carries the node's fleet certificate, under a
/// private enterprise arc. Its `extnValue` is a DER OCTET STRING holding
/// `FleetCert::encode()`; the extension is non-critical.
pub const FLEET_CERT_EXTENSION_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 59172, 1, 1];

/// id-Ed25519 (RFC 8410), as key algorithm and as signature algorithm.
const ED25519_OID: &[u64] = &[1, 3, 101, 112];

/// DER that follows the signed part of an Ed25519-signed certificate, up to
/// the signature bytes: SEQUENCE { OID 1.3.101.112 }, BIT STRING (65 bytes,
/// 0 unused bits).
const UNSIGNED_TAIL_PREFIX: [u8; 10] = [0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x41, 0x00];

/// PKCS#8 v1 `PrivateKeyInfo` for an Ed25519 key up to the 32-byte seed
/// (RFC 8410 §7): SEQUENCE { INTEGER 0, SEQUENCE { id-Ed25519 }, OCTET STRING { OCTET STRING seed } }.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Why a peer's certificate was refused.
#[derive(thiserror::Error)]
pub enum PeerCertError {
    #[error("the peer presented no certificate")]
    Missing,
    #[error(
        "the peer presented a certificate chain; only one self-signed certificate is accepted"
    )]
    Intermediates,
    #[error("malformed X.509 certificate")]
    Malformed,
    #[error("the certificate key is not a valid Ed25519 key")]
    NotEd25519,
    #[error("the certificate's self-signature does not verify")]
    BadSelfSignature,
    #[error("the certificate carries no osmoda fleet certificate")]
    MissingFleetCert,
    #[error("the certificate carries more than one osmoda fleet certificate")]
    DuplicateFleetCert,
    #[error("the certificate has an unknown critical extension {0}")]
    UnknownCriticalExtension(String),
    #[error("malformed fleet certificate: {0}")]
    BadFleetCert(CertError),
    #[error("the fleet certificate was issued to another key than the TLS certificate's")]
    KeyMismatch,
    #[error("not a member of this fleet: {0}")]
    NotMember(CertError),
    #[error("the node's membership is revoked")]
    Revoked,
    #[error("the peer is not the node that was dialed")]
    UnexpectedPeer,
}

/// rustls shows a refusal reason with `{:?}`; make that the readable text.
impl std::fmt::Debug for PeerCertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// This node's TLS certificate and the matching private key.
pub(crate) struct LocalCertificate {
    pub(crate) cert: CertificateDer<'static>,
    pub(crate) key: PrivatePkcs8KeyDer<'static>,
}

impl LocalCertificate {
    pub(crate) fn generate(credentials: &Credentials) -> Result<Self, rcgen::Error> {
        // The scratch buffer is wiped; the key itself lives in rustls'
        // configurations for as long as the transport does.
        let mut pkcs8 = Zeroizing::new(Vec::with_capacity(ED25519_PKCS8_V1_PREFIX.len() + 32));
        pkcs8.extend_from_slice(&ED25519_PKCS8_V1_PREFIX);
        pkcs8.extend_from_slice(credentials.signing_key().as_bytes());
        let key = PrivatePkcs8KeyDer::from(pkcs8.to_vec());
        let key_pair = KeyPair::from_pkcs8_der_and_sign_algo(&key, &rcgen::PKCS_ED25519)?;

        // rcgen's default validity (1975 to 4096) stands in for "always":
        // the fleet certificate inside carries the real validity window.
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "osmoda node");
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(
                FLEET_CERT_EXTENSION_OID,
                der_octet_string(&credentials.cert().encode()),
            ));
        let cert = params.self_signed(&key_pair)?;
        Ok(Self {
            cert: cert.der().clone(),
            key,
        })
    }
}

/// Checks a peer's certificate and returns its verified fleet certificate.
///
/// Accepted: exactly one certificate, with an Ed25519 key, self-signed by
/// that key, with one fleet certificate extension whose certificate chains
/// to our fleet root (directly, or through an admin), names that same key,
/// is valid at `now`, and no key of whose chain is revoked.
pub(crate) fn verify_peer_certificate(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    membership: &Membership,
    now: u64,
) -> Result<FleetCert, PeerCertError> {
    if !intermediates.is_empty() {
        return Err(PeerCertError::Intermediates);
    }
    let (rest, x509) =
        X509Certificate::from_der(end_entity.as_ref()).map_err(|_| PeerCertError::Malformed)?;
    if !rest.is_empty() {
        return Err(PeerCertError::Malformed);
    }
    let node = ed25519_key(&x509)?;
    check_self_signature(end_entity.as_ref(), &x509, &node)?;
    let fleet_cert = fleet_cert_extension(&x509)?;
    if fleet_cert.node != node {
        return Err(PeerCertError::KeyMismatch);
    }
    fleet_cert
        .verify(&membership.fleet(), now)
        .map_err(PeerCertError::NotMember)?;
    if membership.chain_revoked(&fleet_cert) {
        return Err(PeerCertError::Revoked);
    }
    Ok(fleet_cert)
}

/// Seconds since the Unix epoch; 0 if the clock is before it, which makes
/// every certificate "not yet valid" rather than panicking.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn oid_is(oid: &Oid<'_>, arcs: &[u64]) -> bool {
    oid.iter()
        .is_some_and(|mut it| it.by_ref().eq(arcs.iter().copied()))
}

fn ed25519_key(x509: &X509Certificate<'_>) -> Result<NodeKey, PeerCertError> {
    let spki = x509.public_key();
    // RFC 8410: the algorithm identifier of an Ed25519 key has no parameters.
    if !oid_is(&spki.algorithm.algorithm, ED25519_OID)
        || spki.algorithm.parameters.is_some()
        || spki.subject_public_key.unused_bits != 0
    {
        return Err(PeerCertError::NotEd25519);
    }
    let key: NodeKey = spki
        .subject_public_key
        .data
        .as_ref()
        .try_into()
        .map_err(|_| PeerCertError::NotEd25519)?;
    VerifyingKey::from_bytes(&key).map_err(|_| PeerCertError::NotEd25519)?;
    Ok(key)
}

/// The TLS handshake signature already proves the peer holds the key; the
/// self-signature additionally proves the certificate was not assembled by
/// someone else around a copied fleet certificate.
fn check_self_signature(
    der: &[u8],
    x509: &X509Certificate<'_>,
    key: &NodeKey,
) -> Result<(), PeerCertError> {
    let signed = &x509.tbs_certificate.signature;
    if !oid_is(&signed.algorithm, ED25519_OID) || signed.parameters.is_some() {
        return Err(PeerCertError::BadSelfSignature);
    }
    // After the signed part come the signature algorithm and the signature,
    // which nothing signs and which x509-parser parses leniently; so demand
    // their exact DER: an Ed25519 AlgorithmIdentifier and a BIT STRING of
    // 64 bytes with no unused bits.
    let tbs = x509.tbs_certificate.as_ref();
    let split = der
        .len()
        .checked_sub(UNSIGNED_TAIL_PREFIX.len() + 64)
        .ok_or(PeerCertError::Malformed)?;
    let (head, tail) = der.split_at(split);
    let (prefix, signature) = tail.split_at(UNSIGNED_TAIL_PREFIX.len());
    if !head.ends_with(tbs) || prefix != UNSIGNED_TAIL_PREFIX {
        return Err(PeerCertError::BadSelfSignature);
    }
    let signature: [u8; 64] = signature
        .try_into()
        .map_err(|_| PeerCertError::BadSelfSignature)?;
    let key = VerifyingKey::from_bytes(key).map_err(|_| PeerCertError::NotEd25519)?;
    key.verify_strict(tbs, &Signature::from_bytes(&signature))
        .map_err(|_| PeerCertError::BadSelfSignature)
}

fn fleet_cert_extension(x509: &X509Certificate<'_>) -> Result<FleetCert, PeerCertError> {
    let mut found = None;
    for ext in x509.extensions() {
        if oid_is(&ext.oid, FLEET_CERT_EXTENSION_OID) {
            if found.replace(ext.value).is_some() {
                return Err(PeerCertError::DuplicateFleetCert);
            }
        } else if ext.critical {
            // RFC 5280 §4.2: a critical extension we do not understand must fail.
            return Err(PeerCertError::UnknownCriticalExtension(
                ext.oid.to_id_string(),
            ));
        }
    }
    let value = found.ok_or(PeerCertError::MissingFleetCert)?;
    let bytes =
        parse_octet_string(value).ok_or(PeerCertError::BadFleetCert(CertError::Malformed))?;
    FleetCert::decode(bytes).map_err(PeerCertError::BadFleetCert)
}

/// DER OCTET STRING around `content`, with a minimal-length length field.
fn der_octet_string(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 10);
    out.push(0x04);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// The content of a DER OCTET STRING that spans all of `value`.
fn parse_octet_string(value: &[u8]) -> Option<&[u8]> {
    let (rest, object) = parse_der_octetstring(value).ok()?;
    if !rest.is_empty() {
        return None;
    }
    object.as_slice().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use osmoda_fabric_proto::{FleetRoot, Role};
    use rand::rngs::OsRng;

    fn member(root: &FleetRoot) -> Credentials {
        let secret = ed25519_dalek::SigningKey::generate(&mut OsRng).to_bytes();
        let node = ed25519_dalek::SigningKey::from_bytes(&secret)
            .verifying_key()
            .to_bytes();
        let now = unix_now();
        let cert = root
            .issue(node, "n1", Role::Member, now - 10, now + 3600)
            .unwrap();
        Credentials::new(&secret, cert).unwrap()
    }

    #[test]
    fn quic_cert_round_trips_through_the_verifier() {
        let root = FleetRoot::generate(&mut OsRng);
        let creds = member(&root);
        let local = LocalCertificate::generate(&creds).unwrap();
        let membership = Membership::new(root.public());
        let cert = verify_peer_certificate(&local.cert, &[], &membership, unix_now()).unwrap();
        assert_eq!(&cert, creds.cert());
        assert!(matches!(
            verify_peer_certificate(
                &local.cert,
                std::slice::from_ref(&local.cert),
                &membership,
                unix_now()
            ),
            Err(PeerCertError::Intermediates)
        ));
        let other = Membership::new(FleetRoot::generate(&mut OsRng).public());
        assert!(matches!(
            verify_peer_certificate(&local.cert, &[], &other, unix_now()),
            Err(PeerCertError::NotMember(CertError::WrongFleet))
        ));
    }

    /// A member an admin issued (a 400-odd-byte chain in the extension)
    /// is admitted on QUIC until its admin is revoked.
    #[test]
    fn quic_admits_a_delegated_certificate_until_its_admin_is_revoked() {
        let root = FleetRoot::generate(&mut OsRng);
        let admin_key = ed25519_dalek::SigningKey::generate(&mut OsRng);
        let now = unix_now();
        let admin = root
            .issue(
                admin_key.verifying_key().to_bytes(),
                "admin",
                Role::Admin,
                now - 10,
                now + 3600,
            )
            .unwrap();
        let secret = ed25519_dalek::SigningKey::generate(&mut OsRng).to_bytes();
        let node = ed25519_dalek::SigningKey::from_bytes(&secret)
            .verifying_key()
            .to_bytes();
        let cert =
            FleetCert::delegate(&admin, &admin_key, node, "m", now - 10, now + 3600).unwrap();
        let creds = Credentials::new(&secret, cert).unwrap();
        let local = LocalCertificate::generate(&creds).unwrap();
        let membership = Membership::new(root.public());
        let seen = verify_peer_certificate(&local.cert, &[], &membership, now).unwrap();
        assert_eq!(&seen, creds.cert());
        membership
            .apply_revocation(&root.revoke(admin.node, now))
            .unwrap();
        assert!(matches!(
            verify_peer_certificate(&local.cert, &[], &membership, now),
            Err(PeerCertError::Revoked)
        ));
    }

    #[test]
    fn quic_cert_with_a_flipped_byte_is_refused() {
        let root = FleetRoot::generate(&mut OsRng);
        let local = LocalCertificate::generate(&member(&root)).unwrap();
        let membership = Membership::new(root.public());
        let der = local.cert.as_ref();
        for i in 0..der.len() {
            let mut bad = der.to_vec();
            bad[i] ^= 0x01;
            let bad = CertificateDer::from(bad);
            assert!(
                verify_peer_certificate(&bad, &[], &membership, unix_now()).is_err(),
                "flipped byte {i} accepted"
            );
        }
    }

    #[test]
    fn quic_cert_octet_string_round_trips() {
        for len in [0usize, 1, 127, 128, 210, 255, 256, 1000] {
            let content = vec![0xa5; len];
            let der = der_octet_string(&content);
            assert_eq!(parse_octet_string(&der), Some(&content[..]));
        }
        assert_eq!(parse_octet_string(&[0x04, 0x02, 0x00]), None);
        assert_eq!(parse_octet_string(&[0x05, 0x00]), None);
    }
}
