//! Process signals, the only module that touches them: SIGTERM and SIGINT ask for a graceful
//! shutdown, SIGHUP asks for a config reload. Signals become `SignalEvent`s on a channel that
//! the daemon's main loop selects on.

use futures_util::StreamExt;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use tokio::sync::mpsc;

/// What a signal asks the daemon to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalEvent {
    /// SIGTERM or SIGINT: stop gracefully.
    Shutdown,
    /// SIGHUP: reload the configuration.
    Reload,
}

/// Starts listening; the returned receiver yields one event per signal.
pub fn listen() -> std::io::Result<mpsc::UnboundedReceiver<SignalEvent>> {
    let mut signals = signal_hook_tokio::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(sig) = signals.next().await {
            let ev = if sig == SIGHUP {
                SignalEvent::Reload
            } else {
                SignalEvent::Shutdown
            };
            tracing::info!(signal = sig, event = ?ev, "Signal received.");
            if tx.send(ev).is_err() {
                break;
            }
        }
    });
    Ok(rx)
}
