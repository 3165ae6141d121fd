//! Fleet-wide emergency commands: STOP, FREEZE, RESUME, LOCKDOWN, UNLOCK,
//! signed by an admin member and carried by gossip.
//!
//! A command carries the issuer's membership certificate, so any member can
//! check it alone: the root vouches for the issuer and its admin role, the
//! issuer's identity key signs the command. Commands form a last-writer-wins
//! register per fleet, ordered by `(issued_at_ms, nonce)`: a member applies a
//! command only if it is newer than the last one it applied, so a replay
//! (the same command or any older one) is recognised and ignored, and an
//! UNLOCK cannot be undone by replaying the LOCKDOWN before it.

use ed25519_dalek::{Signer, SigningKey};
use osmoda_wire::{Reader, Truncated};
use rand_core::CryptoRngCore;

use crate::cert::{verify_signed, CertError, FleetCert, Role, MAX_CERT_LEN};
use crate::FleetKey;

const VERSION: u8 = 1;
const CONTEXT: &[u8] = b"osmoda-emergency-v1";
/// Longest encoded command.
pub const MAX_COMMAND_LEN: usize = 1 + 1 + 8 + 16 + 2 + MAX_CERT_LEN + 64;
/// How far ahead of the receiver's clock a command may be dated.
pub const MAX_FUTURE_MS: u64 = 300_000;
/// How old a command may be when it arrives as news (gossip, a relay):
/// older ones are ignored, so that a command captured long ago cannot be
/// replayed to a member that has not heard of anything newer. A command
/// still in force reaches members through the register exchange instead,
/// where age does not matter.
pub const MAX_NEWS_AGE_MS: u64 = 600_000;

/// What the command does on every member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EmergencyKind {
    /// Agents get SIGTERM, a grace period, then SIGKILL; services go on.
    Stop,
    /// Agents are suspended where they stand.
    Freeze,
    /// Frozen agents continue.
    Resume,
    /// Agents are killed and every tool call is refused until UNLOCK.
    Lockdown,
    /// Lifts a lockdown.
    Unlock,
}

impl EmergencyKind {
    fn code(self) -> u8 {
        match self {
            Self::Stop => 1,
            Self::Freeze => 2,
            Self::Resume => 3,
            Self::Lockdown => 4,
            Self::Unlock => 5,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::Stop,
            2 => Self::Freeze,
            3 => Self::Resume,
            4 => Self::Lockdown,
            5 => Self::Unlock,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Freeze => "freeze",
            Self::Resume => "resume",
            Self::Lockdown => "lockdown",
            Self::Unlock => "unlock",
        }
    }
}

impl std::str::FromStr for EmergencyKind {
    type Err = EmergencyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Self::Stop,
            Self::Freeze,
            Self::Resume,
            Self::Lockdown,
            Self::Unlock,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| EmergencyError::UnknownKind(s.to_string()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmergencyError {
    #[error("truncated or oversized command")]
    Malformed,
    #[error("unsupported command version {0}")]
    Version(u8),
    #[error("unknown command {0:?}")]
    UnknownKind(String),
    #[error("the issuer's certificate is not valid: {0}")]
    Certificate(CertError),
    #[error("the issuer is not an admin")]
    NotAdmin,
    #[error("the command's signature does not verify")]
    BadSignature,
    #[error("the key does not match the certificate")]
    KeyMismatch,
}

impl From<Truncated> for EmergencyError {
    fn from(_: Truncated) -> Self {
        Self::Malformed
    }
}

/// One signed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmergencyCommand {
    pub kind: EmergencyKind,
    pub issued_at_ms: u64,
    pub nonce: [u8; 16],
    pub issuer: FleetCert,
    signature: [u8; 64],
}

impl EmergencyCommand {
    /// Signs a command with the issuer's identity key.
    pub fn sign(
        kind: EmergencyKind,
        issued_at_ms: u64,
        issuer: FleetCert,
        key: &SigningKey,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self, EmergencyError> {
        if key.verifying_key().to_bytes() != issuer.node {
            return Err(EmergencyError::KeyMismatch);
        }
        let mut nonce = [0u8; 16];
        rng.fill_bytes(&mut nonce);
        let mut cmd = Self {
            kind,
            issued_at_ms,
            nonce,
            issuer,
            signature: [0; 64],
        };
        let mut msg = CONTEXT.to_vec();
        msg.extend_from_slice(&cmd.signed_bytes());
        cmd.signature = key.sign(&msg).to_bytes();
        Ok(cmd)
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let cert = self.issuer.encode();
        let mut out = Vec::with_capacity(MAX_COMMAND_LEN);
        out.push(VERSION);
        out.extend_from_slice(&self.issuer.fleet);
        out.push(self.kind.code());
        out.extend_from_slice(&self.issued_at_ms.to_be_bytes());
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&(cert.len() as u16).to_be_bytes());
        out.extend_from_slice(&cert);
        out
    }

