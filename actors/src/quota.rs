//! Quota pacing for one Gmail account: [`QuotaGate`] owns the account's per-user pacing (a
//! fixed cost-weighted limiter in quota **units** per user per minute, or the adaptive ladder of
//! `quota_pacing` that spends the server's burst first), an optional per-project limiter shared by
//! every account of one OAuth client ([`ProjectQuota`]), the cap on requests in flight, and the
//! account-wide pause a rate-limit answer imposes ([`QuotaGate::slow_down`]). [`CostTable`]
//! holds Gmail's published per-method costs (reference gmail-api.md §3.2).
//!
//! Window semantics (what the emulator must agree with): a GCRA limiter refills
//! `units_per_minute / 60 s` continuously and holds at most `burst` units. In any window of
//! length `T` the gate therefore lets through at most `burst + rate × T` units. The default
//! pacing ([`QuotaLimits::paced`]) runs at 97 % of the published ceiling and sets `burst` to the
//! remaining 3 %, so any 60-second window — sliding or fixed — stays at or under the ceiling.
//! An adaptive gate ([`QuotaGate::adaptive`]) opens with the whole ceiling as burst instead and
//! keeps that window property only from its first rate-limit answer on (`quota_pacing`).
//!
//! Time is tokio's ([`tokio::time::Instant`]), both for the limiter's clock and for waiting, so
//! the gate is deterministic under `tokio::time::pause()`. (governor's own `until_n_ready` sleeps
//! on a real-time timer; [`QuotaGate`] runs the same `check_n` loop on tokio's timer instead.)

use crate::quota_fair::FairLimiter;
pub use crate::quota_fair::{WorkClass, current_class, in_class};
use crate::quota_limiter::UnitLimiter;
pub use crate::quota_limiter::{DEFAULT_PACING, QuotaError, QuotaLimits};
use crate::quota_pacing::PacingLadder;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Default cap on requests (batch parts count individually) in flight per account.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 10;
/// Google's per-project Gmail ceiling, units per minute (both quota generations).
pub const PROJECT_UNITS_PER_MINUTE: u32 = 1_200_000;

/// Which generation of Gmail's quota numbers an OAuth client's Cloud project is on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuotaProfile {
    /// Projects created on or after 1 May 2026: 6,000 units/user/minute, messages.get = 20.
    #[default]
    #[serde(rename = "2026")]
    Y2026,
    /// Projects that used Gmail before May 2026: 15,000 units/user/minute, messages.get = 5.
    Legacy,
}

/// Per-method quota costs and the published per-minute ceilings. Every field is public so a
/// config can override any single value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostTable {
    /// `users.getProfile`.
    pub get_profile: u32,
    /// `users.labels.list`.
    pub labels_list: u32,
    /// `users.messages.list`.
    pub messages_list: u32,
    /// `users.messages.get` (per batch part).
    pub messages_get: u32,
    /// `users.history.list`.
    pub history_list: u32,
    /// `users.watch`.
    pub watch: u32,
    /// `users.stop`.
    pub stop: u32,
    /// Published per-user ceiling, units per minute.
    pub user_units_per_minute: u32,
    /// Published per-project ceiling, units per minute.
    pub project_units_per_minute: u32,
}

impl CostTable {
    /// The model in force for projects created from 1 May 2026 on.
    pub fn profile_2026() -> Self {
        Self {
            get_profile: 1,
            labels_list: 1,
            messages_list: 5,
            messages_get: 20,
            history_list: 2,
            watch: 100,
            stop: 50,
            user_units_per_minute: 6_000,
            project_units_per_minute: PROJECT_UNITS_PER_MINUTE,
        }
    }

    /// The 2023 → April 2026 model (kept by projects that used Gmail before May 2026).
    pub fn legacy() -> Self {
        Self {
            messages_get: 5,
            user_units_per_minute: 15_000,
            ..Self::profile_2026()
        }
    }

    /// The table of a profile.
    pub fn for_profile(profile: QuotaProfile) -> Self {
        match profile {
            QuotaProfile::Y2026 => Self::profile_2026(),
            QuotaProfile::Legacy => Self::legacy(),
        }
    }

    /// The largest cost of a call the sync client makes (the minimum sensible burst).
    pub fn largest_cost(&self) -> u32 {
        [
            self.get_profile,
            self.labels_list,
            self.messages_list,
            self.messages_get,
            self.history_list,
            self.watch,
            self.stop,
        ]
        .into_iter()
        .max()
        .unwrap_or(1)
    }

