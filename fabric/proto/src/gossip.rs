//! Signed gossip envelopes: who published a gossip message, checked once.
//!
//! Gossipsub can sign messages itself, but it checks the signature of every
//! copy that arrives, before it looks for duplicates. With a mesh of six,
//! each message arrives about six times, and in a fleet of a hundred nodes
//! in one process those checks were most of the CPU. The fabric therefore
//! runs gossipsub unsigned (content-addressed message ids) and wraps every
//! payload in this envelope, which it checks once, after deduplication and
//! before the message is forwarded.
//!
//! ```text
//! u8 version (3) | u16 len(cert) | cert [len, at most MAX_CERT_LEN]
//!                | seqno u64 | signature [64] | payload
//! signature = Ed25519(cert.node, "osmoda-gossip-v3" | u16 len(topic) | topic
//!                                | cert | seqno | payload)
//! ```
//!
//! The origin is the node named by the carried fleet certificate: a
//! receiver that never met the origin can still check that it is a member
//! (the certificate's chain against the fleet root, then its revocation
//! list; version 3 widened the certificate's length for delegated chains),
//! which this module leaves to the caller since it knows neither. Without
//! that check any key could sign, and a member could publish under
//! throwaway keys that no penalty or sequence window ever catches up with.
//!
//! The topic is signed but not carried, so a message cannot be replayed
//! into another topic.

use ed25519_dalek::{Signer, SigningKey};
use osmoda_wire::Reader;

use crate::cert::{verify_signed, FleetCert, MAX_CERT_LEN};
use crate::NodeKey;

const VERSION: u8 = 3;
const CONTEXT: &[u8] = b"osmoda-gossip-v3";
/// Bytes an envelope adds to its payload, at most (the certificate's
/// length varies with the node's name).
pub const ENVELOPE_OVERHEAD: usize = 1 + 2 + MAX_CERT_LEN + 8 + 64;

/// Why an envelope was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("gossip envelope shorter than its header")]
    Truncated,
    #[error("unknown gossip envelope version {0}")]
    Version(u8),
    #[error("gossip envelope certificate does not parse")]
    Certificate,
    #[error("gossip envelope signature does not verify")]
    BadSignature,
    #[error("the signing key's certificate is for another key")]
    KeyMismatch,
}

/// A signed envelope: the payload, who published it, the certificate it
/// carried for that (not checked against any fleet yet) and its number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub origin: NodeKey,
    pub cert: FleetCert,
    /// The certificate as carried, so that a caller can recognise one it
    /// verified before without encoding it again.
    pub cert_bytes: &'a [u8],
    pub seqno: u64,
    pub payload: &'a [u8],
}

fn signed_body(topic: &str, cert: &[u8], seqno: u64, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(2 + topic.len() + cert.len() + 8 + payload.len());
    // Topics are short constants; a longer one is cut, never a panic.
    let topic = &topic.as_bytes()[..topic.len().min(u16::MAX as usize)];
    body.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    body.extend_from_slice(topic);
    body.extend_from_slice(cert);
    body.extend_from_slice(&seqno.to_be_bytes());
    body.extend_from_slice(payload);
    body
}

/// Wraps `payload` for `topic`, signed by the publishing node's key and
/// carrying its certificate.
pub fn seal(
    key: &SigningKey,
    cert: &FleetCert,
    topic: &str,
    seqno: u64,
    payload: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    if cert.node != key.verifying_key().to_bytes() {
        return Err(EnvelopeError::KeyMismatch);
    }
    let cert = cert.encode();
    // A decoded or issued certificate is at most MAX_CERT_LEN (421) bytes.
    let cert_len = u16::try_from(cert.len()).map_err(|_| EnvelopeError::Certificate)?;
    let mut msg = CONTEXT.to_vec();
    msg.extend_from_slice(&signed_body(topic, &cert, seqno, payload));
    let signature = key.sign(&msg).to_bytes();
    let mut out = Vec::with_capacity(3 + cert.len() + 8 + 64 + payload.len());
    out.push(VERSION);
    out.extend_from_slice(&cert_len.to_be_bytes());
    out.extend_from_slice(&cert);
    out.extend_from_slice(&seqno.to_be_bytes());
    out.extend_from_slice(&signature);
    out.extend_from_slice(payload);
    Ok(out)
}

