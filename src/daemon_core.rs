//! `DaemonCore`: the running daemon's shared core — what the control socket (`admin.rs`), the
//! push endpoints (`push/`), the status page and the service monitor call. It asks the actor
//! tree for status and commands, durably enqueues pushes, reloads the config, restarts the
//! sinks, and owns the push health it reports. `daemon.rs` only assembles it.

use crate::accounts::{self, GmailPortBuilder};
use crate::config::{self, Config};
use crate::push_health::PushHealth;
use mailsync_actors::account::{AccountCommand, AccountMsg};
use mailsync_actors::account_record::AccountRecord;
use mailsync_actors::history_sync;
use mailsync_actors::model::AccountId;
use mailsync_actors::root::{AccountHandle, ReloadSummary, RootMsg, Roster};
use mailsync_actors::status::{AccountState, AccountStatus, DaemonStatus};
use mailsync_actors::store::Store;
use ractor::ActorRef;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What [`DaemonCore::health_of`] heard.
#[derive(Debug)]
pub struct HealthAnswers {
    /// Every account the supervision tree holds (the same `Arc` while it is unchanged).
    pub roster: Roster,
    /// The health views of the accounts asked (and of those down, starting or failed to
    /// start), with delivery filled in.
    pub fresh: Vec<AccountStatus>,
    /// The accounts asked that did not answer in time: (id, why).
    pub silent: Vec<(String, String)>,
}

/// What the main loop is asked to do by the control socket.
#[derive(Debug)]
pub enum DaemonRequest {
    /// Stop gracefully.
    Shutdown,
}

/// An admin action failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No such account.
    #[error("unknown account {0:?}")]
    UnknownAccount(String),
    /// The account is not running (failed to start, restarting).
    #[error("account {0:?} is not running: {1}")]
    NotRunning(String, String),
    /// The actor did not answer in time.
    #[error("the daemon did not answer in time: {0}")]
    Timeout(String),
    /// The new config is invalid; the running one is kept.
    #[error("{0}")]
    Config(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(String),
}

/// What became of a verified push notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    /// A partial-sync job was durably enqueued (flushed); acknowledge the push.
    Enqueued,
    /// The stored cursor already covers this history id; acknowledge, no work.
    AlreadySynced,
    /// No configured gmail account has this address; acknowledge with a warning.
    UnknownAccount,
}

/// The running daemon's shared core: what the control socket talks to.
pub struct DaemonCore {
    root: ActorRef<RootMsg>,
    store: Store,
    config_path: PathBuf,
    config: Mutex<Config>,
    started: Instant,
    gmail: Arc<dyn GmailPortBuilder>,
    requests: mpsc::UnboundedSender<DaemonRequest>,
    /// The running sinks: their own cancel token and tracker, so a reload can restart them.
    sinks: Mutex<(CancellationToken, TaskTracker)>,
    /// The daemon's root token; sink generations are its children.
    cancel: CancellationToken,
    /// Start failures, recent errors, metrics, the systemd notifier (`service`).
    service: Arc<crate::service::state::ServiceState>,
    /// Push health per account, written by the push tasks, read by status.
    push_health: Arc<PushHealth>,
    /// Tasks that follow config reloads (the Calendar channel keepers), registered by the
    /// tasks themselves, so this module names none of them.
    reload_followers: std::sync::Mutex<Vec<Arc<dyn ReloadFollower>>>,
    /// While the daemon starts (credentials resolving, before the tree has its accounts): the
    /// configured accounts as `(id, kind)`, shown `starting`; `None` once they run.
    starting: std::sync::Mutex<Option<Vec<(String, String)>>>,
    /// The accounts' last status answers, shown for those busy past the deadline.
    status_cache: crate::status_cache::StatusCache,
}

/// A task outside the actor tree that must follow a config reload (e.g. start or stop the
/// Calendar channel keepers of added or removed accounts).
pub trait ReloadFollower: Send + Sync {
    /// Called after a valid new config was applied to the accounts and sinks.
    fn config_reloaded<'a>(
        &'a self,
        config: &'a Config,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;
}

/// What [`DaemonCore::new`] assembles.
pub struct CoreParts {
    /// The root supervisor.
    pub root: ActorRef<RootMsg>,
    /// The store.
    pub store: Store,
    /// The config file (reloads read it).
    pub config_path: PathBuf,
    /// The running config.
    pub config: Config,
    /// Builds Gmail ports on reload.
    pub gmail: Arc<dyn GmailPortBuilder>,
    /// The main loop's request channel.
    pub requests: mpsc::UnboundedSender<DaemonRequest>,
    /// The daemon's root token.
    pub cancel: CancellationToken,
    /// The operator-facing state.
    pub service: Arc<crate::service::state::ServiceState>,
}

const RPC_TIMEOUT_MS: u64 = 3_000;

