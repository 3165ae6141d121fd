//! Sequence windows per gossip origin: an envelope is news only once.
//!
//! Gossipsub forgets a message id after a few seconds; a copy that arrives
//! later (replayed by a member, or looping back after a partition heals)
//! would otherwise be validated, delivered and forwarded again. Each
//! origin numbers its envelopes; per origin the fabric keeps the highest
//! number seen and a bitmap of the [`WINDOW`] numbers below it. A number
//! already marked, or older than the window, is not news.
//!
//! Only origins whose membership was checked get here, so the map holds at
//! most one entry per member; [`MAX_ORIGINS`] bounds it anyway.

use std::collections::HashMap;

use osmoda_fabric_proto::NodeKey;

/// Numbers remembered below the highest, per origin. A publisher that
/// gets more than this far ahead of a copy still in flight loses that copy
/// here (anti-entropy repairs what matters).
pub(crate) const WINDOW: u64 = 1024;
const WORDS: usize = (WINDOW / 64) as usize;
/// Origins tracked at once; the one heard from longest ago goes first.
pub(crate) const MAX_ORIGINS: usize = crate::membership::MAX_MEMBERS;

/// What a sequence number is to its origin's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    Fresh,
    Duplicate,
    /// Below the window: too old to tell, so not news either.
    TooOld,
}

struct Window {
    highest: u64,
    /// Bit `i` marks `highest - i`.
    bits: [u64; WORDS],
    /// A counter value, for evicting the origin heard from longest ago.
    touched: u64,
}

impl Window {
    fn new(seqno: u64, touched: u64) -> Self {
        let mut bits = [0; WORDS];
        bits[0] = 1;
        Self {
            highest: seqno,
            bits,
            touched,
        }
    }

    fn check_and_mark(&mut self, seqno: u64) -> Seen {
        if seqno > self.highest {
            self.shift(seqno - self.highest);
            self.highest = seqno;
            self.bits[0] |= 1;
            return Seen::Fresh;
        }
        let behind = self.highest - seqno;
        if behind >= WINDOW {
            return Seen::TooOld;
        }
        let (word, bit) = ((behind / 64) as usize, behind % 64);
        if self.bits[word] & (1 << bit) != 0 {
            return Seen::Duplicate;
        }
        self.bits[word] |= 1 << bit;
        Seen::Fresh
    }

    /// Moves every mark `by` places older, dropping those that leave.
    fn shift(&mut self, by: u64) {
        if by >= WINDOW {
            self.bits = [0; WORDS];
            return;
        }
        let (words, bits) = ((by / 64) as usize, (by % 64) as u32);
        for i in (0..WORDS).rev() {
            let from = i.checked_sub(words);
            let high = from.map_or(0, |f| self.bits[f]);
            let low = from
                .and_then(|f| f.checked_sub(1))
                .map_or(0, |f| self.bits[f]);
            self.bits[i] = if bits == 0 {
                high
            } else {
                (high << bits) | (low >> (64 - bits))
            };
        }
    }
}

/// Every origin's window.
#[derive(Default)]
pub(crate) struct Replay {
    origins: HashMap<NodeKey, Window>,
    clock: u64,
}

impl Replay {
    /// Whether `seqno` from `origin` is news, marking it seen if so.
    pub(crate) fn check_and_mark(&mut self, origin: &NodeKey, seqno: u64) -> Seen {
        self.clock += 1;
        if let Some(window) = self.origins.get_mut(origin) {
            window.touched = self.clock;
            return window.check_and_mark(seqno);
        }
        if self.origins.len() >= MAX_ORIGINS {
            if let Some(oldest) = self
                .origins
                .iter()
                .min_by_key(|(_, w)| w.touched)
                .map(|(k, _)| *k)
            {
                self.origins.remove(&oldest);
            }
        }
        self.origins.insert(*origin, Window::new(seqno, self.clock));
        Seen::Fresh
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.origins.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_number_is_news_once_and_old_ones_never() {
        let mut r = Replay::default();
        let a = [1; 32];
        assert_eq!(r.check_and_mark(&a, 5000), Seen::Fresh);
        assert_eq!(r.check_and_mark(&a, 5000), Seen::Duplicate);
        // Out of order inside the window: news once.
        assert_eq!(r.check_and_mark(&a, 4990), Seen::Fresh);
        assert_eq!(r.check_and_mark(&a, 4990), Seen::Duplicate);
        assert_eq!(r.check_and_mark(&a, 5000 - WINDOW + 1), Seen::Fresh);
        assert_eq!(r.check_and_mark(&a, 5000 - WINDOW), Seen::TooOld);
        // Moving ahead keeps what is still inside the window.
        assert_eq!(r.check_and_mark(&a, 5100), Seen::Fresh);
        assert_eq!(r.check_and_mark(&a, 4990), Seen::Duplicate);
        assert_eq!(r.check_and_mark(&a, 5000), Seen::Duplicate);
        assert_eq!(r.check_and_mark(&a, 4991), Seen::Fresh);
        assert_eq!(r.check_and_mark(&a, 5100 - WINDOW), Seen::TooOld);
        // A jump past the window forgets everything below it.
        assert_eq!(r.check_and_mark(&a, 9000), Seen::Fresh);
        assert_eq!(r.check_and_mark(&a, 5100), Seen::TooOld);
        // Origins are independent.
        assert_eq!(r.check_and_mark(&[2; 32], 5000), Seen::Fresh);
    }

    #[test]
    fn every_shift_agrees_with_a_set() {
        use std::collections::BTreeSet;
        let mut r = Replay::default();
        let mut seen = BTreeSet::new();
        let a = [3; 32];
        let mut x: u64 = 0x9e37_79b9;
        let mut highest = 0;
        for i in 0..20_000u64 {
            // A small xorshift: numbers slowly rising, jittered by more
            // than the window, so every case comes up.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let seqno = 2_000 + i / 2 + x % 1500;
            let expected = if seqno + WINDOW <= highest {
                Seen::TooOld
            } else if seen.contains(&seqno) {
                Seen::Duplicate
            } else {
                Seen::Fresh
            };
            assert_eq!(
                r.check_and_mark(&a, seqno),
                expected,
                "{seqno} below {highest}"
            );
            seen.insert(seqno);
            highest = highest.max(seqno);
        }
    }

    #[test]
    fn the_map_of_origins_stays_bounded() {
        let mut r = Replay::default();
        let first = [0; 32];
        r.check_and_mark(&first, 1);
        for i in 0..MAX_ORIGINS as u64 {
            let mut key = [1; 32];
            key[..8].copy_from_slice(&i.to_be_bytes());
            r.check_and_mark(&key, 1);
        }
        assert_eq!(r.len(), MAX_ORIGINS);
        // The origin heard from longest ago made room.
        assert_eq!(r.check_and_mark(&first, 1), Seen::Fresh);
    }
}
