//! [`GmailClient`]: the `GmailApi` port over Gmail's REST API with reqwest (rustls).
//!
//! Every call passes the account's [`QuotaGate`] first (its cost in quota units — a batch
//! charges each part — then in-flight slots, one per part up to the cap), carries a bearer
//! token from [`TokenSource`], and is classified by `google::error`. Inside the client: a 401 refreshes the token once and
//! retries; `RateLimited` pauses the whole account (`QuotaGate::slow_down`, for Retry-After or
//! a backoff) and retries; `Transient` retries with exponential backoff and full jitter; after
//! [`RetryConfig::max_attempts`] the classified error goes to the caller. `messages.get` runs
//! through the batch endpoint with `format=raw`; each part answers on its own, and per-part
//! failures (404, 429, 5xx, bad JSON) are returned per id for the caller to retry or
//! dead-letter.

use super::auth::{BearerToken, OAuthCredentials, TokenSource};
use super::batch::{self, BatchPart, MAX_PARTS, RECOMMENDED_PARTS};
use super::error::{GmailMethod, classify, classify_transport, malformed_json, parse_retry_after};
use super::form::path_segment;
use super::wire::{
    WireLabelList, WireListHistoryResponse, WireListMessagesResponse, WireMessage, WireProfile,
    WireWatchRequest, WireWatchResponse,
};
use mailsync_actors::error::ApiError;
use mailsync_actors::model::{
    BatchItem, FetchedMessage, HistoryId, HistoryPage, Label, LabelId, ListQuery, MessageId,
    MessagePage, Profile, WatchResponse,
};
use mailsync_actors::ports::{GmailApi, PortFuture};
use mailsync_actors::quota::{CostTable, QuotaError, QuotaGate, QuotaStats};
use rand::Rng as _;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Google's Gmail API root.
pub const GOOGLE_API_BASE: &str = "https://gmail.googleapis.com";

/// How the client retries rate limits and transient failures before giving up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryConfig {
    /// Attempts per call, the first included (≥ 1).
    pub max_attempts: u32,
    /// Backoff ceiling of the first retry; doubles per attempt.
    pub base: Duration,
    /// Largest backoff ceiling.
    pub cap: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(32),
        }
    }
}

impl RetryConfig {
    /// Full jitter: uniform in `[0, min(cap, base × 2^(attempt-1))]`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let shift = attempt.saturating_sub(1).min(31);
        let ceiling = self
            .base
            .checked_mul(1u32 << shift)
            .unwrap_or(self.cap)
            .min(self.cap);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(0..=nanos))
    }

    /// The pause after a rate limit without Retry-After: at least `base` (Google: "at least
    /// 1 s"), plus a full-jitter backoff.
    pub fn rate_limit_pause(&self, attempt: u32) -> Duration {
        self.base + self.backoff(attempt)
    }
}

/// Everything a [`GmailClient`] needs besides its gate and tokens.
#[derive(Clone, Debug)]
pub struct GmailClientConfig {
    /// `https://gmail.googleapis.com`, or an emulator's `http://127.0.0.1:PORT`.
    pub api_base: String,
    /// The OAuth token endpoint (used by [`GmailClient::connect`]).
    pub token_url: String,
    /// `me` (the token's user) or the mailbox address.
    pub user_id: String,
    /// Parts per `messages.get` batch (1..=100; Google recommends ≤ 50).
    pub batch_size: usize,
    /// Whole-request timeout.
    pub request_timeout: Duration,
    /// Quota cost per method.
    pub costs: CostTable,
    /// Retry policy for rate limits and transient failures.
    pub retry: RetryConfig,
    /// `maxResults` of `history.list` (1..=500).
    pub history_page_size: u32,
}

impl Default for GmailClientConfig {
    fn default() -> Self {
        Self {
            api_base: GOOGLE_API_BASE.to_owned(),
            token_url: super::auth::GOOGLE_TOKEN_URL.to_owned(),
            user_id: "me".to_owned(),
            batch_size: RECOMMENDED_PARTS,
            request_timeout: Duration::from_secs(60),
            costs: CostTable::profile_2026(),
            retry: RetryConfig::default(),
            history_page_size: 500,
        }
    }
}

/// A Gmail account reached over REST. Cheap to share behind an `Arc<dyn GmailApi>`.
#[derive(Debug)]
pub struct GmailClient {
    config: GmailClientConfig,
    base: Url,
    account: String,
    http: reqwest::Client,
    gate: Arc<QuotaGate>,
    tokens: Arc<TokenSource>,
}

/// A 2xx answer, read to the end.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: bytes::Bytes,
}

