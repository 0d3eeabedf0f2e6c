//! The ways back from a lost store, with the real binary against the Gmail emulator:
//! - `ctl backup` during a running full sync, then `kill -9`, then `store restore` of that
//!   backup: the daemon catches up and the mirror equals the emulator, every message has
//!   exactly one `message.added` and no key appears twice;
//! - `store rebuild` of a synced account with a Maildir, after its store was damaged: the
//!   mirror is restored from the Maildir and reconciled with the provider; the emulator counts
//!   no `messages.get` for the messages the Maildir held, and the new feed hands consumers no
//!   key for what they already had.

use crate::common::emulator::*;
use crate::common::*;
use serde_json::json;
use std::time::Duration;

fn cli(env: &TestEnv, args: &[&str]) -> (i32, String) {
    let mut all = vec!["--config", env.config_path.to_str().expect("utf-8")];
    all.extend_from_slice(args);
    let (code, out, err) = run_cli(&all);
    (code, format!("{out}{err}"))
}

fn with_maildir(env: &TestEnv) -> std::path::PathBuf {
    let root = env.path("mail");
    let mut text = std::fs::read_to_string(&env.config_path).expect("config");
    text.push_str(&format!("\n[maildir]\nroot = \"{}\"\n", root.display()));
    std::fs::write(&env.config_path, text).expect("config");
    root
}

fn gets(emu: &Emu) -> u64 {
    emu.counters()
        .requests
        .get("gmail.users.messages.get")
        .copied()
        .unwrap_or(0)
}

#[test]
fn backup_during_a_sync_then_kill_9_then_restore_catches_up_to_the_emulator() {
    const MESSAGES: usize = 1_200;
    let emu = Emu::start(config(31, MESSAGES, quota_scale(MESSAGES, 10)));
    let env = TestEnv::new();
    emu.write_config(&env, 20);
    with_maildir(&env);
    let d = env.start();
    assert!(
        wait_until(Duration::from_secs(60), || {
            let a = d.account(ACCOUNT);
            a["phase"] == json!("fetching") && a["progress"]["done"].as_u64().unwrap_or(0) > 200
        }),
        "the full sync did not get going: {}",
        d.account(ACCOUNT)
    );
    let backup = env.path("store.msbk");
    let (code, out) = cli(&env, &["ctl", "backup", backup.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "ctl backup: {out}");
    assert!(backup.exists());
    let at_backup = d.account(ACCOUNT);
    assert_ne!(
        at_backup["phase"],
        json!("caught_up"),
        "the backup was taken during the sync"
    );
    // More happens after the backup: the sync goes on (more messages fetched than the backup
    // holds), mail arrives and changes.
    let done_at_backup = at_backup["progress"]["done"].as_u64().unwrap_or(0);
    assert!(
        wait_until(Duration::from_secs(60), || {
            let a = d.account(ACCOUNT);
            a["progress"]["done"].as_u64().unwrap_or(0) > done_at_backup + 100
                || a["phase"] == json!("caught_up")
        }),
        "the sync did not go on after the backup: {}",
        d.account(ACCOUNT)
    );
    let ids: Vec<String> = emu
        .snapshot()
        .messages
        .iter()
        .map(|m| m.id.clone())
        .collect();
    for id in ids.iter().take(5) {
        emu.change_labels(id, &["STARRED"], &["UNREAD"]);
    }
    emu.delete(&ids[7]);
    for _ in 0..5 {
        emu.deliver();
    }
    d.kill9();

    let (code, out) = cli(&env, &["store", "restore", backup.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "store restore: {out}");
    assert!(out.contains("restored"), "{out}");
    let d = env.start();
    assert!(
        wait_converged(&d, &emu, Duration::from_secs(180)),
        "did not catch up after the restore: {}",
        d.account(ACCOUNT)
    );
    d.stop();
    assert_mirror_equals(&env.data_dir, &emu);
    let truth = truth(&emu.snapshot());
    let feed = feed_summary(&env.data_dir);
    assert_feed_complete(&feed, &truth);
}

#[test]
fn store_rebuild_restores_the_mirror_from_the_maildir_without_fetching_bodies_again() {
    const MESSAGES: usize = 400;
    let emu = Emu::start(config(32, MESSAGES, quota_scale(MESSAGES, 3)));
    let env = TestEnv::new();
    emu.write_config(&env, 8);
    let root = with_maildir(&env);
    let cur = root.join(ACCOUNT).join("cur");
    let files = || std::fs::read_dir(&cur).map(|r| r.count()).unwrap_or(0);
    let d = env.start();
    assert!(
        wait_caught_up(&d, Duration::from_secs(120))
            && wait_until(Duration::from_secs(60), || files() >= MESSAGES),
        "sync did not finish: {} files, {}",
        files(),
        d.status()
    );
    d.stop();
    let before = feed_summary(&env.data_dir);
    let held: Vec<String> = before.added.keys().cloned().collect();
    assert_eq!(held.len(), MESSAGES);

    // While the store is lost, the mailbox changes a little.
    let ids: Vec<String> = emu
        .snapshot()
        .messages
        .iter()
        .map(|m| m.id.clone())
        .collect();
    emu.change_labels(&ids[1], &["STARRED", "Label_3"], &["UNREAD"]);
    emu.change_labels(&ids[2], &["TRASH"], &[]);
    emu.delete(&ids[3]);
    let new: Vec<String> = (0..3).map(|_| emu.deliver()).collect();

    // The store is damaged: the daemon refuses to start and says what helps.
    let db = env.data_dir.join("db").join("db");
    let len = std::fs::metadata(&db).expect("db").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&db)
        .expect("db")
        .set_len(len / 2)
        .expect("truncate");
    let (code, out) = cli(&env, &["daemon"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("mailsync store rebuild"), "{out}");

    let (code, out) = cli(&env, &["store", "rebuild"]);
    assert_eq!(code, 0, "store rebuild: {out}");
    assert!(
        out.contains(&format!("restored {MESSAGES} messages")),
        "{out}"
    );
    emu.reset_counters();
    let d = env.start();
    assert!(
        wait_converged(&d, &emu, Duration::from_secs(120)),
        "did not reconcile after the rebuild: {}",
        d.account(ACCOUNT)
    );
    d.stop();
    assert_mirror_equals(&env.data_dir, &emu);
    let fetched = gets(&emu);
    assert!(
        fetched <= new.len() as u64,
        "{fetched} messages.get after the rebuild; only the {} new messages needed a body",
        new.len()
    );
    let c = emu.counters();
    eprintln!(
        "rebuild reconcile: {} quota units, {fetched} messages.get, requests {:?}",
        c.units_total, c.requests
    );
    // The new feed hands out nothing consumers already had, and no key twice.
    let after = feed_summary(&env.data_dir);
    for id in &held {
        assert!(
            !after.added.contains_key(id),
            "message.added for {id} again after the rebuild"
        );
    }
    for id in &new {
        assert_eq!(after.added.get(id), Some(&1), "new message {id}");
    }
    assert_eq!(after.deleted.get(&ids[3]), Some(&1));
    assert!(after.label_changed.contains_key(&ids[1]));
}
