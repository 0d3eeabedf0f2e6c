//! The local mirror of a mail account inside the store, and the change events that describe
//! every write to it. One record per message (metadata in `Space::Messages`, raw bytes in
//! the store's body files, referenced from the record itself since schema 6 and from
//! `Space::Bodies` before) and one per label (`Space::Labels`); keys are `<account>\0<id>`.
//!
//! **Invariant:** every function here that changes the mirror appends its feed event in the
//! same `StoreTx`, so there is no event without its store change and no store change without
//! its event. Replaying a write (a job run twice after a crash) changes nothing: the state is
//! compared first and the event key is stable.

use crate::model::{FetchedMessage, HeaderSummary, HistoryId, Label, LabelId, MessageId};
use crate::store::{BodyRef, Space, Store, StoreError, StoreTx, TxError, decode, encode};
use serde::{Deserialize, Serialize};

/// What the mirror keeps of one message (the raw bytes live apart, in the body files).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorMessage {
    /// Message id.
    pub id: MessageId,
    /// Thread id.
    pub thread_id: String,
    /// Current labels, sorted.
    pub label_ids: Vec<LabelId>,
    /// History id at the last write.
    pub history_id: HistoryId,
    /// Internal date, ms since the epoch.
    pub internal_date_ms: i64,
    /// Hex SHA-256 of the raw bytes (what tests compare against the emulator's snapshot).
    pub raw_sha256: String,
    /// Length of the raw bytes.
    pub size: u64,
    /// Decoded headers, for events and status.
    pub headers: HeaderSummary,
    /// Where the raw bytes are in the body files (schema 6). `None` in records written
    /// before: their bytes are found under the record's key in the `bodies` tree (or inline
    /// in `raw`). Keeping the reference in the record saves sled one key per message. Never
    /// leaves the store: [`MirrorMessage::without_body_ref`] is what sinks and backups keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<BodyRef>,
}

impl MirrorMessage {
    /// The record without its body reference, which only means something inside the store
    /// whose body files it points into.
    pub fn without_body_ref(&self) -> MirrorMessage {
        MirrorMessage {
            body: None,
            ..self.clone()
        }
    }
}

