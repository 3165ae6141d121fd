//! The harness's deterministic random numbers.
//!
//! SplitMix64 like the link sampler (`link.rs`), for the same reasons: a
//! sequence fixed by this crate rather than by a dependency's version, so a
//! recorded seed replays the same schedule. Each consumer (the topology,
//! each workload, each fault) draws from its own stream derived from
//! (seed, tag, index), so editing one entry of a scenario leaves the draws
//! of the others unchanged.

/// One stream of random numbers.
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    state: u64,
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// The stream for `tag` number `index` under `seed`.
    pub(crate) fn stream(seed: u64, tag: &str, index: u64) -> Rng {
        // FNV-1a of the tag: stable, and distinct tags give distinct streams.
        let mut h: u64 = 0xCBF2_9CE4_8422_2325;
        for b in tag.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
        }
        Rng {
            state: mix(seed ^ mix(h ^ mix(index.wrapping_add(GOLDEN_GAMMA)))),
        }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix(self.state)
    }

    /// Uniform in `0..n` (`n > 0`; returns 0 for `n == 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// An exponential variate with this rate (Poisson inter-arrival time,
    /// in seconds).
    pub(crate) fn exp(&mut self, rate: f64) -> f64 {
        -(1.0 - self.unit()).ln() / rate
    }

    /// `k` distinct elements of `items` (all of them if fewer), in draw
    /// order: a partial Fisher-Yates shuffle.
    pub(crate) fn sample<T: Copy>(&mut self, items: &[T], k: usize) -> Vec<T> {
        let mut pool = items.to_vec();
        let k = k.min(pool.len());
        for i in 0..k {
            let j = i + self.below(pool.len() - i);
            pool.swap(i, j);
        }
        pool.truncate(k);
        pool
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_differ_by_tag_index_and_seed() {
        let first = |seed, tag, i| Rng::stream(seed, tag, i).next_u64();
        assert_ne!(first(1, "a", 0), first(1, "b", 0));
        assert_ne!(first(1, "a", 0), first(1, "a", 1));
        assert_ne!(first(1, "a", 0), first(2, "a", 0));
        assert_eq!(first(1, "a", 0), first(1, "a", 0));
    }

    #[test]
    fn sample_is_distinct_and_bounded() {
        let mut r = Rng::stream(3, "s", 0);
        let items: Vec<usize> = (0..10).collect();
        let mut s = r.sample(&items, 4);
        assert_eq!(s.len(), 4);
        s.sort_unstable();
        s.dedup();
        assert_eq!(s.len(), 4);
        assert_eq!(r.sample(&items, 99).len(), 10);
        for _ in 0..1000 {
            assert!(r.below(7) < 7);
            assert!(r.exp(2.0) >= 0.0);
        }
    }
}
