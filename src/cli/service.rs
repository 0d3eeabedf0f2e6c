//! `mailsync service install|uninstall [--user|--system|--launchd]`: the flags, and the
//! printing of what was done and what to run next. The files themselves are written by
//! `crate::service::install`.

use crate::service::install::{self, Target};
use std::path::PathBuf;

/// Where the service definition goes.
#[derive(Clone, Debug, clap::Args)]
pub struct TargetArgs {
    /// A systemd --user unit in $XDG_CONFIG_HOME/systemd/user (the default on Linux).
    #[arg(long, group = "target")]
    pub user: bool,
    /// The system unit in /etc/systemd/system, plus sysusers.d and tmpfiles.d entries (root).
    #[arg(long, group = "target")]
    pub system: bool,
    /// A launchd agent in ~/Library/LaunchAgents (macOS; the default there).
    #[arg(long, group = "target")]
    pub launchd: bool,
    /// Write below this directory instead of / (packaging, tests); only with --system.
    #[arg(long, value_name = "DIR", hide = true, requires = "system")]
    pub root: Option<PathBuf>,
}

impl TargetArgs {
    fn target(&self) -> Target {
        if self.system {
            Target::System
        } else if self.launchd || (!self.user && cfg!(target_os = "macos")) {
            Target::Launchd
        } else {
            Target::User
        }
    }
}

/// `mailsync service ...`.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum ServiceArgs {
    /// Write the unit or plist for this binary's real path and print the command to enable it.
    Install(TargetArgs),
    /// Remove what `install` wrote and print the command to stop the service.
    Uninstall(TargetArgs),
}

/// Runs the subcommand; returns the text for stdout.
pub fn run(args: &ServiceArgs) -> Result<String, install::InstallError> {
    match args {
        ServiceArgs::Install(t) => {
            let done = install::install(t.target(), t.root.as_deref())?;
            let mut out = String::new();
            for f in &done.written {
                out.push_str(&format!("wrote {}\n", f.display()));
            }
            out.push_str(&format!("\nTo enable and start it:\n  {}\n", done.next));
            Ok(out)
        }
        ServiceArgs::Uninstall(t) => {
            let done = install::uninstall(t.target(), t.root.as_deref())?;
            let mut out = String::new();
            if done.written.is_empty() {
                out.push_str("nothing to remove\n");
            }
            for f in &done.written {
                out.push_str(&format!("removed {}\n", f.display()));
            }
            out.push_str(&format!(
                "\nIf it is still running, stop it with:\n  {}\n",
                done.next
            ));
            Ok(out)
        }
    }
}