/// The payload of one feed event: what changed, without message bodies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// A message entered the mirror.
    MessageAdded {
        /// Message id.
        id: MessageId,
        /// Thread id.
        thread_id: String,
        /// Labels at fetch time.
        label_ids: Vec<LabelId>,
        /// Internal date, ms since the epoch.
        internal_date_ms: i64,
        /// Size in bytes.
        size: u64,
        /// Hex SHA-256 of the raw bytes.
        raw_sha256: String,
        /// Decoded headers.
        headers: HeaderSummary,
    },
    /// A message left the mirror (deleted at the provider).
    MessageDeleted {
        /// Message id.
        id: MessageId,
    },
    /// A message's labels changed.
    MessageLabelsChanged {
        /// Message id.
        id: MessageId,
        /// Labels added.
        added: Vec<LabelId>,
        /// Labels removed.
        removed: Vec<LabelId>,
        /// The full label set after the change.
        label_ids: Vec<LabelId>,
    },
    /// A label appeared.
    LabelCreated {
        /// The label.
        label: Label,
    },
    /// A label was renamed.
    LabelUpdated {
        /// The label after the change.
        label: Label,
    },
    /// A label vanished.
    LabelDeleted {
        /// Its id.
        id: LabelId,
    },
    /// A calendar appeared in the account's calendar list (or was selected).
    CalendarAdded {
        /// The calendar.
        calendar: crate::calendar_model::CalendarEntry,
    },
    /// A calendar left the account's calendar list.
    CalendarRemoved {
        /// Its id.
        calendar_id: String,
    },
    /// An event (single, series master or exception) appeared.
    EventCreated {
        /// The calendar.
        calendar_id: String,
        /// The event as stored.
        event: crate::calendar_model::CalendarEvent,
    },
    /// An event changed (its etag moved).
    EventUpdated {
        /// The calendar.
        calendar_id: String,
        /// The event after the change.
        event: crate::calendar_model::CalendarEvent,
    },
    /// An event was deleted (a cancelled single event or series; the series' exceptions go
    /// with it).
    EventDeleted {
        /// The calendar.
        calendar_id: String,
        /// The event's id.
        event_id: String,
        /// The series it belonged to (its own id for single events and masters).
        series_id: String,
        /// For one cancelled instance of a live series (the series goes on): that
        /// occurrence's start per the rule. `None` when the event itself is gone.
        #[serde(default)]
        original_start: Option<crate::calendar_model::EventTime>,
    },
    /// IMAP: a message's flags or keywords changed.
    MessageFlagsChanged {
        /// Message key.
        id: MessageId,
        /// The folder.
        folder: String,
        /// Its UID in the folder.
        uid: u32,
        /// Flags added.
        added: Vec<String>,
        /// Flags removed.
        removed: Vec<String>,
        /// The full flag set after the change.
        flags: Vec<String>,
    },
    /// IMAP: a folder appeared.
    FolderCreated {
        /// Its name.
        folder: String,
        /// Its special-use attribute (`\Sent` …).
        special_use: Option<String>,
    },
    /// IMAP: a folder vanished (its messages were deleted with `message.deleted` first).
    FolderDeleted {
        /// Its name.
        folder: String,
    },
    /// IMAP: a folder was renamed (same UIDVALIDITY under a new name).
    FolderRenamed {
        /// The old name.
        from: String,
        /// The new name.
        to: String,
    },
    /// IMAP: a folder's UIDVALIDITY changed; held messages were matched again.
    FolderUidValidityChanged {
        /// The folder.
        folder: String,
        /// The old UIDVALIDITY.
        old: u32,
        /// The new UIDVALIDITY.
        new: u32,
        /// Messages matched to what was held (not downloaded again).
        rematched: u64,
    },
    /// The account changed state (running, failed, disconnected ...).
    AccountStateChanged {
        /// New state, as `AccountState`'s snake_case name.
        state: String,
        /// Why, secret-free.
        reason: Option<String>,
    },
}

impl Change {
    /// The event kind string (`message.added` ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Change::MessageAdded { .. } => "message.added",
            Change::MessageDeleted { .. } => "message.deleted",
            Change::MessageLabelsChanged { .. } => "message.labels_changed",
            Change::LabelCreated { .. } => "label.created",
            Change::LabelUpdated { .. } => "label.updated",
            Change::LabelDeleted { .. } => "label.deleted",
            Change::CalendarAdded { .. } => "calendar.added",
            Change::CalendarRemoved { .. } => "calendar.removed",
            Change::EventCreated { .. } => "event.created",
            Change::EventUpdated { .. } => "event.updated",
            Change::EventDeleted { .. } => "event.deleted",
            Change::MessageFlagsChanged { .. } => "message.flags_changed",
            Change::FolderCreated { .. } => "folder.created",
            Change::FolderDeleted { .. } => "folder.deleted",
            Change::FolderRenamed { .. } => "folder.renamed",
            Change::FolderUidValidityChanged { .. } => "folder.uidvalidity_changed",
            Change::AccountStateChanged { .. } => "account.state_changed",
        }
    }
}

/// The key of an account-scoped record: `<account>\0<id>`.
pub fn record_key(account: &str, id: &str) -> Vec<u8> {
    let mut k = account_prefix(account);
    k.extend_from_slice(id.as_bytes());
    k
}

/// The prefix of all of an account's records in one space.
pub fn account_prefix(account: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(account.len() + 1);
    k.extend_from_slice(account.as_bytes());
    k.push(0);
    k
}

