//! Per-user pacing that spends the burst a server grants and backs off when it does not:
//! [`PacingLadder`] holds one limiter per stage, from the most generous to the most careful,
//! and steps down one stage at each new rate-limit refusal ([`PacingLadder::refused`]).
//!
//! An adaptive ladder ([`PacingLadder::adaptive`]) has three stages:
//! 1. **opening** — the bucket holds the whole minute's ceiling and starts full, as Google's
//!    per-user bucket does (reference gmail-api.md §3.1, "short bursts allowed"), and refills
//!    at the configured pacing: an account that starts or has been idle spends a minute's
//!    units at once, then settles at the rate. A token bucket of the published size never
//!    refuses this.
//! 2. **windowed** — the server refused, so it is not such a bucket (a sliding window, a
//!    per-second sub-limit, or units another client spent): a log of this client's own spend
//!    keeps every 60-second window at or under the ceiling, the opening spend included, and a
//!    per-second limiter (half as burst, half as rate) keeps every second under 80 % of what
//!    got through in the second before the refusal — never below the configured pacing (`burst + rate × 60 s ≤ ceiling`). Against
//!    a sliding window this spends each minute's ceiling as soon as the window lets it.
//! 3. **smooth** — refused again: the configured rate with a burst of the largest single
//!    cost (and the window guard), so no second holds more than the rate's share plus one call.
//!
//! Refusals that arrive within [`EPISODE`] of a step belong to requests already in flight
//! when the ladder stepped; they do not step it again. The ladder never climbs back: what a
//! server refused once it will refuse again, and the windowed stage keeps at least the configured
//! burst (3 % of the minute) for real-time work. A fixed ladder ([`PacingLadder::fixed`]) is one stage.

use crate::quota_limiter::{QuotaError, QuotaLimits, UnitLimiter};
use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;
use tokio::time::Instant;

/// Refusals this close to a step are the same episode.
pub(crate) const EPISODE: Duration = Duration::from_secs(1);

/// A server's per-minute window, in whole seconds of this client's log.
const WINDOW_SECS: u64 = 60;

/// The units this client spent in each of the last 60 whole seconds, oldest first.
///
/// A unit spent during second `s` is treated as leaving the window at `s + 61`, never
/// earlier than the server's `(t − 60 s, t]` lets it go, so the log errs on the safe side.
#[derive(Debug)]
struct SpendLog {
    origin: Instant,
    seconds: VecDeque<(u64, u64)>,
    total: u64,
    /// Charges of the last second, exactly timed (what a per-second limit sees).
    recent: VecDeque<(Instant, u64)>,
}

impl SpendLog {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
            seconds: VecDeque::new(),
            total: 0,
            recent: VecDeque::new(),
        }
    }

    fn second(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_secs()
    }

    fn age_out(&mut self, now: u64) {
        while let Some(&(s, units)) = self.seconds.front() {
            if s + WINDOW_SECS + 1 > now {
                break;
            }
            self.total -= units;
            self.seconds.pop_front();
        }
    }

    fn record(&mut self, at: Instant, units: u64) {
        let s = self.second(at);
        self.age_out(s);
        match self.seconds.back_mut() {
            Some((last, spent)) if *last == s => *spent += units,
            _ => self.seconds.push_back((s, units)),
        }
        self.total += units;
        self.recent.push_back((at, units));
        self.forget_before(at);
    }

    fn forget_before(&mut self, now: Instant) {
        while let Some(&(t, _)) = self.recent.front() {
            if now.saturating_duration_since(t) < Duration::from_secs(1) {
                break;
            }
            self.recent.pop_front();
        }
    }

    /// Units charged in the last second.
    fn last_second(&mut self, now: Instant) -> u64 {
        self.forget_before(now);
        self.recent.iter().map(|&(_, u)| u).sum()
    }

    /// How long until `units` more fit under `ceiling` in the window; zero if they fit now.
    fn wait_for(&mut self, at: Instant, units: u64, ceiling: u64) -> Duration {
        let now = self.second(at);
        self.age_out(now);
        let mut over = (self.total + units).saturating_sub(ceiling);
        if over == 0 {
            return Duration::ZERO;
        }
        for &(s, spent) in &self.seconds {
            over = over.saturating_sub(spent);
            if over == 0 {
                let leaves = self.origin + Duration::from_secs(s + WINDOW_SECS + 1);
                return leaves
                    .saturating_duration_since(at)
                    .max(Duration::from_millis(1));
            }
        }
        // More than the ceiling asked at once: the caller refuses such charges before this.
        Duration::from_secs(WINDOW_SECS + 1)
    }
}

