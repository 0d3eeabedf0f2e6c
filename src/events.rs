//! The public event schema: the one JSON form of a feed event that every consumer outside the
//! daemon sees — `mailsync ctl events` (socket stream) and webhooks alike. Documented field by
//! field in `docs/events.md`; versioned by `"v"` ([`SCHEMA_VERSION`]).
//!
//! The internal feed payload ([`Change`], stored with the actors' codec) is never serialized
//! to consumers: it is mapped here onto these types, which change only with the schema version.
//! [`event_value`] is the canonical rendering; both outputs serialize that value, so the bytes
//! of one event are identical on the socket and in a webhook body (`events::tests`).

use mailsync_actors::feed::FeedEvent;
use mailsync_actors::mirror::Change;
use mailsync_actors::model::{HeaderSummary, Label, LabelId, LabelKind};
use mailsync_actors::store::decode;
use serde::Serialize;

mod calendar;
pub use calendar::{CalendarEventJson, CalendarJson};

/// The version of the public event schema (`"v"` in every event).
pub const SCHEMA_VERSION: u32 = 1;

/// One event in the public schema.
#[derive(Debug, Serialize)]
pub struct EventJson {
    /// Schema version of this object: [`SCHEMA_VERSION`].
    pub v: u32,
    /// Position in the feed (increasing; gaps where other accounts' events were filtered).
    pub seq: u64,
    /// The account.
    pub account: String,
    /// `message.added`, `message.deleted`, `message.labels_changed`, `label.created`,
    /// `label.updated`, `label.deleted`, `calendar.added`, `calendar.removed`,
    /// `event.created`, `event.updated`, `event.deleted`, `account.state_changed`.
    pub kind: String,
    /// Idempotency key: the same change always has the same key. Dedupe on it.
    pub key: String,
    /// When the change was recorded, ms since the epoch.
    pub ts_ms: u64,
    /// What changed; its fields depend on `kind`. `null` if this build cannot decode it.
    pub change: Option<ChangeJson>,
}

/// [`Change`] as JSON; the variant is given by the event's `kind`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ChangeJson {
    /// `message.added`.
    MessageAdded {
        /// Message id.
        id: String,
        /// Thread id.
        thread_id: String,
        /// Labels at fetch time.
        label_ids: Vec<String>,
        /// Internal date, ms since the epoch.
        internal_date_ms: i64,
        /// Size in bytes.
        size: u64,
        /// Hex SHA-256 of the raw message.
        raw_sha256: String,
        /// Decoded headers.
        headers: HeadersJson,
    },
    /// `message.deleted`.
    MessageDeleted {
        /// Message id.
        id: String,
    },
    /// `message.labels_changed`.
    MessageLabelsChanged {
        /// Message id.
        id: String,
        /// Labels added.
        added: Vec<String>,
        /// Labels removed.
        removed: Vec<String>,
        /// The full label set after the change.
        label_ids: Vec<String>,
    },
    /// `label.created` / `label.updated`.
    Label {
        /// The label.
        label: LabelJson,
    },
    /// `label.deleted`.
    LabelDeleted {
        /// Label id.
        id: String,
    },
    /// `calendar.added`.
    CalendarAdded {
        /// The calendar.
        calendar: CalendarJson,
    },
    /// `calendar.removed`.
    CalendarRemoved {
        /// Calendar id.
        calendar_id: String,
    },
    /// `event.created` / `event.updated`.
    Event {
        /// Calendar id.
        calendar_id: String,
        /// The event after the change.
        event: Box<CalendarEventJson>,
    },
    /// `event.deleted`.
    EventDeleted {
        /// Calendar id.
        calendar_id: String,
        /// Event id.
        event_id: String,
        /// Its series (its own id for single events and masters).
        series_id: String,
        /// Set when one cancelled instance of a live series is gone (`event_id` is the
        /// instance's id): that occurrence's start per the rule; null when the event is gone.
        original_start: Option<calendar::TimeJson>,
    },
    /// `account.state_changed`.
    AccountState {
        /// New state (`running`, `failed`, `disconnected`, ...).
        state: String,
        /// Why, if known.
        reason: Option<String>,
    },
    /// IMAP `message.flags_changed`.
    MessageFlagsChanged {
        /// Message key.
        id: String,
        /// The folder.
        folder: String,
        /// The message's UID in the folder.
        uid: u32,
        /// Flags added.
        added: Vec<String>,
        /// Flags removed.
        removed: Vec<String>,
        /// The flags after the change.
        flags: Vec<String>,
    },
    /// IMAP `folder.created`.
    FolderCreated {
        /// The folder.
        folder: String,
        /// Its special-use attribute, if any.
        special_use: Option<String>,
    },
    /// IMAP `folder.deleted`.
    FolderDeleted {
        /// The folder.
        folder: String,
    },
    /// IMAP `folder.renamed`.
    FolderRenamed {
        /// The old name.
        from: String,
        /// The new name.
        to: String,
    },
    /// IMAP `folder.uidvalidity_changed`.
    FolderUidValidityChanged {
        /// The folder.
        folder: String,
        /// UIDVALIDITY before.
        old_uidvalidity: u32,
        /// UIDVALIDITY after.
        new_uidvalidity: u32,
        /// Messages matched again without a download.
        rematched: u64,
    },
}

