//! Job keys and payload encodings, in one place for the producers and the consumers of every
//! durable mailbox: the name of each child's mailbox, the idempotency key of each kind of job,
//! and how its payload is written and read.
//!
//! | mailbox | key | payload | producer → consumer |
//! |---|---|---|---|
//! | `<acct>/ingest` | `ingest:<acct>:<item id>` | the item id (UTF-8) | Backfill, HistorySync → Ingest |
//! | `<acct>/ingest` | `ingest-page:<acct>:h<H0>.p<page>.<chunk>` | [`crate::ingest_pages::IngestPage`] (codec): a batch of ids | Gmail full sync → Ingest (`ingest_pages.rs`) |
//! | `<acct>/history_sync` | `history:<acct>:<historyId>` | historyId (u64, big-endian) | Gmail push → HistorySync |
//! | `<acct>/history_sync` | `calendar-push:<acct>:<calendar id>` | calendar id (UTF-8) | Calendar push → HistorySync |
//! | `<acct>/backfill` | `fullsync:<acct>`, `gap:<acct>`, `calendar-full:<acct>:<calendar id>`, `deepsync:<acct>:<since>:<until>:<folder>` | [`BackfillJob`] (codec) | AccountActor, sources → Backfill |
//!
//! A key dedupes while its job is pending, so a burst of pushes for one calendar is one job.

use crate::mailbox::{Job, Priority};
use crate::model::AccountId;
use crate::store::{Store, StoreError, StoreTx, TxError, decode, encode};
use serde::{Deserialize, Serialize};

/// Which child of an AccountActor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChildKind {
    /// Incremental changes.
    HistorySync,
    /// Full listing and gap repair.
    Backfill,
    /// Fetching details.
    Ingest,
}

impl ChildKind {
    /// Every child, in spawn order.
    pub const ALL: [ChildKind; 3] = [
        ChildKind::Ingest,
        ChildKind::Backfill,
        ChildKind::HistorySync,
    ];

    /// Short name used in mailbox names and logs.
    pub fn name(self) -> &'static str {
        match self {
            ChildKind::HistorySync => "history_sync",
            ChildKind::Backfill => "backfill",
            ChildKind::Ingest => "ingest",
        }
    }
}

/// The durable mailbox name of an account's child.
pub fn mailbox_name(account: &AccountId, child: ChildKind) -> String {
    format!("{}/{}", account.0, child.name())
}

/// A job in Backfill's durable mailbox (one per kind and account, deduped by key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackfillJob {
    /// The first full sync (Gmail: every message; Calendar: the calendar list).
    FullSync,
    /// Repair a gap or resync on demand (the cursor expired, or an admin's `resync`).
    Gap,
    /// Calendar: a full sync of one calendar into a fresh generation, swapped in when done.
    CalendarFull {
        /// The calendar.
        calendar_id: String,
    },
    /// IMAP: a deep sync of a date range on demand (`ctl deep-sync`): per folder, the
    /// messages the server holds in the range that the mirror lacks are fetched and the flags
    /// of those it holds re-checked.
    DeepSync {
        /// First day (`YYYY-MM-DD`, inclusive), if bounded.
        since: Option<String>,
        /// Last day (`YYYY-MM-DD`, exclusive), if bounded.
        until: Option<String>,
        /// Only this folder, if given.
        folder: Option<String>,
    },
}

impl crate::codec::Versioned for BackfillJob {
    const NAME: &'static str = "backfill job";
    const VERSION: u16 = 1;
    fn from_legacy(body: &[u8]) -> Result<Self, crate::codec::CodecError> {
        // Schema 1 wrote the variant index: 0 = FullSync, 1 = Gap (frozen).
        match crate::codec::legacy_bincode::<Self, u32>(body)? {
            0 => Ok(BackfillJob::FullSync),
            1 => Ok(BackfillJob::Gap),
            other => Err(crate::codec::CodecError::malformed::<Self>(format!(
                "unknown schema-1 variant {other}"
            ))),
        }
    }
}

impl BackfillJob {
    /// The idempotency key.
    pub fn key(&self, account: &AccountId) -> String {
        match self {
            BackfillJob::FullSync => format!("fullsync:{account}"),
            BackfillJob::Gap => format!("gap:{account}"),
            BackfillJob::CalendarFull { calendar_id } => {
                format!("calendar-full:{account}:{calendar_id}")
            }
            BackfillJob::DeepSync {
                since,
                until,
                folder,
            } => format!(
                "deepsync:{account}:{}:{}:{}",
                since.as_deref().unwrap_or(""),
                until.as_deref().unwrap_or(""),
                folder.as_deref().unwrap_or("")
            ),
        }
    }

