//! How fast each member may push document changes. A member over its rate
//! is slowed down, not refused: its pushes are ignored (not applied, not
//! forwarded, no penalty) until its bucket refills, and the changes reach
//! every replica later by sync, whose sessions have their own budgets
//! (docs/protocol.md §5.1). So a member flooding writes costs the fleet
//! at most its rate in gossip, and loses nothing it wrote.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use libp2p::PeerId;

/// Pushes a member may send per second, sustained.
pub const PUSHES_PER_SEC: f64 = 50.0;
/// Pushes a member may send at once after a quiet spell.
pub const PUSH_BURST: f64 = 500.0;
/// Members tracked at once; the one heard from least recently is dropped
/// (it starts again with a full bucket, which costs at most one burst).
pub const MAX_TRACKED: usize = 1024;

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A token bucket per gossip origin.
pub struct PushRates {
    buckets: Mutex<HashMap<PeerId, Bucket>>,
    rate: f64,
    burst: f64,
}

impl Default for PushRates {
    fn default() -> Self {
        Self::new(PUSHES_PER_SEC, PUSH_BURST)
    }
}

impl PushRates {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            buckets: Mutex::new(HashMap::new()),
            rate,
            burst,
        }
    }

    /// Whether `origin` may push one more change at `now`.
    pub fn allow(&self, origin: PeerId, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !buckets.contains_key(&origin) && buckets.len() >= MAX_TRACKED {
            let oldest = buckets.iter().min_by_key(|(_, b)| b.at).map(|(p, _)| *p);
            if let Some(p) = oldest {
                buckets.remove(&p);
            }
        }
        let bucket = buckets.entry(origin).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at);
        bucket.tokens = (bucket.tokens + elapsed.as_secs_f64() * self.rate).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_member_over_its_rate_waits_for_its_bucket_and_others_do_not() {
        let rates = PushRates::new(10.0, 5.0);
        let (a, b) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        let allowed = (0..20).filter(|_| rates.allow(a, t0)).count();
        assert_eq!(allowed, 5, "a burst, then nothing");
        assert!(rates.allow(b, t0), "another member is not slowed");
        assert!(!rates.allow(a, t0));
        let later = t0 + Duration::from_millis(300);
        let allowed = (0..20).filter(|_| rates.allow(a, later)).count();
        assert_eq!(allowed, 3, "0.3 s at 10 per second");
    }

    #[test]
    fn tracking_is_bounded() {
        let rates = PushRates::new(1.0, 1.0);
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED + 10) {
            rates.allow(PeerId::random(), t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(rates.buckets.lock().unwrap().len(), MAX_TRACKED);
    }
}