fn quota_failure(e: QuotaError) -> ApiError {
    match e {
        QuotaError::Closed => ApiError::Transient("quota gate closed (shutting down)".into()),
        other => ApiError::Internal(format!("quota gate: {other}")),
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl GmailClient {
    /// A client for the account the gate paces, with `tokens` for its bearer tokens.
    pub fn new(
        config: GmailClientConfig,
        gate: Arc<QuotaGate>,
        tokens: Arc<TokenSource>,
    ) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(15)))
            .user_agent(concat!("mailsync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ApiError::Internal(format!("building the HTTP client: {e}")))?;
        Self::with_http(config, gate, tokens, http)
    }

    /// Builds the [`TokenSource`] from `credentials` and `config.token_url`, then [`Self::new`].
    pub fn connect(
        config: GmailClientConfig,
        gate: Arc<QuotaGate>,
        credentials: OAuthCredentials,
    ) -> Result<Self, ApiError> {
        let tokens = TokenSource::new(gate.account(), credentials, config.token_url.clone())?;
        Self::new(config, gate, Arc::new(tokens))
    }

    /// Same as [`Self::new`] on a caller-supplied HTTP client.
    pub fn with_http(
        mut config: GmailClientConfig,
        gate: Arc<QuotaGate>,
        tokens: Arc<TokenSource>,
        http: reqwest::Client,
    ) -> Result<Self, ApiError> {
        let trimmed = config.api_base.trim_end_matches('/');
        let base = Url::parse(&format!("{trimmed}/")).map_err(|e| {
            ApiError::Internal(format!("invalid api_base {:?}: {e}", config.api_base))
        })?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(ApiError::Internal(format!(
                "api_base must be an http(s) URL, not {:?}",
                config.api_base
            )));
        }
        config.batch_size = config.batch_size.clamp(1, MAX_PARTS);
        config.history_page_size = config.history_page_size.clamp(1, 500);
        config.retry.max_attempts = config.retry.max_attempts.max(1);
        Ok(Self {
            account: gate.account().to_owned(),
            config,
            base,
            http,
            gate,
            tokens,
        })
    }

    /// The account's quota gate.
    pub fn gate(&self) -> &Arc<QuotaGate> {
        &self.gate
    }

    /// The account's token source.
    pub fn tokens(&self) -> &Arc<TokenSource> {
        &self.tokens
    }

    /// The quota counters (units spent, rate errors seen, ...).
    pub fn quota_stats(&self) -> QuotaStats {
        self.gate.stats()
    }

    /// The configuration in force (after clamping).
    pub fn config(&self) -> &GmailClientConfig {
        &self.config
    }

    /// `{base path}/gmail/v1/users/{user}/{rest}` as a path (no host), segments encoded.
    fn user_path(&self, rest: &[&str]) -> String {
        let mut path = self.base.path().trim_end_matches('/').to_owned();
        path.push_str("/gmail/v1/users/");
        path.push_str(&path_segment(&self.config.user_id));
        for segment in rest {
            path.push('/');
            path.push_str(&path_segment(segment));
        }
        path
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        url.set_path(path);
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        url
    }

    /// Runs one HTTP exchange with pacing, auth and retries; returns the 2xx answer and the
    /// token it was sent with. `charges` are the quota costs to spend before each attempt
    /// (one per call, one per batch part); `slots` the in-flight slots it occupies.
    async fn execute(
        &self,
        method: GmailMethod,
        charges: &[u32],
        slots: u32,
        build: &(dyn Fn() -> reqwest::RequestBuilder + Sync),
    ) -> Result<(Answer, BearerToken), ApiError> {
        let retry = self.config.retry;
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
                        method = method.name(),
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
                Ok((answer, _)) => {
                    let retry_after = answer
                        .headers
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after);
                    classify(method, answer.status, retry_after, &answer.body)
                }
                Err(e) => e,
            };
            match &err {
                ApiError::RateLimited { retry_after } => {
                    let pause = retry_after.unwrap_or_else(|| retry.rate_limit_pause(attempt));
                    self.gate.slow_down(pause);
                    tracing::warn!(
                        account = %self.account,
                        method = method.name(),
                        retry_after_ms = ms(pause),
                        attempt,
                        "rate limited; pausing the account"
                    );
                    if attempt >= retry.max_attempts {
                        return Err(err);
                    }
                    // The gate holds every caller (this one too) until the pause ends.
                }
                ApiError::Transient(reason) => {
                    if attempt >= retry.max_attempts {
                        tracing::warn!(
                            account = %self.account,
                            method = method.name(),
                            attempt,
                            reason = %reason,
                            "transient failure; giving up"
                        );
                        return Err(err);
                    }
                    let pause = retry.backoff(attempt);
                    tracing::info!(
                        account = %self.account,
                        method = method.name(),
                        attempt,
                        retry_after_ms = ms(pause),
                        reason = %reason,
                        "transient failure; retrying"
                    );
                    tokio::time::sleep(pause).await;
                }
                _ => return Err(err),
            }
        }
    }

    async fn send(
        &self,
        method: GmailMethod,
        build: &(dyn Fn() -> reqwest::RequestBuilder + Sync),
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
            method = method.name(),
            status,
            bytes = body.len(),
            elapsed_ms = ms(started.elapsed()),
            "gmail call"
        );
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        method: GmailMethod,
        cost: u32,
        url: Url,
    ) -> Result<T, ApiError> {
        let build = || self.http.request(Method::GET, url.clone());
        let (answer, _) = self.execute(method, &[cost], 1, &build).await?;
        serde_json::from_slice(&answer.body)
            .map_err(|e| malformed_json(method.name(), &e, &answer.body))
    }

    async fn profile_impl(&self) -> Result<Profile, ApiError> {
        let url = self.url(&self.user_path(&["profile"]), &[]);
        let wire: WireProfile = self
            .get_json(GmailMethod::Profile, self.config.costs.get_profile, url)
            .await?;
        wire.into_model()
    }

    async fn labels_impl(&self) -> Result<Vec<Label>, ApiError> {
        let url = self.url(&self.user_path(&["labels"]), &[]);
        let wire: WireLabelList = self
            .get_json(GmailMethod::Labels, self.config.costs.labels_list, url)
            .await?;
        Ok(wire.into_model())
    }

    async fn list_impl(
        &self,
        query: &ListQuery,
        page_token: Option<&str>,
    ) -> Result<MessagePage, ApiError> {
        let size = query.page_size.clamp(1, 500).to_string();
        let mut params: Vec<(&str, &str)> = Vec::new();
        if query.page_size > 0 {
            params.push(("maxResults", &size));
        }
        if let Some(q) = query.q.as_deref().filter(|q| !q.is_empty()) {
            params.push(("q", q));
        }
        if let Some(label) = &query.label_id {
            params.push(("labelIds", &label.0));
        }
        if query.include_spam_trash {
            params.push(("includeSpamTrash", "true"));
        }
        if let Some(token) = page_token {
            params.push(("pageToken", token));
        }
        let url = self.url(&self.user_path(&["messages"]), &params);
        let wire: WireListMessagesResponse = self
            .get_json(
                GmailMethod::ListMessages,
                self.config.costs.messages_list,
                url,
            )
            .await?;
        Ok(wire.into_model())
    }

    async fn history_impl(
        &self,
        start: HistoryId,
        page_token: Option<&str>,
    ) -> Result<HistoryPage, ApiError> {
        let start = start.0.to_string();
        let size = self.config.history_page_size.to_string();
        let mut params: Vec<(&str, &str)> = vec![
            ("startHistoryId", &start),
            ("maxResults", &size),
            ("historyTypes", "messageAdded"),
            ("historyTypes", "messageDeleted"),
            ("historyTypes", "labelAdded"),
            ("historyTypes", "labelRemoved"),
        ];
        if let Some(token) = page_token {
            params.push(("pageToken", token));
        }
        let url = self.url(&self.user_path(&["history"]), &params);
        let wire: WireListHistoryResponse = self
            .get_json(GmailMethod::History, self.config.costs.history_list, url)
            .await?;
        wire.into_model()
    }

    /// `users.watch` (costs `costs.watch`). `GmailMethod` has no watch variant (it lives in
    /// `error.rs`); `Profile` classifies the same way (404 → `NotFound`, 4xx → `Rejected`).
    async fn watch_impl(
        &self,
        topic: &str,
        label_ids: &[LabelId],
    ) -> Result<WatchResponse, ApiError> {
        let request = WireWatchRequest {
            topic_name: topic,
            label_ids: label_ids.iter().map(|l| l.0.as_str()).collect(),
            label_filter_behavior: (!label_ids.is_empty()).then_some("include"),
        };
        let body = serde_json::to_vec(&request)
            .map_err(|e| ApiError::Internal(format!("encoding the watch request: {e}")))?;
        let body = bytes::Bytes::from(body);
        let url = self.url(&self.user_path(&["watch"]), &[]);
        let build = || {
            self.http
                .request(Method::POST, url.clone())
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone())
        };
        let (answer, _) = self
            .execute(GmailMethod::Profile, &[self.config.costs.watch], 1, &build)
            .await?;
        let wire: WireWatchResponse = serde_json::from_slice(&answer.body)
            .map_err(|e| malformed_json("gmail.users.watch", &e, &answer.body))?;
        wire.into_model()
    }

    /// `users.stop` (costs `costs.stop`); any 2xx is success, the body is ignored.
    async fn stop_impl(&self) -> Result<(), ApiError> {
        let url = self.url(&self.user_path(&["stop"]), &[]);
        let build = || {
            self.http
                .request(Method::POST, url.clone())
                .header(CONTENT_TYPE, "application/json")
                .body("")
        };
        self.execute(GmailMethod::Profile, &[self.config.costs.stop], 1, &build)
            .await?;
        Ok(())
    }

    async fn get_messages_impl(&self, ids: &[MessageId]) -> Result<Vec<BatchItem>, ApiError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(self.config.batch_size) {
            out.extend(self.get_chunk(chunk).await?);
        }
        Ok(out)
    }

    /// One batch of up to `batch_size` ids; parts answered 401 are re-sent once after a token
    /// refresh.
    async fn get_chunk(&self, ids: &[MessageId]) -> Result<Vec<BatchItem>, ApiError> {
        let mut results: Vec<Option<Result<FetchedMessage, ApiError>>> = vec![None; ids.len()];
        let mut pending: Vec<usize> = (0..ids.len()).collect();
        let mut auth_retried = false;
        while !pending.is_empty() {
            let (parts, token) = self.send_batch(ids, &pending).await?;
            let cids: Vec<String> = pending.iter().map(|i| format!("p{i}")).collect();
            let matched = batch::match_parts(&cids, parts);
            let mut unauthorized = Vec::new();
            let mut pause: Option<Duration> = None;
            let mut rate_limited = 0usize;
            for (&i, part) in pending.iter().zip(matched) {
                let requested = &ids[i];
                let result = match part {
                    // A lost part says nothing about the message: retried without counting.
                    None => Err(ApiError::Transient(
                        "batch response: no part answered this message".into(),
                    )),
                    Some(p) if (200..300).contains(&p.status) => parse_fetched(requested, &p.body),
                    Some(p) if p.status == 401 && !auth_retried => {
                        unauthorized.push(i);
                        continue;
                    }
                    Some(p) => {
                        let retry_after = p.header("retry-after").and_then(parse_retry_after);
                        let err = classify(GmailMethod::GetMessage, p.status, retry_after, &p.body);
                        if let ApiError::RateLimited { retry_after } = &err {
                            rate_limited += 1;
                            let wait = retry_after
                                .unwrap_or_else(|| self.config.retry.rate_limit_pause(1));
                            pause = Some(pause.map_or(wait, |p| p.max(wait)));
                        }
                        Err(err)
                    }
                };
                results[i] = Some(result);
            }
            if let Some(wait) = pause {
                self.gate.slow_down(wait);
                tracing::warn!(
                    account = %self.account,
                    method = GmailMethod::GetMessage.name(),
                    status = 429u16,
                    parts = rate_limited,
                    retry_after_ms = ms(wait),
                    "batch parts rate limited; pausing the account"
                );
            }
            if unauthorized.is_empty() {
                break;
            }
            auth_retried = true;
            tracing::info!(
                account = %self.account,
                method = GmailMethod::GetMessage.name(),
                status = 401u16,
                parts = unauthorized.len(),
                "batch parts unauthorized; refreshing once"
            );
            if let Err(e) = self.tokens.refresh_after_401(&token).await {
                for &i in &unauthorized {
                    results[i] = Some(Err(e.clone()));
                }
                break;
            }
            pending = unauthorized;
        }
        Ok(ids
            .iter()
            .cloned()
            .zip(results)
            .map(|(id, r)| {
                let r = r.unwrap_or_else(|| {
                    Err(ApiError::Transient(
                        "batch part still unauthorized right after a refresh".into(),
                    ))
                });
                (id, r)
            })
            .collect())
    }

    /// Sends the parts `pending` (indexes into `ids`) as one batch, with retries of the whole
    /// envelope; returns the decoded parts and the token used.
    async fn send_batch(
        &self,
        ids: &[MessageId],
        pending: &[usize],
    ) -> Result<(Vec<batch::ResponsePart>, BearerToken), ApiError> {
        let parts: Vec<BatchPart> = pending
            .iter()
            .map(|&i| BatchPart {
                content_id: format!("p{i}"),
                method: "GET".to_owned(),
                path_and_query: format!(
                    "{}?format=raw",
                    self.user_path(&["messages", ids[i].0.as_str()])
                ),
            })
            .collect();
        let boundary = format!("batch_mailsync_{:016x}", rand::rng().random::<u64>());
        let encoded = batch::encode(&parts, &boundary)
            .map_err(|e| ApiError::Internal(format!("encoding a batch: {e}")))?;
        let mut url = self.base.clone();
        let prefix = self.base.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{prefix}/batch/gmail/v1"));
        let body = bytes::Bytes::from(encoded.body);
        let content_type = encoded.content_type;
        let build = || {
            self.http
                .request(Method::POST, url.clone())
                .header(CONTENT_TYPE, content_type.as_str())
                .body(body.clone())
        };
        let charges = vec![self.config.costs.messages_get; parts.len()];
        let slots = u32::try_from(parts.len()).unwrap_or(u32::MAX);
        let (answer, token) = self
            .execute(GmailMethod::Batch, &charges, slots, &build)
            .await?;
        let content_type = answer
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let decoded = batch::decode(content_type, &answer.body)?;
        Ok((decoded, token))
    }
}

