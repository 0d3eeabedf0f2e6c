//! Provider-neutral calendar data: calendar list entries, events (series masters, exceptions,
//! cancelled instances), their times (a date for all-day events; a date-time with an optional
//! IANA zone otherwise), attendees, the page shapes a calendar port returns, and push channel
//! registrations. These are plain serde values meant to be stored; nothing here knows JSON
//! field names of any provider (adapters map their wire types onto these).
//!
//! Encoding rules for storage: no `skip_serializing_if` (bincode needs every field), and enum
//! variants are only ever appended (bincode encodes a variant by its position).

use serde::{Deserialize, Serialize};

/// How much the user may see of a calendar.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AccessRole {
    /// Free/busy only.
    FreeBusyReader,
    /// Read access.
    #[default]
    Reader,
    /// Read and write.
    Writer,
    /// Full control.
    Owner,
}

/// One entry of the user's calendar list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarEntry {
    /// Calendar id (often an e-mail address).
    pub id: String,
    /// Version tag of the entry.
    pub etag: String,
    /// Title as the user sees it (the user's override when set).
    pub summary: String,
    /// Description, if any.
    pub description: Option<String>,
    /// The calendar's IANA zone.
    pub time_zone: Option<String>,
    /// Background colour, `#rrggbb`.
    pub color: Option<String>,
    /// The user's access.
    pub access_role: AccessRole,
    /// The user's primary calendar.
    pub primary: bool,
    /// Shown in the provider's UI.
    pub selected: bool,
    /// Hidden from the list.
    pub hidden: bool,
    /// Removed from the list (an incremental list answer).
    pub deleted: bool,
}

/// Where a listing continues: exactly one of the two per page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PageCursor {
    /// More pages follow; ask again with this token (and the same query).
    NextPage(String),
    /// The last page: the token for the next incremental listing.
    SyncToken(String),
}

/// One page of the calendar list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarListPage {
    /// Entries on this page (may be empty even when more pages follow).
    pub entries: Vec<CalendarEntry>,
    /// Where to continue.
    pub next: PageCursor,
}

/// What an events listing asks for. The adapter adds the fixed query parameters (full sync:
/// deleted events included, series not expanded) and keeps the same set with a sync token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsQuery {
    /// `None` for a full listing.
    pub sync_token: Option<String>,
    /// Continue a listing.
    pub page_token: Option<String>,
}

/// One page of events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPage {
    /// Events on this page (may be empty even when more pages follow).
    pub events: Vec<CalendarEvent>,
    /// Where to continue.
    pub next: PageCursor,
    /// The calendar's zone as the listing reported it.
    pub time_zone: Option<String>,
}

/// An event's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventStatus {
    /// Confirmed (the default).
    #[default]
    Confirmed,
    /// Tentatively confirmed.
    Tentative,
    /// Deleted, or (for an instance of a live series) that one occurrence is cancelled.
    Cancelled,
}

/// When an event starts or ends.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventTime {
    /// An all-day event's date, `yyyy-mm-dd` (end dates are exclusive).
    Date(String),
    /// A timed event: RFC 3339 with offset, and the zone the event lives in, if given.
    DateTime {
        /// RFC 3339, e.g. `2026-05-04T17:00:00+02:00`.
        date_time: String,
        /// IANA zone (required by providers for recurring events).
        time_zone: Option<String>,
    },
}

impl EventTime {
    /// Whether this is an all-day date.
    pub fn is_date(&self) -> bool {
        matches!(self, EventTime::Date(_))
    }
}

/// Whether an attendee comes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ResponseStatus {
    /// Not answered.
    #[default]
    NeedsAction,
    /// Declined.
    Declined,
    /// Tentative.
    Tentative,
    /// Accepted.
    Accepted,
}

/// An organizer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// Address (may be absent for some organizers).
    pub email: Option<String>,
    /// Display name.
    pub display_name: Option<String>,
    /// The account's own user.
    pub is_self: bool,
}

