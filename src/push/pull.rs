//! Pub/Sub pull for desktops behind NAT: pulls `[push.pull] subscription` over Pub/Sub's REST
//! API (`subscriptions.pull`, `modifyAckDeadline`, `acknowledge`), hands each notification to
//! `DaemonCore::gmail_push`, and acknowledges a message only after that returned `Ok` (the job
//! is flushed). A message the daemon could not record is left unacknowledged and Pub/Sub
//! redelivers it after the ack deadline; a malformed one is acknowledged with a warning (it
//! would never get better). Plain http endpoints (the `PUBSUB_EMULATOR_HOST` convention) get no
//! credentials; Google's endpoint gets the OAuth token of `token_account`, whose grant must
//! include the `https://www.googleapis.com/auth/pubsub` scope.

use super::watch::retry_delay;
use crate::config::{AccountSettings, Config, PullConfig};
use crate::daemon_core::DaemonCore;
use crate::google::{OAuthCredentials, TokenSource};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A pull that comes back empty sooner than this is followed by a pause of `IDLE_PAUSE`, so an
/// endpoint that does not hold empty pulls open is not polled in a busy loop.
const QUICK_EMPTY: Duration = Duration::from_millis(500);
/// See `QUICK_EMPTY`.
const IDLE_PAUSE: Duration = Duration::from_secs(1);

