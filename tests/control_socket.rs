//! The control socket and `mailsync ctl` against the real daemon.

use crate::common::*;
use serde_json::json;
use std::time::Duration;

#[test]
fn status_lists_accounts_and_they_catch_up() {
    let env = TestEnv::new();
    env.write_config(&format!(
        "{}\n{}",
        test_account("alpha", "messages = 30"),
        test_account("beta", "messages = 5")
    ));
    let d = env.start();
    let s = d.status();
    let ids: Vec<String> = s["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .map(|a| a["account"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(ids, vec!["alpha", "beta"]);
    assert!(
        wait_until(Duration::from_secs(30), || {
            d.account("alpha")["phase"] == json!("caught_up")
                && d.account("beta")["phase"] == json!("caught_up")
        }),
        "accounts did not catch up: {}",
        d.status()
    );
    let a = d.account("alpha");
    assert_eq!(a["state"], json!("running"));
    assert_eq!(a["cursor"], json!("historyId 1"));
    assert_eq!(a["missing"], json!(0));
    d.stop();
}

#[test]
fn pause_resume_and_sync_now_act_on_one_account() {
    let env = TestEnv::new();
    env.write_config(&format!(
        "{}\n{}",
        test_account("one", "messages = 3"),
        test_account("two", "messages = 3")
    ));
    let d = env.start();
    let r = d.request(json!({"v":1,"cmd":"pause","account":"one"}));
    assert_eq!(r["ok"], json!(true), "{r}");
    assert!(wait_until(
        Duration::from_secs(5),
        || d.account("one")["state"] == json!("paused")
    ));
    assert_eq!(d.account("two")["state"], json!("running"));

    let r = d.request(json!({"v":1,"cmd":"resume","account":"one"}));
    assert_eq!(r["ok"], json!(true), "{r}");
    assert!(wait_until(
        Duration::from_secs(5),
        || d.account("one")["state"] == json!("running")
    ));

    assert!(wait_until(
        Duration::from_secs(20),
        || d.account("one")["phase"] == json!("caught_up")
    ));
    let before = d.account("one")["last_sync_ms"].as_u64().unwrap_or(0);
    let r = d.request(json!({"v":1,"cmd":"sync-now","account":"one"}));
    assert_eq!(r["ok"], json!(true), "{r}");
    assert!(
        wait_until(Duration::from_secs(10), || {
            d.account("one")["last_sync_ms"].as_u64().unwrap_or(0) > before
        }),
        "sync-now did not run a round"
    );

    let r = d.request(json!({"v":1,"cmd":"pause","account":"nope"}));
    assert_eq!(r["ok"], json!(false));
    assert_eq!(r["error"]["code"], json!("unknown_account"));
    d.stop();
}

#[test]
fn ctl_prints_a_table_and_json() {
    let env = TestEnv::new();
    env.write_config(&test_account("tabled", "messages = 2"));
    let d = env.start();
    let cfg = env.config_path.to_string_lossy().to_string();
    let (code, out, err) = run_cli(&["--config", &cfg, "ctl", "status"]);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(out.contains("tabled"), "table: {out}");
    let (code, out, err) = run_cli(&["--config", &cfg, "ctl", "--json", "status"]);
    assert_eq!(code, 0, "stderr: {err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json output");
    assert!(v.to_string().contains("tabled"));
    d.stop();
}

#[test]
fn check_config_names_file_and_key_and_exits_2() {
    let env = TestEnv::new();
    env.write_config("[[accounts]]\nid = \"x\"\nkind = \"pop3\"\n");
    let cfg = env.config_path.to_string_lossy().to_string();
    let (code, out, err) = run_cli(&["--config", &cfg, "check-config"]);
    assert_eq!(code, 2, "stdout {out} stderr {err}");
    assert!(err.contains("config.toml"), "{err}");
    assert!(err.contains("kind"), "{err}");

    env.write_config(&test_account("fine", ""));
    let (code, out, err) = run_cli(&["--config", &cfg, "check-config"]);
    assert_eq!(code, 0, "stdout {out} stderr {err}");

    // The daemon refuses to start on a bad config with the same exit code.
    env.write_config("bogus_key = 1\n");
    let (code, _, err) = run_cli(&["--config", &cfg, "daemon"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bogus_key"), "{err}");
}
