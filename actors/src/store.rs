//! The sled store: one database per daemon, the trees inside it, value encoding, schema
//! versioning and the one multi-tree transaction every commit point goes through.
//!
//! What lives here:
//! - [`Store`]: opens the database (exclusively: a second opener gets [`StoreError::Locked`]),
//!   checks and migrates the schema version kept in the `meta` tree, and hands out the generic
//!   keyspaces ([`Space`]) and, to `mailbox.rs` and `feed.rs`, their internal trees. The store
//!   knows trees, the codec, transactions and flush; what a job or an event is lives with its
//!   owner (`Store::mailbox` is defined in `mailbox.rs`, `Store::feed` in `feed.rs`), so the
//!   store imports neither.
//! - [`StoreTx`]: the view a [`Store::transaction`] closure gets. Effects, job enqueues/acks and
//!   feed appends made through it commit together or not at all.
//! - [`encode`]/[`decode`]: every stored value carries its own type version
//!   ([`crate::codec`]); older versions are upgraded on read. A value that does not decode is a
//!   [`StoreError::Corrupt`], never a panic.
//!
//! Invariants:
//! - Nothing is durable until [`Store::flush`] / [`Store::flush_async`] returns; callers flush at
//!   their commit points and only then tell anyone (design notes §1).
//! - Keys use big-endian integers so sled's byte order is numeric order.
//! - Internal trees (jobs, delayed, pending keys, dead letters, feed, feed keys, consumers,
//!   counters) are reachable only through the mailbox/feed APIs and [`StoreTx`]; [`Space`] names
//!   the trees other modules may use freely. In [`Space::Meta`] the key `schema_version` is
//!   reserved.
//! - Sequence counters (job seq, feed seq) are read and incremented inside transactions, so they
//!   are strictly increasing in commit order.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sled::transaction::{
    ConflictableTransactionError, TransactionError, Transactional, TransactionalTree,
    UnabortableTransactionError,
};

use crate::codec::{self, Versioned};

/// The schema version this build writes and understands. Version 2: values carry their own
/// type version ([`crate::codec`]); schema-1 values stay readable and are rewritten lazily.
pub const SCHEMA_VERSION: u32 = 2;
/// The key of the schema version in the `meta` tree.
pub const SCHEMA_VERSION_KEY: &[u8] = b"schema_version";
/// Name of the lock file taken in the store directory.
pub const LOCK_FILE: &str = "mailsync.lock";

/// A migration from schema version `n` to `n + 1`. Runs before anything else touches the db.
pub type Migration = fn(&sled::Db) -> Result<(), String>;

/// `MIGRATIONS[i]` upgrades schema version `i + 1` to `i + 2`.
pub const MIGRATIONS: &[Migration] = &[to_v2_per_type_versions];

/// Schema 1 → 2: nothing to rewrite. Each type reads its schema-1 values itself
/// ([`Versioned::from_legacy`]); the bump makes an older build refuse this store with
/// [`StoreError::SchemaTooNew`] instead of misreading tagged values.
fn to_v2_per_type_versions(_db: &sled::Db) -> Result<(), String> {
    Ok(())
}

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
    /// The store's files are damaged (see `store_open`): reported instead of opened.
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

/// Encodes a value for the store in the per-type versioned format of [`crate::codec`].
pub fn encode<T: Versioned>(value: &T) -> Vec<u8> {
    // Encoding into a Vec cannot run out of space; the only failure is a custom Serialize impl
    // returning an error, which no type stored here has.
    match codec::encode(value) {
        Ok(out) => out,
        Err(e) => {
            tracing::error!(error = %e, "Cannot encode a store value.");
            vec![codec::FORMAT_TAGGED]
        }
    }
}

/// Encodes a value, reporting a failing `Serialize` impl as [`StoreError::Encode`].
pub fn try_encode<T: Versioned>(value: &T) -> Result<Vec<u8>, StoreError> {
    codec::encode(value).map_err(|e| StoreError::Encode(e.to_string()))
}

/// Decodes a value written by [`encode`] (or by schema 1), upgrading older versions. A value
/// that does not decode is [`StoreError::Corrupt`].
pub fn decode<T: Versioned>(bytes: &[u8]) -> Result<T, StoreError> {
    decode_in("value", bytes)
}

