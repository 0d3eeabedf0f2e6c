//! Google's token-information endpoint (`GET` or `POST /tokeninfo` and
//! `/oauth2/v3/tokeninfo`, `access_token=` in the query or a form body), as an IMAP server's
//! OAuth 2.0 password database (Dovecot's `oauth2` passdb, `tokeninfo_url`) or any other
//! resource server asks it whether a bearer token is good.
//!
//! A live access token answers 200 with the v3 shape: `azp` and `aud` (the client id), `sub`
//! (a stable numeric user id), `scope` (space separated), `exp` and `expires_in` (seconds, as
//! strings), `access_type` (`offline` when a refresh token stands behind it), and `email` with
//! `email_verified` only when the grant includes the `email` (or `userinfo.email`) scope. An
//! unknown, expired or revoked token answers 400 `{"error": "invalid_token",
//! "error_description": "Invalid Value"}`. Every call is counted as `oauth2.tokeninfo`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;

use crate::state::EmulatorState;
use crate::util::{hash64, lock};

const EMAIL_SCOPES: [&str; 2] = ["email", "https://www.googleapis.com/auth/userinfo.email"];

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
        body.to_string(),
    )
        .into_response()
}

fn invalid() -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        json!({"error": "invalid_token", "error_description": "Invalid Value"}),
    )
}

/// The `sub` of an account: 21 decimal digits, stable per email.
pub fn subject(email: &str) -> String {
    let h = hash64(&[email.to_ascii_lowercase().as_bytes(), b"sub"]);
    format!("1{h:020}")
}

/// `GET|POST /tokeninfo?access_token=…`
pub async fn tokeninfo(
    State(st): State<Arc<EmulatorState>>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    st.with_counters(|c| *c.requests.entry("oauth2.tokeninfo".into()).or_insert(0) += 1);
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let Some(token) = query
        .get("access_token")
        .or_else(|| form.get("access_token"))
        .filter(|t| !t.is_empty())
        .cloned()
    else {
        return invalid();
    };
    let now = st.clock.now_ms();
    let Some(grant) = lock(&st.oauth).access.get(&token).cloned() else {
        return invalid();
    };
    if grant.expires_ms <= now {
        return invalid();
    }
    let expires_in = (grant.expires_ms - now) / 1000;
    let mut body = json!({
        "azp": grant.client_id,
        "aud": grant.client_id,
        "sub": subject(&grant.email),
        "scope": grant.scopes.join(" "),
        "exp": (grant.expires_ms / 1000).to_string(),
        "expires_in": expires_in.to_string(),
        "access_type": if grant.refresh.is_some() { "offline" } else { "online" },
    });
    if grant
        .scopes
        .iter()
        .any(|s| EMAIL_SCOPES.contains(&s.as_str()))
    {
        body["email"] = json!(grant.email);
        body["email_verified"] = json!("true");
    }
    json_response(StatusCode::OK, body)
}

#[cfg(test)]
mod tests {
    use super::subject;

    #[test]
    fn subjects_are_stable_numeric_and_per_account() {
        let a = subject("a@example.com");
        assert_eq!(a, subject("A@example.com"));
        assert_eq!(a.len(), 21);
        assert!(a.bytes().all(|b| b.is_ascii_digit()));
        assert_ne!(a, subject("b@example.com"));
    }
}
