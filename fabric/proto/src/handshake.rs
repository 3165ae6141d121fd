//! The hybrid post-quantum handshake as a sans-IO state machine.
//!
//! Pattern `XXhfs` from the Noise Hybrid Forward Secrecy extension, with
//! X25519 and ML-KEM-768 both mixed into the chaining key:
//!
//! ```text
//! -> e, e1
//! <- e, ee, ekem1, s, es     + payload (responder's identity and certificate)
//! -> s, se                   + payload (initiator's identity and certificate)
//! ```
//!
//! The same pattern, under its own prologue, admits a node that has no
//! certificate yet to one exchange only: enrollment (see [`crate::enroll`]).
//! There the initiator is the enrollee, whose payload carries no
//! certificate, and the responder must be an admin that may issue.
//!
//! The caller moves bytes; this module never does IO, never reads a clock
//! (`now` is an argument) and draws randomness only from the generator it is
//! given. Every failure is a [`HandshakeError`]; after one, the state machine
//! refuses all further input. Framing on the wire (a 2-byte length before each
//! message) belongs to the caller; see `docs/protocol.md`.

use ed25519_dalek::{Signer, SigningKey};
use ml_kem::kem::{Decapsulate, Encapsulate};
use ml_kem::{EncodedSizeUser, KemCore, MlKem768};
use osmoda_wire::Reader;
use rand_core::CryptoRngCore;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::cert::{verify_signed, CertError, FleetCert, MAX_CERT_LEN};
use crate::noise::{CipherError, SymmetricState, HASHLEN, TAGLEN};
use crate::session::Session;
use crate::{FleetKey, NodeKey};

/// Hashed into the handshake; a peer with any other name fails at message 2.
pub const PROTOCOL_NAME: &str = "Noise_XXhfs_25519+MLKEM768_AESGCM_SHA256";
/// The prologue is this prefix followed by the fleet id, so that members of
/// different fleets can never complete a handshake with each other.
pub const PROLOGUE_PREFIX: &[u8] = b"osmoda/1\n";
/// The prologue prefix of an enrollment handshake: a member handshake and
/// an enrollment can never be mistaken for one another.
pub const ENROLL_PROLOGUE_PREFIX: &[u8] = b"osmoda-enroll/1\n";
/// What the identity key signs, followed by the X25519 static public key.
pub const STATIC_KEY_CONTEXT: &[u8] = b"osmoda-noise-static-key:";
/// Largest handshake message, as for Noise.
pub const MAX_MESSAGE_LEN: usize = 65535;

const PAYLOAD_VERSION: u8 = 1;
const DH_LEN: usize = 32;
const KEM_PUBLIC_LEN: usize = 1184;
const KEM_CIPHERTEXT_LEN: usize = 1088;
/// Length of the first message: `e` and `e1`, both in clear.
pub const MESSAGE1_LEN: usize = DH_LEN + KEM_PUBLIC_LEN;
const MAX_PAYLOAD_LEN: usize = 1 + 32 + 64 + 2 + MAX_CERT_LEN;

type KemDecapsulationKey = <MlKem768 as KemCore>::DecapsulationKey;
type KemEncapsulationKey = <MlKem768 as KemCore>::EncapsulationKey;

/// Which end of the connection this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Initiator,
    Responder,
}

