//! The Calendar client's own serde shapes of Google Calendar v3 JSON (calendar-api.md §1, §2,
//! §5, §7) and their mapping onto the provider-neutral `calendar_model`. Parsing is lenient:
//! unknown fields are ignored and absent ones default, because cancelled stubs carry only an
//! id and newer Google front ends add fields freely.

use mailsync_actors::calendar_model::{
    AccessRole, Attendee, CalendarEntry, CalendarEvent, CalendarListPage, ChannelRegistration,
    EventPage, EventStatus, EventTime, PageCursor, Person, ResponseStatus,
};
use serde::{Deserialize, Serialize};

/// Why a page could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireMapError {
    /// Neither `nextPageToken` nor `nextSyncToken`.
    #[error("a page with neither nextPageToken nor nextSyncToken")]
    NoCursor,
}

fn cursor(page: Option<String>, sync: Option<String>) -> Result<PageCursor, WireMapError> {
    match (
        page.filter(|p| !p.is_empty()),
        sync.filter(|s| !s.is_empty()),
    ) {
        (Some(p), _) => Ok(PageCursor::NextPage(p)),
        (None, Some(s)) => Ok(PageCursor::SyncToken(s)),
        (None, None) => Err(WireMapError::NoCursor),
    }
}

/// `EventDateTime`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WireEventDateTime {
    pub date: Option<String>,
    pub date_time: Option<String>,
    pub time_zone: Option<String>,
}

impl WireEventDateTime {
    fn into_model(self) -> Option<EventTime> {
        match (self.date, self.date_time) {
            (Some(d), _) => Some(EventTime::Date(d)),
            (None, Some(dt)) => Some(EventTime::DateTime {
                date_time: dt,
                time_zone: self.time_zone,
            }),
            (None, None) => None,
        }
    }
}

/// `organizer` / `creator`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WirePerson {
    pub email: Option<String>,
    pub display_name: Option<String>,
    #[serde(rename = "self")]
    pub is_self: bool,
}

/// `attendees[]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WireAttendee {
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub response_status: Option<String>,
    pub optional: bool,
    pub organizer: bool,
    #[serde(rename = "self")]
    pub is_self: bool,
    pub resource: bool,
}

/// `Event`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WireEvent {
    pub id: String,
    pub status: Option<String>,
    pub etag: Option<String>,
    pub created: Option<String>,
    pub updated: Option<String>,
    pub summary: Option<String>,
    pub description: Option<String>,
    pub location: Option<String>,
    pub start: Option<WireEventDateTime>,
    pub end: Option<WireEventDateTime>,
    pub recurrence: Option<Vec<String>>,
    pub recurring_event_id: Option<String>,
    pub original_start_time: Option<WireEventDateTime>,
    #[serde(rename = "iCalUID")]
    pub ical_uid: Option<String>,
    pub sequence: Option<i64>,
    pub organizer: Option<WirePerson>,
    pub attendees: Option<Vec<WireAttendee>>,
    pub transparency: Option<String>,
    pub html_link: Option<String>,
}

fn response(s: Option<&str>) -> ResponseStatus {
    match s {
        Some("accepted") => ResponseStatus::Accepted,
        Some("declined") => ResponseStatus::Declined,
        Some("tentative") => ResponseStatus::Tentative,
        _ => ResponseStatus::NeedsAction,
    }
}

impl WireEvent {
    /// The provider-neutral event.
    pub fn into_model(self) -> CalendarEvent {
        let status = match self.status.as_deref() {
            Some("cancelled") => EventStatus::Cancelled,
            Some("tentative") => EventStatus::Tentative,
            _ => EventStatus::Confirmed,
        };
        CalendarEvent {
            id: self.id,
            status,
            etag: self.etag.unwrap_or_default(),
            created: self.created,
            updated: self.updated,
            summary: self.summary,
            description: self.description,
            location: self.location,
            start: self.start.and_then(WireEventDateTime::into_model),
            end: self.end.and_then(WireEventDateTime::into_model),
            recurrence: self.recurrence.unwrap_or_default(),
            recurring_event_id: self.recurring_event_id,
            original_start: self
                .original_start_time
                .and_then(WireEventDateTime::into_model),
            ical_uid: self.ical_uid,
            sequence: self.sequence.unwrap_or(0),
            organizer: self.organizer.map(|o| Person {
                email: o.email,
                display_name: o.display_name,
                is_self: o.is_self,
            }),
            attendees: self
                .attendees
                .unwrap_or_default()
                .into_iter()
                .map(|a| Attendee {
                    response: response(a.response_status.as_deref()),
                    email: a.email,
                    display_name: a.display_name,
                    optional: a.optional,
                    organizer: a.organizer,
                    is_self: a.is_self,
                    resource: a.resource,
                })
                .collect(),
            transparent: self.transparency.as_deref() == Some("transparent"),
            html_link: self.html_link,
        }
    }
}

/// `Events` (one page of `events.list`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WireEvents {
    pub items: Vec<WireEvent>,
    pub next_page_token: Option<String>,
    pub next_sync_token: Option<String>,
    pub time_zone: Option<String>,
}

