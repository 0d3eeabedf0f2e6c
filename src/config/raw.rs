//! The first configuration stage: `RawConfig`, exactly what the TOML file and the `MAILSYNC_*`
//! environment say, with nothing defaulted or checked beyond types and key names.
//!
//! Invariant: every struct here denies unknown fields, so a typo is an error naming its key
//! rather than a silently ignored setting. Integers are read as `i64` so that a negative number
//! becomes a validation issue with a clear reason instead of a type error.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// A snapshot of the environment variables the config reads (defaults and overrides).
pub(crate) type Env = BTreeMap<String, String>;

/// The whole file plus environment overrides, before validation.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Where the configuration came from; set by the loader, never read from the file.
    #[serde(skip)]
    pub(crate) origin: PathBuf,
    /// The environment snapshot used for path defaults; set by the loader.
    #[serde(skip)]
    pub(crate) env: Env,
    pub(crate) data_dir: Option<String>,
    pub(crate) socket_path: Option<String>,
    pub(crate) log_format: Option<String>,
    pub(crate) log_level: Option<String>,
    pub(crate) shutdown_grace_secs: Option<i64>,
    pub(crate) sync: Option<RawSync>,
    pub(crate) quota: Option<RawQuota>,
    pub(crate) retry: Option<RawRetry>,
    pub(crate) restart: Option<RawRestart>,
    #[serde(default)]
    pub(crate) accounts: Vec<RawAccount>,
    #[serde(default)]
    pub(crate) webhooks: Vec<RawWebhook>,
    pub(crate) maildir: Option<RawMaildir>,
    pub(crate) vdir: Option<RawMaildir>,
    pub(crate) feed: Option<RawFeed>,
    pub(crate) push: Option<RawPush>,
    pub(crate) metrics: Option<RawMetrics>,
    pub(crate) debug: Option<RawDebug>,
    pub(crate) store: Option<RawStore>,
}

/// `[store]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStore {
    pub(crate) min_free_mb: Option<i64>,
    pub(crate) min_free_percent: Option<i64>,
    pub(crate) open_timeout_secs: Option<i64>,
    pub(crate) cache_mb: Option<i64>,
}

/// `[sync]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSync {
    pub(crate) poll_interval_secs: Option<i64>,
    pub(crate) batch_size: Option<i64>,
    pub(crate) initial_query: Option<String>,
}

/// `[quota]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQuota {
    pub(crate) profile: Option<String>,
    pub(crate) units_per_user_per_minute: Option<i64>,
    pub(crate) messages_get_cost: Option<i64>,
    pub(crate) project_units_per_minute: Option<i64>,
    pub(crate) max_in_flight: Option<i64>,
    pub(crate) pacing: Option<f64>,
    pub(crate) scale: Option<f64>,
    pub(crate) spend_burst: Option<bool>,
}

/// `[retry]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetry {
    pub(crate) base_ms: Option<i64>,
    pub(crate) cap_ms: Option<i64>,
    pub(crate) max_attempts: Option<i64>,
}

/// `[restart]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRestart {
    pub(crate) base_ms: Option<i64>,
    pub(crate) cap_ms: Option<i64>,
    pub(crate) max_restarts: Option<i64>,
    pub(crate) window_secs: Option<i64>,
}

/// A credential reference: exactly one of the four keys must be set.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCredential {
    pub(crate) file: Option<String>,
    pub(crate) env: Option<String>,
    pub(crate) command: Option<Vec<String>>,
    pub(crate) value: Option<String>,
}

