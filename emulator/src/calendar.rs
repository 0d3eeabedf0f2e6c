//! Calendar v3: per-account calendars and events in memory, `calendarList.list`,
//! `events.list` (paging, sync tokens with `nextSyncToken` only on the last page,
//! `showDeleted`/cancelled semantics, `singleEvents` expansion of simple RRULEs, 410
//! `fullSyncRequired`, 400 for parameters that may not be combined with `syncToken`),
//! `events.get`, `events.watch` and `channels.stop` with web-hook notifications.

use std::collections::BTreeMap;

use axum::http::Method;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::generator;
use crate::http::{ApiRequest, ApiResponse, Op as HttpOp, Route};
use crate::oauth::{
    Principal, SCOPE_CAL_EVENTS, SCOPE_CAL_EVENTS_RO, SCOPE_CALENDAR, SCOPE_CALENDAR_RO,
};
use crate::pubsub::{CalendarPing, Outbound};
use crate::quota::Api;
use crate::state::EmulatorState;
use crate::util::{
    b64_decode_any, b64url, civil_from_days, hash64, lock, parse_rfc3339, rfc3339_ms,
};
use crate::wire::{self, EventDateTime};

const CAL_READ: &[&str] = &[
    SCOPE_CALENDAR,
    SCOPE_CALENDAR_RO,
    SCOPE_CAL_EVENTS,
    SCOPE_CAL_EVENTS_RO,
];
const LIST_READ: &[&str] = &[SCOPE_CALENDAR, SCOPE_CALENDAR_RO];
const CAL_WRITE: &[&str] = &[SCOPE_CALENDAR, SCOPE_CAL_EVENTS];

#[derive(Debug, Clone)]
pub enum Op {
    CalendarList,
    EventsList(String),
    EventsGet(String, String),
    EventsWatch(String),
    EventsInsert(String),
    EventsPatch(String, String),
    EventsDelete(String, String),
    ChannelsStop,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub status: String,
    pub summary: String,
    pub start: EventDateTime,
    pub end: EventDateTime,
    pub start_ms: i64,
    pub end_ms: i64,
    pub all_day: bool,
    pub recurrence: Option<Vec<String>>,
    pub recurring_event_id: Option<String>,
    pub original_start_time: Option<EventDateTime>,
    pub original_start_ms: Option<i64>,
    pub ical_uid: String,
    pub sequence: u32,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub etag_n: u64,
    pub change_seq: u64,
}

#[derive(Debug, Clone)]
pub struct ChannelReg {
    pub id: String,
    pub resource_id: String,
    pub resource_uri: String,
    pub address: String,
    pub token: Option<String>,
    pub expiration_ms: i64,
    pub next_number: u64,
    pub calendar_id: String,
}

#[derive(Debug, Clone)]
pub struct Calendar {
    pub id: String,
    pub summary: String,
    pub time_zone: String,
    pub primary: bool,
    pub access_role: String,
    pub events: BTreeMap<String, Event>,
    pub seq: u64,
    pub epoch: u64,
    pub updated_ms: i64,
}

#[derive(Debug)]
pub struct CalendarSet {
    pub calendars: Vec<Calendar>,
    pub channels: Vec<ChannelReg>,
    secret: u64,
    owner: String,
}

fn dt(ms: i64, all_day: bool, tz: Option<&str>) -> EventDateTime {
    if all_day {
        let (y, m, d) = civil_from_days(ms.div_euclid(86_400_000));
        EventDateTime {
            date: Some(format!("{y:04}-{m:02}-{d:02}")),
            date_time: None,
            time_zone: None,
        }
    } else {
        let s = rfc3339_ms(ms);
        let s = s.replace(".000Z", "Z");
        EventDateTime {
            date: None,
            date_time: Some(s),
            time_zone: tz.map(String::from),
        }
    }
}

/// Simple RRULE support: FREQ=DAILY|WEEKLY, optional INTERVAL and COUNT (default 52 instances).
fn occurrences(rrule: &str, start_ms: i64) -> Vec<i64> {
    let body = rrule.strip_prefix("RRULE:").unwrap_or(rrule);
    let mut freq = 0i64;
    let mut count = 52usize;
    let mut interval = 1i64;
    for kv in body.split(';') {
        match kv.split_once('=') {
            Some(("FREQ", "DAILY")) => freq = 86_400_000,
            Some(("FREQ", "WEEKLY")) => freq = 7 * 86_400_000,
            Some(("COUNT", n)) => count = n.parse().unwrap_or(52).min(500),
            Some(("INTERVAL", n)) => interval = n.parse().unwrap_or(1).max(1),
            _ => {}
        }
    }
    if freq == 0 {
        return vec![start_ms];
    }
    (0..count as i64)
        .map(|i| start_ms + i * freq * interval)
        .collect()
}

