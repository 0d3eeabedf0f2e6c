//! What the IMAP source keeps in the store (`Space::Imap`), how those values are versioned, and
//! the writes that change the mirror together with their feed events.
//!
//! Keys (all under `<account>\0`):
//! - `A` → [`ImapAccountState`]: whether the first sync finished, the folder id counter.
//! - `F\0<folder name>` → [`FolderState`]: UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ (the folder's
//!   cursor, moved only after the changes it covers are recorded), the initial-sync checkpoint.
//! - `U<folder id: u32 BE><uid: u32 BE>` → [`UidEntry`]: uid → (message key, flags, modseq).
//!
//! Messages themselves live in the shared mirror (`Space::Messages` / `Space::Raw`) under a
//! key `f<folder id>.<uidvalidity>.<uid>` chosen at first download and kept for ever (a
//! UIDVALIDITY change rebinds new UIDs to the old keys). Their label set is the folder label
//! `imap.folder:<name>` plus the IMAP flags, which is what the Maildir sink reads.
//!
//! **Invariant:** every write here appends its feed event in the same transaction; replays
//! find the state already written and emit nothing.

use crate::codec::{CodecError, Versioned};
use crate::imap::port::FetchedBody;
use crate::mirror::{self, Change, MirrorMessage, emit};
use crate::model::{HistoryId, LabelId, MessageId};
use crate::store::{Space, Store, StoreError, StoreTx, TxError, decode, encode};
use serde::{Deserialize, Serialize};

/// The label prefix that names a message's folder in the mirror.
pub const FOLDER_LABEL_PREFIX: &str = "imap.folder:";

/// Account-wide IMAP state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImapAccountState {
    /// The first sync of every folder finished.
    pub initial_done: bool,
    /// The next folder id to hand out.
    pub next_folder_id: u32,
    /// When the last incremental round finished.
    pub last_sync_ms: Option<u64>,
}

/// The initial-sync checkpoint of a folder: pages go downwards from the newest UID.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct InitialProgress {
    /// Every UID at or above this one is recorded; the next page ends just below it.
    pub below: u32,
    /// Messages fetched so far.
    pub fetched: u64,
    /// Messages in the folder when the sync began (for progress).
    pub total: u64,
}

/// The durable state of one folder.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FolderState {
    /// Stable id (keys of its UID map and its messages).
    pub id: u32,
    /// Name as the server spells it.
    pub name: String,
    /// Special-use attribute.
    pub special_use: Option<String>,
    /// UIDVALIDITY of the UID map (`None` before the first SELECT).
    pub uidvalidity: Option<u32>,
    /// UIDNEXT covered: every message below it is recorded (incremental cursor).
    pub uidnext: u32,
    /// HIGHESTMODSEQ covered (incremental cursor with CONDSTORE).
    pub highest_modseq: Option<u64>,
    /// Messages held.
    pub messages: u64,
    /// The initial sync in progress.
    pub initial: Option<InitialProgress>,
    /// When the folder was last synced.
    pub last_sync_ms: Option<u64>,
    /// The last error of this folder, if its last step failed.
    pub last_error: Option<String>,
}

/// What we hold for one UID.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UidEntry {
    /// Message key in the mirror.
    pub key: String,
    /// Flags, sorted.
    pub flags: Vec<String>,
    /// MODSEQ last seen.
    pub modseq: Option<u64>,
    /// Bumped at every flag change (makes each `message.flags_changed` key unique).
    pub version: u32,
}

macro_rules! versioned_imap {
    ($($t:ty => $name:literal),* $(,)?) => {$(
        impl Versioned for $t {
            const NAME: &'static str = $name;
            const VERSION: u16 = 1;
            fn from_legacy(_body: &[u8]) -> Result<Self, CodecError> {
                Err(CodecError::malformed::<Self>("IMAP values did not exist in schema 1"))
            }
        }
    )*};
}

