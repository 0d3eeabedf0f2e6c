//! AccountActor: one per configured account. It owns the account's sync state (the
//! `AccountRecord` with its history id cursor; children write their part of it in the same
//! transaction as the work it covers), spawns HistorySync, Backfill and Ingest, and restarts a
//! failed child with exponential backoff. More than `max_restarts` failures within the window
//! mark the account `failed` with its last error: its children stop, the actor stays to answer
//! status, and every other account keeps running.
//!
//! Parent: RootSupervisor. Children: HistorySync, Backfill, Ingest. Messages: `AccountMsg`.

use crate::backfill::{Backfill, BackfillMsg};
use crate::backoff::RestartBudget;
use crate::history_sync::{HistorySync, HistorySyncMsg};
use crate::ingest::{Ingest, IngestMsg};
use crate::mirror::{self, Change};
use crate::report::ChildReport;
use crate::source::{SourceCx, StartState};
use crate::spec::{AccountSpec, ChildArgs, ChildKind, mailbox_name, now_ms};
use crate::status::{AccountState, AccountStatus, Phase, Progress};
use crate::store::Store;
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use std::collections::HashMap;
use std::time::Instant;

mod status_view;
pub use status_view::StatusDetail;

/// The AccountActor.
pub struct AccountActor;

/// What an AccountActor is started with.
pub struct AccountArgs {
    /// The account.
    pub spec: AccountSpec,
    /// The store.
    pub store: Store,
}

/// Admin commands from the control socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountCommand {
    /// Stop calling the provider; keep queues.
    Pause,
    /// Continue after a pause (also retries a disconnected or failed account).
    Resume,
    /// Run a partial sync round now.
    SyncNow,
    /// Reconcile the mirror with the provider (the gap recovery, on demand).
    Resync,
    /// Re-read the credentials and start the token source over (`ctl reload`); a
    /// disconnected account then resumes.
    Reconnect,
}

/// The AccountActor's messages.
#[derive(Debug)]
pub enum AccountMsg {
    /// Report the full status (reads the source's stored records).
    Status(RpcReplyPort<AccountStatus>),
    /// Report the health view of the status: memory and queue counters only, no store
    /// reads (the service monitor asks every tick; an answer also shows the actor is alive).
    Health(RpcReplyPort<AccountStatus>),
    /// An admin command.
    Command(AccountCommand),
    /// Re-spawn a child after its backoff delay.
    Respawn(ChildKind),
    /// A push notification or similar says there is news.
    Nudge,
    /// A report from a child (see `report.rs`).
    Child(ChildReport),
}

impl From<ChildReport> for AccountMsg {
    fn from(r: ChildReport) -> Self {
        AccountMsg::Child(r)
    }
}

impl TryFrom<AccountMsg> for ChildReport {
    type Error = AccountMsg;
    fn try_from(m: AccountMsg) -> Result<Self, AccountMsg> {
        match m {
            AccountMsg::Child(r) => Ok(r),
            other => Err(other),
        }
    }
}

struct Children {
    ingest: Option<ActorRef<IngestMsg>>,
    backfill: Option<ActorRef<BackfillMsg>>,
    history: Option<ActorRef<HistorySyncMsg>>,
    by_id: HashMap<ActorId, ChildKind>,
}

/// The AccountActor's private state.
pub struct AccountActorState {
    spec: AccountSpec,
    store: Store,
    children: Children,
    budget: RestartBudget,
    state: AccountState,
    phase: Phase,
    progress: Option<Progress>,
    last_error: Option<String>,
    last_sync_ms: Option<u64>,
    stopping: bool,
    /// Children waiting out a transient provider failure, with the reason.
    degraded: std::collections::BTreeMap<&'static str, String>,
    /// Looks at a full disk since the last successful one (backoff of the disk wait).
    disk_waits: u32,
    /// The push-watch duty's task (`push_watch.rs`), aborted when the account stops.
    watch_task: Option<tokio::task::JoinHandle<()>>,
    /// The children's durable mailboxes by name, opened once for the status views.
    mailboxes: Vec<(String, crate::mailbox::DurableMailbox)>,
}

fn store_err(e: impl std::fmt::Display) -> ActorProcessingErr {
    crate::error::SyncError::Store(e.to_string()).into()
}

