//! Sans-IO core of the osmoda fabric.
//!
//! Everything here takes bytes, the current time and a random number
//! generator as inputs and returns bytes, results and errors. Nothing here
//! opens a socket, reads a clock or spawns a task; the `osmoda-fabric` crate
//! wraps these state machines for libp2p and tokio, and the simulation can
//! drive them directly.
//!
//! - [`cert`]: fleet root keys, membership certificates and revocations.
//! - [`token`]: the root's direct join tokens, which carry a new member's
//!   key and certificate.
//! - [`enroll`]: one-time enrollment tokens and the exchange in which a new
//!   node, with a key of its own making, gets its certificate from an admin.
//! - [`handshake`]: the hybrid post-quantum handshake
//!   (`Noise_XXhfs_25519+MLKEM768_AESGCM_SHA256`) as a state machine.
//! - [`emergency`]: fleet-wide STOP/FREEZE/RESUME/LOCKDOWN/UNLOCK commands
//!   signed by an admin, and the rule that refuses replays.
//! - [`gossip`]: the signed envelope around every gossip message, checked
//!   once per message instead of once per copy.
//! - [`session`]: the transport cipher after the handshake: framing,
//!   per-direction keys, nonces that never repeat, periodic rekeying.
//!
//! The wire formats are specified in `docs/protocol.md`.

// Outside bytes, files and answers are errors, never panics; tests may
// unwrap what they made themselves.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod cert;
pub mod emergency;
pub mod enroll;
pub mod gossip;
pub mod handshake;
pub mod kem;
mod noise;
pub mod session;
pub mod token;

pub use cert::{CertError, FleetCert, FleetRoot, Revocation, Role};
pub use emergency::{
    admit, admit_news, Admission, EmergencyCommand, EmergencyError, EmergencyKind,
};
pub use enroll::{EnrollRequest, EnrollResponse, EnrollToken};
pub use handshake::{Handshake, HandshakeError, LocalIdentity, Mode, PeerIdentity, Side};
pub use session::{Session, SessionError};
pub use token::{JoinToken, TokenError};

/// Ed25519 public key of a node's identity; the libp2p peer id is derived from it.
pub type NodeKey = [u8; 32];

/// Ed25519 public key of a fleet's root; it names the fleet.
pub type FleetKey = [u8; 32];

/// Lower-case hexadecimal, used for fleet ids in files and messages.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses lower- or upper-case hexadecimal of any even length.
pub fn parse_hex_bytes(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// Parses lower- or upper-case hexadecimal of exactly `N` bytes.
pub fn parse_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    parse_hex_bytes(text)?.try_into().ok()
}
