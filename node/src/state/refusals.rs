//! Emergency commands from peers that this node did not take (junk,
//! forgeries, replays, stale news), counted per peer, so that they are
//! audited at a bounded rate: one audit entry per peer per
//! [`SUMMARY_EVERY`] at most, with the count since the last one. Auditing
//! each message let one member write 20,000 entries into another's log in
//! 9 s.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// At most one summary entry per peer in this time.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(60);
/// Peers tallied at once. Beyond, the refusals of new peers are counted in
/// the total only: the map is fed by the network.
pub const MAX_PEERS: usize = 256;

/// A summary due for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub peer: PeerId,
    /// Refusals since the last summary of this peer.
    pub count: u64,
    /// The reason of the latest one.
    pub reason: String,
}

#[derive(Debug)]
struct Tally {
    pending: u64,
    reason: String,
    last_audit: Option<Instant>,
}

#[derive(Debug, Default)]
struct Inner {
    peers: HashMap<PeerId, Tally>,
    total: u64,
}

#[derive(Debug, Default)]
pub struct Refusals(Mutex<Inner>);

impl Refusals {
    /// Counts one refusal of `peer`'s; the summary to audit when one is
    /// due now (the peer's first, or its first after [`SUMMARY_EVERY`]).
    pub fn count(&self, peer: PeerId, reason: &str, now: Instant) -> Option<Summary> {
        let mut inner = self.0.lock().unwrap_or_else(|e| e.into_inner());
        inner.total = inner.total.saturating_add(1);
        if !inner.peers.contains_key(&peer) {
            if inner.peers.len() >= MAX_PEERS {
                // Peers whose counts were audited and are quiet since.
                inner.peers.retain(|_, t| {
                    t.pending > 0
                        || t.last_audit
                            .is_some_and(|at| now.saturating_duration_since(at) < SUMMARY_EVERY)
                });
            }
            if inner.peers.len() >= MAX_PEERS {
                return None;
            }
        }
        let tally = inner.peers.entry(peer).or_insert(Tally {
            pending: 0,
            reason: String::new(),
            last_audit: None,
        });
        tally.pending = tally.pending.saturating_add(1);
        reason.clone_into(&mut tally.reason);
        let due = tally
            .last_audit
            .is_none_or(|at| now.saturating_duration_since(at) >= SUMMARY_EVERY);
        due.then(|| take(peer, tally, now))
    }

    /// Summaries of peers whose refusals have waited a whole period: a
    /// peer that went quiet still gets its count audited.
    pub fn due(&self, now: Instant) -> Vec<Summary> {
        let mut inner = self.0.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .peers
            .iter_mut()
            .filter(|(_, t)| {
                t.pending > 0
                    && t.last_audit
                        .is_none_or(|at| now.saturating_duration_since(at) >= SUMMARY_EVERY)
            })
            .map(|(peer, tally)| take(*peer, tally, now))
            .collect()
    }

    /// Every refusal counted since the node started.
    pub fn total(&self) -> u64 {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

fn take(peer: PeerId, tally: &mut Tally, now: Instant) -> Summary {
    tally.last_audit = Some(now);
    Summary {
        peer,
        count: std::mem::take(&mut tally.pending),
        reason: tally.reason.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_summary_per_peer_per_period_with_the_count() {
        let refusals = Refusals::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        let first = refusals.count(a, "malformed", t0).unwrap();
        assert_eq!(first.count, 1);
        for _ in 0..999 {
            assert!(refusals.count(a, "malformed", t0).is_none());
        }
        assert!(refusals.count(b, "replay", t0).is_some(), "peers apart");
        assert!(refusals.due(t0 + SUMMARY_EVERY / 2).is_empty());
        let later = refusals.due(t0 + SUMMARY_EVERY);
        assert_eq!(later.len(), 1);
        assert_eq!((later[0].peer, later[0].count), (a, 999));
        assert_eq!(refusals.total(), 1001);
    }

    #[test]
    fn the_peer_map_is_bounded() {
        let refusals = Refusals::default();
        let t0 = Instant::now();
        for _ in 0..MAX_PEERS * 4 {
            refusals.count(PeerId::random(), "junk", t0);
        }
        assert!(refusals.0.lock().unwrap().peers.len() <= MAX_PEERS);
        assert_eq!(refusals.total(), (MAX_PEERS * 4) as u64);
        // Once their counts were audited and a period passed, room again.
        let later = t0 + SUMMARY_EVERY * 2;
        assert!(refusals.count(PeerId::random(), "junk", later).is_some());
    }
}