/// Why a handshake failed. None of these is a panic; each ends the handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("handshake message {0} is malformed")]
    Malformed(u8),
    #[error("handshake message {0} does not authenticate: tampered bytes, or a peer of another fleet or protocol")]
    Decrypt(u8),
    #[error("peer sent a low-order X25519 key")]
    WeakKey,
    #[error("the peer's identity signature over its static key does not verify")]
    BadIdentitySignature,
    #[error("the peer's fleet certificate was refused: {0}")]
    Certificate(#[from] CertError),
    #[error("the peer's certificate was issued to another node")]
    CertificateMismatch,
    #[error("the peer's membership has been revoked")]
    Revoked,
    #[error("the enrolling peer is not an admin that may issue certificates")]
    NotAnIssuer,
    #[error("the local certificate was not issued to the local identity key")]
    LocalCertificateMismatch,
    #[error("handshake used out of turn ({0})")]
    OutOfTurn(&'static str),
    #[error("an earlier error ended this handshake")]
    Failed,
}

/// The local node's credentials for handshakes: the long-lived identity key,
/// its fleet certificate (none for an enrollee), and an X25519 static key
/// signed by the identity.
pub struct LocalIdentity {
    fleet: FleetKey,
    node: NodeKey,
    cert: Option<FleetCert>,
    cert_bytes: Vec<u8>,
    static_secret: StaticSecret,
    static_public: PublicKey,
    static_sig: [u8; 64],
}

impl LocalIdentity {
    /// Binds a fresh X25519 static key to `identity` with a signature.
    pub fn new(
        identity: &SigningKey,
        cert: FleetCert,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self, HandshakeError> {
        if cert.node != identity.verifying_key().to_bytes() {
            return Err(HandshakeError::LocalCertificateMismatch);
        }
        let mut local = Self::enrollee(identity, cert.fleet, rng);
        local.cert_bytes = cert.encode();
        local.cert = Some(cert);
        Ok(local)
    }

    /// A node that has no certificate yet, for an enrollment handshake with
    /// an admin of `fleet` only: a member handshake refuses it.
    pub fn enrollee(identity: &SigningKey, fleet: FleetKey, rng: &mut impl CryptoRngCore) -> Self {
        let static_secret = StaticSecret::random_from_rng(&mut *rng);
        let static_public = PublicKey::from(&static_secret);
        let mut msg = STATIC_KEY_CONTEXT.to_vec();
        msg.extend_from_slice(static_public.as_bytes());
        let static_sig = identity.sign(&msg).to_bytes();
        Self {
            fleet,
            node: identity.verifying_key().to_bytes(),
            cert: None,
            cert_bytes: Vec::new(),
            static_secret,
            static_public,
            static_sig,
        }
    }

    /// The certificate presented, none for an enrollee.
    pub fn cert(&self) -> Option<&FleetCert> {
        self.cert.as_ref()
    }

    /// Presents `bytes` in place of the certificate in handshakes. Only for
    /// tests that play a peer without a valid certificate.
    #[doc(hidden)]
    pub fn presenting_certificate_bytes(mut self, bytes: Vec<u8>) -> Self {
        self.cert_bytes = bytes;
        self
    }

    pub fn fleet(&self) -> FleetKey {
        self.fleet
    }

    pub fn node(&self) -> NodeKey {
        self.node
    }

    fn payload(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAX_PAYLOAD_LEN);
        out.push(PAYLOAD_VERSION);
        out.extend_from_slice(&self.node);
        out.extend_from_slice(&self.static_sig);
        out.extend_from_slice(&(self.cert_bytes.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.cert_bytes);
        out
    }
}

/// The verified remote end of a finished handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub node: NodeKey,
    pub cert: FleetCert,
}

/// Which handshake: between members, or a node enrolling with an admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Member,
    /// The initiator presents no certificate; the responder must be an
    /// admin that may issue. Finish the responder with
    /// [`Handshake::finish_enrollee`].
    Enrollment,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    WriteMessage1,
    ReadMessage1,
    WriteMessage2,
    ReadMessage2,
    WriteMessage3,
    ReadMessage3,
    Done,
    Failed,
}

/// One handshake, from either side. Drive it with [`Handshake::write_message`]
/// and [`Handshake::read_message`] while [`Handshake::wants_to_write`] and
/// [`Handshake::is_finished`] say which is due, then call
/// [`Handshake::finish`].
pub struct Handshake<'a> {
    side: Side,
    mode: Mode,
    step: Step,
    local: &'a LocalIdentity,
    ss: SymmetricState,
    e: StaticSecret,
    e_public: PublicKey,
    e1: Option<KemDecapsulationKey>,
    re: Option<PublicKey>,
    re1: Option<Box<KemEncapsulationKey>>,
    rs: Option<PublicKey>,
    remote: Option<PeerIdentity>,
    /// The enrollee's identity key, on an admin's side of an enrollment.
    enrollee: Option<NodeKey>,
}

