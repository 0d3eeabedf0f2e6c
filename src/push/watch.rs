//! The `users.watch` lifecycle of every Gmail account with `push_topic`: register at account
//! start (or adopt a stored watch that is still good for more than `RENEW_MARGIN`), renew daily
//! and whenever less than `RENEW_MARGIN` remains, `users.stop` when the account is removed from
//! the config (or on shutdown with `stop_watch_on_shutdown`). A failed registration or renewal
//! clears the stored watch and retries with exponential backoff (1 s → 10 min, full jitter);
//! polling covers the account meanwhile.
//!
//! Owns the stored watch state: `Space::Cursors`, key `<account>\0watch`, a versioned
//! `StoredWatch`. `supervise` follows reloads by comparing the running config every
//! `RECONCILE_EVERY` (a mutex and a clone: no busy polling).

use super::now_ms;
use crate::config::{AccountSettings, Config, GmailPush};
use crate::daemon_core::DaemonCore;
use mailsync_actors::backoff::{Jitter, RetryPolicy};
use mailsync_actors::model::LabelId;
use mailsync_actors::ports::GmailApi;
use mailsync_actors::store::{Space, Store};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Renew whenever less than this remains (and at least daily).
pub const RENEW_MARGIN: Duration = Duration::from_secs(24 * 3600);
/// Renew at least this often (Google recommends daily).
pub const RENEW_EVERY: Duration = Duration::from_secs(24 * 3600);
/// How often `supervise` compares the running config with the keepers it runs.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(5);
/// Backoff of failed registrations.
pub const RETRY_BASE: Duration = Duration::from_secs(1);
/// Largest backoff of failed registrations.
pub const RETRY_CAP: Duration = Duration::from_secs(600);

/// A registered watch as stored in sled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredWatch {
    /// The topic it publishes to.
    pub topic: String,
    /// Its label filter.
    pub label_ids: Vec<String>,
    /// When Google stops notifying, ms since the epoch.
    pub expiration_ms: i64,
    /// The history id `users.watch` answered.
    pub history_id: u64,
    /// When it was registered or last renewed.
    pub renewed_at_ms: i64,
}

/// Schema-1 shape of a stored watch, frozen (bincode is positional).
#[derive(Deserialize)]
struct StoredWatchV1 {
    topic: String,
    label_ids: Vec<String>,
    expiration_ms: i64,
    history_id: u64,
    renewed_at_ms: i64,
}

impl mailsync_actors::codec::Versioned for StoredWatch {
    const NAME: &'static str = "gmail watch";
    const VERSION: u16 = 1;
    fn from_legacy(body: &[u8]) -> Result<Self, mailsync_actors::codec::CodecError> {
        let w: StoredWatchV1 = mailsync_actors::codec::legacy_bincode::<Self, _>(body)?;
        Ok(StoredWatch {
            topic: w.topic,
            label_ids: w.label_ids,
            expiration_ms: w.expiration_ms,
            history_id: w.history_id,
            renewed_at_ms: w.renewed_at_ms,
        })
    }
}

fn key(account: &str) -> Vec<u8> {
    let mut k = account.as_bytes().to_vec();
    k.extend_from_slice(b"\0watch");
    k
}

/// The stored watch of an account, if any (an unreadable value counts as none).
pub fn load(store: &Store, account: &str) -> Option<StoredWatch> {
    let bytes = store.kv(Space::Cursors).get(key(account)).ok()??;
    mailsync_actors::store::decode(&bytes).ok()
}

/// Stores (and flushes) the watch of an account.
pub async fn save(store: &Store, account: &str, w: &StoredWatch) -> Result<(), String> {
    let bytes = mailsync_actors::store::try_encode(w).map_err(|e| e.to_string())?;
    store
        .kv(Space::Cursors)
        .insert(key(account), bytes)
        .map_err(|e| e.to_string())?;
    store.flush_async().await.map_err(|e| e.to_string())
}

/// Forgets the watch of an account.
pub async fn clear(store: &Store, account: &str) {
    if let Err(e) = store.kv(Space::Cursors).remove(key(account)) {
        tracing::warn!(account, error = %e, "Cannot clear the stored watch.");
    }
    let _ = store.flush_async().await;
}