    /// Reads a job's payload.
    pub fn decode(job: &Job) -> Result<BackfillJob, StoreError> {
        decode(&job.payload)
    }
}

/// Enqueues a backfill job (deduplicated by kind) inside a transaction.
pub fn enqueue_backfill_tx(
    tx: &StoreTx<'_>,
    account: &AccountId,
    job: BackfillJob,
    now_ms: u64,
) -> Result<(), TxError> {
    tx.enqueue(
        &mailbox_name(account, ChildKind::Backfill),
        Priority::Backfill,
        &job.key(account),
        &encode(&job),
        now_ms,
    )?;
    Ok(())
}

/// The idempotency key of an item's fetch job.
pub fn ingest_key(account: &AccountId, item: &str) -> String {
    format!("ingest:{account}:{item}")
}

/// Enqueues an item for Ingest inside a transaction.
pub fn enqueue_ingest_tx(
    tx: &StoreTx<'_>,
    account: &AccountId,
    item: &str,
    priority: Priority,
    now_ms: u64,
) -> Result<(), TxError> {
    tx.enqueue(
        &mailbox_name(account, ChildKind::Ingest),
        priority,
        &ingest_key(account, item),
        item.as_bytes(),
        now_ms,
    )?;
    Ok(())
}

/// The item id of a fetch job.
pub fn ingest_item(job: &Job) -> String {
    String::from_utf8_lossy(&job.payload).into_owned()
}

/// Durably records a Gmail push for `history_id` (not flushed: the caller flushes before it
/// acknowledges the push). Deduplicated per account and history id.
pub fn enqueue_history_push(
    store: &Store,
    account: &AccountId,
    history_id: u64,
) -> Result<(), StoreError> {
    store
        .mailbox(&mailbox_name(account, ChildKind::HistorySync))
        .enqueue(
            Priority::RealTime,
            &format!("history:{account}:{history_id}"),
            &history_id.to_be_bytes(),
        )?;
    Ok(())
}

/// The history id a Gmail push job covers (0 for anything else).
pub fn history_push_id(job: &Job) -> u64 {
    <[u8; 8]>::try_from(job.payload.as_slice())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

/// Durably records a Calendar change notification for `calendar_id` (not flushed: the caller
/// flushes before it answers the notification). Pending notifications for one calendar
/// collapse into one job, which is the debounce of a burst.
pub fn enqueue_calendar_push(
    store: &Store,
    account: &AccountId,
    calendar_id: &str,
) -> Result<(), StoreError> {
    store
        .mailbox(&mailbox_name(account, ChildKind::HistorySync))
        .enqueue(
            Priority::RealTime,
            &calendar_push_key(account, calendar_id),
            calendar_id.as_bytes(),
        )?;
    Ok(())
}

/// The key of a Calendar push job.
pub fn calendar_push_key(account: &AccountId, calendar_id: &str) -> String {
    format!("calendar-push:{account}:{calendar_id}")
}

/// The calendar a Calendar push job is about, if it is one.
pub fn calendar_push_calendar(job: &Job) -> Option<String> {
    job.key
        .starts_with("calendar-push:")
        .then(|| String::from_utf8_lossy(&job.payload).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{self, FORMAT_LEGACY};

    #[test]
    fn schema_1_backfill_jobs_keep_their_meaning() {
        // bincode wrote the variant index as a varint: FullSync = 0, Gap = 1.
        assert_eq!(
            codec::decode::<BackfillJob>(&[FORMAT_LEGACY, 0]),
            Ok(BackfillJob::FullSync)
        );
        assert_eq!(
            codec::decode::<BackfillJob>(&[FORMAT_LEGACY, 1]),
            Ok(BackfillJob::Gap)
        );
        assert!(codec::decode::<BackfillJob>(&[FORMAT_LEGACY, 7]).is_err());
        let job = BackfillJob::CalendarFull {
            calendar_id: "c@x".into(),
        };
        assert_eq!(codec::decode::<BackfillJob>(&encode(&job)), Ok(job));
    }
}