/// [`decode`] with a description of where the value came from for the error message.
pub(crate) fn decode_in<T: Versioned>(context: &str, bytes: &[u8]) -> Result<T, StoreError> {
    codec::decode(bytes).map_err(|e| StoreError::corrupt(context, e))
}

/// sled's page cache size.
pub const CACHE_CAPACITY_BYTES: u64 = 128 * 1024 * 1024;

/// How a store is opened.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Writing pauses (transactions fail with [`StoreError::DiskFull`]) below this floor.
    pub floor: crate::disk_space::FreeSpaceFloor,
    /// How long sled may take to open before the store is declared damaged.
    pub open_timeout: Duration,
}

impl Default for StoreOptions {
    /// No floor (library users and tests); the daemon passes its configured floor.
    fn default() -> Self {
        StoreOptions {
            floor: crate::disk_space::FreeSpaceFloor::NONE,
            open_timeout: crate::store_open::OPEN_TIMEOUT,
        }
    }
}

/// The generic keyspaces other modules keep their own data in; each is one sled tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Space {
    /// Account records and their status.
    Accounts,
    /// Sync cursors (historyId, page tokens, sync tokens, UIDVALIDITY/UIDNEXT).
    Cursors,
    /// Mirrored messages.
    Messages,
    /// Labels / folders.
    Labels,
    /// Message → labels index.
    MessageLabels,
    /// Store-wide metadata; the key `schema_version` is reserved.
    Meta,
    /// Sink state (e.g. maildir bookkeeping).
    Sinks,
    /// Mirrored calendar data.
    Calendar,
    /// IMAP-specific state.
    Imap,
    /// Raw bodies kept for debugging inputs that failed to parse.
    Raw,
}

impl Space {
    /// Every space, in tree order.
    pub const ALL: [Space; 10] = [
        Space::Accounts,
        Space::Cursors,
        Space::Messages,
        Space::Labels,
        Space::MessageLabels,
        Space::Meta,
        Space::Sinks,
        Space::Calendar,
        Space::Imap,
        Space::Raw,
    ];

