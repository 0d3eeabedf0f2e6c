//! Domain types shared by the actor tree and the adapters in `src/`: account, message, label and
//! history identifiers, and the plain-data shapes the ports return.
//!
//! These types never carry JSON: adapters translate wire formats into them, so the actor tree
//! cannot depend on any one provider's encoding.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A stable account identifier from the config (`[[accounts]] id = "..."`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AccountId(pub String);

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A provider message id (Gmail's hex id; a synthetic id for the test provider).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MessageId(pub String);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A label id (`INBOX`, `Label_12`, ...).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LabelId(pub String);

impl fmt::Display for LabelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Gmail history id: increasing with gaps (reference gmail-api.md §1.7).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct HistoryId(pub u64);

impl fmt::Display for HistoryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What `users.getProfile` tells us.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// The mailbox address.
    pub email: String,
    /// The mailbox's current history id, read before a full sync starts listing.
    pub history_id: HistoryId,
    /// Google's total message count (informational, used for progress).
    pub messages_total: u64,
}

/// Whether a label is one of Gmail's system labels or the user's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LabelKind {
    /// INBOX, UNREAD, CATEGORY_* and friends.
    System,
    /// Created by the user.
    User,
}

/// One label as the provider reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    /// Stable id.
    pub id: LabelId,
    /// Display name; may change (a rename).
    pub name: String,
    /// System or user label.
    pub kind: LabelKind,
}

/// The filter of a `messages.list` run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListQuery {
    /// Gmail search query (`q`), e.g. `after:2026/01/01`.
    pub q: Option<String>,
    /// Restrict to messages carrying this label (`labelIds`).
    pub label_id: Option<LabelId>,
    /// Include SPAM and TRASH.
    pub include_spam_trash: bool,
    /// Page size (`maxResults`).
    pub page_size: u32,
}

/// One page of `messages.list`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagePage {
    /// Message ids on this page, newest first.
    pub ids: Vec<MessageId>,
    /// Token of the next page; `None` on the last page.
    pub next_page_token: Option<String>,
    /// Google's estimate of the total result count.
    pub result_size_estimate: u64,
}

/// A fully fetched message: raw bytes plus the metadata the mirror keeps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchedMessage {
    /// Message id.
    pub id: MessageId,
    /// Thread id.
    pub thread_id: String,
    /// Current labels.
    pub label_ids: Vec<LabelId>,
    /// The message's history id at fetch time.
    pub history_id: HistoryId,
    /// Internal date, milliseconds since the epoch.
    pub internal_date_ms: i64,
    /// The RFC 5322 bytes (decoded from base64url).
    pub raw: Vec<u8>,
    /// A few decoded headers for change events; filled by the adapter (which parses MIME),
    /// empty when the message's headers could not be parsed.
    pub headers: HeaderSummary,
}

/// The headers a change event carries, decoded (RFC 2047) by the adapter. Never the body.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderSummary {
    /// `Subject`, decoded.
    pub subject: Option<String>,
    /// `From`, decoded.
    pub from: Option<String>,
    /// `Date`, as written.
    pub date: Option<String>,
    /// `Message-ID`.
    pub message_id: Option<String>,
}

/// One change from `history.list`, flattened from Google's record shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HistoryChange {
    /// A message arrived (or was restored); fetch it.
    MessageAdded {
        /// Which message.
        id: MessageId,
        /// Its labels as reported in the record, if any.
        label_ids: Vec<LabelId>,
    },
    /// A message was permanently deleted.
    MessageDeleted {
        /// Which message.
        id: MessageId,
    },
    /// Labels were added to a message.
    LabelsAdded {
        /// Which message.
        id: MessageId,
        /// The labels added.
        label_ids: Vec<LabelId>,
    },
    /// Labels were removed from a message.
    LabelsRemoved {
        /// Which message.
        id: MessageId,
        /// The labels removed.
        label_ids: Vec<LabelId>,
    },
}

/// One page of `history.list`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPage {
    /// Changes in record order.
    pub changes: Vec<HistoryChange>,
    /// Token of the next page; `None` on the last page.
    pub next_page_token: Option<String>,
    /// The mailbox's current history id (the next start once the last page is applied).
    pub history_id: HistoryId,
    /// The history record id of each change, same order as `changes` (empty when the port
    /// does not know them): a fetch older than a change it missed is not applied.
    #[serde(default)]
    pub change_ids: Vec<HistoryId>,
}

/// What `users.watch` answers: the mailbox's history id when the watch started and when the
/// watch expires (reference gmail-api.md §1.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchResponse {
    /// The mailbox's current history id; changes after it are notified.
    pub history_id: HistoryId,
    /// When notifications stop unless the watch is renewed, ms since the epoch.
    pub expiration_ms: i64,
}

/// One answer inside a batched `messages.get`: each part succeeds or fails on its own.
pub type BatchItem = (MessageId, Result<FetchedMessage, crate::error::ApiError>);
