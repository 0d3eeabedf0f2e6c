//! HistorySync: partial sync of one account from its stored history id (gmail-api.md §7.2).
//!
//! A round walks every history.list page from the cursor, one page per message. Each page is
//! one transaction: Ingest jobs at real-time priority for added messages, deletions, label
//! deltas, their feed events and the round's next page token. Only the last page's
//! transaction moves the cursor (to the response's historyId), then a flush. A 404 is not a
//! failure: the parent is told `HistoryExpired` and starts a gap recovery.
//!
//! Rounds start on the poll timer, a push or `sync-now`; nudges during a round coalesce into
//! one more round. A push is first made durable as a job in this actor's mailbox
//! (`history:<account>:<historyId>`, see `enqueue_push`); the round whose last page moves the
//! cursor past that id acks the job in the same transaction, so a push acknowledged to
//! Pub/Sub is never lost to a crash. Parent: AccountActor. Messages: `HistorySyncMsg`.

use crate::account::AccountMsg;
use crate::account_record::{AccountRecord, HistoryRound};
use crate::error::{ApiError, SyncError};
use crate::ingest;
use crate::mailbox::{DurableMailbox, Job, Priority};
use crate::mirror;
use crate::model::AccountId;
use crate::model::HistoryChange;
use crate::spec::{AccountSpec, ChildKind, mailbox_name, now_ms};
use crate::store::{Store, StoreError};
use ractor::{Actor, ActorProcessingErr, ActorRef};

/// The HistorySync actor.
pub struct HistorySync;

/// What HistorySync is started with (the same for every child).
pub type HistorySyncArgs = crate::spec::ChildArgs;

/// HistorySync's messages.
#[derive(Debug)]
pub enum HistorySyncMsg {
    /// There may be news (push, sync-now, full sync finished): run a round soon.
    Nudge,
    /// The poll timer of generation `n` fired; stale generations are ignored.
    Poll(u64),
    /// Fetch and apply the next page of the current round.
    FetchPage,
    /// Stop calling the provider until `Resume`.
    Pause,
    /// Continue.
    Resume,
}

/// HistorySync's private state.
pub struct HistorySyncState {
    spec: AccountSpec,
    store: Store,
    parent: ActorRef<AccountMsg>,
    in_round: bool,
    again: bool,
    paused: bool,
    timer_generation: u64,
    failures: u32,
    pushes: DurableMailbox,
    round_pushes: Vec<Job>,
    labels_synced_at: Option<std::time::Instant>,
}

/// How often a round also re-reads the label list (label creations and renames do not appear in
/// history; the call costs one quota unit).
const LABEL_SYNC_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// Durably records a push for `history_id` (not flushed: the caller flushes before it
/// acknowledges the push). Deduplicated per account and history id.
pub fn enqueue_push(store: &Store, account: &AccountId, history_id: u64) -> Result<(), StoreError> {
    store
        .mailbox(&mailbox_name(account, ChildKind::HistorySync))
        .enqueue(
            Priority::RealTime,
            &format!("history:{account}:{history_id}"),
            &history_id.to_be_bytes(),
        )?;
    Ok(())
}

