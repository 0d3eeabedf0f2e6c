//! Prometheus metrics: owns the daemon's registry (`prometheus-client`; one `Metrics` per
//! daemon, held by `ServiceState`, never a process-global recorder) and renders it in the
//! Prometheus text format for `GET /metrics` and `mailsync ctl metrics`.
//!
//! Where the numbers come from:
//! - `port`: every account's port is wrapped in a `MeteredPort`, which counts API errors by
//!   class and status, times requests and partial-sync rounds, and exposes the quota gate.
//! - `collect`: at each scrape, the status snapshot fills the gauges (queue depths, dead
//!   letters, consumer lag, last-sync age, delivery mode, account health), the feed is read
//!   from where the last scrape stopped (events synced per account and kind), and quota and
//!   restart counters advance by what changed since the last scrape.
//!
//! Names follow Prometheus conventions: `mailsync_` prefix, base units (seconds), `_total`
//! for counters (added by the encoder).

pub mod collect;
pub mod port;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

pub use port::MeteredPort;

/// A label set: `(name, value)` pairs.
pub type Labels = Vec<(String, String)>;
type Counters = Family<Labels, Counter>;
type Gauges = Family<Labels, Gauge>;
type FloatGauges = Family<Labels, Gauge<f64, AtomicU64>>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// Builds a label set.
pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn request_histogram() -> Histogram {
    // 10 ms … ~40 s.
    Histogram::new(exponential_buckets(0.01, 2.0, 13))
}

fn round_histogram() -> Histogram {
    // 50 ms … ~7 min.
    Histogram::new(exponential_buckets(0.05, 2.0, 14))
}

