//! [`CalendarClient`]: Google Calendar v3 over REST (reqwest, rustls) for the sync engine —
//! `calendarList.list`, `events.list`, `events.watch`, `channels.stop` (calendar-api.md).
//!
//! Pacing: every request (every retry too) passes the account's Calendar [`QuotaGate`]: by
//! default 1 request per second per user ([`DEFAULT_REQUESTS_PER_MINUTE`], burst 1, so no
//! sliding minute ever sees more than the configured rate + 1) and at most
//! [`DEFAULT_MAX_IN_FLIGHT`] requests in flight. A config may raise the rate up to just under
//! Google's 600 requests/min/user. Calendar's quota is separate from Gmail's, so a Google
//! account with both has two gates but one [`TokenSource`].
//!
//! Errors (the shared request loop, `google::rest`): a 401 refreshes the token once and
//! retries; rate limits (403/429 `usageLimits`) pause the account's gate and retry; 5xx and
//! transport failures retry under the [`RetryPolicy`]; after `max_attempts` the classified
//! error goes to the caller. A 410 on a listing is [`ApiError::SyncTokenExpired`] (Google's `fullSyncRequired`
//! and relatives; reference §4 says to key on the status). Everything else follows the
//! generic Google rules in `google::error`.
//!
//! Every events listing sends the same fixed parameters (`showDeleted=true`,
//! `singleEvents=false`, the configured `maxResults`), with or without a sync token, as the
//! reference requires; page requests repeat the sync token.

use super::auth::TokenSource;
use super::calendar_wire::{
    WireCalendarList, WireChannel, WireChannelParams, WireEvents, WireStopRequest, WireWatchRequest,
};
use super::error::{GmailMethod, classify, malformed_json};
use super::form::path_segment;
use super::rest::{self, Answer, RestCaller};
use mailsync_actors::backoff::RetryPolicy;
use mailsync_actors::calendar::port::{CalendarApi, ChannelRequest};
use mailsync_actors::calendar_model::{
    CalendarListPage, ChannelRegistration, EventPage, EventsQuery,
};
use mailsync_actors::error::ApiError;
use mailsync_actors::ports::PortFuture;
use mailsync_actors::quota::{ProjectQuota, QuotaError, QuotaGate, QuotaLimits, QuotaStats};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;

/// Google's API root (Calendar lives under `/calendar/v3`).
pub const CALENDAR_API_BASE: &str = "https://www.googleapis.com";
/// The safe default: one request per second per user.
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 60;
/// Google's per-user Calendar ceiling, requests per minute.
pub const USER_REQUESTS_PER_MINUTE_CEILING: u32 = 600;
/// Google's per-project Calendar ceiling, requests per minute.
pub const PROJECT_REQUESTS_PER_MINUTE_CEILING: u32 = 10_000;
/// At most this many requests in flight per user by default.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 5;
/// Largest `maxResults` of `events.list`.
pub const MAX_EVENTS_PAGE: u32 = 2500;

/// The Calendar methods the client calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CalendarMethod {
    /// `calendarList.list`.
    CalendarList,
    /// `events.list`.
    EventsList,
    /// `events.watch`.
    EventsWatch,
    /// `channels.stop`.
    ChannelsStop,
}

impl CalendarMethod {
    /// The method's name in logs.
    pub fn name(self) -> &'static str {
        match self {
            CalendarMethod::CalendarList => "calendar.calendarList.list",
            CalendarMethod::EventsList => "calendar.events.list",
            CalendarMethod::EventsWatch => "calendar.events.watch",
            CalendarMethod::ChannelsStop => "calendar.channels.stop",
        }
    }

    fn is_listing(self) -> bool {
        matches!(
            self,
            CalendarMethod::CalendarList | CalendarMethod::EventsList
        )
    }
}

