//! The provider-neutral port of the supervision tree: [`SyncSource`], what an account's
//! children drive, plus the account kinds ([`SourceKind`]) and phases ([`Phase`]) as enums.
//!
//! The children are generic drivers: HistorySync runs *incremental* rounds (pages of changes
//! since the account's cursor), Backfill runs *backfill* jobs (full listing, gap repair,
//! resync), Ingest drains *fetch* jobs (details of listed items). Each step is one provider call
//! and one sled transaction made by the source; the drivers own timing, pausing, leases,
//! retries with backoff and what to tell the AccountActor. A source owns its cursor and stored
//! types and commits them at its own commit points (transaction + flush before it returns).
//!
//! A new source (Gmail, Calendar, IMAP) is one `SyncSource` implementation over its own port
//! and stored types; no actor changes.

use crate::error::{ApiError, SyncError};
use crate::mailbox::Job;
use crate::model::AccountId;
use crate::report::Reporter;
use crate::store::{Store, StoreError};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// The status fields a source keeps in its stored records (see [`SyncSource::stored_status`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredStatus {
    /// The cursor in words.
    pub cursor: Option<String>,
    /// When the last sync finished (ms since the epoch).
    pub last_sync_ms: Option<u64>,
    /// Quota units the last gap repair spent.
    pub last_resync_units: Option<u64>,
    /// The largest working set of the last gap repair.
    pub last_resync_working_set: Option<u64>,
}

/// A boxed, sendable future of a source step.
pub type SourceFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, SyncError>> + Send + 'a>>;

/// What kind of account this is (the config's `kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// Gmail over its REST API.
    Gmail,
    /// Google Calendar over its REST API.
    Calendar,
    /// Synthetic accounts for tests (Gmail-shaped).
    Test,
    /// An IMAP server.
    Imap,
}

impl SourceKind {
    /// The config / status name.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Gmail => "gmail",
            SourceKind::Calendar => "calendar",
            SourceKind::Test => "test",
            SourceKind::Imap => "imap",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a source needs for one step: the account, the store and the line to its parent.
pub struct SourceCx<'a> {
    /// The account.
    pub account: &'a AccountId,
    /// The store.
    pub store: &'a Store,
    /// Reports to the AccountActor (phases, progress, "Ingest has work").
    pub report: &'a Reporter,
}

/// What the account resumes with at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartState {
    /// Normal operation (possibly a full sync in progress).
    Running,
    /// A resync / gap repair was interrupted and resumes.
    Resyncing,
}

/// What one incremental page did.
#[derive(Clone, Debug, Default)]
pub struct IncrementalPage {
    /// The round is over (the cursor moved in this page's transaction, or nothing to do).
    pub round_done: bool,
    /// Fetch jobs were enqueued (Ingest should look).
    pub ingest_work: bool,
    /// Push jobs this page acked in its transaction (their leases are released by the driver).
    pub acked: usize,
}

/// What one backfill step asks for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackfillNext {
    /// Another step now.
    Continue,
    /// Check again after a while (e.g. waiting for Ingest to drain).
    WaitThen(Duration),
    /// The job is finished; the source acked it in its last transaction.
    Finished,
}

/// What one fetch batch did.
#[derive(Debug, Default)]
pub struct IngestBatch {
    /// Jobs recorded and acked in the source's transaction (already flushed).
    pub done: Vec<Job>,
    /// Jobs whose item failed on its own; the driver nacks them with backoff.
    pub failed: Vec<(Job, ApiError)>,
    /// New items stored (progress).
    pub added: u64,
    /// Jobs neither recorded nor failed: their fetch was older than a change the source saw
    /// meanwhile (see `freshness.rs`); the driver hands them back to run again now, without
    /// counting an attempt.
    pub retry_now: Vec<Job>,
}

/// The provider-neutral port the account's children drive. One implementation per source
/// kind, built by the daemon with its provider port, quota and options already attached.
///
/// Contract: every method that changes the store does so in one transaction per step and
/// flushes before it returns; every step is idempotent (a crash re-runs it and emits nothing
/// twice); errors are classified (`SyncError::Api` with an [`ApiError`] the driver acts on,
/// `SyncError::Store` = restart the child).
pub trait SyncSource: Send + Sync {
    /// The account kind.
    fn kind(&self) -> SourceKind;

