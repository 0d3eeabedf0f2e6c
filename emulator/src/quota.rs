//! Quota enforcement: per-user and per-project rate limits and a per-user in-flight cap.
//!
//! Window semantics (documented in docs/emulator.md): every limit of `L` units per minute is
//! a GCRA / token bucket with capacity `L` that refills one unit every `T = 60 s / L`
//! (integer nanoseconds), starting full — the same algorithm and arithmetic as
//! `governor::Quota::per_minute(L)` with `check_n(cost)`; a unit test checks decision-for-
//! decision equality with governor. Any client whose spend over every sliding 60-second window
//! is ≤ `L` is never refused. A refused request consumes nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::config::QuotaProfile;
use crate::util::lock;

/// Which API a charge belongs to (separate budgets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    Gmail,
    Calendar,
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    User,
    Project,
}

#[derive(Debug, Clone, Copy)]
pub struct Refused {
    pub kind: LimitKind,
    /// Whole seconds to wait (≥ 1), for `Retry-After`.
    pub retry_after_secs: u64,
    /// Exact wait in nanoseconds until the request would be admitted.
    pub wait_ns: u64,
}

/// Limits for one charge, in units per minute (rounded to whole units, at least 1).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub user_per_minute: f64,
    pub project_per_minute: f64,
}

/// GCRA state: the theoretical arrival time in ns since the quota's base instant.
#[derive(Debug, Clone, Copy)]
struct Gcra {
    tat: u64,
}

const MINUTE_NS: u64 = 60_000_000_000;

/// Decides a charge of `n` units at `now` against a per-minute `limit`; returns the new TAT
/// or the wait in ns (`u64::MAX` when `n` exceeds the whole capacity).
fn gcra_check(state: Option<Gcra>, now: u64, n: u64, limit: u64) -> Result<u64, u64> {
    let limit = limit.max(1);
    let t = (MINUTE_NS / limit).max(1);
    let tau = t * (limit - 1);
    let add = t * n.saturating_sub(1);
    if n > limit {
        return Err(u64::MAX);
    }
    let tat = state.map_or(now, |s| s.tat);
    let earliest = (tat + add).saturating_sub(tau);
    if now < earliest {
        return Err(earliest - now);
    }
    Ok(tat.max(now) + t + add)
}

/// (api, project, user — `None` for the project bucket).
type BucketKey = (Api, String, Option<String>);

#[derive(Debug)]
pub struct Quota {
    base: Instant,
    buckets: Mutex<HashMap<BucketKey, Gcra>>,
    in_flight: Arc<Mutex<HashMap<String, usize>>>,
}

impl Default for Quota {
    fn default() -> Self {
        Self {
            base: Instant::now(),
            buckets: Mutex::default(),
            in_flight: Arc::default(),
        }
    }
}

/// Releases one in-flight slot on drop.
#[derive(Debug)]
pub struct SlotGuard {
    user: String,
    map: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut m = lock(&self.map);
        if let Some(v) = m.get_mut(&self.user) {
            *v = v.saturating_sub(1);
            if *v == 0 {
                m.remove(&self.user);
            }
        }
    }
}

/// Gmail method cost in quota units under a profile (reference §3.2).
pub fn gmail_cost(method: &str, profile: QuotaProfile) -> u64 {
    let new = profile == QuotaProfile::Y2026;
    match method {
        "gmail.users.getProfile" | "gmail.users.labels.list" | "gmail.users.labels.get" => 1,
        "gmail.users.labels.create"
        | "gmail.users.labels.update"
        | "gmail.users.labels.patch"
        | "gmail.users.labels.delete" => 5,
        "gmail.users.history.list" => 2,
        "gmail.users.messages.list" => 5,
        "gmail.users.messages.get"
        | "gmail.users.messages.attachments.get"
        | "gmail.users.messages.trash" => {
            if new {
                20
            } else {
                5
            }
        }
        "gmail.users.messages.modify" | "gmail.users.messages.untrash" => 5,
        "gmail.users.threads.list" => 10,
        "gmail.users.threads.modify" | "gmail.users.threads.untrash" => 10,
        "gmail.users.threads.delete" => 20,
        "gmail.users.threads.trash" => {
            if new {
                20
            } else {
                10
            }
        }
        "gmail.users.threads.get" => {
            if new {
                40
            } else {
                10
            }
        }
        "gmail.users.messages.delete" => 10,
        "gmail.users.messages.batchModify" => 50,
        "gmail.users.watch" => 100,
        "gmail.users.stop" => 50,
        _ => 1,
    }
}

