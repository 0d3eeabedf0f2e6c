//! The second configuration stage: turns `RawConfig` into `Config`, applying defaults, resolving
//! paths and collecting every problem as a `ConfigIssue` (key path + reason), so the admin sees
//! all of them in one run instead of fixing one per restart.
//!
//! Also builds the raw stage from TOML text and the environment (`raw_from_sources`), mapping
//! the `config` crate's errors to key paths.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::{Env, RawAccount, RawConfig, RawCredential, RawPush, RawTest};
use super::*;
use crate::secret::Secret;

mod imap;
mod service;
mod webhook;

/// Top-level keys that `MAILSYNC_<KEY>` variables may override; anything else is ignored.
const ENV_OVERRIDABLE: &[&str] = &[
    "data_dir",
    "socket_path",
    "log_format",
    "log_level",
    "shutdown_grace_secs",
    "sync",
    "quota",
    "retry",
    "restart",
    "maildir",
    "vdir",
    "feed",
    "push",
    "store",
    "metrics",
];

/// Unix socket paths longer than this do not fit `sockaddr_un.sun_path` (108 bytes with NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Merges the TOML text with the `MAILSYNC_*` overrides in `env` and deserializes `RawConfig`.
pub(crate) fn raw_from_sources(
    toml: &str,
    origin: &Path,
    env: Env,
) -> Result<RawConfig, ConfigError> {
    let overrides: config::Map<String, String> = env
        .iter()
        .filter(|(key, _)| {
            key.strip_prefix("MAILSYNC_")
                .and_then(|rest| rest.split("__").next())
                .is_some_and(|first| ENV_OVERRIDABLE.contains(&first.to_ascii_lowercase().as_str()))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let built = config::Config::builder()
        .add_source(config::File::from_str(toml, config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix("MAILSYNC")
                .prefix_separator("_")
                .separator("__")
                .ignore_empty(true)
                .source(Some(overrides)),
        )
        .build();
    let built = match built {
        Ok(built) => built,
        Err(config::ConfigError::FileParse { cause, .. }) => {
            return Err(ConfigError::Parse {
                file: origin.to_path_buf(),
                reason: cause.to_string(),
            });
        }
        Err(other) => {
            return Err(ConfigError::Invalid {
                file: origin.to_path_buf(),
                issues: vec![issue_from_config_error(other)],
            });
        }
    };
    // Types are checked on the file text alone, without the `config` crate's conversions
    // (`strict.rs`); its issue names the key and never the value.
    let strict = super::strict::check(toml);
    let mut raw: RawConfig = built.try_deserialize().map_err(|e| {
        let issue = match &strict {
            Some(i) if !i.reason.starts_with("unknown field") => i.clone(),
            _ => issue_from_config_error(e),
        };
        ConfigError::Invalid {
            file: origin.to_path_buf(),
            issues: vec![issue],
        }
    })?;
    if let Some(issue) = strict {
        return Err(ConfigError::Invalid {
            file: origin.to_path_buf(),
            issues: vec![issue],
        });
    }
    raw.origin = origin.to_path_buf();
    raw.env = env;
    Ok(raw)
}

/// Turns a `config` crate error into a key path and a reason.
fn issue_from_config_error(err: config::ConfigError) -> ConfigIssue {
    let (key, reason, origin) = match err {
        config::ConfigError::Type {
            origin,
            unexpected,
            expected,
            key,
        } => (
            key.unwrap_or_default(),
            format!("expected {expected}, found {unexpected}"),
            origin,
        ),
        config::ConfigError::At { error, origin, key } => {
            let inner = issue_from_config_error(*error);
            let key = join_key(&key.unwrap_or_default(), &inner.key);
            (key, inner.reason, origin)
        }
        config::ConfigError::NotFound(key) => (key, "missing".to_string(), None),
        other => (String::new(), other.to_string(), None),
    };
    // serde reports an unknown key against its parent; name the key itself.
    // (config names it already for nested tables, but not at the top level or in arrays).
    let key = match unknown_field(&reason) {
        Some(field) if key != field && !key.ends_with(&format!(".{field}")) => {
            join_key(&key, field)
        }
        _ => key,
    };
    let reason = match origin {
        Some(origin) if origin == "the environment" => format!("{reason} (from the environment)"),
        _ => reason,
    };
    ConfigIssue {
        key: if key.is_empty() {
            "(top level)".to_string()
        } else {
            key
        },
        reason,
    }
}

/// A URL as error messages may show it: userinfo (`user:password@`) and the query (tokens)
/// replaced by `[redacted]`.
pub(crate) fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => format!("[redacted]@{}", &authority[at + 1..]),
        None => authority.to_string(),
    };
    let tail = match tail.find('?') {
        Some(q) => format!("{}?[redacted]", &tail[..q]),
        None => tail.to_string(),
    };
    format!("{scheme}{authority}{tail}")
}

fn join_key(parent: &str, child: &str) -> String {
    match (parent.is_empty(), child.is_empty()) {
        (true, _) => child.to_string(),
        (false, true) => parent.to_string(),
        (false, false) if child.starts_with('[') => format!("{parent}{child}"),
        (false, false) => format!("{parent}.{child}"),
    }
}

/// Extracts `foo` from serde's "unknown field `foo`, expected ...".
fn unknown_field(reason: &str) -> Option<&str> {
    let rest = reason.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

/// `$XDG_CONFIG_HOME` (when absolute) or `~/.config`.
pub(crate) fn config_home(env: &Env) -> Option<PathBuf> {
    xdg_dir(env, "XDG_CONFIG_HOME", ".config")
}

fn xdg_dir(env: &Env, var: &str, fallback: &str) -> Option<PathBuf> {
    // The XDG spec says relative values are invalid and must be ignored.
    if let Some(dir) = env.get(var).map(PathBuf::from).filter(|p| p.is_absolute()) {
        return Some(dir);
    }
    env.get("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(fallback))
}

/// Collects issues and warnings while building `Config`; knows how to read paths.
struct Check<'a> {
    env: &'a Env,
    /// The config file's directory: relative paths are resolved against it.
    base: Option<PathBuf>,
    issues: Vec<ConfigIssue>,
    warnings: Vec<ConfigIssue>,
}

impl Check<'_> {
    fn issue(&mut self, key: &str, reason: impl Into<String>) {
        self.issues.push(ConfigIssue {
            key: key.to_string(),
            reason: reason.into(),
        });
    }

    /// An integer in `min..=max`, or `default` when absent (or invalid, with an issue).
    fn int(&mut self, key: &str, value: Option<i64>, default: u64, min: u64, max: u64) -> u64 {
        let Some(value) = value else {
            return default;
        };
        match u64::try_from(value) {
            Ok(v) if (min..=max).contains(&v) => v,
            _ => {
                self.issue(key, format!("must be between {min} and {max}, got {value}"));
                default
            }
        }
    }

    /// A required non-empty string.
    fn required(&mut self, key: &str, value: Option<&String>) -> Option<String> {
        match value.map(|v| v.trim()) {
            Some(v) if !v.is_empty() => Some(v.to_string()),
            Some(_) => {
                self.issue(key, "must not be empty");
                None
            }
            None => {
                self.issue(key, "is required");
                None
            }
        }
    }

    /// An optional string that must not be blank when present.
    fn optional(&mut self, key: &str, value: Option<&String>) -> Option<String> {
        match value.map(|v| v.trim()) {
            Some("") => {
                self.issue(key, "must not be empty (leave the key out instead)");
                None
            }
            other => other.map(str::to_string),
        }
    }

    /// An http(s) URL; a trailing slash is removed so callers can append paths.
    fn url(&mut self, key: &str, value: Option<&String>, default: &str) -> String {
        let url = value.map(|v| v.trim()).unwrap_or(default);
        let host = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"));
        match host {
            Some(rest)
                if !rest.is_empty()
                    && !rest.starts_with('/')
                    && !url.contains(char::is_whitespace) =>
            {
                url.trim_end_matches('/').to_string()
            }
            _ => {
                self.issue(
                    key,
                    format!(
                        "must be an http:// or https:// URL, got {:?}",
                        redact_url(url)
                    ),
                );
                default.to_string()
            }
        }
    }

    /// A path: `~/` expands to `$HOME`; relative paths are anchored at the config directory.
    fn path(&mut self, key: &str, value: &str) -> Option<PathBuf> {
        let value = value.trim();
        if value.is_empty() {
            self.issue(key, "must not be empty");
            return None;
        }
        let path = if value == "~" || value.starts_with("~/") {
            match self.env.get("HOME").filter(|h| !h.is_empty()) {
                Some(home) => {
                    PathBuf::from(home).join(value.trim_start_matches('~').trim_start_matches('/'))
                }
                None => {
                    self.issue(key, "starts with ~ but HOME is not set");
                    return None;
                }
            }
        } else {
            PathBuf::from(value)
        };
        Some(match &self.base {
            Some(base) if path.is_relative() => base.join(path),
            _ => path,
        })
    }

    /// A credential reference: exactly one of `file`, `env`, `command`, `value`.
    fn credential(&mut self, key: &str, raw: Option<&RawCredential>) -> Option<CredentialRef> {
        let Some(raw) = raw else {
            self.issue(
                key,
                "is required (a table with one of file, env or command)",
            );
            return None;
        };
        let set = [
            raw.file.is_some(),
            raw.env.is_some(),
            raw.command.is_some(),
            raw.value.is_some(),
        ]
        .into_iter()
        .filter(|s| *s)
        .count();
        if set != 1 {
            self.issue(
                key,
                format!("needs exactly one of file, env, command or value; {set} given"),
            );
            return None;
        }
        if let Some(file) = &raw.file {
            return self
                .path(&format!("{key}.file"), file)
                .map(CredentialRef::File);
        }
        if let Some(var) = &raw.env {
            let valid = !var.is_empty()
                && !var.starts_with(|c: char| c.is_ascii_digit())
                && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                self.issue(
                    &format!("{key}.env"),
                    format!("{var:?} is not a valid variable name"),
                );
                return None;
            }
            return Some(CredentialRef::Env(var.clone()));
        }
        if let Some(argv) = &raw.command {
            if argv.first().is_none_or(|p| p.trim().is_empty()) {
                self.issue(
                    &format!("{key}.command"),
                    "must name a program as its first element",
                );
                return None;
            }
            return Some(CredentialRef::Command(argv.clone()));
        }
        match &raw.value {
            Some(value) if !value.trim().is_empty() => {
                self.warnings.push(ConfigIssue {
                    key: format!("{key}.value"),
                    reason: "inline secret in the config file; prefer file, env or command".into(),
                });
                Some(CredentialRef::Inline(Secret::new(value.clone())))
            }
            _ => {
                self.issue(&format!("{key}.value"), "must not be empty");
                None
            }
        }
    }

    /// A non-empty list of non-empty strings.
    fn list(&mut self, key: &str, value: Option<&Vec<String>>, default: &[&str]) -> Vec<String> {
        match value {
            None => default.iter().map(|s| s.to_string()).collect(),
            Some(list) if list.is_empty() => {
                self.issue(key, "must not be empty");
                Vec::new()
            }
            Some(list) => {
                if list.iter().any(|s| s.trim().is_empty()) {
                    self.issue(key, "must not contain empty names");
                }
                list.clone()
            }
        }
    }
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Config, ConfigError> {
        let base = raw
            .origin
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf);
        let mut c = Check {
            env: &raw.env,
            base,
            issues: Vec::new(),
            warnings: Vec::new(),
        };

        let data_dir = match &raw.data_dir {
            Some(dir) => c.path("data_dir", dir),
            None => Some(default_data_dir(&raw.env)),
        }
        .unwrap_or_default();
        let socket_path = match &raw.socket_path {
            Some(path) => c.path("socket_path", path),
            None => Some(default_socket_path(&raw.env, &data_dir)),
        }
        .unwrap_or_default();
        if socket_path.as_os_str().len() > MAX_SOCKET_PATH {
            c.issue(
                "socket_path",
                format!(
                    "{} is longer than {MAX_SOCKET_PATH} bytes, the limit for Unix socket paths",
                    socket_path.display()
                ),
            );
        }
        let log_format = match raw.log_format.as_deref().map(str::trim) {
            None | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => {
                c.issue(
                    "log_format",
                    format!("must be \"pretty\" or \"json\", got {other:?}"),
                );
                LogFormat::Pretty
            }
        };
        let log_level = raw
            .log_level
            .as_deref()
            .map(str::trim)
            .unwrap_or("info")
            .to_string();
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&log_level) {
            c.issue("log_level", format!("not a valid filter ({e})"));
        }
        let shutdown_grace =
            Duration::from_secs(c.int("shutdown_grace_secs", raw.shutdown_grace_secs, 10, 0, 3600));

        let rs = raw.sync.unwrap_or_default();
        let sync = SyncConfig {
            poll_interval: Duration::from_secs(c.int(
                "sync.poll_interval_secs",
                rs.poll_interval_secs,
                60,
                1,
                86_400,
            )),
            batch_size: c.int("sync.batch_size", rs.batch_size, 50, 1, 100) as usize,
            initial_query: c.optional("sync.initial_query", rs.initial_query.as_ref()),
        };

        let rq = raw.quota.unwrap_or_default();
        let profile = quota_profile(&mut c, "quota.profile", rq.profile.as_deref())
            .unwrap_or(QuotaProfile::Y2026);
        let units_override = rq.units_per_user_per_minute.map(|v| {
            c.int(
                "quota.units_per_user_per_minute",
                Some(v),
                0,
                1,
                100_000_000,
            ) as u32
        });
        let cost_override = rq
            .messages_get_cost
            .map(|v| c.int("quota.messages_get_cost", Some(v), 0, 1, 10_000) as u32);
        let pacing = rq.pacing.unwrap_or(0.97);
        if !(pacing > 0.0 && pacing <= 1.0) {
            c.issue("quota.pacing", format!("must be in (0, 1], got {pacing}"));
        }
        let scale = rq.scale.unwrap_or(1.0);
        if !(scale.is_finite() && scale > 0.0 && scale <= 1_000_000.0) {
            c.issue(
                "quota.scale",
                format!("must be a positive number, got {scale}"),
            );
        }
        let quota = QuotaConfig {
            profile,
            units_per_user_per_minute: units_override
                .unwrap_or_else(|| profile.units_per_user_per_minute()),
            messages_get_cost: cost_override.unwrap_or_else(|| profile.messages_get_cost()),
            project_units_per_minute: c.int(
                "quota.project_units_per_minute",
                rq.project_units_per_minute,
                1_200_000,
                1,
                1_000_000_000,
            ) as u32,
            max_in_flight: c.int("quota.max_in_flight", rq.max_in_flight, 10, 1, 1000) as usize,
            pacing,
            scale,
        };
        // An account's `quota_profile` swaps the profile defaults; explicit `[quota]` overrides
        // of the per-user ceiling and the get cost still win.
        let quota_for = |profile: QuotaProfile| QuotaConfig {
            profile,
            units_per_user_per_minute: units_override
                .unwrap_or_else(|| profile.units_per_user_per_minute()),
            messages_get_cost: cost_override.unwrap_or_else(|| profile.messages_get_cost()),
            ..quota.clone()
        };

        let rr = raw.retry.unwrap_or_default();
        let retry_base = c.int("retry.base_ms", rr.base_ms, 1000, 1, 3_600_000);
        let retry_cap = c.int(
            "retry.cap_ms",
            rr.cap_ms,
            30_000.max(retry_base),
            1,
            86_400_000,
        );
        if retry_cap < retry_base {
            c.issue(
                "retry.cap_ms",
                format!("must be at least retry.base_ms ({retry_base})"),
            );
        }
        let retry = RetryConfig {
            base: Duration::from_millis(retry_base),
            cap: Duration::from_millis(retry_cap),
            max_attempts: c.int("retry.max_attempts", rr.max_attempts, 8, 1, 1000) as u32,
        };

        let rs = raw.restart.unwrap_or_default();
        let restart_base = c.int("restart.base_ms", rs.base_ms, 1000, 1, 3_600_000);
        let restart_cap = c.int(
            "restart.cap_ms",
            rs.cap_ms,
            30_000.max(restart_base),
            1,
            86_400_000,
        );
        if restart_cap < restart_base {
            c.issue(
                "restart.cap_ms",
                format!("must be at least restart.base_ms ({restart_base})"),
            );
        }
        let restart = RestartConfig {
            base: Duration::from_millis(restart_base),
            cap: Duration::from_millis(restart_cap),
            max_restarts: c.int("restart.max_restarts", rs.max_restarts, 5, 0, 1000) as u32,
            window: Duration::from_secs(c.int(
                "restart.window_secs",
                rs.window_secs,
                300,
                1,
                86_400,
            )),
        };

        let mut accounts = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, ra) in raw.accounts.iter().enumerate() {
            let key = format!("accounts[{i}]");
            if let Some(id) = ra.id.as_ref().map(|s| s.trim().to_string()) {
                if let Some(first) = seen.get(&id) {
                    c.issue(
                        &format!("{key}.id"),
                        format!("duplicate account id {id:?} (also accounts[{first}])"),
                    );
                } else {
                    seen.insert(id, i);
                }
            }
            if let Some(account) = account(&mut c, &key, ra, &sync, &quota_for, profile) {
                let twin = (account.kind == AccountKind::Gmail && ra.calendar == Some(true))
                    .then(|| calendar_twin(&mut c, &key, ra, &account))
                    .flatten();
                accounts.push(account);
                if let Some(t) = twin {
                    if seen.contains_key(&t.id) {
                        c.issue(
                            &format!("{key}.calendar"),
                            format!("the Calendar account id {:?} is taken", t.id),
                        );
                    }
                    accounts.push(t);
                }
            }
        }

        let webhooks = webhook::webhooks(&mut c, &raw.webhooks, &seen);

        let maildir = raw.maildir.as_ref().map(|m| MaildirConfig {
            root: match &m.root {
                Some(root) => c.path("maildir.root", root).unwrap_or_default(),
                None => data_dir.join("maildir"),
            },
            enabled: m.enabled.unwrap_or(true),
        });
        let vdir = raw.vdir.as_ref().map(|m| MaildirConfig {
            root: match &m.root {
                Some(root) => c.path("vdir.root", root).unwrap_or_default(),
                None => data_dir.join("vdir"),
            },
            enabled: m.enabled.unwrap_or(true),
        });
        let feed = FeedConfig {
            retention: Duration::from_secs(
                86_400
                    * c.int(
                        "feed.retention_days",
                        raw.feed.as_ref().and_then(|f| f.retention_days),
                        7,
                        1,
                        3650,
                    ),
            ),
        };

        let rs = raw.store.as_ref();
        let store = StoreConfig {
            min_free_mb: c.int(
                "store.min_free_mb",
                rs.and_then(|s| s.min_free_mb),
                500,
                0,
                1_000_000,
            ),
            min_free_percent: c.int(
                "store.min_free_percent",
                rs.and_then(|s| s.min_free_percent),
                1,
                0,
                50,
            ),
            open_timeout: Duration::from_secs(c.int(
                "store.open_timeout_secs",
                rs.and_then(|s| s.open_timeout_secs),
                120,
                1,
                86_400,
            )),
        };

        let push = raw.push.as_ref().and_then(|p| push(&mut c, p, &accounts));
        if push.is_none() {
            for (i, a) in accounts.iter().enumerate() {
                if let AccountSettings::Gmail(GmailSettings { push: Some(_), .. }) = &a.settings {
                    c.issue(
                        &format!("accounts[{i}].push_topic"),
                        "needs a [push] section (an endpoint port or [push.pull]) to receive the notifications",
                    );
                }
            }
        }

        let metrics = service::metrics(&mut c, raw.metrics.as_ref());
        let debug = service::debug(raw.debug.as_ref());

        let Check {
            issues, warnings, ..
        } = c;
        if !issues.is_empty() {
            return Err(ConfigError::Invalid {
                file: raw.origin,
                issues,
            });
        }
        Ok(Config {
            source: raw.origin,
            data_dir,
            socket_path,
            log_format,
            log_level,
            shutdown_grace,
            sync,
            quota,
            retry,
            restart,
            accounts,
            webhooks,
            maildir,
            vdir,
            feed,
            push,
            store,
            metrics,
            debug,
            warnings,
        })
    }
}

