//! Running mailsync as a service: what the service manager, monitoring and admins see.
//!
//! - `state`: `ServiceState`, the daemon-owned record of accounts that failed to start, each
//!   account's recent errors and the metrics registry (one per daemon, no process globals).
//! - `health`: pure rules turning a status snapshot into per-account health (active /
//!   degraded / disconnected / failed), the daemon's health and the one-line summary.
//! - `status_json`: the full `status` reply (snapshot + consumers, sinks, push, health).
//! - `notify`: the systemd notify protocol (READY, STATUS, RELOADING, STOPPING, WATCHDOG).
//! - `monitor`: the once-a-tick loop that pings the supervision tree, pets the watchdog only
//!   when it answers, updates STATUS= on change and records recent errors.
//! - `install`: `mailsync service install|uninstall` for systemd (system, user) and launchd.

pub mod health;
pub mod health_board;
pub mod install;
pub mod monitor;
pub mod notify;
pub mod state;
pub mod status_json;

pub use state::ServiceState;

/// `mailsync --version`: the crate version and the git commit it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("MAILSYNC_GIT_COMMIT"),
    ")"
);

/// The git commit this binary was built from (`unknown` without `.git`).
pub const COMMIT: &str = env!("MAILSYNC_GIT_COMMIT");
