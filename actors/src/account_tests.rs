//! Single-actor tests of the AccountActor against a scripted fake source
//! ([`crate::test_support::ScriptedSource`]) on tokio's paused clock: a child that panics for
//! real is restarted after a growing, capped delay and its job is not lost; too many panics
//! mark the account failed with the error, and `resume` brings it back with a fresh budget;
//! pause stops every child (nothing runs, whatever the timers or nudges) and resume continues
//! where each child was.

use crate::account::{AccountActor, AccountArgs, AccountCommand, AccountMsg};
use crate::backoff::{RestartPolicy, RetryPolicy};
use crate::jobs::ChildKind;
use crate::spec::mailbox_name;
use crate::status::{AccountState, AccountStatus};
use crate::store::Store;
use crate::test_support::{
    ScriptedSource, enqueue_ingest, spec, temp_store, test_account, wait_until,
};
use ractor::{Actor, ActorRef};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

struct Account {
    _dir: tempfile::TempDir,
    store: Store,
    actor: ActorRef<AccountMsg>,
    source: Arc<ScriptedSource>,
}

async fn start(source: ScriptedSource, restart: RestartPolicy, ingest_items: &[&str]) -> Account {
    let (dir, store) = temp_store();
    let source = Arc::new(source);
    let spec = spec(
        source.clone(),
        Duration::from_secs(60),
        RetryPolicy::default(),
        restart,
    );
    enqueue_ingest(&store, &spec.id, ingest_items);
    let args = AccountArgs {
        spec,
        store: store.clone(),
    };
    let (actor, _) = Actor::spawn(None, AccountActor, args).await.unwrap();
    Account {
        _dir: dir,
        store,
        actor,
        source,
    }
}

impl Account {
    async fn status(&self) -> AccountStatus {
        ractor::call!(self.actor, AccountMsg::Status).expect("status")
    }

