//! Unit tests of the durable mailbox: lease order, dedupe, nack backoff and dead letters,
//! requeue and clear, typed errors for corrupt values.

use super::layout::truncate_error;
use super::*;
use crate::store::Space;
use rand::SeedableRng;

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

fn keys(jobs: &[Job]) -> Vec<&str> {
    jobs.iter().map(|j| j.key.as_str()).collect()
}

#[test]
fn lease_highest_priority_first_fifo_within_priority() {
    let (_d, store) = open();
    let mb = store.mailbox("acct1/ingest");
    mb.enqueue(Priority::Backfill, "b1", b"").unwrap();
    mb.enqueue(Priority::Normal, "n1", b"").unwrap();
    mb.enqueue(Priority::RealTime, "r1", b"").unwrap();
    mb.enqueue(Priority::Backfill, "b2", b"").unwrap();
    mb.enqueue(Priority::RealTime, "r2", b"").unwrap();
    mb.enqueue(Priority::Normal, "n2", b"").unwrap();
    let first = mb.lease(3, 0).unwrap();
    assert_eq!(keys(&first), ["r1", "r2", "n1"]);
    let rest = mb.lease(10, 0).unwrap();
    assert_eq!(keys(&rest), ["n2", "b1", "b2"]);
    assert!(mb.lease(10, 0).unwrap().is_empty(), "all leased");
}

#[test]
fn mailboxes_are_isolated_even_when_names_share_a_prefix() {
    let (_d, store) = open();
    let a = store.mailbox("a");
    let ab = store.mailbox("ab");
    a.enqueue(Priority::Normal, "k", b"1").unwrap();
    ab.enqueue(Priority::Normal, "k", b"2").unwrap();
    assert_eq!(a.lease(10, 0).unwrap()[0].payload, b"1");
    assert_eq!(ab.lease(10, 0).unwrap()[0].payload, b"2");
    assert_eq!(a.depth().unwrap().leased, 1);
}

#[test]
fn enqueue_dedupes_by_key_while_pending_and_allows_after_ack() {
    let (_d, store) = open();
    let mb = store.mailbox("m");
    let id = match mb.enqueue(Priority::Normal, "k", b"1").unwrap() {
        EnqueueOutcome::Enqueued(id) => id,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        mb.enqueue(Priority::RealTime, "k", b"2").unwrap(),
        EnqueueOutcome::Duplicate(id)
    );
    let jobs = mb.lease(10, 0).unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].payload, b"1");
    // Still a duplicate while leased.
    assert_eq!(
        mb.enqueue(Priority::Normal, "k", b"3").unwrap(),
        EnqueueOutcome::Duplicate(id)
    );
    mb.ack(&jobs[0]).unwrap();
    let again = mb.enqueue(Priority::Normal, "k", b"4").unwrap();
    assert!(matches!(again, EnqueueOutcome::Enqueued(new) if new > id));
    assert_eq!(mb.depth().unwrap().pending, 1);
}

#[test]
fn release_gives_the_job_back_in_place() {
    let (_d, store) = open();
    let mb = store.mailbox("m");
    mb.enqueue(Priority::Normal, "a", b"").unwrap();
    mb.enqueue(Priority::Normal, "b", b"").unwrap();
    let jobs = mb.lease(2, 0).unwrap();
    mb.release(&jobs[0]);
    assert_eq!(keys(&mb.lease(5, 0).unwrap()), ["a"]);
    let other_handle = store.mailbox("m");
    assert!(
        other_handle.lease(5, 0).unwrap().is_empty(),
        "handles share leases"
    );
}