/// `$XDG_DATA_HOME/mailsync`, else `~/.local/share/mailsync`, else `/var/lib/mailsync` (no home:
/// a system service).
fn default_data_dir(env: &Env) -> PathBuf {
    xdg_dir(env, "XDG_DATA_HOME", ".local/share")
        .map(|d| d.join("mailsync"))
        .unwrap_or_else(|| PathBuf::from("/var/lib/mailsync"))
}

/// `$XDG_RUNTIME_DIR/mailsync/control.sock`, else `<data_dir>/control.sock`.
fn default_socket_path(env: &Env, data_dir: &Path) -> PathBuf {
    match env
        .get("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    {
        Some(run) => run.join("mailsync").join("control.sock"),
        None => data_dir.join("control.sock"),
    }
}

fn quota_profile(c: &mut Check<'_>, key: &str, value: Option<&str>) -> Option<QuotaProfile> {
    match value.map(str::trim) {
        None => None,
        Some("2026") => Some(QuotaProfile::Y2026),
        Some("legacy") => Some(QuotaProfile::Legacy),
        Some(other) => {
            c.issue(
                key,
                format!("must be \"2026\" or \"legacy\", got {other:?}"),
            );
            None
        }
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '-'))
}

const GOOGLE_API_BASE_GMAIL: &str = "https://gmail.googleapis.com";
const GOOGLE_API_BASE_CALENDAR: &str = "https://www.googleapis.com";
const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
const GOOGLE_AUTH_URL: &str = "https://accounts.google.com/o/oauth2/v2/auth";

