//! rustls certificate verifiers that admit fleet members only.
//!
//! One type serves both directions: as a [`ServerCertVerifier`] the dialer
//! checks the listener, as a [`ClientCertVerifier`] the listener checks the
//! dialer (client authentication is mandatory). Both run the fleet checks
//! of [`cert`](super::cert) and verify the TLS 1.3 handshake signature with
//! the certificate's key.

use std::fmt;
use std::sync::Arc;

use osmoda_fabric_proto::NodeKey;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError, SignatureScheme,
};

use super::cert::{verify_peer_certificate, PeerCertError};
use crate::{Membership, Security};

/// Certificates carry Ed25519 identity keys, so that is the only scheme.
const SCHEMES: &[SignatureScheme] = &[SignatureScheme::ED25519];

/// Admits a peer whose certificate passes the fleet checks.
pub struct FleetVerifier {
    membership: Arc<Membership>,
    /// When dialing a known peer: the identity key it must present.
    expected: Option<NodeKey>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl FleetVerifier {
    /// `algorithms` should be the crypto provider's
    /// `signature_verification_algorithms`.
    pub fn new(
        membership: Arc<Membership>,
        expected: Option<NodeKey>,
        algorithms: WebPkiSupportedAlgorithms,
    ) -> Self {
        Self {
            membership,
            expected,
            algorithms,
        }
    }

    fn verify_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), Error> {
        let checked =
            verify_peer_certificate(end_entity, intermediates, &self.membership, now.as_secs())
                .and_then(|cert| match self.expected {
                    Some(expected) if expected != cert.node => Err(PeerCertError::UnexpectedPeer),
                    _ => Ok(()),
                });
        if let Err(e) = &checked {
            self.membership
                .handshakes()
                .refused(Security::TlsHybrid, crate::stats::Refusal::of_quic(e));
        }
        Ok(checked?)
    }

    fn verify_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        if !SCHEMES.contains(&dss.scheme) {
            return Err(Error::InvalidCertificate(CertificateError::BadSignature));
        }
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
}

impl fmt::Debug for FleetVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetVerifier")
            .field("fleet", &osmoda_fabric_proto::hex(&self.membership.fleet()))
            .field(
                "expected",
                &self.expected.map(|k| osmoda_fabric_proto::hex(&k)),
            )
            .finish()
    }
}

impl From<PeerCertError> for Error {
    fn from(e: PeerCertError) -> Self {
        Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
    }
}

/// Only TLS 1.3 is configured; a TLS 1.2 signature means something is wrong.
fn tls12_refused() -> Error {
    Error::General("TLS 1.2 signatures are refused: osmoda speaks TLS 1.3 only".into())
}

impl ServerCertVerifier for FleetVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        // Names mean nothing here: the dialer checks membership and, when it
        // dialed a /p2p/ address, the identity key itself.
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.verify_cert(end_entity, intermediates, now)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        SCHEMES.to_vec()
    }
}

impl ClientCertVerifier for FleetVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No CA: membership is checked from the certificate itself.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.verify_cert(end_entity, intermediates, now)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        SCHEMES.to_vec()
    }
}
