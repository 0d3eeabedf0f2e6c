//! [`StoreTx`], the view a [`super::Store::transaction`] closure works through, and the
//! thread-local mark that refuses non-transactional sled calls from inside a closure.

use std::cell::Cell;

use sled::transaction::TransactionalTree;

use super::{BodyRef, Internal, Space, StoreError, TxError, decode_in, encode};

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
pub(super) struct TxMark;

impl TxMark {
    pub(super) fn enter() -> TxMark {
        IN_TX.with(|f| f.set(true));
        TxMark
    }
}

impl Drop for TxMark {
    fn drop(&mut self) {
        IN_TX.with(|f| f.set(false));
    }
}

/// The view a [`Store::transaction`] closure works through. Everything done through one
/// `StoreTx` commits atomically.
pub struct StoreTx<'a> {
    pub(super) trees: &'a [TransactionalTree],
    pub(super) appended: Cell<Option<u64>>,
    pub(super) bodies: &'a super::bodies::BodyFiles,
    /// The free-space state a full body file marks.
    pub(super) disk: &'a crate::disk_space::DiskSpace,
    /// Whether [`StoreTx::put_body`] appended anything (synced before the commit).
    pub(super) wrote_bodies: Cell<bool>,
    /// Jobs this attempt added to or removed from the mailbox trees (`queue_counts`).
    pub(super) counts: super::queue_counts::TxCounts,
    /// Feed events this attempt appended, written as pages before it commits (`feed_pages`).
    pub(super) staged_events: super::feed_pages::StagedEvents,
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

    /// Stores a message body under `key`: appended to the body files (durable before this
    /// transaction commits) and referenced from [`Space::Bodies`].
    pub fn put_body(&self, key: &[u8], bytes: &[u8]) -> Result<BodyRef, TxError> {
        let at = self.append_body(bytes)?;
        self.space(Space::Bodies).insert(key, encode(&at))?;
        Ok(at)
    }

    /// Appends a body to the body files (durable before this transaction commits) and
    /// returns where it is, for the caller to keep in its own record (the mirror's
    /// messages do, since schema 6). Unreferenced if the transaction aborts: dead space.
    pub fn append_body(&self, bytes: &[u8]) -> Result<BodyRef, TxError> {
        let at = self
            .bodies
            .append(bytes)
            .map_err(|source| super::body_write_error(self.bodies, self.disk, source))?;
        self.wrote_bodies.set(true);
        Ok(at)
    }

    /// Removes the body stored under `key` (either place); its bytes become dead space.
    pub fn remove_body(&self, key: &[u8]) -> Result<(), TxError> {
        self.space(Space::Bodies).remove(key)?;
        self.space(Space::Raw).remove(key)?;
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
