//! Gmail sync end to end: the real `mailsync` binary against the in-process Google API
//! emulator over loopback HTTP, quota enforcement on with the real cost table (the per-user
//! limit scaled by the same k on both sides). The oracle is the emulator's truth snapshot vs
//! the mirror read from sled after the daemon exited, plus the feed's idempotency keys.
//!
//! Sizes can be raised with `GMAIL_E2E_MESSAGES` (test 1); the defaults keep each test well
//! under a minute in a debug build on two cores.

use crate::common::emulator::*;
use crate::common::feed_oracle::{assert_feed_replays_to_emulator, read_feed};
use crate::common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Starts a daemon on `emu` and waits for the first full sync.
fn synced(emu: &Emu, env: &TestEnv, max_attempts: u32, timeout: Duration) -> Daemon {
    emu.write_config(env, max_attempts);
    let d = env.start();
    let t = Instant::now();
    assert!(
        wait_caught_up(&d, timeout),
        "full sync did not finish in {timeout:?}: {}\nlog tail:\n{}",
        d.account(ACCOUNT),
        tail(&d.log_text(), 40)
    );
    eprintln!(
        "full sync of {} messages: {:.1} s",
        emu.snapshot().messages.len(),
        t.elapsed().as_secs_f64()
    );
    d
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// What a batch of seeded mutations did.
#[derive(Default, Debug)]
struct Applied {
    delivered: Vec<String>,
    deleted: BTreeSet<String>,
    relabeled: BTreeSet<String>,
}

/// Applies `n` seeded random mutations through the control API: deliver, label add/remove,
/// trash, delete. Only messages that exist are touched.
fn mutate(emu: &Emu, rng: &mut StdRng, n: usize) -> Applied {
    let mut ids: Vec<String> = emu.snapshot().messages.into_iter().map(|m| m.id).collect();
    let mut out = Applied::default();
    const USER: [&str; 5] = ["Label_1", "Label_2", "Label_3", "Label_4", "Label_5"];
    for _ in 0..n {
        let x: f64 = rng.random();
        if x < 0.2 || ids.is_empty() {
            let id = emu.deliver();
            ids.push(id.clone());
            out.delivered.push(id);
            continue;
        }
        let id = ids[rng.random_range(0..ids.len())].clone();
        if x < 0.35 {
            emu.delete(&id);
            ids.retain(|i| *i != id);
            out.deleted.insert(id);
        } else if x < 0.45 {
            emu.change_labels(&id, &["TRASH"], &[]);
            out.relabeled.insert(id);
        } else if x < 0.6 {
            emu.change_labels(&id, &["STARRED", "IMPORTANT"], &["UNREAD"]);
            out.relabeled.insert(id);
        } else if x < 0.8 {
            let l = USER[rng.random_range(0..USER.len())];
            emu.change_labels(&id, &[l], &[]);
            out.relabeled.insert(id);
        } else {
            emu.change_labels(&id, &[], &["INBOX", "UNREAD", "Label_1", "Label_2"]);
            out.relabeled.insert(id);
        }
    }
    out
}

fn assert_no_quota_errors(emu: &Emu) {
    let c = emu.counters();
    let injected = c.faults_by_kind.get("429").copied().unwrap_or(0);
    assert_eq!(
        c.status_429.saturating_sub(injected),
        0,
        "quota 429s: {c:?}"
    );
    assert_eq!(c.status_403_rate_limit, 0, "quota 403s: {c:?}");
}

#[test]
fn full_sync_mirror_equals_emulator() {
    let n = env_usize("GMAIL_E2E_MESSAGES", 10_000);
    let emu = Emu::start(config(11, n, quota_scale(n, 10)));
    let env = TestEnv::new();
    let t = Instant::now();
    let d = synced(&emu, &env, 8, Duration::from_secs(240));
    let took = t.elapsed();
    assert_feed_replays_to_emulator(&d, &emu);
    d.stop();
    let truth = truth(&emu.snapshot());
    assert_eq!(truth.len(), n);
    let mirror = mirror_set(&env.data_dir);
    let dd = diff(&mirror, &truth);
    assert!(dd.is_empty(), "mirror != emulator:\n{dd}");
    let feed = feed_summary(&env.data_dir);
    assert_feed_complete(&feed, &truth);
    assert_eq!(feed.added.len(), n, "one message.added per message");
    assert!(feed.deleted.is_empty(), "no deletions expected");
    assert_no_quota_errors(&emu);
    let c = emu.counters();
    eprintln!(
        "full sync {n} messages: {:.1} s ({:.0} msg/s), {} units, 429s {}",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        c.units_total,
        c.status_429
    );
}

#[test]
fn mutations_then_partial_sync_converge() {
    let n = 1_000;
    let emu = Emu::start(config(12, n, quota_scale(n, 5)));
    let env = TestEnv::new();
    let d = synced(&emu, &env, 8, Duration::from_secs(120));
    let mut rng = StdRng::seed_from_u64(12);
    let before = truth(&emu.snapshot());
    let applied = mutate(&emu, &mut rng, 120);
    assert!(!applied.deleted.is_empty() && !applied.relabeled.is_empty());
    assert!(
        wait_converged(&d, &emu, Duration::from_secs(60)),
        "partial sync did not converge: {}",
        d.account(ACCOUNT)
    );
    // A second wave, picked up by the poll alone (no sync-now).
    let middle = truth(&emu.snapshot());
    let applied2 = mutate(&emu, &mut rng, 60);
    let target = format!("historyId {}", emu.snapshot().history_id);
    assert!(
        wait_until(Duration::from_secs(60), || {
            let a = d.account(ACCOUNT);
            a["cursor"] == json!(target) && a["missing"] == json!(0)
        }),
        "poll did not converge: {}",
        d.account(ACCOUNT)
    );
    assert_feed_replays_to_emulator(&d, &emu);
    d.stop();
    assert_mirror_equals(&env.data_dir, &emu);
    let after = truth(&emu.snapshot());
    let feed = feed_summary(&env.data_dir);
    assert_feed_complete(&feed, &after);
    // Every message that was mirrored and then deleted has its one message.deleted.
    let mut deletions = 0;
    for (wave, (from, to)) in [(&before, &middle), (&middle, &after)]
        .into_iter()
        .enumerate()
    {
        for id in from.keys().filter(|id| !to.contains_key(*id)) {
            assert_eq!(
                feed.deleted.get(id),
                Some(&1),
                "wave {wave}: deletion of {id} not in the feed"
            );
            deletions += 1;
        }
        // Every effective label change of a mirrored message has a labels_changed event.
        for (id, (labels, _)) in from {
            if let Some((now, _)) = to.get(id)
                && now != labels
            {
                assert!(
                    feed.label_changed.contains_key(id),
                    "wave {wave}: label change of {id} {labels:?} -> {now:?} has no event"
                );
            }
        }
    }
    assert!(deletions > 0 && feed.label_changes > 0);
    eprintln!(
        "mutations: {} delivered, {} deleted, {} relabeled; feed: {deletions} deletions, {} labels_changed events",
        applied.delivered.len() + applied2.delivered.len(),
        applied.deleted.len() + applied2.deleted.len(),
        applied.relabeled.len() + applied2.relabeled.len(),
        feed.label_changes
    );
}

#[test]
fn history_expiry_triggers_gap_recovery_and_converges() {
    let n = 2_000;
    let emu = Emu::start(config(13, n, quota_scale(n, 8)));
    let env = TestEnv::new();
    let d = synced(&emu, &env, 8, Duration::from_secs(120));
    d.stop();
    let mut rng = StdRng::seed_from_u64(13);
    let applied = mutate(&emu, &mut rng, 80);
    emu.expire_history();
    emu.reset_counters();
    let d = env.start();
    let mut phases: Vec<String> = Vec::new();
    let t = Instant::now();
    let target = format!("historyId {}", emu.snapshot().history_id);
    let ok = wait_until(Duration::from_secs(60), || {
        let a = d.account(ACCOUNT);
        let p = format!(
            "{}/{}",
            a["state"].as_str().unwrap_or(""),
            a["phase"].as_str().unwrap_or("")
        );
        if phases.last() != Some(&p) {
            phases.push(p);
        }
        a["phase"] == json!("caught_up")
            && a["state"] == json!("running")
            && a["missing"] == json!(0)
            && a["cursor"] == json!(target)
    });
    assert!(
        ok,
        "gap recovery did not converge: {}; phases {phases:?}",
        d.account(ACCOUNT)
    );
    let took = t.elapsed();
    let c = emu.counters();
    // Status and the feed say what happened: the account went `resyncing` because the
    // history id expired, and the finished gap recovery reports what it spent.
    let a = d.account(ACCOUNT);
    assert!(
        a["last_gap_recovery_units"].as_u64().is_some_and(|u| u > 0),
        "no finished gap recovery in status: {a}"
    );
    let why: Vec<String> = read_feed(&d)
        .iter()
        .filter(|e| e["kind"] == json!("account.state_changed"))
        .filter(|e| e["change"]["state"] == json!("resyncing"))
        .map(|e| e["change"]["reason"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        why.iter().any(|r| r.contains("history id expired")),
        "no resyncing state for the expired history id in the feed: {why:?}"
    );
    assert_feed_replays_to_emulator(&d, &emu);
    d.stop();
    assert_mirror_equals(&env.data_dir, &emu);
    let truth = truth(&emu.snapshot());
    let feed = feed_summary(&env.data_dir);
    assert_feed_complete(&feed, &truth);
    for id in &applied.deleted {
        if feed.added.contains_key(id) {
            assert_eq!(
                feed.deleted.get(id),
                Some(&1),
                "deletion of {id} not in the feed"
            );
        }
    }
    let pos = feed
        .states
        .iter()
        .rposition(|s| s == "resyncing")
        .unwrap_or_else(|| panic!("no resyncing state in the feed: {:?}", feed.states));
    assert!(
        feed.states[pos + 1..].iter().any(|s| s == "running"),
        "did not go back to running: {:?}",
        feed.states
    );
    let full = n as u64 * 20;
    eprintln!(
        "gap recovery: {:.1} s, {} units ({:.2} % of a full re-fetch of {full}); by method {:?}; phases {phases:?}",
        took.as_secs_f64(),
        c.units_total,
        c.units_total as f64 * 100.0 / full as f64,
        c.units
    );
    assert!(
        c.units_total * 20 < full,
        "gap recovery spent {} units, not < 5 % of {full}",
        c.units_total
    );
}

#[test]
fn expired_access_token_mid_sync_recovers() {
    let n = 1_500;
    let mut cfg = config(14, n, quota_scale(n, 8));
    cfg.access_token_ttl = Duration::from_secs(2);
    let emu = Emu::start(cfg);
    let env = TestEnv::new();
    emu.write_config(&env, 8);
    let d = env.start();
    // Besides the 2 s lifetime (which the client refreshes ahead of), jump the emulator's clock
    // an hour twice during the sync: every token the client holds is suddenly expired.
    let mut jumps = 0;
    let ok = wait_until(Duration::from_secs(120), || {
        let a = d.account(ACCOUNT);
        let done = a["progress"]["done"].as_u64().unwrap_or(0);
        if jumps < 2 && done > (jumps + 1) * n as u64 / 4 {
            emu.advance_clock(3_600_000);
            jumps += 1;
        }
        a["phase"] == json!("caught_up") && a["missing"] == json!(0)
    });
    assert!(ok, "sync did not finish: {}", d.account(ACCOUNT));
    let a = d.account(ACCOUNT);
    assert_eq!(a["state"], json!("running"), "{a}");
    assert_feed_replays_to_emulator(&d, &emu);
    d.stop();
    assert_mirror_equals(&env.data_dir, &emu);
    let c = emu.counters();
    eprintln!("401s answered: {}, clock jumps {jumps}", c.status_401);
    assert!(c.status_401 > 0, "no 401 was answered: {c:?}");
    let feed = feed_summary(&env.data_dir);
    assert!(
        !feed
            .states
            .iter()
            .any(|s| s == "disconnected" || s == "failed"),
        "{:?}",
        feed.states
    );
    assert_feed_complete(&feed, &truth(&emu.snapshot()));
}

#[test]
fn revoked_refresh_token_marks_account_disconnected() {
    let n = 300;
    let emu = Emu::start(config(15, n, quota_scale(n, 3)));
    let env = TestEnv::new();
    let d = synced(&emu, &env, 8, Duration::from_secs(60));
    let revoked = emu.revoke_all_tokens();
    assert!(revoked["revoked"].as_u64().unwrap_or(0) > 0, "{revoked}");
    assert!(
        wait_until(Duration::from_secs(20), || d.account(ACCOUNT)["state"]
            == json!("disconnected")),
        "not disconnected: {}",
        d.account(ACCOUNT)
    );
    let a = d.account(ACCOUNT);
    let err = a["last_error"].as_str().unwrap_or_default().to_string();
    assert!(!err.is_empty(), "no last_error: {a}");
    let refresh = std::fs::read_to_string(env.path("refresh_token")).unwrap();
    for secret in [
        refresh.trim(),
        mailsync_emulator::DEFAULT_CLIENT_SECRET,
        "ya29.",
        "1//",
    ] {
        assert!(!err.contains(secret), "last_error leaks a secret: {err}");
    }
    assert!(
        err.contains("invalid_grant") || err.to_lowercase().contains("revoked"),
        "last_error is not clear: {err}"
    );
    let total = |c: &mailsync_emulator::Counters| c.requests.values().sum::<u64>() + c.status_401;
    let before = total(&emu.counters());
    // Nothing to wait for: that no request comes during a fixed interval is the point.
    std::thread::sleep(Duration::from_secs(4));
    let after = total(&emu.counters());
    assert_eq!(before, after, "requests kept coming after disconnect");
    let log = d.log_text();
    assert!(!log.contains(refresh.trim()), "log leaks the refresh token");
    d.stop();
    eprintln!("disconnected with last_error: {err}");
}

#[test]
fn faults_full_and_partial_sync_converge_exactly() {
    let n = 1_500;
    let mut cfg = config(16, n, quota_scale(n, 8));
    cfg.faults = fault_rules(0.02);
    cfg.fault_seed = Some(16);
    let emu = Emu::start(cfg);
    let env = TestEnv::new();
    let d = synced(&emu, &env, 30, Duration::from_secs(180));
    let mut rng = StdRng::seed_from_u64(16);
    mutate(&emu, &mut rng, 100);
    assert!(
        wait_converged(&d, &emu, Duration::from_secs(90)),
        "partial sync under faults did not converge: {}",
        d.account(ACCOUNT)
    );
    let a = d.account(ACCOUNT);
    assert_eq!(a["dead_lettered"], json!(0), "{a}");
    assert_feed_replays_to_emulator(&d, &emu);
    d.stop();
    assert_mirror_equals(&env.data_dir, &emu);
    assert_feed_complete(&feed_summary(&env.data_dir), &truth(&emu.snapshot()));
    let c = emu.counters();
    eprintln!("faults injected: {:?}", c.faults_by_kind);
    assert!(c.faults_injected > 20, "too few faults: {c:?}");
    for kind in ["429", "500", "503", "reset", "malformed"] {
        assert!(
            c.faults_by_kind.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} fault injected: {:?}",
            c.faults_by_kind
        );
    }
}
