//! Builds the Calendar client of a `kind = "calendar"` account from its config: resolves the
//! credential references into a `TokenSource`, sets up the account's Calendar `QuotaGate`
//! (default 1 request/s per user, 5 in flight, raised by `calendar_requests_per_minute` /
//! `calendar_max_in_flight`) and the REST client in `google::calendar`.

use crate::config::{AccountConfig, AccountSettings};
use crate::google::auth::{OAuthCredentials, TokenSource};
use crate::google::calendar::{CalendarClient, CalendarClientConfig};
use std::sync::Arc;

/// The client of a calendar account, with its own token source.
pub fn build(account: &AccountConfig) -> Result<Arc<CalendarClient>, String> {
    build_with(account, None)
}

/// The client of a calendar account; `shared` is the token source its credential already has
/// (a Gmail account's Calendar twin uses the Gmail half's), else it builds its own.
pub fn build_with(
    account: &AccountConfig,
    shared: Option<Arc<TokenSource>>,
) -> Result<Arc<CalendarClient>, String> {
    let AccountSettings::Calendar(c) = &account.settings else {
        return Err(format!("account {} is not a calendar account", account.id));
    };
    let tokens = match shared {
        Some(t) => t,
        None => {
            let credentials = OAuthCredentials {
                client_id: c.auth.client_id.clone(),
                client_secret: c.auth.client_secret.resolve().map_err(|e| e.to_string())?,
                refresh_token: c.auth.refresh_token.resolve().map_err(|e| e.to_string())?,
            };
            Arc::new(
                TokenSource::new(account.id.clone(), credentials, c.auth.token_url.clone())
                    .map_err(|e| e.to_string())?,
            )
        }
    };
    let config = CalendarClientConfig {
        api_base: c.api_base.clone(),
        requests_per_minute: c.requests_per_minute,
        max_in_flight: c.max_in_flight,
        page_size: c.page_size,
        ..CalendarClientConfig::default()
    };
    let gate = config
        .gate(account.id.clone(), None)
        .map_err(|e| e.to_string())?;
    let client = CalendarClient::new(config, Arc::new(gate), tokens).map_err(|e| e.to_string())?;
    Ok(Arc::new(client))
}
