//! The Calendar source: Google Calendar's sync recipe (calendar-api.md §9) as a
//! [`SyncSource`] over the [`CalendarApi`] port. It owns the calendar list's sync token and, per
//! calendar, the events sync token (layout and writes in `store.rs`).
//!
//! * **Backfill** (`full.rs`): `FullSync` lists every calendar (selected ones are added, with
//!   `calendar.added`, and get a `CalendarFull` job; calendars gone from the list are removed
//!   with `calendar.removed`), then stores the list token. `CalendarFull` lists every event page
//!   (deleted included, series not expanded) into a fresh generation; when the last page is
//!   durable it prunes and moves the fresh generation into the current one, emitting exactly
//!   the differences, and only then stores the page's `nextSyncToken`. A first sync and a
//!   resync after a 410 are the same code: consumers never see a wipe and re-add.
//! * **Incremental** (this file): a round is the calendar list's changes, then one events
//!   listing per calendar with its token, page by page (each page one transaction; the token
//!   moves with the last page). Cancelled items delete the event or series; cancelled
//!   exceptions are kept as the tombstone of one occurrence (announced as `event.deleted` of
//!   that instance); a changed etag replaces an event.
//!   A 410 drops that calendar's token, marks it `resyncing` and enqueues its `CalendarFull`;
//!   the other calendars go on. The round's last step acks the push jobs it covers.
//! * **Ingest**: nothing to fetch: events come with their details.

mod full;
pub mod port;
pub mod store;
#[cfg(test)]
mod tests;

use crate::calendar_model::{CalendarEntry, CalendarEvent, EventsQuery, PageCursor};
use crate::error::{ApiError, SyncError};
use crate::jobs::{self, BackfillJob};
use crate::mailbox::Job;
use crate::mirror::{Change, emit};
use crate::report::{self, ChildReport};
use crate::source::{
    BackfillNext, IncrementalPage, IngestBatch, SourceCx, SourceFuture, SourceKind, StartState,
    SyncSource,
};
use crate::spec::now_ms;
use crate::store::{Space, StoreError, StoreTx, TxError};
use port::CalendarApi;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use store::{CalendarListState, CalendarState, FullStep, FullSync, Generation};

/// Options of a calendar account.
#[derive(Clone, Debug, Default)]
pub struct CalendarOptions {
    /// The calendars to sync by id (`None` = all in the list).
    pub calendars: Option<Vec<String>>,
}

impl CalendarOptions {
    fn selects(&self, id: &str) -> bool {
        self.calendars
            .as_ref()
            .is_none_or(|ids| ids.iter().any(|c| c == id))
    }
}

/// An incremental round in progress (memory only: a restart begins a new round, which only
/// re-reads what the stored page tokens say).
#[derive(Debug, Default)]
struct Round {
    list_done: bool,
    remaining: VecDeque<String>,
}

/// The Calendar source of one account.
pub struct CalendarSource {
    api: Arc<dyn CalendarApi>,
    options: CalendarOptions,
    round: Mutex<Option<Round>>,
}

/// What one page of a calendar's event changes left to do.
enum EventsPage {
    /// The calendar's token moved: done with it this round.
    Last,
    /// More pages follow.
    More,
    /// Google answered 404: the calendar is gone (the list will say so).
    CalendarGone,
}

pub(crate) fn store_err(e: impl std::fmt::Display) -> SyncError {
    SyncError::Store(e.to_string())
}

impl CalendarSource {
    /// A Calendar source over `api`.
    pub fn new(api: Arc<dyn CalendarApi>, options: CalendarOptions) -> CalendarSource {
        CalendarSource {
            api,
            options,
            round: Mutex::new(None),
        }
    }

