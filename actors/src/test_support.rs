//! Test-only helpers shared by the single-actor tests: a [`ChildReport`] collector that stands
//! in for the AccountActor and forwards every report to a channel the test reads, and a
//! scripted fake [`SyncSource`] ([`ScriptedSource`]) whose steps can panic, fail or go through,
//! and [`unused`], the answer of a fake port's method that its test never calls.

use crate::backoff::{RestartPolicy, RetryPolicy};
use crate::error::{ApiError, SyncError};
use crate::jobs::{self, BackfillJob, ChildKind};
use crate::mailbox::{Job, Priority};
use crate::model::{AccountId, FetchedMessage, HistoryId, LabelId, MessageId};
use crate::report::{ChildReport, Reporter};
use crate::source::{
    BackfillNext, IncrementalPage, IngestBatch, SourceCx, SourceFuture, SourceKind, StartState,
    SyncSource,
};
use crate::spec::{AccountSpec, now_ms};
use crate::store::{Store, StoreError};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::time::Instant;

/// What a test fake's port method answers when its test is not about it.
pub fn unused<'a, T: Send + 'a>() -> crate::ports::PortFuture<'a, T> {
    Box::pin(async { Err(ApiError::Rejected("unused".into())) })
}

struct Collector;

impl Actor for Collector {
    type Msg = ChildReport;
    type State = UnboundedSender<ChildReport>;
    type Arguments = UnboundedSender<ChildReport>;

    async fn pre_start(
        &self,
        _: ActorRef<ChildReport>,
        tx: UnboundedSender<ChildReport>,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(tx)
    }

    async fn handle(
        &self,
        _: ActorRef<ChildReport>,
        msg: ChildReport,
        tx: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let _ = tx.send(msg);
        Ok(())
    }
}

/// A reporter whose reports arrive on the returned channel.
pub async fn reporter() -> (Reporter, UnboundedReceiver<ChildReport>) {
    let (tx, rx) = unbounded_channel();
    let (actor, _) = Actor::spawn(None, Collector, tx)
        .await
        .expect("spawn the report collector");
    (actor.get_derived(), rx)
}

/// A scripted [`SyncSource`] for single-actor tests on tokio's paused clock. It stands in for
/// a provider with durable progress: `steps_done` plays the part of the account record (a
/// restarted Backfill resumes from it), `recorded` the mirror. Each step can be made to
/// *panic for real* (a `panic!` inside the future the child awaits), to fail with an
/// [`ApiError`], or to go through; every call's virtual time is kept per child.
pub struct ScriptedSource {
    /// Steps of the full-sync job; 0 means no full sync (incremental rounds from the start).
    pub backfill_steps: u32,
    /// What a step waits for before the next one (`BackfillNext::WaitThen`), 0 = `Continue`.
    pub step_wait: std::time::Duration,
    /// Steps recorded so far (the "durable" progress a restarted Backfill resumes from).
    pub steps_done: AtomicU32,
    /// Backfill step numbers (1-based) that panic, each once.
    pub panic_at_steps: Mutex<Vec<u32>>,
    /// How many incremental pages still panic.
    pub history_panics: AtomicU32,
    /// How many incremental pages still fail with `history_error`.
    pub history_failures: AtomicU32,
    /// The error those failures return.
    pub history_error: Mutex<Option<ApiError>>,
    /// How many backfill steps still fail with a transient 503.
    pub step_failures: AtomicU32,
    /// How many ingest batches still panic.
    pub ingest_panics: AtomicU32,
    /// Items the ingest batches recorded (acked), in order.
    pub recorded: Mutex<Vec<String>>,
    /// (child, virtual time) of every call the children made.
    pub calls: Mutex<Vec<(ChildKind, Instant)>>,
    /// Status reads of the stored cursor.
    pub cursor_reads: AtomicU32,
    /// What [`SyncSource::push_follow_up`] answers.
    pub push_follow_up: Option<std::time::Duration>,
}