fn instance_suffix(ms: i64, all_day: bool) -> String {
    let s = rfc3339_ms(ms);
    let compact: String = s
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect();
    if all_day {
        compact[..8].to_string()
    } else {
        format!("{}Z", &compact[..15])
    }
}

impl CalendarSet {
    pub fn seeded(seed: u64, owner: &str, n: usize, anchor_ms: i64) -> Self {
        let ah = generator::account_hash(seed, owner);
        let mut set = CalendarSet {
            calendars: Vec::new(),
            channels: Vec::new(),
            secret: ah ^ 0xCA1E_DA75,
            owner: owner.to_string(),
        };
        let defs = [
            (owner.to_string(), owner.to_string(), true, "owner"),
            (
                format!("family{:08x}@group.calendar.google.com", ah as u32),
                "Family".to_string(),
                false,
                "writer",
            ),
        ];
        for (k, (id, summary, primary, role)) in defs.into_iter().enumerate() {
            let mut cal = Calendar {
                id: id.clone(),
                summary,
                time_zone: "UTC".into(),
                primary,
                access_role: role.into(),
                events: BTreeMap::new(),
                seq: 1_000,
                epoch: 1,
                updated_ms: anchor_ms,
            };
            let count = if k == 0 { n } else { n / 4 };
            for p in generator::plan_events(ah, &id, count, anchor_ms) {
                cal.seq += 1;
                let all_day = p.all_day.is_some();
                let tz = p.recurrence.as_ref().map(|_| "UTC");
                let ev = Event {
                    id: p.id.clone(),
                    status: "confirmed".into(),
                    summary: p.summary,
                    start: dt(p.start_ms, all_day, tz),
                    end: dt(p.end_ms, all_day, tz),
                    start_ms: p.start_ms,
                    end_ms: p.end_ms,
                    all_day,
                    recurrence: p.recurrence.map(|r| vec![r]),
                    recurring_event_id: None,
                    original_start_time: None,
                    original_start_ms: None,
                    ical_uid: format!("{}@google.com", p.id),
                    sequence: 0,
                    created_ms: anchor_ms - 86_400_000 * 90,
                    updated_ms: anchor_ms - 86_400_000,
                    etag_n: 3_000_000_000 + cal.seq,
                    change_seq: cal.seq,
                };
                cal.events.insert(ev.id.clone(), ev);
            }
            set.calendars.push(cal);
        }
        set
    }

    pub fn find(&self, id: &str) -> Option<usize> {
        if id == "primary" {
            return self.calendars.iter().position(|c| c.primary);
        }
        self.calendars
            .iter()
            .position(|c| c.id.eq_ignore_ascii_case(id))
    }

    fn mac(&self, s: &str) -> String {
        format!(
            "{:016x}",
            hash64(&[&self.secret.to_le_bytes(), s.as_bytes()])
        )
    }

    fn sync_token(&self, cal: usize, seq: u64) -> String {
        let c = &self.calendars[cal];
        let body = format!("{}:{}:{}", c.id, c.epoch, seq);
        format!(
            "CPD{}",
            b64url(format!("{body}:{}", self.mac(&body)).as_bytes())
        )
    }

    /// Verifies a sync token; `None` means 410.
    fn check_sync_token(&self, cal: usize, tok: &str) -> Option<u64> {
        let raw = b64_decode_any(tok.strip_prefix("CPD")?)?;
        let s = String::from_utf8(raw).ok()?;
        let (body, mac) = s.rsplit_once(':')?;
        if self.mac(body) != mac {
            return None;
        }
        let mut it = body.rsplitn(3, ':');
        let seq: u64 = it.next()?.parse().ok()?;
        let epoch: u64 = it.next()?.parse().ok()?;
        let id = it.next()?;
        let c = &self.calendars[cal];
        (id == c.id && epoch == c.epoch && seq <= c.seq).then_some(seq)
    }

    fn page_token(&self, parts: &str) -> String {
        b64url(format!("{parts}|{}", self.mac(parts)).as_bytes())
    }

    fn open_page_token(&self, tok: &str) -> Option<Vec<String>> {
        let s = String::from_utf8(b64_decode_any(tok)?).ok()?;
        let (body, mac) = s.rsplit_once('|')?;
        (self.mac(body) == mac).then(|| body.split('|').map(String::from).collect())
    }

