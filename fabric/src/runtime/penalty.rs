//! Peers the node caught misbehaving (garbage or endless sync rounds, gossip
//! signed by keys that are not members): disconnected and kept out for a
//! while, then let back in. Revocation is the permanent remedy and belongs
//! to an admin; this is the automatic one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// How long a penalized peer stays out.
pub(crate) const PENALTY: Duration = Duration::from_secs(300);
/// Peers held at once; the one whose penalty ends first goes when full.
const MAX_PENALIZED: usize = 1024;
/// Strikes that put a peer in the box, as in the node's sync conduct.
pub(crate) const MAX_STRIKES: u32 = 3;
/// Strikes older than this are forgotten.
const STRIKE_MEMORY: Duration = Duration::from_secs(600);
/// Peers with strikes tracked at once; the one struck longest ago goes.
const MAX_STRUCK: usize = 4096;

#[derive(Default)]
pub(crate) struct PenaltyBox {
    until: HashMap<PeerId, Instant>,
    /// Strikes so far and the last one's time, per peer.
    strikes: HashMap<PeerId, (u32, Instant)>,
}

impl PenaltyBox {
    /// Notes one misbehaviour the fabric saw itself; true when it was the
    /// last one allowed and the caller must penalize the peer now.
    pub(crate) fn strike(&mut self, peer: PeerId, now: Instant) -> bool {
        self.strikes
            .retain(|_, (_, last)| now.saturating_duration_since(*last) <= STRIKE_MEMORY);
        if self.strikes.len() >= MAX_STRUCK && !self.strikes.contains_key(&peer) {
            if let Some(first) = self
                .strikes
                .iter()
                .min_by_key(|(_, (_, last))| *last)
                .map(|(p, _)| *p)
            {
                self.strikes.remove(&first);
            }
        }
        let entry = self.strikes.entry(peer).or_insert((0, now));
        entry.0 += 1;
        entry.1 = now;
        if entry.0 >= MAX_STRIKES {
            self.strikes.remove(&peer);
            return true;
        }
        false
    }

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

    #[test]
    fn strikes_add_up_to_a_penalty_and_are_forgotten() {
        let mut b = PenaltyBox::default();
        let now = Instant::now();
        let peer = PeerId::random();
        assert!(!b.strike(peer, now));
        assert!(!b.strike(peer, now));
        assert!(b.strike(peer, now), "the third strike");
        assert!(!b.strike(peer, now), "counting starts again");
        let later = now + STRIKE_MEMORY * 2;
        assert!(!b.strike(peer, later));
        assert!(!b.strike(peer, later), "the old strike was forgotten");
        for _ in 0..MAX_STRUCK + 10 {
            b.strike(PeerId::random(), later);
        }
        assert!(b.strikes.len() <= MAX_STRUCK);
    }
}
