//! `POST /push/calendar`: Google Calendar channel notifications (calendar-api.md §7.2).
//!
//! A notification is trusted only when its `X-Goog-Channel-ID` names a channel we opened,
//! its `X-Goog-Channel-Token` matches that channel's token (SHA-256 digests compared in
//! constant time) and its `X-Goog-Resource-ID` is the channel's resource. A message number at
//! or below the highest one accepted for the channel (a replay, or one overtaken by a later
//! message whose sync covers it) is acknowledged and ignored. `sync` (the handshake) records
//! the channel as live; `exists` and `not_exists` durably enqueue a delta sync of the
//! calendar through [`CalendarPushTarget::enqueue`] — flushed — before the 2xx. The account
//! is then woken: at once for the first notification of a burst, and once more when the
//! debounce window (default 2 s) closes if more arrived inside it.
//!
//! Statuses: 204 accepted or ignored; 400 missing/garbled headers; 404 unknown channel; 403
//! wrong token or resource; 503 when the enqueue could not be made durable (Google retries
//! 5xx). Nothing is enqueued for any refusal, and no header value is ever logged.

use super::calendar_channels::{ChannelStore, token_digest};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use subtle::ConstantTimeEq as _;

/// Default debounce of account wake-ups after a burst of notifications.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_secs(2);

/// A boxed future of the push target.
pub type TargetFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the endpoint hands verified notifications to (the daemon, or a test double).
pub trait CalendarPushTarget: Send + Sync + 'static {
    /// Records a delta sync of `calendar_id` for `account` durably (flushed) before `Ok`.
    fn enqueue<'a>(
        &'a self,
        account: &'a str,
        calendar_id: &'a str,
    ) -> TargetFuture<'a, Result<(), String>>;

    /// Wakes the account so it runs the enqueued sync now.
    fn nudge<'a>(&'a self, account: &'a str) -> TargetFuture<'a, ()>;
}

/// The endpoint's state.
pub struct CalendarPush {
    channels: ChannelStore,
    target: Arc<dyn CalendarPushTarget>,
    debounce: Duration,
    /// Serialises read-modify-write of channel message numbers.
    gate: tokio::sync::Mutex<()>,
    /// Accounts inside a debounce window → whether another wake-up is due when it closes.
    pending: Mutex<HashMap<String, bool>>,
}

/// What happened to one notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A delta sync was enqueued.
    Enqueued,
    /// The `sync` handshake was recorded.
    Handshake,
    /// A repeated or older message number: acknowledged, nothing done.
    Stale,
}

/// Why a notification was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A required header is missing or unreadable.
    #[error("missing or unreadable header {0}")]
    BadHeader(&'static str),
    /// No channel with this id.
    #[error("unknown channel")]
    UnknownChannel,
    /// Token or resource id do not match the channel.
    #[error("channel token or resource id mismatch")]
    Forged,
    /// The store failed; the sender should retry.
    #[error("could not record the notification: {0}")]
    Store(String),
}

impl Refusal {
    fn status(&self) -> u16 {
        match self {
            Refusal::BadHeader(_) => 400,
            Refusal::UnknownChannel => 404,
            Refusal::Forged => 403,
            Refusal::Store(_) => 503,
        }
    }
}

fn header<'h>(h: &'h HeaderMap, name: &'static str) -> Result<&'h str, Refusal> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(Refusal::BadHeader(name))
}