/// An attendee.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attendee {
    /// Address.
    pub email: Option<String>,
    /// Display name.
    pub display_name: Option<String>,
    /// Their answer.
    pub response: ResponseStatus,
    /// Optional attendance.
    pub optional: bool,
    /// The organizer.
    pub organizer: bool,
    /// The account's own user.
    pub is_self: bool,
    /// A room or other resource.
    pub resource: bool,
}

/// One stored event: a single event, a series master (has `recurrence`), or an exception of a
/// series (has `recurring_event_id` + `original_start`; cancelled = that occurrence is gone).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarEvent {
    /// Provider id, unique per calendar.
    pub id: String,
    /// State.
    pub status: EventStatus,
    /// Version tag; moves on every change.
    pub etag: String,
    /// Creation time, RFC 3339.
    pub created: Option<String>,
    /// Last modification, RFC 3339.
    pub updated: Option<String>,
    /// Title.
    pub summary: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Location.
    pub location: Option<String>,
    /// Start (absent on cancelled stubs).
    pub start: Option<EventTime>,
    /// End, exclusive (absent on cancelled stubs).
    pub end: Option<EventTime>,
    /// RFC 5545 lines (`RRULE:`, `EXRULE:`, `RDATE:`, `EXDATE:`) of a series master.
    pub recurrence: Vec<String>,
    /// On exceptions: the id of the series master.
    pub recurring_event_id: Option<String>,
    /// On exceptions: the occurrence's start per the rule (identifies it even when moved).
    pub original_start: Option<EventTime>,
    /// RFC 5545 UID, shared by a series and its exceptions.
    pub ical_uid: Option<String>,
    /// RFC 5545 SEQUENCE.
    pub sequence: i64,
    /// Organizer.
    pub organizer: Option<Person>,
    /// Attendees.
    pub attendees: Vec<Attendee>,
    /// Shown as free time (`transparent`) rather than busy.
    pub transparent: bool,
    /// A link to the event in the provider's UI.
    pub html_link: Option<String>,
}

impl CalendarEvent {
    /// Deleted or a cancelled occurrence.
    pub fn is_cancelled(&self) -> bool {
        self.status == EventStatus::Cancelled
    }

    /// An exception (or instance) of a recurring series.
    pub fn is_exception(&self) -> bool {
        self.recurring_event_id.is_some()
    }

    /// The id of the series this event belongs to: its master's id, or its own id. One
    /// `.ics` file, one series.
    pub fn series_id(&self) -> &str {
        self.recurring_event_id.as_deref().unwrap_or(&self.id)
    }
}

/// A push channel as registered with the provider.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRegistration {
    /// The id we chose (unique per channel; a renewal uses a new one).
    pub channel_id: String,
    /// The provider's id of the watched collection (echoed in notifications).
    pub resource_id: String,
    /// The secret token notifications must echo.
    pub token: String,
    /// Expiry, ms since the epoch.
    pub expiration_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_id_groups_exceptions_with_their_master() {
        let master = CalendarEvent {
            id: "abc".into(),
            recurrence: vec!["RRULE:FREQ=WEEKLY".into()],
            ..Default::default()
        };
        let ex = CalendarEvent {
            id: "abc_20260501T100000Z".into(),
            recurring_event_id: Some("abc".into()),
            status: EventStatus::Cancelled,
            ..Default::default()
        };
        assert_eq!(master.series_id(), "abc");
        assert_eq!(ex.series_id(), "abc");
        assert!(ex.is_cancelled() && ex.is_exception() && !master.is_exception());
    }

    #[test]
    fn stores_round_trip_through_bincode() {
        let ev = CalendarEvent {
            id: "x".into(),
            start: Some(EventTime::DateTime {
                date_time: "2026-05-04T17:00:00+02:00".into(),
                time_zone: Some("Europe/Berlin".into()),
            }),
            end: Some(EventTime::Date("2026-05-05".into())),
            attendees: vec![Attendee {
                response: ResponseStatus::Tentative,
                ..Default::default()
            }],
            ..Default::default()
        };
        let bytes =
            bincode::serde::encode_to_vec(&ev, bincode::config::standard()).unwrap_or_default();
        let back: Option<CalendarEvent> =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard())
                .ok()
                .map(|(v, _)| v);
        assert_eq!(back, Some(ev));
    }
}
