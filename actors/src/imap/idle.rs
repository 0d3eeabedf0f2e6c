//! The IDLE watcher of an IMAP account: one task per watched folder, each holding one pooled
//! connection in IDLE (so it counts against the pool bound) and re-issuing IDLE every
//! `idle_max` (≤ 29 min). Any news (EXISTS, EXPUNGE, FETCH, VANISHED) nudges an incremental
//! round through [`ChildReport::IncrementalWork`]; the round does the work, so a lost nudge
//! costs only latency (the poll timer still runs). News also marks the folder in the poll
//! schedule (`poll.rs`), so its next round does the full step whatever STATUS says. Connection trouble backs off (1 s doubling
//! to 30 s); the tasks end when the source is dropped or the account actor is gone.

use crate::backoff::{Jitter, RetryPolicy};
use crate::imap::poll::PollSchedule;
use crate::imap::port::{IdleOutcome, ImapPort};
use crate::imap::stats::Stats;
use crate::report::{ChildReport, Reporter};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio_util::sync::{CancellationToken, DropGuard};

/// Owns the watcher tasks; dropping it stops them.
#[derive(Default)]
pub(crate) struct IdleHandle {
    guard: Mutex<Option<DropGuard>>,
}

impl IdleHandle {
    /// Starts the watchers once (needs a pool of at least 2: one connection stays for work).
    pub(crate) fn ensure_started(
        &self,
        port: &Arc<dyn ImapPort>,
        report: &Reporter,
        folders: &[String],
        idle_max: Duration,
        stats: &Arc<Stats>,
        poll: &Arc<PollSchedule>,
    ) {
        let mut guard = self.guard.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.is_some() {
            return;
        }
        let token = CancellationToken::new();
        let room = port.pool_size().saturating_sub(1);
        for folder in folders.iter().take(room) {
            let port = port.clone();
            let report = report.clone();
            let folder = folder.clone();
            let stats = stats.clone();
            let poll = poll.clone();
            let cancel = token.clone();
            let idle_max = idle_max.min(Duration::from_secs(29 * 60));
            tokio::spawn(async move {
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = watch(port, report, folder, idle_max, stats, poll) => {}
                }
            });
        }
        *guard = Some(token.drop_guard());
    }
}

async fn watch(
    port: Arc<dyn ImapPort>,
    report: Reporter,
    folder: String,
    idle_max: Duration,
    stats: Arc<Stats>,
    poll: Arc<PollSchedule>,
) {
    // Reconnects double from 1 s to 30 s (no jitter: one watcher per account).
    let policy = RetryPolicy::unlimited(
        Duration::from_secs(1),
        Duration::from_secs(30),
        Jitter::None,
    );
    let mut failures: u32 = 0;
    loop {
        let mut sess = match port.session().await {
            Ok(s) => s,
            Err(e) => {
                stats.count(e.class);
                tracing::debug!(folder = %folder, error = %e, "IDLE watcher cannot get a connection; retrying.");
                failures = failures.saturating_add(1);
                tokio::time::sleep(policy.ceiling(failures)).await;
                continue;
            }
        };
        if !sess.capabilities().idle {
            tracing::info!(folder = %folder, "The server does not offer IDLE; polling only.");
            return;
        }
        if let Err(e) = sess.select(&folder, None).await {
            stats.count(e.class);
            tracing::debug!(folder = %folder, error = %e, "IDLE watcher cannot select the folder; retrying.");
            drop(sess);
            failures = failures.saturating_add(1);
            tokio::time::sleep(policy.ceiling(failures)).await;
            continue;
        }
        failures = 0;
        loop {
            match sess.idle(idle_max).await {
                Ok(IdleOutcome::News) => {
                    tracing::debug!(folder = %folder, "IDLE: news; nudging a round.");
                    poll.news(&folder, std::time::Instant::now());
                    if report.send_message(ChildReport::IncrementalWork).is_err() {
                        return;
                    }
                }
                Ok(IdleOutcome::Timeout) => {}
                Err(e) => {
                    stats.count(e.class);
                    tracing::debug!(folder = %folder, error = %e, "IDLE ended with an error; reconnecting.");
                    break;
                }
            }
        }
    }
}
