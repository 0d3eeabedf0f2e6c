//! The vdir sink: a feed consumer (`vdir`) that keeps `<root>/<account>/<calendar>/` in line
//! with the Calendar mirror. `calendar.added` writes `displayname`/`color`, `calendar.removed`
//! removes the folder, and every `event.*` rewrites (or removes) the `.ics` file of the
//! event's series from the stored series (`calendar::store::series`), so the file always
//! shows the current master and exceptions whatever order events arrive in. At start every
//! configured calendar account is reconciled with the store. The cursor moves only after the
//! files of a batch are written and fsynced (see [`super::vdir`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use mailsync_actors::calendar::store as cal_store;
use mailsync_actors::feed::FeedEvent;
use mailsync_actors::mirror::Change;
use mailsync_actors::store::{Store, decode};
use tokio_util::sync::CancellationToken;

use super::vdir::Vdir;
use super::{ConsumerLoop, Deliver, SinkError};

/// The consumer name of the vdir sink.
pub const VDIR_SINK: &str = "vdir";

/// Applies calendar feed events to the vdirs of the accounts.
pub(crate) struct VdirWriter {
    store: Store,
    root: PathBuf,
    opened: HashMap<String, Vdir>,
}

impl VdirWriter {
    pub(crate) fn new(store: Store, root: PathBuf) -> Self {
        Self {
            store,
            root,
            opened: HashMap::new(),
        }
    }

    fn vdir(&mut self, account: &str) -> Result<Vdir, SinkError> {
        if let Some(v) = self.opened.get(account) {
            return Ok(v.clone());
        }
        if account.is_empty() || account == "." || account == ".." || account.contains('/') {
            return Err(SinkError::BadAccount(account.to_string()));
        }
        let v = Vdir::open(self.root.join(account))?;
        self.opened.insert(account.to_string(), v.clone());
        Ok(v)
    }

    fn calendar_entry(
        &self,
        account: &str,
        calendar_id: &str,
    ) -> Result<Option<mailsync_actors::calendar_model::CalendarEntry>, SinkError> {
        Ok(cal_store::calendars(&self.store, account)?
            .into_iter()
            .find(|c| c.entry.id == calendar_id)
            .map(|c| c.entry))
    }

    /// Rewrites one series from the store.
    fn sync_series(
        &mut self,
        account: &str,
        calendar_id: &str,
        series_id: &str,
    ) -> Result<(), SinkError> {
        let vdir = self.vdir(account)?;
        let events = cal_store::series(&self.store, account, calendar_id, series_id)?;
        if events.is_empty() {
            vdir.remove_series(calendar_id, series_id)?;
        } else {
            vdir.write_series(calendar_id, series_id, &events)?;
        }
        Ok(())
    }

    /// Applies a batch; returns its last seq.
    pub(crate) fn apply_batch(&mut self, events: &[FeedEvent]) -> Result<u64, SinkError> {
        let mut last = 0;
        for ev in events {
            last = ev.seq;
            if !(ev.kind.starts_with("event.") || ev.kind.starts_with("calendar.")) {
                continue;
            }
            let change: Change = match decode(&ev.payload) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(sink = VDIR_SINK, seq = ev.seq, error = %e, "Skipping a feed event that does not decode.");
                    continue;
                }
            };
            let account = ev.account.clone();
            match change {
                Change::CalendarAdded { calendar } => {
                    self.vdir(&account)?.write_calendar_meta(&calendar)?;
                }
                // Removed then re-added within one batch: the store is the truth.
                Change::CalendarRemoved { calendar_id }
                    if self.calendar_entry(&account, &calendar_id)?.is_none() =>
                {
                    self.vdir(&account)?.remove_calendar(&calendar_id)?;
                }
                Change::EventCreated { calendar_id, event }
                | Change::EventUpdated { calendar_id, event } => {
                    self.sync_series(&account, &calendar_id, event.series_id())?;
                }
                Change::EventDeleted {
                    calendar_id,
                    series_id,
                    ..
                } => {
                    self.sync_series(&account, &calendar_id, &series_id)?;
                }
                _ => {}
            }
        }
        Ok(last)
    }

    /// Makes every calendar folder of `account` match the store.
    pub(crate) fn reconcile(&mut self, account: &str) -> Result<(), SinkError> {
        let vdir = self.vdir(account)?;
        for c in cal_store::calendars(&self.store, account)? {
            let events = cal_store::events(&self.store, account, &c.entry.id)?;
            vdir.reconcile_calendar(&c.entry, &events)?;
        }
        Ok(())
    }
}

/// The sink task.
pub(crate) struct VdirSink {
    store: Store,
    root: PathBuf,
    accounts: Vec<String>,
    writer: Option<VdirWriter>,
}

impl VdirSink {
    pub(crate) fn new(store: Store, root: PathBuf, accounts: Vec<String>) -> Self {
        Self {
            store,
            root,
            accounts,
            writer: None,
        }
    }

    /// Reconciles every calendar account, then follows the feed until `cancel` fires.
    pub(crate) async fn run(mut self, cancel: CancellationToken) {
        let consumer = ConsumerLoop {
            name: VDIR_SINK.to_string(),
            store: self.store.clone(),
            max_backoff: Duration::from_secs(300),
        };
        if let Err(e) = consumer.register() {
            tracing::error!(sink = VDIR_SINK, error = %e, "Cannot register the vdir sink.");
        }
        let mut writer = VdirWriter::new(self.store.clone(), self.root.clone());
        let accounts = self.accounts.clone();
        let joined = tokio::task::spawn_blocking(move || {
            for account in &accounts {
                if let Err(e) = writer.reconcile(account) {
                    tracing::warn!(sink = VDIR_SINK, account = %account, error = %e, "vdir reconcile failed; the feed will still be applied.");
                }
            }
            writer
        })
        .await;
        self.writer = joined.ok();
        consumer.run(self, cancel).await;
    }
}

impl Deliver for VdirSink {
    async fn deliver(
        &mut self,
        events: Vec<FeedEvent>,
        _cancel: &CancellationToken,
    ) -> Result<u64, SinkError> {
        let mut writer = self
            .writer
            .take()
            .unwrap_or_else(|| VdirWriter::new(self.store.clone(), self.root.clone()));
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