/// The Calendar settings of a `kind = "calendar"` account, or of the Calendar half of a Gmail
/// account with `calendar = true` (same credential; its own `calendar_api_base`).
fn calendar_settings(
    c: &mut Check<'_>,
    key: &str,
    ra: &RawAccount,
    api_base: Option<&String>,
    api_base_key: &str,
) -> Option<CalendarSettings> {
    let email = c.optional(&format!("{key}.email"), ra.email.as_ref());
    let api_base = c.url(
        &format!("{key}.{api_base_key}"),
        api_base,
        GOOGLE_API_BASE_CALENDAR,
    );
    let auth = google_auth(c, key, ra);
    let calendar_ids = ra.calendar_ids.is_some().then(|| {
        c.list(
            &format!("{key}.calendar_ids"),
            ra.calendar_ids.as_ref(),
            &[],
        )
    });
    let requests_per_minute = c.int(
        &format!("{key}.calendar_requests_per_minute"),
        ra.calendar_requests_per_minute,
        60,
        1,
        599,
    ) as u32;
    let max_in_flight = c.int(
        &format!("{key}.calendar_max_in_flight"),
        ra.calendar_max_in_flight,
        5,
        1,
        50,
    ) as usize;
    let page_size = c.int(
        &format!("{key}.calendar_page_size"),
        ra.calendar_page_size,
        2500,
        1,
        2500,
    ) as u32;
    Some(CalendarSettings {
        email,
        api_base,
        auth: auth?,
        calendar_ids,
        requests_per_minute,
        max_in_flight,
        page_size,
    })
}

