//! The scrape: refreshes the registry from the daemon's current state, then encodes it.
//!
//! Gauges are rebuilt from the status snapshot each time (an account removed by a reload
//! disappears from them). Counters only grow: feed events are counted by reading the feed
//! after the last sequence counted (starting where the feed stood when the daemon started),
//! quota units and restarts by the difference from the previous scrape.

use super::{Metrics, labels};
use crate::daemon_core::DaemonCore;
use crate::service::health;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Most feed events counted per scrape, so one scrape after a huge import stays quick; the
/// rest are counted by the next scrapes.
const FEED_EVENTS_PER_SCRAPE: usize = 200_000;
const FEED_CHUNK: usize = 2_000;
const QUOTA_WINDOW: Duration = Duration::from_secs(60);

/// What the collector remembers between scrapes.
#[derive(Debug, Default)]
pub struct ScrapeCursor {
    /// Last feed sequence counted; `None` until the daemon sets the starting point.
    feed_seq: Option<u64>,
    /// Last seen units spent per account, and samples within the trailing minute.
    quota: BTreeMap<String, QuotaSamples>,
    /// Last seen restart count per account.
    restarts: BTreeMap<String, u32>,
}

#[derive(Debug, Default)]
struct QuotaSamples {
    last_units: u64,
    samples: VecDeque<(Instant, u64)>,
}

impl QuotaSamples {
    /// Records a sample and returns the units spent within the trailing window.
    fn spent_in_window(&mut self, now: Instant, units: u64) -> u64 {
        self.samples.push_back((now, units));
        // Keep one sample older than the window as the baseline.
        while self.samples.len() > 1
            && self
                .samples
                .get(1)
                .is_some_and(|(t, _)| now.duration_since(*t) >= QUOTA_WINDOW)
        {
            self.samples.pop_front();
        }
        let base = self.samples.front().map(|(_, u)| *u).unwrap_or(units);
        units.saturating_sub(base)
    }
}

impl Metrics {
    /// Counts feed events from `seq` on (the daemon calls this once at start).
    pub fn start_feed_at(&self, seq: u64) {
        let mut cursor = self.lock_cursor();
        if cursor.feed_seq.is_none() {
            cursor.feed_seq = Some(seq);
        }
    }

