//! The IMAP source: any IMAP server as a [`SyncSource`] over the [`ImapPort`] (the client in
//! `src/imap/` implements it). It owns the folders' state and UID maps (`store.rs`) and the
//! per-folder algorithms (`folder_sync.rs`).
//!
//! * **Backfill** `FullSync`: LIST (include / exclude patterns, special-use), then the initial
//!   sync folder by folder, newest first: first the newest `recent_first` messages of every
//!   folder (INBOX, then flagged / important folders, then the rest), then the remainder, one
//!   page per step with a checkpoint per chunk. Finished → incremental rounds take over.
//!   `Gap` (an admin's `resync`): a full UID/FLAGS diff of every folder.
//! * **Incremental** (HistorySync): a round is a LIST (folders created / deleted / renamed,
//!   `folders.rs`) and then one folder per page: a STATUS probe when the poll schedule
//!   (`poll.rs`) says the folder is due, and the full step with the best algorithm the server
//!   offers only when STATUS differs from the stored cursor. A folder whose step fails on its
//!   own (NO/BAD) is skipped with its error kept; the others go on.
//! * **IDLE**: when the pool has room (≥ 2 connections) and the server offers IDLE, one
//!   connection IDLEs on INBOX (re-issued every `idle_max`, at most 29 min) and news nudges a
//!   round through [`ChildReport::IncrementalWork`].
//! * **Deep sync** (Backfill `DeepSync`, `ctl deep-sync`): a date range, folder by folder
//!   (`deep_sync.rs`).
//! * **Status**: `status_lines.rs` (folders, connections, errors by class, rate).
//! * **Ingest**: nothing: bodies are fetched by the steps that list them.

pub mod deep_sync;
pub mod folder_sync;
mod folders;
mod idle;
mod options;
mod poll;
pub mod port;
pub mod stats;
mod status_lines;
pub mod store;
#[cfg(test)]
mod tests;

use crate::error::{ApiError, SyncError};
use crate::jobs::{self, BackfillJob};
use crate::mailbox::Job;
use crate::report::{self, ChildReport};
use crate::source::{
    BackfillNext, IncrementalPage, IngestBatch, SourceCx, SourceFuture, SourceKind, StartState,
    SyncSource,
};
use crate::spec::now_ms;
use crate::status::Phase;
use crate::store::StoreError;
use folder_sync::{Mode, Step, flush, needs_initial, store_err};
use port::{FolderInfo, ImapErrorClass, ImapPort};
use stats::Stats;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use store::FolderState;

pub use folder_sync::message_id_of;
use options::folder_rank;
pub use options::{ImapOptions, folder_matches};

#[derive(Debug, Default)]
struct Round {
    remaining: VecDeque<String>,
    listed: bool,
}

/// The IMAP source of one account.
pub struct ImapSource {
    port: Arc<dyn ImapPort>,
    options: ImapOptions,
    stats: Arc<Stats>,
    round: Mutex<Option<Round>>,
    backfill_listed: Mutex<bool>,
    skipped: Mutex<HashSet<String>>,
    gap: Mutex<Option<VecDeque<String>>>,
    idle: idle::IdleHandle,
    poll: Arc<poll::PollSchedule>,
}

impl ImapSource {
    /// An IMAP source over `port`.
    pub fn new(port: Arc<dyn ImapPort>, options: ImapOptions) -> ImapSource {
        ImapSource {
            port,
            options: options.clone(),
            stats: Arc::new(Stats::default()),
            round: Mutex::new(None),
            backfill_listed: Mutex::new(false),
            skipped: Mutex::new(HashSet::new()),
            gap: Mutex::new(None),
            idle: idle::IdleHandle::default(),
            poll: Arc::new(poll::PollSchedule::new(options.poll_min, options.poll_max)),
        }
    }

