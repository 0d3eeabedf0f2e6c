//! Durable mailboxes: the sled-backed work queue of one actor.
//!
//! Layout (all keys start with the mailbox prefix `len(name):u32be ++ name`, so one mailbox is
//! one prefix scan and no name is a prefix of another's keys):
//! - `jobs`:         `prefix ++ (255 - priority) ++ seq:be` → job record. Ready jobs; a prefix
//!   scan yields the highest priority first and FIFO (enqueue commit order) within a priority.
//! - `jobs_delayed`: `prefix ++ not_before_ms:be ++ seq:be` → job record. Jobs waiting for a
//!   retry. [`DurableMailbox::lease`] first moves every due one back to `jobs` under its original
//!   key, so a retried job keeps its place in the queue, and a lease never scans delayed jobs.
//! - `pending_keys`: `prefix ++ idempotency key` → (seq, priority, delayed_until). Exactly one
//!   entry per job in `jobs` or `jobs_delayed`; it is the dedupe index.
//! - `dead`:         `prefix ++ seq:be` → job record with its last error.
//!
//! Invariants:
//! - A job is in exactly one of `jobs`, `jobs_delayed`, `dead`, or gone (acked/cleared). Every
//!   move happens in one transaction together with its `pending_keys` update.
//! - While a job with key K is pending (ready, leased or delayed), enqueueing K again returns
//!   [`EnqueueOutcome::Duplicate`]; after the job is acked or dead-lettered K may be enqueued again.
//! - Leases live in memory only (shared by every handle of the same name, see
//!   [`crate::store::Store::mailbox`]). After a restart every job still in sled is pending again:
//!   that replay is the recovery. Nothing here expires a lease.
//! - Nothing here flushes except [`DurableMailbox::enqueue_durable`]: callers flush at their
//!   commit points.
//!
//! Costs: `lease` scans `leased + max` keys of `jobs` plus the due part of `jobs_delayed`;
//! `depth` and `next_due_ms` scan the whole mailbox (status/timer use, not per job).

mod dead_letters;
mod layout;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backoff::RetryPolicy;
use crate::store::{Internal, Store, StoreError, TxError, decode_in, encode, not_in_tx};
use layout::{be_u64, get_pending, job_key, now_ms, parse_job_tail, pending_key};
pub(crate) use layout::{check_value, prefix, tx_is_pending, tx_nack};

/// Longest `last_error` kept with a job, in bytes.
pub const MAX_ERROR_LEN: usize = 2048;
/// Jobs moved per transaction by the bulk operations (promote, requeue, clear).
const CHUNK: usize = 512;

/// Job priority; higher priorities are leased first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Priority {
    /// Full sync and gap recovery.
    Backfill = 0,
    /// Ordinary work.
    Normal = 1,
    /// Push / partial sync: what a user is waiting for.
    RealTime = 2,
}

impl Priority {
    /// Every priority, lowest first.
    pub const ALL: [Priority; 3] = [Priority::Backfill, Priority::Normal, Priority::RealTime];

    fn key_byte(self) -> u8 {
        255 - self as u8
    }

    fn from_key_byte(b: u8) -> Option<Priority> {
        Priority::ALL.into_iter().find(|p| p.key_byte() == b)
    }
}

/// Identifies a job: its sequence number, unique across all mailboxes of a store and
/// increasing in enqueue commit order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A job as leased from a mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// The job's id.
    pub id: JobId,
    /// The mailbox it belongs to.
    pub mailbox: String,
    /// Its idempotency key.
    pub key: String,
    /// Its priority.
    pub priority: Priority,
    /// Caller-defined payload.
    pub payload: Vec<u8>,
    /// How many times it has failed so far.
    pub attempts: u32,
    /// Earliest time (ms since the epoch, caller's clock) it may run; 0 for a fresh job.
    pub not_before_ms: u64,
    /// The error of the last failure.
    pub last_error: Option<String>,
    /// When it was enqueued (ms since the epoch).
    pub enqueued_ms: u64,
}

/// What an enqueue did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnqueueOutcome {
    /// A new job.
    Enqueued(JobId),
    /// A job with the same key is already pending; nothing was written.
    Duplicate(JobId),
}

impl EnqueueOutcome {
    /// The new or existing job's id.
    pub fn id(self) -> JobId {
        match self {
            EnqueueOutcome::Enqueued(id) | EnqueueOutcome::Duplicate(id) => id,
        }
    }
}

/// What a nack did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NackOutcome {
    /// The job will be leasable again from `not_before_ms`.
    Retry {
        /// Earliest lease time.
        not_before_ms: u64,
    },
    /// The job failed `max_attempts` times and now sits in the dead-letter list.
    DeadLettered,
}

