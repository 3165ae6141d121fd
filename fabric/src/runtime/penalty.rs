//! Peers the node caught misbehaving (garbage or endless sync rounds):
//! disconnected and kept out for a while, then let back in. Revocation is
//! the permanent remedy and belongs to an admin; this is the automatic one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// How long a penalized peer stays out.
pub(crate) const PENALTY: Duration = Duration::from_secs(300);
/// Peers held at once; the one whose penalty ends first goes when full.
const MAX_PENALIZED: usize = 1024;

#[derive(Default)]
pub(crate) struct PenaltyBox {
    until: HashMap<PeerId, Instant>,
}

impl PenaltyBox {
    pub(crate) fn penalize(&mut self, peer: PeerId, now: Instant) {
        self.until.retain(|_, end| *end > now);
        if self.until.len() >= MAX_PENALIZED && !self.until.contains_key(&peer) {
            if let Some(first) = self
                .until
                .iter()
                .min_by_key(|(_, end)| **end)
                .map(|(p, _)| *p)
            {
                self.until.remove(&first);
            }
        }
        self.until.insert(peer, now + PENALTY);
    }

    pub(crate) fn is_penalized(&self, peer: &PeerId, now: Instant) -> bool {
        self.until.get(peer).is_some_and(|end| *end > now)
    }

    /// Peers whose penalty has ended since the last call.
    pub(crate) fn expired(&mut self, now: Instant) -> Vec<PeerId> {
        let ended: Vec<PeerId> = self
            .until
            .iter()
            .filter(|(_, end)| **end <= now)
            .map(|(p, _)| *p)
            .collect();
        for p in &ended {
            self.until.remove(p);
        }
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_penalty_ends_and_the_box_stays_bounded() {
        let mut b = PenaltyBox::default();
        let now = Instant::now();
        let first = PeerId::random();
        b.penalize(first, now);
        assert!(b.is_penalized(&first, now));
        assert!(!b.is_penalized(&first, now + PENALTY));
        for _ in 0..MAX_PENALIZED + 10 {
            b.penalize(PeerId::random(), now + Duration::from_millis(1));
        }
        assert!(b.until.len() <= MAX_PENALIZED);
        assert!(!b.is_penalized(&first, now), "the oldest penalty made room");
        assert_eq!(b.expired(now + PENALTY * 2).len(), MAX_PENALIZED);
        assert!(b.until.is_empty());
    }
}
