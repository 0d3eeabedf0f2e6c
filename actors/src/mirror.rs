//! The local mirror of a mail account inside the store: one record per message (metadata plus
//! raw bytes) and one per label. Keys are `<account>\0<id>` so an account's records sit together
//! and can be scanned or dropped by prefix.
//!
//! Writers use these helpers inside `Store::transaction`, together with the feed event and the
//! job ack that the write belongs to; readers (sinks, status, tests) use the plain functions.

use crate::model::{HistoryId, Label, LabelId, MessageId};
use serde::{Deserialize, Serialize};

/// What the mirror keeps of one message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorMessage {
    /// Message id.
    pub id: MessageId,
    /// Thread id.
    pub thread_id: String,
    /// Current labels, sorted.
    pub label_ids: Vec<LabelId>,
    /// History id at the last write.
    pub history_id: HistoryId,
    /// Internal date, ms since the epoch.
    pub internal_date_ms: i64,
    /// Hex SHA-256 of `raw` (what tests compare against the emulator's snapshot).
    pub raw_sha256: String,
    /// Length of `raw`.
    pub size: u64,
}

/// What the mirror keeps of one label.
pub type MirrorLabel = Label;

/// The key of an account-scoped record: `<account>\0<id>`.
pub fn record_key(account: &str, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(account.len() + 1 + id.len());
    k.extend_from_slice(account.as_bytes());
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
}

/// The prefix of all of an account's records in one space.
pub fn account_prefix(account: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(account.len() + 1);
    k.extend_from_slice(account.as_bytes());
    k.push(0);
    k
}
