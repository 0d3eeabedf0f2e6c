//! The webhook sinks: POST batches of feed events as signed JSON to each `[[webhooks]]` URL.
//!
//! This module owns the batch format (`{"events":[...]}`, each event in the public schema of
//! [`crate::events`], so the actors crate stays free of JSON), the signature scheme
//! ([`sign`], [`verify_signature`]), the retry policy and the dead letters of webhook sinks.
//!
//! One delivery: up to [`super::BATCH_EVENTS`] events after the cursor, those of the webhook's
//! accounts only; headers `X-Mailsync-Timestamp: <unix seconds>` and
//! `X-Mailsync-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>` (the latter only
//! when a secret is configured). A 2xx acknowledges the batch. Anything else is retried with
//! exponential backoff and full jitter (`[retry] base_ms`/`cap_ms`); after the webhook's
//! `max_attempts` the batch is stored as a dead letter (`Space::Sinks`,
//! `deadletter/<sink>/<first seq:be>`, with the body so it can be replayed), flushed, and the
//! cursor moves on. Delivery is at least once: receivers dedupe by the event `key`.
//!
//! Secrets: resolved from the webhook's `CredentialRef` when the sink starts, kept in
//! [`Secret`], never logged. Errors never carry the URL (it may hold a token).

use std::time::Duration;

use hmac::{Hmac, Mac};
use mailsync_actors::backoff::RetryPolicy;
use mailsync_actors::feed::FeedEvent;
use mailsync_actors::store::{Store, decode, encode};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use super::{ConsumerLoop, Deliver, SinkError, deadletter_key, now_ms, webhook_sink_name};
use crate::config::{CredentialRef, RetryConfig, WebhookConfig};
use crate::secret::Secret;

pub use crate::events::{ChangeJson, EventJson, event_json, event_value};

/// The header carrying the signing time (unix seconds).
pub const TIMESTAMP_HEADER: &str = "X-Mailsync-Timestamp";
/// The header carrying the signature(s): `v1=<hex>`, comma-separated when several.
pub const SIGNATURE_HEADER: &str = "X-Mailsync-Signature";
/// How long one POST may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

type HmacSha256 = Hmac<Sha256>;

/// Why a signature does not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// The timestamp header is not a unix time in seconds.
    #[error("the timestamp is not a unix time in seconds")]
    BadTimestamp,
    /// The timestamp is further from now than the tolerance (a replay or a skewed clock).
    #[error("the timestamp is {age_secs} s away from now, outside the replay window")]
    Stale {
        /// Distance from `now`, in seconds.
        age_secs: u64,
    },
    /// The signature header holds no well-formed `v1=<hex>` entry.
    #[error("the signature header has no v1 signature")]
    Malformed,
    /// No `v1` signature matches.
    #[error("the signature does not match")]
    Mismatch,
}

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `X-Mailsync-Signature` value for a body signed at `timestamp`: `v1=<hex HMAC-SHA256(
/// secret, "<timestamp>.<body>")>`.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    format!(
        "v1={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Checks a delivery the way a receiver should: the timestamp is within `tolerance_secs` of
/// `now` (unix seconds), and one `v1=` entry of `header` is the HMAC-SHA256 of
/// `"<timestamp>.<body>"` under `secret`, compared in constant time. Copy it into receivers.
pub fn verify_signature(
    secret: &[u8],
    timestamp: &str,
    body: &[u8],
    header: &str,
    now: u64,
    tolerance_secs: u64,
) -> Result<(), SignatureError> {
    let ts: u64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    let age_secs = now.abs_diff(ts);
    if age_secs > tolerance_secs {
        return Err(SignatureError::Stale { age_secs });
    }
    let mut any = false;
    for part in header.split(',') {
        let Some(sig) = part
            .trim()
            .strip_prefix("v1=")
            .and_then(|h| hex::decode(h).ok())
        else {
            continue;
        };
        any = true;
        if mac(secret, timestamp.trim(), body)
            .verify_slice(&sig)
            .is_ok()
        {
            return Ok(());
        }
    }
    if any {
        Err(SignatureError::Mismatch)
    } else {
        Err(SignatureError::Malformed)
    }
}

/// The JSON body of one delivery: `{"events":[...]}`, each event in the public schema
/// ([`crate::events`]), byte for byte what `ctl events` prints for it.
#[derive(Debug, Serialize)]
pub struct WebhookBatch {
    /// The events, in seq order.
    pub events: Vec<serde_json::Value>,
}

/// The body of a delivery of `events` (already filtered).
pub fn batch_body(events: &[FeedEvent]) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&WebhookBatch {
        events: events.iter().map(event_value).collect(),
    })
}

/// A batch that exhausted its attempts, kept in `Space::Sinks` under
/// `deadletter/<sink>/<first seq:be>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// First feed seq of the batch.
    pub first_seq: u64,
    /// Last feed seq of the batch.
    pub last_seq: u64,
    /// Events in the body.
    pub events: u64,
    /// Attempts made.
    pub attempts: u32,
    /// The last error (secret-free).
    pub last_error: String,
    /// When it was dead-lettered, ms since the epoch.
    pub at_ms: u64,
    /// The JSON body that was sent (re-sign it with a fresh timestamp to replay).
    pub body: Vec<u8>,
}

