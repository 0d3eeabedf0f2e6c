//! `CalendarApi`: the port through which the Calendar source reaches a calendar provider.
//! `src/google/calendar.rs` implements it over Google's REST API (pacing, retries, error
//! classification: a 410 on a listing is `ApiError::SyncTokenExpired`); unit tests use a fake.
//! The shapes are the provider-neutral ones of [`crate::calendar_model`].

use crate::calendar_model::{CalendarListPage, ChannelRegistration, EventPage, EventsQuery};
use crate::ports::PortFuture;

/// A push channel to open on one calendar's events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelRequest {
    /// The id we choose (unique per channel; a renewal uses a new one).
    pub channel_id: String,
    /// Where notifications go (`https://…/push/calendar`).
    pub address: String,
    /// The secret notifications must echo (`X-Goog-Channel-Token`).
    pub token: String,
    /// Requested lifetime in seconds.
    pub ttl_secs: u64,
}

/// The calendar-shaped API: everything Google's sync recipe for calendars needs.
///
/// Implementations pace themselves against the account's quota and refresh access tokens on
/// their own; callers see only classified errors (`ApiError`).
pub trait CalendarApi: Send + Sync {
    /// One page of the calendar list: a full listing (`sync_token` = None, deleted and hidden
    /// entries excluded) or the changes since `sync_token` (deleted entries carry
    /// `deleted: true`). `page_token` continues a listing with the same query.
    fn list_calendars<'a>(
        &'a self,
        sync_token: Option<&'a str>,
        page_token: Option<&'a str>,
    ) -> PortFuture<'a, CalendarListPage>;

    /// One page of a calendar's events: a full listing (deleted events included, series not
    /// expanded) when `query.sync_token` is None, else the changes since the token, with the
    /// same fixed parameters. Pages may be empty while a next page follows.
    fn list_events<'a>(
        &'a self,
        calendar_id: &'a str,
        query: &'a EventsQuery,
    ) -> PortFuture<'a, EventPage>;

    /// Opens a push channel on a calendar's events. Ports without push keep the default.
    fn watch_events<'a>(
        &'a self,
        calendar_id: &'a str,
        channel: &'a ChannelRequest,
    ) -> PortFuture<'a, ChannelRegistration> {
        let _ = (calendar_id, channel);
        Box::pin(async { Err(crate::error::ApiError::Rejected("not supported".into())) })
    }

    /// Stops a push channel (`channels.stop`).
    fn stop_channel<'a>(&'a self, channel_id: &'a str, resource_id: &'a str) -> PortFuture<'a, ()> {
        let _ = (channel_id, resource_id);
        Box::pin(async { Err(crate::error::ApiError::Rejected("not supported".into())) })
    }
}
