//! The truth snapshot of an account's calendars ([`CalendarSet::snapshot`]): every stored
//! event in Google's JSON shape plus the registered channels, for tests and the control API.

use serde_json::{Value, json};

use super::model::CalendarSet;

impl CalendarSet {
    /// Truth snapshot of the live calendars: every stored event (tombstones included) with
    /// the fields a synced mirror must agree on.
    pub fn snapshot(&self) -> Value {
        let cals: Vec<Value> = self
            .calendars
            .iter()
            .filter(|c| !c.deleted)
            .map(|c| {
                let events: Vec<Value> = c
                    .events
                    .values()
                    .map(|e| super::event_shape::event_json(e, &c.time_zone, false))
                    .collect();
                json!({"id": c.id, "summary": c.summary, "primary": c.primary,
                       "timeZone": c.time_zone, "backgroundColor": c.background_color,
                       "events": events})
            })
            .collect();
        let channels: Vec<Value> = self
            .channels
            .iter()
            .map(|ch| {
                json!({"id": ch.id, "resourceId": ch.resource_id, "calendarId": ch.calendar_id,
                             "expiration": ch.expiration_ms.to_string(), "address": ch.address})
            })
            .collect();
        json!({"owner": self.owner, "calendars": cals, "channels": channels})
    }
}
