//! Ingest: drains the account's `ingest` durable mailbox. One unit of work is one batch: lease
//! up to `batch_size` jobs (real-time before backfill), one batched `messages.get`, then one
//! transaction that writes every fetched message and its feed event and acks those jobs,
//! then a flush. Parts that failed are nacked (retried with backoff, dead-lettered after the
//! policy's attempts), never dropped; a 404 part is a deletion, not an error.
//!
//! Parent: AccountActor (told the fetch rate and disconnections). Persists: mirror records,
//! feed events, job acks (all via `Store`).
//! Messages: `IngestMsg`. A ractor message is only a wake-up; the work is in sled.

use crate::account::AccountMsg;
use crate::error::{ApiError, SyncError};
use crate::mailbox::{DurableMailbox, Job, Priority};
use crate::mirror::{self, Applied};
use crate::model::{AccountId, MessageId};
use crate::spec::{AccountSpec, ChildKind, mailbox_name, now_ms};
use crate::store::Store;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::time::{Duration, Instant};

/// The Ingest actor (behaviour only; state is `IngestState`).
pub struct Ingest;

/// What Ingest is started with (the same for every child).
pub type IngestArgs = crate::spec::ChildArgs;

/// Ingest's messages.
#[derive(Debug)]
pub enum IngestMsg {
    /// Work may be available (new jobs, a retry came due, resume).
    WorkAvailable,
    /// Stop calling the provider until `Resume`.
    Pause,
    /// Continue after `Pause`.
    Resume,
}

/// Ingest's private state.
pub struct IngestState {
    spec: AccountSpec,
    store: Store,
    queue: DurableMailbox,
    parent: ActorRef<AccountMsg>,
    paused: bool,
    wake_scheduled_for: Option<u64>,
    fetched: u64,
    started: Instant,
}

/// The idempotency key of a message's ingest job.
pub fn ingest_key(account: &AccountId, id: &MessageId) -> String {
    format!("ingest:{account}:{id}")
}

/// Enqueues a message for ingest inside a transaction.
pub fn enqueue_tx(
    tx: &crate::store::StoreTx<'_>,
    account: &AccountId,
    id: &MessageId,
    priority: Priority,
    now_ms: u64,
) -> Result<(), crate::store::TxError> {
    tx.enqueue(
        &mailbox_name(account, ChildKind::Ingest),
        priority,
        &ingest_key(account, id),
        id.0.as_bytes(),
        now_ms,
    )?;
    Ok(())
}

