//! Calendar v3 error bodies shared by the calendar handlers: [`cal_error`] (domain
//! `calendar`, optional parameter location) and the 410 [`full_sync_required`].

use crate::error::ApiError;

pub(crate) fn cal_error(
    code: u16,
    reason: &'static str,
    message: &str,
    location: Option<&str>,
) -> ApiError {
    let mut e = ApiError::new(code, reason, "calendar", message);
    if let Some(l) = location {
        e.location = Some((l.to_string(), "parameter"));
    }
    e
}

pub(crate) fn full_sync_required() -> ApiError {
    let mut e = cal_error(
        410,
        "fullSyncRequired",
        "Sync token is no longer valid, a full sync is required.",
        Some("syncToken"),
    );
    e.status = None;
    e
}
