//! Shared emulator state: configuration, clock, accounts (mailbox + calendars), OAuth store,
//! quota, faults, counters, and the queue of outgoing notifications.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::calendar::model::CalendarSet;
use crate::clock::Clock;
use crate::config::EmulatorConfig;
use crate::faults::Faults;
use crate::notification::{Outbound, SigningKey};
use crate::oauth_store::OAuthStore;
use crate::quota::Quota;
use crate::quota_strict::StrictQuota;
use crate::store::Mailbox;
use crate::util::lock;

/// One emulated Google account.
#[derive(Debug)]
pub struct Account {
    pub mailbox: Mailbox,
    pub calendars: CalendarSet,
}

/// Counters readable through the control API and [`crate::EmulatorHandle::counters`].
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    /// Requests per method name (e.g. `gmail.users.messages.get`), batch parts included.
    pub requests: BTreeMap<String, u64>,
    /// Quota units charged per method name.
    pub units: BTreeMap<String, u64>,
    pub units_total: u64,
    pub batch_requests: u64,
    pub status_429: u64,
    pub status_403_rate_limit: u64,
    /// Refusals for too many concurrent requests (also counted in `status429`).
    pub concurrency_refusals: u64,
    /// Refusals by the per-user / per-project rate limits (also in `status429` or
    /// `status403RateLimit`).
    pub rate_limit_refusals: u64,
    pub status_401: u64,
    pub faults_injected: u64,
    pub faults_by_kind: BTreeMap<String, u64>,
    pub notifications_sent: u64,
    pub notifications_dropped: u64,
    pub push_attempts: u64,
    pub push_failures: u64,
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct EmulatorState {
    pub config: EmulatorConfig,
    pub clock: Clock,
    pub accounts: Mutex<HashMap<String, Account>>,
    pub oauth: Mutex<OAuthStore>,
    pub quota: Quota,
    /// The sliding-window state of [`crate::QuotaMode::Strict`].
    pub strict_quota: StrictQuota,
    pub faults: Mutex<Faults>,
    pub counters: Mutex<Counters>,
    pub outbound: mpsc::UnboundedSender<Outbound>,
    pub shutdown: CancellationToken,
    pub key: SigningKey,
    /// Runtime-adjustable watch lifetime (control API).
    pub watch_ttl_ms: std::sync::atomic::AtomicI64,
    pub base_url: Mutex<String>,
    /// Messages (account, id) whose `format=raw` answer is corrupt on every fetch (control
    /// API `POST /_emulator/accounts/{email}/messages/{id}/corrupt`).
    pub corrupt: Mutex<std::collections::HashSet<(String, u64)>>,
    /// While set, the mutation generator skips its ticks (a soak's settling phase).
    pub mutations_paused: std::sync::atomic::AtomicBool,
}

impl EmulatorState {
    /// Builds the state with the default account; returns the receiver of outgoing notifications.
    pub fn new(
        config: EmulatorConfig,
    ) -> Result<(Self, mpsc::UnboundedReceiver<Outbound>), crate::EmulatorError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let fault_seed = config.fault_seed.unwrap_or(config.seed);
        let st = Self {
            clock: Clock::default(),
            accounts: Mutex::new(HashMap::new()),
            oauth: Mutex::new(OAuthStore::new(config.seed, config.auto_consent)),
            quota: Quota::default(),
            strict_quota: StrictQuota::new(config.strict_second_share),
            faults: Mutex::new(Faults::new(
                fault_seed,
                config.faults.clone(),
                config.notification_faults.clone(),
            )),
            counters: Mutex::new(Counters::default()),
            outbound: tx,
            shutdown: CancellationToken::new(),
            key: SigningKey::embedded()?,
            watch_ttl_ms: std::sync::atomic::AtomicI64::new(config.watch_ttl.as_millis() as i64),
            base_url: Mutex::new(String::new()),
            corrupt: Mutex::new(std::collections::HashSet::new()),
            mutations_paused: std::sync::atomic::AtomicBool::new(false),
            config,
        };
        let account = st.config.account.clone();
        st.create_account(&account, st.config.messages, st.config.seed);
        Ok((st, rx))
    }

    pub fn has_account(&self, email: &str) -> bool {
        lock(&self.accounts).contains_key(&email.to_ascii_lowercase())
    }

    /// Creates (or returns) an account; returns its pre-provisioned refresh token.
    pub fn create_account(&self, email: &str, messages: usize, seed: u64) -> String {
        let email = email.to_ascii_lowercase();
        let now = self.clock.now_ms();
        {
            let mut accts = lock(&self.accounts);
            if !accts.contains_key(&email) {
                let c = &self.config;
                let mailbox = Mailbox::seeded(
                    seed,
                    &email,
                    messages,
                    c.generation_anchor_ms,
                    c.generation_span_days,
                    c.history_retention_records,
                    c.history_retention.as_millis() as i64,
                );
                let calendars =
                    CalendarSet::seeded(seed, &email, c.calendar_events, c.generation_anchor_ms);
                accts.insert(email.clone(), Account { mailbox, calendars });
            }
        }
        lock(&self.oauth).provision(self.config.seed, &email, now)
    }

    pub fn count_request(&self, method: &str) {
        let mut c = lock(&self.counters);
        *c.requests.entry(method.to_string()).or_insert(0) += 1;
    }

    pub fn count_units(&self, method: &str, units: u64) {
        let mut c = lock(&self.counters);
        *c.units.entry(method.to_string()).or_insert(0) += units;
        c.units_total += units;
    }

    pub fn counters(&self) -> Counters {
        lock(&self.counters).clone()
    }

    pub fn with_counters(&self, f: impl FnOnce(&mut Counters)) {
        f(&mut lock(&self.counters));
    }

    /// Called after a mailbox change: queues a Gmail notification if a watch matches.
    /// `labels` are the label ids the change touched (for the watch's label filter).
    pub fn notify_gmail(&self, email: &str, labels: &[String]) {
        let now = self.clock.now_ms();
        let out = {
            let mut accts = lock(&self.accounts);
            let Some(acct) = accts.get_mut(email) else {
                return;
            };
            let mb = &mut acct.mailbox;
            let Some(w) = mb.watch.clone() else { return };
            if w.expiration_ms <= now {
                mb.watch = None;
                return;
            }
            if !w.label_ids.is_empty() {
                let hit = labels.iter().any(|l| w.label_ids.contains(l));
                if hit != w.include {
                    return;
                }
            }
            // Google: at most one notification per second per user; excess is dropped.
            if now - mb.last_notification_ms < 1000 {
                drop(accts);
                self.with_counters(|c| c.notifications_dropped += 1);
                return;
            }
            mb.last_notification_ms = now;
            Outbound::Gmail {
                topic: w.topic.clone(),
                email: email.to_string(),
                history_id: mb.history_id,
            }
        };
        if self.outbound.send(out).is_err() {
            tracing::debug!("notification worker gone");
        }
    }
}
