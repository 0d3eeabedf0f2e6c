//! IMAP durability: SIGKILL of the daemon at seeded points across the initial and the
//! incremental sync → equal to the server, no message downloaded under two keys, no event
//! twice; a UIDVALIDITY reset → the folder is matched again without downloading a body;
//! IDLE brings a new message to the Maildir within 2 s with polling effectively off.

use crate::common::dovecot::{Caps, Dovecot, ImapView, generate};
use crate::common::{TestEnv, wait_until};
use crate::imap_sync::{PASS, USER, held, server, stored, tail, total, users, wait_equal};
use mailsync_actors::mirror::Change;
use mailsync_actors::store::{Store, decode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

const SEED: u64 = 0x1ab5;

/// Per message key: (added events, deleted events).
fn feed_counts(data_dir: &Path) -> HashMap<String, (u32, u32)> {
    let store = Store::open(data_dir).expect("store");
    let mut out: HashMap<String, (u32, u32)> = HashMap::new();
    let mut after = 0;
    loop {
        let evs = store.feed().read_after(after, 1_000).expect("feed");
        let Some(last) = evs.last() else { break };
        after = last.seq;
        for ev in evs {
            match decode::<Change>(&ev.payload) {
                Ok(Change::MessageAdded { id, .. }) => out.entry(id.0).or_default().0 += 1,
                Ok(Change::MessageDeleted { id }) => out.entry(id.0).or_default().1 += 1,
                _ => {}
            }
        }
    }
    out
}

#[test]
fn sigkill_during_initial_and_incremental_sync_loses_and_duplicates_nothing() {
    let dc = Dovecot::start(Caps::Full, &users());
    dc.seed(USER, "INBOX", &generate(3_000, 11, "inbox"));
    dc.seed(USER, "Sent", &generate(150, 12, "sent"));
    let folders = ["INBOX", "Sent", "Trash"];
    let view = ImapView::new(&dc, USER, PASS);
    let env = TestEnv::new();
    crate::imap_sync::config(&env, &dc, "");
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut initial_kills = 0;
    // Initial sync: kill at seeded moments until it finished (short lifetimes, so even a fast
    // machine sees several kills inside the initial sync).
    for _ in 0..16 {
        let d = env.start();
        std::thread::sleep(Duration::from_millis(rng.random_range(150..800)));
        let done = d.account("mail")["phase"] == serde_json::json!("caught_up");
        d.kill9();
        if done {
            break;
        }
        initial_kills += 1;
    }
    // Incremental: change the server, kill at seeded moments.
    let mut uid = 1u32;
    for round in 0..5 {
        let d = env.start();
        view.run_in(
            "INBOX",
            &[
                format!("UID STORE {}:{} +FLAGS (\\Flagged)", uid, uid + 30),
                format!("UID STORE {}:{} +FLAGS (\\Deleted)", uid + 31, uid + 35),
                format!("UID EXPUNGE {}:{}", uid + 31, uid + 35),
                format!("UID MOVE {}:{} Sent", uid + 36, uid + 40),
            ],
        );
        for m in generate(3, 100 + round, "new") {
            view.append("INBOX", &m.raw);
        }
        uid += 41;
        std::thread::sleep(Duration::from_millis(rng.random_range(100..1_500)));
        d.kill9();
    }
    let d = env.start();
    wait_equal(&d, &env, &view, &folders, 240);
    d.stop();
    let truth = server(&view, &folders);
    assert_eq!(stored(&env.data_dir, "mail"), truth);
    let counts = feed_counts(&env.data_dir);
    let live = counts.values().filter(|(a, d)| a > d).count() as u64;
    assert_eq!(live, total(&truth), "live messages per the feed");
    for (key, (added, deleted)) in &counts {
        assert!(
            *added <= 1 && *deleted <= 1,
            "{key}: {added} added, {deleted} deleted"
        );
    }
    eprintln!("{initial_kills} kills during the initial sync, 5 during incremental");
    assert!(initial_kills >= 2, "too few kills during the initial sync");
}

#[test]
fn uidvalidity_reset_rematches_without_downloading() {
    let mut dc = Dovecot::start(Caps::Full, &users());
    dc.seed(USER, "INBOX", &generate(400, 21, "inbox"));
    let folders = ["INBOX", "Trash"];
    let view = ImapView::new(&dc, USER, PASS);
    let env = TestEnv::new();
    crate::imap_sync::config(&env, &dc, "");
    let d = env.start();
    wait_equal(&d, &env, &view, &folders, 120);
    let before_log = d.log_text().len();
    // A new UID space: Dovecot rebuilds the folder's UID list with a new UIDVALIDITY. Every
    // session process goes too (a surviving one would keep serving the old index from memory).
    dc.crash();
    let inbox = dc.folder_dir(USER, "INBOX");
    for e in std::fs::read_dir(&inbox).expect("inbox").flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with("dovecot-uidlist") || name.starts_with("dovecot.index") {
            std::fs::remove_file(e.path()).expect("remove index");
        }
    }
    std::thread::sleep(Duration::from_millis(1_100));
    dc.launch();
    let ok = wait_until(Duration::from_secs(120), || {
        d.log_text()[before_log..].contains("UID map rebuilt after the UIDVALIDITY change.")
    });
    assert!(ok, "no rematch: {}", tail(&d.log_text(), 30));
    wait_equal(&d, &env, &view, &folders, 60);
    let after = d.log_text()[before_log..].to_string();
    let fetched: u64 = after
        .lines()
        .filter(|l| l.contains("IMAP bodies recorded."))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["fetched"].as_u64())
        .sum();
    assert_eq!(fetched, 0, "bodies downloaded again after the reset");
    d.stop();
    assert_eq!(stored(&env.data_dir, "mail"), server(&view, &folders));
    // Consumers saw the reset and nothing else: no delete, no re-add.
    let store = Store::open(&env.data_dir).expect("store");
    let evs = store.feed().read_after(0, 100_000).expect("feed");
    let kinds: Vec<&str> = evs.iter().map(|e| e.kind.as_str()).collect();
    assert!(kinds.contains(&"folder.uidvalidity_changed"), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "message.deleted").count(), 0);
    assert_eq!(kinds.iter().filter(|k| **k == "message.added").count(), 400);
}

