//! Single-actor tests of Ingest against a fake [`SyncSource`], on tokio's paused clock: an
//! outage of any length never dead-letters anything (production retry defaults) and the child
//! reports `degraded` then `recovered`; a message malformed on every fetch is dead-lettered
//! after exactly the policy's attempts while the rest of the batch goes through.

use crate::backoff::{RestartPolicy, RetryPolicy};
use crate::error::{ApiError, SyncError};
use crate::ingest::Ingest;
use crate::jobs::{self, ChildKind};
use crate::mailbox::{Job, Priority};
use crate::model::AccountId;
use crate::report::ChildReport;
use crate::source::{
    BackfillNext, IncrementalPage, IngestBatch, SourceCx, SourceFuture, SourceKind, StartState,
    SyncSource,
};
use crate::spec::{AccountSpec, ChildArgs, mailbox_name, now_ms};
use crate::store::{Store, StoreError};
use ractor::Actor;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Fails the first `outage_calls` whole batches with a 503; after that records every job but
/// `poisoned`, which fails as malformed every time.
struct Fake {
    outage_calls: u32,
    poisoned: Option<&'static str>,
    calls: AtomicU32,
}

impl SyncSource for Fake {
    fn kind(&self) -> SourceKind {
        SourceKind::Test
    }
    fn ensure_jobs(&self, _: &SourceCx<'_>) -> Result<StartState, StoreError> {
        Ok(StartState::Running)
    }
    fn request_resync(&self, _: &SourceCx<'_>) -> Result<(), StoreError> {
        Ok(())
    }
    fn incremental_ready(&self, _: &SourceCx<'_>) -> Result<bool, StoreError> {
        Ok(false)
    }
    fn incremental_page<'a>(
        &'a self,
        _: &'a SourceCx<'a>,
        _: &'a [Job],
    ) -> SourceFuture<'a, IncrementalPage> {
        Box::pin(async { Ok(IncrementalPage::default()) })
    }
    fn backfill_step<'a>(
        &'a self,
        _: &'a SourceCx<'a>,
        _: &'a Job,
    ) -> SourceFuture<'a, BackfillNext> {
        Box::pin(async { Ok(BackfillNext::Finished) })
    }
    fn ingest_batch<'a>(
        &'a self,
        cx: &'a SourceCx<'a>,
        jobs: &'a [Job],
    ) -> SourceFuture<'a, IngestBatch> {
        Box::pin(async move {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if n < self.outage_calls {
                return Err(SyncError::Api(ApiError::Transient("HTTP 503".into())));
            }
            let (bad, good): (Vec<Job>, Vec<Job>) = jobs
                .iter()
                .cloned()
                .partition(|j| Some(jobs::ingest_item(j).as_str()) == self.poisoned);
            cx.store
                .transaction(|tx| {
                    for j in &good {
                        tx.ack(j)?;
                    }
                    Ok(())
                })
                .map_err(|e| SyncError::Store(e.to_string()))?;
            cx.store
                .flush()
                .map_err(|e| SyncError::Store(e.to_string()))?;
            Ok(IngestBatch {
                added: good.len() as u64,
                done: good,
                failed: bad
                    .into_iter()
                    .map(|j| (j, ApiError::Malformed("not a message".into())))
                    .collect(),
                retry_now: Vec::new(),
            })
        })
    }
    fn cursor(&self, _: &SourceCx<'_>) -> Option<String> {
        None
    }
}

struct Run {
    _dir: tempfile::TempDir,
    store: Store,
    account: AccountId,
    reports: tokio::sync::mpsc::UnboundedReceiver<ChildReport>,
    fake: Arc<Fake>,
}

async fn start(fake: Fake, retry: RetryPolicy, items: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let account = AccountId("t".into());
    store
        .transaction(|tx| {
            for item in items {
                jobs::enqueue_ingest_tx(tx, &account, item, Priority::Backfill, now_ms())?;
            }
            Ok(())
        })
        .unwrap();
    store.flush().unwrap();
    let fake = Arc::new(fake);
    let spec = AccountSpec {
        id: account.clone(),
        kind: SourceKind::Test,
        source: fake.clone(),
        poll_interval: Duration::from_secs(60),
        batch_size: 50,
        retry,
        restart: RestartPolicy::default(),
        fingerprint: String::new(),
        push_watch: None,
    };
    let (parent, reports) = crate::test_support::reporter().await;
    let args = ChildArgs {
        spec,
        store: store.clone(),
        parent,
    };
    let (_actor, _) = Actor::spawn(None, Ingest, args).await.unwrap();
    Run {
        _dir: dir,
        store,
        account,
        reports,
        fake,
    }
}