#[test]
fn nack_delays_with_jitter_then_dead_letters_with_last_error() {
    let (_d, store) = open();
    let mb = store.mailbox("m");
    let policy = RetryPolicy {
        base: Duration::from_secs(1),
        cap: Duration::from_secs(4),
        max_attempts: 3,
        ..RetryPolicy::default()
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    mb.enqueue(Priority::Normal, "k", b"p").unwrap();
    mb.enqueue(Priority::Backfill, "other", b"").unwrap();
    let mut now = 1_000_000;
    for attempt in 1..=2u32 {
        let job = mb.lease(1, now).unwrap().remove(0);
        assert_eq!(job.key, "k");
        assert_eq!(job.attempts, attempt - 1);
        let out = mb
            .nack_with_rng(&job, &format!("boom {attempt}"), &policy, now, &mut rng)
            .unwrap();
        let NackOutcome::Retry { not_before_ms } = out else {
            panic!("{out:?}")
        };
        let ceiling = policy.ceiling(attempt).as_millis() as u64;
        assert!(not_before_ms >= now && not_before_ms <= now + ceiling);
        assert_eq!(mb.depth().unwrap().delayed, 1);
        // Not due yet: the lower-priority job is leased instead, then given back.
        if not_before_ms > now {
            let other = mb.lease(5, not_before_ms - 1).unwrap();
            assert_eq!(keys(&other), ["other"]);
            mb.release(&other[0]);
            assert_eq!(mb.next_due_ms().unwrap(), Some(0));
        }
        // Still deduped while delayed.
        assert!(matches!(
            mb.enqueue(Priority::Normal, "k", b"x").unwrap(),
            EnqueueOutcome::Duplicate(id) if id == job.id
        ));
        now = not_before_ms;
    }
    let job = mb.lease(1, now).unwrap().remove(0);
    assert_eq!((job.key.as_str(), job.attempts), ("k", 2));
    assert_eq!(job.last_error.as_deref(), Some("boom 2"));
    let out = mb
        .nack_with_rng(&job, "final", &policy, now, &mut rng)
        .unwrap();
    assert_eq!(out, NackOutcome::DeadLettered);
    let dead = mb.dead_letters(10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 3);
    assert_eq!(dead[0].last_error.as_deref(), Some("final"));
    assert_eq!(dead[0].payload, b"p");
    let d = mb.depth().unwrap();
    assert_eq!((d.pending, d.leased, d.delayed, d.dead), (1, 0, 0, 1));
    // The key is free again once dead-lettered.
    assert!(matches!(
        mb.enqueue(Priority::Normal, "k", b"new").unwrap(),
        EnqueueOutcome::Enqueued(_)
    ));
}

#[test]
fn release_all_makes_every_leased_job_leasable_again() {
    let (_d, store) = open();
    let mb = store.mailbox("m");
    mb.enqueue(Priority::Normal, "a", b"").unwrap();
    mb.enqueue(Priority::Normal, "b", b"").unwrap();
    assert_eq!(mb.lease(5, 0).unwrap().len(), 2);
    mb.release_all();
    assert_eq!(keys(&store.mailbox("m").lease(5, 0).unwrap()), ["a", "b"]);
}

#[test]
fn nack_keeps_the_job_place_in_the_queue() {
    let (_d, store) = open();
    let mb = store.mailbox("m");
    mb.enqueue(Priority::Normal, "first", b"").unwrap();
    let job = mb.lease(1, 0).unwrap().remove(0);
    mb.enqueue(Priority::Normal, "second", b"").unwrap();
    let policy = RetryPolicy::default();
    let NackOutcome::Retry { not_before_ms } = mb.nack(&job, "e", &policy, 10).unwrap() else {
        panic!()
    };
    assert_eq!(mb.next_due_ms().unwrap(), Some(0), "'second' is ready");
    let got = mb.lease(5, not_before_ms).unwrap();
    assert_eq!(keys(&got), ["first", "second"]);
    mb.ack_many(&got).unwrap();
    assert_eq!(mb.next_due_ms().unwrap(), None);
    assert_eq!(mb.depth().unwrap(), QueueDepth::default());
}

#[test]
fn next_due_reports_the_earliest_delayed_job() {
    let (_d, store) = open();
    let mb = store.mailbox("m");
    mb.enqueue(Priority::Normal, "a", b"").unwrap();
    let job = mb.lease(1, 0).unwrap().remove(0);
    let policy = RetryPolicy {
        base: Duration::from_secs(10),
        cap: Duration::from_secs(10),
        max_attempts: 5,
        ..RetryPolicy::default()
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let NackOutcome::Retry { not_before_ms } = mb
        .nack_with_rng(&job, "e", &policy, 5_000, &mut rng)
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(mb.next_due_ms().unwrap(), Some(not_before_ms));
}

#[test]
fn nack_many_delays_a_whole_batch_in_one_go() {
    let (_d, store) = open();
    let mb = store.mailbox("m");
    for k in ["a", "b", "c"] {
        mb.enqueue(Priority::Normal, k, b"").unwrap();
    }
    let jobs = mb.lease(3, 0).unwrap();
    mb.ack(&jobs[2]).unwrap();
    let policy = RetryPolicy::default();
    let out = mb.nack_many(&jobs, "503", &policy, 1_000).unwrap();
    assert_eq!(out.len(), 2, "the acked job is skipped");
    assert!(out.iter().all(|(_, o)| matches!(
        o,
        NackOutcome::Retry { not_before_ms } if (1_000..=2_000).contains(not_before_ms)
    )));
    let d = mb.depth().unwrap();
    assert_eq!((d.pending, d.leased, d.delayed), (0, 0, 2));
    let again = mb.lease(5, 2_000).unwrap();
    assert_eq!(keys(&again), ["a", "b"]);
    assert!(
        again
            .iter()
            .all(|j| j.attempts == 1 && j.last_error.as_deref() == Some("503"))
    );
}

#[test]
fn nack_of_an_acked_job_is_job_not_found() {
    let (_d, store) = open();
    let mb = store.mailbox("m");
    mb.enqueue(Priority::Normal, "a", b"").unwrap();
    let job = mb.lease(1, 0).unwrap().remove(0);
    mb.ack(&job).unwrap();
    mb.ack(&job).unwrap(); // idempotent
    let err = mb.nack(&job, "e", &RetryPolicy::default(), 0).unwrap_err();
    assert!(matches!(err, StoreError::JobNotFound { .. }), "{err:?}");
}

#[test]
fn requeue_dead_resets_attempts_and_skips_keys_pending_again() {
    let (_d, store) = open();
    let mb = store.mailbox("m");
    let policy = RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    };
    mb.enqueue(Priority::Normal, "a", b"").unwrap();
    mb.enqueue(Priority::Normal, "b", b"").unwrap();
    for job in mb.lease(2, 0).unwrap() {
        assert_eq!(
            mb.nack(&job, "e", &policy, 0).unwrap(),
            NackOutcome::DeadLettered
        );
    }
    mb.enqueue(Priority::Normal, "b", b"fresh").unwrap();
    assert_eq!(mb.requeue_dead().unwrap(), 1);
    let jobs = mb.lease(10, 0).unwrap();
    assert_eq!(keys(&jobs), ["a", "b"]);
    assert_eq!(jobs[0].attempts, 0);
    assert_eq!(jobs[1].payload, b"fresh");
    assert_eq!(mb.depth().unwrap().dead, 0);
}

#[test]
fn clear_removes_everything_of_one_mailbox_only() {
    let (_d, store) = open();
    let mb = store.mailbox("m");
    let other = store.mailbox("other");
    other.enqueue(Priority::Normal, "x", b"").unwrap();
    for i in 0..1200 {
        mb.enqueue(Priority::Normal, &format!("k{i}"), b"").unwrap();
    }
    let leased = mb.lease(2, 0).unwrap();
    mb.nack(&leased[0], "e", &RetryPolicy::default(), 0)
        .unwrap();
    mb.nack(
        &leased[1],
        "e",
        &RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        },
        0,
    )
    .unwrap();
    mb.lease(3, 0).unwrap();
    mb.clear().unwrap();
    assert_eq!(mb.depth().unwrap(), QueueDepth::default());
    assert!(matches!(
        mb.enqueue(Priority::Normal, "k5", b"").unwrap(),
        EnqueueOutcome::Enqueued(_)
    ));
    assert_eq!(other.depth().unwrap().pending, 1);
}

