//! Validation of an IMAP account's settings (`[[accounts]]` with `kind = "imap"` and its
//! `[accounts.imap]` table): plaintext only to a loopback host and only with
//! `allow_plaintext = true`, the auth mechanism, pool size and timeouts.

use super::super::raw::RawImap;
use super::super::{
    AccountSettings, CredentialRef, GoogleAuth, ImapAuth, ImapCredential, ImapSettings, ImapTls,
};
use super::Check;
use std::time::Duration;

/// The keys of the account table itself.
pub(super) struct Base {
    /// `host` (`None`: missing, already reported).
    pub host: Option<String>,
    pub port: u16,
    /// `username` (`None`: missing, already reported).
    pub username: Option<String>,
    /// `password`.
    pub password: Given<CredentialRef>,
    /// The Google OAuth keys (`client_id`, `client_secret`, `refresh_token`, `token_url`).
    pub oauth: Given<GoogleAuth>,
    pub tls: ImapTls,
    pub mailboxes: Vec<String>,
}

/// A key (or group of keys) that is absent, valid, or present but invalid (already reported).
pub(super) enum Given<T> {
    /// Not in the file.
    Absent,
    /// Present and valid.
    Valid(T),
    /// Present, with its issue already recorded.
    Invalid,
}

/// Whether `host` names this machine (an IP in 127/8, ::1, or `localhost`).
pub fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub(super) fn settings(
    c: &mut Check<'_>,
    key: &str,
    raw: Option<&RawImap>,
    base: Base,
) -> Option<AccountSettings> {
    let empty = RawImap::default();
    let raw = raw.unwrap_or(&empty);
    let k = |name: &str| format!("{key}.imap.{name}");
    let allow_plaintext = raw.allow_plaintext.unwrap_or(false);
    if base.tls == ImapTls::None {
        if !allow_plaintext {
            c.issue(
                &format!("{key}.tls"),
                "\"none\" sends the password in clear; it needs imap.allow_plaintext = true (and a loopback host)",
            );
        } else if let Some(host) = base.host.as_deref().filter(|h| !is_loopback_host(h)) {
            c.issue(
                &format!("{key}.tls"),
                format!("\"none\" is only allowed to a loopback host, not {host:?}"),
            );
        }
    }
    let auth = match raw.auth.as_deref().map(str::trim) {
        None | Some("login") => ImapAuth::Login,
        Some("plain") => ImapAuth::Plain,
        Some("xoauth2") => ImapAuth::XOAuth2,
        Some(other) => {
            c.issue(
                &k("auth"),
                format!("must be \"login\", \"plain\" or \"xoauth2\", got {other:?}"),
            );
            ImapAuth::Login
        }
    };
    let credential = match (auth, base.password, base.oauth) {
        (_, Given::Invalid, _) | (_, _, Given::Invalid) => None,
        (ImapAuth::XOAuth2, Given::Absent, Given::Valid(oauth)) => {
            Some(ImapCredential::OAuth(oauth))
        }
        (ImapAuth::XOAuth2, Given::Valid(_), Given::Valid(_)) => {
            c.issue(
                &format!("{key}.password"),
                "give either password (a fixed access token) or client_id / client_secret / refresh_token, not both",
            );
            None
        }
        (_, _, Given::Valid(_)) => {
            c.issue(
                &format!("{key}.client_id"),
                "an OAuth credential needs imap.auth = \"xoauth2\" (and no password)",
            );
            None
        }
        (_, Given::Valid(p), Given::Absent) => Some(ImapCredential::Password(p)),
        (ImapAuth::XOAuth2, Given::Absent, Given::Absent) => {
            c.issue(
                &format!("{key}.client_id"),
                "xoauth2 needs client_id, client_secret and refresh_token (or a fixed access token in password)",
            );
            None
        }
        (_, Given::Absent, Given::Absent) => {
            c.issue(
                &format!("{key}.password"),
                "is required (a table with one of file, env or command)",
            );
            None
        }
    };
    let ca_file = raw
        .ca_file
        .as_deref()
        .and_then(|p| c.path(&k("ca_file"), p));
    let connections = c.int(&k("connections"), raw.connections, 2, 1, 16) as usize;
    let exclude = match &raw.exclude {
        None => Vec::new(),
        Some(list) => {
            if list.iter().any(|s| s.trim().is_empty()) {
                c.issue(&k("exclude"), "must not contain empty patterns");
            }
            list.clone()
        }
    };
    let idle = raw
        .idle
        .clone()
        .unwrap_or_else(|| vec!["INBOX".to_string()]);
    let idle_max = Duration::from_secs(60 * c.int(&k("idle_minutes"), raw.idle_minutes, 25, 1, 29));
    let connect_timeout = Duration::from_secs(c.int(
        &k("connect_timeout_secs"),
        raw.connect_timeout_secs,
        5,
        1,
        300,
    ));
    let timeout = Duration::from_secs(c.int(&k("timeout_secs"), raw.timeout_secs, 30, 1, 3600));
    let recent_first = c.int(&k("recent_first"), raw.recent_first, 1000, 0, 10_000_000);
    let status_poll_min = Duration::from_secs(c.int(
        &k("status_poll_min_secs"),
        raw.status_poll_min_secs,
        60,
        1,
        86_400,
    ));
    let status_poll_max = Duration::from_secs(c.int(
        &k("status_poll_max_secs"),
        raw.status_poll_max_secs,
        900,
        1,
        86_400,
    ))
    .max(status_poll_min);
    Some(AccountSettings::Imap(ImapSettings {
        host: base.host?,
        port: base.port,
        username: base.username?,
        credential: credential?,
        tls: base.tls,
        mailboxes: base.mailboxes,
        exclude,
        allow_plaintext,
        ca_file,
        auth,
        connections,
        idle,
        idle_max,
        connect_timeout,
        timeout,
        recent_first,
        status_poll_min,
        status_poll_max,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback_host("127.0.0.1"));
        assert!(is_loopback_host("127.3.4.5"));
        assert!(is_loopback_host("::1"));
        assert!(is_loopback_host("[::1]"));
        assert!(is_loopback_host("localhost"));
        assert!(!is_loopback_host("10.0.0.1"));
        assert!(!is_loopback_host("imap.example.org"));
    }
}
