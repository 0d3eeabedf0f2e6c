//! The repair side of a durable mailbox: listing dead letters, requeueing one or all of them,
//! and clearing a whole mailbox (account removed or resynced).

use super::layout::{be_u64, dead_key, get_pending, job_key, pending_key};
use super::{CHUNK, DurableMailbox, Job, JobId, JobRecord, PendingRef};
use crate::store::{Internal, StoreError, decode_in, encode, not_in_tx};

impl DurableMailbox {
    /// Up to `limit` dead-lettered jobs, oldest first, with their last error.
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<Job>, StoreError> {
        not_in_tx("DurableMailbox::dead_letters")?;
        let mut out = Vec::new();
        for item in self
            .store
            .internal(Internal::Dead)
            .scan_prefix(&*self.prefix)
            .take(limit)
        {
            let (k, v) = item.map_err(StoreError::sled("scanning dead letters"))?;
            let seq = be_u64(&k[self.prefix.len()..], "dead key")?;
            let rec: JobRecord = decode_in("dead value", &v)?;
            out.push(rec.into_job(&self.name, JobId(seq)));
        }
        Ok(out)
    }

    /// Admin: moves one dead-lettered job back to the ready queue (same id, priority and
    /// place, attempts reset to 0, last error kept), like [`DurableMailbox::requeue_dead`] for
    /// one job. Returns whether `id` was a dead job of this mailbox. Not flushed.
    pub fn requeue_dead_job(&self, id: JobId) -> Result<bool, StoreError> {
        not_in_tx("DurableMailbox::requeue_dead_job")?;
        let dk = dead_key(&self.prefix, id.0);
        self.store.transaction(|tx| {
            let Some(v) = tx.tree(Internal::Dead).get(&dk)? else {
                return Ok(false);
            };
            let mut rec: JobRecord = decode_in("dead value", &v)?;
            tx.job_remove(Internal::Dead, &dk)?;
            let pk = pending_key(&self.prefix, &rec.key);
            if get_pending(tx, &pk)?.is_some() {
                // The same key is pending again: that job does the work.
                return Ok(true);
            }
            rec.attempts = 0;
            rec.not_before_ms = 0;
            tx.job_insert(
                Internal::Jobs,
                &job_key(&self.prefix, rec.priority, id.0),
                encode(&rec),
            )?;
            let r = PendingRef {
                seq: id.0,
                priority: rec.priority,
                delayed_until: None,
            };
            tx.tree(Internal::PendingKeys).insert(pk, encode(&r))?;
            Ok(true)
        })
    }

    /// Admin: moves every dead-lettered job back to the ready queue (same id, priority and
    /// place, attempts reset to 0, last error kept). A dead job whose key has meanwhile been
    /// enqueued again is dropped instead (the pending one does the work). Returns how many were
    /// requeued. Not flushed.
    pub fn requeue_dead(&self) -> Result<usize, StoreError> {
        not_in_tx("DurableMailbox::requeue_dead")?;
        let dead = self.store.internal(Internal::Dead);
        let mut requeued = 0;
        loop {
            let mut batch = Vec::new();
            for item in dead.scan_prefix(&*self.prefix).take(CHUNK) {
                let (k, _) = item.map_err(StoreError::sled("scanning dead letters"))?;
                batch.push(k);
            }
            if batch.is_empty() {
                return Ok(requeued);
            }
            requeued += self.store.transaction(|tx| {
                let mut n = 0;
                for dk in &batch {
                    let Some(v) = tx.tree(Internal::Dead).get(dk)? else {
                        continue;
                    };
                    let seq = be_u64(&dk[self.prefix.len()..], "dead key")?;
                    let mut rec: JobRecord = decode_in("dead value", &v)?;
                    tx.job_remove(Internal::Dead, dk)?;
                    let pk = pending_key(&self.prefix, &rec.key);
                    if get_pending(tx, &pk)?.is_some() {
                        continue;
                    }
                    rec.attempts = 0;
                    rec.not_before_ms = 0;
                    tx.job_insert(
                        Internal::Jobs,
                        &job_key(&self.prefix, rec.priority, seq),
                        encode(&rec),
                    )?;
                    let r = PendingRef {
                        seq,
                        priority: rec.priority,
                        delayed_until: None,
                    };
                    tx.tree(Internal::PendingKeys).insert(pk, encode(&r))?;
                    n += 1;
                }
                Ok(n)
            })?;
        }
    }

    /// Removes every job of this mailbox (ready, leased, delayed, dead) and forgets the leases:
    /// for an account that is removed or resynced. Runs in chunks (each job leaves together
    /// with its dedupe entry); stop the mailbox's actor first. Not flushed.
    pub fn clear(&self) -> Result<(), StoreError> {
        not_in_tx("DurableMailbox::clear")?;
        for tree in [Internal::Jobs, Internal::Delayed, Internal::Dead] {
            loop {
                let mut batch = Vec::new();
                for item in self
                    .store
                    .internal(tree)
                    .scan_prefix(&*self.prefix)
                    .take(CHUNK)
                {
                    let (k, v) = item.map_err(StoreError::sled("scanning jobs"))?;
                    let rec: Result<JobRecord, _> = decode_in("job value", &v);
                    // A corrupt record is removed too; it has no readable dedupe key.
                    batch.push((k, rec.ok().map(|r| r.key)));
                }
                if batch.is_empty() {
                    break;
                }
                self.store.transaction(|tx| {
                    for (k, key) in &batch {
                        tx.job_remove(tree, k)?;
                        if let Some(key) = key {
                            tx.tree(Internal::PendingKeys)
                                .remove(pending_key(&self.prefix, key))?;
                        }
                    }
                    Ok(())
                })?;
            }
        }
        // Sweep dedupe entries left by corrupt records.
        let pending = self.store.internal(Internal::PendingKeys);
        for item in pending.scan_prefix(&*self.prefix) {
            let (k, _) = item.map_err(StoreError::sled("scanning pending keys"))?;
            pending
                .remove(k)
                .map_err(StoreError::sled("removing pending keys"))?;
        }
        self.leases().clear();
        Ok(())
    }
}