/// Why the puller could not be built or a call failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The token account is missing or its credentials cannot be resolved.
    #[error("credentials: {0}")]
    Credentials(String),
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Http(String),
    /// A Pub/Sub call failed.
    #[error("{call}: {reason}")]
    Call {
        /// `pull`, `acknowledge`, `modifyAckDeadline`.
        call: &'static str,
        /// Why (status or transport error; never a token).
        reason: String,
    },
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PullResponse {
    #[serde(default)]
    received_messages: Vec<Received>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Received {
    ack_id: String,
    message: ReceivedMessage,
    #[serde(default)]
    delivery_attempt: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReceivedMessage {
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    message_id: Option<String>,
}

/// Pulls one subscription.
pub struct Puller {
    cfg: PullConfig,
    http: reqwest::Client,
    tokens: Option<Arc<TokenSource>>,
}

impl Puller {
    /// From the config; resolves the token account's credentials.
    pub fn new(cfg: &PullConfig, config: &Config) -> Result<Self, PullError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| PullError::Http(e.to_string()))?;
        let tokens = match &cfg.token_account {
            None => None,
            Some(id) => {
                let a = config
                    .account(id)
                    .ok_or_else(|| PullError::Credentials(format!("no account {id}")))?;
                let AccountSettings::Gmail(g) = &a.settings else {
                    return Err(PullError::Credentials(format!(
                        "{id} is not a gmail account"
                    )));
                };
                let creds = OAuthCredentials {
                    client_id: g.auth.client_id.clone(),
                    client_secret: g
                        .auth
                        .client_secret
                        .resolve()
                        .map_err(|e| PullError::Credentials(e.to_string()))?,
                    refresh_token: g
                        .auth
                        .refresh_token
                        .resolve()
                        .map_err(|e| PullError::Credentials(e.to_string()))?,
                };
                let ts = TokenSource::new(id.clone(), creds, g.auth.token_url.clone())
                    .map_err(|e| PullError::Credentials(e.to_string()))?;
                Some(Arc::new(ts))
            }
        };
        Ok(Self {
            cfg: cfg.clone(),
            http,
            tokens,
        })
    }

    fn url(&self, verb: &str) -> String {
        format!(
            "{}/v1/{}:{verb}",
            self.cfg.endpoint.trim_end_matches('/'),
            self.cfg.subscription
        )
    }

    async fn call(
        &self,
        call: &'static str,
        body: serde_json::Value,
    ) -> Result<bytes::Bytes, PullError> {
        let mut req = self.http.post(self.url(call)).json(&body);
        if let Some(ts) = &self.tokens {
            let token = ts.access_token().await.map_err(|e| PullError::Call {
                call,
                reason: e.to_string(),
            })?;
            req = req.header(reqwest::header::AUTHORIZATION, token.header_value());
        }
        let resp = req.send().await.map_err(|e| PullError::Call {
            call,
            reason: e.without_url().to_string(),
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| PullError::Call {
            call,
            reason: e.without_url().to_string(),
        })?;
        if !status.is_success() {
            return Err(PullError::Call {
                call,
                reason: format!("HTTP {status}"),
            });
        }
        Ok(bytes)
    }

    /// Pulls, handles and acknowledges until `cancel`.
    pub async fn run(self, core: Arc<DaemonCore>, cancel: CancellationToken) {
        tracing::info!(subscription = %self.cfg.subscription, endpoint = %self.cfg.endpoint, "Pulling Gmail notifications from Pub/Sub.");
        let mut failures: u32 = 0;
        loop {
            let started = Instant::now();
            let pulled = tokio::select! {
                _ = cancel.cancelled() => return,
                r = self.call("pull", json!({"maxMessages": self.cfg.max_messages})) => r,
            };
            let pause = match pulled {
                Ok(body) => {
                    failures = 0;
                    let resp: PullResponse = serde_json::from_slice(&body).unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "Pub/Sub pull answered something unreadable.");
                        PullResponse::default()
                    });
                    let n = resp.received_messages.len();
                    if n > 0 {
                        self.handle(&core, resp.received_messages).await;
                        Duration::ZERO
                    } else if started.elapsed() < QUICK_EMPTY {
                        IDLE_PAUSE
                    } else {
                        Duration::ZERO
                    }
                }
                Err(e) => {
                    failures += 1;
                    let d = retry_delay(failures).min(Duration::from_secs(60));
                    tracing::warn!(error = %e, attempt = failures, retry_in_ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX), "Pub/Sub pull failed.");
                    d
                }
            };
            if !pause.is_zero() {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }

    async fn handle(&self, core: &DaemonCore, msgs: Vec<Received>) {
        let ids: Vec<&str> = msgs.iter().map(|m| m.ack_id.as_str()).collect();
        let secs = self.cfg.ack_deadline.as_secs();
        if let Err(e) = self
            .call(
                "modifyAckDeadline",
                json!({"ackIds": ids, "ackDeadlineSeconds": secs}),
            )
            .await
        {
            tracing::debug!(error = %e, "Could not extend the ack deadline.");
        }
        let mut ack = Vec::new();
        for m in &msgs {
            let message_id = m.message.message_id.as_deref();
            tracing::debug!(
                message_id,
                delivery_attempt = m.delivery_attempt,
                "Pulled a notification."
            );
            let Some(data) = m.message.data.as_deref() else {
                tracing::warn!(
                    message_id,
                    "Pulled message without data; acknowledged and ignored."
                );
                ack.push(m.ack_id.clone());
                continue;
            };
            let n = match super::decode_data(data) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(message_id, reason = %e, "Malformed notification; acknowledged and ignored.");
                    ack.push(m.ack_id.clone());
                    continue;
                }
            };
            match super::deliver(core, &n, "pull", message_id).await {
                Ok(_) => ack.push(m.ack_id.clone()),
                Err(e) => {
                    tracing::warn!(message_id, email = %n.email, error = %e, "Notification not recorded; left for redelivery.");
                }
            }
        }
        if !self.cfg.test_hold_before_ack.is_zero() {
            tracing::info!(
                messages = ack.len(),
                hold_ms =
                    u64::try_from(self.cfg.test_hold_before_ack.as_millis()).unwrap_or(u64::MAX),
                "Holding pulled notifications before acknowledging (test hook)."
            );
            tokio::time::sleep(self.cfg.test_hold_before_ack).await;
        }
        if ack.is_empty() {
            return;
        }
        match self.call("acknowledge", json!({"ackIds": ack})).await {
            Ok(_) => tracing::debug!(messages = ack.len(), "Acknowledged pulled notifications."),
            // Already recorded: a redelivery is deduplicated downstream.
            Err(e) => tracing::warn!(error = %e, "Acknowledge failed; Pub/Sub will redeliver."),
        }
    }
}
