//! Per-host traffic counters.
//!
//! Streams bump atomics on every read and write (no lock); the harness reads
//! a `HostStats` snapshot. Bytes are application bytes as the transport
//! sees them: everything above it (the handshake, yamux, gossip) is counted,
//! TCP/IP headers and retransmissions are not.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::addr::HostId;

#[derive(Debug, Default)]
pub(crate) struct HostCounters {
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) chunks_sent: AtomicU64,
    pub(crate) chunks_received: AtomicU64,
    pub(crate) connections_opened: AtomicU64,
    pub(crate) connections_closed: AtomicU64,
    pub(crate) dials_failed: AtomicU64,
    pub(crate) dials_abandoned: AtomicU64,
}

impl HostCounters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, host: HostId) -> HostStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        HostStats {
            host,
            bytes_sent: get(&self.bytes_sent),
            bytes_received: get(&self.bytes_received),
            chunks_sent: get(&self.chunks_sent),
            chunks_received: get(&self.chunks_received),
            connections_opened: get(&self.connections_opened),
            connections_closed: get(&self.connections_closed),
            dials_failed: get(&self.dials_failed),
            dials_abandoned: get(&self.dials_abandoned),
        }
    }
}

/// A host's counters at one moment. All counters only grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct HostStats {
    pub host: HostId,
    /// Bytes accepted by `poll_write` on this host's streams.
    pub bytes_sent: u64,
    /// Bytes returned by `poll_read` on this host's streams.
    pub bytes_received: u64,
    /// Successful `poll_write` calls (each is one chunk on the link).
    pub chunks_sent: u64,
    /// Chunks fully read.
    pub chunks_received: u64,
    /// Connections established, inbound and outbound.
    pub connections_opened: u64,
    /// Connections whose local stream was dropped.
    pub connections_closed: u64,
    /// Outbound dials that failed (refused, timed out, no route, host down).
    pub dials_failed: u64,
    /// Outbound dials dropped by the caller before they finished: usually
    /// the swarm's own connection timeout (10 s, like our dial timeout
    /// across a partition, so a timed-out dial lands here or in
    /// `dials_failed`, whichever fires first), or a concurrent dial to
    /// another address of the same peer that won.
    pub dials_abandoned: u64,
}

impl HostStats {
    /// Counter-wise difference `self - earlier` (for rates over a window).
    pub fn since(&self, earlier: &HostStats) -> HostStats {
        HostStats {
            host: self.host,
            bytes_sent: self.bytes_sent.saturating_sub(earlier.bytes_sent),
            bytes_received: self.bytes_received.saturating_sub(earlier.bytes_received),
            chunks_sent: self.chunks_sent.saturating_sub(earlier.chunks_sent),
            chunks_received: self.chunks_received.saturating_sub(earlier.chunks_received),
            connections_opened: self
                .connections_opened
                .saturating_sub(earlier.connections_opened),
            connections_closed: self
                .connections_closed
                .saturating_sub(earlier.connections_closed),
            dials_failed: self.dials_failed.saturating_sub(earlier.dials_failed),
            dials_abandoned: self.dials_abandoned.saturating_sub(earlier.dials_abandoned),
        }
    }
}