    /// At (re)start: makes sure the durable job that drives the current phase exists (e.g.
    /// the first full sync) and says whether a resync resumes. Flushes.
    fn ensure_jobs(&self, cx: &SourceCx<'_>) -> Result<StartState, StoreError>;

    /// Durably asks for a resync (gap repair after an expired cursor, or an admin's
    /// `resync`). Flushes.
    fn request_resync(&self, cx: &SourceCx<'_>) -> Result<(), StoreError>;

    /// Whether incremental rounds may run now (not while a full sync or resync owns the
    /// account).
    fn incremental_ready(&self, cx: &SourceCx<'_>) -> Result<bool, StoreError>;

    /// HistorySync: the next page of the current incremental round. `pushes` are the durable
    /// push jobs leased for this round; the page that finishes the round acks the ones it
    /// covers in its own transaction.
    fn incremental_page<'a>(
        &'a self,
        cx: &'a SourceCx<'a>,
        pushes: &'a [Job],
    ) -> SourceFuture<'a, IncrementalPage>;

    /// After a round that covered a push, how soon to look again whatever the poll interval:
    /// for a provider that drops notifications coming too soon after the last one (Gmail
    /// sends at most one a second per user and drops the rest), a change made just after a
    /// push is announced by nothing, and would otherwise wait for the next poll. `None`
    /// (the default): the poll interval.
    fn push_follow_up(&self) -> Option<std::time::Duration> {
        None
    }

    /// Backfill: one step of `job` (a job of this source's backfill mailbox).
    fn backfill_step<'a>(
        &'a self,
        cx: &'a SourceCx<'a>,
        job: &'a Job,
    ) -> SourceFuture<'a, BackfillNext>;

    /// Ingest: fetches and records the items of `jobs` (leased from the fetch mailbox) in one
    /// transaction that also acks them. An `Err` fails the whole batch.
    fn ingest_batch<'a>(
        &'a self,
        cx: &'a SourceCx<'a>,
        jobs: &'a [Job],
    ) -> SourceFuture<'a, IngestBatch>;

    /// Status: the account's cursor in words (`historyId 123`, `3 calendars, tokens 2 min old`).
    fn cursor(&self, cx: &SourceCx<'_>) -> Option<String>;

    /// Status: when the last sync finished (ms since the epoch), from the stored record.
    fn last_sync_ms(&self, cx: &SourceCx<'_>) -> Option<u64> {
        let _ = cx;
        None
    }

    /// Status: the IMAP part of the account's status (folders, connections, errors by class).
    fn imap_status(&self, _cx: &SourceCx<'_>) -> Option<crate::status_imap::ImapAccountStatus> {
        None
    }

    /// Status: quota units the last gap repair spent, if the source measures it.
    fn last_resync_units(&self, cx: &SourceCx<'_>) -> Option<u64> {
        let _ = cx;
        None
    }

    /// Status: the most ids the last gap repair held in memory at once (its working set,
    /// bounded by a page, segment or chunk size whatever the mailbox size).
    fn last_resync_working_set(&self, cx: &SourceCx<'_>) -> Option<u64> {
        let _ = cx;
        None
    }

    /// Status: the stored fields above read together. A source whose fields live in one
    /// record overrides this to read it once.
    fn stored_status(&self, cx: &SourceCx<'_>) -> StoredStatus {
        StoredStatus {
            cursor: self.cursor(cx),
            last_sync_ms: self.last_sync_ms(cx),
            last_resync_units: self.last_resync_units(cx),
            last_resync_working_set: self.last_resync_working_set(cx),
        }
    }

    /// Starts the provider credentials over (see [`crate::ports::GmailApi::reconnect`]):
    /// called when a person resumes the account or reloads the config. Sources without
    /// credentials keep the default.
    fn reconnect(&self) -> SourceFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}
