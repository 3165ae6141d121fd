//! Restart decisions as a pure state machine: no clock, no IO.
//!
//! The supervisor tells a [`Backoff`] when a process started and when it
//! exited (with the time, as an `Instant` it read itself) and gets back a
//! [`Decision`]: restart at a given instant, or stay down. Delays start at
//! [`BackoffConfig::initial`] (500 ms) and double after each restart up to
//! [`BackoffConfig::max`] (60 s). A process that stayed up for
//! [`BackoffConfig::reset_after`] (30 s) before exiting counts as healthy:
//! its restart waits the initial delay again, so a crash once a day never
//! waits a minute, while a crash loop settles at one start a minute.
//!
//! Only exits the agent chose or suffered go through here; when an operator
//! stops an agent, the supervisor does not ask.

use std::time::{Duration, Instant};

use crate::spec::RestartPolicy;

/// The delays; see the module docs for the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Delay before the first restart (and after a healthy run).
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
    /// Uptime after which the process counts as healthy.
    pub reset_after: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(60),
            reset_after: Duration::from_secs(30),
        }
    }
}

impl BackoffConfig {
    /// The smallest initial delay: a zero delay would double to zero forever
    /// and turn a crash loop into a busy loop.
    pub const MIN_INITIAL: Duration = Duration::from_millis(1);

    /// The same configuration with `initial >= MIN_INITIAL` and
    /// `max >= initial`.
    pub fn normalized(self) -> Self {
        let initial = self.initial.max(Self::MIN_INITIAL);
        Self {
            initial,
            max: self.max.max(initial),
            reset_after: self.reset_after,
        }
    }
}

/// What the supervisor should do after an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start the agent again at `at` (= the exit time + `delay`).
    Restart { at: Instant, delay: Duration },
    /// Leave it down.
    GiveUp(GiveUpReason),
}

/// Why an agent stays down after an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GiveUpReason {
    /// The restart policy is `never`.
    PolicyNever,
    /// The process exited with code 0 under `on-failure`: it is done.
    CleanExit,
}

/// Restart state of one agent.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RestartPolicy,
    config: BackoffConfig,
    /// The delay the next restart waits unless the process proves healthy.
    next_delay: Duration,
    started_at: Option<Instant>,
    /// Restarts since the last healthy run or reset.
    streak: u32,
}

impl Backoff {
    pub fn new(policy: RestartPolicy, config: BackoffConfig) -> Self {
        let config = config.normalized();
        Self {
            policy,
            config,
            next_delay: config.initial,
            started_at: None,
            streak: 0,
        }
    }

    /// Forgets past failures: the next restart waits the initial delay. For
    /// an explicit start by an operator.
    pub fn reset(&mut self) {
        self.next_delay = self.config.initial;
        self.started_at = None;
        self.streak = 0;
    }

    /// Replaces the policy (a spec changed) without forgetting the streak.
    pub fn set_policy(&mut self, policy: RestartPolicy) {
        self.policy = policy;
    }

    /// A process started at `now`.
    pub fn started(&mut self, now: Instant) {
        self.started_at = Some(now);
    }

    /// The process exited at `now`, cleanly (exit code 0) or not.
    pub fn exited(&mut self, clean: bool, now: Instant) -> Decision {
        let uptime = self.started_at.take().map_or(Duration::ZERO, |started| {
            now.saturating_duration_since(started)
        });
        if uptime >= self.config.reset_after {
            self.next_delay = self.config.initial;
            self.streak = 0;
        }
        match (self.policy, clean) {
            (RestartPolicy::Never, _) => return Decision::GiveUp(GiveUpReason::PolicyNever),
            (RestartPolicy::OnFailure, true) => return Decision::GiveUp(GiveUpReason::CleanExit),
            (RestartPolicy::Always, _) | (RestartPolicy::OnFailure, false) => {}
        }
        let delay = self.next_delay;
        self.next_delay = delay.saturating_mul(2).min(self.config.max);
        self.streak = self.streak.saturating_add(1);
        Decision::Restart {
            at: now + delay,
            delay,
        }
    }

    /// The delay the next restart would wait if the process exited now,
    /// before the healthy-run reset is applied.
    pub fn next_delay(&self) -> Duration {
        self.next_delay
    }

    /// Restarts since the last healthy run or reset.
    pub fn streak(&self) -> u32 {
        self.streak
    }

