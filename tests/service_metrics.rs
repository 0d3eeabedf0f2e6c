//! Metrics and health against the real binary: a scrape of `/metrics` during a Gmail sync
//! (emulator over loopback, quotas on) parsed by a Prometheus text-format parser, counters
//! moving between scrapes; `ctl metrics` printing the same families; `ctl health` exiting 0,
//! 1 and 2 in the three situations.

use crate::common::emulator::*;
use crate::common::*;
use serde_json::json;
use std::time::Duration;

fn scrape(url: &str) -> prometheus_parse::Scrape {
    let (code, ctype, body) = http::get(url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(code, 200, "{body}");
    assert!(ctype.contains("openmetrics-text"), "{ctype}");
    parse(&body)
}

fn parse(text: &str) -> prometheus_parse::Scrape {
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("Prometheus text parses")
}

fn number(v: &prometheus_parse::Value) -> Option<f64> {
    match v {
        prometheus_parse::Value::Counter(x)
        | prometheus_parse::Value::Gauge(x)
        | prometheus_parse::Value::Untyped(x) => Some(*x),
        _ => None,
    }
}

/// The value of `metric` with these labels (others ignored).
fn value(s: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .filter(|x| x.metric == metric)
        .find(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .and_then(|x| number(&x.value))
}

fn has(s: &prometheus_parse::Scrape, metric: &str) -> bool {
    s.samples.iter().any(|x| x.metric == metric)
}

fn histogram_count(s: &prometheus_parse::Scrape, metric: &str, account: &str) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == metric && x.labels.get("account") == Some(account))
        .map(|x| match &x.value {
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.iter().map(|b| b.count).fold(0.0, f64::max)
            }
            other => number(other).unwrap_or(0.0),
        })
        .fold(0.0, f64::max)
}

