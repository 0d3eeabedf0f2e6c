//! The emulator's calendar state for one account: the calendar list (with its own change
//! sequence, so `calendarList.list` sync tokens see calendars added and removed), events per
//! calendar (masters, exceptions with `recurringEventId` + `originalStartTime`, cancelled
//! tombstones), the change sequence behind event sync tokens, push channels, and every
//! mutation the API and the control endpoints apply.

use std::collections::BTreeMap;

use super::time::{instance_suffix, occurrences};
use crate::error::ApiError;
use crate::generator;
use crate::notification::CalendarPing;
use crate::util::{b64_decode_any, b64url, hash64};

/// An organizer or creator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub email: String,
    pub display_name: Option<String>,
}

/// One attendee with its response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attendee {
    pub email: String,
    pub display_name: Option<String>,
    /// `needsAction` | `declined` | `tentative` | `accepted`.
    pub response_status: String,
    pub optional: bool,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub status: String,
    pub summary: String,
    pub description: Option<String>,
    pub location: Option<String>,
    pub start_ms: i64,
    pub end_ms: i64,
    pub all_day: bool,
    /// The event's own `timeZone` (required for recurring timed events).
    pub tz: Option<String>,
    pub recurrence: Option<Vec<String>>,
    pub recurring_event_id: Option<String>,
    pub original_start_ms: Option<i64>,
    pub ical_uid: String,
    pub sequence: u32,
    pub organizer: Option<Person>,
    pub attendees: Vec<Attendee>,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub etag_n: u64,
    pub change_seq: u64,
}

impl Event {
    /// A confirmed event with no optional details.
    pub fn new(id: &str, summary: &str, start_ms: i64, end_ms: i64, all_day: bool) -> Self {
        Self {
            id: id.to_string(),
            status: "confirmed".into(),
            summary: summary.to_string(),
            description: None,
            location: None,
            start_ms,
            end_ms,
            all_day,
            tz: None,
            recurrence: None,
            recurring_event_id: None,
            original_start_ms: None,
            ical_uid: format!("{id}@google.com"),
            sequence: 0,
            organizer: None,
            attendees: Vec::new(),
            created_ms: 0,
            updated_ms: 0,
            etag_n: 3_100_000_000,
            change_seq: 0,
        }
    }
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
    pub background_color: String,
    pub events: BTreeMap<String, Event>,
    pub seq: u64,
    pub epoch: u64,
    pub updated_ms: i64,
    /// Removed from the user's calendar list (kept as a `deleted: true` list entry).
    pub deleted: bool,
    /// Position in the calendar list's change sequence.
    pub list_seq: u64,
}

impl Calendar {
    fn new(id: &str, summary: &str, tz: &str, role: &str, color: &str, now: i64) -> Self {
        Self {
            id: id.to_string(),
            summary: summary.to_string(),
            time_zone: tz.to_string(),
            primary: false,
            access_role: role.to_string(),
            background_color: color.to_string(),
            events: BTreeMap::new(),
            seq: 1_000,
            epoch: 1,
            updated_ms: now,
            deleted: false,
            list_seq: 0,
        }
    }
}

#[derive(Debug)]
pub struct CalendarSet {
    pub calendars: Vec<Calendar>,
    pub channels: Vec<ChannelReg>,
    secret: u64,
    pub(crate) owner: String,
    /// Change sequence of the calendar list.
    pub list_seq: u64,
    /// Bumped to invalidate every calendar-list sync token.
    pub list_epoch: u64,
    /// Insert an empty page (`items: []` + `nextPageToken`) before every page of events.
    pub empty_pages: bool,
}

fn already_deleted() -> ApiError {
    let mut err = ApiError::new(410, "deleted", "global", "Resource has been deleted");
    err.status = None;
    err
}

fn valid_event_id(id: &str) -> bool {
    id.len() >= 5
        && id.len() <= 1024
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'v').contains(&b))
}