    /// The sled tree name.
    pub fn tree_name(self) -> &'static str {
        match self {
            Space::Accounts => "accounts",
            Space::Cursors => "cursors",
            Space::Messages => "messages",
            Space::Labels => "labels",
            Space::MessageLabels => "message_labels",
            Space::Meta => "meta",
            Space::Sinks => "sinks",
            Space::Calendar => "calendar",
            Space::Imap => "imap",
            Space::Raw => "raw",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Trees owned by the mailbox and feed modules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Internal {
    /// `mailbox prefix ++ (255 - priority) ++ seq:be` → job record (ready jobs).
    Jobs,
    /// `mailbox prefix ++ not_before_ms:be ++ seq:be` → job record (jobs waiting for a retry).
    Delayed,
    /// `mailbox prefix ++ idempotency key` → [`crate::mailbox`] pending ref.
    PendingKeys,
    /// `mailbox prefix ++ seq:be` → job record with its last error.
    Dead,
    /// `seq:be` → feed event.
    Feed,
    /// `idempotency key` → seq.
    FeedKeys,
    /// `consumer name` → acked seq.
    Consumers,
    /// `counter name` → u64.
    Counters,
}

impl Internal {
    const ALL: [Internal; 8] = [
        Internal::Jobs,
        Internal::Delayed,
        Internal::PendingKeys,
        Internal::Dead,
        Internal::Feed,
        Internal::FeedKeys,
        Internal::Consumers,
        Internal::Counters,
    ];

    fn tree_name(self) -> &'static str {
        match self {
            Internal::Jobs => "jobs",
            Internal::Delayed => "jobs_delayed",
            Internal::PendingKeys => "pending_keys",
            Internal::Dead => "dead",
            Internal::Feed => "feed",
            Internal::FeedKeys => "feed_keys",
            Internal::Consumers => "consumers",
            Internal::Counters => "counters",
        }
    }

    fn index(self) -> usize {
        Space::ALL.len() + self as usize
    }
}

/// Counter of job sequence numbers (in [`Internal::Counters`]).
pub(crate) const JOB_SEQ: &[u8] = b"job_seq";
/// Counter of feed sequence numbers (in [`Internal::Counters`]).
pub(crate) const FEED_SEQ: &[u8] = b"feed_seq";

/// The in-memory lease set of one durable mailbox (job sequence numbers).
pub(crate) type LeaseSet = Arc<Mutex<HashSet<u64>>>;

struct Inner {
    // Field order is drop order: the database closes before the lock file is released.
    db: sled::Db,
    trees: Vec<sled::Tree>,
    dir: PathBuf,
    leases: Mutex<HashMap<String, LeaseSet>>,
    /// Highest feed seq committed by a transaction of this process (or found at open).
    committed_feed_seq: AtomicU64,
    /// Highest feed seq known durable; what subscribers see.
    durable_feed: tokio::sync::watch::Sender<u64>,
    /// The free-space floor every transaction checks first.
    space: crate::disk_space::DiskSpace,
    /// Transactions hold it shared; a backup holds it exclusively (`store_backup`).
    gate: std::sync::RwLock<()>,
    /// Writes the seal once sled's handles above are gone (`store_open`).
    _seal: crate::store_open::SealOnClose,
    _lock: File,
}

/// The daemon's sled store. Cheap to clone (an `Arc` inside); the database closes, and its
/// lock is released, when the last clone (including mailboxes and feeds) is dropped.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens or creates the store in `dir`: takes the directory's lock (a second opener, in this
    /// process or another, gets [`StoreError::Locked`] after waiting up to 1 s for the holder to
    /// go away), opens sled, checks the schema version
    /// and runs the migrations up to [`SCHEMA_VERSION`].
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Self::open_with(dir, MIGRATIONS, &StoreOptions::default())
    }

    /// [`Store::open`] with options (the daemon's free-space floor).
    pub fn open_opts(dir: &Path, opts: &StoreOptions) -> Result<Store, StoreError> {
        Self::open_with(dir, MIGRATIONS, opts)
    }

    /// [`Store::open`] with an explicit migration table (tests).
    pub(crate) fn open_with(
        dir: &Path,
        migrations: &[Migration],
        opts: &StoreOptions,
    ) -> Result<Store, StoreError> {
        let io = |source| StoreError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let lock = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))
            .map_err(io)?;
        lock_dir(&lock, dir)?;
        let space = crate::disk_space::DiskSpace::new(dir.to_path_buf(), opts.floor);
        // A start on a full disk is refused before sled writes anything (it would leave an
        // unfinished snapshot behind).
        space.check().map_err(|reason| StoreError::DiskFull {
            path: dir.to_path_buf(),
            reason,
        })?;
        crate::store_open::remove_unfinished_snapshots(dir).map_err(io)?;
        crate::store_open::verify_seal(dir).map_err(|found| StoreError::Damaged {
            dir: dir.to_path_buf(),
            found,
        })?;
        crate::store_open::remove_seal(dir).map_err(io)?;
        let db = crate::store_open::open_sled_contained(dir, opts.open_timeout)?;
        // sled reports some damage only when the first reads reach it.
        let (trees, feed_seq) = open_trees(&db, dir, migrations)
            .map_err(|e| crate::store_open::damage_at_open(dir, e))?;
        let (durable_feed, _) = tokio::sync::watch::channel(feed_seq);
        Ok(Store {
            inner: Arc::new(Inner {
                db,
                trees,
                dir: dir.to_path_buf(),
                leases: Mutex::new(HashMap::new()),
                committed_feed_seq: AtomicU64::new(feed_seq),
                durable_feed,
                space,
                gate: std::sync::RwLock::new(()),
                _seal: crate::store_open::SealOnClose {
                    dir: dir.to_path_buf(),
                },
                _lock: lock,
            }),
        })
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Makes everything committed so far durable (sled flush), then tells feed subscribers.
    pub fn flush(&self) -> Result<(), StoreError> {
        not_in_tx("Store::flush")?;
        let committed = self.inner.committed_feed_seq.load(Ordering::Acquire);
        self.inner
            .db
            .flush()
            .map_err(|e| self.storage_error("flushing", e))?;
        self.publish_durable(committed);
        Ok(())
    }

    /// [`Store::flush`] without blocking the runtime thread.
    pub async fn flush_async(&self) -> Result<(), StoreError> {
        not_in_tx("Store::flush_async")?;
        let committed = self.inner.committed_feed_seq.load(Ordering::Acquire);
        self.inner
            .db
            .flush_async()
            .await
            .map_err(|e| self.storage_error("flushing", e))?;
        self.publish_durable(committed);
        Ok(())
    }

    /// A sled error as a store error; running out of space becomes [`StoreError::DiskFull`]
    /// (and pauses writers like the floor does).
    fn storage_error(&self, context: &'static str, source: sled::Error) -> StoreError {
        if crate::store_open::sled_out_of_space(&source) {
            let reason = format!("{}: {source}", self.inner.dir.display());
            self.inner.space.mark_fatal(reason.clone());
            return StoreError::DiskFull {
                path: self.inner.dir.clone(),
                reason,
            };
        }
        StoreError::Sled { context, source }
    }

    /// Why writing is paused for lack of space, while it is (`degraded (disk full: …)`).
    pub fn disk_full(&self) -> Option<String> {
        self.inner.space.full_reason()
    }

    /// Resolves when sled itself failed to write for lack of space: the open database keeps
    /// that error, so the daemon exits (status 4) and the next start recovers from the log.
    pub async fn wait_out_of_space(&self) -> String {
        self.inner.space.wait_fatal().await
    }

    /// Checks the free-space floor now (true: writing may go on).
    pub fn check_space(&self) -> bool {
        self.inner.space.check().is_ok()
    }

    pub(crate) fn db(&self) -> &sled::Db {
        &self.inner.db
    }

    pub(crate) fn gate(&self) -> &std::sync::RwLock<()> {
        &self.inner.gate
    }

    fn publish_durable(&self, seq: u64) {
        self.inner.durable_feed.send_if_modified(|cur| {
            if seq > *cur {
                *cur = seq;
                true
            } else {
                false
            }
        });
    }

    /// The in-memory lease set shared by every handle of the durable mailbox `name`
    /// (`mailbox.rs` builds the mailbox; the store only keeps the registry).
    pub(crate) fn lease_set(&self, name: &str) -> LeaseSet {
        let mut reg = self
            .inner
            .leases
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        reg.entry(name.to_owned()).or_default().clone()
    }

    /// The tree of a generic keyspace.
    pub fn kv(&self, space: Space) -> &sled::Tree {
        &self.inner.trees[space.index()]
    }

    pub(crate) fn internal(&self, tree: Internal) -> &sled::Tree {
        &self.inner.trees[tree.index()]
    }

    pub(crate) fn durable_feed(&self) -> &tokio::sync::watch::Sender<u64> {
        &self.inner.durable_feed
    }

    /// Runs `f` as one atomic, serializable sled transaction over every tree and returns its
    /// value. sled may run `f` several times (on conflicts), so it must be idempotent and must
    /// not have side effects outside the [`StoreTx`]. Nothing is durable until the next flush.
    ///
    /// sled serialises transactions with a process-wide lock held while `f` runs: keep `f`
    /// short and synchronous, and do not call other store methods (mailbox, feed, `kv()`,
    /// flush, a nested transaction) from it; they would deadlock. The methods of this crate
    /// detect that and return [`StoreError::InsideTransaction`] instead; raw `kv()` trees
    /// cannot.
    pub fn transaction<T>(
        &self,
        f: impl Fn(&mut StoreTx<'_>) -> Result<T, TxError>,
    ) -> Result<T, StoreError> {
        not_in_tx("Store::transaction")?;
        // Below the floor nothing is written at all: the caller waits and retries.
        self.inner
            .space
            .check()
            .map_err(|reason| StoreError::DiskFull {
                path: self.inner.dir.clone(),
                reason,
            })?;
        // A running backup holds the gate: it sees the state between two transactions.
        let _gate = self
            .inner
            .gate
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let appended = Cell::new(None::<u64>);
        let trees: &[sled::Tree] = &self.inner.trees;
        let result = trees.transaction(|view: &Vec<TransactionalTree>| {
            let mut tx = StoreTx {
                trees: view,
                appended: Cell::new(None),
            };
            let mark = TxMark::enter();
            let result = f(&mut tx);
            drop(mark);
            match result {
                Ok(v) => {
                    appended.set(tx.appended.get());
                    Ok(v)
                }
                Err(TxError::Conflict) => Err(ConflictableTransactionError::Conflict),
                Err(TxError::Storage(e)) => Err(ConflictableTransactionError::Storage(e)),
                Err(other) => Err(ConflictableTransactionError::Abort(other)),
            }
        });
        match result {
            Ok(v) => {
                if let Some(seq) = appended.get() {
                    self.inner
                        .committed_feed_seq
                        .fetch_max(seq, Ordering::AcqRel);
                }
                Ok(v)
            }
            Err(TransactionError::Abort(TxError::Abort(reason))) => {
                Err(StoreError::Aborted(reason))
            }
            Err(TransactionError::Abort(TxError::Store(e))) => Err(e),
            Err(TransactionError::Abort(TxError::Storage(source))) => {
                Err(self.storage_error("running a transaction", source))
            }
            Err(TransactionError::Abort(TxError::Conflict)) => {
                unreachable!("conflicts are retried, never aborted")
            }
            Err(TransactionError::Storage(source)) => {
                Err(self.storage_error("committing a transaction", source))
            }
        }
    }
}

