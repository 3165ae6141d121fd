//! QUIC transport for libp2p whose TLS 1.3 handshake is post-quantum hybrid
//! and admits fleet members only.
//!
//! # Design
//!
//! - **TLS** ([`tls`]): TLS 1.3 only, TLS 1.3 cipher suites only, ALPN
//!   `osmoda/1`. The rustls crypto provider is ring's default provider with
//!   its key-exchange groups replaced by exactly one: X25519MLKEM768
//!   (codepoint 0x11EC, draft-ietf-tls-ecdhe-mlkem), implemented in [`kx`]
//!   from `ml-kem` and `x25519-dalek`. No classical group is offered or
//!   accepted, so a peer that cannot do the hybrid exchange fails the
//!   handshake instead of falling back to something a future quantum
//!   computer could break. Session resumption and 0-RTT are off: every
//!   connection runs the full hybrid exchange and the full membership check.
//! - **Certificates** ([`cert`]): every node presents a self-signed X.509
//!   certificate whose key is its Ed25519 identity key, carrying its fleet
//!   certificate in a private, non-critical extension
//!   ([`cert::FLEET_CERT_EXTENSION_OID`], value: a DER OCTET STRING holding
//!   `FleetCert::encode()`). Both sides authenticate (client auth is
//!   mandatory); the verifiers ([`verifier`]) accept a certificate only if
//!   the fleet certificate was issued by our fleet's root to exactly that
//!   key, is within its validity window and is not revoked. X.509 names and
//!   dates are ignored: membership, not a CA, decides who may connect.
//! - **Transport** ([`QuicTransport`]): a libp2p `Transport` over quinn with
//!   the tokio runtime, structured like `libp2p-quic` 0.14. After the
//!   handshake the peer id is derived from the verified certificate key and
//!   the peer is recorded in [`Membership`](crate::Membership).
//! - **Muxer** ([`QuicMuxer`]): QUIC bidirectional streams as libp2p
//!   substreams.
//!
//! # Why not `libp2p-quic`
//!
//! `libp2p-quic` builds its rustls configuration internally (aws-lc-rs'
//! default provider, which also offers and accepts classical X25519 and the
//! NIST curves) and offers no way to pass a rustls configuration, a key
//! exchange group or a certificate verifier. Its certificates carry the
//! libp2p extension instead of fleet membership. It is used in tests only,
//! to check that a stock libp2p QUIC peer cannot connect.

pub mod cert;
mod config;
mod connecting;
pub mod kx;
mod listener;
mod live;
mod muxer;
pub mod tls;
mod transport;
pub mod verifier;

#[cfg(test)]
mod swarm_tests;
#[cfg(test)]
mod tests;

use std::time::Duration;

use libp2p::PeerId;

pub use cert::PeerCertError;
pub use config::QuicConfig;
pub use muxer::{QuicMuxer, QuicStream};
pub use transport::QuicTransport;

/// Why building the transport, a dial, an inbound connection or a stream failed.
#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    #[error("invalid QUIC configuration: {0}")]
    Config(&'static str),
    #[error("cannot build the node's TLS certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("TLS configuration refused: {0}")]
    Tls(#[from] rustls::Error),
    #[error("TLS configuration unusable for QUIC: {0}")]
    NoInitialCipherSuite(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    #[error("QUIC needs a tokio runtime; none is running on this thread")]
    NoRuntime,
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot start the connection: {0}")]
    Connect(#[from] quinn::ConnectError),
    #[error("connection failed: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("the handshake did not finish within {0:?}")]
    HandshakeTimedOut(Duration),
    #[error("the peer did not negotiate ALPN osmoda/1")]
    Alpn,
    #[error("peer refused: {0}")]
    PeerRefused(#[from] PeerCertError),
    /// Boxed: peer ids are large and this error is rare.
    #[error("dialed {expected} but reached {actual}")]
    UnexpectedPeer {
        expected: Box<PeerId>,
        actual: Box<PeerId>,
    },
    #[error("dialing as listener (hole punching) is not supported")]
    DialAsListener,
}
