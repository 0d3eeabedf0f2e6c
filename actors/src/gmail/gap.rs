//! Gmail gap recovery (history 404) in bounded memory: labels, the profile history id H1, then
//! a reconcile that is cheap in quota and never holds more than one chunk of ids.
//!
//! 1. **List ids** (5 units per 500): each listed id gets an on-disk marker (a [`GapMarker`]
//!    under `gap\0<account>\0m\0<id>` in `Space::Cursors`); ids not mirrored become Ingest jobs.
//! 2. **List ids per label**: each listed (id, label) adds the label to the id's marker.
//! 3. **Reconcile**: the mirror is walked in id order, [`RECONCILE_CHUNK`] records per step
//!    and transaction; a record without a marker vanished (deleted), one with a marker gets the
//!    listed labels, and the marker is removed in the same transaction. The walk's position is
//!    stored with each chunk, so a crash resumes after the last chunk committed.
//! 4. **Clear** the markers left (listed ids that were not mirrored), a chunk per step; then the
//!    cursor becomes H1.
//!
//! Every step's working set is one listing page or one chunk, whatever the mailbox size; the
//! largest one is recorded ([`GapState::peak_buffered`]) and shown in status.

use super::backfill::Steps;
use super::store_err;
use crate::account_record::{AccountRecord, GapState, GapStep};
use crate::codec::{CodecError, Versioned};
use crate::error::SyncError;
use crate::jobs;
use crate::mailbox::Priority;
use crate::mirror;
use crate::model::{LabelId, MessageId};
use crate::report::{self, ChildReport};
use crate::source::BackfillNext;
use crate::spec::now_ms;
use crate::status::Phase;
use crate::store::{Space, StoreError, decode, encode};
use serde::{Deserialize, Serialize};
use std::ops::Bound;

/// Mirror records per reconcile step (and transaction), and markers cleared per step.
pub const RECONCILE_CHUNK: usize = 500;

/// Ids per listing page (Gmail's maximum).
const LIST_PAGE: u32 = 500;

/// The marker layout this build writes ([`GapState::marker_layout`]).
const MARKER_LAYOUT: u32 = 1;

/// One listed id of a gap recovery: the labels the per-label listings found on it so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GapMarker {
    /// Labels listed for this id, sorted.
    pub labels: Vec<LabelId>,
}

impl Versioned for GapMarker {
    const NAME: &'static str = "gap marker";
    const VERSION: u16 = 1;
    fn from_legacy(_body: &[u8]) -> Result<Self, CodecError> {
        Err(CodecError::malformed::<Self>(
            "gap markers did not exist in schema 1",
        ))
    }
}

fn scratch_prefix(account: &str) -> Vec<u8> {
    let mut k = b"gap\0".to_vec();
    k.extend_from_slice(account.as_bytes());
    k.push(0);
    k
}

fn marker_key(account: &str, id: &str) -> Vec<u8> {
    let mut k = scratch_prefix(account);
    k.extend_from_slice(b"m\0");
    k.extend_from_slice(id.as_bytes());
    k
}

