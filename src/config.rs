//! Configuration: owns finding, reading and validating the TOML file plus `MAILSYNC_*`
//! environment overrides, producing one immutable `Config`.
//!
//! Two stages, as in ripgrep: `RawConfig` (serde, `deny_unknown_fields`, built with the `config`
//! crate from the file and the environment) and then `Config::try_from(raw)`, which applies
//! defaults, resolves paths and checks every value. Every problem names the file, the key path
//! (`accounts[1].client_secret`) and the reason; all validation problems are reported at once.
//!
//! Environment overrides: `MAILSYNC_<KEY>` for top-level keys (`MAILSYNC_DATA_DIR`,
//! `MAILSYNC_LOG_FORMAT`) and `__` for nesting (`MAILSYNC_SYNC__BATCH_SIZE`). Only variables
//! whose first segment is a known top-level key are read, so `MAILSYNC_CONFIG` and unrelated
//! `MAILSYNC_*` variables (a token for an `env` credential, say) never clash with the file.
//! `[[accounts]]` and `[[webhooks]]` cannot be overridden from the environment.
//!
//! Paths in the file may start with `~/` (the home directory); relative paths are resolved
//! against the directory holding the config file.
//!
//! Secrets never live in `Config`: credentials are `CredentialRef`s resolved lazily, and no
//! `Debug` output of this module shows a secret.

mod credential;
mod deep_check;
mod raw;
mod strict;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use credential::CredentialRef;
pub use deep_check::deep_check;
pub use raw::RawConfig;

/// The validated configuration of one daemon run.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The file this configuration was read from (or the `origin` given to `load_str`).
    pub source: PathBuf,
    /// Where sled, the mirror and the feed live.
    pub data_dir: PathBuf,
    /// The control socket path.
    pub socket_path: PathBuf,
    /// Log output format.
    pub log_format: LogFormat,
    /// A `tracing_subscriber::EnvFilter` directive string (validated), e.g. `info,mailsync=debug`.
    pub log_level: String,
    /// How long shutdown waits for actors and tasks before forcing a stop.
    pub shutdown_grace: Duration,
    /// Global sync settings (accounts may override some).
    pub sync: SyncConfig,
    /// Global quota settings (accounts may override the profile).
    pub quota: QuotaConfig,
    /// Per-job retry policy.
    pub retry: RetryConfig,
    /// Child restart policy.
    pub restart: RestartConfig,
    /// The configured accounts, in file order.
    pub accounts: Vec<AccountConfig>,
    /// Webhook sinks.
    pub webhooks: Vec<WebhookConfig>,
    /// The Maildir sink, when a `[maildir]` section is present.
    pub maildir: Option<MaildirConfig>,
    /// The vdir sink (calendars as `.ics` files for khal/vdirsyncer), when a `[vdir]` section
    /// is present: `root` (default `<data_dir>/vdir`), one folder per account below it.
    pub vdir: Option<MaildirConfig>,
    /// The change feed.
    pub feed: FeedConfig,
    /// Push notifications (`[push]`), when configured.
    pub push: Option<PushConfig>,
    /// The store (`[store]`): the free-space floor of the data directory.
    pub store: StoreConfig,
    /// The metrics and status-page listener (`[metrics]`), when configured.
    pub metrics: Option<MetricsConfig>,
    /// Test hooks (`[debug]`); all off unless set.
    pub debug: DebugConfig,
    /// Things that are allowed but discouraged (inline secrets); log them once logging is up.
    pub warnings: Vec<ConfigIssue>,
}

impl Config {
    /// The account with this id, if configured.
    pub fn account(&self, id: &str) -> Option<&AccountConfig> {
        self.accounts.iter().find(|a| a.id == id)
    }
}

/// `log_format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, for terminals.
    Pretty,
    /// One JSON object per line, for journald and log shippers.
    Json,
}

