//! Keeping room for newcomers. The connection limit refuses a connection
//! once a node holds `max_established`, and a refused newcomer whose every
//! bootstrap peer is full never joins: the long-lived members everyone
//! bootstraps to fill up first. So a node keeps a quarter of its slots
//! free: above its link budget it closes links, chosen at random among
//! those older than a grace period, as a connection manager with high and
//! low watermarks does. A newcomer thus gets in, and has the grace period
//! to learn other members (identify, Kademlia) before its link may go.

use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};
use rand::seq::SliceRandom;
use tracing::debug;

use super::FabricLoop;

/// How often links over the budget are closed.
pub(super) const TRIM_EVERY: Duration = Duration::from_secs(10);
/// A link younger than this is never closed for the budget.
const GRACE: Duration = Duration::from_secs(30);

/// A connected peer.
pub(super) struct Link {
    /// Remote address of one of its live connections.
    pub(super) addr: Multiaddr,
    /// When its first live connection opened.
    pub(super) since: Instant,
    /// When the certificate of its latest handshake expires (Unix seconds).
    pub(super) expires_at: u64,
}

/// Links a node keeps once trimmed, out of its connection limit.
pub(super) fn budget(max_established: u32) -> usize {
    let max = max_established as usize;
    (max - max / 4).max(1)
}

impl FabricLoop {
    pub(super) fn trim_links(&mut self, now: Instant) {
        let excess = self.connected.len().saturating_sub(self.link_budget);
        if excess == 0 {
            return;
        }
        let mut old: Vec<PeerId> = self
            .connected
            .iter()
            .filter(|(_, link)| now.saturating_duration_since(link.since) >= GRACE)
            .map(|(peer, _)| *peer)
            .collect();
        old.shuffle(&mut rand::thread_rng());
        for peer in old.into_iter().take(excess) {
            debug!(%peer, "closing a link over the budget");
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::budget;

    #[test]
    fn a_quarter_of_the_slots_stays_free() {
        assert_eq!(budget(512), 384);
        assert_eq!(budget(40), 30);
        assert_eq!(budget(1), 1);
    }
}
