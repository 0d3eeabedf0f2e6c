//! Calendar time arithmetic: rendering an instant as Google's `EventDateTime` in an IANA zone
//! (offset form, e.g. `2026-05-04T09:00:00+02:00`), parsing `dateTime` values without an
//! offset in a named zone, expanding RRULEs (FREQ=DAILY|WEEKLY with INTERVAL, COUNT, UNTIL)
//! in the event's own zone so a 09:00 Europe/Berlin series stays at 09:00 across DST, and the
//! instance-id suffix Google uses (`<master>_<YYYYMMDDTHHMMSSZ>` / `<master>_<YYYYMMDD>`).
//! All-day events are kept as UTC midnights of their dates.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;

use crate::util::{civil_from_days, rfc3339_ms};
use crate::wire::EventDateTime;

/// Occurrences an unbounded rule (no COUNT, no UNTIL) expands to in the emulator.
pub const UNBOUNDED_OCCURRENCES: usize = 52;
/// Hard cap on the occurrences of any rule.
pub const MAX_OCCURRENCES: usize = 500;

/// The zone called `name`, if it is a known IANA name.
pub fn zone(name: &str) -> Option<Tz> {
    name.parse::<Tz>().ok()
}

/// Renders `ms` as an `EventDateTime`: a date for all-day events, else a dateTime in
/// `display_tz` (offset form; `Z` for UTC) carrying `event_tz` as its `timeZone`.
pub fn dt(ms: i64, all_day: bool, event_tz: Option<&str>, display_tz: &str) -> EventDateTime {
    if all_day {
        let (y, m, d) = civil_from_days(ms.div_euclid(86_400_000));
        return EventDateTime {
            date: Some(format!("{y:04}-{m:02}-{d:02}")),
            date_time: None,
            time_zone: None,
        };
    }
    let tz = event_tz.or(Some(display_tz)).and_then(zone);
    let text = match (tz, DateTime::<Utc>::from_timestamp_millis(ms)) {
        (Some(tz), Some(utc)) if tz != chrono_tz::UTC => utc
            .with_timezone(&tz)
            .to_rfc3339_opts(SecondsFormat::Secs, true),
        _ => rfc3339_ms(ms).replace(".000Z", "Z"),
    };
    EventDateTime {
        date: None,
        date_time: Some(text),
        time_zone: event_tz.map(String::from),
    }
}

/// Parses a `dateTime` without an offset as wall time in the zone `tz`.
pub fn local_to_ms(date_time: &str, tz: &str) -> Option<i64> {
    let tz = zone(tz)?;
    let naive = NaiveDateTime::parse_from_str(date_time, "%Y-%m-%dT%H:%M:%S").ok()?;
    let local = tz.from_local_datetime(&naive);
    local
        .earliest()
        .or_else(|| local.latest())
        .map(|d| d.timestamp_millis())
}

/// The parts of an RRULE the emulator understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Days between occurrences (1 = daily, 7 = weekly) times INTERVAL.
    pub step_days: i64,
    pub count: Option<usize>,
    pub until_ms: Option<i64>,
}

/// Parses `RRULE:FREQ=DAILY|WEEKLY[;INTERVAL=n][;COUNT=n][;UNTIL=...]`; `None` for anything else.
pub fn parse_rule(line: &str) -> Option<Rule> {
    let body = line.strip_prefix("RRULE:")?;
    let mut freq = None;
    let mut interval = 1i64;
    let mut count = None;
    let mut until_ms = None;
    for kv in body.split(';') {
        match kv.split_once('=')? {
            ("FREQ", "DAILY") => freq = Some(1),
            ("FREQ", "WEEKLY") => freq = Some(7),
            ("INTERVAL", n) => interval = n.parse().ok().filter(|n: &i64| *n >= 1)?,
            ("COUNT", n) => count = Some(n.parse().ok().filter(|n: &usize| *n >= 1)?),
            ("UNTIL", u) => until_ms = Some(parse_until(u)?),
            ("WKST", _) => {}
            _ => return None,
        }
    }
    Some(Rule {
        step_days: freq? * interval,
        count,
        until_ms,
    })
}

