//! The Gmail source: Google's mail sync recipe (gmail-api.md §7) as a [`SyncSource`] over the
//! [`GmailApi`] port. It owns the account's `AccountRecord` (history id cursor, full-sync and
//! gap progress) and the mail mirror's writes; the generic children only drive it.
//!
//! * incremental (this file): one `history.list` page per step; the last page of a round moves
//!   the cursor and acks the pushes it covers, in the same transaction.
//! * backfill (`backfill.rs`): full sync (labels, H0 *before* listing, `messages.list` pages →
//!   page fetch jobs of a batch of ids each, cursor ← H0 once Ingest drained) and gap recovery
//!   (id and per-label listings → reconcile, in bounded chunks: `gap.rs`).
//! * ingest (`fetch.rs`): one batched `messages.get` per step; one transaction records the
//!   messages and their feed events and acks the jobs; a 404 part is a deletion.

mod backfill;
mod fetch;
mod gap;
mod gap_listing;

pub use backfill::LISTING_AHEAD;
pub use gap::RECONCILE_CHUNK;
pub use gap_listing::SORT_SEGMENT;

use crate::account_record::{AccountRecord, HistoryRound};
use crate::error::{ApiError, SyncError};
use crate::freshness;
use crate::jobs::{self, BackfillJob};
use crate::mailbox::{Job, Priority};
use crate::mirror;
use crate::model::HistoryChange;
use crate::ports::GmailApi;
use crate::source::{
    BackfillNext, IncrementalPage, IngestBatch, SourceCx, SourceFuture, SourceKind, StartState,
    StoredStatus, SyncSource,
};
use crate::spec::now_ms;
use crate::store::StoreError;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often a round also re-reads the label list (label creations and renames do not appear in
/// history; the call costs one quota unit).
const LABEL_SYNC_EVERY: Duration = Duration::from_secs(300);

/// Options of a Gmail-shaped account.
#[derive(Clone, Debug)]
pub struct GmailOptions {
    /// The full-sync `q` (None = all mail).
    pub initial_query: Option<String>,
    /// Ids per messages.list page.
    pub list_page_size: u32,
    /// How many ids the full sync's listing may run ahead of the fetching
    /// ([`LISTING_AHEAD`] unless a test wants a smaller mailbox to show the bound).
    pub listing_ahead: u64,
    /// Ids per Ingest page job of the full sync (`ingest_pages.rs`): the account's batch
    /// size, so one page is one batch.
    pub ingest_page_ids: usize,
}

/// The Gmail source of one account.
pub struct GmailSource {
    kind: SourceKind,
    api: Arc<dyn GmailApi>,
    options: GmailOptions,
    labels_synced_at: Mutex<Option<Instant>>,
    backfill_started: Mutex<Option<Instant>>,
    /// Label ids in use that `labels.list` does not return (asked once each).
    unlisted_labels: Mutex<std::collections::HashSet<String>>,
}

impl GmailSource {
    /// A Gmail source over `api` (`kind` is `Gmail`, or `Test` for the synthetic provider).
    pub fn new(kind: SourceKind, api: Arc<dyn GmailApi>, options: GmailOptions) -> GmailSource {
        GmailSource {
            kind,
            api,
            options,
            labels_synced_at: Mutex::new(None),
            backfill_started: Mutex::new(None),
            unlisted_labels: Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// The port (push watch renewal uses it directly).
    pub fn api(&self) -> &Arc<dyn GmailApi> {
        &self.api
    }

    /// Mirrors label creations, renames and deletions. A failure is logged and retried at the
    /// next round; it never blocks message sync.
    async fn refresh_labels(&self, cx: &SourceCx<'_>) -> Result<(), SyncError> {
        let remote = match self.api.labels().await {
            Ok(l) => l,
            Err(ApiError::Internal(e)) => return Err(SyncError::Api(ApiError::Internal(e))),
            Err(e) => {
                tracing::warn!(account = %cx.account, error = %e, "Label sync failed; retrying next round.");
                return Ok(());
            }
        };
        let events = mirror::store_remote_labels(cx.store, &cx.account.0, &remote, now_ms())
            .map_err(store_err)?;
        if events > 0 {
            cx.store.flush_async().await.map_err(store_err)?;
        }
        *self
            .labels_synced_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        Ok(())
    }

    /// Labels first: if `used` names a label the mirror does not know, the label list is read
    /// (and its `label.created` events committed) before anything that uses it, so a consumer
    /// always sees a label before its first use. A failing `labels.list` fails the step
    /// (it is retried), rather than letting a message event overtake its label.
    async fn ensure_labels<'a>(
        &self,
        cx: &SourceCx<'_>,
        used: impl Iterator<Item = &'a crate::model::LabelId>,
    ) -> Result<(), SyncError> {
        let known: std::collections::HashSet<String> = mirror::labels(cx.store, &cx.account.0)
            .map_err(store_err)?
            .into_iter()
            .map(|l| l.id.0)
            .collect();
        let mut used = used;
        let Some(unknown) = used.find(|l| {
            !known.contains(&l.0)
                && !self
                    .unlisted_labels
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .contains(&l.0)
        }) else {
            return Ok(());
        };
        let unknown = unknown.0.clone();
        tracing::debug!(account = %cx.account, label = %unknown, "Unknown label in use; reading the label list first.");
        let remote = self.api.labels().await?;
        if !remote.iter().any(|l| l.id.0 == unknown) {
            // A label the list never shows (some system labels): don't ask again for it.
            self.unlisted_labels
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(unknown);
        }
        let events = mirror::store_remote_labels(cx.store, &cx.account.0, &remote, now_ms())
            .map_err(store_err)?;
        if events > 0 {
            cx.store.flush_async().await.map_err(store_err)?;
        }
        *self
            .labels_synced_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        Ok(())
    }

    async fn history_page(
        &self,
        cx: &SourceCx<'_>,
        pushes: &[Job],
    ) -> Result<IncrementalPage, SyncError> {
        let account = cx.account.0.clone();
        let rec = AccountRecord::load(cx.store, &account).map_err(store_err)?;
        let Some(cursor) = rec.history_id else {
            return Ok(IncrementalPage {
                round_done: true,
                ..IncrementalPage::default()
            });
        };
        let round = rec.history_round.clone().unwrap_or(HistoryRound {
            start: cursor,
            next_page_token: None,
            pages: 0,
        });
        let due = self
            .labels_synced_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none_or(|t| t.elapsed() >= LABEL_SYNC_EVERY);
        if round.pages == 0 && due {
            self.refresh_labels(cx).await?;
        }
        let page = self
            .api
            .history(round.start, round.next_page_token.as_deref())
            .await?;
        let uses_labels = page.changes.iter().any(|c| match c {
            HistoryChange::MessageAdded { label_ids, .. }
            | HistoryChange::LabelsAdded { label_ids, .. } => !label_ids.is_empty(),
            _ => false,
        });
        if uses_labels {
            // Skipped on an empty poll: it would read every mirrored label for nothing.
            self.ensure_labels(
                cx,
                page.changes.iter().flat_map(|c| match c {
                    HistoryChange::MessageAdded { label_ids, .. }
                    | HistoryChange::LabelsAdded { label_ids, .. } => label_ids.iter(),
                    _ => [].iter(),
                }),
            )
            .await?;
        }
        let now = now_ms();
        let id = cx.account.clone();
        let last = page.next_page_token.is_none();
        let new_cursor = page.history_id.max(round.start);
        let covered: Vec<&Job> = if last {
            pushes
                .iter()
                .filter(|j| {
                    j.key.starts_with("history:") && jobs::history_push_id(j) <= new_cursor.0
                })
                .collect()
        } else {
            Vec::new()
        };
        if last
            && round.pages == 0
            && page.changes.is_empty()
            && covered.is_empty()
            && new_cursor == cursor
        {
            // A poll that found nothing: no cursor move, no push to ack, nothing to record.
            // Writing (and flushing) the round's time anyway would make a thousand idle
            // accounts churn the store; the AccountActor keeps the time in memory.
            return Ok(IncrementalPage {
                round_done: true,
                ..IncrementalPage::default()
            });
        }
        let enqueued = cx
            .store
            .transaction(|tx| {
                let mut enqueued = 0usize;
                for (idx, change) in page.changes.iter().enumerate() {
                    // Stable across replays: the round's start, the page number and position.
                    let disc = format!("h{}.p{}.{}", round.start, round.pages, idx);
                    // A fetch in flight for this message must not overwrite this change.
                    if let Some(at) = page.change_ids.get(idx).copied() {
                        match change {
                            HistoryChange::MessageDeleted { id: mid } => {
                                freshness::note_change(tx, &id, mid, at, true)?;
                            }
                            HistoryChange::LabelsAdded { id: mid, .. }
                            | HistoryChange::LabelsRemoved { id: mid, .. } => {
                                freshness::note_change(tx, &id, mid, at, false)?;
                            }
                            HistoryChange::MessageAdded { .. } => {}
                        }
                    }
                    match change {
                        HistoryChange::MessageAdded { id: mid, .. } => {
                            if mirror::get_message_tx(tx, &account, mid)?.is_none() {
                                jobs::enqueue_ingest_tx(tx, &id, &mid.0, Priority::RealTime, now)?;
                                enqueued += 1;
                            }
                        }
                        HistoryChange::MessageDeleted { id: mid } => {
                            mirror::apply_deleted(tx, &account, mid, now)?;
                        }
                        HistoryChange::LabelsAdded { id: mid, label_ids } => {
                            mirror::apply_label_delta(
                                tx,
                                &account,
                                mid,
                                label_ids,
                                &[],
                                &disc,
                                now,
                            )?;
                        }
                        HistoryChange::LabelsRemoved { id: mid, label_ids } => {
                            mirror::apply_label_delta(
                                tx,
                                &account,
                                mid,
                                &[],
                                label_ids,
                                &disc,
                                now,
                            )?;
                        }
                    }
                }
                let mut rec = AccountRecord::load_tx(tx, &account)?;
                if last {
                    // The cursor moves only with the round's last page.
                    rec.history_id = Some(new_cursor);
                    rec.history_round = None;
                    rec.last_incremental_sync_at_ms = Some(now);
                    for job in &covered {
                        tx.ack(job)?;
                    }
                } else {
                    rec.history_round = Some(HistoryRound {
                        start: round.start,
                        next_page_token: page.next_page_token.clone(),
                        pages: round.pages + 1,
                    });
                }
                rec.save_tx(tx, &account)?;
                Ok(enqueued)
            })
            .map_err(store_err)?;
        // Durable before Ingest or anyone else is told.
        cx.store.flush_async().await.map_err(store_err)?;
        if last && !covered.is_empty() {
            tracing::debug!(account = %cx.account, pushes = covered.len(), history_id = %new_cursor, "Pushes covered by this round.");
        }
        Ok(IncrementalPage {
            round_done: last,
            ingest_work: enqueued > 0,
            acked: covered.len(),
        })
    }
}

/// How soon after a pushed round HistorySync looks again (see [`SyncSource::push_follow_up`]).
pub const PUSH_FOLLOW_UP: std::time::Duration = std::time::Duration::from_secs(2);

pub(crate) fn store_err(e: impl std::fmt::Display) -> SyncError {
    SyncError::Store(e.to_string())
}

impl SyncSource for GmailSource {
    fn kind(&self) -> SourceKind {
        self.kind
    }

    /// Gmail drops a notification within a second of the previous one for the same user;
    /// one look two seconds after a pushed round finds what such a dropped one announced.
    fn push_follow_up(&self) -> Option<std::time::Duration> {
        Some(PUSH_FOLLOW_UP)
    }

    fn ensure_jobs(&self, cx: &SourceCx<'_>) -> Result<StartState, StoreError> {
        let rec = AccountRecord::load(cx.store, &cx.account.0)?;
        let now = now_ms();
        cx.store.transaction(|tx| {
            if !rec.initial_sync_completed && rec.gap.is_none() {
                jobs::enqueue_backfill_tx(tx, cx.account, BackfillJob::FullSync, now)?;
            }
            if rec.gap.is_some() {
                jobs::enqueue_backfill_tx(tx, cx.account, BackfillJob::Gap, now)?;
            }
            Ok(())
        })?;
        cx.store.flush()?;
        Ok(if rec.gap.is_some() {
            StartState::Resyncing
        } else {
            StartState::Running
        })
    }

    fn request_resync(&self, cx: &SourceCx<'_>) -> Result<(), StoreError> {
        let now = now_ms();
        cx.store
            .transaction(|tx| jobs::enqueue_backfill_tx(tx, cx.account, BackfillJob::Gap, now))?;
        cx.store.flush()
    }

    fn incremental_ready(&self, cx: &SourceCx<'_>) -> Result<bool, StoreError> {
        let rec = AccountRecord::load(cx.store, &cx.account.0)?;
        // Backfill owns the account until the full sync or gap recovery ends; it nudges us.
        Ok(rec.initial_sync_completed && rec.gap.is_none() && rec.history_id.is_some())
    }

    fn incremental_page<'a>(
        &'a self,
        cx: &'a SourceCx<'a>,
        pushes: &'a [Job],
    ) -> SourceFuture<'a, IncrementalPage> {
        Box::pin(self.history_page(cx, pushes))
    }

    fn backfill_step<'a>(
        &'a self,
        cx: &'a SourceCx<'a>,
        job: &'a Job,
    ) -> SourceFuture<'a, BackfillNext> {
        Box::pin(async move {
            let started = *self
                .backfill_started
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert_with(Instant::now);
            let step = backfill::Steps {
                source: self,
                cx,
                job,
                started,
            };
            match BackfillJob::decode(job).map_err(store_err)? {
                BackfillJob::FullSync => step.full_sync().await,
                BackfillJob::Gap => step.gap().await,
                BackfillJob::CalendarFull { .. } | BackfillJob::DeepSync { .. } => {
                    // Not a Gmail job (a config changed kinds under a data dir): drop it.
                    tracing::warn!(account = %cx.account, job = %job.key, "Ignoring a calendar or IMAP job on a Gmail account.");
                    step.finish_job()?;
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
        Box::pin(self.fetch_batch(cx, jobs))
    }

    fn cursor(&self, cx: &SourceCx<'_>) -> Option<String> {
        AccountRecord::load(cx.store, &cx.account.0)
            .ok()
            .and_then(|r| r.history_id)
            .map(|h| format!("historyId {h}"))
    }

    fn last_sync_ms(&self, cx: &SourceCx<'_>) -> Option<u64> {
        AccountRecord::load(cx.store, &cx.account.0)
            .ok()
            .and_then(|r| r.last_incremental_sync_at_ms.or(r.last_full_sync_at_ms))
    }

    fn stored_status(&self, cx: &SourceCx<'_>) -> StoredStatus {
        // One record holds them all: one read and one decode per status.
        let Ok(r) = AccountRecord::load(cx.store, &cx.account.0) else {
            return StoredStatus::default();
        };
        StoredStatus {
            cursor: r.history_id.map(|h| format!("historyId {h}")),
            last_sync_ms: r.last_incremental_sync_at_ms.or(r.last_full_sync_at_ms),
            last_resync_units: r.last_gap_list_calls.map(|calls| calls * 5 + 2),
            last_resync_working_set: r.last_gap_peak_buffered,
        }
    }

    fn reconnect(&self) -> SourceFuture<'_, ()> {
        Box::pin(async move { self.api.reconnect().await.map_err(SyncError::Api) })
    }

    fn last_resync_units(&self, cx: &SourceCx<'_>) -> Option<u64> {
        AccountRecord::load(cx.store, &cx.account.0)
            .ok()
            .and_then(|r| r.last_gap_list_calls)
            .map(|calls| calls * 5 + 2)
    }

    fn last_resync_working_set(&self, cx: &SourceCx<'_>) -> Option<u64> {
        AccountRecord::load(cx.store, &cx.account.0)
            .ok()
            .and_then(|r| r.last_gap_peak_buffered)
    }
}