    async fn wait_status(
        &self,
        what: &str,
        cond: impl Fn(&AccountStatus) -> bool,
    ) -> AccountStatus {
        for _ in 0..36_000 {
            let s = self.status().await;
            if cond(&s) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("timed out waiting until {what}: {:?}", self.status().await);
    }

    fn queue_len(&self, kind: ChildKind) -> usize {
        let d = self
            .store
            .mailbox(&mailbox_name(&test_account(), kind))
            .depth()
            .unwrap();
        d.pending + d.leased + d.delayed + d.dead
    }

    fn command(&self, cmd: AccountCommand) {
        self.actor.cast(AccountMsg::Command(cmd)).unwrap();
    }
}

/// The gaps between consecutive calls.
fn gaps(times: &[tokio::time::Instant]) -> Vec<Duration> {
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test(start_paused = true)]
async fn a_child_panicking_every_time_restarts_with_growing_capped_delays_then_the_account_fails_and_resume_recovers()
 {
    let restart = RestartPolicy {
        base: Duration::from_millis(100),
        cap: Duration::from_millis(800),
        max_restarts: 6,
        window: Duration::from_secs(3600),
    };
    // One panic more than the budget allows: 6 restarts, then the 7th panic fails the account.
    let source = ScriptedSource::default();
    source.history_panics.store(7, Ordering::SeqCst);
    let acct = start(source, restart.clone(), &[]).await;
    let failed = acct
        .wait_status("the account is failed", |s| s.state == AccountState::Failed)
        .await;
    let err = failed.last_error.clone().unwrap_or_default();
    assert!(
        err.contains("history_sync") && err.contains("injected panic"),
        "the account shows the child's panic: {err}"
    );
    let times = acct.source.call_times(ChildKind::HistorySync);
    assert_eq!(times.len(), 7, "first run + 6 restarts");
    // The restart delays double from `base` and stop at `cap`. The restart budget adds no
    // jitter, so each gap is the delay itself (virtual time: exactly, give or take the
    // paused clock's 1 ms timer resolution); jitter would only ever make a gap shorter.
    let expected = [100u64, 200, 400, 800, 800, 800].map(Duration::from_millis);
    for (i, (gap, want)) in gaps(&times).iter().zip(expected).enumerate() {
        assert!(
            *gap >= want && *gap <= want + Duration::from_millis(5),
            "restart {}: waited {gap:?}, policy says {want:?}",
            i + 1
        );
        assert!(*gap <= restart.cap + Duration::from_millis(5), "capped");
    }
    // Failed means stopped: ten virtual minutes, and no child calls the source.
    let before = acct.source.calls.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(acct.source.calls.lock().unwrap().len(), before);
    assert_eq!(acct.status().await.state, AccountState::Failed);

    // A person resumes: a fresh budget and fresh children; the fault is gone, rounds run.
    acct.command(AccountCommand::Resume);
    let s = acct
        .wait_status("rounds run again", |s| {
            s.state == AccountState::Running && s.last_sync_ms.is_some()
        })
        .await;
    assert_eq!(s.restarts, 0, "fresh budget: {s:?}");
    // And it keeps polling on its interval.
    let n = acct.source.call_count(ChildKind::HistorySync);
    tokio::time::sleep(Duration::from_secs(121)).await;
    assert_eq!(acct.source.call_count(ChildKind::HistorySync), n + 2);
    assert_eq!(acct.status().await.state, AccountState::Running);
}

#[tokio::test(start_paused = true)]
async fn a_backfill_step_that_panics_is_restarted_and_the_job_resumes_at_that_step() {
    let source = ScriptedSource {
        backfill_steps: 5,
        step_wait: Duration::from_secs(1),
        panic_at_steps: std::sync::Mutex::new(vec![3]),
        ..ScriptedSource::default()
    };
    let acct = start(source, RestartPolicy::default(), &[]).await;
    let s = acct
        .wait_status("the full sync is done", |s| s.phase == "caught_up")
        .await;
    assert_eq!(acct.source.steps_done.load(Ordering::SeqCst), 5);
    // Steps 1, 2, 3 (panics), 3 again, 4, 5: nothing redone but the step that panicked.
    assert_eq!(acct.source.call_count(ChildKind::Backfill), 6);
    assert_eq!(
        acct.queue_len(ChildKind::Backfill),
        0,
        "the job is done, not lost"
    );
    assert_eq!(s.restarts, 1);
    assert_eq!(s.state, AccountState::Running);
    let err = s.last_error.unwrap_or_default();
    assert!(
        err.contains("backfill") && err.contains("injected panic at backfill step 3"),
        "{err}"
    );
    // The account recovered: incremental rounds run after the full sync.
    wait_until("a round ran", || {
        acct.source.call_count(ChildKind::HistorySync) > 0
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn the_health_view_shows_state_queues_and_errors_without_reading_the_stored_cursor() {
    let source = ScriptedSource::default();
    source.ingest_panics.store(1, Ordering::SeqCst);
    let acct = start(source, RestartPolicy::default(), &["a", "b"]).await;
    wait_until("both jobs are recorded", || {
        acct.source.recorded().len() == 2
    })
    .await;
    let full = acct.status().await;
    let reads = acct.source.cursor_reads.load(Ordering::SeqCst);
    assert!(reads > 0, "the full status reads the stored cursor");
    let health: AccountStatus = ractor::call!(acct.actor, AccountMsg::Health).expect("health");
    assert_eq!(
        acct.source.cursor_reads.load(Ordering::SeqCst),
        reads,
        "the health view reads nothing from the source's records"
    );
    assert!(full.cursor.is_some());
    assert_eq!(health.cursor, None);
    assert_eq!(health.state, full.state);
    assert_eq!(health.restarts, 1);
    assert_eq!(health.restarts, full.restarts);
    assert_eq!(health.last_error, full.last_error);
    assert_eq!(health.phase, full.phase);
    assert_eq!(health.missing, full.missing);
    assert_eq!(
        health
            .queues
            .iter()
            .map(|q| (q.name.clone(), q.pending + q.leased + q.delayed))
            .collect::<Vec<_>>(),
        full.queues
            .iter()
            .map(|q| (q.name.clone(), q.pending + q.leased + q.delayed))
            .collect::<Vec<_>>(),
        "the same queue depths"
    );
}

#[tokio::test(start_paused = true)]
async fn an_ingest_batch_that_panics_is_restarted_and_no_job_is_lost() {
    let source = ScriptedSource::default();
    source.ingest_panics.store(2, Ordering::SeqCst);
    let acct = start(source, RestartPolicy::default(), &["a", "b", "c"]).await;
    wait_until("every job is recorded", || {
        acct.source.recorded().len() == 3
    })
    .await;
    let mut got = acct.source.recorded();
    got.sort();
    assert_eq!(got, ["a", "b", "c"], "each job recorded exactly once");
    assert_eq!(acct.queue_len(ChildKind::Ingest), 0);
    let s = acct.status().await;
    assert_eq!(s.restarts, 2);
    assert_eq!(s.state, AccountState::Running);
    assert!(
        s.last_error
            .unwrap_or_default()
            .contains("injected panic in an ingest batch")
    );
    // Work enqueued after the restarts is still picked up by the new Ingest.
    enqueue_ingest(&acct.store, &test_account(), &["d"]);
    acct.command(AccountCommand::SyncNow);
    wait_until("the new job is recorded", || {
        acct.source.recorded().len() == 4
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn pause_stops_every_child_and_resume_continues_where_each_was() {
    let source = ScriptedSource {
        backfill_steps: 10,
        step_wait: Duration::from_secs(1),
        ..ScriptedSource::default()
    };
    let acct = start(source, RestartPolicy::default(), &[]).await;
    wait_until("three steps ran", || {
        acct.source.steps_done.load(Ordering::SeqCst) >= 3
    })
    .await;
    acct.command(AccountCommand::Pause);
    acct.wait_status("paused", |s| s.state == AccountState::Paused)
        .await;
    let steps = acct.source.steps_done.load(Ordering::SeqCst);
    let calls = acct.source.calls.lock().unwrap().len();
    // Work arrives and someone pokes the account while it is paused: nothing runs, for ten
    // virtual minutes (step timers, poll timers and nudges all come due in that time).
    enqueue_ingest(&acct.store, &test_account(), &["x"]);
    acct.command(AccountCommand::SyncNow);
    acct.actor.cast(AccountMsg::Nudge).unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(
        acct.source.calls.lock().unwrap().len(),
        calls,
        "a call while paused"
    );
    assert_eq!(acct.source.steps_done.load(Ordering::SeqCst), steps);
    assert_eq!(acct.status().await.state, AccountState::Paused);

    acct.command(AccountCommand::Resume);
    acct.wait_status("the full sync is done", |s| s.phase == "caught_up")
        .await;
    // Resumed where it was: every step ran exactly once, before and after the pause.
    assert_eq!(acct.source.call_count(ChildKind::Backfill), 10);
    wait_until("the job enqueued while paused is recorded", || {
        acct.source.recorded() == ["x"]
    })
    .await;
    assert_eq!(acct.status().await.state, AccountState::Running);
}