/// When to renew a watch that expires at `expiration_ms`, seen at `now_ms`: daily, or as soon
/// as less than `RENEW_MARGIN` remains. A watch shorter than the margin (a test emulator's) is
/// renewed at half its remaining life, never sooner than 1 s.
pub fn renew_delay(expiration_ms: i64, now_ms: i64) -> Duration {
    let remaining = expiration_ms.saturating_sub(now_ms).max(0);
    let remaining = Duration::from_millis(u64::try_from(remaining).unwrap_or(0));
    let delay = if remaining > RENEW_MARGIN {
        (remaining - RENEW_MARGIN).min(RENEW_EVERY)
    } else {
        remaining / 2
    };
    delay.max(Duration::from_secs(1))
}

/// Whether a stored watch can be adopted instead of calling `users.watch` again.
fn adoptable(w: &StoredWatch, push: &GmailPush, now_ms: i64) -> bool {
    let margin = i64::try_from(RENEW_MARGIN.as_millis()).unwrap_or(i64::MAX);
    w.topic == push.topic
        && w.label_ids == push.label_ids
        && w.expiration_ms.saturating_sub(now_ms) > margin
}

/// Full-jitter backoff of the `attempt`-th consecutive failure (1-based).
pub fn retry_delay(attempt: u32) -> Duration {
    RetryPolicy::unlimited(RETRY_BASE, RETRY_CAP, Jitter::Half).delay(attempt, &mut rand::rng())
}

