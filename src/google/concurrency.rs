//! [`ConcurrencyLimit`]: how many `messages.get` parts one batch may carry, learnt from
//! Google's per-user concurrency refusals (429 "Too many concurrent requests for user",
//! reference gmail-api.md §3.3). Google publishes no number and counts every client of the
//! mailbox, so the client adapts: a batch that had parts refused for concurrency sets the
//! limit to the parts that got through (multiplicative decrease), and every
//! [`CLEAN_BATCHES_PER_STEP`] batches without such a refusal raise it by one part (additive
//! increase) up to the configured batch size. Each probe above the cap costs about one
//! refused part, so refusals stay a small share of the parts sent.

use std::sync::Mutex;

/// Batches without a concurrency refusal before the limit grows by one part.
pub const CLEAN_BATCHES_PER_STEP: u32 = 8;

#[derive(Debug)]
struct State {
    limit: usize,
    clean: u32,
}

/// The adaptive parts-per-batch limit of one Gmail account.
#[derive(Debug)]
pub struct ConcurrencyLimit {
    max: usize,
    state: Mutex<State>,
}

impl ConcurrencyLimit {
    /// Starts at `max` (the configured batch size, ≥ 1).
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        Self {
            max,
            state: Mutex::new(State {
                limit: max,
                clean: 0,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Parts the next batch may carry.
    pub fn current(&self) -> usize {
        self.state().limit
    }

    /// Records a batch of `sent` parts of which `refused` were refused for concurrency.
    pub fn record(&self, sent: usize, refused: usize) {
        let mut s = self.state();
        if refused > 0 {
            s.limit = sent.saturating_sub(refused).clamp(1, self.max);
            s.clean = 0;
        } else if sent >= s.limit {
            s.clean += 1;
            if s.clean >= CLEAN_BATCHES_PER_STEP {
                s.clean = 0;
                s.limit = (s.limit + 1).min(self.max);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrinks_to_what_got_through_then_probes_slowly() {
        let c = ConcurrencyLimit::new(50);
        assert_eq!(c.current(), 50);
        c.record(50, 46);
        assert_eq!(c.current(), 4);
        for _ in 0..CLEAN_BATCHES_PER_STEP - 1 {
            c.record(4, 0);
        }
        assert_eq!(c.current(), 4);
        c.record(4, 0);
        assert_eq!(c.current(), 5);
        c.record(5, 1);
        assert_eq!(c.current(), 4);
        // Short batches (the tail of a job list) say nothing about the limit.
        for _ in 0..20 {
            c.record(2, 0);
        }
        assert_eq!(c.current(), 4);
        c.record(10, 10);
        assert_eq!(c.current(), 1, "never below one part");
    }

    #[test]
    fn a_cap_costs_a_bounded_share_of_refusals() {
        // Simulated server cap of 6 in flight; 2,000 parts to fetch.
        let c = ConcurrencyLimit::new(50);
        let (mut left, mut refused_total, mut sent_total) = (2_000usize, 0usize, 0usize);
        while left > 0 {
            let n = c.current().min(left);
            let refused = n.saturating_sub(6);
            c.record(n, refused);
            left -= n - refused;
            refused_total += refused;
            sent_total += n;
        }
        assert!(
            refused_total * 100 <= sent_total * 10,
            "{refused_total} of {sent_total} refused"
        );
    }
}
