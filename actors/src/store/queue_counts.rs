//! How many jobs each durable mailbox holds, kept as counters instead of counted by scans:
//! [`QueueCounts`] is counted once from the mailbox trees when the store opens, and every
//! transaction that inserts or removes a job (through [`StoreTx::job_insert`] and
//! [`StoreTx::job_remove`]) changes them. `DurableMailbox::depth` (status replies, the
//! backfill's drain check) reads them in constant time, however long the queue.
//!
//! A counter may run ahead of the trees for a moment but never behind a commit: a
//! transaction's rises are added *before* sled commits it and its falls only after. So a reader
//! that has seen what a transaction committed (a cursor it moved, say) and then reads a depth
//! sees that transaction's new jobs — "caught up, nothing missing" is never claimed between a
//! commit and its count. A closure that sled retries first takes back the rises of the
//! attempt before; an aborted transaction takes back its own.

use super::{Internal, StoreError, StoreTx, TxError};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// Jobs of one mailbox by tree: ready or leased (`jobs`), delayed, dead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct MailboxCounts {
    pub(crate) jobs: u64,
    pub(crate) delayed: u64,
    pub(crate) dead: u64,
}

/// Changes one transaction made, by mailbox key prefix: (jobs, delayed, dead).
pub(crate) type CountDeltas = HashMap<Vec<u8>, [i64; 3]>;

fn slot(tree: Internal) -> Option<usize> {
    match tree {
        Internal::Jobs => Some(0),
        Internal::Delayed => Some(1),
        Internal::Dead => Some(2),
        _ => None,
    }
}

/// The mailbox prefix (length-prefixed name, see `mailbox::layout::prefix`) a key starts with.
fn mailbox_prefix(key: &[u8]) -> Option<&[u8]> {
    let len: [u8; 4] = key.get(..4)?.try_into().ok()?;
    let end = 4usize.checked_add(usize::try_from(u32::from_be_bytes(len)).ok()?)?;
    key.get(..end)
}

/// The counters of every mailbox in one store.
#[derive(Debug, Default)]
pub(crate) struct QueueCounts {
    by_prefix: Mutex<HashMap<Vec<u8>, MailboxCounts>>,
}

impl QueueCounts {
    /// Counts the jobs of the three mailbox trees (at open, before any transaction).
    pub(crate) fn count(trees: &[sled::Tree]) -> Result<Self, StoreError> {
        let mut by_prefix: HashMap<Vec<u8>, MailboxCounts> = HashMap::new();
        for tree in [Internal::Jobs, Internal::Delayed, Internal::Dead] {
            let i = slot(tree).unwrap_or(0);
            for key in trees[tree.index()].iter().keys() {
                let key = key.map_err(StoreError::sled("counting jobs"))?;
                let Some(prefix) = mailbox_prefix(&key) else {
                    continue; // store check reports malformed keys
                };
                let c = by_prefix.entry(prefix.to_vec()).or_default();
                *[&mut c.jobs, &mut c.delayed, &mut c.dead][i] += 1;
            }
        }
        Ok(Self {
            by_prefix: Mutex::new(by_prefix),
        })
    }

    /// Adds changes (a transaction's rises before its commit, its falls after it).
    pub(crate) fn apply(&self, deltas: CountDeltas) {
        if deltas.is_empty() {
            return;
        }
        let mut map = self
            .by_prefix
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (prefix, d) in deltas {
            let c = map.entry(prefix).or_default();
            for (field, delta) in [&mut c.jobs, &mut c.delayed, &mut c.dead]
                .into_iter()
                .zip(d)
            {
                *field = field.saturating_add_signed(delta);
            }
        }
    }

    /// The counters of the mailbox with key prefix `prefix`.
    pub(crate) fn get(&self, prefix: &[u8]) -> MailboxCounts {
        let map = self
            .by_prefix
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(prefix).copied().unwrap_or_default()
    }
}

/// A transaction's pending changes (moved out of the `StoreTx` when its closure succeeds).
pub(crate) type TxCounts = RefCell<CountDeltas>;

/// Splits a transaction's changes into its rises (added before the commit) and its falls
/// (added after it), per counter.
pub(crate) fn split(deltas: CountDeltas) -> (CountDeltas, CountDeltas) {
    let mut rises = CountDeltas::new();
    let mut falls = CountDeltas::new();
    for (prefix, d) in deltas {
        let up = d.map(|v| v.max(0));
        let down = d.map(|v| v.min(0));
        if up.iter().any(|v| *v != 0) {
            rises.insert(prefix.clone(), up);
        }
        if down.iter().any(|v| *v != 0) {
            falls.insert(prefix, down);
        }
    }
    (rises, falls)
}

/// The changes that take `deltas` back.
pub(crate) fn negated(deltas: CountDeltas) -> CountDeltas {
    deltas
        .into_iter()
        .map(|(prefix, d)| (prefix, d.map(|v| -v)))
        .collect()
}

impl StoreTx<'_> {
    fn note_job(&self, tree: Internal, key: &[u8], delta: i64) {
        if let (Some(i), Some(prefix)) = (slot(tree), mailbox_prefix(key)) {
            let mut deltas = self.counts.borrow_mut();
            deltas.entry(prefix.to_vec()).or_default()[i] += delta;
        }
    }

    /// Inserts a job record into a mailbox tree (`Jobs`, `Delayed` or `Dead`), counted.
    pub(crate) fn job_insert(
        &self,
        tree: Internal,
        key: &[u8],
        value: Vec<u8>,
    ) -> Result<(), TxError> {
        if self.tree(tree).insert(key, value)?.is_none() {
            self.note_job(tree, key, 1);
        }
        Ok(())
    }

    /// Removes a job record from a mailbox tree, counted if it was there.
    pub(crate) fn job_remove(&self, tree: Internal, key: &[u8]) -> Result<(), TxError> {
        if self.tree(tree).remove(key)?.is_some() {
            self.note_job(tree, key, -1);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_names_its_mailbox() {
        let mut key = 3u32.to_be_bytes().to_vec();
        key.extend_from_slice(b"a/bXYZ");
        assert_eq!(mailbox_prefix(&key), Some(&key[..7]));
        assert_eq!(mailbox_prefix(b"\0\0"), None);
        assert_eq!(mailbox_prefix(&[0, 0, 0, 9, b'a']), None);
    }

    #[test]
    fn rises_and_falls_split_per_counter_and_a_negation_takes_rises_back() {
        let mut d = CountDeltas::new();
        d.insert(b"p".to_vec(), [2, -1, 0]);
        d.insert(b"q".to_vec(), [0, 0, -4]);
        let (rises, falls) = split(d);
        assert_eq!(rises.len(), 1);
        assert_eq!(rises[&b"p".to_vec()], [2, 0, 0]);
        assert_eq!(falls[&b"p".to_vec()], [0, -1, 0]);
        assert_eq!(falls[&b"q".to_vec()], [0, 0, -4]);
        let c = QueueCounts::default();
        c.apply(rises.clone());
        c.apply(negated(rises));
        assert_eq!(c.get(b"p"), MailboxCounts::default());
    }

    #[test]
    fn deltas_add_up_and_never_go_below_zero() {
        let c = QueueCounts::default();
        let mut d = CountDeltas::new();
        d.insert(b"p".to_vec(), [2, 1, 0]);
        c.apply(d);
        let mut d = CountDeltas::new();
        d.insert(b"p".to_vec(), [-3, 0, 1]);
        c.apply(d);
        assert_eq!(
            c.get(b"p"),
            MailboxCounts {
                jobs: 0,
                delayed: 1,
                dead: 1
            }
        );
    }
}
