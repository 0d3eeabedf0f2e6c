//! Service definitions for this binary: the systemd system unit (with its sysusers.d and
//! tmpfiles.d entries), the systemd --user unit and the launchd agent, rendered from the files
//! in `packaging/` (compiled in, so the package and `service install` ship the same text)
//! with the binary's real path — and the home directory, for launchd — substituted.
//!
//! Paths: user units go to `$XDG_CONFIG_HOME/systemd/user/` (else `~/.config/systemd/user/`),
//! the system unit to `/etc/systemd/system/` (below `--root` if given), the agent to
//! `~/Library/LaunchAgents/` with its logs in `~/Library/Logs/mailsync/`.

use std::path::{Path, PathBuf};

/// The system unit as packaged (ExecStart=/usr/bin/mailsync).
pub const SYSTEM_UNIT: &str = include_str!("../../packaging/systemd/mailsync.service");
/// The user unit as packaged.
pub const USER_UNIT: &str = include_str!("../../packaging/systemd/user/mailsync.service");
/// The launchd agent template.
pub const LAUNCHD_PLIST: &str = include_str!("../../packaging/launchd/com.mailsync.daemon.plist");
/// sysusers.d entry for the system user.
pub const SYSUSERS: &str = include_str!("../../packaging/sysusers/mailsync.conf");
/// tmpfiles.d entry for the state directory.
pub const TMPFILES: &str = include_str!("../../packaging/tmpfiles/mailsync.conf");

const PACKAGED_BIN: &str = "/usr/bin/mailsync";
const LAUNCHD_BIN: &str = "/usr/local/bin/mailsync";
const LAUNCHD_HOME: &str = "/Users/USER";
/// The launchd label (reverse DNS).
pub const LAUNCHD_LABEL: &str = "com.mailsync.daemon";

/// Which service manager.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// systemd --user.
    User,
    /// The system's systemd.
    System,
    /// macOS launchd (per-user agent).
    Launchd,
}

/// Why installing failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// No home directory to install a per-user service into.
    #[error("cannot find the home directory ($HOME is not set)")]
    NoHome,
    /// The binary's own path is unknown.
    #[error("cannot find this binary's path: {0}")]
    Exe(std::io::Error),
    /// A path cannot be written into a unit or plist (spaces, non-UTF-8, quotes).
    #[error("the binary path {0} cannot be used in a service file; install it somewhere plain")]
    BadPath(PathBuf),
    /// Writing or removing failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What was written or removed, and the command to run next.
#[derive(Debug)]
pub struct Done {
    /// Files written (install) or removed (uninstall).
    pub written: Vec<PathBuf>,
    /// The command to enable (install) or stop (uninstall) the service.
    pub next: String,
}

fn plain_path(p: &Path) -> Result<String, InstallError> {
    match p.to_str() {
        Some(s)
            if p.is_absolute()
                && !s.chars().any(|c| {
                    c.is_whitespace()
                        || matches!(c, '"' | '\'' | '\\' | '%' | '$' | '<' | '>' | '&')
                }) =>
        {
            Ok(s.to_string())
        }
        _ => Err(InstallError::BadPath(p.to_path_buf())),
    }
}

/// The system unit for a binary at `bin`.
pub fn system_unit(bin: &Path) -> Result<String, InstallError> {
    Ok(SYSTEM_UNIT.replace(PACKAGED_BIN, &plain_path(bin)?))
}

/// The user unit for a binary at `bin`.
pub fn user_unit(bin: &Path) -> Result<String, InstallError> {
    Ok(USER_UNIT.replace(PACKAGED_BIN, &plain_path(bin)?))
}