/// Checks an envelope received on `topic` (format and origin signature)
/// and returns what it carries. The caller checks the certificate.
pub fn open<'a>(topic: &str, bytes: &'a [u8]) -> Result<Envelope<'a>, EnvelopeError> {
    let mut reader = Reader::new(bytes);
    let version = reader.u8().map_err(|_| EnvelopeError::Truncated)?;
    if version != VERSION {
        return Err(EnvelopeError::Version(version));
    }
    let cert_len = reader.u16().map_err(|_| EnvelopeError::Truncated)? as usize;
    if cert_len > MAX_CERT_LEN {
        return Err(EnvelopeError::Certificate);
    }
    let cert_bytes = reader
        .bytes(cert_len)
        .map_err(|_| EnvelopeError::Truncated)?;
    let seqno = reader.u64().map_err(|_| EnvelopeError::Truncated)?;
    let signature: [u8; 64] = reader.array().map_err(|_| EnvelopeError::Truncated)?;
    let payload = &bytes[3 + cert_len + 8 + 64..];
    let cert = FleetCert::decode(cert_bytes).map_err(|_| EnvelopeError::Certificate)?;
    verify_signed(
        &cert.node,
        CONTEXT,
        &signed_body(topic, cert_bytes, seqno, payload),
        &signature,
    )
    .map_err(|_| EnvelopeError::BadSignature)?;
    Ok(Envelope {
        origin: cert.node,
        cert,
        cert_bytes,
        seqno,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::{FleetRoot, Role};
    use proptest::prelude::*;
    use rand::rngs::OsRng;

    fn member(key: &SigningKey) -> FleetCert {
        FleetRoot::from_secret([1; 32])
            .issue(key.verifying_key().to_bytes(), "n1", Role::Member, 0, 10)
            .expect("valid certificate")
    }

    fn sealed(key: &SigningKey, topic: &str, seqno: u64, payload: &[u8]) -> Vec<u8> {
        seal(key, &member(key), topic, seqno, payload).expect("own certificate")
    }

    #[test]
    fn a_sealed_message_opens_with_its_origin_certificate_and_payload() {
        let key = SigningKey::generate(&mut OsRng);
        let bytes = sealed(&key, "osmoda/audit/1", 7, b"heads");
        let env = open("osmoda/audit/1", &bytes).expect("opens");
        assert_eq!(env.origin, key.verifying_key().to_bytes());
        assert_eq!(env.cert, member(&key));
        assert_eq!(env.cert_bytes, member(&key).encode());
        assert_eq!(env.seqno, 7);
        assert_eq!(env.payload, b"heads");
        assert!(bytes.len() <= ENVELOPE_OVERHEAD + 5);
    }

    #[test]
    fn only_the_certificate_holder_can_seal() {
        let key = SigningKey::generate(&mut OsRng);
        let other = SigningKey::generate(&mut OsRng);
        assert_eq!(
            seal(&other, &member(&key), "t", 1, b"x"),
            Err(EnvelopeError::KeyMismatch)
        );
    }

    #[test]
    fn another_topic_a_short_envelope_or_an_old_version_is_refused() {
        let key = SigningKey::generate(&mut OsRng);
        let bytes = sealed(&key, "osmoda/audit/1", 1, b"x");
        assert_eq!(
            open("osmoda/mesh/1", &bytes),
            Err(EnvelopeError::BadSignature)
        );
        let header = bytes.len() - 1;
        assert_eq!(
            open("osmoda/audit/1", &bytes[..header - 1]),
            Err(EnvelopeError::Truncated)
        );
        let mut other = bytes.clone();
        other[0] = 2;
        assert_eq!(
            open("osmoda/audit/1", &other),
            Err(EnvelopeError::Version(2))
        );
        let mut long = bytes.clone();
        long[1..3].copy_from_slice(&((MAX_CERT_LEN + 1) as u16).to_be_bytes());
        assert_eq!(
            open("osmoda/audit/1", &long),
            Err(EnvelopeError::Certificate)
        );
    }

    #[test]
    fn an_empty_payload_is_allowed() {
        let key = SigningKey::generate(&mut OsRng);
        let bytes = sealed(&key, "t", 0, b"");
        assert_eq!(open("t", &bytes).map(|e| e.payload.len()), Ok(0));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Changing any byte of an envelope (certificate, number, signature
        /// or payload) makes it fail: nobody can pass off or alter a
        /// message, nor swap in another certificate.
        #[test]
        fn every_flipped_byte_is_refused(
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            index in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let key = SigningKey::from_bytes(&[9; 32]);
            let mut bytes = sealed(&key, "osmoda/mesh/1", 3, &payload);
            let i = index.index(bytes.len());
            bytes[i] ^= flip;
            prop_assert!(open("osmoda/mesh/1", &bytes).is_err());
        }

        /// Random bytes never panic the decoder.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
            let _ = open("t", &bytes);
        }
    }
}