fn push_history_id(job: &Job) -> u64 {
    <[u8; 8]>::try_from(job.payload.as_slice())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

fn store_err(e: impl std::fmt::Display) -> ActorProcessingErr {
    SyncError::Store(e.to_string()).into()
}

impl Actor for HistorySync {
    type Msg = HistorySyncMsg;
    type State = HistorySyncState;
    type Arguments = HistorySyncArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<HistorySyncMsg>,
        args: HistorySyncArgs,
    ) -> Result<HistorySyncState, ActorProcessingErr> {
        myself.cast(HistorySyncMsg::Nudge)?;
        let pushes = args
            .store
            .mailbox(&mailbox_name(&args.spec.id, ChildKind::HistorySync));
        Ok(HistorySyncState {
            pushes,
            round_pushes: Vec::new(),
            labels_synced_at: None,
            spec: args.spec,
            store: args.store,
            parent: args.parent,
            in_round: false,
            again: false,
            paused: false,
            timer_generation: 0,
            failures: 0,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<HistorySyncMsg>,
        msg: HistorySyncMsg,
        st: &mut HistorySyncState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            HistorySyncMsg::Pause => st.paused = true,
            HistorySyncMsg::Resume => {
                st.paused = false;
                myself.cast(HistorySyncMsg::Nudge)?;
            }
            HistorySyncMsg::Poll(generation) => {
                if generation == st.timer_generation {
                    st.start_round(&myself)?;
                }
            }
            HistorySyncMsg::Nudge => st.start_round(&myself)?,
            HistorySyncMsg::FetchPage => {
                if st.paused {
                    st.end_round();
                    return Ok(());
                }
                st.fetch_page(&myself).await?;
            }
        }
        Ok(())
    }
}

impl HistorySyncState {
    /// Ends the current round and gives back the pushes it did not ack, so the next round
    /// leases them again.
    fn end_round(&mut self) {
        self.in_round = false;
        for job in self.round_pushes.drain(..) {
            self.pushes.release(&job);
        }
    }

    fn schedule_poll(&mut self, myself: &ActorRef<HistorySyncMsg>) {
        self.timer_generation += 1;
        let generation = self.timer_generation;
        myself.send_after(self.spec.poll_interval, move || {
            HistorySyncMsg::Poll(generation)
        });
    }

    fn start_round(&mut self, myself: &ActorRef<HistorySyncMsg>) -> Result<(), ActorProcessingErr> {
        if self.paused {
            return Ok(());
        }
        if self.in_round {
            self.again = true;
            return Ok(());
        }
        let rec = AccountRecord::load(&self.store, &self.spec.id.0).map_err(store_err)?;
        if !rec.initial_sync_completed || rec.gap.is_some() || rec.history_id.is_none() {
            // Backfill owns the account until the full sync or gap recovery ends; it nudges us.
            return Ok(());
        }
        self.in_round = true;
        self.again = false;
        // The pushes this round may cover; acked with the round's last page.
        for job in self.round_pushes.drain(..) {
            self.pushes.release(&job);
        }
        self.round_pushes = self.pushes.lease(1_000, now_ms()).map_err(store_err)?;
        myself.cast(HistorySyncMsg::FetchPage)?;
        Ok(())
    }

    async fn fetch_page(
        &mut self,
        myself: &ActorRef<HistorySyncMsg>,
    ) -> Result<(), ActorProcessingErr> {
        let account = self.spec.id.0.clone();
        let rec = AccountRecord::load(&self.store, &account).map_err(store_err)?;
        let Some(cursor) = rec.history_id else {
            self.end_round();
            return Ok(());
        };
        let round = rec.history_round.clone().unwrap_or(HistoryRound {
            start: cursor,
            next_page_token: None,
            pages: 0,
        });
        if round.pages == 0
            && self
                .labels_synced_at
                .is_none_or(|t| t.elapsed() >= LABEL_SYNC_EVERY)
        {
            self.sync_labels().await?;
        }
        let page = match self
            .spec
            .api
            .history(round.start, round.next_page_token.as_deref())
            .await
        {
            Ok(p) => p,
            Err(err) => return self.page_failed(myself, err),
        };
        self.failures = 0;
        let now = now_ms();
        let id = self.spec.id.clone();
        let last = page.next_page_token.is_none();
        let new_cursor = page.history_id.max(round.start);
        let covered: Vec<Job> = if last {
            self.round_pushes
                .iter()
                .filter(|j| push_history_id(j) <= new_cursor.0)
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        let enqueued = self
            .store
            .transaction(|tx| {
                let mut enqueued = 0usize;
                for (idx, change) in page.changes.iter().enumerate() {
                    // Stable across replays: the round's start, the page number and position.
                    let disc = format!("h{}.p{}.{}", round.start, round.pages, idx);
                    match change {
                        HistoryChange::MessageAdded { id: mid, .. } => {
                            if mirror::get_message_tx(tx, &account, mid)?.is_none() {
                                ingest::enqueue_tx(tx, &id, mid, Priority::RealTime, now)?;
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
        self.store.flush_async().await.map_err(store_err)?;
        if enqueued > 0 {
            let _ = self.parent.cast(AccountMsg::IngestWork);
        }
        if !last {
            myself.cast(HistorySyncMsg::FetchPage)?;
            return Ok(());
        }
        self.end_round();
        if !covered.is_empty() {
            tracing::debug!(account = %self.spec.id, pushes = covered.len(), history_id = %new_cursor, "Pushes covered by this round.");
        }
        let _ = self.parent.cast(AccountMsg::RoundDone {
            history_id: page.history_id.0,
            at_ms: now,
        });
        if self.again {
            myself.cast(HistorySyncMsg::Nudge)?;
        } else {
            self.schedule_poll(myself);
        }
        Ok(())
    }

    /// Mirrors label creations, renames and deletions. A failure is logged and retried at the
    /// next round; it never blocks message sync.
    async fn sync_labels(&mut self) -> Result<(), ActorProcessingErr> {
        let remote = match self.spec.api.labels().await {
            Ok(l) => l,
            Err(ApiError::Internal(e)) => return Err(SyncError::Api(ApiError::Internal(e)).into()),
            Err(e) => {
                tracing::warn!(account = %self.spec.id, error = %e, "Label sync failed; retrying next round.");
                return Ok(());
            }
        };
        let events = mirror::store_remote_labels(&self.store, &self.spec.id.0, &remote, now_ms())
            .map_err(store_err)?;
        if events > 0 {
            self.store.flush_async().await.map_err(store_err)?;
        }
        self.labels_synced_at = Some(std::time::Instant::now());
        Ok(())
    }

    fn page_failed(
        &mut self,
        myself: &ActorRef<HistorySyncMsg>,
        err: ApiError,
    ) -> Result<(), ActorProcessingErr> {
        match err {
            ApiError::HistoryExpired => {
                self.end_round();
                tracing::warn!(account = %self.spec.id, "History id expired (404); starting gap recovery.");
                let _ = self.parent.cast(AccountMsg::HistoryExpired);
                Ok(())
            }
            ApiError::Disconnected(reason) => {
                self.end_round();
                self.paused = true;
                let _ = self.parent.cast(AccountMsg::Disconnected(reason));
                Ok(())
            }
            ApiError::Internal(_) => {
                self.end_round();
                Err(SyncError::Api(err).into())
            }
            other => {
                self.failures += 1;
                let delay = other.retry_delay(&self.spec.retry, self.failures);
                tracing::warn!(account = %self.spec.id, error = %other, delay_ms = delay.as_millis() as u64, "History page failed; retrying.");
                myself.send_after(delay, || HistorySyncMsg::FetchPage);
                Ok(())
            }
        }
    }
}