    fn round(&self) -> std::sync::MutexGuard<'_, Option<Round>> {
        self.round.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn incremental(
        &self,
        cx: &SourceCx<'_>,
        pushes: &[Job],
    ) -> Result<IncrementalPage, SyncError> {
        let account = &cx.account.0;
        let started = self.round().is_some();
        if !started {
            let remaining = store::calendars(cx.store, account)
                .map_err(store_err)?
                .into_iter()
                .filter(|c| c.sync_token.is_some() && c.full.is_none())
                .map(|c| c.entry.id)
                .collect();
            *self.round() = Some(Round {
                list_done: false,
                remaining,
            });
        }
        let list_done = self.round().as_ref().is_some_and(|r| r.list_done);
        if !list_done {
            let done = self.list_changes_page(cx).await?;
            if done && let Some(r) = self.round().as_mut() {
                r.list_done = true;
            }
            return Ok(IncrementalPage::default());
        }
        let next = self.round().as_mut().and_then(|r| r.remaining.pop_front());
        let Some(calendar) = next else {
            *self.round() = None;
            let covered: Vec<&Job> = pushes
                .iter()
                .filter(|j| jobs::calendar_push_calendar(j).is_some())
                .collect();
            if !covered.is_empty() {
                cx.store
                    .transaction(|tx| {
                        for j in &covered {
                            tx.ack(j)?;
                        }
                        Ok(())
                    })
                    .map_err(store_err)?;
                cx.store.flush_async().await.map_err(store_err)?;
            }
            return Ok(IncrementalPage {
                round_done: true,
                ingest_work: false,
                acked: covered.len(),
            });
        };
        match self.events_changes_page(cx, &calendar).await {
            Ok(EventsPage::Last) => {}
            Ok(EventsPage::More) => {
                if let Some(r) = self.round().as_mut() {
                    r.remaining.push_front(calendar);
                }
            }
            Ok(EventsPage::CalendarGone) => {
                // The calendar went away after this round read the list (404 on its events):
                // read the list again, which removes it, instead of retrying it for ever.
                tracing::info!(account = %cx.account, calendar = %calendar, "Calendar not found; reading the calendar list again.");
                if let Some(r) = self.round().as_mut() {
                    r.list_done = false;
                }
            }
            Err(e) => {
                // Retry this calendar after the driver's backoff; the round resumes with it.
                if let Some(r) = self.round().as_mut() {
                    r.remaining.push_front(calendar);
                }
                return Err(e);
            }
        }
        Ok(IncrementalPage::default())
    }

    /// One page of calendar-list changes; true when the list's token moved (last page).
    async fn list_changes_page(&self, cx: &SourceCx<'_>) -> Result<bool, SyncError> {
        let account = &cx.account.0;
        let list: CalendarListState = store::load(cx.store, &store::list_key(account))
            .map_err(store_err)?
            .unwrap_or_default();
        let Some(token) = list.sync_token.clone() else {
            return Ok(true);
        };
        let page = match self
            .api
            .list_calendars(Some(&token), list.incremental_page_token.as_deref())
            .await
        {
            Ok(p) => p,
            Err(ApiError::SyncTokenExpired) => {
                tracing::warn!(account = %cx.account, "Calendar list token expired (410); listing the calendars again.");
                let now = now_ms();
                cx.store
                    .transaction(|tx| {
                        save_tx_list(tx, account, &CalendarListState::default())?;
                        jobs::enqueue_backfill_tx(tx, cx.account, BackfillJob::FullSync, now)
                    })
                    .map_err(store_err)?;
                cx.store.flush_async().await.map_err(store_err)?;
                report::send(cx.report, ChildReport::BackfillWork);
                return Ok(true);
            }
            Err(e) => return Err(e.into()),
        };
        let now = now_ms();
        let removed_keys = self.removed_calendar_keys(cx, &page.entries)?;
        let added = cx
            .store
            .transaction(|tx| {
                let mut added = 0;
                for entry in &page.entries {
                    if entry.deleted || entry.hidden || !self.options.selects(&entry.id) {
                        let keys = removed_keys
                            .iter()
                            .find(|(id, _)| *id == entry.id)
                            .map(|(_, k)| k.as_slice())
                            .unwrap_or(&[]);
                        remove_calendar_tx(tx, cx.account, &entry.id, keys, now)?;
                    } else if add_or_update_calendar_tx(tx, cx.account, entry, now)? {
                        added += 1;
                    }
                }
                let mut list: CalendarListState =
                    store::load_tx(tx, &store::list_key(account))?.unwrap_or_default();
                match &page.next {
                    PageCursor::NextPage(t) => list.incremental_page_token = Some(t.clone()),
                    PageCursor::SyncToken(t) => {
                        list.sync_token = Some(t.clone());
                        list.incremental_page_token = None;
                    }
                }
                save_tx_list(tx, account, &list)?;
                Ok(added)
            })
            .map_err(store_err)?;
        cx.store.flush_async().await.map_err(store_err)?;
        if added > 0 {
            report::send(cx.report, ChildReport::BackfillWork);
        }
        Ok(matches!(page.next, PageCursor::SyncToken(_)))
    }

