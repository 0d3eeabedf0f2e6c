//! Event writes through the API: `events.insert`, `events.patch` and `events.delete`, with
//! Google's validation (start/end both dates or both date-times, a time zone for recurring
//! events and for date-times without an offset, `timeRangeEmpty`), `If-Match` preconditions
//! (412), 409 `duplicate`, 410 `deleted`. Patching or deleting an instance id of a recurring
//! series (`<master>_<suffix>`) creates a moved or cancelled exception, as Google does.

use super::errors::cal_error;
use super::event_shape::event_json;
use super::model::{Attendee, CalendarSet, Event, Person};
use super::op::Op;
use super::time::{instance_suffix, local_to_ms, occurrences, parse_rule};
use crate::error::ApiError;
use crate::http::{ApiRequest, ApiResponse};
use crate::util::{days_from_civil, parse_rfc3339};
use crate::wire::{self, EventDateTime};

/// Converts an `EventDateTime` to epoch ms; `true` for an all-day date.
fn edt_ms(d: &EventDateTime, field: &str) -> Result<(i64, bool), ApiError> {
    match (&d.date, &d.date_time) {
        (Some(date), None) => {
            let parts: Vec<&str> = date.split('-').collect();
            let nums: Option<Vec<i64>> = parts.iter().map(|p| p.parse().ok()).collect();
            match nums.as_deref() {
                Some([y, m, dd])
                    if parts.len() == 3 && (1..=12).contains(m) && (1..=31).contains(dd) =>
                {
                    Ok((
                        days_from_civil(*y, *m as u32, *dd as u32) * 86_400_000,
                        true,
                    ))
                }
                _ => Err(ApiError::invalid_param(
                    field,
                    format!("Invalid {field} date."),
                )),
            }
        }
        (None, Some(dtm)) => {
            if let Some(ms) = parse_rfc3339(dtm) {
                return Ok((ms, false));
            }
            match d.time_zone.as_deref() {
                Some(tz) => local_to_ms(dtm, tz).map(|ms| (ms, false)).ok_or_else(|| {
                    ApiError::invalid_param(field, format!("Invalid {field} time."))
                }),
                None => Err(ApiError::invalid_param(
                    field,
                    format!("Missing time zone definition for {field} time."),
                )),
            }
        }
        _ => Err(ApiError::invalid_param(
            field,
            format!("Invalid {field} time."),
        )),
    }
}

fn check_if_match(req: &ApiRequest, e: &Event) -> Result<(), ApiError> {
    if let Some(m) = req.headers.get("if-match").and_then(|v| v.to_str().ok())
        && m != "*"
        && m != format!("\"{}\"", e.etag_n)
    {
        let mut err = ApiError::new(412, "conditionNotMet", "global", "Precondition Failed");
        err.location = Some(("If-Match".into(), "header"));
        return Err(err);
    }
    Ok(())
}

fn deleted() -> ApiError {
    let mut err = ApiError::new(410, "deleted", "global", "Resource has been deleted");
    err.status = None;
    err
}

fn time_zone_of(d: &EventDateTime) -> Option<String> {
    d.time_zone.clone()
}

fn attendees(list: &[wire::AttendeeWrite]) -> Result<Vec<Attendee>, ApiError> {
    list.iter()
        .map(|a| {
            let email = a.email.clone().filter(|e| e.contains('@')).ok_or_else(|| {
                ApiError::invalid_param("attendees.email", "Invalid attendee email.")
            })?;
            let status = a
                .response_status
                .clone()
                .unwrap_or_else(|| "needsAction".into());
            if !["needsAction", "declined", "tentative", "accepted"].contains(&status.as_str()) {
                return Err(ApiError::invalid_param(
                    "attendees.responseStatus",
                    "Invalid value",
                ));
            }
            Ok(Attendee {
                email,
                display_name: a.display_name.clone(),
                response_status: status,
                optional: a.optional.unwrap_or(false),
            })
        })
        .collect()
}

/// Start and end of a write body, validated together.
fn times(start: &EventDateTime, end: &EventDateTime) -> Result<(i64, i64, bool), ApiError> {
    let (s, s_all) = edt_ms(start, "start")?;
    let (e, e_all) = edt_ms(end, "end")?;
    if s_all != e_all {
        return Err(ApiError::bad_request(
            "Start and end times must either both be date or both be dateTime.",
        ));
    }
    if e <= s {
        return Err(cal_error(
            400,
            "timeRangeEmpty",
            "The specified time range is empty.",
            Some("end"),
        ));
    }
    Ok((s, e, s_all))
}

/// The occurrence index of instance id `eid` of a live master, if it is one.
fn instance_index(set: &CalendarSet, cal: usize, eid: &str) -> Option<(String, usize)> {
    let (master, _) = eid.rsplit_once('_')?;
    let c = &set.calendars[cal];
    let m = c.events.get(master).filter(|m| m.status != "cancelled")?;
    let rule = m.recurrence.as_ref()?.first()?;
    let tz = m.tz.as_deref().unwrap_or(&c.time_zone);
    occurrences(rule, m.start_ms, m.all_day, tz)
        .iter()
        .position(|at| format!("{}_{}", m.id, instance_suffix(*at, m.all_day)) == eid)
        .map(|i| (master.to_string(), i))
}

