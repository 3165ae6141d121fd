//! The X25519MLKEM768 hybrid key exchange (draft-ietf-tls-ecdhe-mlkem) as a
//! rustls key-exchange group.
//!
//! rustls ships this group only with its aws-lc-rs provider; osmoda uses
//! ring, so the group is built here from the same `ml-kem` and
//! `x25519-dalek` crates as the Noise handshake.
//!
//! - client share: ML-KEM-768 encapsulation key (1184 B) || X25519 public (32 B)
//! - server share: ML-KEM-768 ciphertext (1088 B) || X25519 public (32 B)
//! - shared secret: ML-KEM shared secret (32 B) || X25519 shared secret (32 B)
//!
//! The connection is secure as long as either component is.

use ml_kem::kem::{Decapsulate, Encapsulate};
use ml_kem::{EncodedSizeUser, KemCore, MlKem768};
use rand_core::OsRng;
use rustls::crypto::{ActiveKeyExchange, CompletedKeyExchange, SharedSecret, SupportedKxGroup};
use rustls::ffdhe_groups::FfdheGroup;
use rustls::{Error, NamedGroup, PeerMisbehaved, ProtocolVersion};
use x25519_dalek::{EphemeralSecret, PublicKey};
use zeroize::{Zeroize, Zeroizing};

type DecapsulationKey = <MlKem768 as KemCore>::DecapsulationKey;
type EncapsulationKey = <MlKem768 as KemCore>::EncapsulationKey;

const MLKEM_ENCAPSULATION_KEY_LEN: usize = 1184;
const MLKEM_CIPHERTEXT_LEN: usize = 1088;
const MLKEM_SHARED_SECRET_LEN: usize = 32;
const X25519_LEN: usize = 32;
/// Length of the client's key share.
pub const CLIENT_SHARE_LEN: usize = MLKEM_ENCAPSULATION_KEY_LEN + X25519_LEN;
/// Length of the server's key share.
pub const SERVER_SHARE_LEN: usize = MLKEM_CIPHERTEXT_LEN + X25519_LEN;
/// Length of the combined shared secret.
pub const SHARED_SECRET_LEN: usize = MLKEM_SHARED_SECRET_LEN + X25519_LEN;

/// The X25519MLKEM768 group. Use it through [`X25519_MLKEM768`].
#[derive(Debug)]
pub struct X25519MlKem768;

/// The one key-exchange group osmoda's TLS offers and accepts.
pub static X25519_MLKEM768: &dyn SupportedKxGroup = &X25519MlKem768;

impl SupportedKxGroup for X25519MlKem768 {
    /// Client side: a fresh ML-KEM key pair and X25519 secret.
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        let (decapsulation, encapsulation) = MlKem768::generate(&mut OsRng);
        let x25519 = EphemeralSecret::random_from_rng(OsRng);
        let mut share = Vec::with_capacity(CLIENT_SHARE_LEN);
        share.extend_from_slice(&encapsulation.as_bytes());
        share.extend_from_slice(PublicKey::from(&x25519).as_bytes());
        Ok(Box::new(ClientExchange {
            decapsulation: Box::new(decapsulation),
            x25519,
            share,
        }))
    }

    /// Server side: encapsulate to the client's key and answer its X25519
    /// share in one step, since the ciphertext depends on the client's share.
    fn start_and_complete(&self, client_share: &[u8]) -> Result<CompletedKeyExchange, Error> {
        if client_share.len() != CLIENT_SHARE_LEN {
            return Err(invalid_share());
        }
        let (encapsulation, x25519_peer) = client_share.split_at(MLKEM_ENCAPSULATION_KEY_LEN);
        let encapsulation = encapsulation_key(encapsulation)?;
        let (ciphertext, mut kem_secret) = encapsulation
            .encapsulate(&mut OsRng)
            .map_err(|()| Error::General("ML-KEM encapsulation failed".into()))?;
        let x25519 = EphemeralSecret::random_from_rng(OsRng);
        let mut share = Vec::with_capacity(SERVER_SHARE_LEN);
        share.extend_from_slice(&ciphertext);
        share.extend_from_slice(PublicKey::from(&x25519).as_bytes());
        let dh_secret = x25519_agree(x25519, x25519_peer)?;
        let secret = combine(&kem_secret, &dh_secret);
        kem_secret.as_mut_slice().zeroize();
        Ok(CompletedKeyExchange {
            group: NamedGroup::X25519MLKEM768,
            pub_key: share,
            secret,
        })
    }

    fn ffdhe_group(&self) -> Option<FfdheGroup<'static>> {
        None
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::X25519MLKEM768
    }

    fn usable_for_version(&self, version: ProtocolVersion) -> bool {
        // The group is defined for TLS 1.3 only.
        version == ProtocolVersion::TLSv1_3
    }
}

/// The client's half-finished exchange, waiting for the server's share.
struct ClientExchange {
    // Boxed: the decapsulation key is 2400 bytes.
    decapsulation: Box<DecapsulationKey>,
    x25519: EphemeralSecret,
    share: Vec<u8>,
}

impl ActiveKeyExchange for ClientExchange {
    fn complete(self: Box<Self>, server_share: &[u8]) -> Result<SharedSecret, Error> {
        if server_share.len() != SERVER_SHARE_LEN {
            return Err(invalid_share());
        }
        let (ciphertext, x25519_peer) = server_share.split_at(MLKEM_CIPHERTEXT_LEN);
        let ciphertext =
            ml_kem::Ciphertext::<MlKem768>::try_from(ciphertext).map_err(|_| invalid_share())?;
        // Decapsulation never fails on a well-sized ciphertext (implicit
        // rejection): a forged one yields a secret the server does not know.
        let mut kem_secret = self
            .decapsulation
            .decapsulate(&ciphertext)
            .map_err(|()| invalid_share())?;
        let dh_secret = x25519_agree(self.x25519, x25519_peer)?;
        let secret = combine(&kem_secret, &dh_secret);
        kem_secret.as_mut_slice().zeroize();
        Ok(secret)
    }

