//! Validation of the `[[webhooks]]` entries: the required stable `name` (unique, an
//! identifier, because the sink's cursor and dead letters are keyed by it), the URL (its
//! userinfo and query are never echoed: they may hold credentials), the signing secret, the
//! account filter and the attempts before a batch is dead-lettered.

use std::collections::HashMap;

use super::super::WebhookConfig;
use super::super::raw::RawWebhook;
use super::Check;

/// The longest webhook name accepted.
const MAX_NAME: usize = 64;

/// Every webhook of the file, in order; problems are issues on `c`.
pub(super) fn webhooks(
    c: &mut Check<'_>,
    raw: &[RawWebhook],
    account_ids: &HashMap<String, usize>,
) -> Vec<WebhookConfig> {
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, rw) in raw.iter().enumerate() {
        let key = format!("webhooks[{i}]");
        let name = name(c, &key, rw.name.as_deref());
        if let Some(n) = &name {
            if let Some(first) = names.get(n) {
                c.issue(
                    &format!("{key}.name"),
                    format!("{n:?} is already the name of webhooks[{first}]; names must be unique"),
                );
            } else {
                names.insert(n.clone(), i);
            }
        }
        if let Some(w) = webhook(c, &key, rw, account_ids, name) {
            out.push(w);
        }
    }
    out
}

/// Whether `name` can name a webhook: starts with an ASCII letter, then letters, digits,
/// `_`, `-` or `.`. A leading letter keeps it apart from the position keys (`webhook:0`) of
/// releases before names existed.
pub(crate) fn valid_name(name: &str) -> bool {
    name.len() <= MAX_NAME
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn name(c: &mut Check<'_>, key: &str, raw: Option<&str>) -> Option<String> {
    let key = format!("{key}.name");
    match raw.map(str::trim) {
        None => {
            c.issue(
                &key,
                "is required: a stable name (e.g. name = \"indexer\") under which the webhook's \
                 cursor and dead letters are kept",
            );
            None
        }
        Some(n) if valid_name(n) => Some(n.to_string()),
        Some(n) => {
            c.issue(
                &key,
                format!(
                    "{n:?} is not a valid name: up to {MAX_NAME} letters, digits, '_', '-' or \
                     '.', starting with a letter"
                ),
            );
            None
        }
    }
}

fn webhook(
    c: &mut Check<'_>,
    key: &str,
    rw: &RawWebhook,
    account_ids: &HashMap<String, usize>,
    name: Option<String>,
) -> Option<WebhookConfig> {
    let url = match &rw.url {
        Some(url) => Some(c.url(&format!("{key}.url"), Some(url), "")),
        None => {
            c.issue(&format!("{key}.url"), "is required");
            None
        }
    };
    let secret = match &rw.secret {
        Some(secret) => Some(c.credential(&format!("{key}.secret"), Some(secret))?),
        None => None,
    };
    if let Some(ids) = &rw.accounts {
        for (j, id) in ids.iter().enumerate() {
            if !account_ids.contains_key(id.trim()) {
                c.issue(
                    &format!("{key}.accounts[{j}]"),
                    format!("no account with id {id:?}"),
                );
            }
        }
    }
    let max_attempts = c.int(&format!("{key}.max_attempts"), rw.max_attempts, 8, 1, 1000) as u32;
    Some(WebhookConfig {
        name: name?,
        url: url?,
        secret,
        accounts: rw
            .accounts
            .as_ref()
            .map(|ids| ids.iter().map(|id| id.trim().to_string()).collect()),
        max_attempts,
    })
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    fn error(toml: &str) -> String {
        match crate::config::load_str(toml, "/etc/mailsync/config.toml") {
            Ok(_) => panic!("accepted: {toml}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_missing_or_duplicate_name_is_an_error_naming_the_file_and_key() {
        let missing = error("[[webhooks]]\nurl = \"http://127.0.0.1:1/a\"\n");
        assert!(missing.contains("/etc/mailsync/config.toml"), "{missing}");
        assert!(missing.contains("webhooks[0].name"), "{missing}");
        assert!(missing.contains("is required"), "{missing}");
        let dup = error(
            "[[webhooks]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/a\"\n\
             [[webhooks]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/b\"\n",
        );
        assert!(dup.contains("webhooks[1].name"), "{dup}");
        assert!(dup.contains("webhooks[0]"), "{dup}");
        let digits = error("[[webhooks]]\nname = \"0\"\nurl = \"http://127.0.0.1:1/a\"\n");
        assert!(digits.contains("webhooks[0].name"), "{digits}");
    }

    #[test]
    fn a_bad_url_never_echoes_its_userinfo_or_query() {
        let e = error(
            "[[webhooks]]\nname = \"a\"\nurl = \"ftp://hookuser:hunter2pass@h/x?token=tok3n\"\n",
        );
        assert!(e.contains("webhooks[0].url"), "{e}");
        for secret in ["hunter2pass", "tok3n", "hookuser"] {
            assert!(!e.contains(secret), "{e}");
        }
    }

    #[test]
    fn webhook_names_are_identifiers_starting_with_a_letter() {
        for ok in ["indexer", "a", "hook-2.prod_x"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "0", "12", "-x", "a b", "a/b", "ä", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