/// Sizes of a mailbox.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDepth {
    /// Ready and not leased.
    pub pending: usize,
    /// Leased by this process and not yet acked/nacked/released.
    pub leased: usize,
    /// Waiting for a retry time.
    pub delayed: usize,
    /// Dead-lettered.
    pub dead: usize,
}

/// A job as stored (mailbox and id live in the key).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct JobRecord {
    pub(crate) key: String,
    pub(crate) priority: Priority,
    #[serde(with = "serde_bytes")]
    pub(crate) payload: Vec<u8>,
    pub(crate) attempts: u32,
    pub(crate) not_before_ms: u64,
    pub(crate) last_error: Option<String>,
    pub(crate) enqueued_ms: u64,
}

impl JobRecord {
    fn into_job(self, mailbox: &str, id: JobId) -> Job {
        Job {
            id,
            mailbox: mailbox.to_owned(),
            key: self.key,
            priority: self.priority,
            payload: self.payload,
            attempts: self.attempts,
            not_before_ms: self.not_before_ms,
            last_error: self.last_error,
            enqueued_ms: self.enqueued_ms,
        }
    }
}

/// The dedupe index entry of a pending job: where the job is.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct PendingRef {
    pub(crate) seq: u64,
    pub(crate) priority: Priority,
    pub(crate) delayed_until: Option<u64>,
}

impl Store {
    /// The durable mailbox `name` (e.g. `"acct1/ingest"`). Every handle with the same name shares
    /// the same in-memory lease set.
    pub fn mailbox(&self, name: &str) -> DurableMailbox {
        let leases = self.lease_set(name);
        DurableMailbox::new(self.clone(), name, leases)
    }
}

/// The durable work queue of one actor. Cheap to clone; clones (and every handle obtained from
/// [`Store::mailbox`] with the same name) share one in-memory lease set.
#[derive(Clone)]
pub struct DurableMailbox {
    store: Store,
    name: Arc<str>,
    prefix: Arc<[u8]>,
    leases: crate::store::LeaseSet,
}

