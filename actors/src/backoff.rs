//! Pure retry and restart policies: [`RetryPolicy`], the one backoff type of the whole
//! program (job retries, the Gmail and Calendar clients, the token source's cool-down,
//! sinks, watch keepers, outages, IMAP reconnects and IDLE restarts, the restart delays of
//! supervised children), and a sliding-window restart budget ([`RestartBudget`]).
//!
//! Invariants:
//! - No clock inside: every function takes `now` (or an attempt number) from the caller, and
//!   randomness comes from a caller-supplied [`rand::Rng`], so the policies are deterministic
//!   under a seeded RNG and under tokio's paused time. (Crates such as `backon` own their
//!   iteration state and random source; our callers keep the attempt count in sled or in an
//!   actor and need `delay(attempt)` as a pure function, so the type is ours.)
//! - [`RetryPolicy::delay`] is always within `[0, RetryPolicy::ceiling(attempt)]` (within
//!   `[ceiling / 2, ceiling]` for [`Jitter::Half`], exactly the ceiling for [`Jitter::None`]),
//!   and the ceiling grows by `factor` per attempt from `base` until it reaches `cap`.
//! - [`RestartBudget::next_delay`] returns `None` once more than `max_restarts` restarts would
//!   fall inside `window`; it never sleeps and never panics on overflow (all arithmetic saturates).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How a delay is drawn below its ceiling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Jitter {
    /// Uniform in `[0, ceiling]` ("full jitter"): many failing callers spread out.
    #[default]
    Full,
    /// Uniform in `[ceiling / 2, ceiling]`: spread, but never much earlier than the ceiling.
    Half,
    /// Exactly the ceiling (deterministic delays, e.g. supervisor restarts).
    None,
}

/// `max_attempts` value meaning "retry for ever".
pub const UNLIMITED: u32 = u32::MAX;

/// Exponential backoff: a ceiling of `base × factor^(attempt − 1)` capped at `cap`, a jitter
/// below it, and an attempt budget (or [`UNLIMITED`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Ceiling of the first retry's delay (attempt 1).
    pub base: Duration,
    /// Largest ceiling, whatever the attempt number.
    pub cap: Duration,
    /// Growth of the ceiling per attempt (2 = doubling; 1 = constant).
    pub factor: u32,
    /// How the delay is drawn below the ceiling.
    pub jitter: Jitter,
    /// Attempts before giving up (a job is then dead-lettered); [`UNLIMITED`] never gives up.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(30),
            factor: 2,
            jitter: Jitter::Full,
            max_attempts: 8,
        }
    }
}

impl RetryPolicy {
    /// Doubling from `base` to `cap` with `jitter`, never giving up.
    pub fn unlimited(base: Duration, cap: Duration, jitter: Jitter) -> Self {
        Self {
            base,
            cap,
            factor: 2,
            jitter,
            max_attempts: UNLIMITED,
        }
    }

