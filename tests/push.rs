//! Gmail push against the real binary, the Gmail emulator in-process (real HTTP on loopback)
//! and, for pull mode, the official Cloud Pub/Sub emulator: a push reaches the feed; forged
//! pushes are refused with nothing enqueued; duplicated and reordered pushes make no duplicate
//! events; dropped pushes are caught by polling while status goes degraded → active; the watch
//! is renewed before it expires; a change whose notification Gmail's one-a-second limit drops
//! arrives with the follow-up look after the pushed round; a pulled notification whose acknowledgement was lost to a
//! SIGKILL is redelivered and handled once.

use crate::common::*;
use mailsync_emulator::{Emulator, EmulatorConfig, EmulatorHandle, NotificationFaults, QuotaMode};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

const ACCOUNT: &str = "demo@example.com";
const AUD: &str = "https://mailsync.test/push/gmail";
const SERVICE_ACCOUNT: &str = "gmail-api-push@system.gserviceaccount.com";
const TOPIC: &str = "projects/mailsync-emulator/topics/gmail";
const PUBSUB_BIN: &str =
    "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator";
/// A history id far above anything the emulator hands out: a job for it is never covered.
const FAR_FUTURE: &str = "1000000000000";

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The Gmail emulator on its own runtime, plus an HTTP client for its control API.
struct Emu {
    rt: tokio::runtime::Runtime,
    handle: Option<EmulatorHandle>,
    base: String,
    http: reqwest::Client,
}

impl Emu {
    fn start(cfg: EmulatorConfig) -> Emu {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let handle = rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            Emulator::start(cfg, l).await.expect("emulator")
        });
        let base = handle.base_url();
        Emu {
            rt,
            handle: Some(handle),
            base,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
        }
    }

    fn refresh_token(&self) -> String {
        self.handle
            .as_ref()
            .and_then(|h| h.refresh_token(ACCOUNT))
            .expect("refresh token")
    }

    /// A JSON call; returns (status, body).
    fn call(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        self.rt.block_on(async {
            let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
            let r = self
                .http
                .request(m, &url)
                .json(&body)
                .send()
                .await
                .expect("emulator call");
            let status = r.status().as_u16();
            let v = r.json().await.unwrap_or(Value::Null);
            (status, v)
        })
    }

    /// Delivers a generated message; returns its id.
    fn deliver(&self) -> String {
        let (s, v) = self.call(
            "POST",
            &format!("/_emulator/accounts/{ACCOUNT}/messages"),
            json!({}),
        );
        assert_eq!(s, 201, "{v}");
        v["id"].as_str().expect("id").to_string()
    }

    /// Mints a push token with overrides; with `deliver`, pushes it and returns the status.
    fn mint(&self, overrides: Value) -> Value {
        let (s, v) = self.call("POST", "/_emulator/push/mint", overrides);
        assert_eq!(s, 200, "{v}");
        v
    }

    fn set_notification_faults(&self, f: Value) {
        let (s, v) = self.call("PUT", "/_emulator/faults", json!({"notifications": f}));
        assert!(s < 300, "{v}");
    }

    fn clear_faults(&self) {
        let (s, v) = self.call("DELETE", "/_emulator/faults", json!({}));
        assert!(s < 300, "{v}");
    }

    /// A raw POST to the daemon's endpoint.
    fn post_raw(&self, url: &str, token: Option<&str>, body: Vec<u8>) -> u16 {
        self.rt.block_on(async {
            let mut req = self
                .http
                .post(url)
                .header("content-type", "application/json")
                .body(body);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            req.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
        })
    }
}

impl Drop for Emu {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            self.rt.block_on(h.shutdown());
        }
    }
}

fn emu_config(push_port: Option<u16>) -> EmulatorConfig {
    EmulatorConfig {
        messages: 20,
        quota: QuotaMode::Off,
        push_endpoint: push_port.map(|p| format!("http://127.0.0.1:{p}/push/gmail")),
        push_audience: Some(AUD.into()),
        push_min_backoff: Duration::from_millis(200),
        push_max_backoff: Duration::from_secs(2),
        ..EmulatorConfig::default()
    }
}

