//! Riding out provider outages: which failures are *transient* (the provider, the network or
//! its rate limiter is the problem, not the item) and the per-child [`Outage`] tracker that
//! turns a run of them into capped, jittered waits and `degraded` reports.
//!
//! Rule (GUIDE: "transient trouble is waited out and shown as `degraded`; only permanent
//! per-item errors are dead-lettered"): a transient failure never touches a job's attempt
//! count. The child hands its leased jobs back untouched, waits `RetryPolicy::delay(n)` for
//! the n-th consecutive failure (full jitter, ceiling doubling up to the policy's cap; a
//! server's Retry-After wins), and tells its AccountActor once that it is degraded and why;
//! the first success after that tells it the child recovered.

use crate::backoff::RetryPolicy;
use crate::error::ApiError;
use crate::jobs::ChildKind;
use crate::report::{self, ChildReport, Reporter};
use std::time::Duration;

/// Whether `err` says nothing about the item itself: network trouble, 5xx, timeouts, rate
/// limits (429 and rate-limit 403s are already `RateLimited`). These never count toward
/// dead-lettering.
pub fn is_transient(err: &ApiError) -> bool {
    matches!(err, ApiError::RateLimited { .. } | ApiError::Transient(_))
}

/// Whether a failure of a *whole request* (not one item of a batch) is an outage: the
/// transient kinds, plus an unparsable response (a proxy's error page, a cut connection),
/// which says nothing about any one item either.
pub fn is_outage(err: &ApiError) -> bool {
    is_transient(err) || matches!(err, ApiError::Malformed(_))
}

/// One child's run of consecutive transient failures.
#[derive(Debug)]
pub struct Outage {
    child: ChildKind,
    failures: u32,
    reported: bool,
}

impl Outage {
    /// No failures yet.
    pub fn new(child: ChildKind) -> Outage {
        Outage {
            child,
            failures: 0,
            reported: false,
        }
    }

    /// Consecutive transient failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records one more transient failure and returns how long to wait before the next call:
    /// the server's Retry-After if it gave one, else a full-jitter delay under the policy's
    /// capped ceiling. Reports `degraded` to the parent on the first failure of a run (and
    /// again with the new reason every 8th, so status keeps the latest error).
    pub fn failed(&mut self, err: &ApiError, policy: &RetryPolicy, parent: &Reporter) -> Duration {
        self.failures = self.failures.saturating_add(1);
        if !self.reported || self.failures.is_multiple_of(8) {
            self.reported = true;
            report::send(
                parent,
                ChildReport::Degraded {
                    child: self.child,
                    reason: err.to_string(),
                },
            );
        }
        err.retry_delay(policy, self.failures)
    }

    /// A call succeeded: the run is over. Reports `recovered` if it had reported `degraded`.
    pub fn succeeded(&mut self, parent: &Reporter) {
        self.failures = 0;
        if self.reported {
            self.reported = false;
            report::send(parent, ChildReport::Recovered { child: self.child });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert!(is_transient(&ApiError::Transient("503".into())));
        assert!(is_transient(&ApiError::RateLimited { retry_after: None }));
        assert!(!is_transient(&ApiError::Malformed("bad".into())));
        assert!(!is_transient(&ApiError::Rejected("400".into())));
        assert!(!is_transient(&ApiError::NotFound));
        assert!(is_outage(&ApiError::Malformed("proxy page".into())));
        assert!(!is_outage(&ApiError::Rejected("400".into())));
    }

    #[tokio::test]
    async fn delays_stay_under_the_cap_and_retry_after_wins() {
        let policy = RetryPolicy::default();
        let (parent, mut rx) = crate::test_support::reporter().await;
        let mut o = Outage::new(ChildKind::Ingest);
        for _ in 0..100 {
            let d = o.failed(&ApiError::Transient("503".into()), &policy, &parent);
            assert!(d <= policy.cap);
        }
        assert_eq!(o.failures(), 100);
        let d = o.failed(
            &ApiError::RateLimited {
                retry_after: Some(Duration::from_secs(7)),
            },
            &policy,
            &parent,
        );
        assert_eq!(d, Duration::from_secs(7));
        o.succeeded(&parent);
        assert_eq!(o.failures(), 0);
        // One `degraded` at the start, a refresh every 8th failure, one `recovered`.
        let mut degraded = 0;
        let mut recovered = 0;
        while let Some(r) = rx.recv().await {
            match r {
                ChildReport::Degraded { .. } => degraded += 1,
                ChildReport::Recovered { .. } => {
                    recovered += 1;
                    break;
                }
                _ => {}
            }
        }
        assert_eq!((degraded, recovered), (1 + 101 / 8, 1));
    }
}