    /// Invalidates every sync token of a calendar (410 on next use).
    pub fn invalidate_tokens(&mut self, cal: usize) {
        self.calendars[cal].epoch += 1;
    }

    fn touch(cal: &mut Calendar, ev_id: &str, now: i64) {
        cal.seq += 1 + (cal.seq % 3);
        cal.updated_ms = now;
        if let Some(e) = cal.events.get_mut(ev_id) {
            e.change_seq = cal.seq;
            e.updated_ms = now;
            e.etag_n += 7;
            e.sequence += 1;
        }
    }

    /// Creates a timed event (control API / mutation generator).
    #[allow(clippy::too_many_arguments)]
    pub fn create_event(
        &mut self,
        cal: usize,
        id: Option<String>,
        summary: &str,
        start_ms: i64,
        end_ms: i64,
        all_day: bool,
        recurrence: Option<String>,
        now: i64,
    ) -> Result<String, ApiError> {
        let c = &mut self.calendars[cal];
        let id = id.unwrap_or_else(|| {
            format!(
                "emu{:016x}{:06x}",
                hash64(&[summary.as_bytes(), &now.to_le_bytes()]),
                c.seq
            )
        });
        if id.len() < 5
            || !id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'v').contains(&b))
        {
            return Err(ApiError::invalid_param("id", "Invalid resource id value."));
        }
        if c.events.contains_key(&id) {
            return Err(ApiError::new(
                409,
                "duplicate",
                "global",
                "The requested identifier already exists.",
            ));
        }
        let tz = recurrence.as_ref().map(|_| "UTC");
        c.events.insert(
            id.clone(),
            Event {
                id: id.clone(),
                status: "confirmed".into(),
                summary: summary.to_string(),
                start: dt(start_ms, all_day, tz),
                end: dt(end_ms, all_day, tz),
                start_ms,
                end_ms,
                all_day,
                recurrence: recurrence.map(|r| vec![r]),
                recurring_event_id: None,
                original_start_time: None,
                original_start_ms: None,
                ical_uid: format!("{id}@google.com"),
                sequence: 0,
                created_ms: now,
                updated_ms: now,
                etag_n: 3_100_000_000,
                change_seq: 0,
            },
        );
        Self::touch(c, &id, now);
        Ok(id)
    }

    pub fn update_event(
        &mut self,
        cal: usize,
        id: &str,
        summary: Option<&str>,
        now: i64,
    ) -> Result<(), ApiError> {
        let c = &mut self.calendars[cal];
        let e = c
            .events
            .get_mut(id)
            .filter(|e| e.status != "cancelled")
            .ok_or_else(ApiError::not_found)?;
        if let Some(s) = summary {
            e.summary = s.to_string();
        }
        Self::touch(c, id, now);
        Ok(())
    }

    /// Deletes an event (it becomes a `cancelled` tombstone); 410 `deleted` if already deleted.
    pub fn delete_event(&mut self, cal: usize, id: &str, now: i64) -> Result<(), ApiError> {
        let c = &mut self.calendars[cal];
        let e = c.events.get_mut(id).ok_or_else(ApiError::not_found)?;
        if e.status == "cancelled" {
            let mut err = ApiError::new(410, "deleted", "global", "Resource has been deleted");
            err.status = None;
            return Err(err);
        }
        e.status = "cancelled".into();
        Self::touch(c, id, now);
        Ok(())
    }

    /// Cancels one occurrence of a recurring event (adds a cancelled exception).
    pub fn cancel_instance(
        &mut self,
        cal: usize,
        master: &str,
        index: usize,
        now: i64,
    ) -> Result<String, ApiError> {
        let c = &mut self.calendars[cal];
        let m = c
            .events
            .get(master)
            .ok_or_else(ApiError::not_found)?
            .clone();
        let rule = m
            .recurrence
            .as_ref()
            .and_then(|r| r.first())
            .ok_or_else(|| ApiError::bad_request("not a recurring event"))?;
        let occ = occurrences(rule, m.start_ms);
        let at = *occ
            .get(index)
            .ok_or_else(|| ApiError::bad_request("no such occurrence"))?;
        let id = format!("{}_{}", m.id, instance_suffix(at, m.all_day));
        let dur = m.end_ms - m.start_ms;
        let tz = m.start.time_zone.as_deref();
        c.events.insert(
            id.clone(),
            Event {
                id: id.clone(),
                status: "cancelled".into(),
                summary: m.summary.clone(),
                start: dt(at, m.all_day, tz),
                end: dt(at + dur, m.all_day, tz),
                start_ms: at,
                end_ms: at + dur,
                all_day: m.all_day,
                recurrence: None,
                recurring_event_id: Some(m.id.clone()),
                original_start_time: Some(dt(at, m.all_day, tz)),
                original_start_ms: Some(at),
                ical_uid: m.ical_uid.clone(),
                sequence: m.sequence,
                created_ms: now,
                updated_ms: now,
                etag_n: 3_200_000_000,
                change_seq: 0,
            },
        );
        Self::touch(c, &id, now);
        Ok(id)
    }

    /// Channels to ping after a change of calendar `cal`.
    pub fn pings(&mut self, cal: usize, now: i64) -> Vec<CalendarPing> {
        let cid = self.calendars[cal].id.clone();
        self.channels.retain(|ch| ch.expiration_ms > now);
        self.channels
            .iter_mut()
            .filter(|ch| ch.calendar_id == cid)
            .map(|ch| {
                ch.next_number += 1 + (ch.next_number % 5);
                CalendarPing {
                    address: ch.address.clone(),
                    channel_id: ch.id.clone(),
                    resource_id: ch.resource_id.clone(),
                    resource_uri: ch.resource_uri.clone(),
                    token: ch.token.clone(),
                    expiration_ms: ch.expiration_ms,
                    message_number: ch.next_number,
                    state: "exists",
                }
            })
            .collect()
    }

    /// Truth snapshot of all calendars.
    pub fn snapshot(&self) -> Value {
        let cals: Vec<Value> = self
            .calendars
            .iter()
            .map(|c| {
                let events: Vec<Value> = c.events.values().map(|e| json!({"id": e.id, "status": e.status, "summary": e.summary, "etag": format!("\"{}\"", e.etag_n), "recurringEventId": e.recurring_event_id})).collect();
                json!({"id": c.id, "summary": c.summary, "primary": c.primary, "events": events})
            })
            .collect();
        json!({"owner": self.owner, "calendars": cals})
    }
}

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