/// A Gmail account with `calendar = true` also syncs its Calendar: a second account
/// `<id>-calendar` of kind calendar with the same OAuth credential.
fn calendar_twin(
    c: &mut Check<'_>,
    key: &str,
    ra: &RawAccount,
    gmail: &AccountConfig,
) -> Option<AccountConfig> {
    let settings = calendar_settings(
        c,
        key,
        ra,
        ra.calendar_api_base.as_ref(),
        "calendar_api_base",
    )?;
    Some(AccountConfig {
        id: format!("{}-calendar", gmail.id),
        kind: AccountKind::Calendar,
        settings: AccountSettings::Calendar(settings),
        ..gmail.clone()
    })
}

fn account(
    c: &mut Check<'_>,
    key: &str,
    ra: &RawAccount,
    sync: &SyncConfig,
    quota_for: &dyn Fn(QuotaProfile) -> QuotaConfig,
    global_profile: QuotaProfile,
) -> Option<AccountConfig> {
    let id = c.required(&format!("{key}.id"), ra.id.as_ref());
    if let Some(id) = &id
        && !valid_id(id)
    {
        c.issue(
            &format!("{key}.id"),
            format!("{id:?} may only contain letters, digits, '_', '.' and '-'"),
        );
    }
    let kind = match ra.kind.as_deref().map(str::trim) {
        Some("gmail") => Some(AccountKind::Gmail),
        Some("calendar") => Some(AccountKind::Calendar),
        Some("imap") => Some(AccountKind::Imap),
        Some("test") => Some(AccountKind::Test),
        Some(other) => {
            c.issue(
                &format!("{key}.kind"),
                format!("must be one of gmail, calendar, imap, test; got {other:?}"),
            );
            None
        }
        None => {
            c.issue(
                &format!("{key}.kind"),
                "is required (gmail, calendar, imap or test)",
            );
            None
        }
    };
    let poll_interval = ra.poll_interval_secs.map_or(sync.poll_interval, |v| {
        Duration::from_secs(c.int(&format!("{key}.poll_interval_secs"), Some(v), 60, 1, 86_400))
    });
    let initial_query = match &ra.initial_query {
        Some(q) => c.optional(&format!("{key}.initial_query"), Some(q)),
        None => sync.initial_query.clone(),
    };
    let profile = quota_profile(
        c,
        &format!("{key}.quota_profile"),
        ra.quota_profile.as_deref(),
    );
    let kind = kind?;
    reject_foreign_keys(c, key, kind, ra);
    let quota = quota_for(profile.unwrap_or(global_profile));
    let settings = match kind {
        AccountKind::Gmail => {
            let email = c.required(&format!("{key}.email"), ra.email.as_ref());
            if let Some(email) = &email
                && !email.contains('@')
            {
                c.issue(
                    &format!("{key}.email"),
                    format!("{email:?} is not an email address"),
                );
            }
            let api_base = c.url(
                &format!("{key}.api_base"),
                ra.api_base.as_ref(),
                GOOGLE_API_BASE_GMAIL,
            );
            let auth = google_auth(c, key, ra);
            let push = gmail_push(c, key, ra);
            AccountSettings::Gmail(GmailSettings {
                email: email?,
                api_base,
                auth: auth?,
                push,
            })
        }
        AccountKind::Calendar => AccountSettings::Calendar(calendar_settings(
            c,
            key,
            ra,
            ra.api_base.as_ref(),
            "api_base",
        )?),
        AccountKind::Imap => {
            let host = c.required(&format!("{key}.host"), ra.host.as_ref());
            let tls = match ra.tls.as_deref().map(str::trim) {
                None | Some("implicit") => ImapTls::Implicit,
                Some("starttls") => ImapTls::StartTls,
                Some("none") => ImapTls::None,
                Some(other) => {
                    c.issue(
                        &format!("{key}.tls"),
                        format!("must be \"implicit\", \"starttls\" or \"none\", got {other:?}"),
                    );
                    ImapTls::Implicit
                }
            };
            let default_port = if tls == ImapTls::Implicit { 993 } else { 143 };
            let port = c.int(&format!("{key}.port"), ra.port, default_port, 1, 65_535) as u16;
            let username = c.required(&format!("{key}.username"), ra.username.as_ref());
            let password = c.credential(&format!("{key}.password"), ra.password.as_ref());
            let mailboxes = c.list(&format!("{key}.mailboxes"), ra.mailboxes.as_ref(), &["*"]);
            imap::settings(
                c,
                key,
                ra.imap.as_ref(),
                imap::Base {
                    host: host?,
                    port,
                    username: username?,
                    password: password?,
                    tls,
                    mailboxes,
                },
            )?
        }
        AccountKind::Test => {
            AccountSettings::Test(test_settings(c, &format!("{key}.test"), ra.test.as_ref())?)
        }
    };
    Some(AccountConfig {
        id: id?,
        kind,
        enabled: ra.enabled.unwrap_or(true),
        poll_interval,
        initial_query,
        batch_size: sync.batch_size,
        quota,
        settings,
    })
}

