//! From a QUIC handshake in progress to a verified peer and its muxer.

use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use osmoda_fabric_proto::FleetCert;
use quinn::VarInt;
use rustls::pki_types::CertificateDer;

use super::cert::{unix_now, verify_peer_certificate, PeerCertError};
use super::tls::ALPN;
use super::{QuicError, QuicMuxer};
use crate::membership::{peer_id_of, PeerRecord, Security};
use crate::Membership;

/// Application close code for a connection refused after the handshake.
const CLOSE_REFUSED: u32 = 1;

/// Waits for the handshake, checks the peer and records it.
///
/// The TLS verifiers already refused non-members inside the handshake; the
/// check is run again here on the certificate quinn kept, because that is
/// where the verified fleet certificate and peer id come from, and because
/// a revocation may have arrived while the handshake ran.
pub(crate) async fn establish(
    connecting: quinn::Connecting,
    timeout: Duration,
    membership: Arc<Membership>,
    expected: Option<PeerId>,
) -> Result<(PeerId, QuicMuxer), QuicError> {
    // Dropping `connecting` on timeout abandons the connection.
    let connection = tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| QuicError::HandshakeTimedOut(timeout))??;
    match identify(&connection, &membership, expected) {
        Ok((peer, cert)) => {
            membership.record_peer(
                peer,
                PeerRecord {
                    cert,
                    security: Security::TlsHybrid,
                },
            );
            Ok((peer, QuicMuxer::new(connection)))
        }
        Err(error) => {
            connection.close(VarInt::from_u32(CLOSE_REFUSED), b"refused");
            Err(error)
        }
    }
}

fn identify(
    connection: &quinn::Connection,
    membership: &Membership,
    expected: Option<PeerId>,
) -> Result<(PeerId, FleetCert), QuicError> {
    let alpn = connection
        .handshake_data()
        .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|data| data.protocol);
    if alpn.as_deref() != Some(ALPN) {
        return Err(QuicError::Alpn);
    }
    // quinn's rustls session reports the peer's chain as this type.
    let chain = connection
        .peer_identity()
        .and_then(|identity| identity.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or(PeerCertError::Missing)?;
    let (end_entity, intermediates) = chain.split_first().ok_or(PeerCertError::Missing)?;
    let cert = verify_peer_certificate(end_entity, intermediates, membership, unix_now())?;
    let peer = peer_id_of(&cert.node).ok_or(PeerCertError::NotEd25519)?;
    match expected {
        Some(expected) if expected != peer => Err(QuicError::UnexpectedPeer {
            expected: Box::new(expected),
            actual: Box::new(peer),
        }),
        _ => Ok((peer, cert)),
    }
}