/// Schema-1 shape of a dead letter, frozen (bincode is positional).
#[derive(Deserialize)]
struct DeadLetterV1 {
    first_seq: u64,
    last_seq: u64,
    events: u64,
    attempts: u32,
    last_error: String,
    at_ms: u64,
    body: Vec<u8>,
}

impl mailsync_actors::codec::Versioned for DeadLetter {
    const NAME: &'static str = "webhook dead letter";
    const VERSION: u16 = 1;
    fn from_legacy(body: &[u8]) -> Result<Self, mailsync_actors::codec::CodecError> {
        let d: DeadLetterV1 = mailsync_actors::codec::legacy_bincode::<Self, _>(body)?;
        Ok(DeadLetter {
            first_seq: d.first_seq,
            last_seq: d.last_seq,
            events: d.events,
            attempts: d.attempts,
            last_error: d.last_error,
            at_ms: d.at_ms,
            body: d.body,
        })
    }
}

/// Every dead letter of a sink, oldest first.
pub fn dead_letters(store: &Store, sink: &str) -> Result<Vec<DeadLetter>, SinkError> {
    let mut out = Vec::new();
    for item in store
        .kv(mailsync_actors::store::Space::Sinks)
        .scan_prefix(super::deadletter_prefix(sink))
    {
        let (_, v) = item.map_err(|source| {
            SinkError::Store(mailsync_actors::store::StoreError::Sled {
                context: "reading dead letters",
                source,
            })
        })?;
        out.push(decode(&v)?);
    }
    Ok(out)
}

/// One webhook endpoint: its HTTP client, URL and signing secret (resolved on first use and
/// kept). The sink and `ctl webhook replay` both post through it.
pub(crate) struct Poster {
    url: String,
    secret_ref: Option<CredentialRef>,
    secret: Option<Secret<String>>,
    http: reqwest::Client,
}

impl Poster {
    /// The poster of one `[[webhooks]]` entry.
    pub(crate) fn new(config: &WebhookConfig) -> Result<Self, SinkError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("mailsync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SinkError::Delivery(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            url: config.url.clone(),
            secret_ref: config.secret.clone(),
            secret: None,
            http,
        })
    }

    /// The signing secret, resolved once (off the async threads: it may run a command).
    pub(crate) async fn secret(&mut self) -> Result<Option<Secret<String>>, SinkError> {
        let Some(reference) = self.secret_ref.clone() else {
            return Ok(None);
        };
        if let Some(s) = &self.secret {
            return Ok(Some(s.clone()));
        }
        let resolved = tokio::task::spawn_blocking(move || reference.resolve())
            .await
            .map_err(|e| SinkError::Join(e.to_string()))?
            .map_err(|e| SinkError::Secret(e.to_string()))?;
        self.secret = Some(resolved.clone());
        Ok(Some(resolved))
    }

    /// One signed POST of `body`; `Err` is a secret- and URL-free reason.
    pub(crate) async fn post_once(
        &self,
        body: &[u8],
        secret: Option<&Secret<String>>,
    ) -> Result<(), String> {
        let ts = (now_ms() / 1000).to_string();
        let mut req = self
            .http
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header(TIMESTAMP_HEADER, &ts);
        if let Some(secret) = secret {
            req = req.header(
                SIGNATURE_HEADER,
                sign(secret.expose().as_bytes(), &ts, body),
            );
        }
        match req.body(body.to_vec()).send().await {
            Ok(resp) if resp.status().is_success() => Ok(()),
            Ok(resp) => Err(format!("HTTP status {}", resp.status())),
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "cannot connect"
                } else {
                    "request failed"
                };
                let e = e.without_url();
                let mut msg = format!("{kind}: {e}");
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    msg.push_str(": ");
                    msg.push_str(&s.to_string());
                    source = s.source();
                }
                if msg.len() > 500 {
                    let mut cut = 500;
                    while !msg.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    msg.truncate(cut);
                }
                Err(msg)
            }
        }
    }
}

/// One webhook sink task.
pub(crate) struct WebhookSink {
    name: String,
    store: Store,
    poster: Poster,
    accounts: Option<Vec<String>>,
    policy: RetryPolicy,
}

impl WebhookSink {
    /// The sink of one `[[webhooks]]` entry.
    pub(crate) fn new(
        store: Store,
        config: &WebhookConfig,
        retry: &RetryConfig,
    ) -> Result<Self, SinkError> {
        Ok(Self {
            name: webhook_sink_name(&config.name),
            store,
            poster: Poster::new(config)?,
            accounts: config.accounts.clone(),
            policy: RetryPolicy {
                base: retry.base,
                cap: retry.cap,
                max_attempts: config.max_attempts.max(1),
                ..RetryPolicy::default()
            },
        })
    }

