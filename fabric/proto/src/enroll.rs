//! Enrollment: a new node makes its own key and gets its certificate from
//! an admin node, so no private key ever travels in a token.
//!
//! An admin makes an [`EnrollToken`]: a one-time secret and its id, the
//! fleet id (the root's public key), the admin that issued it and alone
//! redeems it (so single use needs no coordination across a partition),
//! that admin's addresses and an expiry. The joiner dials the admin, runs
//! the hybrid handshake in [`Mode::Enrollment`](crate::handshake::Mode)
//! (it presents no certificate; the admin presents its root-signed admin
//! certificate, which the joiner checks against the token's fleet id and
//! admin key), sends an [`EnrollRequest`] proving the secret over the
//! session's handshake hash, and receives an [`EnrollResponse`]: its
//! certificate, or why not. See `docs/protocol.md` §2.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use osmoda_wire::{Reader, Truncated};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::cert::{FleetCert, MAX_CERT_LEN};
use crate::token::{TokenError, MAX_ADDR_LEN, MAX_BOOTSTRAP, MAX_TOKEN_TEXT, TOKEN_PREFIX};
use crate::{FleetKey, NodeKey};

/// The token format's version byte (version 1 is the root's direct token,
/// [`crate::JoinToken`]).
pub const ENROLL_TOKEN_VERSION: u8 = 2;
const TOKEN_CHECK_CONTEXT: &[u8] = b"osmoda-enroll-token-v2";
const PROOF_CONTEXT: &[u8] = b"osmoda-enroll-proof-v1";
const MESSAGE_VERSION: u8 = 1;
const MAX_FLEET_NAME: usize = 63;
/// Length of a token's check value: enough to tell a damaged token.
const CHECK_LEN: usize = 8;
/// Exact length of an encoded [`EnrollRequest`].
pub const REQUEST_LEN: usize = 1 + 16 + 32;
/// Longest refusal reason an admin sends.
pub const MAX_REASON_LEN: usize = 1024;
/// Longest encoded [`EnrollResponse`].
pub const MAX_RESPONSE_LEN: usize = 1 + 1 + 2 + MAX_REASON_LEN;

const _: () = assert!(MAX_CERT_LEN <= MAX_REASON_LEN);

/// A one-time enrollment token. It is a secret until used: whoever holds
/// it may enroll one node, once, before `valid_until`.
pub struct EnrollToken {
    pub fleet_name: String,
    pub fleet: FleetKey,
    /// The admin node that issued the token and alone redeems it.
    pub admin: NodeKey,
    /// Names the token in the admin's records; not secret.
    pub id: [u8; 16],
    pub secret: Zeroizing<[u8; 32]>,
    /// Unix seconds from which the admin refuses the token.
    pub valid_until: u64,
    /// Where the admin listens (multiaddrs).
    pub addresses: Vec<String>,
}

impl std::fmt::Debug for EnrollToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never reaches a log line.
        f.debug_struct("EnrollToken")
            .field("fleet_name", &self.fleet_name)
            .field("fleet", &crate::hex(&self.fleet))
            .field("admin", &crate::hex(&self.admin))
            .field("id", &crate::hex(&self.id))
            .field("valid_until", &self.valid_until)
            .field("addresses", &self.addresses)
            .finish_non_exhaustive()
    }
}

fn check(body: &[u8]) -> [u8; CHECK_LEN] {
    let digest = Sha256::new()
        .chain_update(TOKEN_CHECK_CONTEXT)
        .chain_update(body)
        .finalize();
    let mut out = [0u8; CHECK_LEN];
    out.copy_from_slice(&digest[..CHECK_LEN]);
    out
}

