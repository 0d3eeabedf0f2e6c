//! Property test: random enqueue / lease / ack / nack / release / clock / crash sequences run
//! against a [`DurableMailbox`] and a tiny in-memory model, which must agree after every step.
//!
//! Checked invariants: every lease returns exactly the model's next jobs (highest priority
//! first, FIFO within a priority, due jobs only, nothing already leased), so an acked job never
//! reappears and a job is never lost; enqueue dedupes by key while a job is pending (ready,
//! leased or delayed); depth counts agree; a crash (flush, drop, reopen from disk) turns every
//! lease back into a pending job and loses nothing flushed.

use std::collections::BTreeSet;
use std::time::Duration;

use mailsync_actors::backoff::RetryPolicy;
use mailsync_actors::mailbox::{EnqueueOutcome, Job, JobId, NackOutcome, Priority};
use mailsync_actors::store::Store;
use proptest::prelude::*;
use rand::SeedableRng;

const MAILBOX: &str = "acct1/ingest";

#[derive(Clone, Debug)]
enum Op {
    Enqueue { priority: Priority, key: u8 },
    Lease { max: usize },
    Ack { pick: usize },
    AckMany { n: usize },
    Nack { pick: usize },
    Release { pick: usize },
    Advance { ms: u64 },
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    let priority = prop_oneof![
        Just(Priority::Backfill),
        Just(Priority::Normal),
        Just(Priority::RealTime)
    ];
    prop_oneof![
        6 => (priority, 0u8..8).prop_map(|(priority, key)| Op::Enqueue { priority, key }),
        4 => (1usize..4).prop_map(|max| Op::Lease { max }),
        3 => any::<usize>().prop_map(|pick| Op::Ack { pick }),
        1 => (1usize..4).prop_map(|n| Op::AckMany { n }),
        3 => any::<usize>().prop_map(|pick| Op::Nack { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Release { pick }),
        2 => (0u64..3_000).prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Crash),
    ]
}

#[derive(Clone, Debug)]
struct ModelJob {
    id: JobId,
    key: String,
    priority: Priority,
    payload: Vec<u8>,
    attempts: u32,
    not_before: u64,
    /// Nacked and not yet moved back by a lease.
    delayed: bool,
}

#[derive(Default)]
struct Model {
    jobs: Vec<ModelJob>,
    leased: BTreeSet<JobId>,
    acked: BTreeSet<JobId>,
    dead: Vec<JobId>,
    last_id: Option<JobId>,
    now: u64,
}

impl Model {
    fn pending_with_key(&self, key: &str) -> Option<JobId> {
        self.jobs.iter().find(|j| j.key == key).map(|j| j.id)
    }

    fn expected_lease(&mut self, max: usize) -> Vec<JobId> {
        for j in &mut self.jobs {
            if j.delayed && j.not_before <= self.now {
                j.delayed = false;
            }
        }
        let mut ready: Vec<&ModelJob> = self
            .jobs
            .iter()
            .filter(|j| !j.delayed && !self.leased.contains(&j.id))
            .collect();
        ready.sort_by_key(|j| (std::cmp::Reverse(j.priority), j.id));
        ready.into_iter().take(max).map(|j| j.id).collect()
    }

    fn job(&self, id: JobId) -> &ModelJob {
        self.jobs.iter().find(|j| j.id == id).expect("model job")
    }

