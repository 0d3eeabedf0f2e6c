//! Data-directory fixtures written by earlier releases, and the tests that open them with
//! today's code, migrate them and find everything:
//! - `datadir-v1`: schema 1 (bincode values behind one global version byte), written before
//!   stored values became versioned per type;
//! - `datadir-v3`: schema 3 (the release before compressed values and bodies): tagged CBOR
//!   values, bodies in the body files behind version-1 refs;
//! - `datadir-v4`: schema 4 (the release before the feed's pages): one feed value per event;
//! - `datadir-v5`: schema 5 (the release before body refs moved into the message records):
//!   every body ref under its message's key in the `bodies` tree (`migration_fixture_v5.rs`).
//!
//! Each `datadir.tar.gz` is a real daemon's data directory: a small Gmail account synced from
//! the emulator (messages, labels, a relabel and a delete through partial sync), plus jobs left
//! pending, delayed and dead-lettered, and a feed consumer with a cursor. `manifest.json`
//! beside it lists what the old code read from it. Both were written by `write_v1_fixture`
//! (named for the first of them) with the code of the schema the fixture is named after, the
//! only code that may ever regenerate one:
//! `cargo test --test integration migration_fixture::write_v1_fixture -- --ignored`, with
//! `fixture_dir` pointed at the fixture's directory.

use crate::common::emulator::*;
use crate::common::*;
use mailsync_actors::account_record::AccountRecord;
use mailsync_actors::backoff::RetryPolicy;
use mailsync_actors::mailbox::Priority;
use mailsync_actors::mirror;
use mailsync_actors::store::Store;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The fixture written by the code of schema `schema`.
fn fixture_dir_of(schema: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/datadir-v{schema}"))
}

/// Where [`write_v1_fixture`] writes.
fn fixture_dir() -> PathBuf {
    fixture_dir_of(1)
}

#[path = "migration_fixture_v5.rs"]
mod v5;

/// A "now" for nacks far ahead, so the retried job stays delayed in the fixture.
const FAR_FUTURE_MS: u64 = 4_000_000_000_000;

/// The mailboxes the fixture's jobs live in.
const MAILBOXES: [&str; 3] = ["gm/ingest", "gm/backfill", "gm/history_sync"];

/// What a store holds, as plain JSON (read through the public APIs, so any schema can be
/// compared with any other).
fn manifest_of(store: &Store) -> Value {
    let mut messages = BTreeMap::new();
    mirror::for_each_message(store, ACCOUNT, |m| {
        let raw = mirror::raw(store, ACCOUNT, &m.id)?.unwrap_or_default();
        messages.insert(
            m.id.0.clone(),
            json!({
                "thread_id": m.thread_id,
                "labels": m.label_ids.iter().map(|l| l.0.clone()).collect::<Vec<_>>(),
                "history_id": m.history_id.0,
                "internal_date_ms": m.internal_date_ms,
                "raw_sha256": m.raw_sha256,
                "raw_ok": mirror::sha256_hex(&raw) == m.raw_sha256,
                "size": m.size,
                "subject": m.headers.subject,
            }),
        );
        Ok(())
    })
    .expect("scan messages");
    let mut labels = BTreeMap::new();
    for l in mirror::labels(store, ACCOUNT).expect("labels") {
        labels.insert(
            l.id.0.clone(),
            json!({"name": l.name, "kind": format!("{:?}", l.kind)}),
        );
    }
    let feed: Vec<Value> = store
        .feed()
        .read_after(0, 100_000)
        .expect("feed")
        .into_iter()
        .map(|e| json!({"seq": e.seq, "account": e.account, "kind": e.kind, "key": e.key}))
        .collect();
    let consumers: BTreeMap<String, u64> = store
        .feed()
        .consumers()
        .expect("consumers")
        .into_iter()
        .collect();
    let rec = AccountRecord::load(store, ACCOUNT).expect("account record");
    let mut jobs = BTreeMap::new();
    for name in MAILBOXES {
        let mb = store.mailbox(name);
        let depth = mb.depth().expect("depth");
        // Everything, including delayed jobs: lease as if far in the future (which makes the
        // delayed ones ready, hence `queued` counts both), then let go.
        let leased = mb.lease(10_000, u64::MAX / 2).expect("lease");
        let mut keys: Vec<Value> = leased
            .iter()
            .map(|j| json!({"key": j.key, "priority": format!("{:?}", j.priority), "attempts": j.attempts, "payload": j.payload}))
            .collect();
        keys.sort_by_key(|v| v["key"].as_str().unwrap_or("").to_string());
        mb.release_all();
        let dead: Vec<Value> = mb
            .dead_letters(100)
            .expect("dead letters")
            .iter()
            .map(|j| json!({"key": j.key, "last_error": j.last_error}))
            .collect();
        jobs.insert(
            name.to_string(),
            json!({"queued": depth.pending + depth.delayed, "dead": depth.dead, "jobs": keys, "dead_letters": dead}),
        );
    }
    json!({
        "messages": messages,
        "labels": labels,
        "feed": feed,
        "consumers": consumers,
        "account": {
            "history_id": rec.history_id.map(|h| h.0),
            "initial_sync_completed": rec.initial_sync_completed,
            "label_sync_completed": rec.label_sync_completed,
            "last_full_sync_at_ms": rec.last_full_sync_at_ms,
        },
        "jobs": jobs,
    })
}