/// Every metric the daemon exports, and the registry they are encoded from.
pub struct Metrics {
    registry: Registry,
    pub(crate) feed_events: Counters,
    pub(crate) messages_synced: Counters,
    pub(crate) api_errors: Counters,
    pub(crate) api_requests: Histograms,
    pub(crate) sync_rounds: Histograms,
    pub(crate) quota_used: Counters,
    pub(crate) quota_limit: Gauges,
    pub(crate) quota_remaining: Gauges,
    pub(crate) queue_depth: Gauges,
    pub(crate) dead_letters: Gauges,
    pub(crate) consumer_lag: Gauges,
    pub(crate) last_sync_age: FloatGauges,
    pub(crate) delivery: Gauges,
    pub(crate) account_health: Gauges,
    pub(crate) restarts: Counters,
    pub(crate) uptime: Gauges,
    /// Tasks alive in the daemon's async runtime (a leak shows as growth).
    pub(crate) runtime_tasks: Gauges,
    /// 1 while writing waits for space in the data directory (`degraded (disk full)`).
    pub(crate) disk_full: Gauges,
    /// IMAP: messages held per folder.
    pub(crate) imap_folder_messages: Gauges,
    /// IMAP: messages of a folder's initial sync still to fetch.
    pub(crate) imap_folder_remaining: Gauges,
    /// What the collector remembers between scrapes.
    pub(crate) cursor: Mutex<collect::ScrapeCursor>,
    /// The ports, for their quota gates (weak: a removed account's port is dropped).
    pub(crate) ports: Mutex<Vec<(String, std::sync::Weak<MeteredPort>)>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let counters = |r: &mut Registry, name: &str, help: &str| {
            let f = Counters::default();
            r.register(name, help, f.clone());
            f
        };
        let gauges = |r: &mut Registry, name: &str, help: &str| {
            let f = Gauges::default();
            r.register(name, help, f.clone());
            f
        };
        let histograms =
            |r: &mut Registry, name: &str, help: &str, make: fn() -> Histogram| -> Histograms {
                let f = Histograms::new_with_constructor(make);
                r.register(name, help, f.clone());
                f
            };
        let r = &mut registry;
        let feed_events = counters(
            r,
            "mailsync_feed_events",
            "Change-feed events recorded, by account and kind (message.added, labels.changed, ...).",
        );
        let messages_synced = counters(
            r,
            "mailsync_messages_synced",
            "Messages added to the local mirror, by account.",
        );
        let api_errors = counters(
            r,
            "mailsync_api_errors",
            "Provider API calls that failed, by account, error class and HTTP status (as classified by the client).",
        );
        let api_requests = histograms(
            r,
            "mailsync_api_request_duration_seconds",
            "Provider API call durations, by account and method.",
            request_histogram,
        );
        let sync_rounds = histograms(
            r,
            "mailsync_sync_round_duration_seconds",
            "Partial sync rounds (history.list from the stored cursor to the last page), by account.",
            round_histogram,
        );
        let quota_used = counters(
            r,
            "mailsync_quota_units_used",
            "Quota units spent, by account.",
        );
        let quota_limit = gauges(
            r,
            "mailsync_quota_units_per_minute",
            "The per-user quota the account paces itself to, in units per minute.",
        );
        let quota_remaining = gauges(
            r,
            "mailsync_quota_units_remaining",
            "Units left in the trailing minute: the per-minute pace minus units spent in the last 60 s.",
        );
        let queue_depth = gauges(
            r,
            "mailsync_queue_depth",
            "Jobs in a durable mailbox, by account, mailbox and state (pending, leased, delayed).",
        );
        let dead_letters = gauges(
            r,
            "mailsync_dead_letters",
            "Jobs in a mailbox's dead-letter tree, by account and mailbox.",
        );
        let consumer_lag = gauges(
            r,
            "mailsync_feed_consumer_lag",
            "Events a named feed consumer has not acknowledged yet.",
        );
        let last_sync_age = {
            let f = FloatGauges::default();
            r.register(
                "mailsync_last_sync_age_seconds",
                "Seconds since the account's last successful sync round.",
                f.clone(),
            );
            f
        };
        let delivery = gauges(
            r,
            "mailsync_delivery_mode",
            "1 for the account's current change delivery (push, polling, degraded), 0 otherwise.",
        );
        let account_health = gauges(
            r,
            "mailsync_account_health",
            "1 for the account's current health (active, degraded, disconnected, failed), 0 otherwise.",
        );
        let restarts = counters(
            r,
            "mailsync_account_restarts",
            "Child restarts seen, by account.",
        );
        let disk_full = gauges(
            r,
            "mailsync_disk_full",
            "1 while writing waits for free space in the data directory (below the [store] floor, or out of space), else 0.",
        );
        let imap_folder_messages = gauges(
            r,
            "mailsync_imap_folder_messages",
            "IMAP: messages held in the mirror, by account and folder.",
        );
        let imap_folder_remaining = gauges(
            r,
            "mailsync_imap_folder_initial_remaining",
            "IMAP: messages of a folder's initial sync not fetched yet (0 once synced), by account and folder.",
        );
        let uptime = gauges(
            r,
            "mailsync_uptime_seconds",
            "Seconds since the daemon started.",
        );
        let runtime_tasks = gauges(
            r,
            "mailsync_runtime_tasks",
            "Tasks alive in the daemon's async runtime; steady when idle (growth is a leak).",
        );
        let build_info = gauges(
            r,
            "mailsync_build_info",
            "Always 1; the version and commit are labels.",
        );
        build_info
            .get_or_create(&labels(&[
                ("version", env!("CARGO_PKG_VERSION")),
                ("commit", crate::service::COMMIT),
            ]))
            .set(1);
        Metrics {
            registry,
            feed_events,
            messages_synced,
            api_errors,
            api_requests,
            sync_rounds,
            quota_used,
            quota_limit,
            quota_remaining,
            queue_depth,
            dead_letters,
            consumer_lag,
            last_sync_age,
            delivery,
            account_health,
            restarts,
            uptime,
            runtime_tasks,
            disk_full,
            imap_folder_messages,
            imap_folder_remaining,
            cursor: Mutex::new(collect::ScrapeCursor::default()),
            ports: Mutex::new(Vec::new()),
        }
    }

    /// Wraps an account's port so its calls are counted and timed.
    pub fn meter(
        self: &Arc<Self>,
        account: &str,
        inner: Arc<dyn mailsync_actors::ports::GmailApi>,
    ) -> Arc<dyn mailsync_actors::ports::GmailApi> {
        let port = Arc::new(MeteredPort::new(account, inner, self.clone()));
        let mut ports = self
            .ports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        ports.retain(|(_, p)| p.strong_count() > 0);
        ports.push((account.to_string(), Arc::downgrade(&port)));
        port
    }

    /// The registry in the Prometheus text format (ends with `# EOF`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "Cannot encode metrics.");
        }
        out
    }
}