versioned_imap!(
    ImapAccountState => "imap account state",
    FolderState => "imap folder state",
    UidEntry => "imap uid entry",
);

fn base(account: &str, tag: u8) -> Vec<u8> {
    let mut k = Vec::with_capacity(account.len() + 16);
    k.extend_from_slice(account.as_bytes());
    k.push(0);
    k.push(tag);
    k
}

/// Key of the account state.
pub fn account_key(account: &str) -> Vec<u8> {
    base(account, b'A')
}

/// Key of a folder's state.
pub fn folder_key(account: &str, folder: &str) -> Vec<u8> {
    let mut k = base(account, b'F');
    k.push(0);
    k.extend_from_slice(folder.as_bytes());
    k
}

fn folders_prefix(account: &str) -> Vec<u8> {
    let mut k = base(account, b'F');
    k.push(0);
    k
}

/// Prefix of a folder's UID map.
pub fn uids_prefix(account: &str, folder_id: u32) -> Vec<u8> {
    let mut k = base(account, b'U');
    k.extend_from_slice(&folder_id.to_be_bytes());
    k
}

/// Key of one UID entry.
pub fn uid_key(account: &str, folder_id: u32, uid: u32) -> Vec<u8> {
    let mut k = uids_prefix(account, folder_id);
    k.extend_from_slice(&uid.to_be_bytes());
    k
}

/// The mirror key of a message first seen at (folder, uidvalidity, uid).
pub fn message_key(folder_id: u32, uidvalidity: u32, uid: u32) -> String {
    format!("f{folder_id}.{uidvalidity}.{uid}")
}

/// The folder label of a folder.
pub fn folder_label(folder: &str) -> LabelId {
    LabelId(format!("{FOLDER_LABEL_PREFIX}{folder}"))
}

/// Sorted, deduplicated flags.
pub fn normalize_flags(flags: &[String]) -> Vec<String> {
    let mut f: Vec<String> = flags
        .iter()
        .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
        .cloned()
        .collect();
    f.sort();
    f.dedup();
    f
}

fn labels_for(folder: &str, flags: &[String]) -> Vec<LabelId> {
    let mut l: Vec<LabelId> = flags.iter().map(|f| LabelId(f.clone())).collect();
    l.push(folder_label(folder));
    l.sort();
    l
}

/// Reads a value.
pub fn load<T: Versioned>(store: &Store, key: &[u8]) -> Result<Option<T>, StoreError> {
    match store
        .kv(Space::Imap)
        .get(key)
        .map_err(StoreError::sled("reading imap state"))?
    {
        Some(v) => Ok(Some(decode(&v)?)),
        None => Ok(None),
    }
}

/// Reads a value inside a transaction.
pub fn load_tx<T: Versioned>(tx: &StoreTx<'_>, key: &[u8]) -> Result<Option<T>, TxError> {
    match tx.get(Space::Imap, key)? {
        Some(v) => Ok(Some(decode(&v)?)),
        None => Ok(None),
    }
}

/// Writes a value inside a transaction.
pub fn save_tx<T: Versioned>(tx: &StoreTx<'_>, key: &[u8], value: &T) -> Result<(), TxError> {
    tx.insert(Space::Imap, key, &encode(value))
}

/// The account state (default when absent).
pub fn account_state(store: &Store, account: &str) -> Result<ImapAccountState, StoreError> {
    Ok(load(store, &account_key(account))?.unwrap_or_default())
}

/// Every folder's state, by name.
pub fn folders(store: &Store, account: &str) -> Result<Vec<FolderState>, StoreError> {
    let mut out = Vec::new();
    for item in store.kv(Space::Imap).scan_prefix(folders_prefix(account)) {
        let (_, v) = item.map_err(StoreError::sled("scanning imap folders"))?;
        out.push(decode(&v)?);
    }
    Ok(out)
}

