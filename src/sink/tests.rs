//! End-to-end tests of the sinks inside one process: a real store and mirror, the tasks
//! started by [`super::spawn_all`], a Maildir in a temp dir, and webhook receivers on
//! 127.0.0.1 (one healthy, one failing, one that never answers).

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use mailsync_actors::mirror;
use mailsync_actors::model::{FetchedMessage, HeaderSummary, HistoryId, LabelId, MessageId};
use mailsync_actors::store::Store;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::*;
use crate::sink::webhook::{SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature};

const SECRET: &str = "topsecret-for-tests";

fn config(dir: &Path, extra: &str) -> Config {
    let d = dir.display();
    let toml = format!(
        r#"data_dir = "{d}/data"
socket_path = "{d}/sock"

[retry]
base_ms = 10
cap_ms = 40
max_attempts = 3

[maildir]
root = "{d}/mail"

[[accounts]]
id = "a"
kind = "test"
[accounts.test]
messages = 1

[[accounts]]
id = "b"
kind = "test"
[accounts.test]
messages = 1

{extra}
"#
    );
    match crate::config::load_str_with_env(&toml, "/tmp/sink-test.toml", [("HOME", "/tmp")]) {
        Ok(c) => c,
        Err(e) => panic!("bad test config: {e}"),
    }
}

fn fetched(id: &str, labels: &[&str]) -> FetchedMessage {
    FetchedMessage {
        id: MessageId(id.into()),
        thread_id: format!("th-{id}"),
        label_ids: labels.iter().map(|l| LabelId((*l).into())).collect(),
        history_id: HistoryId(1),
        internal_date_ms: 0,
        raw: format!("Subject: {id}\r\nMessage-ID: <{id}@test>\r\n\r\nbody {id}\r\n").into_bytes(),
        headers: HeaderSummary::default(),
    }
}

fn add(store: &Store, account: &str, msg: &FetchedMessage) {
    store
        .transaction(|tx| mirror::apply_fetched(tx, account, msg, 1))
        .unwrap();
    store.flush().unwrap();
}

fn relabel(store: &Store, account: &str, id: &str, added: &[&str], removed: &[&str], disc: &str) {
    let added: Vec<LabelId> = added.iter().map(|l| LabelId((*l).into())).collect();
    let removed: Vec<LabelId> = removed.iter().map(|l| LabelId((*l).into())).collect();
    store
        .transaction(|tx| {
            mirror::apply_label_delta(
                tx,
                account,
                &MessageId(id.into()),
                &added,
                &removed,
                disc,
                2,
            )
        })
        .unwrap();
    store.flush().unwrap();
}

fn delete(store: &Store, account: &str, id: &str) {
    store
        .transaction(|tx| mirror::apply_deleted(tx, account, &MessageId(id.into()), 3))
        .unwrap();
    store.flush().unwrap();
}

fn cur_names(root: &Path, account: &str) -> BTreeSet<String> {
    std::fs::read_dir(root.join(account).join("cur"))
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a receiver saw: (verified signature?, body JSON) per request.
#[derive(Default)]
struct Seen {
    requests: Vec<(bool, serde_json::Value)>,
}

type Shared = Arc<Mutex<Seen>>;

async fn receive(
    State((seen, status)): State<(Shared, StatusCode)>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let ts = headers
        .get(TIMESTAMP_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let sig = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ok = verify_signature(SECRET.as_bytes(), ts, &body, sig, now_ms() / 1000, 300).is_ok();
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    seen.lock().unwrap().requests.push((ok, json));
    status
}

async fn receiver(status: StatusCode) -> (String, Shared) {
    let seen: Shared = Arc::default();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state((Arc::clone(&seen), status));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), seen)
}

/// Accepts connections and never answers.
async fn black_hole() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    format!("http://{addr}/hook")
}

fn delivered_keys(seen: &Shared) -> (usize, HashSet<String>, bool) {
    let seen = seen.lock().unwrap();
    let mut keys = HashSet::new();
    let mut all_signed = true;
    for (ok, body) in &seen.requests {
        all_signed &= *ok;
        for ev in body["events"].as_array().into_iter().flatten() {
            if let Some(k) = ev["key"].as_str() {
                keys.insert(k.to_string());
            }
        }
    }
    (seen.requests.len(), keys, all_signed)
}

#[test]
fn webhook_consumers_are_named_by_the_configured_name() {
    assert_eq!(webhook_sink_name("indexer"), "webhook:indexer");
}

