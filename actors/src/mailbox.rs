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

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::backoff::RetryPolicy;
use crate::store::{
    Internal, JOB_SEQ, Store, StoreError, StoreTx, TxError, decode_in, encode, not_in_tx,
};

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

impl StoreTx<'_> {
    /// Enqueues a job in `mailbox` unless a job with the same `key` is already pending there
    /// (ready, leased or delayed), in which case that job's id is returned as a duplicate.
    pub fn enqueue(
        &self,
        mailbox: &str,
        priority: Priority,
        key: &str,
        payload: &[u8],
        now_ms: u64,
    ) -> Result<EnqueueOutcome, TxError> {
        tx_enqueue(self, mailbox, priority, key, payload, now_ms)
    }

    /// Removes a (leased) job and its pending-key entry. Call
    /// [`DurableMailbox::release`] after the transaction commits. Acking a job that is gone is
    /// a no-op.
    pub fn ack(&self, job: &Job) -> Result<(), TxError> {
        tx_ack(self, job)
    }

    /// Records a failure of `job` (see [`DurableMailbox::nack`]); the delay is drawn from the
    /// thread RNG. Call [`DurableMailbox::release`] after the transaction commits.
    pub fn nack(
        &self,
        job: &Job,
        error: &str,
        policy: &RetryPolicy,
        now_ms: u64,
    ) -> Result<NackOutcome, TxError> {
        let attempt = job.attempts.saturating_add(1);
        let delay = policy.delay(attempt, &mut rand::rng());
        tx_nack(self, job, error, policy, now_ms, delay)
    }
}

/// Decodes one stored value of a mailbox tree (`store check`): a pending ref in
/// `PendingKeys`, a job record anywhere else.
pub(crate) fn check_value(pending: bool, context: &str, bytes: &[u8]) -> Result<(), StoreError> {
    if pending {
        decode_in::<PendingRef>(context, bytes).map(|_| ())
    } else {
        decode_in::<JobRecord>(context, bytes).map(|_| ())
    }
}

pub(crate) fn prefix(mailbox: &str) -> Vec<u8> {
    let len = u32::try_from(mailbox.len()).unwrap_or(u32::MAX);
    let mut p = Vec::with_capacity(4 + mailbox.len() + 17);
    p.extend_from_slice(&len.to_be_bytes());
    p.extend_from_slice(mailbox.as_bytes());
    p
}

fn job_key(prefix: &[u8], priority: Priority, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 9);
    k.extend_from_slice(prefix);
    k.push(priority.key_byte());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn delayed_key(prefix: &[u8], not_before_ms: u64, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 16);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&not_before_ms.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn dead_key(prefix: &[u8], seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 8);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn pending_key(prefix: &[u8], key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + key.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(key.as_bytes());
    k
}

/// Where the job a pending ref points to lives.
fn location(prefix: &[u8], r: &PendingRef) -> (Internal, Vec<u8>) {
    match r.delayed_until {
        Some(t) => (Internal::Delayed, delayed_key(prefix, t, r.seq)),
        None => (Internal::Jobs, job_key(prefix, r.priority, r.seq)),
    }
}

fn be_u64(bytes: &[u8], context: &str) -> Result<u64, StoreError> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StoreError::corrupt(context, "bad key length"))?;
    Ok(u64::from_be_bytes(arr))
}

/// Parses the tail (after the prefix) of a `jobs` key.
fn parse_job_tail(tail: &[u8]) -> Result<(Priority, u64), StoreError> {
    let Some((&pb, seq)) = tail.split_first() else {
        return Err(StoreError::corrupt("jobs key", "too short"));
    };
    let priority = Priority::from_key_byte(pb)
        .ok_or_else(|| StoreError::corrupt("jobs key", format!("priority byte {pb}")))?;
    Ok((priority, be_u64(seq, "jobs key")?))
}

fn truncate_error(error: &str) -> String {
    if error.len() <= MAX_ERROR_LEN {
        return error.to_owned();
    }
    let mut end = MAX_ERROR_LEN;
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &error[..end])
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn get_pending(tx: &StoreTx<'_>, pk: &[u8]) -> Result<Option<PendingRef>, TxError> {
    match tx.tree(Internal::PendingKeys).get(pk)? {
        Some(v) => Ok(Some(decode_in("pending_keys value", &v)?)),
        None => Ok(None),
    }
}