/// Every UID entry of a folder, ascending by UID.
pub fn uid_entries(
    store: &Store,
    account: &str,
    folder_id: u32,
) -> Result<Vec<(u32, UidEntry)>, StoreError> {
    let prefix = uids_prefix(account, folder_id);
    let mut out = Vec::new();
    for item in store.kv(Space::Imap).scan_prefix(&prefix) {
        let (k, v) = item.map_err(StoreError::sled("scanning imap uids"))?;
        let Some(uid) = k
            .get(prefix.len()..)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
        else {
            continue;
        };
        out.push((uid, decode(&v)?));
    }
    Ok(out)
}

/// The UIDs held in a folder, ascending.
pub fn held_uids(store: &Store, account: &str, folder_id: u32) -> Result<Vec<u32>, StoreError> {
    let prefix = uids_prefix(account, folder_id);
    let mut out = Vec::new();
    for item in store.kv(Space::Imap).scan_prefix(&prefix).keys() {
        let k = item.map_err(StoreError::sled("scanning imap uids"))?;
        if let Some(uid) = k
            .get(prefix.len()..)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
        {
            out.push(uid);
        }
    }
    Ok(out)
}

/// Records a downloaded message under `key` (new → `message.added`); a UID already held is
/// left alone. Returns whether it was new.
pub fn add_message_tx(
    tx: &StoreTx<'_>,
    account: &str,
    folder: &FolderState,
    key: &str,
    body: &FetchedBody,
    now_ms: u64,
) -> Result<bool, TxError> {
    let ukey = uid_key(account, folder.id, body.uid);
    if tx.get(Space::Imap, &ukey)?.is_some() {
        return Ok(false);
    }
    let flags = normalize_flags(&body.flags);
    let fetched = crate::model::FetchedMessage {
        id: MessageId(key.to_string()),
        thread_id: String::new(),
        label_ids: labels_for(&folder.name, &flags),
        history_id: HistoryId(body.modseq.unwrap_or(0)),
        internal_date_ms: body.internal_date_ms,
        raw: body.raw.clone(),
        headers: body.headers.clone(),
    };
    mirror::apply_fetched(tx, account, &fetched, now_ms)?;
    save_tx(
        tx,
        &ukey,
        &UidEntry {
            key: key.to_string(),
            flags,
            modseq: body.modseq,
            version: 0,
        },
    )?;
    Ok(true)
}

/// Binds `uid` to an already held message (after a UIDVALIDITY change: `held` is its entry
/// under the old UID), then applies the server's flags.
pub fn bind_uid_tx(
    tx: &StoreTx<'_>,
    account: &str,
    folder: &FolderState,
    uid: u32,
    held: &UidEntry,
    flags: &[String],
    now_ms: u64,
) -> Result<(), TxError> {
    save_tx(tx, &uid_key(account, folder.id, uid), held)?;
    set_flags_tx(tx, account, folder, uid, flags, None, now_ms)?;
    Ok(())
}

/// Sets a held UID's flags (changed → `message.flags_changed`). Unknown UIDs are a no-op.
pub fn set_flags_tx(
    tx: &StoreTx<'_>,
    account: &str,
    folder: &FolderState,
    uid: u32,
    flags: &[String],
    modseq: Option<u64>,
    now_ms: u64,
) -> Result<bool, TxError> {
    let ukey = uid_key(account, folder.id, uid);
    let Some(mut entry) = load_tx::<UidEntry>(tx, &ukey)? else {
        return Ok(false);
    };
    let flags = normalize_flags(flags);
    if entry.flags == flags {
        if modseq.is_some() && entry.modseq != modseq {
            entry.modseq = modseq;
            save_tx(tx, &ukey, &entry)?;
        }
        return Ok(false);
    }
    let added: Vec<String> = flags
        .iter()
        .filter(|f| !entry.flags.contains(f))
        .cloned()
        .collect();
    let removed: Vec<String> = entry
        .flags
        .iter()
        .filter(|f| !flags.contains(f))
        .cloned()
        .collect();
    entry.flags = flags.clone();
    entry.modseq = modseq.or(entry.modseq);
    entry.version = entry.version.wrapping_add(1);
    save_tx(tx, &ukey, &entry)?;
    let id = MessageId(entry.key.clone());
    if let Some(mut msg) = mirror::get_message_tx(tx, account, &id)? {
        msg.label_ids = labels_for(&folder.name, &flags);
        write_message_tx(tx, account, &msg)?;
    }
    let change = Change::MessageFlagsChanged {
        id: id.clone(),
        folder: folder.name.clone(),
        uid,
        added,
        removed,
        flags,
    };
    emit(
        tx,
        account,
        format!(
            "message.flags_changed:{account}:{}:v{}",
            entry.key, entry.version
        ),
        &change,
        now_ms,
    )?;
    Ok(true)
}

