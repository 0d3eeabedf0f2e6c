//! Ingest: the driver of an account's *fetch* jobs ([`SyncSource::ingest_batch`]). One unit of
//! work is one batch: lease jobs holding up to `batch_size` items (real-time before backfill;
//! a full sync's page job holds a batch of ids, `ingest_pages.rs`), let the source
//! fetch them and record them in one transaction that also acks them (flushed), then nack the
//! items that failed on their own (retried with backoff, dead-lettered after the policy's
//! attempts), never dropping one.
//!
//! Transient trouble (the whole request failed, or an item answered 5xx / 429 / a timeout, see
//! `outage.rs`) is never an item's fault: those jobs are handed back with their attempt count
//! untouched and the whole child waits (capped, jittered) before its next batch, reporting
//! `degraded` to its parent until a batch goes through. Only permanent per-item errors (an
//! item malformed on every fetch, a 400) count toward the dead-letter list.
//!
//! Parent: AccountActor (told the fetch rate and disconnections, through a
//! [`crate::report::Reporter`]). Messages: `IngestMsg`. A ractor message is only a wake-up; the
//! work is in sled.

use crate::error::{ApiError, SyncError};
use crate::ingest_pages;
use crate::mailbox::{DurableMailbox, Job, Priority};
use crate::outage::{self, Outage};
use crate::quota::{WorkClass, in_class};
use crate::report::{self, ChildReport, Reporter};
use crate::source::SourceCx;
use crate::spec::{AccountSpec, ChildKind, mailbox_name, now_ms};
use crate::store::Store;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::time::{Duration, Instant};

pub use crate::jobs::{enqueue_ingest_tx, ingest_key};

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
    /// The wait after a transient failure is over: try the next batch.
    BackoffOver,
}

/// Ingest's private state.
pub struct IngestState {
    spec: AccountSpec,
    store: Store,
    queue: DurableMailbox,
    parent: Reporter,
    paused: bool,
    wake_scheduled_for: Option<u64>,
    fetched: u64,
    started: Instant,
    outage: Outage,
    backing_off: bool,
}

fn store_err(e: impl std::fmt::Display) -> ActorProcessingErr {
    SyncError::Store(e.to_string()).into()
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
            outage: Outage::new(ChildKind::Ingest),
            backing_off: false,
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
                // While waiting out an outage, wake-ups wait for the backoff timer.
                if st.paused || st.backing_off {
                    return Ok(());
                }
                st.run_batch(&myself).await?;
            }
            IngestMsg::BackoffOver => {
                st.backing_off = false;
                if !st.paused {
                    st.run_batch(&myself).await?;
                }
            }
        }
        Ok(())
    }
}

impl IngestState {
    /// Leases the next batch: jobs in queue order until they hold `batch_size` items (a page
    /// job holds several, see `ingest_pages.rs`); the first job is always taken.
    fn lease_batch(&self) -> Result<Vec<Job>, ActorProcessingErr> {
        let batch_size = self.spec.batch_size.max(1);
        let mut jobs = self.queue.lease(1, now_ms()).map_err(store_err)?;
        let Some(first) = jobs.first() else {
            return Ok(jobs);
        };
        let mut items = ingest_pages::item_count(first);
        if items >= batch_size {
            return Ok(jobs);
        }
        for job in self
            .queue
            .lease(batch_size - items, now_ms())
            .map_err(store_err)?
        {
            let n = ingest_pages::item_count(&job);
            if items + n <= batch_size {
                items += n;
                jobs.push(job);
            } else {
                self.queue.release(&job);
            }
        }
        Ok(jobs)
    }

    async fn run_batch(&mut self, myself: &ActorRef<IngestMsg>) -> Result<(), ActorProcessingErr> {
        let jobs = self.lease_batch()?;
        if jobs.is_empty() {
            return self.schedule_wake(myself);
        }
        let source = self.spec.source.clone();
        let cx = SourceCx {
            account: &self.spec.id,
            store: &self.store,
            report: &self.parent,
        };
        // A batch with a real-time job (a change just seen) fetches ahead of bulk work.
        let class = if jobs.iter().any(|j| j.priority == Priority::RealTime) {
            WorkClass::RealTime
        } else {
            WorkClass::Bulk
        };
        let batch = match in_class(class, source.ingest_batch(&cx, &jobs)).await {
            Ok(b) => b,
            Err(SyncError::Api(err)) => return self.batch_failed(myself, jobs, err),
            Err(other) => {
                self.release(&jobs);
                return Err(other.into());
            }
        };
        for job in batch.done.iter().chain(&batch.retry_now) {
            self.queue.release(job);
        }
        let mut transient: Option<ApiError> = None;
        for (job, err) in batch.failed {
            if let ApiError::Disconnected(reason) = &err {
                self.queue.release(&job);
                report::send(&self.parent, ChildReport::Disconnected(reason.clone()));
                self.paused = true;
                continue;
            }
            if outage::is_transient(&err) {
                // Not the item's fault: hand it back untouched, the whole child waits.
                self.queue.release(&job);
                transient = Some(err);
                continue;
            }
            tracing::warn!(account = %self.spec.id, job = %job.key, error = %err, "Message fetch failed; retrying later.");
            self.queue
                .nack(&job, &err.to_string(), &self.spec.retry, now_ms())
                .map_err(store_err)?;
        }
        self.fetched += batch.added;
        let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
        report::send(
            &self.parent,
            ChildReport::IngestProgress {
                per_second: self.fetched as f64 / elapsed,
            },
        );
        match transient {
            Some(err) => self.back_off(myself, &err),
            None => {
                self.outage.succeeded(&self.parent);
                myself.cast(IngestMsg::WorkAvailable)?;
            }
        }
        Ok(())
    }

    /// Waits out a transient failure: no batch until the jittered delay has passed.
    fn back_off(&mut self, myself: &ActorRef<IngestMsg>, err: &ApiError) {
        let delay = self.outage.failed(err, &self.spec.retry, &self.parent);
        tracing::warn!(account = %self.spec.id, error = %err, failures = self.outage.failures(), delay_ms = delay.as_millis() as u64, "Provider unavailable; fetches wait (no attempt counted).");
        self.backing_off = true;
        myself.send_after(delay, || IngestMsg::BackoffOver);
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
                report::send(&self.parent, ChildReport::Disconnected(reason));
                Ok(())
            }
            other => {
                // A whole request failed: that says nothing about any one item (outage, 5xx,
                // rate limit, a cut or garbled response, or an account-wide refusal). No
                // attempt is counted; the child waits and shows `degraded` with the reason.
                self.release(&jobs);
                self.back_off(myself, &other);
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
        let Some(due) = self.queue.next_due_ms().map_err(store_err)? else {
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