/// `UNTIL=20260601T000000Z` or `UNTIL=20260601` (end of that day, UTC).
fn parse_until(u: &str) -> Option<i64> {
    if let Ok(d) = NaiveDateTime::parse_from_str(u, "%Y%m%dT%H%M%SZ") {
        return Some(d.and_utc().timestamp_millis());
    }
    let d = chrono::NaiveDate::parse_from_str(u, "%Y%m%d").ok()?;
    Some(d.and_hms_opt(23, 59, 59)?.and_utc().timestamp_millis())
}

/// Start instants of the series starting at `start_ms`, stepping in wall time of `tz`.
pub fn occurrences(rrule: &str, start_ms: i64, all_day: bool, tz: &str) -> Vec<i64> {
    let Some(rule) = parse_rule(rrule) else {
        return vec![start_ms];
    };
    let tz = if all_day {
        chrono_tz::UTC
    } else {
        zone(tz).unwrap_or(chrono_tz::UTC)
    };
    let Some(first) = DateTime::<Utc>::from_timestamp_millis(start_ms) else {
        return vec![start_ms];
    };
    let wall = first.with_timezone(&tz).naive_local();
    let limit = match (rule.count, rule.until_ms) {
        (Some(c), _) => c.min(MAX_OCCURRENCES),
        (None, Some(_)) => MAX_OCCURRENCES,
        (None, None) => UNBOUNDED_OCCURRENCES,
    };
    let mut out = Vec::with_capacity(limit);
    let mut i = 0i64;
    while out.len() < limit && i < MAX_OCCURRENCES as i64 * 2 {
        let local = wall + chrono::Duration::days(rule.step_days * i);
        i += 1;
        let mapped = tz.from_local_datetime(&local);
        // A wall time inside a DST gap does not exist; Google moves it forward an hour.
        let at = mapped
            .earliest()
            .or_else(|| {
                tz.from_local_datetime(&(local + chrono::Duration::hours(1)))
                    .earliest()
            })
            .map(|d| d.timestamp_millis());
        let Some(at) = at else { continue };
        if rule.until_ms.is_some_and(|u| at > u) {
            break;
        }
        out.push(at);
    }
    out
}

/// Google's instance id suffix for an occurrence starting at `ms`.
pub fn instance_suffix(ms: i64, all_day: bool) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::parse_rfc3339;

    #[test]
    fn weekly_series_keeps_wall_time_across_dst() {
        // 2026-03-23 09:00 Berlin (+01:00); DST starts 2026-03-29.
        let start = parse_rfc3339("2026-03-23T08:00:00Z").unwrap_or_default();
        let occ = occurrences("RRULE:FREQ=WEEKLY;COUNT=3", start, false, "Europe/Berlin");
        let shown: Vec<String> = occ
            .iter()
            .filter_map(|ms| dt(*ms, false, Some("Europe/Berlin"), "UTC").date_time)
            .collect();
        assert_eq!(
            shown,
            [
                "2026-03-23T09:00:00+01:00",
                "2026-03-30T09:00:00+02:00",
                "2026-04-06T09:00:00+02:00"
            ]
        );
    }

    #[test]
    fn rules_parse_or_refuse() {
        assert!(parse_rule("RRULE:FREQ=DAILY;INTERVAL=2;UNTIL=20260601T000000Z").is_some());
        assert!(parse_rule("RRULE:FREQ=MONTHLY").is_none());
        assert!(parse_rule("RRULE:FREQ=DAILY;BYDAY=MO").is_none());
        let start = parse_rfc3339("2026-05-01T10:00:00Z").unwrap_or_default();
        let until = occurrences("RRULE:FREQ=DAILY;UNTIL=20260503", start, false, "UTC");
        assert_eq!(until.len(), 3);
        assert_eq!(
            local_to_ms("2026-05-01T12:00:00", "Europe/Berlin"),
            Some(start)
        );
        assert_eq!(instance_suffix(start, false), "20260501T100000Z");
    }
}
