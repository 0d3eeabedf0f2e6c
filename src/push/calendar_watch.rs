//! The Calendar channel keeper, one task per calendar account: keeps one live `events.watch`
//! channel per synced calendar, renews it (a new channel id and token; the old channel is
//! stopped once the new one is registered, so notifications overlap rather than gap) when less
//! than `renew_before` (default 24 h) remains, stops (`channels.stop`) the channels of
//! calendars that left the sync, re-registers with exponential backoff and jitter after a
//! failed watch (404, 410, anything), and polls a calendar whose channel has been silent for
//! `silence` (default 10 min) by enqueuing a delta sync every `poll_every` — that calendar
//! shows `degraded (polling)` until a notification arrives again.
//!
//! Channel tokens are 256-bit random values sent once to Google; only their digests are kept
//! (in [`super::calendar_channels`]).

use super::calendar::CalendarPushTarget;
use super::calendar_channels::{ChannelStore, StoredChannel, token_digest};
use mailsync_actors::backoff::{Jitter, RetryPolicy};
use mailsync_actors::calendar::port::{CalendarApi, ChannelRequest};
use mailsync_actors::error::ApiError;
use rand::Rng as _;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Lifecycle settings.
#[derive(Clone, Debug)]
pub struct KeeperConfig {
    /// The public URL of `POST /push/calendar`.
    pub address: String,
    /// Requested channel lifetime (Google's default and cap: 7 days).
    pub ttl: Duration,
    /// Renew when less than this remains.
    pub renew_before: Duration,
    /// How often channels are checked.
    pub check_every: Duration,
    /// No notification for this long → poll and show `degraded (polling)`.
    pub silence: Duration,
    /// Poll period of a silent calendar.
    pub poll_every: Duration,
    /// Backoff ceiling after failed registrations.
    pub max_backoff: Duration,
}

