//! The Gmail push watch of one account, as a duty of its tree: `users.watch` through the
//! account's own Gmail port (so the 100-unit calls are paced by the account's `QuotaGate` and
//! metered with it), registered at account start (or a stored watch adopted while it is good
//! for more than `RENEW_MARGIN`), renewed daily and whenever less than `RENEW_MARGIN`
//! remains; a failure clears the stored watch, shows in the account's status (through
//! `mailsync_actors::push_watch`) and is retried with exponential backoff (1 s → 10 min, full
//! jitter) while polling covers the account.
//!
//! Owns the stored watch state: `Space::Cursors`, key `<account>\0watch`, a versioned
//! `StoredWatch`, and writes the push health (`push_health.rs`) that status reads.

use crate::config::{AccountConfig, AccountSettings, GmailPush};
use crate::push_health::{PushHealth, now_ms};
use mailsync_actors::backoff::{Jitter, RetryPolicy};
use mailsync_actors::model::LabelId;
use mailsync_actors::ports::GmailApi;
use mailsync_actors::push_watch::{PushWatch, WatchFuture};
use mailsync_actors::store::{Space, Store};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

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
pub(crate) fn adoptable(w: &StoredWatch, push: &GmailPush, now_ms: i64) -> bool {
    let margin = i64::try_from(RENEW_MARGIN.as_millis()).unwrap_or(i64::MAX);
    w.topic == push.topic
        && w.label_ids == push.label_ids
        && w.expiration_ms.saturating_sub(now_ms) > margin
}

/// Backoff of the `attempt`-th consecutive failure (1-based): doubling from `RETRY_BASE` to
/// `RETRY_CAP`, half jitter.
pub fn retry_delay(attempt: u32) -> Duration {
    RetryPolicy::unlimited(RETRY_BASE, RETRY_CAP, Jitter::Half).delay(attempt, &mut rand::rng())
}

/// One Gmail account's watch, kept by its AccountActor.
pub struct GmailWatch {
    account: String,
    push: GmailPush,
    labels: Vec<LabelId>,
    /// The account's port: the same client, quota gate and meter as its sync.
    api: Arc<dyn GmailApi>,
    store: Store,
    health: Arc<PushHealth>,
}

impl GmailWatch {
    /// The watch duty of `account` over its port `api`, when it has `push_topic`.
    pub fn for_account(
        store: &Store,
        health: &Arc<PushHealth>,
        account: &AccountConfig,
        api: &Arc<dyn GmailApi>,
    ) -> Option<Arc<dyn PushWatch>> {
        let AccountSettings::Gmail(g) = &account.settings else {
            return None;
        };
        let push = g.push.clone()?;
        Some(Arc::new(GmailWatch {
            account: account.id.clone(),
            labels: push.label_ids.iter().cloned().map(LabelId).collect(),
            push,
            api: api.clone(),
            store: store.clone(),
            health: health.clone(),
        }))
    }

    async fn register(&self) -> Result<Duration, String> {
        let now = now_ms();
        match self.api.watch(&self.push.topic, &self.labels).await {
            Ok(r) => {
                let w = StoredWatch {
                    topic: self.push.topic.clone(),
                    label_ids: self.push.label_ids.clone(),
                    expiration_ms: r.expiration_ms,
                    history_id: r.history_id.0,
                    renewed_at_ms: now,
                };
                if let Err(e) = save(&self.store, &self.account, &w).await {
                    tracing::warn!(account = %self.account, error = %e, "Cannot store the Gmail watch.");
                }
                self.health
                    .watch_registered(&self.account, r.expiration_ms, now);
                let next = renew_delay(r.expiration_ms, now_ms());
                tracing::info!(
                    account = %self.account,
                    topic = %self.push.topic,
                    expiration_ms = r.expiration_ms,
                    history_id = r.history_id.0,
                    renew_in_ms = u64::try_from(next.as_millis()).unwrap_or(u64::MAX),
                    "Gmail watch registered."
                );
                Ok(next)
            }
            Err(e) => {
                clear(&self.store, &self.account).await;
                self.health
                    .watch_cleared(&self.account, Some(e.to_string()));
                tracing::warn!(
                    account = %self.account,
                    topic = %self.push.topic,
                    error = %e,
                    "Gmail watch registration failed; polling until it works."
                );
                Err(e.to_string())
            }
        }
    }
}

impl PushWatch for GmailWatch {
    fn first_delay(&self) -> Duration {
        match load(&self.store, &self.account) {
            Some(w) if adoptable(&w, &self.push, now_ms()) => {
                tracing::info!(account = %self.account, expiration_ms = w.expiration_ms, "Adopting the stored Gmail watch.");
                self.health
                    .watch_registered(&self.account, w.expiration_ms, now_ms());
                renew_delay(w.expiration_ms, now_ms())
            }
            _ => Duration::ZERO,
        }
    }

    fn renew(&self) -> WatchFuture<'_, Result<Duration, String>> {
        Box::pin(self.register())
    }

    fn retry_delay(&self, failures: u32) -> Duration {
        retry_delay(failures)
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
