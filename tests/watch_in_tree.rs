//! The Gmail watch is kept inside the account's tree: its `users.watch` renewals go through
//! the account's own port (metered with it) and are charged to the account's quota gate, and a
//! watch that cannot be registered shows in the account's `ctl status`.

use crate::common::emulator::*;
use crate::common::*;
use serde_json::json;
use std::time::Duration;

/// `users.watch` costs 100 quota units.
const WATCH_UNITS: u64 = 100;

fn push_config(emu: &Emu, env: &TestEnv, topic: &str) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    env.write_config(&format!(
        "[push]\nport = {port}\nverification_token = {{ value = \"watch-test-token\" }}\n\n{}\
         poll_interval_secs = 3600\npush_topic = \"{topic}\"\n",
        emu.account_block(env)
    ));
}

/// One sample of the Prometheus text, e.g. `mailsync_quota_units_used_total{account="gm"}`.
fn sample(text: &str, name: &str, labels: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn metrics(d: &Daemon) -> String {
    let r = d.request(json!({"v":1,"cmd":"metrics"}));
    r["data"]["text"].as_str().unwrap_or_default().to_string()
}

#[test]
fn watch_renewals_are_charged_to_the_accounts_quota_gate() {
    let mut cfg = config(43, 10, 1.0);
    cfg.watch_ttl = Duration::from_secs(4);
    let emu = Emu::start(cfg);
    let env = TestEnv::new();
    push_config(&emu, &env, "projects/mailsync-emulator/topics/gmail");
    let d = env.start();
    assert!(
        wait_until(Duration::from_secs(60), || d.account(ACCOUNT)["phase"]
            == json!("caught_up")),
        "never caught up: {}\n{}",
        d.account(ACCOUNT),
        d.log_text()
    );
    let account = format!("account=\"{ACCOUNT}\"");
    let watch = "method=\"watch\"";
    let watches = |text: &str| {
        sample(
            text,
            "mailsync_api_request_duration_seconds_count",
            &format!("{account},{watch}"),
        )
    };
    let units = |text: &str| sample(text, "mailsync_quota_units_used_total", &account);
    // Caught up and polling hourly: from here on the watch renewals (every ~2 s) are the
    // account's only calls.
    let first = metrics(&d);
    let before = emu
        .counters()
        .requests
        .get("gmail.users.watch")
        .copied()
        .unwrap_or(0);
    assert!(
        wait_until(Duration::from_secs(60), || watches(&metrics(&d))
            >= watches(&first) + 3),
        "no renewals through the account's port:\n{}",
        metrics(&d)
    );
    let last = metrics(&d);
    let after = emu
        .counters()
        .requests
        .get("gmail.users.watch")
        .copied()
        .unwrap_or(0);
    let renewed = watches(&last) - watches(&first);
    assert!(
        after - before >= renewed,
        "the emulator saw fewer watches than the port"
    );
    let charged = units(&last) - units(&first);
    // The gate charges before the call and the meter counts after it: one call may be in
    // between at a scrape.
    assert!(
        charged >= renewed * WATCH_UNITS && charged <= (renewed + 1) * WATCH_UNITS,
        "{renewed} renewals, {charged} units charged to the account's gate"
    );
    assert!(
        d.account(ACCOUNT)["degraded"].is_null(),
        "{}",
        d.account(ACCOUNT)
    );
    d.stop();
}

#[test]
fn a_watch_that_cannot_be_registered_shows_in_the_account_status() {
    let emu = Emu::start(config(44, 5, 1.0));
    let env = TestEnv::new();
    // A well-formed topic of another project: Gmail answers 400 to every users.watch.
    push_config(&emu, &env, "projects/someone-else/topics/gmail");
    let d = env.start();
    assert!(
        wait_until(Duration::from_secs(60), || {
            let a = d.account(ACCOUNT);
            a["degraded"]
                .as_str()
                .is_some_and(|r| r.starts_with("watch:"))
                && a["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("watch"))
        }),
        "the watch failure is not in the status: {}\n{}",
        d.account(ACCOUNT),
        d.log_text()
    );
    let cfg = env.config_path.to_string_lossy().to_string();
    let (code, out, err) = run_cli(&["--config", &cfg, "ctl", "status", ACCOUNT]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("watch"), "{out}");
    // Sync itself is unaffected: polling covers the account.
    assert!(
        wait_until(Duration::from_secs(60), || d.account(ACCOUNT)["phase"]
            == json!("caught_up")),
        "{}",
        d.account(ACCOUNT)
    );
    d.stop();
}
