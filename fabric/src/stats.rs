//! Handshake counts, kept by the transports, read by the node's metrics.
//!
//! Every label here is a fixed enum: a peer can make the counts grow, never
//! the set of counts, whatever it sends.

use std::sync::atomic::{AtomicU64, Ordering};

use osmoda_fabric_proto::{CertError, HandshakeError};

use crate::membership::Security;
use crate::pq_tcp::PqError;
use crate::quic::cert::PeerCertError;

/// Why a handshake was refused, coarse enough to stay a handful of values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Issued for another fleet, or (TCP) a message that did not decrypt,
    /// which is how a peer of another fleet or protocol looks.
    OtherFleet,
    /// Expired or not yet valid.
    Expired,
    Revoked,
    /// A certificate or identity signature that does not verify, or that
    /// belongs to another key or node.
    BadCertificate,
    /// Bytes that do not parse, or a protocol step out of turn.
    Malformed,
    /// The connection failed during the handshake. One that outlived
    /// the handshake timeout is dropped by the transport, uncounted.
    Io,
}

impl Refusal {
    pub const ALL: [Refusal; 6] = [
        Refusal::OtherFleet,
        Refusal::Expired,
        Refusal::Revoked,
        Refusal::BadCertificate,
        Refusal::Malformed,
        Refusal::Io,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::OtherFleet => "other_fleet",
            Refusal::Expired => "expired",
            Refusal::Revoked => "revoked",
            Refusal::BadCertificate => "bad_certificate",
            Refusal::Malformed => "malformed",
            Refusal::Io => "io",
        }
    }

    fn of_cert(e: &CertError) -> Self {
        match e {
            CertError::WrongFleet => Refusal::OtherFleet,
            CertError::Expired { .. } | CertError::NotYetValid { .. } => Refusal::Expired,
            CertError::Malformed | CertError::Version(_) | CertError::UnknownRole(_) => {
                Refusal::Malformed
            }
            _ => Refusal::BadCertificate,
        }
    }

    pub(crate) fn of_tcp(e: &PqError) -> Option<Self> {
        Some(match e {
            PqError::Handshake(h) => match h {
                HandshakeError::Decrypt(_) => Refusal::OtherFleet,
                HandshakeError::Certificate(c) => Refusal::of_cert(c),
                HandshakeError::Revoked => Refusal::Revoked,
                HandshakeError::BadIdentitySignature
                | HandshakeError::CertificateMismatch
                | HandshakeError::NotAnIssuer => Refusal::BadCertificate,
                // Our own credentials are wrong: not the peer's refusal.
                HandshakeError::LocalCertificateMismatch => return None,
                HandshakeError::Malformed(_)
                | HandshakeError::WeakKey
                | HandshakeError::OutOfTurn(_)
                | HandshakeError::Failed => Refusal::Malformed,
            },
            PqError::Io(_) => Refusal::Io,
            PqError::BadPeerKey => Refusal::BadCertificate,
            PqError::TooLong(_) => Refusal::Malformed,
            // Enrollment is not a member's handshake.
            PqError::Enrolled | PqError::NoEnrollments => return None,
        })
    }

    pub(crate) fn of_quic(e: &PeerCertError) -> Self {
        match e {
            PeerCertError::NotMember(c) | PeerCertError::BadFleetCert(c) => Refusal::of_cert(c),
            PeerCertError::Revoked => Refusal::Revoked,
            PeerCertError::Missing
            | PeerCertError::Intermediates
            | PeerCertError::Malformed
            | PeerCertError::MissingFleetCert
            | PeerCertError::DuplicateFleetCert
            | PeerCertError::UnknownCriticalExtension(_) => Refusal::Malformed,
            PeerCertError::NotEd25519
            | PeerCertError::BadSelfSignature
            | PeerCertError::KeyMismatch
            | PeerCertError::UnexpectedPeer => Refusal::BadCertificate,
        }
    }
}

const TRANSPORTS: usize = 2;

fn slot(security: Security) -> usize {
    match security {
        Security::NoiseHybrid => 0,
        Security::TlsHybrid => 1,
    }
}

/// Handshakes since start, by transport: accepted, and refused by reason.
/// On QUIC the count is of the peer's certificate checks (TLS refuses a
/// peer without the hybrid group before any certificate is seen).
#[derive(Debug, Default)]
pub struct HandshakeStats {
    accepted: [AtomicU64; TRANSPORTS],
    refused: [[AtomicU64; Refusal::ALL.len()]; TRANSPORTS],
}

impl HandshakeStats {
    pub(crate) fn accepted(&self, security: Security) {
        self.accepted[slot(security)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn refused(&self, security: Security, reason: Refusal) {
        self.refused[slot(security)][reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn accepted_count(&self, security: Security) -> u64 {
        self.accepted[slot(security)].load(Ordering::Relaxed)
    }

    pub fn refused_count(&self, security: Security, reason: Refusal) -> u64 {
        self.refused[slot(security)][reason as usize].load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_has_its_own_count() {
        let stats = HandshakeStats::default();
        for (i, reason) in Refusal::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i);
            stats.refused(Security::TlsHybrid, *reason);
        }
        stats.accepted(Security::NoiseHybrid);
        assert_eq!(stats.accepted_count(Security::NoiseHybrid), 1);
        assert_eq!(stats.accepted_count(Security::TlsHybrid), 0);
        for reason in Refusal::ALL {
            assert_eq!(stats.refused_count(Security::TlsHybrid, reason), 1);
            assert_eq!(stats.refused_count(Security::NoiseHybrid, reason), 0);
        }
    }
}