/// Keys that belong to another kind are errors: they would silently do nothing.
fn reject_foreign_keys(c: &mut Check<'_>, key: &str, kind: AccountKind, ra: &RawAccount) {
    let google = matches!(kind, AccountKind::Gmail | AccountKind::Calendar);
    let twin = kind == AccountKind::Gmail && ra.calendar == Some(true);
    let calendar_ok = kind == AccountKind::Calendar || twin;
    let present = [
        (
            "calendar",
            ra.calendar.is_some(),
            kind == AccountKind::Gmail,
        ),
        ("calendar_api_base", ra.calendar_api_base.is_some(), twin),
        ("email", ra.email.is_some(), google),
        ("api_base", ra.api_base.is_some(), google),
        ("token_url", ra.token_url.is_some(), google),
        ("auth_url", ra.auth_url.is_some(), google),
        ("client_id", ra.client_id.is_some(), google),
        ("client_secret", ra.client_secret.is_some(), google),
        ("refresh_token", ra.refresh_token.is_some(), google),
        ("calendar_ids", ra.calendar_ids.is_some(), calendar_ok),
        (
            "calendar_requests_per_minute",
            ra.calendar_requests_per_minute.is_some(),
            calendar_ok,
        ),
        (
            "calendar_max_in_flight",
            ra.calendar_max_in_flight.is_some(),
            calendar_ok,
        ),
        (
            "calendar_page_size",
            ra.calendar_page_size.is_some(),
            calendar_ok,
        ),
        ("host", ra.host.is_some(), kind == AccountKind::Imap),
        ("port", ra.port.is_some(), kind == AccountKind::Imap),
        ("username", ra.username.is_some(), kind == AccountKind::Imap),
        ("password", ra.password.is_some(), kind == AccountKind::Imap),
        ("tls", ra.tls.is_some(), kind == AccountKind::Imap),
        (
            "mailboxes",
            ra.mailboxes.is_some(),
            kind == AccountKind::Imap,
        ),
        ("imap", ra.imap.is_some(), kind == AccountKind::Imap),
        ("test", ra.test.is_some(), kind == AccountKind::Test),
        (
            "push_topic",
            ra.push_topic.is_some(),
            kind == AccountKind::Gmail,
        ),
        (
            "push_label_ids",
            ra.push_label_ids.is_some(),
            kind == AccountKind::Gmail,
        ),
    ];
    for (name, is_set, allowed) in present {
        if is_set && !allowed {
            c.issue(
                &format!("{key}.{name}"),
                format!("is not a setting of kind {kind:?}", kind = kind.as_str()),
            );
        }
    }
}

