//! Sinks: the feed consumers that run inside the daemon and hand every change to the outside
//! world — a Maildir per account ([`maildir`]), a vdir of `.ics` files per calendar account
//! ([`vdir`], text from [`ics`]), signed webhook batches ([`webhook`]) — plus the
//! scheduled pruning of the change feed ([`retention`]).
//!
//! This module owns the sink consumer names (`maildir`, `webhook:<name>`), their cursors'
//! lifecycle, the shared "wait for the feed, deliver, then ack" loop ([`ConsumerLoop`]) and the
//! sink state kept in `Space::Sinks` (dead letters under `deadletter/<sink>/<seq:be>`, the last
//! error under `error/<sink>`).
//!
//! Invariants:
//! - Every sink is its own task with its own cursor: a slow or dead sink never blocks sync or
//!   another sink. The only thing a lagging sink holds back is feed pruning.
//! - A cursor moves ([`mailsync_actors::feed::Feed::ack_consumer`], flushed) only after the
//!   delivery it covers is durable (files fsynced, a 2xx received, or the batch dead-lettered
//!   and flushed). A crash in between redelivers the same events with the same keys.
//! - A newly configured sink is registered from seq 0, so it sees the feed's whole history.
//! - Sinks wait on [`mailsync_actors::feed::Feed::subscribe`]; they never poll.

mod file_sink;
pub mod ics;
pub mod maildir;
pub mod maildir_folders;
pub mod maildir_index;
pub mod retention;
pub mod vdir;
pub mod vdir_sink;
#[cfg(test)]
mod vdir_tests;
pub mod webhook;
pub mod webhook_names;
pub mod webhook_replay;

use std::future::Future;
use std::time::Duration;

use mailsync_actors::backoff::{Jitter, RetryPolicy};
use mailsync_actors::feed::FeedEvent;
use mailsync_actors::store::{Space, Store, StoreError};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;

/// Events read from the feed per delivery round.
pub const BATCH_EVENTS: usize = 100;

/// The consumer name of the Maildir sink.
pub const MAILDIR_SINK: &str = "maildir";

/// The prefix of every webhook sink's consumer name (`webhook:<name>`).
pub const WEBHOOK_SINK_PREFIX: &str = "webhook:";

/// Prefix of dead-letter keys in `Space::Sinks`: `deadletter/<sink>/<first seq:be>`.
const DEADLETTER_PREFIX: &str = "deadletter/";

/// Prefix of last-error keys in `Space::Sinks`: `error/<sink>`.
const ERROR_PREFIX: &str = "error/";

/// Errors of the sinks.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The store failed (reading the feed, moving a cursor, writing sink state).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A filesystem operation on the Maildir or vdir failed.
    #[error("sink file system: {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An account id that cannot be a directory name (`.`, `..`, a `/` inside).
    #[error("maildir: account id {0:?} cannot be used as a directory name")]
    BadAccount(String),
    /// A webhook delivery attempt failed (transport error or non-2xx answer). Never contains
    /// the URL's query or the secret.
    #[error("webhook delivery failed: {0}")]
    Delivery(String),
    /// The webhook's signing secret could not be resolved.
    #[error("webhook secret: {0}")]
    Secret(String),
    /// An event series could not be turned into iCalendar text.
    #[error("vdir: {0}")]
    Ics(String),
    /// A blocking task panicked or was cancelled.
    #[error("sink task failed: {0}")]
    Join(String),
}

/// What `ctl status` shows for one sink.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SinkStatus {
    /// Consumer name: `maildir` or `webhook:<index>`.
    pub name: String,
    /// Whether the sink is configured to run.
    pub enabled: bool,
    /// The last feed seq the sink has acknowledged; `None` before it first ran.
    pub cursor: Option<u64>,
    /// Feed events not yet acknowledged: feed last seq minus cursor.
    pub lag: u64,
    /// Batches in the sink's dead-letter list.
    pub dead_letters: u64,
    /// Events inside those batches.
    pub dead_lettered_events: u64,
    /// The last delivery error, cleared by the next success; secret-free.
    pub last_error: Option<String>,
}

/// The consumer name of the webhook named `name` (`[[webhooks]] name`).
pub fn webhook_sink_name(name: &str) -> String {
    format!("{WEBHOOK_SINK_PREFIX}{name}")
}

