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
//! u8 version (1) | origin [32] | seqno u64 | signature [64] | payload
//! signature = Ed25519(origin key, "osmoda-gossip-v1" | u16 len(topic) | topic
//!                                 | origin | seqno | payload)
//! ```
//!
//! The topic is signed but not carried, so a message cannot be replayed
//! into another topic.

use ed25519_dalek::{Signer, SigningKey};
use osmoda_wire::Reader;

use crate::cert::verify_signed;
use crate::NodeKey;

const VERSION: u8 = 1;
const CONTEXT: &[u8] = b"osmoda-gossip-v1";
/// Bytes an envelope adds to its payload.
pub const ENVELOPE_OVERHEAD: usize = 1 + 32 + 8 + 64;

/// Why an envelope was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("gossip envelope shorter than its header")]
    Truncated,
    #[error("unknown gossip envelope version {0}")]
    Version(u8),
    #[error("gossip envelope signature does not verify")]
    BadSignature,
}

/// A verified envelope: the payload, who published it and its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub origin: NodeKey,
    pub seqno: u64,
    pub payload: &'a [u8],
}

fn signed_body(topic: &str, origin: &NodeKey, seqno: u64, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(2 + topic.len() + 32 + 8 + payload.len());
    // Topics are short constants; a longer one is cut, never a panic.
    let topic = &topic.as_bytes()[..topic.len().min(u16::MAX as usize)];
    body.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    body.extend_from_slice(topic);
    body.extend_from_slice(origin);
    body.extend_from_slice(&seqno.to_be_bytes());
    body.extend_from_slice(payload);
    body
}

/// Wraps `payload` for `topic`, signed by the publishing node's key.
pub fn seal(key: &SigningKey, topic: &str, seqno: u64, payload: &[u8]) -> Vec<u8> {
    let origin = key.verifying_key().to_bytes();
    let mut msg = CONTEXT.to_vec();
    msg.extend_from_slice(&signed_body(topic, &origin, seqno, payload));
    let signature = key.sign(&msg).to_bytes();
    let mut out = Vec::with_capacity(ENVELOPE_OVERHEAD + payload.len());
    out.push(VERSION);
    out.extend_from_slice(&origin);
    out.extend_from_slice(&seqno.to_be_bytes());
    out.extend_from_slice(&signature);
    out.extend_from_slice(payload);
    out
}

/// Checks an envelope received on `topic` and returns what it carries.
pub fn open<'a>(topic: &str, bytes: &'a [u8]) -> Result<Envelope<'a>, EnvelopeError> {
    let mut reader = Reader::new(bytes);
    let version = reader.u8().map_err(|_| EnvelopeError::Truncated)?;
    if version != VERSION {
        return Err(EnvelopeError::Version(version));
    }
    let origin: NodeKey = reader.array().map_err(|_| EnvelopeError::Truncated)?;
    let seqno = reader.u64().map_err(|_| EnvelopeError::Truncated)?;
    let signature: [u8; 64] = reader.array().map_err(|_| EnvelopeError::Truncated)?;
    let payload = &bytes[ENVELOPE_OVERHEAD..];
    verify_signed(
        &origin,
        CONTEXT,
        &signed_body(topic, &origin, seqno, payload),
        &signature,
    )
    .map_err(|_| EnvelopeError::BadSignature)?;
    Ok(Envelope {
        origin,
        seqno,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::OsRng;

    #[test]
    fn a_sealed_message_opens_with_its_origin_and_payload() {
        let key = SigningKey::generate(&mut OsRng);
        let sealed = seal(&key, "osmoda/audit/1", 7, b"heads");
        let env = open("osmoda/audit/1", &sealed).expect("opens");
        assert_eq!(env.origin, key.verifying_key().to_bytes());
        assert_eq!(env.seqno, 7);
        assert_eq!(env.payload, b"heads");
        assert_eq!(sealed.len(), ENVELOPE_OVERHEAD + 5);
    }

    #[test]
    fn another_topic_or_a_short_envelope_is_refused() {
        let key = SigningKey::generate(&mut OsRng);
        let sealed = seal(&key, "osmoda/audit/1", 1, b"x");
        assert_eq!(
            open("osmoda/mesh/1", &sealed),
            Err(EnvelopeError::BadSignature)
        );
        assert_eq!(
            open("osmoda/audit/1", &sealed[..ENVELOPE_OVERHEAD - 1]),
            Err(EnvelopeError::Truncated)
        );
        let mut other = sealed.clone();
        other[0] = 2;
        assert_eq!(
            open("osmoda/audit/1", &other),
            Err(EnvelopeError::Version(2))
        );
    }

    #[test]
    fn an_empty_payload_is_allowed() {
        let key = SigningKey::generate(&mut OsRng);
        let sealed = seal(&key, "t", 0, b"");
        assert_eq!(open("t", &sealed).map(|e| e.payload.len()), Ok(0));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Changing any byte of an envelope (origin, number, signature or
        /// payload) makes it fail: nobody can pass off or alter a message.
        #[test]
        fn every_flipped_byte_is_refused(
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            index in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let key = SigningKey::from_bytes(&[9; 32]);
            let mut sealed = seal(&key, "osmoda/mesh/1", 3, &payload);
            let i = index.index(sealed.len());
            sealed[i] ^= flip;
            prop_assert!(open("osmoda/mesh/1", &sealed).is_err());
        }
    }
}
