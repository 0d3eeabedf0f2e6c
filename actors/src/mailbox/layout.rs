//! The mailbox trees' key layout (see the module doc of [`super`]) and the queue operations
//! that run inside a caller's transaction: enqueue (deduped), ack, nack (delay or dead letter),
//! plus the small helpers the handle's operations share (key parsing, error truncation).

use super::{
    EnqueueOutcome, Job, JobId, JobRecord, MAX_ERROR_LEN, NackOutcome, PendingRef, Priority,
};
use crate::backoff::RetryPolicy;
use crate::store::{Internal, JOB_SEQ, StoreError, StoreTx, TxError, decode_in, encode};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

pub(super) fn job_key(prefix: &[u8], priority: Priority, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 9);
    k.extend_from_slice(prefix);
    k.push(priority.key_byte());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub(super) fn delayed_key(prefix: &[u8], not_before_ms: u64, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 16);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&not_before_ms.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub(super) fn dead_key(prefix: &[u8], seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 8);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub(super) fn pending_key(prefix: &[u8], key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + key.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(key.as_bytes());
    k
}

/// Where the job a pending ref points to lives.
pub(super) fn location(prefix: &[u8], r: &PendingRef) -> (Internal, Vec<u8>) {
    match r.delayed_until {
        Some(t) => (Internal::Delayed, delayed_key(prefix, t, r.seq)),
        None => (Internal::Jobs, job_key(prefix, r.priority, r.seq)),
    }
}

pub(super) fn be_u64(bytes: &[u8], context: &str) -> Result<u64, StoreError> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StoreError::corrupt(context, "bad key length"))?;
    Ok(u64::from_be_bytes(arr))
}

/// Parses the tail (after the prefix) of a `jobs` key.
pub(super) fn parse_job_tail(tail: &[u8]) -> Result<(Priority, u64), StoreError> {
    let Some((&pb, seq)) = tail.split_first() else {
        return Err(StoreError::corrupt("jobs key", "too short"));
    };
    let priority = Priority::from_key_byte(pb)
        .ok_or_else(|| StoreError::corrupt("jobs key", format!("priority byte {pb}")))?;
    Ok((priority, be_u64(seq, "jobs key")?))
}

pub(super) fn truncate_error(error: &str) -> String {
    if error.len() <= MAX_ERROR_LEN {
        return error.to_owned();
    }
    let mut end = MAX_ERROR_LEN;
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &error[..end])
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub(super) fn get_pending(tx: &StoreTx<'_>, pk: &[u8]) -> Result<Option<PendingRef>, TxError> {
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
    tx.job_insert(Internal::Jobs, &job_key(&p, priority, seq), encode(&rec))?;
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
    tx.job_remove(Internal::Jobs, &job_key(&p, job.priority, job.id.0))?;
    let pk = pending_key(&p, &job.key);
    if let Some(r) = get_pending(tx, &pk)?
        && r.seq == job.id.0
    {
        if let (Internal::Delayed, loc) = location(&p, &r) {
            tx.job_remove(Internal::Delayed, &loc)?;
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
    tx.job_remove(Internal::Jobs, &jk)?;
    let pk = pending_key(&p, &rec.key);
    let ours = get_pending(tx, &pk)?.is_some_and(|r| r.seq == job.id.0);
    if policy.exhausted(rec.attempts) {
        if ours {
            tx.tree(Internal::PendingKeys).remove(pk)?;
        }
        tx.job_insert(Internal::Dead, &dead_key(&p, job.id.0), encode(&rec))?;
        return Ok(NackOutcome::DeadLettered);
    }
    let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
    let not_before_ms = now_ms.saturating_add(delay_ms);
    rec.not_before_ms = not_before_ms;
    tx.job_insert(
        Internal::Delayed,
        &delayed_key(&p, not_before_ms, job.id.0),
        encode(&rec),
    )?;
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
