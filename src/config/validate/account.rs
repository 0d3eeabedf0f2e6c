//! Validation of one `[[accounts]]` entry: id, kind, common settings, the kind's own
//! settings (delegated per kind), and keys that belong to another kind.

#[allow(unused_imports)]
use super::*;

pub(super) fn account(
    c: &mut Check<'_>,
    key: &str,
    ra: &RawAccount,
    sync: &SyncConfig,
    quota_for: &dyn Fn(QuotaProfile) -> QuotaConfig,
    global_profile: QuotaProfile,
) -> Option<AccountConfig> {
    let id = c.required(&format!("{key}.id"), ra.id.as_ref());
    if let Some(id) = &id
        && !valid_id(id)
    {
        c.issue(
            &format!("{key}.id"),
            format!("{id:?} may only contain letters, digits, '_', '.' and '-'"),
        );
    }
    let kind = match ra.kind.as_deref().map(str::trim) {
        Some("gmail") => Some(AccountKind::Gmail),
        Some("calendar") => Some(AccountKind::Calendar),
        Some("imap") => Some(AccountKind::Imap),
        Some("test") => Some(AccountKind::Test),
        Some(other) => {
            c.issue(
                &format!("{key}.kind"),
                format!("must be one of gmail, calendar, imap, test; got {other:?}"),
            );
            None
        }
        None => {
            c.issue(
                &format!("{key}.kind"),
                "is required (gmail, calendar, imap or test)",
            );
            None
        }
    };
    let poll_interval = ra.poll_interval_secs.map_or(sync.poll_interval, |v| {
        Duration::from_secs(c.int(&format!("{key}.poll_interval_secs"), Some(v), 60, 1, 86_400))
    });
    let initial_query = match &ra.initial_query {
        Some(q) => c.optional(&format!("{key}.initial_query"), Some(q)),
        None => sync.initial_query.clone(),
    };
    let profile = quota_profile(
        c,
        &format!("{key}.quota_profile"),
        ra.quota_profile.as_deref(),
    );
    let kind = kind?;
    reject_foreign_keys(c, key, kind, ra);
    let quota = quota_for(profile.unwrap_or(global_profile));
    let settings = match kind {
        AccountKind::Gmail => {
            let email = c.required(&format!("{key}.email"), ra.email.as_ref());
            if let Some(email) = &email
                && !email.contains('@')
            {
                c.issue(
                    &format!("{key}.email"),
                    format!("{email:?} is not an email address"),
                );
            }
            let api_base = c.url(
                &format!("{key}.api_base"),
                ra.api_base.as_ref(),
                GOOGLE_API_BASE_GMAIL,
            );
            let auth = google_auth(c, key, ra);
            let push = gmail_push(c, key, ra);
            AccountSettings::Gmail(GmailSettings {
                email: email?,
                api_base,
                auth: auth?,
                push,
            })
        }
        AccountKind::Calendar => AccountSettings::Calendar(calendar_settings(
            c,
            key,
            ra,
            ra.api_base.as_ref(),
            "api_base",
        )?),
        AccountKind::Imap => {
            let host = c.required(&format!("{key}.host"), ra.host.as_ref());
            let tls = match ra.tls.as_deref().map(str::trim) {
                None | Some("implicit") => ImapTls::Implicit,
                Some("starttls") => ImapTls::StartTls,
                Some("none") => ImapTls::None,
                Some(other) => {
                    c.issue(
                        &format!("{key}.tls"),
                        format!("must be \"implicit\", \"starttls\" or \"none\", got {other:?}"),
                    );
                    ImapTls::Implicit
                }
            };
            let default_port = if tls == ImapTls::Implicit { 993 } else { 143 };
            let port = c.int(&format!("{key}.port"), ra.port, default_port, 1, 65_535) as u16;
            let username = c.required(&format!("{key}.username"), ra.username.as_ref());
            let password = match ra.password.as_ref() {
                None => imap::Given::Absent,
                Some(p) => c
                    .credential(&format!("{key}.password"), Some(p))
                    .map_or(imap::Given::Invalid, imap::Given::Valid),
            };
            // The same OAuth keys a Gmail account has (XOAUTH2 with a Google credential).
            let oauth = if ra.client_id.is_some()
                || ra.client_secret.is_some()
                || ra.refresh_token.is_some()
                || ra.token_url.is_some()
            {
                google_auth(c, key, ra).map_or(imap::Given::Invalid, imap::Given::Valid)
            } else {
                imap::Given::Absent
            };
            let mailboxes = c.list(&format!("{key}.mailboxes"), ra.mailboxes.as_ref(), &["*"]);
            imap::settings(
                c,
                key,
                ra.imap.as_ref(),
                imap::Base {
                    host,
                    port,
                    username,
                    password,
                    oauth,
                    tls,
                    mailboxes,
                },
            )?
        }
        AccountKind::Test => {
            AccountSettings::Test(test_settings(c, &format!("{key}.test"), ra.test.as_ref())?)
        }
    };
    Some(AccountConfig {
        id: id?,
        kind,
        enabled: ra.enabled.unwrap_or(true),
        poll_interval,
        initial_query,
        batch_size: sync.batch_size,
        quota,
        settings,
    })
}

