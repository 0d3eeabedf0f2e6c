//! Correct in every corner (issue 14): labels first in the feed, and `initial_query`
//! bounding the full sync, `ctl resync` and gap recovery alike.

use crate::common::emulator::*;
use crate::common::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

fn write_config(emu: &Emu, env: &TestEnv, extra: &str) {
    emu.write_production_config(env, extra);
}

/// Every feed event as JSON, read over the socket without registering anything.
fn events(env: &TestEnv) -> Vec<Value> {
    let config = env.config_path.display().to_string();
    let (code, out, err) = run_cli(&[
        "--config",
        &config,
        "ctl",
        "events",
        "--consumer",
        "t",
        "--from",
        "1",
    ]);
    assert_eq!(code, 0, "{err}");
    out.lines()
        .map(|l| serde_json::from_str(l).expect("event json"))
        .collect()
}

#[test]
fn a_new_label_is_announced_before_its_first_use() {
    let emu = Emu::start(config(61, 15, 50.0));
    let env = TestEnv::new();
    write_config(&emu, &env, "");
    let d = env.start();
    assert!(wait_caught_up(&d, Duration::from_secs(60)));
    // Created after the daemon read the label list (it rereads it every 5 minutes only).
    let label = emu.create_label("Projects/Fresh");
    let id = emu.snapshot().messages[0].id.clone();
    emu.change_labels(&id, &[&label], &[]);
    let new = emu.deliver();
    emu.change_labels(&new, &[&label], &[]);
    assert!(wait_converged(&d, &emu, Duration::from_secs(60)));
    let evs = events(&env);
    let first_use = evs
        .iter()
        .position(|e| e["kind"] != json!("label.created") && e.to_string().contains(&label))
        .expect("the label is used in the feed");
    let created = evs
        .iter()
        .position(|e| e["kind"] == json!("label.created") && e.to_string().contains(&label))
        .expect("label.created in the feed");
    assert!(
        created < first_use,
        "label.created at {created}, first use at {first_use}: {:?}",
        &evs[created.min(first_use)..=created.max(first_use)]
    );
    d.stop();
    assert_mirror_equals(&env.data_dir, &emu);
}

#[test]
fn initial_query_bounds_full_sync_resync_and_gap_recovery() {
    const CUTOFF_MS: i64 = 1_769_904_000_000; // 2026-02-01T00:00Z
    let emu = Emu::start(config(62, 80, 50.0));
    let in_window = |emu: &Emu| -> BTreeSet<String> {
        emu.snapshot()
            .messages
            .iter()
            .filter(|m| m.internal_date.parse::<i64>().unwrap_or(0) >= CUTOFF_MS)
            .map(|m| m.id.clone())
            .collect()
    };
    let window = in_window(&emu);
    assert!(!window.is_empty() && window.len() < 80, "{}", window.len());
    let env = TestEnv::new();
    write_config(&emu, &env, "initial_query = \"after:2026/02/01\"\n");
    let d = env.start();
    assert!(wait_caught_up(&d, Duration::from_secs(60)));
    let gets = |emu: &Emu| {
        emu.counters()
            .requests
            .get("gmail.users.messages.get")
            .copied()
            .unwrap_or(0)
    };
    let after_full = gets(&emu);
    // `ctl resync`: a reconcile of the same window, nothing outside it fetched.
    let r = d.request(json!({"v":1,"cmd":"resync","account":ACCOUNT}));
    assert_eq!(r["ok"], json!(true), "{r}");
    assert!(
        wait_caught_up(&d, Duration::from_secs(60)),
        "{}",
        d.account(ACCOUNT)
    );
    assert_eq!(
        gets(&emu),
        after_full,
        "resync fetched messages outside the window"
    );
    // Gap recovery: history expires while a message in the window is deleted and one
    // arrives; the reconcile stays in the window and applies both.
    // (Not the oldest one: a deletion at the window's edge cannot be told from aging out.)
    let gone = window
        .iter()
        .nth(window.len() / 2)
        .expect("a message")
        .clone();
    emu.delete(&gone);
    let arrived = emu.deliver();
    emu.expire_history();
    assert!(
        wait_converged(&d, &emu, Duration::from_secs(60)),
        "{}",
        d.account(ACCOUNT)
    );
    assert_eq!(
        gets(&emu) - after_full,
        1,
        "only the new message is fetched"
    );
    d.stop();
    let mirror: BTreeSet<String> = mirror_set(&env.data_dir).into_keys().collect();
    let mut expected = in_window(&emu);
    assert!(expected.contains(&arrived) && !expected.contains(&gone));
    expected.retain(|id| emu.snapshot().messages.iter().any(|m| &m.id == id));
    assert_eq!(mirror, expected, "mirror = the window of the emulator");
}
