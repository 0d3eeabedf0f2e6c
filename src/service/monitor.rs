//! The service monitor: one task per daemon that, every tick, asks the supervision tree for
//! health (the root, and the accounts `health_board.rs` picks: a slice, the new ones and any
//! that were silent, must answer within the tick, from memory: `DaemonCore::health_of`),
//! pets the systemd watchdog only when they did, and otherwise lets it starve so systemd
//! restarts a wedged daemon. From the same answers it sends `STATUS=` when the one-line
//! summary changed and records each account's new errors.
//!
//! The tick is half the watchdog interval when systemd set one (as `sd_watchdog_enabled(3)`
//! advises), at most one second so `STATUS=` stays current; one second without a watchdog.
//! A single slow answer only skips one ping; systemd acts only after a whole interval of
//! silence.

use crate::daemon_core::DaemonCore;
use crate::service::health_board::HealthBoard;
use crate::service::status_json;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const DEFAULT_TICK: Duration = Duration::from_secs(1);
const MIN_TICK: Duration = Duration::from_millis(100);

/// The monitor's tick for a watchdog interval.
pub fn tick_for(watchdog: Option<Duration>) -> Duration {
    match watchdog {
        Some(w) => (w / 2).clamp(MIN_TICK, DEFAULT_TICK),
        None => DEFAULT_TICK,
    }
}

/// Runs until `cancel` fires. `last_summary` is the line sent with `READY=1`.
pub async fn run(core: Arc<DaemonCore>, mut last_summary: String, cancel: CancellationToken) {
    let notifier = core.service().notifier();
    let tick = tick_for(notifier.watchdog_interval());
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut wedged = false;
    let mut board = HealthBoard::default();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = interval.tick() => {}
        }
        let heard = match core
            .health_of(tick.max(MIN_TICK), |ids| board.choose(ids))
            .await
        {
            Ok(answers) => {
                let roster = board
                    .is_new_roster(&answers.roster)
                    .then_some(&answers.roster);
                core.service().observe_errors(
                    &answers.fresh,
                    roster,
                    mailsync_actors::spec::now_ms(),
                );
                board.take(&answers)
            }
            Err(e) => Err(e),
        };
        if let Err(e) = heard {
            if !wedged {
                tracing::warn!(error = %e, "The supervision tree does not answer; not petting the watchdog.");
                wedged = true;
            }
            continue;
        }
        if wedged {
            tracing::info!("The supervision tree answers again.");
            wedged = false;
        }
        if notifier.watchdog_interval().is_some() {
            notifier.watchdog();
        }
        if let Some(summary) = board.changed_summary()
            && summary != last_summary
        {
            tracing::info!(status = %summary, "Service status changed.");
            notifier.status(&summary);
            last_summary = summary;
        }
    }
}

/// Brings up the service side once the store is open and the control socket bound: the
/// metrics / status-page listener (when `[metrics]` is set), then `READY=1` with the first
/// summary, then the monitor loop.
pub async fn start(
    core: Arc<DaemonCore>,
    config: &crate::config::Config,
    cancel: CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) {
    core.service()
        .metrics()
        .start_feed_at(core.store().feed().durable_seq());
    if let Some(m) = &config.metrics {
        match tokio::net::TcpListener::bind(m.listen).await {
            Ok(listener) => {
                if let Ok(addr) = listener.local_addr() {
                    core.service().set_metrics_addr(addr);
                    tracing::info!(listen = %addr, "Metrics and status page listening.");
                }
                tasks.spawn(crate::status_page::serve(
                    listener,
                    core.clone(),
                    cancel.clone(),
                ));
            }
            Err(e) => {
                tracing::error!(listen = %m.listen, error = %e, "Cannot bind the metrics listener; metrics and the status page are off.");
            }
        }
    }
    let summary = status_json::summary_line(&core).await;
    core.service().notifier().ready(&summary);
    tasks.spawn(run(core, summary, cancel));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_is_half_the_watchdog_within_bounds() {
        assert_eq!(tick_for(None), Duration::from_secs(1));
        assert_eq!(
            tick_for(Some(Duration::from_millis(600))),
            Duration::from_millis(300)
        );
        assert_eq!(
            tick_for(Some(Duration::from_secs(30))),
            Duration::from_secs(1)
        );
        assert_eq!(
            tick_for(Some(Duration::from_millis(50))),
            Duration::from_millis(100)
        );
    }
}
