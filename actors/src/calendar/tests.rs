//! The Calendar source against an in-memory fake of the port (pure logic; the real-binary
//! tests against the emulator live with the REST client). The fake pages two items at a time,
//! starts every listing with an empty page that still carries a next-page token, lists deleted
//! events on full listings (showDeleted) and can invalidate tokens (410).

use super::*;
use crate::calendar_model::{CalendarListPage, EventPage, EventStatus, EventTime};
use crate::feed::FeedEvent;
use crate::jobs::ChildKind;
use crate::ports::PortFuture;
use crate::store::Store;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Default)]
struct FakeState {
    /// Calendar list changes: (seq, entry) — the latest per id wins.
    list: Vec<(u64, CalendarEntry)>,
    /// Event changes per calendar: (seq, event).
    events: BTreeMap<String, Vec<(u64, CalendarEvent)>>,
    seq: u64,
    /// Tokens issued before this seq answer 410.
    valid_from: u64,
    calls: u64,
}

#[derive(Default)]
struct Fake(Mutex<FakeState>);

fn latest<T: Clone>(log: &[(u64, T)], id: impl Fn(&T) -> String, after: u64) -> Vec<T> {
    let mut by_id: BTreeMap<String, (u64, T)> = BTreeMap::new();
    for (s, v) in log {
        by_id.insert(id(v), (*s, v.clone()));
    }
    by_id
        .into_values()
        .filter(|(s, _)| *s > after)
        .map(|(_, v)| v)
        .collect()
}

/// Pages `items` two per page after an empty first page.
fn paginate<T: Clone>(items: &[T], page: Option<&str>, token: String) -> (Vec<T>, PageCursor) {
    let offset: usize = match page {
        None => return (Vec::new(), PageCursor::NextPage("0".into())),
        Some(p) => p.parse().unwrap_or(0),
    };
    let end = (offset + 2).min(items.len());
    let slice = items[offset.min(items.len())..end].to_vec();
    let next = if end < items.len() {
        PageCursor::NextPage(end.to_string())
    } else {
        PageCursor::SyncToken(token)
    };
    (slice, next)
}

fn parse_token(t: &str) -> Option<u64> {
    t.strip_prefix("v").and_then(|n| n.parse().ok())
}

impl Fake {
    fn with<R>(&self, f: impl FnOnce(&mut FakeState) -> R) -> R {
        f(&mut self.0.lock().unwrap())
    }

    fn add_calendar(&self, id: &str) {
        self.with(|s| {
            s.seq += 1;
            let e = CalendarEntry {
                id: id.into(),
                etag: format!("e{}", s.seq),
                summary: format!("Calendar {id}"),
                ..CalendarEntry::default()
            };
            s.list.push((s.seq, e));
            s.events.entry(id.into()).or_default();
        });
    }

    fn remove_calendar(&self, id: &str) {
        self.with(|s| {
            s.seq += 1;
            let e = CalendarEntry {
                id: id.into(),
                etag: format!("e{}", s.seq),
                deleted: true,
                ..CalendarEntry::default()
            };
            s.list.push((s.seq, e));
        });
    }

    fn put(&self, cal: &str, mut ev: CalendarEvent) {
        self.with(|s| {
            s.seq += 1;
            ev.etag = format!("t{}", s.seq);
            s.events.entry(cal.into()).or_default().push((s.seq, ev));
        });
    }

    fn cancel(&self, cal: &str, id: &str) {
        let ev = self.with(|s| {
            let log = s.events.get(cal).cloned().unwrap_or_default();
            latest(&log, |e: &CalendarEvent| e.id.clone(), 0)
                .into_iter()
                .find(|e| e.id == id)
        });
        let Some(mut ev) = ev else { return };
        ev.status = EventStatus::Cancelled;
        self.put(cal, ev);
    }

    fn invalidate_tokens(&self) {
        self.with(|s| s.valid_from = s.seq + 1);
    }

    /// The live truth of a calendar: what the store must equal (id → etag). Cancelled
    /// exceptions are part of it (they are a series' tombstones); cancelled others are gone.
    fn truth(&self, cal: &str) -> BTreeMap<String, String> {
        self.with(|s| {
            let log = s.events.get(cal).cloned().unwrap_or_default();
            latest(&log, |e: &CalendarEvent| e.id.clone(), 0)
                .into_iter()
                .filter(|e| !e.is_cancelled() || e.is_exception())
                .map(|e| (e.id, e.etag))
                .collect()
        })
    }
}

