//! Tests of the vdir writer and the iCalendar rendering: stable reversible names, atomic
//! idempotent writes, removals, reconciliation, the RFC 5545 properties of a zoned series with
//! a moved and a cancelled occurrence, and Debian's `khal` reading what the emulator's
//! calendars become after a real listing through `CalendarClient`.

use super::ics::render_series;
use super::vdir::{SeriesOutcome, Vdir, escape_name, unescape_name};
use mailsync_actors::calendar_model::{
    Attendee, CalendarEntry, CalendarEvent, EventStatus, EventTime, Person, ResponseStatus,
};

fn zoned(dt: &str) -> Option<EventTime> {
    Some(EventTime::DateTime {
        date_time: dt.into(),
        time_zone: Some("Europe/Berlin".into()),
    })
}

/// A weekly series in Europe/Berlin, its 2nd occurrence moved, its 3rd cancelled.
fn series() -> Vec<CalendarEvent> {
    let master = CalendarEvent {
        id: "piano1".into(),
        etag: "\"1\"".into(),
        updated: Some("2026-04-01T10:00:00Z".into()),
        created: Some("2026-03-01T10:00:00Z".into()),
        summary: Some("Piano lesson".into()),
        description: Some("Bring: scores, pencil; \"Czerny\"".into()),
        location: Some("Musikschule, Raum 2".into()),
        start: zoned("2026-04-17T17:00:00+02:00"),
        end: zoned("2026-04-17T17:45:00+02:00"),
        recurrence: vec!["RRULE:FREQ=WEEKLY;COUNT=6".into()],
        ical_uid: Some("piano1@google.com".into()),
        sequence: 3,
        organizer: Some(Person {
            email: Some("demo@example.com".into()),
            display_name: Some("Demo".into()),
            is_self: true,
        }),
        attendees: vec![Attendee {
            email: Some("alice@example.com".into()),
            display_name: Some("Alice Martin".into()),
            response: ResponseStatus::Tentative,
            ..Default::default()
        }],
        ..Default::default()
    };
    let moved = CalendarEvent {
        id: "piano1_20260424T150000Z".into(),
        summary: Some("Piano lesson (moved)".into()),
        start: zoned("2026-04-24T19:00:00+02:00"),
        end: zoned("2026-04-24T19:45:00+02:00"),
        recurring_event_id: Some("piano1".into()),
        original_start: zoned("2026-04-24T17:00:00+02:00"),
        ical_uid: Some("piano1@google.com".into()),
        ..master.clone()
    };
    let moved = CalendarEvent {
        recurrence: Vec::new(),
        ..moved
    };
    let cancelled = CalendarEvent {
        id: "piano1_20260501T150000Z".into(),
        status: EventStatus::Cancelled,
        recurring_event_id: Some("piano1".into()),
        original_start: zoned("2026-05-01T17:00:00+02:00"),
        ..Default::default()
    };
    vec![cancelled, master, moved]
}

#[test]
fn names_are_stable_and_reversible() {
    for id in [
        "demo@example.com",
        "family1a2b@group.calendar.google.com",
        "a/b#c_d",
        ".hidden",
        "en.german#holiday@group.v.calendar.google.com",
    ] {
        let n = escape_name(id);
        assert!(
            !n.starts_with('.') && !n.contains('/') && !n.contains('#'),
            "{n}"
        );
        assert_eq!(unescape_name(&n).as_deref(), Some(id));
    }
    assert_eq!(escape_name("demo@example.com"), "demo@example.com");
}

