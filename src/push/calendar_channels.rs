//! The durable registry of Calendar push channels: one [`StoredChannel`] per channel we opened
//! (`events.watch`), in `Space::Cursors` under `calendar-channel/<channel id>`. It holds what a
//! notification is checked against — the account and calendar it belongs to, Google's
//! resource id, the SHA-256 digest of the channel token (the token itself is never stored or
//! logged), the highest message number seen — and what the keeper renews by (expiry).

use mailsync_actors::codec::{CodecError, Versioned};
use mailsync_actors::store::{self, Space, Store, StoreError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const PREFIX: &str = "calendar-channel/";

/// One open channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredChannel {
    /// The account id.
    pub account: String,
    /// The watched calendar.
    pub calendar_id: String,
    /// Our channel id (`X-Goog-Channel-ID`).
    pub channel_id: String,
    /// Google's id of the watched collection (`X-Goog-Resource-ID`).
    pub resource_id: String,
    /// SHA-256 of the channel token (`X-Goog-Channel-Token`).
    pub token_digest: [u8; 32],
    /// Expiry, ms since the epoch.
    pub expiration_ms: i64,
    /// Highest `X-Goog-Message-Number` accepted (0 before the `sync` message).
    pub last_message: u64,
    /// When the channel was opened.
    pub registered_ms: i64,
    /// When the last accepted notification arrived.
    #[serde(default)]
    pub last_push_ms: Option<i64>,
}

impl Versioned for StoredChannel {
    const NAME: &'static str = "calendar channel";
    const VERSION: u16 = 1;
    fn from_legacy(_body: &[u8]) -> Result<Self, CodecError> {
        // Calendar channels did not exist in schema 1.
        Err(CodecError::NoUpgrade {
            type_name: Self::NAME,
            found: 0,
        })
    }
}

/// SHA-256 of a channel token.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn sled_err(context: &'static str) -> impl FnOnce(sled::Error) -> StoreError {
    move |source| StoreError::Sled { context, source }
}

fn key(channel_id: &str) -> Vec<u8> {
    format!("{PREFIX}{channel_id}").into_bytes()
}

/// Reads and writes channels.
#[derive(Clone)]
pub struct ChannelStore {
    store: Store,
}

impl ChannelStore {
    /// The registry in `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// The store underneath.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The channel with this id.
    pub fn get(&self, channel_id: &str) -> Result<Option<StoredChannel>, StoreError> {
        match self
            .store
            .kv(Space::Cursors)
            .get(key(channel_id))
            .map_err(sled_err("reading a calendar channel"))?
        {
            Some(v) => Ok(Some(store::decode(&v)?)),
            None => Ok(None),
        }
    }

    /// Writes a channel (not flushed; call [`Store::flush_async`] before acting on it).
    pub fn put(&self, ch: &StoredChannel) -> Result<(), StoreError> {
        self.store
            .kv(Space::Cursors)
            .insert(key(&ch.channel_id), store::encode(ch))
            .map_err(sled_err("writing a calendar channel"))?;
        Ok(())
    }

    /// Forgets a channel (not flushed).
    pub fn remove(&self, channel_id: &str) -> Result<(), StoreError> {
        self.store
            .kv(Space::Cursors)
            .remove(key(channel_id))
            .map_err(sled_err("removing a calendar channel"))?;
        Ok(())
    }

    /// Every channel (unreadable entries are logged and skipped).
    pub fn all(&self) -> Vec<StoredChannel> {
        let mut out = Vec::new();
        for item in self.store.kv(Space::Cursors).scan_prefix(PREFIX.as_bytes()) {
            match item
                .map_err(sled_err("listing calendar channels"))
                .and_then(|(_, v)| store::decode(&v))
            {
                Ok(ch) => out.push(ch),
                Err(e) => tracing::warn!(error = %e, "Skipping an unreadable calendar channel."),
            }
        }
        out
    }

    /// The channels of one account.
    pub fn of_account(&self, account: &str) -> Vec<StoredChannel> {
        self.all()
            .into_iter()
            .filter(|c| c.account == account)
            .collect()
    }
}
