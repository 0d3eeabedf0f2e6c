//! How the mail mirror's stored types are versioned ([`crate::codec::Versioned`]): messages,
//! labels and the `Change` payload of feed events, with their frozen schema-1 shapes.
//!
//! The `v1` shapes below are what mailsync wrote before values carried their own version
//! (bincode, positional). They must never change; the current types in `mirror.rs` and
//! `model.rs` are free to grow `#[serde(default)]` fields.

use crate::codec::{CodecError, Versioned, legacy_bincode};
use crate::mirror::{Change, MirrorMessage};
use crate::model::{HeaderSummary, HistoryId, Label, LabelId, LabelKind, MessageId};

mod v1 {
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub(super) struct HeaderSummary {
        pub subject: Option<String>,
        pub from: Option<String>,
        pub date: Option<String>,
        pub message_id: Option<String>,
    }

    #[derive(Deserialize)]
    pub(super) enum LabelKind {
        System,
        User,
    }

    #[derive(Deserialize)]
    pub(super) struct Label {
        pub id: String,
        pub name: String,
        pub kind: LabelKind,
    }

    #[derive(Deserialize)]
    pub(super) struct MirrorMessage {
        pub id: String,
        pub thread_id: String,
        pub label_ids: Vec<String>,
        pub history_id: u64,
        pub internal_date_ms: i64,
        pub raw_sha256: String,
        pub size: u64,
        pub headers: HeaderSummary,
    }

    #[derive(Deserialize)]
    pub(super) enum Change {
        MessageAdded {
            id: String,
            thread_id: String,
            label_ids: Vec<String>,
            internal_date_ms: i64,
            size: u64,
            raw_sha256: String,
            headers: HeaderSummary,
        },
        MessageDeleted {
            id: String,
        },
        MessageLabelsChanged {
            id: String,
            added: Vec<String>,
            removed: Vec<String>,
            label_ids: Vec<String>,
        },
        LabelCreated {
            label: Label,
        },
        LabelUpdated {
            label: Label,
        },
        LabelDeleted {
            id: String,
        },
        AccountStateChanged {
            state: String,
            reason: Option<String>,
        },
    }
}

fn headers(h: v1::HeaderSummary) -> HeaderSummary {
    HeaderSummary {
        subject: h.subject,
        from: h.from,
        date: h.date,
        message_id: h.message_id,
    }
}

fn label(l: v1::Label) -> Label {
    Label {
        id: LabelId(l.id),
        name: l.name,
        kind: match l.kind {
            v1::LabelKind::System => LabelKind::System,
            v1::LabelKind::User => LabelKind::User,
        },
    }
}

fn labels(v: Vec<String>) -> Vec<LabelId> {
    v.into_iter().map(LabelId).collect()
}

impl Versioned for Label {
    const NAME: &'static str = "label";
    const VERSION: u16 = 1;
    fn from_legacy(body: &[u8]) -> Result<Self, CodecError> {
        Ok(label(legacy_bincode::<Self, v1::Label>(body)?))
    }
}

impl Versioned for MirrorMessage {
    const NAME: &'static str = "mirrored message";
    const VERSION: u16 = 1;
    const COMPRESS: bool = true;
    fn from_legacy(body: &[u8]) -> Result<Self, CodecError> {
        let m: v1::MirrorMessage = legacy_bincode::<Self, _>(body)?;
        Ok(MirrorMessage {
            id: MessageId(m.id),
            thread_id: m.thread_id,
            label_ids: labels(m.label_ids),
            history_id: HistoryId(m.history_id),
            internal_date_ms: m.internal_date_ms,
            raw_sha256: m.raw_sha256,
            size: m.size,
            headers: headers(m.headers),
            body: None,
        })
    }
}

impl Versioned for Change {
    const NAME: &'static str = "change";
    const VERSION: u16 = 1;
    fn from_legacy(body: &[u8]) -> Result<Self, CodecError> {
        Ok(match legacy_bincode::<Self, v1::Change>(body)? {
            v1::Change::MessageAdded {
                id,
                thread_id,
                label_ids,
                internal_date_ms,
                size,
                raw_sha256,
                headers: h,
            } => Change::MessageAdded {
                id: MessageId(id),
                thread_id,
                label_ids: labels(label_ids),
                internal_date_ms,
                size,
                raw_sha256,
                headers: headers(h),
            },
            v1::Change::MessageDeleted { id } => Change::MessageDeleted { id: MessageId(id) },
            v1::Change::MessageLabelsChanged {
                id,
                added,
                removed,
                label_ids,
            } => Change::MessageLabelsChanged {
                id: MessageId(id),
                added: labels(added),
                removed: labels(removed),
                label_ids: labels(label_ids),
            },
            v1::Change::LabelCreated { label: l } => Change::LabelCreated { label: label(l) },
            v1::Change::LabelUpdated { label: l } => Change::LabelUpdated { label: label(l) },
            v1::Change::LabelDeleted { id } => Change::LabelDeleted { id: LabelId(id) },
            v1::Change::AccountStateChanged { state, reason } => {
                Change::AccountStateChanged { state, reason }
            }
        })
    }
}