impl std::fmt::Debug for RawCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // An inline `value` is a secret: never print it, even from the raw stage.
        f.debug_struct("RawCredential")
            .field("file", &self.file)
            .field("env", &self.env)
            .field("command", &self.command.as_ref().and_then(|c| c.first()))
            .field("value", &self.value.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// One `[[accounts]]` entry: the union of every kind's keys; validation rejects keys that do
/// not belong to the entry's kind.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAccount {
    pub(crate) id: Option<String>,
    pub(crate) kind: Option<String>,
    pub(crate) enabled: Option<bool>,
    pub(crate) poll_interval_secs: Option<i64>,
    pub(crate) initial_query: Option<String>,
    pub(crate) quota_profile: Option<String>,
    // Google (gmail, calendar).
    pub(crate) email: Option<String>,
    pub(crate) api_base: Option<String>,
    pub(crate) token_url: Option<String>,
    pub(crate) auth_url: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) client_secret: Option<RawCredential>,
    pub(crate) refresh_token: Option<RawCredential>,
    // Gmail push (`users.watch`).
    pub(crate) push_topic: Option<String>,
    pub(crate) push_label_ids: Option<Vec<String>>,
    // Calendar (also on a Gmail account with `calendar = true`).
    pub(crate) calendar: Option<bool>,
    pub(crate) calendar_api_base: Option<String>,
    pub(crate) calendar_ids: Option<Vec<String>>,
    pub(crate) calendar_requests_per_minute: Option<i64>,
    pub(crate) calendar_max_in_flight: Option<i64>,
    pub(crate) calendar_page_size: Option<i64>,
    // IMAP.
    pub(crate) host: Option<String>,
    pub(crate) port: Option<i64>,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<RawCredential>,
    pub(crate) tls: Option<String>,
    pub(crate) mailboxes: Option<Vec<String>>,
    /// `[accounts.imap]`: the rest of an IMAP account's settings.
    pub(crate) imap: Option<RawImap>,
    // Test.
    pub(crate) test: Option<RawTest>,
}

/// `[accounts.imap]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawImap {
    pub(crate) allow_plaintext: Option<bool>,
    pub(crate) ca_file: Option<String>,
    pub(crate) auth: Option<String>,
    pub(crate) connections: Option<i64>,
    pub(crate) exclude: Option<Vec<String>>,
    pub(crate) idle: Option<Vec<String>>,
    pub(crate) idle_minutes: Option<i64>,
    pub(crate) connect_timeout_secs: Option<i64>,
    pub(crate) timeout_secs: Option<i64>,
    pub(crate) recent_first: Option<i64>,
    pub(crate) status_poll_min_secs: Option<i64>,
    pub(crate) status_poll_max_secs: Option<i64>,
}

/// `[accounts.test]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTest {
    pub(crate) messages: Option<i64>,
    pub(crate) fail_child: Option<String>,
    pub(crate) fail_times: Option<i64>,
    pub(crate) completions_file: Option<String>,
    pub(crate) job_delay_ms: Option<i64>,
}

/// One `[[webhooks]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWebhook {
    pub(crate) name: Option<String>,
    pub(crate) url: Option<String>,
    pub(crate) secret: Option<RawCredential>,
    pub(crate) accounts: Option<Vec<String>>,
    pub(crate) max_attempts: Option<i64>,
}

/// `[maildir]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMaildir {
    pub(crate) root: Option<String>,
    pub(crate) enabled: Option<bool>,
}

/// `[feed]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFeed {
    pub(crate) retention_days: Option<i64>,
}

/// `[push]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPush {
    pub(crate) bind: Option<String>,
    pub(crate) port: Option<i64>,
    pub(crate) audience: Option<String>,
    pub(crate) service_account: Option<String>,
    pub(crate) jwks_url: Option<String>,
    pub(crate) verification_token: Option<RawCredential>,
    pub(crate) max_body_bytes: Option<i64>,
    pub(crate) silence_secs: Option<i64>,
    pub(crate) stop_watch_on_shutdown: Option<bool>,
    pub(crate) pull: Option<RawPull>,
    pub(crate) calendar_address: Option<String>,
    pub(crate) calendar_debounce_ms: Option<i64>,
    pub(crate) calendar_renew_before_secs: Option<i64>,
    pub(crate) calendar_channel_ttl_secs: Option<i64>,
}

/// `[push.pull]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPull {
    pub(crate) subscription: Option<String>,
    pub(crate) endpoint: Option<String>,
    pub(crate) max_messages: Option<i64>,
    pub(crate) ack_deadline_secs: Option<i64>,
    pub(crate) token_account: Option<String>,
    pub(crate) test_hold_before_ack_ms: Option<i64>,
}

/// `[metrics]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetrics {
    pub(crate) listen: Option<String>,
}

/// `[debug]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDebug {
    pub(crate) allow_wedge: Option<bool>,
}
