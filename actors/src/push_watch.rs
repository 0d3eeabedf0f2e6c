//! The push-watch duty of an account: keeps a provider push channel (Gmail `users.watch`)
//! registered and renewed from inside the account's tree, so its calls go through the
//! account's own port and quota gate, its failures show in the account's status and it is
//! restarted with the account.
//!
//! The AccountActor runs [`keep`] as a task it owns (aborted when the actor stops) for a spec
//! with a [`PushWatch`]; the task talks to the actor only with [`ChildReport::WatchFailed`] /
//! [`ChildReport::WatchOk`]. What a registration is (the API call, the stored watch, push
//! health) is the [`PushWatch`] implementation's business (`src/gmail_watch.rs`).

use crate::report::{ChildReport, Reporter, send};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A future returned by a [`PushWatch`].
pub type WatchFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One account's push channel.
pub trait PushWatch: Send + Sync {
    /// How long to wait before the first registration (zero, or until a stored watch that
    /// was adopted needs renewing).
    fn first_delay(&self) -> Duration;
    /// Registers or renews the channel; `Ok` holds the delay until the next renewal, `Err` a
    /// secret-free reason.
    fn renew(&self) -> WatchFuture<'_, Result<Duration, String>>;
    /// The delay after the `failures`-th consecutive failure (1-based).
    fn retry_delay(&self, failures: u32) -> Duration;
}

/// Keeps `watch` alive until the task is aborted, reporting failures and recoveries.
pub async fn keep(watch: Arc<dyn PushWatch>, reporter: Reporter) {
    let mut failures: u32 = 0;
    let mut next = watch.first_delay();
    loop {
        tokio::time::sleep(next).await;
        match watch.renew().await {
            Ok(delay) => {
                if failures > 0 {
                    send(&reporter, ChildReport::WatchOk);
                }
                failures = 0;
                next = delay;
            }
            Err(reason) => {
                failures = failures.saturating_add(1);
                send(&reporter, ChildReport::WatchFailed(reason));
                next = watch.retry_delay(failures);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Fails `fail` times, then succeeds; counts calls.
    struct Flaky {
        fail: Mutex<u32>,
        calls: Mutex<u32>,
    }

    impl PushWatch for Flaky {
        fn first_delay(&self) -> Duration {
            Duration::ZERO
        }
        fn renew(&self) -> WatchFuture<'_, Result<Duration, String>> {
            Box::pin(async move {
                *self.calls.lock().unwrap() += 1;
                let mut fail = self.fail.lock().unwrap();
                if *fail > 0 {
                    *fail -= 1;
                    return Err("HTTP 403 topic".into());
                }
                Ok(Duration::from_secs(3600))
            })
        }
        fn retry_delay(&self, failures: u32) -> Duration {
            Duration::from_secs(u64::from(failures))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_reported_retried_with_backoff_and_the_recovery_too() {
        let (reporter, mut reports) = crate::test_support::reporter().await;
        let flaky = Arc::new(Flaky {
            fail: Mutex::new(2),
            calls: Mutex::new(0),
        });
        let task = tokio::spawn(keep(flaky.clone(), reporter));
        // 0 s: fail; +1 s: fail; +2 s: ok; then the next renewal an hour later.
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(*flaky.calls.lock().unwrap(), 3);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(*flaky.calls.lock().unwrap(), 4);
        task.abort();
        let mut kinds = Vec::new();
        while kinds.len() < 3 {
            let r = tokio::time::timeout(Duration::from_secs(5), reports.recv())
                .await
                .expect("a report")
                .expect("open");
            kinds.push(match r {
                ChildReport::WatchFailed(_) => "failed".to_string(),
                ChildReport::WatchOk => "ok".to_string(),
                other => format!("{other:?}"),
            });
        }
        assert_eq!(kinds, ["failed", "failed", "ok"]);
    }
}
