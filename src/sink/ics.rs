//! iCalendar (RFC 5545) text for one event series, produced with the `icalendar` crate: the
//! series master as a VEVENT with its RRULE/EXDATE lines, cancelled occurrences as EXDATEs,
//! every other exception as its own VEVENT with RECURRENCE-ID (same UID). Times: all-day
//! events as `VALUE=DATE`, zoned date-times as local time with `TZID`, others in UTC. The
//! output is a pure function of the events (DTSTAMP = the event's last modification), so
//! rewriting an unchanged series writes the same bytes.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use icalendar::{Calendar, CalendarDateTime, Component, DatePerhapsTime, EventLike, Property};
use mailsync_actors::calendar_model::{
    Attendee, CalendarEvent, EventStatus, EventTime, ResponseStatus,
};

/// `PRODID` of every file we write.
pub const PRODID: &str = "-//mailsync//calendar vdir//EN";

/// Why a series cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IcsError {
    /// An event time that is neither a `yyyy-mm-dd` date nor an RFC 3339 date-time.
    #[error("event {id}: unreadable time {value:?}")]
    BadTime {
        /// The event.
        id: String,
        /// The value.
        value: String,
    },
}

/// How DTSTART is written for a series: RECURRENCE-ID and EXDATE must use the same form.
#[derive(Clone, Debug)]
enum Form {
    Date,
    Zoned(Tz),
    Utc,
}

fn form_of(t: &EventTime) -> Form {
    match t {
        EventTime::Date(_) => Form::Date,
        EventTime::DateTime {
            time_zone: Some(z), ..
        } => z.parse::<Tz>().map(Form::Zoned).unwrap_or(Form::Utc),
        EventTime::DateTime { .. } => Form::Utc,
    }
}

/// `t` as an iCalendar value in `form`.
fn value(id: &str, t: &EventTime, form: &Form) -> Result<DatePerhapsTime, IcsError> {
    let bad = |v: &str| IcsError::BadTime {
        id: id.to_owned(),
        value: v.to_owned(),
    };
    match t {
        EventTime::Date(d) => NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .map(DatePerhapsTime::Date)
            .map_err(|_| bad(d)),
        EventTime::DateTime { date_time, .. } => {
            let instant = DateTime::parse_from_rfc3339(date_time)
                .map_err(|_| bad(date_time))?
                .with_timezone(&Utc);
            Ok(DatePerhapsTime::DateTime(match form {
                Form::Zoned(tz) => CalendarDateTime::WithTimezone {
                    date_time: instant.with_timezone(tz).naive_local(),
                    tzid: tz.name().to_owned(),
                },
                // A date-time exception of an all-day series cannot happen in practice;
                // UTC is the faithful fallback.
                Form::Utc | Form::Date => CalendarDateTime::Utc(instant),
            }))
        }
    }
}

fn utc(ts: Option<&str>) -> Option<DateTime<Utc>> {
    ts.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|d| d.with_timezone(&Utc))
}

fn partstat(r: ResponseStatus) -> icalendar::PartStat {
    match r {
        ResponseStatus::Accepted => icalendar::PartStat::Accepted,
        ResponseStatus::Declined => icalendar::PartStat::Declined,
        ResponseStatus::Tentative => icalendar::PartStat::Tentative,
        ResponseStatus::NeedsAction => icalendar::PartStat::NeedsAction,
    }
}

fn attendee(a: &Attendee) -> Option<icalendar::Attendee> {
    let email = a.email.as_deref()?;
    let mut out = icalendar::Attendee::new(format!("mailto:{email}"))
        .partstat(partstat(a.response))
        .role(if a.optional {
            icalendar::Role::OptParticipant
        } else {
            icalendar::Role::ReqParticipant
        });
    if a.resource {
        out = out.cutype(icalendar::CUType::Resource);
    }
    if let Some(n) = &a.display_name {
        out = out.cn(n.clone());
    }
    Some(out)
}

/// A recurrence line (`RRULE:…`, `EXDATE;TZID=…:…`) as a property.
fn recurrence_line(line: &str) -> Option<Property> {
    let (head, val) = line.split_once(':')?;
    let mut parts = head.split(';');
    let key = parts.next()?.trim().to_ascii_uppercase();
    if !matches!(key.as_str(), "RRULE" | "EXRULE" | "RDATE" | "EXDATE") {
        return None;
    }
    let mut p = Property::new(key, val.trim());
    for param in parts {
        if let Some((k, v)) = param.split_once('=') {
            p.add_parameter(k, v);
        }
    }
    Some(p.done())
}