/// Appends one change event in `tx`; a key that already has an event is a no-op.
pub fn emit(
    tx: &StoreTx<'_>,
    account: &str,
    key: String,
    change: &Change,
    now_ms: u64,
) -> Result<Option<u64>, TxError> {
    tx.append_event(new_event(account, key, change, now_ms))
}

fn new_event(account: &str, key: String, change: &Change, now_ms: u64) -> crate::feed::NewEvent {
    crate::feed::NewEvent {
        account: account.to_string(),
        kind: change.kind().to_string(),
        key,
        payload: encode(change),
        ts_ms: now_ms,
    }
}

/// How often an item (a message or a label) has been deleted and how often it has changed:
/// part of its events' idempotency keys, so a message deleted and re-added, or a label renamed
/// back to an earlier name, is a new event rather than a duplicate of an old one. Kept in
/// `Space::Cursors` under `gen\0<account>\0<m|l>\0<id>`, also after the item is gone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ItemVersions {
    /// Deletions so far (the item's current generation).
    pub generation: u64,
    /// Changes within the generation.
    pub revision: u64,
}

crate::versioned_as_itself!(ItemVersions => "item versions");

fn versions_key(account: &str, kind: u8, id: &str) -> Vec<u8> {
    let mut k = b"gen\0".to_vec();
    k.extend_from_slice(account.as_bytes());
    k.push(0);
    k.push(kind);
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
}

fn versions_tx(
    tx: &StoreTx<'_>,
    account: &str,
    kind: u8,
    id: &str,
) -> Result<ItemVersions, TxError> {
    match tx.get(Space::Cursors, &versions_key(account, kind, id))? {
        Some(v) => Ok(decode(&v)?),
        None => Ok(ItemVersions::default()),
    }
}

fn save_versions_tx(
    tx: &StoreTx<'_>,
    account: &str,
    kind: u8,
    id: &str,
    v: ItemVersions,
) -> Result<(), TxError> {
    tx.insert(
        Space::Cursors,
        &versions_key(account, kind, id),
        &encode(&v),
    )
}

const MESSAGE: u8 = b'm';
const LABEL: u8 = b'l';

fn sorted(mut v: Vec<LabelId>) -> Vec<LabelId> {
    v.sort();
    v.dedup();
    v
}

/// Reads one mirrored message inside a transaction.
pub fn get_message_tx(
    tx: &StoreTx<'_>,
    account: &str,
    id: &MessageId,
) -> Result<Option<MirrorMessage>, TxError> {
    match tx.get(Space::Messages, &record_key(account, &id.0))? {
        Some(v) => Ok(Some(decode(&v)?)),
        None => Ok(None),
    }
}

/// What a write did to the mirror.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// A new message was stored.
    Added,
    /// An existing message changed (labels).
    Updated,
    /// Nothing changed (a replay).
    Unchanged,
    /// A message was removed.
    Deleted,
}

/// Stores a fetched message: new → `message.added`; known with other labels →
/// `message.labels_changed`; identical → nothing.
pub fn apply_fetched(
    tx: &StoreTx<'_>,
    account: &str,
    msg: &FetchedMessage,
    now_ms: u64,
) -> Result<Applied, TxError> {
    let key = record_key(account, &msg.id.0);
    let labels = sorted(msg.label_ids.clone());
    if let Some(old) = get_message_tx(tx, account, &msg.id)? {
        // An older fetch than the stored state never restores old labels.
        if old.label_ids == labels || old.history_id > msg.history_id {
            return Ok(Applied::Unchanged);
        }
        return set_labels(
            tx,
            account,
            old,
            labels,
            &msg.history_id.to_string(),
            now_ms,
        );
    }
    let raw_sha256 = sha256_hex(&msg.raw);
    let record = MirrorMessage {
        id: msg.id.clone(),
        thread_id: msg.thread_id.clone(),
        label_ids: labels.clone(),
        history_id: msg.history_id,
        internal_date_ms: msg.internal_date_ms,
        raw_sha256: raw_sha256.clone(),
        size: msg.raw.len() as u64,
        headers: msg.headers.clone(),
        body: Some(tx.append_body(&msg.raw)?),
    };
    tx.insert(Space::Messages, &key, &encode(&record))?;
    let change = Change::MessageAdded {
        id: msg.id.clone(),
        thread_id: msg.thread_id.clone(),
        label_ids: labels,
        internal_date_ms: msg.internal_date_ms,
        size: record.size,
        raw_sha256,
        headers: msg.headers.clone(),
    };
    let g = versions_tx(tx, account, MESSAGE, &msg.id.0)?.generation;
    // The record written above, absent until now, is this event's idempotency: no
    // `feed_keys` entry.
    tx.append_event_for_new_record(new_event(
        account,
        format!("message.added:{account}:{}:g{g}", msg.id),
        &change,
        now_ms,
    ))?;
    Ok(Applied::Added)
}