    pub fn policy(&self) -> RestartPolicy {
        self.policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    fn restart_delay(decision: Decision) -> Duration {
        match decision {
            Decision::Restart { delay, .. } => delay,
            other => panic!("expected a restart, got {other:?}"),
        }
    }

    #[test]
    fn doubles_to_the_cap() {
        let mut backoff = Backoff::new(RestartPolicy::OnFailure, BackoffConfig::default());
        let mut now = Instant::now();
        let mut delays = Vec::new();
        for _ in 0..10 {
            backoff.started(now);
            now += Duration::from_secs(1);
            let decision = backoff.exited(false, now);
            let delay = restart_delay(decision);
            assert_eq!(
                decision,
                Decision::Restart {
                    at: now + delay,
                    delay
                }
            );
            delays.push(delay.as_millis());
            now += delay;
        }
        assert_eq!(
            delays,
            [500, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]
        );
        assert_eq!(backoff.streak(), 10);
    }

    #[test]
    fn healthy_run_resets() {
        let mut backoff = Backoff::new(RestartPolicy::Always, BackoffConfig::default());
        let mut now = Instant::now();
        for _ in 0..5 {
            backoff.started(now);
            now += MS;
            now += restart_delay(backoff.exited(false, now));
        }
        assert_eq!(backoff.next_delay(), Duration::from_secs(16));
        backoff.started(now);
        now += Duration::from_secs(30);
        assert_eq!(
            restart_delay(backoff.exited(false, now)),
            Duration::from_millis(500)
        );
        assert_eq!(backoff.streak(), 1);
        // Just under the threshold does not reset.
        backoff.started(now);
        now += Duration::from_secs(30) - MS;
        assert_eq!(
            restart_delay(backoff.exited(false, now)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn policies() {
        let now = Instant::now();
        let mut never = Backoff::new(RestartPolicy::Never, BackoffConfig::default());
        assert_eq!(
            never.exited(false, now),
            Decision::GiveUp(GiveUpReason::PolicyNever)
        );
        assert_eq!(
            never.exited(true, now),
            Decision::GiveUp(GiveUpReason::PolicyNever)
        );
        let mut on_failure = Backoff::new(RestartPolicy::OnFailure, BackoffConfig::default());
        assert_eq!(
            on_failure.exited(true, now),
            Decision::GiveUp(GiveUpReason::CleanExit)
        );
        assert!(matches!(
            on_failure.exited(false, now),
            Decision::Restart { .. }
        ));
        let mut always = Backoff::new(RestartPolicy::Always, BackoffConfig::default());
        assert!(matches!(always.exited(true, now), Decision::Restart { .. }));
    }

    #[test]
    fn reset_and_odd_configs() {
        let mut backoff = Backoff::new(RestartPolicy::Always, BackoffConfig::default());
        let now = Instant::now();
        backoff.exited(false, now);
        backoff.exited(false, now);
        backoff.reset();
        assert_eq!(
            restart_delay(backoff.exited(false, now)),
            Duration::from_millis(500)
        );
        // A zero initial delay would be a busy loop; max below initial is raised.
        let config = BackoffConfig {
            initial: Duration::ZERO,
            max: Duration::ZERO,
            reset_after: Duration::ZERO,
        };
        let mut backoff = Backoff::new(RestartPolicy::Always, config);
        assert_eq!(
            restart_delay(backoff.exited(false, now)),
            BackoffConfig::MIN_INITIAL
        );
        // An exit without a start counts as zero uptime, and time going
        // backwards does not panic.
        let mut backoff = Backoff::new(RestartPolicy::Always, BackoffConfig::default());
        backoff.started(now + Duration::from_secs(100));
        assert_eq!(
            restart_delay(backoff.exited(false, now)),
            Duration::from_millis(500)
        );
    }

    proptest! {
        /// For any run of exits: delays stay within [initial, max], a healthy
        /// run resets to initial, otherwise each delay doubles the last
        /// (capped), the restart instant is exit + delay, and the policy
        /// decides whether there is a restart at all.
        #[test]
        fn delays_follow_the_rules(
            policy in prop_oneof![
                Just(RestartPolicy::Always),
                Just(RestartPolicy::OnFailure),
                Just(RestartPolicy::Never),
            ],
            initial_ms in 1u64..2_000,
            max_factor in 1u64..200,
            reset_ms in 0u64..100_000,
            runs in proptest::collection::vec((0u64..200_000, any::<bool>()), 1..60),
        ) {
            let config = BackoffConfig {
                initial: Duration::from_millis(initial_ms),
                max: Duration::from_millis(initial_ms * max_factor),
                reset_after: Duration::from_millis(reset_ms),
            };
            let mut backoff = Backoff::new(policy, config);
            let mut now = Instant::now();
            let mut previous: Option<Duration> = None;
            for (uptime_ms, clean) in runs {
                backoff.started(now);
                now += Duration::from_millis(uptime_ms);
                let healthy = uptime_ms >= reset_ms;
                let decision = backoff.exited(clean, now);
                let expect_restart = match policy {
                    RestartPolicy::Always => true,
                    RestartPolicy::OnFailure => !clean,
                    RestartPolicy::Never => false,
                };
                match decision {
                    Decision::Restart { at, delay } => {
                        prop_assert!(expect_restart);
                        prop_assert_eq!(at, now + delay);
                        prop_assert!(delay >= config.initial && delay <= config.max);
                        let expected = match previous {
                            _ if healthy => config.initial,
                            None => config.initial,
                            Some(last) => (last * 2).min(config.max),
                        };
                        prop_assert_eq!(delay, expected);
                        previous = Some(delay);
                        now = at;
                    }
                    Decision::GiveUp(reason) => {
                        prop_assert!(!expect_restart);
                        let expected = if policy == RestartPolicy::Never {
                            GiveUpReason::PolicyNever
                        } else {
                            GiveUpReason::CleanExit
                        };
                        prop_assert_eq!(reason, expected);
                        if healthy {
                            previous = None;
                        }
                    }
                }
            }
        }
    }
}
