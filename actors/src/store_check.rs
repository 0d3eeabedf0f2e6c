//! `mailsync store check`: a read-only verification of a store directory.
//!
//! Nothing in the store is changed: the seal is compared with the files (a lost tail or a
//! changed byte since the last clean shutdown), then sled's files are copied to a scratch
//! directory (the body files are linked, not copied: they are only read) and the *copy* is
//! opened (sled writes while it opens) and walked:
//! - every value of every tree decodes as its type (schema version, account records, messages,
//!   labels, feed events and their payloads, jobs and their dedupe index, counters, cursors);
//! - every mirrored message has its raw bytes (in the body files, CRC-checked, or inline), with
//!   the recorded size and SHA-256, and no raw bytes lack their message;
//! - the feed's key index points at seqs no higher than the feed counter, every consumer's
//!   cursor is within the feed, the counter is at least the highest seq;
//! - every mailbox's dedupe index counts as many entries as the mailbox holds jobs;
//! - an account marked synced has a cursor or a recovery under way.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::account_record::AccountRecord;
use crate::feed::Feed;
use crate::mirror::{Change, MirrorMessage, sha256_hex};
use crate::model::Label;
use crate::store::feed_pages;
use crate::store::{
    FEED_SEQ, Internal, SCHEMA_VERSION_KEY, Space, Store, StoreError, decode, decode_in,
};
use crate::store_open::{DB_DIR, verify_seal};

/// What `store check` found.
#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    /// The store directory.
    pub dir: PathBuf,
    /// Each problem found, in words.
    pub problems: Vec<String>,
    /// Entries per tree (of the copy that could be opened).
    pub trees: BTreeMap<String, u64>,
    /// What the seal said.
    pub seal: String,
}