    /// Follows the feed until `cancel` fires.
    pub(crate) async fn run(self, cancel: CancellationToken) {
        let consumer = ConsumerLoop {
            name: self.name.clone(),
            store: self.store.clone(),
            max_backoff: self.policy.cap.max(Duration::from_secs(1)),
            batch: super::BATCH_EVENTS,
        };
        if let Err(e) = consumer.register() {
            tracing::error!(sink = %self.name, error = %e, "Cannot register the webhook sink.");
        }
        consumer.run(self, cancel).await;
    }

    fn wants(&self, account: &str) -> bool {
        self.accounts
            .as_ref()
            .is_none_or(|ids| ids.iter().any(|a| a == account))
    }
}

impl Deliver for WebhookSink {
    async fn deliver(
        &mut self,
        events: Vec<FeedEvent>,
        cancel: &CancellationToken,
    ) -> Result<u64, SinkError> {
        let (Some(first), Some(last)) =
            (events.first().map(|e| e.seq), events.last().map(|e| e.seq))
        else {
            return Ok(0);
        };
        let selected: Vec<FeedEvent> = events
            .into_iter()
            .filter(|e| self.wants(&e.account))
            .collect();
        if selected.is_empty() {
            return Ok(last);
        }
        let count = selected.len() as u64;
        let body = batch_body(&selected)
            .map_err(|e| SinkError::Delivery(format!("encoding the batch: {e}")))?;
        let secret = self.poster.secret().await?;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let error = match self.poster.post_once(&body, secret.as_ref()).await {
                Ok(()) => {
                    tracing::debug!(sink = %self.name, seq = last, events = count, attempt, "Webhook batch delivered.");
                    return Ok(last);
                }
                Err(e) => e,
            };
            if self.policy.exhausted(attempt) {
                let dl = DeadLetter {
                    first_seq: first,
                    last_seq: last,
                    events: count,
                    attempts: attempt,
                    last_error: error.clone(),
                    at_ms: now_ms(),
                    body,
                };
                self.store
                    .kv(mailsync_actors::store::Space::Sinks)
                    .insert(deadletter_key(&self.name, first), encode(&dl))
                    .map_err(|source| {
                        SinkError::Store(mailsync_actors::store::StoreError::Sled {
                            context: "writing a dead letter",
                            source,
                        })
                    })?;
                self.store.flush()?;
                super::set_last_error(&self.store, &self.name, Some(&error));
                tracing::error!(
                    sink = %self.name,
                    seq = first,
                    last_seq = last,
                    attempts = attempt,
                    error = %error,
                    "Webhook batch dead-lettered after its last attempt."
                );
                return Ok(last);
            }
            let delay = self.policy.delay(attempt, &mut rand::rng());
            tracing::warn!(
                sink = %self.name,
                seq = first,
                attempt,
                error = %error,
                retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                "Webhook delivery failed; retrying."
            );
            tokio::select! {
                () = cancel.cancelled() => return Err(SinkError::Delivery("cancelled".into())),
                () = tokio::time::sleep(delay) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_forgeries_do_not() {
        let secret = b"s3cret";
        let body = br#"{"events":[]}"#;
        let header = sign(secret, "1700000000", body);
        assert!(header.starts_with("v1=") && header.len() == 3 + 64);
        assert_eq!(
            verify_signature(secret, "1700000000", body, &header, 1_700_000_010, 300),
            Ok(())
        );
        // Several signatures (key rotation): any match is enough.
        let both = format!("v1=00ff, {header}");
        assert_eq!(
            verify_signature(secret, "1700000000", body, &both, 1_700_000_000, 300),
            Ok(())
        );
        assert_eq!(
            verify_signature(b"other", "1700000000", body, &header, 1_700_000_000, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(
                secret,
                "1700000000",
                b"{\"events\":[1]}",
                &header,
                1_700_000_000,
                300
            ),
            Err(SignatureError::Mismatch)
        );
        // The timestamp is signed: moving it breaks the signature.
        assert_eq!(
            verify_signature(secret, "1700000001", body, &header, 1_700_000_000, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(secret, "1700000000", body, &header, 1_700_001_000, 300),
            Err(SignatureError::Stale { age_secs: 1000 })
        );
        assert_eq!(
            verify_signature(secret, "soon", body, &header, 1_700_000_000, 300),
            Err(SignatureError::BadTimestamp)
        );
        assert_eq!(
            verify_signature(secret, "1700000000", body, "sha256=abc", 1_700_000_000, 300),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_signature(secret, "1700000000", body, "v1=zz", 1_700_000_000, 300),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn hmac_matches_a_known_vector() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let m = {
            let mut m = HmacSha256::new_from_slice(b"Jefe").unwrap();
            m.update(b"what do ya want for nothing?");
            m
        };
        assert_eq!(
            hex::encode(m.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(hex::decode("00ff10").ok(), Some(vec![0, 255, 16]));
        assert!(hex::decode("0").is_err());
    }
}
