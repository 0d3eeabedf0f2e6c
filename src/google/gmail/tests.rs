//! Unit tests of [`GmailClient`] against a scripted fake Gmail over loopback HTTP.

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
use tokio::time::Instant;

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
        retry: RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(5),
            cap: Duration::from_millis(20),
            ..RetryPolicy::default()
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
    assert!(queries[1].starts_with("startHistoryId=900&maxResults=500&historyTypes=messageAdded"));
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
