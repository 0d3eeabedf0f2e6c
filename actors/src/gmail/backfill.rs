//! Gmail backfill steps: the full sync of one account (the gap recovery's steps are in
//! `gap.rs`), one provider call per step so a stop never waits for more than one page.
//!
//! The job's progress lives in the `AccountRecord` (page tokens, the history id read before
//! listing), written in the same transaction as each page's effects, so a crash resumes at the
//! page it was on and every replayed write is a no-op.
//!
//! * **Full sync** (gmail-api.md §7.1): labels, then the profile history id H0 *before*
//!   listing, then messages.list page by page → Ingest jobs at backfill priority; when listing is
//!   done and Ingest has drained, the cursor becomes H0 and partial sync takes over.
//! * **Gap recovery** (history 404): labels, profile id H1, then a reconcile that is cheap in
//!   quota: every id listed (5 units per 500) → missing ones fetched, vanished ones deleted; then
//!   ids listed per label → every label set rebuilt without one messages.get; cursor ← H1.
//!   It works in bounded chunks; see `gap.rs`.

use super::{GmailSource, store_err};
use crate::account_record::{AccountRecord, FullSyncState};
use crate::error::SyncError;
use crate::ingest_pages;
use crate::jobs::{self, ChildKind};
use crate::mailbox::{Job, Priority, QueueDepth};
use crate::mirror;
use crate::model::{LabelId, ListQuery};
use crate::report::{self, ChildReport};
use crate::source::{BackfillNext, SourceCx};
use crate::spec::now_ms;
use crate::status::{Phase, Progress};
use std::time::{Duration, Instant};

/// One backfill step of a Gmail account.
pub(super) struct Steps<'a> {
    pub source: &'a GmailSource,
    pub cx: &'a SourceCx<'a>,
    pub job: &'a Job,
    pub started: Instant,
}