/// Keys that belong to another kind are errors: they would silently do nothing.
pub(super) fn reject_foreign_keys(
    c: &mut Check<'_>,
    key: &str,
    kind: AccountKind,
    ra: &RawAccount,
) {
    let google = matches!(kind, AccountKind::Gmail | AccountKind::Calendar);
    let imap = kind == AccountKind::Imap;
    let twin = kind == AccountKind::Gmail && ra.calendar == Some(true);
    let calendar_ok = kind == AccountKind::Calendar || twin;
    let present = [
        (
            "calendar",
            ra.calendar.is_some(),
            kind == AccountKind::Gmail,
        ),
        ("calendar_api_base", ra.calendar_api_base.is_some(), twin),
        ("email", ra.email.is_some(), google),
        ("api_base", ra.api_base.is_some(), google),
        ("token_url", ra.token_url.is_some(), google || imap),
        ("auth_url", ra.auth_url.is_some(), google),
        ("client_id", ra.client_id.is_some(), google || imap),
        ("client_secret", ra.client_secret.is_some(), google || imap),
        ("refresh_token", ra.refresh_token.is_some(), google || imap),
        ("calendar_ids", ra.calendar_ids.is_some(), calendar_ok),
        (
            "calendar_requests_per_minute",
            ra.calendar_requests_per_minute.is_some(),
            calendar_ok,
        ),
        (
            "calendar_max_in_flight",
            ra.calendar_max_in_flight.is_some(),
            calendar_ok,
        ),
        (
            "calendar_page_size",
            ra.calendar_page_size.is_some(),
            calendar_ok,
        ),
        ("host", ra.host.is_some(), kind == AccountKind::Imap),
        ("port", ra.port.is_some(), kind == AccountKind::Imap),
        ("username", ra.username.is_some(), kind == AccountKind::Imap),
        ("password", ra.password.is_some(), kind == AccountKind::Imap),
        ("tls", ra.tls.is_some(), kind == AccountKind::Imap),
        (
            "mailboxes",
            ra.mailboxes.is_some(),
            kind == AccountKind::Imap,
        ),
        ("imap", ra.imap.is_some(), kind == AccountKind::Imap),
        ("test", ra.test.is_some(), kind == AccountKind::Test),
        (
            "push_topic",
            ra.push_topic.is_some(),
            kind == AccountKind::Gmail,
        ),
        (
            "push_label_ids",
            ra.push_label_ids.is_some(),
            kind == AccountKind::Gmail,
        ),
    ];
    for (name, is_set, allowed) in present {
        if is_set && !allowed {
            c.issue(
                &format!("{key}.{name}"),
                format!("is not a setting of kind {kind:?}", kind = kind.as_str()),
            );
        }
    }
}