impl CalendarSet {
    pub fn seeded(seed: u64, owner: &str, n: usize, anchor_ms: i64) -> Self {
        let ah = generator::account_hash(seed, owner);
        let mut set = CalendarSet {
            calendars: Vec::new(),
            channels: Vec::new(),
            secret: ah ^ 0xCA1E_DA75,
            owner: owner.to_string(),
            list_seq: 10,
            list_epoch: 1,
            empty_pages: false,
        };
        let family = format!("family{:08x}@group.calendar.google.com", ah as u32);
        let defs = [
            (
                owner.to_string(),
                owner.to_string(),
                "UTC",
                "owner",
                "#9fe1e7",
            ),
            (
                family,
                "Family".to_string(),
                "Europe/Berlin",
                "writer",
                "#f83a22",
            ),
        ];
        let me = Person {
            email: owner.to_string(),
            display_name: None,
        };
        for (k, (id, summary, tz, role, color)) in defs.into_iter().enumerate() {
            let mut cal = Calendar::new(&id, &summary, tz, role, color, anchor_ms);
            cal.primary = k == 0;
            set.list_seq += 1;
            cal.list_seq = set.list_seq;
            let count = if k == 0 { n } else { n / 4 };
            for (i, p) in generator::plan_events(ah, &id, count, anchor_ms)
                .into_iter()
                .enumerate()
            {
                cal.seq += 1;
                let mut ev =
                    Event::new(&p.id, &p.summary, p.start_ms, p.end_ms, p.all_day.is_some());
                ev.tz = p.recurrence.as_ref().map(|_| tz.to_string());
                ev.recurrence = p.recurrence.map(|r| vec![r]);
                ev.organizer = Some(me.clone());
                if i % 3 == 0 {
                    ev.location = Some("Room 4, Schillerstraße 12".into());
                    ev.description = Some(format!(
                        "Agenda for {}:\n- notes, \"quotes\"; commas",
                        p.summary
                    ));
                }
                if i % 4 == 1 {
                    ev.attendees = vec![
                        Attendee {
                            email: owner.to_string(),
                            display_name: None,
                            response_status: "accepted".into(),
                            optional: false,
                        },
                        Attendee {
                            email: "alice@example.com".into(),
                            display_name: Some("Alice Martin".into()),
                            response_status: "needsAction".into(),
                            optional: false,
                        },
                        Attendee {
                            email: "bob@example.com".into(),
                            display_name: None,
                            response_status: "tentative".into(),
                            optional: true,
                        },
                    ];
                }
                ev.created_ms = anchor_ms - 86_400_000 * 90;
                ev.updated_ms = anchor_ms - 86_400_000;
                ev.etag_n = 3_000_000_000 + cal.seq;
                ev.change_seq = cal.seq;
                cal.events.insert(ev.id.clone(), ev);
            }
            set.calendars.push(cal);
            if k == 1 && n > 0 {
                set.seed_series(1, ah, anchor_ms, &me);
            }
        }
        set
    }

    /// A weekly series in the calendar's zone with one moved and one cancelled instance.
    fn seed_series(&mut self, cal: usize, ah: u64, anchor_ms: i64, me: &Person) {
        let id = format!("{:020x}", hash64(&[&ah.to_le_bytes(), b"piano"]));
        // 17:00 Europe/Berlin (summer time) two weeks before the anchor.
        let start = (anchor_ms / 86_400_000 - 14) * 86_400_000 + 15 * 3_600_000;
        let mut ev = Event::new(&id, "Piano lesson", start, start + 2_700_000, false);
        ev.tz = Some(self.calendars[cal].time_zone.clone());
        ev.recurrence = Some(vec!["RRULE:FREQ=WEEKLY;COUNT=6".into()]);
        ev.organizer = Some(me.clone());
        ev.location = Some("Musikschule".into());
        let created = anchor_ms - 86_400_000 * 30;
        if self.insert_event(cal, ev, created).is_ok() {
            let _ = self.modify_instance(cal, &id, 1, created, |e| {
                e.start_ms += 7_200_000;
                e.end_ms += 7_200_000;
                e.summary = "Piano lesson (moved)".into();
            });
            let _ = self.cancel_instance(cal, &id, 2, created);
        }
    }

    /// The account's address.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The live calendar called `id` (`primary` for the primary one).
    pub fn find(&self, id: &str) -> Option<usize> {
        if id == "primary" {
            return self.calendars.iter().position(|c| c.primary && !c.deleted);
        }
        self.calendars
            .iter()
            .position(|c| !c.deleted && c.id.eq_ignore_ascii_case(id))
    }

    pub(super) fn mac(&self, s: &str) -> String {
        format!(
            "{:016x}",
            hash64(&[&self.secret.to_le_bytes(), s.as_bytes()])
        )
    }

    pub(super) fn sync_token(&self, cal: usize, seq: u64) -> String {
        let c = &self.calendars[cal];
        let body = format!("{}:{}:{}", c.id, c.epoch, seq);
        format!(
            "CPD{}",
            b64url(format!("{body}:{}", self.mac(&body)).as_bytes())
        )
    }

