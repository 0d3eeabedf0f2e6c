//! `ctl deep-sync` on an IMAP account against a real Dovecot: messages the incremental cursor
//! cannot see (slipped into a folder while the daemon was stopped, with the stored cursor made
//! to cover them) are found for the requested date range — and only those — by a durable job
//! that survives a SIGKILL of the daemon; other account kinds and bad dates are refused.

use crate::common::dovecot::{Caps, Dovecot, ImapView, generate, sha_hex};
use crate::common::{TestEnv, run_cli, test_account, wait_until};
use crate::imap_folders::fetched_since;
use crate::imap_sync::{PASS, USER, held, server, stored, tail, users, wait_equal};
use mailsync_actors::imap::store as istore;
use mailsync_actors::store::Store;
use std::time::{Duration, UNIX_EPOCH};

/// Writes `n` messages into INBOX's `cur/` with INTERNALDATE (the file's mtime) at `epoch`.
fn slip_in(dc: &Dovecot, tag: &str, seed: u64, n: usize, epoch: u64) {
    let cur = dc.folder_dir(USER, "INBOX").join("cur");
    for (i, m) in generate(n, seed, tag).iter().enumerate() {
        let path = cur.join(format!("{epoch}.{tag}{i}.slipped:2,S"));
        std::fs::write(&path, &m.raw).expect("write");
        let f = std::fs::File::options()
            .write(true)
            .open(&path)
            .expect("open");
        f.set_modified(UNIX_EPOCH + Duration::from_secs(epoch + i as u64))
            .expect("mtime");
    }
    // Owned by Dovecot's user again.
    dc.seed(USER, "INBOX", &[]);
}

#[test]
fn deep_sync_finds_what_the_cursor_missed_in_the_range_only() {
    let dc = Dovecot::start(Caps::Full, &users());
    dc.seed(USER, "INBOX", &generate(20, 61, "inbox"));
    let folders = ["INBOX", "Trash"];
    let view = ImapView::new(&dc, USER, PASS);
    let env = TestEnv::new();
    env.write_config(&format!(
        "[maildir]\nroot = \"{}\"\n\n{}\n{}",
        env.path("maildir").display(),
        dc.account_toml("mail", USER, PASS, ""),
        test_account("other", "messages = 1"),
    ));
    let d = env.start();
    wait_equal(&d, &env, &view, &folders, 120);
    d.stop();
    // 2025-06-15 12:00 UTC (in the range) and 2024-03-10 12:00 UTC (outside it).
    slip_in(&dc, "inrange", 62, 3, 1_749_988_800);
    slip_in(&dc, "outside", 63, 2, 1_710_072_000);
    let (uidnext, modseq) = view.with(async |s| {
        let m = s
            .status("INBOX", "(UIDNEXT MESSAGES HIGHESTMODSEQ)")
            .await
            .expect("status");
        assert_eq!(m.exists, 25);
        (m.uid_next.expect("uidnext"), m.highest_modseq)
    });
    // The stored cursor now claims to cover them: incremental sync will never fetch them.
    {
        let store = Store::open(&env.data_dir).expect("store");
        let key = istore::folder_key("mail", "INBOX");
        let mut f: istore::FolderState = istore::load(&store, &key).expect("load").expect("inbox");
        f.uidnext = uidnext;
        f.highest_modseq = modseq;
        store
            .transaction(|tx| istore::save_tx(tx, &key, &f))
            .expect("save");
        store.flush().expect("flush");
    }
    let cfg = env.config_path.to_string_lossy().to_string();
    let d = env.start();
    let ok = wait_until(Duration::from_secs(60), || {
        d.account("mail")["imap"]["commands"]["selects"]
            .as_u64()
            .unwrap_or(0)
            >= 3
    });
    assert!(ok, "no incremental rounds: {}", d.account("mail"));
    assert_eq!(
        held(&d, "mail"),
        Some(20),
        "the cursor saw the slipped messages"
    );
    // Refusals: another account kind, a bad date.
    let (code, _, err) = run_cli(&["--config", &cfg, "ctl", "deep-sync", "other"]);
    assert_ne!(code, 0);
    assert!(err.contains("IMAP"), "{err}");
    let (code, _, err) = run_cli(&[
        "--config",
        &cfg,
        "ctl",
        "deep-sync",
        "mail",
        "--since",
        "last week",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("YYYY-MM-DD"), "{err}");
    // The deep sync is durable: queued while the account is paused, the daemon killed, and
    // it still runs after the restart.
    let (code, _, err) = run_cli(&["--config", &cfg, "ctl", "pause", "mail"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run_cli(&[
        "--config",
        &cfg,
        "ctl",
        "deep-sync",
        "mail",
        "--since",
        "2025-01-01",
        "--until",
        "2026-01-01",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("deepsync:mail"), "{out}");
    d.kill9();
    let d = env.start();
    let _ = run_cli(&["--config", &cfg, "ctl", "resume", "mail"]);
    let ok = wait_until(Duration::from_secs(60), || {
        d.log_text().contains("IMAP deep sync finished.")
    });
    assert!(ok, "deep sync did not finish: {}", tail(&d.log_text(), 30));
    let ok = wait_until(Duration::from_secs(30), || held(&d, "mail") == Some(23));
    assert!(ok, "held {:?}", held(&d, "mail"));
    assert_eq!(
        fetched_since(&d.log_text(), 0),
        3,
        "only the range was fetched"
    );
    d.stop();
    // The mirror holds the server's INBOX minus the two messages outside the range.
    let truth = server(&view, &folders);
    let mine = stored(&env.data_dir, "mail");
    let inbox = &truth["INBOX"];
    let outside: Vec<String> = generate(2, 63, "outside")
        .iter()
        .map(|m| sha_hex(&m.raw))
        .collect();
    assert_eq!(inbox.len(), 25);
    for (uid, v) in inbox {
        if outside.contains(&v.1) {
            assert!(
                !mine["INBOX"].contains_key(uid),
                "uid {uid} is outside the range"
            );
        } else {
            assert_eq!(mine["INBOX"].get(uid), Some(v), "uid {uid}");
        }
    }
}
