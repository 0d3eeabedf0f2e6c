//! What a child may tell its AccountActor: [`ChildReport`], the whole protocol from the
//! children (HistorySync, Backfill, Ingest) and the sources they drive up to their parent.
//! Children hold a [`Reporter`] (a ractor ref that accepts only these reports), never the
//! parent's full message type, so they cannot send it commands.

use crate::status::{Phase, Progress};

/// One report from a child to its AccountActor.
#[derive(Debug)]
pub enum ChildReport {
    /// The account is in a new phase (with progress when known).
    Phase {
        /// The phase.
        phase: Phase,
        /// Progress of the phase, if known.
        progress: Option<Progress>,
    },
    /// Fetch jobs were enqueued and are durable: Ingest should look.
    IngestWork,
    /// Ingest's rate since it started.
    IngestProgress {
        /// Items stored per second.
        per_second: f64,
    },
    /// The provider says there is news (IMAP IDLE): HistorySync should run a round.
    IncrementalWork,
    /// Backfill jobs were enqueued and are durable: Backfill should look.
    BackfillWork,
    /// The first full sync finished; incremental rounds take over.
    FullSyncDone,
    /// The incremental cursor is no longer valid (history 404, sync token 410): resync.
    CursorExpired,
    /// A resync / gap repair finished.
    ResyncDone,
    /// An incremental round finished.
    RoundDone {
        /// When (ms since the epoch).
        at_ms: u64,
    },
    /// The credentials stopped working (secret-free reason).
    Disconnected(String),
    /// The provider is failing transiently (network, 5xx, rate limit, timeout) for this child:
    /// it waits with capped, jittered backoff and nothing counts toward dead-lettering. The
    /// account shows `degraded` with `reason` until the child reports [`ChildReport::Recovered`].
    Degraded {
        /// Which child is waiting.
        child: crate::jobs::ChildKind,
        /// Secret-free reason (the last error).
        reason: String,
    },
    /// The child's provider calls succeed again after [`ChildReport::Degraded`].
    Recovered {
        /// Which child.
        child: crate::jobs::ChildKind,
    },
    /// The push-watch duty (`push_watch.rs`) could not register or renew (secret-free
    /// reason): polling covers the account; status shows it until [`ChildReport::WatchOk`].
    WatchFailed(String),
    /// The push watch is registered again after [`ChildReport::WatchFailed`].
    WatchOk,
}

/// The line from a child (or the source it drives) to its parent.
pub type Reporter = ractor::DerivedActorRef<ChildReport>;

/// Sends a report; a parent that is gone (shutting down) is not an error for the child.
pub fn send(to: &Reporter, report: ChildReport) {
    let _ = to.send_message(report);
}
