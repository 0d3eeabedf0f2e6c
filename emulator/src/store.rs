//! In-memory Gmail mailbox: message metadata (bodies are rendered on demand from the seed or
//! kept only for delivered raw messages), labels, history records with a retention floor, and
//! the watch registration. Message ids encode the internal date, so id order is date order.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::error::ApiError;
use crate::generator::{self, GenInfo};
use crate::util::sha256_hex;

/// Where a message's bytes come from.
#[derive(Debug, Clone)]
pub enum Source {
    Generated(GenInfo),
    Stored(Arc<Vec<u8>>),
}

#[derive(Debug, Clone)]
pub struct MsgMeta {
    pub thread_id: u64,
    pub internal_date: i64,
    /// Sorted label ids.
    pub labels: Vec<String>,
    pub history_id: u64,
    pub from: Box<str>,
    pub has_attachment: bool,
    pub source: Source,
}

#[derive(Debug, Clone)]
pub struct LabelDef {
    pub id: String,
    pub name: String,
    pub system: bool,
    pub message_list_visibility: Option<String>,
    pub label_list_visibility: Option<String>,
    pub color: Option<crate::wire::LabelColor>,
}

/// One history change.
#[derive(Debug, Clone)]
pub enum Change {
    Added,
    Deleted,
    Labels {
        added: Vec<String>,
        removed: Vec<String>,
    },
}

#[derive(Debug, Clone)]
pub struct HistoryRecord {
    pub id: u64,
    pub at_ms: i64,
    pub msg_id: u64,
    pub thread_id: u64,
    pub labels_after: Vec<String>,
    pub change: Change,
}

/// The active `users.watch` registration.
#[derive(Debug, Clone)]
pub struct Watch {
    pub topic: String,
    pub label_ids: Vec<String>,
    /// `true` = include listed labels, `false` = exclude them.
    pub include: bool,
    pub expiration_ms: i64,
    pub history_id: u64,
}

/// Label ids present on every mailbox.
pub const SYSTEM_LABELS: &[&str] = &[
    "CHAT",
    "SENT",
    "INBOX",
    "IMPORTANT",
    "TRASH",
    "DRAFT",
    "SPAM",
    "CATEGORY_FORUMS",
    "CATEGORY_UPDATES",
    "CATEGORY_PERSONAL",
    "CATEGORY_PROMOTIONS",
    "CATEGORY_SOCIAL",
    "STARRED",
    "UNREAD",
];

/// Labels a client may not add or remove with `modify` (Gmail answers 400).
pub const IMMUTABLE_LABELS: &[&str] = &["DRAFT", "SENT", "CHAT"];

#[derive(Debug)]
pub struct Mailbox {
    pub email: String,
    pub account_hash: u64,
    pub messages: BTreeMap<u64, MsgMeta>,
    pub labels: BTreeMap<String, LabelDef>,
    pub next_user_label: u64,
    pub history_id: u64,
    pub history: VecDeque<HistoryRecord>,
    /// `startHistoryId` below this answers 404.
    pub history_floor: u64,
    pub rng: ChaCha8Rng,
    pub next_gen_index: u32,
    pub watch: Option<Watch>,
    pub last_notification_ms: i64,
    pub retention_records: usize,
    pub retention_ms: i64,
    id_seq: u64,
    /// The id the next inserted message takes (control API: re-deliver under an old id).
    reuse_id: Option<u64>,
    /// The last `messages.list` total counted without `q`: (filter, history id, message
    /// count, total). Paging a large mailbox then costs one page per request, not a full scan.
    pub list_total: std::sync::Mutex<Option<(String, u64, usize, u32)>>,
}

/// Snapshot of one message (the truth a mirror is compared against).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotMessage {
    pub id: String,
    pub thread_id: String,
    pub label_ids: Vec<String>,
    pub sha256: String,
    pub internal_date: String,
    pub history_id: String,
}

/// Snapshot of a mailbox.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MailboxSnapshot {
    pub email_address: String,
    pub history_id: String,
    pub messages: Vec<SnapshotMessage>,
    pub labels: Vec<(String, String)>,
}

/// Renders (or returns) a message's bytes; callable without holding the mailbox lock.
pub fn render_raw(account_hash: u64, email: &str, source: &Source) -> Arc<Vec<u8>> {
    match source {
        Source::Generated(info) => Arc::new(generator::render(account_hash, email, info)),
        Source::Stored(b) => b.clone(),
    }
}

pub fn fmt_id(id: u64) -> String {
    format!("{id:016x}")
}