    /// Default per-user pacing for this table ([`QuotaLimits::paced`] at [`DEFAULT_PACING`]).
    pub fn user_limits(&self) -> QuotaLimits {
        QuotaLimits::paced(self.user_units_per_minute, DEFAULT_PACING)
    }

    /// Default per-project pacing for this table.
    pub fn project_limits(&self) -> QuotaLimits {
        QuotaLimits::paced(self.project_units_per_minute, DEFAULT_PACING)
    }
}

impl Default for CostTable {
    fn default() -> Self {
        Self::profile_2026()
    }
}

/// The per-project limiter: one per OAuth client id, shared (`Arc`) by all its accounts,
/// which take fair turns at it (`quota_fair`: real-time first, bulk round-robin by account).
#[derive(Debug)]
pub struct ProjectQuota {
    limiter: FairLimiter,
    units_spent: AtomicU64,
}

impl ProjectQuota {
    /// A project limiter with these limits.
    pub fn new(limits: QuotaLimits) -> Result<Arc<Self>, QuotaError> {
        Ok(Arc::new(Self {
            limiter: FairLimiter::new(UnitLimiter::new(limits, "project")?),
            units_spent: AtomicU64::new(0),
        }))
    }

    /// Google's 1,200,000 units/minute, paced at [`DEFAULT_PACING`].
    pub fn google_default() -> Result<Arc<Self>, QuotaError> {
        Self::new(QuotaLimits::paced(PROJECT_UNITS_PER_MINUTE, DEFAULT_PACING))
    }

    /// The limits in force.
    pub fn limits(&self) -> QuotaLimits {
        self.limiter.limiter().limits
    }

    /// Units charged through this project limiter so far, by all its accounts.
    pub fn units_spent(&self) -> u64 {
        self.units_spent.load(Ordering::Relaxed)
    }
}

/// Hands out one [`ProjectQuota`] per OAuth client id, so accounts of one client share it.
#[derive(Debug)]
pub struct ProjectQuotas {
    limits: QuotaLimits,
    by_client: Mutex<HashMap<String, Arc<ProjectQuota>>>,
}

impl ProjectQuotas {
    /// A registry whose limiters all use `limits`.
    pub fn new(limits: QuotaLimits) -> Self {
        Self {
            limits,
            by_client: Mutex::new(HashMap::new()),
        }
    }

    /// The limiter of `client_id`, created on first use.
    pub fn for_client(&self, client_id: &str) -> Result<Arc<ProjectQuota>, QuotaError> {
        let mut map = self
            .by_client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(existing) = map.get(client_id) {
            return Ok(Arc::clone(existing));
        }
        let created = ProjectQuota::new(self.limits)?;
        map.insert(client_id.to_owned(), Arc::clone(&created));
        Ok(created)
    }
}

/// A snapshot of a gate's counters, for status replies and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaStats {
    /// Quota units charged (each charge counts once it has passed the limiters).
    pub units_spent: u64,
    /// Charges made (calls and batch parts).
    pub charges: u64,
    /// Rate-limit answers reported through [`QuotaGate::slow_down`].
    pub rate_errors: u64,
    /// Total time callers spent waiting on the gate (limiters, pause, in-flight cap), in ms.
    pub waited_ms: u64,
    /// Requests in flight right now (batch parts count individually).
    pub in_flight: u64,
    /// The per-user burst in force (it shrinks as an adaptive gate steps down).
    #[serde(default)]
    pub burst: u32,
}

/// Held while a request is in flight; dropping it frees its in-flight slots.
#[derive(Debug)]
pub struct InFlight {
    _permit: OwnedSemaphorePermit,
}

/// How one account paces itself. See the module docs for the window semantics.
#[derive(Debug)]
pub struct QuotaGate {
    account: String,
    user: PacingLadder,
    project: Option<Arc<ProjectQuota>>,
    in_flight: Arc<Semaphore>,
    max_in_flight: u32,
    paused_until: Mutex<Option<Instant>>,
    units_spent: AtomicU64,
    charges: AtomicU64,
    rate_errors: AtomicU64,
    waited_ns: AtomicU64,
}

impl QuotaGate {
    /// A gate for `account` with per-user `limits`, at most `max_in_flight` requests in
    /// flight (0 is treated as 1), and optionally the project limiter shared with the other
    /// accounts of the same OAuth client.
    pub fn new(
        account: impl Into<String>,
        limits: QuotaLimits,
        max_in_flight: usize,
        project: Option<Arc<ProjectQuota>>,
    ) -> Result<Self, QuotaError> {
        Self::with_ladder(
            account.into(),
            PacingLadder::fixed(limits)?,
            max_in_flight,
            project,
        )
    }

