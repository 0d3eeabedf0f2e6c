//! Google's Event JSON shape: [`event_json`] renders one stored [`Event`] (or a stub for a
//! cancelled item) as the listings, `events.get` and writes return it.

use serde_json::{Value, json};

use super::model::Event;
use super::time::dt;
use crate::util::{b64url, rfc3339_ms};

/// Google's Event JSON for `e` in a calendar whose zone is `cal_tz`; `stub` keeps only what a
/// cancelled item is guaranteed to carry.
pub fn event_json(e: &Event, cal_tz: &str, stub: bool) -> Value {
    let mut v = json!({"kind": "calendar#event", "etag": format!("\"{}\"", e.etag_n), "id": e.id, "status": e.status});
    if let Some(r) = &e.recurring_event_id {
        v["recurringEventId"] = json!(r);
    }
    if let Some(o) = e.original_start_ms {
        v["originalStartTime"] = json!(dt(o, e.all_day, e.tz.as_deref(), cal_tz));
    }
    if stub {
        return v;
    }
    v["htmlLink"] = json!(format!(
        "https://www.google.com/calendar/event?eid={}",
        b64url(e.id.as_bytes())
    ));
    v["created"] = json!(rfc3339_ms(e.created_ms));
    v["updated"] = json!(rfc3339_ms(e.updated_ms));
    v["summary"] = json!(e.summary);
    if let Some(d) = &e.description {
        v["description"] = json!(d);
    }
    if let Some(l) = &e.location {
        v["location"] = json!(l);
    }
    v["start"] = json!(dt(e.start_ms, e.all_day, e.tz.as_deref(), cal_tz));
    v["end"] = json!(dt(e.end_ms, e.all_day, e.tz.as_deref(), cal_tz));
    if let Some(rec) = &e.recurrence {
        v["recurrence"] = json!(rec);
    }
    if let Some(o) = &e.organizer {
        let mut p = json!({"email": o.email});
        if let Some(n) = &o.display_name {
            p["displayName"] = json!(n);
        }
        v["organizer"] = p.clone();
        v["creator"] = p;
    }
    if !e.attendees.is_empty() {
        let list: Vec<Value> = e
            .attendees
            .iter()
            .map(|a| {
                let mut x = json!({"email": a.email, "responseStatus": a.response_status});
                if let Some(n) = &a.display_name {
                    x["displayName"] = json!(n);
                }
                if a.optional {
                    x["optional"] = json!(true);
                }
                if e.organizer.as_ref().is_some_and(|o| o.email == a.email) {
                    x["organizer"] = json!(true);
                }
                x
            })
            .collect();
        v["attendees"] = json!(list);
    }
    v["iCalUID"] = json!(e.ical_uid);
    v["sequence"] = json!(e.sequence);
    v["reminders"] = json!({"useDefault": true});
    v["eventType"] = json!("default");
    v
}