#[test]
fn deadletter_keys_sort_by_seq_under_the_sink_prefix() {
    let a = deadletter_key("webhook:0", 2);
    let b = deadletter_key("webhook:0", 10);
    assert!(a < b);
    assert!(a.starts_with(b"deadletter/webhook:0/"));
    assert!(!deadletter_key("webhook:1", 1).starts_with(&deadletter_prefix("webhook:0")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_deliver_history_and_new_events_independently() {
    let dir = tempfile::tempdir().unwrap();
    let (ok_url, ok_seen) = receiver(StatusCode::OK).await;
    let (b_url, b_seen) = receiver(StatusCode::OK).await;
    let (bad_url, bad_seen) = receiver(StatusCode::INTERNAL_SERVER_ERROR).await;
    let hole = black_hole().await;
    let cfg = config(
        dir.path(),
        &format!(
            r#"
[[webhooks]]
name = "hook1"
url = "{hole}"
[[webhooks]]
name = "hook2"
url = "{ok_url}"
secret = {{ value = "{SECRET}" }}
[[webhooks]]
name = "hook3"
url = "{b_url}"
secret = {{ value = "{SECRET}" }}
accounts = ["b"]
[[webhooks]]
name = "hook4"
url = "{bad_url}"
max_attempts = 2
"#
        ),
    );
    let store = Store::open(&dir.path().join("data")).unwrap();
    // History from before the sinks existed: they must see it.
    add(&store, "a", &fetched("m1", &["INBOX", "UNREAD"]));
    add(&store, "a", &fetched("m2", &["INBOX", "STARRED"]));
    add(&store, "b", &fetched("m3", &["INBOX", "DRAFT", "UNREAD"]));

    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    spawn_all(&store, &cfg, cancel.clone(), &tasks);
    let root = dir.path().join("mail");
    eventually("maildir has the history", || {
        cur_names(&root, "a").len() == 2 && cur_names(&root, "b").len() == 1
    })
    .await;
    assert_eq!(
        cur_names(&root, "a"),
        BTreeSet::from(["m1.mailsync:2,".to_string(), "m2.mailsync:2,FS".to_string()])
    );
    assert_eq!(
        cur_names(&root, "b"),
        BTreeSet::from(["m3.mailsync:2,D".to_string()])
    );

    // New events after start: read m1, delete m2, a new message.
    relabel(&store, "a", "m1", &["STARRED"], &["UNREAD"], "h2");
    delete(&store, "a", "m2");
    add(&store, "b", &fetched("m4", &["INBOX"]));
    let last = store.feed().last_seq().unwrap();
    eventually("maildir caught up", || {
        store.feed().consumer_cursor(MAILDIR_SINK).unwrap() == Some(last)
    })
    .await;
    assert_eq!(
        cur_names(&root, "a"),
        BTreeSet::from(["m1.mailsync:2,FS".to_string()])
    );
    assert_eq!(
        cur_names(&root, "b"),
        BTreeSet::from(["m3.mailsync:2,D".to_string(), "m4.mailsync:2,S".to_string()])
    );

    // webhook:hook2 (all accounts) saw every key, signed; webhook:hook3 only account b.
    let all_keys: HashSet<String> = store
        .feed()
        .read_after(0, 1000)
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    eventually("webhook:hook2 caught up", || {
        store.feed().consumer_cursor("webhook:hook2").unwrap() == Some(last)
            && store.feed().consumer_cursor("webhook:hook3").unwrap() == Some(last)
    })
    .await;
    let (_, keys, signed) = delivered_keys(&ok_seen);
    assert!(signed, "every delivery verifies");
    assert_eq!(keys, all_keys);
    let (_, b_keys, b_signed) = delivered_keys(&b_seen);
    assert!(b_signed);
    let b_all: HashSet<String> = all_keys
        .iter()
        .filter(|k| k.contains(":b:"))
        .cloned()
        .collect();
    assert!(!b_all.is_empty());
    assert_eq!(b_keys, b_all, "webhook:hook3 gets account b only");

    // webhook:hook4 answers 500: its batches are dead-lettered after 2 attempts and it moves on.
    eventually("webhook:hook4 dead-lettered and moved on", || {
        store.feed().consumer_cursor("webhook:hook4").unwrap() == Some(last)
    })
    .await;
    assert!(bad_seen.lock().unwrap().requests.len() >= 2);
    let letters = webhook::dead_letters(&store, "webhook:hook4").unwrap();
    assert!(!letters.is_empty());
    assert!(
        letters
            .iter()
            .all(|l| l.attempts == 2 && l.last_error.contains("500"))
    );
    let dead_events: u64 = letters.iter().map(|l| l.events).sum();
    assert_eq!(dead_events, all_keys.len() as u64);

    // The black hole (webhook:hook1) is stuck on its first batch and held nobody up.
    let status = sink_status(&store, &cfg);
    let by_name = |n: &str| status.iter().find(|s| s.name == n).cloned().unwrap();
    assert_eq!(status.len(), 5);
    assert_eq!(by_name("maildir").lag, 0);
    assert_eq!(by_name("webhook:hook1").cursor, Some(0));
    assert_eq!(by_name("webhook:hook1").lag, last);
    assert_eq!(by_name("webhook:hook2").lag, 0);
    assert_eq!(by_name("webhook:hook4").dead_letters, letters.len() as u64);
    assert_eq!(by_name("webhook:hook4").dead_lettered_events, dead_events);
    assert!(by_name("webhook:hook4").last_error.is_some());
    let json = serde_json::to_string(&status).unwrap();
    assert!(!json.contains(SECRET));

    cancel.cancel();
    tasks.close();
    tokio::time::timeout(Duration::from_secs(10), tasks.wait())
        .await
        .expect("every sink stops on cancel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maildir_reconciles_at_start_and_removed_webhooks_are_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let store = Store::open(&dir.path().join("data")).unwrap();
    add(&store, "a", &fetched("m1", &["INBOX"]));
    store.feed().register_consumer("webhook:7", 0).unwrap();
    store.feed().register_consumer("socket:x", 0).unwrap();
    // The maildir cursor is already past every event (e.g. the history was pruned while the
    // Maildir was deleted by hand): only the start-up reconcile can bring m1 back, and it
    // removes a stray file of a message that is not mirrored.
    store.feed().register_consumer(MAILDIR_SINK, 1).unwrap();
    let md = maildir::Maildir::open(dir.path().join("mail/a")).unwrap();
    std::fs::write(md.cur().join("gone.mailsync:2,S"), b"x").unwrap();
    std::fs::write(md.cur().join("foreign-file:2,S"), b"x").unwrap();

    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    spawn_all(&store, &cfg, cancel.clone(), &tasks);
    let root = dir.path().join("mail");
    eventually("reconciled", || {
        cur_names(&root, "a")
            == BTreeSet::from([
                "m1.mailsync:2,S".to_string(),
                "foreign-file:2,S".to_string(),
            ])
    })
    .await;
    let names: Vec<String> = store
        .feed()
        .consumers()
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(!names.contains(&"webhook:7".to_string()), "{names:?}");
    assert!(names.contains(&"socket:x".to_string()), "{names:?}");
    cancel.cancel();
    tasks.close();
    tokio::time::timeout(Duration::from_secs(10), tasks.wait())
        .await
        .expect("stops");
}

#[test]
fn replayed_history_converges_to_the_mirror() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("data")).unwrap();
    add(&store, "a", &fetched("gone", &["INBOX"]));
    add(&store, "a", &fetched("kept", &["INBOX", "UNREAD"]));
    relabel(&store, "a", "kept", &["STARRED"], &[], "h1");
    delete(&store, "a", "gone");
    let events = store.feed().read_after(0, 100).unwrap();
    let root = dir.path().join("mail");
    let mut w = maildir::MaildirWriter::new(store.clone(), root.clone());
    // The whole history, twice (a crash before the ack replays it): the added event of a
    // message deleted since writes nothing, and the kept one is written once with its
    // current flags.
    for _ in 0..2 {
        assert_eq!(w.apply_batch(&events).unwrap(), events.last().unwrap().seq);
        assert_eq!(
            cur_names(&root, "a"),
            BTreeSet::from(["kept.mailsync:2,F".to_string()])
        );
    }
    // Replaying only the old added event does not undo the newer flags.
    w.apply_batch(&events[1..2]).unwrap();
    assert_eq!(
        cur_names(&root, "a"),
        BTreeSet::from(["kept.mailsync:2,F".to_string()])
    );
}

#[test]
fn a_batch_of_new_files_is_committed_together_and_reconcile_stages_in_rounds() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("data")).unwrap();
    for i in 0..40 {
        add(
            &store,
            "a",
            &fetched(&format!("m{i:02}"), &["INBOX", "UNREAD"]),
        );
    }
    relabel(&store, "a", "m05", &["STARRED"], &[], "h1");
    delete(&store, "a", "m07");
    let events = store.feed().read_after(0, 100).unwrap();
    let root = dir.path().join("mail");
    let mut w = maildir::MaildirWriter::new(store.clone(), root.clone());
    w.apply_batch(&events).unwrap();
    let names = cur_names(&root, "a");
    assert_eq!(names.len(), 39, "{names:?}");
    assert!(names.contains("m05.mailsync:2,F"), "{names:?}");
    assert!(names.contains("m00.mailsync:2,"), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("m07.")), "{names:?}");
    let tmp: Vec<_> = std::fs::read_dir(root.join("a/tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "nothing left in tmp/: {tmp:?}");
    let raw = std::fs::read(root.join("a/cur/m12.mailsync:2,")).unwrap();
    assert!(String::from_utf8_lossy(&raw).contains("body m12"));

    // A Maildir removed by hand is rebuilt by the start-up reconcile, more files than one
    // staging round.
    for i in 40..260 {
        add(&store, "a", &fetched(&format!("m{i:03}"), &["INBOX"]));
    }
    std::fs::remove_dir_all(root.join("a")).unwrap();
    let mut w = maildir::MaildirWriter::new(store.clone(), root.clone());
    let report = w.reconcile("a", &CancellationToken::new()).unwrap();
    assert_eq!(report.written, 259);
    assert_eq!(cur_names(&root, "a").len(), 259);
    assert!(
        std::fs::read_dir(root.join("a/tmp"))
            .unwrap()
            .next()
            .is_none()
    );
}