#[test]
fn a_series_renders_every_rfc5545_property() {
    let text = render_series(&series()).expect("render").expect("visible");
    let unfolded = text.replace("\r\n ", "");
    for needle in [
        "BEGIN:VCALENDAR",
        "PRODID:-//mailsync//calendar vdir//EN",
        "UID:piano1@google.com",
        "DTSTART;TZID=Europe/Berlin:20260417T170000",
        "DTEND;TZID=Europe/Berlin:20260417T174500",
        "RRULE:FREQ=WEEKLY;COUNT=6",
        "EXDATE;TZID=Europe/Berlin:20260501T170000",
        "RECURRENCE-ID;TZID=Europe/Berlin:20260424T170000",
        "DTSTART;TZID=Europe/Berlin:20260424T190000",
        "SUMMARY:Piano lesson (moved)",
        "DESCRIPTION:Bring: scores\\, pencil\\; \"Czerny\"",
        "LOCATION:Musikschule\\, Raum 2",
        "ORGANIZER;CN=Demo:mailto:demo@example.com",
        "PARTSTAT=TENTATIVE",
        "CN=Alice Martin",
        "STATUS:CONFIRMED",
        "SEQUENCE:3",
        "LAST-MODIFIED:20260401T100000Z",
    ] {
        assert!(unfolded.contains(needle), "missing {needle:?} in\n{text}");
    }
    assert_eq!(
        unfolded.matches("BEGIN:VEVENT").count(),
        2,
        "master + moved"
    );
    assert!(text.lines().all(|l| l.len() <= 76), "lines are folded");
    assert_eq!(
        render_series(&series()).expect("again"),
        Some(text),
        "deterministic"
    );
    let all_day = CalendarEvent {
        id: "ad".into(),
        start: Some(EventTime::Date("2026-05-01".into())),
        end: Some(EventTime::Date("2026-05-03".into())),
        ..Default::default()
    };
    let text = render_series(&[all_day]).expect("render").expect("visible");
    assert!(text.contains("DTSTART;VALUE=DATE:20260501"), "{text}");
    assert!(text.contains("DTEND;VALUE=DATE:20260503"), "{text}");
    let mut gone = series();
    gone[1].status = EventStatus::Cancelled;
    assert_eq!(
        render_series(&gone).expect("render"),
        None,
        "deleted master"
    );
}