impl Steps<'_> {
    pub(super) fn report(&self, phase: Phase, done: u64, total: Option<u64>) {
        let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
        let per_second = done as f64 / elapsed;
        let eta_seconds = total.and_then(|t| {
            (per_second > 0.0).then(|| (t.saturating_sub(done) as f64 / per_second) as u64)
        });
        report::send(
            self.cx.report,
            ChildReport::Phase {
                phase,
                progress: Some(Progress {
                    done,
                    total,
                    per_second,
                    eta_seconds,
                }),
            },
        );
    }

    /// Mirrors the provider's labels (upsert, rename, delete vanished) in one transaction.
    pub(super) async fn sync_labels(&self) -> Result<(), SyncError> {
        let remote = self.source.api.labels().await?;
        mirror::store_remote_labels(self.cx.store, &self.cx.account.0, &remote, now_ms())
            .map_err(store_err)?;
        Ok(())
    }

    /// A listing bounded by the account's `initial_query` (full sync, gap recovery, resync
    /// and the per-label listings alike: one meaning of "the messages this account mirrors").
    pub(super) fn query(&self, label: Option<String>, page_size: u32) -> ListQuery {
        ListQuery {
            q: self.source.options.initial_query.clone(),
            label_id: label.map(LabelId),
            include_spam_trash: true,
            page_size,
        }
    }

    pub(super) async fn full_sync(&self) -> Result<BackfillNext, SyncError> {
        let account = self.cx.account.0.clone();
        let rec = AccountRecord::load(self.cx.store, &account).map_err(store_err)?;
        if rec.initial_sync_completed {
            self.finish_job()?;
            return Ok(BackfillNext::Finished);
        }
        let Some(fs) = rec.full_sync.clone() else {
            report::send(
                self.cx.report,
                ChildReport::Phase {
                    phase: Phase::Labels,
                    progress: None,
                },
            );
            self.sync_labels().await?;
            // Read the history id *before* listing: partial sync from it replays whatever
            // changes while the full sync runs (gmail-api.md §7.1).
            let profile = self.source.api.profile().await?;
            let state = FullSyncState {
                start_history_id: profile.history_id,
                estimate: profile.messages_total,
                ..FullSyncState::default()
            };
            self.cx
                .store
                .transaction(|tx| {
                    let mut rec = AccountRecord::load_tx(tx, &account)?;
                    rec.full_sync = Some(state.clone());
                    rec.save_tx(tx, &account)
                })
                .map_err(store_err)?;
            self.cx.store.flush_async().await.map_err(store_err)?;
            return Ok(BackfillNext::Continue);
        };
        if !fs.listing_done {
            // The listing stays at most `listing_ahead` jobs (and one page) ahead of Ingest,
            // so the queue, and sled's memory for it, is bounded whatever the mailbox's size.
            let outstanding = self.ingest_outstanding()?.0;
            if outstanding >= self.source.options.listing_ahead {
                self.report_fetching(&fs, outstanding);
                return Ok(BackfillNext::WaitThen(LISTING_AHEAD_CHECK));
            }
            let q = self.query(None, self.source.options.list_page_size);
            let page = self
                .source
                .api
                .list_messages(&q, fs.next_page_token.as_deref())
                .await?;
            let now = now_ms();
            let id = self.cx.account.clone();
            let page_ids = self.source.options.ingest_page_ids.max(1);
            self.cx
                .store
                .transaction(|tx| {
                    let mut unmirrored = Vec::with_capacity(page.ids.len());
                    for mid in &page.ids {
                        if mirror::get_message_tx(tx, &account, mid)?.is_none() {
                            unmirrored.push(mid.0.as_str());
                        }
                    }
                    // One Ingest job per batch of ids (`ingest_pages.rs`); the key is the
                    // same when this step runs again after a crash.
                    for (i, chunk) in unmirrored.chunks(page_ids).enumerate() {
                        let disc = format!("h{}.p{}.{i}", fs.start_history_id, fs.pages);
                        ingest_pages::enqueue_tx(tx, &id, &disc, chunk, Priority::Backfill, now)?;
                    }
                    let mut rec = AccountRecord::load_tx(tx, &account)?;
                    if let Some(fs) = rec.full_sync.as_mut() {
                        fs.pages += 1;
                        fs.listed += page.ids.len() as u64;
                        if fs.estimate == 0 {
                            fs.estimate = page.result_size_estimate;
                        }
                        fs.next_page_token = page.next_page_token.clone();
                        fs.listing_done = page.next_page_token.is_none();
                    }
                    rec.save_tx(tx, &account)
                })
                .map_err(store_err)?;
            // Durable before Ingest is told: the flush is this page's commit point.
            self.cx.store.flush_async().await.map_err(store_err)?;
            report::send(self.cx.report, ChildReport::IngestWork);
            let listed = fs.listed + page.ids.len() as u64;
            if listed <= self.source.options.listing_ahead {
                self.report(
                    Phase::Listing,
                    listed,
                    Some(fs.estimate.max(page.result_size_estimate)),
                );
            } else {
                self.report_fetching(&fs, outstanding);
            }
            return Ok(BackfillNext::Continue);
        }
        // Listing is done: wait for Ingest to drain, then the cursor becomes H0.
        let (outstanding, depth) = self.ingest_outstanding()?;
        if outstanding > 0 {
            self.report_fetching(&fs, outstanding);
            return Ok(BackfillNext::WaitThen(drain_check_interval(outstanding)));
        }
        let now = now_ms();
        let job = Some(self.job.clone());
        let left = self
            .cx
            .store
            .transaction(|tx| {
                let left = ingest_pages::clear_tally_tx(tx, self.cx.account)?;
                let mut rec = AccountRecord::load_tx(tx, &account)?;
                rec.history_id = Some(fs.start_history_id);
                rec.initial_sync_completed = true;
                rec.last_full_sync_at_ms = Some(now);
                rec.full_sync = None;
                rec.save_tx(tx, &account)?;
                if let Some(j) = &job {
                    tx.ack(j)?;
                }
                Ok(left)
            })
            .map_err(store_err)?;
        self.cx.store.flush_async().await.map_err(store_err)?;
        if left.pages > 0 {
            tracing::warn!(account = %self.cx.account, pages = left.pages, ids = left.items, "Full sync finished without the ids of Ingest page jobs dead-lettered unread; `ctl dead` lists them.");
        }
        tracing::info!(account = %self.cx.account, listed = fs.listed, dead_lettered = depth.dead, history_id = %fs.start_history_id, "Full sync finished.");
        report::send(self.cx.report, ChildReport::FullSyncDone);
        Ok(BackfillNext::Finished)
    }

    /// Ids the Ingest queue has not finished (a page job counts its ids, see
    /// `ingest_pages.rs`), and the queue's depth in jobs. Counters only, no scan.
    fn ingest_outstanding(&self) -> Result<(u64, QueueDepth), SyncError> {
        let depth = self
            .cx
            .store
            .mailbox(&jobs::mailbox_name(self.cx.account, ChildKind::Ingest))
            .depth()
            .map_err(store_err)?;
        let tally = ingest_pages::tally(self.cx.store, self.cx.account).map_err(store_err)?;
        Ok((
            ingest_pages::outstanding_items(outstanding(&depth), tally),
            depth,
        ))
    }

    /// Fetch progress derived from the queue's counters (listed ids not yet fetched), so
    /// the checks repeated while Ingest works never scan the queue or the mirror.
    fn report_fetching(&self, fs: &FullSyncState, outstanding: u64) {
        let total = if fs.listing_done {
            fs.listed
        } else {
            fs.estimate.max(fs.listed)
        };
        self.report(
            Phase::Fetching,
            fs.listed.saturating_sub(outstanding),
            Some(total),
        );
    }

    pub(super) fn finish_job(&self) -> Result<(), SyncError> {
        self.cx
            .store
            .mailbox(&jobs::mailbox_name(self.cx.account, ChildKind::Backfill))
            .ack(self.job)
            .map_err(store_err)
    }
}