#[test]
fn idle_brings_a_new_message_within_two_seconds() {
    let dc = Dovecot::start(Caps::Full, &users());
    dc.seed(USER, "INBOX", &generate(50, 31, "inbox"));
    let folders = ["INBOX", "Trash"];
    let view = ImapView::new(&dc, USER, PASS);
    let env = TestEnv::new();
    env.write_config(&format!(
        "[maildir]\nroot = \"{}\"\n\n{}",
        env.path("maildir").display(),
        dc.account_toml_with("mail", USER, PASS, "poll_interval_secs = 600", "")
    ));
    let d = env.start();
    wait_equal(&d, &env, &view, &folders, 120);
    // Let the watcher settle into IDLE.
    std::thread::sleep(Duration::from_secs(2));
    let cur = env.path("maildir").join("mail").join("cur");
    let count = || std::fs::read_dir(&cur).map(|r| r.count()).unwrap_or(0);
    let mut latencies = Vec::new();
    for i in 0..3 {
        let before = count();
        let m = &generate(1, 500 + i, "idle")[0];
        view.append("INBOX", &m.raw);
        let t = Instant::now();
        let ok = wait_until(Duration::from_secs(5), || count() > before);
        assert!(
            ok,
            "IDLE did not bring the message: {}",
            tail(&d.log_text(), 20)
        );
        latencies.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("IDLE latencies: {latencies:?}");
    for l in &latencies {
        assert!(*l < Duration::from_secs(2), "{latencies:?}");
    }
    assert_eq!(held(&d, "mail"), Some(53));
    d.stop();
}
