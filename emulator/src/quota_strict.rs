//! The strict quota mode ([`crate::QuotaMode::Strict`]): sliding windows over the log of
//! actual request times, an arithmetic that shares nothing with the client's limiter
//! (governor's GCRA in `actors/src/quota.rs`, which the default mode reproduces exactly).
//!
//! Per (api, project, user) and per (api, project) the emulator keeps the requests of the
//! last 60 seconds with their cost. A request costing `c` at time `t` is admitted iff, in both
//! the user's and the project's log,
//! - the units of the window `(t − 60 s, t]` plus `c` stay ≤ `L` (the per-minute limit), and
//! - the units of the window `(t − 1 s, t]` plus `c` stay ≤ `S`, the per-second sub-limit
//!   (`⌈L × second_share⌉`, at least 1 — Google's "moving average, short bursts allowed").
//!
//! A refused request is still recorded with its cost (the stricter reading: every request the
//! front end sees counts), so a client that retries without waiting pushes its own admission
//! further out. The wait reported with a refusal is the time until enough of the log has aged
//! out of both windows for the request to fit, rounded up to whole seconds.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use crate::quota::{Api, LimitKind, Limits, Refused};
use crate::util::lock;

const MINUTE_NS: u64 = 60_000_000_000;
const SECOND_NS: u64 = 1_000_000_000;

/// The requests of the last minute for one user or one project.
#[derive(Debug, Default)]
struct Log {
    /// (time in ns since the quota's base, units), oldest first.
    entries: VecDeque<(u64, u64)>,
}

impl Log {
    fn expire(&mut self, now: u64) {
        while let Some(&(t, _)) = self.entries.front() {
            if t + MINUTE_NS <= now {
                self.entries.pop_front();
            } else {
                break;
            }
        }
    }

    /// Units recorded in `(now − width, now]`.
    fn units_within(&self, now: u64, width: u64) -> u64 {
        self.entries
            .iter()
            .rev()
            .take_while(|(t, _)| t + width > now)
            .map(|&(_, c)| c)
            .sum()
    }

    /// The wait (ns) until `cost` more units fit under `limit` in windows of `width`, or
    /// `None` if they fit now. `u64::MAX` when `cost` alone exceeds `limit`.
    fn wait_for(&self, now: u64, width: u64, cost: u64, limit: u64) -> Option<u64> {
        if cost > limit {
            return Some(u64::MAX);
        }
        let mut used = self.units_within(now, width);
        if used + cost <= limit {
            return None;
        }
        // Age entries out of the window, oldest first, until the cost fits.
        for &(t, c) in &self.entries {
            if t + width <= now {
                continue;
            }
            used -= c;
            if used + cost <= limit {
                return Some(t + width - now);
            }
        }
        Some(width)
    }

    /// The longest wait of the minute and second windows (`None` = admitted now).
    fn wait(&self, now: u64, cost: u64, minute: u64, second: u64) -> Option<u64> {
        let a = self.wait_for(now, MINUTE_NS, cost, minute);
        let b = self.wait_for(now, SECOND_NS, cost, second);
        match (a, b) {
            (None, None) => None,
            (x, y) => Some(x.unwrap_or(0).max(y.unwrap_or(0))),
        }
    }
}

/// (api, project, user — `None` for the project log).
type LogKey = (Api, String, Option<String>);

/// Sliding-window quota state of the strict mode.
#[derive(Debug)]
pub struct StrictQuota {
    base: Instant,
    /// The per-second sub-limit as a share of the per-minute limit.
    second_share: f64,
    logs: Mutex<HashMap<LogKey, Log>>,
}

impl StrictQuota {
    /// A fresh state; `second_share` is [`crate::EmulatorConfig::strict_second_share`].
    pub fn new(second_share: f64) -> Self {
        Self {
            base: Instant::now(),
            second_share,
            logs: Mutex::default(),
        }
    }

