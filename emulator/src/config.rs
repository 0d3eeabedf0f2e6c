//! [`EmulatorConfig`]: every knob of the emulator as a plain pub field, with Google-like
//! defaults. The root binary maps its CLI flags onto these fields.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Whether quotas are enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuotaMode {
    /// Enforce per-user, per-project and concurrency limits (default).
    On,
    /// No limits at all (raw-speed benchmarks). Costs are still counted.
    Off,
    /// Per-user and per-project limits as sliding windows over the log of actual request
    /// times, with a per-second sub-limit and refused requests counted (`quota_strict.rs`);
    /// concurrency as in `On`. Shares no arithmetic with the client's limiter.
    Strict,
}

impl QuotaMode {
    /// Whether any limit (rate or concurrency) is enforced.
    pub fn enforced(self) -> bool {
        self != QuotaMode::Off
    }
}

/// Which generation of Gmail's published quota numbers to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum QuotaProfile {
    /// From 1 May 2026: 6,000 units/user/minute; messages.get costs 20.
    #[serde(rename = "2026")]
    Y2026,
    /// 2023 → Apr 2026: 15,000 units/user/minute; messages.get costs 5.
    #[serde(rename = "legacy")]
    Legacy,
}

impl QuotaProfile {
    /// Units per user per minute before `user_rate_scale`.
    pub fn user_units_per_minute(self) -> u64 {
        match self {
            QuotaProfile::Y2026 => 6_000,
            QuotaProfile::Legacy => 15_000,
        }
    }
}

/// One fault-injection rule, matched against the method name (e.g.
/// `gmail.users.messages.get`, `calendar.events.list`); `*` in the pattern matches any run of
/// characters. Rates are probabilities in `[0, 1]`, drawn from a seeded RNG so a run replays.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultRule {
    pub method: String,
    pub rate_429: f64,
    pub rate_500: f64,
    pub rate_503: f64,
    /// Probability of hanging until the client gives up (or the emulator shuts down).
    pub rate_timeout: f64,
    /// Probability of dropping the connection after the status line (connection reset).
    pub rate_reset: f64,
    /// Probability of a 200 whose JSON body is cut in half.
    pub rate_truncated: f64,
    /// Probability of a 200 whose body is not JSON at all.
    pub rate_malformed: f64,
    /// Latency added to every matched request, in milliseconds.
    pub latency_ms: u64,
}

/// Faults applied to outgoing push notifications (Gmail Pub/Sub and Calendar web hooks).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationFaults {
    pub drop: f64,
    pub duplicate: f64,
    pub delay_ms: u64,
    /// Probability of holding a notification back and sending it after the next one.
    pub reorder: f64,
}

