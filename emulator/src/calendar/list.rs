//! The listing endpoints: `calendarList.list` (paging; its own sync token that returns
//! calendars added since, and removed ones as `deleted: true`) and `events.list` (paging with
//! `nextSyncToken` only on the last page, optional empty pages that still carry a
//! `nextPageToken`, sync tokens, `showDeleted`/cancelled semantics, `singleEvents` expansion,
//! 400 for parameters that may not be combined with `syncToken`), plus the Event JSON shape.

use serde_json::{Value, json};

use super::errors::{cal_error, full_sync_required};
use super::model::{Calendar, CalendarSet, Event};
use super::time::{instance_suffix, occurrences};
use crate::error::ApiError;
use crate::http::{ApiRequest, ApiResponse};
use crate::util::{hash64, parse_rfc3339, rfc3339_ms};

pub use super::event_shape::event_json;

fn series_tz<'a>(cal: &'a Calendar, e: &'a Event) -> &'a str {
    e.tz.as_deref().unwrap_or(&cal.time_zone)
}

/// Expands masters into instances (exceptions replace their instance); non-recurring pass.
pub fn expand(cal: &Calendar, events: Vec<&Event>) -> Vec<Event> {
    let mut out = Vec::new();
    for e in events {
        match (&e.recurrence, e.status.as_str()) {
            (Some(rules), "confirmed" | "tentative") => {
                let dur = e.end_ms - e.start_ms;
                for at in rules
                    .first()
                    .map(|r| occurrences(r, e.start_ms, e.all_day, series_tz(cal, e)))
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
                    inst.original_start_ms = Some(at);
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

fn series_end(cal: &Calendar, e: &Event) -> i64 {
    match e.recurrence.as_ref().and_then(|r| r.first()) {
        Some(rule) => {
            occurrences(rule, e.start_ms, e.all_day, series_tz(cal, e))
                .last()
                .copied()
                .unwrap_or(e.start_ms)
                + (e.end_ms - e.start_ms)
        }
        None => e.end_ms,
    }
}

fn list_entry(c: &Calendar) -> Value {
    if c.deleted {
        return json!({"kind": "calendar#calendarListEntry", "etag": format!("\"{}\"", c.list_seq),
                      "id": c.id, "deleted": true});
    }
    let mut v = json!({
        "kind": "calendar#calendarListEntry",
        "etag": format!("\"{}\"", c.list_seq),
        "id": c.id,
        "summary": c.summary,
        "timeZone": c.time_zone,
        "colorId": "14",
        "backgroundColor": c.background_color,
        "foregroundColor": "#000000",
        "selected": true,
        "accessRole": c.access_role,
        "defaultReminders": [],
    });
    if c.primary {
        v["primary"] = json!(true);
    }
    v
}

pub fn calendar_list(set: &CalendarSet, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
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
    let show_deleted = req.bool_param("showDeleted")?.unwrap_or(false);
    let (snapshot, offset, from) = match req.param("pageToken") {
        Some(t) => {
            let parts = set
                .open_page_token(t)
                .filter(|p| p.len() == 4 && p[0] == "cl")
                .ok_or_else(|| ApiError::invalid_param("pageToken", "Invalid page token"))?;
            let bad = || ApiError::invalid_param("pageToken", "Invalid page token");
            let snap: u64 = parts[1].parse().map_err(|_| bad())?;
            let off: usize = parts[2].parse().map_err(|_| bad())?;
            let from: Option<u64> = if parts[3].is_empty() {
                None
            } else {
                Some(parts[3].parse().map_err(|_| bad())?)
            };
            (snap, off, from)
        }
        None => {
            let from = match req.param("syncToken") {
                Some(tok) => {
                    if min_role.is_some() {
                        return Err(ApiError::invalid_param(
                            "minAccessRole",
                            "minAccessRole cannot be used together with syncToken",
                        ));
                    }
                    Some(set.check_list_token(tok).ok_or_else(full_sync_required)?)
                }
                None => None,
            };
            (set.list_seq, 0, from)
        }
    };
    let rank = |r: &str| roles.iter().position(|x| *x == r).unwrap_or(0);
    let all: Vec<&Calendar> = set
        .calendars
        .iter()
        .filter(|c| match from {
            // Incremental: every entry changed since, deleted ones included.
            Some(f) => c.list_seq > f && c.list_seq <= snapshot,
            None => (show_deleted || !c.deleted) && c.list_seq <= snapshot,
        })
        .filter(|c| min_role.is_none_or(|m| rank(&c.access_role) >= rank(m)))
        .collect();
    let items: Vec<Value> = all
        .iter()
        .skip(offset)
        .take(max)
        .map(|c| list_entry(c))
        .collect();
    let mut out =
        json!({"kind": "calendar#calendarList", "etag": format!("\"{snapshot}\""), "items": items});
    if offset + max < all.len() {
        let from_s = from.map(|f| f.to_string()).unwrap_or_default();
        out["nextPageToken"] =
            json!(set.page_token(&format!("cl|{snapshot}|{}|{from_s}", offset + max)));
    } else {
        out["nextSyncToken"] = json!(set.list_token(snapshot));
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

pub fn events_list(
    set: &CalendarSet,
    cal: usize,
    req: &ApiRequest,
) -> Result<ApiResponse, ApiError> {
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
    let (snapshot, cursor, from, padded) = match req.param("pageToken") {
        Some(t) => {
            let parts = set
                .open_page_token(t)
                .filter(|p| p.len() == 6 && p[4] == fp && p[3] == c.epoch.to_string())
                .ok_or_else(|| ApiError::invalid_param("pageToken", "Invalid page token"))?;
            let snap: u64 = parts[0]
                .parse()
                .map_err(|_| ApiError::invalid_param("pageToken", "Invalid page token"))?;
            let from: Option<u64> = if parts[2].is_empty() {
                None
            } else {
                parts[2].parse().ok()
            };
            let cursor = (!parts[1].is_empty()).then(|| parts[1].clone());
            (snap, cursor, from, parts[5] == "1")
        }
        None => {
            let from = match sync {
                Some(t) => Some(
                    set.check_sync_token(cal, t)
                        .ok_or_else(full_sync_required)?,
                ),
                None => None,
            };
            (c.seq, None, from, false)
        }
    };
    let from_s = from.map(|f| f.to_string()).unwrap_or_default();
    let head = |items: Vec<Value>| {
        json!({
            "kind": "calendar#events",
            "etag": format!("\"{}\"", c.seq),
            "summary": c.summary,
            "updated": rfc3339_ms(c.updated_ms),
            "timeZone": c.time_zone,
            "accessRole": c.access_role,
            "defaultReminders": [],
            "items": items,
        })
    };
    if set.empty_pages && !padded {
        // Google may answer a page with no items that still points to the next one.
        let mut out = head(Vec::new());
        let cur = cursor.clone().unwrap_or_default();
        out["nextPageToken"] =
            json!(set.page_token(&format!("{snapshot}|{cur}|{from_s}|{}|{fp}|1", c.epoch)));
        return Ok(ApiResponse::json(&out));
    }
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
        .filter(|e| time_min.is_none_or(|t| series_end(c, e) > t))
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
                &c.time_zone,
                e.status == "cancelled" && (from.is_some() || e.recurring_event_id.is_some()),
            )
        })
        .collect();
    let mut out = head(page);
    if remaining.len() > max {
        let last = remaining.get(max - 1).map(|e| key(e)).unwrap_or_default();
        out["nextPageToken"] =
            json!(set.page_token(&format!("{snapshot}|{last}|{from_s}|{}|{fp}|0", c.epoch)));
    } else {
        out["nextSyncToken"] = json!(set.sync_token(cal, snapshot));
    }
    Ok(ApiResponse::json(&out))
}
