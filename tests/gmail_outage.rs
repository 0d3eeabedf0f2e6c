//! Outages leave no holes (issue 14), with the production defaults of attempts (8) and
//! restarts (5 per minute): only the retry delays are shortened so the tests stay short.
//!
//! * A 30-minute outage (Gmail calls answered 503; the emulator's clock jumps 30 minutes
//!   while it lasts) during the full sync (every fetch refused) and during partial sync
//!   (every call refused, then every fetch of the new messages refused): the account shows
//!   `degraded` with the reason, nothing is dead-lettered although far more calls fail than
//!   the attempt budget, and it heals by itself with the mirror equal to the emulator and a
//!   complete feed.
//! * One message malformed on every fetch: dead after its attempts, status
//!   `incomplete (1 dead)` with the rest synced; `ctl dead` lists it; after the emulator is
//!   fixed, `ctl requeue` brings it in and the account is `caught_up`.

use crate::common::emulator::*;
use crate::common::feed_oracle::assert_feed_replays_to_emulator;
use crate::common::*;
use mailsync_emulator::FaultRule;
use serde_json::{Value, json};
use std::time::Duration;

/// Production attempts and restarts, short retry delays.
fn write_config(emu: &Emu, env: &TestEnv) {
    emu.write_production_config(env, "");
}

fn outage_rules() -> Vec<FaultRule> {
    vec![FaultRule {
        method: "gmail.*".into(),
        rate_503: 1.0,
        ..FaultRule::default()
    }]
}

fn injected_503(emu: &Emu) -> u64 {
    emu.counters()
        .faults_by_kind
        .get("503")
        .copied()
        .unwrap_or(0)
}

fn ctl(env: &TestEnv, args: &[&str]) -> (i32, String, String) {
    let config = env.config_path.display().to_string();
    let mut all = vec!["--config", config.as_str(), "ctl"];
    all.extend_from_slice(args);
    run_cli(&all)
}

/// Holds the outage until the daemon has seen far more failures than its attempt budget,
/// checking that it shows `degraded` with the reason and dead-letters nothing; then the
/// emulator's clock jumps 30 minutes and the outage ends.
fn ride_out(emu: &Emu, d: &Daemon, what: &str, refusals: u64) {
    let before = injected_503(emu);
    let degraded = wait_until(Duration::from_secs(60), || {
        let a = d.account(ACCOUNT);
        a["health"] == json!("degraded")
            && a["degraded"].as_str().is_some_and(|r| r.contains("503"))
    });
    assert!(degraded, "{what}: not degraded: {}", d.account(ACCOUNT));
    // 8 attempts per job is the budget. Ingest retries the same batch of 10 (batch_size),
    // so 200 refused parts mean about 20 failed fetches per job: every one of them would be
    // dead if transient failures counted.
    let many = wait_until(Duration::from_secs(120), || {
        injected_503(emu) >= before + refusals
    });
    assert!(many, "{what}: only {} refusals", injected_503(emu) - before);
    let a = d.account(ACCOUNT);
    assert_eq!(a["dead_lettered"], json!(0), "{what}: {a}");
    let reasons = a["health_reasons"].to_string();
    assert!(reasons.contains("provider unavailable"), "{what}: {a}");
}

/// The outage ends after 30 minutes of the emulator's clock.
fn end_outage(emu: &Emu) {
    emu.advance_clock(30 * 60 * 1000);
    emu.clear_faults();
}

fn fetch_outage_rules() -> Vec<FaultRule> {
    vec![FaultRule {
        method: "gmail.users.messages.get".into(),
        rate_503: 1.0,
        ..FaultRule::default()
    }]
}

#[test]
fn a_30_minute_outage_during_full_and_partial_sync_heals_without_holes() {
    let emu = Emu::start(config(41, 300, 50.0));
    let env = TestEnv::new();
    write_config(&emu, &env);
    // The outage starts after the listing: every fetch of the full sync is refused.
    emu.set_faults(3, &fetch_outage_rules());
    let d = env.start();
    ride_out(&emu, &d, "full sync", 200);
    end_outage(&emu);
    assert!(
        wait_caught_up(&d, Duration::from_secs(120)),
        "full sync did not heal: {}",
        d.account(ACCOUNT)
    );
    let a = d.account(ACCOUNT);
    assert_eq!(a["dead_lettered"], json!(0), "{a}");
    assert!(a.get("degraded").is_none_or(Value::is_null), "{a}");

    // Partial sync: changes happen upstream during a total outage.
    emu.set_faults(4, &outage_rules());
    let mut changed = Vec::new();
    for _ in 0..5 {
        changed.push(emu.deliver());
    }
    let ids: Vec<String> = emu
        .snapshot()
        .messages
        .iter()
        .take(3)
        .map(|m| m.id.clone())
        .collect();
    emu.change_labels(&ids[0], &["STARRED"], &["INBOX"]);
    emu.delete(&ids[1]);
    let _ = d.try_request(&json!({"v":1,"cmd":"sync-now","account":ACCOUNT}));
    // Nothing answers (history rounds wait), then history answers but fetches of the new
    // messages are refused, far beyond their attempt budget.
    ride_out(&emu, &d, "partial sync, total outage", 15);
    emu.set_faults(5, &fetch_outage_rules());
    ride_out(&emu, &d, "partial sync, fetches refused", 150);
    end_outage(&emu);
    assert!(
        wait_converged(&d, &emu, Duration::from_secs(120)),
        "partial sync did not heal: {}",
        d.account(ACCOUNT)
    );
    let a = d.account(ACCOUNT);
    assert_eq!(a["dead_lettered"], json!(0), "{a}");
    assert_feed_replays_to_emulator(&d, &emu);
    d.stop();
    assert_mirror_equals(&env.data_dir, &emu);
    let truth = truth(&emu.snapshot());
    assert_feed_complete(&feed_summary(&env.data_dir), &truth);
}

