//! Batch endpoint and quota conformance: hand-built multipart requests, multipart parsing of
//! the response, per-part 429s inside a 200, Retry-After under a burst.

mod common;

use common::{ACCOUNT, Env, start};
use mailsync_emulator::{EmulatorConfig, QuotaMode, QuotaProfile};
use serde_json::Value;

/// Parses a batch response into (content-id, status, headers, json body) per part.
fn parse_batch(content_type: &str, body: &str) -> Vec<(Option<String>, u16, String, Value)> {
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .expect("boundary")
        .trim_matches('"');
    let mut out = Vec::new();
    for chunk in body.split(&format!("--{boundary}")) {
        let chunk = chunk.trim_start_matches("\r\n");
        if chunk.starts_with("--") || chunk.trim().is_empty() {
            continue;
        }
        let (part_head, http) = chunk.split_once("\r\n\r\n").expect("part headers");
        let cid = part_head
            .lines()
            .find_map(|l| l.strip_prefix("Content-ID: "))
            .map(String::from);
        assert!(part_head.contains("Content-Type: application/http"));
        let (head, json) = http.split_once("\r\n\r\n").expect("inner response");
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .expect("status")
            .parse()
            .expect("code");
        let v = serde_json::from_str(json.trim_end()).unwrap_or(Value::Null);
        out.push((cid, status, head.to_string(), v));
    }
    out
}

fn batch_body(boundary: &str, paths: &[&str]) -> String {
    let mut b = String::new();
    for (i, p) in paths.iter().enumerate() {
        b.push_str(&format!("--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <item{i}>\r\n\r\nGET {p}\r\n\r\n"));
    }
    b.push_str(&format!("--{boundary}--\r\n"));
    b
}

async fn send_batch(env: &Env, url: &str, body: String) -> (u16, String, String) {
    let r = env
        .http
        .post(format!("{}{url}", env.base))
        .bearer_auth(&env.token)
        .header("content-type", "multipart/mixed; boundary=sync_7f3a")
        .body(body)
        .send()
        .await
        .expect("send");
    let s = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (s, ct, r.text().await.unwrap_or_default())
}

#[tokio::test]
async fn batch_runs_parts_independently() {
    let env = start(common::quiet_config(20)).await;
    let snap = env.emu.snapshot(ACCOUNT).expect("snapshot");
    let get = format!(
        "/gmail/v1/users/me/messages/{}?format=minimal",
        snap.messages[0].id
    );
    let body = batch_body(
        "sync_7f3a",
        &[
            "/gmail/v1/users/me/profile",
            &get,
            "/gmail/v1/users/me/messages/00000000000000aa",
            "/calendar/v3/users/me/calendarList",
        ],
    );
    let (s, ct, text) = send_batch(&env, "/batch/gmail/v1", body.clone()).await;
    assert_eq!(s, 200);
    assert!(ct.starts_with("multipart/mixed; boundary=batch_"));
    let parts = parse_batch(&ct, &text);
    assert_eq!(parts.len(), 4);
    assert_eq!(parts[0].0.as_deref(), Some("<response-item0>"));
    assert_eq!(parts[0].1, 200);
    assert_eq!(parts[0].3["emailAddress"], ACCOUNT);
    assert_eq!(parts[1].3["id"], snap.messages[0].id.as_str());
    assert_eq!(parts[2].1, 404);
    assert_eq!(parts[3].1, 400, "all parts must target the Gmail API");
    // `/batch` works too; counters see each part.
    let (s, ct, text) = send_batch(&env, "/batch", body).await;
    assert_eq!(s, 200);
    assert_eq!(parse_batch(&ct, &text).len(), 4);
    let c = env.emu.counters();
    assert_eq!(c.requests.get("gmail.users.getProfile"), Some(&2));
    assert_eq!(c.batch_requests, 2);

    // More than 100 parts → 400; not multipart → 400; full URLs inside parts → 400 part.
    let many: Vec<&str> = vec!["/gmail/v1/users/me/profile"; 101];
    let (s, _, _) = send_batch(&env, "/batch/gmail/v1", batch_body("sync_7f3a", &many)).await;
    assert_eq!(s, 400);
    let hundred: Vec<&str> = vec!["/gmail/v1/users/me/profile"; 100];
    let (s, ct, text) =
        send_batch(&env, "/batch/gmail/v1", batch_body("sync_7f3a", &hundred)).await;
    assert_eq!(s, 200);
    assert_eq!(parse_batch(&ct, &text).len(), 100);
    let r = env
        .http
        .post(format!("{}/batch/gmail/v1", env.base))
        .bearer_auth(&env.token)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    let (_, ct, text) = send_batch(
        &env,
        "/batch/gmail/v1",
        batch_body(
            "sync_7f3a",
            &["https://gmail.googleapis.com/gmail/v1/users/me/profile"],
        ),
    )
    .await;
    assert_eq!(parse_batch(&ct, &text)[0].1, 400);

    // A part can carry its own Authorization that overrides the outer one.
    let body = "--sync_7f3a\r\nContent-Type: application/http\r\nContent-ID: <a>\r\n\r\nGET /gmail/v1/users/me/profile\r\nAuthorization: Bearer nope\r\n\r\n--sync_7f3a--\r\n".to_string();
    let (_, ct, text) = send_batch(&env, "/batch/gmail/v1", body).await;
    assert_eq!(parse_batch(&ct, &text)[0].1, 401);
    env.emu.shutdown().await;
}