    /// Verifies a sync token; `None` means 410.
    pub(super) fn check_sync_token(&self, cal: usize, tok: &str) -> Option<u64> {
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

    /// The calendar list's sync token at list sequence `seq`.
    pub(super) fn list_token(&self, seq: u64) -> String {
        let body = format!("list:{}:{seq}", self.list_epoch);
        format!(
            "CL{}",
            b64url(format!("{body}:{}", self.mac(&body)).as_bytes())
        )
    }

    /// Verifies a calendar-list sync token; `None` means 410.
    pub(super) fn check_list_token(&self, tok: &str) -> Option<u64> {
        let raw = b64_decode_any(tok.strip_prefix("CL")?)?;
        let s = String::from_utf8(raw).ok()?;
        let (body, mac) = s.rsplit_once(':')?;
        if self.mac(body) != mac {
            return None;
        }
        let mut it = body.split(':');
        let (Some("list"), Some(epoch), Some(seq)) = (it.next(), it.next(), it.next()) else {
            return None;
        };
        let seq: u64 = seq.parse().ok()?;
        (epoch == self.list_epoch.to_string() && seq <= self.list_seq).then_some(seq)
    }

    pub(super) fn page_token(&self, parts: &str) -> String {
        b64url(format!("{parts}|{}", self.mac(parts)).as_bytes())
    }

    pub(super) fn open_page_token(&self, tok: &str) -> Option<Vec<String>> {
        let s = String::from_utf8(b64_decode_any(tok)?).ok()?;
        let (body, mac) = s.rsplit_once('|')?;
        (self.mac(body) == mac).then(|| body.split('|').map(String::from).collect())
    }

    /// Invalidates every sync token of a calendar (410 on next use).
    pub fn invalidate_tokens(&mut self, cal: usize) {
        self.calendars[cal].epoch += 1;
    }

    /// Adds a calendar to the user's list (a new secondary calendar).
    pub fn add_calendar(
        &mut self,
        id: Option<String>,
        summary: &str,
        tz: &str,
        now: i64,
    ) -> Result<String, ApiError> {
        if super::time::zone(tz).is_none() {
            return Err(ApiError::invalid_param("timeZone", "Invalid time zone"));
        }
        let id = id.unwrap_or_else(|| {
            format!(
                "c{:016x}@group.calendar.google.com",
                hash64(&[
                    summary.as_bytes(),
                    &now.to_le_bytes(),
                    &self.list_seq.to_le_bytes()
                ])
            )
        });
        if self
            .calendars
            .iter()
            .any(|c| c.id.eq_ignore_ascii_case(&id))
        {
            return Err(ApiError::new(
                409,
                "duplicate",
                "global",
                "The calendar already exists.",
            ));
        }
        let mut cal = Calendar::new(&id, summary, tz, "owner", "#7bd148", now);
        self.list_seq += 1;
        cal.list_seq = self.list_seq;
        self.calendars.push(cal);
        Ok(id)
    }

    /// Removes a calendar from the user's list; its channels stop delivering.
    pub fn remove_calendar(&mut self, cal: usize, now: i64) -> Result<(), ApiError> {
        if self.calendars[cal].primary {
            return Err(ApiError::bad_request(
                "The primary calendar cannot be removed.",
            ));
        }
        self.list_seq += 1;
        let c = &mut self.calendars[cal];
        c.deleted = true;
        c.list_seq = self.list_seq;
        c.updated_ms = now;
        let cid = c.id.clone();
        self.channels.retain(|ch| ch.calendar_id != cid);
        Ok(())
    }

    pub(super) fn touch(cal: &mut Calendar, ev_id: &str, now: i64) {
        cal.seq += 1 + (cal.seq % 3);
        cal.updated_ms = now;
        if let Some(e) = cal.events.get_mut(ev_id) {
            e.change_seq = cal.seq;
            e.updated_ms = now;
            e.etag_n += 7;
            e.sequence += 1;
        }
    }

    /// Stores a new event (validating its id) and records the change.
    pub fn insert_event(
        &mut self,
        cal: usize,
        mut ev: Event,
        now: i64,
    ) -> Result<String, ApiError> {
        let c = &mut self.calendars[cal];
        if ev.id.is_empty() {
            ev.id = format!(
                "emu{:016x}{:06x}",
                hash64(&[ev.summary.as_bytes(), &now.to_le_bytes()]),
                c.seq
            );
            ev.ical_uid = format!("{}@google.com", ev.id);
        }
        if !valid_event_id(&ev.id) {
            return Err(ApiError::invalid_param("id", "Invalid resource id value."));
        }
        if c.events.contains_key(&ev.id) {
            return Err(ApiError::new(
                409,
                "duplicate",
                "global",
                "The requested identifier already exists.",
            ));
        }
        if ev.recurrence.is_some() && ev.tz.is_none() && !ev.all_day {
            ev.tz = Some(c.time_zone.clone());
        }
        ev.created_ms = now;
        ev.sequence = 0;
        let id = ev.id.clone();
        c.events.insert(id.clone(), ev);
        Self::touch(c, &id, now);
        if let Some(e) = c.events.get_mut(&id) {
            e.sequence = 0;
        }
        Ok(id)
    }

    /// Creates an event (control API / mutation generator).
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
        let mut ev = Event::new(
            id.as_deref().unwrap_or(""),
            summary,
            start_ms,
            end_ms,
            all_day,
        );
        ev.recurrence = recurrence.map(|r| vec![r]);
        ev.organizer = Some(Person {
            email: self.owner.clone(),
            display_name: None,
        });
        self.insert_event(cal, ev, now)
    }