/// `[sync]`, and the effective values of one account after its overrides.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncConfig {
    /// Time between polls when push is not available.
    pub poll_interval: Duration,
    /// Messages per batch request (1..=100, the Gmail batch limit).
    pub batch_size: usize,
    /// A Gmail search query limiting the initial full sync; `None` syncs all mail.
    pub initial_query: Option<String>,
}

/// Which published Gmail quota applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaProfile {
    /// From 1 May 2026: 6,000 units per user per minute; `messages.get` costs 20.
    Y2026,
    /// Before May 2026: 15,000 units per user per minute; `messages.get` costs 5.
    Legacy,
}

impl QuotaProfile {
    /// Units per user per minute under this profile (before `scale`).
    pub fn units_per_user_per_minute(self) -> u32 {
        match self {
            QuotaProfile::Y2026 => 6_000,
            QuotaProfile::Legacy => 15_000,
        }
    }

    /// Quota units one `messages.get` costs under this profile.
    pub fn messages_get_cost(self) -> u32 {
        match self {
            QuotaProfile::Y2026 => 20,
            QuotaProfile::Legacy => 5,
        }
    }

    /// The config spelling: `2026` or `legacy`.
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaProfile::Y2026 => "2026",
            QuotaProfile::Legacy => "legacy",
        }
    }
}

/// `[quota]`, fully resolved (profile defaults filled in, explicit overrides applied).
#[derive(Clone, Debug, PartialEq)]
pub struct QuotaConfig {
    /// The profile the defaults came from.
    pub profile: QuotaProfile,
    /// Per-user ceiling in units per minute, before `scale` and `pacing`.
    pub units_per_user_per_minute: u32,
    /// Units one `messages.get` costs.
    pub messages_get_cost: u32,
    /// Per-project ceiling in units per minute.
    pub project_units_per_minute: u32,
    /// Concurrent requests per user.
    pub max_in_flight: usize,
    /// Fraction of the ceiling we aim for (0 < pacing <= 1).
    pub pacing: f64,
    /// Multiplies the per-user limit; must match the emulator's `user_rate_scale` in tests.
    pub scale: f64,
    /// Gmail: open with a burst of the whole per-user minute and pace more carefully at the
    /// first refusal (`true`, default), or pace at `pacing` from the start (`false`).
    pub spend_burst: bool,
}

impl QuotaConfig {
    /// The per-user rate the limiter should allow: ceiling × scale × pacing, in units/minute.
    pub fn effective_user_units_per_minute(&self) -> f64 {
        f64::from(self.units_per_user_per_minute) * self.scale * self.pacing
    }
}

/// `[retry]`: per-job retry with jittered exponential backoff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryConfig {
    /// First delay.
    pub base: Duration,
    /// Largest delay.
    pub cap: Duration,
    /// Attempts before a job is dead-lettered.
    pub max_attempts: u32,
}

/// `[restart]`: child restart policy and budget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestartConfig {
    /// First restart delay.
    pub base: Duration,
    /// Largest restart delay.
    pub cap: Duration,
    /// Restarts allowed within `window` before the account is marked failed.
    pub max_restarts: u32,
    /// The budget window.
    pub window: Duration,
}

/// The kind of an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountKind {
    /// Gmail over the REST API.
    Gmail,
    /// Google Calendar.
    Calendar,
    /// Any IMAP server.
    Imap,
    /// Synthetic account for integration tests; talks to no provider.
    Test,
}

impl AccountKind {
    /// The config spelling: `gmail`, `calendar`, `imap`, `test`.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Gmail => "gmail",
            AccountKind::Calendar => "calendar",
            AccountKind::Imap => "imap",
            AccountKind::Test => "test",
        }
    }
}