/// Replaces a known message's label set and emits `message.labels_changed`. `discriminator`
/// makes the event key unique per change while staying stable across replays (a history
/// position or the message's history id).
pub fn set_labels(
    tx: &StoreTx<'_>,
    account: &str,
    mut old: MirrorMessage,
    labels: Vec<LabelId>,
    discriminator: &str,
    now_ms: u64,
) -> Result<Applied, TxError> {
    let labels = sorted(labels);
    if old.label_ids == labels {
        return Ok(Applied::Unchanged);
    }
    let added: Vec<LabelId> = labels
        .iter()
        .filter(|l| !old.label_ids.contains(l))
        .cloned()
        .collect();
    let removed: Vec<LabelId> = old
        .label_ids
        .iter()
        .filter(|l| !labels.contains(l))
        .cloned()
        .collect();
    old.label_ids = labels.clone();
    tx.insert(
        Space::Messages,
        &record_key(account, &old.id.0),
        &encode(&old),
    )?;
    let change = Change::MessageLabelsChanged {
        id: old.id.clone(),
        added,
        removed,
        label_ids: labels,
    };
    let g = versions_tx(tx, account, MESSAGE, &old.id.0)?.generation;
    emit(
        tx,
        account,
        format!(
            "message.labels_changed:{account}:{}:g{g}:{discriminator}",
            old.id
        ),
        &change,
        now_ms,
    )?;
    Ok(Applied::Updated)
}

/// Applies a label delta from history to a known message; unknown messages are left to their
/// pending ingest, which reads the current labels anyway.
pub fn apply_label_delta(
    tx: &StoreTx<'_>,
    account: &str,
    id: &MessageId,
    added: &[LabelId],
    removed: &[LabelId],
    discriminator: &str,
    now_ms: u64,
) -> Result<Applied, TxError> {
    let Some(old) = get_message_tx(tx, account, id)? else {
        return Ok(Applied::Unchanged);
    };
    let mut labels = old.label_ids.clone();
    labels.extend(added.iter().cloned());
    labels.retain(|l| !removed.contains(l));
    set_labels(tx, account, old, labels, discriminator, now_ms)
}

/// Removes a message and emits `message.deleted`; unknown ids are a no-op.
pub fn apply_deleted(
    tx: &StoreTx<'_>,
    account: &str,
    id: &MessageId,
    now_ms: u64,
) -> Result<Applied, TxError> {
    let key = record_key(account, &id.0);
    if tx.get(Space::Messages, &key)?.is_none() {
        return Ok(Applied::Unchanged);
    }
    tx.remove(Space::Messages, &key)?;
    tx.remove_body(&key)?;
    let mut v = versions_tx(tx, account, MESSAGE, &id.0)?;
    emit(
        tx,
        account,
        format!("message.deleted:{account}:{id}:g{}", v.generation),
        &Change::MessageDeleted { id: id.clone() },
        now_ms,
    )?;
    // A later re-add of the same id is a new generation with new event keys.
    v.generation += 1;
    v.revision = 0;
    save_versions_tx(tx, account, MESSAGE, &id.0, v)?;
    Ok(Applied::Deleted)
}

