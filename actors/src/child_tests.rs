//! Single-actor tests of HistorySync and Backfill, each spawned alone with a report collector
//! as its parent ([`crate::test_support::reporter`]) and a scripted fake source, on tokio's
//! paused clock: poll rounds on the interval, transient failures retried after full-jitter
//! delays under the policy's capped ceiling (reported `degraded`, then `recovered`), an
//! expired cursor reported rather than failed, and pause/resume (nothing runs while paused;
//! a held job resumes at its step). Ingest's own tests are in `ingest_tests.rs`.

use crate::backfill::{Backfill, BackfillMsg};
use crate::backoff::{RestartPolicy, RetryPolicy};
use crate::error::ApiError;
use crate::history_sync::{HistorySync, HistorySyncMsg};
use crate::jobs::ChildKind;
use crate::report::ChildReport;
use crate::source::{SourceCx, SyncSource};
use crate::spec::{ChildArgs, mailbox_name};
use crate::store::Store;
use crate::test_support::{
    ScriptedSource, enqueue_ingest, reporter, spec, temp_store, test_account, wait_until,
};
use ractor::Actor;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

struct Child {
    _dir: tempfile::TempDir,
    store: Store,
    source: Arc<ScriptedSource>,
    reports: UnboundedReceiver<ChildReport>,
}

/// A child's arguments for `source`; a source with a full sync gets its job first.
async fn args_for(source: ScriptedSource, retry: RetryPolicy) -> (Child, ChildArgs) {
    let (dir, store) = temp_store();
    let source = Arc::new(source);
    let spec = spec(
        source.clone(),
        Duration::from_secs(60),
        retry,
        RestartPolicy::default(),
    );
    let (parent, reports) = reporter().await;
    let cx = SourceCx {
        account: &spec.id,
        store: &store,
        report: &parent,
    };
    source.ensure_jobs(&cx).unwrap();
    let args = ChildArgs {
        spec,
        store: store.clone(),
        parent,
    };
    let child = Child {
        _dir: dir,
        store,
        source,
        reports,
    };
    (child, args)
}

impl Child {
    fn drain_reports(&mut self) -> Vec<ChildReport> {
        let mut out = Vec::new();
        while let Ok(r) = self.reports.try_recv() {
            out.push(r);
        }
        out
    }
}

#[tokio::test(start_paused = true)]
async fn history_sync_runs_a_round_at_start_and_then_once_per_poll_interval() {
    let (mut child, args) = args_for(ScriptedSource::default(), RetryPolicy::default()).await;
    let (_actor, _) = Actor::spawn(None, HistorySync, args).await.unwrap();
    // Rounds at 0 s, 60 s, …, 600 s: eleven in ten and a half virtual minutes.
    tokio::time::sleep(Duration::from_secs(630)).await;
    assert_eq!(child.source.call_count(ChildKind::HistorySync), 11);
    let rounds = child
        .drain_reports()
        .into_iter()
        .filter(|r| matches!(r, ChildReport::RoundDone { .. }))
        .count();
    assert_eq!(rounds, 11);
}