    /// For the entries of a list page that leave the set: the keys of their stored state and
    /// events, read before the transaction (sled transactions cannot scan).
    fn removed_calendar_keys(
        &self,
        cx: &SourceCx<'_>,
        entries: &[CalendarEntry],
    ) -> Result<KeysById, SyncError> {
        let account = &cx.account.0;
        let mut out = Vec::new();
        for e in entries
            .iter()
            .filter(|e| e.deleted || e.hidden || !self.options.selects(&e.id))
        {
            let mut keys = Vec::new();
            for g in [Generation::Current, Generation::Fresh] {
                keys.extend(
                    store::scan_keys(
                        cx.store,
                        &store::events_prefix(account, &e.id, g),
                        usize::MAX,
                    )
                    .map_err(store_err)?,
                );
            }
            out.push((e.id.clone(), keys));
        }
        Ok(out)
    }

    /// One page of one calendar's event changes.
    async fn events_changes_page(
        &self,
        cx: &SourceCx<'_>,
        calendar: &str,
    ) -> Result<EventsPage, SyncError> {
        let account = &cx.account.0;
        let Some(state) =
            store::load::<CalendarState>(cx.store, &store::calendar_key(account, calendar))
                .map_err(store_err)?
        else {
            return Ok(EventsPage::Last);
        };
        let Some(token) = state.sync_token.clone().filter(|_| state.full.is_none()) else {
            return Ok(EventsPage::Last);
        };
        let query = EventsQuery {
            sync_token: Some(token),
            page_token: state.incremental_page_token.clone(),
        };
        let page = match self.api.list_events(calendar, &query).await {
            Ok(p) => p,
            Err(ApiError::SyncTokenExpired) => {
                self.start_resync(cx, calendar, "sync token expired (410)")
                    .await?;
                return Ok(EventsPage::Last);
            }
            Err(ApiError::NotFound) => return Ok(EventsPage::CalendarGone),
            Err(e) => return Err(e.into()),
        };
        let series_keys = deleted_series_keys(cx, calendar, &page.events)?;
        let now = now_ms();
        cx.store
            .transaction(|tx| {
                apply_changes_tx(tx, account, calendar, &page.events, &series_keys, now)?;
                let key = store::calendar_key(account, calendar);
                let Some(mut st) = store::load_tx::<CalendarState>(tx, &key)? else {
                    return Ok(());
                };
                match &page.next {
                    PageCursor::NextPage(t) => st.incremental_page_token = Some(t.clone()),
                    PageCursor::SyncToken(t) => {
                        st.sync_token = Some(t.clone());
                        st.token_at_ms = Some(now);
                        st.incremental_page_token = None;
                        st.last_sync_ms = Some(now);
                    }
                }
                store::save_tx(tx, &key, &st)
            })
            .map_err(store_err)?;
        cx.store.flush_async().await.map_err(store_err)?;
        Ok(match page.next {
            PageCursor::SyncToken(_) => EventsPage::Last,
            PageCursor::NextPage(_) => EventsPage::More,
        })
    }

    /// Drops a calendar's token, marks it resyncing and enqueues its full sync.
    async fn start_resync(
        &self,
        cx: &SourceCx<'_>,
        calendar: &str,
        why: &str,
    ) -> Result<(), SyncError> {
        tracing::warn!(account = %cx.account, calendar, reason = why, "Calendar token invalid; resyncing it into a fresh generation.");
        let account = &cx.account.0;
        let fresh = store::scan_keys(
            cx.store,
            &store::events_prefix(account, calendar, Generation::Fresh),
            usize::MAX,
        )
        .map_err(store_err)?;
        let now = now_ms();
        cx.store
            .transaction(|tx| {
                let key = store::calendar_key(account, calendar);
                let Some(mut st) = store::load_tx::<CalendarState>(tx, &key)? else {
                    return Ok(());
                };
                for k in &fresh {
                    tx.remove(Space::Calendar, k)?;
                }
                st.sync_token = None;
                st.token_at_ms = None;
                st.incremental_page_token = None;
                st.resyncing = true;
                st.full = Some(FullSync {
                    step: FullStep::Listing { page_token: None },
                    pending_token: None,
                    pages: 0,
                });
                store::save_tx(tx, &key, &st)?;
                jobs::enqueue_backfill_tx(
                    tx,
                    cx.account,
                    BackfillJob::CalendarFull {
                        calendar_id: calendar.to_string(),
                    },
                    now,
                )
            })
            .map_err(store_err)?;
        cx.store.flush_async().await.map_err(store_err)?;
        report::send(cx.report, ChildReport::BackfillWork);
        Ok(())
    }
}

