//! Outgoing notifications: Gmail changes published to the official Pub/Sub emulator's REST API
//! (`POST {endpoint}/v1/{topic}:publish`) or pushed directly in Pub/Sub's wrapped push shape
//! with a Google-style RS256 OIDC JWT; Calendar web-hook notifications with X-Goog-* headers.
//! Applies notification faults (drop, duplicate, delay, reorder) and redelivers with
//! exponential backoff. Also owns the embedded **test** RSA key and its JWKS.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jsonwebtoken::{Algorithm, Header};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::error::EmulatorError;
use crate::state::EmulatorState;
use crate::util::{b64std, http_date, lock, rfc3339_ms};

pub use crate::notification::{
    CalendarPing, MintRequest, Outbound, PushClaims, SigningKey, TEST_KEY_E, TEST_KEY_KID,
    TEST_KEY_N, TEST_SIGNING_KEY_PEM,
};

static MESSAGE_ID: AtomicU64 = AtomicU64::new(1_266_021_234_804_195);

/// Signs a push JWT.
pub fn mint_jwt(
    st: &EmulatorState,
    m: &MintRequest,
    default_aud: &str,
) -> Result<String, EmulatorError> {
    let now = st.clock.now_ms() / 1000 + m.iat_offset_secs.unwrap_or(0);
    let claims = PushClaims {
        iss: m
            .iss
            .clone()
            .unwrap_or_else(|| "https://accounts.google.com".into()),
        aud: m.aud.clone().unwrap_or_else(|| default_aud.to_string()),
        email: m
            .email
            .clone()
            .unwrap_or_else(|| st.config.push_service_account.clone()),
        email_verified: m.email_verified.unwrap_or(true),
        sub: "113774264463038321964".into(),
        azp: "113774264463038321964".into(),
        iat: now,
        exp: now + m.lifetime_secs.unwrap_or(3600),
    };
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(m.kid.clone().unwrap_or_else(|| st.key.kid.clone()));
    header.typ = Some("JWT".into());
    let mut token = jsonwebtoken::encode(&header, &claims, &st.key.encoding)
        .map_err(|e| EmulatorError::Key(e.to_string()))?;
    if m.tamper_signature
        && let Some(dot) = token.rfind('.')
    {
        // Flip a character well inside the signature (the last one only carries padding bits).
        let i = dot + 10;
        if let Some(c) = token.get(i..i + 1) {
            let flipped = if c == "A" { "B" } else { "A" };
            token.replace_range(i..i + 1, flipped);
        }
    }
    Ok(token)
}

/// The wrapped Pub/Sub push body for a Gmail notification.
pub fn push_body(st: &EmulatorState, email: &str, history_id: &str, attempt: Option<u32>) -> Value {
    let data = json!({"emailAddress": email, "historyId": history_id}).to_string();
    let id = MESSAGE_ID.fetch_add(1, Ordering::Relaxed).to_string();
    let time = rfc3339_ms(st.clock.now_ms());
    let mut body = json!({
        "message": {
            "data": b64std(data.as_bytes()),
            "attributes": {},
            "messageId": id,
            "message_id": id,
            "publishTime": time,
            "publish_time": time,
        },
        "subscription": st.config.push_subscription,
    });
    if let Some(a) = attempt {
        body["deliveryAttempt"] = json!(a);
    }
    body
}

fn is_ack(status: u16) -> bool {
    matches!(status, 102 | 200 | 201 | 202 | 204)
}

fn backoff(st: &EmulatorState, attempt: u32) -> Duration {
    let min = st.config.push_min_backoff;
    let max = st.config.push_max_backoff;
    let d = min.saturating_mul(1u32 << attempt.min(16));
    d.min(max)
}

async fn deliver_gmail(
    st: Arc<EmulatorState>,
    http: reqwest::Client,
    topic: String,
    email: String,
    history_id: u64,
) {
    if let Some(ep) = st.config.pubsub_endpoint.clone() {
        let data = json!({"emailAddress": email, "historyId": history_id.to_string()}).to_string();
        let url = format!("{}/v1/{}:publish", ep.trim_end_matches('/'), topic);
        let body = json!({"messages": [{"data": b64std(data.as_bytes())}]});
        match http.post(&url).json(&body).send().await {
            Ok(r) if r.status().is_success() => st.with_counters(|c| c.notifications_sent += 1),
            Ok(r) => {
                tracing::warn!(status = %r.status(), %url, "pubsub publish failed");
                st.with_counters(|c| c.push_failures += 1);
            }
            Err(e) => {
                tracing::warn!(error = %e, %url, "pubsub publish failed");
                st.with_counters(|c| c.push_failures += 1);
            }
        }
    }
    if let Some(ep) = st.config.push_endpoint.clone() {
        let aud = st
            .config
            .push_audience
            .clone()
            .unwrap_or_else(|| ep.clone());
        let hid = history_id.to_string();
        for attempt in 0..st.config.push_max_attempts {
            let token = match mint_jwt(&st, &MintRequest::default(), &aud) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(error = %e, "cannot sign push token");
                    return;
                }
            };
            let body = push_body(&st, &email, &hid, None);
            st.with_counters(|c| c.push_attempts += 1);
            let res = http.post(&ep).bearer_auth(token).json(&body).send().await;
            match res {
                Ok(r) if is_ack(r.status().as_u16()) => {
                    st.with_counters(|c| c.notifications_sent += 1);
                    return;
                }
                Ok(r) => tracing::debug!(status = %r.status(), "push nacked"),
                Err(e) => tracing::debug!(error = %e, "push failed"),
            }
            st.with_counters(|c| c.push_failures += 1);
            tokio::select! {
                _ = tokio::time::sleep(backoff(&st, attempt)) => {}
                _ = st.shutdown.cancelled() => return,
            }
        }
    }
}