/// Emulator configuration. See `docs/emulator.md` for the meaning of each default.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Seed for every generated thing (mailboxes, ids, tokens, faults, mutations).
    pub seed: u64,
    /// Seeded mailbox size of the default account.
    pub messages: usize,
    /// Email of the default account.
    pub account: String,
    pub quota: QuotaMode,
    pub quota_profile: QuotaProfile,
    /// Multiplies the per-user per-minute limit (costs stay real).
    pub user_rate_scale: f64,
    /// Per-project (per OAuth client) Gmail units per minute.
    pub project_units_per_minute: u64,
    /// Calendar requests per minute per user / per project.
    pub calendar_user_requests_per_minute: u64,
    pub calendar_project_requests_per_minute: u64,
    /// Concurrent in-flight requests per user (batch parts count individually).
    pub max_concurrent_per_user: usize,
    /// HTTP status for per-user / per-project rate limits: 429 (default) or 403.
    pub rate_limit_status: u16,
    /// HTTP status for Calendar's per-user / per-project rate limits. Google answers both
    /// `403 usageLimits` and `429`; 403 (default) is what Calendar's per-user quota sends.
    pub calendar_rate_limit_status: u16,
    /// Send `Retry-After` with rate-limit answers (Google often does not; `false` tests the
    /// client's own pacing and fallbacks).
    pub send_retry_after: bool,
    /// Strict mode: the per-second sub-limit as a share of the per-minute limit
    /// (default 1/6: one second may hold ten seconds' worth of the average rate).
    pub strict_second_share: f64,
    pub access_token_ttl: Duration,
    /// When set, refresh tokens expire this long after issue (Google's 7-day "Testing" rule).
    pub refresh_token_ttl: Option<Duration>,
    /// History records kept per mailbox; older ones are pruned (history.list then 404s).
    pub history_retention_records: usize,
    /// Age after which history records are pruned.
    pub history_retention: Duration,
    /// Official Pub/Sub emulator base URL, e.g. `http://127.0.0.1:8085`.
    pub pubsub_endpoint: Option<String>,
    /// Push Gmail notifications directly, in Pub/Sub's push shape, to this URL.
    pub push_endpoint: Option<String>,
    /// `aud` of push JWTs; defaults to the push endpoint URL.
    pub push_audience: Option<String>,
    /// `email` claim of push JWTs (the subscription's service account).
    pub push_service_account: String,
    /// `subscription` field of push bodies.
    pub push_subscription: String,
    /// First redelivery backoff for failed pushes (Pub/Sub default 10 s).
    pub push_min_backoff: Duration,
    /// Maximum redelivery backoff (Pub/Sub default 600 s).
    pub push_max_backoff: Duration,
    /// Delivery attempts before a push is abandoned.
    pub push_max_attempts: u32,
    /// Mutations per second from the background generator.
    pub mutation_rate: Option<f64>,
    /// The generator's mutations go to an account drawn at random among all of them (for
    /// soaks of many accounts) instead of the default account.
    pub mutate_every_account: bool,
    /// Gmail watch lifetime (Google: 7 days).
    pub watch_ttl: Duration,
    /// Calendar channel default lifetime (Google: 7 days).
    pub channel_ttl: Duration,
    /// The authorization endpoint approves immediately (redirects with a code).
    pub auto_consent: bool,
    /// Fault rules active from start.
    pub faults: Vec<FaultRule>,
    pub notification_faults: NotificationFaults,
    /// Seed of the fault RNG (defaults to `seed`).
    pub fault_seed: Option<u64>,
    /// Seeded events per calendar of the default account.
    pub calendar_events: usize,
    /// Epoch ms that seeded mail is generated back from (deterministic; default 2026-05-01).
    pub generation_anchor_ms: i64,
    /// Time span (days) the seeded mailbox covers, ending at the anchor.
    pub generation_span_days: u32,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            messages: 200,
            account: "demo@example.com".into(),
            quota: QuotaMode::On,
            quota_profile: QuotaProfile::Y2026,
            user_rate_scale: 1.0,
            project_units_per_minute: 1_200_000,
            calendar_user_requests_per_minute: 600,
            calendar_project_requests_per_minute: 10_000,
            max_concurrent_per_user: 50,
            rate_limit_status: 429,
            calendar_rate_limit_status: 403,
            send_retry_after: true,
            strict_second_share: 1.0 / 6.0,
            access_token_ttl: Duration::from_secs(3600),
            refresh_token_ttl: None,
            history_retention_records: 1_000_000,
            history_retention: Duration::from_secs(7 * 24 * 3600),
            pubsub_endpoint: None,
            push_endpoint: None,
            push_audience: None,
            push_service_account: "gmail-api-push@system.gserviceaccount.com".into(),
            push_subscription: "projects/mailsync-emulator/subscriptions/gmail-push".into(),
            push_min_backoff: Duration::from_secs(10),
            push_max_backoff: Duration::from_secs(600),
            push_max_attempts: 20,
            mutation_rate: None,
            mutate_every_account: false,
            watch_ttl: Duration::from_secs(7 * 24 * 3600),
            channel_ttl: Duration::from_secs(7 * 24 * 3600),
            auto_consent: true,
            faults: Vec::new(),
            notification_faults: NotificationFaults::default(),
            fault_seed: None,
            calendar_events: 40,
            generation_anchor_ms: 1_777_593_600_000,
            generation_span_days: 365,
        }
    }
}
