//! In-memory counters of one IMAP account for status: errors by class, messages downloaded,
//! the download rate, and the SELECT / STATUS commands the sync sent since the source started. Lost on restart by design (the durable
//! numbers — messages per folder, checkpoints — are in the store).

use crate::imap::port::ImapErrorClass;
use crate::status_imap::CommandCounts;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Counters of one account.
#[derive(Debug)]
pub struct Stats {
    errors: [AtomicU64; 6],
    fetched: AtomicU64,
    selects: AtomicU64,
    status_probes: AtomicU64,
    polls_skipped: AtomicU64,
    started: Instant,
    last_error: Mutex<Option<String>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            errors: Default::default(),
            fetched: AtomicU64::new(0),
            selects: AtomicU64::new(0),
            status_probes: AtomicU64::new(0),
            polls_skipped: AtomicU64::new(0),
            started: Instant::now(),
            last_error: Mutex::new(None),
        }
    }
}

impl Stats {
    /// Counts one error of `class`.
    pub fn count(&self, class: ImapErrorClass) {
        let i = ImapErrorClass::ALL
            .iter()
            .position(|c| *c == class)
            .unwrap_or(0);
        self.errors[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Remembers the last error's words (secret-free).
    pub fn last_error(&self, what: String) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(what);
    }

    /// Counts downloaded messages.
    pub fn fetched(&self, n: u64) {
        self.fetched.fetch_add(n, Ordering::Relaxed);
    }

    /// Errors by class (only the non-zero ones).
    pub fn errors(&self) -> Vec<(ImapErrorClass, u64)> {
        ImapErrorClass::ALL
            .iter()
            .zip(self.errors.iter())
            .map(|(c, n)| (*c, n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Messages downloaded per second since start.
    pub fn rate(&self) -> f64 {
        self.fetched.load(Ordering::Relaxed) as f64
            / self.started.elapsed().as_secs_f64().max(0.001)
    }

    /// Messages downloaded since start.
    pub fn total_fetched(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }

    /// Counts one SELECT sent by a sync step.
    pub fn select(&self) {
        self.selects.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one STATUS probe answered.
    pub fn status_probe(&self) {
        self.status_probes.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one folder poll that STATUS showed unchanged (no SELECT sent).
    pub fn poll_skipped(&self) {
        self.polls_skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// The command counters since start.
    pub fn commands(&self) -> CommandCounts {
        CommandCounts {
            selects: self.selects.load(Ordering::Relaxed),
            status_probes: self.status_probes.load(Ordering::Relaxed),
            polls_skipped: self.polls_skipped.load(Ordering::Relaxed),
        }
    }
}