/// One stage of a ladder: its limiter, and whether the spend log guards its minute.
#[derive(Debug)]
struct Stage {
    name: &'static str,
    index: usize,
    limiter: UnitLimiter,
    windowed: bool,
}

/// The stages of one account's per-user pacing and the stage in force.
#[derive(Debug)]
pub(crate) struct PacingLadder {
    current: RwLock<Arc<Stage>>,
    adaptive: bool,
    /// The paced stage's limits (the configured pacing).
    paced: QuotaLimits,
    smallest_burst: u32,
    ceiling: u64,
    last_step: Mutex<Option<Instant>>,
    log: Mutex<SpendLog>,
}

impl PacingLadder {
    fn build(limits: QuotaLimits, adaptive: bool, smallest_burst: u32) -> Result<Self, QuotaError> {
        let ceiling = limits.units_per_minute.saturating_add(limits.burst);
        let first = if adaptive {
            let opening = QuotaLimits {
                burst: ceiling,
                ..limits
            };
            Stage {
                name: "opening",
                index: 0,
                limiter: UnitLimiter::new(opening, "user")?,
                windowed: false,
            }
        } else {
            Stage {
                name: "fixed",
                index: 0,
                limiter: UnitLimiter::new(limits, "user")?,
                windowed: false,
            }
        };
        Ok(Self {
            current: RwLock::new(Arc::new(first)),
            adaptive,
            paced: limits,
            smallest_burst: smallest_burst.clamp(1, limits.burst.max(1)),
            ceiling: u64::from(ceiling),
            last_step: Mutex::new(None),
            log: Mutex::new(SpendLog::new()),
        })
    }

    /// One stage with `limits`, as before pacing was adaptive.
    pub(crate) fn fixed(limits: QuotaLimits) -> Result<Self, QuotaError> {
        Self::build(limits, false, limits.burst)
    }

    /// The three stages of the module docs; `limits` are the configured pacing (rate and
    /// burst), `smallest_burst` the smooth stage's burst (at least the largest single cost).
    pub(crate) fn adaptive(limits: QuotaLimits, smallest_burst: u32) -> Result<Self, QuotaError> {
        Self::build(limits, true, smallest_burst)
    }

    fn stage(&self) -> Arc<Stage> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The limits of the stage in force.
    pub(crate) fn limits(&self) -> QuotaLimits {
        self.stage().limiter.limits
    }