#[test]
fn a_message_malformed_on_every_fetch_is_dead_and_requeued_after_the_fix() {
    let emu = Emu::start(config(42, 60, 50.0));
    let bad = emu.snapshot().messages[7].id.clone();
    emu.corrupt(&bad, true);
    let env = TestEnv::new();
    write_config(&emu, &env);
    let d = env.start();
    let incomplete = wait_until(Duration::from_secs(120), || {
        d.account(ACCOUNT)["phase"] == json!("incomplete (1 dead)")
    });
    assert!(incomplete, "{}", d.account(ACCOUNT));
    let a = d.account(ACCOUNT);
    assert_eq!(a["dead_lettered"], json!(1), "{a}");
    assert_eq!(
        a["missing"],
        json!(1),
        "the dead item is still missing: {a}"
    );

    // `ctl dead` names it with its attempts and error; the JSON form carries the job id.
    let (code, out, err) = ctl(&env, &["dead", ACCOUNT]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&bad) && out.contains("base64"), "{out}");
    let (code, out, err) = ctl(&env, &["--json", "dead", ACCOUNT]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(out.trim()).expect("json");
    let job = &v["dead"][0];
    assert_eq!(job["attempts"], json!(8), "production attempts: {job}");
    let id = job["id"].as_u64().expect("job id").to_string();
    // An unknown job and an unknown account are errors.
    let (code, _, err) = ctl(&env, &["requeue", ACCOUNT, "999999999"]);
    assert_ne!(code, 0, "{err}");
    let (code, _, _) = ctl(&env, &["dead", "nope"]);
    assert_ne!(code, 0);

    // Fixed upstream: requeue it and the sync is complete.
    emu.corrupt(&bad, false);
    let (code, out, err) = ctl(&env, &["requeue", ACCOUNT, &id]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        wait_caught_up(&d, Duration::from_secs(60)),
        "{}",
        d.account(ACCOUNT)
    );
    let (_, out, _) = ctl(&env, &["dead", ACCOUNT]);
    assert!(out.contains("no dead-lettered jobs"), "{out}");
    assert_feed_replays_to_emulator(&d, &emu);
    d.stop();
    assert_mirror_equals(&env.data_dir, &emu);
}

#[test]
fn consumers_are_listed_unregistered_and_acks_are_explicit_and_checked() {
    let emu = Emu::start(config(43, 20, 50.0));
    let env = TestEnv::new();
    write_config(&emu, &env);
    let d = env.start();
    assert!(wait_caught_up(&d, Duration::from_secs(60)));
    // Reading from N registers and acknowledges nothing.
    let (code, out, err) = ctl(&env, &["events", "--consumer", "peek", "--from", "5"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().count() > 3, "{out}");
    let (_, out, _) = ctl(&env, &["--json", "consumers"]);
    let v: Value = serde_json::from_str(out.trim()).expect("json");
    assert!(
        v["consumers"].as_array().is_some_and(|l| l.is_empty()),
        "{v}"
    );
    // Acknowledging beyond the newest event is an error; a real ack registers the consumer.
    let (code, _, err) = ctl(&env, &["ack", "--consumer", "peek", "999999"]);
    assert_ne!(code, 0);
    assert!(err.contains("newest event"), "{err}");
    let (code, _, err) = ctl(&env, &["ack", "--consumer", "peek", "3"]);
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = ctl(&env, &["consumers"]);
    assert!(out.contains("peek") && out.contains("LAG"), "{out}");
    let (_, out, _) = ctl(&env, &["--json", "consumers"]);
    let v: Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(v["consumers"][0]["acked"], json!(3), "{v}");
    assert!(v["consumers"][0]["lag"].as_u64().unwrap_or(0) > 0, "{v}");
    let (code, _, err) = ctl(&env, &["unregister", "peek"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, _) = ctl(&env, &["unregister", "peek"]);
    assert_ne!(code, 0, "unregistering twice is an error");
    d.stop();
}