impl DaemonCore {
    /// Assembles the core (push health starts empty; `push::spawn_all` configures it).
    pub fn new(p: CoreParts) -> DaemonCore {
        DaemonCore {
            root: p.root,
            store: p.store,
            config_path: p.config_path,
            config: Mutex::new(p.config),
            started: Instant::now(),
            gmail: p.gmail,
            requests: p.requests,
            sinks: Mutex::new((CancellationToken::new(), TaskTracker::new())),
            cancel: p.cancel,
            service: p.service,
            push_health: Arc::new(PushHealth::default()),
            reload_followers: std::sync::Mutex::new(Vec::new()),
            starting: std::sync::Mutex::new(None),
            status_cache: crate::status_cache::StatusCache::default(),
        }
    }

    /// Marks the daemon as starting with these `(id, kind)` accounts (`Some`), or as started
    /// (`None`): until then status shows them `starting` and reloads are refused.
    pub fn set_starting(&self, accounts: Option<Vec<(String, String)>>) {
        *self.starting.lock().unwrap_or_else(|p| p.into_inner()) = accounts;
        self.status_cache.forget_roster();
    }

    fn starting_accounts(&self) -> Option<Vec<(String, String)>> {
        self.starting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The push health, shared with the accounts' watch duties (`gmail_watch.rs`).
    pub fn push_health_handle(&self) -> Arc<PushHealth> {
        self.push_health.clone()
    }

    /// Push health per account (the push tasks write it; status reads it).
    pub fn push_health(&self) -> &PushHealth {
        &self.push_health
    }

    /// Registers a task that follows config reloads.
    pub fn follow_reloads(&self, follower: Arc<dyn ReloadFollower>) {
        self.reload_followers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(follower);
    }

    /// The store (feed readers use it).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The operator-facing state (`service`).
    pub fn service(&self) -> &crate::service::state::ServiceState {
        &self.service
    }

    /// Asks the accounts `choose` picks (it gets every configured id) for their health view
    /// (`AccountMsg::Health`, answered from memory), each within `timeout`. `Err` when the
    /// root supervisor itself does not answer. Accounts whose actor is down are answered
    /// with a placeholder whatever `choose` says, and the accounts still starting or failed
    /// to start are added, as in [`DaemonCore::status`].
    pub async fn health_of(
        &self,
        timeout: Duration,
        choose: impl FnOnce(&Roster) -> std::collections::HashSet<String>,
    ) -> Result<HealthAnswers, String> {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let roster = ractor::call_t!(self.root, RootMsg::Accounts, ms)
            .map_err(|e| format!("root supervisor: {e}"))?;
        let chosen = choose(&roster);
        let asks = roster
            .iter()
            .filter(|h| h.actor.is_none() || chosen.contains(&h.id))
            .map(|h| async move {
                match &h.actor {
                    Some(a) => ractor::call_t!(a, AccountMsg::Health, ms)
                        .map_err(|e| (h.id.clone(), e.to_string())),
                    None => Ok(placeholder(h, AccountState::Failed, h.down_reason.clone())),
                }
            });
        let mut fresh = Vec::new();
        let mut silent = Vec::new();
        for answer in futures_util::future::join_all(asks).await {
            match answer {
                Ok(s) => fresh.push(s),
                Err(e) => silent.push(e),
            }
        }
        let fresh = self.complete(fresh).await;
        Ok(HealthAnswers {
            roster,
            fresh,
            silent,
        })
    }

    /// Test hook: blocks the root supervisor for `hold`, if `[debug] allow_wedge` is set.
    pub async fn debug_wedge(&self, hold: Duration) -> Result<(), AdminError> {
        if !self.config.lock().await.debug.allow_wedge {
            return Err(AdminError::Config(
                "debug-wedge is disabled (set [debug] allow_wedge = true)".into(),
            ));
        }
        self.root
            .cast(RootMsg::Wedge(hold))
            .map_err(|e| AdminError::Timeout(e.to_string()))
    }

    async fn handles(&self) -> Result<Roster, AdminError> {
        ractor::call_t!(self.root, RootMsg::Accounts, RPC_TIMEOUT_MS)
            .map_err(|e| AdminError::Timeout(e.to_string()))
    }

    /// Status of the daemon and every account. Accounts are asked concurrently; one that has
    /// not answered within [`crate::status_cache::STATUS_DEADLINE`] is shown with its last
    /// answer (marked with its age), one that never answered is waited for up to the RPC
    /// timeout, so busy accounts cannot hold `ctl status` up (`status_cache.rs`).
    pub async fn status(&self) -> Result<DaemonStatus, AdminError> {
        let deadline = tokio::time::Instant::now() + crate::status_cache::STATUS_DEADLINE;
        let handles = self
            .status_cache
            .roster(&self.root, deadline, RPC_TIMEOUT_MS)
            .await
            .map_err(AdminError::Timeout)?;
        self.status_cache
            .retain(&handles.iter().map(|h| h.id.as_str()).collect());
        let cache = &self.status_cache;
        let futures = handles.iter().map(|h| async move {
            match &h.actor {
                Some(actor) => match cache
                    .status_of(&h.id, actor, deadline, RPC_TIMEOUT_MS)
                    .await
                {
                    Ok(s) => s,
                    Err(e) => placeholder(h, AccountState::Running, Some(format!("busy: {e}"))),
                },
                None => placeholder(h, AccountState::Failed, h.down_reason.clone()),
            }
        });
        let accounts = futures_util::future::join_all(futures).await;
        let accounts = self.complete(accounts).await;
        let data_dir = self.config.lock().await.data_dir.display().to_string();
        Ok(DaemonStatus {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            uptime_seconds: self.started.elapsed().as_secs(),
            data_dir,
            accounts,
            degraded: self.store.disk_full().map(|r| format!("disk full: {r}")),
        })
    }

    /// Adds the accounts still starting and those that failed to start to the actors'
    /// answers, sorts them, and fills in what the daemon knows beside the actors (delivery,
    /// the calendars' lines).
    async fn complete(&self, mut accounts: Vec<AccountStatus>) -> Vec<AccountStatus> {
        let answered: std::collections::HashSet<String> =
            accounts.iter().map(|a| a.account.clone()).collect();
        for (id, kind) in self.starting_accounts().unwrap_or_default() {
            if !answered.contains(&id) {
                let h = AccountHandle {
                    id,
                    kind,
                    actor: None,
                    down_reason: None,
                };
                let mut s = placeholder(&h, AccountState::Starting, None);
                s.phase = "resolving_credentials".into();
                accounts.push(s);
            }
        }
        accounts.extend(self.service.start_failures());
        accounts.sort_by(|a, b| a.account.cmp(&b.account));
        let now = crate::push_health::now_ms();
        let push = self.config.lock().await.push.clone();
        for a in &mut accounts {
            a.delivery = Some(self.push_health.delivery(&a.account, now).to_string());
            if a.kind == "calendar" {
                crate::calendar_status::fill_status(&self.store, a, push.as_ref(), now);
            }
        }
        accounts
    }

    /// Ids and kinds of the configured accounts.
    pub async fn accounts(&self) -> Result<Vec<(String, String)>, AdminError> {
        Ok(self
            .handles()
            .await?
            .iter()
            .map(|h| (h.id.clone(), h.kind.clone()))
            .collect())
    }

    /// Sends an admin command to one account.
    pub async fn command(&self, account: &str, cmd: AccountCommand) -> Result<(), AdminError> {
        let handles = self.handles().await?;
        let h = handles
            .iter()
            .find(|h| h.id == account)
            .ok_or_else(|| AdminError::UnknownAccount(account.to_string()))?;
        let actor = h.actor.as_ref().ok_or_else(|| {
            AdminError::NotRunning(
                account.to_string(),
                h.down_reason.clone().unwrap_or_else(|| "restarting".into()),
            )
        })?;
        actor
            .cast(AccountMsg::Command(cmd))
            .map_err(|e| AdminError::NotRunning(account.to_string(), e.to_string()))?;
        // After the cast: a status question asked from now on is queued behind the command.
        self.status_cache.forget(account);
        Ok(())
    }

    /// Wakes an account's partial sync (a push said there is news).
    pub async fn nudge(&self, account: &str) -> Result<(), AdminError> {
        self.command(account, AccountCommand::SyncNow).await
    }

    /// Re-reads the config file and applies the account changes. An invalid file is rejected
    /// and the running config kept.
    pub async fn reload(&self) -> Result<ReloadSummary, AdminError> {
        let notifier = self.service.notifier();
        notifier.reloading();
        let result = self.reload_config().await;
        self.status_cache.forget_roster();
        // The accounts summary (`service::status_json::summary_line`, computed here from the
        // pure health rules so this module does not depend on the status JSON, which
        // depends on it).
        let line = match self.status().await {
            Ok(s) => {
                let healths: Vec<_> = s
                    .accounts
                    .iter()
                    .map(crate::service::health::account_health)
                    .collect();
                crate::service::health::summary(&healths)
            }
            Err(e) => format!("no status: {e}"),
        };
        notifier.ready(&line);
        result
    }

    async fn reload_config(&self) -> Result<ReloadSummary, AdminError> {
        if self.starting_accounts().is_some() {
            return Err(AdminError::NotRunning(
                "daemon".into(),
                "still starting (resolving credentials); reload again once it runs".into(),
            ));
        }
        let new = match config::load(&self.config_path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(file = %self.config_path.display(), error = %e, "Reload rejected; keeping the running configuration.");
                return Err(AdminError::Config(e.to_string()));
            }
        };
        let service = self.service.clone();
        // The accounts' watch duties write the push health of the new accounts at once.
        self.push_health.configure(&new);
        let (store, health) = (self.store.clone(), self.push_health.clone());
        let (specs, errors) = accounts::build_all(
            &new,
            self.gmail.as_ref(),
            &|id, api| service.meter(id, api),
            &|account, api| {
                crate::gmail_watch::GmailWatch::for_account(&store, &health, account, api)
            },
        );
        for e in &errors {
            tracing::error!(error = %e, "Account not started.");
        }
        let specs = self.service.adopt(&new, specs, &errors);
        let ids: Vec<String> = specs.iter().map(|s| s.id.0.clone()).collect();
        let summary = ractor::call_t!(self.root, RootMsg::Reconcile, 60_000, specs)
            .map_err(|e| AdminError::Timeout(e.to_string()))?;
        // Accounts that kept running re-read their credentials (a disconnected one resumes).
        for id in ids
            .iter()
            .filter(|id| !summary.added.contains(id) && !summary.restarted.contains(id))
        {
            let _ = self.command(id, AccountCommand::Reconnect).await;
        }
        // Sinks restart with the new config (webhooks and Maildir settings may have changed).
        self.stop_sinks().await;
        self.start_sinks(&new).await;
        let followers = self
            .reload_followers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for f in followers {
            f.config_reloaded(&new).await;
        }
        *self.config.lock().await = new;
        Ok(summary)
    }