/// One batch part's 2xx body → the fetched message (its id must be the one asked for).
fn parse_fetched(requested: &MessageId, body: &[u8]) -> Result<FetchedMessage, ApiError> {
    let wire: WireMessage = serde_json::from_slice(body)
        .map_err(|e| malformed_json(GmailMethod::GetMessage.name(), &e, body))?;
    if wire.id != requested.0 {
        return Err(ApiError::Malformed(format!(
            "batch part for {} answered with message {}",
            requested,
            super::error::excerpt(wire.id.as_bytes())
        )));
    }
    wire.into_fetched()
}

impl GmailApi for GmailClient {
    fn profile(&self) -> PortFuture<'_, Profile> {
        Box::pin(self.profile_impl())
    }

    fn labels(&self) -> PortFuture<'_, Vec<Label>> {
        Box::pin(self.labels_impl())
    }

    fn list_messages<'a>(
        &'a self,
        query: &'a ListQuery,
        page_token: Option<&'a str>,
    ) -> PortFuture<'a, MessagePage> {
        Box::pin(self.list_impl(query, page_token))
    }

    fn get_messages<'a>(&'a self, ids: &'a [MessageId]) -> PortFuture<'a, Vec<BatchItem>> {
        Box::pin(self.get_messages_impl(ids))
    }

    fn history<'a>(
        &'a self,
        start: HistoryId,
        page_token: Option<&'a str>,
    ) -> PortFuture<'a, HistoryPage> {
        Box::pin(self.history_impl(start, page_token))
    }

    fn watch<'a>(
        &'a self,
        topic: &'a str,
        label_ids: &'a [LabelId],
    ) -> PortFuture<'a, WatchResponse> {
        Box::pin(self.watch_impl(topic, label_ids))
    }

    fn stop_watch(&self) -> PortFuture<'_, ()> {
        Box::pin(self.stop_impl())
    }

    fn quota(
        &self,
    ) -> Option<(
        mailsync_actors::quota::QuotaStats,
        mailsync_actors::quota::QuotaLimits,
    )> {
        Some((self.gate.stats(), self.gate.limits()))
    }

    fn reconnect(&self) -> PortFuture<'_, ()> {
        Box::pin(self.tokens.reconnect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use axum::extract::{RawQuery, State};
    use axum::http::{HeaderMap as AxHeaders, StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};
    use mailsync_actors::model::{HistoryChange, LabelId};
    use mailsync_actors::quota::QuotaLimits;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    const RAW_B64: &str = "RnJvbTogYkBleGFtcGxlLmNvbQ0KU3ViamVjdDogSGkNCg0KYm9keQ0K";

    #[derive(Default)]
    struct Fake {
        token_calls: AtomicU32,
        /// Access token the API accepts; rotates with each refresh.
        valid: Mutex<String>,
        /// Statuses to answer next on plain GETs (front first), before the real answer.
        script: Mutex<Vec<(u16, Option<&'static str>)>>,
        /// Batch part ids answered 401 once.
        auth_once: Mutex<Vec<String>>,
        batches: Mutex<Vec<Vec<String>>>,
        queries: Mutex<Vec<String>>,
        /// Every token is rejected (a revoked grant that still refreshes).
        reject_all: std::sync::atomic::AtomicBool,
    }

    type Shared = Arc<Fake>;

    fn authorized(fake: &Fake, headers: &AxHeaders) -> bool {
        let expected = format!("Bearer {}", fake.valid.lock().expect("lock"));
        !fake.reject_all.load(Ordering::SeqCst)
            && headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                == Some(expected.as_str())
    }

    fn json(status: u16, body: String) -> Response {
        (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
            body,
        )
            .into_response()
    }

    fn error_body(code: u16, reason: &str) -> String {
        format!(
            r#"{{"error":{{"code":{code},"message":"m","errors":[{{"message":"m","domain":"global","reason":"{reason}"}}]}}}}"#
        )
    }

    /// Plays the script, then checks auth. `None` = go on to the real answer.
    fn preamble(fake: &Fake, headers: &AxHeaders) -> Option<Response> {
        let next = {
            let mut script = fake.script.lock().expect("lock");
            (!script.is_empty()).then(|| script.remove(0))
        };
        if let Some((status, retry_after)) = next {
            let reason = match status {
                429 => "rateLimitExceeded",
                404 => "notFound",
                _ => "backendError",
            };
            let mut resp = json(status, error_body(status, reason));
            if let Some(ra) = retry_after {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static(ra));
            }
            return Some(resp);
        }
        if !authorized(fake, headers) {
            return Some(json(401, error_body(401, "authError")));
        }
        None
    }

    async fn token(State(fake): State<Shared>) -> Response {
        let n = fake.token_calls.fetch_add(1, Ordering::SeqCst) + 1;
        let tok = format!("ya29.t{n}");
        *fake.valid.lock().expect("lock") = tok.clone();
        json(
            200,
            format!(r#"{{"access_token":"{tok}","expires_in":3599,"token_type":"Bearer"}}"#),
        )
    }

    async fn profile(State(fake): State<Shared>, headers: AxHeaders) -> Response {
        if let Some(r) = preamble(&fake, &headers) {
            return r;
        }
        json(
            200,
            r#"{"emailAddress":"alice@example.com","messagesTotal":3,"threadsTotal":3,"historyId":"900"}"#
                .into(),
        )
    }

    async fn labels(State(fake): State<Shared>, headers: AxHeaders) -> Response {
        if let Some(r) = preamble(&fake, &headers) {
            return r;
        }
        json(
            200,
            r#"{"labels":[{"id":"INBOX","name":"INBOX","type":"system"}"#.into(),
        )
    }

    async fn messages(
        State(fake): State<Shared>,
        headers: AxHeaders,
        RawQuery(q): RawQuery,
    ) -> Response {
        fake.queries
            .lock()
            .expect("lock")
            .push(q.unwrap_or_default());
        if let Some(r) = preamble(&fake, &headers) {
            return r;
        }
        json(
            200,
            r#"{"messages":[{"id":"a1","threadId":"t"}],"nextPageToken":"n2","resultSizeEstimate":9}"#
                .into(),
        )
    }

    async fn history(
        State(fake): State<Shared>,
        headers: AxHeaders,
        RawQuery(q): RawQuery,
    ) -> Response {
        fake.queries
            .lock()
            .expect("lock")
            .push(q.unwrap_or_default());
        if let Some(r) = preamble(&fake, &headers) {
            return r;
        }
        json(
            200,
            r#"{"history":[{"id":"901","messagesAdded":[{"message":{"id":"a1","labelIds":["INBOX"]}}]}],"historyId":"905"}"#
                .into(),
        )
    }

    fn message_json(id: &str) -> String {
        format!(
            r#"{{"id":"{id}","threadId":"t-{id}","labelIds":["INBOX"],"historyId":"77","internalDate":"1700000000000","raw":"{RAW_B64}"}}"#
        )
    }

    async fn batch(State(fake): State<Shared>, headers: AxHeaders, body: String) -> Response {
        if let Some(r) = preamble(&fake, &headers) {
            return r;
        }
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(ct.starts_with("multipart/mixed; boundary="), "{ct}");
        let mut parts: Vec<(String, String)> = Vec::new();
        let mut cid = String::new();
        for line in body.lines() {
            if let Some(c) = line.strip_prefix("Content-ID: <") {
                cid = c.trim_end_matches('>').to_owned();
            }
            if let Some(rest) = line.strip_prefix("GET ") {
                assert!(rest.starts_with("/gmail/v1/users/me/messages/"), "{rest}");
                assert!(rest.ends_with("?format=raw"), "{rest}");
                let id = rest
                    .trim_start_matches("/gmail/v1/users/me/messages/")
                    .trim_end_matches("?format=raw")
                    .to_owned();
                parts.push((cid.clone(), id));
            }
        }
        fake.batches
            .lock()
            .expect("lock")
            .push(parts.iter().map(|(_, id)| id.clone()).collect());
        let mut out = String::new();
        // Answer in reverse order: the client must match by Content-ID.
        for (cid, id) in parts.iter().rev() {
            let once = {
                let mut list = fake.auth_once.lock().expect("lock");
                let pos = list.iter().position(|x| x == id);
                pos.map(|p| list.remove(p)).is_some()
            };
            let (status, extra, body) = match id.as_str() {
                _ if once => ("401 Unauthorized", "", error_body(401, "authError")),
                "gone" => ("404 Not Found", "", error_body(404, "notFound")),
                "rate" => (
                    "429 Too Many Requests",
                    "Retry-After: 3\r\n",
                    error_body(429, "rateLimitExceeded"),
                ),
                "boom" => (
                    "503 Service Unavailable",
                    "",
                    error_body(503, "backendError"),
                ),
                "cut" => ("200 OK", "", r#"{"id":"cut","raw":"#.to_owned()),
                "other" => ("200 OK", "", message_json("somebody-else")),
                _ => ("200 OK", "", message_json(id)),
            };
            out.push_str(&format!(
                "--batch_fake\r\nContent-Type: application/http\r\nContent-ID: <response-{cid}>\r\n\r\nHTTP/1.1 {status}\r\nContent-Type: application/json; charset=UTF-8\r\n{extra}\r\n{body}\r\n"
            ));
        }
        out.push_str("--batch_fake--\r\n");
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "multipart/mixed; boundary=batch_fake")],
            out,
        )
            .into_response()
    }

    async fn start(fake: Shared) -> String {
        let app = axum::Router::new()
            .route("/token", post(token))
            .route("/gmail/v1/users/me/profile", get(profile))
            .route("/gmail/v1/users/me/labels", get(labels))
            .route("/gmail/v1/users/me/messages", get(messages))
            .route("/gmail/v1/users/me/history", get(history))
            .route("/batch/gmail/v1", post(batch))
            .with_state(fake);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        format!("http://{addr}")
    }

    async fn client_with(batch_size: usize) -> (GmailClient, Shared) {
        let fake: Shared = Arc::new(Fake::default());
        let base = start(Arc::clone(&fake)).await;
        let gate = Arc::new(
            QuotaGate::new(
                "alice",
                QuotaLimits {
                    units_per_minute: 600_000,
                    burst: 10_000,
                },
                10,
                None,
            )
            .expect("gate"),
        );
        let config = GmailClientConfig {
            api_base: base.clone(),
            token_url: format!("{base}/token"),
            batch_size,
            request_timeout: Duration::from_secs(10),
            retry: RetryConfig {
                max_attempts: 3,
                base: Duration::from_millis(5),
                cap: Duration::from_millis(20),
            },
            ..GmailClientConfig::default()
        };
        let credentials = OAuthCredentials {
            client_id: "client".into(),
            client_secret: Secret::new("GOCSPX-s".into()),
            refresh_token: Secret::new("1//0gR".into()),
        };
        let client = GmailClient::connect(config, gate, credentials).expect("client");
        (client, fake)
    }

    async fn client() -> (GmailClient, Shared) {
        client_with(50).await
    }

    #[tokio::test]
    async fn profile_labels_list_and_history_round_trip() {
        let (c, fake) = client().await;
        let p = c.profile().await.expect("profile");
        assert_eq!(p.email, "alice@example.com");
        assert_eq!(p.history_id, HistoryId(900));
        let err = c.labels().await.expect_err("truncated labels JSON");
        assert!(matches!(err, ApiError::Malformed(_)), "{err:?}");

        let query = ListQuery {
            q: Some("after:2026/01/01".into()),
            label_id: Some(LabelId("INBOX".into())),
            include_spam_trash: true,
            page_size: 900,
        };
        let page = c.list_messages(&query, Some("tok 1")).await.expect("list");
        assert_eq!(page.ids, vec![MessageId("a1".into())]);
        assert_eq!(page.next_page_token.as_deref(), Some("n2"));

        let h = c.history(HistoryId(900), None).await.expect("history");
        assert_eq!(h.history_id, HistoryId(905));
        assert_eq!(
            h.changes,
            vec![HistoryChange::MessageAdded {
                id: MessageId("a1".into()),
                label_ids: vec![LabelId("INBOX".into())]
            }]
        );
        let queries = fake.queries.lock().expect("lock").clone();
        assert_eq!(
            queries[0],
            "maxResults=500&q=after%3A2026%2F01%2F01&labelIds=INBOX&includeSpamTrash=true&pageToken=tok+1"
        );
        assert!(
            queries[1].starts_with("startHistoryId=900&maxResults=500&historyTypes=messageAdded")
        );
        for t in ["messageDeleted", "labelAdded", "labelRemoved"] {
            assert!(
                queries[1].contains(&format!("historyTypes={t}")),
                "{}",
                queries[1]
            );
        }
        // 1 + 1 + 5 + 2 units; one refresh for all of them.
        assert_eq!(c.quota_stats().units_spent, 9);
        assert_eq!(fake.token_calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_401_refreshes_once_then_is_retried_as_transient() {
        let (c, fake) = client().await;
        c.profile().await.expect("first token");
        // The server forgets the token: one refresh, then success.
        *fake.valid.lock().expect("lock") = "expired".into();
        c.profile().await.expect("after refresh");
        assert_eq!(fake.token_calls.load(Ordering::SeqCst), 2);
        // Every token rejected although the refresh works: one refresh, then a transient
        // error (retried later); only `invalid_grant` at a refresh disconnects the account.
        fake.reject_all.store(true, Ordering::SeqCst);
        let err = c.profile().await.expect_err("rejected");
        assert!(matches!(err, ApiError::Transient(_)), "{err:?}");
        assert_eq!(fake.token_calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn rate_limits_and_server_errors_are_retried() {
        let (c, fake) = client().await;
        fake.script
            .lock()
            .expect("lock")
            .extend([(429, Some("0.05")), (503, None)]);
        let started = Instant::now();
        c.profile().await.expect("third attempt succeeds");
        assert!(started.elapsed() >= Duration::from_millis(50));
        let stats = c.quota_stats();
        assert_eq!(stats.rate_errors, 1);
        assert_eq!(stats.units_spent, 3, "each attempt is charged");

        // Out of attempts: the classified error reaches the caller.
        fake.script
            .lock()
            .expect("lock")
            .extend([(503, None), (503, None), (503, None)]);
        let err = c.profile().await.expect_err("gives up");
        assert!(matches!(err, ApiError::Transient(_)), "{err:?}");

        fake.script.lock().expect("lock").push((404, None));
        assert_eq!(
            c.history(HistoryId(1), None).await.expect_err("gone"),
            ApiError::HistoryExpired
        );
        fake.script.lock().expect("lock").push((400, None));
        assert!(matches!(
            c.profile().await.expect_err("rejected"),
            ApiError::Rejected(_)
        ));
    }

    #[tokio::test]
    async fn batch_parts_answer_per_id() {
        let (c, fake) = client().await;
        let ids: Vec<MessageId> = ["ok1", "gone", "rate", "boom", "cut", "other", "ok2"]
            .iter()
            .map(|s| MessageId((*s).into()))
            .collect();
        let items = c.get_messages(&ids).await.expect("batch");
        assert_eq!(items.len(), ids.len());
        for ((id, result), asked) in items.iter().zip(&ids) {
            assert_eq!(id, asked, "results keep the request order");
            match id.0.as_str() {
                "ok1" | "ok2" => {
                    let m = result.as_ref().expect("fetched");
                    assert_eq!(m.id, *id);
                    assert_eq!(m.history_id, HistoryId(77));
                    assert!(m.raw.starts_with(b"From: b@example.com"));
                    assert_eq!(m.headers.subject.as_deref(), Some("Hi"));
                }
                "gone" => assert_eq!(result, &Err(ApiError::NotFound)),
                "rate" => assert_eq!(
                    result,
                    &Err(ApiError::RateLimited {
                        retry_after: Some(Duration::from_secs(3))
                    })
                ),
                "boom" => assert!(matches!(result, Err(ApiError::Transient(_)))),
                _ => assert!(matches!(result, Err(ApiError::Malformed(_))), "{result:?}"),
            }
        }
        let stats = c.quota_stats();
        assert_eq!(stats.units_spent, 7 * 20);
        assert_eq!(stats.rate_errors, 1);
        assert!(
            c.gate().paused_until().is_some(),
            "a 429 part pauses the account"
        );
        assert_eq!(fake.batches.lock().expect("lock").len(), 1);
    }

    #[tokio::test]
    async fn batches_are_chunked_and_401_parts_resent_after_refresh() {
        let (c, fake) = client_with(2).await;
        c.profile().await.expect("token");
        fake.auth_once
            .lock()
            .expect("lock")
            .extend(["m2".to_owned(), "m5".to_owned()]);
        let ids: Vec<MessageId> = (1..=5).map(|i| MessageId(format!("m{i}"))).collect();
        let items = c.get_messages(&ids).await.expect("batches");
        assert!(items.iter().all(|(_, r)| r.is_ok()), "{items:?}");
        let batches = fake.batches.lock().expect("lock").clone();
        assert_eq!(
            batches,
            vec![
                vec!["m1".to_owned(), "m2".to_owned()],
                vec!["m2".to_owned()],
                vec!["m3".to_owned(), "m4".to_owned()],
                vec!["m5".to_owned()],
                vec!["m5".to_owned()],
            ]
        );
        // One refresh per batch that had 401 parts, plus the first token.
        assert_eq!(fake.token_calls.load(Ordering::SeqCst), 3);
    }

    /// Captures every log line of a run with refreshes, rate limits and failures and checks
    /// that no token or secret shows up.
    #[tokio::test]
    async fn logs_never_carry_tokens_or_secrets() {
        #[derive(Clone, Default)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("lock").extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let (c, fake) = client().await;
        c.profile().await.expect("profile");
        *fake.valid.lock().expect("lock") = "expired".into();
        fake.script
            .lock()
            .expect("lock")
            .extend([(429, Some("0.01")), (503, None)]);
        c.profile().await.expect("after retries and a refresh");
        let ids = vec![MessageId("ok".into()), MessageId("rate".into())];
        c.get_messages(&ids).await.expect("batch");
        fake.reject_all.store(true, Ordering::SeqCst);
        let _ = c.profile().await;

        let logs = String::from_utf8_lossy(&sink.0.lock().expect("lock")).into_owned();
        assert!(logs.contains("rate limited"), "{logs}");
        for secret in ["ya29.", "GOCSPX", "1//0gR", "Bearer "] {
            assert!(!logs.contains(secret), "{secret} leaked into logs:\n{logs}");
        }
    }

    #[tokio::test]
    async fn whole_batch_failures_are_retried_then_returned() {
        let (c, fake) = client().await;
        fake.script.lock().expect("lock").push((503, None));
        let ids = vec![MessageId("x".into())];
        let items = c.get_messages(&ids).await.expect("retried");
        assert!(items[0].1.is_ok());
        fake.script
            .lock()
            .expect("lock")
            .extend([(500, None), (500, None), (500, None)]);
        assert!(matches!(
            c.get_messages(&ids).await,
            Err(ApiError::Transient(_))
        ));
    }
}
