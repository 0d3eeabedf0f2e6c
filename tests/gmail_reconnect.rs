//! Disconnects heal without a restart (issue 14): the same daemon process goes from
//! `disconnected` back to caught up after new consent, catching up from its cursor without
//! re-fetching what it has; a token endpoint that fails for a while shows the account
//! `degraded` with a bounded number of token requests and recovers by itself.

use crate::common::emulator::*;
use crate::common::*;
use mailsync_emulator::FaultRule;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Production attempts and restarts, short retry delays.
fn write_config(emu: &Emu, env: &TestEnv) {
    emu.write_production_config(env, "");
}

/// `mailsync auth gm` with the emulator's consent page as the "browser"; returns its output.
fn consent(env: &TestEnv) -> String {
    let mut child = Command::new(bin())
        .arg("--config")
        .arg(&env.config_path)
        .args(["auth", ACCOUNT, "--no-browser", "--timeout-secs", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn auth");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines.next().expect("auth printed no URL").expect("read");
        if line.starts_with("http") {
            break line;
        }
    };
    let followed = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async { reqwest::get(&url).await.map(|r| r.status().as_u16()) })
    });
    assert!(followed.join().expect("join").is_ok(), "consent failed");
    assert!(
        wait_until(Duration::from_secs(30), || matches!(
            child.try_wait(),
            Ok(Some(_))
        )),
        "auth did not finish"
    );
    let st = child.wait().expect("wait");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(st.success(), "auth failed: {rest:?}");
    rest.join("\n")
}

fn gets(emu: &Emu) -> u64 {
    emu.counters()
        .requests
        .get("gmail.users.messages.get")
        .copied()
        .unwrap_or(0)
}

fn wait_disconnected(d: &Daemon) {
    assert!(
        wait_until(Duration::from_secs(60), || {
            let _ = d.try_request(&json!({"v":1,"cmd":"sync-now","account":ACCOUNT}));
            d.account(ACCOUNT)["state"] == json!("disconnected")
        }),
        "not disconnected: {}",
        d.account(ACCOUNT)
    );
}

#[test]
fn revoked_consent_heals_through_mailsync_auth_without_a_restart() {
    let emu = Emu::start(config(51, 40, 50.0));
    let env = TestEnv::new();
    write_config(&emu, &env);
    let d = env.start();
    let pid = d.pid();
    assert!(wait_caught_up(&d, Duration::from_secs(60)));
    emu.revoke_all_tokens();
    let new: Vec<String> = (0..3).map(|_| emu.deliver()).collect();
    wait_disconnected(&d);
    let a = d.account(ACCOUNT);
    assert!(
        a["last_error"].to_string().contains("invalid_grant")
            || a["last_error"].to_string().contains("revoked"),
        "{a}"
    );
    let before = gets(&emu);
    let said = consent(&env);
    assert!(said.contains("resumed"), "{said}");
    assert!(
        wait_converged(&d, &emu, Duration::from_secs(60)),
        "did not catch up: {}",
        d.account(ACCOUNT)
    );
    assert_eq!(d.pid(), pid, "no restart");
    assert_eq!(d.account(ACCOUNT)["state"], json!("running"));
    // Caught up from the cursor: only the new messages were fetched.
    assert_eq!(gets(&emu) - before, new.len() as u64, "nothing re-fetched");
    d.stop();
    assert_mirror_equals(&env.data_dir, &emu);
}

#[test]
fn testing_mode_refresh_tokens_expire_after_7_days_and_new_consent_heals_without_a_restart() {
    let mut cfg = config(52, 20, 50.0);
    cfg.refresh_token_ttl = Some(Duration::from_secs(7 * 24 * 3600));
    let emu = Emu::start(cfg);
    let env = TestEnv::new();
    write_config(&emu, &env);
    let d = env.start();
    assert!(wait_caught_up(&d, Duration::from_secs(60)));
    // A week later (the access token expired too): the refresh token is dead.
    emu.advance_clock(7 * 24 * 3600 * 1000 + 3_600_000);
    emu.deliver();
    wait_disconnected(&d);
    assert!(
        d.account(ACCOUNT)["last_error"]
            .to_string()
            .contains("expired or revoked"),
        "{}",
        d.account(ACCOUNT)
    );
    // New consent while the daemon runs (auth tells it); a reload afterwards keeps it running.
    let _ = consent(&env);
    let r = d.request(json!({"v":1,"cmd":"reload"}));
    assert_eq!(r["ok"], json!(true), "{r}");
    assert!(
        wait_converged(&d, &emu, Duration::from_secs(60)),
        "{}",
        d.account(ACCOUNT)
    );
    d.stop();
    assert_mirror_equals(&env.data_dir, &emu);
}

#[test]
fn a_failing_token_endpoint_degrades_with_bounded_requests_and_recovers_by_itself() {
    let emu = Emu::start(config(53, 20, 50.0));
    let env = TestEnv::new();
    write_config(&emu, &env);
    let d = env.start();
    assert!(wait_caught_up(&d, Duration::from_secs(60)));
    let token_calls = |emu: &Emu| {
        emu.counters()
            .requests
            .get("oauth2.token")
            .copied()
            .unwrap_or(0)
    };
    emu.set_faults(
        9,
        &[FaultRule {
            method: "oauth2.token".into(),
            rate_503: 0.5,
            rate_malformed: 0.25,
            rate_truncated: 0.25,
            ..FaultRule::default()
        }],
    );
    // The access token expires (emulator clock): every call needs the failing endpoint.
    emu.advance_clock(3_600_000);
    let before = token_calls(&emu);
    emu.deliver();
    assert!(
        wait_until(Duration::from_secs(30), || {
            let _ = d.try_request(&json!({"v":1,"cmd":"sync-now","account":ACCOUNT}));
            d.account(ACCOUNT)["health"] == json!("degraded")
        }),
        "not degraded: {}",
        d.account(ACCOUNT)
    );
    let a = d.account(ACCOUNT);
    assert!(a["degraded"].is_string(), "{a}");
    assert_ne!(a["state"], json!("disconnected"), "{a}");
    // 20 s of failures: a cool-down shared by every child (1 s doubling, jittered) keeps the
    // endpoint from being hammered (about once a second before). The fixed interval is the
    // point: the request count over it is what is measured.
    std::thread::sleep(Duration::from_secs(20));
    let during = token_calls(&emu) - before;
    assert!(during <= 15, "{during} token requests in 20 s");
    emu.clear_faults();
    assert!(
        wait_converged(&d, &emu, Duration::from_secs(90)),
        "did not recover: {}",
        d.account(ACCOUNT)
    );
    let a = d.account(ACCOUNT);
    assert_eq!(a["health"], json!("active"), "{a}");
    d.stop();
    assert_mirror_equals(&env.data_dir, &emu);
}
