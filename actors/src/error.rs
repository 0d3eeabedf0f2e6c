//! Error types of the actor tree: `ApiError` is what a port reports (already classified, so
//! actors decide by variant, never by status code), `SyncError` is what a child returns when
//! its state can no longer be trusted and its parent must restart it.

use std::time::Duration;

/// A classified failure from a provider port. Adapters map HTTP statuses and protocol errors
/// onto these; see `shared/design-notes.md` §6 for who handles which.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApiError {
    /// 429 or a rate-limit 403: wait (`retry_after` if the server said) and slow the account.
    #[error("rate limited by the provider")]
    RateLimited {
        /// The server's Retry-After, if any.
        retry_after: Option<Duration>,
    },
    /// 5xx, connection reset, timeout: retry the job with backoff.
    #[error("transient provider error: {0}")]
    Transient(String),
    /// The object is gone (a message deleted before we fetched it).
    #[error("not found")]
    NotFound,
    /// history.list answered 404: the stored history id is too old; recover the gap.
    #[error("history id is no longer retained by the provider")]
    HistoryExpired,
    /// A listing answered 410 Gone (Calendar `fullSyncRequired` and its relatives): the sync
    /// token is dead; drop it and run a full sync into a fresh generation.
    #[error("sync token expired; a full sync is required")]
    SyncTokenExpired,
    /// The credentials no longer work (`invalid_grant`, revoked consent, or 401 after a
    /// refresh): the account is disconnected until a person acts.
    #[error("account disconnected: {0}")]
    Disconnected(String),
    /// The provider sent something we cannot parse (bad JSON, broken multipart).
    #[error("malformed provider response: {0}")]
    Malformed(String),
    /// A request the provider rejects for good (400, 403 without rate reason).
    #[error("provider rejected the request: {0}")]
    Rejected(String),
    /// The port itself is broken (used by the test provider to make a child fail).
    #[error("provider failure: {0}")]
    Internal(String),
}

impl ApiError {
    /// How long to wait before retrying after this error: the server's Retry-After when it
    /// gave one, else the policy's jittered backoff for `attempt`.
    pub fn retry_delay(&self, policy: &crate::backoff::RetryPolicy, attempt: u32) -> Duration {
        match self {
            ApiError::RateLimited {
                retry_after: Some(d),
            } => *d,
            _ => policy.delay(attempt, &mut rand::rng()),
        }
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ApiError::RateLimited { .. } | ApiError::Transient(_) | ApiError::Malformed(_)
        )
    }
}

/// Why a child actor stopped trusting its own state; its parent restarts it from sled.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The store failed underneath the child.
    #[error("store error: {0}")]
    Store(String),
    /// The port failed in a way the child cannot absorb.
    #[error("provider error: {0}")]
    Api(#[from] ApiError),
    /// The restart budget of a child ran out; the account is marked failed.
    #[error("child {child} failed too often: {last_error}")]
    RestartBudgetExhausted {
        /// Which child.
        child: String,
        /// The last failure seen.
        last_error: String,
    },
}
