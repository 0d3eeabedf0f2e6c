//! What the Calendar source keeps in the store (`Space::Calendar`), how those values are
//! versioned, and the writes that change the calendar mirror together with their feed events.
//!
//! Keys (all under `<account>\0`):
//! - `L` → [`CalendarListState`]: the calendar list's sync token and listing progress.
//! - `C\0<calendar>` → [`CalendarState`]: the calendar's entry, its events sync token (owned by
//!   the account, stored only when every page it covers is durable) and full-sync progress.
//! - `E\0<calendar>\0<series>\0<event>` → [`CalendarEvent`]: the current generation. A series
//!   (master plus exceptions) is one key prefix, so it is read and deleted as a unit.
//! - `S\0<calendar>\0<series>\0<event>` → [`CalendarEvent`]: the fresh generation a full sync
//!   fills; swapped into `E` only when the listing is complete.
//! - `X\0<calendar>` → empty: calendars seen by a full calendar-list listing (scratch).
//!
//! **Invariant:** every write to `E` or to the calendar set appends its feed event in the same
//! transaction, keyed by the event's etag (a new version is a new key, a replay is no event).

use crate::calendar_model::{CalendarEntry, CalendarEvent};
use crate::codec::{CodecError, Versioned};
use crate::mirror::{Change, emit};
use crate::store::{Space, Store, StoreError, StoreTx, TxError, decode, encode};
use serde::{Deserialize, Serialize};

/// Progress of the calendar list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CalendarListState {
    /// Token of the next incremental listing (`None` until the first full listing ends).
    pub sync_token: Option<String>,
    /// Page token of a full listing in progress.
    pub full_page_token: Option<String>,
    /// Page token of an incremental listing in progress.
    pub incremental_page_token: Option<String>,
    /// The token a full listing's last page returned; stored as `sync_token` once the
    /// calendars it no longer lists are removed.
    pub full_pending_token: Option<String>,
}

/// Where a calendar's full sync is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FullStep {
    /// Listing every event into the fresh generation; the next page token.
    Listing {
        /// Next page (`None` = first page).
        page_token: Option<String>,
    },
    /// Listing done: removing current events absent from the fresh generation.
    Pruning,
    /// Moving the fresh generation into the current one (emitting the differences).
    Moving,
}

/// A full sync in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FullSync {
    /// The step.
    pub step: FullStep,
    /// The token the last page returned, stored as the calendar's token once swapped in.
    pub pending_token: Option<String>,
    /// Pages listed.
    pub pages: u64,
}

/// The durable sync state of one calendar.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarState {
    /// The list entry (name, colour, zone).
    pub entry: CalendarEntry,
    /// Token of the next incremental listing.
    #[serde(default)]
    pub sync_token: Option<String>,
    /// When the token was stored (ms since the epoch).
    #[serde(default)]
    pub token_at_ms: Option<u64>,
    /// Page token of an incremental listing in progress.
    #[serde(default)]
    pub incremental_page_token: Option<String>,
    /// A full sync in progress.
    #[serde(default)]
    pub full: Option<FullSync>,
    /// The token was invalidated (410) and a full sync replaces the events.
    #[serde(default)]
    pub resyncing: bool,
    /// When the last listing (full or incremental) finished.
    #[serde(default)]
    pub last_sync_ms: Option<u64>,
}

fn not_in_schema_1<T: Versioned>() -> Result<T, CodecError> {
    Err(CodecError::malformed::<T>(
        "calendar values did not exist in schema 1",
    ))
}

macro_rules! versioned_calendar {
    ($($t:ty => $name:literal),* $(,)?) => {$(
        impl Versioned for $t {
            const NAME: &'static str = $name;
            const VERSION: u16 = 1;
            fn from_legacy(_body: &[u8]) -> Result<Self, CodecError> {
                not_in_schema_1()
            }
        }
    )*};
}

versioned_calendar!(
    CalendarListState => "calendar list state",
    CalendarState => "calendar state",
    CalendarEvent => "calendar event",
    CalendarEntry => "calendar entry",
);

fn base(account: &str, tag: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(account.len() + 40);
    k.extend_from_slice(account.as_bytes());
    k.push(0);
    k.extend_from_slice(tag);
    k
}

fn with(mut k: Vec<u8>, part: &str) -> Vec<u8> {
    k.push(0);
    k.extend_from_slice(part.as_bytes());
    k
}

/// Key of the calendar list state.
pub fn list_key(account: &str) -> Vec<u8> {
    base(account, b"L")
}