/// One VEVENT for `ev`, in the series' time `form`.
fn vevent(ev: &CalendarEvent, uid: &str, form: &Form) -> Result<icalendar::Event, IcsError> {
    let mut v = icalendar::Event::new();
    v.uid(uid);
    if let Some(stamp) = utc(ev.updated.as_deref()).or_else(|| utc(ev.created.as_deref())) {
        v.timestamp(stamp);
        v.last_modified(stamp);
    } else {
        v.timestamp(DateTime::<Utc>::UNIX_EPOCH);
    }
    if let Some(c) = utc(ev.created.as_deref()) {
        v.created(c);
    }
    let own_form = ev.start.as_ref().map(form_of).unwrap_or(Form::Utc);
    if let Some(s) = &ev.start {
        v.starts(value(&ev.id, s, &own_form)?);
    }
    if let Some(e) = &ev.end {
        v.ends(value(&ev.id, e, &own_form)?);
    }
    if let Some(o) = &ev.original_start {
        v.recurrence_id(value(&ev.id, o, form)?);
    }
    for line in &ev.recurrence {
        match recurrence_line(line) {
            Some(p) => {
                v.append_multi_property(p);
            }
            None => tracing::warn!(event = %ev.id, "Skipping an unreadable recurrence line."),
        }
    }
    if let Some(s) = &ev.summary {
        v.summary(s);
    }
    if let Some(d) = &ev.description {
        v.description(d);
    }
    if let Some(l) = &ev.location {
        v.location(l);
    }
    v.status(match ev.status {
        EventStatus::Tentative => icalendar::EventStatus::Tentative,
        EventStatus::Cancelled => icalendar::EventStatus::Cancelled,
        EventStatus::Confirmed => icalendar::EventStatus::Confirmed,
    });
    v.sequence(u32::try_from(ev.sequence).unwrap_or(0));
    if ev.transparent {
        v.add_property("TRANSP", "TRANSPARENT");
    }
    if let Some(o) = &ev.organizer
        && let Some(email) = &o.email
    {
        let mut p = Property::new("ORGANIZER", format!("mailto:{email}"));
        if let Some(n) = &o.display_name {
            p.add_parameter("CN", n);
        }
        v.append_property(p.done());
    }
    for a in ev.attendees.iter().filter_map(attendee) {
        v.attendee(a);
    }
    Ok(v.done())
}

/// The iCalendar text of one series: `events` are the stored master and exceptions of one
/// `series_id` (any order). `None` when nothing of it should be on disk (the master is
/// deleted, or only cancelled occurrences are known).
pub fn render_series(events: &[CalendarEvent]) -> Result<Option<String>, IcsError> {
    let master = events.iter().find(|e| !e.is_exception());
    if master.is_some_and(CalendarEvent::is_cancelled) {
        return Ok(None);
    }
    let mut exceptions: Vec<&CalendarEvent> = events.iter().filter(|e| e.is_exception()).collect();
    exceptions.sort_by(|a, b| a.id.cmp(&b.id));
    if master.is_none() && exceptions.iter().all(|e| e.is_cancelled()) {
        return Ok(None);
    }
    let uid = master
        .or(exceptions.first().copied())
        .map(|e| {
            e.ical_uid
                .clone()
                .unwrap_or_else(|| format!("{}@mailsync", e.series_id()))
        })
        .unwrap_or_default();
    let form = master
        .and_then(|m| m.start.as_ref())
        .or_else(|| exceptions.iter().find_map(|e| e.original_start.as_ref()))
        .map(form_of)
        .unwrap_or(Form::Utc);
    let mut cal = Calendar::empty();
    cal.append_property(Property::new("VERSION", "2.0"));
    cal.append_property(Property::new("PRODID", PRODID));
    if let Some(m) = master {
        let mut v = vevent(m, &uid, &form)?;
        for x in exceptions.iter().filter(|e| e.is_cancelled()) {
            if let Some(o) = &x.original_start {
                v.append_multi_property(value(&x.id, o, &form)?.to_property("EXDATE"));
            }
        }
        cal.push(v);
    }
    for x in exceptions.iter().filter(|e| !e.is_cancelled()) {
        cal.push(vevent(x, &uid, &form)?);
    }
    Ok(Some(cal.done().to_string()))
}