/// A Pub/Sub resource name `projects/<project>/<collection>/<name>`.
fn valid_resource(name: &str, collection: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    parts.len() == 4
        && parts[0] == "projects"
        && parts[2] == collection
        && !parts[1].is_empty()
        && !parts[3].is_empty()
        && !name.contains(char::is_whitespace)
}

fn gmail_push(c: &mut Check<'_>, key: &str, ra: &RawAccount) -> Option<GmailPush> {
    let topic = c.optional(&format!("{key}.push_topic"), ra.push_topic.as_ref());
    let Some(topic) = topic else {
        if ra.push_label_ids.is_some() {
            c.issue(
                &format!("{key}.push_label_ids"),
                "is only used together with push_topic",
            );
        }
        return None;
    };
    if !valid_resource(&topic, "topics") {
        c.issue(
            &format!("{key}.push_topic"),
            format!("must look like projects/<project>/topics/<topic>, got {topic:?}"),
        );
    }
    let label_ids = match &ra.push_label_ids {
        Some(ids) => c.list(&format!("{key}.push_label_ids"), Some(ids), &[]),
        None => Vec::new(),
    };
    Some(GmailPush { topic, label_ids })
}

const GOOGLE_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";
const GOOGLE_PUBSUB_URL: &str = "https://pubsub.googleapis.com";

