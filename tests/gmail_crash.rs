//! kill -9 across a Gmail full sync and partial sync: the real binary against the emulator
//! (quota on, seeded faults on messages.get and history.list, mutations applied while the
//! daemon runs) is SIGKILLed at seeded random moments and restarted each time. At the end the
//! mirror equals the emulator and the feed holds every change once per idempotency key: every
//! message in the emulator has exactly one `message.added`, every mirrored message deleted
//! upstream exactly one `message.deleted`, and no key appears twice.

use crate::common::emulator::*;
use crate::common::feed_oracle::assert_feed_replays_to_emulator;
use crate::common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

const MESSAGES: usize = 1_500;
const KILLS: usize = 24;
const SEED: u64 = 77;

/// One seeded mutation through the control API.
fn mutate_once(emu: &Emu, ids: &mut Vec<String>, rng: &mut StdRng) {
    let x: f64 = rng.random();
    if x < 0.25 || ids.is_empty() {
        ids.push(emu.deliver());
        return;
    }
    let i = rng.random_range(0..ids.len());
    let id = ids[i].clone();
    if x < 0.4 {
        emu.delete(&id);
        ids.swap_remove(i);
    } else if x < 0.5 {
        emu.change_labels(&id, &["TRASH"], &[]);
    } else if x < 0.75 {
        emu.change_labels(&id, &["STARRED", "Label_3"], &["UNREAD"]);
    } else {
        emu.change_labels(&id, &[], &["INBOX", "STARRED"]);
    }
}

#[test]
fn kill_9_during_gmail_full_and_partial_sync_loses_and_duplicates_nothing() {
    let started = Instant::now();
    let mut cfg = config(SEED, MESSAGES, quota_scale(MESSAGES, 12));
    cfg.faults = fault_rules(0.01);
    cfg.fault_seed = Some(SEED);
    let emu = Emu::start(cfg);
    let env = TestEnv::new();
    emu.write_config(&env, 30);
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut ids: Vec<String> = emu.snapshot().messages.into_iter().map(|m| m.id).collect();
    let (mut in_full, mut in_partial) = (0, 0);
    let mut mutations = 0;
    // At least KILLS rounds; on a slow machine the full sync may take most of them, so keep
    // killing (bounded) until the partial sync has had its share too.
    let mut round = 0;
    while round < KILLS || (in_partial < 3 && round < KILLS * 4) {
        round += 1;
        let d = env.start();
        let lifetime = Duration::from_millis(rng.random_range(200..1_800));
        let t = Instant::now();
        while t.elapsed() < lifetime {
            if rng.random_bool(0.5) {
                mutate_once(&emu, &mut ids, &mut rng);
                mutations += 1;
            }
            // Random pacing of the changes within the daemon's random lifetime: the point.
            std::thread::sleep(Duration::from_millis(rng.random_range(20..150)));
        }
        let a = d.account(ACCOUNT);
        let phase = a["phase"].as_str().unwrap_or("").to_string();
        if phase == "caught_up" {
            in_partial += 1;
        } else {
            in_full += 1;
        }
        eprintln!(
            "kill {round} after {} ms in phase {phase} (cursor {})",
            lifetime.as_millis(),
            a["cursor"]
        );
        d.kill9();
    }
    let d = env.start();
    assert!(
        wait_converged(&d, &emu, Duration::from_secs(120)),
        "did not converge after the kills: {}",
        d.account(ACCOUNT)
    );
    let a = d.account(ACCOUNT);
    assert_eq!(a["dead_lettered"], serde_json::json!(0), "{a}");
    assert_feed_replays_to_emulator(&d, &emu);
    d.stop();

    assert_mirror_equals(&env.data_dir, &emu);
    let truth = truth(&emu.snapshot());
    let feed = feed_summary(&env.data_dir);
    assert_feed_complete(&feed, &truth);
    let c = emu.counters();
    eprintln!(
        "{round} kills ({in_full} before caught_up, {in_partial} after), {mutations} mutations, \
         {} messages, {} feed events, {} deletions, faults {:?}, {:.0} s",
        truth.len(),
        feed.events,
        feed.deleted.len(),
        c.faults_by_kind,
        started.elapsed().as_secs_f64()
    );
    assert!(
        in_full >= 3,
        "too few kills during the full sync ({in_full})"
    );
    assert!(
        in_partial >= 3,
        "too few kills during partial sync ({in_partial})"
    );
    assert!(!feed.deleted.is_empty(), "no deletion reached the feed");
}