/// Key of a calendar's state.
pub fn calendar_key(account: &str, calendar: &str) -> Vec<u8> {
    with(base(account, b"C"), calendar)
}

/// Prefix of every calendar state of an account.
pub fn calendars_prefix(account: &str) -> Vec<u8> {
    let mut k = base(account, b"C");
    k.push(0);
    k
}

/// Which generation of events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Generation {
    /// What consumers have been told about.
    Current,
    /// What a full sync in progress has listed.
    Fresh,
}

fn gen_tag(g: Generation) -> &'static [u8] {
    match g {
        Generation::Current => b"E",
        Generation::Fresh => b"S",
    }
}

/// Prefix of one calendar's events of a generation.
pub fn events_prefix(account: &str, calendar: &str, g: Generation) -> Vec<u8> {
    let mut k = with(base(account, gen_tag(g)), calendar);
    k.push(0);
    k
}

/// Prefix of one series.
pub fn series_prefix(account: &str, calendar: &str, series: &str, g: Generation) -> Vec<u8> {
    let mut k = events_prefix(account, calendar, g);
    k.extend_from_slice(series.as_bytes());
    k.push(0);
    k
}

/// Key of one event.
pub fn event_key(account: &str, calendar: &str, ev: &CalendarEvent, g: Generation) -> Vec<u8> {
    let mut k = series_prefix(account, calendar, ev.series_id(), g);
    k.extend_from_slice(ev.id.as_bytes());
    k
}

/// Key of a calendar seen by a full list listing.
pub fn seen_key(account: &str, calendar: &str) -> Vec<u8> {
    with(base(account, b"X"), calendar)
}

fn sled_err(context: &'static str) -> impl FnOnce(sled::Error) -> StoreError {
    move |source| StoreError::Sled { context, source }
}

/// Reads a value outside a transaction.
pub fn load<T: Versioned>(store: &Store, key: &[u8]) -> Result<Option<T>, StoreError> {
    match store
        .kv(Space::Calendar)
        .get(key)
        .map_err(sled_err("reading calendar state"))?
    {
        Some(v) => Ok(Some(decode(&v)?)),
        None => Ok(None),
    }
}

/// Reads a value inside a transaction.
pub fn load_tx<T: Versioned>(tx: &StoreTx<'_>, key: &[u8]) -> Result<Option<T>, TxError> {
    match tx.get(Space::Calendar, key)? {
        Some(v) => Ok(Some(decode(&v)?)),
        None => Ok(None),
    }
}

/// Writes a value inside a transaction.
pub fn save_tx<T: Versioned>(tx: &StoreTx<'_>, key: &[u8], value: &T) -> Result<(), TxError> {
    tx.insert(Space::Calendar, key, &encode(value))
}

/// The keys (and values) under a prefix, read outside a transaction.
pub fn scan<T: Versioned>(store: &Store, prefix: &[u8]) -> Result<Vec<(Vec<u8>, T)>, StoreError> {
    let mut out = Vec::new();
    for item in store.kv(Space::Calendar).scan_prefix(prefix) {
        let (k, v) = item.map_err(sled_err("scanning calendar data"))?;
        out.push((k.to_vec(), decode(&v)?));
    }
    Ok(out)
}

/// The keys under a prefix, at most `limit`, read outside a transaction.
pub fn scan_keys(store: &Store, prefix: &[u8], limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut out = Vec::new();
    for item in store.kv(Space::Calendar).scan_prefix(prefix).take(limit) {
        let (k, _) = item.map_err(sled_err("scanning calendar keys"))?;
        out.push(k.to_vec());
    }
    Ok(out)
}

/// Every calendar state of an account, by calendar id.
pub fn calendars(store: &Store, account: &str) -> Result<Vec<CalendarState>, StoreError> {
    Ok(scan::<CalendarState>(store, &calendars_prefix(account))?
        .into_iter()
        .map(|(_, v)| v)
        .collect())
}

/// The current events of one series (master first when present), for sinks.
pub fn series(
    store: &Store,
    account: &str,
    calendar: &str,
    series_id: &str,
) -> Result<Vec<CalendarEvent>, StoreError> {
    let mut evs: Vec<CalendarEvent> = scan::<CalendarEvent>(
        store,
        &series_prefix(account, calendar, series_id, Generation::Current),
    )?
    .into_iter()
    .map(|(_, v)| v)
    .collect();
    evs.sort_by_key(|e| e.recurring_event_id.is_some());
    Ok(evs)
}