    /// A gate whose per-user pacing adapts (module `quota_pacing`): it opens with a burst of
    /// the whole ceiling (`limits.units_per_minute + limits.burst`); at the first rate-limit
    /// answer it keeps every 60-second window under the ceiling and each second under what
    /// got through before the refusal (never slower than `limits`); at the next it paces at
    /// `limits` with a burst of `smallest_burst` (at least the largest single cost).
    pub fn adaptive(
        account: impl Into<String>,
        limits: QuotaLimits,
        smallest_burst: u32,
        max_in_flight: usize,
        project: Option<Arc<ProjectQuota>>,
    ) -> Result<Self, QuotaError> {
        Self::with_ladder(
            account.into(),
            PacingLadder::adaptive(limits, smallest_burst)?,
            max_in_flight,
            project,
        )
    }

    fn with_ladder(
        account: String,
        user: PacingLadder,
        max_in_flight: usize,
        project: Option<Arc<ProjectQuota>>,
    ) -> Result<Self, QuotaError> {
        let max_in_flight = u32::try_from(max_in_flight.max(1)).unwrap_or(u32::MAX >> 3);
        Ok(Self {
            account,
            user,
            project,
            in_flight: Arc::new(Semaphore::new(max_in_flight as usize)),
            max_in_flight,
            paused_until: Mutex::new(None),
            units_spent: AtomicU64::new(0),
            charges: AtomicU64::new(0),
            rate_errors: AtomicU64::new(0),
            waited_ns: AtomicU64::new(0),
        })
    }

    /// A gate with the default pacing of `costs` ([`CostTable::user_limits`], burst at least the
    /// largest cost) and [`DEFAULT_MAX_IN_FLIGHT`].
    pub fn with_costs(
        account: impl Into<String>,
        costs: &CostTable,
        project: Option<Arc<ProjectQuota>>,
    ) -> Result<Self, QuotaError> {
        let limits = costs.user_limits().with_min_burst(costs.largest_cost());
        Self::new(account, limits, DEFAULT_MAX_IN_FLIGHT, project)
    }

    /// The account this gate paces.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The per-user limits in force (the stage of an adaptive gate).
    pub fn limits(&self) -> QuotaLimits {
        self.user.limits()
    }