impl CalendarApi for Fake {
    fn list_calendars<'a>(
        &'a self,
        sync_token: Option<&'a str>,
        page_token: Option<&'a str>,
    ) -> PortFuture<'a, CalendarListPage> {
        let r = self.with(|s| {
            s.calls += 1;
            let after = match sync_token {
                None => 0,
                Some(t) => match parse_token(t) {
                    Some(n) if n + 1 >= s.valid_from => n,
                    _ => return Err(ApiError::SyncTokenExpired),
                },
            };
            let mut items = latest(&s.list, |e: &CalendarEntry| e.id.clone(), after);
            if sync_token.is_none() {
                items.retain(|e| !e.deleted);
            }
            let (entries, next) = paginate(&items, page_token, format!("v{}", s.seq));
            Ok(CalendarListPage { entries, next })
        });
        Box::pin(async move { r })
    }

    fn list_events<'a>(
        &'a self,
        calendar_id: &'a str,
        query: &'a EventsQuery,
    ) -> PortFuture<'a, EventPage> {
        let r = self.with(|s| {
            s.calls += 1;
            let after = match &query.sync_token {
                None => 0,
                Some(t) => match parse_token(t) {
                    Some(n) if n + 1 >= s.valid_from => n,
                    _ => return Err(ApiError::SyncTokenExpired),
                },
            };
            let Some(log) = s.events.get(calendar_id) else {
                return Err(ApiError::NotFound);
            };
            let items = latest(log, |e: &CalendarEvent| e.id.clone(), after);
            let (events, next) =
                paginate(&items, query.page_token.as_deref(), format!("v{}", s.seq));
            Ok(EventPage {
                events,
                next,
                time_zone: Some("Europe/Berlin".into()),
            })
        });
        Box::pin(async move { r })
    }
}

/// A parent that swallows reports.
struct Sink;
impl Actor for Sink {
    type Msg = ChildReport;
    type State = ();
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<ChildReport>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    store: Store,
    account: crate::model::AccountId,
    reporter: crate::report::Reporter,
    fake: Arc<Fake>,
    source: CalendarSource,
}

impl Harness {
    async fn new(fake: Arc<Fake>, options: CalendarOptions) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (sink, _) = Actor::spawn(None, Sink, ()).await.unwrap();
        Harness {
            _dir: dir,
            store,
            account: crate::model::AccountId("cal".into()),
            reporter: sink.get_derived(),
            source: CalendarSource::new(fake.clone(), options),
            fake,
        }
    }

    fn cx(&self) -> SourceCx<'_> {
        SourceCx {
            account: &self.account,
            store: &self.store,
            report: &self.reporter,
        }
    }

    /// Runs Backfill jobs until the mailbox is empty; `max_steps` stops early (a "crash").
    async fn backfill(&self, max_steps: usize) -> usize {
        let mb = self
            .store
            .mailbox(&jobs::mailbox_name(&self.account, ChildKind::Backfill));
        let mut steps = 0;
        loop {
            let Some(job) = mb.lease(1, u64::MAX / 2).unwrap().pop() else {
                return steps;
            };
            loop {
                if steps >= max_steps {
                    mb.release(&job);
                    return steps;
                }
                steps += 1;
                match self.source.backfill_step(&self.cx(), &job).await.unwrap() {
                    BackfillNext::Finished => {
                        mb.release(&job);
                        break;
                    }
                    _ => continue,
                }
            }
        }
    }

    /// One whole incremental round (leasing the push jobs first, as HistorySync does).
    async fn round(&self) {
        let mb = self
            .store
            .mailbox(&jobs::mailbox_name(&self.account, ChildKind::HistorySync));
        let pushes = mb.lease(100, u64::MAX / 2).unwrap();
        for _ in 0..1000 {
            let page = self
                .source
                .incremental_page(&self.cx(), &pushes)
                .await
                .unwrap();
            if page.round_done {
                mb.release_all();
                return;
            }
        }
        panic!("round did not finish");
    }

    async fn sync(&self) {
        self.source.ensure_jobs(&self.cx()).unwrap();
        self.backfill(usize::MAX).await;
        self.round().await;
        self.backfill(usize::MAX).await;
    }

    fn stored(&self, cal: &str) -> BTreeMap<String, String> {
        store::events(&self.store, "cal", cal)
            .unwrap()
            .into_iter()
            .map(|e| (e.id, e.etag))
            .collect()
    }

    fn feed(&self) -> Vec<FeedEvent> {
        self.store.flush().unwrap();
        self.store.feed().read_after(0, 100_000).unwrap()
    }

    fn kinds_after(&self, seq: u64) -> Vec<(String, String)> {
        self.feed()
            .into_iter()
            .filter(|e| e.seq > seq && !e.kind.starts_with("account."))
            .map(|e| {
                let id = match crate::store::decode::<Change>(&e.payload).unwrap() {
                    Change::EventCreated { event, .. } | Change::EventUpdated { event, .. } => {
                        event.id
                    }
                    Change::EventDeleted { event_id, .. } => event_id,
                    Change::CalendarAdded { calendar } => calendar.id,
                    Change::CalendarRemoved { calendar_id } => calendar_id,
                    other => format!("{other:?}"),
                };
                (e.kind, id)
            })
            .collect()
    }

    fn last_seq(&self) -> u64 {
        self.store.flush().unwrap();
        self.store.feed().durable_seq()
    }
}

