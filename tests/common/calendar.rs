//! Calendar end-to-end helpers: a daemon config with a `kind = "calendar"` account on the
//! in-process emulator, emulator mutations, and the oracles — the store's current events
//! (read from sled after the daemon exited) against the emulator's truth snapshot, and the
//! calendar feed events with their idempotency keys.

use super::TestEnv;
use super::emulator::Emu;
use mailsync_actors::calendar::store as cal_store;
use mailsync_actors::mirror::Change;
use mailsync_actors::store::{Store, decode};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The account id of the calendar account in the daemon config.
pub const CAL_ACCOUNT: &str = "cal";

/// `calendar id → {event id → etag}` of everything that should be stored.
pub type EventSet = BTreeMap<String, BTreeMap<String, String>>;

/// Writes a complete daemon config with one calendar account. `extra_account` lines go into
/// the account table, `extra` at the end of the file.
pub fn write_config(emu: &Emu, env: &TestEnv, poll_secs: u64, extra_account: &str, extra: &str) {
    let _ = emu.account_block(env); // writes the credential files
    let text = format!(
        r#"data_dir = "{data}"
socket_path = "{socket}"
log_format = "json"
log_level = "info,mailsync=debug,mailsync_actors=debug"
shutdown_grace_secs = 10

[sync]
poll_interval_secs = {poll_secs}
batch_size = 50

[retry]
base_ms = 50
cap_ms = 1000
max_attempts = 8

[restart]
base_ms = 100
cap_ms = 800
max_restarts = 50
window_secs = 60

[[accounts]]
id = "{CAL_ACCOUNT}"
kind = "calendar"
email = "{email}"
api_base = "{base}"
token_url = "{base}/token"
auth_url = "{base}/o/oauth2/v2/auth"
client_id = "{client_id}"
client_secret = {{ file = "{secret}" }}
refresh_token = {{ file = "{refresh}" }}
{rate}
{extra_account}
{extra}
"#,
        data = env.data_dir.display(),
        socket = env.socket.display(),
        email = emu.email,
        base = emu.base,
        client_id = mailsync_emulator::DEFAULT_CLIENT_ID,
        secret = env.path("client_secret").display(),
        refresh = env.path("refresh_token").display(),
        rate = if extra_account.contains("calendar_requests_per_minute") {
            ""
        } else {
            "calendar_requests_per_minute = 599"
        },
    );
    std::fs::write(&env.config_path, text).expect("write config");
}

/// The emulator's truth: per live calendar, the events a mirror must hold — every event that
/// is not cancelled, plus cancelled exceptions of live series (occurrence tombstones).
pub fn truth(emu: &Emu) -> EventSet {
    let snap = emu
        .handle()
        .calendar_snapshot(&emu.email)
        .expect("snapshot");
    let mut out = EventSet::new();
    for cal in snap["calendars"].as_array().cloned().unwrap_or_default() {
        let events = cal["events"].as_array().cloned().unwrap_or_default();
        let live: BTreeSet<String> = events
            .iter()
            .filter(|e| e["status"] != "cancelled")
            .filter_map(|e| e["id"].as_str().map(String::from))
            .collect();
        let mut set = BTreeMap::new();
        for e in &events {
            let id = e["id"].as_str().unwrap_or_default().to_string();
            let keep = e["status"] != "cancelled"
                || e["recurringEventId"]
                    .as_str()
                    .is_some_and(|m| live.contains(m));
            if keep {
                set.insert(id, e["etag"].as_str().unwrap_or_default().to_string());
            }
        }
        out.insert(cal["id"].as_str().unwrap_or_default().to_string(), set);
    }
    out
}

/// What the store holds (the daemon must have exited).
pub fn mirror(data_dir: &Path) -> EventSet {
    let store = Store::open(data_dir).expect("reopen store");
    let mut out = EventSet::new();
    for c in cal_store::calendars(&store, CAL_ACCOUNT).expect("calendars") {
        let evs = cal_store::events(&store, CAL_ACCOUNT, &c.entry.id).expect("events");
        out.insert(
            c.entry.id.clone(),
            evs.into_iter().map(|e| (e.id, e.etag)).collect(),
        );
    }
    out
}

/// A readable difference of two event sets ("" when equal).
pub fn diff(mirror: &EventSet, truth: &EventSet) -> String {
    let mut out = String::new();
    let cals: BTreeSet<&String> = mirror.keys().chain(truth.keys()).collect();
    for c in cals {
        let (m, t) = (mirror.get(c), truth.get(c));
        match (m, t) {
            (None, _) => out.push_str(&format!("calendar {c} missing from the mirror\n")),
            (_, None) => out.push_str(&format!("calendar {c} should not be mirrored\n")),
            (Some(m), Some(t)) => {
                for (id, etag) in t {
                    match m.get(id) {
                        None => out.push_str(&format!("{c}: {id} missing\n")),
                        Some(e) if e != etag => {
                            out.push_str(&format!("{c}: {id} etag {e} != {etag}\n"))
                        }
                        _ => {}
                    }
                }
                for id in m.keys().filter(|id| !t.contains_key(*id)) {
                    out.push_str(&format!("{c}: {id} should be gone\n"));
                }
            }
        }
    }
    out
}

