//! The IMAP account's status for `ctl status` (`status_imap.rs` types): connection health,
//! errors by class, rate, command counters and one line per folder (messages, state,
//! initial-sync progress with ETA, last sync, poll interval), read from the store and the
//! source's in-memory counters.

use crate::imap::folder_sync::needs_initial;
use crate::imap::poll::PollSchedule;
use crate::imap::port::ImapErrorClass;
use crate::imap::stats::Stats;
use crate::imap::store::{self as istore, FolderState};
use crate::status::Progress;
use crate::status_imap::{FolderLine, FolderProgress, ImapAccountStatus};
use crate::store::{Store, StoreError};

fn line(f: FolderState, per_second: f64, idle: bool, poll: &PollSchedule) -> FolderLine {
    let state = if f.last_error.is_some() {
        "error"
    } else if needs_initial(&f) {
        "initial_sync"
    } else {
        "synced"
    };
    let progress = f.initial.as_ref().map(|p| {
        let total = p.total.max(p.fetched);
        FolderProgress {
            done: p.fetched,
            total,
            eta_seconds: (per_second > 0.0 && total > p.fetched)
                .then(|| ((total - p.fetched) as f64 / per_second) as u64),
        }
    });
    FolderLine {
        poll_interval_secs: poll.interval_secs(&f.name),
        last_checked_ms: poll.checked_ms(&f.name),
        state: state.to_string(),
        progress,
        messages: f.messages,
        last_sync_ms: f.last_sync_ms,
        last_error: f.last_error,
        uidvalidity: f.uidvalidity,
        uidnext: f.uidnext,
        highest_modseq: f.highest_modseq,
        idle,
        name: f.name,
    }
}

/// The account's initial-sync progress over every folder (done / total, rate, ETA).
pub(crate) fn initial_progress(folders: &[FolderState], per_second: f64) -> Progress {
    let done: u64 = folders
        .iter()
        .map(|f| f.initial.as_ref().map_or(f.messages, |p| p.fetched))
        .sum();
    let total: u64 = folders
        .iter()
        .map(|f| {
            f.initial
                .as_ref()
                .map_or(f.messages, |p| p.total.max(p.fetched))
        })
        .sum();
    let eta_seconds =
        (per_second > 0.0 && total > done).then(|| ((total - done) as f64 / per_second) as u64);
    Progress {
        done,
        total: Some(total),
        per_second,
        eta_seconds,
    }
}

/// The IMAP part of an account's status; `order` ranks folders for display (sync order).
pub(crate) fn account_status(
    store: &Store,
    account: &str,
    stats: &Stats,
    poll: &PollSchedule,
    health: String,
    idle_folders: &[String],
    order: impl Fn(&FolderState) -> u8,
) -> Result<ImapAccountStatus, StoreError> {
    let mut folders = istore::folders(store, account)?;
    folders.sort_by_key(|f| (order(f), f.name.clone()));
    let per_second = stats.rate();
    let counts = stats.errors();
    let errors = ImapErrorClass::ALL
        .iter()
        .map(|c| {
            let n = counts.iter().find(|(k, _)| k == c).map_or(0, |(_, n)| *n);
            (c.as_str().to_string(), n)
        })
        .collect();
    Ok(ImapAccountStatus {
        connections: health,
        errors,
        per_second,
        fetched: stats.total_fetched(),
        commands: stats.commands(),
        folders: folders
            .into_iter()
            .map(|f| {
                let idle = idle_folders.contains(&f.name);
                line(f, per_second, idle, poll)
            })
            .collect(),
    })
}
