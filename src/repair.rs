//! Repair commands over the control socket: what a person needs after an outage or a bad
//! item, without touching sled by hand.
//!
//! * `dead ACCOUNT` — the dead-lettered jobs of every mailbox of the account (id, mailbox,
//!   key, attempts, last error).
//! * `requeue ACCOUNT [JOB]` — one dead job (or all of them) back to its ready queue with its
//!   attempts reset, flushed, then the account is woken (`sync-now`).
//! * `consumers` — every registered feed consumer with its acknowledged position and its lag
//!   (events durable in the feed after it).
//! * `unregister CONSUMER` — forget a consumer so it no longer holds back pruning.
//! * `ack` — checked: acknowledging a sequence beyond the newest durable event (so beyond
//!   anything ever delivered) is an error; acknowledging is the only way a consumer is
//!   registered or moved (`events --from N` never acknowledges).
//!
//! Pure functions over the [`Store`]; the admin handler turns their results into replies.

use mailsync_actors::jobs::{ChildKind, mailbox_name};
use mailsync_actors::mailbox::JobId;
use mailsync_actors::model::AccountId;
use mailsync_actors::store::{Store, StoreError};
use serde::Serialize;

/// The most dead jobs listed per mailbox.
const LIST_LIMIT: usize = 1_000;

/// One dead-lettered job, as `ctl dead` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeadJob {
    /// The job id (`requeue ACCOUNT ID` takes it).
    pub id: u64,
    /// The mailbox (`<account>/ingest`, ...).
    pub mailbox: String,
    /// The idempotency key (`ingest:<account>:<message id>`).
    pub key: String,
    /// How many times it failed.
    pub attempts: u32,
    /// The last error, secret-free.
    pub last_error: Option<String>,
    /// When it was enqueued, ms since the epoch.
    pub enqueued_ms: u64,
}

/// One feed consumer, as `ctl consumers` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConsumerLag {
    /// Its name.
    pub consumer: String,
    /// The last sequence it acknowledged.
    pub acked: u64,
    /// Durable events after `acked`.
    pub lag: u64,
}

/// Why a repair command failed.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `requeue` named a job that is not dead in this account.
    #[error("account {account}: job {job} is not a dead-lettered job")]
    NoSuchDeadJob {
        /// Account id.
        account: String,
        /// The job id asked for.
        job: u64,
    },
    /// `ack` beyond the newest durable event.
    #[error(
        "cannot acknowledge {seq} for {consumer:?}: the newest event is {newest}; nothing beyond it was delivered"
    )]
    AckBeyondDelivered {
        /// Consumer name.
        consumer: String,
        /// The sequence asked for.
        seq: u64,
        /// The newest durable sequence.
        newest: u64,
    },
    /// `unregister` named no registered consumer.
    #[error("no consumer named {0:?} is registered")]
    UnknownConsumer(String),
}

fn mailboxes(account: &str) -> Vec<String> {
    let id = AccountId(account.to_string());
    ChildKind::ALL
        .iter()
        .map(|k| mailbox_name(&id, *k))
        .collect()
}

/// The dead jobs of `account`, oldest first per mailbox.
pub fn dead_jobs(store: &Store, account: &str) -> Result<Vec<DeadJob>, RepairError> {
    let mut out = Vec::new();
    for name in mailboxes(account) {
        for job in store.mailbox(&name).dead_letters(LIST_LIMIT)? {
            out.push(DeadJob {
                id: job.id.0,
                mailbox: job.mailbox,
                key: job.key,
                attempts: job.attempts,
                last_error: job.last_error,
                enqueued_ms: job.enqueued_ms,
            });
        }
    }
    Ok(out)
}

/// Moves one dead job (`job`) or all of them back to their queues; flushed. Returns how many
/// were requeued.
pub fn requeue(store: &Store, account: &str, job: Option<u64>) -> Result<usize, RepairError> {
    let mut n = 0;
    for name in mailboxes(account) {
        let mb = store.mailbox(&name);
        match job {
            Some(id) => {
                if mb.requeue_dead_job(JobId(id))? {
                    n += 1;
                }
            }
            None => n += mb.requeue_dead()?,
        }
    }
    if let (Some(id), 0) = (job, n) {
        return Err(RepairError::NoSuchDeadJob {
            account: account.to_string(),
            job: id,
        });
    }
    store.flush()?;
    Ok(n)
}