/// Makes the mirrored labels equal to `labels`: upserts (renames emit `label.updated`) and
/// deletes vanished ones. `existing` is the current mirror content, read before the
/// transaction with [`labels`]. Returns how many label events were emitted.
pub fn sync_labels(
    tx: &StoreTx<'_>,
    account: &str,
    existing: &[Label],
    labels: &[Label],
    now_ms: u64,
) -> Result<usize, TxError> {
    let mut events = 0;
    for label in labels {
        let key = record_key(account, &label.id.0);
        match existing.iter().find(|l| l.id == label.id) {
            Some(old) if old == label => {}
            Some(_) => {
                tx.insert(Space::Labels, &key, &encode(label))?;
                let change = Change::LabelUpdated {
                    label: label.clone(),
                };
                let mut v = versions_tx(tx, account, LABEL, &label.id.0)?;
                v.revision += 1;
                save_versions_tx(tx, account, LABEL, &label.id.0, v)?;
                let k = format!(
                    "label.updated:{account}:{}:g{}:r{}",
                    label.id, v.generation, v.revision
                );
                events += usize::from(emit(tx, account, k, &change, now_ms)?.is_some());
            }
            None => {
                tx.insert(Space::Labels, &key, &encode(label))?;
                let change = Change::LabelCreated {
                    label: label.clone(),
                };
                let g = versions_tx(tx, account, LABEL, &label.id.0)?.generation;
                let k = format!("label.created:{account}:{}:g{g}", label.id);
                events += usize::from(emit(tx, account, k, &change, now_ms)?.is_some());
            }
        }
    }
    for old in existing {
        if labels.iter().any(|l| l.id == old.id) {
            continue;
        }
        tx.remove(Space::Labels, &record_key(account, &old.id.0))?;
        let change = Change::LabelDeleted { id: old.id.clone() };
        let mut v = versions_tx(tx, account, LABEL, &old.id.0)?;
        let k = format!("label.deleted:{account}:{}:g{}", old.id, v.generation);
        v.generation += 1;
        v.revision = 0;
        save_versions_tx(tx, account, LABEL, &old.id.0, v)?;
        events += usize::from(emit(tx, account, k, &change, now_ms)?.is_some());
    }
    Ok(events)
}

/// Makes the account's mirrored labels equal to `remote` (the provider's current list) in one
/// transaction that also records `label_sync_completed`; returns the label events emitted. Not
/// flushed: the caller flushes at its commit point.
pub fn store_remote_labels(
    store: &Store,
    account: &str,
    remote: &[Label],
    now_ms: u64,
) -> Result<usize, StoreError> {
    let existing = labels(store, account)?;
    store.transaction(|tx| {
        let events = sync_labels(tx, account, &existing, remote, now_ms)?;
        let mut rec = crate::account_record::AccountRecord::load_tx(tx, account)?;
        if !rec.label_sync_completed {
            rec.label_sync_completed = true;
            rec.save_tx(tx, account)?;
        }
        Ok(events)
    })
}

fn sled_err(context: &'static str) -> impl FnOnce(sled::Error) -> StoreError {
    move |source| StoreError::Sled { context, source }
}

/// Every mirrored label of an account.
pub fn labels(store: &Store, account: &str) -> Result<Vec<Label>, StoreError> {
    let mut out = Vec::new();
    for item in store.kv(Space::Labels).scan_prefix(account_prefix(account)) {
        let (_, v) = item.map_err(sled_err("scanning labels"))?;
        out.push(decode(&v)?);
    }
    Ok(out)
}