impl fmt::Display for AccountKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `[[accounts]]` entry with global settings and its overrides already merged.
/// `PartialEq` compares everything, so a reload restarts exactly the accounts that changed.
#[derive(Clone, Debug, PartialEq)]
pub struct AccountConfig {
    /// Unique id (`[A-Za-z0-9_.-]+`), used in keys, mailbox names and the control socket.
    pub id: String,
    /// The kind; always matches `settings`.
    pub kind: AccountKind,
    /// Disabled accounts are kept in the config but not started.
    pub enabled: bool,
    /// Effective poll interval (account override or `[sync]`).
    pub poll_interval: Duration,
    /// Effective initial query (account override or `[sync]`).
    pub initial_query: Option<String>,
    /// Effective batch size (`[sync]`).
    pub batch_size: usize,
    /// Effective quota (account `quota_profile` override or `[quota]`).
    pub quota: QuotaConfig,
    /// Kind-specific settings.
    pub settings: AccountSettings,
}

/// Kind-specific account settings.
#[derive(Clone, Debug, PartialEq)]
pub enum AccountSettings {
    /// `kind = "gmail"`.
    Gmail(GmailSettings),
    /// `kind = "calendar"`.
    Calendar(CalendarSettings),
    /// `kind = "imap"`.
    Imap(ImapSettings),
    /// `kind = "test"`.
    Test(TestSettings),
}

/// OAuth settings shared by the Google kinds.
#[derive(Clone, Debug, PartialEq)]
pub struct GoogleAuth {
    /// OAuth token endpoint.
    pub token_url: String,
    /// OAuth authorization endpoint (used by `mailsync auth`).
    pub auth_url: String,
    /// OAuth client id (not a secret).
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: CredentialRef,
    /// The long-lived refresh token.
    pub refresh_token: CredentialRef,
}

/// Gmail account settings.
#[derive(Clone, Debug, PartialEq)]
pub struct GmailSettings {
    /// The mailbox address.
    pub email: String,
    /// API base URL without a trailing slash (the emulator's in tests).
    pub api_base: String,
    /// OAuth settings.
    pub auth: GoogleAuth,
    /// `users.watch` settings, when the account receives push notifications.
    pub push: Option<GmailPush>,
}

/// Per-account push settings of a Gmail account (`push_topic`, `push_label_ids`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GmailPush {
    /// The Pub/Sub topic `users.watch` publishes to: `projects/<project>/topics/<topic>`.
    pub topic: String,
    /// Only changes to these labels are notified; empty = every change.
    pub label_ids: Vec<String>,
}

/// `[push]`: how Gmail notifications reach the daemon (an HTTP endpoint behind the user's TLS
/// proxy, or pulling a Pub/Sub subscription) and how they are authenticated.
#[derive(Clone, Debug, PartialEq)]
pub struct PushConfig {
    /// Where the push endpoint listens; `None` = no endpoint (pull only).
    pub listen: Option<std::net::SocketAddr>,
    /// OIDC JWT verification of pushes, when `audience` and `service_account` are set.
    pub jwt: Option<PushJwt>,
    /// A shared token expected in the push URL's `token` query parameter.
    pub verification_token: Option<CredentialRef>,
    /// Largest accepted request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// No push for this long while a watch should be live → `degraded (polling)`.
    pub silence: Duration,
    /// Call `users.stop` for every watched account on shutdown (default: only on removal).
    pub stop_watch_on_shutdown: bool,
    /// Pull mode, when `[push.pull]` is present.
    pub pull: Option<PullConfig>,
    /// Public URL of `POST /push/calendar` given to `events.watch`; `None` = no Calendar
    /// channels (Calendar accounts poll).
    pub calendar_address: Option<String>,
    /// Wake-ups after a burst of Calendar notifications are debounced by this much.
    pub calendar_debounce: Duration,
    /// A Calendar channel is renewed when less than this remains.
    pub calendar_renew_before: Duration,
    /// Requested Calendar channel lifetime.
    pub calendar_channel_ttl: Duration,
}

/// What a push JWT must say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushJwt {
    /// The expected `aud` claim (the audience set on the push subscription).
    pub audience: String,
    /// The expected `email` claim (the subscription's push service account).
    pub service_account: String,
    /// The JWKS document with Google's signing keys.
    pub jwks_url: String,
}