#[tokio::test]
async fn quota_429_inside_a_200_batch_with_retry_after() {
    // 2026 profile scaled to 60 units/min: three messages.get (20 each) fit, the fourth not.
    let cfg = EmulatorConfig {
        messages: 10,
        user_rate_scale: 0.01,
        ..EmulatorConfig::default()
    };
    let env = start(cfg).await;
    let snap = env.emu.snapshot(ACCOUNT).expect("snapshot");
    let gets: Vec<String> = snap
        .messages
        .iter()
        .take(4)
        .map(|m| format!("/gmail/v1/users/me/messages/{}?format=minimal", m.id))
        .collect();
    let refs: Vec<&str> = gets.iter().map(String::as_str).collect();
    let (s, ct, text) = send_batch(&env, "/batch/gmail/v1", batch_body("sync_7f3a", &refs)).await;
    assert_eq!(s, 200);
    let parts = parse_batch(&ct, &text);
    assert_eq!(
        parts.iter().map(|p| p.1).collect::<Vec<_>>(),
        vec![200, 200, 200, 429]
    );
    let (_, _, head, err) = &parts[3];
    assert_eq!(err["error"]["errors"][0]["reason"], "userRateLimitExceeded");
    assert_eq!(err["error"]["errors"][0]["domain"], "usageLimits");
    assert_eq!(err["error"]["status"], "RESOURCE_EXHAUSTED");
    let retry: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("Retry-After: "))
        .expect("Retry-After")
        .trim()
        .parse()
        .expect("secs");
    assert!((1..=20).contains(&retry), "{retry}");
    // A direct call is refused too, with the header; getProfile (1 unit) may still fit later.
    let r = env
        .http
        .get(format!(
            "{}/gmail/v1/users/me/messages/{}",
            env.base, snap.messages[0].id
        ))
        .bearer_auth(&env.token)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let c = env.emu.counters();
    assert_eq!(c.units.get("gmail.users.messages.get"), Some(&60));
    assert!(c.status_429 >= 2);
    env.emu.shutdown().await;
}

#[tokio::test]
async fn legacy_profile_costs_and_403_mode() {
    let cfg = EmulatorConfig {
        messages: 10,
        quota_profile: QuotaProfile::Legacy,
        user_rate_scale: 0.004, // 60 units/min
        rate_limit_status: 403,
        ..EmulatorConfig::default()
    };
    let env = start(cfg).await;
    let id = env.emu.snapshot(ACCOUNT).expect("snapshot").messages[0]
        .id
        .clone();
    for _ in 0..12 {
        assert_eq!(
            env.get(&format!("/gmail/v1/users/me/messages/{id}?format=minimal"))
                .await
                .0,
            200
        );
    }
    let (s, e) = env.get(&format!("/gmail/v1/users/me/messages/{id}")).await;
    assert_eq!((s, Env::reason(&e)), (403, "userRateLimitExceeded"));
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("User-rate limit exceeded.  Retry after ")
    );
    env.emu.shutdown().await;
}

#[tokio::test]
async fn concurrency_cap_and_burst() {
    let cfg = EmulatorConfig {
        messages: 5,
        max_concurrent_per_user: 3,
        ..EmulatorConfig::default()
    };
    let env = start(cfg).await;
    // Slow every getProfile down so that a burst overlaps.
    let rules =
        serde_json::json!({"rules": [{"method": "gmail.users.getProfile", "latency_ms": 300}]});
    assert_eq!(
        env.control(reqwest::Method::PUT, "/_emulator/faults", rules)
            .await
            .0,
        200
    );
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let http = env.http.clone();
        let url = format!("{}/gmail/v1/users/me/profile", env.base);
        let tok = env.token.clone();
        tasks.push(tokio::spawn(async move {
            let r = http.get(url).bearer_auth(tok).send().await.expect("send");
            (
                r.status().as_u16(),
                r.headers().get("retry-after").is_some(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }));
    }
    let mut ok = 0;
    let mut limited = 0;
    for t in tasks {
        let (s, retry, v) = t.await.expect("join");
        match s {
            200 => ok += 1,
            429 => {
                limited += 1;
                assert!(retry);
                assert_eq!(
                    v["error"]["message"],
                    "Too many concurrent requests for user."
                );
                assert_eq!(Env::reason(&v), "rateLimitExceeded");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok, 3);
    assert_eq!(limited, 5);
    env.emu.shutdown().await;
}

#[tokio::test]
async fn quota_off_never_refuses() {
    let cfg = EmulatorConfig {
        messages: 5,
        quota: QuotaMode::Off,
        user_rate_scale: 0.0001,
        ..EmulatorConfig::default()
    };
    let env = start(cfg).await;
    for _ in 0..50 {
        assert_eq!(
            env.get("/gmail/v1/users/me/messages?maxResults=1").await.0,
            200
        );
    }
    assert_eq!(
        env.emu.counters().units_total,
        250,
        "costs are still counted"
    );
    env.emu.shutdown().await;
}