fn push(c: &mut Check<'_>, rp: &RawPush, accounts: &[AccountConfig]) -> Option<PushConfig> {
    let bind = rp.bind.as_deref().map(str::trim).unwrap_or("127.0.0.1");
    let bind_ip = match bind.parse::<std::net::IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) => {
            c.issue(
                "push.bind",
                format!("must be an IP address such as 127.0.0.1 or ::1, got {bind:?}"),
            );
            None
        }
    };
    let listen = rp
        .port
        .map(|p| c.int("push.port", Some(p), 0, 1, 65_535) as u16)
        .and_then(|port| bind_ip.map(|ip| std::net::SocketAddr::new(ip, port)));
    if rp.bind.is_some() && rp.port.is_none() {
        c.issue("push.bind", "needs push.port (the endpoint's port)");
    }
    let audience = c.optional("push.audience", rp.audience.as_ref());
    let service_account = c.optional("push.service_account", rp.service_account.as_ref());
    let jwks_url = c.url("push.jwks_url", rp.jwks_url.as_ref(), GOOGLE_JWKS_URL);
    let jwt = match (audience, service_account) {
        (Some(audience), Some(service_account)) => Some(PushJwt {
            audience,
            service_account,
            jwks_url,
        }),
        (None, None) => None,
        (Some(_), None) => {
            c.issue(
                "push.service_account",
                "is required with push.audience (JWT verification needs both)",
            );
            None
        }
        (None, Some(_)) => {
            c.issue(
                "push.audience",
                "is required with push.service_account (JWT verification needs both)",
            );
            None
        }
    };
    let verification_token = match &rp.verification_token {
        Some(t) => c.credential("push.verification_token", Some(t)),
        None => None,
    };
    if listen.is_some() && jwt.is_none() && rp.verification_token.is_none() {
        c.issue(
            "push.port",
            "an open push endpoint needs authentication: set push.audience and \
             push.service_account (OIDC JWT) and/or push.verification_token",
        );
    }
    let pull = rp.pull.as_ref().and_then(|rl| {
        let subscription = c.required("push.pull.subscription", rl.subscription.as_ref())?;
        if !valid_resource(&subscription, "subscriptions") {
            c.issue(
                "push.pull.subscription",
                format!(
                    "must look like projects/<project>/subscriptions/<name>, got {subscription:?}"
                ),
            );
        }
        let endpoint = c.url(
            "push.pull.endpoint",
            rl.endpoint.as_ref(),
            GOOGLE_PUBSUB_URL,
        );
        let token_account = c.optional("push.pull.token_account", rl.token_account.as_ref());
        if let Some(id) = &token_account
            && !accounts
                .iter()
                .any(|a| &a.id == id && a.kind == AccountKind::Gmail)
        {
            c.issue(
                "push.pull.token_account",
                format!("no gmail account with id {id:?}"),
            );
        }
        if token_account.is_none() && endpoint.starts_with("https://") {
            c.issue(
                "push.pull.token_account",
                "is required to pull from Google's Pub/Sub (only an http:// emulator needs no credentials)",
            );
        }
        Some(PullConfig {
            subscription,
            endpoint,
            max_messages: c.int("push.pull.max_messages", rl.max_messages, 100, 1, 1000) as u32,
            ack_deadline: Duration::from_secs(c.int(
                "push.pull.ack_deadline_secs",
                rl.ack_deadline_secs,
                60,
                10,
                600,
            )),
            token_account,
            test_hold_before_ack: Duration::from_millis(c.int(
                "push.pull.test_hold_before_ack_ms",
                rl.test_hold_before_ack_ms,
                0,
                0,
                600_000,
            )),
        })
    });
    if listen.is_none() && rp.pull.is_none() {
        c.issue(
            "push",
            "needs push.port (an endpoint for a push subscription) or [push.pull]",
        );
    }
    Some(PushConfig {
        listen,
        jwt,
        verification_token,
        max_body_bytes: c.int(
            "push.max_body_bytes",
            rp.max_body_bytes,
            65_536,
            1_024,
            16 * 1024 * 1024,
        ) as usize,
        silence: Duration::from_secs(c.int("push.silence_secs", rp.silence_secs, 600, 1, 86_400)),
        stop_watch_on_shutdown: rp.stop_watch_on_shutdown.unwrap_or(false),
        pull,
        calendar_address: rp.calendar_address.as_ref().map(|a| {
            c.url(
                "push.calendar_address",
                Some(a),
                "https://invalid.example/push/calendar",
            )
        }),
        calendar_debounce: Duration::from_millis(c.int(
            "push.calendar_debounce_ms",
            rp.calendar_debounce_ms,
            2_000,
            0,
            60_000,
        )),
        calendar_renew_before: Duration::from_secs(c.int(
            "push.calendar_renew_before_secs",
            rp.calendar_renew_before_secs,
            86_400,
            1,
            30 * 86_400,
        )),
        calendar_channel_ttl: Duration::from_secs(c.int(
            "push.calendar_channel_ttl_secs",
            rp.calendar_channel_ttl_secs,
            604_800,
            1,
            30 * 86_400,
        )),
    })
}