fn cal_error(code: u16, reason: &'static str, message: &str, location: Option<&str>) -> ApiError {
    let mut e = ApiError::new(code, reason, "calendar", message);
    if let Some(l) = location {
        e.location = Some((l.to_string(), "parameter"));
    }
    e
}

fn full_sync_required() -> ApiError {
    let mut e = cal_error(
        410,
        "fullSyncRequired",
        "Sync token is no longer valid, a full sync is required.",
        Some("syncToken"),
    );
    e.status = None;
    e
}

fn event_json(e: &Event, stub: bool) -> Value {
    let mut v = json!({"kind": "calendar#event", "etag": format!("\"{}\"", e.etag_n), "id": e.id, "status": e.status});
    if let Some(r) = &e.recurring_event_id {
        v["recurringEventId"] = json!(r);
    }
    if let Some(o) = &e.original_start_time {
        v["originalStartTime"] = json!(o);
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
    v["start"] = json!(e.start);
    v["end"] = json!(e.end);
    if let Some(rec) = &e.recurrence {
        v["recurrence"] = json!(rec);
    }
    v["iCalUID"] = json!(e.ical_uid);
    v["sequence"] = json!(e.sequence);
    v["reminders"] = json!({"useDefault": true});
    v["eventType"] = json!("default");
    v
}

/// Expands masters into instances (exceptions replace their instance); non-recurring pass.
fn expand(cal: &Calendar, events: Vec<&Event>) -> Vec<Event> {
    let mut out = Vec::new();
    for e in events {
        match (&e.recurrence, e.status.as_str()) {
            (Some(rules), "confirmed") => {
                let dur = e.end_ms - e.start_ms;
                let tz = e.start.time_zone.as_deref();
                for at in rules
                    .first()
                    .map(|r| occurrences(r, e.start_ms))
                    .unwrap_or_default()
                {
                    let id = format!("{}_{}", e.id, instance_suffix(at, e.all_day));
                    if cal.events.contains_key(&id) {
                        continue; // an exception exists and is listed on its own
                    }
                    let mut inst = e.clone();
                    inst.id = id;
                    inst.recurrence = None;
                    inst.recurring_event_id = Some(e.id.clone());
                    inst.original_start_time = Some(dt(at, e.all_day, tz));
                    inst.original_start_ms = Some(at);
                    inst.start = dt(at, e.all_day, tz);
                    inst.end = dt(at + dur, e.all_day, tz);
                    inst.start_ms = at;
                    inst.end_ms = at + dur;
                    out.push(inst);
                }
            }
            _ => out.push(e.clone()),
        }
    }
    out
}

fn series_end(e: &Event) -> i64 {
    match e.recurrence.as_ref().and_then(|r| r.first()) {
        Some(rule) => {
            occurrences(rule, e.start_ms)
                .last()
                .copied()
                .unwrap_or(e.start_ms)
                + (e.end_ms - e.start_ms)
        }
        None => e.end_ms,
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
                    return Ok(ApiResponse::json(&event_json(e, false)));
                }
                let (master, _) = eid.split_once('_').ok_or_else(ApiError::not_found)?;
                let m = c.events.get(master).ok_or_else(ApiError::not_found)?;
                let inst = expand(c, vec![m])
                    .into_iter()
                    .find(|i| i.id == *eid)
                    .ok_or_else(ApiError::not_found)?;
                Ok(ApiResponse::json(&event_json(&inst, false)))
            }
            Op::EventsWatch(cid) => {
                if !p.has_any(CAL_READ) {
                    return Err(ApiError::insufficient_scope());
                }
                let cal = set.find(cid).ok_or_else(ApiError::not_found)?;
                let body: wire::ChannelRequest = req.json_body()?;
                let id = body
                    .id
                    .filter(|i| !i.is_empty())
                    .ok_or_else(|| ApiError::invalid_param("id", "Required"))?;
                if id.len() > 64
                    || !id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_+/=".contains(&b))
                {
                    return Err(ApiError::invalid_param("id", "Invalid channel id"));
                }
                match body.channel_type.as_deref() {
                    Some("web_hook") | Some("webhook") => {}
                    _ => {
                        return Err(ApiError::invalid_param(
                            "type",
                            "Invalid channel type; expected web_hook",
                        ));
                    }
                }
                let address = body
                    .address
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| ApiError::invalid_param("address", "Required"))?;
                let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
                    .iter()
                    .any(|p| address.starts_with(p));
                if !address.starts_with("https://") && !loopback {
                    return Err(ApiError::invalid_param(
                        "address",
                        format!("WebHook callback must be HTTPS: {address}"),
                    ));
                }
                if body.token.as_ref().is_some_and(|t| t.len() > 256) {
                    return Err(ApiError::invalid_param("token", "Channel token too long"));
                }
                if set.channels.iter().any(|c| c.id == id) {
                    return Err(ApiError::bad_request(format!("Channel id {id} not unique")));
                }
                let ttl_ms = match body.params.as_ref().and_then(|p| p.get("ttl")) {
                    Some(t) => {
                        t.parse::<i64>()
                            .map_err(|_| ApiError::invalid_param("params.ttl", "Invalid ttl"))?
                            * 1000
                    }
                    None => st.config.channel_ttl.as_millis() as i64,
                };
                let mut expiration = now + ttl_ms.min(st.config.channel_ttl.as_millis() as i64 * 4);
                if let Some(e) = body.expiration.as_deref() {
                    let req_exp: i64 = e
                        .parse()
                        .map_err(|_| ApiError::invalid_param("expiration", "Invalid expiration"))?;
                    expiration = expiration.min(req_exp);
                }
                let c = &set.calendars[cal];
                let resource_id = format!("{:x}", hash64(&[c.id.as_bytes(), b"events"]) >> 8);
                let resource_uri = format!(
                    "https://www.googleapis.com/calendar/v3/calendars/{}/events?alt=json",
                    percent_encoding::utf8_percent_encode(
                        &c.id,
                        percent_encoding::NON_ALPHANUMERIC
                    )
                );
                let reg = ChannelReg {
                    id: id.clone(),
                    resource_id: resource_id.clone(),
                    resource_uri: resource_uri.clone(),
                    address,
                    token: body.token.clone(),
                    expiration_ms: expiration,
                    next_number: 1,
                    calendar_id: c.id.clone(),
                };
                pings.push(CalendarPing {
                    address: reg.address.clone(),
                    channel_id: id.clone(),
                    resource_id: resource_id.clone(),
                    resource_uri: resource_uri.clone(),
                    token: reg.token.clone(),
                    expiration_ms: expiration,
                    message_number: 1,
                    state: "sync",
                });
                set.channels.push(reg);
                Ok(ApiResponse::json(&wire::Channel {
                    kind: "api#channel".into(),
                    id,
                    resource_id,
                    resource_uri,
                    token: body.token,
                    expiration: expiration.to_string(),
                }))
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
            Op::ChannelsStop => {
                let body: wire::StopChannelRequest = req.json_body()?;
                let id = body
                    .id
                    .ok_or_else(|| ApiError::invalid_param("id", "Required"))?;
                let rid = body
                    .resource_id
                    .ok_or_else(|| ApiError::invalid_param("resourceId", "Required"))?;
                let before = set.channels.len();
                set.channels
                    .retain(|c| !(c.id == id && c.resource_id == rid));
                if set.channels.len() == before {
                    let mut e = ApiError::not_found();
                    e.message = format!("Channel '{id}' not found for project");
                    return Err(e);
                }
                Ok(ApiResponse::empty(204))
            }
        }
    };
    for p in pings {
        let _ = st.outbound.send(Outbound::Calendar(p));
    }
    result
}

