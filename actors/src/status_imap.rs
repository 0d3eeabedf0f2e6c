//! What `ctl status` shows for an IMAP account beyond the common fields: connection health,
//! error counts by class, the download rate, the sync's command counters, and one line per
//! folder. Plain data with serde derives; no secret ever enters these types.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How many of the costly and the cheap commands the sync sent since the daemon started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CommandCounts {
    /// SELECTs of sync steps (the IDLE watcher's own are not counted).
    pub selects: u64,
    /// STATUS probes answered.
    pub status_probes: u64,
    /// Folder polls that STATUS showed unchanged (no SELECT sent).
    pub polls_skipped: u64,
}

/// The IMAP part of an account's status.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImapAccountStatus {
    /// Connection health in words (`2 open, 1 idle`, `circuit open for 8 s after: …`).
    pub connections: String,
    /// Errors since start, by class (`network`, `auth`, `throttle`, `parse`, `timeout`,
    /// `server`), every class listed.
    pub errors: BTreeMap<String, u64>,
    /// Messages downloaded per second since start.
    pub per_second: f64,
    /// Messages downloaded since start.
    pub fetched: u64,
    /// The sync's command counters.
    pub commands: CommandCounts,
    /// One line per folder, in sync order.
    pub folders: Vec<FolderLine>,
}

/// The status of one folder.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FolderLine {
    /// Its name.
    pub name: String,
    /// Messages held.
    pub messages: u64,
    /// `initial_sync`, `synced` or `error`.
    pub state: String,
    /// Initial-sync progress, while it runs.
    pub progress: Option<FolderProgress>,
    /// When the folder was last synced (ms since the epoch; a step that changed something).
    pub last_sync_ms: Option<u64>,
    /// When the server last confirmed the folder current (a quiet STATUS probe or a step),
    /// since the daemon started.
    pub last_checked_ms: Option<u64>,
    /// The last error of the folder's last step, if it failed.
    pub last_error: Option<String>,
    /// UIDVALIDITY.
    pub uidvalidity: Option<u32>,
    /// UIDNEXT covered.
    pub uidnext: u32,
    /// HIGHESTMODSEQ covered.
    pub highest_modseq: Option<u64>,
    /// Watched with IDLE.
    pub idle: bool,
    /// The current STATUS poll interval (seconds; 0 = every round), once probed.
    pub poll_interval_secs: Option<u64>,
}

/// Initial-sync progress of one folder.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FolderProgress {
    /// Messages fetched.
    pub done: u64,
    /// Messages in the folder when its sync began.
    pub total: u64,
    /// Estimated seconds remaining at the account's current rate.
    pub eta_seconds: Option<u64>,
}
