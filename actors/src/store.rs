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
use std::time::Duration;

use sled::transaction::{
    ConflictableTransactionError, TransactionError, Transactional, TransactionalTree,
};

use crate::codec::{self, Versioned};

pub mod open;

/// Name of the lock file taken in the store directory.
pub const LOCK_FILE: &str = "mailsync.lock";

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

/// sled's page cache size unless the options say otherwise (`[store] cache_mb`). sled's
/// accounting leaves out much of what a cached node costs: every MiB here measured about
/// 1.4 MiB of resident memory once the mirror outgrew it (docs/BENCHMARKS.md, fifteenth
/// session), while reads beyond it come from the OS page cache: no CPU cost beyond the
/// runs' spread at 100k and 300k messages, perhaps up to a tenth more at 1M.
pub const CACHE_CAPACITY_BYTES: u64 = 8 * 1024 * 1024;

/// How a store is opened.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Writing pauses (transactions fail with [`StoreError::DiskFull`]) below this floor.
    pub floor: crate::disk_space::FreeSpaceFloor,
    /// How long sled may take to open before the store is declared damaged.
    pub open_timeout: Duration,
    /// sled's page cache in bytes: the largest part of the daemon's memory once the mirror
    /// outgrows it (the OS page cache still holds hot data beyond it).
    pub cache_capacity_bytes: u64,
}

