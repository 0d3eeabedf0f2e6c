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

mod account;
mod calendar;
mod check;
mod gmail;
mod imap;
mod push;
mod service;
mod sources;
mod test_account;
mod webhook;

use account::*;
use calendar::*;
use check::Check;
use gmail::*;
use push::*;
use sources::*;
pub(crate) use sources::{config_home, raw_from_sources};
use test_account::*;

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
            spend_burst: rq.spend_burst.unwrap_or(true),
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
            cache_mb: c.int(
                "store.cache_mb",
                rs.and_then(|s| s.cache_mb),
                mailsync_actors::store::CACHE_CAPACITY_BYTES / (1024 * 1024),
                4,
                65_536,
            ),
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
