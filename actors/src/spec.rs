//! `AccountSpec`: everything the actor tree needs to run one account, built by the daemon from
//! the config. The port is already constructed (credentials resolved, quota gate attached), so
//! the actors never see config files or secrets.

use crate::backoff::{RestartPolicy, RetryPolicy};
use crate::model::AccountId;
use crate::ports::GmailApi;
use std::sync::Arc;
use std::time::Duration;

/// How to run one account.
#[derive(Clone)]
pub struct AccountSpec {
    /// Stable id from the config.
    pub id: AccountId,
    /// `gmail` or `test` (the kinds that speak the Gmail port).
    pub kind: String,
    /// The provider port, shared by the account's children.
    pub api: Arc<dyn GmailApi>,
    /// Poll interval for partial sync when no push arrives.
    pub poll_interval: Duration,
    /// The full-sync `q` (None = all mail).
    pub initial_query: Option<String>,
    /// Messages per batched get.
    pub batch_size: usize,
    /// Ids per messages.list page.
    pub list_page_size: u32,
    /// Retry policy of jobs (nack backoff, dead-letter after max attempts).
    pub retry: RetryPolicy,
    /// Restart policy of the account's children.
    pub restart: RestartPolicy,
    /// Changes whenever the account's config changes (a reload restarts it then).
    pub fingerprint: String,
}

impl std::fmt::Debug for AccountSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountSpec")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("poll_interval", &self.poll_interval)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// What every child of an AccountActor is started with.
pub struct ChildArgs {
    /// The account.
    pub spec: AccountSpec,
    /// The store.
    pub store: crate::store::Store,
    /// The parent, told about progress, phases, idleness and disconnection.
    pub parent: ractor::ActorRef<crate::account::AccountMsg>,
}

/// Which child of an AccountActor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChildKind {
    /// Partial sync.
    HistorySync,
    /// Full sync and gap recovery.
    Backfill,
    /// Fetch and store messages.
    Ingest,
}

impl ChildKind {
    /// Every child, in spawn order.
    pub const ALL: [ChildKind; 3] = [
        ChildKind::Ingest,
        ChildKind::Backfill,
        ChildKind::HistorySync,
    ];

    /// Short name used in mailbox names and logs.
    pub fn name(self) -> &'static str {
        match self {
            ChildKind::HistorySync => "history_sync",
            ChildKind::Backfill => "backfill",
            ChildKind::Ingest => "ingest",
        }
    }
}

/// The durable mailbox name of an account's child.
pub fn mailbox_name(account: &AccountId, child: ChildKind) -> String {
    format!("{}/{}", account.0, child.name())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