    /// The name of the stage in force (`opening`, `windowed`, `smooth`, or `fixed`).
    pub(crate) fn stage_name(&self) -> &'static str {
        self.stage().name
    }

    /// The largest charge the stage in force can ever pass.
    pub(crate) fn largest_charge(&self) -> u32 {
        self.limits().burst
    }

    /// Waits until `units` may be spent under the stage in force, then records them.
    pub(crate) async fn until_ready(&self, units: NonZeroU32) -> Result<(), QuotaError> {
        let stage = self.stage();
        stage.limiter.until_n_ready(units).await?;
        if !self.adaptive {
            return Ok(()); // nothing reads the spend log of a fixed ladder
        }
        loop {
            let now = Instant::now();
            let wait = {
                let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
                let wait = if self.stage().windowed {
                    log.wait_for(now, u64::from(units.get()), self.ceiling)
                } else {
                    Duration::ZERO
                };
                if wait.is_zero() {
                    log.record(now, u64::from(units.get()));
                }
                wait
            };
            if wait.is_zero() {
                return Ok(());
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// The stage after `index`, if there is one.
    fn next_stage(&self, index: usize, now: Instant) -> Option<Stage> {
        if !self.adaptive {
            return None;
        }
        let (name, limits) = match index {
            0 => {
                // What got through in the second before the refusal is about what the server
                // allows per second; keep under it, never slower than the configured pacing.
                let second = self
                    .log
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .last_second(now);
                // Half of it as burst, half as the rate: `burst + rate × 1 s` stays under it.
                let half = u32::try_from(second * 2 / 5).unwrap_or(u32::MAX);
                let ceiling = u32::try_from(self.ceiling).unwrap_or(u32::MAX);
                let limits = QuotaLimits {
                    units_per_minute: half.saturating_mul(60).max(self.paced.units_per_minute),
                    burst: half.min(ceiling).max(self.paced.burst),
                };
                ("windowed", limits)
            }
            1 => (
                "smooth",
                QuotaLimits {
                    burst: self.smallest_burst,
                    ..self.paced
                },
            ),
            _ => return None,
        };
        let limiter = UnitLimiter::new(limits, "user").ok()?;
        Some(Stage {
            name,
            index: index + 1,
            limiter,
            windowed: true,
        })
    }

    /// A rate-limit refusal arrived: step down one stage unless this refusal belongs to the
    /// episode of the last step (or the ladder is at its last stage). Returns the new stage's
    /// name when it stepped.
    pub(crate) fn refused(&self) -> Option<&'static str> {
        let now = Instant::now();
        let mut last = self
            .last_step
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.is_some_and(|at| now.saturating_duration_since(at) < EPISODE) {
            return None;
        }
        let next = self.next_stage(self.stage().index, now)?;
        let name = next.name;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
        *last = Some(now);
        Some(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paced() -> QuotaLimits {
        // 6,000 units/min ceiling at 97 %: 5,820/min sustained, 180 burst.
        QuotaLimits::paced(6_000, 0.97)
    }

    fn n(units: u32) -> NonZeroU32 {
        NonZeroU32::new(units).expect("non-zero")
    }

    #[tokio::test(start_paused = true)]
    async fn the_opening_stage_spends_a_minute_at_once() {
        let ladder = PacingLadder::adaptive(paced(), 20).expect("limits");
        let start = Instant::now();
        for _ in 0..300 {
            ladder.until_ready(n(20)).await.expect("charge");
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "6,000 units need no wait");
        assert_eq!(ladder.stage_name(), "opening");
        ladder.until_ready(n(20)).await.expect("charge");
        assert!(
            start.elapsed() > Duration::from_millis(150),
            "then the rate"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_steps_down_once_per_episode_and_never_past_the_last_stage() {
        let ladder = PacingLadder::adaptive(paced(), 20).expect("limits");
        assert_eq!(ladder.refused(), Some("windowed"));
        assert_eq!(ladder.refused(), None, "same episode");
        // Nothing was spent before the refusal: the windowed stage is the configured pacing.
        assert_eq!(ladder.limits(), paced());
        tokio::time::advance(EPISODE).await;
        assert_eq!(ladder.refused(), Some("smooth"));
        assert_eq!(ladder.limits().burst, 20);
        tokio::time::advance(EPISODE).await;
        assert_eq!(ladder.refused(), None, "last stage");
        let fixed = PacingLadder::fixed(paced()).expect("limits");
        assert_eq!(fixed.refused(), None);
        assert_eq!(fixed.stage_name(), "fixed");
    }

    #[tokio::test(start_paused = true)]
    async fn the_windowed_stage_keeps_under_what_passed_in_the_second_before_the_refusal() {
        let ladder = PacingLadder::adaptive(paced(), 20).expect("limits");
        for _ in 0..100 {
            ladder.until_ready(n(20)).await.expect("charge");
        }
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(ladder.refused(), Some("windowed"));
        // 2,000 units passed in the last second: 80 % of that per second, half of it at once
        // and half as the rate, so no second of the windowed stage holds more than 1,600.
        assert_eq!(
            ladder.limits(),
            QuotaLimits {
                units_per_minute: 48_000,
                burst: 800
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_refusal_no_60_second_window_holds_more_than_the_ceiling() {
        let ladder = PacingLadder::adaptive(paced(), 20).expect("limits");
        let origin = Instant::now();
        let mut spent: Vec<(Duration, u64)> = Vec::new();
        // The opening burst: 4,000 units at once, then the server refuses.
        for _ in 0..200 {
            ladder.until_ready(n(20)).await.expect("charge");
            spent.push((origin.elapsed(), 20));
        }
        ladder.refused();
        // Three minutes of charges as fast as the ladder lets them through.
        while origin.elapsed() < Duration::from_secs(180) {
            ladder.until_ready(n(20)).await.expect("charge");
            spent.push((origin.elapsed(), 20));
        }
        for &(t, _) in &spent {
            let window: u64 = spent
                .iter()
                .filter(|(u, _)| *u >= t && *u < t + Duration::from_secs(60))
                .map(|(_, c)| c)
                .sum();
            assert!(window <= 6_000, "{window} units in the minute from {t:?}");
        }
        // And it still spends close to the sustained rate: 3 minutes ≈ 3 × 5,820 + the burst.
        let total: u64 = spent.iter().map(|(_, c)| c).sum();
        assert!(total >= 16_000, "only {total} units in 3 minutes");
    }

    #[test]
    fn the_log_forgets_a_second_61_seconds_later() {
        let mut log = SpendLog::new();
        let t0 = log.origin;
        log.record(t0, 5_000);
        log.record(t0 + Duration::from_secs(10), 1_000);
        assert_eq!(log.wait_for(t0 + Duration::from_secs(20), 1, 6_000), {
            Duration::from_secs(41)
        });
        assert_eq!(
            log.wait_for(t0 + Duration::from_secs(61), 1, 6_000),
            Duration::ZERO
        );
        assert_eq!(log.total, 1_000);
    }
}
