//! Push channels: `events.watch` (Google's validation of the Channel body, the effective
//! expiry — the shorter of the requested one and the emulator's cap — and the `sync` message
//! #1 sent right after registration) and `channels.stop` (404 for an unknown id/resourceId
//! pair). Change notifications themselves are minted by [`super::model::CalendarSet::pings`].

use super::model::{CalendarSet, ChannelReg};
use crate::error::ApiError;
use crate::http::{ApiRequest, ApiResponse};
use crate::notification::CalendarPing;
use crate::state::EmulatorState;
use crate::util::hash64;
use crate::wire;

/// Registers a channel on calendar `cal`; returns the answer and the `sync` ping.
pub fn watch(
    st: &EmulatorState,
    set: &mut CalendarSet,
    cal: usize,
    req: &ApiRequest,
    now: i64,
    pings: &mut Vec<CalendarPing>,
) -> Result<ApiResponse, ApiError> {
    let body: wire::ChannelRequest = req.json_body()?;
    let id = body
        .id
        .filter(|i| !i.is_empty())
        .ok_or_else(|| ApiError::invalid_param("id", "Required"))?;
    if id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_+/=".contains(&b))
    {
        return Err(ApiError::invalid_param("id", "Invalid channel id"));
    }
    match body.channel_type.as_deref() {
        Some("web_hook") | Some("webhook") => {}
        _ => {
            return Err(ApiError::invalid_param(
                "type",
                "Invalid channel type; expected web_hook",
            ));
        }
    }
    let address = body
        .address
        .filter(|a| !a.is_empty())
        .ok_or_else(|| ApiError::invalid_param("address", "Required"))?;
    let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|p| address.starts_with(p));
    if !address.starts_with("https://") && !loopback {
        return Err(ApiError::invalid_param(
            "address",
            format!("WebHook callback must be HTTPS: {address}"),
        ));
    }
    if body.token.as_ref().is_some_and(|t| t.len() > 256) {
        return Err(ApiError::invalid_param("token", "Channel token too long"));
    }
    if set.channels.iter().any(|c| c.id == id) {
        return Err(ApiError::bad_request(format!("Channel id {id} not unique")));
    }
    let ttl_ms = match body.params.as_ref().and_then(|p| p.get("ttl")) {
        Some(t) => {
            t.parse::<i64>()
                .map_err(|_| ApiError::invalid_param("params.ttl", "Invalid ttl"))?
                * 1000
        }
        None => st.config.channel_ttl.as_millis() as i64,
    };
    let mut expiration = now + ttl_ms.min(st.config.channel_ttl.as_millis() as i64 * 4);
    if let Some(e) = body.expiration.as_deref() {
        let req_exp: i64 = e
            .parse()
            .map_err(|_| ApiError::invalid_param("expiration", "Invalid expiration"))?;
        expiration = expiration.min(req_exp);
    }
    let c = &set.calendars[cal];
    let resource_id = format!("{:x}", hash64(&[c.id.as_bytes(), b"events"]) >> 8);
    let resource_uri = format!(
        "https://www.googleapis.com/calendar/v3/calendars/{}/events?alt=json",
        percent_encoding::utf8_percent_encode(&c.id, percent_encoding::NON_ALPHANUMERIC)
    );
    let reg = ChannelReg {
        id: id.clone(),
        resource_id: resource_id.clone(),
        resource_uri: resource_uri.clone(),
        address,
        token: body.token.clone(),
        expiration_ms: expiration,
        next_number: 1,
        calendar_id: c.id.clone(),
    };
    pings.push(CalendarPing {
        address: reg.address.clone(),
        channel_id: id.clone(),
        resource_id: resource_id.clone(),
        resource_uri: resource_uri.clone(),
        token: reg.token.clone(),
        expiration_ms: expiration,
        message_number: 1,
        state: "sync",
    });
    set.channels.push(reg);
    Ok(ApiResponse::json(&wire::Channel {
        kind: "api#channel".into(),
        id,
        resource_id,
        resource_uri,
        token: body.token,
        expiration: expiration.to_string(),
    }))
}

/// Stops the channel named by the body's `id` + `resourceId`.
pub fn stop(set: &mut CalendarSet, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
    let body: wire::StopChannelRequest = req.json_body()?;
    let id = body
        .id
        .ok_or_else(|| ApiError::invalid_param("id", "Required"))?;
    let rid = body
        .resource_id
        .ok_or_else(|| ApiError::invalid_param("resourceId", "Required"))?;
    let before = set.channels.len();
    set.channels
        .retain(|c| !(c.id == id && c.resource_id == rid));
    if set.channels.len() == before {
        let mut e = ApiError::not_found();
        e.message = format!("Channel '{id}' not found for project");
        return Err(e);
    }
    Ok(ApiResponse::empty(204))
}