/// Starts every configured sink as a task on `tasks`; each stops when `cancel` fires.
pub fn spawn_all(store: &Store, config: &Config, cancel: CancellationToken, tasks: &TaskTracker) {
    webhook_names::migrate_position_keys(store, config);
    webhook_names::forget_removed(store, config);
    if let Some(m) = config.maildir.as_ref().filter(|m| m.enabled) {
        let accounts = config.accounts.iter().map(|a| a.id.clone()).collect();
        let sink = maildir::MaildirSink::new(store.clone(), m.root.clone(), accounts);
        tasks.spawn(sink.run(cancel.clone()));
    }
    if let Some(v) = config.vdir.as_ref().filter(|v| v.enabled) {
        let accounts = config
            .accounts
            .iter()
            .filter(|a| a.kind == crate::config::AccountKind::Calendar)
            .map(|a| a.id.clone())
            .collect();
        let sink = vdir_sink::VdirSink::new(store.clone(), v.root.clone(), accounts);
        tasks.spawn(sink.run(cancel.clone()));
    }
    for hook in &config.webhooks {
        match webhook::WebhookSink::new(store.clone(), hook, &config.retry) {
            Ok(sink) => {
                tasks.spawn(sink.run(cancel.clone()));
            }
            Err(e) => {
                tracing::error!(sink = %webhook_sink_name(&hook.name), error = %e, "Cannot start the webhook sink.");
            }
        }
    }
    tasks.spawn(retention::run(
        store.clone(),
        config.feed.retention,
        cancel.clone(),
    ));
}

/// Every configured sink with its cursor, lag and dead letters (for `ctl status`).
pub fn sink_status(store: &Store, config: &Config) -> Vec<SinkStatus> {
    let mut names: Vec<(String, bool)> = Vec::new();
    if let Some(m) = &config.maildir {
        names.push((MAILDIR_SINK.to_string(), m.enabled));
    }
    if let Some(v) = &config.vdir {
        names.push((vdir_sink::VDIR_SINK.to_string(), v.enabled));
    }
    for hook in &config.webhooks {
        names.push((webhook_sink_name(&hook.name), true));
    }
    let feed = store.feed();
    let last = feed.last_seq().unwrap_or(0);
    names
        .into_iter()
        .map(|(name, enabled)| {
            let cursor = feed.consumer_cursor(&name).ok().flatten();
            let (dead_letters, dead_lettered_events) = dead_letter_counts(store, &name);
            SinkStatus {
                lag: last.saturating_sub(cursor.unwrap_or(0)),
                last_error: last_error(store, &name),
                name,
                enabled,
                cursor,
                dead_letters,
                dead_lettered_events,
            }
        })
        .collect()
}

pub(crate) fn deadletter_prefix(sink: &str) -> Vec<u8> {
    format!("{DEADLETTER_PREFIX}{sink}/").into_bytes()
}

