//! Calendar v3: routing and dispatch. Per-account calendars and events live in [`model`];
//! listings (`calendarList.list`, `events.list`) in [`list`]; writes in [`write`]; push
//! channels (`events.watch`, `channels.stop`) in [`channels`]; zones and RRULEs in [`time`];
//! the routed [`Op`] in [`op`], Google's Event JSON in [`event_shape`], error bodies in
//! [`errors`], the truth snapshot in [`snapshot`].
//! Every difference from Google the emulator knows of is documented in docs/emulator.md.

pub mod channels;
pub mod control;
pub mod errors;
pub mod event_shape;
pub mod list;
pub mod model;
pub mod op;
pub mod snapshot;
pub mod time;
pub mod write;

use axum::http::Method;

pub use model::{Attendee, Calendar, CalendarSet, ChannelReg, Event, Person};
pub use op::Op;

use crate::error::ApiError;
use crate::http::{ApiRequest, ApiResponse, Op as HttpOp, Route};
use crate::oauth::{
    Principal, SCOPE_CAL_EVENTS, SCOPE_CAL_EVENTS_RO, SCOPE_CALENDAR, SCOPE_CALENDAR_RO,
};
use crate::pubsub::Outbound;
use crate::quota::Api;
use crate::state::EmulatorState;
use crate::util::lock;
use list::{calendar_list, event_json, events_list, expand};
use write::write_event;

const CAL_READ: &[&str] = &[
    SCOPE_CALENDAR,
    SCOPE_CALENDAR_RO,
    SCOPE_CAL_EVENTS,
    SCOPE_CAL_EVENTS_RO,
];
const LIST_READ: &[&str] = &[SCOPE_CALENDAR, SCOPE_CALENDAR_RO];
const CAL_WRITE: &[&str] = &[SCOPE_CALENDAR, SCOPE_CAL_EVENTS];

fn r(name: &'static str, params: &'static [&'static str], op: Op) -> Option<Route> {
    Some(Route {
        api: Api::Calendar,
        name,
        params,
        op: HttpOp::Calendar(op),
    })
}

pub fn route(method: &Method, segs: &[String]) -> Option<Route> {
    if segs.len() < 3 || segs[1] != "v3" {
        return None;
    }
    let rest: Vec<&str> = segs[2..].iter().map(String::as_str).collect();
    const LIST_P: &[&str] = &[
        "syncToken",
        "pageToken",
        "maxResults",
        "showDeleted",
        "singleEvents",
        "timeMin",
        "timeMax",
        "updatedMin",
        "orderBy",
        "q",
        "iCalUID",
        "privateExtendedProperty",
        "sharedExtendedProperty",
        "eventTypes",
        "showHiddenInvitations",
        "timeZone",
        "maxAttendees",
        "alwaysIncludeEmail",
    ];
    const CL_P: &[&str] = &[
        "maxResults",
        "pageToken",
        "minAccessRole",
        "showDeleted",
        "showHidden",
        "syncToken",
    ];
    const WRITE_P: &[&str] = &[
        "sendUpdates",
        "sendNotifications",
        "conferenceDataVersion",
        "maxAttendees",
        "supportsAttachments",
    ];
    match (method.as_str(), rest.as_slice()) {
        ("GET", ["users", "me", "calendarList"]) => {
            r("calendar.calendarList.list", CL_P, Op::CalendarList)
        }
        ("POST", ["calendars", cid, "events", "watch"]) => r(
            "calendar.events.watch",
            LIST_P,
            Op::EventsWatch(cid.to_string()),
        ),
        ("GET", ["calendars", cid, "events"]) => r(
            "calendar.events.list",
            LIST_P,
            Op::EventsList(cid.to_string()),
        ),
        ("GET", ["calendars", cid, "events", eid]) => r(
            "calendar.events.get",
            &["timeZone", "maxAttendees", "alwaysIncludeEmail"],
            Op::EventsGet(cid.to_string(), eid.to_string()),
        ),
        ("POST", ["calendars", cid, "events"]) => r(
            "calendar.events.insert",
            WRITE_P,
            Op::EventsInsert(cid.to_string()),
        ),
        ("PATCH", ["calendars", cid, "events", eid]) => r(
            "calendar.events.patch",
            WRITE_P,
            Op::EventsPatch(cid.to_string(), eid.to_string()),
        ),
        ("DELETE", ["calendars", cid, "events", eid]) => r(
            "calendar.events.delete",
            &["sendUpdates", "sendNotifications"],
            Op::EventsDelete(cid.to_string(), eid.to_string()),
        ),
        ("POST", ["channels", "stop"]) => r("calendar.channels.stop", &[], Op::ChannelsStop),
        _ => None,
    }
}

pub fn handle(
    st: &EmulatorState,
    p: &Principal,
    op: &Op,
    req: &ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let now = st.clock.now_ms();
    let email = p.email.to_ascii_lowercase();
    let mut pings = Vec::new();
    let result = {
        let mut accts = lock(&st.accounts);
        let acct = accts.get_mut(&email).ok_or_else(ApiError::not_found)?;
        let set = &mut acct.calendars;
        match op {
            Op::CalendarList => {
                if !p.has_any(LIST_READ) {
                    return Err(ApiError::insufficient_scope());
                }
                calendar_list(set, req)
            }
            Op::EventsList(cid) => {
                if !p.has_any(CAL_READ) {
                    return Err(ApiError::insufficient_scope());
                }
                let cal = set.find(cid).ok_or_else(ApiError::not_found)?;
                events_list(set, cal, req)
            }
            Op::EventsGet(cid, eid) => {
                if !p.has_any(CAL_READ) {
                    return Err(ApiError::insufficient_scope());
                }
                let cal = set.find(cid).ok_or_else(ApiError::not_found)?;
                let c = &set.calendars[cal];
                if let Some(e) = c.events.get(eid) {
                    return Ok(ApiResponse::json(&event_json(e, &c.time_zone, false)));
                }
                let (master, _) = eid.rsplit_once('_').ok_or_else(ApiError::not_found)?;
                let m = c.events.get(master).ok_or_else(ApiError::not_found)?;
                let inst = expand(c, vec![m])
                    .into_iter()
                    .find(|i| i.id == *eid)
                    .ok_or_else(ApiError::not_found)?;
                Ok(ApiResponse::json(&event_json(&inst, &c.time_zone, false)))
            }
            Op::EventsWatch(cid) => {
                if !p.has_any(CAL_READ) {
                    return Err(ApiError::insufficient_scope());
                }
                let cal = set.find(cid).ok_or_else(ApiError::not_found)?;
                channels::watch(st, set, cal, req, now, &mut pings)
            }
            Op::EventsInsert(cid) | Op::EventsPatch(cid, _) | Op::EventsDelete(cid, _) => {
                if !p.has_any(CAL_WRITE) {
                    return Err(ApiError::insufficient_scope());
                }
                let cal = set.find(cid).ok_or_else(ApiError::not_found)?;
                let resp = write_event(set, cal, op, req, now)?;
                pings = set.pings(cal, now);
                Ok(resp)
            }
            Op::ChannelsStop => channels::stop(set, req),
        }
    };
    for p in pings {
        let _ = st.outbound.send(Outbound::Calendar(p));
    }
    result
}