/// The launchd agent for a binary at `bin` and a user whose home is `home`.
pub fn launchd_plist(bin: &Path, home: &Path) -> Result<String, InstallError> {
    Ok(LAUNCHD_PLIST
        .replace(LAUNCHD_BIN, &plain_path(bin)?)
        .replace(LAUNCHD_HOME, &plain_path(home)?))
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

fn home() -> Result<PathBuf, InstallError> {
    env_path("HOME").ok_or(InstallError::NoHome)
}

/// The files each target writes, for the current user (or below `root` for `--system`).
fn paths(target: Target, root: Option<&Path>) -> Result<Vec<PathBuf>, InstallError> {
    Ok(match target {
        Target::User => {
            let config = match env_path("XDG_CONFIG_HOME") {
                Some(c) => c,
                None => home()?.join(".config"),
            };
            vec![config.join("systemd/user/mailsync.service")]
        }
        Target::System => {
            let root = root.unwrap_or(Path::new("/"));
            vec![
                root.join("etc/systemd/system/mailsync.service"),
                root.join("etc/sysusers.d/mailsync.conf"),
                root.join("etc/tmpfiles.d/mailsync.conf"),
            ]
        }
        Target::Launchd => vec![
            home()?
                .join("Library/LaunchAgents")
                .join(format!("{LAUNCHD_LABEL}.plist")),
        ],
    })
}

fn write(path: &Path, text: &str) -> Result<(), InstallError> {
    let io = |source| InstallError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(path, text).map_err(io)
}

/// Writes the service definition for this binary.
pub fn install(target: Target, root: Option<&Path>) -> Result<Done, InstallError> {
    let exe = std::env::current_exe().map_err(InstallError::Exe)?;
    let exe = std::fs::canonicalize(&exe).unwrap_or(exe);
    let files = paths(target, root)?;
    let next = match target {
        Target::User => {
            if let Some(p) = files.first() {
                write(p, &user_unit(&exe)?)?;
            }
            "systemctl --user daemon-reload && systemctl --user enable --now mailsync".to_string()
        }
        Target::System => {
            let texts = [
                system_unit(&exe)?,
                SYSUSERS.to_string(),
                TMPFILES.to_string(),
            ];
            for (p, t) in files.iter().zip(texts.iter()) {
                write(p, t)?;
            }
            "systemd-sysusers && systemd-tmpfiles --create mailsync.conf && systemctl daemon-reload && systemctl enable --now mailsync".to_string()
        }
        Target::Launchd => {
            let home = home()?;
            let logs = home.join("Library/Logs/mailsync");
            std::fs::create_dir_all(&logs).map_err(|source| InstallError::Io {
                path: logs.clone(),
                source,
            })?;
            if let Some(p) = files.first() {
                write(p, &launchd_plist(&exe, &home)?)?;
                format!("launchctl bootstrap gui/$(id -u) {}", p.display())
            } else {
                String::new()
            }
        }
    };
    Ok(Done {
        written: files,
        next,
    })
}

/// Removes what `install` wrote (files that are not there are skipped).
pub fn uninstall(target: Target, root: Option<&Path>) -> Result<Done, InstallError> {
    let files = paths(target, root)?;
    let mut removed = Vec::new();
    for p in &files {
        match std::fs::remove_file(p) {
            Ok(()) => removed.push(p.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(InstallError::Io {
                    path: p.clone(),
                    source,
                });
            }
        }
    }
    let next = match target {
        Target::User => "systemctl --user disable --now mailsync; systemctl --user daemon-reload",
        Target::System => "systemctl disable --now mailsync; systemctl daemon-reload",
        Target::Launchd => "launchctl bootout gui/$(id -u)/com.mailsync.daemon",
    };
    Ok(Done {
        written: removed,
        next: next.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_get_the_real_binary_path_and_plist_the_home() -> Result<(), InstallError> {
        let bin = Path::new("/opt/ms/bin/mailsync");
        let unit = system_unit(bin)?;
        assert!(unit.contains("ExecStart=/opt/ms/bin/mailsync --config"));
        assert!(!unit.contains("/usr/bin/mailsync"));
        assert!(user_unit(bin)?.contains("ExecStart=/opt/ms/bin/mailsync daemon"));
        let plist = launchd_plist(bin, Path::new("/Users/ann"))?;
        assert!(plist.contains("<string>/opt/ms/bin/mailsync</string>"));
        assert!(plist.contains("/Users/ann/Library/Logs/mailsync/mailsync.log"));
        assert!(matches!(
            system_unit(Path::new("/my bin/mailsync")),
            Err(InstallError::BadPath(_))
        ));
        Ok(())
    }
}
