//! Validation of Calendar settings: `kind = "calendar"` accounts and the `<id>-calendar`
//! twin of a Gmail account with `calendar = true`.

#[allow(unused_imports)]
use super::*;

/// The Calendar settings of a `kind = "calendar"` account, or of the Calendar half of a Gmail
/// account with `calendar = true` (same credential; its own `calendar_api_base`).
pub(super) fn calendar_settings(
    c: &mut Check<'_>,
    key: &str,
    ra: &RawAccount,
    api_base: Option<&String>,
    api_base_key: &str,
) -> Option<CalendarSettings> {
    let email = c.optional(&format!("{key}.email"), ra.email.as_ref());
    let api_base = c.url(
        &format!("{key}.{api_base_key}"),
        api_base,
        GOOGLE_API_BASE_CALENDAR,
    );
    let auth = google_auth(c, key, ra);
    let calendar_ids = ra.calendar_ids.is_some().then(|| {
        c.list(
            &format!("{key}.calendar_ids"),
            ra.calendar_ids.as_ref(),
            &[],
        )
    });
    let requests_per_minute = c.int(
        &format!("{key}.calendar_requests_per_minute"),
        ra.calendar_requests_per_minute,
        60,
        1,
        599,
    ) as u32;
    let max_in_flight = c.int(
        &format!("{key}.calendar_max_in_flight"),
        ra.calendar_max_in_flight,
        5,
        1,
        50,
    ) as usize;
    let page_size = c.int(
        &format!("{key}.calendar_page_size"),
        ra.calendar_page_size,
        2500,
        1,
        2500,
    ) as u32;
    Some(CalendarSettings {
        email,
        api_base,
        auth: auth?,
        calendar_ids,
        requests_per_minute,
        max_in_flight,
        page_size,
    })
}

/// A Gmail account with `calendar = true` also syncs its Calendar: a second account
/// `<id>-calendar` of kind calendar with the same OAuth credential.
pub(super) fn calendar_twin(
    c: &mut Check<'_>,
    key: &str,
    ra: &RawAccount,
    gmail: &AccountConfig,
) -> Option<AccountConfig> {
    let settings = calendar_settings(
        c,
        key,
        ra,
        ra.calendar_api_base.as_ref(),
        "calendar_api_base",
    )?;
    Some(AccountConfig {
        id: format!("{}-calendar", gmail.id),
        kind: AccountKind::Calendar,
        settings: AccountSettings::Calendar(settings),
        ..gmail.clone()
    })
}
