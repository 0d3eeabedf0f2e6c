//! Status snapshots the actors report over RPC and the control socket prints. Plain data with
//! serde derives; no secrets ever enter these types.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The lifecycle state of one account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountState {
    /// Children are being spawned.
    Starting,
    /// Syncing normally.
    Running,
    /// Paused by an admin (`ctl pause`): no provider calls, queues kept.
    Paused,
    /// A gap is being recovered (history 404 → backfill + reconcile).
    Resyncing,
    /// Transient trouble that is waited out by itself (the data directory's disk is full):
    /// writing is paused and retried with backoff.
    Degraded,
    /// Credentials no longer work; waits for a person (`mailsync auth`).
    Disconnected,
    /// A child exhausted its restart budget; the account stopped, others keep running.
    Failed,
    /// Stopping or stopped (shutdown, removed from the config).
    Stopped,
}

/// What an account is doing, as status shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Just started.
    Starting,
    /// Reading the label list.
    Labels,
    /// Reading the calendar list.
    Calendars,
    /// Listing everything (full sync).
    Listing,
    /// Fetching details of listed items.
    Fetching,
    /// Incremental sync is current.
    CaughtUp,
    /// Incremental sync is current but some items are dead-lettered.
    Incomplete {
        /// How many.
        dead: u64,
    },
    /// Repairing a gap or running a full resync.
    Resyncing,
    /// The restart budget ran out.
    Failed,
    /// Writing is paused: the data dir's file system is below its free-space floor.
    /// (Status shows the path the store's disk check names.)
    DiskFull,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Phase::Starting => f.write_str("starting"),
            Phase::Labels => f.write_str("labels"),
            Phase::Calendars => f.write_str("calendars"),
            Phase::Listing => f.write_str("listing"),
            Phase::Fetching => f.write_str("fetching"),
            Phase::CaughtUp => f.write_str("caught_up"),
            Phase::Incomplete { dead } => write!(f, "incomplete ({dead} dead)"),
            Phase::Resyncing => f.write_str("resyncing"),
            Phase::Failed => f.write_str("failed"),
            Phase::DiskFull => f.write_str("degraded (disk full)"),
        }
    }
}

/// Depth of one durable mailbox.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStat {
    /// Mailbox name (`<account>/ingest`, ...).
    pub name: String,
    /// Jobs waiting to run now.
    pub pending: u64,
    /// Jobs leased by a running handler.
    pub leased: u64,
    /// Jobs waiting for their retry time.
    pub delayed: u64,
    /// Jobs in the dead-letter tree.
    pub dead: u64,
}

/// Progress of the current phase, when it has a known size.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Units done (messages fetched, pages read).
    pub done: u64,
    /// Units expected in total, if known.
    pub total: Option<u64>,
    /// Recent rate in units per second.
    pub per_second: f64,
    /// Estimated seconds remaining, if `total` is known and the rate is positive.
    pub eta_seconds: Option<u64>,
}

/// Everything `ctl status` shows for one account.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccountStatus {
    /// Account id from the config.
    pub account: String,
    /// `gmail`, `calendar`, `imap` or `test`.
    pub kind: String,
    /// Lifecycle state.
    pub state: AccountState,
    /// What the account is doing (`labels`, `listing`, `fetching`, `caught_up`, `resyncing`...).
    pub phase: String,
    /// The stored cursor (historyId, syncToken summary, UIDVALIDITY/MODSEQ), if any.
    pub cursor: Option<String>,
    /// Durable mailbox depths of the account's children.
    pub queues: Vec<QueueStat>,
    /// Child restarts within the current budget window.
    pub restarts: u32,
    /// The last error seen, already free of secrets.
    pub last_error: Option<String>,
    /// When the last successful sync round finished (ms since the epoch).
    pub last_sync_ms: Option<u64>,
    /// Progress of the current phase.
    pub progress: Option<Progress>,
    /// Listed ids not yet in the mirror (the sync is not complete while this is non-zero).
    pub missing: u64,
    /// Jobs dead-lettered for this account.
    pub dead_lettered: u64,
    /// Push / polling health (`push`, `polling`, `degraded (polling)`), when relevant.
    pub delivery: Option<String>,
    /// Quota units the last gap recovery spent (list pages at 5 units, plus the profile and
    /// labels calls); compare with messages × 20 for a full re-fetch.
    #[serde(default)]
    pub last_gap_recovery_units: Option<u64>,
    /// The most ids the last gap recovery held in memory at once (one listing page, one sort
    /// segment or one reconcile chunk, whatever the mailbox size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_gap_working_set: Option<u64>,
    /// Calendar accounts: one line per synced calendar.
    #[serde(default)]
    pub calendars: Vec<CalendarLine>,
    /// Why the account is waiting out a transient provider failure (outage, 5xx, rate limit),
    /// if it is; `None` once every child's calls succeed again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
    /// IMAP accounts: connection health, errors by class, rate and one line per folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imap: Option<crate::status_imap::ImapAccountStatus>,
    /// Set when the account did not answer within `ctl status`'s deadline (it was busy with
    /// the sync) and this is its last answer, given that many milliseconds ago.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_age_ms: Option<u64>,
}

impl AccountStatus {
    /// A status with only who, what kind, the state and the phase set, nothing queued or
    /// synced: the placeholder for an account whose actor cannot answer (not started,
    /// restarting, failed to start).
    pub fn bare(
        account: impl Into<String>,
        kind: impl Into<String>,
        state: AccountState,
        phase: impl Into<String>,
    ) -> AccountStatus {
        AccountStatus {
            account: account.into(),
            kind: kind.into(),
            state,
            phase: phase.into(),
            cursor: None,
            queues: Vec::new(),
            restarts: 0,
            last_error: None,
            last_sync_ms: None,
            progress: None,
            missing: 0,
            dead_lettered: 0,
            delivery: None,
            last_gap_recovery_units: None,
            last_gap_working_set: None,
            calendars: Vec::new(),
            degraded: None,
            imap: None,
            status_age_ms: None,
        }
    }
}

/// What `ctl status` shows for one calendar of a calendar account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarLine {
    /// Calendar id.
    pub calendar_id: String,
    /// Its name.
    pub summary: String,
    /// Events stored (exceptions included).
    pub events: u64,
    /// When the last listing finished (ms since the epoch).
    pub last_sync_ms: Option<u64>,
    /// Age of the stored sync token, seconds.
    pub token_age_secs: Option<u64>,
    /// A full sync replaces the events (token invalidated, 410).
    pub resyncing: bool,
    /// `active (push)`, `degraded (polling)`, `polling` or `disconnected`.
    pub delivery: String,
}

/// Everything `ctl status` shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DaemonStatus {
    /// mailsync version.
    pub version: String,
    /// Process id.
    pub pid: u32,
    /// Seconds since start.
    pub uptime_seconds: u64,
    /// The data directory.
    pub data_dir: String,
    /// One entry per configured account.
    pub accounts: Vec<AccountStatus>,
    /// Why the daemon as a whole is degraded (`disk full: <path> …`), if it is.
    #[serde(default)]
    pub degraded: Option<String>,
}