pub(crate) fn tx_enqueue(
    tx: &StoreTx<'_>,
    mailbox: &str,
    priority: Priority,
    key: &str,
    payload: &[u8],
    now_ms: u64,
) -> Result<EnqueueOutcome, TxError> {
    let p = prefix(mailbox);
    let pk = pending_key(&p, key);
    if let Some(r) = get_pending(tx, &pk)? {
        let (tree, loc) = location(&p, &r);
        if tx.tree(tree).get(&loc)?.is_some() {
            return Ok(EnqueueOutcome::Duplicate(JobId(r.seq)));
        }
        // A dangling entry (cannot happen through this API) must not swallow work.
        tracing::warn!(mailbox, key, "Dangling pending-key entry replaced.");
    }
    let seq = tx.next_counter(JOB_SEQ)?;
    let rec = JobRecord {
        key: key.to_owned(),
        priority,
        payload: payload.to_vec(),
        attempts: 0,
        not_before_ms: 0,
        last_error: None,
        enqueued_ms: now_ms,
    };
    tx.tree(Internal::Jobs)
        .insert(job_key(&p, priority, seq), encode(&rec))?;
    let r = PendingRef {
        seq,
        priority,
        delayed_until: None,
    };
    tx.tree(Internal::PendingKeys).insert(pk, encode(&r))?;
    Ok(EnqueueOutcome::Enqueued(JobId(seq)))
}

/// Whether a job with `key` is pending (ready, leased or delayed) in `mailbox`.
pub(crate) fn tx_is_pending(tx: &StoreTx<'_>, mailbox: &str, key: &str) -> Result<bool, TxError> {
    let p = prefix(mailbox);
    let Some(r) = get_pending(tx, &pending_key(&p, key))? else {
        return Ok(false);
    };
    let (tree, loc) = location(&p, &r);
    Ok(tx.tree(tree).get(&loc)?.is_some())
}

pub(crate) fn tx_ack(tx: &StoreTx<'_>, job: &Job) -> Result<(), TxError> {
    let p = prefix(&job.mailbox);
    tx.tree(Internal::Jobs)
        .remove(job_key(&p, job.priority, job.id.0))?;
    let pk = pending_key(&p, &job.key);
    if let Some(r) = get_pending(tx, &pk)?
        && r.seq == job.id.0
    {
        if let (Internal::Delayed, loc) = location(&p, &r) {
            tx.tree(Internal::Delayed).remove(loc)?;
        }
        tx.tree(Internal::PendingKeys).remove(pk)?;
    }
    Ok(())
}

