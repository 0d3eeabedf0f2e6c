//! `AccountSpec`: everything the actor tree needs to run one account, built by the daemon from
//! the config. The source is already constructed (its port, credentials, quota gate and
//! options attached), so the actors never see config files or secrets.

use crate::backoff::{RestartPolicy, RetryPolicy};
use crate::model::AccountId;
use crate::source::{SourceKind, SyncSource};
use std::sync::Arc;
use std::time::Duration;

pub use crate::jobs::{ChildKind, mailbox_name};

/// How to run one account.
#[derive(Clone)]
pub struct AccountSpec {
    /// Stable id from the config.
    pub id: AccountId,
    /// The account kind.
    pub kind: SourceKind,
    /// The provider-neutral port the children drive.
    pub source: Arc<dyn SyncSource>,
    /// Poll interval for incremental sync when no push arrives.
    pub poll_interval: Duration,
    /// Jobs per Ingest batch.
    pub batch_size: usize,
    /// Retry policy of jobs (nack backoff, dead-letter after max attempts).
    pub retry: RetryPolicy,
    /// Restart policy of the account's children.
    pub restart: RestartPolicy,
    /// Changes whenever the account's config changes (a reload restarts it then).
    pub fingerprint: String,
    /// The account's push channel, kept by the AccountActor (`push_watch.rs`); `None` when
    /// push is not configured for it.
    pub push_watch: Option<Arc<dyn crate::push_watch::PushWatch>>,
}

impl std::fmt::Debug for AccountSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountSpec")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("poll_interval", &self.poll_interval)
            .field("fingerprint", &self.fingerprint)
            .field("push_watch", &self.push_watch.is_some())
            .finish_non_exhaustive()
    }
}

/// What every child of an AccountActor is started with.
pub struct ChildArgs {
    /// The account.
    pub spec: AccountSpec,
    /// The store.
    pub store: crate::store::Store,
    /// The line to the parent: only [`crate::report::ChildReport`]s.
    pub parent: crate::report::Reporter,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
