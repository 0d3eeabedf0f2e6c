//! The driver shared by the sinks that write files (Maildir, vdir): at start every configured
//! account is reconciled with the store on a blocking thread, then the sink follows the feed
//! through [`ConsumerLoop`], each batch applied by its [`FileWriter`] on a blocking thread (file
//! writes and fsyncs must not stall the runtime). The writer owns what it keeps between batches
//! (opened folders, indexes); the cursor moves only after `apply_batch` returned, i.e. after the
//! batch's files are durable.

use std::path::PathBuf;
use std::time::Duration;

use mailsync_actors::feed::FeedEvent;
use mailsync_actors::store::Store;
use tokio_util::sync::CancellationToken;

use super::{ConsumerLoop, Deliver, SinkError};

/// The most events one batch of a file sink carries: each batch ends in fsyncs of the
/// touched directories and an acknowledgement, so larger batches spread those over more
/// files (the events are small; bodies are read from the store one at a time).
const FILE_BATCH_EVENTS: usize = 500;

/// What a file-writing sink does with the store and the feed; runs on blocking threads.
pub(crate) trait FileWriter: Send + 'static {
    /// The sink's consumer name (its feed cursor).
    const NAME: &'static str;
    /// A writer for the folders under `root`.
    fn new(store: Store, root: PathBuf) -> Self;
    /// Makes `account`'s folders match the store; returns a summary for the log.
    fn reconcile(&mut self, account: &str, cancel: &CancellationToken)
    -> Result<String, SinkError>;
    /// Applies a batch durably and returns the seq to acknowledge.
    fn apply_batch(&mut self, events: &[FeedEvent]) -> Result<u64, SinkError>;
}

/// A feed consumer driving a [`FileWriter`].
pub(crate) struct FileSink<W> {
    store: Store,
    root: PathBuf,
    accounts: Vec<String>,
    writer: Option<W>,
}

impl<W: FileWriter> FileSink<W> {
    /// A sink writing `accounts` under `root`.
    pub(crate) fn new(store: Store, root: PathBuf, accounts: Vec<String>) -> Self {
        Self {
            store,
            root,
            accounts,
            writer: None,
        }
    }

    /// Reconciles every account, then follows the feed until `cancel` fires.
    pub(crate) async fn run(mut self, cancel: CancellationToken) {
        let consumer = ConsumerLoop {
            name: W::NAME.to_string(),
            store: self.store.clone(),
            max_backoff: Duration::from_secs(300),
            batch: FILE_BATCH_EVENTS,
        };
        if let Err(e) = consumer.register() {
            tracing::error!(sink = W::NAME, error = %e, "Cannot register the sink.");
        }
        let mut writer = W::new(self.store.clone(), self.root.clone());
        let accounts = self.accounts.clone();
        let token = cancel.clone();
        let joined = tokio::task::spawn_blocking(move || {
            for account in &accounts {
                match writer.reconcile(account, &token) {
                    Ok(summary) => tracing::info!(
                        sink = W::NAME,
                        account = %account,
                        summary = %summary,
                        "Sink reconciled with the store."
                    ),
                    Err(e) => tracing::warn!(
                        sink = W::NAME,
                        account = %account,
                        error = %e,
                        "Sink reconcile failed; the feed will still be applied."
                    ),
                }
            }
            writer
        })
        .await;
        self.writer = joined.ok();
        consumer.run(self, cancel).await;
    }
}

impl<W: FileWriter> Deliver for FileSink<W> {
    async fn deliver(
        &mut self,
        events: Vec<FeedEvent>,
        _cancel: &CancellationToken,
    ) -> Result<u64, SinkError> {
        let mut writer = self
            .writer
            .take()
            .unwrap_or_else(|| W::new(self.store.clone(), self.root.clone()));
        let (writer, result) = tokio::task::spawn_blocking(move || {
            let r = writer.apply_batch(&events);
            (writer, r)
        })
        .await
        .map_err(|e| SinkError::Join(e.to_string()))?;
        self.writer = Some(writer);
        result
    }
}
