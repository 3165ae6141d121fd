//! Limits of the QUIC transport.

use std::time::Duration;

use quinn::{IdleTimeout, TransportConfig, VarInt};

use super::QuicError;

/// Tunables of [`QuicTransport`](super::QuicTransport). The defaults suit a
/// fleet mesh: connections to quiet peers stay open through keep-alives, and
/// one peer cannot hold more than a bounded amount of our memory.
#[derive(Debug, Clone)]
pub struct QuicConfig {
    /// Longest time from the first packet to a verified peer, in both directions.
    pub handshake_timeout: Duration,
    /// A connection with no packet from the peer for this long is dead.
    pub max_idle_timeout: Duration,
    /// Send a keep-alive after this much silence; shorter than the idle
    /// timeout so that live but quiet connections are not dropped.
    pub keep_alive_interval: Duration,
    /// Most bidirectional streams the peer may have open at once.
    pub max_concurrent_streams: u32,
    /// Bytes the peer may send on one stream before we read them.
    pub max_stream_data: u32,
    /// Bytes the peer may send on all streams of a connection before we read them.
    pub max_connection_data: u32,
}

impl Default for QuicConfig {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            max_idle_timeout: Duration::from_secs(30),
            keep_alive_interval: Duration::from_secs(10),
            max_concurrent_streams: 256,
            // One stream cannot use the whole connection window.
            max_stream_data: 10_000_000,
            max_connection_data: 15_000_000,
        }
    }
}

impl QuicConfig {
    /// The quinn transport parameters for these limits, after checking them.
    pub(crate) fn transport(&self) -> Result<TransportConfig, QuicError> {
        if self.handshake_timeout.is_zero() {
            return Err(QuicError::Config("handshake_timeout must be positive"));
        }
        if self.keep_alive_interval.is_zero() || self.keep_alive_interval >= self.max_idle_timeout {
            return Err(QuicError::Config(
                "keep_alive_interval must be positive and shorter than max_idle_timeout",
            ));
        }
        let idle = IdleTimeout::try_from(self.max_idle_timeout)
            .map_err(|_| QuicError::Config("max_idle_timeout is too long"))?;
        let mut transport = TransportConfig::default();
        transport.max_concurrent_bidi_streams(VarInt::from_u32(self.max_concurrent_streams));
        // libp2p substreams are bidirectional; nothing uses the others.
        transport.max_concurrent_uni_streams(VarInt::from_u32(0));
        transport.datagram_receive_buffer_size(None);
        transport.keep_alive_interval(Some(self.keep_alive_interval));
        transport.max_idle_timeout(Some(idle));
        // The spin bit only helps on-path observers measure latency.
        transport.allow_spin(false);
        transport.stream_receive_window(VarInt::from_u32(self.max_stream_data));
        transport.receive_window(VarInt::from_u32(self.max_connection_data));
        Ok(transport)
    }
}
