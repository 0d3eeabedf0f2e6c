//! The store's error types: [`StoreError`] (the store, the mailboxes and the feed) and
//! [`TxError`] (what a transaction closure returns).

use std::fmt;
use std::path::PathBuf;

use sled::transaction::UnabortableTransactionError;

/// Errors of the store, the mailboxes and the feed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process (or another `Store` in this process) holds the store.
    #[error(
        "another mailsync daemon is using {dir}: its store is locked (stop it, or give this one another data directory)"
    )]
    Locked {
        /// The store directory.
        dir: PathBuf,
    },
    /// The directory or its lock file could not be created or opened.
    #[error("cannot prepare the store directory {dir}: {source}")]
    Io {
        /// The store directory.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// sled refused to open the database.
    #[error("cannot open the store in {dir}: {source}")]
    Open {
        /// The store directory.
        dir: PathBuf,
        /// sled's error.
        #[source]
        source: sled::Error,
    },
    /// The store was written by a newer mailsync.
    #[error(
        "the store in {dir} has schema version {found}, newer than this build supports ({supported}); upgrade mailsync"
    )]
    SchemaTooNew {
        /// The store directory.
        dir: PathBuf,
        /// Version found on disk.
        found: u32,
        /// Newest version this build knows.
        supported: u32,
    },
    /// A schema migration failed; the store is left at version `from`.
    #[error("migrating the store from schema version {from} to {} failed: {reason}", from + 1)]
    Migration {
        /// Version the failed migration started from.
        from: u32,
        /// What went wrong.
        reason: String,
    },
    /// A sled operation failed.
    #[error("storage error while {context}: {source}")]
    Sled {
        /// What the store was doing.
        context: &'static str,
        /// sled's error.
        #[source]
        source: sled::Error,
    },
    /// A stored key or value could not be decoded.
    #[error("corrupt data in the store ({context}): {reason}")]
    Corrupt {
        /// Which tree/key/value.
        context: String,
        /// Why it does not decode.
        reason: String,
    },
    /// A value could not be encoded (a bug in a `Serialize` impl).
    #[error("cannot encode a value: {0}")]
    Encode(String),
    /// A transaction closure aborted with [`TxError::Abort`]; the reason is passed through
    /// (downcast it to recover a typed error).
    #[error("transaction aborted: {0}")]
    Aborted(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The job is no longer pending (acked, dead-lettered or cleared meanwhile).
    #[error("job {id} is no longer in mailbox {mailbox}")]
    JobNotFound {
        /// The mailbox.
        mailbox: String,
        /// The job's sequence number.
        id: u64,
    },
    /// A store method was called from inside a [`Store::transaction`] closure. sled holds a
    /// process-wide lock for the whole closure, so the call would deadlock; use the
    /// [`StoreTx`] instead, or call it after the transaction.
    #[error("{what} was called inside a store transaction (it would deadlock); use the StoreTx")]
    InsideTransaction {
        /// The offending call.
        what: &'static str,
    },
    /// A feed consumer that was never registered.
    #[error("feed consumer {0:?} is not registered")]
    UnknownConsumer(String),
    /// The data directory's file system is below its free-space floor (or a write failed
    /// with ENOSPC, EDQUOT or a read-only file system); nothing was written.
    #[error("disk full: {reason}")]
    DiskFull {
        /// The data directory.
        path: PathBuf,
        /// What was found.
        reason: String,
    },
    /// The store's files are damaged (see `store::open`): reported instead of opened.
    #[error("the store in {dir} is damaged: {found}")]
    Damaged {
        /// The store directory.
        dir: PathBuf,
        /// What was found.
        found: String,
    },
}

impl StoreError {
    pub(crate) fn sled(context: &'static str) -> impl FnOnce(sled::Error) -> StoreError {
        move |source| StoreError::Sled { context, source }
    }

    pub(crate) fn corrupt(context: impl Into<String>, reason: impl fmt::Display) -> StoreError {
        StoreError::Corrupt {
            context: context.into(),
            reason: reason.to_string(),
        }
    }
}

/// The error type of a [`Store::transaction`] closure.
#[derive(Debug, thiserror::Error)]
pub enum TxError {
    /// Give up: nothing the closure wrote is committed. [`Store::transaction`] returns
    /// [`StoreError::Aborted`] carrying this reason.
    #[error("transaction aborted: {0}")]
    Abort(Box<dyn std::error::Error + Send + Sync>),
    /// A store error inside the transaction (e.g. a corrupt value); aborts, and is returned as is.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A concurrent transaction conflicted; `Store::transaction` retries the closure. Produced
    /// by `?` on sled operations; do not construct or swallow it.
    #[error("transaction conflict (retried)")]
    Conflict,
    /// sled failed; aborts.
    #[error("storage error in a transaction: {0}")]
    Storage(sled::Error),
}

impl TxError {
    /// Aborts the transaction with a reason (a typed error or a message).
    pub fn abort(reason: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        TxError::Abort(reason.into())
    }
}

impl From<UnabortableTransactionError> for TxError {
    fn from(e: UnabortableTransactionError) -> Self {
        match e {
            UnabortableTransactionError::Conflict => TxError::Conflict,
            UnabortableTransactionError::Storage(s) => TxError::Storage(s),
        }
    }
}