impl Actor for Ingest {
    type Msg = IngestMsg;
    type State = IngestState;
    type Arguments = IngestArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<IngestMsg>,
        args: IngestArgs,
    ) -> Result<IngestState, ActorProcessingErr> {
        let queue = args
            .store
            .mailbox(&mailbox_name(&args.spec.id, ChildKind::Ingest));
        // The real work starts in `handle`; a failing pre_start would raise no supervision event.
        myself.cast(IngestMsg::WorkAvailable)?;
        Ok(IngestState {
            spec: args.spec,
            store: args.store,
            queue,
            parent: args.parent,
            paused: false,
            wake_scheduled_for: None,
            fetched: 0,
            started: Instant::now(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<IngestMsg>,
        msg: IngestMsg,
        st: &mut IngestState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            IngestMsg::Pause => st.paused = true,
            IngestMsg::Resume => {
                st.paused = false;
                myself.cast(IngestMsg::WorkAvailable)?;
            }
            IngestMsg::WorkAvailable => {
                if st.paused {
                    return Ok(());
                }
                st.run_batch(&myself).await?;
            }
        }
        Ok(())
    }
}

impl IngestState {
    async fn run_batch(&mut self, myself: &ActorRef<IngestMsg>) -> Result<(), ActorProcessingErr> {
        let now = now_ms();
        let jobs = self
            .queue
            .lease(self.spec.batch_size, now)
            .map_err(|e| SyncError::Store(e.to_string()))?;
        if jobs.is_empty() {
            return self.schedule_wake(myself);
        }
        let ids: Vec<MessageId> = jobs
            .iter()
            .map(|j| MessageId(String::from_utf8_lossy(&j.payload).into_owned()))
            .collect();
        let result = self.spec.api.get_messages(&ids).await;
        let items = match result {
            Ok(items) => items,
            Err(err) => return self.batch_failed(myself, jobs, err),
        };
        let leased = jobs.clone();
        let mut done: Vec<(Job, Option<crate::model::FetchedMessage>)> = Vec::new();
        let mut failed: Vec<(Job, ApiError)> = Vec::new();
        let mut items = items;
        for job in jobs {
            let id = String::from_utf8_lossy(&job.payload).into_owned();
            match items.iter().position(|(mid, _)| mid.0 == id) {
                Some(pos) => {
                    let (_, res) = items.swap_remove(pos);
                    match res {
                        Ok(m) => done.push((job, Some(m))),
                        Err(ApiError::NotFound) => done.push((job, None)),
                        Err(ApiError::Internal(e)) => {
                            self.release(&leased);
                            return Err(SyncError::Api(ApiError::Internal(e)).into());
                        }
                        Err(e) => failed.push((job, e)),
                    }
                }
                None => failed.push((
                    job,
                    ApiError::Malformed("the batch response lacks this message".into()),
                )),
            }
        }
        let account = self.spec.id.0.clone();
        let now = now_ms();
        let commit = self.store.transaction(|tx| {
            let mut added = 0u64;
            for (job, msg) in &done {
                match msg {
                    Some(m) => {
                        if mirror::apply_fetched(tx, &account, m, now)? == Applied::Added {
                            added += 1;
                        }
                    }
                    None => {
                        let id = MessageId(String::from_utf8_lossy(&job.payload).into_owned());
                        mirror::apply_deleted(tx, &account, &id, now)?;
                    }
                }
                tx.ack(job)?;
            }
            Ok(added)
        });
        let added = match commit {
            Ok(n) => n,
            Err(e) => {
                self.release(&leased);
                return Err(SyncError::Store(e.to_string()).into());
            }
        };
        // Durable before anyone is told: the flush is the commit point of this batch.
        self.store
            .flush_async()
            .await
            .map_err(|e| SyncError::Store(e.to_string()))?;
        for (job, _) in &done {
            self.queue.release(job);
        }
        for (job, err) in failed {
            if let ApiError::Disconnected(reason) = &err {
                self.queue.release(&job);
                let _ = self.parent.cast(AccountMsg::Disconnected(reason.clone()));
                self.paused = true;
                continue;
            }
            tracing::warn!(account = %self.spec.id, job = %job.key, error = %err, "Message fetch failed; retrying later.");
            self.queue
                .nack(&job, &err.to_string(), &self.spec.retry, now_ms())
                .map_err(|e| SyncError::Store(e.to_string()))?;
        }
        self.fetched += added;
        let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
        let _ = self.parent.cast(AccountMsg::IngestProgress {
            per_second: self.fetched as f64 / elapsed,
        });
        myself.cast(IngestMsg::WorkAvailable)?;
        Ok(())
    }

    fn batch_failed(
        &mut self,
        myself: &ActorRef<IngestMsg>,
        jobs: Vec<Job>,
        err: ApiError,
    ) -> Result<(), ActorProcessingErr> {
        match err {
            ApiError::Internal(_) => {
                self.release(&jobs);
                Err(SyncError::Api(err).into())
            }
            ApiError::Disconnected(reason) => {
                self.release(&jobs);
                self.paused = true;
                let _ = self.parent.cast(AccountMsg::Disconnected(reason));
                Ok(())
            }
            other => {
                tracing::warn!(account = %self.spec.id, jobs = jobs.len(), error = %other, "Batch fetch failed; retrying later.");
                for j in &jobs {
                    self.queue
                        .nack(j, &other.to_string(), &self.spec.retry, now_ms())
                        .map_err(|e| SyncError::Store(e.to_string()))?;
                }
                myself.cast(IngestMsg::WorkAvailable)?;
                Ok(())
            }
        }
    }

    /// Forgets the in-memory leases of jobs this handler will not finish, so they run again.
    fn release(&self, jobs: &[Job]) {
        for j in jobs {
            self.queue.release(j);
        }
    }

    /// Arms one timer for the earliest delayed job, so retries run without polling.
    fn schedule_wake(&mut self, myself: &ActorRef<IngestMsg>) -> Result<(), ActorProcessingErr> {
        let Some(due) = self
            .queue
            .next_due_ms()
            .map_err(|e| SyncError::Store(e.to_string()))?
        else {
            return Ok(());
        };
        if self
            .wake_scheduled_for
            .is_some_and(|t| t <= due && t > now_ms())
        {
            return Ok(());
        }
        self.wake_scheduled_for = Some(due);
        let delay = Duration::from_millis(due.saturating_sub(now_ms()).max(10));
        myself.send_after(delay, || IngestMsg::WorkAvailable);
        Ok(())
    }
}
