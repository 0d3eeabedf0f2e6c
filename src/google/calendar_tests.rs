//! Conformance of [`super::calendar::CalendarClient`] against the real emulator over loopback
//! HTTP: full and incremental listings with every page (empty ones included), 410 as
//! `SyncTokenExpired`, the calendar list's own sync token, rate limits (403 `usageLimits`)
//! retried under the gate, and watch/stop.

use super::auth::{OAuthCredentials, TokenSource};
use super::calendar::{CalendarClient, CalendarClientConfig};
use crate::secret::Secret;
use mailsync_actors::backoff::RetryPolicy;
use mailsync_actors::calendar_model::{
    CalendarEvent, CalendarListPage, EventStatus, EventTime, EventsQuery, PageCursor,
};
use mailsync_actors::error::ApiError;
use mailsync_emulator::{Emulator, EmulatorConfig, EmulatorHandle, QuotaMode};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const ACCOUNT: &str = "demo@example.com";

pub(crate) async fn emulator(config: EmulatorConfig) -> EmulatorHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    Emulator::start(config, listener).await.expect("emulator")
}

pub(crate) fn client(emu: &EmulatorHandle, config: CalendarClientConfig) -> CalendarClient {
    let base = emu.base_url();
    let credentials = OAuthCredentials {
        client_id: mailsync_emulator::DEFAULT_CLIENT_ID.into(),
        client_secret: Secret::new(mailsync_emulator::DEFAULT_CLIENT_SECRET.into()),
        refresh_token: Secret::new(emu.refresh_token(ACCOUNT).expect("refresh token")),
    };
    let tokens = TokenSource::new(ACCOUNT, credentials, format!("{base}/token")).expect("tokens");
    let config = CalendarClientConfig {
        api_base: base,
        retry: RetryPolicy {
            max_attempts: 6,
            base: Duration::from_millis(20),
            cap: Duration::from_millis(200),
            ..RetryPolicy::default()
        },
        ..config
    };
    let gate = config.gate(ACCOUNT, None).expect("gate");
    CalendarClient::new(config, Arc::new(gate), Arc::new(tokens)).expect("client")
}

pub(crate) fn fast() -> CalendarClientConfig {
    CalendarClientConfig {
        requests_per_minute: 599,
        page_size: 7,
        ..CalendarClientConfig::default()
    }
}

/// Every page of a listing: (events, pages, sync token).
pub(crate) async fn all_events(
    c: &CalendarClient,
    cal: &str,
    sync: Option<String>,
) -> Result<(Vec<CalendarEvent>, usize, String), ApiError> {
    let mut query = EventsQuery {
        sync_token: sync,
        page_token: None,
    };
    let (mut out, mut pages) = (Vec::new(), 0);
    loop {
        let page = c.list_events(cal, &query).await?;
        pages += 1;
        out.extend(page.events);
        match page.next {
            PageCursor::NextPage(p) => query.page_token = Some(p),
            PageCursor::SyncToken(t) => return Ok((out, pages, t)),
        }
    }
}

pub(crate) async fn all_calendars(
    c: &CalendarClient,
    sync: Option<&str>,
) -> (Vec<String>, Vec<String>, String) {
    let mut page_token: Option<String> = None;
    let (mut live, mut deleted) = (Vec::new(), Vec::new());
    loop {
        let page: CalendarListPage = c
            .list_calendars(sync, page_token.as_deref())
            .await
            .expect("calendar list");
        for e in page.entries {
            if e.deleted {
                deleted.push(e.id);
            } else {
                live.push(e.id);
            }
        }
        match page.next {
            PageCursor::NextPage(p) => page_token = Some(p),
            PageCursor::SyncToken(t) => return (live, deleted, t),
        }
    }
}

async fn control(
    emu: &EmulatorHandle,
    method: reqwest::Method,
    path: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let r = reqwest::Client::new()
        .request(
            method,
            format!("{}/_emulator/accounts/{ACCOUNT}{path}", emu.base_url()),
        )
        .json(&body)
        .send()
        .await
        .expect("control");
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap_or_default()
}