impl Steps<'_> {
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
            return Ok(BackfillNext::Continue);
        }
        match gap.step.clone() {
            GapStep::ListIds { next_page_token } => {
                self.list_ids(&gap, next_page_token).await?;
                Ok(BackfillNext::Continue)
            }
            GapStep::ListLabel {
                remaining,
                next_page_token,
            } => {
                self.list_label(&gap, remaining, next_page_token).await?;
                Ok(BackfillNext::Continue)
            }
            GapStep::Reconcile {
                floor,
                after,
                clearing: false,
            } => {
                self.reconcile_chunk(&gap, floor, after).await?;
                Ok(BackfillNext::Continue)
            }
            GapStep::Reconcile { clearing: true, .. } => {
                if self.clear_chunk()? > 0 {
                    return Ok(BackfillNext::Continue);
                }
                self.finish_gap(&gap).await?;
                Ok(BackfillNext::Finished)
            }
            GapStep::Apply => unreachable!("handled above"),
        }
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

    /// One page of every id: a marker per id, an Ingest job per id not mirrored.
    async fn list_ids(&self, gap: &GapState, token: Option<String>) -> Result<(), SyncError> {
        let account = self.cx.account.0.clone();
        let q = self.query(None, LIST_PAGE);
        let page = self.source.api.list_messages(&q, token.as_deref()).await?;
        let labels: Vec<String> = mirror::labels(self.cx.store, &account)
            .map_err(store_err)?
            .into_iter()
            .map(|l| l.id.0)
            .collect();
        let now = now_ms();
        let id = self.cx.account.clone();
        let empty = encode(&GapMarker::default());
        self.cx
            .store
            .transaction(|tx| {
                let mut appeared = 0;
                for mid in &page.ids {
                    let key = marker_key(&account, &mid.0);
                    // A replayed page keeps the labels a later step may already have added.
                    if tx.get(Space::Cursors, &key)?.is_none() {
                        tx.insert(Space::Cursors, &key, &empty)?;
                    }
                    if mirror::get_message_tx(tx, &account, mid)?.is_none() {
                        jobs::enqueue_ingest_tx(tx, &id, &mid.0, Priority::Backfill, now)?;
                        appeared += 1;
                    }
                }
                let mut rec = AccountRecord::load_tx(tx, &account)?;
                if let Some(g) = rec.gap.as_mut() {
                    g.list_calls += 1;
                    g.appeared += appeared;
                    g.peak_buffered = g.peak_buffered.max(page.ids.len() as u64);
                    g.step = match &page.next_page_token {
                        Some(t) => GapStep::ListIds {
                            next_page_token: Some(t.clone()),
                        },
                        None => GapStep::ListLabel {
                            remaining: labels.clone(),
                            next_page_token: None,
                        },
                    };
                }
                rec.save_tx(tx, &account)
            })
            .map_err(store_err)?;
        self.cx.store.flush_async().await.map_err(store_err)?;
        report::send(self.cx.report, ChildReport::IngestWork);
        self.report(Phase::Resyncing, gap.list_calls + 1, None);
        Ok(())
    }

    /// One page of the head label's ids: the label joins each listed id's marker. Ids the id
    /// listing did not see are left alone (as before: an unlisted mirrored id is a deletion).
    async fn list_label(
        &self,
        gap: &GapState,
        remaining: Vec<String>,
        token: Option<String>,
    ) -> Result<(), SyncError> {
        let account = self.cx.account.0.clone();
        let Some(label) = remaining.first().cloned() else {
            let floor = self.window_floor()?;
            self.set_step(
                GapStep::Reconcile {
                    floor,
                    after: None,
                    clearing: false,
                },
                0,
            )?;
            return Ok(());
        };
        let q = self.query(Some(label.clone()), LIST_PAGE);
        let page = self.source.api.list_messages(&q, token.as_deref()).await?;
        let lid = LabelId(label);
        self.cx
            .store
            .transaction(|tx| {
                for mid in &page.ids {
                    let key = marker_key(&account, &mid.0);
                    let Some(v) = tx.get(Space::Cursors, &key)? else {
                        continue;
                    };
                    let mut marker: GapMarker = decode(&v)?;
                    if let Err(pos) = marker.labels.binary_search(&lid) {
                        marker.labels.insert(pos, lid.clone());
                        tx.insert(Space::Cursors, &key, &encode(&marker))?;
                    }
                }
                let mut rec = AccountRecord::load_tx(tx, &account)?;
                if let Some(g) = rec.gap.as_mut() {
                    g.list_calls += 1;
                    g.peak_buffered = g.peak_buffered.max(page.ids.len() as u64);
                    g.step = match &page.next_page_token {
                        Some(t) => GapStep::ListLabel {
                            remaining: remaining.clone(),
                            next_page_token: Some(t.clone()),
                        },
                        None => GapStep::ListLabel {
                            remaining: remaining[1..].to_vec(),
                            next_page_token: None,
                        },
                    };
                }
                rec.save_tx(tx, &account)
            })
            .map_err(store_err)?;
        self.report(Phase::Resyncing, gap.list_calls + 1, None);
        Ok(())
    }

    /// The next [`RECONCILE_CHUNK`] mirrored messages after `after`, in id order: (id, internal
    /// date). Read outside a transaction (a scan inside one would wait on sled's lock).
    fn mirror_chunk(&self, after: Option<&str>) -> Result<Vec<(MessageId, i64)>, SyncError> {
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
            let m: mirror::MirrorMessage = decode(&v).map_err(store_err)?;
            out.push((m.id, m.internal_date_ms));
            if out.len() == RECONCILE_CHUNK {
                break;
            }
        }
        Ok(out)
    }

    /// One chunk of the mirror walk, in one transaction with its position.
    async fn reconcile_chunk(
        &self,
        gap: &GapState,
        floor: Option<i64>,
        after: Option<String>,
    ) -> Result<(), SyncError> {
        let account = self.cx.account.0.clone();
        let chunk = self.mirror_chunk(after.as_deref())?;
        let end = chunk.len() < RECONCILE_CHUNK;
        let now = now_ms();
        let discriminator = format!("gap{}", gap.start_history_id);
        let next_after = chunk.last().map(|(id, _)| id.0.clone()).or(after);
        self.cx
            .store
            .transaction(|tx| {
                let (mut v, mut r) = (0u64, 0u64);
                for (mid, date) in &chunk {
                    let key = marker_key(&account, &mid.0);
                    let Some(marker) = tx.get(Space::Cursors, &key)? else {
                        // Not listed: deleted, unless it aged out of the `initial_query` window.
                        if floor.is_some_and(|f| *date < f) {
                            continue;
                        }
                        if mirror::apply_deleted(tx, &account, mid, now)?
                            == mirror::Applied::Deleted
                        {
                            v += 1;
                        }
                        continue;
                    };
                    let marker: GapMarker = decode(&marker)?;
                    tx.remove(Space::Cursors, &key)?;
                    let Some(old) = mirror::get_message_tx(tx, &account, mid)? else {
                        continue;
                    };
                    if mirror::set_labels(tx, &account, old, marker.labels, &discriminator, now)?
                        == mirror::Applied::Updated
                    {
                        r += 1;
                    }
                }
                let mut rec = AccountRecord::load_tx(tx, &account)?;
                if let Some(g) = rec.gap.as_mut() {
                    g.vanished += v;
                    g.relabeled += r;
                    g.peak_buffered = g.peak_buffered.max(chunk.len() as u64);
                    g.step = GapStep::Reconcile {
                        floor,
                        after: next_after.clone(),
                        clearing: end,
                    };
                }
                rec.save_tx(tx, &account)
            })
            .map_err(store_err)?;
        self.cx.store.flush_async().await.map_err(store_err)?;
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

    fn set_step(&self, step: GapStep, extra_calls: u64) -> Result<(), SyncError> {
        let account = self.cx.account.0.clone();
        self.cx
            .store
            .transaction(|tx| {
                let mut rec = AccountRecord::load_tx(tx, &account)?;
                if let Some(g) = rec.gap.as_mut() {
                    g.step = step.clone();
                    g.list_calls += extra_calls;
                }
                rec.save_tx(tx, &account)
            })
            .map_err(store_err)?;
        Ok(())
    }

    /// With an `initial_query`: the internal date of the oldest mirrored message the id
    /// listing saw (the window's lower edge); `None` for an unbounded account. One streaming
    /// pass over the mirror, before any marker is removed.
    fn window_floor(&self) -> Result<Option<i64>, SyncError> {
        if self.source.options.initial_query.is_none() {
            return Ok(None);
        }
        let account = &self.cx.account.0;
        let markers = self.cx.store.kv(Space::Cursors);
        let mut floor: Option<i64> = None;
        mirror::for_each_message(self.cx.store, account, |m| {
            let listed = markers
                .get(marker_key(account, &m.id.0))
                .map_err(|source| StoreError::Sled {
                    context: "reading a gap marker",
                    source,
                })?
                .is_some();
            if listed {
                floor = Some(floor.map_or(m.internal_date_ms, |f| f.min(m.internal_date_ms)));
            }
            Ok(())
        })
        .map_err(store_err)?;
        // Nothing listed at all: the window is empty, nothing in the mirror is verified.
        Ok(Some(floor.unwrap_or(i64::MAX)))
    }

    /// Removes up to [`RECONCILE_CHUNK`] scratch markers; returns how many it removed.
    fn clear_chunk(&self) -> Result<usize, SyncError> {
        let tree = self.cx.store.kv(Space::Cursors);
        let prefix = scratch_prefix(&self.cx.account.0);
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for item in tree.scan_prefix(&prefix).take(RECONCILE_CHUNK) {
            let (k, _) = item.map_err(store_err)?;
            batch.remove(k);
            n += 1;
        }
        if n > 0 {
            tree.apply_batch(batch).map_err(store_err)?;
        }
        Ok(n)
    }

    /// Removes every scratch marker of the account (either layout), a chunk at a time: one
    /// huge batch would make sled hold every removal in memory at once.
    fn clear_scratch(&self) -> Result<(), SyncError> {
        while self.clear_chunk()? > 0 {}
        Ok(())
    }
}