/// Writes the fixture with the code of this checkout (run only on a schema-1 build).
#[test]
#[ignore = "writes tests/fixtures/datadir-v1; run by hand with the old schema's code"]
fn write_v1_fixture() {
    let emu = Emu::start(config(71, 8, quota_scale(8, 2)));
    let env = TestEnv::new();
    emu.write_config(&env, 8);
    let d = env.start();
    assert!(wait_caught_up(&d, Duration::from_secs(60)), "no full sync");
    let ids: Vec<String> = emu.snapshot().messages.into_iter().map(|m| m.id).collect();
    emu.change_labels(&ids[0], &["STARRED"], &["UNREAD"]);
    emu.delete(&ids[1]);
    emu.deliver();
    assert!(
        wait_converged(&d, &emu, Duration::from_secs(60)),
        "no partial sync"
    );
    d.stop();

    let store = Store::open(&env.data_dir).expect("open");
    // Jobs the daemon would have left behind had it stopped mid-work.
    let ingest = store.mailbox("gm/ingest");
    ingest
        .enqueue(
            Priority::RealTime,
            &format!("ingest:gm:{}", ids[2]),
            ids[2].as_bytes(),
        )
        .expect("enqueue");
    ingest
        .enqueue(
            Priority::Backfill,
            &format!("ingest:gm:{}", ids[3]),
            ids[3].as_bytes(),
        )
        .expect("enqueue");
    let jobs = ingest.lease(1, 0).expect("lease");
    ingest
        .nack(
            &jobs[0],
            "503 from messages.get",
            &RetryPolicy::default(),
            FAR_FUTURE_MS,
        )
        .expect("nack");
    let hist = store.mailbox("gm/history_sync");
    hist.enqueue(
        Priority::RealTime,
        "history:gm:999999",
        &999_999u64.to_be_bytes(),
    )
    .expect("enqueue");
    let back = store.mailbox("gm/backfill");
    back.enqueue(Priority::Backfill, "dead:gm:x", b"x")
        .expect("enqueue");
    let dead = back.lease(1, 0).expect("lease");
    let once = RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    };
    back.nack(&dead[0], "malformed response", &once, FAR_FUTURE_MS)
        .expect("nack");
    let feed = store.feed();
    let last = feed.last_seq().expect("seq");
    feed.register_consumer("fixture-tool", 0).expect("register");
    feed.ack_consumer("fixture-tool", last / 2).expect("ack");
    store.flush().expect("flush");
    let manifest = manifest_of(&store);
    drop(store);

    let out = fixture_dir();
    std::fs::create_dir_all(&out).expect("mkdir");
    std::fs::write(
        out.join("manifest.json"),
        serde_json::to_string_pretty(&manifest).expect("json") + "\n",
    )
    .expect("write manifest");
    let st = Command::new("tar")
        .arg("-czf")
        .arg(out.join("datadir.tar.gz"))
        .arg("-C")
        .arg(&env.data_dir)
        .arg("--exclude=mailsync.lock")
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success());
}

