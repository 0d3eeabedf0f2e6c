//! Strict types: the config file means exactly what it says.
//!
//! The `config` crate (which merges the file with `MAILSYNC_*` overrides) converts types
//! silently: `enabled = "no"` becomes `false`, `batch_size = 7.9` becomes 7, `true` becomes 1.
//! This pass deserializes the file text alone with `toml` into the same [`RawConfig`], which
//! converts nothing, so a wrong type is an error naming the file and the key. Environment
//! overrides are strings by nature and keep the `config` crate's parsing.
//!
//! Error reasons never contain the value: a secret given as a plain string (e.g.
//! `refresh_token = "1//…"`) is rejected with the key and the accepted forms only.

use super::ConfigIssue;
use super::raw::RawConfig;

/// Keys whose values are credential references (secrets).
const CREDENTIAL_KEYS: &[&str] = &[
    "client_secret",
    "refresh_token",
    "password",
    "secret",
    "verification_token",
];

/// Type-checks `toml` strictly; `None` when every value has its key's type.
pub(crate) fn check(toml: &str) -> Option<ConfigIssue> {
    let err = toml::from_str::<RawConfig>(toml).err()?;
    let (table, key) = err
        .span()
        .map(|span| key_at(toml, span.start))
        .unwrap_or_default();
    let dotted = match (table.is_empty(), key.is_empty()) {
        (_, true) => table.clone(),
        (true, false) => key.clone(),
        (false, false) => format!("{table}.{key}"),
    };
    let reason = if CREDENTIAL_KEYS.contains(&key.as_str()) {
        "a secret cannot be given as a plain value; use { file = \"...\" }, { env = \"VAR\" } or { command = [\"prog\", \"arg\"] }".to_string()
    } else {
        scrub(err.message())
    };
    Some(ConfigIssue {
        key: dotted,
        reason,
    })
}

/// The table header and the key of the line holding byte `at`.
fn key_at(text: &str, at: usize) -> (String, String) {
    let at = at.min(text.len());
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    let line = &text[line_start..line_end];
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .filter(|k| !k.starts_with('['))
        .unwrap_or_default();
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string())
        .unwrap_or_default();
    (table, key)
}

/// `invalid type: string "no", expected a boolean` → `expected a boolean, found a string`:
/// the kind of value, never the value.
fn scrub(message: &str) -> String {
    let message = message.trim();
    if let Some(rest) = message.strip_prefix("invalid type: ")
        && let Some((found, expected)) = rest.split_once(", expected ")
    {
        let kind = found.split([' ', '`']).next().unwrap_or("value");
        return format!("expected {expected}, found {}", article(kind));
    }
    if message.contains('"') || message.contains('`') {
        // Some other serde message quoting what it saw: keep only the part before the quote.
        let cut = message.find(['"', '`']).unwrap_or(message.len());
        return message[..cut].trim_end_matches([' ', ':']).to_string();
    }
    message.to_string()
}

fn article(kind: &str) -> String {
    match kind {
        "integer" => "an integer".into(),
        "string" => "a string".into(),
        "boolean" => "a boolean".into(),
        "floating" => "a float".into(),
        other => format!("a {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(toml: &str) -> ConfigIssue {
        check(toml).unwrap_or_else(|| panic!("accepted: {toml}"))
    }

    #[test]
    fn wrong_types_are_errors_naming_the_key() {
        for (toml, key) in [
            ("shutdown_grace_secs = true\n", "shutdown_grace_secs"),
            ("shutdown_grace_secs = 10.9\n", "shutdown_grace_secs"),
            ("[sync]\nbatch_size = 7.9\n", "sync.batch_size"),
            (
                "[[accounts]]\nid = \"a\"\nkind = \"test\"\nenabled = \"no\"\n",
                "accounts.enabled",
            ),
            (
                "[[accounts]]\nid = \"a\"\nkind = \"test\"\nenabled = 5\n",
                "accounts.enabled",
            ),
        ] {
            let i = issue(toml);
            assert_eq!(i.key, key, "{toml}: {i:?}");
            assert!(i.reason.starts_with("expected"), "{toml}: {i:?}");
            assert!(
                !i.reason.contains("no\"") && !i.reason.contains("7.9"),
                "{i:?}"
            );
        }
        assert!(check("shutdown_grace_secs = 10\n[sync]\nbatch_size = 7\n").is_none());
    }

    #[test]
    fn a_plain_string_secret_is_rejected_without_its_value() {
        let i = issue(
            "[[accounts]]\nid = \"a\"\nkind = \"gmail\"\nrefresh_token = \"1//0gSECRETVALUE\"\n",
        );
        assert_eq!(i.key, "accounts.refresh_token");
        assert!(!i.reason.contains("SECRETVALUE"), "{i:?}");
        assert!(i.reason.contains("file"), "{i:?}");
    }
}
