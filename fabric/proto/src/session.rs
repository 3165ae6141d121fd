//! The transport cipher of a finished handshake.
//!
//! Each direction has its own AES-256-GCM key from Noise's `Split()`. A frame
//! on the wire is a 2-byte big-endian length followed by that many bytes of
//! ciphertext (plaintext and a 16-byte tag). Nonces count frames and never
//! repeat; after every [`REKEY_INTERVAL`] frames in a direction both ends
//! replace that direction's key with Noise's `REKEY`, so a compromised key
//! exposes a bounded window of traffic.

use crate::noise::{CipherError, CipherState, TAGLEN};

/// Largest ciphertext in one frame.
pub const MAX_FRAME_LEN: usize = 65535;
/// Largest plaintext in one frame.
pub const MAX_PLAINTEXT_LEN: usize = MAX_FRAME_LEN - TAGLEN;
/// Frames per direction between two rekeys.
pub const REKEY_INTERVAL: u64 = 1 << 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("plaintext of {0} bytes exceeds the frame limit of {MAX_PLAINTEXT_LEN}")]
    TooLarge(usize),
    #[error("frame does not authenticate: tampered, reordered or replayed")]
    Decrypt,
    #[error("this direction has used every nonce; the connection must close")]
    NonceExhausted,
}

impl From<CipherError> for SessionError {
    fn from(e: CipherError) -> Self {
        match e {
            CipherError::Decrypt => SessionError::Decrypt,
            CipherError::NonceExhausted => SessionError::NonceExhausted,
        }
    }
}

/// Both directions' cipher state of one connection.
pub struct Session {
    send: CipherState,
    recv: CipherState,
    rekey_interval: u64,
    handshake_hash: [u8; 32],
}

impl Session {
    pub(crate) fn new(send: CipherState, recv: CipherState, handshake_hash: [u8; 32]) -> Self {
        Self {
            send,
            recv,
            rekey_interval: REKEY_INTERVAL,
            handshake_hash,
        }
    }

    /// Changes how often keys rotate. Both ends must use the same value; this
    /// exists so that tests can exercise many rotations quickly.
    #[doc(hidden)]
    pub fn set_rekey_interval(&mut self, frames: u64) {
        self.rekey_interval = frames.max(1);
    }

    /// The Noise handshake hash: unique to this connection, equal on both ends.
    pub fn handshake_hash(&self) -> [u8; 32] {
        self.handshake_hash
    }

    /// Frames sent so far.
    pub fn frames_sent(&self) -> u64 {
        self.send.nonce()
    }

    /// Encrypts `plaintext` into one frame (length prefix included) appended to `out`.
    pub fn seal_frame(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), SessionError> {
        if plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(SessionError::TooLarge(plaintext.len()));
        }
        let ct = self.send.encrypt_with_ad(&[], plaintext)?;
        out.extend_from_slice(&(ct.len() as u16).to_be_bytes());
        out.extend_from_slice(&ct);
        if self.send.nonce().is_multiple_of(self.rekey_interval) {
            self.send.rekey();
        }
        Ok(())
    }

    /// Decrypts the body of one frame (the bytes after its length prefix).
    pub fn open_frame(&mut self, body: &[u8]) -> Result<Vec<u8>, SessionError> {
        let pt = self.recv.decrypt_with_ad(&[], body)?;
        if self.recv.nonce().is_multiple_of(self.rekey_interval) {
            self.recv.rekey();
        }
        Ok(pt)
    }
}
