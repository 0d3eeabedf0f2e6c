//! The command line: `mailsync daemon | ctl | check-config | emulator | demo`, parsed with clap
//! into `Cli`, plus the two interactive subcommands (`demo`, `emulator`), which print to the
//! terminal by design.

pub mod auth;
pub mod demo;
pub mod docs;
pub mod emulator_cmd;
pub mod service;
pub mod store_cmd;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// mailsync: keeps local mirrors of Gmail, Google Calendar and IMAP mailboxes in sync and
/// hands every change to the programs that consume it.
#[derive(Debug, Parser)]
#[command(name = "mailsync", version = crate::service::VERSION, about)]
pub struct Cli {
    /// Config file (else $MAILSYNC_CONFIG, $XDG_CONFIG_HOME/mailsync/config.toml,
    /// /etc/mailsync/config.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log format (overrides the config's `log_format`).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormatArg>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log format flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line (journald, log shippers).
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sync daemon in the foreground (systemd, launchd or a terminal).
    Daemon,
    /// Talk to a running daemon over its control socket.
    Ctl {
        /// Control socket path (default: the config's, else $XDG_RUNTIME_DIR/mailsync/control.sock,
        /// else /run/mailsync/control.sock).
        #[arg(long, value_name = "PATH", global = true)]
        socket: Option<PathBuf>,
        /// Print JSON instead of a table (before or after the command).
        #[arg(long, global = true)]
        json: bool,
        /// The request.
        #[command(subcommand)]
        request: crate::control::client::CtlArgs,
    },
    /// Validate the config file and print every problem found (exit 2 when invalid).
    CheckConfig,
    /// Offline tools for the store (the daemon must be stopped): check, rebuild, restore.
    Store {
        /// What to do.
        #[command(subcommand)]
        command: store_cmd::StoreArgs,
    },
    /// Authorize a gmail account in a browser (OAuth desktop flow with PKCE) and store its
    /// refresh token with mode 0600.
    Auth(auth::AuthArgs),
    /// Serve the Google API emulator (Gmail, Calendar, OAuth, Pub/Sub push) on loopback.
    Emulator(emulator_cmd::EmulatorArgs),
    /// Run the daemon against a simulated Gmail account served by the emulator, with live
    /// progress and the stream of changes.
    Demo(demo::DemoArgs),
    /// Install or remove the service definition (systemd system or user unit, launchd agent).
    #[command(subcommand)]
    Service(service::ServiceArgs),
    /// Print shell completions for bash, zsh or fish.
    Completions(docs::CompletionsArgs),
    /// Print the manual page (roff), generated from these command definitions.
    Man,
}
