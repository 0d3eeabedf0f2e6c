//! Gmail push notifications: owns everything between Google's Pub/Sub and
//! `DaemonCore::gmail_push` — the HTTP push endpoint with OIDC JWT / shared-token
//! authentication (`server`, `jwt`), the Pub/Sub pull loop for desktops (`pull`), the
//! `users.watch` lifecycle per account (`watch`), and the per-account push health that
//! `ctl status` shows as `delivery` (`PushHealth`).
//!
//! Invariant: a notification is acknowledged (2xx to a push, `acknowledge` for a pull) only
//! after `gmail_push` returned `Ok`, i.e. after the partial-sync job is flushed to sled. Every
//! rejection enqueues nothing. Polling (HistorySync's poll timer) always runs underneath as
//! the safety net, so a dropped push delays a change by at most one poll interval.
//!
//! Calendar push lives beside it: `calendar` (the `POST /push/calendar` endpoint: channel
//! verification, message numbers, durable enqueue before 2xx, debounced wake-ups),
//! `calendar_channels` (the durable channel registry) and `calendar_watch` (per-account
//! channel lifecycle: register, renew, stop, backoff, silence → polling).

pub mod calendar;
pub mod calendar_channels;
pub mod calendar_keepers;
#[cfg(test)]
mod calendar_tests;
pub mod calendar_watch;
pub mod jwt;
pub mod pull;
pub mod server;
pub mod watch;

use crate::config::Config;
use crate::daemon_core::{DaemonCore, PushOutcome};
pub use crate::push_health::{DeliveryMode, PushHealth, now_ms};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Starts push delivery for the running daemon: the HTTP endpoint when `[push] port` is set,
/// the pull loop when `[push.pull]` is set, and the watch keepers (one per enabled Gmail
/// account with `push_topic`, following reloads). Does nothing without a `[push]` section.
/// Everything stops when `cancel` fires; tasks are tracked by `tasks`.
pub fn spawn_all(
    core: Arc<DaemonCore>,
    config: &Config,
    cancel: CancellationToken,
    tasks: &TaskTracker,
) {
    let health = core.push_health();
    let Some(push) = config.push.clone() else {
        health.configure(config);
        return;
    };
    health.configure(config);
    if let Some(addr) = push.listen {
        match server::PushServer::bind(addr, &push, core.clone()) {
            Ok(srv) => {
                tracing::info!(address = %srv.local_addr(), "Push endpoint listening.");
                tasks.spawn(srv.serve(cancel.child_token()));
            }
            Err(e) => {
                tracing::error!(address = %addr, error = %e, "Push endpoint not started; accounts fall back to polling.");
            }
        }
    }
    if let Some(pull_cfg) = push.pull.clone() {
        match pull::Puller::new(&pull_cfg, config) {
            Ok(puller) => {
                tasks.spawn(puller.run(core.clone(), cancel.child_token()));
            }
            Err(e) => {
                tracing::error!(subscription = %pull_cfg.subscription, error = %e, "Pub/Sub pull not started; accounts fall back to polling.");
            }
        }
    }
    calendar_keepers::spawn_keepers(core.clone(), config, cancel.child_token(), tasks);
    tasks.spawn(watch::supervise(
        core,
        config.clone(),
        cancel.child_token(),
        tasks.clone(),
    ));
}

/// The `delivery` entry of one account for `ctl status` (`active (push)`,
/// `degraded (polling)`, `polling`), with its details.
pub fn push_status(core: &DaemonCore, account: &str) -> Value {
    core.push_health().account_json(account, now_ms())
}

/// A Gmail notification, decoded from Pub/Sub `message.data`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GmailNotification {
    /// The mailbox address.
    pub email: String,
    /// "Something changed up to here."
    pub history_id: u64,
}

/// Why a notification or push body could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NotificationError {
    /// The Pub/Sub envelope is not the expected JSON.
    #[error("push body is not a Pub/Sub push message: {0}")]
    Envelope(String),
    /// `message.data` is not base64.
    #[error("message.data is not base64")]
    Base64,
    /// The decoded data is not `{"emailAddress", "historyId"}`.
    #[error("message.data is not a Gmail notification: {0}")]
    Payload(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePayload {
    email_address: String,
    history_id: WireNumber,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum WireNumber {
    Text(String),
    Number(u64),
}

/// Decodes `message.data`: base64 (standard or URL alphabet, padded or not) of
/// `{"emailAddress": "...", "historyId": "..."}`.
pub fn decode_data(data: &str) -> Result<GmailNotification, NotificationError> {
    use base64::engine::DecodePaddingMode;
    use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
    const CFG: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, CFG);
    const URL: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, CFG);
    let data = data.trim();
    let bytes = STD
        .decode(data)
        .or_else(|_| URL.decode(data))
        .map_err(|_| NotificationError::Base64)?;
    let payload: WirePayload =
        serde_json::from_slice(&bytes).map_err(|e| NotificationError::Payload(e.to_string()))?;
    let history_id = match payload.history_id {
        WireNumber::Number(n) => n,
        WireNumber::Text(t) => t
            .trim()
            .parse()
            .map_err(|_| NotificationError::Payload("historyId is not a uint64".into()))?,
    };
    if !payload.email_address.contains('@') {
        return Err(NotificationError::Payload(
            "emailAddress is not an address".into(),
        ));
    }
    Ok(GmailNotification {
        email: payload.email_address,
        history_id,
    })
}

/// The wrapped Pub/Sub push body (reference gmail-api.md §6.3); unknown fields are ignored.
#[derive(Deserialize)]
struct WirePush {
    message: WirePushMessage,
}

#[derive(Deserialize)]
struct WirePushMessage {
    data: Option<String>,
    #[serde(rename = "messageId", default)]
    message_id: Option<String>,
    /// Pub/Sub sends both spellings.
    #[serde(rename = "message_id", default)]
    message_id_snake: Option<String>,
}

/// Parses a push request body into the notification and Pub/Sub's message id.
pub fn decode_push_body(
    body: &[u8],
) -> Result<(GmailNotification, Option<String>), NotificationError> {
    let push: WirePush =
        serde_json::from_slice(body).map_err(|e| NotificationError::Envelope(e.to_string()))?;
    let data = push
        .message
        .data
        .ok_or_else(|| NotificationError::Envelope("message.data is missing".into()))?;
    let id = push.message.message_id.or(push.message.message_id_snake);
    Ok((decode_data(&data)?, id))
}

/// Hands a verified notification to the daemon and records the push in the health registry.
/// `Ok` means the notification may be acknowledged.
pub async fn deliver(
    core: &DaemonCore,
    n: &GmailNotification,
    via: &'static str,
    message_id: Option<&str>,
) -> Result<PushOutcome, crate::daemon_core::AdminError> {
    let outcome = core.gmail_push(&n.email, n.history_id).await?;
    match outcome {
        PushOutcome::UnknownAccount => {
            tracing::warn!(via, email = %n.email, history_id = n.history_id, message_id, "Notification for an address no account has; acknowledged and ignored.");
        }
        PushOutcome::AlreadySynced => {
            core.push_health().record_push(&n.email, now_ms());
            tracing::debug!(via, email = %n.email, history_id = n.history_id, message_id, "Notification already covered by the stored cursor.");
        }
        PushOutcome::Enqueued => {
            core.push_health().record_push(&n.email, now_ms());
            tracing::debug!(via, email = %n.email, history_id = n.history_id, message_id, "Notification enqueued.");
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests;