impl<'a> Handshake<'a> {
    /// A handshake between members.
    pub fn new(side: Side, local: &'a LocalIdentity, rng: &mut impl CryptoRngCore) -> Self {
        Self::with_mode(side, Mode::Member, local, rng)
    }

    /// A handshake of `mode`. An enrollment's initiator is the enrollee.
    pub fn with_mode(
        side: Side,
        mode: Mode,
        local: &'a LocalIdentity,
        rng: &mut impl CryptoRngCore,
    ) -> Self {
        let mut ss = SymmetricState::initialize(PROTOCOL_NAME.as_bytes());
        let mut prologue = match mode {
            Mode::Member => PROLOGUE_PREFIX.to_vec(),
            Mode::Enrollment => ENROLL_PROLOGUE_PREFIX.to_vec(),
        };
        prologue.extend_from_slice(&local.fleet());
        ss.mix_hash(&prologue);
        let e = StaticSecret::random_from_rng(&mut *rng);
        let e_public = PublicKey::from(&e);
        let e1 = match side {
            Side::Initiator => Some(MlKem768::generate(rng).0),
            Side::Responder => None,
        };
        Self {
            side,
            mode,
            step: match side {
                Side::Initiator => Step::WriteMessage1,
                Side::Responder => Step::ReadMessage1,
            },
            local,
            ss,
            e,
            e_public,
            e1,
            re: None,
            re1: None,
            rs: None,
            remote: None,
            enrollee: None,
        }
    }

    pub fn side(&self) -> Side {
        self.side
    }

    /// True when the next step is to send a message.
    pub fn wants_to_write(&self) -> bool {
        matches!(
            self.step,
            Step::WriteMessage1 | Step::WriteMessage2 | Step::WriteMessage3
        )
    }

    /// True when both sides have everything they need.
    pub fn is_finished(&self) -> bool {
        self.step == Step::Done
    }

