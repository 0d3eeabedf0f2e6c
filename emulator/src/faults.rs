//! Seeded fault injection: per-method rules (429/500/503, latency, hangs, connection resets,
//! truncated or malformed JSON) and notification faults. One ChaCha RNG drawn in request
//! order makes a run replayable.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::{FaultRule, NotificationFaults};

/// What to do to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    Status429,
    Status500,
    Status503,
    Timeout,
    Reset,
    Truncated,
    Malformed,
}

impl FaultKind {
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Status429 => "429",
            FaultKind::Status500 => "500",
            FaultKind::Status503 => "503",
            FaultKind::Timeout => "timeout",
            FaultKind::Reset => "reset",
            FaultKind::Truncated => "truncated",
            FaultKind::Malformed => "malformed",
        }
    }
}

/// What to do to one notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NotificationDecision {
    pub drop: bool,
    pub duplicate: bool,
    pub reorder: bool,
    pub delay_ms: u64,
}

#[derive(Debug)]
pub struct Faults {
    pub rules: Vec<FaultRule>,
    pub notifications: NotificationFaults,
    pub seed: u64,
    rng: ChaCha8Rng,
}

/// `*` glob match.
pub fn glob(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let mut rest = s;
    for (i, p) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(p) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(p);
        } else {
            match rest.find(p) {
                Some(k) => rest = &rest[k + p.len()..],
                None => return false,
            }
        }
    }
    true
}

impl Faults {
    pub fn new(seed: u64, rules: Vec<FaultRule>, notifications: NotificationFaults) -> Self {
        Self {
            rules,
            notifications,
            seed,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Replaces the rules and reseeds the RNG.
    pub fn set(&mut self, seed: u64, rules: Vec<FaultRule>, notifications: NotificationFaults) {
        *self = Self::new(seed, rules, notifications);
    }

    /// Decides latency and fault for one request to `method`.
    pub fn decide(&mut self, method: &str) -> (u64, Option<FaultKind>) {
        let Some(rule) = self.rules.iter().find(|r| glob(&r.method, method)).cloned() else {
            return (0, None);
        };
        let x: f64 = self.rng.random();
        let table = [
            (rule.rate_429, FaultKind::Status429),
            (rule.rate_500, FaultKind::Status500),
            (rule.rate_503, FaultKind::Status503),
            (rule.rate_timeout, FaultKind::Timeout),
            (rule.rate_reset, FaultKind::Reset),
            (rule.rate_truncated, FaultKind::Truncated),
            (rule.rate_malformed, FaultKind::Malformed),
        ];
        let mut acc = 0.0;
        for (rate, kind) in table {
            acc += rate.clamp(0.0, 1.0);
            if x < acc {
                return (rule.latency_ms, Some(kind));
            }
        }
        (rule.latency_ms, None)
    }

    pub fn decide_notification(&mut self) -> NotificationDecision {
        let n = self.notifications.clone();
        let mut d = NotificationDecision {
            delay_ms: n.delay_ms,
            ..Default::default()
        };
        if n.drop > 0.0 && self.rng.random::<f64>() < n.drop {
            d.drop = true;
        }
        if n.duplicate > 0.0 && self.rng.random::<f64>() < n.duplicate {
            d.duplicate = true;
        }
        if n.reorder > 0.0 && self.rng.random::<f64>() < n.reorder {
            d.reorder = true;
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches() {
        assert!(glob("gmail.*", "gmail.users.messages.get"));
        assert!(glob("*.get", "gmail.users.messages.get"));
        assert!(glob("gmail.*.messages.*", "gmail.users.messages.get"));
        assert!(!glob("calendar.*", "gmail.users.messages.get"));
        assert!(glob("*", "x"));
    }

    #[test]
    fn replayable() {
        let rule = FaultRule {
            method: "*".into(),
            rate_500: 0.5,
            ..Default::default()
        };
        let mut a = Faults::new(3, vec![rule.clone()], NotificationFaults::default());
        let mut b = Faults::new(3, vec![rule], NotificationFaults::default());
        let xa: Vec<_> = (0..50).map(|_| a.decide("m")).collect();
        let xb: Vec<_> = (0..50).map(|_| b.decide("m")).collect();
        assert_eq!(xa, xb);
        assert!(xa.iter().any(|x| x.1.is_some()) && xa.iter().any(|x| x.1.is_none()));
    }
}
