//! How peers behave in sync: strikes for garbage and for rounds that never
//! end, and a ceiling on the rounds answered per peer. A peer that collects
//! enough strikes is cut off (the fabric disconnects it and keeps it out for
//! a while; gossipsub ignores it meanwhile), and the others go on.
//!
//! Pure bookkeeping: the caller passes the time in.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// Strikes that cut a peer off.
pub const MAX_STRIKES: u32 = 3;
/// Strikes older than this are forgotten.
const STRIKE_MEMORY: Duration = Duration::from_secs(600);
/// Rounds answered per peer in one window; a full sync of every shard of a
/// large store stays far below it.
pub const MAX_ANSWERS_PER_WINDOW: u32 = 1200;
const ANSWER_WINDOW: Duration = Duration::from_secs(60);
/// Peers tracked at once; the least recently seen goes first.
const MAX_TRACKED: usize = 4096;

#[derive(Clone, Copy)]
struct Record {
    strikes: u32,
    last_strike: Option<Instant>,
    answers: u32,
    window_start: Instant,
    seen: Instant,
}

/// What a strike led to.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Noted; the peer is still served.
    Warned(u32),
    /// The peer reached the limit: cut it off now.
    CutOff,
}

#[derive(Default)]
pub struct Conduct {
    peers: HashMap<PeerId, Record>,
}

impl Conduct {
    fn record(&mut self, peer: PeerId, now: Instant) -> &mut Record {
        if self.peers.len() >= MAX_TRACKED && !self.peers.contains_key(&peer) {
            if let Some(oldest) = self
                .peers
                .iter()
                .min_by_key(|(_, r)| r.seen)
                .map(|(p, _)| *p)
            {
                self.peers.remove(&oldest);
            }
        }
        let r = self.peers.entry(peer).or_insert(Record {
            strikes: 0,
            last_strike: None,
            answers: 0,
            window_start: now,
            seen: now,
        });
        r.seen = now;
        r
    }

    /// Notes one misbehaviour.
    pub fn strike(&mut self, peer: PeerId, now: Instant) -> Verdict {
        let r = self.record(peer, now);
        if r.last_strike
            .is_some_and(|t| now.saturating_duration_since(t) > STRIKE_MEMORY)
        {
            r.strikes = 0;
        }
        r.strikes += 1;
        r.last_strike = Some(now);
        if r.strikes >= MAX_STRIKES {
            r.strikes = 0;
            Verdict::CutOff
        } else {
            Verdict::Warned(r.strikes)
        }
    }

    /// Counts one round answered for `peer`; false when it asked too often.
    pub fn allow_answer(&mut self, peer: PeerId, now: Instant) -> bool {
        let r = self.record(peer, now);
        if now.saturating_duration_since(r.window_start) >= ANSWER_WINDOW {
            r.window_start = now;
            r.answers = 0;
        }
        r.answers += 1;
        r.answers <= MAX_ANSWERS_PER_WINDOW
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strikes_cut_off_at_the_limit_and_old_ones_are_forgotten() {
        let mut c = Conduct::default();
        let (p, now) = (PeerId::random(), Instant::now());
        assert_eq!(c.strike(p, now), Verdict::Warned(1));
        assert_eq!(c.strike(p, now), Verdict::Warned(2));
        assert_eq!(c.strike(p, now), Verdict::CutOff);
        let later = now + STRIKE_MEMORY * 2;
        assert_eq!(c.strike(p, later), Verdict::Warned(1));
        let much_later = later + STRIKE_MEMORY * 2;
        assert_eq!(c.strike(p, much_later), Verdict::Warned(1));
    }

    #[test]
    fn answers_are_limited_per_window() {
        let mut c = Conduct::default();
        let (p, now) = (PeerId::random(), Instant::now());
        for _ in 0..MAX_ANSWERS_PER_WINDOW {
            assert!(c.allow_answer(p, now));
        }
        assert!(!c.allow_answer(p, now));
        assert!(c.allow_answer(PeerId::random(), now), "others go on");
        assert!(c.allow_answer(p, now + ANSWER_WINDOW));
    }

    #[test]
    fn tracking_is_bounded() {
        let mut c = Conduct::default();
        let now = Instant::now();
        for i in 0..MAX_TRACKED + 100 {
            c.strike(PeerId::random(), now + Duration::from_millis(i as u64));
        }
        assert!(c.peers.len() <= MAX_TRACKED);
    }
}