/// Jobs a queue has not finished: pending, leased and waiting to retry (dead letters are
/// finished: they wait for an admin, not for Ingest).
fn outstanding(d: &QueueDepth) -> u64 {
    (d.pending + d.leased + d.delayed) as u64
}

/// How many ids the full sync's listing may run ahead of the fetching: 40 pages of
/// 500 ids, several seconds of work at the emulator's unthrottled rate and many minutes at
/// Google's quota, so Ingest never starves, while the queue stays the same size for a
/// mailbox of 20,000 messages or of 1,000,000.
pub const LISTING_AHEAD: u64 = 20_000;

/// How often a listing held back by [`LISTING_AHEAD`] looks at the queue again (reads of
/// counters and the page tally, no scan).
const LISTING_AHEAD_CHECK: Duration = Duration::from_millis(250);

/// How long the full sync waits, once its listing is done, before it reads the Ingest queue's
/// counters again: a deep queue is looked at less often (2 s at 100,000 jobs, at most 5 s),
/// a nearly drained one every 500 ms. With the listing held to `listing_ahead`, the queue is
/// never deep enough here for more than 500 ms.
fn drain_check_interval(outstanding: u64) -> Duration {
    Duration::from_micros(outstanding.saturating_mul(20))
        .clamp(Duration::from_millis(500), Duration::from_secs(5))
}

#[cfg(test)]
#[path = "listing_ahead_tests.rs"]
mod listing_ahead_tests;

#[cfg(test)]
mod tests {
    use super::drain_check_interval;
    use std::time::Duration;

    #[test]
    fn a_deep_queue_is_counted_less_often() {
        assert_eq!(drain_check_interval(0), Duration::from_millis(500));
        assert_eq!(drain_check_interval(10_000), Duration::from_millis(500));
        assert_eq!(drain_check_interval(100_000), Duration::from_secs(2));
        assert_eq!(drain_check_interval(10_000_000), Duration::from_secs(5));
    }
}
