//! IMAP against a real Dovecot: initial sync of a seeded mailbox (10,000 messages) equals the
//! server (uids, flags, bytes) in the store and in the Maildir sink; incremental sync with
//! QRESYNC, CONDSTORE only, and neither, after changes from a second connection.

use crate::common::dovecot::{Caps, Dovecot, FolderView, ImapView, generate, sha_hex};
use crate::common::{Daemon, TestEnv, wait_until};
use mailsync_actors::imap::store as istore;
use mailsync_actors::mirror;
use mailsync_actors::model::MessageId;
use mailsync_actors::store::Store;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

pub const USER: &str = "alice";
pub const PASS: &str = "s3cret-pw";

pub fn users() -> Vec<(String, String)> {
    vec![(USER.to_string(), PASS.to_string())]
}

/// The daemon config of one IMAP account on `dc` with the Maildir sink on.
pub fn config(env: &TestEnv, dc: &Dovecot, extra: &str) {
    env.write_config(&format!(
        "[maildir]\nroot = \"{}\"\n\n{}",
        env.path("maildir").display(),
        dc.account_toml("mail", USER, PASS, extra)
    ));
}

/// The messages the account holds, from its status line (`… N messages; …`).
pub fn held(d: &Daemon, id: &str) -> Option<u64> {
    let a = d.account(id);
    let cursor = a["cursor"].as_str()?.to_string();
    let (_, rest) = cursor.split_once(" folders, ")?;
    rest.split_whitespace().next()?.parse().ok()
}

pub fn caught_up(d: &Daemon, id: &str, messages: u64) -> bool {
    d.account(id)["phase"] == json!("caught_up") && held(d, id) == Some(messages)
}

/// The server's view of `folders`.
pub fn server(view: &ImapView, folders: &[&str]) -> BTreeMap<String, FolderView> {
    folders
        .iter()
        .map(|f| (f.to_string(), view.folder(f)))
        .collect()
}

/// The store's view (after the daemon exited): per folder, uid → (flags, sha of the raw bytes).
/// Also checks that the UID maps and the mirror agree (no orphan, no key held twice).
pub fn stored(data_dir: &Path, account: &str) -> BTreeMap<String, FolderView> {
    stored_in(&Store::open(data_dir).expect("open store"), account)
}

/// [`stored`] on an open store.
pub fn stored_in(store: &Store, account: &str) -> BTreeMap<String, FolderView> {
    let store = store.clone();
    let mut out = BTreeMap::new();
    let mut keys = std::collections::HashSet::new();
    for f in istore::folders(&store, account).expect("folders") {
        let mut view = FolderView::new();
        for (uid, e) in istore::uid_entries(&store, account, f.id).expect("uids") {
            assert!(keys.insert(e.key.clone()), "key {} held twice", e.key);
            let id = MessageId(e.key.clone());
            let raw = mirror::raw(&store, account, &id)
                .expect("raw")
                .unwrap_or_else(|| panic!("no raw bytes for {}", e.key));
            view.insert(uid, (e.flags.clone(), sha_hex(&raw)));
        }
        assert_eq!(f.messages, view.len() as u64, "count of {}", f.name);
        out.insert(f.name.clone(), view);
    }
    assert_eq!(
        mirror::message_count(&store, account),
        keys.len() as u64,
        "mirror holds messages outside the UID maps"
    );
    out
}

/// The Maildir sink's view: per folder directory, the sorted (sha, maildir flags) pairs.
pub fn maildir_view(root: &Path) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return out;
    };
    let mut dirs = vec![("INBOX".to_string(), root.to_path_buf())];
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with('.') && e.path().join("cur").is_dir() {
            dirs.push((name[1..].replace('.', "/"), e.path()));
        }
    }
    for (folder, dir) in dirs {
        let mut files = Vec::new();
        if let Ok(cur) = std::fs::read_dir(dir.join("cur")) {
            for f in cur.flatten() {
                let name = f.file_name().to_string_lossy().to_string();
                let flags = name
                    .rsplit_once(":2,")
                    .map(|(_, f)| f.to_string())
                    .unwrap_or_default();
                let bytes = std::fs::read(f.path()).unwrap_or_default();
                files.push((sha_hex(&bytes), flags));
            }
        }
        files.sort();
        if !files.is_empty() {
            out.insert(folder, files);
        }
    }
    out
}

/// What the Maildir should hold for a server view.
pub fn expected_maildir(
    server: &BTreeMap<String, FolderView>,
) -> BTreeMap<String, Vec<(String, String)>> {
    server
        .iter()
        .map(|(folder, view)| {
            let mut files: Vec<(String, String)> = view
                .values()
                .map(|(flags, sha)| {
                    let mut m = String::new();
                    for (f, c) in [
                        ("\\Draft", 'D'),
                        ("\\Flagged", 'F'),
                        ("$Forwarded", 'P'),
                        ("\\Answered", 'R'),
                        ("\\Seen", 'S'),
                        ("\\Deleted", 'T'),
                    ] {
                        if flags.iter().any(|x| x == f) {
                            m.push(c);
                        }
                    }
                    (sha.clone(), m)
                })
                .collect();
            files.sort();
            (folder.clone(), files)
        })
        .filter(|(_, files)| !files.is_empty())
        .collect()
}

pub fn total(view: &BTreeMap<String, FolderView>) -> u64 {
    view.values().map(|v| v.len() as u64).sum()
}