    fn remove(&mut self, id: JobId) -> ModelJob {
        let pos = self
            .jobs
            .iter()
            .position(|j| j.id == id)
            .expect("model job");
        self.leased.remove(&id);
        self.jobs.remove(pos)
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let policy = RetryPolicy {
        base: Duration::from_millis(500),
        cap: Duration::from_secs(2),
        max_attempts: 3,
        ..RetryPolicy::default()
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut store = Some(Store::open(dir.path()).unwrap());
    let mut mb = store.as_ref().unwrap().mailbox(MAILBOX);
    let mut model = Model {
        now: 1_000_000,
        ..Model::default()
    };
    // Jobs handed out by the real mailbox and not yet acked/nacked/released, by id.
    let mut held: Vec<Job> = Vec::new();
    let mut serial = 0u32;

    for op in ops {
        match op {
            Op::Enqueue { priority, key } => {
                let key = format!("k{key}");
                serial += 1;
                let payload = format!("{key}:{serial}").into_bytes();
                let out = mb.enqueue(priority, &key, &payload).unwrap();
                match (model.pending_with_key(&key), out) {
                    (Some(id), EnqueueOutcome::Duplicate(got)) => prop_assert_eq!(id, got),
                    (None, EnqueueOutcome::Enqueued(id)) => {
                        prop_assert!(model.last_id.is_none_or(|last| id > last));
                        prop_assert!(!model.acked.contains(&id));
                        model.last_id = Some(id);
                        model.jobs.push(ModelJob {
                            id,
                            key,
                            priority,
                            payload,
                            attempts: 0,
                            not_before: 0,
                            delayed: false,
                        });
                    }
                    (expected, got) => {
                        prop_assert!(false, "enqueue {key}: model {expected:?}, real {got:?}")
                    }
                }
            }
            Op::Lease { max } => {
                let expected = model.expected_lease(max);
                let got = mb.lease(max, model.now).unwrap();
                let got_ids: Vec<JobId> = got.iter().map(|j| j.id).collect();
                prop_assert_eq!(&got_ids, &expected);
                for job in got {
                    let m = model.job(job.id);
                    prop_assert_eq!(&job.key, &m.key);
                    prop_assert_eq!(&job.payload, &m.payload);
                    prop_assert_eq!(job.priority, m.priority);
                    prop_assert_eq!(job.attempts, m.attempts);
                    prop_assert_eq!(job.mailbox.as_str(), MAILBOX);
                    model.leased.insert(job.id);
                    held.push(job);
                }
            }
            Op::Ack { pick } if !held.is_empty() => {
                let job = held.remove(pick % held.len());
                mb.ack(&job).unwrap();
                model.remove(job.id);
                model.acked.insert(job.id);
            }
            Op::AckMany { n } if !held.is_empty() => {
                let jobs: Vec<Job> = held.drain(..n.min(held.len())).collect();
                mb.ack_many(&jobs).unwrap();
                for job in jobs {
                    model.remove(job.id);
                    model.acked.insert(job.id);
                }
            }
            Op::Nack { pick } if !held.is_empty() => {
                let job = held.remove(pick % held.len());
                let out = mb
                    .nack_with_rng(&job, "boom", &policy, model.now, &mut rng)
                    .unwrap();
                model.leased.remove(&job.id);
                let attempts = model.job(job.id).attempts + 1;
                match out {
                    NackOutcome::DeadLettered => {
                        prop_assert_eq!(attempts, policy.max_attempts);
                        model.remove(job.id);
                        model.dead.push(job.id);
                    }
                    NackOutcome::Retry { not_before_ms } => {
                        prop_assert!(attempts < policy.max_attempts);
                        let ceiling = policy.ceiling(attempts).as_millis() as u64;
                        prop_assert!((model.now..=model.now + ceiling).contains(&not_before_ms));
                        let m = model
                            .jobs
                            .iter_mut()
                            .find(|j| j.id == job.id)
                            .expect("model job");
                        m.attempts = attempts;
                        m.not_before = not_before_ms;
                        m.delayed = true;
                    }
                }
            }
            Op::Release { pick } if !held.is_empty() => {
                let job = held.remove(pick % held.len());
                mb.release(&job);
                model.leased.remove(&job.id);
            }
            Op::Advance { ms } => model.now += ms,
            Op::Crash => {
                store.as_ref().unwrap().flush().unwrap();
                drop(mb);
                drop(store.take());
                held.clear();
                model.leased.clear();
                store = Some(Store::open(dir.path()).unwrap());
                mb = store.as_ref().unwrap().mailbox(MAILBOX);
            }
            Op::Ack { .. } | Op::AckMany { .. } | Op::Nack { .. } | Op::Release { .. } => {}
        }

        let depth = mb.depth().unwrap();
        let delayed = model.jobs.iter().filter(|j| j.delayed).count();
        prop_assert_eq!(depth.leased, model.leased.len());
        prop_assert_eq!(depth.delayed, delayed);
        prop_assert_eq!(
            depth.pending,
            model.jobs.len() - delayed - model.leased.len()
        );
        prop_assert_eq!(depth.dead, model.dead.len());
    }

    // Drain: after a crash everything pending comes back exactly once; nothing acked does.
    store.as_ref().unwrap().flush().unwrap();
    drop(mb);
    drop(store.take());
    let store = Store::open(dir.path()).unwrap();
    let mb = store.mailbox(MAILBOX);
    let all: BTreeSet<JobId> = mb
        .lease(10_000, u64::MAX)
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    let expected: BTreeSet<JobId> = model.jobs.iter().map(|j| j.id).collect();
    prop_assert_eq!(&all, &expected);
    prop_assert!(all.is_disjoint(&model.acked));
    let dead: BTreeSet<JobId> = mb
        .dead_letters(10_000)
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    prop_assert_eq!(dead, model.dead.iter().copied().collect::<BTreeSet<_>>());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn mailbox_matches_model_through_crashes(ops in prop::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}