impl Default for ScriptedSource {
    fn default() -> Self {
        ScriptedSource {
            backfill_steps: 0,
            step_wait: std::time::Duration::ZERO,
            steps_done: AtomicU32::new(0),
            panic_at_steps: Mutex::new(Vec::new()),
            history_panics: AtomicU32::new(0),
            history_failures: AtomicU32::new(0),
            history_error: Mutex::new(None),
            step_failures: AtomicU32::new(0),
            ingest_panics: AtomicU32::new(0),
            recorded: Mutex::new(Vec::new()),
            calls: Mutex::new(Vec::new()),
            cursor_reads: AtomicU32::new(0),
            push_follow_up: None,
        }
    }
}

/// Takes one from `n` if it is positive (a scripted fault is used up).
fn take_one(n: &AtomicU32) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ScriptedSource {
    /// The virtual times of `child`'s calls.
    pub fn call_times(&self, child: ChildKind) -> Vec<Instant> {
        lock(&self.calls)
            .iter()
            .filter(|(c, _)| *c == child)
            .map(|(_, t)| *t)
            .collect()
    }

    /// How many calls `child` made.
    pub fn call_count(&self, child: ChildKind) -> usize {
        self.call_times(child).len()
    }

    /// Items recorded by Ingest so far.
    pub fn recorded(&self) -> Vec<String> {
        lock(&self.recorded).clone()
    }

    fn note(&self, child: ChildKind) {
        lock(&self.calls).push((child, Instant::now()));
    }

    fn full_sync_done(&self) -> bool {
        self.steps_done.load(Ordering::SeqCst) >= self.backfill_steps
    }
}

fn store_error(e: impl std::fmt::Display) -> SyncError {
    SyncError::Store(e.to_string())
}

impl SyncSource for ScriptedSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Test
    }

    fn ensure_jobs(&self, cx: &SourceCx<'_>) -> Result<StartState, StoreError> {
        if !self.full_sync_done() {
            cx.store.transaction(|tx| {
                jobs::enqueue_backfill_tx(tx, cx.account, BackfillJob::FullSync, now_ms())
            })?;
            cx.store.flush()?;
        }
        Ok(StartState::Running)
    }

    fn request_resync(&self, _: &SourceCx<'_>) -> Result<(), StoreError> {
        Ok(())
    }

    fn incremental_ready(&self, _: &SourceCx<'_>) -> Result<bool, StoreError> {
        Ok(self.full_sync_done())
    }

    fn push_follow_up(&self) -> Option<std::time::Duration> {
        self.push_follow_up
    }

    fn incremental_page<'a>(
        &'a self,
        cx: &'a SourceCx<'a>,
        pushes: &'a [Job],
    ) -> SourceFuture<'a, IncrementalPage> {
        Box::pin(async move {
            self.note(ChildKind::HistorySync);
            if take_one(&self.history_panics) {
                panic!("injected panic in an incremental page");
            }
            if take_one(&self.history_failures) {
                let err = lock(&self.history_error)
                    .clone()
                    .unwrap_or_else(|| ApiError::Transient("HTTP 503".into()));
                return Err(SyncError::Api(err));
            }
            // The round covers every push it leased (acked with its last page, as a real
            // source does in that page's transaction).
            if !pushes.is_empty() {
                cx.store
                    .transaction(|tx| {
                        for p in pushes {
                            tx.ack(p)?;
                        }
                        Ok(())
                    })
                    .map_err(store_error)?;
            }
            Ok(IncrementalPage {
                round_done: true,
                ..IncrementalPage::default()
            })
        })
    }

    fn backfill_step<'a>(
        &'a self,
        cx: &'a SourceCx<'a>,
        job: &'a Job,
    ) -> SourceFuture<'a, BackfillNext> {
        Box::pin(async move {
            self.note(ChildKind::Backfill);
            let step = self.steps_done.load(Ordering::SeqCst) + 1;
            let panics = {
                let mut at = lock(&self.panic_at_steps);
                let hit = at.iter().position(|s| *s == step);
                hit.map(|i| at.remove(i)).is_some()
            };
            if panics {
                panic!("injected panic at backfill step {step}");
            }
            if take_one(&self.step_failures) {
                return Err(SyncError::Api(ApiError::Transient("HTTP 503".into())));
            }
            if step >= self.backfill_steps {
                cx.store
                    .transaction(|tx| tx.ack(job))
                    .map_err(store_error)?;
                cx.store.flush().map_err(store_error)?;
                self.steps_done.store(step, Ordering::SeqCst);
                crate::report::send(cx.report, ChildReport::FullSyncDone);
                return Ok(BackfillNext::Finished);
            }
            self.steps_done.store(step, Ordering::SeqCst);
            if self.step_wait.is_zero() {
                Ok(BackfillNext::Continue)
            } else {
                Ok(BackfillNext::WaitThen(self.step_wait))
            }
        })
    }

    fn ingest_batch<'a>(
        &'a self,
        cx: &'a SourceCx<'a>,
        batch: &'a [Job],
    ) -> SourceFuture<'a, IngestBatch> {
        Box::pin(async move {
            self.note(ChildKind::Ingest);
            if take_one(&self.ingest_panics) {
                panic!("injected panic in an ingest batch");
            }
            cx.store
                .transaction(|tx| {
                    for j in batch {
                        tx.ack(j)?;
                    }
                    Ok(())
                })
                .map_err(store_error)?;
            cx.store.flush().map_err(store_error)?;
            lock(&self.recorded).extend(batch.iter().map(jobs::ingest_item));
            Ok(IngestBatch {
                added: batch.len() as u64,
                done: batch.to_vec(),
                ..IngestBatch::default()
            })
        })
    }

    fn cursor(&self, _: &SourceCx<'_>) -> Option<String> {
        self.cursor_reads.fetch_add(1, Ordering::SeqCst);
        Some(format!("step {}", self.steps_done.load(Ordering::SeqCst)))
    }
}