/// `[push.pull]`: pull a Pub/Sub subscription over REST (for desktops behind NAT).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullConfig {
    /// `projects/<project>/subscriptions/<subscription>`.
    pub subscription: String,
    /// Pub/Sub REST root (`https://pubsub.googleapis.com`, or an emulator's `http://host:port`).
    pub endpoint: String,
    /// Messages per pull request.
    pub max_messages: u32,
    /// Ack deadline requested (`modifyAckDeadline`) while a pulled batch is being handled.
    pub ack_deadline: Duration,
    /// The Gmail account whose OAuth grant (with the Pub/Sub scope) authorizes the pulls;
    /// `None` sends no credentials (the Pub/Sub emulator).
    pub token_account: Option<String>,
    /// Test hook: wait this long between a pull and its acknowledgement.
    pub test_hold_before_ack: Duration,
}

/// Google Calendar account settings (sync not built yet; validated only).
#[derive(Clone, Debug, PartialEq)]
pub struct CalendarSettings {
    /// The account address, if given.
    pub email: Option<String>,
    /// API base URL without a trailing slash.
    pub api_base: String,
    /// OAuth settings.
    pub auth: GoogleAuth,
    /// Calendars to mirror by id; `None` (the default) = every calendar in the list.
    pub calendar_ids: Option<Vec<String>>,
    /// Calendar requests per minute per user (default 60 = 1/s; below Google's 600).
    pub requests_per_minute: u32,
    /// Calendar requests in flight (default 5).
    pub max_in_flight: usize,
    /// `maxResults` of `events.list` (default 2500, the maximum).
    pub page_size: u32,
}

/// How an IMAP connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImapTls {
    /// TLS from the first byte (port 993).
    Implicit,
    /// Plain connection upgraded with STARTTLS (port 143).
    StartTls,
    /// No encryption (local test servers only).
    None,
}

/// How an IMAP account authenticates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImapAuth {
    /// `LOGIN` (default).
    Login,
    /// `AUTHENTICATE PLAIN`.
    Plain,
    /// `AUTHENTICATE XOAUTH2` with an access token: from a Google OAuth credential
    /// ([`ImapCredential::OAuth`]), or a fixed token in `password`.
    XOAuth2,
}

/// What an IMAP account proves its identity with.
#[derive(Clone, Debug, PartialEq)]
pub enum ImapCredential {
    /// `password`: the password (LOGIN, PLAIN) or a fixed access token (XOAUTH2).
    Password(CredentialRef),
    /// XOAUTH2 with the same OAuth keys a Gmail account uses (`client_id`, `client_secret`,
    /// `refresh_token`, `token_url`): access tokens come from the credential's token source.
    OAuth(GoogleAuth),
}

/// IMAP account settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ImapSettings {
    /// Server host name.
    pub host: String,
    /// Server port (default 993 for implicit TLS, else 143).
    pub port: u16,
    /// Login name.
    pub username: String,
    /// The password, or the OAuth credential of XOAUTH2.
    pub credential: ImapCredential,
    /// Transport security.
    pub tls: ImapTls,
    /// Folder patterns to mirror (default `["*"]`: every folder).
    pub mailboxes: Vec<String>,
    /// Folder patterns left out.
    pub exclude: Vec<String>,
    /// `tls = "none"` is allowed (only to a loopback host).
    pub allow_plaintext: bool,
    /// CA certificates (PEM) to verify the server with instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// Authentication mechanism.
    pub auth: ImapAuth,
    /// Connections per account (default 2).
    pub connections: usize,
    /// Folders watched with IDLE (default `["INBOX"]`, within the connection bound).
    pub idle: Vec<String>,
    /// How long one IDLE lasts before it is re-issued (default 25 min, at most 29).
    pub idle_max: Duration,
    /// Bound of connect + TLS + authentication (default 5 s).
    pub connect_timeout: Duration,
    /// Bound of one command (default 30 s).
    pub timeout: Duration,
    /// Newest messages per folder synced before the rest (default 1000).
    pub recent_first: u64,
    /// STATUS poll interval of a quiet folder, from (default 60 s) …
    pub status_poll_min: Duration,
    /// … doubling up to (default 15 min).
    pub status_poll_max: Duration,
}

