//! The vdir sink: a feed consumer (`vdir`) that keeps `<root>/<account>/<calendar>/` in line
//! with the Calendar mirror. `calendar.added` writes `displayname`/`color`, `calendar.removed`
//! removes the folder, and every `event.*` rewrites (or removes) the `.ics` file of the
//! event's series from the stored series (`calendar::store::series`), so the file always
//! shows the current master and exceptions whatever order events arrive in. At start every
//! configured calendar account is reconciled with the store. The cursor moves only after the
//! files of a batch are written and fsynced (see [`super::vdir`]).

use std::collections::HashMap;
use std::path::PathBuf;

use mailsync_actors::calendar::store as cal_store;
use mailsync_actors::feed::FeedEvent;
use mailsync_actors::mirror::Change;
use mailsync_actors::store::{Store, decode};
use tokio_util::sync::CancellationToken;

use super::SinkError;
use super::file_sink::{FileSink, FileWriter};
use super::vdir::Vdir;

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

/// The sink task: the file-sink driver over [`VdirWriter`].
pub(crate) type VdirSink = FileSink<VdirWriter>;

impl FileWriter for VdirWriter {
    const NAME: &'static str = VDIR_SINK;

    fn new(store: Store, root: PathBuf) -> Self {
        VdirWriter::new(store, root)
    }

    fn reconcile(
        &mut self,
        account: &str,
        _cancel: &CancellationToken,
    ) -> Result<String, SinkError> {
        VdirWriter::reconcile(self, account)?;
        Ok("calendars match the store".to_string())
    }

    fn apply_batch(&mut self, events: &[FeedEvent]) -> Result<u64, SinkError> {
        VdirWriter::apply_batch(self, events)
    }
}