/// Parses a 16-hex-digit message/thread id (400 for anything else, as Google's "Invalid id value").
pub fn parse_id(s: &str) -> Result<u64, ApiError> {
    if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::invalid_argument("Invalid id value"));
    }
    u64::from_str_radix(s, 16).map_err(|_| ApiError::invalid_argument("Invalid id value"))
}

impl Mailbox {
    /// Creates a seeded mailbox with `n` generated messages.
    pub fn seeded(
        seed: u64,
        email: &str,
        n: usize,
        anchor_ms: i64,
        span_days: u32,
        retention_records: usize,
        retention_ms: i64,
    ) -> Self {
        let ah = generator::account_hash(seed, email);
        let mut rng = ChaCha8Rng::seed_from_u64(ah);
        let mut labels = BTreeMap::new();
        for l in SYSTEM_LABELS {
            let hidden = l.starts_with("CATEGORY_") || *l == "CHAT";
            labels.insert(
                l.to_string(),
                LabelDef {
                    id: l.to_string(),
                    name: l.to_string(),
                    system: true,
                    message_list_visibility: if hidden { Some("hide".into()) } else { None },
                    label_list_visibility: if hidden {
                        Some("labelHide".into())
                    } else {
                        None
                    },
                    color: None,
                },
            );
        }
        for (id, name) in generator::USER_LABELS {
            labels.insert(
                id.to_string(),
                LabelDef {
                    id: id.to_string(),
                    name: name.to_string(),
                    system: false,
                    message_list_visibility: Some("show".into()),
                    label_list_visibility: Some("labelShow".into()),
                    color: None,
                },
            );
        }
        let mut mb = Mailbox {
            email: email.to_string(),
            account_hash: ah,
            messages: BTreeMap::new(),
            labels,
            next_user_label: 100,
            history_id: 0,
            history: VecDeque::new(),
            history_floor: 0,
            rng: rng.clone(),
            next_gen_index: n as u32,
            watch: None,
            last_notification_ms: i64::MIN,
            retention_records,
            retention_ms,
            id_seq: 0,
            reuse_id: None,
            list_total: std::sync::Mutex::new(None),
        };
        let mut hid: u64 = 1_000 + rng.random_range(0..100_000u64);
        mb.history_floor = hid;
        let plan = generator::plan_messages(ah, email, n, anchor_ms, span_days);
        let mut root_ids: BTreeMap<u32, u64> = BTreeMap::new();
        for p in plan {
            hid += rng.random_range(1..=40u64);
            let id = mb.alloc_id(p.info.internal_date);
            let thread_id = *root_ids.entry(p.info.thread_root).or_insert(id);
            mb.messages.insert(
                id,
                MsgMeta {
                    thread_id,
                    internal_date: p.info.internal_date,
                    labels: p.labels,
                    history_id: hid,
                    from: p.from.into_boxed_str(),
                    has_attachment: p.has_attachment,
                    source: Source::Generated(p.info),
                },
            );
        }
        mb.history_id = hid + rng.random_range(1..=40u64);
        mb.rng = rng;
        mb
    }

    /// Makes the next inserted message take `id` (a test control: Gmail only does this when
    /// a deleted message is restored). Fails with 409 if the id is live.
    pub fn reuse_id_once(&mut self, id: u64) -> Result<(), ApiError> {
        if self.messages.contains_key(&id) {
            return Err(ApiError::new(409, "duplicate", "global", "id is in use"));
        }
        self.reuse_id = Some(id);
        Ok(())
    }

    fn alloc_id(&mut self, internal_date: i64) -> u64 {
        if let Some(id) = self.reuse_id.take()
            && !self.messages.contains_key(&id)
        {
            return id;
        }
        self.id_seq += 1;
        let mut id = ((internal_date.max(0) as u64) << 20) | (self.id_seq & 0xF_FFFF);
        while self.messages.contains_key(&id) {
            id += 1;
        }
        id
    }

    /// Allocates the next history id (random gap of 1..=20).
    pub fn next_history_id(&mut self) -> u64 {
        self.history_id += self.rng.random_range(1..=20u64);
        self.history_id
    }

    fn record(&mut self, now_ms: i64, msg_id: u64, change: Change) -> u64 {
        let id = self.next_history_id();
        let (thread_id, labels_after) = match self.messages.get_mut(&msg_id) {
            Some(m) => {
                m.history_id = id;
                (m.thread_id, m.labels.clone())
            }
            None => (msg_id, Vec::new()),
        };
        self.history.push_back(HistoryRecord {
            id,
            at_ms: now_ms,
            msg_id,
            thread_id,
            labels_after,
            change,
        });
        self.prune(now_ms);
        id
    }

