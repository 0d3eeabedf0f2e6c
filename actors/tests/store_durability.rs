//! Durability of the store through reopen and through a real process crash (`abort()` with no
//! flush, the in-process stand-in for kill -9), atomicity of a commit point (effects + job ack +
//! feed event), and the cross-process lock.
//!
//! The crash and lock tests re-run this test binary as a child (`--exact <child test>`) with a
//! role in the environment; without that variable the child tests do nothing.

use std::path::Path;
use std::process::Command;

use mailsync_actors::feed::NewEvent;
use mailsync_actors::mailbox::{EnqueueOutcome, Job, Priority};
use mailsync_actors::store::{Space, Store, StoreError, TxError};

const ROLE: &str = "MAILSYNC_STORE_TEST_ROLE";
const DIR: &str = "MAILSYNC_STORE_TEST_DIR";

fn event(key: &str) -> NewEvent {
    NewEvent {
        account: "acct1".into(),
        kind: "message.added".into(),
        key: key.into(),
        payload: b"{}".to_vec(),
        ts_ms: 1,
    }
}

fn run_child(test: &str, role: &str, dir: &Path) -> std::process::Output {
    Command::new(std::env::current_exe().expect("test binary path"))
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(DIR, dir)
        .output()
        .expect("spawn the test binary")
}

/// One commit point as Ingest does it: effect + event + ack of the job that asked, and a
/// follow-up job for another actor.
fn commit_point(store: &Store, job: &Job, i: u32) -> Result<(), StoreError> {
    store.transaction(|tx| {
        tx.insert(Space::Messages, format!("m{i:04}").as_bytes(), b"body")?;
        tx.append_event(event(&format!("e{i:04}")))?;
        tx.ack(job)?;
        tx.enqueue("acct1/sink", Priority::Normal, &format!("s{i:04}"), b"", 0)?;
        Ok(())
    })
}

#[test]
fn reopen_makes_leased_unacked_jobs_pending_again() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let mb = store.mailbox("acct1/ingest");
        for key in ["a", "b", "c", "d"] {
            mb.enqueue(Priority::Normal, key, key.as_bytes()).unwrap();
        }
        let jobs = mb.lease(3, 0).unwrap();
        mb.ack(&jobs[0]).unwrap(); // "a" done
        store.flush().unwrap();
        // "b" and "c" stay leased when the daemon stops.
    }
    let store = Store::open(dir.path()).unwrap();
    let mb = store.mailbox("acct1/ingest");
    let depth = mb.depth().unwrap();
    assert_eq!((depth.pending, depth.leased), (3, 0));
    let jobs = mb.lease(10, 0).unwrap();
    let keys: Vec<&str> = jobs.iter().map(|j| j.key.as_str()).collect();
    assert_eq!(keys, ["b", "c", "d"], "replayed in their original order");
    assert!(matches!(
        mb.enqueue(Priority::Normal, "b", b"").unwrap(),
        EnqueueOutcome::Duplicate(_)
    ));
}

#[test]
fn commit_point_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let ingest = store.mailbox("acct1/ingest");
    ingest.enqueue(Priority::Normal, "job", b"").unwrap();
    let job = ingest.lease(1, 0).unwrap().remove(0);

    let err = store
        .transaction(|tx| {
            tx.insert(Space::Messages, b"m1", b"body")?;
            tx.append_event(event("e1"))?;
            tx.ack(&job)?;
            Err::<(), _>(TxError::abort("the batch request failed"))
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::Aborted(_)), "{err:?}");
    store.flush().unwrap();
    assert!(store.kv(Space::Messages).get(b"m1").unwrap().is_none());
    assert_eq!(store.feed().last_seq().unwrap(), 0);
    ingest.release(&job);
    assert_eq!(ingest.lease(1, 0).unwrap(), vec![job.clone()]);

    store
        .transaction(|tx| {
            tx.insert(Space::Messages, b"m1", b"body")?;
            tx.append_event(event("e1"))?;
            tx.ack(&job)?;
            Ok(())
        })
        .unwrap();
    ingest.release(&job);
    store.flush().unwrap();
    assert!(store.kv(Space::Messages).get(b"m1").unwrap().is_some());
    assert_eq!(store.feed().read_after(0, 10).unwrap().len(), 1);
    assert_eq!(ingest.depth().unwrap().pending, 0);
}

