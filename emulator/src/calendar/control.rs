//! Control endpoints for Calendar (tests, benchmarks, the demo): the truth snapshot, event
//! create / patch / delete, moving or cancelling one instance of a series, adding and
//! removing calendars from the list, invalidating sync tokens (→ 410), turning empty pages on,
//! and listing or forgetting push channels. Every change sends channel notifications as an
//! API write would.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::model::{Attendee, CalendarSet, Event};
use crate::control_response::{api_err, err, parse_json};
use crate::pubsub::Outbound;
use crate::state::EmulatorState;
use crate::util::{lock, parse_rfc3339};

type St = State<Arc<EmulatorState>>;

pub fn router() -> Router<Arc<EmulatorState>> {
    let a = "/_emulator/accounts/{email}";
    Router::new()
        .route(&format!("{a}/calendars"), post(add_calendar))
        .route(&format!("{a}/calendars/snapshot"), get(snapshot))
        .route(&format!("{a}/calendars/empty-pages"), post(empty_pages))
        .route(&format!("{a}/calendars/{{cid}}"), delete(remove_calendar))
        .route(
            &format!("{a}/calendars/{{cid}}/invalidate-sync-tokens"),
            post(invalidate_tokens),
        )
        .route(&format!("{a}/calendars/{{cid}}/events"), post(create_event))
        .route(
            &format!("{a}/calendars/{{cid}}/events/{{eid}}"),
            delete(delete_event).patch(update_event),
        )
        .route(
            &format!("{a}/calendars/{{cid}}/events/{{eid}}/cancel-instance"),
            post(cancel_instance),
        )
        .route(
            &format!("{a}/calendars/{{cid}}/events/{{eid}}/modify-instance"),
            post(modify_instance),
        )
        .route(
            &format!("{a}/channels"),
            get(channels).delete(forget_channels),
        )
}

async fn snapshot(State(st): St, Path(email): Path<String>) -> Response {
    match lock(&st.accounts).get(&email.to_ascii_lowercase()) {
        Some(a) => Json(a.calendars.snapshot()).into_response(),
        None => err(StatusCode::NOT_FOUND, "unknown account"),
    }
}

/// Runs `f` on the account's calendar set (no calendar lookup, no notifications).
fn with_set(
    st: &EmulatorState,
    email: &str,
    f: impl FnOnce(&mut CalendarSet, i64) -> Result<Value, crate::error::ApiError>,
) -> Response {
    let now = st.clock.now_ms();
    let mut accts = lock(&st.accounts);
    let Some(acct) = accts.get_mut(&email.to_ascii_lowercase()) else {
        return err(StatusCode::NOT_FOUND, "unknown account");
    };
    match f(&mut acct.calendars, now) {
        Ok(v) => Json(v).into_response(),
        Err(e) => api_err(e),
    }
}