    /// The running config (after reloads).
    pub async fn config_snapshot(&self) -> Config {
        self.config.lock().await.clone()
    }

    /// A verified Gmail notification: maps the address to its account, compares with the
    /// stored cursor, durably enqueues a partial-sync job keyed per account and history id
    /// (flushed), then nudges the account. Only after `Ok` may the caller acknowledge the push.
    pub async fn gmail_push(
        &self,
        email: &str,
        history_id: u64,
    ) -> Result<PushOutcome, AdminError> {
        let account = {
            let cfg = self.config.lock().await;
            cfg.accounts.iter().find_map(|a| match &a.settings {
                config::AccountSettings::Gmail(g) if g.email.eq_ignore_ascii_case(email) => {
                    Some(a.id.clone())
                }
                _ => None,
            })
        };
        let Some(account) = account else {
            return Ok(PushOutcome::UnknownAccount);
        };
        let rec = AccountRecord::load(&self.store, &account)
            .map_err(|e| AdminError::Store(e.to_string()))?;
        if rec.history_id.is_some_and(|h| h.0 >= history_id) && rec.history_round.is_none() {
            return Ok(PushOutcome::AlreadySynced);
        }
        let id = AccountId(account.clone());
        history_sync::enqueue_push(&self.store, &id, history_id)
            .map_err(|e| AdminError::Store(e.to_string()))?;
        // Durable before the push is acknowledged: Pub/Sub redelivers anything we do not ack.
        self.store
            .flush_async()
            .await
            .map_err(|e| AdminError::Store(e.to_string()))?;
        if let Err(e) = self.nudge(&account).await {
            tracing::debug!(account = %account, error = %e, "Push enqueued; the account will pick it up when it runs.");
        }
        Ok(PushOutcome::Enqueued)
    }

