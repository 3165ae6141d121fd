//! Join tokens: everything a new host needs to become a member.
//!
//! A token carries a freshly made identity key for the new node, the
//! certificate the root signed for it, the fleet's name, an expiry and the
//! addresses of members to dial first, all signed by the root. It is a
//! secret: whoever holds it can act as that node until the certificate
//! expires or is revoked. Text form: `osmoda1` followed by unpadded
//! URL-safe base64 of the binary form (see `docs/protocol.md`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::SigningKey;
use osmoda_wire::{Reader, Truncated};
use zeroize::Zeroizing;

use crate::cert::{verify_signed, CertError, FleetCert, FleetRoot, MAX_CERT_LEN};

/// Text prefix of every token; also tells a token from other strings.
pub const TOKEN_PREFIX: &str = "osmoda1";
const TOKEN_VERSION: u8 = 1;
const TOKEN_CONTEXT: &[u8] = b"osmoda-join-token-v1";
/// Most bootstrap addresses a token carries, and the longest one.
pub const MAX_BOOTSTRAP: usize = 16;
pub const MAX_ADDR_LEN: usize = 255;
const MAX_FLEET_NAME: usize = 63;
/// Longest token text accepted; anything longer is refused before decoding.
pub const MAX_TOKEN_TEXT: usize = 8192;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not an osmoda join token (it should start with {TOKEN_PREFIX:?})")]
    Prefix,
    #[error("the token is damaged (not valid base64); copy it again in one piece")]
    Encoding,
    #[error("the token is damaged (truncated or with extra bytes)")]
    Truncated,
    #[error("the token is of an unsupported version {0}")]
    Version(u8),
    #[error("the token's certificate is invalid: {0}")]
    Certificate(#[from] CertError),
    #[error("the token's key does not match its certificate")]
    KeyMismatch,
    #[error("the token's signature does not verify: it was altered")]
    BadSignature,
    #[error("the token expired at {expired_at} (Unix time, now {now}); ask for a new invite")]
    Expired { expired_at: u64, now: u64 },
    #[error("too many or too long bootstrap addresses or fleet name")]
    TooLarge,
}

impl From<Truncated> for TokenError {
    fn from(_: Truncated) -> Self {
        TokenError::Truncated
    }
}

/// A decoded join token.
pub struct JoinToken {
    pub fleet_name: String,
    pub node_secret: Zeroizing<[u8; 32]>,
    pub cert: FleetCert,
    /// Unix seconds after which `osmoda join` refuses the token.
    pub valid_until: u64,
    pub bootstrap: Vec<String>,
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never reaches a log line.
        f.debug_struct("JoinToken")
            .field("fleet_name", &self.fleet_name)
            .field("cert", &self.cert)
            .field("valid_until", &self.valid_until)
            .field("bootstrap", &self.bootstrap)
            .finish_non_exhaustive()
    }
}

impl JoinToken {
    fn body(&self) -> Result<Vec<u8>, TokenError> {
        if self.bootstrap.len() > MAX_BOOTSTRAP
            || self.bootstrap.iter().any(|a| a.len() > MAX_ADDR_LEN)
            || self.fleet_name.len() > MAX_FLEET_NAME
        {
            return Err(TokenError::TooLarge);
        }
        let cert = self.cert.encode();
        let mut out = Vec::with_capacity(512);
        out.push(TOKEN_VERSION);
        out.extend_from_slice(&self.valid_until.to_be_bytes());
        out.push(self.fleet_name.len() as u8);
        out.extend_from_slice(self.fleet_name.as_bytes());
        out.extend_from_slice(&self.node_secret[..]);
        out.extend_from_slice(&(cert.len() as u16).to_be_bytes());
        out.extend_from_slice(&cert);
        out.push(self.bootstrap.len() as u8);
        for addr in &self.bootstrap {
            out.push(addr.len() as u8);
            out.extend_from_slice(addr.as_bytes());
        }
        Ok(out)
    }

    /// Signs the token with the fleet's root and returns its text form.
    pub fn encode(&self, root: &FleetRoot) -> Result<Zeroizing<String>, TokenError> {
        let mut bytes = Zeroizing::new(self.body()?);
        let sig = root.sign(TOKEN_CONTEXT, &bytes);
        bytes.extend_from_slice(&sig.to_bytes());
        let mut text = Zeroizing::new(String::from(TOKEN_PREFIX));
        URL_SAFE_NO_PAD.encode_string(&*bytes, &mut text);
        Ok(text)
    }