    /// Produces the next handshake message.
    pub fn write_message(
        &mut self,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<u8>, HandshakeError> {
        let result = match self.step {
            Step::WriteMessage1 => self.write_message1(),
            Step::WriteMessage2 => self.write_message2(rng),
            Step::WriteMessage3 => self.write_message3(),
            Step::Failed => Err(HandshakeError::Failed),
            _ => Err(HandshakeError::OutOfTurn("not our turn to write")),
        };
        self.track(result)
    }

    /// Consumes the peer's next handshake message. `now` is Unix time in
    /// seconds, for certificate validity; `is_revoked` says whether a node's
    /// membership has been revoked.
    pub fn read_message(
        &mut self,
        msg: &[u8],
        now: u64,
        is_revoked: &dyn Fn(&NodeKey) -> bool,
    ) -> Result<(), HandshakeError> {
        let result = match self.step {
            Step::ReadMessage1 => self.read_message1(msg),
            Step::ReadMessage2 => self.read_message2(msg, now, is_revoked),
            Step::ReadMessage3 => self.read_message3(msg, now, is_revoked),
            Step::Failed => Err(HandshakeError::Failed),
            _ => Err(HandshakeError::OutOfTurn("not our turn to read")),
        };
        self.track(result)
    }

    /// The transport session and the verified peer, once finished.
    pub fn finish(self) -> Result<(Session, PeerIdentity), HandshakeError> {
        let remote = self.remote.clone();
        let session = self.session()?;
        let remote = remote.ok_or(HandshakeError::OutOfTurn("no verified peer"))?;
        Ok((session, remote))
    }

    /// On an admin's side of an enrollment: the transport session and the
    /// identity key of the enrollee, who proved it holds that key and
    /// nothing more. It is not a member: serve it the enrollment only.
    pub fn finish_enrollee(self) -> Result<(Session, NodeKey), HandshakeError> {
        let enrollee = self.enrollee;
        let session = self.session()?;
        let enrollee = enrollee.ok_or(HandshakeError::OutOfTurn("no enrollee"))?;
        Ok((session, enrollee))
    }

    fn session(self) -> Result<Session, HandshakeError> {
        match self.step {
            Step::Done => {
                let (c1, c2) = self.ss.split();
                Ok(match self.side {
                    Side::Initiator => Session::new(c1, c2, self.ss.handshake_hash()),
                    Side::Responder => Session::new(c2, c1, self.ss.handshake_hash()),
                })
            }
            Step::Failed => Err(HandshakeError::Failed),
            _ => Err(HandshakeError::OutOfTurn("handshake not finished")),
        }
    }

    fn track<T>(&mut self, result: Result<T, HandshakeError>) -> Result<T, HandshakeError> {
        if result.is_err() && self.step != Step::Failed {
            self.step = Step::Failed;
        }
        result
    }

    fn dh(&mut self, secret: DhSecret, remote: PublicKey) -> Result<(), HandshakeError> {
        let secret = match secret {
            DhSecret::Ephemeral => &self.e,
            DhSecret::Static => &self.local.static_secret,
        };
        let shared = secret.diffie_hellman(&remote);
        if !shared.was_contributory() {
            return Err(HandshakeError::WeakKey);
        }
        self.ss.mix_key(shared.as_bytes());
        Ok(())
    }

    // -> e, e1
    fn write_message1(&mut self) -> Result<Vec<u8>, HandshakeError> {
        let mut out = Vec::with_capacity(MESSAGE1_LEN);
        out.extend_from_slice(self.e_public.as_bytes());
        self.ss.mix_hash(self.e_public.as_bytes());
        let e1 = self.e1.as_ref().ok_or(HandshakeError::Failed)?;
        let e1_public = e1.encapsulation_key().as_bytes();
        out.extend_from_slice(&self.ss.encrypt_and_hash(&e1_public).map_err(cipher(1))?);
        out.extend_from_slice(&self.ss.encrypt_and_hash(&[]).map_err(cipher(1))?);
        self.step = Step::ReadMessage2;
        Ok(out)
    }

    fn read_message1(&mut self, msg: &[u8]) -> Result<(), HandshakeError> {
        if msg.len() != MESSAGE1_LEN {
            return Err(HandshakeError::Malformed(1));
        }
        let mut r = Reader::new(msg);
        let re = PublicKey::from(r.array::<DH_LEN>().map_err(malformed(1))?);
        self.ss.mix_hash(re.as_bytes());
        let re1 = self
            .ss
            .decrypt_and_hash(r.bytes(KEM_PUBLIC_LEN).map_err(malformed(1))?)
            .map_err(cipher(1))?;
        if !crate::kem::encapsulation_key_is_canonical(&re1) {
            return Err(HandshakeError::Malformed(1));
        }
        let re1 = ml_kem::Encoded::<KemEncapsulationKey>::try_from(re1.as_slice())
            .map_err(|_| HandshakeError::Malformed(1))?;
        self.re1 = Some(Box::new(KemEncapsulationKey::from_bytes(&re1)));
        let payload = self.ss.decrypt_and_hash(&[]).map_err(cipher(1))?;
        if !payload.is_empty() {
            return Err(HandshakeError::Malformed(1));
        }
        self.re = Some(re);
        self.step = Step::WriteMessage2;
        Ok(())
    }

    // <- e, ee, ekem1, s, es
    fn write_message2(&mut self, rng: &mut impl CryptoRngCore) -> Result<Vec<u8>, HandshakeError> {
        let re = self.re.ok_or(HandshakeError::Failed)?;
        let re1 = self.re1.take().ok_or(HandshakeError::Failed)?;
        let mut out = Vec::with_capacity(2048);
        out.extend_from_slice(self.e_public.as_bytes());
        self.ss.mix_hash(self.e_public.as_bytes());
        self.dh(DhSecret::Ephemeral, re)?; // ee
        let (kem_ct, kem_ss) = re1
            .encapsulate(rng)
            .map_err(|()| HandshakeError::Malformed(1))?;
        out.extend_from_slice(&self.ss.encrypt_and_hash(&kem_ct).map_err(cipher(2))?);
        self.ss.mix_key(&kem_ss); // ekem1: the ciphertext is hashed before its secret is mixed
        self.write_static_and_payload(2, re, &mut out)?; // s, es
        self.step = Step::ReadMessage3;
        Ok(out)
    }

    fn read_message2(
        &mut self,
        msg: &[u8],
        now: u64,
        is_revoked: &dyn Fn(&NodeKey) -> bool,
    ) -> Result<(), HandshakeError> {
        if msg.len() > MAX_MESSAGE_LEN {
            return Err(HandshakeError::Malformed(2));
        }
        let mut r = Reader::new(msg);
        let re = PublicKey::from(r.array::<DH_LEN>().map_err(malformed(2))?);
        self.ss.mix_hash(re.as_bytes());
        self.re = Some(re);
        self.dh(DhSecret::Ephemeral, re)?; // ee
        let kem_ct = self
            .ss
            .decrypt_and_hash(r.bytes(KEM_CIPHERTEXT_LEN + TAGLEN).map_err(malformed(2))?)
            .map_err(cipher(2))?;
        let kem_ct = ml_kem::Ciphertext::<MlKem768>::try_from(kem_ct.as_slice())
            .map_err(|_| HandshakeError::Malformed(2))?;
        let e1 = self.e1.take().ok_or(HandshakeError::Failed)?;
        let kem_ss = e1
            .decapsulate(&kem_ct)
            .map_err(|()| HandshakeError::Decrypt(2))?;
        self.ss.mix_key(&kem_ss);
        self.read_static_and_payload(2, &mut r, now, is_revoked)?; // s, es
        self.step = Step::WriteMessage3;
        Ok(())
    }

    // -> s, se
    fn write_message3(&mut self) -> Result<Vec<u8>, HandshakeError> {
        let re = self.re.ok_or(HandshakeError::Failed)?;
        let mut out = Vec::with_capacity(512);
        self.write_static_and_payload(3, re, &mut out)?; // s, se
        self.step = Step::Done;
        Ok(out)
    }

    fn read_message3(
        &mut self,
        msg: &[u8],
        now: u64,
        is_revoked: &dyn Fn(&NodeKey) -> bool,
    ) -> Result<(), HandshakeError> {
        if msg.len() > MAX_MESSAGE_LEN {
            return Err(HandshakeError::Malformed(3));
        }
        let mut r = Reader::new(msg);
        self.read_static_and_payload(3, &mut r, now, is_revoked)?; // s, se
        self.step = Step::Done;
        Ok(())
    }

    /// `s` followed by the DH of our static key with the peer's ephemeral
    /// (`es` for the responder, `se` for the initiator), then our payload.
    fn write_static_and_payload(
        &mut self,
        message: u8,
        re: PublicKey,
        out: &mut Vec<u8>,
    ) -> Result<(), HandshakeError> {
        let s = self.local.static_public;
        out.extend_from_slice(
            &self
                .ss
                .encrypt_and_hash(s.as_bytes())
                .map_err(cipher(message))?,
        );
        self.dh(DhSecret::Static, re)?;
        let payload = self.local.payload();
        out.extend_from_slice(
            &self
                .ss
                .encrypt_and_hash(&payload)
                .map_err(cipher(message))?,
        );
        Ok(())
    }

    /// The peer's `s`, the DH of our ephemeral with it, then the peer's
    /// payload, which must prove membership. The payload is the rest of `r`.
    fn read_static_and_payload(
        &mut self,
        message: u8,
        r: &mut Reader<'_>,
        now: u64,
        is_revoked: &dyn Fn(&NodeKey) -> bool,
    ) -> Result<(), HandshakeError> {
        let rs = self
            .ss
            .decrypt_and_hash(r.bytes(DH_LEN + TAGLEN).map_err(malformed(message))?)
            .map_err(cipher(message))?;
        let rs =
            <[u8; 32]>::try_from(rs.as_slice()).map_err(|_| HandshakeError::Malformed(message))?;
        let rs = PublicKey::from(rs);
        self.rs = Some(rs);
        self.dh(DhSecret::Ephemeral, rs)?;
        let rest = r.bytes(r.remaining()).map_err(malformed(message))?;
        let payload = self.ss.decrypt_and_hash(rest).map_err(cipher(message))?;
        let enrollee = self.mode == Mode::Enrollment && self.side == Side::Responder;
        let (node, cert) = self.verify_payload(message, &payload, rs, enrollee)?;
        match cert {
            // An enrollee has no membership to check; not revoked is all.
            None if is_revoked(&node) => return Err(HandshakeError::Revoked),
            None => self.enrollee = Some(node),
            Some(cert) => {
                cert.verify(&self.local.fleet(), now)?;
                if cert.chain_revoked(is_revoked) {
                    return Err(HandshakeError::Revoked);
                }
                if self.mode == Mode::Enrollment && !cert.may_issue() {
                    return Err(HandshakeError::NotAnIssuer);
                }
                self.remote = Some(PeerIdentity { node, cert });
            }
        }
        Ok(())
    }

    /// Checks the peer's payload: its identity key signed the static key that
    /// the handshake authenticated, and it carries a certificate naming
    /// that key (an enrollee: exactly no certificate). The caller checks the
    /// certificate's chain.
    fn verify_payload(
        &self,
        message: u8,
        payload: &[u8],
        rs: PublicKey,
        enrollee: bool,
    ) -> Result<(NodeKey, Option<FleetCert>), HandshakeError> {
        if payload.len() > MAX_PAYLOAD_LEN {
            return Err(HandshakeError::Malformed(message));
        }
        let mut r = Reader::new(payload);
        let bad = malformed(message);
        let version = r.u8().map_err(&bad)?;
        let node: [u8; 32] = r.array().map_err(&bad)?;
        let sig: [u8; 64] = r.array().map_err(&bad)?;
        let cert_len = r.u16().map_err(&bad)? as usize;
        let cert = r.bytes(cert_len).map_err(&bad)?;
        r.finish().map_err(malformed(message))?;
        if version != PAYLOAD_VERSION {
            return Err(HandshakeError::Malformed(message));
        }
        verify_signed(&node, STATIC_KEY_CONTEXT, rs.as_bytes(), &sig)
            .map_err(|_| HandshakeError::BadIdentitySignature)?;
        if enrollee {
            return match cert.is_empty() {
                true => Ok((node, None)),
                false => Err(HandshakeError::Malformed(message)),
            };
        }
        let cert = FleetCert::decode(cert)?;
        if cert.node != node {
            return Err(HandshakeError::CertificateMismatch);
        }
        Ok((node, Some(cert)))
    }
}

#[derive(Clone, Copy)]
enum DhSecret {
    Ephemeral,
    Static,
}

fn malformed<E>(message: u8) -> impl Fn(E) -> HandshakeError {
    move |_| HandshakeError::Malformed(message)
}

fn cipher(message: u8) -> impl Fn(CipherError) -> HandshakeError {
    move |e| match e {
        CipherError::Decrypt => HandshakeError::Decrypt(message),
        CipherError::NonceExhausted => HandshakeError::Failed,
    }
}

const _: () = assert!(HASHLEN == 32);

#[cfg(test)]
mod tests;
