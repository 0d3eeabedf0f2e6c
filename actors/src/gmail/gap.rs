//! Gmail gap recovery (history 404) in bounded memory: labels, the profile history id H1, then
//! a reconcile that is cheap in quota and never holds more than one chunk of ids.
//!
//! 1. **List ids** (5 units per 500): each page is appended to the account's listing file
//!    (`gap_listing.rs`, outside sled); ids not mirrored become Ingest jobs.
//! 2. **List ids per label**: each listed (id, label) is appended to the same file.
//! 3. **Sort** the listing on disk ([`SORT_SEGMENT`] entries in memory at a time) into one
//!    record per id the id listing returned, with its labels, in id byte order.
//! 4. **Reconcile**: the mirror is walked in id order, [`RECONCILE_CHUNK`] records per step and
//!    transaction, merged with the sorted listing: a record the listing lacks vanished
//!    (deleted), one whose listed labels differ is relabeled. The walk's position in both is
//!    stored with each chunk, so a crash resumes after the last chunk committed.
//! 5. **Clear** the scratch files; then the cursor becomes H1.
//!
//! Each step's working set is one listing page, one sort segment or one chunk, whatever the
//! mailbox size; the largest one is recorded ([`GapState::peak_buffered`]) and shown in status.
//! Scratch files lost or damaged (a restored backup, a disk error) restart the recovery.

use super::backfill::Steps;
use super::gap_listing::{
    GapScratch, ListedEntry, ListedId, SORT_SEGMENT, ScratchError, SortedReader,
};
use super::store_err;
use crate::account_record::{AccountRecord, GapState, GapStep};
use crate::error::{ApiError, SyncError};
use crate::jobs;
use crate::mailbox::Priority;
use crate::mirror;
use crate::model::{LabelId, MessageId};
use crate::report::{self, ChildReport};
use crate::source::BackfillNext;
use crate::spec::now_ms;
use crate::status::Phase;
use crate::store::Space;
use std::cmp::Ordering;
use std::ops::Bound;

/// Mirror records per reconcile step (and transaction).
pub const RECONCILE_CHUNK: usize = 500;

/// Ids per listing page (Gmail's maximum).
const LIST_PAGE: u32 = 500;

/// The listing layout this build writes ([`GapState::marker_layout`]): files sorted on disk.
const MARKER_LAYOUT: u32 = 2;

/// Why a step stopped: a sync error, or scratch files that can no longer be trusted.
enum StepError {
    Sync(SyncError),
    Lost(ScratchError),
}

impl From<SyncError> for StepError {
    fn from(e: SyncError) -> Self {
        StepError::Sync(e)
    }
}

impl From<ApiError> for StepError {
    fn from(e: ApiError) -> Self {
        StepError::Sync(e.into())
    }
}

impl From<ScratchError> for StepError {
    fn from(e: ScratchError) -> Self {
        match e {
            ScratchError::Lost { .. } => StepError::Lost(e),
            ScratchError::Io { .. } => StepError::Sync(store_err(e)),
        }
    }
}

/// The scratch markers of layouts 0 and 1 (`gap\0<account>\0…` in `Space::Cursors`).
fn legacy_prefix(account: &str) -> Vec<u8> {
    let mut k = b"gap\0".to_vec();
    k.extend_from_slice(account.as_bytes());
    k.push(0);
    k
}

/// Advances `listed` to `id`; returns its record if the id listing returned `id`.
fn listed_at(listed: &mut SortedReader, id: &str) -> Result<Option<ListedId>, ScratchError> {
    loop {
        let Some(record) = listed.peek()? else {
            return Ok(None);
        };
        match record.id.as_bytes().cmp(id.as_bytes()) {
            Ordering::Less => {
                listed.advance();
            }
            Ordering::Equal => return Ok(listed.advance()),
            Ordering::Greater => return Ok(None),
        }
    }
}