/// How long [`Store::open`] waits for the directory lock before reporting
/// [`StoreError::Locked`]. Short: it only bridges a holder that is on its way out (a previous
/// daemon still exiting, or a child process spawned concurrently that briefly inherited the
/// lock descriptor between fork and exec).
const DIR_LOCK_WAIT: Duration = Duration::from_secs(1);

/// Takes the store directory's lock for an offline tool (restore, rebuild, check): the same
/// lock a running daemon holds, released when the returned file is dropped.
pub fn lock_store_dir(dir: &Path) -> Result<File, StoreError> {
    let lock = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(LOCK_FILE))
        .map_err(|source| StoreError::Io {
            dir: dir.to_path_buf(),
            source,
        })?;
    lock_dir(&lock, dir)?;
    Ok(lock)
}

/// Takes the exclusive lock on `dir/mailsync.lock` (flock: conflicts across processes and
/// between two opens in one process; the kernel drops it when the holder dies, even by kill -9).
fn lock_dir(lock: &File, dir: &Path) -> Result<(), StoreError> {
    let deadline = Instant::now() + DIR_LOCK_WAIT;
    loop {
        match lock.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    dir: dir.to_path_buf(),
                });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(StoreError::Io {
                    dir: dir.to_path_buf(),
                    source,
                });
            }
        }
    }
}