async fn deliver_calendar(st: Arc<EmulatorState>, http: reqwest::Client, p: CalendarPing) {
    for attempt in 0..st.config.push_max_attempts {
        let mut rb = http
            .post(&p.address)
            .header("X-Goog-Channel-ID", &p.channel_id)
            .header("X-Goog-Message-Number", p.message_number.to_string())
            .header("X-Goog-Resource-ID", &p.resource_id)
            .header("X-Goog-Resource-State", p.state)
            .header("X-Goog-Resource-URI", &p.resource_uri)
            .header("X-Goog-Channel-Expiration", http_date(p.expiration_ms))
            .header(
                "User-Agent",
                "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)",
            )
            .header("Content-Length", "0");
        if let Some(t) = &p.token {
            rb = rb.header("X-Goog-Channel-Token", t);
        }
        st.with_counters(|c| c.push_attempts += 1);
        match rb.send().await {
            Ok(r) if is_ack(r.status().as_u16()) => {
                st.with_counters(|c| c.notifications_sent += 1);
                return;
            }
            Ok(r) if matches!(r.status().as_u16(), 500 | 502 | 503 | 504) => {}
            Ok(r) => {
                tracing::debug!(status = %r.status(), "calendar notification refused; not retried");
                st.with_counters(|c| c.push_failures += 1);
                return;
            }
            Err(e) => tracing::debug!(error = %e, "calendar notification failed"),
        }
        st.with_counters(|c| c.push_failures += 1);
        tokio::select! {
            _ = tokio::time::sleep(backoff(&st, attempt)) => {}
            _ = st.shutdown.cancelled() => return,
        }
    }
}

fn dispatch(st: &Arc<EmulatorState>, http: &reqwest::Client, o: Outbound, delay_ms: u64) {
    let st2 = st.clone();
    let http = http.clone();
    tokio::spawn(async move {
        if delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        }
        match o {
            Outbound::Gmail {
                topic,
                email,
                history_id,
            } => deliver_gmail(st2, http, topic, email, history_id).await,
            Outbound::Calendar(p) => deliver_calendar(st2, http, p).await,
        }
    });
}

/// The notification worker: applies faults and dispatches deliveries.
pub async fn worker(st: Arc<EmulatorState>, mut rx: mpsc::UnboundedReceiver<Outbound>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let mut held: Option<Outbound> = None;
    loop {
        let o = tokio::select! {
            o = rx.recv() => match o { Some(o) => o, None => break },
            _ = st.shutdown.cancelled() => break,
        };
        let d = lock(&st.faults).decide_notification();
        if d.drop {
            st.with_counters(|c| c.notifications_dropped += 1);
            continue;
        }
        if d.reorder && held.is_none() {
            held = Some(o);
            continue;
        }
        dispatch(&st, &http, o.clone(), d.delay_ms);
        if d.duplicate {
            dispatch(&st, &http, o, d.delay_ms + 50);
        }
        if let Some(h) = held.take() {
            dispatch(&st, &http, h, d.delay_ms + 10);
        }
    }
}

/// Mints a token (and optionally delivers a push) for the control API.
pub async fn mint_and_maybe_deliver(
    st: &Arc<EmulatorState>,
    m: MintRequest,
) -> Result<Value, EmulatorError> {
    let endpoint = m
        .endpoint
        .clone()
        .or_else(|| st.config.push_endpoint.clone());
    let default_aud = st
        .config
        .push_audience
        .clone()
        .or_else(|| endpoint.clone())
        .unwrap_or_default();
    let token = mint_jwt(st, &m, &default_aud)?;
    let email = m
        .email_address
        .clone()
        .unwrap_or_else(|| st.config.account.clone());
    let hid = m.history_id.clone().unwrap_or_else(|| {
        lock(&st.accounts)
            .get(&email.to_ascii_lowercase())
            .map(|a| a.mailbox.history_id.to_string())
            .unwrap_or_else(|| "1".into())
    });
    let body = push_body(st, &email, &hid, None);
    let mut out = json!({"token": token, "body": body});
    if m.deliver {
        let Some(ep) = endpoint else {
            return Err(EmulatorError::Config(
                "no push endpoint configured or given".into(),
            ));
        };
        let http = reqwest::Client::new();
        let status = match http
            .post(&ep)
            .bearer_auth(&token)
            .json(&out["body"])
            .send()
            .await
        {
            Ok(r) => r.status().as_u16(),
            Err(e) => {
                out["error"] = json!(e.to_string());
                0
            }
        };
        out["status"] = json!(status);
    }
    Ok(out)
}