#[tokio::test]
async fn full_then_incremental_listing_with_empty_pages_and_410() {
    let emu = emulator(EmulatorConfig {
        messages: 1,
        quota: QuotaMode::Off,
        ..EmulatorConfig::default()
    })
    .await;
    let c = client(&emu, fast());
    let (events, pages, token) = all_events(&c, "primary", None).await.expect("full");
    assert_eq!(events.len(), 40);
    assert!(pages >= 6, "paged at 7 per page");
    assert!(
        events
            .iter()
            .any(|e| matches!(e.start, Some(EventTime::Date(_))))
    );
    assert!(events.iter().any(|e| !e.recurrence.is_empty()));

    control(
        &emu,
        reqwest::Method::POST,
        "/calendars/empty-pages",
        json!({"enabled": true}),
    )
    .await;
    let (again, pages2, _) = all_events(&c, "primary", None)
        .await
        .expect("full with empty pages");
    assert_eq!(again.len(), 40, "empty pages are followed");
    assert_eq!(pages2, pages * 2);

    let victim = events[0].id.clone();
    control(
        &emu,
        reqwest::Method::DELETE,
        &format!("/calendars/primary/events/{victim}"),
        json!({}),
    )
    .await;
    let (changed, _, token2) = all_events(&c, "primary", Some(token))
        .await
        .expect("incremental");
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].id, victim);
    assert_eq!(changed[0].status, EventStatus::Cancelled);

    control(
        &emu,
        reqwest::Method::POST,
        "/calendars/primary/invalidate-sync-tokens",
        json!({}),
    )
    .await;
    assert_eq!(
        all_events(&c, "primary", Some(token2)).await.err(),
        Some(ApiError::SyncTokenExpired)
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn zoned_series_and_calendar_list_changes() {
    let emu = emulator(EmulatorConfig {
        messages: 1,
        quota: QuotaMode::Off,
        ..EmulatorConfig::default()
    })
    .await;
    let c = client(&emu, fast());
    let (live, deleted, token) = all_calendars(&c, None).await;
    assert_eq!(live.len(), 2);
    assert!(deleted.is_empty());
    let family = live[1].clone();
    let (events, _, _) = all_events(&c, &family, None)
        .await
        .expect("family (id has @)");
    let master = events
        .iter()
        .find(|e| e.summary.as_deref() == Some("Piano lesson"))
        .expect("series");
    assert!(
        matches!(&master.start, Some(EventTime::DateTime { time_zone: Some(z), .. }) if z == "Europe/Berlin")
    );
    let exceptions: Vec<&CalendarEvent> = events
        .iter()
        .filter(|e| e.series_id() == master.id && e.is_exception())
        .collect();
    assert_eq!(exceptions.len(), 2, "one moved, one cancelled");
    assert!(exceptions.iter().all(|e| e.original_start.is_some()));

    let added = control(
        &emu,
        reqwest::Method::POST,
        "/calendars",
        json!({"summary": "Work"}),
    )
    .await;
    let added = added["id"].as_str().expect("id").to_string();
    control(
        &emu,
        reqwest::Method::DELETE,
        &format!("/calendars/{}", family.replace('@', "%40")),
        json!({}),
    )
    .await;
    let (live, deleted, _) = all_calendars(&c, Some(&token)).await;
    assert_eq!(live, vec![added]);
    assert_eq!(deleted, vec![family]);
    emu.shutdown().await;
}

#[tokio::test]
async fn rate_limits_and_faults_are_waited_out() {
    // A per-user ceiling of 30/min (capacity 30, one more every 2 s) answered with 403
    // usageLimits: the client pauses the gate and retries instead of failing.
    let emu = emulator(EmulatorConfig {
        messages: 1,
        quota: QuotaMode::On,
        calendar_user_requests_per_minute: 30,
        ..EmulatorConfig::default()
    })
    .await;
    let c = client(&emu, fast());
    for _ in 0..33 {
        all_calendars(&c, None).await;
    }
    assert!(c.quota_stats().rate_errors >= 1, "{:?}", c.quota_stats());
    assert!(emu.counters().status_403_rate_limit >= 1);
    emu.shutdown().await;

    // 429s and 503s drawn from a seeded fault rule are retried with backoff.
    let emu = emulator(EmulatorConfig {
        messages: 1,
        quota: QuotaMode::Off,
        faults: vec![mailsync_emulator::FaultRule {
            method: "calendar.events.list".into(),
            rate_429: 0.2,
            rate_503: 0.2,
            ..Default::default()
        }],
        ..EmulatorConfig::default()
    })
    .await;
    let c = client(&emu, fast());
    let (events, _, _) = all_events(&c, "primary", None)
        .await
        .expect("listing through faults");
    assert_eq!(events.len(), 40);
    assert!(emu.counters().faults_injected >= 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn watch_and_stop_channels() {
    let emu = emulator(EmulatorConfig {
        messages: 1,
        quota: QuotaMode::Off,
        ..EmulatorConfig::default()
    })
    .await;
    let c = client(&emu, fast());
    let reg = c
        .watch_events(
            "primary",
            "chan-1",
            "http://127.0.0.1:9/push/calendar",
            "tok-secret",
            Duration::from_secs(3600),
        )
        .await
        .expect("watch");
    assert_eq!(reg.channel_id, "chan-1");
    assert!(!reg.resource_id.is_empty());
    assert_eq!(reg.token, "tok-secret");
    assert!(reg.expiration_ms > 0 && reg.expiration_ms < i64::MAX);
    c.stop_channel(&reg.channel_id, &reg.resource_id)
        .await
        .expect("stop");
    assert_eq!(
        c.stop_channel(&reg.channel_id, &reg.resource_id).await,
        Err(ApiError::NotFound)
    );
    emu.shutdown().await;
}
