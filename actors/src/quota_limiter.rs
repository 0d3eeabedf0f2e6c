//! One cost-weighted rate limiter in quota units ([`UnitLimiter`]: governor's GCRA on tokio's
//! pausable clock), its settings ([`QuotaLimits`]) and why a charge can fail ([`QuotaError`]).
//! The per-user pacing ladder (`quota_pacing`) and the per-project limiter (`quota`) are built
//! from it.

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;
use std::time::Duration;
use tokio::time::Instant;

/// Share of the published ceiling the default pacing uses.
pub const DEFAULT_PACING: f64 = 0.97;

/// Capacity and refill of one limiter, in quota units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaLimits {
    /// Sustained refill rate.
    pub units_per_minute: u32,
    /// Most units spendable at once; must be ≥ the largest single cost charged.
    pub burst: u32,
}

impl QuotaLimits {
    /// Pacing at `share` (0 < share ≤ 1) of `ceiling_per_minute`, with the rest of the ceiling
    /// as burst, so `burst + rate × 60 s ≤ ceiling`. The burst is at least 1 unit.
    pub fn paced(ceiling_per_minute: u32, share: f64) -> Self {
        let share = if share.is_finite() {
            share.clamp(0.0, 1.0)
        } else {
            DEFAULT_PACING
        };
        // Float → int casts saturate; the values are bounded by `ceiling_per_minute`.
        let rate = ((f64::from(ceiling_per_minute) * share).floor() as u32).max(1);
        let burst = ceiling_per_minute.saturating_sub(rate).max(1);
        Self {
            units_per_minute: rate,
            burst,
        }
    }

    /// Raises `burst` to at least `min_burst` (e.g. the largest single cost).
    pub fn with_min_burst(self, min_burst: u32) -> Self {
        Self {
            burst: self.burst.max(min_burst),
            ..self
        }
    }
}

/// Why a gate refused a charge.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// A single charge larger than the limiter's burst can never pass.
    #[error("a charge of {units} units exceeds the {limiter} burst of {burst} units")]
    ExceedsBurst {
        /// The units asked for.
        units: u32,
        /// `user` or `project`.
        limiter: &'static str,
        /// The limiter's burst.
        burst: u32,
    },
    /// Limits with a zero rate or burst.
    #[error("invalid quota limits: {0}")]
    InvalidLimits(String),
    /// The gate was closed (the account is shutting down).
    #[error("quota gate closed")]
    Closed,
}

/// governor clock on tokio's (pausable) time: nanoseconds since the limiter was built.
#[derive(Clone, Debug)]
pub(crate) struct TokioClock {
    origin: Instant,
}

impl Clock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(Instant::now().saturating_duration_since(self.origin))
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Nanos>>;

/// A cost-weighted limiter plus its burst (kept to report `ExceedsBurst` without asking).
#[derive(Debug)]
pub(crate) struct UnitLimiter {
    limiter: Limiter,
    clock: TokioClock,
    pub(crate) limits: QuotaLimits,
    name: &'static str,
}

impl UnitLimiter {
    pub(crate) fn new(limits: QuotaLimits, name: &'static str) -> Result<Self, QuotaError> {
        let rate = NonZeroU32::new(limits.units_per_minute)
            .ok_or_else(|| QuotaError::InvalidLimits(format!("{name}: zero units per minute")))?;
        let burst = NonZeroU32::new(limits.burst)
            .ok_or_else(|| QuotaError::InvalidLimits(format!("{name}: zero burst")))?;
        let period = Duration::from_secs(60) / rate.get();
        let quota = Quota::with_period(period)
            .ok_or_else(|| QuotaError::InvalidLimits(format!("{name}: rate too high")))?
            .allow_burst(burst);
        let clock = TokioClock {
            origin: Instant::now(),
        };
        Ok(Self {
            limiter: RateLimiter::direct_with_clock(quota, clock.clone()),
            clock,
            limits,
            name,
        })
    }

    /// Spends `units` if they fit now (`Ok(Ok(()))`); else how long until they would.
    pub(crate) fn try_n(&self, units: NonZeroU32) -> Result<Result<(), Duration>, QuotaError> {
        match self.limiter.check_n(units) {
            Ok(Ok(())) => Ok(Ok(())),
            Ok(Err(not_until)) => Ok(Err(not_until.wait_time_from(self.clock.now()))),
            Err(_) => Err(QuotaError::ExceedsBurst {
                units: units.get(),
                limiter: self.name,
                burst: self.limits.burst,
            }),
        }
    }

    /// Waits until `units` can be spent and spends them.
    pub(crate) async fn until_n_ready(&self, units: NonZeroU32) -> Result<(), QuotaError> {
        loop {
            match self.limiter.check_n(units) {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(not_until)) => {
                    let wait = not_until.wait_time_from(self.clock.now());
                    tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
                }
                Err(_) => {
                    return Err(QuotaError::ExceedsBurst {
                        units: units.get(),
                        limiter: self.name,
                        burst: self.limits.burst,
                    });
                }
            }
        }
    }
}