    /// The per-minute limit and per-second sub-limit for `per_minute` (whole units, ≥ 1).
    pub fn limits_of(&self, per_minute: f64) -> (u64, u64) {
        let minute = if per_minute.is_finite() {
            per_minute.round().max(1.0) as u64
        } else {
            u64::MAX / 4
        };
        let share = if self.second_share.is_finite() {
            self.second_share.clamp(0.0, 1.0)
        } else {
            1.0
        };
        let second = ((minute as f64 * share).ceil() as u64).clamp(1, minute);
        (minute, second)
    }

    /// Decides a request costing `units` now.
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

    /// [`StrictQuota::charge`] at an explicit time (ns since the state was created; calls
    /// must come in non-decreasing time order).
    pub fn charge_at(
        &self,
        api: Api,
        project: &str,
        user: &str,
        units: u64,
        limits: Limits,
        now: u64,
    ) -> Result<(), Refused> {
        let (u_min, u_sec) = self.limits_of(limits.user_per_minute);
        let (p_min, p_sec) = self.limits_of(limits.project_per_minute);
        let ukey = (api, project.to_string(), Some(user.to_ascii_lowercase()));
        let pkey = (api, project.to_string(), None);
        let mut logs = lock(&self.logs);
        logs.entry(ukey.clone()).or_default().expire(now);
        logs.entry(pkey.clone()).or_default().expire(now);
        let admit = |logs: &HashMap<LogKey, Log>| {
            if logs
                .get(&ukey)
                .is_some_and(|l| l.wait(now, units, u_min, u_sec).is_some())
            {
                Some(LimitKind::User)
            } else if logs
                .get(&pkey)
                .is_some_and(|l| l.wait(now, units, p_min, p_sec).is_some())
            {
                Some(LimitKind::Project)
            } else {
                None
            }
        };
        let refused = admit(&logs);
        // Admitted or not, the request is recorded in both logs.
        for key in [&ukey, &pkey] {
            if let Some(log) = logs.get_mut(key) {
                log.entries.push_back((now, units));
            }
        }
        let Some(kind) = refused else {
            return Ok(());
        };
        // The wait counts the refused request itself, which now sits in the windows: a
        // client retrying after `Retry-After` finds room (unless it sent more meanwhile).
        let (key, minute, second) = match kind {
            LimitKind::User => (&ukey, u_min, u_sec),
            LimitKind::Project => (&pkey, p_min, p_sec),
        };
        let wait_ns = logs
            .get(key)
            .and_then(|l| l.wait(now, units, minute, second))
            .unwrap_or(SECOND_NS);
        Err(Refused {
            kind,
            retry_after_secs: if wait_ns == u64::MAX {
                60
            } else {
                wait_ns.div_ceil(SECOND_NS).max(1)
            },
            wait_ns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim(user: f64) -> Limits {
        Limits {
            user_per_minute: user,
            project_per_minute: 1e9,
        }
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn per_second_sub_limit_refuses_a_burst_the_minute_allows() {
        // 600/min, share 1/6 → 100 units per second.
        let q = StrictQuota::new(1.0 / 6.0);
        assert_eq!(q.limits_of(600.0), (600, 100));
        for i in 0..5 {
            assert!(
                q.charge_at(Api::Gmail, "p", "u", 20, lim(600.0), i * MS)
                    .is_ok()
            );
        }
        let Err(r) = q.charge_at(Api::Gmail, "p", "u", 20, lim(600.0), 10 * MS) else {
            panic!("the sixth 20-unit call within a second is refused");
        };
        assert_eq!(r.kind, LimitKind::User);
        // The oldest entry (t = 0) leaves the second window at 1 s; that frees 20 units, but
        // the refused call itself now sits in the window too: 120 − 20 = 100, still full
        // until the second entry leaves at 1.001 s.
        assert_eq!(r.wait_ns, SECOND_NS + MS - 10 * MS);
        assert_eq!(r.retry_after_secs, 1);
        assert!(
            q.charge_at(Api::Gmail, "p", "v", 20, lim(600.0), 10 * MS)
                .is_ok(),
            "other users have their own log"
        );
    }

    #[test]
    fn refused_requests_count_against_the_window() {
        let q = StrictQuota::new(1.0);
        // 100/min, no useful sub-limit.
        assert!(
            q.charge_at(Api::Gmail, "p", "u", 100, lim(100.0), 0)
                .is_ok()
        );
        // Hammering at 1 s intervals: every retry is refused and recorded …
        for s in 1..60 {
            assert!(
                q.charge_at(Api::Gmail, "p", "u", 10, lim(100.0), s * SECOND_NS)
                    .is_err()
            );
        }
        // … so just after the first call aged out, the retries of the last minute still
        // fill the window (59 × 10 units > 100 − 10).
        assert!(
            q.charge_at(Api::Gmail, "p", "u", 10, lim(100.0), 60 * SECOND_NS + MS)
                .is_err()
        );
        // A client that waits a whole quiet minute gets in.
        assert!(
            q.charge_at(Api::Gmail, "p", "u", 10, lim(100.0), 122 * SECOND_NS)
                .is_ok()
        );
    }

    #[test]
    fn sliding_minute_is_exact() {
        let q = StrictQuota::new(1.0);
        assert!(q.charge_at(Api::Gmail, "p", "u", 60, lim(100.0), 0).is_ok());
        assert!(
            q.charge_at(Api::Gmail, "p", "u", 40, lim(100.0), 30 * SECOND_NS)
                .is_ok()
        );
        let Err(r) = q.charge_at(Api::Gmail, "p", "u", 50, lim(100.0), 59 * SECOND_NS) else {
            panic!("the window is full");
        };
        // 60 units leave at 60 s: then 40 + 50 (the refused call) + 50 > 100; the 40 leave at
        // 90 s: 50 + 50 ≤ 100.
        assert_eq!(r.wait_ns, 31 * SECOND_NS);
        let Err(big) = q.charge_at(Api::Gmail, "p", "w", 101, lim(100.0), 0) else {
            panic!("over the whole limit");
        };
        assert_eq!(big.wait_ns, u64::MAX);
        assert_eq!(big.retry_after_secs, 60);
    }

    #[test]
    fn project_log_is_shared_across_users() {
        let q = StrictQuota::new(1.0);
        let l = Limits {
            user_per_minute: 1000.0,
            project_per_minute: 50.0,
        };
        assert!(q.charge_at(Api::Gmail, "p", "a", 30, l, 0).is_ok());
        let Err(r) = q.charge_at(Api::Gmail, "p", "b", 30, l, 0) else {
            panic!("project limit");
        };
        assert_eq!(r.kind, LimitKind::Project);
        assert!(q.charge_at(Api::Calendar, "p", "b", 30, l, 0).is_ok());
    }

    /// A client spacing its spend at most `S` per second and `L` per minute — including its
    /// refused attempts — is never refused.
    #[test]
    fn clients_inside_both_windows_pass() {
        let q = StrictQuota::new(0.1);
        let (l, s) = q.limits_of(6000.0);
        assert_eq!((l, s), (6000, 600));
        let mut now = 0;
        let mut sent: VecDeque<(u64, u64)> = VecDeque::new();
        for i in 0..20_000u64 {
            now += (i * 7919 % 97) * 3 * MS;
            let cost = [1u64, 2, 5, 20][(i % 4) as usize];
            let min: u64 = sent
                .iter()
                .filter(|(t, _)| t + MINUTE_NS > now)
                .map(|x| x.1)
                .sum();
            let sec: u64 = sent
                .iter()
                .filter(|(t, _)| t + SECOND_NS > now)
                .map(|x| x.1)
                .sum();
            if min + cost > l || sec + cost > s {
                continue;
            }
            assert!(
                q.charge_at(Api::Gmail, "p", "u", cost, lim(6000.0), now)
                    .is_ok()
            );
            sent.push_back((now, cost));
            while sent.front().is_some_and(|(t, _)| t + MINUTE_NS <= now) {
                sent.pop_front();
            }
        }
    }
}
