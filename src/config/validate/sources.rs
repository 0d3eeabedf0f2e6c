//! The raw stage's sources: the TOML text merged with the `MAILSYNC_*` environment through
//! the `config` crate, its errors mapped to key paths (values never echoed: URLs are shown
//! without userinfo or query), and the XDG directories defaults come from.

#[allow(unused_imports)]
use super::*;

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
pub(super) fn issue_from_config_error(err: config::ConfigError) -> ConfigIssue {
    let (key, reason, origin) = match err {
        config::ConfigError::Type {
            origin,
            unexpected,
            expected,
            key,
        } => (
            key.unwrap_or_default(),
            // The kind of value only (`a string`), never the value: an override may hold a
            // secret that belongs to another key.
            format!("expected {expected}, found {}", value_kind(&unexpected)),
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

pub(super) fn join_key(parent: &str, child: &str) -> String {
    match (parent.is_empty(), child.is_empty()) {
        (true, _) => child.to_string(),
        (false, true) => parent.to_string(),
        (false, false) if child.starts_with('[') => format!("{parent}{child}"),
        (false, false) => format!("{parent}.{child}"),
    }
}

/// What kind of value `config` found (`string`, `integer`, ...), without the value: its
/// `Display` is the kind followed by the value.
fn value_kind(unexpected: &impl std::fmt::Display) -> String {
    let text = unexpected.to_string();
    let kind = text.split([' ', '`', '"']).next().unwrap_or("value");
    format!("a {kind}")
}

/// Extracts `foo` from serde's "unknown field `foo`, expected ...".
pub(super) fn unknown_field(reason: &str) -> Option<&str> {
    let rest = reason.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

/// `$XDG_CONFIG_HOME` (when absolute) or `~/.config`.
pub(crate) fn config_home(env: &Env) -> Option<PathBuf> {
    xdg_dir(env, "XDG_CONFIG_HOME", ".config")
}

pub(super) fn xdg_dir(env: &Env, var: &str, fallback: &str) -> Option<PathBuf> {
    // The XDG spec says relative values are invalid and must be ignored.
    if let Some(dir) = env.get(var).map(PathBuf::from).filter(|p| p.is_absolute()) {
        return Some(dir);
    }
    env.get("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(fallback))
}