impl EnrollToken {
    fn body(&self) -> Result<Zeroizing<Vec<u8>>, TokenError> {
        if self.addresses.len() > MAX_BOOTSTRAP
            || self.addresses.iter().any(|a| a.len() > MAX_ADDR_LEN)
            || self.fleet_name.len() > MAX_FLEET_NAME
        {
            return Err(TokenError::TooLarge);
        }
        let mut out = Zeroizing::new(Vec::with_capacity(512));
        out.push(ENROLL_TOKEN_VERSION);
        out.extend_from_slice(&self.valid_until.to_be_bytes());
        out.push(self.fleet_name.len() as u8);
        out.extend_from_slice(self.fleet_name.as_bytes());
        out.extend_from_slice(&self.fleet);
        out.extend_from_slice(&self.admin);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&self.secret[..]);
        out.push(self.addresses.len() as u8);
        for addr in &self.addresses {
            out.push(addr.len() as u8);
            out.extend_from_slice(addr.as_bytes());
        }
        Ok(out)
    }

    /// The text form: `osmoda1` and unpadded URL-safe base64.
    pub fn encode(&self) -> Result<Zeroizing<String>, TokenError> {
        let mut bytes = self.body()?;
        let sum = check(&bytes);
        bytes.extend_from_slice(&sum);
        let mut text = Zeroizing::new(String::from(TOKEN_PREFIX));
        URL_SAFE_NO_PAD.encode_string(&*bytes, &mut text);
        Ok(text)
    }

    /// Parses a token and checks its format, check value and expiry. The
    /// admin's identity is checked in the enrollment handshake.
    pub fn decode(text: &str, now: u64) -> Result<Self, TokenError> {
        let bytes = token_bytes(text)?;
        if bytes.len() < CHECK_LEN {
            return Err(TokenError::Truncated);
        }
        let (body, sum) = bytes.split_at(bytes.len() - CHECK_LEN);
        let mut r = Reader::new(body);
        let version = r.u8()?;
        if version != ENROLL_TOKEN_VERSION {
            return Err(TokenError::Version(version));
        }
        let valid_until = r.u64()?;
        let name_len = r.u8()? as usize;
        if name_len > MAX_FLEET_NAME {
            return Err(TokenError::TooLarge);
        }
        let fleet_name =
            String::from_utf8(r.bytes(name_len)?.to_vec()).map_err(|_| TokenError::Truncated)?;
        let fleet = r.array()?;
        let admin = r.array()?;
        let id = r.array()?;
        let secret = Zeroizing::new(r.array::<32>()?);
        let n = r.u8()? as usize;
        if n > MAX_BOOTSTRAP {
            return Err(TokenError::TooLarge);
        }
        let mut addresses = Vec::with_capacity(n);
        for _ in 0..n {
            let len = r.u8()? as usize;
            let addr =
                String::from_utf8(r.bytes(len)?.to_vec()).map_err(|_| TokenError::Truncated)?;
            addresses.push(addr);
        }
        r.finish()?;
        if check(body) != sum {
            return Err(TokenError::BadSignature);
        }
        if now >= valid_until {
            return Err(TokenError::Expired {
                expired_at: valid_until,
                now,
            });
        }
        Ok(EnrollToken {
            fleet_name,
            fleet,
            admin,
            id,
            secret,
            valid_until,
            addresses,
        })
    }
}

/// The binary form inside a token's text, of any version.
pub(crate) fn token_bytes(text: &str) -> Result<Zeroizing<Vec<u8>>, TokenError> {
    let text = text.trim();
    if text.len() > MAX_TOKEN_TEXT {
        return Err(TokenError::TooLarge);
    }
    let b64 = text.strip_prefix(TOKEN_PREFIX).ok_or(TokenError::Prefix)?;
    Ok(Zeroizing::new(
        URL_SAFE_NO_PAD
            .decode(b64)
            .map_err(|_| TokenError::Encoding)?,
    ))
}

/// Which kind of token `text` is: its version byte (1: the root's direct
/// token, [`ENROLL_TOKEN_VERSION`]: an enrollment token).
pub fn token_version(text: &str) -> Result<u8, TokenError> {
    token_bytes(text)?
        .first()
        .copied()
        .ok_or(TokenError::Truncated)
}