/// Runs `f` on a calendar, then sends channel notifications if it changed something.
fn with_calendar(
    st: &EmulatorState,
    email: &str,
    cid: &str,
    notify: bool,
    f: impl FnOnce(&mut CalendarSet, usize, i64) -> Result<Value, crate::error::ApiError>,
) -> Response {
    let now = st.clock.now_ms();
    let (res, pings) = {
        let mut accts = lock(&st.accounts);
        let Some(acct) = accts.get_mut(&email.to_ascii_lowercase()) else {
            return err(StatusCode::NOT_FOUND, "unknown account");
        };
        let Some(cal) = acct.calendars.find(cid) else {
            return err(StatusCode::NOT_FOUND, "unknown calendar");
        };
        let res = f(&mut acct.calendars, cal, now);
        let pings = if notify && res.is_ok() {
            acct.calendars.pings(cal, now)
        } else {
            Vec::new()
        };
        (res, pings)
    };
    for p in pings {
        let _ = st.outbound.send(Outbound::Calendar(p));
    }
    match res {
        Ok(v) => Json(v).into_response(),
        Err(e) => api_err(e),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewCalendar {
    id: Option<String>,
    summary: String,
    time_zone: Option<String>,
}

async fn add_calendar(
    State(st): St,
    Path(email): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let req: NewCalendar = match parse_json(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    with_set(&st, &email, |set, now| {
        let tz = req.time_zone.as_deref().unwrap_or("UTC");
        let id = set.add_calendar(req.id, &req.summary, tz, now)?;
        Ok(json!({"id": id}))
    })
}

async fn remove_calendar(State(st): St, Path((email, cid)): Path<(String, String)>) -> Response {
    with_calendar(&st, &email, &cid, false, |set, cal, now| {
        set.remove_calendar(cal, now)?;
        Ok(json!({"removed": true}))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmptyPages {
    enabled: bool,
}

async fn empty_pages(
    State(st): St,
    Path(email): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let req: EmptyPages = match parse_json(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    with_set(&st, &email, |set, _| {
        set.empty_pages = req.enabled;
        Ok(json!({"emptyPages": req.enabled}))
    })
}

async fn invalidate_tokens(State(st): St, Path((email, cid)): Path<(String, String)>) -> Response {
    with_calendar(&st, &email, &cid, false, |set, cal, _| {
        set.invalidate_tokens(cal);
        Ok(json!({"invalidated": true}))
    })
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewAttendee {
    email: String,
    display_name: Option<String>,
    response_status: Option<String>,
    #[serde(default)]
    optional: bool,
}

fn to_attendees(list: &[NewAttendee]) -> Vec<Attendee> {
    list.iter()
        .map(|a| Attendee {
            email: a.email.clone(),
            display_name: a.display_name.clone(),
            response_status: a
                .response_status
                .clone()
                .unwrap_or_else(|| "needsAction".into()),
            optional: a.optional,
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewEvent {
    id: Option<String>,
    summary: String,
    start: String,
    end: String,
    #[serde(default)]
    all_day: bool,
    recurrence: Option<String>,
    /// The event's zone (recurring timed events default to the calendar's).
    time_zone: Option<String>,
    description: Option<String>,
    location: Option<String>,
    #[serde(default)]
    attendees: Vec<NewAttendee>,
}

async fn create_event(
    State(st): St,
    Path((email, cid)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let req: NewEvent = match parse_json(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let (Some(s), Some(e)) = (parse_rfc3339(&req.start), parse_rfc3339(&req.end)) else {
        return err(StatusCode::BAD_REQUEST, "start/end must be RFC 3339");
    };
    if e <= s {
        return err(StatusCode::BAD_REQUEST, "end must be after start");
    }
    with_calendar(&st, &email, &cid, true, |set, cal, now| {
        let mut ev = Event::new(
            req.id.as_deref().unwrap_or(""),
            &req.summary,
            s,
            e,
            req.all_day,
        );
        ev.recurrence = req.recurrence.map(|r| vec![r]);
        ev.tz = req.time_zone;
        ev.description = req.description;
        ev.location = req.location;
        ev.attendees = to_attendees(&req.attendees);
        ev.organizer = Some(super::model::Person {
            email: set.owner().to_string(),
            display_name: None,
        });
        let id = set.insert_event(cal, ev, now)?;
        Ok(json!({"id": id}))
    })
}

/// Fields a control patch may change (absent = unchanged).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct PatchEvent {
    summary: Option<String>,
    description: Option<String>,
    location: Option<String>,
    start: Option<String>,
    end: Option<String>,
    attendees: Option<Vec<NewAttendee>>,
}

impl PatchEvent {
    fn apply(&self, e: &mut Event) {
        if let Some(s) = &self.summary {
            e.summary = s.clone();
        }
        if let Some(d) = &self.description {
            e.description = Some(d.clone());
        }
        if let Some(l) = &self.location {
            e.location = Some(l.clone());
        }
        if let Some(ms) = self.start.as_deref().and_then(parse_rfc3339) {
            e.start_ms = ms;
        }
        if let Some(ms) = self.end.as_deref().and_then(parse_rfc3339) {
            e.end_ms = ms;
        }
        if let Some(a) = &self.attendees {
            e.attendees = to_attendees(a);
        }
    }

    /// Whether every given time parses.
    fn times_ok(&self) -> bool {
        [&self.start, &self.end]
            .into_iter()
            .flatten()
            .all(|t| parse_rfc3339(t).is_some())
    }
}

async fn update_event(
    State(st): St,
    Path((email, cid, eid)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let req: PatchEvent = match parse_json(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    if !req.times_ok() {
        return err(StatusCode::BAD_REQUEST, "start/end must be RFC 3339");
    }
    with_calendar(&st, &email, &cid, true, |set, cal, now| {
        set.update_event(cal, &eid, now, |e| req.apply(e))?;
        Ok(json!({"id": eid}))
    })
}

async fn delete_event(
    State(st): St,
    Path((email, cid, eid)): Path<(String, String, String)>,
) -> Response {
    with_calendar(&st, &email, &cid, true, |set, cal, now| {
        set.delete_event(cal, &eid, now)?;
        Ok(json!({"id": eid, "status": "cancelled"}))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelInstance {
    index: usize,
}

async fn cancel_instance(
    State(st): St,
    Path((email, cid, eid)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let req: CancelInstance = match parse_json(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    with_calendar(&st, &email, &cid, true, |set, cal, now| {
        let id = set.cancel_instance(cal, &eid, req.index, now)?;
        Ok(json!({"id": id}))
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ModifyInstance {
    index: usize,
    /// Moves the occurrence by this many minutes (start and end).
    #[serde(default)]
    shift_minutes: i64,
    summary: Option<String>,
    description: Option<String>,
    location: Option<String>,
}

async fn modify_instance(
    State(st): St,
    Path((email, cid, eid)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let req: ModifyInstance = match parse_json(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let patch = PatchEvent {
        summary: req.summary,
        description: req.description,
        location: req.location,
        ..PatchEvent::default()
    };
    with_calendar(&st, &email, &cid, true, |set, cal, now| {
        let id = set.modify_instance(cal, &eid, req.index, now, |e| {
            e.start_ms += req.shift_minutes * 60_000;
            e.end_ms += req.shift_minutes * 60_000;
            patch.apply(e);
        })?;
        Ok(json!({"id": id}))
    })
}

async fn channels(State(st): St, Path(email): Path<String>) -> Response {
    with_set(&st, &email, |set, _| {
        let list: Vec<Value> = set
            .channels
            .iter()
            .map(|ch| {
                json!({"id": ch.id, "resourceId": ch.resource_id, "calendarId": ch.calendar_id,
                       "expiration": ch.expiration_ms.to_string(), "address": ch.address})
            })
            .collect();
        Ok(json!({"channels": list}))
    })
}

/// Forgets every channel of the account (as if Google dropped them): no more notifications,
/// and `channels.stop` on them answers 404.
async fn forget_channels(State(st): St, Path(email): Path<String>) -> Response {
    with_set(&st, &email, |set, _| {
        let n = set.channels.len();
        set.channels.clear();
        Ok(json!({"forgotten": n}))
    })
}