/// Every registered consumer with its lag behind the newest durable event.
pub fn consumers(store: &Store) -> Result<Vec<ConsumerLag>, RepairError> {
    let feed = store.feed();
    let newest = feed.durable_seq();
    Ok(feed
        .consumers()?
        .into_iter()
        .map(|(consumer, acked)| ConsumerLag {
            consumer,
            acked,
            lag: newest.saturating_sub(acked),
        })
        .collect())
}

/// Forgets a consumer.
pub fn unregister(store: &Store, consumer: &str) -> Result<(), RepairError> {
    let feed = store.feed();
    if feed.consumer_cursor(consumer)?.is_none() {
        return Err(RepairError::UnknownConsumer(consumer.to_string()));
    }
    feed.unregister_consumer(consumer)?;
    Ok(())
}

/// An explicit acknowledgement: refused beyond the newest durable event; registers a consumer
/// that is not registered yet at `seq` (acknowledging is how a consumer says where it is).
pub fn ack(store: &Store, consumer: &str, seq: u64) -> Result<(), RepairError> {
    let feed = store.feed();
    let newest = feed.durable_seq();
    if seq > newest {
        return Err(RepairError::AckBeyondDelivered {
            consumer: consumer.to_string(),
            seq,
            newest,
        });
    }
    if feed.consumer_cursor(consumer)?.is_none() {
        feed.register_consumer(consumer, seq)?;
        return Ok(());
    }
    feed.ack_consumer(consumer, seq)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailsync_actors::backoff::RetryPolicy;
    use mailsync_actors::mailbox::Priority;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        (dir, s)
    }

    #[test]
    fn dead_jobs_are_listed_and_requeued_one_or_all() {
        let (_d, s) = store();
        let mb = s.mailbox("gm/ingest");
        let policy = RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        };
        for key in ["ingest:gm:a", "ingest:gm:b"] {
            mb.enqueue(Priority::Backfill, key, key.as_bytes()).unwrap();
        }
        for job in mb.lease(10, u64::MAX / 2).unwrap() {
            mb.nack(&job, "malformed", &policy, 2).unwrap();
        }
        let dead = dead_jobs(&s, "gm").unwrap();
        assert_eq!(dead.len(), 2);
        assert_eq!(dead[0].last_error.as_deref(), Some("malformed"));
        assert!(dead_jobs(&s, "other").unwrap().is_empty());
        assert!(matches!(
            requeue(&s, "gm", Some(999_999)),
            Err(RepairError::NoSuchDeadJob { .. })
        ));
        assert_eq!(requeue(&s, "gm", Some(dead[0].id)).unwrap(), 1);
        assert_eq!(dead_jobs(&s, "gm").unwrap().len(), 1);
        assert_eq!(requeue(&s, "gm", None).unwrap(), 1);
        assert!(dead_jobs(&s, "gm").unwrap().is_empty());
        assert_eq!(mb.depth().unwrap().pending, 2);
    }

    #[test]
    fn ack_is_checked_and_explicit_and_consumers_can_be_unregistered() {
        let (_d, s) = store();
        let feed = s.feed();
        assert!(matches!(
            ack(&s, "x", 1),
            Err(RepairError::AckBeyondDelivered { newest: 0, .. })
        ));
        assert_eq!(
            feed.consumer_cursor("x").unwrap(),
            None,
            "a refused ack registers nothing"
        );
        ack(&s, "x", 0).unwrap();
        assert_eq!(consumers(&s).unwrap().len(), 1);
        unregister(&s, "x").unwrap();
        assert!(consumers(&s).unwrap().is_empty());
        assert!(matches!(
            unregister(&s, "x"),
            Err(RepairError::UnknownConsumer(_))
        ));
    }
}
