//! Webhook sinks are keyed by their configured `name` (`webhook:<name>`); releases before
//! names existed keyed them by position (`webhook:<index>`), so inserting an entry handed the
//! old cursor to the new one. This module owns the one-time migration of those position keys
//! and the forgetting of cursors whose webhook left the file.
//!
//! Migration, on the first start with names (no [`WebhookNamesMigrated`] record yet): the
//! cursor of `webhook:<i>`, its dead letters and its last error move to the name that
//! `webhooks[i]` has in the config of that start; position keys with no entry are dropped
//! (their dead letters stay where they are). Every step is idempotent (register keeps an
//! existing cursor, dead letters are copied before their old key is removed, the old cursor
//! goes last), so a crash halfway redoes the rest at the next start; only then is the record
//! written and flushed, and position keys are never interpreted again.

use mailsync_actors::store::{Space, Store, StoreError, encode};
use serde::{Deserialize, Serialize};

use super::{WEBHOOK_SINK_PREFIX, deadletter_key, deadletter_prefix, webhook_sink_name};
use crate::config::Config;

/// The `Space::Sinks` key of the migration record.
const MIGRATED_KEY: &[u8] = b"migrated/webhook-names";

/// Written once the position keys were moved to names: what went where.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookNamesMigrated {
    /// `(position, name)` for every position key that was moved.
    pub moved: Vec<(u64, String)>,
    /// When, ms since the epoch.
    pub at_ms: u64,
}

impl mailsync_actors::codec::Versioned for WebhookNamesMigrated {
    const NAME: &'static str = "webhook names migration";
    const VERSION: u16 = 1;
    fn from_legacy(_body: &[u8]) -> Result<Self, mailsync_actors::codec::CodecError> {
        // Schema 1 had no names, so it never wrote this record.
        Err(mailsync_actors::codec::CodecError::malformed::<Self>(
            "no schema-1 form",
        ))
    }
}

/// The position of a pre-name consumer (`webhook:<digits>`).
fn position(consumer: &str) -> Option<usize> {
    let rest = consumer.strip_prefix(WEBHOOK_SINK_PREFIX)?;
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok()
}

/// Whether the migration already ran in this store.
pub fn migrated(store: &Store) -> bool {
    matches!(store.kv(Space::Sinks).get(MIGRATED_KEY), Ok(Some(_)))
}

/// Moves position-keyed webhook state to names (once per store); logs and leaves the rest
/// for the next start on a store error.
pub fn migrate_position_keys(store: &Store, config: &Config) {
    if migrated(store) {
        return;
    }
    match migrate(store, config) {
        Ok(moved) => {
            for (i, name) in &moved {
                tracing::info!(position = i, webhook = %name, "Webhook cursor and dead letters now kept under its name.");
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "Cannot migrate webhook cursors to names; retrying at the next start.");
        }
    }
}

fn sled(context: &'static str) -> impl Fn(sled::Error) -> StoreError {
    move |source| StoreError::Sled { context, source }
}

fn migrate(store: &Store, config: &Config) -> Result<Vec<(u64, String)>, StoreError> {
    let feed = store.feed();
    let sinks = store.kv(Space::Sinks);
    let mut moved = Vec::new();
    for (consumer, cursor) in feed.consumers()? {
        let Some(i) = position(&consumer) else {
            continue;
        };
        if let Some(hook) = config.webhooks.get(i) {
            let to = webhook_sink_name(&hook.name);
            feed.register_consumer(&to, cursor)?;
            move_dead_letters(store, &consumer, &to)?;
            if let Some(err) = sinks
                .remove(format!("error/{consumer}").as_bytes())
                .map_err(sled("moving a webhook's last error"))?
            {
                sinks
                    .insert(format!("error/{to}").as_bytes(), err)
                    .map_err(sled("moving a webhook's last error"))?;
            }
            store.flush()?;
            moved.push((i as u64, hook.name.clone()));
        }
        feed.unregister_consumer(&consumer)?;
    }
    let record = WebhookNamesMigrated {
        moved: moved.clone(),
        at_ms: super::now_ms(),
    };
    sinks
        .insert(MIGRATED_KEY, encode(&record))
        .map_err(sled("recording the webhook names migration"))?;
    store.flush()?;
    Ok(moved)
}