/// Waits (in virtual time, looking every 10 ms, up to an hour) until `cond` holds.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..360_000 {
        if cond() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

/// A fresh store in a temporary directory.
pub fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("open the store");
    (dir, store)
}

/// An account spec for `source` with the given policies.
pub fn spec(
    source: Arc<ScriptedSource>,
    poll_interval: std::time::Duration,
    retry: RetryPolicy,
    restart: RestartPolicy,
) -> AccountSpec {
    AccountSpec {
        id: test_account(),
        kind: SourceKind::Test,
        source,
        poll_interval,
        batch_size: 50,
        retry,
        restart,
        fingerprint: String::new(),
        push_watch: None,
    }
}

/// The account every [`spec`] runs.
pub fn test_account() -> AccountId {
    AccountId("t".into())
}

/// Durably enqueues fetch jobs for `items` of `account` (real-time priority).
pub fn enqueue_ingest(store: &Store, account: &AccountId, items: &[&str]) {
    store
        .transaction(|tx| {
            for item in items {
                jobs::enqueue_ingest_tx(tx, account, item, Priority::RealTime, now_ms())?;
            }
            Ok(())
        })
        .expect("enqueue fetch jobs");
    store.flush().expect("flush");
}

/// A fetched message `id` at history id `hid` with `labels` and a small raw body.
pub fn fetched_message(id: &str, hid: u64, labels: &[&str]) -> FetchedMessage {
    FetchedMessage {
        id: MessageId(id.into()),
        thread_id: id.into(),
        label_ids: labels.iter().map(|l| LabelId((*l).into())).collect(),
        history_id: HistoryId(hid),
        internal_date_ms: 1,
        raw: format!("Subject: {id}\r\n\r\nbody").into_bytes(),
        headers: Default::default(),
    }
}
