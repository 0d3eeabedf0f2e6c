//! Push health per account: how it receives changes (push, pull, polling), when the last push
//! arrived, when its watch expires, and the `delivery` word status shows for it (`active
//! (push)`, `degraded (polling)`, `polling`). Owned by the daemon's shared core
//! (`daemon_core.rs`); the push tasks (`push/`) write it. Depends only on the config.

use crate::config::{AccountSettings, Config};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// How an account receives Gmail changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryMode {
    /// Through the push endpoint.
    Push,
    /// By pulling the Pub/Sub subscription.
    Pull,
    /// No push configured: HistorySync's poll timer only.
    Polling,
}

impl DeliveryMode {
    fn as_str(self) -> &'static str {
        match self {
            DeliveryMode::Push => "push",
            DeliveryMode::Pull => "pull",
            DeliveryMode::Polling => "polling",
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    email: String,
    mode: DeliveryMode,
    silence_ms: i64,
    last_push_ms: Option<i64>,
    pushes: u64,
    watch_expiration_ms: Option<i64>,
    /// When the current watch was registered; `None` while no watch is live.
    watch_since_ms: Option<i64>,
    watch_error: Option<String>,
}

/// Per-account push health: delivery mode, last push, watch expiration. Owned by the
/// daemon's shared core (`DaemonCore::push_health`); the push tasks write it, status reads it.
#[derive(Debug, Default)]
pub struct PushHealth {
    accounts: Mutex<HashMap<String, Entry>>,
}

impl PushHealth {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.accounts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adopts the accounts of `config` (after start or a reload); keeps what is known about
    /// accounts that stay.
    pub fn configure(&self, config: &Config) {
        let mode = match &config.push {
            Some(p) if p.listen.is_some() => DeliveryMode::Push,
            Some(p) if p.pull.is_some() => DeliveryMode::Pull,
            _ => DeliveryMode::Polling,
        };
        let silence_ms = config
            .push
            .as_ref()
            .map_or(600_000, |p| duration_ms(p.silence));
        let mut map = self.lock();
        let mut keep = HashMap::new();
        for a in config.accounts.iter().filter(|a| a.enabled) {
            let AccountSettings::Gmail(g) = &a.settings else {
                continue;
            };
            let mode = if g.push.is_some() {
                mode
            } else {
                DeliveryMode::Polling
            };
            let mut e = map.remove(&a.id).unwrap_or(Entry {
                email: g.email.clone(),
                mode,
                silence_ms,
                last_push_ms: None,
                pushes: 0,
                watch_expiration_ms: None,
                watch_since_ms: None,
                watch_error: None,
            });
            e.email = g.email.clone();
            e.mode = mode;
            e.silence_ms = silence_ms;
            keep.insert(a.id.clone(), e);
        }
        *map = keep;
    }

    /// The account id of a mailbox address (case-insensitive), if configured.
    pub fn account_of(&self, email: &str) -> Option<String> {
        self.lock()
            .iter()
            .find(|(_, e)| e.email.eq_ignore_ascii_case(email))
            .map(|(id, _)| id.clone())
    }

    /// A verified notification for `email` arrived.
    pub fn record_push(&self, email: &str, at_ms: i64) {
        let mut map = self.lock();
        if let Some(e) = map
            .values_mut()
            .find(|e| e.email.eq_ignore_ascii_case(email))
        {
            e.last_push_ms = Some(at_ms);
            e.pushes += 1;
        }
    }

    /// A watch was registered or renewed.
    pub fn watch_registered(&self, account: &str, expiration_ms: i64, at_ms: i64) {
        if let Some(e) = self.lock().get_mut(account) {
            e.watch_expiration_ms = Some(expiration_ms);
            if e.watch_since_ms.is_none() {
                e.watch_since_ms = Some(at_ms);
            }
            e.watch_error = None;
        }
    }

    /// The watch is gone (a failed renewal, `users.stop`).
    pub fn watch_cleared(&self, account: &str, error: Option<String>) {
        if let Some(e) = self.lock().get_mut(account) {
            e.watch_expiration_ms = None;
            e.watch_since_ms = None;
            e.watch_error = error;
        }
    }

    /// `active (push)`, `degraded (polling)` or `polling` for the account at `now_ms`.
    pub fn delivery(&self, account: &str, now_ms: i64) -> &'static str {
        match self.lock().get(account) {
            Some(e) => delivery_of(e, now_ms),
            None => "polling",
        }
    }

    /// The account's `delivery` status object.
    pub fn account_json(&self, account: &str, now_ms: i64) -> Value {
        match self.lock().get(account) {
            Some(e) => json!({
                "delivery": delivery_of(e, now_ms),
                "mode": e.mode.as_str(),
                "last_push_ms": e.last_push_ms,
                "pushes": e.pushes,
                "watch_expiration_ms": e.watch_expiration_ms,
                "watch_error": e.watch_error,
            }),
            None => json!({"delivery": "polling", "mode": "polling"}),
        }
    }

    /// Every known account's status object, keyed by account id.
    pub fn json(&self, now_ms: i64) -> Value {
        let ids: Vec<String> = self.lock().keys().cloned().collect();
        let mut out = serde_json::Map::new();
        for id in ids {
            let v = self.account_json(&id, now_ms);
            out.insert(id, v);
        }
        Value::Object(out)
    }
}

fn delivery_of(e: &Entry, now_ms: i64) -> &'static str {
    if e.mode == DeliveryMode::Polling {
        return "polling";
    }
    let Some(since) = e.watch_since_ms else {
        return "degraded (polling)";
    };
    let heard = e.last_push_ms.map_or(since, |p| p.max(since));
    if now_ms.saturating_sub(heard) < e.silence_ms {
        "active (push)"
    } else {
        "degraded (polling)"
    }
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