/// A message arriving after the migration (compressible: its record and body are stored
/// compressed).
fn new_message() -> mailsync_actors::model::FetchedMessage {
    use mailsync_actors::model::{FetchedMessage, HeaderSummary, HistoryId, LabelId, MessageId};
    let text = "We agreed to meet again next week, same room, same time.\r\n".repeat(30);
    let raw = format!("Subject: minutes\r\nMessage-ID: <m@example.org>\r\n\r\n{text}");
    FetchedMessage {
        id: MessageId("new0000000000001".into()),
        thread_id: "new0000000000001".into(),
        label_ids: vec![LabelId("INBOX".into())],
        history_id: HistoryId(1_000_000),
        internal_date_ms: 1_767_000_000_000,
        raw: raw.into_bytes(),
        headers: HeaderSummary {
            subject: Some("minutes".into()),
            from: Some("Ana <ana@example.org>".into()),
            date: Some("Tue, 1 Dec 2026 09:00:00 +0000".into()),
            message_id: Some("<m@example.org>".into()),
        },
    }
}

/// Unpacks a fixture into a fresh temp dir.
fn unpack(schema: u32) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    let st = Command::new("tar")
        .arg("-xzf")
        .arg(fixture_dir_of(schema).join("datadir.tar.gz"))
        .arg("-C")
        .arg(&data)
        .status()
        .expect("tar");
    assert!(st.success());
    (tmp, data)
}

fn expected(schema: u32) -> Value {
    let text =
        std::fs::read_to_string(fixture_dir_of(schema).join("manifest.json")).expect("manifest");
    serde_json::from_str(&text).expect("manifest json")
}

/// Opens the schema-1 data directory with today's code: everything the old code wrote is
/// found, and found again on a second open (the schema bump is recorded once).
#[test]
fn v1_fixture_opens_migrates_and_keeps_everything() {
    let (_tmp, data) = unpack(1);
    let want = expected(1);
    for round in 0..2 {
        let store = Store::open(&data).expect("open the v1 fixture");
        // The values really are schema 1 (bincode behind version byte 1): the test reads them
        // through each type's frozen shape, not through today's encoding.
        let (_, first) = store
            .kv(mailsync_actors::store::Space::Messages)
            .iter()
            .next()
            .expect("a message")
            .expect("read");
        assert_eq!(first[0], mailsync_actors::codec::FORMAT_LEGACY);
        let got = manifest_of(&store);
        for part in ["messages", "labels", "feed", "consumers", "account", "jobs"] {
            assert_eq!(
                got[part], want[part],
                "round {round}: {part} differs after migration"
            );
        }
        assert!(
            got["messages"].as_object().is_some_and(|m| m.len() >= 8),
            "the fixture holds the synced messages"
        );
        drop(store);
    }
}

/// The migrated fixtures keep working under the real daemon: it starts, keeps its cursor and
/// its mirror, and the feed keeps its keys (no message is announced twice).
#[test]
fn v1_fixture_runs_under_the_daemon() {
    fixture_runs_under_the_daemon(1);
}

#[test]
fn v3_fixture_runs_under_the_daemon() {
    fixture_runs_under_the_daemon(3);
}

#[test]
fn v4_fixture_runs_under_the_daemon() {
    fixture_runs_under_the_daemon(4);
}

/// Opens the schema-4 data directory (one feed value per event) with today's code: the feed's
/// events move into pages with nothing lost, reordered or repeated, the check finds the store
/// sound, and events appended afterwards follow the old ones.
#[test]
fn v4_fixture_moves_its_feed_into_pages() {
    use mailsync_actors::store_check::check_store;

    let (_tmp, data) = unpack(4);
    let want = expected(4);
    let old_feed = want["feed"].as_array().expect("feed").clone();
    assert!(old_feed.len() >= 8, "the fixture has a feed to move");
    let store = Store::open(&data).expect("open the v4 fixture");
    let got = manifest_of(&store);
    for part in ["messages", "labels", "feed", "consumers", "account", "jobs"] {
        assert_eq!(got[part], want[part], "{part} differs after the move");
    }
    let feed = store.feed();
    let next = feed
        .append(mailsync_actors::feed::NewEvent {
            account: ACCOUNT.into(),
            kind: "account.state_changed".into(),
            key: "after-the-move".into(),
            payload: mailsync_actors::store::encode(&mirror::Change::AccountStateChanged {
                state: "running".into(),
                reason: None,
            }),
            ts_ms: 1,
        })
        .expect("append")
        .expect("a new key");
    assert_eq!(next, feed.last_seq().expect("seq"));
    store.flush().expect("flush");
    let events = feed.read_after(0, 10_000).expect("read");
    assert_eq!(events.len(), old_feed.len() + 1);
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(events.last().map(|e| e.seq), Some(next));
    drop(feed);
    drop(store);
    let report = check_store(&data).expect("check");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(
        report.trees.get("feed").copied(),
        Some(old_feed.len() as u64 + 1)
    );
}