#[test]
fn corrupt_job_value_is_a_typed_error() {
    let (_d, store) = open();
    let mb = store.mailbox("m");
    mb.enqueue(Priority::Normal, "a", b"").unwrap();
    let jobs = store.internal(Internal::Jobs);
    let (k, _) = jobs.iter().next().unwrap().unwrap();
    jobs.insert(k, &b"\x01garbage-that-is-not-a-record"[..])
        .unwrap();
    let err = mb.lease(1, 0).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
}

#[test]
fn error_text_is_truncated_on_a_char_boundary() {
    let long = "é".repeat(MAX_ERROR_LEN);
    let t = truncate_error(&long);
    assert!(t.len() <= MAX_ERROR_LEN + '…'.len_utf8());
    assert!(t.ends_with('…'));
}

#[test]
fn counted_depth_equals_a_scan_through_every_operation_and_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let policy = RetryPolicy {
        base: Duration::from_millis(1),
        cap: Duration::from_millis(1),
        max_attempts: 3,
        ..RetryPolicy::default()
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let check = |mb: &DurableMailbox, step: &str| {
        assert_eq!(
            mb.depth().unwrap(),
            mb.depth_scanned().unwrap(),
            "{} after {step}",
            mb.name()
        );
    };
    {
        let store = Store::open(dir.path()).unwrap();
        let a = store.mailbox("acct/ingest");
        let b = store.mailbox("acct/ingestx");
        for round in 0..40u64 {
            let mb = if round % 3 == 0 { &b } else { &a };
            for i in 0..5 {
                // Keys repeat across rounds: some enqueues are duplicates.
                mb.enqueue(Priority::Normal, &format!("k{}", (round + i) % 17), b"")
                    .unwrap();
            }
            check(mb, "enqueue");
            let now = now_ms() + round * 10;
            let jobs = mb.lease(4, now).unwrap();
            check(mb, "lease");
            for (i, job) in jobs.iter().enumerate() {
                match (round as usize + i) % 3 {
                    0 => mb.ack(job).unwrap(),
                    1 => {
                        mb.nack_with_rng(job, "boom", &policy, now, &mut rng)
                            .unwrap();
                    }
                    _ => mb.release(job),
                }
                check(mb, "ack / nack / release");
            }
            if let Some(job) = jobs.first() {
                mb.ack(job).unwrap(); // acking a job that may be gone
                check(mb, "a second ack");
            }
            if round % 10 == 9 {
                mb.requeue_dead().unwrap();
                check(mb, "requeue");
            }
        }
        std::thread::sleep(Duration::from_millis(5));
        a.lease(100, now_ms() + 10_000).unwrap(); // promotes every delayed job
        check(&a, "promotion");
        a.release_all();
        check(&a, "release_all");
        assert!(a.depth().unwrap().pending > 0, "the test left work");
        b.clear().unwrap();
        assert_eq!(b.depth().unwrap(), QueueDepth::default());
        store.flush().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let a = store.mailbox("acct/ingest");
    check(&a, "a reopen");
}

#[test]
fn a_depth_read_after_a_commit_is_seen_includes_the_jobs_it_queued() {
    // A writer moves a "cursor" and queues a job in one transaction; a reader that sees the
    // cursor and then reads the depth must never find fewer jobs than the cursor says (the
    // status reply's "caught up, nothing missing" rests on this).
    let (_d, store) = open();
    let rounds = 3000u64;
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for i in 1..=rounds {
                store
                    .transaction(|tx| {
                        tx.enqueue("acct/ingest", Priority::Normal, &format!("k{i}"), b"", 0)?;
                        tx.insert(Space::Meta, b"test-cursor", &i.to_be_bytes())
                    })
                    .unwrap();
            }
        })
    };
    let mb = store.mailbox("acct/ingest");
    let mut seen = 0;
    while seen < rounds {
        let Some(v) = store.kv(Space::Meta).get(b"test-cursor").unwrap() else {
            continue;
        };
        seen = u64::from_be_bytes(v.as_ref().try_into().unwrap());
        let depth = mb.depth().unwrap().pending as u64;
        assert!(depth >= seen, "cursor {seen} but only {depth} jobs counted");
    }
    writer.join().unwrap();
}
