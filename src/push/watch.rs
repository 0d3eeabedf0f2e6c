//! Ends Gmail watches the account trees no longer keep: `users.stop` when an account (or its
//! `push_topic`) is removed from the config and reloaded, and on shutdown with
//! `stop_watch_on_shutdown`. Registering and renewing is a duty of each account's tree
//! (`gmail_watch.rs`, through the account's own port and quota gate). A removed account's tree
//! is gone, so its `users.stop` goes through a client built for that one call from the
//! credentials it had. `supervise` follows reloads by comparing the running config every
//! `RECONCILE_EVERY` (a mutex and a clone: no busy polling), and keeps the push health
//! configured.

use crate::config::{AccountSettings, Config, GmailPush};
use crate::daemon_core::DaemonCore;
pub use crate::gmail_watch::{
    RENEW_EVERY, RENEW_MARGIN, RETRY_BASE, RETRY_CAP, StoredWatch, clear, load, renew_delay,
    retry_delay, save,
};
use mailsync_actors::ports::GmailApi;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often `supervise` compares the running config with the watches it knows.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(5);

/// A one-call client for `users.stop` of an account whose tree is gone (removed from the
/// config): its own quota gate, since the account's gate went with its tree.
fn stop_port(config: &Config, account: &str) -> Result<Arc<dyn GmailApi>, String> {
    let a = config
        .account(account)
        .ok_or_else(|| format!("account {account} is not configured"))?;
    crate::gmail_port::builder().build(config, a)
}

/// The push settings of every enabled Gmail account that has them.
fn watched(config: &Config) -> HashMap<String, GmailPush> {
    config
        .accounts
        .iter()
        .filter(|a| a.enabled)
        .filter_map(|a| match &a.settings {
            AccountSettings::Gmail(g) => g.push.clone().map(|p| (a.id.clone(), p)),
            _ => None,
        })
        .collect()
}

/// Follows reloads: an account whose watch is no longer wanted (removed, disabled, push
/// turned off) gets `users.stop` with the credentials it had and its stored watch cleared;
/// on shutdown with `stop_watch_on_shutdown` every watch is stopped.
pub async fn supervise(
    core: Arc<DaemonCore>,
    mut config: Config,
    cancel: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        core.push_health().configure(&config);
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(RECONCILE_EVERY) => {}
        }
        let next = core.config_snapshot().await;
        let want = watched(&next);
        for id in watched(&config)
            .into_keys()
            .filter(|id| !want.contains_key(id))
        {
            let core = core.clone();
            let old = config.clone();
            tasks.spawn(async move { stop(&core, &old, &id).await });
        }
        config = next;
    }
    let stop_all = config
        .push
        .as_ref()
        .is_some_and(|p| p.stop_watch_on_shutdown);
    if stop_all {
        let ids: Vec<String> = watched(&config).into_keys().collect();
        let stops = ids.iter().map(|id| stop(&core, &config, id));
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            futures_util::future::join_all(stops),
        )
        .await;
    }
}

/// `users.stop` for an account whose watch is no longer wanted, then forget its watch.
async fn stop(core: &DaemonCore, config: &Config, account: &str) {
    match stop_port(config, account) {
        Ok(api) => match api.stop_watch().await {
            Ok(()) => tracing::info!(account, "Gmail watch stopped."),
            Err(e) => {
                tracing::warn!(account, error = %e, "users.stop failed; the watch will expire on its own.")
            }
        },
        Err(e) => tracing::warn!(account, error = %e, "Cannot stop the Gmail watch."),
    }
    clear(core.store(), account).await;
    core.push_health().watch_cleared(account, None);
}