/// Which child of a test account fails on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestChild {
    /// The partial-sync child.
    HistorySync,
    /// The full-sync child.
    Backfill,
    /// The queue-draining child.
    Ingest,
}

/// `[accounts.test]`: drives the actor tree without Google.
#[derive(Clone, Debug, PartialEq)]
pub struct TestSettings {
    /// Number of synthetic messages.
    pub messages: u64,
    /// The child that fails `fail_times` times, if any.
    pub fail_child: Option<TestChild>,
    /// How often `fail_child` fails before it works.
    pub fail_times: u32,
    /// A file the test account appends one line per completed job to, if set.
    pub completions_file: Option<PathBuf>,
    /// Artificial delay per job.
    pub job_delay: Duration,
}

/// One `[[webhooks]]` entry (delivery implemented in `sink`).
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookConfig {
    /// The stable name (`[[webhooks]] name`): the sink's consumer is `webhook:<name>` and its
    /// dead letters are kept under it, so reordering the file never swaps cursors.
    pub name: String,
    /// Target URL (http or https).
    pub url: String,
    /// HMAC signing secret, if any.
    pub secret: Option<CredentialRef>,
    /// Accounts whose changes are delivered; `None` means all.
    pub accounts: Option<Vec<String>>,
    /// Delivery attempts before an event is dead-lettered.
    pub max_attempts: u32,
}

/// `[maildir]` (implemented in `sink`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaildirConfig {
    /// Root directory; one Maildir per account below it.
    pub root: PathBuf,
    /// Whether the sink runs.
    pub enabled: bool,
}

/// `[store]`: writing pauses (accounts show `degraded (disk full: …)`) while the data
/// directory's file system has less free space than the smaller of the two limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// Absolute floor in MB (default 500; 0 turns the floor off).
    pub min_free_mb: u64,
    /// Floor as a percentage of the file system's size (default 1; 0 turns the floor off).
    pub min_free_percent: u64,
    /// How long opening the store may take before it is declared damaged (default 120 s;
    /// sled loops forever on some damaged logs).
    pub open_timeout: std::time::Duration,
    /// sled's page cache in MiB (default 8): most of the daemon's memory on a large mirror.
    pub cache_mb: u64,
}

impl StoreConfig {
    /// How the daemon opens its store.
    pub fn options(&self) -> mailsync_actors::store::StoreOptions {
        mailsync_actors::store::StoreOptions {
            floor: mailsync_actors::disk_space::FreeSpaceFloor {
                min_free_bytes: self.min_free_mb * 1024 * 1024,
                min_free_percent: self.min_free_percent as f64,
            },
            open_timeout: self.open_timeout,
            cache_capacity_bytes: self.cache_mb * 1024 * 1024,
        }
    }
}

/// `[metrics]`: an HTTP listener serving Prometheus text at `/metrics` and a status page at `/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Where it listens (loopback by intent: it has no authentication).
    pub listen: std::net::SocketAddr,
}

/// `[debug]`: hooks for tests; never set them in production.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DebugConfig {
    /// Allow `ctl debug-wedge`, which blocks the supervision tree (watchdog tests).
    pub allow_wedge: bool,
}

/// `[feed]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedConfig {
    /// How long acknowledged feed events are kept.
    pub retention: Duration,
}

/// One problem (or warning) with one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted key path, e.g. `accounts[1].client_secret` or `quota.pacing`.
    pub key: String,
    /// What is wrong, in lower case.
    pub reason: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