/// Store keys grouped by the calendar or series they belong to.
type KeysById = Vec<(String, Vec<Vec<u8>>)>;

fn save_tx_list(tx: &StoreTx<'_>, account: &str, list: &CalendarListState) -> Result<(), TxError> {
    store::save_tx(tx, &store::list_key(account), list)
}

/// Adds a calendar (state, `calendar.added`, its full-sync job) or refreshes its entry; true
/// when it was new.
pub(crate) fn add_or_update_calendar_tx(
    tx: &StoreTx<'_>,
    account: &crate::model::AccountId,
    entry: &CalendarEntry,
    now: u64,
) -> Result<bool, TxError> {
    let key = store::calendar_key(&account.0, &entry.id);
    if let Some(mut st) = store::load_tx::<CalendarState>(tx, &key)? {
        if st.entry != *entry {
            st.entry = entry.clone();
            store::save_tx(tx, &key, &st)?;
        }
        return Ok(false);
    }
    let st = CalendarState {
        entry: entry.clone(),
        sync_token: None,
        token_at_ms: None,
        incremental_page_token: None,
        full: Some(FullSync {
            step: FullStep::Listing { page_token: None },
            pending_token: None,
            pages: 0,
        }),
        resyncing: false,
        last_sync_ms: None,
    };
    store::save_tx(tx, &key, &st)?;
    let change = Change::CalendarAdded {
        calendar: entry.clone(),
    };
    // A calendar removed and added again gets a new event: the entry's etag is part of the key.
    let k = format!("calendar.added:{}:{}:{}", account.0, entry.id, entry.etag);
    emit(tx, &account.0, k, &change, now)?;
    jobs::enqueue_backfill_tx(
        tx,
        account,
        BackfillJob::CalendarFull {
            calendar_id: entry.id.clone(),
        },
        now,
    )?;
    Ok(true)
}

/// Removes a calendar, its events (`keys`, read before the transaction) and emits
/// `calendar.removed`; unknown calendars are a no-op.
pub(crate) fn remove_calendar_tx(
    tx: &StoreTx<'_>,
    account: &crate::model::AccountId,
    calendar: &str,
    keys: &[Vec<u8>],
    now: u64,
) -> Result<(), TxError> {
    let key = store::calendar_key(&account.0, calendar);
    let Some(st) = store::load_tx::<CalendarState>(tx, &key)? else {
        return Ok(());
    };
    tx.remove(Space::Calendar, &key)?;
    for k in keys {
        tx.remove(Space::Calendar, k)?;
    }
    let change = Change::CalendarRemoved {
        calendar_id: calendar.to_string(),
    };
    let k = format!(
        "calendar.removed:{}:{calendar}:{}",
        account.0, st.entry.etag
    );
    emit(tx, &account.0, k, &change, now)?;
    Ok(())
}

/// For the cancelled series (or single events) of a page: the keys of their stored events,
/// read before the transaction.
fn deleted_series_keys(
    cx: &SourceCx<'_>,
    calendar: &str,
    events: &[CalendarEvent],
) -> Result<KeysById, SyncError> {
    let mut out = Vec::new();
    for ev in events
        .iter()
        .filter(|e| e.is_cancelled() && !e.is_exception())
    {
        let keys = store::scan_keys(
            cx.store,
            &store::series_prefix(&cx.account.0, calendar, &ev.id, Generation::Current),
            usize::MAX,
        )
        .map_err(store_err)?;
        out.push((ev.id.clone(), keys));
    }
    Ok(out)
}

/// Applies a page of incremental changes to the current generation.
fn apply_changes_tx(
    tx: &StoreTx<'_>,
    account: &str,
    calendar: &str,
    events: &[CalendarEvent],
    series_keys: &[(String, Vec<Vec<u8>>)],
    now: u64,
) -> Result<(), TxError> {
    for ev in events {
        if ev.is_cancelled() && !ev.is_exception() {
            // A deleted single event or series: it and its exceptions go.
            let keys = series_keys
                .iter()
                .find(|(id, _)| *id == ev.id)
                .map(|(_, k)| k.as_slice())
                .unwrap_or(&[]);
            store::delete_events_tx(tx, account, calendar, keys, now)?;
        } else {
            // A live event, or a cancelled occurrence of a live series (kept as its tombstone).
            store::upsert_event_tx(tx, account, calendar, ev, now)?;
        }
    }
    Ok(())
}

