//! Child failures: restarts with growing delays, the restart budget, isolation of accounts.

use crate::common::*;
use serde_json::{Value, json};
use std::time::Duration;

fn restart_delays(log: &str, account: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| {
            v["account"] == json!(account)
                && v["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("restarting after backoff"))
        })
        .filter_map(|v| v["delay_ms"].as_u64())
        .collect()
}

#[test]
fn failing_child_restarts_with_growing_delays_then_account_fails_alone() {
    let env = TestEnv::new();
    env.write_config(&format!(
        "{}\n{}",
        test_account(
            "broken",
            "messages = 5\nfail_child = \"ingest\"\nfail_times = 1000"
        ),
        test_account("healthy", "messages = 20")
    ));
    let d = env.start();
    assert!(
        wait_until(Duration::from_secs(30), || d.account("broken")["state"]
            == json!("failed")),
        "broken never failed: {}",
        d.status()
    );
    let broken = d.account("broken");
    assert!(
        broken["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("injected failure")),
        "{broken}"
    );
    assert_eq!(broken["restarts"], json!(3), "{broken}");
    let delays = restart_delays(&d.log_text(), "broken");
    assert_eq!(delays.len(), 3, "delays {delays:?}");
    assert!(
        delays.windows(2).all(|w| w[0] < w[1]),
        "delays do not grow: {delays:?}"
    );
    assert!(
        wait_until(Duration::from_secs(20), || d.account("healthy")["phase"]
            == json!("caught_up")),
        "healthy account stalled: {}",
        d.status()
    );
    assert_eq!(d.account("healthy")["state"], json!("running"));
    d.stop();
}

#[test]
fn child_that_fails_a_few_times_recovers_and_completes() {
    let env = TestEnv::new();
    let completions = env.path("completions.txt");
    env.write_config(&test_account(
        "flaky",
        &format!(
            "messages = 12\nfail_child = \"backfill\"\nfail_times = 2\ncompletions_file = \"{}\"",
            completions.display()
        ),
    ));
    let d = env.start();
    assert!(
        wait_until(Duration::from_secs(30), || d.account("flaky")["phase"]
            == json!("caught_up")),
        "flaky never caught up: {}",
        d.status()
    );
    let a = d.account("flaky");
    assert_eq!(a["state"], json!("running"));
    assert_eq!(a["restarts"], json!(2), "{a}");
    let text = std::fs::read_to_string(&completions).unwrap_or_default();
    assert_eq!(text.lines().count(), 12);
    d.stop();
}
