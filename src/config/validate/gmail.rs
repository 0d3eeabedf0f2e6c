//! Validation of Gmail settings: the Google endpoints and OAuth credential references, the
//! push topic and label filter of an account.

#[allow(unused_imports)]
use super::*;

pub(super) const GOOGLE_API_BASE_GMAIL: &str = "https://gmail.googleapis.com";
pub(super) const GOOGLE_API_BASE_CALENDAR: &str = "https://www.googleapis.com";
pub(super) const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
pub(super) const GOOGLE_AUTH_URL: &str = "https://accounts.google.com/o/oauth2/v2/auth";

/// A Pub/Sub resource name `projects/<project>/<collection>/<name>`.
pub(super) fn valid_resource(name: &str, collection: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    parts.len() == 4
        && parts[0] == "projects"
        && parts[2] == collection
        && !parts[1].is_empty()
        && !parts[3].is_empty()
        && !name.contains(char::is_whitespace)
}

pub(super) fn gmail_push(c: &mut Check<'_>, key: &str, ra: &RawAccount) -> Option<GmailPush> {
    let topic = c.optional(&format!("{key}.push_topic"), ra.push_topic.as_ref());
    let Some(topic) = topic else {
        if ra.push_label_ids.is_some() {
            c.issue(
                &format!("{key}.push_label_ids"),
                "is only used together with push_topic",
            );
        }
        return None;
    };
    if !valid_resource(&topic, "topics") {
        c.issue(
            &format!("{key}.push_topic"),
            format!("must look like projects/<project>/topics/<topic>, got {topic:?}"),
        );
    }
    let label_ids = match &ra.push_label_ids {
        Some(ids) => c.list(&format!("{key}.push_label_ids"), Some(ids), &[]),
        None => Vec::new(),
    };
    Some(GmailPush { topic, label_ids })
}

pub(super) fn google_auth(c: &mut Check<'_>, key: &str, ra: &RawAccount) -> Option<GoogleAuth> {
    let token_url = c.url(
        &format!("{key}.token_url"),
        ra.token_url.as_ref(),
        GOOGLE_TOKEN_URL,
    );
    let auth_url = c.url(
        &format!("{key}.auth_url"),
        ra.auth_url.as_ref(),
        GOOGLE_AUTH_URL,
    );
    let client_id = c.required(&format!("{key}.client_id"), ra.client_id.as_ref());
    let client_secret = c.credential(&format!("{key}.client_secret"), ra.client_secret.as_ref());
    let refresh_token = c.credential(&format!("{key}.refresh_token"), ra.refresh_token.as_ref());
    Some(GoogleAuth {
        token_url,
        auth_url,
        client_id: client_id?,
        client_secret: client_secret?,
        refresh_token: refresh_token?,
    })
}