fn timed(id: &str, start: &str, end: &str) -> CalendarEvent {
    CalendarEvent {
        id: id.into(),
        summary: Some(format!("event {id}")),
        start: Some(EventTime::DateTime {
            date_time: start.into(),
            time_zone: Some("Europe/Berlin".into()),
        }),
        end: Some(EventTime::DateTime {
            date_time: end.into(),
            time_zone: Some("Europe/Berlin".into()),
        }),
        ..CalendarEvent::default()
    }
}

/// A calendar with a single, an all-day and a weekly series with one moved and one cancelled
/// instance.
fn seed(fake: &Fake, cal: &str) {
    fake.put(
        cal,
        timed(
            "single",
            "2026-05-04T10:00:00+02:00",
            "2026-05-04T11:00:00+02:00",
        ),
    );
    fake.put(
        cal,
        CalendarEvent {
            id: "allday".into(),
            start: Some(EventTime::Date("2026-05-06".into())),
            end: Some(EventTime::Date("2026-05-07".into())),
            ..CalendarEvent::default()
        },
    );
    let mut master = timed(
        "weekly",
        "2026-05-05T09:00:00+02:00",
        "2026-05-05T09:30:00+02:00",
    );
    master.recurrence = vec!["RRULE:FREQ=WEEKLY;COUNT=5".into()];
    fake.put(cal, master);
    let mut moved = timed(
        "weekly_2",
        "2026-05-12T15:00:00+02:00",
        "2026-05-12T15:30:00+02:00",
    );
    moved.recurring_event_id = Some("weekly".into());
    moved.original_start = Some(EventTime::DateTime {
        date_time: "2026-05-12T09:00:00+02:00".into(),
        time_zone: Some("Europe/Berlin".into()),
    });
    fake.put(cal, moved);
    let cancelled = CalendarEvent {
        id: "weekly_3".into(),
        status: EventStatus::Cancelled,
        recurring_event_id: Some("weekly".into()),
        original_start: Some(EventTime::DateTime {
            date_time: "2026-05-19T09:00:00+02:00".into(),
            time_zone: Some("Europe/Berlin".into()),
        }),
        ..CalendarEvent::default()
    };
    fake.put(cal, cancelled);
    // Deleted before we ever synced: listed (showDeleted) but not part of the calendar.
    fake.put(
        cal,
        timed(
            "gone",
            "2026-05-01T10:00:00+02:00",
            "2026-05-01T11:00:00+02:00",
        ),
    );
    fake.cancel(cal, "gone");
}

fn assert_unique_keys(feed: &[FeedEvent]) {
    let mut keys = BTreeSet::new();
    for e in feed {
        assert!(keys.insert(e.key.clone()), "duplicate feed key {}", e.key);
    }
}