/// What every listing page records with its effects: the call, the listing file's new length,
/// the page it held and the step that follows.
fn record_page(g: &mut GapState, listed_len: u64, held: usize, next: GapStep) {
    g.list_calls += 1;
    g.listed_len = listed_len;
    g.peak_buffered = g.peak_buffered.max(held as u64);
    g.step = next;
}

/// One mirrored message as the reconcile sees it.
struct Mirrored {
    id: MessageId,
    internal_date_ms: i64,
    labels: Vec<LabelId>,
}

impl Steps<'_> {
    fn scratch(&self) -> GapScratch {
        GapScratch::new(self.cx.store.dir(), &self.cx.account.0)
    }

    pub(super) async fn gap(&self) -> Result<BackfillNext, SyncError> {
        let account = self.cx.account.0.clone();
        let rec = AccountRecord::load(self.cx.store, &account).map_err(store_err)?;
        let Some(gap) = rec.gap.clone() else {
            self.start_gap().await?;
            return Ok(BackfillNext::Continue);
        };
        if gap.marker_layout != MARKER_LAYOUT || gap.step == GapStep::Apply {
            // Started by an older build with other markers: start over (costs the listings
            // again, never misreads a marker).
            tracing::info!(account = %self.cx.account, layout = gap.marker_layout, "Restarting a gap recovery begun with an older marker layout.");
            self.restart_gap().await?;
            return Ok(BackfillNext::Continue);
        }
        let step = match gap.step.clone() {
            GapStep::ListIds { next_page_token } => self.list_ids(&gap, next_page_token).await,
            GapStep::ListLabel {
                remaining,
                next_page_token,
            } => self.list_label(&gap, remaining, next_page_token).await,
            GapStep::Reconcile {
                floor,
                after,
                clearing: false,
                sorted_offset,
            } => {
                self.reconcile_chunk(&gap, floor, after, sorted_offset)
                    .await
            }
            GapStep::Reconcile { clearing: true, .. } => {
                self.clear_scratch()?;
                self.finish_gap(&gap).await?;
                return Ok(BackfillNext::Finished);
            }
            GapStep::Apply => unreachable!("handled above"),
        };
        match step {
            Ok(()) => Ok(BackfillNext::Continue),
            Err(StepError::Sync(e)) => Err(e),
            Err(StepError::Lost(e)) => {
                tracing::warn!(account = %self.cx.account, error = %e, "The gap recovery's listing files are lost or damaged; starting the recovery over.");
                self.restart_gap().await?;
                Ok(BackfillNext::Continue)
            }
        }
    }

    /// Drops the recovery in progress (its scratch and its state); the next step starts anew.
    async fn restart_gap(&self) -> Result<(), SyncError> {
        let account = self.cx.account.0.clone();
        self.clear_scratch()?;
        self.cx
            .store
            .transaction(|tx| {
                let mut rec = AccountRecord::load_tx(tx, &account)?;
                rec.gap = None;
                rec.save_tx(tx, &account)
            })
            .map_err(store_err)?;
        self.cx.store.flush_async().await.map_err(store_err)?;
        Ok(())
    }

    /// Start: labels first (so every current label is listed), then H1, then ids.
    async fn start_gap(&self) -> Result<(), SyncError> {
        let account = self.cx.account.0.clone();
        report::send(
            self.cx.report,
            ChildReport::Phase {
                phase: Phase::Resyncing,
                progress: None,
            },
        );
        self.clear_scratch()?;
        self.sync_labels().await?;
        let profile = self.source.api.profile().await?;
        let state = GapState {
            start_history_id: profile.history_id,
            step: GapStep::ListIds {
                next_page_token: None,
            },
            list_calls: 0,
            appeared: 0,
            vanished: 0,
            relabeled: 0,
            marker_layout: MARKER_LAYOUT,
            listed_len: 0,
            peak_buffered: 0,
        };
        self.cx
            .store
            .transaction(|tx| {
                let mut rec = AccountRecord::load_tx(tx, &account)?;
                rec.gap = Some(state.clone());
                rec.history_round = None;
                rec.save_tx(tx, &account)
            })
            .map_err(store_err)?;
        self.cx.store.flush_async().await.map_err(store_err)?;
        Ok(())
    }

    /// One page of every id: appended to the listing; an Ingest job per id not mirrored.
    async fn list_ids(&self, gap: &GapState, token: Option<String>) -> Result<(), StepError> {
        let account = self.cx.account.0.clone();
        let q = self.query(None, LIST_PAGE);
        let page = self.source.api.list_messages(&q, token.as_deref()).await?;
        let labels: Vec<String> = mirror::labels(self.cx.store, &account)
            .map_err(store_err)?
            .into_iter()
            .map(|l| l.id.0)
            .collect();
        // Outside the transaction: only this recovery writes the mirror while it lists, and
        // a job for a message that is mirrored after all is a no-op for Ingest.
        let messages = self.cx.store.kv(Space::Messages);
        let mut missing = Vec::new();
        for mid in &page.ids {
            if !messages
                .contains_key(mirror::record_key(&account, &mid.0))
                .map_err(store_err)?
            {
                missing.push(mid.0.clone());
            }
        }
        let listed_len = self.scratch().append(
            gap.listed_len,
            page.ids.iter().map(|m| ListedEntry::id(&m.0)),
        )?;
        let next = match &page.next_page_token {
            Some(t) => GapStep::ListIds {
                next_page_token: Some(t.clone()),
            },
            None => GapStep::ListLabel {
                remaining: labels,
                next_page_token: None,
            },
        };
        let now = now_ms();
        let id = self.cx.account.clone();
        self.cx
            .store
            .transaction(|tx| {
                for mid in &missing {
                    jobs::enqueue_ingest_tx(tx, &id, mid, Priority::Backfill, now)?;
                }
                let mut rec = AccountRecord::load_tx(tx, &account)?;
                if let Some(g) = rec.gap.as_mut() {
                    g.appeared += missing.len() as u64;
                    record_page(g, listed_len, page.ids.len(), next.clone());
                }
                rec.save_tx(tx, &account)
            })
            .map_err(store_err)?;
        self.cx.store.flush_async().await.map_err(store_err)?;
        report::send(self.cx.report, ChildReport::IngestWork);
        self.report(Phase::Resyncing, gap.list_calls + 1, None);
        Ok(())
    }

    /// One page of the head label's ids, appended to the listing; once every label is listed,
    /// the listing is sorted. Ids the id listing did not see are left alone (as before: an
    /// unlisted mirrored id is a deletion).
    async fn list_label(
        &self,
        gap: &GapState,
        remaining: Vec<String>,
        token: Option<String>,
    ) -> Result<(), StepError> {
        let account = self.cx.account.0.clone();
        let Some(label) = remaining.first().cloned() else {
            return self.sort_listing(gap).await;
        };
        let q = self.query(Some(label.clone()), LIST_PAGE);
        let page = self.source.api.list_messages(&q, token.as_deref()).await?;
        let listed_len = self.scratch().append(
            gap.listed_len,
            page.ids.iter().map(|m| ListedEntry::labelled(&m.0, &label)),
        )?;
        let next = match &page.next_page_token {
            Some(t) => GapStep::ListLabel {
                remaining: remaining.clone(),
                next_page_token: Some(t.clone()),
            },
            None => GapStep::ListLabel {
                remaining: remaining[1..].to_vec(),
                next_page_token: None,
            },
        };
        self.cx
            .store
            .transaction(|tx| {
                let mut rec = AccountRecord::load_tx(tx, &account)?;
                if let Some(g) = rec.gap.as_mut() {
                    record_page(g, listed_len, page.ids.len(), next.clone());
                }
                rec.save_tx(tx, &account)
            })
            .map_err(store_err)?;
        self.report(Phase::Resyncing, gap.list_calls + 1, None);
        Ok(())
    }

    /// Sorts the whole listing (one step: a crash sorts again), finds the window's floor, and
    /// starts the reconcile.
    async fn sort_listing(&self, gap: &GapState) -> Result<(), StepError> {
        let summary = self.scratch().sort(gap.listed_len, SORT_SEGMENT)?;
        tracing::debug!(account = %self.cx.account, entries = summary.entries, ids = summary.ids, held = summary.held, "Gap listing sorted.");
        let floor = self.window_floor()?;
        let account = self.cx.account.0.clone();
        self.cx
            .store
            .transaction(|tx| {
                let mut rec = AccountRecord::load_tx(tx, &account)?;
                if let Some(g) = rec.gap.as_mut() {
                    g.peak_buffered = g.peak_buffered.max(summary.held);
                    g.step = GapStep::Reconcile {
                        floor,
                        after: None,
                        clearing: false,
                        sorted_offset: 0,
                    };
                }
                rec.save_tx(tx, &account)
            })
            .map_err(store_err)?;
        self.cx.store.flush_async().await.map_err(store_err)?;
        Ok(())
    }

    /// The next [`RECONCILE_CHUNK`] mirrored messages after `after`, in id order. Read
    /// outside a transaction (a scan inside one would wait on sled's lock).
    fn mirror_chunk(&self, after: Option<&str>) -> Result<Vec<Mirrored>, SyncError> {
        let account = &self.cx.account.0;
        let prefix = mirror::account_prefix(account);
        let lower = match after {
            Some(id) => Bound::Excluded(mirror::record_key(account, id)),
            None => Bound::Included(prefix.clone()),
        };
        let mut out = Vec::with_capacity(RECONCILE_CHUNK);
        for item in self
            .cx
            .store
            .kv(Space::Messages)
            .range::<Vec<u8>, _>((lower, Bound::Unbounded))
        {
            let (k, v) = item.map_err(store_err)?;
            if !k.starts_with(&prefix) {
                break;
            }
            let m: mirror::MirrorMessage = crate::store::decode(&v).map_err(store_err)?;
            out.push(Mirrored {
                id: m.id,
                internal_date_ms: m.internal_date_ms,
                labels: m.label_ids,
            });
            if out.len() == RECONCILE_CHUNK {
                break;
            }
        }
        Ok(out)
    }

    /// One chunk of the mirror walk beside the sorted listing, in one transaction with both
    /// positions. Only the messages that change are touched inside it.
    async fn reconcile_chunk(
        &self,
        gap: &GapState,
        floor: Option<i64>,
        after: Option<String>,
        sorted_offset: u64,
    ) -> Result<(), StepError> {
        let account = self.cx.account.0.clone();
        let chunk = self.mirror_chunk(after.as_deref())?;
        let end = chunk.len() < RECONCILE_CHUNK;
        let mut listed = self.scratch().sorted_from(sorted_offset)?;
        let (mut deleted, mut relabel) = (Vec::new(), Vec::new());
        for m in &chunk {
            match listed_at(&mut listed, &m.id.0)? {
                // Not listed: deleted, unless it aged out of the `initial_query` window.
                None if floor.is_some_and(|f| m.internal_date_ms < f) => {}
                None => deleted.push(m.id.clone()),
                Some(l) if l.labels != m.labels => relabel.push((m.id.clone(), l.labels)),
                Some(_) => {}
            }
        }
        let sorted_offset = listed.position();
        let changed = !deleted.is_empty() || !relabel.is_empty();
        let now = now_ms();
        let discriminator = format!("gap{}", gap.start_history_id);
        let next_after = chunk.last().map(|m| m.id.0.clone()).or(after);
        let held = chunk.len() as u64;
        self.cx
            .store
            .transaction(|tx| {
                let (mut v, mut r) = (0u64, 0u64);
                for mid in &deleted {
                    if mirror::apply_deleted(tx, &account, mid, now)? == mirror::Applied::Deleted {
                        v += 1;
                    }
                }
                for (mid, labels) in &relabel {
                    let Some(old) = mirror::get_message_tx(tx, &account, mid)? else {
                        continue;
                    };
                    if mirror::set_labels(tx, &account, old, labels.clone(), &discriminator, now)?
                        == mirror::Applied::Updated
                    {
                        r += 1;
                    }
                }
                let mut rec = AccountRecord::load_tx(tx, &account)?;
                if let Some(g) = rec.gap.as_mut() {
                    g.vanished += v;
                    g.relabeled += r;
                    g.peak_buffered = g.peak_buffered.max(held);
                    g.step = GapStep::Reconcile {
                        floor,
                        after: next_after.clone(),
                        clearing: end,
                        sorted_offset,
                    };
                }
                rec.save_tx(tx, &account)
            })
            .map_err(store_err)?;
        // A chunk that changed nothing is redone harmlessly if its commit is lost.
        if changed || end {
            self.cx.store.flush_async().await.map_err(store_err)?;
        }
        Ok(())
    }

    /// The cursor becomes H1; the job is acked in the same transaction.
    async fn finish_gap(&self, gap: &GapState) -> Result<(), SyncError> {
        let account = self.cx.account.0.clone();
        let job = Some(self.job.clone());
        let calls = gap.list_calls;
        self.cx
            .store
            .transaction(|tx| {
                let mut rec = AccountRecord::load_tx(tx, &account)?;
                rec.history_id = Some(gap.start_history_id);
                rec.gap = None;
                rec.history_round = None;
                rec.last_gap_list_calls = Some(calls);
                rec.last_gap_peak_buffered = Some(gap.peak_buffered);
                rec.initial_sync_completed = true;
                rec.save_tx(tx, &account)?;
                if let Some(j) = &job {
                    tx.ack(j)?;
                }
                Ok(())
            })
            .map_err(store_err)?;
        self.cx.store.flush_async().await.map_err(store_err)?;
        tracing::info!(account = %self.cx.account, list_calls = calls, appeared = gap.appeared, vanished = gap.vanished, relabeled = gap.relabeled, peak_buffered = gap.peak_buffered, history_id = %gap.start_history_id, "Gap recovery finished.");
        report::send(self.cx.report, ChildReport::ResyncDone);
        Ok(())
    }

    /// With an `initial_query`: the internal date of the oldest mirrored message the id
    /// listing saw (the window's lower edge); `None` for an unbounded account. One streaming
    /// pass over the mirror beside the sorted listing.
    fn window_floor(&self) -> Result<Option<i64>, StepError> {
        if self.source.options.initial_query.is_none() {
            return Ok(None);
        }
        let mut listed = self.scratch().sorted_from(0)?;
        let mut floor: Option<i64> = None;
        let mut after: Option<String> = None;
        loop {
            let chunk = self.mirror_chunk(after.as_deref())?;
            for m in &chunk {
                if listed_at(&mut listed, &m.id.0)?.is_some() {
                    floor = Some(floor.map_or(m.internal_date_ms, |f| f.min(m.internal_date_ms)));
                }
            }
            match chunk.last() {
                Some(m) if chunk.len() == RECONCILE_CHUNK => after = Some(m.id.0.clone()),
                _ => break,
            }
        }
        // Nothing listed at all: the window is empty, nothing in the mirror is verified.
        Ok(Some(floor.unwrap_or(i64::MAX)))
    }

    /// Removes the account's scratch files, and the sled markers an older build may have left,
    /// a chunk at a time: one huge batch would make sled hold every removal in memory at once.
    fn clear_scratch(&self) -> Result<(), SyncError> {
        self.scratch().remove().map_err(store_err)?;
        let tree = self.cx.store.kv(Space::Cursors);
        let prefix = legacy_prefix(&self.cx.account.0);
        loop {
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for item in tree.scan_prefix(&prefix).take(RECONCILE_CHUNK) {
                let (k, _) = item.map_err(store_err)?;
                batch.remove(k);
                n += 1;
            }
            if n == 0 {
                return Ok(());
            }
            tree.apply_batch(batch).map_err(store_err)?;
        }
    }
}