    /// Parses and checks a token: format, the root's signature, that the key
    /// matches the certificate, the certificate itself, and the expiry.
    pub fn decode(text: &str, now: u64) -> Result<Self, TokenError> {
        let text = text.trim();
        if text.len() > MAX_TOKEN_TEXT {
            return Err(TokenError::TooLarge);
        }
        let b64 = text.strip_prefix(TOKEN_PREFIX).ok_or(TokenError::Prefix)?;
        let bytes = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(b64)
                .map_err(|_| TokenError::Encoding)?,
        );
        if bytes.len() < 64 {
            return Err(TokenError::Truncated);
        }
        let (body, sig) = bytes.split_at(bytes.len() - 64);
        let mut r = Reader::new(body);
        let version = r.u8()?;
        if version != TOKEN_VERSION {
            return Err(TokenError::Version(version));
        }
        let valid_until = r.u64()?;
        let name_len = r.u8()? as usize;
        let fleet_name =
            String::from_utf8(r.bytes(name_len)?.to_vec()).map_err(|_| TokenError::Truncated)?;
        let node_secret = Zeroizing::new(r.array::<32>()?);
        let cert_len = r.u16()? as usize;
        if cert_len > MAX_CERT_LEN {
            return Err(TokenError::TooLarge);
        }
        let cert = FleetCert::decode(r.bytes(cert_len)?)?;
        let n = r.u8()? as usize;
        if n > MAX_BOOTSTRAP {
            return Err(TokenError::TooLarge);
        }
        let mut bootstrap = Vec::with_capacity(n);
        for _ in 0..n {
            let len = r.u8()? as usize;
            let addr =
                String::from_utf8(r.bytes(len)?.to_vec()).map_err(|_| TokenError::Truncated)?;
            bootstrap.push(addr);
        }
        r.finish()?;
        let sig: [u8; 64] = sig.try_into().map_err(|_| TokenError::Truncated)?;
        verify_signed(&cert.fleet, TOKEN_CONTEXT, body, &sig)
            .map_err(|_| TokenError::BadSignature)?;
        let key = SigningKey::from_bytes(&node_secret);
        if key.verifying_key().to_bytes() != cert.node {
            return Err(TokenError::KeyMismatch);
        }
        cert.verify(&cert.fleet, now)?;
        if now >= valid_until {
            return Err(TokenError::Expired {
                expired_at: valid_until,
                now,
            });
        }
        Ok(JoinToken {
            fleet_name,
            node_secret,
            cert,
            valid_until,
            bootstrap,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::Role;
    use rand::rngs::OsRng;

    fn token(root: &FleetRoot) -> JoinToken {
        let key = SigningKey::generate(&mut OsRng);
        let cert = root
            .issue(
                key.verifying_key().to_bytes(),
                "edge-2",
                Role::Member,
                100,
                10_000,
            )
            .unwrap();
        JoinToken {
            fleet_name: "lab".into(),
            node_secret: Zeroizing::new(key.to_bytes()),
            cert,
            valid_until: 200,
            bootstrap: vec!["/ip4/127.0.0.1/tcp/4001".into()],
        }
    }

    #[test]
    fn round_trip() {
        let root = FleetRoot::generate(&mut OsRng);
        let text = token(&root).encode(&root).unwrap();
        let t = JoinToken::decode(&text, 150).unwrap();
        assert_eq!(t.fleet_name, "lab");
        assert_eq!(t.bootstrap, vec!["/ip4/127.0.0.1/tcp/4001".to_string()]);
        assert_eq!(t.cert.name, "edge-2");
    }

    #[test]
    fn expired_and_malformed_tokens_are_refused() {
        let root = FleetRoot::generate(&mut OsRng);
        let text = token(&root).encode(&root).unwrap();
        assert!(matches!(
            JoinToken::decode(&text, 200),
            Err(TokenError::Expired { .. })
        ));
        assert_eq!(
            JoinToken::decode("hello", 150).unwrap_err(),
            TokenError::Prefix
        );
        assert_eq!(
            JoinToken::decode("osmoda1!!!", 150).unwrap_err(),
            TokenError::Encoding
        );
        let cut = &text[..text.len() / 2];
        assert!(JoinToken::decode(cut, 150).is_err());
    }

    #[test]
    fn every_altered_character_is_refused() {
        let root = FleetRoot::generate(&mut OsRng);
        let text = token(&root).encode(&root).unwrap();
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for i in TOKEN_PREFIX.len()..text.len() - 1 {
            let mut b = text.as_bytes().to_vec();
            b[i] = if b[i] == alphabet[0] {
                alphabet[1]
            } else {
                alphabet[0]
            };
            let altered = String::from_utf8(b).unwrap();
            assert!(
                JoinToken::decode(&altered, 150).is_err(),
                "altered char {i} accepted"
            );
        }
    }
}
