//! The symmetric half of Noise (revision 34, section 5): CipherState and
//! SymmetricState over AES-256-GCM and SHA-256.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

pub(crate) const HASHLEN: usize = 32;
pub(crate) const TAGLEN: usize = 16;

/// The nonce 2^64-1 is reserved by Noise for rekeying.
const MAX_NONCE: u64 = u64::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CipherError {
    /// Authentication failed: wrong key, tampered bytes or wrong associated data.
    Decrypt,
    /// 2^64-1 messages were sent under this state; it may not send more.
    NonceExhausted,
}

/// One direction's key and counter. The counter only ever goes up, across
/// rekeys too, so a (key, nonce) pair is never used twice.
pub(crate) struct CipherState {
    key: Option<(Zeroizing<[u8; 32]>, Aes256Gcm)>,
    n: u64,
}

fn nonce(n: u64) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[4..].copy_from_slice(&n.to_be_bytes());
    out
}

impl CipherState {
    pub(crate) fn empty() -> Self {
        Self { key: None, n: 0 }
    }

    pub(crate) fn with_key(k: [u8; 32]) -> Self {
        let mut cs = Self::empty();
        cs.initialize_key(k);
        cs
    }

    fn initialize_key(&mut self, k: [u8; 32]) {
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&k));
        self.key = Some((Zeroizing::new(k), cipher));
        self.n = 0;
    }

    pub(crate) fn nonce(&self) -> u64 {
        self.n
    }

    pub(crate) fn encrypt_with_ad(&mut self, ad: &[u8], pt: &[u8]) -> Result<Vec<u8>, CipherError> {
        let Some((_, cipher)) = &self.key else {
            return Ok(pt.to_vec());
        };
        if self.n == MAX_NONCE {
            return Err(CipherError::NonceExhausted);
        }
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce(self.n)),
                Payload { msg: pt, aad: ad },
            )
            .map_err(|_| CipherError::Decrypt)?;
        self.n += 1;
        Ok(ct)
    }

    pub(crate) fn decrypt_with_ad(&mut self, ad: &[u8], ct: &[u8]) -> Result<Vec<u8>, CipherError> {
        let Some((_, cipher)) = &self.key else {
            return Ok(ct.to_vec());
        };
        if self.n == MAX_NONCE {
            return Err(CipherError::NonceExhausted);
        }
        let pt = cipher
            .decrypt(
                Nonce::from_slice(&nonce(self.n)),
                Payload { msg: ct, aad: ad },
            )
            .map_err(|_| CipherError::Decrypt)?;
        self.n += 1;
        Ok(pt)
    }

    /// Noise's REKEY: the new key is the first 32 bytes of encrypting 32 zero
    /// bytes under the reserved nonce. The counter is kept.
    pub(crate) fn rekey(&mut self) {
        let Some((_, cipher)) = &self.key else {
            return;
        };
        let Ok(out) = cipher.encrypt(
            Nonce::from_slice(&nonce(MAX_NONCE)),
            Payload {
                msg: &[0u8; 32],
                aad: &[],
            },
        ) else {
            return;
        };
        let mut k = [0u8; 32];
        k.copy_from_slice(&out[..32]);
        let n = self.n;
        self.initialize_key(k);
        self.n = n;
    }
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; HASHLEN] {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Noise's HKDF with two outputs.
fn hkdf2(ck: &[u8; HASHLEN], ikm: &[u8]) -> (Zeroizing<[u8; HASHLEN]>, Zeroizing<[u8; HASHLEN]>) {
    let temp = Zeroizing::new(hmac(ck, &[ikm]));
    let o1 = Zeroizing::new(hmac(&temp[..], &[&[1u8]]));
    let o2 = Zeroizing::new(hmac(&temp[..], &[&o1[..], &[2u8]]));
    (o1, o2)
}

/// Chaining key, handshake hash and the handshake's cipher.
pub(crate) struct SymmetricState {
    ck: Zeroizing<[u8; HASHLEN]>,
    h: [u8; HASHLEN],
    cs: CipherState,
}

impl SymmetricState {
    pub(crate) fn initialize(protocol_name: &[u8]) -> Self {
        let mut h = [0u8; HASHLEN];
        if protocol_name.len() <= HASHLEN {
            h[..protocol_name.len()].copy_from_slice(protocol_name);
        } else {
            h = Sha256::digest(protocol_name).into();
        }
        Self {
            ck: Zeroizing::new(h),
            h,
            cs: CipherState::empty(),
        }
    }

    pub(crate) fn mix_key(&mut self, ikm: &[u8]) {
        let (ck, k) = hkdf2(&self.ck, ikm);
        self.ck = ck;
        self.cs.initialize_key(*k);
    }

    pub(crate) fn mix_hash(&mut self, data: &[u8]) {
        let mut hasher = Sha256::new();
        hasher.update(self.h);
        hasher.update(data);
        self.h = hasher.finalize().into();
    }

    pub(crate) fn handshake_hash(&self) -> [u8; HASHLEN] {
        self.h
    }

    pub(crate) fn encrypt_and_hash(&mut self, pt: &[u8]) -> Result<Vec<u8>, CipherError> {
        let ct = self.cs.encrypt_with_ad(&self.h, pt)?;
        self.mix_hash(&ct);
        Ok(ct)
    }

    pub(crate) fn decrypt_and_hash(&mut self, ct: &[u8]) -> Result<Vec<u8>, CipherError> {
        let pt = self.cs.decrypt_with_ad(&self.h, ct)?;
        self.mix_hash(ct);
        Ok(pt)
    }

    /// The two transport keys: initiator-to-responder, responder-to-initiator.
    pub(crate) fn split(&self) -> (CipherState, CipherState) {
        let (k1, k2) = hkdf2(&self.ck, &[]);
        (CipherState::with_key(*k1), CipherState::with_key(*k2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_advance_and_rekey_changes_the_key() {
        let mut a = CipherState::with_key([7; 32]);
        let mut b = CipherState::with_key([7; 32]);
        let c1 = a.encrypt_with_ad(b"ad", b"hello").unwrap();
        let c2 = a.encrypt_with_ad(b"ad", b"hello").unwrap();
        assert_ne!(c1, c2, "same plaintext under a new nonce must differ");
        assert_eq!(b.decrypt_with_ad(b"ad", &c1).unwrap(), b"hello");
        // Out of order fails: the receiver expects nonce 1.
        assert_eq!(b.decrypt_with_ad(b"ad", &c1), Err(CipherError::Decrypt));

        let mut a = CipherState::with_key([7; 32]);
        let mut b = CipherState::with_key([7; 32]);
        a.rekey();
        let c = a.encrypt_with_ad(&[], b"x").unwrap();
        assert!(b.clone_for_test().decrypt_with_ad(&[], &c).is_err());
        b.rekey();
        assert_eq!(b.decrypt_with_ad(&[], &c).unwrap(), b"x");
    }

    #[test]
    fn exhausted_nonce_refuses_to_encrypt() {
        let mut a = CipherState::with_key([1; 32]);
        a.n = MAX_NONCE;
        assert_eq!(
            a.encrypt_with_ad(&[], b"x"),
            Err(CipherError::NonceExhausted)
        );
    }

    impl CipherState {
        fn clone_for_test(&self) -> CipherState {
            let mut c = CipherState::empty();
            if let Some((k, _)) = &self.key {
                c.initialize_key(**k);
            }
            c.n = self.n;
            c
        }
    }
}