/// Waits until the daemon holds what the server holds (Maildir equal), or panics with both.
pub fn wait_equal(d: &Daemon, env: &TestEnv, view: &ImapView, folders: &[&str], secs: u64) {
    let truth = server(view, folders);
    let expected = expected_maildir(&truth);
    let md = env.path("maildir").join("mail");
    let ok = wait_until(Duration::from_secs(secs), || {
        caught_up(d, "mail", total(&truth)) && maildir_view(&md) == expected
    });
    if !ok {
        let got = maildir_view(&md);
        for (folder, files) in &expected {
            let g = got.get(folder).map(Vec::len).unwrap_or(0);
            eprintln!("{folder}: server {} maildir {g}", files.len());
            if let Some(gf) = got.get(folder) {
                let missing: Vec<_> = files.iter().filter(|f| !gf.contains(f)).take(3).collect();
                let extra: Vec<_> = gf.iter().filter(|f| !files.contains(f)).take(3).collect();
                eprintln!("  missing {missing:?}\n  extra {extra:?}");
            }
        }
        panic!(
            "not equal within {secs} s: {}\nlog tail:\n{}",
            d.account("mail"),
            tail(&d.log_text(), 40)
        );
    }
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s
        .lines()
        .filter(|l| !l.contains("mailsync::control::server"))
        .collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn seeded(caps: Caps, inbox: usize) -> Dovecot {
    let dc = Dovecot::start(caps, &users());
    dc.seed(USER, "INBOX", &generate(inbox, 1, "inbox"));
    dc.seed(USER, "Sent", &generate(60, 2, "sent"));
    dc.seed(USER, "Archive/2024", &generate(40, 3, "archive"));
    dc
}

const FOLDERS: [&str; 4] = ["INBOX", "Sent", "Archive/2024", "Trash"];

#[test]
fn initial_sync_of_10000_messages_equals_the_server() {
    let dc = seeded(Caps::Full, 10_000);
    let view = ImapView::new(&dc, USER, PASS);
    let env = TestEnv::new();
    config(&env, &dc, "");
    let d = env.start();
    wait_equal(&d, &env, &view, &FOLDERS, 240);
    // Pages of 500 UIDs, up to 10 per SELECT: INBOX's 20 pages cost a handful of SELECTs,
    // not one each (every SELECT makes Dovecot rescan the folder).
    let selects = d.account("mail")["imap"]["commands"]["selects"]
        .as_u64()
        .unwrap_or(u64::MAX);
    assert!(
        selects < 20,
        "{selects} SELECTs for an initial sync of 20 + 3 pages"
    );
    d.stop();
    let truth = server(&view, &FOLDERS);
    assert_eq!(total(&truth), 10_100);
    assert_eq!(stored(&env.data_dir, "mail"), truth);
}

/// Flags changed, messages expunged, moved and appended from a second connection, then the
/// daemon must converge again.
fn changes_reach_the_mirror(caps: Caps) {
    let dc = seeded(caps, 300);
    let view = ImapView::new(&dc, USER, PASS);
    let env = TestEnv::new();
    config(&env, &dc, "");
    let d = env.start();
    wait_equal(&d, &env, &view, &FOLDERS, 120);
    // Sent's flags change before the move into it: without CONDSTORE a flag change alone is
    // invisible to STATUS, so it is seen by the full step the move's new messages cause. In
    // the other order that step can run between the two, and the flags would wait for the
    // quiet folder's next full step (`imap/poll.rs`), later than this test waits.
    view.run_in("Sent", &["UID STORE 1:5 +FLAGS (\\Answered)".into()]);
    view.run_in(
        "INBOX",
        &[
            "UID STORE 1:20 +FLAGS (\\Flagged $Forwarded)".into(),
            "UID STORE 21:40 -FLAGS (\\Seen)".into(),
            "UID STORE 41:50 +FLAGS (\\Deleted)".into(),
            "UID EXPUNGE 41:50".into(),
            "UID MOVE 51:60 Sent".into(),
        ],
    );
    for m in generate(5, 9, "new") {
        view.append("INBOX", &m.raw);
    }
    wait_equal(&d, &env, &view, &FOLDERS, 60);
    // A second batch while the daemon keeps running (its cursor moved once already).
    view.run_in(
        "INBOX",
        &[
            "UID STORE 100:110 +FLAGS (\\Seen \\Draft)".into(),
            "UID STORE 111:115 +FLAGS (\\Deleted)".into(),
            "UID EXPUNGE 111:115".into(),
        ],
    );
    wait_equal(&d, &env, &view, &FOLDERS, 60);
    let mode = match caps {
        Caps::Full => "qresync",
        Caps::CondstoreOnly => "condstore",
        Caps::Neither => "uid_flags_diff",
    };
    let log = d.log_text();
    assert!(
        log.contains(&format!("\"mode\":\"{mode}\"")),
        "the {mode} path was not used"
    );
    d.stop();
    assert_eq!(stored(&env.data_dir, "mail"), server(&view, &FOLDERS));
}

#[test]
fn incremental_with_qresync_equals_the_server() {
    changes_reach_the_mirror(Caps::Full);
}

#[test]
fn incremental_with_condstore_only_equals_the_server() {
    changes_reach_the_mirror(Caps::CondstoreOnly);
}

#[test]
fn incremental_without_condstore_equals_the_server() {
    changes_reach_the_mirror(Caps::Neither);
}