impl fmt::Debug for DurableMailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableMailbox")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl DurableMailbox {
    pub(crate) fn new(store: Store, name: &str, leases: crate::store::LeaseSet) -> Self {
        Self {
            store,
            name: name.into(),
            prefix: prefix(name).into(),
            leases,
        }
    }

    /// The mailbox name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The store this mailbox lives in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn leases(&self) -> MutexGuard<'_, HashSet<u64>> {
        self.leases.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Enqueues a job (deduped by `key` while pending). Not flushed: flush at the commit point.
    pub fn enqueue(
        &self,
        priority: Priority,
        key: &str,
        payload: &[u8],
    ) -> Result<EnqueueOutcome, StoreError> {
        let now = now_ms();
        self.store
            .transaction(|tx| tx.enqueue(&self.name, priority, key, payload, now))
    }

    /// [`DurableMailbox::enqueue`], then a flush: durable when this returns.
    pub fn enqueue_durable(
        &self,
        priority: Priority,
        key: &str,
        payload: &[u8],
    ) -> Result<EnqueueOutcome, StoreError> {
        let out = self.enqueue(priority, key, payload)?;
        self.store.flush()?;
        Ok(out)
    }

    /// Enqueues several jobs of one priority in one transaction (not flushed).
    pub fn enqueue_batch(
        &self,
        priority: Priority,
        items: &[(&str, &[u8])],
    ) -> Result<Vec<EnqueueOutcome>, StoreError> {
        let now = now_ms();
        self.store.transaction(|tx| {
            items
                .iter()
                .map(|(key, payload)| tx.enqueue(&self.name, priority, key, payload, now))
                .collect()
        })
    }

    /// Leases up to `max` ready jobs: highest priority first, FIFO within a priority, skipping
    /// jobs already leased. Delayed jobs whose time (`not_before <= now_ms`) has come are made
    /// ready first. The lease lasts until `ack`, `nack`, `release` or a restart.
    pub fn lease(&self, max: usize, now_ms: u64) -> Result<Vec<Job>, StoreError> {
        not_in_tx("DurableMailbox::lease")?;
        if max == 0 {
            return Ok(Vec::new());
        }
        self.promote_due(now_ms)?;
        let mut leases = self.leases();
        let mut out = Vec::with_capacity(max.min(1024));
        for item in self
            .store
            .internal(Internal::Jobs)
            .scan_prefix(&*self.prefix)
        {
            let (k, v) = item.map_err(StoreError::sled("scanning jobs"))?;
            let (_, seq) = parse_job_tail(&k[self.prefix.len()..])?;
            let id = JobId(seq);
            if leases.contains(&id.0) {
                continue;
            }
            let rec: JobRecord = decode_in("jobs value", &v)?;
            out.push(rec.into_job(&self.name, id));
            if out.len() == max {
                break;
            }
        }
        leases.extend(out.iter().map(|j| j.id.0));
        Ok(out)
    }

    /// Moves delayed jobs that are due at `now_ms` back to the ready queue, at their old place.
    fn promote_due(&self, now_ms: u64) -> Result<(), StoreError> {
        let delayed = self.store.internal(Internal::Delayed);
        let mut end = self.prefix.to_vec();
        end.extend_from_slice(&now_ms.to_be_bytes());
        end.extend_from_slice(&u64::MAX.to_be_bytes());
        loop {
            let mut due = Vec::new();
            for item in delayed
                .range(self.prefix.to_vec()..=end.clone())
                .take(CHUNK)
            {
                let (k, _) = item.map_err(StoreError::sled("scanning delayed jobs"))?;
                due.push(k);
            }
            if due.is_empty() {
                return Ok(());
            }
            let full = due.len() == CHUNK;
            self.store.transaction(|tx| {
                for dk in &due {
                    let Some(v) = tx.tree(Internal::Delayed).get(dk)? else {
                        continue; // acked or promoted meanwhile
                    };
                    let seq = be_u64(&dk[dk.len() - 8..], "jobs_delayed key")?;
                    let rec: JobRecord = decode_in("jobs_delayed value", &v)?;
                    tx.job_remove(Internal::Delayed, dk)?;
                    tx.job_insert(
                        Internal::Jobs,
                        &job_key(&self.prefix, rec.priority, seq),
                        v.to_vec(),
                    )?;
                    let pk = pending_key(&self.prefix, &rec.key);
                    if let Some(r) = get_pending(tx, &pk)?
                        && r.seq == seq
                    {
                        let r = PendingRef {
                            delayed_until: None,
                            ..r
                        };
                        tx.tree(Internal::PendingKeys).insert(pk, encode(&r))?;
                    }
                }
                Ok(())
            })?;
            if !full {
                return Ok(());
            }
        }
    }

    /// Removes a job and forgets its lease (not flushed). Acking a job that is gone is a no-op.
    pub fn ack(&self, job: &Job) -> Result<(), StoreError> {
        self.store.transaction(|tx| tx.ack(job))?;
        self.release(job);
        Ok(())
    }

    /// Removes several jobs in one transaction (group commit; not flushed) and forgets their
    /// leases.
    pub fn ack_many(&self, jobs: &[Job]) -> Result<(), StoreError> {
        self.store.transaction(|tx| {
            for job in jobs {
                tx.ack(job)?;
            }
            Ok(())
        })?;
        let mut leases = self.leases();
        for job in jobs {
            leases.remove(&job.id.0);
        }
        Ok(())
    }

    /// Forgets the in-memory lease of `job`: after a [`StoreTx::ack`] has committed, or to give
    /// the job back untouched.
    pub fn release(&self, job: &Job) {
        self.leases().remove(&job.id.0);
    }

    /// Forgets every in-memory lease of this mailbox: a restarted actor calls it so the jobs a
    /// failed instance held run again (the same replay a process restart gives).
    pub fn release_all(&self) {
        self.leases().clear();
    }

    /// Records a failure: attempts + 1 and the error are stored; the job becomes leasable again
    /// after a full-jitter backoff, or is dead-lettered once it has failed
    /// `policy.max_attempts` times. Forgets the lease. Not flushed.
    pub fn nack(
        &self,
        job: &Job,
        error: &str,
        policy: &RetryPolicy,
        now_ms: u64,
    ) -> Result<NackOutcome, StoreError> {
        self.nack_with_rng(job, error, policy, now_ms, &mut rand::rng())
    }

    /// [`DurableMailbox::nack`] with a caller-supplied RNG (deterministic tests).
    pub fn nack_with_rng(
        &self,
        job: &Job,
        error: &str,
        policy: &RetryPolicy,
        now_ms: u64,
        rng: &mut impl rand::Rng,
    ) -> Result<NackOutcome, StoreError> {
        let delay = policy.delay(job.attempts.saturating_add(1), rng);
        let out = self
            .store
            .transaction(|tx| tx_nack(tx, job, error, policy, now_ms, delay));
        self.release(job);
        out
    }

    /// Nacks several jobs with the same error in one transaction (a whole batch request
    /// failed); each gets its own jittered delay. Jobs that are gone are skipped (no outcome is
    /// returned for them). Forgets the leases. Not flushed.
    pub fn nack_many(
        &self,
        jobs: &[Job],
        error: &str,
        policy: &RetryPolicy,
        now_ms: u64,
    ) -> Result<Vec<(JobId, NackOutcome)>, StoreError> {
        let mut rng = rand::rng();
        let delays: Vec<Duration> = jobs
            .iter()
            .map(|j| policy.delay(j.attempts.saturating_add(1), &mut rng))
            .collect();
        let out = self.store.transaction(|tx| {
            let mut out = Vec::with_capacity(jobs.len());
            for (job, delay) in jobs.iter().zip(&delays) {
                match tx_nack(tx, job, error, policy, now_ms, *delay) {
                    Ok(o) => out.push((job.id, o)),
                    Err(TxError::Store(StoreError::JobNotFound { .. })) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        });
        let mut leases = self.leases();
        for job in jobs {
            leases.remove(&job.id.0);
        }
        out
    }

    /// The earliest `not_before` among unleased pending jobs, for a wake-up timer: a value
    /// `<= now` (0 for a never-failed job) means work is ready now; `None` means nothing is
    /// waiting (leased jobs do not count).
    pub fn next_due_ms(&self) -> Result<Option<u64>, StoreError> {
        not_in_tx("DurableMailbox::next_due_ms")?;
        let leases = self.leases();
        let mut best: Option<u64> = None;
        for item in self
            .store
            .internal(Internal::Jobs)
            .scan_prefix(&*self.prefix)
        {
            let (k, v) = item.map_err(StoreError::sled("scanning jobs"))?;
            let (_, seq) = parse_job_tail(&k[self.prefix.len()..])?;
            if leases.contains(&seq) {
                continue;
            }
            let rec: JobRecord = decode_in("jobs value", &v)?;
            best = Some(best.map_or(rec.not_before_ms, |b| b.min(rec.not_before_ms)));
            if rec.not_before_ms == 0 {
                break;
            }
        }
        drop(leases);
        if let Some(item) = self
            .store
            .internal(Internal::Delayed)
            .scan_prefix(&*self.prefix)
            .next()
        {
            let (k, _) = item.map_err(StoreError::sled("scanning delayed jobs"))?;
            let tail = &k[self.prefix.len()..];
            if tail.len() != 16 {
                return Err(StoreError::corrupt("jobs_delayed key", "bad key length"));
            }
            let t = be_u64(&tail[..8], "jobs_delayed key")?;
            best = Some(best.map_or(t, |b| b.min(t)));
        }
        Ok(best)
    }

    /// The mailbox's jobs by state, from the store's counters (`store::queue_counts`), in
    /// constant time: leased are the ready jobs an actor holds, pending the rest.
    pub fn depth(&self) -> Result<QueueDepth, StoreError> {
        let c = self.store.queue_counts(&self.prefix);
        let jobs = usize::try_from(c.jobs).unwrap_or(usize::MAX);
        let leased = self.leases().len().min(jobs);
        Ok(QueueDepth {
            pending: jobs - leased,
            leased,
            delayed: usize::try_from(c.delayed).unwrap_or(usize::MAX),
            dead: usize::try_from(c.dead).unwrap_or(usize::MAX),
        })
    }

    /// Counts the mailbox's jobs by state by scanning its trees: the truth the counters of
    /// [`DurableMailbox::depth`] are tested against (`mailbox/tests.rs`).
    pub fn depth_scanned(&self) -> Result<QueueDepth, StoreError> {
        not_in_tx("DurableMailbox::depth_scanned")?;
        let mut d = QueueDepth::default();
        {
            let leases = self.leases();
            for item in self
                .store
                .internal(Internal::Jobs)
                .scan_prefix(&*self.prefix)
            {
                let (k, _) = item.map_err(StoreError::sled("scanning jobs"))?;
                let (_, seq) = parse_job_tail(&k[self.prefix.len()..])?;
                if leases.contains(&seq) {
                    d.leased += 1;
                } else {
                    d.pending += 1;
                }
            }
        }
        d.delayed = self.count(Internal::Delayed)?;
        d.dead = self.count(Internal::Dead)?;
        Ok(d)
    }

    fn count(&self, tree: Internal) -> Result<usize, StoreError> {
        let mut n = 0;
        for item in self.store.internal(tree).scan_prefix(&*self.prefix) {
            item.map_err(StoreError::sled("counting jobs"))?;
            n += 1;
        }
        Ok(n)
    }
}
