//! `Check`: the issue and warning collector every validator writes to, and the shared value
//! readers (integers in range, required and optional strings, URLs, paths, credential
//! references, name lists).

#[allow(unused_imports)]
use super::*;

/// Collects issues and warnings while building `Config`; knows how to read paths.
pub(super) struct Check<'a> {
    pub(super) env: &'a Env,
    /// The config file's directory: relative paths are resolved against it.
    pub(super) base: Option<PathBuf>,
    pub(super) issues: Vec<ConfigIssue>,
    pub(super) warnings: Vec<ConfigIssue>,
}

impl Check<'_> {
    pub(super) fn issue(&mut self, key: &str, reason: impl Into<String>) {
        self.issues.push(ConfigIssue {
            key: key.to_string(),
            reason: reason.into(),
        });
    }

    /// An integer in `min..=max`, or `default` when absent (or invalid, with an issue).
    pub(super) fn int(
        &mut self,
        key: &str,
        value: Option<i64>,
        default: u64,
        min: u64,
        max: u64,
    ) -> u64 {
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
    pub(super) fn required(&mut self, key: &str, value: Option<&String>) -> Option<String> {
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
    pub(super) fn optional(&mut self, key: &str, value: Option<&String>) -> Option<String> {
        match value.map(|v| v.trim()) {
            Some("") => {
                self.issue(key, "must not be empty (leave the key out instead)");
                None
            }
            other => other.map(str::to_string),
        }
    }

    /// An http(s) URL; a trailing slash is removed so callers can append paths.
    pub(super) fn url(&mut self, key: &str, value: Option<&String>, default: &str) -> String {
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
    pub(super) fn path(&mut self, key: &str, value: &str) -> Option<PathBuf> {
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
    pub(super) fn credential(
        &mut self,
        key: &str,
        raw: Option<&RawCredential>,
    ) -> Option<CredentialRef> {
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
    pub(super) fn list(
        &mut self,
        key: &str,
        value: Option<&Vec<String>>,
        default: &[&str],
    ) -> Vec<String> {
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