impl Default for StoreOptions {
    /// No floor (library users and tests); the daemon passes its configured floor.
    fn default() -> Self {
        StoreOptions {
            floor: crate::disk_space::FreeSpaceFloor::NONE,
            open_timeout: open::OPEN_TIMEOUT,
            cache_capacity_bytes: CACHE_CAPACITY_BYTES,
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
    /// Message bodies written before bodies moved out of sled (schema ≤ 2), inline; still
    /// read, never written (new bodies go to [`Space::Bodies`]).
    Raw,
    /// Where a message body lives in the body files (`store::bodies`): key → [`BodyRef`].
    /// Since schema 6 the mirror keeps the ref in the message's record instead; this tree
    /// holds the refs of records written before, and `StoreTx::put_body`'s.
    Bodies,
}

impl Space {
    /// Every space, in tree order.
    pub const ALL: [Space; 11] = [
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
        Space::Bodies,
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
            Space::Bodies => "bodies",
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
    /// `first seq:be` → a page of feed events (`store::feed_pages`).
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
            Internal::Feed => "feed_pages",
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
    /// Shares one blocking flush among concurrent [`Store::flush_async`] callers.
    group_flush: group_flush::GroupFlush,
    /// The message body segment files (outside sled).
    bodies: bodies::BodyFiles,
    /// Jobs per durable mailbox, counted at open and kept by every commit.
    queue_counts: queue_counts::QueueCounts,
    /// Writes the seal once sled's handles above are gone (`store::open`).
    _seal: open::SealOnClose,
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
        open::remove_unfinished_snapshots(dir).map_err(io)?;
        open::verify_seal(dir).map_err(|found| StoreError::Damaged {
            dir: dir.to_path_buf(),
            found,
        })?;
        open::remove_seal(dir).map_err(io)?;
        let db = open::open_sled_contained(dir, opts.open_timeout, opts.cache_capacity_bytes)?;
        // sled reports some damage only when the first reads reach it.
        let (trees, feed_seq) =
            open_trees(&db, dir, migrations).map_err(|e| open::damage_at_open(dir, e))?;
        let (durable_feed, _) = tokio::sync::watch::channel(feed_seq);
        let queue_counts =
            queue_counts::QueueCounts::count(&trees).map_err(|e| open::damage_at_open(dir, e))?;
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
                group_flush: group_flush::GroupFlush::default(),
                bodies: bodies::BodyFiles::new(dir),
                queue_counts,
                _seal: open::SealOnClose {
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

    /// [`Store::flush`] without blocking the runtime thread: the flush runs on tokio's
    /// blocking pool, and callers arriving while one runs share the next (`store/group_flush.rs`;
    /// not sled's own `flush_async`, whose small pool deadlocks under many concurrent callers).
    pub async fn flush_async(&self) -> Result<(), StoreError> {
        not_in_tx("Store::flush_async")?;
        let store = self.clone();
        self.inner.group_flush.flush(move || store.flush()).await
    }

    /// A sled error as a store error; running out of space becomes [`StoreError::DiskFull`]
    /// (and pauses writers like the floor does).
    fn storage_error(&self, context: &'static str, source: sled::Error) -> StoreError {
        if open::sled_out_of_space(&source) {
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

    /// The job counters of the durable mailbox whose keys start with `prefix`.
    pub(crate) fn queue_counts(&self, prefix: &[u8]) -> queue_counts::MailboxCounts {
        self.inner.queue_counts.get(prefix)
    }

    /// The tree of a generic keyspace.
    pub fn kv(&self, space: Space) -> &sled::Tree {
        &self.inner.trees[space.index()]
    }

    /// The body of the message stored under `key` (in [`Space::Bodies`] → the body files, or
    /// inline in [`Space::Raw`] for stores written before schema 3).
    pub fn body(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        not_in_tx("Store::body")?;
        if let Some(v) = self
            .kv(Space::Bodies)
            .get(key)
            .map_err(StoreError::sled("reading a body ref"))?
        {
            let at: BodyRef = decode_in("bodies", &v)?;
            return self.read_body(&at).map(Some);
        }
        Ok(self
            .kv(Space::Raw)
            .get(key)
            .map_err(StoreError::sled("reading a raw message"))?
            .map(|v| v.to_vec()))
    }

    /// Reads the body at `at` from the body files.
    pub(crate) fn read_body(&self, at: &BodyRef) -> Result<Vec<u8>, StoreError> {
        self.inner.bodies.read(at).map_err(|e| match e {
            bodies::BodyError::Io { source, .. } => StoreError::Io {
                dir: self.inner.bodies.dir().to_path_buf(),
                source,
            },
            damaged @ bodies::BodyError::Damaged { .. } => StoreError::corrupt("bodies", damaged),
        })
    }

    /// Bytes the body files take on disk (live and dead).
    pub fn body_disk_bytes(&self) -> std::io::Result<u64> {
        self.inner.bodies.disk_bytes()
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
        // Rises of the job counters are added before the commit, falls after (queue_counts.rs).
        let raised = queue_counts::TxCounts::default();
        let falls = queue_counts::TxCounts::default();
        let trees: &[sled::Tree] = &self.inner.trees;
        let result = trees.transaction(|view: &Vec<TransactionalTree>| {
            self.inner
                .queue_counts
                .apply(queue_counts::negated(raised.take()));
            let mut tx = StoreTx {
                trees: view,
                appended: Cell::new(None),
                bodies: &self.inner.bodies,
                disk: &self.inner.space,
                wrote_bodies: Cell::new(false),
                counts: queue_counts::TxCounts::default(),
                staged_events: feed_pages::StagedEvents::default(),
            };
            let mark = TxMark::enter();
            let mut result = f(&mut tx).and_then(|v| feed_pages::write_staged(&tx).map(|()| v));
            drop(mark);
            // The bodies this closure appended become durable before sled commits the refs to
            // them (a background sled flush may persist the commit at any moment after).
            if result.is_ok()
                && tx.wrote_bodies.get()
                && let Err(source) = self.inner.bodies.sync()
            {
                result = Err(TxError::Store(body_write_error(
                    &self.inner.bodies,
                    &self.inner.space,
                    source,
                )));
            }
            match result {
                Ok(v) => {
                    appended.set(tx.appended.get());
                    let (rises, fall) = queue_counts::split(tx.counts.take());
                    self.inner.queue_counts.apply(rises.clone());
                    raised.replace(rises);
                    falls.replace(fall);
                    Ok(v)
                }
                Err(TxError::Conflict) => Err(ConflictableTransactionError::Conflict),
                Err(TxError::Storage(e)) => Err(ConflictableTransactionError::Storage(e)),
                Err(other) => Err(ConflictableTransactionError::Abort(other)),
            }
        });
        match result {
            Ok(v) => {
                self.inner.queue_counts.apply(falls.take());
                if let Some(seq) = appended.get() {
                    self.inner
                        .committed_feed_seq
                        .fetch_max(seq, Ordering::AcqRel);
                }
                Ok(v)
            }
            Err(e) => {
                self.inner
                    .queue_counts
                    .apply(queue_counts::negated(raised.take()));
                Err(self.transaction_error(e))
            }
        }
    }

    fn transaction_error(&self, e: TransactionError<TxError>) -> StoreError {
        match e {
            TransactionError::Abort(TxError::Abort(reason)) => StoreError::Aborted(reason),
            TransactionError::Abort(TxError::Store(e)) => e,
            TransactionError::Abort(TxError::Storage(source)) => {
                self.storage_error("running a transaction", source)
            }
            TransactionError::Abort(TxError::Conflict) => {
                unreachable!("conflicts are retried, never aborted")
            }
            TransactionError::Storage(source) => {
                self.storage_error("committing a transaction", source)
            }
        }
    }
}

/// A failed append or sync of the body files: out of space is [`StoreError::DiskFull`] (the
/// sync waits as `degraded (disk full)` and retries; unlike sled, the body files stay usable
/// once there is room), anything else an I/O error.
fn body_write_error(
    bodies: &bodies::BodyFiles,
    space: &crate::disk_space::DiskSpace,
    source: std::io::Error,
) -> StoreError {
    if crate::disk_space::is_out_of_space(&source) {
        let reason = format!("{}: {source}", bodies.dir().display());
        space.mark_full(reason.clone());
        return StoreError::DiskFull {
            path: bodies.dir().to_path_buf(),
            reason,
        };
    }
    StoreError::Io {
        dir: bodies.dir().to_path_buf(),
        source,
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

pub mod bodies;
mod error;
pub(crate) mod feed_pages;
mod group_flush;
mod lock;
pub(crate) mod queue_counts;
mod schema;
#[cfg(test)]
mod tests;
mod tx;

pub use bodies::BodyRef;
pub use error::{StoreError, TxError};
use lock::lock_dir;
pub use lock::lock_store_dir;
use schema::migrate;
pub use schema::{MIGRATIONS, Migration, SCHEMA_VERSION, SCHEMA_VERSION_KEY};
pub use tx::StoreTx;
use tx::TxMark;
pub(crate) use tx::not_in_tx;