fn calendar_list(set: &CalendarSet, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
    let max = match req.u32_param("maxResults")? {
        None => 100,
        Some(0) => {
            return Err(ApiError::invalid_param(
                "maxResults",
                "Invalid value for maxResults",
            ));
        }
        Some(n) => n.min(250) as usize,
    };
    let roles = ["freeBusyReader", "reader", "writer", "owner"];
    let min_role = req.param("minAccessRole");
    if let Some(m) = min_role
        && !roles.contains(&m)
    {
        return Err(ApiError::invalid_param(
            "minAccessRole",
            format!("Invalid value '{m}'"),
        ));
    }
    if req.param("syncToken").is_some() {
        if min_role.is_some() {
            return Err(ApiError::invalid_param(
                "minAccessRole",
                "minAccessRole cannot be used together with syncToken",
            ));
        }
        let tok = req.param("syncToken").unwrap_or_default();
        if tok != format!("CL{}", set.mac("calendarList")) {
            return Err(full_sync_required());
        }
    }
    let offset: usize = match req.param("pageToken") {
        Some(t) => set
            .open_page_token(t)
            .and_then(|v| v.first().and_then(|s| s.parse().ok()))
            .ok_or_else(|| ApiError::invalid_param("pageToken", "Invalid page token"))?,
        None => 0,
    };
    let rank = |r: &str| roles.iter().position(|x| *x == r).unwrap_or(0);
    let all: Vec<&Calendar> = set
        .calendars
        .iter()
        .filter(|c| min_role.is_none_or(|m| rank(&c.access_role) >= rank(m)))
        .collect();
    let incremental = req.param("syncToken").is_some();
    let items: Vec<Value> = if incremental {
        Vec::new()
    } else {
        all.iter()
            .skip(offset)
            .take(max)
            .map(|c| {
                let mut v = json!({
                    "kind": "calendar#calendarListEntry",
                    "etag": format!("\"{}\"", c.updated_ms),
                    "id": c.id,
                    "summary": c.summary,
                    "timeZone": c.time_zone,
                    "colorId": "14",
                    "backgroundColor": "#9fe1e7",
                    "foregroundColor": "#000000",
                    "selected": true,
                    "accessRole": c.access_role,
                    "defaultReminders": [],
                });
                if c.primary {
                    v["primary"] = json!(true);
                }
                v
            })
            .collect()
    };
    let mut out =
        json!({"kind": "calendar#calendarList", "etag": "\"p33k9lgvqqnpfk0g\"", "items": items});
    if !incremental && offset + max < all.len() {
        out["nextPageToken"] = json!(set.page_token(&(offset + max).to_string()));
    } else {
        out["nextSyncToken"] = json!(format!("CL{}", set.mac("calendarList")));
    }
    Ok(ApiResponse::json(&out))
}

