//! The calendar parts of the public event schema: a calendar and an event as consumers see
//! them (`docs/events.md`), mapped from the provider-neutral model of the actors crate.

use mailsync_actors::calendar_model::{
    AccessRole, Attendee, CalendarEntry, CalendarEvent, EventStatus, EventTime, Person,
    ResponseStatus,
};
use serde::Serialize;

/// A calendar.
#[derive(Debug, Serialize)]
pub struct CalendarJson {
    /// Calendar id.
    pub id: String,
    /// Display name.
    pub summary: String,
    /// Description, if any.
    pub description: Option<String>,
    /// IANA zone.
    pub time_zone: Option<String>,
    /// `#rrggbb`, if known.
    pub color: Option<String>,
    /// `free_busy_reader`, `reader`, `writer` or `owner`.
    pub access_role: &'static str,
    /// The user's primary calendar.
    pub primary: bool,
}

/// A start or end time: `{"date": "yyyy-mm-dd"}` for all-day events, else
/// `{"date_time": RFC 3339, "time_zone": IANA or null}`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum TimeJson {
    /// All-day.
    Date {
        /// `yyyy-mm-dd`.
        date: String,
    },
    /// Timed.
    DateTime {
        /// RFC 3339 with offset.
        date_time: String,
        /// IANA zone.
        time_zone: Option<String>,
    },
}

/// A person (organizer).
#[derive(Debug, Serialize)]
pub struct PersonJson {
    /// Address.
    pub email: Option<String>,
    /// Display name.
    pub display_name: Option<String>,
    /// The account's own user.
    pub is_self: bool,
}

/// An attendee.
#[derive(Debug, Serialize)]
pub struct AttendeeJson {
    /// Address.
    pub email: Option<String>,
    /// Display name.
    pub display_name: Option<String>,
    /// `needs_action`, `declined`, `tentative` or `accepted`.
    pub response: &'static str,
    /// Optional attendance.
    pub optional: bool,
    /// The organizer.
    pub organizer: bool,
    /// The account's own user.
    pub is_self: bool,
    /// A room or other resource.
    pub resource: bool,
}

/// An event: a single event, a series master (has `recurrence`) or an exception (has
/// `recurring_event_id` and `original_start`; `status: "cancelled"` = that occurrence is gone).
#[derive(Debug, Serialize)]
pub struct CalendarEventJson {
    /// Event id (unique per calendar).
    pub id: String,
    /// `confirmed`, `tentative` or `cancelled`.
    pub status: &'static str,
    /// Version tag; changes on every modification.
    pub etag: String,
    /// RFC 3339.
    pub created: Option<String>,
    /// RFC 3339.
    pub updated: Option<String>,
    /// Title.
    pub summary: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Location.
    pub location: Option<String>,
    /// Start.
    pub start: Option<TimeJson>,
    /// End (exclusive).
    pub end: Option<TimeJson>,
    /// RFC 5545 `RRULE:`/`EXRULE:`/`RDATE:`/`EXDATE:` lines of a series master.
    pub recurrence: Vec<String>,
    /// On exceptions: the master's id.
    pub recurring_event_id: Option<String>,
    /// On exceptions: the occurrence's start per the rule.
    pub original_start: Option<TimeJson>,
    /// The series' series id: `recurring_event_id` or `id`.
    pub series_id: String,
    /// RFC 5545 UID.
    pub ical_uid: Option<String>,
    /// RFC 5545 SEQUENCE.
    pub sequence: i64,
    /// Organizer.
    pub organizer: Option<PersonJson>,
    /// Attendees.
    pub attendees: Vec<AttendeeJson>,
    /// Shown as free time.
    pub transparent: bool,
    /// Link to the event in the provider's UI.
    pub html_link: Option<String>,
}

fn role(r: AccessRole) -> &'static str {
    match r {
        AccessRole::FreeBusyReader => "free_busy_reader",
        AccessRole::Reader => "reader",
        AccessRole::Writer => "writer",
        AccessRole::Owner => "owner",
    }
}

fn status(s: EventStatus) -> &'static str {
    match s {
        EventStatus::Confirmed => "confirmed",
        EventStatus::Tentative => "tentative",
        EventStatus::Cancelled => "cancelled",
    }
}

fn response(r: ResponseStatus) -> &'static str {
    match r {
        ResponseStatus::NeedsAction => "needs_action",
        ResponseStatus::Declined => "declined",
        ResponseStatus::Tentative => "tentative",
        ResponseStatus::Accepted => "accepted",
    }
}

/// A start or end time in the public schema.
pub fn time(t: EventTime) -> TimeJson {
    match t {
        EventTime::Date(date) => TimeJson::Date { date },
        EventTime::DateTime {
            date_time,
            time_zone,
        } => TimeJson::DateTime {
            date_time,
            time_zone,
        },
    }
}

fn person(p: Person) -> PersonJson {
    PersonJson {
        email: p.email,
        display_name: p.display_name,
        is_self: p.is_self,
    }
}

fn attendee(a: Attendee) -> AttendeeJson {
    AttendeeJson {
        email: a.email,
        display_name: a.display_name,
        response: response(a.response),
        optional: a.optional,
        organizer: a.organizer,
        is_self: a.is_self,
        resource: a.resource,
    }
}

/// Maps a calendar entry.
pub fn calendar_json(c: CalendarEntry) -> CalendarJson {
    CalendarJson {
        id: c.id,
        summary: c.summary,
        description: c.description,
        time_zone: c.time_zone,
        color: c.color,
        access_role: role(c.access_role),
        primary: c.primary,
    }
}

/// Maps an event.
pub fn event_json(e: CalendarEvent) -> CalendarEventJson {
    let series_id = e.series_id().to_string();
    CalendarEventJson {
        id: e.id,
        status: status(e.status),
        etag: e.etag,
        created: e.created,
        updated: e.updated,
        summary: e.summary,
        description: e.description,
        location: e.location,
        start: e.start.map(time),
        end: e.end.map(time),
        recurrence: e.recurrence,
        recurring_event_id: e.recurring_event_id,
        original_start: e.original_start.map(time),
        series_id,
        ical_uid: e.ical_uid,
        sequence: e.sequence,
        organizer: e.organizer.map(person),
        attendees: e.attendees.into_iter().map(attendee).collect(),
        transparent: e.transparent,
        html_link: e.html_link,
    }
}
