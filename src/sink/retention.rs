//! Feed retention: a task that prunes the change feed at start and then every hour.
//!
//! It owns nothing but the schedule: [`mailsync_actors::feed::Feed::prune`] decides what may go
//! (events acknowledged by every registered consumer *and* older than `[feed] retention_days`;
//! an event some consumer has not acknowledged is never pruned, however old).

use std::time::Duration;

use mailsync_actors::store::{Store, StoreError};
use tokio_util::sync::CancellationToken;

use super::now_ms;

/// Time between two pruning runs.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// Prunes once: removes acknowledged events older than `retention` as of `now_ms`, then
/// flushes. Returns how many events were removed.
pub fn prune_once(store: &Store, retention: Duration, now_ms: u64) -> Result<usize, StoreError> {
    let removed = store.feed().prune(retention, now_ms)?;
    if removed > 0 {
        store.flush()?;
    }
    Ok(removed)
}

/// Prunes at start and every [`PRUNE_INTERVAL`] until `cancel` fires.
pub async fn run(store: Store, retention: Duration, cancel: CancellationToken) {
    loop {
        let s = store.clone();
        match tokio::task::spawn_blocking(move || prune_once(&s, retention, now_ms())).await {
            Ok(Ok(0)) => tracing::debug!(sink = "retention", "Nothing to prune from the feed."),
            Ok(Ok(removed)) => {
                tracing::info!(
                    sink = "retention",
                    removed,
                    "Pruned old acknowledged feed events."
                );
            }
            Ok(Err(e)) => {
                tracing::warn!(sink = "retention", error = %e, "Pruning the feed failed.")
            }
            Err(e) => tracing::warn!(sink = "retention", error = %e, "The pruning task failed."),
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(PRUNE_INTERVAL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailsync_actors::feed::NewEvent;

    const DAY_MS: u64 = 86_400_000;

    fn append(store: &Store, key: &str, ts_ms: u64) {
        store
            .feed()
            .append(NewEvent {
                account: "a".into(),
                kind: "message.added".into(),
                key: key.into(),
                payload: vec![],
                ts_ms,
            })
            .unwrap();
    }

    #[test]
    fn prunes_only_old_events_every_consumer_acked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for i in 1..=6u64 {
            append(&store, &format!("k{i}"), i * DAY_MS);
        }
        store.flush().unwrap();
        let feed = store.feed();
        feed.register_consumer("maildir", 0).unwrap();
        feed.register_consumer("webhook:0", 0).unwrap();
        feed.ack_consumer("maildir", 6).unwrap();
        feed.ack_consumer("webhook:0", 3).unwrap();
        let week = Duration::from_secs(7 * 86_400);
        let far_future = 1000 * DAY_MS;
        // Nothing is old enough yet.
        assert_eq!(prune_once(&store, week, 7 * DAY_MS).unwrap(), 0);
        // All old, but webhook:0 has acked only up to 3: 4..=6 stay.
        assert_eq!(prune_once(&store, week, far_future).unwrap(), 3);
        let left: Vec<u64> = feed
            .read_after(0, 100)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(left, [4, 5, 6]);
        // Never acked (a dead webhook): never pruned, however old.
        assert_eq!(prune_once(&store, Duration::ZERO, u64::MAX).unwrap(), 0);
        feed.ack_consumer("webhook:0", 6).unwrap();
        assert_eq!(prune_once(&store, week, far_future).unwrap(), 3);
        assert!(feed.read_after(0, 100).unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_task_prunes_at_start_and_stops_on_cancel() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        append(&store, "old", 1);
        store.flush().unwrap();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(store.clone(), Duration::from_secs(1), cancel.clone()));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !store.feed().read_after(0, 10).unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "never pruned");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("stops on cancel")
            .unwrap();
    }
}