thread_local! {
    /// Whether this thread is running a [`Store::transaction`] closure.
    static IN_TX: Cell<bool> = const { Cell::new(false) };
}

/// Fails with [`StoreError::InsideTransaction`] when called from a transaction closure, where
/// any non-transactional sled call would deadlock on sled's process-wide lock.
pub(crate) fn not_in_tx(what: &'static str) -> Result<(), StoreError> {
    if IN_TX.with(Cell::get) {
        Err(StoreError::InsideTransaction { what })
    } else {
        Ok(())
    }
}

/// Marks the current thread as inside a transaction closure until dropped (also on panic).
struct TxMark;

impl TxMark {
    fn enter() -> TxMark {
        IN_TX.with(|f| f.set(true));
        TxMark
    }
}

impl Drop for TxMark {
    fn drop(&mut self) {
        IN_TX.with(|f| f.set(false));
    }
}

/// Runs the migrations, opens every tree and reads the feed counter of a freshly opened db.
fn open_trees(
    db: &sled::Db,
    dir: &Path,
    migrations: &[Migration],
) -> Result<(Vec<sled::Tree>, u64), StoreError> {
    migrate(db, dir, migrations)?;
    let mut trees = Vec::with_capacity(Space::ALL.len() + Internal::ALL.len());
    for name in Space::ALL
        .iter()
        .map(|s| s.tree_name())
        .chain(Internal::ALL.iter().map(|t| t.tree_name()))
    {
        trees.push(
            db.open_tree(name)
                .map_err(StoreError::sled("opening a tree"))?,
        );
    }
    let feed_seq = read_counter(&trees[Internal::Counters.index()], FEED_SEQ)?;
    Ok((trees, feed_seq))
}

/// Reads a u64 counter outside a transaction (0 when absent).
fn read_counter(tree: &sled::Tree, name: &[u8]) -> Result<u64, StoreError> {
    match tree
        .get(name)
        .map_err(StoreError::sled("reading a counter"))?
    {
        Some(v) => decode_in(&format!("counter {}", String::from_utf8_lossy(name)), &v),
        None => Ok(0),
    }
}

