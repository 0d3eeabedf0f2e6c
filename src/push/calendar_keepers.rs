//! The running Calendar channel keepers, one per calendar account, and how a config reload
//! changes them: an account that left the config (or was disabled) has its keeper cancelled
//! and its channels stopped (`channels.stop`); an account that joined gets its keeper; a
//! calendar deselected (`calendar_ids`) leaves its keeper's set, which stops its channel. Owned
//! by `spawn_keepers`, which registers it with the daemon core as a `ReloadFollower` (no process
//! globals, and the core names no keeper); the reload path calls [`CalendarKeepers::reload`].

use super::calendar_watch::{ChannelKeeper, KeeperConfig};
use crate::config::{AccountSettings, Config};
use crate::daemon_core::DaemonCore;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Calendars an account's config selects (`calendar_ids`; `None` = all).
type Selection = Arc<Mutex<Option<Vec<String>>>>;

struct Running {
    cancel: CancellationToken,
    keeper: Arc<ChannelKeeper>,
    selection: Selection,
}

struct Keepers {
    core: Weak<DaemonCore>,
    cancel: CancellationToken,
    tasks: TaskTracker,
    running: HashMap<String, Running>,
}

/// The keepers of the running daemon (empty until push with a `calendar_address` starts).
#[derive(Default)]
pub struct CalendarKeepers {
    inner: Mutex<Option<Keepers>>,
}

impl CalendarKeepers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Keepers>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a keeper for every enabled calendar account of `config` (at daemon start).
    pub fn start(
        &self,
        core: &Arc<DaemonCore>,
        config: &Config,
        cancel: CancellationToken,
        tasks: &TaskTracker,
    ) {
        *self.lock() = Some(Keepers {
            core: Arc::downgrade(core),
            cancel,
            tasks: tasks.clone(),
            running: HashMap::new(),
        });
        self.apply(config);
    }

    /// Follows a reloaded config: stops the channels of accounts that are gone, starts
    /// keepers for new ones. Nothing happens when calendar push is not running.
    pub async fn reload(&self, config: &Config) {
        for gone in self.apply(config) {
            tracing::info!(account = %gone.keeper_account(), "Calendar account left the config; stopping its channels.");
            gone.cancel.cancel();
            gone.keeper.stop_all().await;
        }
    }

    /// Starts the missing keepers; returns the ones no longer wanted (already removed).
    fn apply(&self, config: &Config) -> Vec<Running> {
        let mut guard = self.lock();
        let Some(k) = guard.as_mut() else {
            return Vec::new();
        };
        let Some(core) = k.core.upgrade() else {
            return Vec::new();
        };
        let Some(push) = config.push.as_ref().filter(|p| p.listen.is_some()) else {
            return k.running.drain().map(|(_, r)| r).collect();
        };
        let Some(address) = push.calendar_address.clone() else {
            return k.running.drain().map(|(_, r)| r).collect();
        };
        let wanted: Vec<_> = config
            .accounts
            .iter()
            .filter(|a| a.enabled && matches!(a.settings, AccountSettings::Calendar(_)))
            .collect();
        let gone: Vec<String> = k
            .running
            .keys()
            .filter(|id| !wanted.iter().any(|a| &a.id == *id))
            .cloned()
            .collect();
        let out = gone.iter().filter_map(|id| k.running.remove(id)).collect();
        for account in wanted {
            let AccountSettings::Calendar(settings) = &account.settings else {
                continue;
            };
            if let Some(r) = k.running.get(&account.id) {
                // A deselected calendar leaves the keeper's set at its next check, which
                // stops its channel (the store may list it until the calendar list changes).
                *r.selection.lock().unwrap_or_else(|p| p.into_inner()) =
                    settings.calendar_ids.clone();
                continue;
            }
            let selection: Selection = Arc::new(Mutex::new(settings.calendar_ids.clone()));
            let client = match crate::calendar_port::build(account) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(account = %account.id, error = %e, "Calendar channels not started; the account polls.");
                    continue;
                }
            };
            let mut kc = KeeperConfig::new(address.clone());
            kc.ttl = push.calendar_channel_ttl;
            kc.renew_before = push.calendar_renew_before;
            kc.silence = push.silence;
            kc.check_every = (kc.ttl / 10).clamp(Duration::from_secs(1), Duration::from_secs(30));
            kc.poll_every = account.poll_interval.max(Duration::from_secs(1));
            let keeper = ChannelKeeper::new(
                account.id.clone(),
                client,
                super::calendar_channels::ChannelStore::new(core.store().clone()),
                super::calendar::DaemonTarget::new(core.clone()),
                kc,
            );
            let store = core.store().clone();
            let id = account.id.clone();
            let selected = selection.clone();
            let calendars = move || {
                let only = selected.lock().unwrap_or_else(|p| p.into_inner()).clone();
                mailsync_actors::calendar::store::calendars(&store, &id)
                    .map(|cs| {
                        cs.into_iter()
                            .map(|c| c.entry.id)
                            .filter(|c| only.as_ref().is_none_or(|o| o.contains(c)))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let cancel = k.cancel.child_token();
            k.tasks.spawn(keeper.clone().run(calendars, cancel.clone()));
            k.running.insert(
                account.id.clone(),
                Running {
                    cancel,
                    keeper,
                    selection,
                },
            );
        }
        out
    }
}

impl Running {
    fn keeper_account(&self) -> &str {
        self.keeper.account()
    }
}

impl crate::daemon_core::ReloadFollower for CalendarKeepers {
    fn config_reloaded<'a>(
        &'a self,
        config: &'a Config,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(self.reload(config))
    }
}

/// Starts one [`ChannelKeeper`] per enabled calendar account when `[push]` has both a listen
/// address and `calendar_address`. The keeper follows the calendars the account has stored
/// (the sync engine adds and removes them); reloads add and remove keepers through
/// [`CalendarKeepers::reload`].
pub fn spawn_keepers(
    core: Arc<crate::daemon_core::DaemonCore>,
    config: &crate::config::Config,
    cancel: CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) {
    let keepers = Arc::new(CalendarKeepers::default());
    keepers.start(&core, config, cancel, tasks);
    core.follow_reloads(keepers);
}