const NOT_WITH_SYNC: &[&str] = &[
    "iCalUID",
    "orderBy",
    "privateExtendedProperty",
    "q",
    "sharedExtendedProperty",
    "timeMin",
    "timeMax",
    "updatedMin",
];

fn events_list(set: &CalendarSet, cal: usize, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
    let max = match req.u32_param("maxResults")? {
        None => 250,
        Some(0) => {
            return Err(ApiError::invalid_param(
                "maxResults",
                "Invalid value for maxResults",
            ));
        }
        Some(n) => n.min(2500) as usize,
    };
    let sync = req.param("syncToken");
    let show_deleted = req.bool_param("showDeleted")?;
    let single = req.bool_param("singleEvents")?.unwrap_or(false);
    if sync.is_some() {
        for k in NOT_WITH_SYNC {
            if req.param(k).is_some() {
                return Err(ApiError::invalid_param(
                    k,
                    format!("The parameter {k} cannot be used together with syncToken."),
                ));
            }
        }
        if show_deleted == Some(false) {
            return Err(ApiError::invalid_param(
                "showDeleted",
                "showDeleted=false cannot be used together with syncToken.",
            ));
        }
    }
    if req.param("q").is_some()
        || req.param("iCalUID").is_some()
        || req.param("privateExtendedProperty").is_some()
        || req.param("sharedExtendedProperty").is_some()
    {
        return Err(ApiError::bad_request(
            "q, iCalUID and extended-property filters are not supported by the emulator",
        ));
    }
    let order = req.param("orderBy");
    match order {
        None | Some("updated") => {}
        Some("startTime") if single => {}
        Some("startTime") => {
            return Err(ApiError::invalid_param(
                "orderBy",
                "The requested ordering is not available for the particular query.",
            ));
        }
        Some(o) => {
            return Err(ApiError::invalid_param(
                "orderBy",
                format!("Invalid value '{o}'"),
            ));
        }
    }
    let parse_t = |k: &str| -> Result<Option<i64>, ApiError> {
        req.param(k)
            .map(|v| {
                parse_rfc3339(v)
                    .ok_or_else(|| ApiError::invalid_param(k, format!("Bad Request: invalid {k}")))
            })
            .transpose()
    };
    let time_min = parse_t("timeMin")?;
    let time_max = parse_t("timeMax")?;
    let updated_min = parse_t("updatedMin")?;
    if let (Some(a), Some(b)) = (time_min, time_max)
        && b <= a
    {
        return Err(cal_error(
            400,
            "timeRangeEmpty",
            "The specified time range is empty.",
            Some("timeMax"),
        ));
    }
    // Fingerprint of the query (page tokens must be used with the same query).
    let fp = {
        let mut q: Vec<String> = req
            .query
            .iter()
            .filter(|(k, _)| k != "pageToken")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        q.sort();
        format!("{:x}", hash64(&[q.join("&").as_bytes()]) & 0xffff_ffff)
    };
    let c = &set.calendars[cal];
    let (snapshot, cursor, from) = match req.param("pageToken") {
        Some(t) => {
            let parts = set
                .open_page_token(t)
                .filter(|p| p.len() == 5 && p[4] == fp && p[3] == c.epoch.to_string())
                .ok_or_else(|| ApiError::invalid_param("pageToken", "Invalid page token"))?;
            let snap: u64 = parts[0]
                .parse()
                .map_err(|_| ApiError::invalid_param("pageToken", "Invalid page token"))?;
            let from: Option<u64> = if parts[2].is_empty() {
                None
            } else {
                parts[2].parse().ok()
            };
            (snap, Some(parts[1].clone()), from)
        }
        None => {
            let from = match sync {
                Some(t) => Some(
                    set.check_sync_token(cal, t)
                        .ok_or_else(full_sync_required)?,
                ),
                None => None,
            };
            (c.seq, None, from)
        }
    };
    let include_cancelled = from.is_some() || show_deleted == Some(true) || updated_min.is_some();
    let base: Vec<&Event> = c
        .events
        .values()
        .filter(|e| match from {
            Some(f) => e.change_seq > f && e.change_seq <= snapshot,
            None => true,
        })
        .filter(|e| {
            include_cancelled
                || e.status != "cancelled"
                || (e.recurring_event_id.is_some() && !single)
        })
        .filter(|e| updated_min.is_none_or(|u| e.updated_ms >= u))
        .filter(|e| time_max.is_none_or(|t| e.start_ms < t))
        .filter(|e| time_min.is_none_or(|t| series_end(e) > t))
        .collect();
    let mut items: Vec<Event> = if single {
        expand(c, base)
            .into_iter()
            .filter(|e| {
                time_max.is_none_or(|t| e.start_ms < t) && time_min.is_none_or(|t| e.end_ms > t)
            })
            .filter(|e| include_cancelled || e.status != "cancelled")
            .collect()
    } else {
        base.into_iter().cloned().collect()
    };
    let key = |e: &Event| match order {
        Some("startTime") => format!("{:020}{}", e.start_ms + (1i64 << 50), e.id),
        Some("updated") => format!("{:020}{}", e.updated_ms + (1i64 << 50), e.id),
        _ => e.id.clone(),
    };
    items.sort_by_key(|e| key(e));
    let remaining: Vec<&Event> = items
        .iter()
        .filter(|e| cursor.as_ref().is_none_or(|cur| key(e) > *cur))
        .collect();
    let page: Vec<Value> = remaining
        .iter()
        .take(max)
        .map(|e| {
            event_json(
                e,
                e.status == "cancelled" && (from.is_some() || e.recurring_event_id.is_some()),
            )
        })
        .collect();
    let mut out = json!({
        "kind": "calendar#events",
        "etag": format!("\"{}\"", c.seq),
        "summary": c.summary,
        "updated": rfc3339_ms(c.updated_ms),
        "timeZone": c.time_zone,
        "accessRole": c.access_role,
        "defaultReminders": [],
        "items": page,
    });
    if remaining.len() > max {
        let last = remaining.get(max - 1).map(|e| key(e)).unwrap_or_default();
        let from_s = from.map(|f| f.to_string()).unwrap_or_default();
        out["nextPageToken"] =
            json!(set.page_token(&format!("{snapshot}|{last}|{from_s}|{}|{fp}", c.epoch)));
    } else {
        out["nextSyncToken"] = json!(set.sync_token(cal, snapshot));
    }
    Ok(ApiResponse::json(&out))
}

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
                        crate::util::days_from_civil(*y, *m as u32, *dd as u32) * 86_400_000,
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
                Some("UTC") | Some("Etc/UTC") => parse_rfc3339(&format!("{dtm}Z"))
                    .map(|ms| (ms, false))
                    .ok_or_else(|| {
                        ApiError::invalid_param(field, format!("Invalid {field} time."))
                    }),
                Some(_) => Err(ApiError::bad_request(format!(
                    "{field}.dateTime without an offset is only supported with timeZone UTC by the emulator"
                ))),
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