/// One mirrored message.
pub fn message(
    store: &Store,
    account: &str,
    id: &MessageId,
) -> Result<Option<MirrorMessage>, StoreError> {
    match store
        .kv(Space::Messages)
        .get(record_key(account, &id.0))
        .map_err(sled_err("reading a message"))?
    {
        Some(v) => Ok(Some(decode(&v)?)),
        None => Ok(None),
    }
}

/// For a backup, which does not copy the body files: a stored record's value without its
/// body reference, and the reference. `None` when the value holds none (a record written
/// before schema 6) or is not a record.
pub fn split_body_ref(value: &[u8]) -> Option<(Vec<u8>, BodyRef)> {
    let mut m: MirrorMessage = decode(value).ok()?;
    let at = m.body.take()?;
    Some((encode(&m), at))
}

/// The body reference a stored record's value holds, if any (see [`split_body_ref`]).
pub fn body_ref_in(value: &[u8]) -> Option<BodyRef> {
    decode::<MirrorMessage>(value).ok()?.body
}

/// The raw bytes of one mirrored message.
pub fn raw(store: &Store, account: &str, id: &MessageId) -> Result<Option<Vec<u8>>, StoreError> {
    match message(store, account, id)? {
        Some(m) => raw_of(store, account, &m),
        None => store.body(&record_key(account, &id.0)),
    }
}

/// The raw bytes of `msg`, a record read from the mirror of `account`: where its body
/// reference points, or, for a record written before schema 6, under its key.
pub fn raw_of(
    store: &Store,
    account: &str,
    msg: &MirrorMessage,
) -> Result<Option<Vec<u8>>, StoreError> {
    stored_raw(store, &record_key(account, &msg.id.0), msg)
}

/// [`raw_of`] for a record read under `key` (the store check walks keys, not accounts).
pub fn stored_raw(
    store: &Store,
    key: &[u8],
    msg: &MirrorMessage,
) -> Result<Option<Vec<u8>>, StoreError> {
    match &msg.body {
        Some(at) => store.read_body(at).map(Some),
        None => store.body(key),
    }
}

/// Calls `f` for every mirrored message of an account, in id order, without holding them all.
pub fn for_each_message(
    store: &Store,
    account: &str,
    mut f: impl FnMut(MirrorMessage) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    for item in store
        .kv(Space::Messages)
        .scan_prefix(account_prefix(account))
    {
        let (_, v) = item.map_err(sled_err("scanning messages"))?;
        f(decode(&v)?)?;
    }
    Ok(())
}

/// How many messages of an account are mirrored.
pub fn message_count(store: &Store, account: &str) -> u64 {
    store
        .kv(Space::Messages)
        .scan_prefix(account_prefix(account))
        .count() as u64
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LabelKind;

    fn label(name: &str) -> Label {
        Label {
            id: LabelId("Label_1".into()),
            name: name.into(),
            kind: LabelKind::User,
        }
    }

    fn sync(store: &Store, remote: &[Label]) -> usize {
        let n = store_remote_labels(store, "a", remote, 1).unwrap();
        store.flush().unwrap();
        n
    }

    /// A label renamed back to an earlier name, or deleted and created again, is a new event
    /// each time (the keys carry the label's generation and revision).
    #[test]
    fn renaming_back_and_recreating_still_emit_events() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(sync(&store, &[label("one")]), 1);
        assert_eq!(sync(&store, &[label("two")]), 1);
        assert_eq!(sync(&store, &[label("one")]), 1, "renamed back");
        assert_eq!(sync(&store, &[label("one")]), 0, "a replay emits nothing");
        assert_eq!(sync(&store, &[]), 1, "deleted");
        assert_eq!(sync(&store, &[label("one")]), 1, "created again");
        let kinds: Vec<String> = store
            .feed()
            .read_after(0, 100)
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(
            kinds,
            [
                "label.created",
                "label.updated",
                "label.updated",
                "label.deleted",
                "label.created"
            ]
        );
    }
}