    /// Drops records beyond the retention limits and raises the floor accordingly.
    pub fn prune(&mut self, now_ms: i64) {
        while let Some(front) = self.history.front() {
            if self.history.len() > self.retention_records
                || front.at_ms < now_ms - self.retention_ms
            {
                self.history_floor = self.history_floor.max(front.id);
                self.history.pop_front();
            } else {
                break;
            }
        }
    }

    /// Expires all history: every id up to now is out of the window.
    pub fn expire_history(&mut self) {
        self.history.clear();
        self.history_floor = self.history_id;
    }

    /// Rendered RFC 2822 bytes.
    pub fn raw(&self, m: &MsgMeta) -> Arc<Vec<u8>> {
        render_raw(self.account_hash, &self.email, &m.source)
    }

    pub fn label_exists(&self, id: &str) -> bool {
        self.labels.contains_key(id)
    }

    fn check_labels(&self, ids: &[String]) -> Result<(), ApiError> {
        for l in ids {
            if !self.labels.contains_key(l) {
                return Err(ApiError::bad_request(format!("Invalid label: {l}")));
            }
            if IMMUTABLE_LABELS.contains(&l.as_str()) {
                return Err(ApiError::bad_request(format!("Invalid label: {l}")));
            }
        }
        Ok(())
    }

    /// Inserts a new message; returns (id, history id).
    #[allow(clippy::too_many_arguments)]
    pub fn insert(
        &mut self,
        now_ms: i64,
        internal_date: i64,
        thread_id: Option<u64>,
        mut labels: Vec<String>,
        from: String,
        has_attachment: bool,
        source: Source,
    ) -> Result<(u64, u64), ApiError> {
        for l in &labels {
            if !self.labels.contains_key(l) {
                return Err(ApiError::bad_request(format!("Invalid label: {l}")));
            }
        }
        labels.sort();
        labels.dedup();
        let id = self.alloc_id(internal_date);
        let thread_id = match thread_id {
            Some(t) if self.messages.values().any(|m| m.thread_id == t) => t,
            Some(_) => return Err(ApiError::not_found()),
            None => id,
        };
        self.messages.insert(
            id,
            MsgMeta {
                thread_id,
                internal_date,
                labels,
                history_id: 0,
                from: from.into_boxed_str(),
                has_attachment,
                source,
            },
        );
        let h = self.record(now_ms, id, Change::Added);
        Ok((id, h))
    }

    /// Generates and inserts the next synthetic message (mutation generator / control API).
    pub fn deliver_generated(
        &mut self,
        now_ms: i64,
        labels: Option<Vec<String>>,
    ) -> Result<(u64, u64), ApiError> {
        let index = self.next_gen_index;
        self.next_gen_index += 1;
        let t = generator::traits(self.account_hash, index);
        // Reply to a recent thread now and then.
        let recent: Vec<(u64, u32)> = self
            .messages
            .iter()
            .rev()
            .take(5)
            .filter_map(|(_, m)| match &m.source {
                Source::Generated(g) => Some((m.thread_id, g.thread_root)),
                Source::Stored(_) => None,
            })
            .collect();
        let reply = !recent.is_empty() && self.rng.random_bool(0.3);
        let (thread, root, pos) = if reply {
            let (tid, root) = recent[self.rng.random_range(0..recent.len())];
            let pos = self
                .messages
                .values()
                .filter(|m| m.thread_id == tid)
                .count() as u32;
            (Some(tid), root, pos)
        } else {
            (None, index, 0)
        };
        let info = GenInfo {
            index,
            thread_root: root,
            pos,
            internal_date: now_ms,
        };
        let labels = labels.unwrap_or_else(|| {
            if t.sent {
                vec!["SENT".into()]
            } else {
                vec!["INBOX".into(), "UNREAD".into(), "CATEGORY_PERSONAL".into()]
            }
        });
        let from = generator::from_address(&t, &self.email);
        self.insert(
            now_ms,
            now_ms,
            thread,
            labels,
            from,
            t.variant.has_attachment(),
            Source::Generated(info),
        )
    }

    /// Adds/removes labels; returns the new history id if anything changed.
    pub fn modify(
        &mut self,
        now_ms: i64,
        id: u64,
        add: &[String],
        remove: &[String],
    ) -> Result<Option<u64>, ApiError> {
        self.check_labels(add)?;
        self.check_labels(remove)?;
        self.modify_unchecked(now_ms, id, add, remove)
    }

