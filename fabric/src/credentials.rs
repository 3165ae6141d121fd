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

/// Why a renewed certificate cannot replace the current one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenewalError {
    #[error("the renewed certificate is for another node")]
    OtherNode,
    #[error("the renewed certificate is for another fleet")]
    OtherFleet,
    #[error("the renewed certificate changes the role from {held} to {offered}")]
    OtherRole { held: String, offered: String },
    #[error("the renewed certificate expires no later than the current one")]
    NotLater,
    #[error("the renewed certificate is not valid now: {0}")]
    Invalid(String),
}

/// This node's credentials as they stand now. Renewal replaces the
/// certificate (the keys stay) while the node runs, and every handshake,
/// gossip envelope and document seal made afterwards presents the new one;
/// connections made before keep running, since the peer's record of this
/// node is refreshed with the new certificate rather than re-established.
#[derive(Clone)]
pub struct LiveCredentials {
    current: Arc<std::sync::RwLock<Credentials>>,
    /// Counts renewals; the fabric loop waits on it to tell its peers.
    renewals: Arc<tokio::sync::watch::Sender<u64>>,
}

impl From<Credentials> for LiveCredentials {
    fn from(credentials: Credentials) -> Self {
        Self {
            current: Arc::new(std::sync::RwLock::new(credentials)),
            renewals: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }
}

impl LiveCredentials {
    /// The credentials now (a cheap clone: the keys and one certificate).
    pub fn current(&self) -> Credentials {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn cert(&self) -> FleetCert {
        self.current().cert
    }

    pub fn handshake_identity(&self) -> Arc<LocalIdentity> {
        self.current().local
    }

    /// Wakes after every renewal.
    pub fn watch_renewals(&self) -> tokio::sync::watch::Receiver<u64> {
        self.renewals.subscribe()
    }

    /// Replaces the certificate with `cert`, a renewal of it: same node,
    /// fleet and role, valid at `now` (Unix seconds) against the fleet
    /// root, and expiring later.
    pub fn renew(&self, cert: FleetCert, now: u64) -> Result<(), RenewalError> {
        let mut current = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        check_renewal(&current.cert, &cert, now)?;
        let local = LocalIdentity::new(&current.signing, cert.clone(), &mut rand::rngs::OsRng)
            .map_err(|e| RenewalError::Invalid(e.to_string()))?;
        current.cert = cert;
        current.local = Arc::new(local);
        drop(current);
        self.renewals.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Whether `cert` would be taken by [`Self::renew`] now.
    pub fn check_renewal(&self, cert: &FleetCert, now: u64) -> Result<(), RenewalError> {
        check_renewal(&self.cert(), cert, now)
    }
}

fn check_renewal(held: &FleetCert, cert: &FleetCert, now: u64) -> Result<(), RenewalError> {
    if cert.node != held.node {
        return Err(RenewalError::OtherNode);
    }
    if cert.fleet != held.fleet {
        return Err(RenewalError::OtherFleet);
    }
    if cert.role != held.role {
        return Err(RenewalError::OtherRole {
            held: held.role.to_string(),
            offered: cert.role.to_string(),
        });
    }
    if cert.expires_at <= held.expires_at {
        return Err(RenewalError::NotLater);
    }
    cert.verify(&held.fleet, now)
        .map_err(|e| RenewalError::Invalid(e.to_string()))
}