fn whole(limit: f64) -> u64 {
    if limit.is_finite() {
        limit.round().max(1.0) as u64
    } else {
        u64::MAX / MINUTE_NS
    }
}

impl Quota {
    /// Takes an in-flight slot for `user` unless `cap` are already taken.
    pub fn try_slot(&self, user: &str, cap: usize) -> Option<SlotGuard> {
        let mut m = lock(&self.in_flight);
        let v = m.entry(user.to_string()).or_insert(0);
        if *v >= cap {
            return None;
        }
        *v += 1;
        Some(SlotGuard {
            user: user.to_string(),
            map: self.in_flight.clone(),
        })
    }

    /// Charges `units` to the user's and the project's buckets now, or refuses without charging.
    pub fn charge(
        &self,
        api: Api,
        project: &str,
        user: &str,
        units: u64,
        limits: Limits,
    ) -> Result<(), Refused> {
        let now = Instant::now()
            .saturating_duration_since(self.base)
            .as_nanos() as u64;
        self.charge_at(api, project, user, units, limits, now)
    }

    /// [`Quota::charge`] at an explicit time (ns since the quota was created).
    pub fn charge_at(
        &self,
        api: Api,
        project: &str,
        user: &str,
        units: u64,
        limits: Limits,
        now_ns: u64,
    ) -> Result<(), Refused> {
        let mut b = lock(&self.buckets);
        let ukey = (api, project.to_string(), Some(user.to_ascii_lowercase()));
        let pkey = (api, project.to_string(), None);
        let refuse = |kind, wait_ns: u64| Refused {
            kind,
            retry_after_secs: if wait_ns == u64::MAX {
                60
            } else {
                wait_ns.div_ceil(1_000_000_000).max(1)
            },
            wait_ns,
        };
        let unew = gcra_check(
            b.get(&ukey).copied(),
            now_ns,
            units,
            whole(limits.user_per_minute),
        )
        .map_err(|w| refuse(LimitKind::User, w))?;
        let pnew = gcra_check(
            b.get(&pkey).copied(),
            now_ns,
            units,
            whole(limits.project_per_minute),
        )
        .map_err(|w| refuse(LimitKind::Project, w))?;
        b.insert(ukey, Gcra { tat: unew });
        b.insert(pkey, Gcra { tat: pnew });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::time::Duration;

    use governor::clock::FakeRelativeClock;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn lim(user: f64) -> Limits {
        Limits {
            user_per_minute: user,
            project_per_minute: 1e12,
        }
    }

    #[test]
    fn bucket_allows_a_minute_then_refills() {
        let q = Quota::default();
        for _ in 0..5 {
            assert!(q.charge_at(Api::Gmail, "p", "u", 20, lim(100.0), 0).is_ok());
        }
        let Err(r) = q.charge_at(Api::Gmail, "p", "u", 20, lim(100.0), 0) else {
            panic!("expected refusal")
        };
        assert_eq!(r.kind, LimitKind::User);
        assert_eq!(r.wait_ns, 12_000_000_000, "20 units at 100/min");
        assert_eq!(r.retry_after_secs, 12);
        assert!(
            q.charge_at(Api::Gmail, "p", "v", 20, lim(100.0), 0).is_ok(),
            "other users unaffected"
        );
        assert!(
            q.charge_at(Api::Gmail, "p", "u", 20, lim(100.0), 12_000_000_000)
                .is_ok()
        );
        let Err(big) = q.charge_at(Api::Gmail, "p", "w", 101, lim(100.0), 0) else {
            panic!("over capacity")
        };
        assert_eq!(big.wait_ns, u64::MAX);
    }

    #[test]
    fn project_budget_is_shared_across_users() {
        let q = Quota::default();
        let l = Limits {
            user_per_minute: 1000.0,
            project_per_minute: 50.0,
        };
        assert!(q.charge_at(Api::Gmail, "p", "a", 30, l, 0).is_ok());
        let Err(r) = q.charge_at(Api::Gmail, "p", "b", 30, l, 0) else {
            panic!("project limit")
        };
        assert_eq!(r.kind, LimitKind::Project);
        assert!(
            q.charge_at(Api::Gmail, "other-project", "b", 30, l, 0)
                .is_ok()
        );
        assert!(
            q.charge_at(Api::Calendar, "p", "b", 30, l, 0).is_ok(),
            "separate API budgets"
        );
    }

    /// Decision-for-decision equality with governor's GCRA, which the client uses.
    #[test]
    fn matches_governor() {
        for (limit, seed) in [(6_000u32, 1u64), (15_000, 2), (60, 3), (7, 4)] {
            let clock = FakeRelativeClock::default();
            let gov = governor::RateLimiter::direct_with_clock(
                governor::Quota::per_minute(NonZeroU32::new(limit).unwrap_or(NonZeroU32::MIN)),
                clock.clone(),
            );
            let q = Quota::default();
            let mut r = ChaCha8Rng::seed_from_u64(seed);
            let mut now = 0u64;
            let mut admitted = 0;
            for _ in 0..5_000 {
                let step = r.random_range(0..(MINUTE_NS / u64::from(limit)) * 40);
                now += step;
                clock.advance(Duration::from_nanos(step));
                let cost = [1u32, 2, 5, 20, 50, 100][r.random_range(0..6)].min(limit);
                let ours = q.charge_at(
                    Api::Gmail,
                    "p",
                    "u",
                    u64::from(cost),
                    lim(f64::from(limit)),
                    now,
                );
                let theirs = gov.check_n(NonZeroU32::new(cost).unwrap_or(NonZeroU32::MIN));
                match (&ours, &theirs) {
                    (Ok(()), Ok(Ok(()))) => admitted += 1,
                    (Err(o), Ok(Err(not_until))) => {
                        use governor::clock::Clock;
                        let w = not_until.wait_time_from(clock.now());
                        assert_eq!(u128::from(o.wait_ns), w.as_nanos(), "wait differs");
                    }
                    _ => panic!("limit {limit}: ours {ours:?} vs governor {theirs:?} at {now}"),
                }
            }
            assert!(
                admitted > 100,
                "limit {limit}: test exercised admissions ({admitted})"
            );
        }
    }

    /// A client that never spends more than L units in any sliding minute is never refused.
    #[test]
    fn well_paced_clients_are_never_refused() {
        let limit = 6_000u64;
        let q = Quota::default();
        let mut r = ChaCha8Rng::seed_from_u64(7);
        let mut sent: std::collections::VecDeque<(u64, u64)> = Default::default();
        let mut now = 0u64;
        let mut window = 0u64;
        for _ in 0..20_000 {
            now += r.random_range(0..500_000_000u64);
            while let Some(&(t, c)) = sent.front() {
                if t + MINUTE_NS <= now {
                    window -= c;
                    sent.pop_front();
                } else {
                    break;
                }
            }
            let cost = [1u64, 2, 5, 20, 100][r.random_range(0..5)];
            if window + cost > limit {
                continue; // the pacing client holds back
            }
            let res = q.charge_at(Api::Gmail, "p", "u", cost, lim(limit as f64), now);
            assert!(
                res.is_ok(),
                "refused at {now} with {window}+{cost} in the window"
            );
            window += cost;
            sent.push_back((now, cost));
        }
    }

    #[test]
    fn slots_are_released() {
        let q = Quota::default();
        let a = q.try_slot("u", 2);
        let b = q.try_slot("u", 2);
        assert!(a.is_some() && b.is_some());
        assert!(q.try_slot("u", 2).is_none());
        drop(a);
        assert!(q.try_slot("u", 2).is_some());
    }
}