/// Checks the schema version and runs `migrations` up to the current version.
fn migrate(db: &sled::Db, dir: &Path, migrations: &[Migration]) -> Result<(), StoreError> {
    let current = u32::try_from(migrations.len() + 1).unwrap_or(u32::MAX);
    let meta = db
        .open_tree(Space::Meta.tree_name())
        .map_err(StoreError::sled("opening the meta tree"))?;
    let found: u32 = match meta
        .get(SCHEMA_VERSION_KEY)
        .map_err(StoreError::sled("reading the schema version"))?
    {
        Some(v) => decode_in("meta/schema_version", &v)?,
        None => {
            // A fresh store: stamp it with the current version.
            meta.insert(SCHEMA_VERSION_KEY, encode(&current))
                .map_err(StoreError::sled("writing the schema version"))?;
            db.flush().map_err(StoreError::sled("flushing"))?;
            return Ok(());
        }
    };
    if found > current {
        return Err(StoreError::SchemaTooNew {
            dir: dir.to_path_buf(),
            found,
            supported: current,
        });
    }
    if found == 0 {
        return Err(StoreError::corrupt("meta/schema_version", "version 0"));
    }
    for version in found..current {
        tracing::info!(
            from = version,
            to = version + 1,
            "Migrating the store schema."
        );
        let step = migrations[(version - 1) as usize];
        step(db).map_err(|reason| StoreError::Migration {
            from: version,
            reason,
        })?;
        meta.insert(SCHEMA_VERSION_KEY, encode(&(version + 1)))
            .map_err(StoreError::sled("writing the schema version"))?;
        db.flush().map_err(StoreError::sled("flushing"))?;
    }
    Ok(())
}

/// The view a [`Store::transaction`] closure works through. Everything done through one
/// `StoreTx` commits atomically.
pub struct StoreTx<'a> {
    trees: &'a [TransactionalTree],
    appended: Cell<Option<u64>>,
}

