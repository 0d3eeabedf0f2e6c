//! `ServiceState`: what the daemon remembers for operators beyond the actors' own status —
//! accounts that could not be started (with their error), a short history of each account's
//! errors (`ctl status ACCOUNT`), and the metrics registry. Owned by the daemon core; shared
//! by reference, never global.

use crate::accounts::AccountBuildError;
use crate::config::Config;
use crate::metrics::Metrics;
use mailsync_actors::root::Roster;
use mailsync_actors::spec::AccountSpec;
use mailsync_actors::status::{AccountState, AccountStatus};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// Errors kept per account.
const RECENT_ERRORS: usize = 10;

/// One error an account reported, with when it was first seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecentError {
    /// Milliseconds since the epoch.
    pub at_ms: u64,
    /// The message (secret-free, as in status).
    pub error: String,
}

/// An enabled account the daemon could not start.
#[derive(Clone, Debug, PartialEq, Eq)]
struct StartFailure {
    kind: String,
    error: String,
}

/// The daemon's operator-facing memory.
pub struct ServiceState {
    start_failures: Mutex<BTreeMap<String, StartFailure>>,
    recent: Mutex<BTreeMap<String, VecDeque<RecentError>>>,
    metrics: Arc<Metrics>,
    notifier: crate::service::notify::Notifier,
    metrics_addr: Mutex<Option<std::net::SocketAddr>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Default for ServiceState {
    fn default() -> Self {
        Self::new()
    }
}

impl ServiceState {
    /// An empty state with a fresh metrics registry.
    pub fn new() -> ServiceState {
        ServiceState {
            start_failures: Mutex::new(BTreeMap::new()),
            recent: Mutex::new(BTreeMap::new()),
            metrics: Arc::new(Metrics::new()),
            notifier: crate::service::notify::Notifier::from_env(),
            metrics_addr: Mutex::new(None),
        }
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Where the metrics / status-page listener is bound, once it is.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        *lock(&self.metrics_addr)
    }

    /// Records the listener's bound address.
    pub fn set_metrics_addr(&self, addr: std::net::SocketAddr) {
        *lock(&self.metrics_addr) = Some(addr);
    }

    /// The service manager's notifier.
    pub fn notifier(&self) -> &crate::service::notify::Notifier {
        &self.notifier
    }

    /// Takes the result of building the accounts (at start and on every reload): remembers
    /// the accounts that failed to build and returns the specs (their ports were metered
    /// while they were built, through [`ServiceState::meter`]).
    pub fn adopt(
        &self,
        config: &Config,
        specs: Vec<AccountSpec>,
        errors: &[AccountBuildError],
    ) -> Vec<AccountSpec> {
        let failures = errors
            .iter()
            .map(|e| {
                let id = e.account().to_string();
                let kind = config
                    .account(&id)
                    .map(|a| a.kind.to_string())
                    .unwrap_or_else(|| "unknown".into());
                (
                    id,
                    StartFailure {
                        kind,
                        error: e.to_string(),
                    },
                )
            })
            .collect();
        *lock(&self.start_failures) = failures;
        specs
    }

    /// Wraps an account's port with the metrics decorator (passed to `accounts::build_all`).
    pub fn meter(
        &self,
        account: &str,
        api: Arc<dyn mailsync_actors::ports::GmailApi>,
    ) -> Arc<dyn mailsync_actors::ports::GmailApi> {
        self.metrics.meter(account, api)
    }

    /// Status entries (state `failed`) for the accounts that could not be started.
    pub fn start_failures(&self) -> Vec<AccountStatus> {
        lock(&self.start_failures)
            .iter()
            .map(|(id, f)| AccountStatus {
                last_error: Some(f.error.clone()),
                ..AccountStatus::bare(
                    id.clone(),
                    f.kind.clone(),
                    AccountState::Failed,
                    "not_started",
                )
            })
            .collect()
    }

    /// Records each of `accounts`' `last_error` when it differs from the last one recorded.
    /// Given a new `roster`, also forgets the errors of accounts neither in `accounts` nor in
    /// it (removed); an unchanged roster removed no one, so the monitor passes `None` then.
    pub fn observe_errors(&self, accounts: &[AccountStatus], roster: Option<&Roster>, now_ms: u64) {
        let mut recent = lock(&self.recent);
        if let Some(roster) = roster {
            let known: std::collections::HashSet<&str> = roster
                .iter()
                .map(|h| h.id.as_str())
                .chain(accounts.iter().map(|a| a.account.as_str()))
                .collect();
            recent.retain(|id, _| known.contains(id.as_str()));
        }
        for a in accounts {
            let Some(error) = a.last_error.as_ref().filter(|e| !e.is_empty()) else {
                continue;
            };
            let list = recent.entry(a.account.clone()).or_default();
            if list.back().is_some_and(|last| &last.error == error) {
                continue;
            }
            list.push_back(RecentError {
                at_ms: now_ms,
                error: error.clone(),
            });
            while list.len() > RECENT_ERRORS {
                list.pop_front();
            }
        }
    }

    /// The recent errors of one account, oldest first.
    pub fn recent_errors(&self, account: &str) -> Vec<RecentError> {
        lock(&self.recent)
            .get(account)
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }
}