impl Actor for AccountActor {
    type Msg = AccountMsg;
    type State = AccountActorState;
    type Arguments = AccountArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<AccountMsg>,
        args: AccountArgs,
    ) -> Result<AccountActorState, ActorProcessingErr> {
        let budget = RestartBudget::new(args.spec.restart.clone());
        let mailboxes = [
            ChildKind::Ingest,
            ChildKind::Backfill,
            ChildKind::HistorySync,
        ]
        .into_iter()
        .map(|kind| {
            let name = mailbox_name(&args.spec.id, kind);
            let mailbox = args.store.mailbox(&name);
            (name, mailbox)
        })
        .collect();
        Ok(AccountActorState {
            spec: args.spec,
            store: args.store,
            children: Children {
                ingest: None,
                backfill: None,
                history: None,
                by_id: HashMap::new(),
            },
            budget,
            state: AccountState::Starting,
            phase: Phase::Starting,
            progress: None,
            last_error: None,
            last_sync_ms: None,
            stopping: false,
            degraded: std::collections::BTreeMap::new(),
            disk_waits: 0,
            watch_task: None,
            mailboxes,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<AccountMsg>,
        st: &mut AccountActorState,
    ) -> Result<(), ActorProcessingErr> {
        let reporter = myself.get_derived();
        let start = st
            .spec
            .source
            .ensure_jobs(&st.cx(&reporter))
            .map_err(store_err)?;
        for kind in ChildKind::ALL {
            st.spawn_child(&myself, kind).await?;
        }
        if let Some(watch) = st.spec.push_watch.clone() {
            st.watch_task = Some(tokio::spawn(crate::push_watch::keep(watch, reporter)));
        }
        // A resync interrupted by a restart resumes; say so from the start.
        if start == StartState::Resyncing {
            st.set_state(
                AccountState::Resyncing,
                Some("resuming gap recovery".into()),
            );
            st.phase = Phase::Resyncing;
        } else {
            st.set_state(AccountState::Running, None);
        }
        tracing::info!(account = %st.spec.id, kind = %st.spec.kind, "Account started.");
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<AccountMsg>,
        st: &mut AccountActorState,
    ) -> Result<(), ActorProcessingErr> {
        st.stopping = true;
        if let Some(task) = st.watch_task.take() {
            task.abort();
        }
        myself
            .stop_children_and_wait(
                Some("account stopping".into()),
                Some(std::time::Duration::from_secs(10)),
            )
            .await;
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<AccountMsg>,
        evt: SupervisionEvent,
        st: &mut AccountActorState,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorFailed(cell, err) => {
                st.child_exited(&myself, cell, Some(err.to_string()));
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                // Children stop only when we stop them; anything else is a failure too.
                if !st.stopping && st.state != AccountState::Failed {
                    let reason = reason.unwrap_or_else(|| "child stopped unexpectedly".into());
                    st.child_exited(&myself, cell, Some(reason));
                } else {
                    st.children.by_id.remove(&cell.get_id());
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<AccountMsg>,
        msg: AccountMsg,
        st: &mut AccountActorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AccountMsg::Status(reply) => {
                let _ = reply.send(st.status(&myself, StatusDetail::Full));
            }
            AccountMsg::Health(reply) => {
                let _ = reply.send(st.status(&myself, StatusDetail::Health));
            }
            AccountMsg::Command(cmd) => st.command(&myself, cmd).await?,
            AccountMsg::Respawn(kind) => {
                if st.state == AccountState::Degraded && !st.disk_ready(&myself, kind) {
                    return Ok(());
                }
                if st.state != AccountState::Failed && !st.stopping {
                    st.spawn_child(&myself, kind).await?;
                    if st.state == AccountState::Paused {
                        st.pause_children();
                    }
                }
            }
            AccountMsg::Nudge => {
                if let Some(h) = &st.children.history {
                    let _ = h.cast(HistorySyncMsg::Nudge);
                }
            }
            AccountMsg::Child(report) => st.child_report(&myself, report)?,
        }
        Ok(())
    }
}

impl AccountActorState {
    fn cx<'a>(&'a self, reporter: &'a crate::report::Reporter) -> SourceCx<'a> {
        SourceCx {
            account: &self.spec.id,
            store: &self.store,
            report: reporter,
        }
    }

    fn child_report(
        &mut self,
        myself: &ActorRef<AccountMsg>,
        report: ChildReport,
    ) -> Result<(), ActorProcessingErr> {
        match report {
            ChildReport::IngestWork => {
                if let Some(i) = &self.children.ingest {
                    let _ = i.cast(IngestMsg::WorkAvailable);
                }
            }
            ChildReport::IncrementalWork => {
                if let Some(h) = &self.children.history {
                    let _ = h.cast(HistorySyncMsg::Nudge);
                }
            }
            ChildReport::BackfillWork => {
                if let Some(b) = &self.children.backfill {
                    let _ = b.cast(BackfillMsg::WorkAvailable);
                }
            }
            ChildReport::IngestProgress { per_second } => {
                if self.phase == Phase::Fetching || self.phase == Phase::Listing {
                    let p = self.progress.get_or_insert_with(Progress::default);
                    p.per_second = per_second;
                }
            }
            ChildReport::Phase { phase, progress } => {
                self.phase = phase;
                self.progress = progress;
            }
            ChildReport::FullSyncDone => {
                self.phase = Phase::CaughtUp;
                self.progress = None;
                self.last_sync_ms = Some(now_ms());
                if let Some(h) = &self.children.history {
                    let _ = h.cast(HistorySyncMsg::Nudge);
                }
            }
            ChildReport::CursorExpired => {
                tracing::warn!(account = %self.spec.id, "History gap detected; resyncing.");
                self.request_resync(myself)?;
                self.set_state(AccountState::Resyncing, Some("history id expired".into()));
                self.phase = Phase::Resyncing;
            }
            ChildReport::ResyncDone => {
                self.set_state(AccountState::Running, None);
                self.phase = Phase::CaughtUp;
                self.progress = None;
                if let Some(h) = &self.children.history {
                    let _ = h.cast(HistorySyncMsg::Nudge);
                }
            }
            ChildReport::RoundDone { at_ms } => {
                self.last_sync_ms = Some(at_ms);
                if self.state == AccountState::Running {
                    self.phase = Phase::CaughtUp;
                    self.progress = None;
                }
                tracing::debug!(account = %self.spec.id, "Incremental round finished.");
            }
            ChildReport::Degraded { child, reason } => {
                if !self.degraded.contains_key(child.name()) {
                    tracing::warn!(account = %self.spec.id, child = child.name(), error = %reason, "Provider unavailable; waiting it out (degraded).");
                }
                self.last_error = Some(format!("{}: {reason}", child.name()));
                self.degraded.insert(child.name(), reason);
            }
            ChildReport::Recovered { child } => {
                if self.degraded.remove(child.name()).is_some() {
                    tracing::info!(account = %self.spec.id, child = child.name(), "Provider answers again; no longer degraded.");
                }
            }
            ChildReport::WatchFailed(reason) => {
                self.last_error = Some(format!("watch: {reason}"));
                self.degraded.insert("watch", reason);
            }
            ChildReport::WatchOk => {
                if self.degraded.remove("watch").is_some() {
                    tracing::info!(account = %self.spec.id, "Push watch registered again.");
                }
            }
            ChildReport::Disconnected(reason) => {
                if self.state != AccountState::Disconnected {
                    tracing::error!(account = %self.spec.id, error = %reason, "Account disconnected; run `mailsync auth` and `mailsync ctl resume`.");
                    self.last_error = Some(reason.clone());
                    self.set_state(AccountState::Disconnected, Some(reason));
                    self.pause_children();
                }
            }
        }
        Ok(())
    }

    /// Durably asks the source for a resync and wakes Backfill.
    fn request_resync(&self, myself: &ActorRef<AccountMsg>) -> Result<(), ActorProcessingErr> {
        let reporter = myself.get_derived();
        self.spec
            .source
            .request_resync(&self.cx(&reporter))
            .map_err(store_err)?;
        if let Some(b) = &self.children.backfill {
            let _ = b.cast(BackfillMsg::WorkAvailable);
        }
        Ok(())
    }

    async fn spawn_child(
        &mut self,
        myself: &ActorRef<AccountMsg>,
        kind: ChildKind,
    ) -> Result<(), ActorProcessingErr> {
        let cell = myself.get_cell();
        let spec = self.spec.clone();
        let store = self.store.clone();
        let parent = myself.get_derived();
        // Leases held by a dead instance of this child are forgotten, so its jobs run again.
        self.store
            .mailbox(&mailbox_name(&self.spec.id, kind))
            .release_all();
        let args = ChildArgs {
            spec,
            store,
            parent,
        };
        let id = match kind {
            ChildKind::Ingest => {
                let r = spawn_child_actor(Ingest, args, cell).await?;
                let id = r.get_id();
                self.children.ingest = Some(r);
                id
            }
            ChildKind::Backfill => {
                let r = spawn_child_actor(Backfill, args, cell).await?;
                let id = r.get_id();
                self.children.backfill = Some(r);
                id
            }
            ChildKind::HistorySync => {
                let r = spawn_child_actor(HistorySync, args, cell).await?;
                let id = r.get_id();
                self.children.history = Some(r);
                id
            }
        };
        self.children.by_id.insert(id, kind);
        Ok(())
    }

    fn child_exited(
        &mut self,
        myself: &ActorRef<AccountMsg>,
        cell: ActorCell,
        error: Option<String>,
    ) {
        let Some(kind) = self.children.by_id.remove(&cell.get_id()) else {
            return;
        };
        match kind {
            ChildKind::Ingest => self.children.ingest = None,
            ChildKind::Backfill => self.children.backfill = None,
            ChildKind::HistorySync => self.children.history = None,
        }
        self.degraded.remove(kind.name());
        let error = error.unwrap_or_else(|| "unknown failure".into());
        self.last_error = Some(format!("{}: {error}", kind.name()));
        if let Some(reason) = self.store.disk_full() {
            // Transient: wait for space without spending the restart budget.
            tracing::info!(account = %self.spec.id, child = kind.name(), reason = %reason, "Child stopped on a full disk; it restarts when space returns.");
            self.set_state(AccountState::Degraded, Some(format!("disk full: {reason}")));
            self.phase = Phase::DiskFull;
            let delay = crate::disk_space::wait_delay(self.disk_waits);
            myself.send_after(delay, move || AccountMsg::Respawn(kind));
            return;
        }
        match self.budget.next_delay(Instant::now()) {
            Some(delay) => {
                tracing::warn!(account = %self.spec.id, child = kind.name(), error = %error, delay_ms = delay.as_millis() as u64, restarts = self.budget.restarts(), "Child failed; restarting after backoff.");
                myself.send_after(delay, move || AccountMsg::Respawn(kind));
            }
            None => {
                tracing::error!(account = %self.spec.id, child = kind.name(), error = %error, "Child failed too often; the account is marked failed.");
                self.set_state(
                    AccountState::Failed,
                    Some(format!("{}: {error}", kind.name())),
                );
                self.phase = Phase::Failed;
                self.stopping = true;
                for c in myself.get_children() {
                    c.stop(Some("account failed".into()));
                }
                self.children.ingest = None;
                self.children.backfill = None;
                self.children.history = None;
                self.stopping = false;
            }
        }
    }

    /// Whether a degraded account may respawn `kind` now: with space back it returns to its
    /// previous state; still full, it looks again later.
    fn disk_ready(&mut self, myself: &ActorRef<AccountMsg>, kind: ChildKind) -> bool {
        if !self.store.check_space() {
            self.disk_waits = self.disk_waits.saturating_add(1);
            let delay = crate::disk_space::wait_delay(self.disk_waits);
            myself.send_after(delay, move || AccountMsg::Respawn(kind));
            return false;
        }
        self.disk_waits = 0;
        // The respawned children report the source's real phase (a resumed resync included).
        self.set_state(AccountState::Running, Some("disk space is back".into()));
        self.phase = Phase::Starting;
        true
    }

    fn pause_children(&self) {
        if let Some(c) = &self.children.ingest {
            let _ = c.cast(IngestMsg::Pause);
        }
        if let Some(c) = &self.children.backfill {
            let _ = c.cast(BackfillMsg::Pause);
        }
        if let Some(c) = &self.children.history {
            let _ = c.cast(HistorySyncMsg::Pause);
        }
    }

    fn resume_children(&self) {
        if let Some(c) = &self.children.ingest {
            let _ = c.cast(IngestMsg::Resume);
        }
        if let Some(c) = &self.children.backfill {
            let _ = c.cast(BackfillMsg::Resume);
        }
        if let Some(c) = &self.children.history {
            let _ = c.cast(HistorySyncMsg::Resume);
        }
    }

    async fn command(
        &mut self,
        myself: &ActorRef<AccountMsg>,
        cmd: AccountCommand,
    ) -> Result<(), ActorProcessingErr> {
        tracing::info!(account = %self.spec.id, command = ?cmd, "Admin command.");
        match cmd {
            AccountCommand::Pause => {
                self.pause_children();
                self.set_state(AccountState::Paused, Some("paused by admin".into()));
            }
            AccountCommand::Reconnect => {
                if self.reconnect().await && self.state == AccountState::Disconnected {
                    self.resume_children();
                    self.set_state(AccountState::Running, Some("credentials re-read".into()));
                }
            }
            AccountCommand::Resume => {
                if !self.reconnect().await && self.state == AccountState::Disconnected {
                    // Still no working credentials: stay disconnected, with the new reason.
                    return Ok(());
                }
                if self.state == AccountState::Failed {
                    // A person asked to try again: fresh budget, fresh children.
                    self.budget.reset();
                    self.set_state(AccountState::Running, Some("resumed by admin".into()));
                    for kind in ChildKind::ALL {
                        self.spawn_child(myself, kind).await?;
                    }
                } else {
                    self.resume_children();
                    let next = if self.phase == Phase::Resyncing {
                        AccountState::Resyncing
                    } else {
                        AccountState::Running
                    };
                    self.set_state(next, Some("resumed by admin".into()));
                }
            }
            AccountCommand::SyncNow => {
                if let Some(h) = &self.children.history {
                    let _ = h.cast(HistorySyncMsg::Nudge);
                }
                if let Some(i) = &self.children.ingest {
                    let _ = i.cast(IngestMsg::WorkAvailable);
                }
                // Requeued backfill jobs (`ctl requeue`) run now too.
                if let Some(b) = &self.children.backfill {
                    let _ = b.cast(BackfillMsg::WorkAvailable);
                }
            }
            AccountCommand::Resync => {
                self.request_resync(myself)?;
                self.set_state(AccountState::Resyncing, Some("resync requested".into()));
                self.phase = Phase::Resyncing;
            }
        }
        Ok(())
    }

    /// Re-reads the credentials through the source; a failure is recorded as the last error
    /// (and logged) and returns false.
    async fn reconnect(&mut self) -> bool {
        match self.spec.source.reconnect().await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(account = %self.spec.id, error = %e, "Credentials could not be re-read.");
                self.last_error = Some(e.to_string());
                false
            }
        }
    }

    /// Changes the state and records an `account.state_changed` event (best effort: a failed
    /// write is logged, the state still changes in memory).
    fn set_state(&mut self, state: AccountState, reason: Option<String>) {
        if self.state == state {
            return;
        }
        self.state = state;
        let name = serde_name(state);
        let account = self.spec.id.0.clone();
        let now = now_ms();
        let change = Change::AccountStateChanged {
            state: name.to_string(),
            reason,
        };
        let key = format!("account.state_changed:{account}:{name}:{now}");
        let res = self
            .store
            .transaction(|tx| mirror::emit(tx, &account, key.clone(), &change, now).map(|_| ()));
        // Feed readers only see flushed events; state changes are rare, so flush each one.
        if let Err(e) = res.and_then(|()| self.store.flush()) {
            tracing::warn!(account = %self.spec.id, error = %e, "Could not record a state change event.");
        }
    }
}

/// Spawns one child linked to the account (supervision events reach the AccountActor).
async fn spawn_child_actor<A: Actor>(
    actor: A,
    args: A::Arguments,
    cell: ActorCell,
) -> Result<ActorRef<A::Msg>, ActorProcessingErr> {
    let (r, _) = Actor::spawn_linked(None, actor, args, cell).await?;
    Ok(r)
}

fn serde_name(state: AccountState) -> &'static str {
    match state {
        AccountState::Starting => "starting",
        AccountState::Running => "running",
        AccountState::Paused => "paused",
        AccountState::Resyncing => "resyncing",
        AccountState::Degraded => "degraded",
        AccountState::Disconnected => "disconnected",
        AccountState::Failed => "failed",
        AccountState::Stopped => "stopped",
    }
}