    /// The account's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    fn step<'a>(&'a self, cx: &'a SourceCx<'a>) -> Step<'a> {
        Step {
            cx,
            stats: &self.stats,
            limits: self.options.limits,
        }
    }

    fn wanted(&self, f: &FolderInfo) -> bool {
        f.selectable()
            && self
                .options
                .include
                .iter()
                .any(|p| folder_matches(p, &f.name))
            && !self
                .options
                .exclude
                .iter()
                .any(|p| folder_matches(p, &f.name))
    }

    async fn session(&self) -> Result<Box<dyn port::ImapSession>, SyncError> {
        self.port.session().await.map_err(|e| {
            self.stats.count(e.class);
            self.stats.last_error(e.to_string());
            SyncError::Api(e.into())
        })
    }

    /// LIST and reconcile the folder set (`folders.rs`: created, deleted, renamed).
    async fn refresh_folders(&self, cx: &SourceCx<'_>) -> Result<(), SyncError> {
        let mut sess = self.session().await?;
        folders::refresh(&self.step(cx), sess.as_mut(), |f| self.wanted(f)).await
    }

    fn report_progress(&self, cx: &SourceCx<'_>, folders: &[FolderState]) {
        report::send(
            cx.report,
            ChildReport::Phase {
                phase: Phase::Fetching,
                progress: Some(status_lines::initial_progress(folders, self.stats.rate())),
            },
        );
    }

    /// One step of the first sync; `Finished` once every folder is done (or failed this run).
    async fn full_sync_step(
        &self,
        cx: &SourceCx<'_>,
        job: &Job,
    ) -> Result<BackfillNext, SyncError> {
        let listed = *self
            .backfill_listed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !listed {
            report::send(
                cx.report,
                ChildReport::Phase {
                    phase: Phase::Labels,
                    progress: None,
                },
            );
            self.refresh_folders(cx).await?;
            *self
                .backfill_listed
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = true;
        }
        let account = cx.account.0.as_str();
        let folders = store::folders(cx.store, account).map_err(store_err)?;
        self.report_progress(cx, &folders);
        let skipped = self
            .skipped
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let recent = self.options.recent_first;
        let next = folders
            .iter()
            .filter(|f| needs_initial(f) && !skipped.contains(&f.name))
            .min_by_key(|f| {
                let fetched = f.initial.as_ref().map_or(0, |p| p.fetched);
                (fetched >= recent, folder_rank(f), f.name.clone())
            })
            .map(|f| f.name.clone());
        let Some(name) = next else {
            let now = now_ms();
            cx.store
                .transaction(|tx| {
                    let akey = store::account_key(account);
                    let mut st: store::ImapAccountState =
                        store::load_tx(tx, &akey)?.unwrap_or_default();
                    st.initial_done = true;
                    st.last_sync_ms = Some(now);
                    store::save_tx(tx, &akey, &st)?;
                    tx.ack(job)
                })
                .map_err(store_err)?;
            flush(cx.store).await?;
            tracing::info!(account = %cx.account, folders = folders.len(), skipped = skipped.len(), "IMAP initial sync finished.");
            report::send(cx.report, ChildReport::FullSyncDone);
            return Ok(BackfillNext::Finished);
        };
        let mut sess = self.session().await?;
        match folder_sync::initial_step(&self.step(cx), sess.as_mut(), &name, recent).await {
            Ok(_) => Ok(BackfillNext::Continue),
            Err(e) => self
                .folder_failed(cx, &name, e)
                .await
                .map(|_| BackfillNext::Continue),
        }
    }

    /// A folder's step failed: a server NO/BAD skips the folder (kept with its error), any
    /// other error is the step's.
    async fn folder_failed(
        &self,
        cx: &SourceCx<'_>,
        name: &str,
        e: SyncError,
    ) -> Result<(), SyncError> {
        let SyncError::Api(ApiError::Transient(msg)) = &e else {
            return Err(e);
        };
        if !msg.starts_with(&format!("imap {} error", ImapErrorClass::Server.as_str())) {
            return Err(e);
        }
        tracing::warn!(account = %cx.account, folder = name, error = %msg, "IMAP folder step refused by the server; skipping the folder for now.");
        self.skipped
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_string());
        let key = store::folder_key(&cx.account.0, name);
        if let Some(mut f) = store::load::<FolderState>(cx.store, &key).map_err(store_err)? {
            f.last_error = Some(msg.clone());
            cx.store
                .transaction(|tx| store::save_tx(tx, &key, &f))
                .map_err(store_err)?;
            flush(cx.store).await?;
        }
        Ok(())
    }

    async fn gap_step(&self, cx: &SourceCx<'_>, job: &Job) -> Result<BackfillNext, SyncError> {
        let started = self
            .gap
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some();
        if !started {
            report::send(
                cx.report,
                ChildReport::Phase {
                    phase: Phase::Resyncing,
                    progress: None,
                },
            );
            self.refresh_folders(cx).await?;
            let names = self.folder_order(cx)?;
            *self.gap.lock().unwrap_or_else(PoisonError::into_inner) = Some(names);
        }
        let next = self
            .gap
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
            .and_then(VecDeque::pop_front);
        let Some(name) = next else {
            *self.gap.lock().unwrap_or_else(PoisonError::into_inner) = None;
            cx.store.transaction(|tx| tx.ack(job)).map_err(store_err)?;
            flush(cx.store).await?;
            report::send(cx.report, ChildReport::ResyncDone);
            return Ok(BackfillNext::Finished);
        };
        let mut sess = self.session().await?;
        let done =
            match folder_sync::incremental(&self.step(cx), sess.as_mut(), &name, Mode::FullDiff)
                .await
            {
                Ok(done) => done,
                Err(e) => {
                    self.folder_failed(cx, &name, e).await?;
                    true
                }
            };
        if !done
            && let Some(q) = self
                .gap
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_mut()
        {
            q.push_front(name);
        }
        Ok(BackfillNext::Continue)
    }

    /// One folder of an incremental round: by the poll schedule (`poll.rs`) nothing, a STATUS
    /// probe, or the full step (SELECT …) when STATUS differs from the stored cursor.
    async fn poll_folder(&self, cx: &SourceCx<'_>, name: &str) -> Result<bool, SyncError> {
        let key = store::folder_key(&cx.account.0, name);
        let Some(f) = store::load::<FolderState>(cx.store, &key).map_err(store_err)? else {
            return Ok(true);
        };
        let idle = self.options.idle_folders.iter().any(|i| i == name);
        let now = std::time::Instant::now();
        let mut sess = None;
        let mut changed = true;
        if !needs_initial(&f) {
            let has_modseq = f.highest_modseq.is_some();
            match self.poll.plan(name, idle, has_modseq, now) {
                poll::Plan::Skip => return Ok(true),
                poll::Plan::Full => {}
                poll::Plan::Probe => {
                    let mut s = self.session().await?;
                    let st = self.step(cx).port(s.status(name).await)?;
                    self.stats.status_probe();
                    if poll::unchanged(&f, &st) {
                        let forced = self.poll.plan(name, idle, st.highest_modseq.is_some(), now)
                            == poll::Plan::Full;
                        if !forced {
                            self.stats.poll_skipped();
                            self.poll.quiet(name, now);
                            return Ok(true);
                        }
                        changed = false;
                    }
                    sess = Some(s);
                }
            }
        }
        let mut sess = match sess {
            Some(s) => s,
            None => self.session().await?,
        };
        let done =
            folder_sync::incremental(&self.step(cx), sess.as_mut(), name, Mode::Best).await?;
        if done {
            self.poll.synced(name, changed, now);
        }
        Ok(done)
    }

    /// One step of a deep sync (`deep_sync.rs`): the next folder not yet covered.
    async fn deep_sync_step(
        &self,
        cx: &SourceCx<'_>,
        job: &Job,
        since: Option<String>,
        until: Option<String>,
        only: Option<&str>,
    ) -> Result<BackfillNext, SyncError> {
        let step = self.step(cx);
        let criteria = match deep_sync::search_criteria(since.as_deref(), until.as_deref()) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(account = %cx.account, job = %job.key, error = %e, "Dropping a deep-sync job with a bad range.");
                deep_sync::finish(&step, job).await?;
                return Ok(BackfillNext::Finished);
            }
        };
        let done = deep_sync::progress(&step, &job.key)?.done;
        let next = self
            .folder_order(cx)?
            .into_iter()
            .filter(|n| only.is_none_or(|o| o == n))
            .find(|n| !done.contains(n));
        let Some(name) = next else {
            deep_sync::finish(&step, job).await?;
            return Ok(BackfillNext::Finished);
        };
        let mut sess = self.session().await?;
        if let Err(e) =
            deep_sync::folder_step(&step, sess.as_mut(), &job.key, &name, &criteria).await
        {
            // Refused by the server: skipped (kept with its error); anything else retries.
            self.folder_failed(cx, &name, e).await?;
            deep_sync::mark_done(&step, &job.key, &name, 0, 0).await?;
        }
        Ok(BackfillNext::Continue)
    }

    fn folder_order(&self, cx: &SourceCx<'_>) -> Result<VecDeque<String>, SyncError> {
        let mut folders = store::folders(cx.store, &cx.account.0).map_err(store_err)?;
        folders.sort_by_key(|f| (folder_rank(f), f.name.clone()));
        Ok(folders.into_iter().map(|f| f.name).collect())
    }

    async fn incremental(&self, cx: &SourceCx<'_>) -> Result<IncrementalPage, SyncError> {
        self.idle.ensure_started(
            &self.port,
            cx.report,
            &self.options.idle_folders,
            self.options.idle_max,
            &self.stats,
            &self.poll,
        );
        let listed = self
            .round
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|r| r.listed);
        if listed != Some(true) {
            self.skipped
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
            self.refresh_folders(cx).await?;
            let remaining = self.folder_order(cx)?;
            *self.round.lock().unwrap_or_else(PoisonError::into_inner) = Some(Round {
                remaining,
                listed: true,
            });
            return Ok(IncrementalPage::default());
        }
        let next = self
            .round
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
            .and_then(|r| r.remaining.pop_front());
        let Some(name) = next else {
            // The round's end is not written: the AccountActor keeps the time from RoundDone,
            // and every folder's cursor is already durable.
            *self.round.lock().unwrap_or_else(PoisonError::into_inner) = None;
            return Ok(IncrementalPage {
                round_done: true,
                ingest_work: false,
                acked: 0,
            });
        };
        let result = self.poll_folder(cx, &name).await;
        let done = match result {
            Ok(done) => done,
            Err(e) => match self.folder_failed(cx, &name, e).await {
                Ok(()) => true,
                Err(e) => {
                    // Retry this folder after the driver's backoff; the round resumes with it.
                    if let Some(r) = self
                        .round
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .as_mut()
                    {
                        r.remaining.push_front(name);
                    }
                    return Err(e);
                }
            },
        };
        if !done
            && let Some(r) = self
                .round
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_mut()
        {
            r.remaining.push_front(name);
        }
        Ok(IncrementalPage::default())
    }
}