/// Classifies a non-2xx Calendar answer.
pub fn classify_calendar(
    method: CalendarMethod,
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> ApiError {
    if status == 410 && method.is_listing() {
        return ApiError::SyncTokenExpired;
    }
    // Google's generic rules (429/403 rate reasons, 401, 404, 5xx, other 4xx) are shared
    // with Gmail; only Gmail's history.list 404 is special there, and this is not it.
    classify(GmailMethod::Labels, status, retry_after, body)
}

/// Everything a [`CalendarClient`] needs besides its gate and tokens.
#[derive(Clone, Debug)]
pub struct CalendarClientConfig {
    /// `https://www.googleapis.com`, or an emulator's `http://127.0.0.1:PORT`.
    pub api_base: String,
    /// Requests per minute per user (default 60 = 1/s; capped below Google's 600).
    pub requests_per_minute: u32,
    /// Requests in flight per user.
    pub max_in_flight: usize,
    /// `maxResults` of `events.list` (1..=2500).
    pub page_size: u32,
    /// Whole-request timeout.
    pub request_timeout: Duration,
    /// Retry policy for rate limits and transient failures.
    pub retry: RetryPolicy,
}

impl Default for CalendarClientConfig {
    fn default() -> Self {
        Self {
            api_base: CALENDAR_API_BASE.to_owned(),
            requests_per_minute: DEFAULT_REQUESTS_PER_MINUTE,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            page_size: MAX_EVENTS_PAGE,
            request_timeout: Duration::from_secs(60),
            retry: rest::default_retry(),
        }
    }
}

impl CalendarClientConfig {
    /// The per-user limits: the configured rate with a burst of one request, capped so that
    /// burst + rate × 60 s stays within Google's 600 per minute.
    pub fn user_limits(&self) -> QuotaLimits {
        QuotaLimits {
            units_per_minute: self
                .requests_per_minute
                .clamp(1, USER_REQUESTS_PER_MINUTE_CEILING - 1),
            burst: 1,
        }
    }

    /// The account's Calendar gate.
    pub fn gate(
        &self,
        account: impl Into<String>,
        project: Option<Arc<ProjectQuota>>,
    ) -> Result<QuotaGate, QuotaError> {
        QuotaGate::new(account, self.user_limits(), self.max_in_flight, project)
    }
}

/// One account's Google Calendar, reached over REST.
#[derive(Debug)]
pub struct CalendarClient {
    config: CalendarClientConfig,
    base: Url,
    http: reqwest::Client,
    /// Gate, tokens and retry policy of the shared request loop.
    rest: RestCaller,
}

impl CalendarClient {
    /// A client for the account `gate` paces.
    pub fn new(
        mut config: CalendarClientConfig,
        gate: Arc<QuotaGate>,
        tokens: Arc<TokenSource>,
    ) -> Result<Self, ApiError> {
        let base = rest::parse_api_base(&config.api_base)?;
        config.page_size = config.page_size.clamp(1, MAX_EVENTS_PAGE);
        config.retry.max_attempts = config.retry.max_attempts.max(1);
        let http = rest::http_client(config.request_timeout)?;
        Ok(Self {
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

    /// The account's Calendar gate.
    pub fn gate(&self) -> &Arc<QuotaGate> {
        &self.rest.gate
    }

    /// The quota counters.
    pub fn quota_stats(&self) -> QuotaStats {
        self.rest.gate.stats()
    }

    /// The configuration in force (after clamping).
    pub fn config(&self) -> &CalendarClientConfig {
        &self.config
    }

    /// `{base path}/calendar/v3/{segments...}`, each segment percent-encoded (`#` included).
    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut path = self.base.path().trim_end_matches('/').to_owned();
        path.push_str("/calendar/v3");
        for s in segments {
            path.push('/');
            path.push_str(&path_segment(s));
        }
        let mut url = self.base.clone();
        url.set_path(&path);
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        url
    }

    /// One exchange through the shared request loop (1 unit, 1 slot); the 2xx answer.
    async fn execute(
        &self,
        method: CalendarMethod,
        build: rest::Build<'_>,
    ) -> Result<Answer, ApiError> {
        let classify = |a: &Answer| classify_calendar(method, a.status, a.retry_after(), &a.body);
        let (answer, _) = self
            .rest
            .execute(method.name(), &[1], 1, build, &classify)
            .await?;
        Ok(answer)
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        method: CalendarMethod,
        url: Url,
    ) -> Result<T, ApiError> {
        let build = || self.http.request(Method::GET, url.clone());
        let answer = self.execute(method, &build).await?;
        serde_json::from_slice(&answer.body)
            .map_err(|e| malformed_json(method.name(), &e, &answer.body))
    }

    /// One page of the user's calendar list (full without a sync token; changes since it
    /// otherwise, removed calendars as `deleted`).
    pub async fn list_calendars(
        &self,
        sync_token: Option<&str>,
        page_token: Option<&str>,
    ) -> Result<CalendarListPage, ApiError> {
        let mut q: Vec<(&str, &str)> = vec![("maxResults", "250"), ("showHidden", "true")];
        if let Some(t) = sync_token {
            q.push(("syncToken", t));
        }
        if let Some(p) = page_token {
            q.push(("pageToken", p));
        }
        let url = self.url(&["users", "me", "calendarList"], &q);
        let wire: WireCalendarList = self.get_json(CalendarMethod::CalendarList, url).await?;
        wire.into_model()
            .map_err(|e| ApiError::Malformed(format!("calendarList.list: {e}")))
    }

    /// One page of a calendar's events: a full listing (`query.sync_token` = `None`) or the
    /// changes since the token. A dead token is [`ApiError::SyncTokenExpired`].
    pub async fn list_events(
        &self,
        calendar_id: &str,
        query: &EventsQuery,
    ) -> Result<EventPage, ApiError> {
        let size = self.config.page_size.to_string();
        let mut q: Vec<(&str, &str)> = vec![
            ("maxResults", &size),
            ("showDeleted", "true"),
            ("singleEvents", "false"),
        ];
        if let Some(t) = &query.sync_token {
            q.push(("syncToken", t));
        }
        if let Some(p) = &query.page_token {
            q.push(("pageToken", p));
        }
        let url = self.url(&["calendars", calendar_id, "events"], &q);
        let wire: WireEvents = self.get_json(CalendarMethod::EventsList, url).await?;
        wire.into_model()
            .map_err(|e| ApiError::Malformed(format!("events.list: {e}")))
    }

    /// Opens a push channel on a calendar's events: notifications go to `address` and carry
    /// `token`; Google may shorten `ttl`.
    pub async fn watch_events(
        &self,
        calendar_id: &str,
        channel_id: &str,
        address: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<ChannelRegistration, ApiError> {
        let body = WireWatchRequest {
            id: channel_id.to_owned(),
            channel_type: "web_hook",
            address: address.to_owned(),
            token: token.to_owned(),
            params: WireChannelParams {
                ttl: ttl.as_secs().max(1).to_string(),
            },
        };
        let url = self.url(&["calendars", calendar_id, "events", "watch"], &[]);
        let build = || self.http.request(Method::POST, url.clone()).json(&body);
        let answer = self.execute(CalendarMethod::EventsWatch, &build).await?;
        let wire: WireChannel = serde_json::from_slice(&answer.body)
            .map_err(|e| malformed_json("calendar.events.watch", &e, &answer.body))?;
        Ok(wire.into_model(token.to_owned()))
    }

    /// Stops a channel. An unknown channel is [`ApiError::NotFound`] (already gone).
    pub async fn stop_channel(&self, channel_id: &str, resource_id: &str) -> Result<(), ApiError> {
        let body = WireStopRequest {
            id: channel_id.to_owned(),
            resource_id: resource_id.to_owned(),
        };
        let url = self.url(&["channels", "stop"], &[]);
        let build = || self.http.request(Method::POST, url.clone()).json(&body);
        self.execute(CalendarMethod::ChannelsStop, &build).await?;
        Ok(())
    }
}

impl CalendarApi for CalendarClient {
    fn list_calendars<'a>(
        &'a self,
        sync_token: Option<&'a str>,
        page_token: Option<&'a str>,
    ) -> PortFuture<'a, CalendarListPage> {
        Box::pin(CalendarClient::list_calendars(self, sync_token, page_token))
    }

    fn list_events<'a>(
        &'a self,
        calendar_id: &'a str,
        query: &'a EventsQuery,
    ) -> PortFuture<'a, EventPage> {
        Box::pin(CalendarClient::list_events(self, calendar_id, query))
    }

    fn watch_events<'a>(
        &'a self,
        calendar_id: &'a str,
        channel: &'a ChannelRequest,
    ) -> PortFuture<'a, ChannelRegistration> {
        Box::pin(CalendarClient::watch_events(
            self,
            calendar_id,
            &channel.channel_id,
            &channel.address,
            &channel.token,
            Duration::from_secs(channel.ttl_secs),
        ))
    }

    fn stop_channel<'a>(&'a self, channel_id: &'a str, resource_id: &'a str) -> PortFuture<'a, ()> {
        Box::pin(CalendarClient::stop_channel(self, channel_id, resource_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_calendar_answers() {
        let gone = br#"{"error":{"code":410,"errors":[{"domain":"calendar","reason":"fullSyncRequired"}]}}"#;
        assert_eq!(
            classify_calendar(CalendarMethod::EventsList, 410, None, gone),
            ApiError::SyncTokenExpired
        );
        assert_eq!(
            classify_calendar(CalendarMethod::CalendarList, 410, None, b""),
            ApiError::SyncTokenExpired,
            "keyed on the status, reason or not"
        );
        let rate = br#"{"error":{"code":403,"errors":[{"domain":"usageLimits","reason":"userRateLimitExceeded"}]}}"#;
        assert!(matches!(
            classify_calendar(CalendarMethod::EventsList, 403, None, rate),
            ApiError::RateLimited { .. }
        ));
        let forbidden = br#"{"error":{"code":403,"errors":[{"domain":"calendar","reason":"forbiddenForNonOrganizer"}]}}"#;
        assert!(matches!(
            classify_calendar(CalendarMethod::EventsList, 403, None, forbidden),
            ApiError::Rejected(_)
        ));
        assert_eq!(
            classify_calendar(CalendarMethod::ChannelsStop, 404, None, b""),
            ApiError::NotFound
        );
        assert!(matches!(
            classify_calendar(CalendarMethod::EventsList, 503, None, b""),
            ApiError::Transient(_)
        ));
    }

    #[test]
    fn default_pacing_is_one_request_per_second() {
        let c = CalendarClientConfig::default();
        assert_eq!(
            c.user_limits(),
            QuotaLimits {
                units_per_minute: 60,
                burst: 1
            }
        );
        let raised = CalendarClientConfig {
            requests_per_minute: 10_000,
            ..c
        };
        assert_eq!(
            raised.user_limits().units_per_minute + raised.user_limits().burst,
            600
        );
    }
}