fn google_auth(c: &mut Check<'_>, key: &str, ra: &RawAccount) -> Option<GoogleAuth> {
    let token_url = c.url(
        &format!("{key}.token_url"),
        ra.token_url.as_ref(),
        GOOGLE_TOKEN_URL,
    );
    let auth_url = c.url(
        &format!("{key}.auth_url"),
        ra.auth_url.as_ref(),
        GOOGLE_AUTH_URL,
    );
    let client_id = c.required(&format!("{key}.client_id"), ra.client_id.as_ref());
    let client_secret = c.credential(&format!("{key}.client_secret"), ra.client_secret.as_ref());
    let refresh_token = c.credential(&format!("{key}.refresh_token"), ra.refresh_token.as_ref());
    Some(GoogleAuth {
        token_url,
        auth_url,
        client_id: client_id?,
        client_secret: client_secret?,
        refresh_token: refresh_token?,
    })
}

fn test_settings(c: &mut Check<'_>, key: &str, rt: Option<&RawTest>) -> Option<TestSettings> {
    let default = RawTest::default();
    let rt = rt.unwrap_or(&default);
    let fail_child = match rt.fail_child.as_deref().map(str::trim) {
        None => None,
        Some("history_sync") => Some(TestChild::HistorySync),
        Some("backfill") => Some(TestChild::Backfill),
        Some("ingest") => Some(TestChild::Ingest),
        Some(other) => {
            c.issue(
                &format!("{key}.fail_child"),
                format!("must be \"history_sync\", \"backfill\" or \"ingest\", got {other:?}"),
            );
            None
        }
    };
    let completions_file = match &rt.completions_file {
        Some(path) => Some(c.path(&format!("{key}.completions_file"), path)?),
        None => None,
    };
    Some(TestSettings {
        messages: c.int(&format!("{key}.messages"), rt.messages, 20, 0, 10_000_000),
        fail_child,
        fail_times: c.int(&format!("{key}.fail_times"), rt.fail_times, 0, 0, 1_000_000) as u32,
        completions_file,
        job_delay: Duration::from_millis(c.int(
            &format!("{key}.job_delay_ms"),
            rt.job_delay_ms,
            0,
            0,
            3_600_000,
        )),
    })
}