/// Every current event of one calendar.
pub fn events(
    store: &Store,
    account: &str,
    calendar: &str,
) -> Result<Vec<CalendarEvent>, StoreError> {
    Ok(scan::<CalendarEvent>(
        store,
        &events_prefix(account, calendar, Generation::Current),
    )?
    .into_iter()
    .map(|(_, v)| v)
    .collect())
}

/// Per-calendar figures for status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarSyncStatus {
    /// Calendar id.
    pub calendar_id: String,
    /// Its name.
    pub summary: String,
    /// Events stored (current generation, exceptions included).
    pub events: u64,
    /// When the last listing finished.
    pub last_sync_ms: Option<u64>,
    /// When the current token was stored (token age = now − this).
    pub token_at_ms: Option<u64>,
    /// A full sync replaces the events (token invalidated).
    pub resyncing: bool,
    /// A full sync is in progress (first sync or resync).
    pub full_sync: bool,
}

/// Status of every calendar of an account.
pub fn calendar_status(
    store: &Store,
    account: &str,
) -> Result<Vec<CalendarSyncStatus>, StoreError> {
    let mut out = Vec::new();
    for c in calendars(store, account)? {
        let events = store
            .kv(Space::Calendar)
            .scan_prefix(events_prefix(account, &c.entry.id, Generation::Current))
            .count() as u64;
        out.push(CalendarSyncStatus {
            calendar_id: c.entry.id.clone(),
            summary: c.entry.summary.clone(),
            events,
            last_sync_ms: c.last_sync_ms,
            token_at_ms: c.token_at_ms,
            resyncing: c.resyncing,
            full_sync: c.full.is_some(),
        });
    }
    Ok(out)
}

/// What an event write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventApplied {
    /// New.
    Created,
    /// Its etag moved.
    Updated,
    /// Same etag: nothing.
    Unchanged,
}

/// Stores a live event in the current generation, emitting `event.created` /
/// `event.updated` keyed by its etag. A cancelled exception (one occurrence of a live series
/// is gone) is stored as the series' tombstone of that occurrence and announced as
/// `event.deleted` of the instance (with its series id and original start), never as a
/// created event; a tombstone that only changes its etag is no new event.
pub fn upsert_event_tx(
    tx: &StoreTx<'_>,
    account: &str,
    calendar: &str,
    ev: &CalendarEvent,
    now_ms: u64,
) -> Result<EventApplied, TxError> {
    let key = event_key(account, calendar, ev, Generation::Current);
    let old: Option<CalendarEvent> = load_tx(tx, &key)?;
    if old.as_ref().is_some_and(|o| o.etag == ev.etag) {
        return Ok(EventApplied::Unchanged);
    }
    let applied = if old.is_some() {
        EventApplied::Updated
    } else {
        EventApplied::Created
    };
    save_tx(tx, &key, ev)?;
    let (change, kind) = if ev.is_cancelled() && ev.is_exception() {
        if old.as_ref().is_some_and(CalendarEvent::is_cancelled) {
            // Already announced as gone.
            return Ok(applied);
        }
        (
            Change::EventDeleted {
                calendar_id: calendar.to_string(),
                event_id: ev.id.clone(),
                series_id: ev.series_id().to_string(),
                original_start: ev.original_start.clone(),
            },
            "event.deleted",
        )
    } else if old.is_some() {
        (
            Change::EventUpdated {
                calendar_id: calendar.to_string(),
                event: ev.clone(),
            },
            "event.updated",
        )
    } else {
        (
            Change::EventCreated {
                calendar_id: calendar.to_string(),
                event: ev.clone(),
            },
            "event.created",
        )
    };
    let k = format!("{kind}:{account}:{calendar}:{}:{}", ev.id, ev.etag);
    emit(tx, account, k, &change, now_ms)?;
    Ok(applied)
}

/// Removes stored events (`keys` of the current generation, read before the transaction),
/// emitting one `event.deleted` per event that was there.
pub fn delete_events_tx(
    tx: &StoreTx<'_>,
    account: &str,
    calendar: &str,
    keys: &[Vec<u8>],
    now_ms: u64,
) -> Result<u64, TxError> {
    let mut n = 0;
    for key in keys {
        let Some(old) = load_tx::<CalendarEvent>(tx, key)? else {
            continue;
        };
        tx.remove(Space::Calendar, key)?;
        let change = Change::EventDeleted {
            calendar_id: calendar.to_string(),
            event_id: old.id.clone(),
            series_id: old.series_id().to_string(),
            original_start: None,
        };
        let k = format!("event.deleted:{account}:{calendar}:{}:{}", old.id, old.etag);
        emit(tx, account, k, &change, now_ms)?;
        n += 1;
    }
    Ok(n)
}
