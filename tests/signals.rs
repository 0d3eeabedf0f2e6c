//! Signals: SIGTERM exits cleanly, SIGHUP reloads, a second daemon is refused.

use crate::common::*;
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn sigterm_exits_zero_within_the_deadline_and_removes_the_socket() {
    let env = TestEnv::new();
    env.write_config(&test_account("t", "messages = 50\njob_delay_ms = 20"));
    let mut d = env.start();
    d.signal("TERM");
    let started = Instant::now();
    let st = d.wait_exit(Duration::from_secs(15));
    assert!(
        st.is_some_and(|s| s.success()),
        "exit {st:?}: {}",
        d.log_text()
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!env.socket.exists(), "socket left behind");
}

#[test]
fn sighup_adds_and_removes_accounts_and_rejects_a_bad_config() {
    let env = TestEnv::new();
    env.write_config(&test_account("first", "messages = 3"));
    let d = env.start();
    env.write_config(&test_account("second", "messages = 3"));
    d.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(10), || {
            let s = d.status();
            let ids: Vec<_> = s["accounts"]
                .as_array()
                .map(|a| a.iter().map(|x| x["account"].clone()).collect())
                .unwrap_or_default();
            ids == vec![json!("second")]
        }),
        "reload did not swap accounts: {}",
        d.status()
    );
    std::fs::write(&env.config_path, "this is = = not toml").expect("write");
    d.signal("HUP");
    assert!(wait_until(Duration::from_secs(10), || d
        .log_text()
        .contains("Reload rejected")));
    assert_eq!(d.account("second")["account"], json!("second"));
    d.stop();
}

#[test]
fn a_second_daemon_on_the_same_socket_exits_with_a_clear_error() {
    let env = TestEnv::new();
    env.write_config(&test_account("solo", "messages = 1"));
    let d = env.start();
    let cfg = env.config_path.to_string_lossy().to_string();
    let (code, _, err) = run_cli(&["--config", &cfg, "daemon"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("already") || err.contains("another mailsync"),
        "unclear error: {err}"
    );
    assert!(d.try_request(&json!({"v":1,"cmd":"status"})).is_ok());
    d.stop();
}

#[test]
fn a_stale_socket_from_a_killed_daemon_is_replaced() {
    let env = TestEnv::new();
    env.write_config(&test_account("phoenix", "messages = 1"));
    let d = env.start();
    d.kill9();
    assert!(env.socket.exists());
    let d = env.start();
    assert_eq!(d.account("phoenix")["account"], json!("phoenix"));
    d.stop();
}