#[test]
fn metrics_scrape_during_a_gmail_sync_parses_and_counters_move() {
    let messages = 600;
    let emu = Emu::start(config(11, messages, quota_scale(messages, 30)));
    let env = TestEnv::new();
    emu.write_config(&env, 8);
    let mut text = std::fs::read_to_string(&env.config_path).expect("config");
    text.push_str("\n[metrics]\nlisten = \"127.0.0.1:0\"\n");
    std::fs::write(&env.config_path, text).expect("config");
    let d = env.start();
    assert!(
        wait_until(Duration::from_secs(10), || d.status()["metrics_url"]
            .is_string()),
        "status never named the metrics URL: {}\n{}",
        d.status(),
        d.log_text()
    );
    let base = d.status()["metrics_url"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let url = format!("{base}metrics");
    let synced = |s: &prometheus_parse::Scrape| {
        value(s, "mailsync_messages_synced_total", &[("account", ACCOUNT)]).unwrap_or(0.0)
    };
    let used = |s: &prometheus_parse::Scrape| {
        value(
            s,
            "mailsync_quota_units_used_total",
            &[("account", ACCOUNT)],
        )
        .unwrap_or(0.0)
    };

    // First scrape once the sync is under way, second a little later: both during the sync.
    assert!(
        wait_until(Duration::from_secs(30), || synced(&scrape(&url)) > 0.0),
        "no messages counted; status {}",
        d.status()
    );
    let first = scrape(&url);
    assert_ne!(
        d.account(ACCOUNT)["phase"],
        json!("caught_up"),
        "the sync finished before the first scrape; raise the message count"
    );
    // The next batches land within seconds (quota pacing decides how many).
    let mut second = scrape(&url);
    assert!(
        wait_until(Duration::from_secs(30), || {
            second = scrape(&url);
            synced(&second) > synced(&first) && used(&second) > used(&first)
        }),
        "counters did not move: messages {} -> {}, quota {} -> {}",
        synced(&first),
        synced(&second),
        used(&first),
        used(&second)
    );
    assert!(
        value(
            &second,
            "mailsync_feed_events_total",
            &[("account", ACCOUNT), ("kind", "message.added")]
        )
        .is_some_and(|v| v > 0.0)
    );
    let limit = value(
        &second,
        "mailsync_quota_units_per_minute",
        &[("account", ACCOUNT)],
    )
    .expect("quota limit");
    let remaining = value(
        &second,
        "mailsync_quota_units_remaining",
        &[("account", ACCOUNT)],
    )
    .expect("quota remaining");
    assert!(limit > 0.0 && remaining <= limit, "{remaining} of {limit}");
    assert!(
        value(
            &second,
            "mailsync_queue_depth",
            &[("account", ACCOUNT), ("state", "pending")]
        )
        .is_some(),
        "no queue depth"
    );
    for family in [
        "mailsync_dead_letters",
        "mailsync_delivery_mode",
        "mailsync_account_health",
        "mailsync_account_restarts_total",
        "mailsync_build_info",
        "mailsync_uptime_seconds",
        "mailsync_runtime_tasks",
    ] {
        assert!(has(&second, family), "missing {family}");
    }
    assert!(histogram_count(&second, "mailsync_api_request_duration_seconds", ACCOUNT) > 0.0);

    // After the full sync: every message counted once, partial-sync rounds timed, the age
    // of the last sync reported.
    assert!(
        wait_caught_up(&d, Duration::from_secs(60)),
        "{}",
        d.status()
    );
    assert!(
        wait_until(Duration::from_secs(20), || {
            let s = scrape(&url);
            histogram_count(&s, "mailsync_sync_round_duration_seconds", ACCOUNT) > 0.0
                && value(
                    &s,
                    "mailsync_last_sync_age_seconds",
                    &[("account", ACCOUNT)],
                )
                .is_some()
        }),
        "no partial-sync round or last-sync age in the metrics"
    );
    let done = scrape(&url);
    assert_eq!(synced(&done), messages as f64);
    assert_eq!(
        value(
            &done,
            "mailsync_account_health",
            &[("account", ACCOUNT), ("health", "active")]
        ),
        Some(1.0)
    );

    // `ctl metrics` prints the same text without HTTP; a consumer that has read but not
    // acknowledged shows its lag.
    let cfg = env.config_path.to_string_lossy().to_string();
    let (code, _, err) = run_cli(&["--config", &cfg, "ctl", "events", "--consumer", "lagging"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run_cli(&["--config", &cfg, "ctl", "metrics"]);
    assert_eq!(code, 0, "{err}");
    let via_ctl = parse(&out);
    assert_eq!(synced(&via_ctl), messages as f64);
    assert!(
        value(
            &via_ctl,
            "mailsync_feed_consumer_lag",
            &[("consumer", "lagging")]
        )
        .is_some_and(|lag| lag >= messages as f64),
        "{out}"
    );
    d.stop();
}

const BROKEN_GMAIL: &str = r#"
[[accounts]]
id = "broken"
kind = "gmail"
email = "broken@example.com"
client_id = "client"
client_secret = { file = "/nonexistent/mailsync-test/client_secret" }
refresh_token = { file = "/nonexistent/mailsync-test/refresh_token" }
"#;

#[test]
fn ctl_health_exits_0_1_and_2() {
    let env = TestEnv::new();
    env.write_config(&test_account("good", "messages = 5"));
    let d = env.start();
    let cfg = env.config_path.to_string_lossy().to_string();
    let health = || run_cli(&["--config", &cfg, "ctl", "health"]);
    assert!(wait_until(
        Duration::from_secs(20),
        || d.account("good")["phase"] == json!("caught_up")
    ));

    let (code, out, err) = health();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ok: 1 account: 1 active"), "{out}");

    let r = d.request(json!({"v":1,"cmd":"pause","account":"good"}));
    assert_eq!(r["ok"], json!(true));
    assert!(wait_until(Duration::from_secs(5), || health().0 == 1));
    let (_, out, _) = health();
    assert!(out.contains("\ngood: degraded (paused)\n"), "{out}");
    let (code, out, _) = run_cli(&["--config", &cfg, "ctl", "health", "--json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(v["state"], json!("degraded"), "{v}");
    let r = d.request(json!({"v":1,"cmd":"resume","account":"good"}));
    assert_eq!(r["ok"], json!(true));
    assert!(wait_until(Duration::from_secs(5), || health().0 == 0));

    // An account that cannot start (missing credential files) fails the check.
    env.write_config(&format!(
        "{}{BROKEN_GMAIL}",
        test_account("good", "messages = 5")
    ));
    d.signal("HUP");
    assert!(wait_until(Duration::from_secs(10), || health().0 == 2));
    let (_, out, _) = health();
    assert!(
        out.starts_with("failed: 2 accounts: 1 active, 1 failed"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("broken: failed: ") && l.contains("/nonexistent/mailsync-test")),
        "{out}"
    );

    // Nobody answering is a failure too, not a crash.
    d.stop();
    let (code, out, _) = health();
    assert_eq!(code, 2, "{out}");
    assert!(out.starts_with("failed: daemon unreachable"), "{out}");
}