/// The gmail account block (id `gm`) pointed at the emulator.
fn gmail_account(emu: &Emu, poll_secs: u64, push: bool) -> String {
    format!(
        r#"[[accounts]]
id = "gm"
kind = "gmail"
email = "{ACCOUNT}"
api_base = "{base}"
token_url = "{base}/token"
client_id = "{cid}"
client_secret = {{ value = "{secret}" }}
refresh_token = {{ value = "{refresh}" }}
poll_interval_secs = {poll_secs}
{topic}
"#,
        base = emu.base,
        cid = mailsync_emulator::DEFAULT_CLIENT_ID,
        secret = mailsync_emulator::DEFAULT_CLIENT_SECRET,
        refresh = emu.refresh_token(),
        topic = if push {
            format!("push_topic = \"{TOPIC}\"")
        } else {
            String::new()
        },
    )
}

fn push_section(emu: &Emu, port: u16, silence_secs: u64) -> String {
    format!(
        r#"[push]
port = {port}
audience = "{AUD}"
service_account = "{SERVICE_ACCOUNT}"
jwks_url = "{base}/oauth2/v3/certs"
silence_secs = {silence_secs}
"#,
        base = emu.base
    )
}

/// Every feed event (read through a fresh socket consumer, from the start).
fn feed(env: &TestEnv) -> Vec<Value> {
    let mut s = UnixStream::connect(&env.socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let consumer = format!(
        "push-test-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let req = json!({"v":1,"cmd":"events","consumer":consumer,"from":0,"follow":false});
    s.write_all(format!("{req}\n").as_bytes()).expect("write");
    let mut r = BufReader::new(s);
    let mut out = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if v.get("end").is_some() {
            break;
        }
        if let Some(ev) = v.get("event") {
            out.push(ev.clone());
        }
    }
    out
}

fn added_keys(env: &TestEnv) -> Vec<String> {
    feed(env)
        .iter()
        .filter_map(|e| e["key"].as_str().map(str::to_string))
        .filter(|k| k.starts_with("message.added:"))
        .collect()
}

fn has_added(env: &TestEnv, id: &str) -> bool {
    let key = format!("message.added:gm:{id}:g0");
    added_keys(env).contains(&key)
}

fn caught_up(d: &Daemon) -> bool {
    d.account("gm")["phase"] == json!("caught_up")
}

/// The account's delivery state, whether status carries it as a string or an object.
fn delivery(d: &Daemon) -> String {
    let v = d.account("gm")["delivery"].clone();
    match v {
        Value::String(s) => s,
        Value::Object(o) => o
            .get("delivery")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        _ => String::new(),
    }
}

/// Jobs in the account's HistorySync mailbox (pushes waiting to be covered).
fn history_jobs(d: &Daemon) -> u64 {
    d.account("gm")["queues"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|q| {
            q["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("history_sync"))
        })
        .map(|q| {
            ["pending", "leased", "delayed"]
                .iter()
                .map(|k| q[*k].as_u64().unwrap_or(0))
                .sum::<u64>()
        })
        .sum()
}

/// The expiration of the account's live watch, as status shows it (`push.gm`).
fn watch_expiration(d: &Daemon) -> Option<i64> {
    d.status()["push"]["gm"]["watch_expiration_ms"].as_i64()
}

/// JSON log lines whose message is `msg`.
fn log_lines(d: &Daemon, msg: &str) -> Vec<Value> {
    d.log_text()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == json!(msg))
        .collect()
}

/// Starts emulator + daemon with push; waits until the account caught up and its watch is up.
fn start_push(
    emu_cfg: impl FnOnce(&mut EmulatorConfig),
    poll: u64,
    silence: u64,
) -> (Emu, TestEnv, Daemon, u16) {
    let port = free_port();
    let mut cfg = emu_config(Some(port));
    emu_cfg(&mut cfg);
    let emu = Emu::start(cfg);
    let env = TestEnv::new();
    env.write_config(&format!(
        "{}\n{}",
        push_section(&emu, port, silence),
        gmail_account(&emu, poll, true)
    ));
    let d = env.start();
    assert!(
        wait_until(Duration::from_secs(60), || caught_up(&d)
            && watch_expiration(&d).is_some()),
        "never caught up with a watch:\n{}",
        d.log_text()
    );
    // Gmail (and the emulator) send at most one notification per second per mailbox.
    std::thread::sleep(Duration::from_millis(1_100));
    (emu, env, d, port)
}

#[test]
fn a_push_reaches_the_feed_through_history_sync() {
    // Polling every hour: only the push can bring the new message in time.
    let (emu, env, d, _) = start_push(|_| {}, 3600, 600);
    let id = emu.deliver();
    assert!(
        wait_until(Duration::from_secs(15), || has_added(&env, &id)),
        "pushed message never reached the feed:\n{}",
        d.log_text()
    );
    assert!(!log_lines(&d, "Notification enqueued.").is_empty());
    assert_eq!(delivery(&d), "active (push)", "{}", d.account("gm"));
    let calendar = emu.post_raw(
        &format!("http://127.0.0.1:{}/push/calendar", push_port(&d)),
        None,
        Vec::new(),
    );
    assert_eq!(
        calendar, 400,
        "a Calendar notification without X-Goog headers is refused"
    );
    d.stop();
}

#[test]
fn a_change_whose_notification_gmail_drops_arrives_with_the_follow_up_look_not_the_poll() {
    // Polling every hour. Gmail sends at most one notification a second per user and drops
    // the rest: a change made just after a push is announced by nothing.
    let (emu, env, d, _) = start_push(|_| {}, 3600, 600);
    let dropped = || {
        emu.call("GET", "/_emulator/counters", json!({})).1["notificationsDropped"]
            .as_u64()
            .unwrap_or(0)
    };
    let mut unannounced = None;
    for _ in 0..5 {
        let before = dropped();
        let first = emu.deliver();
        assert!(
            wait_until(Duration::from_secs(15), || has_added(&env, &first)),
            "the pushed message never reached the feed:\n{}",
            d.log_text()
        );
        // After the pushed round, within the second: this one's notification is dropped.
        let second = emu.deliver();
        if dropped() > before {
            unannounced = Some(second);
            break;
        }
        // Too slow to land inside the second (a loaded machine): try again.
        std::thread::sleep(Duration::from_millis(1_100));
    }
    let second = unannounced.expect("no delivery fell inside the notification limit in 5 tries");
    assert!(
        wait_until(Duration::from_secs(15), || has_added(&env, &second)),
        "the unannounced message waited for the hourly poll:\n{}",
        d.log_text()
    );
    d.stop();
}

fn push_port(d: &Daemon) -> u16 {
    log_lines(d, "Push endpoint listening.")
        .first()
        .and_then(|v| v["address"].as_str().map(str::to_string))
        .and_then(|a| a.rsplit(':').next().and_then(|p| p.parse().ok()))
        .expect("push endpoint address in the log")
}

#[test]
fn forged_pushes_are_refused_and_enqueue_nothing() {
    let (emu, _env, d, port) = start_push(|_| {}, 3600, 600);
    let url = format!("http://127.0.0.1:{port}/push/gmail");
    assert!(wait_until(Duration::from_secs(10), || history_jobs(&d) == 0));
    let forged = [
        ("bad signature", json!({"tamper_signature": true}), 401),
        ("unknown kid", json!({"kid": "not-a-google-key"}), 401),
        (
            "wrong aud",
            json!({"aud": "https://evil.example.com/push"}),
            403,
        ),
        ("wrong iss", json!({"iss": "https://evil.example.com"}), 403),
        ("expired", json!({"lifetime_secs": -600}), 401),
        (
            "wrong email",
            json!({"email": "attacker@evil.example.com"}),
            403,
        ),
        ("unverified email", json!({"email_verified": false}), 403),
    ];
    for (what, overrides, want) in forged {
        let mut req = overrides.clone();
        req["deliver"] = json!(true);
        req["endpoint"] = json!(url);
        req["history_id"] = json!(FAR_FUTURE);
        let v = emu.mint(req);
        assert_eq!(v["status"], json!(want), "{what}: {v}");
    }
    // No Authorization header at all.
    let good = emu.mint(json!({"history_id": FAR_FUTURE}));
    let body = serde_json::to_vec(&good["body"]).expect("body");
    assert_eq!(emu.post_raw(&url, None, body.clone()), 401, "no header");
    let token = good["token"].as_str().expect("token").to_string();
    // A valid token with a malformed or oversized body.
    assert_eq!(
        emu.post_raw(
            &url,
            Some(&token),
            b"{\"message\":{\"data\":\"!!\"}}".to_vec()
        ),
        400,
        "malformed body"
    );
    assert_eq!(emu.post_raw(&url, Some(&token), b"garbage".to_vec()), 400);
    let big = format!(
        "{{\"message\":{{\"data\":\"{}\"}}}}",
        "A".repeat(100 * 1024)
    );
    assert_eq!(
        emu.post_raw(&url, Some(&token), big.into_bytes()),
        413,
        "oversized body"
    );
    // The JWKS was fetched, the unknown kid did not make it refetch on every request.
    // That nothing is enqueued is the point: a short fixed interval, nothing to wait for.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(history_jobs(&d), 0, "a forged push was enqueued");
    assert!(
        log_lines(&d, "Notification enqueued.")
            .iter()
            .all(|l| l["history_id"] != json!(1_000_000_000_000u64)),
        "a forged push reached the daemon"
    );
    let refusals = log_lines(&d, "Push refused: authentication failed; nothing enqueued.");
    assert!(refusals.len() >= 8, "refusals logged: {}", refusals.len());
    assert!(
        !d.log_text().contains(&token),
        "a push token was written to the log"
    );

    // Control: the same push with a genuine token is accepted and enqueued, and the issuer
    // may come without https://.
    let v = emu.mint(json!({"deliver": true, "endpoint": url, "history_id": FAR_FUTURE, "iss": "accounts.google.com"}));
    assert_eq!(v["status"], json!(204), "{v}");
    assert!(
        wait_until(Duration::from_secs(5), || history_jobs(&d) == 1),
        "the genuine push was not enqueued: {}",
        d.account("gm")
    );
    d.stop();
}

#[test]
fn duplicated_and_reordered_pushes_make_no_duplicate_events() {
    let (emu, env, d, port) = start_push(|_| {}, 3600, 600);
    let before: BTreeSet<String> = added_keys(&env).into_iter().collect();
    emu.set_notification_faults(json!({"duplicate": 1.0, "reorder": 0.5}));
    let url = format!("http://127.0.0.1:{port}/push/gmail");
    let mut ids = Vec::new();
    let mut history_ids = Vec::new();
    for _ in 0..5 {
        ids.push(emu.deliver());
        let snap = emu
            .call(
                "GET",
                &format!("/_emulator/accounts/{ACCOUNT}/snapshot"),
                json!({}),
            )
            .1;
        history_ids.push(snap["historyId"].as_str().unwrap_or("1").to_string());
        std::thread::sleep(Duration::from_millis(1_100));
    }
    // Replay old notifications, newest first, twice each.
    for h in history_ids.iter().rev().chain(history_ids.iter()) {
        let v = emu.mint(json!({"deliver": true, "endpoint": url, "history_id": h}));
        assert_eq!(v["status"], json!(204), "{v}");
    }
    assert!(
        wait_until(Duration::from_secs(20), || ids
            .iter()
            .all(|id| has_added(&env, id))),
        "not every message arrived:\n{}",
        d.log_text()
    );
    // The replays must add nothing more: a fixed interval for late duplicates is the point.
    std::thread::sleep(Duration::from_secs(2));
    let after = added_keys(&env);
    let new: Vec<&String> = after.iter().filter(|k| !before.contains(*k)).collect();
    assert_eq!(new.len(), ids.len(), "events: {new:?}");
    let unique: BTreeSet<&&String> = new.iter().collect();
    assert_eq!(unique.len(), new.len(), "duplicate events: {new:?}");
    assert!(log_lines(&d, "Notification already covered by the stored cursor.").len() >= 2);
    d.stop();
}

#[test]
fn dropped_pushes_are_caught_by_polling_and_status_recovers() {
    let (emu, env, d, _) = start_push(
        |c| {
            c.notification_faults = NotificationFaults {
                drop: 1.0,
                ..NotificationFaults::default()
            }
        },
        2,
        3,
    );
    let id = emu.deliver();
    assert!(
        wait_until(Duration::from_secs(15), || has_added(&env, &id)),
        "polling did not catch the dropped push:\n{}",
        d.log_text()
    );
    assert!(
        wait_until(Duration::from_secs(10), || delivery(&d)
            == "degraded (polling)"),
        "status never degraded: {}",
        d.account("gm")
    );
    emu.clear_faults();
    // Gmail sends at most one notification per second per mailbox.
    std::thread::sleep(Duration::from_millis(1_100));
    let id = emu.deliver();
    assert!(
        wait_until(Duration::from_secs(10), || delivery(&d) == "active (push)"),
        "status never recovered: {}\nemulator counters: {}",
        d.account("gm"),
        emu.call("GET", "/_emulator/counters", json!({})).1
    );
    assert!(wait_until(Duration::from_secs(15), || has_added(&env, &id)));
    d.stop();
}

#[test]
fn the_watch_is_renewed_before_it_expires() {
    // A 4 s watch is renewed at half its life; pushes must keep flowing well past 4 s.
    let (emu, env, d, _) = start_push(|c| c.watch_ttl = Duration::from_secs(4), 3600, 600);
    // Status shows the live watch's expiration: it moves forward with every renewal.
    let mut exps: Vec<i64> = Vec::new();
    assert!(
        wait_until(Duration::from_secs(60), || {
            if let Some(e) = watch_expiration(&d)
                && exps.last() != Some(&e)
            {
                exps.push(e);
            }
            exps.len() >= 3
        }),
        "the watch was not renewed: expirations {exps:?}; status {}",
        d.status()["push"]
    );
    assert!(exps.windows(2).all(|w| w[0] < w[1]), "{exps:?}");
    let id = emu.deliver();
    assert!(
        wait_until(Duration::from_secs(10), || has_added(&env, &id)),
        "push stopped after the first watch would have expired:\n{}",
        d.log_text()
    );
    d.stop();
}

#[test]
fn the_shared_verification_token_mode_compares_the_token() {
    let port = free_port();
    let emu = Emu::start(emu_config(None));
    let env = TestEnv::new();
    env.write_config(&format!(
        "[push]\nport = {port}\nverification_token = {{ value = \"s3cret-token\" }}\n\n{}",
        gmail_account(&emu, 3600, true)
    ));
    let d = env.start();
    assert!(wait_until(Duration::from_secs(60), || caught_up(&d)));
    let body = serde_json::to_vec(&emu.mint(json!({"history_id": "1"}))["body"]).expect("body");
    let base = format!("http://127.0.0.1:{port}/push/gmail");
    assert_eq!(emu.post_raw(&base, None, body.clone()), 401);
    assert_eq!(
        emu.post_raw(&format!("{base}?token=s3cret-tokex"), None, body.clone()),
        401
    );
    assert_eq!(
        emu.post_raw(&format!("{base}?token=s3cret-token"), None, body),
        204
    );
    assert!(!d.log_text().contains("s3cret"), "the token was logged");
    d.stop();
}

/// The official Pub/Sub emulator as a child process group (stopped on drop).
struct PubSub {
    child: std::process::Child,
    url: String,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl PubSub {
    fn start() -> PubSub {
        assert!(
            std::path::Path::new(PUBSUB_BIN).exists(),
            "the official Pub/Sub emulator is required (Debian package \
             google-cloud-cli-pubsub-emulator): {PUBSUB_BIN} is missing"
        );
        let port = free_port();
        let child = std::process::Command::new(PUBSUB_BIN)
            .arg("--host=127.0.0.1")
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("spawn the Pub/Sub emulator");
        let ps = PubSub {
            child,
            url: format!("http://127.0.0.1:{port}"),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .expect("http client"),
        };
        let ok = wait_until(Duration::from_secs(30), || {
            ps.put("/v1/projects/mailsync-emulator/topics/gmail", json!({}))
                .is_some_and(|s| s < 300 || s == 409)
        });
        assert!(ok, "the Pub/Sub emulator did not come up");
        ps
    }

    fn put(&self, path: &str, body: Value) -> Option<u16> {
        let url = format!("{}{path}", self.url);
        self.rt.block_on(async {
            self.http
                .put(&url)
                .json(&body)
                .send()
                .await
                .ok()
                .map(|r| r.status().as_u16())
        })
    }
}

impl Drop for PubSub {
    fn drop(&mut self) {
        // The launcher script execs the JVM, so the child's pid is the emulator itself.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn pulled_notification_lost_before_ack_is_redelivered_and_handled_once() {
    let ps = PubSub::start();
    let mut cfg = emu_config(None);
    cfg.pubsub_endpoint = Some(ps.url.clone());
    let emu = Emu::start(cfg);
    let sub = "/v1/projects/mailsync-emulator/subscriptions/mailsync-pull";
    let s = ps.put(sub, json!({"topic": TOPIC, "ackDeadlineSeconds": 10}));
    assert!(s.is_some_and(|s| s < 300), "subscription: {s:?}");

    let env = TestEnv::new();
    let config = |hold_ms: u64| {
        format!(
            r#"[push]
silence_secs = 600

[push.pull]
subscription = "projects/mailsync-emulator/subscriptions/mailsync-pull"
endpoint = "{ps}"
ack_deadline_secs = 10
test_hold_before_ack_ms = {hold_ms}

{account}"#,
            ps = ps.url,
            account = gmail_account(&emu, 3600, true)
        )
    };
    env.write_config(&config(3_000));
    let d = env.start();
    assert!(
        wait_until(Duration::from_secs(60), || caught_up(&d)
            && watch_expiration(&d).is_some()),
        "never caught up:\n{}",
        d.log_text()
    );
    // The watch's own notification is pulled, held and acknowledged first.
    assert!(
        wait_until(Duration::from_secs(30), || !log_lines(
            &d,
            "Acknowledged pulled notifications."
        )
        .is_empty()
            || log_lines(
                &d,
                "Holding pulled notifications before acknowledging (test hook)."
            )
            .len()
                >= 2),
        "the watch notification was never pulled:\n{}",
        d.log_text()
    );
    // Gmail (and the emulator) send at most one notification per second per mailbox.
    std::thread::sleep(Duration::from_millis(1_100));
    let holds_before = log_lines(
        &d,
        "Holding pulled notifications before acknowledging (test hook).",
    )
    .len();
    let id = emu.deliver();
    assert!(
        wait_until(Duration::from_secs(20), || log_lines(
            &d,
            "Holding pulled notifications before acknowledging (test hook)."
        )
        .len()
            > holds_before),
        "the new notification was never pulled:\n{}",
        d.log_text()
    );
    // Pulled and recorded, not yet acknowledged: kill -9.
    let pulled: Vec<String> = log_lines(&d, "Pulled a notification.")
        .iter()
        .filter_map(|l| l["message_id"].as_str().map(str::to_string))
        .collect();
    let last = pulled.last().cloned().expect("a pulled message id");
    d.kill9();

    env.write_config(&config(0));
    let d = env.start();
    assert!(
        wait_until(Duration::from_secs(40), || log_lines(
            &d,
            "Pulled a notification."
        )
        .iter()
        .any(|l| l["message_id"] == json!(last))),
        "notification {last} was not redelivered:\n{}",
        d.log_text()
    );
    assert!(
        wait_until(Duration::from_secs(20), || has_added(&env, &id)),
        "the message never reached the feed:\n{}",
        d.log_text()
    );
    // A redelivery handled twice would add a second event late: a fixed interval for it is
    // the point.
    std::thread::sleep(Duration::from_secs(2));
    let key = format!("message.added:gm:{id}:g0");
    let n = added_keys(&env).iter().filter(|k| **k == key).count();
    assert_eq!(n, 1, "handled more than once downstream");
    d.stop();
}