fn fixture_runs_under_the_daemon(schema: u32) {
    let (tmp, data) = unpack(schema);
    let want = expected(schema);
    let env = TestEnv::new();
    // Use the unpacked directory as the daemon's data dir.
    std::fs::remove_dir_all(&env.data_dir).ok();
    let st = Command::new("cp")
        .arg("-a")
        .arg(&data)
        .arg(&env.data_dir)
        .status()
        .expect("cp");
    assert!(st.success());
    drop(tmp);
    env.write_config("");
    let d = env.start();
    d.stop();
    let store = Store::open(&env.data_dir).expect("reopen");
    let got = manifest_of(&store);
    assert_eq!(got["messages"], want["messages"]);
    assert_eq!(got["account"], want["account"]);
    assert_eq!(got["consumers"], want["consumers"]);
}

/// Opens the schema-3 data directory (the release before compression) with today's code:
/// every uncompressed value and version-1 body ref reads as before, the store moves to
/// schema 4, and a message written now is stored compressed beside the old ones, with nothing
/// old rewritten or lost.
#[test]
fn v3_fixture_reads_beside_compressed_writes() {
    use mailsync_actors::codec::{FORMAT_COMPRESSED, FORMAT_TAGGED};
    use mailsync_actors::store::{SCHEMA_VERSION, SCHEMA_VERSION_KEY, Space, decode};

    let (_tmp, data) = unpack(3);
    let want = expected(3);
    let first_value = |store: &Store, space: Space| {
        let (_, v) = store
            .kv(space)
            .iter()
            .next()
            .expect("a value")
            .expect("read");
        v.to_vec()
    };
    let store = Store::open(&data).expect("open the v3 fixture");
    // The fixture really is the previous release's: plain tagged values, version-1 body refs.
    assert_eq!(first_value(&store, Space::Messages)[0], FORMAT_TAGGED);
    assert_eq!(
        &first_value(&store, Space::Bodies)[..3],
        &[FORMAT_TAGGED, 0, 1]
    );
    let schema: u32 = decode(
        &store
            .kv(Space::Meta)
            .get(SCHEMA_VERSION_KEY)
            .expect("meta")
            .expect("schema version"),
    )
    .expect("decode");
    assert_eq!(schema, SCHEMA_VERSION);
    let got = manifest_of(&store);
    for part in ["messages", "labels", "feed", "consumers", "account", "jobs"] {
        assert_eq!(got[part], want[part], "{part} differs after migration");
    }

    // A message arriving now: its record, body and feed event are written compressed.
    let msg = new_message();
    let raw = String::from_utf8(msg.raw.clone()).expect("utf-8");
    store
        .transaction(|tx| mirror::apply_fetched(tx, ACCOUNT, &msg, 1))
        .expect("store a new message");
    store.flush().expect("flush");
    drop(store);

    let store = Store::open(&data).expect("reopen");
    let key = mirror::record_key(ACCOUNT, &msg.id.0);
    let record = store
        .kv(Space::Messages)
        .get(&key)
        .expect("get")
        .expect("record");
    assert_eq!(record[0], FORMAT_COMPRESSED);
    // Since schema 6 the new message's body ref is in its record, not in the bodies tree.
    assert!(
        store.kv(Space::Bodies).get(&key).expect("get").is_none(),
        "no bodies key for a new message"
    );
    let stored = mirror::message(&store, ACCOUNT, &msg.id)
        .expect("read")
        .expect("the new message");
    assert!(stored.body.is_some(), "the record holds its body ref");
    assert_eq!(stored.headers.subject.as_deref(), Some("minutes"));
    assert_eq!(
        mirror::raw(&store, ACCOUNT, &msg.id)
            .expect("read")
            .as_deref(),
        Some(raw.as_bytes())
    );
    let got = manifest_of(&store);
    let mut messages = got["messages"].as_object().expect("messages").clone();
    assert!(messages.remove(&msg.id.0).is_some());
    assert_eq!(
        Value::Object(messages),
        want["messages"],
        "old messages intact"
    );
    let feed = got["feed"].as_array().expect("feed");
    let old_feed = want["feed"].as_array().expect("feed");
    assert_eq!(feed.len(), old_feed.len() + 1);
    assert_eq!(&feed[..old_feed.len()], &old_feed[..]);
    assert_eq!(feed[old_feed.len()]["kind"], "message.added");
}