pub(crate) fn tx_nack(
    tx: &StoreTx<'_>,
    job: &Job,
    error: &str,
    policy: &RetryPolicy,
    now_ms: u64,
    delay: Duration,
) -> Result<NackOutcome, TxError> {
    let p = prefix(&job.mailbox);
    let jk = job_key(&p, job.priority, job.id.0);
    let Some(v) = tx.tree(Internal::Jobs).get(&jk)? else {
        return Err(StoreError::JobNotFound {
            mailbox: job.mailbox.clone(),
            id: job.id.0,
        }
        .into());
    };
    let mut rec: JobRecord = decode_in("jobs value", &v)?;
    rec.attempts = rec.attempts.saturating_add(1);
    rec.last_error = Some(truncate_error(error));
    tx.tree(Internal::Jobs).remove(jk)?;
    let pk = pending_key(&p, &rec.key);
    let ours = get_pending(tx, &pk)?.is_some_and(|r| r.seq == job.id.0);
    if policy.exhausted(rec.attempts) {
        if ours {
            tx.tree(Internal::PendingKeys).remove(pk)?;
        }
        tx.tree(Internal::Dead)
            .insert(dead_key(&p, job.id.0), encode(&rec))?;
        return Ok(NackOutcome::DeadLettered);
    }
    let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
    let not_before_ms = now_ms.saturating_add(delay_ms);
    rec.not_before_ms = not_before_ms;
    tx.tree(Internal::Delayed)
        .insert(delayed_key(&p, not_before_ms, job.id.0), encode(&rec))?;
    if ours {
        let r = PendingRef {
            seq: job.id.0,
            priority: rec.priority,
            delayed_until: Some(not_before_ms),
        };
        tx.tree(Internal::PendingKeys).insert(pk, encode(&r))?;
    }
    Ok(NackOutcome::Retry { not_before_ms })
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
                    tx.tree(Internal::Delayed).remove(dk)?;
                    tx.tree(Internal::Jobs)
                        .insert(job_key(&self.prefix, rec.priority, seq), v)?;
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

    /// Counts the mailbox's jobs by state (scans the mailbox).
    pub fn depth(&self) -> Result<QueueDepth, StoreError> {
        not_in_tx("DurableMailbox::depth")?;
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
            tx.tree(Internal::Dead).remove(&*dk)?;
            let pk = pending_key(&self.prefix, &rec.key);
            if get_pending(tx, &pk)?.is_some() {
                // The same key is pending again: that job does the work.
                return Ok(true);
            }
            rec.attempts = 0;
            rec.not_before_ms = 0;
            tx.tree(Internal::Jobs)
                .insert(job_key(&self.prefix, rec.priority, id.0), encode(&rec))?;
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
                    tx.tree(Internal::Dead).remove(dk)?;
                    let pk = pending_key(&self.prefix, &rec.key);
                    if get_pending(tx, &pk)?.is_some() {
                        continue;
                    }
                    rec.attempts = 0;
                    rec.not_before_ms = 0;
                    tx.tree(Internal::Jobs)
                        .insert(job_key(&self.prefix, rec.priority, seq), encode(&rec))?;
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
                        tx.tree(tree).remove(k)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    fn keys(jobs: &[Job]) -> Vec<&str> {
        jobs.iter().map(|j| j.key.as_str()).collect()
    }

    #[test]
    fn lease_highest_priority_first_fifo_within_priority() {
        let (_d, store) = open();
        let mb = store.mailbox("acct1/ingest");
        mb.enqueue(Priority::Backfill, "b1", b"").unwrap();
        mb.enqueue(Priority::Normal, "n1", b"").unwrap();
        mb.enqueue(Priority::RealTime, "r1", b"").unwrap();
        mb.enqueue(Priority::Backfill, "b2", b"").unwrap();
        mb.enqueue(Priority::RealTime, "r2", b"").unwrap();
        mb.enqueue(Priority::Normal, "n2", b"").unwrap();
        let first = mb.lease(3, 0).unwrap();
        assert_eq!(keys(&first), ["r1", "r2", "n1"]);
        let rest = mb.lease(10, 0).unwrap();
        assert_eq!(keys(&rest), ["n2", "b1", "b2"]);
        assert!(mb.lease(10, 0).unwrap().is_empty(), "all leased");
    }

    #[test]
    fn mailboxes_are_isolated_even_when_names_share_a_prefix() {
        let (_d, store) = open();
        let a = store.mailbox("a");
        let ab = store.mailbox("ab");
        a.enqueue(Priority::Normal, "k", b"1").unwrap();
        ab.enqueue(Priority::Normal, "k", b"2").unwrap();
        assert_eq!(a.lease(10, 0).unwrap()[0].payload, b"1");
        assert_eq!(ab.lease(10, 0).unwrap()[0].payload, b"2");
        assert_eq!(a.depth().unwrap().leased, 1);
    }

    #[test]
    fn enqueue_dedupes_by_key_while_pending_and_allows_after_ack() {
        let (_d, store) = open();
        let mb = store.mailbox("m");
        let id = match mb.enqueue(Priority::Normal, "k", b"1").unwrap() {
            EnqueueOutcome::Enqueued(id) => id,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            mb.enqueue(Priority::RealTime, "k", b"2").unwrap(),
            EnqueueOutcome::Duplicate(id)
        );
        let jobs = mb.lease(10, 0).unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].payload, b"1");
        // Still a duplicate while leased.
        assert_eq!(
            mb.enqueue(Priority::Normal, "k", b"3").unwrap(),
            EnqueueOutcome::Duplicate(id)
        );
        mb.ack(&jobs[0]).unwrap();
        let again = mb.enqueue(Priority::Normal, "k", b"4").unwrap();
        assert!(matches!(again, EnqueueOutcome::Enqueued(new) if new > id));
        assert_eq!(mb.depth().unwrap().pending, 1);
    }

    #[test]
    fn release_gives_the_job_back_in_place() {
        let (_d, store) = open();
        let mb = store.mailbox("m");
        mb.enqueue(Priority::Normal, "a", b"").unwrap();
        mb.enqueue(Priority::Normal, "b", b"").unwrap();
        let jobs = mb.lease(2, 0).unwrap();
        mb.release(&jobs[0]);
        assert_eq!(keys(&mb.lease(5, 0).unwrap()), ["a"]);
        let other_handle = store.mailbox("m");
        assert!(
            other_handle.lease(5, 0).unwrap().is_empty(),
            "handles share leases"
        );
    }

    #[test]
    fn nack_delays_with_jitter_then_dead_letters_with_last_error() {
        let (_d, store) = open();
        let mb = store.mailbox("m");
        let policy = RetryPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(4),
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        mb.enqueue(Priority::Normal, "k", b"p").unwrap();
        mb.enqueue(Priority::Backfill, "other", b"").unwrap();
        let mut now = 1_000_000;
        for attempt in 1..=2u32 {
            let job = mb.lease(1, now).unwrap().remove(0);
            assert_eq!(job.key, "k");
            assert_eq!(job.attempts, attempt - 1);
            let out = mb
                .nack_with_rng(&job, &format!("boom {attempt}"), &policy, now, &mut rng)
                .unwrap();
            let NackOutcome::Retry { not_before_ms } = out else {
                panic!("{out:?}")
            };
            let ceiling = policy.ceiling(attempt).as_millis() as u64;
            assert!(not_before_ms >= now && not_before_ms <= now + ceiling);
            assert_eq!(mb.depth().unwrap().delayed, 1);
            // Not due yet: the lower-priority job is leased instead, then given back.
            if not_before_ms > now {
                let other = mb.lease(5, not_before_ms - 1).unwrap();
                assert_eq!(keys(&other), ["other"]);
                mb.release(&other[0]);
                assert_eq!(mb.next_due_ms().unwrap(), Some(0));
            }
            // Still deduped while delayed.
            assert!(matches!(
                mb.enqueue(Priority::Normal, "k", b"x").unwrap(),
                EnqueueOutcome::Duplicate(id) if id == job.id
            ));
            now = not_before_ms;
        }
        let job = mb.lease(1, now).unwrap().remove(0);
        assert_eq!((job.key.as_str(), job.attempts), ("k", 2));
        assert_eq!(job.last_error.as_deref(), Some("boom 2"));
        let out = mb
            .nack_with_rng(&job, "final", &policy, now, &mut rng)
            .unwrap();
        assert_eq!(out, NackOutcome::DeadLettered);
        let dead = mb.dead_letters(10).unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].attempts, 3);
        assert_eq!(dead[0].last_error.as_deref(), Some("final"));
        assert_eq!(dead[0].payload, b"p");
        let d = mb.depth().unwrap();
        assert_eq!((d.pending, d.leased, d.delayed, d.dead), (1, 0, 0, 1));
        // The key is free again once dead-lettered.
        assert!(matches!(
            mb.enqueue(Priority::Normal, "k", b"new").unwrap(),
            EnqueueOutcome::Enqueued(_)
        ));
    }

    #[test]
    fn release_all_makes_every_leased_job_leasable_again() {
        let (_d, store) = open();
        let mb = store.mailbox("m");
        mb.enqueue(Priority::Normal, "a", b"").unwrap();
        mb.enqueue(Priority::Normal, "b", b"").unwrap();
        assert_eq!(mb.lease(5, 0).unwrap().len(), 2);
        mb.release_all();
        assert_eq!(keys(&store.mailbox("m").lease(5, 0).unwrap()), ["a", "b"]);
    }

    #[test]
    fn nack_keeps_the_job_place_in_the_queue() {
        let (_d, store) = open();
        let mb = store.mailbox("m");
        mb.enqueue(Priority::Normal, "first", b"").unwrap();
        let job = mb.lease(1, 0).unwrap().remove(0);
        mb.enqueue(Priority::Normal, "second", b"").unwrap();
        let policy = RetryPolicy::default();
        let NackOutcome::Retry { not_before_ms } = mb.nack(&job, "e", &policy, 10).unwrap() else {
            panic!()
        };
        assert_eq!(mb.next_due_ms().unwrap(), Some(0), "'second' is ready");
        let got = mb.lease(5, not_before_ms).unwrap();
        assert_eq!(keys(&got), ["first", "second"]);
        mb.ack_many(&got).unwrap();
        assert_eq!(mb.next_due_ms().unwrap(), None);
        assert_eq!(mb.depth().unwrap(), QueueDepth::default());
    }

    #[test]
    fn next_due_reports_the_earliest_delayed_job() {
        let (_d, store) = open();
        let mb = store.mailbox("m");
        mb.enqueue(Priority::Normal, "a", b"").unwrap();
        let job = mb.lease(1, 0).unwrap().remove(0);
        let policy = RetryPolicy {
            base: Duration::from_secs(10),
            cap: Duration::from_secs(10),
            max_attempts: 5,
            ..RetryPolicy::default()
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let NackOutcome::Retry { not_before_ms } = mb
            .nack_with_rng(&job, "e", &policy, 5_000, &mut rng)
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(mb.next_due_ms().unwrap(), Some(not_before_ms));
    }

    #[test]
    fn nack_many_delays_a_whole_batch_in_one_go() {
        let (_d, store) = open();
        let mb = store.mailbox("m");
        for k in ["a", "b", "c"] {
            mb.enqueue(Priority::Normal, k, b"").unwrap();
        }
        let jobs = mb.lease(3, 0).unwrap();
        mb.ack(&jobs[2]).unwrap();
        let policy = RetryPolicy::default();
        let out = mb.nack_many(&jobs, "503", &policy, 1_000).unwrap();
        assert_eq!(out.len(), 2, "the acked job is skipped");
        assert!(out.iter().all(|(_, o)| matches!(
            o,
            NackOutcome::Retry { not_before_ms } if (1_000..=2_000).contains(not_before_ms)
        )));
        let d = mb.depth().unwrap();
        assert_eq!((d.pending, d.leased, d.delayed), (0, 0, 2));
        let again = mb.lease(5, 2_000).unwrap();
        assert_eq!(keys(&again), ["a", "b"]);
        assert!(
            again
                .iter()
                .all(|j| j.attempts == 1 && j.last_error.as_deref() == Some("503"))
        );
    }

    #[test]
    fn nack_of_an_acked_job_is_job_not_found() {
        let (_d, store) = open();
        let mb = store.mailbox("m");
        mb.enqueue(Priority::Normal, "a", b"").unwrap();
        let job = mb.lease(1, 0).unwrap().remove(0);
        mb.ack(&job).unwrap();
        mb.ack(&job).unwrap(); // idempotent
        let err = mb.nack(&job, "e", &RetryPolicy::default(), 0).unwrap_err();
        assert!(matches!(err, StoreError::JobNotFound { .. }), "{err:?}");
    }

    #[test]
    fn requeue_dead_resets_attempts_and_skips_keys_pending_again() {
        let (_d, store) = open();
        let mb = store.mailbox("m");
        let policy = RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        };
        mb.enqueue(Priority::Normal, "a", b"").unwrap();
        mb.enqueue(Priority::Normal, "b", b"").unwrap();
        for job in mb.lease(2, 0).unwrap() {
            assert_eq!(
                mb.nack(&job, "e", &policy, 0).unwrap(),
                NackOutcome::DeadLettered
            );
        }
        mb.enqueue(Priority::Normal, "b", b"fresh").unwrap();
        assert_eq!(mb.requeue_dead().unwrap(), 1);
        let jobs = mb.lease(10, 0).unwrap();
        assert_eq!(keys(&jobs), ["a", "b"]);
        assert_eq!(jobs[0].attempts, 0);
        assert_eq!(jobs[1].payload, b"fresh");
        assert_eq!(mb.depth().unwrap().dead, 0);
    }

    #[test]
    fn clear_removes_everything_of_one_mailbox_only() {
        let (_d, store) = open();
        let mb = store.mailbox("m");
        let other = store.mailbox("other");
        other.enqueue(Priority::Normal, "x", b"").unwrap();
        for i in 0..1200 {
            mb.enqueue(Priority::Normal, &format!("k{i}"), b"").unwrap();
        }
        let leased = mb.lease(2, 0).unwrap();
        mb.nack(&leased[0], "e", &RetryPolicy::default(), 0)
            .unwrap();
        mb.nack(
            &leased[1],
            "e",
            &RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            },
            0,
        )
        .unwrap();
        mb.lease(3, 0).unwrap();
        mb.clear().unwrap();
        assert_eq!(mb.depth().unwrap(), QueueDepth::default());
        assert!(matches!(
            mb.enqueue(Priority::Normal, "k5", b"").unwrap(),
            EnqueueOutcome::Enqueued(_)
        ));
        assert_eq!(other.depth().unwrap().pending, 1);
    }

    #[test]
    fn corrupt_job_value_is_a_typed_error() {
        let (_d, store) = open();
        let mb = store.mailbox("m");
        mb.enqueue(Priority::Normal, "a", b"").unwrap();
        let jobs = store.internal(Internal::Jobs);
        let (k, _) = jobs.iter().next().unwrap().unwrap();
        jobs.insert(k, &b"\x01garbage-that-is-not-a-record"[..])
            .unwrap();
        let err = mb.lease(1, 0).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    }

    #[test]
    fn error_text_is_truncated_on_a_char_boundary() {
        let long = "é".repeat(MAX_ERROR_LEN);
        let t = truncate_error(&long);
        assert!(t.len() <= MAX_ERROR_LEN + '…'.len_utf8());
        assert!(t.ends_with('…'));
    }
}