#[tokio::test]
async fn full_sync_equals_the_provider_and_stores_tokens_last() {
    let fake = Arc::new(Fake::default());
    fake.add_calendar("a");
    fake.add_calendar("b");
    seed(&fake, "a");
    fake.put(
        "b",
        timed("b1", "2026-05-04T10:00:00Z", "2026-05-04T11:00:00Z"),
    );
    let h = Harness::new(fake.clone(), CalendarOptions::default()).await;
    h.sync().await;
    assert_eq!(h.stored("a"), fake.truth("a"));
    assert_eq!(h.stored("b"), fake.truth("b"));
    assert!(
        h.stored("a").contains_key("weekly_3"),
        "cancelled instance kept"
    );
    assert!(!h.stored("a").contains_key("gone"));
    let kinds = h.kinds_after(0);
    assert_eq!(
        kinds.iter().filter(|(k, _)| k == "calendar.added").count(),
        2
    );
    // The cancelled instance is announced as that instance deleted, not as created.
    assert_eq!(
        kinds.iter().filter(|(k, _)| k == "event.created").count(),
        fake.truth("a").len() + fake.truth("b").len() - 1
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|(k, _)| k == "event.deleted")
            .map(|(_, id)| id.as_str())
            .collect::<Vec<_>>(),
        vec!["weekly_3"]
    );
    let st = store::calendar_status(&h.store, "cal").unwrap();
    assert!(st.iter().all(|c| c.token_at_ms.is_some() && !c.full_sync));
    // The series reads back master first.
    let series = store::series(&h.store, "cal", "a", "weekly").unwrap();
    assert_eq!(series[0].id, "weekly");
    assert_eq!(series.len(), 3);
    assert_unique_keys(&h.feed());
}

#[tokio::test]
async fn incremental_changes_give_exactly_their_events() {
    let fake = Arc::new(Fake::default());
    fake.add_calendar("a");
    seed(&fake, "a");
    let h = Harness::new(fake.clone(), CalendarOptions::default()).await;
    h.sync().await;
    let mark = h.last_seq();
    fake.put(
        "a",
        timed("new", "2026-06-01T10:00:00Z", "2026-06-01T11:00:00Z"),
    );
    fake.put(
        "a",
        timed(
            "single",
            "2026-05-04T12:00:00+02:00",
            "2026-05-04T13:00:00+02:00",
        ),
    );
    fake.cancel("a", "allday");
    let cancel_one = CalendarEvent {
        id: "weekly_4".into(),
        status: EventStatus::Cancelled,
        recurring_event_id: Some("weekly".into()),
        ..CalendarEvent::default()
    };
    fake.put("a", cancel_one);
    h.round().await;
    assert_eq!(h.stored("a"), fake.truth("a"));
    let mut kinds = h.kinds_after(mark);
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            ("event.created".to_string(), "new".to_string()),
            ("event.deleted".to_string(), "allday".to_string()),
            ("event.deleted".to_string(), "weekly_4".to_string()),
            ("event.updated".to_string(), "single".to_string()),
        ]
    );
    // Deleting the series removes its exceptions too; the two cancelled instances were
    // already announced as deleted (same key), so only the master and the moved one follow.
    let mark = h.last_seq();
    fake.cancel("a", "weekly");
    h.round().await;
    let mut kinds = h.kinds_after(mark);
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            ("event.deleted".to_string(), "weekly".to_string()),
            ("event.deleted".to_string(), "weekly_2".to_string()),
        ],
        "master + the live exception deleted"
    );
    assert!(
        store::series(&h.store, "cal", "a", "weekly")
            .unwrap()
            .is_empty()
    );
    // A round with no change emits nothing.
    let mark = h.last_seq();
    h.round().await;
    assert!(h.kinds_after(mark).is_empty());
    assert_unique_keys(&h.feed());
}

#[tokio::test]
async fn an_invalid_token_resyncs_with_only_the_true_differences() {
    let fake = Arc::new(Fake::default());
    fake.add_calendar("a");
    seed(&fake, "a");
    let h = Harness::new(fake.clone(), CalendarOptions::default()).await;
    h.sync().await;
    let mark = h.last_seq();
    fake.put(
        "a",
        timed(
            "single",
            "2026-05-04T14:00:00+02:00",
            "2026-05-04T15:00:00+02:00",
        ),
    );
    fake.cancel("a", "allday");
    fake.put(
        "a",
        timed("fresh", "2026-07-01T10:00:00Z", "2026-07-01T11:00:00Z"),
    );
    fake.invalidate_tokens();
    h.round().await; // 410 on the list and on the calendar → resync jobs
    let st = store::calendar_status(&h.store, "cal").unwrap();
    assert!(st[0].resyncing, "the calendar shows resyncing");
    h.backfill(usize::MAX).await;
    assert_eq!(h.stored("a"), fake.truth("a"));
    let mut kinds = h.kinds_after(mark);
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            ("event.created".to_string(), "fresh".to_string()),
            ("event.deleted".to_string(), "allday".to_string()),
            ("event.updated".to_string(), "single".to_string()),
        ],
        "no wipe and re-add"
    );
    assert!(!store::calendar_status(&h.store, "cal").unwrap()[0].resyncing);
    // Incremental works again with the new token.
    let mark = h.last_seq();
    fake.put(
        "a",
        timed("later", "2026-08-01T10:00:00Z", "2026-08-01T11:00:00Z"),
    );
    h.round().await;
    assert_eq!(h.kinds_after(mark).len(), 1);
    assert_unique_keys(&h.feed());
}