    /// Sink states (name, cursor, lag, dead letters) for `ctl status`.
    pub async fn sinks_json(&self) -> serde_json::Value {
        let cfg = self.config.lock().await;
        serde_json::to_value(crate::sink::sink_status(&self.store, &cfg))
            .unwrap_or(serde_json::Value::Null)
    }

    /// Starts the sinks of `config` as a new generation.
    pub(crate) async fn start_sinks(&self, config: &Config) {
        let token = self.cancel.child_token();
        let tracker = TaskTracker::new();
        crate::sink::spawn_all(&self.store, config, token.clone(), &tracker);
        *self.sinks.lock().await = (token, tracker);
    }

    /// Stops the running sinks and waits for them (their cursors are in sled, so a stop at
    /// any point is safe; a batch in flight is redelivered).
    pub(crate) async fn stop_sinks(&self) {
        let (token, tracker) = self.sinks.lock().await.clone();
        token.cancel();
        tracker.close();
        if tokio::time::timeout(Duration::from_secs(10), tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("Sinks did not stop within 10 s.");
        }
    }

    /// Asks the main loop to shut down.
    pub fn shutdown(&self) {
        let _ = self.requests.send(DaemonRequest::Shutdown);
    }
}

fn placeholder(h: &AccountHandle, state: AccountState, error: Option<String>) -> AccountStatus {
    AccountStatus {
        last_error: error,
        ..AccountStatus::bare(h.id.clone(), h.kind.clone(), state, "unknown")
    }
}