/// One calendar feed event: (kind, key, calendar id, event id).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CalFeedEvent {
    pub seq: u64,
    pub kind: String,
    pub key: String,
    pub calendar: String,
    pub event: Option<String>,
}

/// Every calendar feed event in order (the daemon must have exited).
pub fn feed(data_dir: &Path) -> Vec<CalFeedEvent> {
    let store = Store::open(data_dir).expect("reopen store");
    let events = store.feed().read_after(0, 1_000_000).expect("feed");
    events
        .into_iter()
        .filter_map(|ev| {
            let change: Change = decode(&ev.payload).ok()?;
            let (calendar, event) = match change {
                Change::CalendarAdded { calendar } => (calendar.id, None),
                Change::CalendarRemoved { calendar_id } => (calendar_id, None),
                Change::EventCreated { calendar_id, event }
                | Change::EventUpdated { calendar_id, event } => (calendar_id, Some(event.id)),
                Change::EventDeleted {
                    calendar_id,
                    event_id,
                    ..
                } => (calendar_id, Some(event_id)),
                _ => return None,
            };
            Some(CalFeedEvent {
                seq: ev.seq,
                kind: ev.kind,
                key: ev.key,
                calendar,
                event,
            })
        })
        .collect()
}

/// Asserts the feed has no duplicate idempotency keys.
pub fn assert_unique_keys(feed: &[CalFeedEvent]) {
    let mut seen = BTreeSet::new();
    for e in feed {
        assert!(seen.insert(e.key.clone()), "duplicate feed key {}", e.key);
    }
}

impl Emu {
    fn cal_path(&self, cal: &str, rest: &str) -> String {
        format!(
            "/_emulator/accounts/{}/calendars/{}{rest}",
            self.email,
            cal.replace('@', "%40").replace('#', "%23")
        )
    }

    /// Creates an event; returns its id.
    pub fn cal_create(&self, cal: &str, body: Value) -> String {
        let v = self.call(
            reqwest::Method::POST,
            &self.cal_path(cal, "/events"),
            Some(body),
        );
        v["id"].as_str().expect("id").to_string()
    }

    /// Patches an event through the control API.
    pub fn cal_update(&self, cal: &str, id: &str, body: Value) {
        self.call(
            reqwest::Method::PATCH,
            &self.cal_path(cal, &format!("/events/{id}")),
            Some(body),
        );
    }

    /// Deletes an event.
    pub fn cal_delete(&self, cal: &str, id: &str) {
        self.call(
            reqwest::Method::DELETE,
            &self.cal_path(cal, &format!("/events/{id}")),
            None,
        );
    }

    /// Cancels occurrence `index` of a series; returns the exception's id.
    pub fn cal_cancel_instance(&self, cal: &str, master: &str, index: usize) -> String {
        let v = self.call(
            reqwest::Method::POST,
            &self.cal_path(cal, &format!("/events/{master}/cancel-instance")),
            Some(json!({"index": index})),
        );
        v["id"].as_str().expect("id").to_string()
    }

    /// Moves occurrence `index` of a series by `minutes`; returns the exception's id.
    pub fn cal_move_instance(&self, cal: &str, master: &str, index: usize, minutes: i64) -> String {
        let v = self.call(
            reqwest::Method::POST,
            &self.cal_path(cal, &format!("/events/{master}/modify-instance")),
            Some(json!({"index": index, "shiftMinutes": minutes})),
        );
        v["id"].as_str().expect("id").to_string()
    }

    /// Invalidates every sync token of a calendar (next use → 410).
    pub fn cal_invalidate(&self, cal: &str) {
        self.call(
            reqwest::Method::POST,
            &self.cal_path(cal, "/invalidate-sync-tokens"),
            None,
        );
    }

    /// Adds a calendar to the list; returns its id.
    pub fn cal_add_calendar(&self, summary: &str) -> String {
        let v = self.call(
            reqwest::Method::POST,
            &format!("/_emulator/accounts/{}/calendars", self.email),
            Some(json!({"summary": summary, "timeZone": "Europe/Paris"})),
        );
        v["id"].as_str().expect("id").to_string()
    }

    /// Removes a calendar from the list.
    pub fn cal_remove_calendar(&self, cal: &str) {
        self.call(reqwest::Method::DELETE, &self.cal_path(cal, ""), None);
    }

    /// Empty pages before every events page.
    pub fn cal_empty_pages(&self, on: bool) {
        self.call(
            reqwest::Method::POST,
            &format!("/_emulator/accounts/{}/calendars/empty-pages", self.email),
            Some(json!({"enabled": on})),
        );
    }

    /// The calendar ids, primary first.
    pub fn cal_ids(&self) -> Vec<String> {
        let snap = self
            .handle()
            .calendar_snapshot(&self.email)
            .expect("snapshot");
        snap["calendars"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|c| c["id"].as_str().map(String::from))
            .collect()
    }

    /// The channels registered at the emulator.
    pub fn cal_channels(&self) -> Vec<Value> {
        let v = self.call(
            reqwest::Method::GET,
            &format!("/_emulator/accounts/{}/channels", self.email),
            None,
        );
        v["channels"].as_array().cloned().unwrap_or_default()
    }
}