impl CalendarPush {
    /// The endpoint over the channel registry in `channels`, handing work to `target`.
    pub fn new(
        channels: ChannelStore,
        target: Arc<dyn CalendarPushTarget>,
        debounce: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            channels,
            target,
            debounce,
            gate: tokio::sync::Mutex::new(()),
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// Verifies and handles one notification.
    pub async fn handle(self: &Arc<Self>, h: &HeaderMap) -> Result<Outcome, Refusal> {
        let channel_id = header(h, "x-goog-channel-id")?;
        let token = header(h, "x-goog-channel-token")?;
        let resource_id = header(h, "x-goog-resource-id")?;
        let state = header(h, "x-goog-resource-state")?;
        let number: u64 = header(h, "x-goog-message-number")?
            .parse()
            .map_err(|_| Refusal::BadHeader("x-goog-message-number"))?;
        if !matches!(state, "sync" | "exists" | "not_exists") {
            return Err(Refusal::BadHeader("x-goog-resource-state"));
        }
        let _serial = self.gate.lock().await;
        let store_err = |e: mailsync_actors::store::StoreError| Refusal::Store(e.to_string());
        let mut ch = self
            .channels
            .get(channel_id)
            .map_err(store_err)?
            .ok_or(Refusal::UnknownChannel)?;
        let token_ok = token_digest(token).ct_eq(&ch.token_digest);
        let resource_ok = token_digest(resource_id).ct_eq(&token_digest(&ch.resource_id));
        if !bool::from(token_ok & resource_ok) {
            return Err(Refusal::Forged);
        }
        if number <= ch.last_message {
            return Ok(Outcome::Stale);
        }
        let outcome = if state == "sync" {
            Outcome::Handshake
        } else {
            self.target
                .enqueue(&ch.account, &ch.calendar_id)
                .await
                .map_err(Refusal::Store)?;
            Outcome::Enqueued
        };
        ch.last_message = number;
        ch.last_push_ms = Some(super::now_ms());
        self.channels.put(&ch).map_err(store_err)?;
        self.channels
            .store()
            .flush_async()
            .await
            .map_err(store_err)?;
        if outcome == Outcome::Enqueued {
            self.schedule_nudge(&ch.account);
        }
        Ok(outcome)
    }

    /// Debounced wake-up of `account`: the first notification of a burst wakes it at once and
    /// opens a window of `debounce`; notifications inside the window only ask for one more
    /// wake-up when it closes (so the round that runs then covers all of them).
    fn schedule_nudge(self: &Arc<Self>, account: &str) {
        {
            let mut p = self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match p.get_mut(account) {
                Some(trailing) => {
                    *trailing = true;
                    return;
                }
                None => {
                    p.insert(account.to_owned(), false);
                }
            }
        }
        let me = Arc::clone(self);
        let account = account.to_owned();
        tokio::spawn(async move {
            me.target.nudge(&account).await;
            tokio::time::sleep(me.debounce).await;
            let trailing = me
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&account)
                .unwrap_or(false);
            if trailing {
                me.target.nudge(&account).await;
            }
        });
    }
}

/// The `/push/calendar` route.
pub fn router(push: Arc<CalendarPush>) -> Router {
    Router::new()
        .route("/push/calendar", post(endpoint))
        .with_state(push)
}

async fn endpoint(State(push): State<Arc<CalendarPush>>, headers: HeaderMap) -> Response {
    let channel = headers
        .get("x-goog-channel-id")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(64).collect::<String>())
        .unwrap_or_default();
    match push.handle(&headers).await {
        Ok(outcome) => {
            tracing::debug!(channel = %channel, ?outcome, "Calendar notification accepted.");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(refusal) => {
            let code = refusal.status();
            tracing::warn!(status = code, reason = %refusal, "Calendar notification refused; nothing enqueued.");
            StatusCode::from_u16(code)
                .unwrap_or(StatusCode::BAD_REQUEST)
                .into_response()
        }
    }
}

/// The daemon as the push target: the job goes into the account's HistorySync mailbox
/// (`calendar-push:<account>:<calendar>`, so pending notifications of a calendar collapse into
/// one job), flushed; the wake-up is the account's `SyncNow`.
pub struct DaemonTarget {
    core: Arc<crate::daemon_core::DaemonCore>,
}

impl DaemonTarget {
    /// The running daemon as a target.
    pub fn new(core: Arc<crate::daemon_core::DaemonCore>) -> Arc<Self> {
        Arc::new(Self { core })
    }
}

impl CalendarPushTarget for DaemonTarget {
    fn enqueue<'a>(
        &'a self,
        account: &'a str,
        calendar_id: &'a str,
    ) -> TargetFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let store = self.core.store();
            let id = mailsync_actors::model::AccountId(account.to_owned());
            mailsync_actors::jobs::enqueue_calendar_push(store, &id, calendar_id)
                .map_err(|e| e.to_string())?;
            store.flush_async().await.map_err(|e| e.to_string())
        })
    }

    fn nudge<'a>(&'a self, account: &'a str) -> TargetFuture<'a, ()> {
        Box::pin(async move {
            if let Err(e) = self.core.nudge(account).await {
                tracing::debug!(account, error = %e, "Calendar push enqueued; the account picks it up when it runs.");
            }
        })
    }
}