impl StoreTx<'_> {
    pub(crate) fn tree(&self, tree: Internal) -> &TransactionalTree {
        &self.trees[tree.index()]
    }

    fn space(&self, space: Space) -> &TransactionalTree {
        &self.trees[space.index()]
    }

    /// Reads a key of a generic keyspace (sees this transaction's own writes).
    pub fn get(&self, space: Space, key: &[u8]) -> Result<Option<sled::IVec>, TxError> {
        Ok(self.space(space).get(key)?)
    }

    /// Writes a key of a generic keyspace.
    pub fn insert(&self, space: Space, key: &[u8], value: &[u8]) -> Result<(), TxError> {
        self.space(space).insert(key, value)?;
        Ok(())
    }

    /// Removes a key of a generic keyspace.
    pub fn remove(&self, space: Space, key: &[u8]) -> Result<(), TxError> {
        self.space(space).remove(key)?;
        Ok(())
    }

    /// Records that this transaction appended sequence number `seq` to an ordered log (the
    /// feed): once the transaction commits, [`Store::flush`] publishes it as durable.
    pub(crate) fn note_appended(&self, seq: u64) {
        self.appended
            .set(Some(self.appended.get().map_or(seq, |s| s.max(seq))));
    }

    /// Reads, increments and writes a counter; returns the new value (the first is 1).
    pub(crate) fn next_counter(&self, name: &[u8]) -> Result<u64, TxError> {
        let tree = self.tree(Internal::Counters);
        let cur: u64 = match tree.get(name)? {
            Some(v) => decode_in(&format!("counter {}", String::from_utf8_lossy(name)), &v)?,
            None => 0,
        };
        let next = cur
            .checked_add(1)
            .ok_or_else(|| StoreError::corrupt("counter", "overflow"))?;
        tree.insert(name, encode(&next))?;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::Priority;

    #[test]
    fn encode_decode_roundtrip_and_corrupt_values_are_errors() {
        let v = "x".to_string();
        let bytes = encode(&v);
        assert_eq!(bytes[0], codec::FORMAT_TAGGED);
        let back: String = decode(&bytes).unwrap();
        assert_eq!(back, v);
        assert!(matches!(
            decode::<u64>(&[]),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            decode::<u64>(&[9, 1]),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            decode::<String>(&bytes[..3]),
            Err(StoreError::Corrupt { .. })
        ));
        let mut trailing = encode(&1u64);
        trailing.push(0);
        assert!(matches!(
            decode::<u64>(&trailing),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn open_same_dir_twice_in_process_is_locked_with_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("another mailsync daemon is using")
                && msg.contains(&*dir.path().to_string_lossy()),
            "{msg}"
        );
        drop(store);
        Store::open(dir.path()).expect("the lock is released with the last handle");
    }

    #[test]
    fn open_writes_schema_version_and_rejects_newer() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let v: u32 = decode(
            &store
                .kv(Space::Meta)
                .get(SCHEMA_VERSION_KEY)
                .unwrap()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        store
            .kv(Space::Meta)
            .insert(SCHEMA_VERSION_KEY, encode(&(SCHEMA_VERSION + 1)))
            .unwrap();
        store.flush().unwrap();
        drop(store);
        let err = Store::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found, .. } if found == SCHEMA_VERSION + 1),
            "{err:?}"
        );
    }

    #[test]
    fn open_runs_migrations_in_order() {
        fn to_v2(db: &sled::Db) -> Result<(), String> {
            db.insert(b"m", b"2".to_vec()).map_err(|e| e.to_string())?;
            Ok(())
        }
        fn to_v3(db: &sled::Db) -> Result<(), String> {
            let prev = db.get(b"m").map_err(|e| e.to_string())?;
            if prev.as_deref() != Some(b"2") {
                return Err("v2 migration did not run first".into());
            }
            db.insert(b"m", b"3".to_vec()).map_err(|e| e.to_string())?;
            Ok(())
        }
        fn broken(_: &sled::Db) -> Result<(), String> {
            Err("boom".into())
        }
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open_with(dir.path(), &[], &StoreOptions::default()).unwrap()); // v1
        let store =
            Store::open_with(dir.path(), &[to_v2, to_v3], &StoreOptions::default()).unwrap();
        let v: u32 = decode(
            &store
                .kv(Space::Meta)
                .get(SCHEMA_VERSION_KEY)
                .unwrap()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(v, 3);
        assert_eq!(
            store.inner.db.get(b"m").unwrap().as_deref(),
            Some(&b"3"[..])
        );
        drop(store);
        let err = Store::open_with(
            dir.path(),
            &[to_v2, to_v3, broken],
            &StoreOptions::default(),
        )
        .unwrap_err();
        assert!(
            matches!(err, StoreError::Migration { from: 3, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn store_calls_inside_a_transaction_fail_instead_of_deadlocking() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mb = store.mailbox("m");
        let feed = store.feed();
        let err = store
            .transaction(|_| {
                mb.depth()?;
                Ok(())
            })
            .unwrap_err();
        assert!(
            matches!(err, StoreError::InsideTransaction { .. }),
            "{err:?}"
        );
        let err = store
            .transaction(|_| store.transaction(|_| Ok(())).map_err(TxError::from))
            .unwrap_err();
        assert!(
            matches!(err, StoreError::InsideTransaction { .. }),
            "{err:?}"
        );
        let err = store
            .transaction(|_| {
                feed.read_after(0, 1)?;
                Ok(())
            })
            .unwrap_err();
        assert!(
            matches!(err, StoreError::InsideTransaction { .. }),
            "{err:?}"
        );
        // The mark is gone afterwards.
        mb.enqueue(Priority::Normal, "k", b"").unwrap();
        assert_eq!(mb.lease(1, 0).unwrap().len(), 1);
    }

    #[test]
    fn transaction_abort_commits_nothing_and_carries_reason() {
        #[derive(Debug, thiserror::Error)]
        #[error("nope")]
        struct Nope;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let err = store
            .transaction(|tx| {
                tx.insert(Space::Cursors, b"c", b"1")?;
                Err::<(), _>(TxError::abort(Nope))
            })
            .unwrap_err();
        match err {
            StoreError::Aborted(reason) => assert!(reason.downcast_ref::<Nope>().is_some()),
            other => panic!("{other:?}"),
        }
        assert!(store.kv(Space::Cursors).get(b"c").unwrap().is_none());
        let got = store
            .transaction(|tx| {
                tx.insert(Space::Cursors, b"c", b"1")?;
                tx.get(Space::Cursors, b"c")
            })
            .unwrap();
        assert_eq!(got.as_deref(), Some(&b"1"[..]));
    }
}
