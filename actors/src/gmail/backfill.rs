//! Gmail backfill steps: the full sync and the gap recovery of one account, one provider call
//! per step so a stop never waits for more than one page.
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
//!   Scratch markers live under `gap\0<account>\0` in `Space::Cursors` and are dropped at the end.

use super::{GmailSource, store_err};
use crate::account_record::{AccountRecord, FullSyncState, GapState, GapStep};
use crate::error::SyncError;
use crate::jobs::{self, ChildKind};
use crate::mailbox::{Job, Priority};
use crate::mirror;
use crate::model::{LabelId, ListQuery, MessageId};
use crate::report::{self, ChildReport};
use crate::source::{BackfillNext, SourceCx};
use crate::spec::now_ms;
use crate::status::{Phase, Progress};
use crate::store::{Space, StoreError};
use std::time::{Duration, Instant};

/// One backfill step of a Gmail account.
pub(super) struct Steps<'a> {
    pub source: &'a GmailSource,
    pub cx: &'a SourceCx<'a>,
    pub job: &'a Job,
    pub started: Instant,
}

fn scratch_prefix(account: &str) -> Vec<u8> {
    let mut k = b"gap\0".to_vec();
    k.extend_from_slice(account.as_bytes());
    k.push(0);
    k
}

fn seen_key(account: &str, id: &str) -> Vec<u8> {
    let mut k = scratch_prefix(account);
    k.extend_from_slice(b"s\0");
    k.extend_from_slice(id.as_bytes());
    k
}

fn label_prefix(account: &str, id: &str) -> Vec<u8> {
    let mut k = scratch_prefix(account);
    k.extend_from_slice(b"l\0");
    k.extend_from_slice(id.as_bytes());
    k.push(0);
    k
}