    fn lock_cursor(&self) -> std::sync::MutexGuard<'_, ScrapeCursor> {
        self.cursor
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn count_feed(&self, core: &DaemonCore) {
        let feed = core.store().feed();
        let mut cursor = self.lock_cursor();
        let mut after = *cursor.feed_seq.get_or_insert_with(|| feed.durable_seq());
        let mut counted = 0;
        while counted < FEED_EVENTS_PER_SCRAPE {
            let batch = match feed.read_after(after, FEED_CHUNK) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "Metrics: cannot read the feed.");
                    break;
                }
            };
            if batch.is_empty() {
                break;
            }
            for ev in &batch {
                after = ev.seq;
                self.feed_events
                    .get_or_create(&labels(&[("account", &ev.account), ("kind", &ev.kind)]))
                    .inc();
                if ev.kind == "message.added" {
                    self.messages_synced
                        .get_or_create(&labels(&[("account", &ev.account)]))
                        .inc();
                }
            }
            counted += batch.len();
        }
        cursor.feed_seq = Some(after);
    }

    fn count_quota(&self) {
        let ports: Vec<_> = self
            .ports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter_map(|(id, p)| Some((id.clone(), p.upgrade()?)))
            .collect();
        self.quota_limit.clear();
        self.quota_remaining.clear();
        let now = Instant::now();
        let mut cursor = self.lock_cursor();
        for (account, port) in ports {
            let Some((stats, limits)) = port.quota_snapshot() else {
                continue;
            };
            let l = labels(&[("account", &account)]);
            let samples = cursor.quota.entry(account).or_default();
            if stats.units_spent > samples.last_units {
                self.quota_used
                    .get_or_create(&l)
                    .inc_by(stats.units_spent - samples.last_units);
            } else {
                // Touch it so the series exists from the first scrape.
                let _ = self.quota_used.get_or_create(&l);
            }
            samples.last_units = stats.units_spent;
            let spent = samples.spent_in_window(now, stats.units_spent);
            let limit = u64::from(limits.units_per_minute);
            self.quota_limit
                .get_or_create(&l)
                .set(i64::try_from(limit).unwrap_or(i64::MAX));
            self.quota_remaining
                .get_or_create(&l)
                .set(i64::try_from(limit.saturating_sub(spent)).unwrap_or(i64::MAX));
        }
    }

    fn fill_from_status(&self, core: &DaemonCore, status: &mailsync_actors::status::DaemonStatus) {
        self.queue_depth.clear();
        self.dead_letters.clear();
        self.last_sync_age.clear();
        self.delivery.clear();
        self.account_health.clear();
        self.consumer_lag.clear();
        self.imap_folder_messages.clear();
        self.imap_folder_remaining.clear();
        self.uptime
            .get_or_create(&Vec::new())
            .set(i64::try_from(status.uptime_seconds).unwrap_or(i64::MAX));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            self.runtime_tasks
                .get_or_create(&Vec::new())
                .set(i64::try_from(rt.metrics().num_alive_tasks()).unwrap_or(i64::MAX));
        }
        self.disk_full
            .get_or_create(&Vec::new())
            .set(i64::from(status.degraded.is_some()));
        let now_ms = mailsync_actors::spec::now_ms();
        let mut cursor = self.lock_cursor();
        for a in &status.accounts {
            let id = a.account.as_str();
            for q in &a.queues {
                for (state, n) in [
                    ("pending", q.pending),
                    ("leased", q.leased),
                    ("delayed", q.delayed),
                ] {
                    self.queue_depth
                        .get_or_create(&labels(&[
                            ("account", id),
                            ("mailbox", &q.name),
                            ("state", state),
                        ]))
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                }
                self.dead_letters
                    .get_or_create(&labels(&[("account", id), ("mailbox", &q.name)]))
                    .set(i64::try_from(q.dead).unwrap_or(i64::MAX));
            }
            if let Some(last) = a.last_sync_ms {
                self.last_sync_age
                    .get_or_create(&labels(&[("account", id)]))
                    .set(now_ms.saturating_sub(last) as f64 / 1000.0);
            }
            let mode = match a.delivery.as_deref() {
                Some(d) if d.starts_with("degraded") => "degraded",
                Some(d) if d.contains("push") => "push",
                _ => "polling",
            };
            for m in ["push", "polling", "degraded"] {
                self.delivery
                    .get_or_create(&labels(&[("account", id), ("mode", m)]))
                    .set(i64::from(m == mode));
            }
            let h = health::account_health(a).health;
            for state in [
                health::Health::Active,
                health::Health::Degraded,
                health::Health::Disconnected,
                health::Health::Failed,
            ] {
                self.account_health
                    .get_or_create(&labels(&[("account", id), ("health", state.as_str())]))
                    .set(i64::from(h == state));
            }
            let seen = cursor.restarts.entry(id.to_string()).or_insert(0);
            let counter = self.restarts.get_or_create(&labels(&[("account", id)]));
            if a.restarts > *seen {
                counter.inc_by(u64::from(a.restarts - *seen));
            }
            // The status counts restarts within the budget window; it may drop back.
            *seen = a.restarts;
            for f in a.imap.iter().flat_map(|i| &i.folders) {
                let l = labels(&[("account", id), ("folder", &f.name)]);
                self.imap_folder_messages
                    .get_or_create(&l)
                    .set(i64::try_from(f.messages).unwrap_or(i64::MAX));
                let remaining = f
                    .progress
                    .as_ref()
                    .map_or(0, |p| p.total.saturating_sub(p.done));
                self.imap_folder_remaining
                    .get_or_create(&l)
                    .set(i64::try_from(remaining).unwrap_or(i64::MAX));
            }
        }
        drop(cursor);
        if let Some(list) = crate::service::status_json::consumers_json(core).as_array() {
            for c in list {
                if let (Some(name), Some(lag)) = (
                    c.get("consumer").and_then(|v| v.as_str()),
                    c.get("lag").and_then(|v| v.as_u64()),
                ) {
                    self.consumer_lag
                        .get_or_create(&labels(&[("consumer", name)]))
                        .set(i64::try_from(lag).unwrap_or(i64::MAX));
                }
            }
        }
    }
}

/// Refreshes every metric from the daemon and returns the text exposition.
pub async fn scrape(core: &DaemonCore) -> String {
    let metrics = core.service().metrics().clone();
    match core.status().await {
        Ok(status) => metrics.fill_from_status(core, &status),
        Err(e) => tracing::warn!(error = %e, "Metrics: no status snapshot; gauges kept."),
    }
    metrics.count_feed(core);
    metrics.count_quota();
    metrics.encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_window_counts_units_of_the_trailing_minute() {
        let mut q = QuotaSamples::default();
        let t0 = Instant::now();
        assert_eq!(q.spent_in_window(t0, 100), 0);
        assert_eq!(q.spent_in_window(t0 + Duration::from_secs(30), 400), 300);
        // 70 s later the first sample is past the window; the 30 s one is the baseline.
        assert_eq!(q.spent_in_window(t0 + Duration::from_secs(100), 450), 50);
    }
}