#[tokio::test]
async fn calendars_added_and_removed_from_the_list_are_noticed() {
    let fake = Arc::new(Fake::default());
    fake.add_calendar("a");
    fake.add_calendar("b");
    fake.put(
        "b",
        timed("b1", "2026-05-04T10:00:00Z", "2026-05-04T11:00:00Z"),
    );
    let h = Harness::new(fake.clone(), CalendarOptions::default()).await;
    h.sync().await;
    let mark = h.last_seq();
    fake.add_calendar("c");
    fake.put(
        "c",
        timed("c1", "2026-05-04T10:00:00Z", "2026-05-04T11:00:00Z"),
    );
    fake.remove_calendar("b");
    h.round().await;
    h.backfill(usize::MAX).await;
    let mut kinds = h.kinds_after(mark);
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            ("calendar.added".to_string(), "c".to_string()),
            ("calendar.removed".to_string(), "b".to_string()),
            ("event.created".to_string(), "c1".to_string()),
        ]
    );
    let ids: Vec<String> = store::calendars(&h.store, "cal")
        .unwrap()
        .into_iter()
        .map(|c| c.entry.id)
        .collect();
    assert_eq!(ids, vec!["a".to_string(), "c".to_string()]);
    assert!(store::events(&h.store, "cal", "b").unwrap().is_empty());
}

#[tokio::test]
async fn a_calendar_removed_after_the_round_read_the_list_is_not_retried_for_ever() {
    let fake = Arc::new(Fake::default());
    fake.add_calendar("a");
    fake.add_calendar("b");
    let h = Harness::new(fake.clone(), CalendarOptions::default()).await;
    h.sync().await;
    let mark = h.last_seq();
    // The round reads the (unchanged) list first ...
    let pushes = Vec::new();
    let first = h.source.incremental_page(&h.cx(), &pushes).await.unwrap();
    assert!(!first.round_done);
    // ... then the calendar goes away: its events answer 404 for good.
    fake.remove_calendar("b");
    fake.with(|s| s.events.remove("b"));
    for _ in 0..20 {
        let page = h
            .source
            .incremental_page(&h.cx(), &pushes)
            .await
            .expect("a 404 on a removed calendar re-reads the list, it is no error");
        if page.round_done {
            let kinds = h.kinds_after(mark);
            assert_eq!(
                kinds,
                vec![("calendar.removed".to_string(), "b".to_string())]
            );
            return;
        }
    }
    panic!("the round never finished");
}

#[tokio::test]
async fn config_selects_calendars() {
    let fake = Arc::new(Fake::default());
    fake.add_calendar("a");
    fake.add_calendar("b");
    let h = Harness::new(
        fake.clone(),
        CalendarOptions {
            calendars: Some(vec!["b".into()]),
        },
    )
    .await;
    h.sync().await;
    let ids: Vec<String> = store::calendars(&h.store, "cal")
        .unwrap()
        .into_iter()
        .map(|c| c.entry.id)
        .collect();
    assert_eq!(ids, vec!["b".to_string()]);
}

#[tokio::test]
async fn a_full_sync_interrupted_at_every_step_resumes_without_duplicates() {
    let fake = Arc::new(Fake::default());
    fake.add_calendar("a");
    seed(&fake, "a");
    for crash_after in 1..12 {
        let h = Harness::new(fake.clone(), CalendarOptions::default()).await;
        h.source.ensure_jobs(&h.cx()).unwrap();
        h.backfill(crash_after).await;
        // "Restart": a new source instance over the same store, jobs re-ensured.
        let h2 = Harness {
            _dir: h._dir,
            store: h.store,
            account: h.account,
            reporter: h.reporter,
            source: CalendarSource::new(fake.clone(), CalendarOptions::default()),
            fake: h.fake,
        };
        h2.sync().await;
        assert_eq!(h2.stored("a"), fake.truth("a"), "crash after {crash_after}");
        let feed = h2.feed();
        assert_unique_keys(&feed);
        let created = feed.iter().filter(|e| e.kind == "event.created").count();
        let instance_gone = feed.iter().filter(|e| e.kind == "event.deleted").count();
        assert_eq!(
            created + instance_gone,
            fake.truth("a").len(),
            "crash after {crash_after}"
        );
    }
}