fn insert(
    set: &mut CalendarSet,
    cal: usize,
    req: &ApiRequest,
    now: i64,
) -> Result<ApiResponse, ApiError> {
    let body: wire::EventWriteRequest = req.json_body()?;
    let start = body
        .start
        .as_ref()
        .ok_or_else(|| ApiError::invalid_param("start", "Missing start time."))?;
    let end = body
        .end
        .as_ref()
        .ok_or_else(|| ApiError::invalid_param("end", "Missing end time."))?;
    let (s, e, all_day) = times(start, end)?;
    let rule = match body.recurrence.as_deref() {
        None | Some([]) => None,
        Some([r]) if parse_rule(r).is_some() => {
            if start.time_zone.is_none() && !all_day {
                return Err(ApiError::invalid_param(
                    "start",
                    "Missing time zone definition for start time.",
                ));
            }
            Some(r.clone())
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "Only a single RRULE with FREQ=DAILY or FREQ=WEEKLY (INTERVAL, COUNT, UNTIL) is supported by the emulator",
            ));
        }
    };
    let status = body.status.clone().unwrap_or_else(|| "confirmed".into());
    if status != "confirmed" && status != "tentative" {
        return Err(ApiError::invalid_param("status", "Invalid status"));
    }
    let mut ev = Event::new(
        body.id.as_deref().unwrap_or(""),
        body.summary.as_deref().unwrap_or(""),
        s,
        e,
        all_day,
    );
    ev.status = status;
    ev.tz = time_zone_of(start);
    ev.recurrence = rule.map(|r| vec![r]);
    ev.description = body.description.clone();
    ev.location = body.location.clone();
    ev.attendees = attendees(body.attendees.as_deref().unwrap_or_default())?;
    ev.organizer = Some(Person {
        email: set.owner().to_string(),
        display_name: None,
    });
    let id = set.insert_event(cal, ev, now)?;
    let c = &set.calendars[cal];
    let ev = c.events.get(&id).ok_or_else(ApiError::backend_error)?;
    Ok(ApiResponse::json(&event_json(ev, &c.time_zone, false)))
}

fn patch(
    set: &mut CalendarSet,
    cal: usize,
    eid: &str,
    req: &ApiRequest,
    now: i64,
) -> Result<ApiResponse, ApiError> {
    let body: wire::EventWriteRequest = req.json_body()?;
    if body.id.as_ref().is_some_and(|i| i != eid) || body.recurrence.is_some() {
        return Err(ApiError::bad_request(
            "The emulator patches summary, description, location, attendees, status, start and end",
        ));
    }
    if body
        .status
        .as_deref()
        .is_some_and(|st| st != "confirmed" && st != "tentative")
    {
        return Err(ApiError::invalid_param("status", "Invalid status"));
    }
    let new_attendees = body.attendees.as_deref().map(attendees).transpose()?;
    let exists = set.calendars[cal].events.get(eid).cloned();
    let current = match &exists {
        Some(ev) => ev.clone(),
        None => {
            // An unmodified instance of a series: patching it makes an exception.
            let (master, index) = instance_index(set, cal, eid).ok_or_else(ApiError::not_found)?;
            let id = set.modify_instance(cal, &master, index, now, |_| {})?;
            set.calendars[cal]
                .events
                .get(&id)
                .cloned()
                .ok_or_else(ApiError::backend_error)?
        }
    };
    check_if_match(req, &current)?;
    if current.status == "cancelled" {
        return Err(deleted());
    }
    let (mut s, mut e, mut all) = (current.start_ms, current.end_ms, current.all_day);
    if let Some(st) = &body.start {
        (s, all) = edt_ms(st, "start")?;
    }
    if let Some(en) = &body.end {
        let (v, a) = edt_ms(en, "end")?;
        if a != all {
            return Err(ApiError::bad_request(
                "Start and end times must either both be date or both be dateTime.",
            ));
        }
        e = v;
    }
    if e <= s {
        return Err(cal_error(
            400,
            "timeRangeEmpty",
            "The specified time range is empty.",
            Some("end"),
        ));
    }
    set.update_event(cal, eid, now, |ev| {
        if let Some(sm) = &body.summary {
            ev.summary = sm.clone();
        }
        if let Some(d) = &body.description {
            ev.description = Some(d.clone());
        }
        if let Some(l) = &body.location {
            ev.location = Some(l.clone());
        }
        if let Some(st) = &body.status {
            ev.status = st.clone();
        }
        if let Some(a) = new_attendees {
            ev.attendees = a;
        }
        ev.start_ms = s;
        ev.end_ms = e;
        ev.all_day = all;
    })?;
    let c = &set.calendars[cal];
    let ev = c.events.get(eid).ok_or_else(ApiError::backend_error)?;
    Ok(ApiResponse::json(&event_json(ev, &c.time_zone, false)))
}

fn delete(
    set: &mut CalendarSet,
    cal: usize,
    eid: &str,
    req: &ApiRequest,
    now: i64,
) -> Result<ApiResponse, ApiError> {
    match set.calendars[cal].events.get(eid) {
        Some(ev) => {
            check_if_match(req, ev)?;
            set.delete_event(cal, eid, now)?;
        }
        None => {
            let (master, index) = instance_index(set, cal, eid).ok_or_else(ApiError::not_found)?;
            set.cancel_instance(cal, &master, index, now)?;
        }
    }
    Ok(ApiResponse::empty(204))
}

pub fn write_event(
    set: &mut CalendarSet,
    cal: usize,
    op: &Op,
    req: &ApiRequest,
    now: i64,
) -> Result<ApiResponse, ApiError> {
    match op {
        Op::EventsInsert(_) => insert(set, cal, req, now),
        Op::EventsPatch(_, eid) => patch(set, cal, eid, req, now),
        Op::EventsDelete(_, eid) => delete(set, cal, eid, req, now),
        _ => Err(ApiError::backend_error()),
    }
}
