//! The REST request loop the Gmail and Calendar clients share ([`RestCaller::execute`]):
//! pacing through the account's [`QuotaGate`] (units, then in-flight slots, for every
//! attempt), a bearer token from [`TokenSource`], one refresh-and-resend after a 401,
//! `RateLimited` → pause the whole account (`Retry-After`, else
//! [`rate_limit_pause`]) and retry, `Transient` → wait [`RetryPolicy::delay`] and retry; after
//! `max_attempts` the classified error goes to the caller. How an answer is classified is the
//! caller's (Gmail and Calendar read 404/410 differently). Also the pieces both clients build
//! the same way: the API base URL check and the reqwest client.

use super::auth::{BearerToken, TokenSource};
use super::error::{classify_transport, parse_retry_after};
use mailsync_actors::backoff::RetryPolicy;
use mailsync_actors::error::ApiError;
use mailsync_actors::quota::{QuotaError, QuotaGate};
use reqwest::Url;
use reqwest::header::{AUTHORIZATION, HeaderMap, RETRY_AFTER};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The retry policy of both REST clients: 5 attempts, full jitter from 1 s to 32 s.
pub fn default_retry() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_secs(1),
        cap: Duration::from_secs(32),
        max_attempts: 5,
        ..RetryPolicy::default()
    }
}

/// The pause after a rate limit without Retry-After: at least `base` (Google: "at least
/// 1 s"), plus the policy's jittered backoff.
pub fn rate_limit_pause(retry: &RetryPolicy, attempt: u32) -> Duration {
    retry.base + retry.delay(attempt, &mut rand::rng())
}

/// An answer read to the end (any status).
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl Answer {
    /// The parsed `Retry-After` header.
    pub fn retry_after(&self) -> Option<Duration> {
        self.headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after)
    }
}

/// Builds one attempt's request (without the bearer token).
pub type Build<'a> = &'a (dyn Fn() -> reqwest::RequestBuilder + Sync);
/// Classifies a non-2xx answer.
pub type Classify<'a> = &'a (dyn Fn(&Answer) -> ApiError + Sync);

/// What one account's REST client calls with.
#[derive(Debug)]
pub struct RestCaller {
    /// The account id (logs).
    pub account: String,
    /// The account's gate (Gmail's or Calendar's).
    pub gate: Arc<QuotaGate>,
    /// The account's tokens.
    pub tokens: Arc<TokenSource>,
    /// Rate-limit and transient retries (`max_attempts` ≥ 1).
    pub retry: RetryPolicy,
}

/// A gate failure as the port sees it.
pub fn quota_failure(e: QuotaError) -> ApiError {
    match e {
        QuotaError::Closed => ApiError::Transient("quota gate closed (shutting down)".into()),
        other => ApiError::Internal(format!("quota gate: {other}")),
    }
}

/// Milliseconds for log fields.
pub fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `api_base` as a base URL (with a trailing slash); only http(s).
pub fn parse_api_base(api_base: &str) -> Result<Url, ApiError> {
    let trimmed = api_base.trim_end_matches('/');
    let base = Url::parse(&format!("{trimmed}/"))
        .map_err(|e| ApiError::Internal(format!("invalid api_base {api_base:?}: {e}")))?;
    if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
        return Err(ApiError::Internal(format!(
            "api_base must be an http(s) URL, not {api_base:?}"
        )));
    }
    Ok(base)
}

/// The reqwest client of a REST client: whole-request and connect timeouts, our user agent.
pub fn http_client(request_timeout: Duration) -> Result<reqwest::Client, ApiError> {
    reqwest::Client::builder()
        .timeout(request_timeout)
        .connect_timeout(request_timeout.min(Duration::from_secs(15)))
        .user_agent(concat!("mailsync/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ApiError::Internal(format!("building the HTTP client: {e}")))
}

impl RestCaller {
    /// Runs one HTTP exchange with pacing, auth and retries; returns the 2xx answer and the
    /// token it was sent with. `charges` are the quota costs spent before each attempt (one
    /// per call, one per batch part); `slots` the in-flight slots it occupies.
    pub async fn execute(
        &self,
        method: &'static str,
        charges: &[u32],
        slots: u32,
        build: Build<'_>,
        classify: Classify<'_>,
    ) -> Result<(Answer, BearerToken), ApiError> {
        let retry = &self.retry;
        let max_attempts = retry.max_attempts.max(1);
        let mut attempt: u32 = 0;
        let mut refreshed = false;
        loop {
            attempt += 1;
            // Every attempt is a request Google counts, so each one is charged. Units first,
            // then the in-flight slots, so waiting for quota does not hold slots.
            for &units in charges {
                self.gate.charge(units).await.map_err(quota_failure)?;
            }
            let slot = self.gate.enter(slots).await.map_err(quota_failure)?;
            let outcome = match self.tokens.access_token().await {
                Ok(token) => self.send(method, build, &token).await.map(|a| (a, token)),
                Err(e) => Err(e),
            };
            drop(slot);
            let err = match outcome {
                Ok((answer, token)) if (200..300).contains(&answer.status) => {
                    return Ok((answer, token));
                }
                Ok((answer, token)) if answer.status == 401 && !refreshed => {
                    refreshed = true;
                    tracing::info!(
                        account = %self.account,
                        method,
                        status = 401u16,
                        "access token rejected; refreshing once"
                    );
                    match self.tokens.refresh_after_401(&token).await {
                        Ok(_) => {
                            attempt -= 1; // the auth retry is not a failed attempt
                            continue;
                        }
                        Err(e) => e,
                    }
                }
                Ok((answer, _)) => classify(&answer),
                Err(e) => e,
            };
            let retryable = matches!(err, ApiError::RateLimited { .. } | ApiError::Transient(_));
            if !retryable {
                return Err(err);
            }
            if let ApiError::RateLimited { retry_after } = &err {
                let pause = retry_after.unwrap_or_else(|| rate_limit_pause(retry, attempt));
                // The gate holds every caller (this one too) until the pause ends.
                self.gate.slow_down(pause);
                tracing::warn!(
                    account = %self.account,
                    method,
                    retry_after_ms = ms(pause),
                    attempt,
                    "rate limited; pausing the account"
                );
            }
            if attempt >= max_attempts {
                tracing::warn!(
                    account = %self.account,
                    method,
                    attempt,
                    error = %err,
                    "retryable failure; giving up for now"
                );
                return Err(err);
            }
            if let ApiError::Transient(reason) = &err {
                let pause = retry.delay(attempt, &mut rand::rng());
                tracing::info!(
                    account = %self.account,
                    method,
                    attempt,
                    retry_after_ms = ms(pause),
                    reason = %reason,
                    "transient failure; retrying"
                );
                tokio::time::sleep(pause).await;
            }
        }
    }

    async fn send(
        &self,
        method: &'static str,
        build: Build<'_>,
        token: &BearerToken,
    ) -> Result<Answer, ApiError> {
        let started = Instant::now();
        let response = build()
            .header(AUTHORIZATION, token.header_value())
            .send()
            .await
            .map_err(|e| classify_transport(&e))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| classify_transport(&e))?;
        tracing::debug!(
            account = %self.account,
            method,
            status,
            bytes = body.len(),
            elapsed_ms = ms(started.elapsed()),
            "google call"
        );
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}