/// Everything that can go wrong while finding, reading, validating or resolving configuration.
/// The binary exits with status 2 on any of them.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No file in any of the default places.
    #[error("no config file found (looked in {})", display_paths(.searched))]
    NotFound {
        /// Every path that was tried, in order.
        searched: Vec<PathBuf>,
    },
    /// The file exists (or was named) but cannot be read.
    #[error("cannot read config file {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{}: not valid TOML: {reason}", .file.display())]
    Parse {
        /// The file.
        file: PathBuf,
        /// The parser's message (line and column included).
        reason: String,
    },
    /// One or more keys are unknown, mistyped or have invalid values; never empty.
    #[error("{}", display_issues(.file, .issues))]
    Invalid {
        /// The file.
        file: PathBuf,
        /// Every problem found.
        issues: Vec<ConfigIssue>,
    },
    /// A credential could not be resolved.
    #[error("credential ({reference}): {reason}")]
    Credential {
        /// A safe description: `file /path`, `env VAR`, `command prog`.
        reference: String,
        /// What went wrong (never contains the secret or a command's output).
        reason: String,
    },
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn display_issues(file: &Path, issues: &[ConfigIssue]) -> String {
    match issues {
        [one] => format!("{}: {}: {}", file.display(), one.key, one.reason),
        many => {
            let mut s = format!("{}: {} invalid settings:", file.display(), many.len());
            for issue in many {
                s.push_str(&format!("\n  {}: {}", issue.key, issue.reason));
            }
            s
        }
    }
}

/// Finds the config file: `explicit` (from `--config`), else `$MAILSYNC_CONFIG`, else
/// `$XDG_CONFIG_HOME/mailsync/config.toml` (or `~/.config/mailsync/config.toml`), else
/// `/etc/mailsync/config.toml`. An explicit or `$MAILSYNC_CONFIG` path is returned as is (a
/// missing file then fails in `load` with its name); the default places must exist.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, ConfigError> {
    locate_in(explicit, &process_env(), |p| p.is_file())
}

fn locate_in(
    explicit: Option<&Path>,
    env: &raw::Env,
    exists: impl Fn(&Path) -> bool,
) -> Result<PathBuf, ConfigError> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    if let Some(path) = env.get("MAILSYNC_CONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let mut searched = Vec::new();
    if let Some(dir) = validate::config_home(env) {
        searched.push(dir.join("mailsync").join("config.toml"));
    }
    searched.push(PathBuf::from("/etc/mailsync/config.toml"));
    match searched.iter().find(|p| exists(p)) {
        Some(found) => Ok(found.clone()),
        None => Err(ConfigError::NotFound { searched }),
    }
}

/// Reads, merges with `MAILSYNC_*` overrides from the process environment, and validates.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    load_with_env(&text, path, process_env())
}

/// Like `load`, from a string; `origin` names it in errors and anchors relative paths (use the
/// file's path, or something like `<inline>`). Environment overrides apply.
pub fn load_str(toml: &str, origin: &str) -> Result<Config, ConfigError> {
    load_with_env(toml, Path::new(origin), process_env())
}

/// Like `load_str`, with an explicit environment instead of the process's (for tests: this
/// also feeds the defaults, so pass `HOME`/`XDG_*` as needed).
pub fn load_str_with_env<I, K, V>(toml: &str, origin: &str, env: I) -> Result<Config, ConfigError>
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<String>,
    V: Into<String>,
{
    let env = env.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
    load_with_env(toml, Path::new(origin), env)
}

fn load_with_env(toml: &str, origin: &Path, env: raw::Env) -> Result<Config, ConfigError> {
    let raw = RawConfig::from_sources(toml, origin, env)?;
    Config::try_from(raw)
}

fn process_env() -> raw::Env {
    // Non-UTF-8 variables cannot be config values or path defaults we could use; skip them.
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

impl RawConfig {
    /// Builds the raw stage from TOML text plus the `MAILSYNC_*` overrides found in `env`.
    pub fn from_sources(
        toml: &str,
        origin: &Path,
        env: std::collections::BTreeMap<String, String>,
    ) -> Result<RawConfig, ConfigError> {
        validate::raw_from_sources(toml, origin, env)
    }
}

#[cfg(test)]
mod tests;