fn write_message_tx(tx: &StoreTx<'_>, account: &str, msg: &MirrorMessage) -> Result<(), TxError> {
    tx.insert(
        Space::Messages,
        &mirror::record_key(account, &msg.id.0),
        &encode(msg),
    )
}

/// Forgets a UID and deletes its message (`message.deleted`). Unknown UIDs are a no-op.
pub fn delete_uid_tx(
    tx: &StoreTx<'_>,
    account: &str,
    folder: &FolderState,
    uid: u32,
    now_ms: u64,
) -> Result<bool, TxError> {
    let ukey = uid_key(account, folder.id, uid);
    let Some(entry) = load_tx::<UidEntry>(tx, &ukey)? else {
        return Ok(false);
    };
    tx.remove(Space::Imap, &ukey)?;
    mirror::apply_deleted(tx, account, &MessageId(entry.key), now_ms)?;
    Ok(true)
}

/// Forgets a UID without touching its message (the message is rebound to a new UID).
pub fn unbind_uid_tx(
    tx: &StoreTx<'_>,
    account: &str,
    folder_id: u32,
    uid: u32,
) -> Result<(), TxError> {
    tx.remove(Space::Imap, &uid_key(account, folder_id, uid))
}

/// Emits a folder event.
pub fn folder_event_tx(
    tx: &StoreTx<'_>,
    account: &str,
    key_suffix: &str,
    change: &Change,
    now_ms: u64,
) -> Result<(), TxError> {
    emit(
        tx,
        account,
        format!("{}:{account}:{key_suffix}", change.kind()),
        change,
        now_ms,
    )?;
    Ok(())
}

/// Renames a folder in place (same UIDVALIDITY under a new name): its state moves to the new
/// name's key, every held message's folder label follows (`keys`: the mirror keys of its UID
/// map), and one `folder.renamed` event is appended — no message is deleted or added.
pub fn rename_folder_tx(
    tx: &StoreTx<'_>,
    account: &str,
    folder: &FolderState,
    to: &str,
    special_use: Option<String>,
    keys: &[String],
    now_ms: u64,
) -> Result<(), TxError> {
    let from = folder.name.clone();
    let old_label = folder_label(&from);
    let new_label = folder_label(to);
    for key in keys {
        let id = MessageId(key.clone());
        if let Some(mut msg) = mirror::get_message_tx(tx, account, &id)? {
            msg.label_ids.retain(|l| *l != old_label);
            msg.label_ids.push(new_label.clone());
            msg.label_ids.sort();
            write_message_tx(tx, account, &msg)?;
        }
    }
    let mut moved = folder.clone();
    moved.name = to.to_string();
    moved.special_use = special_use;
    tx.remove(Space::Imap, &folder_key(account, &from))?;
    save_tx(tx, &folder_key(account, to), &moved)?;
    folder_event_tx(
        tx,
        account,
        &format!("{from}:{to}:{}:{now_ms}", folder.id),
        &Change::FolderRenamed {
            from,
            to: to.to_string(),
        },
        now_ms,
    )
}