fn write_event(
    set: &mut CalendarSet,
    cal: usize,
    op: &Op,
    req: &ApiRequest,
    now: i64,
) -> Result<ApiResponse, ApiError> {
    match op {
        Op::EventsInsert(_) => {
            let body: wire::EventWriteRequest = req.json_body()?;
            let start = body
                .start
                .as_ref()
                .ok_or_else(|| ApiError::invalid_param("start", "Missing start time."))?;
            let end = body
                .end
                .as_ref()
                .ok_or_else(|| ApiError::invalid_param("end", "Missing end time."))?;
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
            let rule = match body.recurrence.as_deref() {
                None | Some([]) => None,
                Some([r])
                    if r.starts_with("RRULE:FREQ=DAILY") || r.starts_with("RRULE:FREQ=WEEKLY") =>
                {
                    if start.time_zone.is_none() && !s_all {
                        return Err(ApiError::invalid_param(
                            "start",
                            "Missing time zone definition for start time.",
                        ));
                    }
                    Some(r.clone())
                }
                Some(_) => {
                    return Err(ApiError::bad_request(
                        "Only a single RRULE with FREQ=DAILY or FREQ=WEEKLY is supported by the emulator",
                    ));
                }
            };
            if body
                .status
                .as_deref()
                .is_some_and(|st| st != "confirmed" && st != "tentative")
            {
                return Err(ApiError::invalid_param("status", "Invalid status"));
            }
            let id = set.create_event(
                cal,
                body.id,
                body.summary.as_deref().unwrap_or(""),
                s,
                e,
                s_all,
                rule,
                now,
            )?;
            let ev = set.calendars[cal]
                .events
                .get(&id)
                .ok_or_else(ApiError::backend_error)?;
            Ok(ApiResponse::json(&event_json(ev, false)))
        }
        Op::EventsPatch(_, eid) => {
            let body: wire::EventWriteRequest = req.json_body()?;
            let c = &mut set.calendars[cal];
            let ev = c.events.get(eid).ok_or_else(ApiError::not_found)?;
            check_if_match(req, ev)?;
            if ev.status == "cancelled" {
                let mut err = ApiError::new(410, "deleted", "global", "Resource has been deleted");
                err.status = None;
                return Err(err);
            }
            if body.id.as_ref().is_some_and(|i| i != eid)
                || body.recurrence.is_some()
                || body.status.is_some()
            {
                return Err(ApiError::bad_request(
                    "The emulator patches only summary, start and end",
                ));
            }
            let (mut s, mut e, mut all) = (ev.start_ms, ev.end_ms, ev.all_day);
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
            let tz = ev.start.time_zone.clone();
            if let Some(ev) = c.events.get_mut(eid) {
                if let Some(sm) = &body.summary {
                    ev.summary = sm.clone();
                }
                ev.start_ms = s;
                ev.end_ms = e;
                ev.all_day = all;
                ev.start = dt(s, all, tz.as_deref());
                ev.end = dt(e, all, tz.as_deref());
            }
            CalendarSet::touch(c, eid, now);
            let ev = c.events.get(eid).ok_or_else(ApiError::backend_error)?;
            Ok(ApiResponse::json(&event_json(ev, false)))
        }
        Op::EventsDelete(_, eid) => {
            let ev = set.calendars[cal]
                .events
                .get(eid)
                .ok_or_else(ApiError::not_found)?;
            check_if_match(req, ev)?;
            set.delete_event(cal, eid, now)?;
            Ok(ApiResponse::empty(204))
        }
        _ => Err(ApiError::backend_error()),
    }
}