    /// The largest delay for `attempt` (1-based; 0 is treated as 1):
    /// `min(cap, base × factor^(attempt − 1))`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let mut d = self.base.min(self.cap);
        let factor = self.factor.max(1);
        for _ in 1..attempt.max(1) {
            if d >= self.cap || factor == 1 {
                break;
            }
            d = d.checked_mul(factor).unwrap_or(self.cap).min(self.cap);
        }
        d
    }

    /// The delay before retry `attempt`, drawn below [`RetryPolicy::ceiling`] by the jitter,
    /// so that many callers failing together do not retry together.
    pub fn delay(&self, attempt: u32, rng: &mut impl rand::Rng) -> Duration {
        self.draw_below(self.ceiling(attempt), rng)
    }

    fn draw_below(&self, ceiling: Duration, rng: &mut impl rand::Rng) -> Duration {
        let ceiling = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        let nanos = match self.jitter {
            Jitter::Full => rng.random_range(0..=ceiling),
            Jitter::Half => rng.random_range(ceiling / 2..=ceiling),
            Jitter::None => ceiling,
        };
        Duration::from_nanos(nanos)
    }

    /// The delay before retry `attempt` of a run of failures that began `outage` ago: drawn
    /// like [`RetryPolicy::delay`], but below `min(ceiling(attempt), max(base, outage))`.
    ///
    /// Full jitter draws many short early delays, so a few seconds of outage can already
    /// count enough attempts for a 16 s or 30 s ceiling; a server back after 3 s would then
    /// wait far longer than it was gone. Bounded by the outage's age, the wait after a return
    /// is never longer than the outage itself (nor than `cap`), and without jitter the
    /// attempts still fall at `base`, 2·`base`, 4·`base` … since the first failure.
    pub fn delay_in_outage(
        &self,
        attempt: u32,
        outage: Duration,
        rng: &mut impl rand::Rng,
    ) -> Duration {
        self.draw_below(self.ceiling(attempt).min(outage.max(self.base)), rng)
    }

    /// Whether a job that has now failed `attempts` times should be given up (dead-lettered).
    pub fn exhausted(&self, attempts: u32) -> bool {
        self.max_attempts != UNLIMITED && attempts >= self.max_attempts
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

impl RestartPolicy {
    /// The delays between restarts: doubling from `base` to `cap`, no jitter.
    pub fn backoff(&self) -> RetryPolicy {
        RetryPolicy::unlimited(self.base, self.cap, Jitter::None)
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
        Some(self.policy.backoff().ceiling(in_window.saturating_add(1)))
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
    fn a_delay_in_an_outage_is_never_longer_than_the_outage_nor_the_cap() {
        let p = RetryPolicy::unlimited(
            Duration::from_secs(1),
            Duration::from_secs(30),
            Jitter::Full,
        );
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for attempt in 1..=40 {
            for outage_ms in [0u64, 400, 1_000, 3_000, 7_500, 20_000, 90_000] {
                let outage = Duration::from_millis(outage_ms);
                let bound = p.ceiling(attempt).min(outage.max(p.base));
                for _ in 0..50 {
                    let d = p.delay_in_outage(attempt, outage, &mut rng);
                    assert!(d <= bound, "attempt {attempt}, outage {outage:?}: {d:?}");
                }
            }
        }
        // Many quick failures in a 3 s outage do not earn the 30 s ceiling.
        assert!(p.delay_in_outage(12, Duration::from_secs(3), &mut rng) <= Duration::from_secs(3));
        // Without jitter the series keeps its doubling: attempts 1 s, 2 s, 4 s … after the start.
        let exact = RetryPolicy::unlimited(
            Duration::from_secs(1),
            Duration::from_secs(30),
            Jitter::None,
        );
        let mut at = Duration::ZERO;
        let mut times = Vec::new();
        for attempt in 1..=7 {
            at += exact.delay_in_outage(attempt, at, &mut rng);
            times.push(at.as_secs());
        }
        assert_eq!(times, [1, 2, 4, 8, 16, 32, 62]);
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
        let forever = RetryPolicy::unlimited(secs(1), secs(30), Jitter::Full);
        assert!(!forever.exhausted(u32::MAX - 1));
    }

    #[test]
    fn factor_and_jitter_kinds() {
        let p = RetryPolicy {
            base: Duration::from_millis(100),
            cap: secs(10),
            factor: 3,
            jitter: Jitter::None,
            max_attempts: UNLIMITED,
        };
        let got: Vec<u64> = (1..=7).map(|a| p.ceiling(a).as_millis() as u64).collect();
        assert_eq!(got, vec![100, 300, 900, 2700, 8100, 10_000, 10_000]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        assert_eq!(p.delay(3, &mut rng), Duration::from_millis(900));
        let half = RetryPolicy {
            jitter: Jitter::Half,
            ..p.clone()
        };
        for _ in 0..200 {
            let d = half.delay(3, &mut rng);
            assert!(d >= Duration::from_millis(450) && d <= Duration::from_millis(900));
        }
        let constant = RetryPolicy { factor: 1, ..p };
        assert_eq!(constant.ceiling(9), Duration::from_millis(100));
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