impl Run {
    fn depth(&self) -> crate::mailbox::QueueDepth {
        self.store
            .mailbox(&mailbox_name(&self.account, ChildKind::Ingest))
            .depth()
            .unwrap()
    }

    /// Waits until the queue holds only `dead` dead jobs, looking every `step`.
    async fn drained(&self, dead: usize, step: Duration) {
        for _ in 0..20_000 {
            let d = self.depth();
            if d.pending + d.leased + d.delayed == 0 && d.dead == dead {
                return;
            }
            tokio::time::sleep(step).await;
        }
        panic!("queue never drained: {:?}", self.depth());
    }
}

#[tokio::test(start_paused = true)]
async fn a_long_outage_dead_letters_nothing_and_reports_degraded_then_recovered() {
    let retry = RetryPolicy::default();
    // Far more failed calls than the policy's attempts: each would have counted before.
    let outage_calls = retry.max_attempts * 10;
    let mut run = start(
        Fake {
            outage_calls,
            poisoned: None,
            calls: AtomicU32::new(0),
        },
        retry,
        &["a", "b", "c"],
    )
    .await;
    run.drained(0, Duration::from_secs(1)).await;
    assert_eq!(run.fake.calls.load(Ordering::SeqCst), outage_calls + 1);
    let mut seen = Vec::new();
    while let Ok(r) = run.reports.try_recv() {
        match r {
            ChildReport::Degraded { child, reason } => {
                assert_eq!(child, ChildKind::Ingest);
                assert!(reason.contains("503"), "{reason}");
                seen.push("degraded");
            }
            ChildReport::Recovered { .. } => seen.push("recovered"),
            _ => {}
        }
    }
    assert_eq!(seen.first(), Some(&"degraded"));
    assert_eq!(seen.last(), Some(&"recovered"));
}

#[tokio::test(start_paused = true)]
async fn an_outage_waits_with_capped_backoff_instead_of_hammering() {
    let retry = RetryPolicy::default();
    let run = start(
        Fake {
            outage_calls: u32::MAX,
            poisoned: None,
            calls: AtomicU32::new(0),
        },
        retry.clone(),
        &["a"],
    )
    .await;
    // Ten virtual minutes of outage: the calls are spaced by the jittered backoff (mean
    // ceiling/2 = 15 s once capped), never a tight loop, and never more than a few dozen.
    tokio::time::sleep(Duration::from_secs(600)).await;
    let calls = run.fake.calls.load(Ordering::SeqCst);
    assert!((10..=600).contains(&calls), "{calls} calls in 10 minutes");
    let d = run.depth();
    assert_eq!((d.dead, d.delayed), (0, 0), "nothing counted: {d:?}");
}

#[tokio::test]
async fn a_message_malformed_every_time_is_dead_after_the_policy_attempts() {
    // Production attempts; delays shortened (the mailbox's retry times are wall-clock).
    let retry = RetryPolicy {
        base: Duration::from_millis(1),
        cap: Duration::from_millis(4),
        ..RetryPolicy::default()
    };
    let attempts = retry.max_attempts;
    let run = start(
        Fake {
            outage_calls: 0,
            poisoned: Some("bad"),
            calls: AtomicU32::new(0),
        },
        retry,
        &["a", "bad", "b"],
    )
    .await;
    let mb = run
        .store
        .mailbox(&mailbox_name(&run.account, ChildKind::Ingest));
    for _ in 0..2_000 {
        if mb.depth().unwrap().dead == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    run.drained(1, Duration::from_millis(5)).await;
    let dead = mb.dead_letters(10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(jobs::ingest_item(&dead[0]), "bad");
    assert_eq!(dead[0].attempts, attempts);
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("not a message")
    );
    // Requeue one: it runs again (and dies again, the source is still broken).
    assert!(mb.requeue_dead_job(dead[0].id).unwrap());
    assert_eq!(mb.depth().unwrap().dead, 0);
    assert!(
        !mb.requeue_dead_job(dead[0].id).unwrap(),
        "already requeued"
    );
}