    /// The per-user pacing stage in force: `opening`, `paced` or `smooth` for an adaptive
    /// gate, `fixed` otherwise.
    pub fn pacing(&self) -> &'static str {
        self.user.stage_name()
    }

    /// The in-flight cap.
    pub fn max_in_flight(&self) -> u32 {
        self.max_in_flight
    }

    /// Waits for `slots` in-flight slots (capped at the gate's maximum, so a batch larger than
    /// the cap takes all of them) and for any pause set by [`QuotaGate::slow_down`].
    pub async fn enter(&self, slots: u32) -> Result<InFlight, QuotaError> {
        let started = Instant::now();
        self.wait_pause().await;
        let slots = slots.clamp(1, self.max_in_flight);
        let permit = Arc::clone(&self.in_flight)
            .acquire_many_owned(slots)
            .await
            .map_err(|_| QuotaError::Closed)?;
        self.wait_pause().await;
        self.add_wait(started);
        Ok(InFlight { _permit: permit })
    }

    /// Waits until `units` may be spent under the user limiter (and the project limiter, if
    /// any) and any pause is over, then counts them as spent. `0` units passes at once.
    pub async fn charge(&self, units: u32) -> Result<(), QuotaError> {
        let Some(n) = NonZeroU32::new(units) else {
            return Ok(());
        };
        let burst = self.user.largest_charge();
        if units > burst {
            return Err(QuotaError::ExceedsBurst {
                units,
                limiter: "user",
                burst,
            });
        }
        let started = Instant::now();
        self.wait_pause().await;
        self.user.until_ready(n).await?;
        if let Some(project) = &self.project {
            project
                .limiter
                .take(&self.account, current_class(), n)
                .await?;
            project
                .units_spent
                .fetch_add(u64::from(units), Ordering::Relaxed);
        }
        // A rate-limit answer that arrived while we waited pauses us too.
        self.wait_pause().await;
        self.units_spent
            .fetch_add(u64::from(units), Ordering::Relaxed);
        self.charges.fetch_add(1, Ordering::Relaxed);
        self.add_wait(started);
        Ok(())
    }

    /// Enters with one slot and charges `units`: the usual prelude of a single request.
    pub async fn acquire(&self, units: u32) -> Result<InFlight, QuotaError> {
        let permit = self.enter(1).await?;
        self.charge(units).await?;
        Ok(permit)
    }

    /// The provider answered with a rate limit: every caller of this account waits until
    /// `retry_after` from now (a longer pause already in force is kept). Counts a rate error.
    pub fn slow_down(&self, retry_after: Duration) {
        self.rate_errors.fetch_add(1, Ordering::Relaxed);
        if let Some(stage) = self.user.refused() {
            tracing::info!(
                account = %self.account,
                pacing = stage,
                burst = self.user.limits().burst,
                "the server refused the burst; pacing more carefully from now on"
            );
        }
        let until = Instant::now() + retry_after;
        let mut paused = self
            .paused_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if paused.is_none_or(|current| current < until) {
            *paused = Some(until);
        }
        tracing::debug!(
            account = %self.account,
            retry_after_ms = u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX),
            "quota gate paused after a rate-limit answer"
        );
    }

    /// When the current pause ends, if one is in force.
    pub fn paused_until(&self) -> Option<Instant> {
        let paused = self
            .paused_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        paused.filter(|until| *until > Instant::now())
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> QuotaStats {
        let available = u32::try_from(self.in_flight.available_permits()).unwrap_or(u32::MAX);
        QuotaStats {
            units_spent: self.units_spent.load(Ordering::Relaxed),
            charges: self.charges.load(Ordering::Relaxed),
            rate_errors: self.rate_errors.load(Ordering::Relaxed),
            waited_ms: self.waited_ns.load(Ordering::Relaxed) / 1_000_000,
            in_flight: u64::from(self.max_in_flight.saturating_sub(available)),
            burst: self.user.limits().burst,
        }
    }

    /// Closes the gate: every waiting and future [`QuotaGate::enter`] fails with `Closed`.
    pub fn close(&self) {
        self.in_flight.close();
    }

    async fn wait_pause(&self) {
        while let Some(until) = self.paused_until() {
            tokio::time::sleep_until(until).await;
        }
    }

    fn add_wait(&self, started: Instant) {
        let waited = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.waited_ns.fetch_add(waited, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(units_per_minute: u32, burst: u32) -> QuotaGate {
        QuotaGate::new(
            "acct",
            QuotaLimits {
                units_per_minute,
                burst,
            },
            4,
            None,
        )
        .expect("valid limits")
    }

    #[test]
    fn cost_tables_match_the_reference() {
        let new = CostTable::profile_2026();
        assert_eq!(new.messages_get, 20);
        assert_eq!(new.user_units_per_minute, 6_000);
        assert_eq!(new.messages_list, 5);
        assert_eq!(new.history_list, 2);
        assert_eq!(new.get_profile, 1);
        let old = CostTable::legacy();
        assert_eq!(old.messages_get, 5);
        assert_eq!(old.user_units_per_minute, 15_000);
        assert_eq!(CostTable::for_profile(QuotaProfile::Legacy), old);
        let overridden = CostTable {
            messages_get: 7,
            ..CostTable::profile_2026()
        };
        assert_eq!(overridden.messages_get, 7);
    }

    #[test]
    fn default_pacing_keeps_any_minute_under_the_ceiling() {
        for ceiling in [6_000u32, 15_000, 1_200_000] {
            let limits = QuotaLimits::paced(ceiling, DEFAULT_PACING);
            assert!(limits.units_per_minute + limits.burst <= ceiling);
            assert!(limits.units_per_minute >= ceiling * 96 / 100);
            assert!(limits.burst >= CostTable::profile_2026().messages_get);
        }
        assert_eq!(
            QuotaLimits::paced(6_000, 0.97),
            QuotaLimits {
                units_per_minute: 5_820,
                burst: 180
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn burst_passes_at_once_then_refill_paces() {
        // 600 units/min = 10 units/s; burst 100.
        let g = gate(600, 100);
        let t0 = Instant::now();
        for _ in 0..5 {
            g.charge(20).await.expect("within burst");
        }
        assert_eq!(t0.elapsed(), Duration::ZERO, "burst is immediate");
        g.charge(20).await.expect("waits for refill");
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_millis(1_900) && waited <= Duration::from_millis(2_100),
            "20 units at 10/s need ~2 s, waited {waited:?}"
        );
        let stats = g.stats();
        assert_eq!(stats.units_spent, 120);
        assert_eq!(stats.charges, 6);
    }

    #[tokio::test(start_paused = true)]
    async fn sustained_rate_matches_units_per_minute() {
        let g = gate(5_820, 180);
        let t0 = Instant::now();
        // 300 messages.get at 20 units = 6,000 units: 180 burst, the rest at 97 units/s.
        for _ in 0..300 {
            g.charge(20).await.expect("charge");
        }
        let elapsed = t0.elapsed().as_secs_f64();
        let expected = (6_000.0 - 180.0) / (5_820.0 / 60.0);
        assert!(
            (elapsed - expected).abs() < 0.5,
            "elapsed {elapsed} expected {expected}"
        );
        assert_eq!(g.stats().units_spent, 6_000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_charge_above_the_burst_is_refused() {
        let g = gate(600, 10);
        assert!(matches!(
            g.charge(20).await,
            Err(QuotaError::ExceedsBurst {
                units: 20,
                burst: 10,
                ..
            })
        ));
        assert_eq!(g.charge(0).await, Ok(()));
        assert!(
            QuotaGate::new(
                "a",
                QuotaLimits {
                    units_per_minute: 0,
                    burst: 1
                },
                1,
                None
            )
            .is_err()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn slow_down_pauses_every_caller_of_the_account() {
        let g = Arc::new(gate(60_000, 1_000));
        g.slow_down(Duration::from_secs(5));
        // A shorter pause does not cut the longer one short.
        g.slow_down(Duration::from_secs(1));
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let g = Arc::clone(&g);
            tasks.push(tokio::spawn(async move {
                let _slot = g.acquire(1).await.expect("acquire");
                Instant::now()
            }));
        }
        for task in tasks {
            let passed_at = task.await.expect("task");
            assert!(passed_at.duration_since(t0) >= Duration::from_secs(5));
        }
        assert_eq!(g.stats().rate_errors, 2);
        assert!(g.paused_until().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_cap_holds_and_batches_take_the_whole_cap() {
        let g = Arc::new(gate(60_000, 1_000));
        let a = g.enter(1).await.expect("slot");
        let b = g.enter(1).await.expect("slot");
        assert_eq!(g.stats().in_flight, 2);
        // A 50-part batch wants every slot (4): it waits for a and b.
        let g2 = Arc::clone(&g);
        let batch = tokio::spawn(async move {
            let _all = g2.enter(50).await.expect("all slots");
            g2.stats().in_flight
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!batch.is_finished());
        drop(a);
        drop(b);
        assert_eq!(batch.await.expect("batch"), 4);
        assert_eq!(g.stats().in_flight, 0);
        g.close();
        assert_eq!(g.enter(1).await.err(), Some(QuotaError::Closed));
    }

    #[tokio::test(start_paused = true)]
    async fn project_limiter_is_shared_by_accounts_of_one_client() {
        let registry = ProjectQuotas::new(QuotaLimits {
            units_per_minute: 60,
            burst: 10,
        });
        let p1 = registry.for_client("client-a").expect("project");
        let p2 = registry.for_client("client-a").expect("project");
        assert!(Arc::ptr_eq(&p1, &p2));
        let other = registry.for_client("client-b").expect("project");
        assert!(!Arc::ptr_eq(&p1, &other));

        let limits = QuotaLimits {
            units_per_minute: 60_000,
            burst: 1_000,
        };
        let a = QuotaGate::new("a", limits, 4, Some(p1)).expect("gate");
        let b = QuotaGate::new("b", limits, 4, Some(p2)).expect("gate");
        let t0 = Instant::now();
        a.charge(10).await.expect("burst");
        // The project bucket (1 unit/s) is empty now; b waits although its own is full.
        b.charge(5).await.expect("after refill");
        let waited = t0.elapsed();
        assert!(waited >= Duration::from_millis(4_900), "waited {waited:?}");
        assert_eq!(other.units_spent(), 0);
        assert_eq!(
            registry.for_client("client-a").expect("p").units_spent(),
            15
        );
    }

    #[test]
    fn gate_with_costs_has_a_burst_for_the_largest_cost() {
        let g = QuotaGate::with_costs("a", &CostTable::profile_2026(), None).expect("gate");
        assert!(g.limits().burst >= 100);
        assert_eq!(g.max_in_flight(), DEFAULT_MAX_IN_FLIGHT as u32);
    }
}
