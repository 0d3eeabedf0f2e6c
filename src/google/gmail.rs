//! [`GmailClient`]: the `GmailApi` port over Gmail's REST API with reqwest (rustls).
//!
//! Every call runs through the shared request loop (`google::rest`): the account's
//! [`QuotaGate`] first (its cost in quota units — a batch charges each part — then in-flight
//! slots, one per part up to the cap), a bearer token from [`TokenSource`], one refresh after
//! a 401, rate limits pause the whole account, transient failures retry under the
//! [`RetryPolicy`]; answers are classified by `google::error`. This file holds the client and
//! the single calls; `gmail/history.rs` the paged listings (`messages.list`,
//! `history.list`), `gmail/batch_fetch.rs` the batched `messages.get` with per-part results.

mod batch_fetch;
mod history;
#[cfg(test)]
mod tests;

use super::auth::{BearerToken, OAuthCredentials, TokenSource};
use super::batch::{MAX_PARTS, RECOMMENDED_PARTS};
use super::concurrency::ConcurrencyLimit;
use super::error::{GmailMethod, classify, malformed_json};
use super::form::path_segment;
use super::rest::{self, Answer, RestCaller};
use super::wire::{WireLabelList, WireProfile, WireWatchRequest, WireWatchResponse};
use mailsync_actors::backoff::RetryPolicy;
use mailsync_actors::error::ApiError;
use mailsync_actors::model::{
    BatchItem, HistoryId, HistoryPage, Label, LabelId, ListQuery, MessageId, MessagePage, Profile,
    WatchResponse,
};
use mailsync_actors::ports::{GmailApi, PortFuture};
use mailsync_actors::quota::{CostTable, QuotaGate, QuotaStats};
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;

/// Google's Gmail API root.
pub const GOOGLE_API_BASE: &str = "https://gmail.googleapis.com";

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
    pub retry: RetryPolicy,
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
            retry: rest::default_retry(),
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
    /// Gate, tokens and retry policy of the shared request loop.
    rest: RestCaller,
    /// Parts per `messages.get` batch, learnt from concurrency refusals.
    concurrency: ConcurrencyLimit,
}

impl GmailClient {
    /// A client for the account the gate paces, with `tokens` for its bearer tokens.
    pub fn new(
        config: GmailClientConfig,
        gate: Arc<QuotaGate>,
        tokens: Arc<TokenSource>,
    ) -> Result<Self, ApiError> {
        let http = rest::http_client(config.request_timeout)?;
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
        let base = rest::parse_api_base(&config.api_base)?;
        config.batch_size = config.batch_size.clamp(1, MAX_PARTS);
        config.history_page_size = config.history_page_size.clamp(1, 500);
        config.retry.max_attempts = config.retry.max_attempts.max(1);
        Ok(Self {
            account: gate.account().to_owned(),
            concurrency: ConcurrencyLimit::new(config.batch_size),
            rest: RestCaller {
                account: gate.account().to_owned(),
                gate,
                tokens,
                retry: config.retry.clone(),
            },
            config,
            base,
            http,
        })
    }

    /// The account's quota gate.
    pub fn gate(&self) -> &Arc<QuotaGate> {
        &self.rest.gate
    }

    /// The account's token source.
    pub fn tokens(&self) -> &Arc<TokenSource> {
        &self.rest.tokens
    }

    /// The quota counters (units spent, rate errors seen, ...).
    pub fn quota_stats(&self) -> QuotaStats {
        self.rest.gate.stats()
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
    /// One exchange through the shared request loop, classified the Gmail way.
    async fn execute(
        &self,
        method: GmailMethod,
        charges: &[u32],
        slots: u32,
        build: rest::Build<'_>,
    ) -> Result<(Answer, BearerToken), ApiError> {
        let classify = |a: &Answer| classify(method, a.status, a.retry_after(), &a.body);
        self.rest
            .execute(method.name(), charges, slots, build, &classify)
            .await
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
        Some((self.rest.gate.stats(), self.rest.gate.limits()))
    }

    fn reconnect(&self) -> PortFuture<'_, ()> {
        Box::pin(self.rest.tokens.reconnect())
    }
}
