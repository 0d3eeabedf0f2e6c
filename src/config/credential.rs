//! `CredentialRef`: where a secret (client secret, refresh token, password) can be fetched
//! from, resolved lazily with `resolve()`.
//!
//! Invariant: neither `Debug` nor any error message contains the secret. `Debug` shows only the
//! file path, the variable name or the program name (not its arguments, which may carry
//! tokens); a failing command's stdout is never echoed.

use std::fmt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::config::ConfigError;
use crate::secret::Secret;

/// Where to read one secret from. Built by config validation, resolved when needed.
#[derive(Clone, PartialEq, Eq)]
pub enum CredentialRef {
    /// `{ file = "path" }`: the file's contents, trimmed. Relative paths were resolved against
    /// the config file's directory during validation.
    File(PathBuf),
    /// `{ env = "VAR" }`: the variable's value, trimmed.
    Env(String),
    /// `{ command = ["prog", "arg"] }`: the program's stdout, trimmed; a non-zero exit fails.
    Command(Vec<String>),
    /// `{ value = "..." }`: an inline secret (accepted, but discouraged; config warns).
    Inline(Secret<String>),
}

impl fmt::Debug for CredentialRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CredentialRef({})", self.describe())
    }
}

impl CredentialRef {
    /// A description that is safe to log: `file /path`, `env VAR`, `command prog`, `inline`.
    pub fn describe(&self) -> String {
        match self {
            CredentialRef::File(path) => format!("file {}", path.display()),
            CredentialRef::Env(var) => format!("env {var}"),
            CredentialRef::Command(argv) => {
                format!("command {}", argv.first().map(String::as_str).unwrap_or(""))
            }
            CredentialRef::Inline(_) => "inline value".to_string(),
        }
    }

    /// Fetches the secret now. Blocking (a file read or a child process): call it from
    /// `tokio::task::spawn_blocking` inside async code. An empty result is an error, since an
    /// empty token or password is never what the admin meant.
    pub fn resolve(&self) -> Result<Secret<String>, ConfigError> {
        let value = match self {
            CredentialRef::File(path) => std::fs::read_to_string(path)
                .map_err(|e| self.error(format!("cannot read: {e}")))?
                .trim()
                .to_string(),
            CredentialRef::Env(var) => match std::env::var(var) {
                Ok(value) => value.trim().to_string(),
                Err(std::env::VarError::NotPresent) => {
                    return Err(self.error("variable is not set".to_string()));
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(self.error("variable is not valid UTF-8".to_string()));
                }
            },
            CredentialRef::Command(argv) => self.run_command(argv)?,
            CredentialRef::Inline(secret) => secret.expose().trim().to_string(),
        };
        if value.is_empty() {
            return Err(self.error("the credential is empty".to_string()));
        }
        Ok(Secret::new(value))
    }

    fn run_command(&self, argv: &[String]) -> Result<String, ConfigError> {
        let Some((program, args)) = argv.split_first() else {
            return Err(self.error("empty command".to_string()));
        };
        // stderr is discarded rather than inherited or captured: password helpers sometimes
        // echo what they were given, and nothing of theirs may reach our logs.
        let output = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map_err(|e| self.error(format!("cannot run: {e}")))?;
        if !output.status.success() {
            return Err(self.error(format!("exited with {}", output.status)));
        }
        let text = String::from_utf8(output.stdout)
            .map_err(|_| self.error("output is not valid UTF-8".to_string()))?;
        Ok(text.trim().to_string())
    }

    fn error(&self, reason: String) -> ConfigError {
        ConfigError::Credential {
            reference: self.describe(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_debug_shows_only_the_reference() {
        let inline = CredentialRef::Inline(Secret::new("hunter2".to_string()));
        assert!(!format!("{inline:?}").contains("hunter2"));
        let cmd = CredentialRef::Command(vec!["pass".into(), "show".into(), "tok3n".into()]);
        let shown = format!("{cmd:?}");
        assert!(shown.contains("pass"));
        assert!(!shown.contains("tok3n"));
    }

    #[test]
    fn credential_file_is_read_and_trimmed() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("secret");
        std::fs::write(&path, "  s3cret\n")?;
        let secret = CredentialRef::File(path).resolve()?;
        assert_eq!(secret.expose(), "s3cret");
        Ok(())
    }

    #[test]
    fn credential_missing_file_names_the_path() {
        let err = CredentialRef::File("/nonexistent/mailsync-secret".into()).resolve();
        let msg = err
            .map(|_| ())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("/nonexistent/mailsync-secret"), "{msg}");
    }

    #[test]
    fn credential_command_stdout_is_trimmed() -> Result<(), Box<dyn std::error::Error>> {
        let cmd = CredentialRef::Command(vec!["echo".into(), "tok".into()]);
        assert_eq!(cmd.resolve()?.expose(), "tok");
        Ok(())
    }

    #[test]
    fn credential_failing_command_hides_stdout() {
        let cmd = CredentialRef::Command(vec![
            "sh".into(),
            "-c".into(),
            "echo leaked-secret; exit 3".into(),
        ]);
        let msg = cmd
            .resolve()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("exit"), "{msg}");
        assert!(!msg.contains("leaked-secret"), "{msg}");
    }

    #[test]
    fn credential_unset_env_is_an_error() {
        let cmd = CredentialRef::Env("MAILSYNC_TEST_SURELY_UNSET_VAR_42".into());
        assert!(cmd.resolve().is_err());
    }
}
