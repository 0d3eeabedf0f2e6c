//! Backfill: the full sync and the gap recovery of one account, one provider call per message
//! so a stop never waits for more than one page.
//!
//! Its durable mailbox holds at most one `BackfillJob` per kind (`fullsync:<acct>`,
//! `gap:<acct>`); the job's progress lives in the `AccountRecord` (page tokens, the history id
//! read before listing), written in the same transaction as each page's effects, so a crash
//! resumes at the page it was on and every replayed write is a no-op.
//!
//! * **Full sync** (gmail-api.md §7.1): labels, then the profile history id H0 *before*
//!   listing, then messages.list page by page → Ingest jobs at backfill priority; when listing is
//!   done and Ingest has drained, the cursor becomes H0 and partial sync takes over.
//! * **Gap recovery** (history 404): labels, profile id H1, then a reconcile that is cheap in
//!   quota: every id listed (5 units per 500) → missing ones fetched, vanished ones deleted; then
//!   ids listed per label → every label set rebuilt without one messages.get; cursor ← H1.
//!   Scratch markers live under `gap\0<account>\0` in `Space::Cursors` and are dropped at the end.
//!
//! Parent: AccountActor. Messages: `BackfillMsg`.

use crate::account::AccountMsg;
use crate::account_record::{AccountRecord, FullSyncState, GapState, GapStep};
use crate::error::{ApiError, SyncError};
use crate::ingest;
use crate::mailbox::{DurableMailbox, Job, Priority};
use crate::mirror;
use crate::model::{LabelId, ListQuery, MessageId};
use crate::spec::{AccountSpec, ChildKind, mailbox_name, now_ms};
use crate::status::Progress;
use crate::store::{Space, Store, StoreError, TxError, decode, encode};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// The Backfill actor.
pub struct Backfill;

/// What Backfill is started with (the same for every child).
pub type BackfillArgs = crate::spec::ChildArgs;

/// A job in Backfill's durable mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackfillJob {
    /// The first full sync.
    FullSync,
    /// Recover from a history gap (or an admin's `resync`).
    Gap,
}

impl crate::codec::Versioned for BackfillJob {
    const NAME: &'static str = "backfill job";
    const VERSION: u16 = 1;
    fn from_legacy(body: &[u8]) -> Result<Self, crate::codec::CodecError> {
        // Schema 1 wrote the variant index: 0 = FullSync, 1 = Gap (frozen).
        match crate::codec::legacy_bincode::<Self, u32>(body)? {
            0 => Ok(BackfillJob::FullSync),
            1 => Ok(BackfillJob::Gap),
            other => Err(crate::codec::CodecError::malformed::<Self>(format!(
                "unknown schema-1 variant {other}"
            ))),
        }
    }
}

/// Backfill's messages.
#[derive(Debug)]
pub enum BackfillMsg {
    /// A job may be waiting.
    WorkAvailable,
    /// Do the next step of the current job.
    Step,
    /// Stop calling the provider until `Resume`.
    Pause,
    /// Continue.
    Resume,
}

/// Backfill's private state.
pub struct BackfillState {
    spec: AccountSpec,
    store: Store,
    queue: DurableMailbox,
    parent: ActorRef<AccountMsg>,
    current: Option<(Job, BackfillJob)>,
    paused: bool,
    failures: u32,
    started: Instant,
}

/// Enqueues a backfill job (deduplicated by kind) inside a transaction.
pub fn enqueue_tx(
    tx: &crate::store::StoreTx<'_>,
    spec_id: &crate::model::AccountId,
    job: BackfillJob,
    now_ms: u64,
) -> Result<(), TxError> {
    let key = match job {
        BackfillJob::FullSync => format!("fullsync:{spec_id}"),
        BackfillJob::Gap => format!("gap:{spec_id}"),
    };
    tx.enqueue(
        &mailbox_name(spec_id, ChildKind::Backfill),
        Priority::Backfill,
        &key,
        &encode(&job),
        now_ms,
    )?;
    Ok(())
}