#[test]
fn writes_are_idempotent_and_removals_reconcile() {
    let tmp = tempfile::tempdir().expect("tmp");
    let vdir = Vdir::open(tmp.path().join("acct")).expect("open");
    let entry = CalendarEntry {
        id: "family@group.calendar.google.com".into(),
        summary: "Family".into(),
        color: Some("#f83a22".into()),
        ..Default::default()
    };
    vdir.write_calendar_meta(&entry).expect("meta");
    let dir = vdir.calendar_dir(&entry.id);
    assert_eq!(
        std::fs::read_to_string(dir.join("displayname"))
            .ok()
            .as_deref(),
        Some("Family")
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("color")).ok().as_deref(),
        Some("#f83a22")
    );
    std::fs::write(dir.join(".x.ics.mailsync-tmp"), b"junk").expect("junk");
    assert_eq!(
        vdir.write_series(&entry.id, "piano1", &series())
            .expect("write"),
        SeriesOutcome::Written
    );
    assert_eq!(
        vdir.write_series(&entry.id, "piano1", &series())
            .expect("write"),
        SeriesOutcome::Written
    );
    let names = |d: &std::path::Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .map(|r| {
                r.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    assert_eq!(
        names(&dir),
        ["color", "displayname", "piano1.ics"],
        "temp files cleaned"
    );
    let single = CalendarEvent {
        id: "solo".into(),
        start: Some(EventTime::Date("2026-05-01".into())),
        end: Some(EventTime::Date("2026-05-02".into())),
        ..Default::default()
    };
    vdir.reconcile_calendar(&entry, std::slice::from_ref(&single))
        .expect("reconcile");
    assert_eq!(names(&dir), ["color", "displayname", "solo.ics"]);
    assert!(vdir.remove_series(&entry.id, "solo").expect("remove"));
    assert!(!vdir.remove_series(&entry.id, "solo").expect("again"));
    assert!(vdir.remove_calendar(&entry.id).expect("remove cal"));
    assert!(!dir.exists());
}

/// Runs `khal list` on `calendar_dir` over a date range; returns its lines.
pub(crate) fn khal_list(
    work: &std::path::Path,
    calendar_dir: &std::path::Path,
    from: &str,
    to: &str,
) -> Vec<String> {
    let config = work.join("khal.conf");
    std::fs::write(
        &config,
        format!(
            "[calendars]\n[[synced]]\npath = {}\ntype = calendar\n\n[sqlite]\npath = {}\n\n[locale]\n\
             timeformat = %H:%M\ndateformat = %Y-%m-%d\nlongdateformat = %Y-%m-%d\n\
             datetimeformat = %Y-%m-%d %H:%M\nlongdatetimeformat = %Y-%m-%d %H:%M\n\
             local_timezone = Europe/Berlin\ndefault_timezone = Europe/Berlin\n",
            calendar_dir.display(),
            work.join("khal.db").display()
        ),
    )
    .expect("khal config");
    let out = std::process::Command::new("khal")
        .arg("-c")
        .arg(&config)
        .args([
            "list",
            "--format",
            "{start} {title}",
            "--day-format",
            "",
            from,
            to,
        ])
        .env("HOME", work)
        .env("XDG_CONFIG_HOME", work)
        .env("XDG_DATA_HOME", work)
        .output()
        .expect("khal must be installed (scripts/test installs Debian's khal)");
    assert!(
        out.status.success(),
        "khal failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn khal_reads_a_written_series() {
    let tmp = tempfile::tempdir().expect("tmp");
    let vdir = Vdir::open(tmp.path().join("vdir")).expect("open");
    vdir.write_series("family", "piano1", &series())
        .expect("write");
    let lines = khal_list(
        tmp.path(),
        &vdir.calendar_dir("family"),
        "2026-04-01",
        "60d",
    );
    assert_eq!(
        lines,
        [
            "2026-04-17 17:00 Piano lesson",
            "2026-04-24 19:00 Piano lesson (moved)",
            "2026-05-08 17:00 Piano lesson",
            "2026-05-15 17:00 Piano lesson",
            "2026-05-22 17:00 Piano lesson",
        ],
        "moved instance at its new time, cancelled one absent"
    );
}

#[tokio::test]
async fn khal_reads_the_emulators_family_calendar_fetched_through_the_client() {
    use crate::google::calendar_tests::{all_calendars, all_events, client, emulator, fast};
    let emu = emulator(mailsync_emulator::EmulatorConfig {
        messages: 1,
        quota: mailsync_emulator::QuotaMode::Off,
        ..Default::default()
    })
    .await;
    let c = client(&emu, fast());
    let (live, _, _) = all_calendars(&c, None).await;
    let family = live[1].clone();
    let (events, _, _) = all_events(&c, &family, None).await.expect("listing");
    emu.shutdown().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let vdir = Vdir::open(tmp.path().join("vdir")).expect("open");
    let entry = CalendarEntry {
        id: family.clone(),
        summary: "Family".into(),
        ..Default::default()
    };
    vdir.reconcile_calendar(&entry, &events).expect("write");
    let dir = vdir.calendar_dir(&family);
    let work = tmp.path().to_path_buf();
    let lines = tokio::task::spawn_blocking(move || khal_list(&work, &dir, "2026-04-01", "60d"))
        .await
        .expect("khal");
    let piano: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("Piano lesson"))
        .collect();
    assert_eq!(
        piano,
        [
            "2026-04-17 17:00 Piano lesson",
            "2026-04-24 19:00 Piano lesson (moved)",
            "2026-05-08 17:00 Piano lesson",
            "2026-05-15 17:00 Piano lesson",
            "2026-05-22 17:00 Piano lesson",
        ],
        "all of khal's lines: {lines:#?}"
    );
    let visible = events
        .iter()
        .filter(|e| !e.is_cancelled() && e.recurrence.is_empty() && !e.is_exception())
        .count();
    assert!(
        lines.len() > visible / 2,
        "the single events show too: {lines:#?}"
    );
}