/// Copies every dead letter of `from` to `to` (same first seq), then removes the old keys.
fn move_dead_letters(store: &Store, from: &str, to: &str) -> Result<(), StoreError> {
    let sinks = store.kv(Space::Sinks);
    let prefix = deadletter_prefix(from);
    let mut old = Vec::new();
    for item in sinks.scan_prefix(&prefix) {
        let (k, v) = item.map_err(sled("reading dead letters"))?;
        let Some(seq) = k
            .get(prefix.len()..)
            .and_then(|s| <[u8; 8]>::try_from(s).ok())
            .map(u64::from_be_bytes)
        else {
            continue;
        };
        sinks
            .insert(deadletter_key(to, seq), v)
            .map_err(sled("moving a dead letter"))?;
        old.push(k);
    }
    store.flush()?;
    for k in old {
        sinks.remove(k).map_err(sled("moving a dead letter"))?;
    }
    Ok(())
}

/// Unregisters `webhook:<name>` consumers whose webhook is no longer configured (and any
/// position key left over), so a removed webhook does not hold back feed pruning forever.
/// Its dead letters are kept. Other consumers are not touched.
pub fn forget_removed(store: &Store, config: &Config) {
    let feed = store.feed();
    let consumers = match feed.consumers() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "Cannot list feed consumers.");
            return;
        }
    };
    for (consumer, _) in consumers {
        let Some(name) = consumer.strip_prefix(WEBHOOK_SINK_PREFIX) else {
            continue;
        };
        if config.webhooks.iter().any(|w| w.name == name) {
            continue;
        }
        match feed.unregister_consumer(&consumer) {
            Ok(()) => tracing::info!(sink = %consumer, "Forgot the cursor of a removed webhook."),
            Err(e) => {
                tracing::warn!(sink = %consumer, error = %e, "Cannot forget a removed webhook.")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::webhook::{DeadLetter, dead_letters};

    fn config(names: &[&str]) -> Config {
        let mut text = String::new();
        for n in names {
            text.push_str(&format!(
                "[[webhooks]]\nname = \"{n}\"\nurl = \"http://127.0.0.1:9/{n}\"\n"
            ));
        }
        crate::config::load_str(&text, "/t/config.toml").expect("config")
    }

    fn dead(seq: u64) -> DeadLetter {
        DeadLetter {
            first_seq: seq,
            last_seq: seq,
            events: 1,
            attempts: 8,
            last_error: "HTTP status 500".into(),
            at_ms: 1,
            body: b"{}".to_vec(),
        }
    }

    #[test]
    fn position_keyed_records_are_migrated_by_name_on_first_start_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let feed = store.feed();
        // As the release before names left it: two webhooks by position, one dead letter,
        // a position whose entry is gone, and another consumer that is not a webhook.
        feed.register_consumer("webhook:0", 7).unwrap();
        feed.register_consumer("webhook:1", 3).unwrap();
        feed.register_consumer("webhook:5", 1).unwrap();
        feed.register_consumer("indexer", 2).unwrap();
        store
            .kv(Space::Sinks)
            .insert(deadletter_key("webhook:1", 2), encode(&dead(2)))
            .unwrap();

        let cfg = config(&["alpha", "beta"]);
        migrate_position_keys(&store, &cfg);
        forget_removed(&store, &cfg);
        let mut consumers = feed.consumers().unwrap();
        consumers.sort();
        assert_eq!(
            consumers,
            vec![
                ("indexer".to_string(), 2),
                ("webhook:alpha".to_string(), 7),
                ("webhook:beta".to_string(), 3),
            ]
        );
        assert_eq!(dead_letters(&store, "webhook:beta").unwrap(), vec![dead(2)]);
        assert!(dead_letters(&store, "webhook:1").unwrap().is_empty());
        assert!(migrated(&store));

        // Later starts never read positions again: a reordered file keeps each cursor with
        // its name, and a stray position key is simply forgotten.
        feed.register_consumer("webhook:0", 99).unwrap();
        let reordered = config(&["beta", "alpha"]);
        migrate_position_keys(&store, &reordered);
        forget_removed(&store, &reordered);
        assert_eq!(feed.consumer_cursor("webhook:alpha").unwrap(), Some(7));
        assert_eq!(feed.consumer_cursor("webhook:beta").unwrap(), Some(3));
        assert_eq!(feed.consumer_cursor("webhook:0").unwrap(), None);
        let record: WebhookNamesMigrated = mailsync_actors::store::decode(
            &store.kv(Space::Sinks).get(MIGRATED_KEY).unwrap().unwrap(),
        )
        .unwrap();
        assert_eq!(
            record.moved,
            vec![(0, "alpha".to_string()), (1, "beta".to_string())]
        );
    }

    #[test]
    fn only_digit_suffixes_are_positions() {
        assert_eq!(position("webhook:0"), Some(0));
        assert_eq!(position("webhook:12"), Some(12));
        assert_eq!(position("webhook:a1"), None);
        assert_eq!(position("webhook:"), None);
        assert_eq!(position("maildir"), None);
    }
}