#[test]
fn second_daemon_process_gets_locked_error() {
    let dir = tempfile::tempdir().unwrap();
    let _store = Store::open(dir.path()).unwrap();
    let out = run_child("child_try_open", "try_open", dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The child runs exactly one test, which passes only on a Locked error naming the dir.
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child: {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn child_try_open() {
    if std::env::var(ROLE).as_deref() != Ok("try_open") {
        return;
    }
    let dir = std::env::var(DIR).unwrap();
    match Store::open(Path::new(&dir)) {
        Err(e @ StoreError::Locked { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("another mailsync daemon is using") && msg.contains(&dir),
                "{msg}"
            );
        }
        other => panic!("expected Locked, got {other:?}"),
    }
}

const CRASH_JOBS: u32 = 120;
const FLUSH_EVERY: u32 = 25;
/// The child leaves at least this many commits after its last flush.
const UNFLUSHED_TAIL: u32 = 30;
/// Commits the child made durable before dying.
const LAST_FLUSH: u32 = (CRASH_JOBS - UNFLUSHED_TAIL) / FLUSH_EVERY * FLUSH_EVERY;

#[test]
fn crash_without_flush_keeps_each_commit_point_whole() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let mb = store.mailbox("acct1/ingest");
        for i in 0..CRASH_JOBS {
            mb.enqueue(Priority::Normal, &format!("j{i:04}"), &i.to_be_bytes())
                .unwrap();
        }
        store.flush().unwrap();
    }
    let out = run_child("child_crash_writer", "crash_writer", dir.path());
    assert!(
        !out.status.success(),
        "the child must die by abort(): {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    let store = Store::open(dir.path()).unwrap();
    let mb = store.mailbox("acct1/ingest");
    let sink = store.mailbox("acct1/sink");
    let remaining: Vec<String> = mb
        .lease(1000, 0)
        .unwrap()
        .into_iter()
        .map(|j| j.key)
        .collect();
    let sink_jobs: Vec<String> = sink
        .lease(1000, 0)
        .unwrap()
        .into_iter()
        .map(|j| j.key)
        .collect();
    store.flush().unwrap();
    let events: Vec<String> = store
        .feed()
        .read_after(0, 1000)
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    let mut done = 0;
    for i in 0..CRASH_JOBS {
        let message = store
            .kv(Space::Messages)
            .get(format!("m{i:04}").as_bytes())
            .unwrap()
            .is_some();
        let event = events.contains(&format!("e{i:04}"));
        let acked = !remaining.contains(&format!("j{i:04}"));
        let followup = sink_jobs.contains(&format!("s{i:04}"));
        assert!(
            message == event && event == acked && acked == followup,
            "commit point {i} is partial: message {message} event {event} acked {acked} follow-up {followup}"
        );
        done += u32::from(message);
    }
    // Everything up to the child's last flush survived, and commits are a prefix.
    assert!(
        done >= LAST_FLUSH,
        "lost flushed commits: {done} < {LAST_FLUSH}"
    );
    assert_eq!(events.len() as u32, done);
    let seqs: Vec<u64> = store
        .feed()
        .read_after(0, 1000)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, (1..=u64::from(done)).collect::<Vec<_>>());
}

#[test]
fn child_crash_writer() {
    if std::env::var(ROLE).as_deref() != Ok("crash_writer") {
        return;
    }
    let dir = std::env::var(DIR).unwrap();
    let store = Store::open(Path::new(&dir)).unwrap();
    let mb = store.mailbox("acct1/ingest");
    let jobs = mb.lease(CRASH_JOBS as usize, 0).unwrap();
    // Flush after every FLUSH_EVERY commits up to LAST_FLUSH, leave the tail unflushed, then die like kill -9 (no destructors, no sled shutdown flush).
    for (i, job) in jobs.iter().enumerate() {
        let i = u32::try_from(i).unwrap();
        commit_point(&store, job, i).unwrap();
        mb.release(job);
        if (i + 1) % FLUSH_EVERY == 0 && i < LAST_FLUSH {
            store.flush().unwrap();
        }
    }
    std::process::abort();
}
