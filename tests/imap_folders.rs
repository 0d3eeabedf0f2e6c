//! IMAP folder life against a real Dovecot: a folder renamed on the server is a rename (its
//! UID map and messages follow, nothing is downloaded again, one `folder.renamed` event, the
//! Maildir directory moves); quiet folders are polled with STATUS only (no SELECT) and a change
//! in a folder without IDLE still reaches the mirror by polling; `ctl status` shows each folder.

use crate::common::dovecot::{Caps, Dovecot, ImapView, generate};
use crate::common::{TestEnv, run_cli, wait_until};
use crate::imap_sync::{PASS, USER, config, server, stored, tail, users, wait_equal};
use mailsync_actors::store::Store;
use serde_json::Value;
use std::time::Duration;

/// Downloads recorded in the log after `from` (bytes of the log text).
pub fn fetched_since(log: &str, from: usize) -> u64 {
    log[from..]
        .lines()
        .filter(|l| l.contains("IMAP bodies recorded."))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["fetched"].as_u64())
        .sum()
}

/// The kinds of every feed event (after the daemon stopped).
pub fn feed_kinds(data_dir: &std::path::Path) -> Vec<String> {
    let store = Store::open(data_dir).expect("store");
    let evs = store.feed().read_after(0, 1_000_000).expect("feed");
    evs.iter().map(|e| e.kind.clone()).collect()
}

fn count(kinds: &[String], kind: &str) -> usize {
    kinds.iter().filter(|k| *k == kind).count()
}

#[test]
fn a_renamed_folder_moves_without_downloading() {
    let dc = Dovecot::start(Caps::Full, &users());
    dc.seed(USER, "INBOX", &generate(20, 41, "inbox"));
    dc.seed(USER, "Projects", &generate(30, 42, "projects"));
    let view = ImapView::new(&dc, USER, PASS);
    let env = TestEnv::new();
    config(
        &env,
        &dc,
        "status_poll_min_secs = 1\nstatus_poll_max_secs = 2\n",
    );
    let d = env.start();
    wait_equal(&d, &env, &view, &["INBOX", "Projects", "Trash"], 120);
    let before = d.log_text().len();
    view.with(async |s| {
        s.run_command_and_check_ok("RENAME \"Projects\" \"Clients\"")
            .await
            .expect("rename");
    });
    let after = ["INBOX", "Clients", "Trash"];
    let ok = wait_until(Duration::from_secs(60), || {
        d.log_text()[before..].contains("IMAP folder renamed on the server")
    });
    assert!(ok, "rename not noticed: {}", tail(&d.log_text(), 30));
    wait_equal(&d, &env, &view, &after, 60);
    assert!(
        !env.path("maildir").join("mail").join(".Projects").exists(),
        "the old folder's Maildir is still there"
    );
    assert_eq!(
        fetched_since(&d.log_text(), before),
        0,
        "bodies downloaded again after the rename"
    );
    d.stop();
    assert_eq!(stored(&env.data_dir, "mail"), server(&view, &after));
    let kinds = feed_kinds(&env.data_dir);
    assert_eq!(count(&kinds, "folder.renamed"), 1, "{kinds:?}");
    assert_eq!(count(&kinds, "folder.deleted"), 0, "{kinds:?}");
    assert_eq!(count(&kinds, "folder.created"), 3, "{kinds:?}");
    assert_eq!(count(&kinds, "message.deleted"), 0);
    assert_eq!(count(&kinds, "message.added"), 50);
}

fn commands(d: &crate::common::Daemon) -> (u64, u64, u64) {
    let a = d.account("mail");
    let c = &a["imap"]["commands"];
    let n = |k: &str| c[k].as_u64().unwrap_or(0);
    (n("selects"), n("status_probes"), n("polls_skipped"))
}

#[test]
fn quiet_folders_cost_a_status_and_changes_arrive_by_polling() {
    let dc = Dovecot::start(Caps::Full, &users());
    dc.seed(USER, "INBOX", &generate(10, 51, "inbox"));
    dc.seed(USER, "Sent", &generate(10, 52, "sent"));
    let folders = ["INBOX", "Sent", "Trash"];
    let view = ImapView::new(&dc, USER, PASS);
    let env = TestEnv::new();
    config(
        &env,
        &dc,
        "status_poll_min_secs = 1\nstatus_poll_max_secs = 2\n",
    );
    let d = env.start();
    wait_equal(&d, &env, &view, &folders, 120);
    // Rounds with nothing new: STATUS only, no SELECT.
    let (sel0, _, skipped0) = commands(&d);
    let ok = wait_until(Duration::from_secs(60), || commands(&d).2 >= skipped0 + 8);
    assert!(ok, "no quiet polls: {}", d.account("mail"));
    let (sel1, probes1, _) = commands(&d);
    assert_eq!(sel1, sel0, "a round without changes sent a SELECT");
    // A message in Sent (no IDLE there) arrives by polling.
    view.append("Sent", &generate(1, 53, "polled")[0].raw);
    wait_equal(&d, &env, &view, &folders, 60);
    let (sel2, probes2, _) = commands(&d);
    assert!(sel2 > sel1, "the changed folder got no full step");
    assert!(probes2 > probes1);
    // Status shows every folder, in the table and in JSON.
    let a = d.account("mail");
    let names: Vec<&str> = a["imap"]["folders"]
        .as_array()
        .expect("folders")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(names, ["INBOX", "Sent", "Trash"], "{a}");
    let sent = &a["imap"]["folders"][1];
    assert_eq!(sent["messages"], 11);
    assert_eq!(sent["state"], "synced");
    assert!(sent["last_sync_ms"].as_u64().is_some(), "{sent}");
    assert_eq!(a["imap"]["errors"]["auth"], 0, "{a}");
    let cfg = env.config_path.to_string_lossy().to_string();
    let (code, out, err) = run_cli(&["--config", &cfg, "ctl", "status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("FOLDER") && out.contains("Sent"), "{out}");
    let (code, out, err) = run_cli(&["--config", &cfg, "ctl", "status", "mail"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("UIDVALIDITY") && out.contains("Commands"),
        "{out}"
    );
    let (code, out, err) = run_cli(&["--config", &cfg, "ctl", "--json", "status", "mail"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(v["imap"]["folders"][0]["name"], "INBOX");
    let (code, out, _) = run_cli(&["--config", &cfg, "ctl", "metrics"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("mailsync_imap_folder_messages{account=\"mail\",folder=\"Sent\"} 11"),
        "{out}"
    );
    d.stop();
    assert_eq!(stored(&env.data_dir, "mail"), server(&view, &folders));
}
