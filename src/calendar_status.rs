//! Per-calendar status lines of calendar accounts for `ctl status`: events stored, last sync,
//! token age (from `calendar::store`), and delivery — `active (push)`, `degraded (polling)`,
//! `polling` or `disconnected` — read from the durable channel registry alone, so status
//! needs no handle on the running channel keepers.

use crate::push::calendar_channels::ChannelStore;
use std::time::Duration;

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// How one calendar receives changes, from the durable channel registry alone (for status):
/// `polling` without Calendar push configured, `active (push)` with a live channel heard
/// from (or registered) within `silence`, else `degraded (polling)`.
pub fn stored_delivery(
    channels: &ChannelStore,
    account: &str,
    calendar_id: &str,
    push: Option<&crate::config::PushConfig>,
    now: i64,
) -> &'static str {
    let Some(push) = push.filter(|p| p.calendar_address.is_some() && p.listen.is_some()) else {
        return "polling";
    };
    let live = channels
        .of_account(account)
        .into_iter()
        .filter(|c| c.calendar_id == calendar_id && c.expiration_ms > now)
        .max_by_key(|c| c.expiration_ms);
    match live {
        Some(c) => {
            let heard = c
                .last_push_ms
                .unwrap_or(c.registered_ms)
                .max(c.registered_ms);
            if now - heard < ms(push.silence) {
                "active (push)"
            } else {
                "degraded (polling)"
            }
        }
        None => "degraded (polling)",
    }
}

/// The per-calendar status lines of a calendar account.
pub fn status_lines(
    store: &mailsync_actors::store::Store,
    account: &str,
    push: Option<&crate::config::PushConfig>,
    disconnected: bool,
    now: i64,
) -> Vec<mailsync_actors::status::CalendarLine> {
    let channels = ChannelStore::new(store.clone());
    let now_u = u64::try_from(now).unwrap_or(0);
    mailsync_actors::calendar::store::calendar_status(store, account)
        .unwrap_or_default()
        .into_iter()
        .map(|c| mailsync_actors::status::CalendarLine {
            delivery: if disconnected {
                "disconnected".to_owned()
            } else {
                stored_delivery(&channels, account, &c.calendar_id, push, now).to_owned()
            },
            token_age_secs: c.token_at_ms.map(|t| now_u.saturating_sub(t) / 1000),
            calendar_id: c.calendar_id,
            summary: c.summary,
            events: c.events,
            last_sync_ms: c.last_sync_ms,
            resyncing: c.resyncing,
        })
        .collect()
}

/// Fills the calendar lines and the account-level delivery of a calendar account's status.
pub fn fill_status(
    store: &mailsync_actors::store::Store,
    a: &mut mailsync_actors::status::AccountStatus,
    push: Option<&crate::config::PushConfig>,
    now: i64,
) {
    let disconnected = a.state == mailsync_actors::status::AccountState::Disconnected;
    a.calendars = status_lines(store, &a.account, push, disconnected, now);
    let worst = [
        "disconnected",
        "degraded (polling)",
        "polling",
        "active (push)",
    ]
    .into_iter()
    .find(|d| a.calendars.iter().any(|c| c.delivery == *d));
    a.delivery = Some(worst.unwrap_or("polling").to_owned());
}
