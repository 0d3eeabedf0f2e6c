//! Backfill: the driver of an account's *backfill* jobs — the full listing and the gap repair
//! or resync ([`SyncSource::backfill_step`]). Its durable mailbox holds at most one job per
//! kind (`jobs.rs`); the job's progress lives in the source's own record, written in the same
//! transaction as each step's effects, so a crash resumes at the step it was on.
//!
//! The driver leases one job, runs its steps one message at a time (so a stop never waits
//! for more than one provider call), waits when the source asks, retries failed steps with
//! backoff, and hands the job back when it is finished (the source acked it) or the actor
//! stops. Parent: AccountActor (through a [`crate::report::Reporter`]). Messages: `BackfillMsg`.

use crate::error::{ApiError, SyncError};
use crate::mailbox::{DurableMailbox, Job};
use crate::outage::Outage;
use crate::report::{self, ChildReport, Reporter};
use crate::source::{BackfillNext, SourceCx};
use crate::spec::{AccountSpec, ChildKind, mailbox_name, now_ms};
use crate::store::Store;
use ractor::{Actor, ActorProcessingErr, ActorRef};

pub use crate::jobs::BackfillJob;

/// The Backfill actor.
pub struct Backfill;

/// What Backfill is started with (the same for every child).
pub type BackfillArgs = crate::spec::ChildArgs;

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
    parent: Reporter,
    current: Option<Job>,
    paused: bool,
    outage: Outage,
}

fn store_err(e: impl std::fmt::Display) -> ActorProcessingErr {
    SyncError::Store(e.to_string()).into()
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
            outage: Outage::new(ChildKind::Backfill),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<BackfillMsg>,
        st: &mut BackfillState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(job) = st.current.take() {
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
                if let Err(e) = BackfillJob::decode(&job) {
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
                st.current = Some(job);
                myself.cast(BackfillMsg::Step)?;
            }
            BackfillMsg::Step => {
                if st.paused {
                    return Ok(());
                }
                let Some(job) = st.current.clone() else {
                    return Ok(());
                };
                let source = st.spec.source.clone();
                let cx = SourceCx {
                    account: &st.spec.id,
                    store: &st.store,
                    report: &st.parent,
                };
                let outcome = crate::quota::in_class(
                    crate::quota::WorkClass::Bulk,
                    source.backfill_step(&cx, &job),
                )
                .await;
                st.after_step(&myself, outcome)?;
            }
        }
        Ok(())
    }
}

impl BackfillState {
    fn after_step(
        &mut self,
        myself: &ActorRef<BackfillMsg>,
        outcome: Result<BackfillNext, SyncError>,
    ) -> Result<(), ActorProcessingErr> {
        match outcome {
            Ok(BackfillNext::Continue) => {
                self.outage.succeeded(&self.parent);
                myself.cast(BackfillMsg::Step)?;
            }
            Ok(BackfillNext::WaitThen(d)) => {
                self.outage.succeeded(&self.parent);
                myself.send_after(d, || BackfillMsg::Step);
            }
            Ok(BackfillNext::Finished) => {
                self.outage.succeeded(&self.parent);
                if let Some(job) = self.current.take() {
                    self.queue.release(&job);
                }
                myself.cast(BackfillMsg::WorkAvailable)?;
            }
            Err(SyncError::Api(ApiError::Disconnected(reason))) => {
                self.paused = true;
                report::send(&self.parent, ChildReport::Disconnected(reason));
            }
            Err(SyncError::Api(other)) if !matches!(other, ApiError::Internal(_)) => {
                // The client already retried; wait with backoff and try the step again (the
                // job's attempts are never counted: a step is retried until it goes through).
                let delay = self.outage.failed(&other, &self.spec.retry, &self.parent);
                tracing::warn!(account = %self.spec.id, error = %other, delay_ms = delay.as_millis() as u64, "Backfill step failed; retrying.");
                myself.send_after(delay, || BackfillMsg::Step);
            }
            Err(err) => {
                if let Some(job) = self.current.take() {
                    self.queue.release(&job);
                }
                return Err(err.into());
            }
        }
        Ok(())
    }
}

/// Enqueues a backfill job (see [`crate::jobs::enqueue_backfill_tx`]).
pub use crate::jobs::enqueue_backfill_tx as enqueue_tx;