/// The `Space::Sinks` key of a dead-lettered batch starting at `seq`.
pub(crate) fn deadletter_key(sink: &str, seq: u64) -> Vec<u8> {
    let mut k = deadletter_prefix(sink);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub(crate) fn dead_letter_counts(store: &Store, sink: &str) -> (u64, u64) {
    let mut batches = 0;
    let mut events = 0;
    for item in store.kv(Space::Sinks).scan_prefix(deadletter_prefix(sink)) {
        let Ok((_, v)) = item else { continue };
        batches += 1;
        if let Ok(dl) = mailsync_actors::store::decode::<webhook::DeadLetter>(&v) {
            events += dl.events;
        }
    }
    (batches, events)
}

/// Records (or with `None` clears) the last error of a sink. Informational: not flushed.
pub(crate) fn set_last_error(store: &Store, sink: &str, error: Option<&str>) {
    let key = format!("{ERROR_PREFIX}{sink}");
    let tree = store.kv(Space::Sinks);
    let res = match error {
        Some(e) => tree
            .insert(
                key.as_bytes(),
                mailsync_actors::store::encode(&e.to_string()),
            )
            .map(|_| ()),
        None => tree.remove(key.as_bytes()).map(|_| ()),
    };
    if let Err(e) = res {
        tracing::warn!(sink, error = %e, "Cannot record the sink's last error.");
    }
}

fn last_error(store: &Store, sink: &str) -> Option<String> {
    let key = format!("{ERROR_PREFIX}{sink}");
    let v = store.kv(Space::Sinks).get(key.as_bytes()).ok()??;
    mailsync_actors::store::decode(&v).ok()
}

/// What a sink does with one batch of events.
pub(crate) trait Deliver: Send {
    /// Delivers `events` (non-empty, in seq order) durably and returns the seq to ack: the
    /// batch's last seq once everything in it is handled. `Err` means "retry the same batch
    /// later"; the cursor stays where it is. Cancellation drops the future (nothing acked).
    fn deliver(
        &mut self,
        events: Vec<FeedEvent>,
        cancel: &CancellationToken,
    ) -> impl Future<Output = Result<u64, SinkError>> + Send;
}

/// The loop every sink runs: register, read after the cursor, deliver, ack, wait for the feed.
pub(crate) struct ConsumerLoop {
    /// The consumer name.
    pub(crate) name: String,
    /// The store.
    pub(crate) store: Store,
    /// Delay ceiling after a failed round (grows ×2 per consecutive failure from 1 s).
    pub(crate) max_backoff: Duration,
    /// The most events one delivery carries.
    pub(crate) batch: usize,
}

impl ConsumerLoop {
    /// Registers the consumer if it is new (from seq 0) and reports whether it was new.
    pub(crate) fn register(&self) -> Result<bool, StoreError> {
        let feed = self.store.feed();
        if feed.consumer_cursor(&self.name)?.is_some() {
            return Ok(false);
        }
        feed.register_consumer(&self.name, 0)?;
        Ok(true)
    }

    /// Runs until `cancel` fires.
    pub(crate) async fn run(self, mut sink: impl Deliver, cancel: CancellationToken) {
        let feed = self.store.feed();
        let mut rx = feed.subscribe();
        let mut failures: u32 = 0;
        loop {
            if cancel.is_cancelled() {
                return;
            }
            // Mark the current value seen *before* reading, so an append that lands after the
            // read wakes the wait below.
            rx.borrow_and_update();
            let events = match self.next_events() {
                Ok(events) => events,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    self.failed(&e, None, failures, &cancel).await;
                    continue;
                }
            };
            let Some(first) = events.first().map(|e| e.seq) else {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    changed = rx.changed() => {
                        if changed.is_err() {
                            // The store is gone: the daemon is shutting down.
                            return;
                        }
                    }
                }
                continue;
            };
            let outcome = tokio::select! {
                () = cancel.cancelled() => return,
                r = sink.deliver(events, &cancel) => r,
            };
            match outcome.and_then(|seq| Ok(feed.ack_consumer(&self.name, seq).map(|()| seq)?)) {
                Ok(seq) => {
                    if failures > 0 {
                        set_last_error(&self.store, &self.name, None);
                    }
                    failures = 0;
                    tracing::debug!(sink = %self.name, seq, "Sink acknowledged events.");
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    self.failed(&e, Some(first), failures, &cancel).await;
                }
            }
        }
    }

    /// The events after the cursor (re-registering from 0 if the cursor vanished).
    fn next_events(&self) -> Result<Vec<FeedEvent>, SinkError> {
        let feed = self.store.feed();
        let cursor = match feed.consumer_cursor(&self.name)? {
            Some(c) => c,
            None => {
                feed.register_consumer(&self.name, 0)?;
                0
            }
        };
        Ok(feed.read_after(cursor, self.batch)?)
    }

    async fn failed(
        &self,
        error: &SinkError,
        seq: Option<u64>,
        failures: u32,
        cancel: &CancellationToken,
    ) {
        let mut delay =
            RetryPolicy::unlimited(Duration::from_secs(1), self.max_backoff, Jitter::None)
                .ceiling(failures);
        if is_disk_full(error) {
            // Transient and cheap to look at: continue within seconds once there is room.
            delay = mailsync_actors::disk_space::wait_delay(failures);
        }
        tracing::warn!(
            sink = %self.name,
            seq,
            error = %error,
            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "Sink delivery failed; retrying the same events."
        );
        set_last_error(&self.store, &self.name, Some(&error.to_string()));
        tokio::select! {
            () = cancel.cancelled() => {}
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// Whether a sink error means the disk is full (the floor, ENOSPC, EDQUOT, read-only).
fn is_disk_full(error: &SinkError) -> bool {
    match error {
        SinkError::Store(mailsync_actors::store::StoreError::DiskFull { .. }) => true,
        SinkError::Io { source, .. } => mailsync_actors::disk_space::is_out_of_space(source),
        _ => false,
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
