//! Fair turns at a limiter many accounts share (the OAuth project's quota): [`FairLimiter`]
//! grants units in turn instead of to whichever waiter wakes first, so
//! - real-time work (a push, a poll's new messages: [`WorkClass::RealTime`]) goes before any
//!   account's bulk work (initial sync, backfill, gap recovery: [`WorkClass::Bulk`]) and never
//!   waits behind it, and
//! - bulk work is served round-robin by account, one charge per account per turn, so no
//!   backfilling account is starved by another one that keeps more requests waiting.
//!
//! Only the waiter at the head of the turns asks the limiter; the others sleep until they are
//! the head (each has its own [`Notify`], so a grant wakes one waiter, not all). While nobody
//! waits, a charge that fits is granted at once without queueing.
//!
//! Which class a charge is in comes from the task it runs in: the actor that starts the work
//! runs it inside [`in_class`] (HistorySync real-time, Backfill bulk, Ingest by its jobs'
//! priority); outside any scope a charge is bulk.

use crate::quota_limiter::{QuotaError, UnitLimiter};
use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;

/// Whose turn comes first at a shared limiter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkClass {
    /// Changes happening now: served before any bulk work, first come first served.
    RealTime,
    /// Initial sync, backfill, gap recovery: round-robin by account.
    Bulk,
}

tokio::task_local! {
    static CLASS: WorkClass;
}

/// Runs `work` with its quota charges in `class`.
pub async fn in_class<F: std::future::Future>(class: WorkClass, work: F) -> F::Output {
    CLASS.scope(class, work).await
}

/// The class of the running task's charges ([`WorkClass::Bulk`] outside [`in_class`]).
pub fn current_class() -> WorkClass {
    CLASS.try_with(|c| *c).unwrap_or(WorkClass::Bulk)
}

#[derive(Debug)]
struct Waiting {
    id: u64,
    wake: Arc<Notify>,
}

/// Who waits, in turn order.
#[derive(Debug, Default)]
struct Turns {
    next_id: u64,
    real_time: VecDeque<Waiting>,
    bulk: HashMap<String, VecDeque<Waiting>>,
    /// Accounts with bulk waiters, the next one to be served first.
    rotation: VecDeque<String>,
}

impl Turns {
    fn is_empty(&self) -> bool {
        self.real_time.is_empty() && self.rotation.is_empty()
    }

    fn head(&self) -> Option<&Waiting> {
        self.real_time.front().or_else(|| {
            self.rotation
                .front()
                .and_then(|a| self.bulk.get(a))
                .and_then(VecDeque::front)
        })
    }

    fn push(&mut self, account: &str, class: WorkClass) -> (u64, Arc<Notify>) {
        self.next_id += 1;
        let w = Waiting {
            id: self.next_id,
            wake: Arc::new(Notify::new()),
        };
        let out = (w.id, Arc::clone(&w.wake));
        match class {
            WorkClass::RealTime => self.real_time.push_back(w),
            WorkClass::Bulk => {
                let queue = self.bulk.entry(account.to_owned()).or_default();
                if queue.is_empty() {
                    self.rotation.push_back(account.to_owned());
                }
                queue.push_back(w);
            }
        }
        out
    }

    /// Removes waiter `id` (granted or gone); a bulk account that was served moves to the
    /// back of the rotation. Wakes the new head.
    fn remove(&mut self, id: u64) {
        if let Some(i) = self.real_time.iter().position(|w| w.id == id) {
            self.real_time.remove(i);
        } else if let Some((r, account)) = self
            .rotation
            .iter()
            .enumerate()
            .find(|(_, a)| {
                self.bulk
                    .get(*a)
                    .is_some_and(|q| q.iter().any(|w| w.id == id))
            })
            .map(|(r, a)| (r, a.clone()))
        {
            let queue = self.bulk.entry(account.clone()).or_default();
            let served = queue.front().is_some_and(|w| w.id == id);
            queue.retain(|w| w.id != id);
            let more = !queue.is_empty();
            if !more {
                self.bulk.remove(&account);
            }
            self.rotation.remove(r);
            if more {
                if served && r == 0 {
                    self.rotation.push_back(account);
                } else {
                    self.rotation.insert(r, account);
                }
            }
        }
        if let Some(h) = self.head() {
            h.wake.notify_one();
        }
    }
}

/// A limiter shared by many accounts whose units are handed out in fair turns.
#[derive(Debug)]
pub(crate) struct FairLimiter {
    limiter: UnitLimiter,
    turns: Mutex<Turns>,
}

/// Takes a waiter out of the turns if its charge is dropped before it was granted.
struct Leave<'a> {
    turns: &'a Mutex<Turns>,
    id: u64,
    done: bool,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        if !self.done {
            lock(self.turns).remove(self.id);
        }
    }
}

fn lock(turns: &Mutex<Turns>) -> MutexGuard<'_, Turns> {
    turns.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FairLimiter {
    pub(crate) fn new(limiter: UnitLimiter) -> Self {
        Self {
            limiter,
            turns: Mutex::new(Turns::default()),
        }
    }

    pub(crate) fn limiter(&self) -> &UnitLimiter {
        &self.limiter
    }

    /// Waits for `account`'s turn in `class`, then until `units` fit, and spends them.
    pub(crate) async fn take(
        &self,
        account: &str,
        class: WorkClass,
        units: NonZeroU32,
    ) -> Result<(), QuotaError> {
        let (id, wake) = {
            let mut turns = lock(&self.turns);
            if turns.is_empty() && self.limiter.try_n(units)?.is_ok() {
                return Ok(());
            }
            turns.push(account, class)
        };
        let mut leave = Leave {
            turns: &self.turns,
            id,
            done: false,
        };
        loop {
            let wait = {
                let mut turns = lock(&self.turns);
                if turns.head().is_some_and(|h| h.id == id) {
                    match self.limiter.try_n(units) {
                        Ok(Ok(())) => {
                            leave.done = true;
                            turns.remove(id);
                            return Ok(());
                        }
                        Ok(Err(wait)) => Some(wait),
                        Err(e) => {
                            leave.done = true;
                            turns.remove(id);
                            return Err(e);
                        }
                    }
                } else {
                    None
                }
            };
            match wait {
                // The head sleeps until its units fit, or until a real-time waiter takes the
                // head from it (its wake-up is then for the new head, which it passes on).
                Some(w) => {
                    tokio::select! {
                        () = tokio::time::sleep(w.max(Duration::from_millis(1))) => {}
                        () = wake.notified() => {}
                    }
                }
                None => wake.notified().await,
            }
        }
    }
}

#[cfg(test)]
#[path = "quota_fair_tests.rs"]
mod tests;