fn store_err(e: impl std::fmt::Display) -> ActorProcessingErr {
    SyncError::Store(e.to_string()).into()
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

impl Actor for Backfill {
    type Msg = BackfillMsg;
    type State = BackfillState;
    type Arguments = BackfillArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<BackfillMsg>,
        args: BackfillArgs,
    ) -> Result<BackfillState, ActorProcessingErr> {
        let queue = args
            .store
            .mailbox(&mailbox_name(&args.spec.id, ChildKind::Backfill));
        myself.cast(BackfillMsg::WorkAvailable)?;
        Ok(BackfillState {
            spec: args.spec,
            store: args.store,
            queue,
            parent: args.parent,
            current: None,
            paused: false,
            failures: 0,
            started: Instant::now(),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<BackfillMsg>,
        st: &mut BackfillState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some((job, _)) = st.current.take() {
            st.queue.release(&job);
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<BackfillMsg>,
        msg: BackfillMsg,
        st: &mut BackfillState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            BackfillMsg::Pause => st.paused = true,
            BackfillMsg::Resume => {
                st.paused = false;
                // A step that arrived while paused was dropped: continue the held job, or look
                // for one.
                if st.current.is_some() {
                    myself.cast(BackfillMsg::Step)?;
                } else {
                    myself.cast(BackfillMsg::WorkAvailable)?;
                }
            }
            BackfillMsg::WorkAvailable => {
                if st.paused || st.current.is_some() {
                    return Ok(());
                }
                let mut jobs = st.queue.lease(1, now_ms()).map_err(store_err)?;
                let Some(job) = jobs.pop() else {
                    return Ok(());
                };
                let kind: BackfillJob = match decode(&job.payload) {
                    Ok(k) => k,
                    Err(e) => {
                        tracing::error!(account = %st.spec.id, job = %job.key, error = %e, "Unreadable backfill job; dead-lettering it.");
                        let policy = crate::backoff::RetryPolicy {
                            max_attempts: 0,
                            ..st.spec.retry.clone()
                        };
                        st.queue
                            .nack(&job, &e.to_string(), &policy, now_ms())
                            .map_err(store_err)?;
                        return Ok(());
                    }
                };
                st.current = Some((job, kind));
                myself.cast(BackfillMsg::Step)?;
            }
            BackfillMsg::Step => {
                if st.paused {
                    return Ok(());
                }
                let Some((_, kind)) = st.current.clone() else {
                    return Ok(());
                };
                let outcome = match kind {
                    BackfillJob::FullSync => st.full_sync_step().await,
                    BackfillJob::Gap => st.gap_step().await,
                };
                st.after_step(&myself, outcome)?;
            }
        }
        Ok(())
    }
}

/// What one step asks for next.
enum Next {
    /// Another step now.
    Continue,
    /// Check again after a while (waiting for Ingest to drain).
    WaitThen(Duration),
    /// The job is finished (and acked).
    Finished,
}

impl BackfillState {
    fn after_step(
        &mut self,
        myself: &ActorRef<BackfillMsg>,
        outcome: Result<Next, ActorProcessingErr>,
    ) -> Result<(), ActorProcessingErr> {
        match outcome {
            Ok(Next::Continue) => {
                self.failures = 0;
                myself.cast(BackfillMsg::Step)?;
            }
            Ok(Next::WaitThen(d)) => {
                myself.send_after(d, || BackfillMsg::Step);
            }
            Ok(Next::Finished) => {
                self.failures = 0;
                if let Some((job, _)) = self.current.take() {
                    self.queue.release(&job);
                }
                myself.cast(BackfillMsg::WorkAvailable)?;
            }
            Err(err) => {
                let api = err.downcast_ref::<SyncError>().and_then(|e| match e {
                    SyncError::Api(a) => Some(a.clone()),
                    _ => None,
                });
                match api {
                    Some(ApiError::Disconnected(reason)) => {
                        self.paused = true;
                        let _ = self.parent.cast(AccountMsg::Disconnected(reason));
                    }
                    Some(ApiError::Internal(_)) | None => {
                        if let Some((job, _)) = self.current.take() {
                            self.queue.release(&job);
                        }
                        return Err(err);
                    }
                    Some(other) => {
                        // The client already retried; wait with backoff and try the step again.
                        self.failures += 1;
                        let delay = other.retry_delay(&self.spec.retry, self.failures);
                        tracing::warn!(account = %self.spec.id, error = %other, delay_ms = delay.as_millis() as u64, "Backfill step failed; retrying.");
                        myself.send_after(delay, || BackfillMsg::Step);
                    }
                }
            }
        }
        Ok(())
    }

    fn report(&self, phase: &str, done: u64, total: Option<u64>) {
        let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
        let per_second = done as f64 / elapsed;
        let eta_seconds = total.and_then(|t| {
            (per_second > 0.0).then(|| (t.saturating_sub(done) as f64 / per_second) as u64)
        });
        let _ = self.parent.cast(AccountMsg::Phase {
            phase: phase.to_string(),
            progress: Some(Progress {
                done,
                total,
                per_second,
                eta_seconds,
            }),
        });
    }

    /// Mirrors the provider's labels (upsert, rename, delete vanished) in one transaction.
    async fn sync_labels(&self) -> Result<(), ActorProcessingErr> {
        let remote = self.spec.api.labels().await.map_err(SyncError::Api)?;
        mirror::store_remote_labels(&self.store, &self.spec.id.0, &remote, now_ms())
            .map_err(store_err)?;
        Ok(())
    }

    fn query(&self, label: Option<String>, page_size: u32) -> ListQuery {
        ListQuery {
            q: if label.is_some() {
                None
            } else {
                self.spec.initial_query.clone()
            },
            label_id: label.map(LabelId),
            include_spam_trash: true,
            page_size,
        }
    }

    async fn full_sync_step(&mut self) -> Result<Next, ActorProcessingErr> {
        let account = self.spec.id.0.clone();
        let rec = AccountRecord::load(&self.store, &account).map_err(store_err)?;
        if rec.initial_sync_completed {
            self.finish_job()?;
            return Ok(Next::Finished);
        }
        let Some(fs) = rec.full_sync.clone() else {
            let _ = self.parent.cast(AccountMsg::Phase {
                phase: "labels".into(),
                progress: None,
            });
            self.sync_labels().await?;
            // Read the history id *before* listing: partial sync from it replays whatever
            // changes while the full sync runs (gmail-api.md §7.1).
            let profile = self.spec.api.profile().await.map_err(SyncError::Api)?;
            let state = FullSyncState {
                start_history_id: profile.history_id,
                estimate: profile.messages_total,
                ..FullSyncState::default()
            };
            self.store
                .transaction(|tx| {
                    let mut rec = AccountRecord::load_tx(tx, &account)?;
                    rec.full_sync = Some(state.clone());
                    rec.save_tx(tx, &account)
                })
                .map_err(store_err)?;
            self.store.flush_async().await.map_err(store_err)?;
            return Ok(Next::Continue);
        };
        if !fs.listing_done {
            let q = self.query(None, self.spec.list_page_size);
            let page = self
                .spec
                .api
                .list_messages(&q, fs.next_page_token.as_deref())
                .await
                .map_err(SyncError::Api)?;
            let now = now_ms();
            let id = self.spec.id.clone();
            self.store
                .transaction(|tx| {
                    for mid in &page.ids {
                        if mirror::get_message_tx(tx, &account, mid)?.is_none() {
                            ingest::enqueue_tx(tx, &id, mid, Priority::Backfill, now)?;
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
            self.store.flush_async().await.map_err(store_err)?;
            let _ = self.parent.cast(AccountMsg::IngestWork);
            self.report(
                "listing",
                fs.listed + page.ids.len() as u64,
                Some(fs.estimate.max(page.result_size_estimate)),
            );
            return Ok(Next::Continue);
        }
        // Listing is done: wait for Ingest to drain, then the cursor becomes H0.
        let ingest_q = self
            .store
            .mailbox(&mailbox_name(&self.spec.id, ChildKind::Ingest));
        let depth = ingest_q.depth().map_err(store_err)?;
        let outstanding = (depth.pending + depth.leased + depth.delayed) as u64;
        if outstanding > 0 {
            // Progress is derived from the queue (listed ids not yet fetched), so this check,
            // repeated while Ingest drains, never scans the mirror.
            self.report(
                "fetching",
                fs.listed.saturating_sub(outstanding),
                Some(fs.listed),
            );
            return Ok(Next::WaitThen(Duration::from_millis(500)));
        }
        let mirrored = mirror::message_count(&self.store, &account);
        let now = now_ms();
        let job = self.current.as_ref().map(|(j, _)| j.clone());
        self.store
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
        self.store.flush_async().await.map_err(store_err)?;
        tracing::info!(account = %self.spec.id, messages = mirrored, dead_lettered = depth.dead, history_id = %fs.start_history_id, "Full sync finished.");
        let _ = self.parent.cast(AccountMsg::FullSyncDone);
        Ok(Next::Finished)
    }

    fn finish_job(&mut self) -> Result<(), ActorProcessingErr> {
        if let Some((job, _)) = &self.current {
            self.queue.ack(job).map_err(store_err)?;
        }
        Ok(())
    }

    async fn gap_step(&mut self) -> Result<Next, ActorProcessingErr> {
        let account = self.spec.id.0.clone();
        let rec = AccountRecord::load(&self.store, &account).map_err(store_err)?;
        let Some(gap) = rec.gap.clone() else {
            // Start: labels first (so every current label is listed), then H1, then ids.
            let _ = self.parent.cast(AccountMsg::Phase {
                phase: "resyncing".into(),
                progress: None,
            });
            self.clear_scratch()?;
            self.sync_labels().await?;
            let profile = self.spec.api.profile().await.map_err(SyncError::Api)?;
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
            self.store
                .transaction(|tx| {
                    let mut rec = AccountRecord::load_tx(tx, &account)?;
                    rec.gap = Some(state.clone());
                    rec.history_round = None;
                    rec.save_tx(tx, &account)
                })
                .map_err(store_err)?;
            self.store.flush_async().await.map_err(store_err)?;
            return Ok(Next::Continue);
        };
        match gap.step.clone() {
            GapStep::ListIds { next_page_token } => {
                let q = self.query(None, 500);
                let q = ListQuery { q: None, ..q };
                let page = self
                    .spec
                    .api
                    .list_messages(&q, next_page_token.as_deref())
                    .await
                    .map_err(SyncError::Api)?;
                let labels: Vec<String> = mirror::labels(&self.store, &account)
                    .map_err(store_err)?
                    .into_iter()
                    .map(|l| l.id.0)
                    .collect();
                let now = now_ms();
                let id = self.spec.id.clone();
                self.store
                    .transaction(|tx| {
                        let mut appeared = 0;
                        for mid in &page.ids {
                            tx.insert(Space::Cursors, &seen_key(&account, &mid.0), b"")?;
                            if mirror::get_message_tx(tx, &account, mid)?.is_none() {
                                ingest::enqueue_tx(tx, &id, mid, Priority::Backfill, now)?;
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
                self.store.flush_async().await.map_err(store_err)?;
                let _ = self.parent.cast(AccountMsg::IngestWork);
                self.report("resyncing", gap.list_calls + 1, None);
                Ok(Next::Continue)
            }
            GapStep::ListLabel {
                remaining,
                next_page_token,
            } => {
                let Some(label) = remaining.first().cloned() else {
                    self.set_gap_step(GapStep::Apply, 0)?;
                    return Ok(Next::Continue);
                };
                let q = self.query(Some(label.clone()), 500);
                let page = self
                    .spec
                    .api
                    .list_messages(&q, next_page_token.as_deref())
                    .await
                    .map_err(SyncError::Api)?;
                self.store
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
                self.report("resyncing", gap.list_calls + 1, None);
                Ok(Next::Continue)
            }
            GapStep::Apply => {
                self.apply_gap(&gap).await?;
                Ok(Next::Finished)
            }
        }
    }

    fn set_gap_step(&self, step: GapStep, extra_calls: u64) -> Result<(), ActorProcessingErr> {
        let account = self.spec.id.0.clone();
        self.store
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
    async fn apply_gap(&mut self, gap: &GapState) -> Result<(), ActorProcessingErr> {
        let account = self.spec.id.0.clone();
        let mut ids: Vec<MessageId> = Vec::new();
        mirror::for_each_message(&self.store, &account, |m| {
            ids.push(m.id);
            Ok(())
        })
        .map_err(store_err)?;
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
                .store
                .transaction(|tx| {
                    let (mut v, mut r) = (0u64, 0u64);
                    for (mid, labels) in chunk.iter().zip(&chunk_labels) {
                        if tx
                            .get(Space::Cursors, &seen_key(&account, &mid.0))?
                            .is_none()
                        {
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
        let job = self.current.as_ref().map(|(j, _)| j.clone());
        let calls = gap.list_calls;
        self.store
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
        self.store.flush_async().await.map_err(store_err)?;
        self.clear_scratch()?;
        tracing::info!(account = %self.spec.id, list_calls = calls, appeared = gap.appeared, vanished, relabeled, history_id = %gap.start_history_id, "Gap recovery finished.");
        let _ = self.parent.cast(AccountMsg::GapDone);
        Ok(())
    }

    /// The labels the per-label listing found on one message. Never call it inside a
    /// transaction closure (sled's global lock): the markers are written by earlier,
    /// committed steps and never change during the apply step.
    fn scratch_labels(&self, account: &str, id: &MessageId) -> Result<Vec<LabelId>, StoreError> {
        let prefix = label_prefix(account, &id.0);
        let mut out = Vec::new();
        for item in self.store.kv(Space::Cursors).scan_prefix(&prefix) {
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

    fn clear_scratch(&self) -> Result<(), ActorProcessingErr> {
        let tree = self.store.kv(Space::Cursors);
        let prefix = scratch_prefix(&self.spec.id.0);
        let mut batch = sled::Batch::default();
        for item in tree.scan_prefix(&prefix) {
            let (k, _) = item.map_err(store_err)?;
            batch.remove(k);
        }
        tree.apply_batch(batch).map_err(store_err)?;
        Ok(())
    }
}