/// The enrollee's proof that it holds the token's secret, bound to one
/// session (its handshake hash) and to the key it enrolls.
pub fn proof(secret: &[u8; 32], handshake_hash: &[u8; 32], node: &NodeKey) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(PROOF_CONTEXT);
    mac.update(handshake_hash);
    mac.update(node);
    mac.finalize().into_bytes().into()
}

/// Checks a proof in constant time.
pub fn check_proof(
    secret: &[u8; 32],
    handshake_hash: &[u8; 32],
    node: &NodeKey,
    proof: &[u8; 32],
) -> bool {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(PROOF_CONTEXT);
    mac.update(handshake_hash);
    mac.update(node);
    mac.verify_slice(proof).is_ok()
}

/// Why an enrollment message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("truncated or oversized enrollment message")]
    Malformed,
    #[error("unsupported enrollment message version {0}")]
    Version(u8),
    #[error("unknown enrollment answer {0}")]
    UnknownStatus(u8),
}

impl From<Truncated> for MessageError {
    fn from(_: Truncated) -> Self {
        Self::Malformed
    }
}

/// The enrollee's one request: which token, and the proof it holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollRequest {
    pub token_id: [u8; 16],
    pub proof: [u8; 32],
}

impl EnrollRequest {
    /// `version (1) · token_id (16) · proof (32)`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(REQUEST_LEN);
        out.push(MESSAGE_VERSION);
        out.extend_from_slice(&self.token_id);
        out.extend_from_slice(&self.proof);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != MESSAGE_VERSION {
            return Err(MessageError::Version(version));
        }
        let req = Self {
            token_id: r.array()?,
            proof: r.array()?,
        };
        r.finish()?;
        Ok(req)
    }
}

/// The admin's one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollResponse {
    /// The enrollee's certificate (the bytes as issued; the enrollee
    /// decodes and checks them).
    Certificate(Vec<u8>),
    /// Why not, for the operator who ran `join`.
    Refused(String),
}

impl EnrollResponse {
    /// `version (1) · status (1: 1 certificate, 2 refused) · len (2) · bytes`.
    pub fn encode(&self) -> Vec<u8> {
        let (status, body): (u8, &[u8]) = match self {
            Self::Certificate(cert) => (1, &cert[..cert.len().min(MAX_CERT_LEN)]),
            Self::Refused(reason) => (2, truncate_utf8(reason, MAX_REASON_LEN).as_bytes()),
        };
        let mut out = Vec::with_capacity(4 + body.len());
        out.push(MESSAGE_VERSION);
        out.push(status);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != MESSAGE_VERSION {
            return Err(MessageError::Version(version));
        }
        let status = r.u8()?;
        let len = r.u16()? as usize;
        let out = match status {
            1 if len <= MAX_CERT_LEN => Self::Certificate(r.bytes(len)?.to_vec()),
            2 if len <= MAX_REASON_LEN => Self::Refused(
                String::from_utf8(r.bytes(len)?.to_vec()).map_err(|_| MessageError::Malformed)?,
            ),
            1 | 2 => return Err(MessageError::Malformed),
            other => return Err(MessageError::UnknownStatus(other)),
        };
        r.finish()?;
        Ok(out)
    }
}

/// The enrollee's check of the certificate it received: it names `node`,
/// chains to `fleet`'s root and is valid at `now`.
pub fn accept_certificate(
    cert: &[u8],
    node: &NodeKey,
    fleet: &FleetKey,
    now: u64,
) -> Result<FleetCert, crate::CertError> {
    let cert = FleetCert::decode(cert)?;
    if &cert.node != node {
        return Err(crate::CertError::Chain("the certificate names another key"));
    }
    cert.verify(fleet, now)?;
    Ok(cert)
}

fn truncate_utf8(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests;
