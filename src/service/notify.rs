//! The systemd notify protocol (`sd_notify(3)`) through the `sd-notify` crate: `READY=1` once
//! the store is open and the control socket bound, `STATUS=` with the one-line summary,
//! `RELOADING=1` + `MONOTONIC_USEC` before a reload and `READY=1` after it, `STOPPING=1` at
//! shutdown, and `WATCHDOG=1` (sent by `monitor` only while the supervision tree answers).
//!
//! Without `$NOTIFY_SOCKET` (a terminal, launchd, tests) every call is a no-op.

use std::time::Duration;

/// Talks to the service manager.
#[derive(Debug, Default)]
pub struct Notifier {
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `$WATCHDOG_USEC` / `$WATCHDOG_PID` (systemd sets them with `WatchdogSec=`).
    pub fn from_env() -> Notifier {
        Notifier {
            watchdog: sd_notify::watchdog_enabled().filter(|d| !d.is_zero()),
        }
    }

    /// The watchdog interval systemd expects, if enabled.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    fn send(&self, states: &[sd_notify::NotifyState<'_>]) {
        if let Err(e) = sd_notify::notify(states) {
            tracing::warn!(error = %e, "Cannot notify the service manager.");
        }
    }

    /// `READY=1` with the current summary.
    pub fn ready(&self, status: &str) {
        self.send(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(status),
        ]);
    }

    /// `STATUS=<line>`.
    pub fn status(&self, status: &str) {
        self.send(&[sd_notify::NotifyState::Status(status)]);
    }

    /// `RELOADING=1` with `MONOTONIC_USEC` (required by `Type=notify-reload`, harmless otherwise).
    pub fn reloading(&self) {
        match sd_notify::NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[
                sd_notify::NotifyState::Reloading,
                now,
                sd_notify::NotifyState::Status("reloading configuration"),
            ]),
            Err(e) => {
                tracing::warn!(error = %e, "Cannot read the monotonic clock.");
                self.send(&[sd_notify::NotifyState::Reloading]);
            }
        }
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.send(&[
            sd_notify::NotifyState::Stopping,
            sd_notify::NotifyState::Status("stopping"),
        ]);
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) {
        self.send(&[sd_notify::NotifyState::Watchdog]);
    }
}