impl Steps<'_> {
    fn report(&self, phase: Phase, done: u64, total: Option<u64>) {
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
    async fn sync_labels(&self) -> Result<(), SyncError> {
        let remote = self.source.api.labels().await?;
        mirror::store_remote_labels(self.cx.store, &self.cx.account.0, &remote, now_ms())
            .map_err(store_err)?;
        Ok(())
    }

    /// A listing bounded by the account's `initial_query` (full sync, gap recovery, resync
    /// and the per-label listings alike: one meaning of "the messages this account mirrors").
    fn query(&self, label: Option<String>, page_size: u32) -> ListQuery {
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
            let q = self.query(None, self.source.options.list_page_size);
            let page = self
                .source
                .api
                .list_messages(&q, fs.next_page_token.as_deref())
                .await?;
            let now = now_ms();
            let id = self.cx.account.clone();
            self.cx
                .store
                .transaction(|tx| {
                    for mid in &page.ids {
                        if mirror::get_message_tx(tx, &account, mid)?.is_none() {
                            jobs::enqueue_ingest_tx(tx, &id, &mid.0, Priority::Backfill, now)?;
                        }
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
            self.report(
                Phase::Listing,
                fs.listed + page.ids.len() as u64,
                Some(fs.estimate.max(page.result_size_estimate)),
            );
            return Ok(BackfillNext::Continue);
        }
        // Listing is done: wait for Ingest to drain, then the cursor becomes H0.
        let ingest_q = self
            .cx
            .store
            .mailbox(&jobs::mailbox_name(self.cx.account, ChildKind::Ingest));
        let depth = ingest_q.depth().map_err(store_err)?;
        let outstanding = (depth.pending + depth.leased + depth.delayed) as u64;
        if outstanding > 0 {
            // Progress is derived from the queue (listed ids not yet fetched), so this check,
            // repeated while Ingest drains, never scans the mirror.
            self.report(
                Phase::Fetching,
                fs.listed.saturating_sub(outstanding),
                Some(fs.listed),
            );
            return Ok(BackfillNext::WaitThen(Duration::from_millis(500)));
        }
        let mirrored = mirror::message_count(self.cx.store, &account);
        let now = now_ms();
        let job = Some(self.job.clone());
        self.cx
            .store
            .transaction(|tx| {
                let mut rec = AccountRecord::load_tx(tx, &account)?;
                rec.history_id = Some(fs.start_history_id);
                rec.initial_sync_completed = true;
                rec.last_full_sync_at_ms = Some(now);
                rec.full_sync = None;
                rec.save_tx(tx, &account)?;
                if let Some(j) = &job {
                    tx.ack(j)?;
                }
                Ok(())
            })
            .map_err(store_err)?;
        self.cx.store.flush_async().await.map_err(store_err)?;
        tracing::info!(account = %self.cx.account, messages = mirrored, dead_lettered = depth.dead, history_id = %fs.start_history_id, "Full sync finished.");
        report::send(self.cx.report, ChildReport::FullSyncDone);
        Ok(BackfillNext::Finished)
    }

    pub(super) fn finish_job(&self) -> Result<(), SyncError> {
        self.cx
            .store
            .mailbox(&jobs::mailbox_name(self.cx.account, ChildKind::Backfill))
            .ack(self.job)
            .map_err(store_err)
    }

    pub(super) async fn gap(&self) -> Result<BackfillNext, SyncError> {
        let account = self.cx.account.0.clone();
        let rec = AccountRecord::load(self.cx.store, &account).map_err(store_err)?;
        let Some(gap) = rec.gap.clone() else {
            // Start: labels first (so every current label is listed), then H1, then ids.
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
            return Ok(BackfillNext::Continue);
        };
        match gap.step.clone() {
            GapStep::ListIds { next_page_token } => {
                let q = self.query(None, 500);
                let page = self
                    .source
                    .api
                    .list_messages(&q, next_page_token.as_deref())
                    .await?;
                let labels: Vec<String> = mirror::labels(self.cx.store, &account)
                    .map_err(store_err)?
                    .into_iter()
                    .map(|l| l.id.0)
                    .collect();
                let now = now_ms();
                let id = self.cx.account.clone();
                self.cx
                    .store
                    .transaction(|tx| {
                        let mut appeared = 0;
                        for mid in &page.ids {
                            tx.insert(Space::Cursors, &seen_key(&account, &mid.0), b"")?;
                            if mirror::get_message_tx(tx, &account, mid)?.is_none() {
                                jobs::enqueue_ingest_tx(tx, &id, &mid.0, Priority::Backfill, now)?;
                                appeared += 1;
                            }
                        }
                        let mut rec = AccountRecord::load_tx(tx, &account)?;
                        if let Some(g) = rec.gap.as_mut() {
                            g.list_calls += 1;
                            g.appeared += appeared;
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
                Ok(BackfillNext::Continue)
            }
            GapStep::ListLabel {
                remaining,
                next_page_token,
            } => {
                let Some(label) = remaining.first().cloned() else {
                    self.set_gap_step(GapStep::Apply, 0)?;
                    return Ok(BackfillNext::Continue);
                };
                let q = self.query(Some(label.clone()), 500);
                let page = self
                    .source
                    .api
                    .list_messages(&q, next_page_token.as_deref())
                    .await?;
                self.cx
                    .store
                    .transaction(|tx| {
                        for mid in &page.ids {
                            let mut k = label_prefix(&account, &mid.0);
                            k.extend_from_slice(label.as_bytes());
                            tx.insert(Space::Cursors, &k, b"")?;
                        }
                        let mut rec = AccountRecord::load_tx(tx, &account)?;
                        if let Some(g) = rec.gap.as_mut() {
                            g.list_calls += 1;
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
                Ok(BackfillNext::Continue)
            }
            GapStep::Apply => {
                self.apply_gap(&gap).await?;
                Ok(BackfillNext::Finished)
            }
        }
    }

    fn set_gap_step(&self, step: GapStep, extra_calls: u64) -> Result<(), SyncError> {
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

    /// Diffs the mirror against the listings, in chunks of 500 messages per transaction.
    async fn apply_gap(&self, gap: &GapState) -> Result<(), SyncError> {
        let account = self.cx.account.0.clone();
        let mut ids: Vec<MessageId> = Vec::new();
        let mut dates: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
        mirror::for_each_message(self.cx.store, &account, |m| {
            dates.insert(m.id.0.clone(), m.internal_date_ms);
            ids.push(m.id);
            Ok(())
        })
        .map_err(store_err)?;
        // With an `initial_query` the listings only cover the messages it selects: a mirrored
        // message older than every listed one has aged out of the window (not been deleted)
        // and is left as it is; unlisted messages inside the window were deleted. (A date
        // heuristic: a deletion of the window's oldest message looks like aging out, and a
        // query that is not date-shaped keeps unlisted old messages.)
        let floor = self.window_floor(&account, &ids, &dates)?;
        let now = now_ms();
        let (mut vanished, mut relabeled) = (0u64, 0u64);
        let discriminator = format!("gap{}", gap.start_history_id);
        for chunk in ids.chunks(500) {
            // The label markers are read before the transaction: sled holds its global
            // write lock while a transaction closure runs, so a plain tree scan in there
            // would wait for itself forever (and block every other store access).
            let mut chunk_labels = Vec::with_capacity(chunk.len());
            for mid in chunk {
                chunk_labels.push(self.scratch_labels(&account, mid).map_err(store_err)?);
            }
            let (v, r) = self
                .cx
                .store
                .transaction(|tx| {
                    let (mut v, mut r) = (0u64, 0u64);
                    for (mid, labels) in chunk.iter().zip(&chunk_labels) {
                        if tx
                            .get(Space::Cursors, &seen_key(&account, &mid.0))?
                            .is_none()
                        {
                            if floor.is_some_and(|f| dates.get(&mid.0).is_some_and(|d| *d < f)) {
                                continue;
                            }
                            mirror::apply_deleted(tx, &account, mid, now)?;
                            v += 1;
                            continue;
                        }
                        let Some(old) = mirror::get_message_tx(tx, &account, mid)? else {
                            continue;
                        };
                        if mirror::set_labels(
                            tx,
                            &account,
                            old,
                            labels.clone(),
                            &discriminator,
                            now,
                        )? == mirror::Applied::Updated
                        {
                            r += 1;
                        }
                    }
                    Ok((v, r))
                })
                .map_err(store_err)?;
            vanished += v;
            relabeled += r;
        }
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
                rec.initial_sync_completed = true;
                rec.save_tx(tx, &account)?;
                if let Some(j) = &job {
                    tx.ack(j)?;
                }
                Ok(())
            })
            .map_err(store_err)?;
        self.cx.store.flush_async().await.map_err(store_err)?;
        self.clear_scratch()?;
        tracing::info!(account = %self.cx.account, list_calls = calls, appeared = gap.appeared, vanished, relabeled, history_id = %gap.start_history_id, "Gap recovery finished.");
        report::send(self.cx.report, ChildReport::ResyncDone);
        Ok(())
    }

    /// With an `initial_query`: the internal date of the oldest mirrored message the id
    /// listing saw (the window's lower edge); `None` for an unbounded account.
    fn window_floor(
        &self,
        account: &str,
        ids: &[MessageId],
        dates: &std::collections::HashMap<String, i64>,
    ) -> Result<Option<i64>, SyncError> {
        if self.source.options.initial_query.is_none() {
            return Ok(None);
        }
        let seen = self.cx.store.kv(Space::Cursors);
        let mut floor: Option<i64> = None;
        for id in ids {
            if seen
                .get(seen_key(account, &id.0))
                .map_err(store_err)?
                .is_some()
                && let Some(d) = dates.get(&id.0)
            {
                floor = Some(floor.map_or(*d, |f| f.min(*d)));
            }
        }
        // Nothing listed at all: the window is empty, nothing in the mirror is verified.
        Ok(Some(floor.unwrap_or(i64::MAX)))
    }

    /// The labels the per-label listing found on one message. Never call it inside a
    /// transaction closure (sled's global lock): the markers are written by earlier,
    /// committed steps and never change during the apply step.
    fn scratch_labels(&self, account: &str, id: &MessageId) -> Result<Vec<LabelId>, StoreError> {
        let prefix = label_prefix(account, &id.0);
        let mut out = Vec::new();
        for item in self.cx.store.kv(Space::Cursors).scan_prefix(&prefix) {
            let (k, _) = item.map_err(|source| StoreError::Sled {
                context: "scanning gap label markers",
                source,
            })?;
            out.push(LabelId(
                String::from_utf8_lossy(&k[prefix.len()..]).into_owned(),
            ));
        }
        Ok(out)
    }

    fn clear_scratch(&self) -> Result<(), SyncError> {
        let tree = self.cx.store.kv(Space::Cursors);
        let prefix = scratch_prefix(&self.cx.account.0);
        let mut batch = sled::Batch::default();
        for item in tree.scan_prefix(&prefix) {
            let (k, _) = item.map_err(store_err)?;
            batch.remove(k);
        }
        tree.apply_batch(batch).map_err(store_err)?;
        Ok(())
    }
}