/// Message headers on the wire.
#[derive(Debug, Serialize)]
pub struct HeadersJson {
    /// `Subject`.
    pub subject: Option<String>,
    /// `From`.
    pub from: Option<String>,
    /// `Date`.
    pub date: Option<String>,
    /// `Message-ID`.
    pub message_id: Option<String>,
}

/// A label on the wire.
#[derive(Debug, Serialize)]
pub struct LabelJson {
    /// Label id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `system` or `user`.
    pub kind: &'static str,
}

fn ids(v: Vec<LabelId>) -> Vec<String> {
    v.into_iter().map(|l| l.0).collect()
}

fn label_json(l: Label) -> LabelJson {
    LabelJson {
        id: l.id.0,
        name: l.name,
        kind: match l.kind {
            LabelKind::System => "system",
            LabelKind::User => "user",
        },
    }
}

fn headers_json(h: HeaderSummary) -> HeadersJson {
    HeadersJson {
        subject: h.subject,
        from: h.from,
        date: h.date,
        message_id: h.message_id,
    }
}

impl From<Change> for ChangeJson {
    fn from(c: Change) -> Self {
        match c {
            Change::MessageAdded {
                id,
                thread_id,
                label_ids,
                internal_date_ms,
                size,
                raw_sha256,
                headers,
            } => ChangeJson::MessageAdded {
                id: id.0,
                thread_id,
                label_ids: ids(label_ids),
                internal_date_ms,
                size,
                raw_sha256,
                headers: headers_json(headers),
            },
            Change::MessageDeleted { id } => ChangeJson::MessageDeleted { id: id.0 },
            Change::MessageLabelsChanged {
                id,
                added,
                removed,
                label_ids,
            } => ChangeJson::MessageLabelsChanged {
                id: id.0,
                added: ids(added),
                removed: ids(removed),
                label_ids: ids(label_ids),
            },
            Change::LabelCreated { label } | Change::LabelUpdated { label } => ChangeJson::Label {
                label: label_json(label),
            },
            Change::LabelDeleted { id } => ChangeJson::LabelDeleted { id: id.0 },
            Change::CalendarAdded { calendar } => ChangeJson::CalendarAdded {
                calendar: calendar::calendar_json(calendar),
            },
            Change::CalendarRemoved { calendar_id } => ChangeJson::CalendarRemoved { calendar_id },
            Change::EventCreated { calendar_id, event }
            | Change::EventUpdated { calendar_id, event } => ChangeJson::Event {
                calendar_id,
                event: Box::new(calendar::event_json(event)),
            },
            Change::EventDeleted {
                calendar_id,
                event_id,
                series_id,
                original_start,
            } => ChangeJson::EventDeleted {
                calendar_id,
                event_id,
                series_id,
                original_start: original_start.map(calendar::time),
            },
            Change::AccountStateChanged { state, reason } => {
                ChangeJson::AccountState { state, reason }
            }
            Change::MessageFlagsChanged {
                id,
                folder,
                uid,
                added,
                removed,
                flags,
            } => ChangeJson::MessageFlagsChanged {
                id: id.0,
                folder,
                uid,
                added,
                removed,
                flags,
            },
            Change::FolderCreated {
                folder,
                special_use,
            } => ChangeJson::FolderCreated {
                folder,
                special_use,
            },
            Change::FolderDeleted { folder } => ChangeJson::FolderDeleted { folder },
            Change::FolderRenamed { from, to } => ChangeJson::FolderRenamed { from, to },
            Change::FolderUidValidityChanged {
                folder,
                old,
                new,
                rematched,
            } => ChangeJson::FolderUidValidityChanged {
                folder,
                old_uidvalidity: old,
                new_uidvalidity: new,
                rematched,
            },
        }
    }
}

/// Renders one feed event in the public schema.
pub fn event_json(ev: &FeedEvent) -> EventJson {
    let change = match decode::<Change>(&ev.payload) {
        Ok(c) => Some(ChangeJson::from(c)),
        Err(e) => {
            tracing::warn!(seq = ev.seq, error = %e, "Feed event payload does not decode; sending change = null.");
            None
        }
    };
    EventJson {
        v: SCHEMA_VERSION,
        seq: ev.seq,
        account: ev.account.clone(),
        kind: ev.kind.clone(),
        key: ev.key.clone(),
        ts_ms: ev.ts_ms,
        change,
    }
}

/// The canonical JSON value of one event (what the socket and webhooks serialize).
pub fn event_value(ev: &FeedEvent) -> serde_json::Value {
    serde_json::to_value(event_json(ev)).unwrap_or(serde_json::Value::Null)
}

/// The canonical bytes of one event.
pub fn event_bytes(ev: &FeedEvent) -> Vec<u8> {
    serde_json::to_vec(&event_value(ev)).unwrap_or_default()
}

#[cfg(test)]
mod tests;