impl WireEvents {
    /// The provider-neutral page.
    pub fn into_model(self) -> Result<EventPage, WireMapError> {
        Ok(EventPage {
            next: cursor(self.next_page_token, self.next_sync_token)?,
            events: self.items.into_iter().map(WireEvent::into_model).collect(),
            time_zone: self.time_zone,
        })
    }
}

/// `CalendarListEntry`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WireCalendarListEntry {
    pub id: String,
    pub etag: Option<String>,
    pub summary: Option<String>,
    pub summary_override: Option<String>,
    pub description: Option<String>,
    pub time_zone: Option<String>,
    pub background_color: Option<String>,
    pub access_role: Option<String>,
    pub primary: bool,
    pub selected: bool,
    pub hidden: bool,
    pub deleted: bool,
}

impl WireCalendarListEntry {
    /// The provider-neutral entry.
    pub fn into_model(self) -> CalendarEntry {
        let access_role = match self.access_role.as_deref() {
            Some("owner") => AccessRole::Owner,
            Some("writer") => AccessRole::Writer,
            Some("freeBusyReader") => AccessRole::FreeBusyReader,
            _ => AccessRole::Reader,
        };
        CalendarEntry {
            summary: self
                .summary_override
                .or(self.summary)
                .unwrap_or_else(|| self.id.clone()),
            id: self.id,
            etag: self.etag.unwrap_or_default(),
            description: self.description,
            time_zone: self.time_zone,
            color: self.background_color,
            access_role,
            primary: self.primary,
            selected: self.selected,
            hidden: self.hidden,
            deleted: self.deleted,
        }
    }
}

/// `CalendarList`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WireCalendarList {
    pub items: Vec<WireCalendarListEntry>,
    pub next_page_token: Option<String>,
    pub next_sync_token: Option<String>,
}

impl WireCalendarList {
    /// The provider-neutral page.
    pub fn into_model(self) -> Result<CalendarListPage, WireMapError> {
        Ok(CalendarListPage {
            next: cursor(self.next_page_token, self.next_sync_token)?,
            entries: self
                .items
                .into_iter()
                .map(WireCalendarListEntry::into_model)
                .collect(),
        })
    }
}

/// `params` of a watch request.
#[derive(Clone, Debug, Serialize)]
pub struct WireChannelParams {
    /// Time to live in seconds, as a string.
    pub ttl: String,
}

/// Body of `events.watch`.
#[derive(Clone, Debug, Serialize)]
pub struct WireWatchRequest {
    pub id: String,
    #[serde(rename = "type")]
    pub channel_type: &'static str,
    pub address: String,
    pub token: String,
    pub params: WireChannelParams,
}

/// Answer of `events.watch`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WireChannel {
    pub id: String,
    pub resource_id: String,
    /// Milliseconds since the epoch, as a string.
    pub expiration: Option<String>,
}

impl WireChannel {
    /// The registration; `token` is the one we sent.
    pub fn into_model(self, token: String) -> ChannelRegistration {
        ChannelRegistration {
            channel_id: self.id,
            resource_id: self.resource_id,
            token,
            expiration_ms: self
                .expiration
                .and_then(|e| e.parse().ok())
                .unwrap_or(i64::MAX),
        }
    }
}

/// Body of `channels.stop`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WireStopRequest {
    pub id: String,
    pub resource_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_a_cancelled_stub_and_a_zoned_exception() {
        let page: WireEvents = serde_json::from_str(
            r#"{"items":[{"id":"a","status":"cancelled"},
              {"id":"m_20260504T150000Z","status":"confirmed","recurringEventId":"m",
               "originalStartTime":{"dateTime":"2026-05-04T17:00:00+02:00","timeZone":"Europe/Berlin"},
               "start":{"dateTime":"2026-05-04T19:00:00+02:00","timeZone":"Europe/Berlin"},
               "end":{"date":"2026-05-05"},"attendees":[{"email":"x@y","responseStatus":"accepted","self":true}],
               "iCalUID":"m@google.com","sequence":2,"unknownField":1}],
             "nextSyncToken":"tok"}"#,
        )
        .unwrap_or_default();
        let page = page.into_model().map_err(|e| e.to_string());
        let Ok(page) = page else { panic!("{page:?}") };
        assert_eq!(page.next, PageCursor::SyncToken("tok".into()));
        assert!(page.events[0].is_cancelled());
        let ex = &page.events[1];
        assert_eq!(ex.series_id(), "m");
        assert_eq!(ex.ical_uid.as_deref(), Some("m@google.com"));
        assert_eq!(ex.attendees[0].response, ResponseStatus::Accepted);
        assert!(ex.attendees[0].is_self);
        assert!(matches!(
            &ex.original_start,
            Some(EventTime::DateTime { time_zone: Some(z), .. }) if z == "Europe/Berlin"
        ));
        assert_eq!(ex.end, Some(EventTime::Date("2026-05-05".into())));
        let none: WireEvents = serde_json::from_str(r#"{"items":[]}"#).unwrap_or_default();
        assert_eq!(none.into_model(), Err(WireMapError::NoCursor));
    }
}