impl KeeperConfig {
    /// Google-shaped defaults for `address`.
    pub fn new(address: String) -> Self {
        Self {
            address,
            ttl: Duration::from_secs(7 * 24 * 3600),
            renew_before: Duration::from_secs(24 * 3600),
            check_every: Duration::from_secs(30),
            silence: Duration::from_secs(600),
            poll_every: Duration::from_secs(60),
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// How one calendar receives changes, for `ctl status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CalendarDelivery {
    /// `active (push)`, `degraded (polling)` or `disconnected`.
    pub delivery: String,
    /// The live channel's expiry.
    pub channel_expiration_ms: Option<i64>,
    /// The last accepted notification.
    pub last_push_ms: Option<i64>,
    /// The last registration error (secret-free).
    pub last_error: Option<String>,
}

#[derive(Default)]
struct CalState {
    failures: u32,
    retry_at_ms: i64,
    last_error: Option<String>,
    disconnected: bool,
    last_poll_ms: i64,
}

/// The keeper of one account's channels.
pub struct ChannelKeeper {
    account: String,
    api: Arc<dyn CalendarApi>,
    channels: ChannelStore,
    target: Arc<dyn CalendarPushTarget>,
    config: KeeperConfig,
    state: Mutex<HashMap<String, CalState>>,
}

fn random_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    hex::encode(bytes)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl ChannelKeeper {
    /// A keeper for `account` opening channels through `api`.
    pub fn new(
        account: String,
        api: Arc<dyn CalendarApi>,
        channels: ChannelStore,
        target: Arc<dyn CalendarPushTarget>,
        config: KeeperConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            account,
            api,
            channels,
            target,
            config,
            state: Mutex::new(HashMap::new()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HashMap<String, CalState>> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The newest channel of `calendar_id`.
    fn live(&self, calendar_id: &str) -> Option<StoredChannel> {
        self.channels
            .of_account(&self.account)
            .into_iter()
            .filter(|c| c.calendar_id == calendar_id)
            .max_by_key(|c| c.expiration_ms)
    }

    /// Opens a new channel on `calendar_id`; older channels of it are stopped afterwards.
    async fn register(&self, calendar_id: &str, now: i64) -> Result<(), ApiError> {
        let request = ChannelRequest {
            channel_id: uuid::Uuid::new_v4().simple().to_string(),
            address: self.config.address.clone(),
            token: random_token(),
            ttl_secs: self.config.ttl.as_secs().max(1),
        };
        let reg = self.api.watch_events(calendar_id, &request).await?;
        let old: Vec<StoredChannel> = self
            .channels
            .of_account(&self.account)
            .into_iter()
            .filter(|c| c.calendar_id == calendar_id)
            .collect();
        let stored = StoredChannel {
            account: self.account.clone(),
            calendar_id: calendar_id.to_owned(),
            channel_id: reg.channel_id,
            resource_id: reg.resource_id,
            token_digest: token_digest(&request.token),
            expiration_ms: reg.expiration_ms,
            last_message: 0,
            registered_ms: now,
            last_push_ms: None,
        };
        let store_err = |e: mailsync_actors::store::StoreError| ApiError::Internal(e.to_string());
        self.channels.put(&stored).map_err(store_err)?;
        self.channels
            .store()
            .flush_async()
            .await
            .map_err(store_err)?;
        tracing::info!(account = %self.account, calendar = %calendar_id, expiration_ms = stored.expiration_ms, "Calendar channel registered.");
        for ch in old {
            self.stop(&ch).await;
        }
        Ok(())
    }

    /// Stops and forgets a channel (an unknown channel counts as stopped).
    async fn stop(&self, ch: &StoredChannel) {
        match self.api.stop_channel(&ch.channel_id, &ch.resource_id).await {
            Ok(()) | Err(ApiError::NotFound) => {}
            Err(e) => {
                tracing::warn!(account = %self.account, calendar = %ch.calendar_id, error = %e, "channels.stop failed; the channel expires on its own.")
            }
        }
        if let Err(e) = self.channels.remove(&ch.channel_id) {
            tracing::warn!(account = %self.account, error = %e, "Cannot forget a stopped channel.");
        }
        let _ = self.channels.store().flush_async().await;
    }

    /// One pass over the account's calendars at `now` (ms since the epoch).
    pub async fn check(&self, calendars: &[String], now: i64) {
        for ch in self.channels.of_account(&self.account) {
            if !calendars.contains(&ch.calendar_id) {
                tracing::info!(account = %self.account, calendar = %ch.calendar_id, "Calendar left the sync; stopping its channel.");
                self.stop(&ch).await;
            }
        }
        self.state().retain(|k, _| calendars.contains(k));
        for cal in calendars {
            let live = self.live(cal);
            let due = live
                .as_ref()
                .is_none_or(|c| c.expiration_ms - now < ms(self.config.renew_before));
            let retry_at = self.state().get(cal).map_or(0, |s| s.retry_at_ms);
            if due && now >= retry_at {
                match self.register(cal, now).await {
                    Ok(()) => {
                        let mut st = self.state();
                        let s = st.entry(cal.clone()).or_default();
                        s.failures = 0;
                        s.last_error = None;
                        s.disconnected = false;
                    }
                    Err(e) => {
                        let mut st = self.state();
                        let s = st.entry(cal.clone()).or_default();
                        s.failures = s.failures.saturating_add(1);
                        let wait = RetryPolicy::unlimited(
                            Duration::from_secs(1),
                            self.config.max_backoff,
                            Jitter::Half,
                        )
                        .delay(s.failures, &mut rand::rng());
                        s.retry_at_ms = now + ms(wait);
                        s.disconnected = matches!(e, ApiError::Disconnected(_));
                        s.last_error = Some(e.to_string());
                        tracing::warn!(account = %self.account, calendar = %cal, error = %e, retry_in_ms = ms(wait), "Calendar watch failed; retrying with backoff.");
                    }
                }
            }
            if self.silent(cal, now) {
                let poll_due = {
                    let st = self.state();
                    st.get(cal).map_or(0, |s| s.last_poll_ms) + ms(self.config.poll_every) <= now
                };
                if poll_due {
                    match self.target.enqueue(&self.account, cal).await {
                        Ok(()) => {
                            self.state().entry(cal.clone()).or_default().last_poll_ms = now;
                            self.target.nudge(&self.account).await;
                        }
                        Err(e) => {
                            tracing::warn!(account = %self.account, calendar = %cal, error = %e, "Cannot enqueue a poll of a silent calendar.")
                        }
                    }
                }
            }
        }
    }

    /// No live channel, or no notification for `silence`.
    fn silent(&self, calendar_id: &str, now: i64) -> bool {
        match self.live(calendar_id) {
            Some(c) if c.expiration_ms > now => {
                let heard = c
                    .last_push_ms
                    .unwrap_or(c.registered_ms)
                    .max(c.registered_ms);
                now - heard >= ms(self.config.silence)
            }
            _ => true,
        }
    }

    /// How `calendar_id` receives changes at `now`.
    pub fn delivery(&self, calendar_id: &str, now: i64) -> CalendarDelivery {
        let live = self.live(calendar_id);
        let st = self.state();
        let s = st.get(calendar_id);
        let delivery = if s.is_some_and(|s| s.disconnected) {
            "disconnected"
        } else if self.silent(calendar_id, now) {
            "degraded (polling)"
        } else {
            "active (push)"
        };
        CalendarDelivery {
            delivery: delivery.to_owned(),
            channel_expiration_ms: live.as_ref().map(|c| c.expiration_ms),
            last_push_ms: live.and_then(|c| c.last_push_ms),
            last_error: s.and_then(|s| s.last_error.clone()),
        }
    }

    /// Runs until `cancel`: a check every `check_every` over `calendars()` (the calendars the
    /// account syncs right now). On cancel the channels stay open (they expire on their own
    /// and are reused by the next start); [`ChannelKeeper::stop_all`] closes them.
    pub async fn run(
        self: Arc<Self>,
        calendars: impl Fn() -> Vec<String> + Send + 'static,
        cancel: CancellationToken,
    ) {
        loop {
            let cals = calendars();
            self.check(&cals, super::now_ms()).await;
            // Until the first sync has stored the calendar list, look again soon.
            let wait = if cals.is_empty() {
                self.config.check_every.min(Duration::from_secs(1))
            } else {
                self.config.check_every
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// The account this keeper serves.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// Stops every channel of the account (the account was removed).
    pub async fn stop_all(&self) {
        for ch in self.channels.of_account(&self.account) {
            self.stop(&ch).await;
        }
    }
}