    /// `version · kind · issued_at_ms · nonce · cert_len · cert · signature`
    /// (the signature also covers the fleet id, which the certificate names).
    pub fn encode(&self) -> Vec<u8> {
        let cert = self.issuer.encode();
        let mut out = Vec::with_capacity(MAX_COMMAND_LEN);
        out.push(VERSION);
        out.push(self.kind.code());
        out.extend_from_slice(&self.issued_at_ms.to_be_bytes());
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&(cert.len() as u16).to_be_bytes());
        out.extend_from_slice(&cert);
        out.extend_from_slice(&self.signature);
        out
    }

    /// Parses a command; checks the format only. Call [`verify`](Self::verify).
    pub fn decode(bytes: &[u8]) -> Result<Self, EmergencyError> {
        if bytes.len() > MAX_COMMAND_LEN {
            return Err(EmergencyError::Malformed);
        }
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != VERSION {
            return Err(EmergencyError::Version(version));
        }
        let code = r.u8()?;
        let kind = EmergencyKind::from_code(code)
            .ok_or_else(|| EmergencyError::UnknownKind(code.to_string()))?;
        let issued_at_ms = r.u64()?;
        let nonce = r.array()?;
        let cert_len = usize::from(r.u16()?);
        let issuer = FleetCert::decode(r.bytes(cert_len)?).map_err(EmergencyError::Certificate)?;
        let signature = r.array()?;
        r.finish()?;
        Ok(Self {
            kind,
            issued_at_ms,
            nonce,
            issuer,
            signature,
        })
    }

    /// Checks that the root vouches for the issuer as an admin of `fleet`
    /// at `now` (Unix seconds) and that the issuer signed this command.
    /// Revocation is the caller's to check (it holds the list).
    pub fn verify(&self, fleet: &FleetKey, now: u64) -> Result<(), EmergencyError> {
        self.issuer
            .verify(fleet, now)
            .map_err(EmergencyError::Certificate)?;
        verify_signed(
            &self.issuer.node,
            CONTEXT,
            &self.signed_bytes(),
            &self.signature,
        )
        .map_err(|_| EmergencyError::BadSignature)?;
        if self.issuer.role != Role::Admin {
            return Err(EmergencyError::NotAdmin);
        }
        Ok(())
    }

    /// The order of commands in the fleet's register.
    pub fn order(&self) -> (u64, [u8; 16]) {
        (self.issued_at_ms, self.nonce)
    }
}

/// What a member does with a verified command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Apply,
    /// The same command again, or one older than the last applied.
    Replay,
    /// Dated too far ahead of this member's clock.
    FromTheFuture,
    /// News older than [`MAX_NEWS_AGE_MS`].
    Stale,
}

/// Decides on a verified command given the order of the last one applied.
pub fn admit(
    last_applied: Option<(u64, [u8; 16])>,
    cmd: &EmergencyCommand,
    now_ms: u64,
) -> Admission {
    if cmd.issued_at_ms > now_ms.saturating_add(MAX_FUTURE_MS) {
        return Admission::FromTheFuture;
    }
    match last_applied {
        Some(last) if cmd.order() <= last => Admission::Replay,
        _ => Admission::Apply,
    }
}