    fn modify_unchecked(
        &mut self,
        now_ms: i64,
        id: u64,
        add: &[String],
        remove: &[String],
    ) -> Result<Option<u64>, ApiError> {
        let m = self.messages.get_mut(&id).ok_or_else(ApiError::not_found)?;
        let mut set: BTreeSet<String> = m.labels.iter().cloned().collect();
        let mut added = Vec::new();
        let mut removed = Vec::new();
        for l in add {
            if set.insert(l.clone()) {
                added.push(l.clone());
            }
        }
        for l in remove {
            if !add.contains(l) && set.remove(l) {
                removed.push(l.clone());
            }
        }
        if added.is_empty() && removed.is_empty() {
            return Ok(None);
        }
        m.labels = set.into_iter().collect();
        Ok(Some(self.record(
            now_ms,
            id,
            Change::Labels { added, removed },
        )))
    }

    pub fn trash(&mut self, now_ms: i64, id: u64) -> Result<Option<u64>, ApiError> {
        self.modify_unchecked(now_ms, id, &["TRASH".to_string()], &[])
    }

    pub fn untrash(&mut self, now_ms: i64, id: u64) -> Result<Option<u64>, ApiError> {
        self.modify_unchecked(now_ms, id, &[], &["TRASH".to_string()])
    }

    /// Permanently deletes a message.
    pub fn delete(&mut self, now_ms: i64, id: u64) -> Result<u64, ApiError> {
        let m = self.messages.remove(&id).ok_or_else(ApiError::not_found)?;
        let hid = self.next_history_id();
        self.history.push_back(HistoryRecord {
            id: hid,
            at_ms: now_ms,
            msg_id: id,
            thread_id: m.thread_id,
            labels_after: m.labels,
            change: Change::Deleted,
        });
        self.prune(now_ms);
        Ok(hid)
    }

    /// Creates a user label.
    pub fn create_label(
        &mut self,
        name: &str,
        mlv: Option<String>,
        llv: Option<String>,
        color: Option<crate::wire::LabelColor>,
    ) -> Result<LabelDef, ApiError> {
        let trimmed = name.trim();
        if trimmed.is_empty() {
            return Err(ApiError::invalid_argument("Invalid label name"));
        }
        if self
            .labels
            .values()
            .any(|l| l.name.to_lowercase() == trimmed.to_lowercase())
            || SYSTEM_LABELS
                .iter()
                .any(|s| s.eq_ignore_ascii_case(trimmed))
        {
            return Err(ApiError::new(
                409,
                "failedPrecondition",
                "global",
                "Label name exists or conflicts",
            ));
        }
        if self.labels.len() >= 10_000 {
            return Err(ApiError::new(
                400,
                "failedPrecondition",
                "global",
                "Too many labels",
            ));
        }
        self.next_user_label += 1;
        let id = format!("Label_{}", self.next_user_label);
        let def = LabelDef {
            id: id.clone(),
            name: trimmed.to_string(),
            system: false,
            message_list_visibility: Some(mlv.unwrap_or_else(|| "show".into())),
            label_list_visibility: Some(llv.unwrap_or_else(|| "labelShow".into())),
            color,
        };
        self.labels.insert(id, def.clone());
        Ok(def)
    }

    /// Deletes a user label and removes it from every message (recorded as `labelsRemoved`).
    pub fn delete_label(&mut self, now_ms: i64, id: &str) -> Result<(), ApiError> {
        let def = self.labels.get(id).ok_or_else(ApiError::not_found)?;
        if def.system {
            return Err(ApiError::bad_request("Invalid delete request"));
        }
        self.labels.remove(id);
        let ids: Vec<u64> = self
            .messages
            .iter()
            .filter(|(_, m)| m.labels.iter().any(|l| l == id))
            .map(|(k, _)| *k)
            .collect();
        for mid in ids {
            self.modify_unchecked(now_ms, mid, &[], &[id.to_string()])?;
        }
        Ok(())
    }

    /// Truth snapshot: ids, labels, sha256 of the raw bytes, history id.
    pub fn snapshot(&self) -> MailboxSnapshot {
        let messages = self
            .messages
            .iter()
            .rev()
            .map(|(id, m)| SnapshotMessage {
                id: fmt_id(*id),
                thread_id: fmt_id(m.thread_id),
                label_ids: m.labels.clone(),
                sha256: sha256_hex(&self.raw(m)),
                internal_date: m.internal_date.to_string(),
                history_id: m.history_id.to_string(),
            })
            .collect();
        MailboxSnapshot {
            email_address: self.email.clone(),
            history_id: self.history_id.to_string(),
            messages,
            labels: self
                .labels
                .values()
                .map(|l| (l.id.clone(), l.name.clone()))
                .collect(),
        }
    }

    pub fn threads_total(&self) -> usize {
        self.messages
            .values()
            .map(|m| m.thread_id)
            .collect::<BTreeSet<_>>()
            .len()
    }
}