/// Builds the Gmail port a keeper uses (the same REST client the account's actors use, with
/// its own quota gate; one watch a day costs 100 units).
fn port(config: &Config, account: &str) -> Result<Arc<dyn GmailApi>, String> {
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

struct Keeper {
    push: GmailPush,
    fingerprint: String,
    cancel: CancellationToken,
}

/// Runs one keeper per watched account and follows reloads: new accounts get a keeper,
/// removed ones are stopped (`users.stop`, state cleared), changed ones restart.
pub async fn supervise(
    core: Arc<DaemonCore>,
    mut config: Config,
    cancel: CancellationToken,
    tasks: TaskTracker,
) {
    let mut keepers: HashMap<String, Keeper> = HashMap::new();
    loop {
        let want = watched(&config);
        let stale: Vec<String> = keepers
            .iter()
            .filter(|(id, k)| {
                want.get(*id).is_none_or(|p| {
                    *p != k.push || account_fingerprint(&config, id) != k.fingerprint
                })
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            if let Some(k) = keepers.remove(&id) {
                k.cancel.cancel();
                if !want.contains_key(&id) {
                    // Removed (or push turned off): end the notifications.
                    let core = core.clone();
                    let old = config.clone();
                    tasks.spawn(async move { stop(&core, &old, &id).await });
                }
            }
        }
        core.push_health().configure(&config);
        for (id, push) in want {
            if keepers.contains_key(&id) {
                continue;
            }
            let token = cancel.child_token();
            keepers.insert(
                id.clone(),
                Keeper {
                    push: push.clone(),
                    fingerprint: account_fingerprint(&config, &id),
                    cancel: token.clone(),
                },
            );
            tasks.spawn(keep(core.clone(), config.clone(), id, push, token));
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(RECONCILE_EVERY) => {}
        }
        let next = core.config_snapshot().await;
        // Accounts that disappear in a reload must be stopped with the credentials they had.
        let removed: Vec<String> = keepers
            .keys()
            .filter(|id| !watched(&next).contains_key(*id))
            .cloned()
            .collect();
        if removed.is_empty() {
            config = next;
        } else {
            for id in removed {
                if let Some(k) = keepers.remove(&id) {
                    k.cancel.cancel();
                    let core = core.clone();
                    let old = config.clone();
                    tasks.spawn(async move { stop(&core, &old, &id).await });
                }
            }
            config = next;
        }
    }
    let stop_all = config
        .push
        .as_ref()
        .is_some_and(|p| p.stop_watch_on_shutdown);
    if stop_all {
        let stops = keepers.keys().map(|id| stop(&core, &config, id));
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            futures_util::future::join_all(stops),
        )
        .await;
    }
}

fn account_fingerprint(config: &Config, id: &str) -> String {
    config
        .account(id)
        .map(|a| format!("{a:?}"))
        .unwrap_or_default()
}

/// `users.stop` for a removed account, then forget its watch.
async fn stop(core: &DaemonCore, config: &Config, account: &str) {
    match port(config, account) {
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

/// Keeps one account's watch alive until `cancel`.
async fn keep(
    core: Arc<DaemonCore>,
    config: Config,
    account: String,
    push: GmailPush,
    cancel: CancellationToken,
) {
    let api = match port(&config, &account) {
        Ok(api) => api,
        Err(e) => {
            tracing::error!(account = %account, error = %e, "No Gmail watch: cannot build the client; polling only.");
            core.push_health().watch_cleared(&account, Some(e));
            return;
        }
    };
    let store = core.store().clone();
    let labels: Vec<LabelId> = push.label_ids.iter().cloned().map(LabelId).collect();
    let mut failures: u32 = 0;
    let mut next = match load(&store, &account) {
        Some(w) if adoptable(&w, &push, now_ms()) => {
            tracing::info!(account = %account, expiration_ms = w.expiration_ms, "Adopting the stored Gmail watch.");
            core.push_health()
                .watch_registered(&account, w.expiration_ms, now_ms());
            renew_delay(w.expiration_ms, now_ms())
        }
        _ => Duration::ZERO,
    };
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(next) => {}
        }
        let now = now_ms();
        match api.watch(&push.topic, &labels).await {
            Ok(r) => {
                failures = 0;
                let w = StoredWatch {
                    topic: push.topic.clone(),
                    label_ids: push.label_ids.clone(),
                    expiration_ms: r.expiration_ms,
                    history_id: r.history_id.0,
                    renewed_at_ms: now,
                };
                if let Err(e) = save(&store, &account, &w).await {
                    tracing::warn!(account = %account, error = %e, "Cannot store the Gmail watch.");
                }
                core.push_health()
                    .watch_registered(&account, r.expiration_ms, now);
                next = renew_delay(r.expiration_ms, now_ms());
                tracing::info!(
                    account = %account,
                    topic = %push.topic,
                    expiration_ms = r.expiration_ms,
                    history_id = r.history_id.0,
                    renew_in_ms = u64::try_from(next.as_millis()).unwrap_or(u64::MAX),
                    "Gmail watch registered."
                );
            }
            Err(e) => {
                failures += 1;
                clear(&store, &account).await;
                core.push_health()
                    .watch_cleared(&account, Some(e.to_string()));
                next = retry_delay(failures);
                tracing::warn!(
                    account = %account,
                    topic = %push.topic,
                    attempt = failures,
                    retry_in_ms = u64::try_from(next.as_millis()).unwrap_or(u64::MAX),
                    error = %e,
                    "Gmail watch registration failed; polling until it works."
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schema_1_watch_reads_back() {
        let w = StoredWatch {
            topic: "projects/p/topics/t".into(),
            label_ids: vec!["INBOX".into()],
            expiration_ms: 5,
            history_id: 6,
            renewed_at_ms: 7,
        };
        // Schema 1: version byte 1, then bincode of the (then identical) shape.
        let mut legacy = vec![mailsync_actors::codec::FORMAT_LEGACY];
        bincode::serde::encode_into_std_write(&w, &mut legacy, bincode::config::standard())
            .unwrap();
        assert_eq!(
            mailsync_actors::store::decode::<StoredWatch>(&legacy).unwrap(),
            w
        );
    }

    const DAY_MS: i64 = 24 * 3600 * 1000;

    #[test]
    fn a_seven_day_watch_is_renewed_daily() {
        assert_eq!(renew_delay(7 * DAY_MS, 0), RENEW_EVERY);
    }

    #[test]
    fn a_watch_close_to_the_margin_is_renewed_when_the_margin_is_reached() {
        assert_eq!(
            renew_delay(DAY_MS + 3_600_000, 0),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn a_short_watch_is_renewed_at_half_life_and_never_in_a_tight_loop() {
        assert_eq!(renew_delay(10_000, 0), Duration::from_secs(5));
        assert_eq!(renew_delay(100, 0), Duration::from_secs(1));
        assert_eq!(renew_delay(-5, 0), Duration::from_secs(1));
    }

    #[test]
    fn retry_backoff_grows_and_is_capped() {
        assert!(retry_delay(1) <= RETRY_BASE);
        assert!(retry_delay(30) <= RETRY_CAP);
        assert!(retry_delay(30) >= RETRY_CAP / 2);
    }

    #[test]
    fn only_a_matching_long_lived_watch_is_adopted() {
        let push = GmailPush {
            topic: "projects/p/topics/t".into(),
            label_ids: vec![],
        };
        let w = StoredWatch {
            topic: push.topic.clone(),
            label_ids: vec![],
            expiration_ms: 3 * DAY_MS,
            history_id: 1,
            renewed_at_ms: 0,
        };
        assert!(adoptable(&w, &push, 0));
        assert!(!adoptable(&w, &push, 2 * DAY_MS + 1));
        let other = GmailPush {
            topic: "projects/p/topics/u".into(),
            label_ids: vec![],
        };
        assert!(!adoptable(&w, &other, 0));
    }
}