/// Decides on a verified command that arrived as news: as [`admit`], and
/// no older than [`MAX_NEWS_AGE_MS`].
pub fn admit_news(
    last_applied: Option<(u64, [u8; 16])>,
    cmd: &EmergencyCommand,
    now_ms: u64,
) -> Admission {
    match admit(last_applied, cmd, now_ms) {
        Admission::Apply if now_ms.saturating_sub(cmd.issued_at_ms) > MAX_NEWS_AGE_MS => {
            Admission::Stale
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FleetRoot;
    use rand_core::OsRng;

    fn member(root: &FleetRoot, role: Role) -> (SigningKey, FleetCert) {
        let key = SigningKey::generate(&mut OsRng);
        let cert = root
            .issue(key.verifying_key().to_bytes(), "n", role, 0, u64::MAX / 2)
            .unwrap();
        (key, cert)
    }

    #[test]
    fn an_admins_command_verifies_and_round_trips() {
        let root = FleetRoot::generate(&mut OsRng);
        let (key, cert) = member(&root, Role::Admin);
        let cmd =
            EmergencyCommand::sign(EmergencyKind::Lockdown, 5, cert, &key, &mut OsRng).unwrap();
        let back = EmergencyCommand::decode(&cmd.encode()).unwrap();
        assert_eq!(back, cmd);
        back.verify(&root.public(), 10).unwrap();
        let other = FleetRoot::generate(&mut OsRng);
        assert!(back.verify(&other.public(), 10).is_err());
    }

    #[test]
    fn a_members_command_is_refused() {
        let root = FleetRoot::generate(&mut OsRng);
        let (key, cert) = member(&root, Role::Member);
        let cmd = EmergencyCommand::sign(EmergencyKind::Stop, 5, cert, &key, &mut OsRng).unwrap();
        assert_eq!(
            cmd.verify(&root.public(), 10),
            Err(EmergencyError::NotAdmin)
        );
    }

    /// A member an admin enrolled holds a valid certificate, but only a
    /// root-signed admin signs fleet commands.
    #[test]
    fn a_command_from_a_member_an_admin_issued_is_refused() {
        let root = FleetRoot::generate(&mut OsRng);
        let (admin_key, admin) = member(&root, Role::Admin);
        let key = SigningKey::generate(&mut OsRng);
        let cert = FleetCert::delegate(
            &admin,
            &admin_key,
            key.verifying_key().to_bytes(),
            "m",
            0,
            u64::MAX / 2,
        )
        .unwrap();
        let cmd =
            EmergencyCommand::sign(EmergencyKind::Lockdown, 5, cert, &key, &mut OsRng).unwrap();
        let back = EmergencyCommand::decode(&cmd.encode()).unwrap();
        assert_eq!(
            back.verify(&root.public(), 10),
            Err(EmergencyError::NotAdmin)
        );
    }

    #[test]
    fn every_flipped_byte_fails() {
        let root = FleetRoot::generate(&mut OsRng);
        let (key, cert) = member(&root, Role::Admin);
        let bytes = EmergencyCommand::sign(EmergencyKind::Freeze, 5, cert, &key, &mut OsRng)
            .unwrap()
            .encode();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            let ok = EmergencyCommand::decode(&b)
                .map(|c| c.verify(&root.public(), 10).is_ok())
                .unwrap_or(false);
            assert!(!ok, "byte {i} flipped and the command still verifies");
        }
        for n in 0..bytes.len() {
            assert!(EmergencyCommand::decode(&bytes[..n]).is_err());
        }
    }

    #[test]
    fn replays_and_older_commands_are_not_applied() {
        let root = FleetRoot::generate(&mut OsRng);
        let (key, cert) = member(&root, Role::Admin);
        let lock = EmergencyCommand::sign(
            EmergencyKind::Lockdown,
            1_000,
            cert.clone(),
            &key,
            &mut OsRng,
        )
        .unwrap();
        let unlock =
            EmergencyCommand::sign(EmergencyKind::Unlock, 2_000, cert, &key, &mut OsRng).unwrap();
        assert_eq!(admit(None, &lock, 1_500), Admission::Apply);
        assert_eq!(admit(Some(lock.order()), &lock, 1_500), Admission::Replay);
        assert_eq!(admit(Some(lock.order()), &unlock, 2_500), Admission::Apply);
        assert_eq!(admit(Some(unlock.order()), &lock, 2_500), Admission::Replay);
        let mut future = unlock.clone();
        future.issued_at_ms = MAX_FUTURE_MS + 5_000;
        assert_eq!(admit(None, &future, 1_000), Admission::FromTheFuture);
    }

    proptest::proptest! {
        /// What the emergency topic's validator and the register exchange
        /// read from peers: random bytes, and a valid command with a byte
        /// changed, never panic, and what decodes encodes back exactly.
        #[test]
        fn hostile_bytes_decode_exactly_or_not_at_all(
            junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..MAX_COMMAND_LEN + 8),
            at in proptest::prelude::any::<proptest::sample::Index>(),
            byte in proptest::prelude::any::<u8>(),
        ) {
            let root = FleetRoot::from_secret([3; 32]);
            let key = SigningKey::from_bytes(&[4; 32]);
            let cert = root
                .issue(key.verifying_key().to_bytes(), "n", Role::Admin, 0, 100)
                .unwrap();
            let mut valid =
                EmergencyCommand::sign(EmergencyKind::Unlock, 7, cert, &key, &mut OsRng)
                    .unwrap()
                    .encode();
            let i = at.index(valid.len());
            valid[i] = byte;
            for input in [junk, valid] {
                if let Ok(cmd) = EmergencyCommand::decode(&input) {
                    proptest::prop_assert_eq!(cmd.encode(), input);
                    let _ = cmd.verify(&root.public(), 50);
                    let _ = admit_news(Some((u64::MAX, [0xff; 16])), &cmd, u64::MAX);
                    proptest::prop_assert_eq!(
                        admit(Some(cmd.order()), &cmd, u64::MAX),
                        Admission::Replay
                    );
                }
            }
        }
    }

    #[test]
    fn old_news_is_stale_but_an_old_register_entry_is_not() {
        let root = FleetRoot::generate(&mut OsRng);
        let (key, cert) = member(&root, Role::Admin);
        let lock =
            EmergencyCommand::sign(EmergencyKind::Lockdown, 1_000, cert, &key, &mut OsRng).unwrap();
        let late = 1_000 + MAX_NEWS_AGE_MS + 1;
        assert_eq!(admit_news(None, &lock, late), Admission::Stale);
        assert_eq!(admit(None, &lock, late), Admission::Apply);
        assert_eq!(
            admit_news(None, &lock, 1_000 + MAX_NEWS_AGE_MS),
            Admission::Apply
        );
        assert_eq!(
            admit_news(Some(lock.order()), &lock, 2_000),
            Admission::Replay
        );
    }
}