impl CheckReport {
    /// Whether the store is fine.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// Checks the store in `dir` without changing it. The daemon must not be running (its lock is
/// taken for the duration). `Err` only when the check itself cannot run.
pub fn check_store(dir: &Path) -> Result<CheckReport, StoreError> {
    let mut report = CheckReport {
        dir: dir.to_path_buf(),
        ..Default::default()
    };
    let db = dir.join(DB_DIR);
    if !db.is_dir() {
        report
            .problems
            .push(format!("there is no store in {}", dir.display()));
        return Ok(report);
    }
    let _lock = crate::store::lock_store_dir(dir)?;
    report.seal = match verify_seal(dir) {
        Ok(Some(n)) => format!("{n} files match the seal of the last clean shutdown"),
        Ok(None) => {
            "no seal (the last run did not shut down cleanly); sled's recovery decides".to_string()
        }
        Err(found) => {
            report.problems.push(found.clone());
            found
        }
    };
    let io = |source| StoreError::Io {
        dir: dir.to_path_buf(),
        source,
    };
    let scratch = std::env::temp_dir().join(format!(
        "mailsync-check-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    copy_dir(&db, &scratch.join(DB_DIR)).map_err(io)?;
    // The body files are only read (nothing is appended while checking): the copy refers to
    // the originals instead of duplicating them.
    let bodies = dir.join(crate::store::bodies::BODIES_DIR);
    if bodies.exists() {
        std::os::unix::fs::symlink(&bodies, scratch.join(crate::store::bodies::BODIES_DIR))
            .map_err(io)?;
    }
    let result = Store::open(&scratch);
    match result {
        Ok(store) => {
            walk(&store, &mut report);
            drop(store);
        }
        Err(e) => report.problems.push(e.to_string()),
    }
    // Problems name the store the user asked about, never the scratch copy.
    let (from, to) = (scratch.display().to_string(), dir.display().to_string());
    for p in &mut report.problems {
        *p = p.replace(&from, &to);
    }
    let _ = fs::remove_dir_all(&scratch);
    Ok(report)
}

/// A check of one key/value pair.
type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), String> + 'a;

pub(crate) fn walk(store: &Store, report: &mut CheckReport) {
    let mut problem = |p: String| {
        if report.problems.len() < 200 {
            report.problems.push(p);
        }
    };
    let mut count = BTreeMap::new();
    let mut each =
        |name: &str, tree: &sled::Tree, f: &mut Visit<'_>, problem: &mut dyn FnMut(String)| {
            let mut n = 0u64;
            for item in tree.iter() {
                match item {
                    Ok((k, v)) => {
                        n += 1;
                        if let Err(e) = f(&k, &v) {
                            problem(format!("{name}: {e}"));
                        }
                    }
                    Err(e) => {
                        problem(format!("{name}: cannot read: {e}"));
                        break;
                    }
                }
            }
            count.insert(name.to_string(), n);
        };
    let key_text = |k: &[u8]| String::from_utf8_lossy(k).replace('\0', "/");

    each(
        "meta",
        store.kv(Space::Meta),
        &mut |k, v| {
            if k == SCHEMA_VERSION_KEY {
                decode::<u32>(v).map(|_| ()).map_err(|e| e.to_string())
            } else {
                Ok(())
            }
        },
        &mut problem,
    );
    let mut accounts: Vec<(String, AccountRecord)> = Vec::new();
    each(
        "accounts",
        store.kv(Space::Accounts),
        &mut |k, v| {
            let rec: AccountRecord = decode(v).map_err(|e| format!("{}: {e}", key_text(k)))?;
            accounts.push((key_text(k), rec));
            Ok(())
        },
        &mut problem,
    );
    for (account, rec) in &accounts {
        if rec.initial_sync_completed
            && rec.history_id.is_none()
            && rec.gap.is_none()
            && rec.full_sync.is_none()
        {
            let gap_job = store
                .mailbox(&format!("{account}/backfill"))
                .depth()
                .map(|d| d.pending + d.delayed > 0)
                .unwrap_or(false);
            if !gap_job {
                problem(format!(
                    "accounts: {account} is marked synced but has no cursor and no recovery queued"
                ));
            }
        }
    }
    each(
        "messages",
        store.kv(Space::Messages),
        &mut |k, v| {
            let m: MirrorMessage = decode(v).map_err(|e| format!("{}: {e}", key_text(k)))?;
            match crate::mirror::stored_raw(store, k, &m) {
                Ok(Some(raw)) => {
                    if raw.len() as u64 != m.size || sha256_hex(&raw) != m.raw_sha256 {
                        return Err(format!(
                            "{}: the raw bytes do not match the recorded size and SHA-256",
                            key_text(k)
                        ));
                    }
                    Ok(())
                }
                Ok(None) => Err(format!("{}: raw bytes missing", key_text(k))),
                Err(e) => Err(format!("{}: {e}", key_text(k))),
            }
        },
        &mut problem,
    );
    for (name, space) in [("raw", Space::Raw), ("bodies", Space::Bodies)] {
        each(
            name,
            store.kv(space),
            &mut |k, _| match store.kv(Space::Messages).contains_key(k) {
                Ok(true) => Ok(()),
                Ok(false) => Err(format!("{}: raw bytes without their message", key_text(k))),
                Err(e) => Err(e.to_string()),
            },
            &mut problem,
        );
    }
    each(
        "labels",
        store.kv(Space::Labels),
        &mut |k, v| {
            decode::<Label>(v)
                .map(|_| ())
                .map_err(|e| format!("{}: {e}", key_text(k)))
        },
        &mut problem,
    );
    for space in [Space::Cursors, Space::Sinks, Space::MessageLabels] {
        each(
            space.tree_name(),
            store.kv(space),
            &mut |_, _| Ok(()),
            &mut problem,
        );
    }

    // The feed.
    let feed_seq: u64 = match store.internal(Internal::Counters).get(FEED_SEQ) {
        Ok(Some(v)) => decode_in("counter feed_seq", &v).unwrap_or_else(|e| {
            problem(format!("counters: {e}"));
            0
        }),
        Ok(None) => 0,
        Err(e) => {
            problem(format!("counters: {e}"));
            0
        }
    };
    let pages = feed_pages::check_pages(store, &mut |p| problem(p));
    let last_seq = pages.last_seq;
    let feed = Feed::new(store.clone());
    let mut after = 0;
    loop {
        match feed.read_after(after, 1000) {
            Ok(events) if events.is_empty() => break,
            Ok(events) => {
                for ev in &events {
                    if let Err(e) = decode::<Change>(&ev.payload) {
                        problem(format!("feed: event {} ({}): {e}", ev.seq, ev.key));
                    }
                }
                after = events.last().map_or(after, |e| e.seq);
            }
            Err(e) => {
                problem(format!("feed: after seq {after}: {e}"));
                break;
            }
        }
    }
    if last_seq > feed_seq {
        problem(format!(
            "counters: the feed counter is {feed_seq} but the feed holds seq {last_seq}"
        ));
    }
    each(
        "feed_keys",
        store.internal(Internal::FeedKeys),
        &mut |k, v| {
            let seq: u64 = decode_in("feed_keys value", v).map_err(|e| e.to_string())?;
            if seq > feed_seq {
                return Err(format!(
                    "{} points at seq {seq}, beyond the feed counter {feed_seq}",
                    key_text(k)
                ));
            }
            Ok(())
        },
        &mut problem,
    );
    each(
        "consumers",
        store.internal(Internal::Consumers),
        &mut |k, v| {
            let seq: u64 = decode_in("consumer cursor", v).map_err(|e| e.to_string())?;
            if seq > feed_seq {
                return Err(format!(
                    "consumer {} acked seq {seq}, beyond the feed counter {feed_seq}",
                    key_text(k)
                ));
            }
            Ok(())
        },
        &mut problem,
    );
    each(
        "counters",
        store.internal(Internal::Counters),
        &mut |k, v| {
            decode_in::<u64>("counter", v)
                .map(|_| ())
                .map_err(|e| format!("{}: {e}", key_text(k)))
        },
        &mut problem,
    );

    // Mailboxes: every job decodes, and the dedupe index matches the jobs.
    let mut jobs_per_box: BTreeMap<Vec<u8>, (u64, u64)> = BTreeMap::new();
    let mailbox_of = |k: &[u8]| -> Option<Vec<u8>> {
        let len = u32::from_be_bytes(k.get(..4)?.try_into().ok()?) as usize;
        k.get(..4 + len).map(<[u8]>::to_vec)
    };
    for (tree, pending) in [
        (Internal::Jobs, false),
        (Internal::Delayed, false),
        (Internal::PendingKeys, true),
        (Internal::Dead, false),
    ] {
        let name = match tree {
            Internal::Jobs => "jobs",
            Internal::Delayed => "jobs_delayed",
            Internal::PendingKeys => "pending_keys",
            _ => "dead",
        };
        each(
            name,
            store.internal(tree),
            &mut |k, v| {
                crate::mailbox::check_value(pending, name, v).map_err(|e| e.to_string())?;
                let Some(mb) = mailbox_of(k) else {
                    return Err("a key without a mailbox prefix".into());
                };
                let entry = jobs_per_box.entry(mb).or_default();
                match tree {
                    Internal::Jobs | Internal::Delayed => entry.0 += 1,
                    Internal::PendingKeys => entry.1 += 1,
                    _ => {}
                }
                Ok(())
            },
            &mut problem,
        );
    }
    for (mb, (jobs, pending)) in jobs_per_box {
        if jobs != pending {
            let name = String::from_utf8_lossy(mb.get(4..).unwrap_or_default()).into_owned();
            problem(format!(
                "mailbox {name}: {jobs} jobs but {pending} entries in its dedupe index"
            ));
        }
    }
    count.insert("feed".to_string(), pages.events);
    report.trees = count;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::Priority;

    #[test]
    fn a_healthy_store_checks_clean_and_is_not_changed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .mailbox("a/ingest")
            .enqueue(Priority::Normal, "k", b"x")
            .unwrap();
        store.flush().unwrap();
        drop(store);
        let seal = fs::read(dir.path().join(crate::store_open::SEAL_FILE)).unwrap();
        let report = check_store(dir.path()).unwrap();
        assert!(report.ok(), "{:?}", report.problems);
        assert_eq!(report.trees.get("jobs"), Some(&1));
        assert_eq!(
            fs::read(dir.path().join(crate::store_open::SEAL_FILE)).unwrap(),
            seal
        );
        assert!(
            verify_seal(dir.path()).unwrap().is_some(),
            "files unchanged"
        );
    }

    #[test]
    fn a_message_without_raw_bytes_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .transaction(|tx| tx.insert(Space::Raw, b"a\0m1", b"raw"))
            .unwrap();
        drop(store);
        let report = check_store(dir.path()).unwrap();
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.contains("raw bytes without their message")),
            "{:?}",
            report.problems
        );
    }
}
