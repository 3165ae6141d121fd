//! Membership ends on live connections too. The handshake refuses an
//! expired certificate, but a connection opened before the expiry used to
//! live on for as long as it was used. The loop now closes a peer's
//! connections at the second its certificate expires (a timer set for the
//! earliest expiry among connected peers), and checks every few seconds,
//! for certificate expiries and for revocations that reached `Membership`
//! without passing through the loop.

use std::pin::Pin;
use std::time::Duration;

use libp2p::PeerId;
use tokio::time::{Instant, Sleep};
use tracing::info;

use super::FabricLoop;
use crate::membership::node_key_of;

/// How often connected peers' certificates and revocations are checked,
/// besides the timer at the next expiry.
pub(super) const CHECK_EVERY: Duration = Duration::from_secs(5);
/// Where the expiry timer rests while no connected peer's certificate
/// expires sooner; the periodic check runs anyway.
const IDLE: Duration = Duration::from_secs(3600);

/// A timer that does not fire soon.
pub(super) fn idle_timer() -> Pin<Box<Sleep>> {
    Box::pin(tokio::time::sleep(IDLE))
}

impl FabricLoop {
    /// Closes the connections of peers whose certificate expired or who
    /// were revoked, then sets the timer for the next expiry.
    pub(super) fn close_expired(&mut self) {
        let now_ms = super::now_ms();
        let now = now_ms / 1000;
        let mut gone: Vec<(PeerId, &'static str)> = Vec::new();
        let mut next: Option<u64> = None;
        let due: Vec<PeerId> = self
            .connected
            .iter()
            .filter(|(_, link)| link.expires_at <= now)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in due {
            // Extending a link moves the timer; it is set again below anyway.
            self.renewed_in_time(peer, now);
        }
        for (peer, link) in &self.connected {
            if link.expires_at <= now {
                gone.push((*peer, "its certificate expired"));
            } else if node_key_of(peer).is_some_and(|n| self.membership.is_revoked(&n)) {
                gone.push((*peer, "it was revoked"));
            } else if self
                .membership
                .peer(peer)
                .is_some_and(|r| self.membership.chain_revoked(&r.cert))
            {
                gone.push((*peer, "the admin that issued its certificate was revoked"));
            } else {
                next = Some(next.map_or(link.expires_at, |n| n.min(link.expires_at)));
            }
        }
        for (peer, why) in gone {
            info!(%peer, "closing the connections of a peer: {why}");
            let _ = self.swarm.disconnect_peer_id(peer);
            self.membership.forget_peer(&peer);
        }
        self.set_expiry_timer(next, now_ms);
    }

    /// Points the expiry timer at `expires_at` (Unix seconds), the first
    /// instant at which the certificate is no longer valid.
    fn set_expiry_timer(&mut self, expires_at: Option<u64>, now_ms: u64) {
        let wait = match expires_at {
            Some(at) => Duration::from_millis(at.saturating_mul(1000).saturating_sub(now_ms)),
            None => IDLE,
        };
        self.expiry_timer
            .as_mut()
            .reset(Instant::now() + wait.min(IDLE));
    }

    /// Brings the timer forward when a newly connected peer's certificate
    /// expires before the one it waits for.
    pub(super) fn watch_expiry(&mut self, expires_at: u64) {
        let now_ms = super::now_ms();
        let wait = Duration::from_millis(expires_at.saturating_mul(1000).saturating_sub(now_ms));
        if Instant::now() + wait < self.expiry_timer.deadline() {
            self.set_expiry_timer(Some(expires_at), now_ms);
        }
    }
}
