//! `mailsync check-config` beyond the file: every credential reference is resolved now (a
//! missing file, a directory, an unset variable, a failing command is an issue naming the key,
//! never the value) and the data directory must be creatable and writable, so a config that
//! passes the check does not then fail at start without saying why.

use super::{AccountSettings, Config, ConfigIssue, CredentialRef};
use std::path::Path;

/// Every problem found, in config order; empty when the config is ready to run.
pub fn deep_check(config: &Config) -> Vec<ConfigIssue> {
    let mut issues = Vec::new();
    for (i, account) in config.accounts.iter().enumerate() {
        let at = |key: &str| format!("accounts[{i}] ({}).{key}", account.id);
        match &account.settings {
            AccountSettings::Gmail(g) => {
                resolve(&mut issues, at("client_secret"), &g.auth.client_secret);
                resolve(&mut issues, at("refresh_token"), &g.auth.refresh_token);
            }
            AccountSettings::Calendar(c) => {
                resolve(&mut issues, at("client_secret"), &c.auth.client_secret);
                resolve(&mut issues, at("refresh_token"), &c.auth.refresh_token);
            }
            AccountSettings::Imap(m) => match &m.credential {
                super::ImapCredential::Password(p) => resolve(&mut issues, at("password"), p),
                super::ImapCredential::OAuth(auth) => {
                    resolve(&mut issues, at("client_secret"), &auth.client_secret);
                    resolve(&mut issues, at("refresh_token"), &auth.refresh_token);
                }
            },
            AccountSettings::Test(_) => {}
        }
    }
    for (i, w) in config.webhooks.iter().enumerate() {
        if let Some(secret) = &w.secret {
            resolve(&mut issues, format!("webhooks[{i}].secret"), secret);
        }
    }
    if let Some(token) = config
        .push
        .as_ref()
        .and_then(|p| p.verification_token.as_ref())
    {
        resolve(&mut issues, "push.verification_token".into(), token);
    }
    if let Err(reason) = writable(&config.data_dir) {
        issues.push(ConfigIssue {
            key: "data_dir".into(),
            reason,
        });
    }
    issues
}

fn resolve(issues: &mut Vec<ConfigIssue>, key: String, reference: &CredentialRef) {
    // The error describes the source (`file …`, `env VAR`, `command prog`), never the secret.
    if let Err(e) = reference.resolve() {
        issues.push(ConfigIssue {
            key,
            reason: e.to_string(),
        });
    }
}

/// Creates `dir` if needed and writes and removes a probe file in it.
fn writable(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("{}: cannot be created: {e}", dir.display()))?;
    if !dir.is_dir() {
        return Err(format!("{}: is not a directory", dir.display()));
    }
    let probe = dir.join(format!(".mailsync-check-{}", std::process::id()));
    std::fs::write(&probe, b"probe")
        .map_err(|e| format!("{}: is not writable: {e}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, refresh: &str) -> Config {
        let text = format!(
            r#"data_dir = "{data}"
[[accounts]]
id = "gm"
kind = "gmail"
email = "a@example.com"
client_id = "c"
client_secret = {{ env = "MAILSYNC_TEST_UNSET_VARIABLE_X" }}
refresh_token = {refresh}
"#,
            data = dir.join("data").display()
        );
        crate::config::load_str(&text, "/tmp/t.toml").expect("valid config")
    }

    #[test]
    fn unresolvable_credentials_and_an_unwritable_data_dir_are_issues() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "1//0gSECRETVALUE").unwrap();
        let ok = config(dir.path(), &format!("{{ file = \"{}\" }}", token.display()));
        let issues = deep_check(&ok);
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert!(issues[0].key.ends_with("client_secret"), "{issues:?}");
        assert!(issues[0].reason.contains("MAILSYNC_TEST_UNSET_VARIABLE_X"));

        let missing = config(dir.path(), "{ file = \"/nonexistent/token\" }");
        let issues = deep_check(&missing);
        assert!(
            issues.iter().any(|i| i.key.ends_with("refresh_token")),
            "{issues:?}"
        );
        let a_dir = config(
            dir.path(),
            &format!("{{ file = \"{}\" }}", dir.path().display()),
        );
        assert!(
            deep_check(&a_dir)
                .iter()
                .any(|i| i.key.ends_with("refresh_token"))
        );
        let failing = config(dir.path(), "{ command = [\"false\"] }");
        assert!(
            deep_check(&failing)
                .iter()
                .any(|i| i.key.ends_with("refresh_token"))
        );
        for i in deep_check(&ok) {
            assert!(!i.reason.contains("SECRETVALUE"));
        }

        // A data dir under a file cannot be created.
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "x").unwrap();
        let mut bad = ok.clone();
        bad.data_dir = blocker.join("data");
        let issues = deep_check(&bad);
        assert!(issues.iter().any(|i| i.key == "data_dir"), "{issues:?}");
    }
}
