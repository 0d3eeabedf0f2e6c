//! Pure retry and restart policies: jittered exponential backoff for failed jobs
//! ([`RetryPolicy`]) and a sliding-window restart budget for supervised children
//! ([`RestartBudget`]).
//!
//! Invariants:
//! - No clock inside: every function takes `now` (or an attempt number) from the caller, and
//!   randomness comes from a caller-supplied [`rand::Rng`], so the policies are deterministic
//!   under a seeded RNG and under tokio's paused time.
//! - [`RetryPolicy::delay`] is always within `[0, RetryPolicy::ceiling(attempt)]`, and the
//!   ceiling doubles per attempt from `base` until it reaches `cap`.
//! - [`RestartBudget::next_delay`] returns `None` once more than `max_restarts` restarts would
//!   fall inside `window`; it never sleeps and never panics on overflow (all arithmetic saturates).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Backoff for a failed job: full jitter over an exponentially growing, capped ceiling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Ceiling of the first retry's delay (attempt 1).
    pub base: Duration,
    /// Largest ceiling, whatever the attempt number.
    pub cap: Duration,
    /// A job that has failed this many times is moved to the dead-letter list.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(30),
            max_attempts: 8,
        }
    }
}

impl RetryPolicy {
    /// The largest delay for `attempt` (1-based; 0 is treated as 1):
    /// `min(cap, base * 2^(attempt - 1))`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        exp_ceiling(self.base, self.cap, attempt)
    }

    /// A delay drawn uniformly from `[0, ceiling(attempt)]` ("full jitter"), so that many jobs
    /// failing together do not retry together.
    pub fn delay(&self, attempt: u32, rng: &mut impl rand::Rng) -> Duration {
        let ceiling = u64::try_from(self.ceiling(attempt).as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(0..=ceiling))
    }

    /// Whether a job that has now failed `attempts` times should be dead-lettered.
    pub fn exhausted(&self, attempts: u32) -> bool {
        attempts >= self.max_attempts
    }
}

/// `min(cap, base * 2^(attempt - 1))`, saturating.
fn exp_ceiling(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let shift = attempt.saturating_sub(1);
    let factor = 1u32.checked_shl(shift).filter(|_| shift < 32);
    match factor.and_then(|f| base.checked_mul(f)) {
        Some(d) => d.min(cap),
        None => cap,
    }
}

/// How a supervisor restarts a failing child.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Delay before the first restart within the window.
    pub base: Duration,
    /// Largest delay between restarts.
    pub cap: Duration,
    /// How many restarts are allowed within `window`; one more exhausts the budget.
    pub max_restarts: u32,
    /// Length of the sliding window restarts are counted in.
    pub window: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
            max_restarts: 5,
            window: Duration::from_secs(60),
        }
    }
}

/// The restart history of one child: a sliding window of restart instants.
#[derive(Clone, Debug)]
pub struct RestartBudget {
    policy: RestartPolicy,
    recent: VecDeque<Instant>,
    total: u64,
}

impl RestartBudget {
    /// A fresh budget: no restarts recorded.
    pub fn new(policy: RestartPolicy) -> Self {
        Self {
            policy,
            recent: VecDeque::new(),
            total: 0,
        }
    }

    /// The policy this budget applies.
    pub fn policy(&self) -> &RestartPolicy {
        &self.policy
    }

    /// Records a restart at `now` and returns how long to wait before it, or `None` when the
    /// budget is exhausted (`max_restarts` restarts already happened within `window`); an
    /// exhausted call records nothing. Delays grow without jitter: `base`, `2*base`, `4*base`…
    /// capped at `cap`, counted from the restarts still inside the window.
    pub fn next_delay(&mut self, now: Instant) -> Option<Duration> {
        self.expire(now);
        let in_window = u32::try_from(self.recent.len()).unwrap_or(u32::MAX);
        if in_window >= self.policy.max_restarts {
            return None;
        }
        self.recent.push_back(now);
        self.total = self.total.saturating_add(1);
        Some(exp_ceiling(
            self.policy.base,
            self.policy.cap,
            in_window.saturating_add(1),
        ))
    }

    /// Restarts recorded inside the window as of the last [`RestartBudget::next_delay`] call.
    pub fn restarts(&self) -> u32 {
        u32::try_from(self.recent.len()).unwrap_or(u32::MAX)
    }

    /// Restarts recorded since this budget was created.
    pub fn total_restarts(&self) -> u64 {
        self.total
    }

    /// Forgets the window (e.g. after the child has been healthy for a while).
    pub fn reset(&mut self) {
        self.recent.clear();
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&first) = self.recent.front() {
            if now.saturating_duration_since(first) >= self.policy.window {
                self.recent.pop_front();
            } else {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn retry_ceiling_doubles_until_cap() {
        let p = RetryPolicy::default();
        let got: Vec<u64> = (0..=8).map(|a| p.ceiling(a).as_secs()).collect();
        assert_eq!(got, vec![1, 1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(p.ceiling(u32::MAX), secs(30));
        assert_eq!(p.ceiling(40), secs(30));
    }

    #[test]
    fn retry_delay_within_jitter_bounds_and_spread() {
        let p = RetryPolicy::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for attempt in 1..=12 {
            let ceiling = p.ceiling(attempt);
            let samples: Vec<Duration> = (0..200).map(|_| p.delay(attempt, &mut rng)).collect();
            assert!(samples.iter().all(|d| *d <= ceiling), "attempt {attempt}");
            // Full jitter: both halves of the range are hit.
            assert!(
                samples.iter().any(|d| *d < ceiling / 2),
                "attempt {attempt}"
            );
            assert!(
                samples.iter().any(|d| *d > ceiling / 2),
                "attempt {attempt}"
            );
        }
    }

    #[test]
    fn retry_exhausted_at_max_attempts() {
        let p = RetryPolicy::default();
        assert!(!p.exhausted(7));
        assert!(p.exhausted(8));
    }

    #[test]
    fn restart_budget_grows_then_exhausts_within_window() {
        let policy = RestartPolicy {
            base: secs(1),
            cap: secs(5),
            max_restarts: 4,
            window: secs(60),
        };
        let mut b = RestartBudget::new(policy);
        let t0 = Instant::now();
        assert_eq!(b.next_delay(t0), Some(secs(1)));
        assert_eq!(b.next_delay(t0 + secs(1)), Some(secs(2)));
        assert_eq!(b.next_delay(t0 + secs(2)), Some(secs(4)));
        assert_eq!(b.next_delay(t0 + secs(3)), Some(secs(5)));
        assert_eq!(b.restarts(), 4);
        assert_eq!(b.next_delay(t0 + secs(4)), None);
        assert_eq!(b.restarts(), 4, "an exhausted call records nothing");
        // The first restart leaves the window after 60 s: one slot frees up.
        assert_eq!(b.next_delay(t0 + secs(60)), Some(secs(5)));
        assert_eq!(b.next_delay(t0 + secs(60)), None);
        // Long quiet period: the window empties and delays start from base again.
        assert_eq!(b.next_delay(t0 + secs(500)), Some(secs(1)));
        assert_eq!(b.total_restarts(), 6);
    }

    #[test]
    fn restart_budget_zero_restarts_is_exhausted_immediately() {
        let mut b = RestartBudget::new(RestartPolicy {
            max_restarts: 0,
            ..RestartPolicy::default()
        });
        assert_eq!(b.next_delay(Instant::now()), None);
    }
}