impl SyncSource for CalendarSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Calendar
    }

    fn ensure_jobs(&self, cx: &SourceCx<'_>) -> Result<StartState, StoreError> {
        let account = &cx.account.0;
        let list: CalendarListState =
            store::load(cx.store, &store::list_key(account))?.unwrap_or_default();
        let pending: Vec<String> = store::calendars(cx.store, account)?
            .into_iter()
            .filter(|c| c.full.is_some())
            .map(|c| c.entry.id)
            .collect();
        let now = now_ms();
        cx.store.transaction(|tx| {
            if list.sync_token.is_none() {
                jobs::enqueue_backfill_tx(tx, cx.account, BackfillJob::FullSync, now)?;
            }
            for calendar_id in &pending {
                jobs::enqueue_backfill_tx(
                    tx,
                    cx.account,
                    BackfillJob::CalendarFull {
                        calendar_id: calendar_id.clone(),
                    },
                    now,
                )?;
            }
            Ok(())
        })?;
        cx.store.flush()?;
        Ok(StartState::Running)
    }

    fn request_resync(&self, cx: &SourceCx<'_>) -> Result<(), StoreError> {
        // Every calendar is listed again into a fresh generation and swapped in with its
        // differences; the list is listed again too.
        let account = &cx.account.0;
        let ids: Vec<String> = store::calendars(cx.store, account)?
            .into_iter()
            .map(|c| c.entry.id)
            .collect();
        let now = now_ms();
        cx.store.transaction(|tx| {
            jobs::enqueue_backfill_tx(tx, cx.account, BackfillJob::FullSync, now)?;
            for id in &ids {
                let key = store::calendar_key(account, id);
                if let Some(mut st) = store::load_tx::<CalendarState>(tx, &key)?
                    && st.full.is_none()
                {
                    st.full = Some(FullSync {
                        step: FullStep::Listing { page_token: None },
                        pending_token: None,
                        pages: 0,
                    });
                    st.resyncing = true;
                    store::save_tx(tx, &key, &st)?;
                }
                jobs::enqueue_backfill_tx(
                    tx,
                    cx.account,
                    BackfillJob::CalendarFull {
                        calendar_id: id.clone(),
                    },
                    now,
                )?;
            }
            Ok(())
        })?;
        cx.store.flush()
    }

    fn incremental_ready(&self, cx: &SourceCx<'_>) -> Result<bool, StoreError> {
        let list: CalendarListState =
            store::load(cx.store, &store::list_key(&cx.account.0))?.unwrap_or_default();
        Ok(list.sync_token.is_some())
    }

    fn incremental_page<'a>(
        &'a self,
        cx: &'a SourceCx<'a>,
        pushes: &'a [Job],
    ) -> SourceFuture<'a, IncrementalPage> {
        Box::pin(self.incremental(cx, pushes))
    }

    fn backfill_step<'a>(
        &'a self,
        cx: &'a SourceCx<'a>,
        job: &'a Job,
    ) -> SourceFuture<'a, BackfillNext> {
        Box::pin(full::step(self, cx, job))
    }

    fn ingest_batch<'a>(
        &'a self,
        _cx: &'a SourceCx<'a>,
        _jobs: &'a [Job],
    ) -> SourceFuture<'a, IngestBatch> {
        Box::pin(async { Ok(IngestBatch::default()) })
    }

    fn cursor(&self, cx: &SourceCx<'_>) -> Option<String> {
        let status = store::calendar_status(cx.store, &cx.account.0).ok()?;
        let synced = status.iter().filter(|c| c.token_at_ms.is_some()).count();
        Some(format!(
            "{synced}/{} calendars with a sync token",
            status.len()
        ))
    }

    fn last_sync_ms(&self, cx: &SourceCx<'_>) -> Option<u64> {
        store::calendars(cx.store, &cx.account.0)
            .ok()?
            .iter()
            .filter_map(|c| c.last_sync_ms)
            .max()
    }
}