    fn pub_key(&self) -> &[u8] {
        &self.share
    }

    fn ffdhe_group(&self) -> Option<FfdheGroup<'static>> {
        None
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::X25519MLKEM768
    }
}

fn invalid_share() -> Error {
    Error::PeerMisbehaved(PeerMisbehaved::InvalidKeyShare)
}

/// Parses the client's ML-KEM key after the FIPS 203 §7.2 input check.
fn encapsulation_key(bytes: &[u8]) -> Result<EncapsulationKey, Error> {
    if !osmoda_fabric_proto::kem::encapsulation_key_is_canonical(bytes) {
        return Err(invalid_share());
    }
    let encoded =
        ml_kem::Encoded::<EncapsulationKey>::try_from(bytes).map_err(|_| invalid_share())?;
    Ok(EncapsulationKey::from_bytes(&encoded))
}

/// X25519 with the peer's share, refusing a result of all zeros: a low-order
/// peer point forces that value and would leave only ML-KEM protecting the key.
fn x25519_agree(secret: EphemeralSecret, peer: &[u8]) -> Result<Zeroizing<[u8; 32]>, Error> {
    let peer: [u8; X25519_LEN] = peer.try_into().map_err(|_| invalid_share())?;
    let shared = secret.diffie_hellman(&PublicKey::from(peer));
    if !shared.was_contributory() {
        return Err(invalid_share());
    }
    Ok(Zeroizing::new(shared.to_bytes()))
}

fn combine(kem_secret: &[u8], dh_secret: &[u8; 32]) -> SharedSecret {
    let mut secret = Zeroizing::new(Vec::with_capacity(SHARED_SECRET_LEN));
    secret.extend_from_slice(kem_secret);
    secret.extend_from_slice(dh_secret);
    // `SharedSecret` copies the bytes and wipes its copy on drop.
    SharedSecret::from(&secret[..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange() -> (Box<dyn ActiveKeyExchange>, CompletedKeyExchange) {
        let client = X25519MlKem768.start().unwrap();
        let server = X25519MlKem768.start_and_complete(client.pub_key()).unwrap();
        (client, server)
    }

    #[test]
    fn quic_kx_agrees_on_a_64_byte_secret() {
        let (client, server) = exchange();
        assert_eq!(client.pub_key().len(), CLIENT_SHARE_LEN);
        assert_eq!(server.pub_key.len(), SERVER_SHARE_LEN);
        assert_eq!(server.group, NamedGroup::X25519MLKEM768);
        assert_eq!(u16::from(server.group), 0x11ec);
        let client_secret = client.complete(&server.pub_key).unwrap();
        assert_eq!(client_secret.secret_bytes().len(), SHARED_SECRET_LEN);
        assert_eq!(client_secret.secret_bytes(), server.secret.secret_bytes());
    }

    #[test]
    fn quic_kx_rejects_malformed_shares() {
        let client = X25519MlKem768.start().unwrap();
        let share = client.pub_key().to_vec();
        for bad in [
            &share[..share.len() - 1],
            &[][..],
            &[0u8; CLIENT_SHARE_LEN + 1][..],
        ] {
            assert!(X25519MlKem768.start_and_complete(bad).is_err());
        }
        // A coefficient of q (0xd01) in the first slot fails the modulus check.
        let mut unreduced = share.clone();
        unreduced[0] = 0x01;
        unreduced[1] = (unreduced[1] & 0xf0) | 0x0d;
        assert!(X25519MlKem768.start_and_complete(&unreduced).is_err());
        // An all-zero X25519 share gives an all-zero X25519 secret.
        let mut low_order = share.clone();
        low_order[MLKEM_ENCAPSULATION_KEY_LEN..].fill(0);
        assert!(X25519MlKem768.start_and_complete(&low_order).is_err());

        let (client, server) = exchange();
        let mut reply = server.pub_key.clone();
        reply[MLKEM_CIPHERTEXT_LEN..].fill(0);
        assert!(client.complete(&reply).is_err());
        let (client, server) = exchange();
        assert!(client.complete(&server.pub_key[1..]).is_err());
    }

    #[test]
    fn quic_kx_interoperates_with_aws_lc_rs() {
        let theirs = rustls::crypto::aws_lc_rs::kx_group::X25519MLKEM768;
        assert_eq!(theirs.name(), X25519MlKem768.name());
        // Our client, their server.
        let client = X25519MlKem768.start().unwrap();
        let server = theirs.start_and_complete(client.pub_key()).unwrap();
        let secret = client.complete(&server.pub_key).unwrap();
        assert_eq!(secret.secret_bytes(), server.secret.secret_bytes());
        // Their client, our server.
        let client = theirs.start().unwrap();
        let server = X25519MlKem768.start_and_complete(client.pub_key()).unwrap();
        let secret = client.complete(&server.pub_key).unwrap();
        assert_eq!(secret.secret_bytes(), server.secret.secret_bytes());
    }

    #[test]
    fn quic_kx_tampered_ciphertext_gives_another_secret() {
        let (client, server) = exchange();
        let mut reply = server.pub_key.clone();
        reply[0] ^= 1;
        let secret = client.complete(&reply).unwrap();
        assert_ne!(secret.secret_bytes(), server.secret.secret_bytes());
    }
}
