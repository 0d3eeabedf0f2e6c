//! HistorySync: the driver of an account's *incremental* sync rounds
//! ([`SyncSource::incremental_page`]). A round walks every page of changes since the source's
//! cursor, one page per message (so a stop never waits long); the source commits each page and
//! moves its cursor only with the round's last page. An expired cursor (Gmail history 404,
//! Calendar 410) is not a failure: the parent is told [`ChildReport::CursorExpired`] and starts
//! a resync.
//!
//! Rounds start on the poll timer, a push or `sync-now`; nudges during a round coalesce into
//! one more round. A round that covered a push is followed by one more look after the source's
//! [`crate::source::SyncSource::push_follow_up`] (Gmail drops a notification within a second of the last),
//! whatever the poll interval. One poll timer is pending at a time: scheduling the next one aborts the
//! last (a busy account would otherwise keep one sleeping task per round of the last poll
//! interval). A push is first made durable as a job in this actor's mailbox (see
//! `jobs.rs`); the round leases the pending pushes and the source acks the ones its last page
//! covers in that page's transaction, so a push acknowledged upstream is never lost to a crash.
//! Parent: AccountActor (through a [`Reporter`]). Messages: `HistorySyncMsg`.

use crate::error::{ApiError, SyncError};
use crate::mailbox::{DurableMailbox, Job};
use crate::outage::Outage;
use crate::report::{self, ChildReport, Reporter};
use crate::source::SourceCx;
use crate::spec::{AccountSpec, ChildKind, mailbox_name, now_ms};
use crate::store::Store;
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
    parent: Reporter,
    in_round: bool,
    again: bool,
    paused: bool,
    timer_generation: u64,
    /// The pending poll timer's task.
    poll_timer: Option<tokio::task::JoinHandle<Result<(), ractor::MessagingErr<HistorySyncMsg>>>>,
    outage: Outage,
    pushes: DurableMailbox,
    round_pushes: Vec<Job>,
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
        let pushes = args
            .store
            .mailbox(&mailbox_name(&args.spec.id, ChildKind::HistorySync));
        myself.cast(HistorySyncMsg::Nudge)?;
        Ok(HistorySyncState {
            spec: args.spec,
            store: args.store,
            parent: args.parent,
            in_round: false,
            again: false,
            paused: false,
            timer_generation: 0,
            poll_timer: None,
            outage: Outage::new(ChildKind::HistorySync),
            pushes,
            round_pushes: Vec::new(),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<HistorySyncMsg>,
        st: &mut HistorySyncState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(timer) = st.poll_timer.take() {
            timer.abort();
        }
        Ok(())
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
    fn cx(&self) -> SourceCx<'_> {
        SourceCx {
            account: &self.spec.id,
            store: &self.store,
            report: &self.parent,
        }
    }

    /// Ends the current round and gives back the pushes it did not ack, so the next round
    /// leases them again.
    fn end_round(&mut self) {
        self.in_round = false;
        for job in self.round_pushes.drain(..) {
            self.pushes.release(&job);
        }
    }

    fn schedule_poll(&mut self, myself: &ActorRef<HistorySyncMsg>, after: std::time::Duration) {
        self.timer_generation += 1;
        let generation = self.timer_generation;
        if let Some(old) = self.poll_timer.take() {
            old.abort();
        }
        self.poll_timer = Some(myself.send_after(after, move || HistorySyncMsg::Poll(generation)));
    }

    fn start_round(&mut self, myself: &ActorRef<HistorySyncMsg>) -> Result<(), ActorProcessingErr> {
        if self.paused {
            return Ok(());
        }
        if self.in_round {
            self.again = true;
            return Ok(());
        }
        if !self
            .spec
            .source
            .incremental_ready(&self.cx())
            .map_err(store_err)?
        {
            // Backfill owns the account until the full sync or resync ends; it nudges us.
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
        let source = self.spec.source.clone();
        let cx = self.cx();
        // Changes happening now: ahead of every account's bulk work at the project quota.
        let result = crate::quota::in_class(
            crate::quota::WorkClass::RealTime,
            source.incremental_page(&cx, &self.round_pushes),
        )
        .await;
        let page = match result {
            Ok(p) => p,
            Err(SyncError::Api(err)) => return self.page_failed(myself, err),
            Err(other) => {
                self.end_round();
                return Err(other.into());
            }
        };
        self.outage.succeeded(&self.parent);
        if page.ingest_work {
            report::send(&self.parent, ChildReport::IngestWork);
        }
        if !page.round_done {
            myself.cast(HistorySyncMsg::FetchPage)?;
            return Ok(());
        }
        let pushed = !self.round_pushes.is_empty();
        self.end_round();
        report::send(&self.parent, ChildReport::RoundDone { at_ms: now_ms() });
        if self.again {
            myself.cast(HistorySyncMsg::Nudge)?;
        } else {
            let follow_up = if pushed {
                self.spec.source.push_follow_up()
            } else {
                None
            };
            let next =
                follow_up.map_or(self.spec.poll_interval, |f| f.min(self.spec.poll_interval));
            self.schedule_poll(myself, next);
        }
        Ok(())
    }

    fn page_failed(
        &mut self,
        myself: &ActorRef<HistorySyncMsg>,
        err: ApiError,
    ) -> Result<(), ActorProcessingErr> {
        match err {
            ApiError::HistoryExpired | ApiError::SyncTokenExpired => {
                self.end_round();
                tracing::warn!(account = %self.spec.id, error = %err, "History id expired (cursor no longer valid); starting gap recovery.");
                report::send(&self.parent, ChildReport::CursorExpired);
                Ok(())
            }
            ApiError::Disconnected(reason) => {
                self.end_round();
                self.paused = true;
                report::send(&self.parent, ChildReport::Disconnected(reason));
                Ok(())
            }
            ApiError::Internal(_) => {
                self.end_round();
                Err(SyncError::Api(err).into())
            }
            other => {
                let delay = self.outage.failed(&other, &self.spec.retry, &self.parent);
                tracing::warn!(account = %self.spec.id, error = %other, delay_ms = delay.as_millis() as u64, "History page failed; retrying.");
                myself.send_after(delay, || HistorySyncMsg::FetchPage);
                Ok(())
            }
        }
    }
}

/// Durably records a Gmail push (see [`crate::jobs::enqueue_history_push`]).
pub use crate::jobs::enqueue_history_push as enqueue_push;