#[tokio::test(start_paused = true)]
async fn a_pushed_round_is_followed_by_one_more_look_then_the_poll_interval_again() {
    let source = ScriptedSource {
        push_follow_up: Some(Duration::from_secs(2)),
        ..ScriptedSource::default()
    };
    let (child, args) = args_for(source, RetryPolicy::default()).await;
    let account = args.spec.id.clone();
    let start = tokio::time::Instant::now();
    let (actor, _) = Actor::spawn(None, HistorySync, args).await.unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    crate::jobs::enqueue_history_push(&child.store, &account, 42).unwrap();
    actor.cast(HistorySyncMsg::Nudge).unwrap();
    tokio::time::sleep(Duration::from_secs(90)).await;
    let at: Vec<u64> = child
        .source
        .call_times(ChildKind::HistorySync)
        .iter()
        .map(|t| t.duration_since(start).as_secs())
        .collect();
    // At start, the pushed round at 10 s, its follow-up 2 s later, then a poll a full
    // interval after that (not at 70 s: the follow-up's timer replaced the pushed round's).
    assert_eq!(at, [0, 10, 12, 72]);
    let pushes = child
        .store
        .mailbox(&mailbox_name(&account, ChildKind::HistorySync));
    let depth = pushes.depth().unwrap();
    assert_eq!(
        depth.pending + depth.leased + depth.delayed,
        0,
        "the push was acked by its round: {depth:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn many_rounds_keep_one_poll_timer_not_one_sleeping_task_each() {
    let (child, args) = args_for(ScriptedSource::default(), RetryPolicy::default()).await;
    let (actor, _) = Actor::spawn(None, HistorySync, args).await.unwrap();
    wait_until("the first round", || {
        child.source.call_count(ChildKind::HistorySync) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    for n in 2..=200 {
        actor.cast(HistorySyncMsg::Nudge).unwrap();
        wait_until("the nudged round", || {
            child.source.call_count(ChildKind::HistorySync) == n
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = metrics.num_alive_tasks();
    assert!(
        after <= before + 2,
        "{before} tasks alive before 199 rounds, {after} after"
    );
}

#[tokio::test(start_paused = true)]
async fn history_sync_retries_transient_failures_within_the_jittered_ceiling_and_reports_it() {
    let retry = RetryPolicy::default();
    let source = ScriptedSource::default();
    source.history_failures.store(12, Ordering::SeqCst);
    let (mut child, args) = args_for(source, retry.clone()).await;
    let (_actor, _) = Actor::spawn(None, HistorySync, args).await.unwrap();
    wait_until("the round went through", || {
        child.source.call_count(ChildKind::HistorySync) == 13
    })
    .await;
    let times = child.source.call_times(ChildKind::HistorySync);
    // The n-th consecutive failure waits a full-jitter delay in [0, ceiling(n)]: never more
    // than the capped ceiling, and (12 draws) not all at the ceiling.
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    for (i, gap) in gaps.iter().enumerate() {
        let ceiling = retry.ceiling(i as u32 + 1);
        assert!(
            *gap <= ceiling + Duration::from_millis(5),
            "failure {}: waited {gap:?} > ceiling {ceiling:?}",
            i + 1
        );
        assert!(ceiling <= retry.cap);
    }
    let total: Duration = gaps.iter().sum();
    let ceilings: Duration = (1..=12).map(|n| retry.ceiling(n)).sum();
    assert!(total < ceilings, "jitter: {total:?} vs {ceilings:?}");
    let reports = child.drain_reports();
    let degraded = reports
        .iter()
        .filter(|r| matches!(r, ChildReport::Degraded { child: ChildKind::HistorySync, reason } if reason.contains("503")))
        .count();
    // Reported once at the start of the run and again at the 8th failure (fresh reason).
    assert_eq!(degraded, 2, "{reports:?}");
    assert!(
        reports
            .iter()
            .any(|r| matches!(r, ChildReport::Recovered { .. }))
    );
    assert!(
        matches!(reports.last(), Some(ChildReport::RoundDone { .. })),
        "{reports:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn history_sync_reports_an_expired_cursor_instead_of_failing() {
    let source = ScriptedSource::default();
    source.history_failures.store(1, Ordering::SeqCst);
    *source.history_error.lock().unwrap() = Some(ApiError::HistoryExpired);
    let (mut child, args) = args_for(source, RetryPolicy::default()).await;
    let (actor, _) = Actor::spawn(None, HistorySync, args).await.unwrap();
    wait_until("a report arrived", || !child.reports.is_empty()).await;
    let reports = child.drain_reports();
    assert!(
        matches!(reports.as_slice(), [ChildReport::CursorExpired]),
        "{reports:?}"
    );
    // No retry on its own (the parent starts a resync); a nudge runs the next round.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(child.source.call_count(ChildKind::HistorySync), 1);
    actor.cast(HistorySyncMsg::Nudge).unwrap();
    wait_until("the next round ran", || {
        child.source.call_count(ChildKind::HistorySync) == 2
    })
    .await;
    assert_eq!(actor.get_status(), ractor::ActorStatus::Running);
}

#[tokio::test(start_paused = true)]
async fn history_sync_paused_ignores_polls_and_nudges_until_resumed() {
    let (child, args) = args_for(ScriptedSource::default(), RetryPolicy::default()).await;
    let (actor, _) = Actor::spawn(None, HistorySync, args).await.unwrap();
    wait_until("the first round ran", || {
        child.source.call_count(ChildKind::HistorySync) == 1
    })
    .await;
    actor.cast(HistorySyncMsg::Pause).unwrap();
    actor.cast(HistorySyncMsg::Nudge).unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(child.source.call_count(ChildKind::HistorySync), 1);
    actor.cast(HistorySyncMsg::Resume).unwrap();
    wait_until("a round ran after resume", || {
        child.source.call_count(ChildKind::HistorySync) == 2
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn backfill_paused_holds_its_job_and_resumes_at_the_same_step() {
    let source = ScriptedSource {
        backfill_steps: 6,
        step_wait: Duration::from_secs(2),
        ..ScriptedSource::default()
    };
    let (mut child, args) = args_for(source, RetryPolicy::default()).await;
    let (actor, _) = Actor::spawn(None, Backfill, args).await.unwrap();
    wait_until("two steps ran", || {
        child.source.steps_done.load(Ordering::SeqCst) == 2
    })
    .await;
    actor.cast(BackfillMsg::Pause).unwrap();
    actor.cast(BackfillMsg::WorkAvailable).unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(child.source.call_count(ChildKind::Backfill), 2);
    let queue = child
        .store
        .mailbox(&mailbox_name(&test_account(), ChildKind::Backfill));
    assert_eq!(
        queue.depth().unwrap().leased,
        1,
        "the job is held, not dropped"
    );
    actor.cast(BackfillMsg::Resume).unwrap();
    wait_until("the job finished", || {
        child.source.steps_done.load(Ordering::SeqCst) == 6
    })
    .await;
    assert_eq!(
        child.source.call_count(ChildKind::Backfill),
        6,
        "no step twice"
    );
    wait_until("the job is acked", || {
        queue.depth().unwrap().pending + queue.depth().unwrap().leased == 0
    })
    .await;
    assert!(
        child
            .drain_reports()
            .iter()
            .any(|r| matches!(r, ChildReport::FullSyncDone))
    );
}

#[tokio::test(start_paused = true)]
async fn backfill_retries_a_failing_step_without_losing_or_counting_the_job() {
    let retry = RetryPolicy::default();
    let source = ScriptedSource {
        backfill_steps: 3,
        ..ScriptedSource::default()
    };
    // Far more failures than the policy's attempts: a step is retried until it goes through.
    source
        .step_failures
        .store(retry.max_attempts * 3, Ordering::SeqCst);
    let (mut child, args) = args_for(source, retry.clone()).await;
    let (_actor, _) = Actor::spawn(None, Backfill, args).await.unwrap();
    wait_until("the job finished", || {
        child.source.steps_done.load(Ordering::SeqCst) == 3
    })
    .await;
    let queue = child
        .store
        .mailbox(&mailbox_name(&test_account(), ChildKind::Backfill));
    wait_until("the job is acked", || {
        let d = queue.depth().unwrap();
        d.pending + d.leased + d.delayed + d.dead == 0
    })
    .await;
    let reports = child.drain_reports();
    assert!(reports.iter().any(|r| matches!(
        r,
        ChildReport::Degraded {
            child: ChildKind::Backfill,
            ..
        }
    )));
    assert!(reports.iter().any(|r| matches!(
        r,
        ChildReport::Recovered {
            child: ChildKind::Backfill
        }
    )));
}

#[tokio::test(start_paused = true)]
async fn ingest_paused_fetches_nothing_until_resumed() {
    let (child, args) = args_for(ScriptedSource::default(), RetryPolicy::default()).await;
    let account = args.spec.id.clone();
    let (actor, _) = Actor::spawn(None, crate::ingest::Ingest, args)
        .await
        .unwrap();
    actor.cast(crate::ingest::IngestMsg::Pause).unwrap();
    // Let the start-up wake-up (queued before the pause, on an empty queue) and the pause be
    // handled before the work arrives.
    tokio::time::sleep(Duration::from_secs(1)).await;
    enqueue_ingest(&child.store, &account, &["a", "b"]);
    actor.cast(crate::ingest::IngestMsg::WorkAvailable).unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(child.source.call_count(ChildKind::Ingest), 0);
    actor.cast(crate::ingest::IngestMsg::Resume).unwrap();
    wait_until("both recorded", || child.source.recorded().len() == 2).await;
}
