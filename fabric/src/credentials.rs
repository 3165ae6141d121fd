//! The local node's keys and certificate in the forms the transports need.

use std::sync::Arc;

use libp2p::identity::{self, Keypair};
use libp2p::PeerId;
use osmoda_fabric_proto::{FleetCert, HandshakeError, LocalIdentity};
use zeroize::Zeroizing;

/// One node's credentials: its Ed25519 identity (as a libp2p key pair and as
/// raw key bytes) and its fleet certificate, with the handshake identity
/// derived from them once.
#[derive(Clone)]
pub struct Credentials {
    keypair: Keypair,
    signing: ed25519_dalek::SigningKey,
    cert: FleetCert,
    local: Arc<LocalIdentity>,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("the certificate was issued to another identity key")]
    CertificateMismatch,
    #[error("invalid identity key")]
    BadKey,
}

impl Credentials {
    pub fn new(identity_secret: &[u8; 32], cert: FleetCert) -> Result<Self, CredentialsError> {
        let signing = ed25519_dalek::SigningKey::from_bytes(identity_secret);
        let mut secret = Zeroizing::new(*identity_secret);
        let keypair =
            Keypair::ed25519_from_bytes(&mut secret[..]).map_err(|_| CredentialsError::BadKey)?;
        let local = LocalIdentity::new(&signing, cert.clone(), &mut rand::rngs::OsRng).map_err(
            |e| match e {
                HandshakeError::LocalCertificateMismatch => CredentialsError::CertificateMismatch,
                _ => CredentialsError::BadKey,
            },
        )?;
        Ok(Self {
            keypair,
            signing,
            cert,
            local: Arc::new(local),
        })
    }

    pub fn keypair(&self) -> &Keypair {
        &self.keypair
    }

    pub fn peer_id(&self) -> PeerId {
        self.keypair.public().to_peer_id()
    }

    pub fn public(&self) -> identity::PublicKey {
        self.keypair.public()
    }

    pub fn signing_key(&self) -> &ed25519_dalek::SigningKey {
        &self.signing
    }

    pub fn cert(&self) -> &FleetCert {
        &self.cert
    }

    /// Makes the TCP handshake present `bytes` instead of the certificate.
    /// Only for tests that play a peer without a valid certificate.
    #[doc(hidden)]
    pub fn presenting_certificate_bytes(
        mut self,
        bytes: Vec<u8>,
    ) -> Result<Self, CredentialsError> {
        let local = LocalIdentity::new(&self.signing, self.cert.clone(), &mut rand::rngs::OsRng)
            .map_err(|_| CredentialsError::CertificateMismatch)?;
        self.local = Arc::new(local.presenting_certificate_bytes(bytes));
        Ok(self)
    }

    pub fn handshake_identity(&self) -> Arc<LocalIdentity> {
        self.local.clone()
    }
}
