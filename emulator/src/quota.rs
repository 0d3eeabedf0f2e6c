//! Quota enforcement: per-user and per-project token buckets and a per-user in-flight cap.
//!
//! Window semantics (documented in docs/emulator.md): each bucket holds at most one minute's
//! units (`capacity = limit`) and refills continuously at `limit / 60` units per second,
//! starting full. This is exactly a GCRA / `governor::Quota::per_minute(limit)` with burst
//! `limit`, and any client whose spend over every sliding 60-second window is ≤ `limit` is
//! never refused (proof in the docs). A refused request consumes nothing.

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
    pub retry_after_secs: u64,
    /// Seconds until enough units are available, unrounded.
    pub wait_secs: f64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn level(&mut self, now: Instant, capacity: f64, per_sec: f64) -> f64 {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * per_sec).min(capacity);
        self.last = now;
        self.tokens
    }
}

/// Limits for one charge.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub user_per_minute: f64,
    pub project_per_minute: f64,
}

/// (api, project, user — `None` for the project bucket).
type BucketKey = (Api, String, Option<String>);

#[derive(Debug, Default)]
pub struct Quota {
    buckets: Mutex<HashMap<BucketKey, Bucket>>,
    in_flight: Arc<Mutex<HashMap<String, usize>>>,
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

    /// Charges `units` to the user's and the project's buckets, or refuses without charging.
    pub fn charge(
        &self,
        api: Api,
        project: &str,
        user: &str,
        units: u64,
        limits: Limits,
    ) -> Result<(), Refused> {
        let now = Instant::now();
        let units = units as f64;
        let mut b = lock(&self.buckets);
        let ukey = (api, project.to_string(), Some(user.to_ascii_lowercase()));
        let pkey = (api, project.to_string(), None);
        let ucap = limits.user_per_minute;
        let pcap = limits.project_per_minute;
        let ub = b.entry(ukey.clone()).or_insert(Bucket {
            tokens: ucap,
            last: now,
        });
        let ulevel = ub.level(now, ucap, ucap / 60.0);
        let pb = b.entry(pkey.clone()).or_insert(Bucket {
            tokens: pcap,
            last: now,
        });
        let plevel = pb.level(now, pcap, pcap / 60.0);
        if ulevel < units {
            let wait = (units - ulevel) / (ucap / 60.0);
            return Err(Refused {
                kind: LimitKind::User,
                retry_after_secs: wait.ceil().max(1.0) as u64,
                wait_secs: wait,
            });
        }
        if plevel < units {
            let wait = (units - plevel) / (pcap / 60.0);
            return Err(Refused {
                kind: LimitKind::Project,
                retry_after_secs: wait.ceil().max(1.0) as u64,
                wait_secs: wait,
            });
        }
        if let Some(u) = b.get_mut(&ukey) {
            u.tokens -= units;
        }
        if let Some(p) = b.get_mut(&pkey) {
            p.tokens -= units;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_minute_then_refills() {
        let q = Quota::default();
        let l = Limits {
            user_per_minute: 100.0,
            project_per_minute: 1e9,
        };
        for _ in 0..5 {
            assert!(q.charge(Api::Gmail, "p", "u", 20, l).is_ok());
        }
        let r = q.charge(Api::Gmail, "p", "u", 20, l);
        let Err(r) = r else {
            panic!("expected refusal")
        };
        assert_eq!(r.kind, LimitKind::User);
        assert!(r.retry_after_secs >= 1 && r.retry_after_secs <= 12);
        // Other users are unaffected.
        assert!(q.charge(Api::Gmail, "p", "v", 20, l).is_ok());
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