    /// Changes a live event with `f` and records the change.
    pub fn update_event(
        &mut self,
        cal: usize,
        id: &str,
        now: i64,
        f: impl FnOnce(&mut Event),
    ) -> Result<(), ApiError> {
        let c = &mut self.calendars[cal];
        let e = c
            .events
            .get_mut(id)
            .filter(|e| e.status != "cancelled")
            .ok_or_else(ApiError::not_found)?;
        f(e);
        Self::touch(c, id, now);
        Ok(())
    }

    /// Deletes an event (it becomes a `cancelled` tombstone); 410 `deleted` if already deleted.
    /// Deleting a series master cancels its exceptions too.
    pub fn delete_event(&mut self, cal: usize, id: &str, now: i64) -> Result<(), ApiError> {
        let c = &mut self.calendars[cal];
        let e = c.events.get_mut(id).ok_or_else(ApiError::not_found)?;
        if e.status == "cancelled" {
            return Err(already_deleted());
        }
        e.status = "cancelled".into();
        Self::touch(c, id, now);
        let exceptions: Vec<String> = c
            .events
            .values()
            .filter(|x| x.recurring_event_id.as_deref() == Some(id) && x.status != "cancelled")
            .map(|x| x.id.clone())
            .collect();
        for x in exceptions {
            if let Some(ev) = c.events.get_mut(&x) {
                ev.status = "cancelled".into();
            }
            Self::touch(c, &x, now);
        }
        Ok(())
    }

    /// The start of occurrence `index` of a live master, and that instance's id.
    fn occurrence(
        &self,
        cal: usize,
        master: &str,
        index: usize,
    ) -> Result<(Event, i64, String), ApiError> {
        let c = &self.calendars[cal];
        let m = c
            .events
            .get(master)
            .filter(|m| m.status != "cancelled")
            .ok_or_else(ApiError::not_found)?
            .clone();
        let rule = m
            .recurrence
            .as_ref()
            .and_then(|r| r.first())
            .ok_or_else(|| ApiError::bad_request("not a recurring event"))?;
        let tz = m.tz.clone().unwrap_or_else(|| c.time_zone.clone());
        let at = *occurrences(rule, m.start_ms, m.all_day, &tz)
            .get(index)
            .ok_or_else(|| ApiError::bad_request("no such occurrence"))?;
        let id = format!("{}_{}", m.id, instance_suffix(at, m.all_day));
        Ok((m, at, id))
    }

    /// Turns occurrence `index` into an exception changed by `f` (e.g. moved).
    pub fn modify_instance(
        &mut self,
        cal: usize,
        master: &str,
        index: usize,
        now: i64,
        f: impl FnOnce(&mut Event),
    ) -> Result<String, ApiError> {
        let (m, at, id) = self.occurrence(cal, master, index)?;
        let c = &mut self.calendars[cal];
        let mut ev = match c.events.get(&id) {
            Some(existing) if existing.status == "cancelled" => return Err(already_deleted()),
            Some(existing) => existing.clone(),
            None => {
                let mut ev = m.clone();
                ev.id = id.clone();
                ev.recurrence = None;
                ev.recurring_event_id = Some(m.id.clone());
                ev.original_start_ms = Some(at);
                ev.start_ms = at;
                ev.end_ms = at + (m.end_ms - m.start_ms);
                ev.created_ms = now;
                ev.etag_n = 3_300_000_000;
                ev
            }
        };
        f(&mut ev);
        c.events.insert(id.clone(), ev);
        Self::touch(c, &id, now);
        Ok(id)
    }

    /// Cancels one occurrence of a recurring event (a cancelled exception; a moved exception
    /// of that occurrence is cancelled in place).
    pub fn cancel_instance(
        &mut self,
        cal: usize,
        master: &str,
        index: usize,
        now: i64,
    ) -> Result<String, ApiError> {
        let (m, at, id) = self.occurrence(cal, master, index)?;
        let c = &mut self.calendars[cal];
        match c.events.get_mut(&id) {
            Some(e) if e.status == "cancelled" => return Err(already_deleted()),
            Some(e) => e.status = "cancelled".into(),
            None => {
                let mut ev = m.clone();
                ev.id = id.clone();
                ev.status = "cancelled".into();
                ev.recurrence = None;
                ev.recurring_event_id = Some(m.id.clone());
                ev.original_start_ms = Some(at);
                ev.start_ms = at;
                ev.end_ms = at + (m.end_ms - m.start_ms);
                ev.created_ms = now;
                ev.etag_n = 3_200_000_000;
                c.events.insert(id.clone(), ev);
            }
        }
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
}
