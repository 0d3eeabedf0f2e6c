//! [`GmailClient`]: the `GmailApi` port over Gmail's REST API with reqwest (rustls).
//!
//! Every call passes the account's [`QuotaGate`] first (an in-flight slot, then its cost in
//! quota units; a batch charges each part), carries a bearer token from [`TokenSource`], and is
//! classified by `google::error`. Inside the client: a 401 refreshes the token once and
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
};
use mailsync_actors::error::ApiError;
use mailsync_actors::model::{
    BatchItem, FetchedMessage, HistoryId, HistoryPage, Label, ListQuery, MessageId, MessagePage,
    Profile,
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
            let slot = self.gate.enter(slots).await.map_err(quota_failure)?;
            // Every attempt is a request Google counts, so each one is charged.
            for &units in charges {
                self.gate.charge(units).await.map_err(quota_failure)?;
            }
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
                    None => Err(ApiError::Malformed(
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
                    Err(ApiError::Disconnected(
                        "batch part still unauthorized after a refresh".into(),
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
}