impl SyncSource for ImapSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Imap
    }

    fn ensure_jobs(&self, cx: &SourceCx<'_>) -> Result<StartState, StoreError> {
        let st = store::account_state(cx.store, &cx.account.0)?;
        if !st.initial_done {
            let now = now_ms();
            cx.store.transaction(|tx| {
                jobs::enqueue_backfill_tx(tx, cx.account, BackfillJob::FullSync, now)
            })?;
            cx.store.flush()?;
        }
        Ok(StartState::Running)
    }

    fn request_resync(&self, cx: &SourceCx<'_>) -> Result<(), StoreError> {
        let now = now_ms();
        cx.store
            .transaction(|tx| jobs::enqueue_backfill_tx(tx, cx.account, BackfillJob::Gap, now))?;
        cx.store.flush()
    }

    fn incremental_ready(&self, cx: &SourceCx<'_>) -> Result<bool, StoreError> {
        Ok(store::account_state(cx.store, &cx.account.0)?.initial_done)
    }

    fn incremental_page<'a>(
        &'a self,
        cx: &'a SourceCx<'a>,
        _pushes: &'a [Job],
    ) -> SourceFuture<'a, IncrementalPage> {
        Box::pin(self.incremental(cx))
    }

    fn backfill_step<'a>(
        &'a self,
        cx: &'a SourceCx<'a>,
        job: &'a Job,
    ) -> SourceFuture<'a, BackfillNext> {
        Box::pin(async move {
            match BackfillJob::decode(job).map_err(store_err)? {
                BackfillJob::FullSync => self.full_sync_step(cx, job).await,
                BackfillJob::Gap => self.gap_step(cx, job).await,
                BackfillJob::DeepSync {
                    since,
                    until,
                    folder,
                } => {
                    self.deep_sync_step(cx, job, since, until, folder.as_deref())
                        .await
                }
                BackfillJob::CalendarFull { .. } => {
                    cx.store.transaction(|tx| tx.ack(job)).map_err(store_err)?;
                    flush(cx.store).await?;
                    Ok(BackfillNext::Finished)
                }
            }
        })
    }

    fn ingest_batch<'a>(
        &'a self,
        cx: &'a SourceCx<'a>,
        jobs: &'a [Job],
    ) -> SourceFuture<'a, IngestBatch> {
        Box::pin(async move {
            // Nothing is ever enqueued for Ingest; stray jobs are acked.
            if !jobs.is_empty() {
                cx.store
                    .transaction(|tx| {
                        for j in jobs {
                            tx.ack(j)?;
                        }
                        Ok(())
                    })
                    .map_err(store_err)?;
                flush(cx.store).await?;
            }
            Ok(IngestBatch {
                done: jobs.to_vec(),
                ..IngestBatch::default()
            })
        })
    }

    fn cursor(&self, cx: &SourceCx<'_>) -> Option<String> {
        let folders = store::folders(cx.store, &cx.account.0).ok()?;
        let messages: u64 = folders.iter().map(|f| f.messages).sum();
        let mut s = format!(
            "{} folders, {messages} messages; connections: {}",
            folders.len(),
            self.port.health()
        );
        let errors = self.stats.errors();
        if !errors.is_empty() {
            let e: Vec<String> = errors
                .iter()
                .map(|(c, n)| format!("{} {n}", c.as_str()))
                .collect();
            s.push_str(&format!("; errors: {}", e.join(", ")));
        }
        s.push_str(&format!("; {:.0} msg/s", self.stats.rate()));
        Some(s)
    }

    fn reconnect(&self) -> SourceFuture<'_, ()> {
        Box::pin(async move {
            self.port
                .reconnect()
                .await
                .map_err(|e| SyncError::Api(e.into()))
        })
    }

    fn imap_status(&self, cx: &SourceCx<'_>) -> Option<crate::status_imap::ImapAccountStatus> {
        status_lines::account_status(
            cx.store,
            &cx.account.0,
            &self.stats,
            &self.poll,
            self.port.health(),
            &self.options.idle_folders,
            folder_rank,
        )
        .ok()
    }

    fn last_sync_ms(&self, cx: &SourceCx<'_>) -> Option<u64> {
        store::account_state(cx.store, &cx.account.0)
            .ok()?
            .last_sync_ms
    }
}
