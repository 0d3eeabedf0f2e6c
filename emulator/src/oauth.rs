//! OAuth 2.0: the authorization endpoint (`/o/oauth2/v2/auth`, scripted consent, loopback
//! redirect, PKCE S256/plain), the token endpoint (`/token`: authorization_code and
//! refresh_token grants), revocation (`/revoke`) and bearer validation for API calls.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::state::EmulatorState;
use crate::util::{b64url, lock};

pub use crate::oauth_store::{
    AccessGrant, Client, DEFAULT_SCOPES, OAuthStore, Principal, RefreshGrant, SCOPE_CAL_EVENTS,
    SCOPE_CAL_EVENTS_RO, SCOPE_CALENDAR, SCOPE_CALENDAR_RO, SCOPE_LABELS, SCOPE_MAIL,
    SCOPE_METADATA, SCOPE_MODIFY, SCOPE_READONLY,
};
use crate::oauth_store::{AuthCode, KNOWN_SCOPES, PendingConsent, hex_token};

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        json!({"error": error, "error_description": description}).to_string(),
    )
        .into_response()
}

fn is_loopback_redirect(uri: &str) -> bool {
    let Some(rest) = uri.strip_prefix("http://") else {
        return false;
    };
    let host_port = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (host, port) = if let Some(h) = host_port.strip_prefix('[') {
        match h.split_once("]:") {
            Some((h, p)) => (h, p),
            None => (h.trim_end_matches(']'), ""),
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((h, p)) => (h, p),
            None => (host_port, ""),
        }
    };
    let host_ok = matches!(host, "127.0.0.1" | "::1" | "localhost");
    let port_ok = port.is_empty() || port.parse::<u16>().is_ok();
    host_ok && port_ok
}

fn auth_page_error(error: &str, detail: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Html(format!(
            "<html><body><h1>Error 400: {error}</h1><p>{}</p></body></html>",
            crate::util::html_escape(detail)
        )),
    )
        .into_response()
}

/// `GET /o/oauth2/v2/auth`
pub async fn authorize(
    State(st): State<Arc<EmulatorState>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let client_id = params.get("client_id").cloned().unwrap_or_default();
    let known = lock(&st.oauth).clients.contains_key(&client_id);
    if !known {
        return (StatusCode::UNAUTHORIZED, Html("<html><body><h1>Error 401: invalid_client</h1><p>The OAuth client was not found.</p></body></html>".to_string())).into_response();
    }
    let redirect = params.get("redirect_uri").cloned().unwrap_or_default();
    if !is_loopback_redirect(&redirect) {
        return auth_page_error(
            "redirect_uri_mismatch",
            "redirect_uri must be a loopback http URI (http://127.0.0.1:PORT, http://[::1]:PORT or http://localhost:PORT).",
        );
    }
    if params.get("response_type").map(String::as_str) != Some("code") {
        return auth_page_error(
            "invalid_request",
            "Required parameter is missing or invalid: response_type",
        );
    }
    let scope = params.get("scope").cloned().unwrap_or_default();
    if scope.trim().is_empty() {
        return auth_page_error("invalid_request", "Missing required parameter: scope");
    }
    if let Some(bad) = scope.split_whitespace().find(|s| !KNOWN_SCOPES.contains(s)) {
        return auth_page_error(
            "invalid_scope",
            &format!("Some requested scopes were invalid: {bad}"),
        );
    }
    let method = params
        .get("code_challenge_method")
        .cloned()
        .unwrap_or_else(|| "plain".into());
    if !matches!(method.as_str(), "S256" | "plain") {
        return auth_page_error("invalid_request", "Invalid code_challenge_method");
    }
    if let Some(c) = params.get("code_challenge")
        && (c.len() < 43 || c.len() > 128)
    {
        return auth_page_error("invalid_request", "Invalid code_challenge");
    }
    let auto = lock(&st.oauth).auto_consent;
    if !auto {
        let id = {
            let mut o = lock(&st.oauth);
            let id = hex_token(&mut o.rng, 8);
            o.pending.insert(
                id.clone(),
                PendingConsent {
                    params: params.clone(),
                },
            );
            id
        };
        return Html(format!(
            "<html><body><h1>mailsync emulator consent</h1><p>Client {client_id} requests {}</p>\
             <a id=\"allow\" href=\"/o/oauth2/v2/auth/decide?consent={id}&approve=true\">Allow</a> \
             <a id=\"deny\" href=\"/o/oauth2/v2/auth/decide?consent={id}&approve=false\">Deny</a></body></html>",
            crate::util::html_escape(&scope)
        ))
        .into_response();
    }
    approve(&st, &params)
}

fn redirect_with(redirect: &str, pairs: &[(&str, &str)]) -> Response {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        ser.append_pair(k, v);
    }
    let sep = if redirect.contains('?') { '&' } else { '?' };
    let location = format!("{redirect}{sep}{}", ser.finish());
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

fn approve(st: &EmulatorState, params: &HashMap<String, String>) -> Response {
    let redirect = params.get("redirect_uri").cloned().unwrap_or_default();
    let scope = params.get("scope").cloned().unwrap_or_default();
    let now = st.clock.now_ms();
    let email = params
        .get("login_hint")
        .filter(|h| st.has_account(h))
        .cloned()
        .unwrap_or_else(|| st.config.account.clone());
    let code = {
        let mut o = lock(&st.oauth);
        let code = format!("4/0emu_{}", hex_token(&mut o.rng, 24));
        o.codes.insert(
            code.clone(),
            AuthCode {
                client_id: params.get("client_id").cloned().unwrap_or_default(),
                redirect_uri: redirect.clone(),
                challenge: params.get("code_challenge").cloned(),
                method: params
                    .get("code_challenge_method")
                    .cloned()
                    .unwrap_or_else(|| "plain".into()),
                scopes: scope.split_whitespace().map(String::from).collect(),
                email,
                expires_ms: now + 600_000,
            },
        );
        code
    };
    let state = params.get("state").cloned();
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    if let Some(s) = &state {
        pairs.push(("state", s));
    }
    pairs.push(("code", &code));
    pairs.push(("scope", &scope));
    redirect_with(&redirect, &pairs)
}

/// `GET /o/oauth2/v2/auth/decide?consent=ID&approve=true|false` (the consent page's links).
pub async fn decide(
    State(st): State<Arc<EmulatorState>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let id = params.get("consent").cloned().unwrap_or_default();
    let Some(p) = lock(&st.oauth).pending.remove(&id) else {
        return auth_page_error("invalid_request", "Unknown consent request");
    };
    if params.get("approve").map(String::as_str) == Some("true") {
        approve(&st, &p.params)
    } else {
        let redirect = p.params.get("redirect_uri").cloned().unwrap_or_default();
        let mut pairs = vec![("error", "access_denied")];
        if let Some(s) = p.params.get("state") {
            pairs.push(("state", s));
        }
        redirect_with(&redirect, &pairs)
    }
}

fn pkce_ok(challenge: &Option<String>, method: &str, verifier: Option<&str>) -> bool {
    match (challenge, verifier) {
        (None, None) => true,
        (None, Some(_)) => true,
        (Some(_), None) => false,
        (Some(c), Some(v)) => {
            let valid_chars = v.len() >= 43
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
            if !valid_chars {
                return false;
            }
            if method == "S256" {
                b64url(&Sha256::digest(v.as_bytes())) == *c
            } else {
                v == c
            }
        }
    }
}

/// `POST /token`
pub async fn token(
    State(st): State<Arc<EmulatorState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Invalid Content-Type; expected application/x-www-form-urlencoded",
        );
    }
    if let Some(r) = token_fault(&st).await {
        return r;
    }
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let now = st.clock.now_ms();
    let ttl_ms = st.config.access_token_ttl.as_millis() as i64;
    let expires_in = (ttl_ms / 1000 - 1).max(1);
    let Some(client_id) = get("client_id") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Could not determine client ID from request.",
        );
    };
    let mut o = lock(&st.oauth);
    let Some(client) = o.clients.get(client_id).cloned() else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The OAuth client was not found.",
        );
    };
    match get("client_secret") {
        Some(s) if s == client.secret => {}
        Some(_) => return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Unauthorized"),
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "client_secret is missing.",
            );
        }
    }
    match get("grant_type") {
        Some("authorization_code") => {
            let Some(code) = get("code") else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "Missing required parameter: code",
                );
            };
            // Codes are single-use: removed even when the exchange then fails.
            let Some(ac) = o.codes.remove(code) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Malformed auth code.",
                );
            };
            if ac.expires_ms <= now || ac.client_id != client_id {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Bad Request");
            }
            if get("redirect_uri") != Some(ac.redirect_uri.as_str()) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "redirect_uri_mismatch",
                    "Bad Request",
                );
            }
            if !pkce_ok(&ac.challenge, &ac.method, get("code_verifier")) {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Bad Request");
            }
            let refresh = format!("1//emu_{}", hex_token(&mut o.rng, 24));
            o.refresh.insert(
                refresh.clone(),
                RefreshGrant {
                    email: ac.email.clone(),
                    client_id: client_id.into(),
                    scopes: ac.scopes.clone(),
                    revoked: false,
                    issued_ms: now,
                },
            );
            let access = o.issue_access(
                &ac.email,
                client_id,
                &ac.scopes,
                ttl_ms,
                now,
                Some(refresh.clone()),
            );
            let body = json!({
                "access_token": access,
                "expires_in": expires_in,
                "refresh_token": refresh,
                "scope": ac.scopes.join(" "),
                "token_type": "Bearer",
            });
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
                body.to_string(),
            )
                .into_response()
        }
        Some("refresh_token") => {
            let Some(rt) = get("refresh_token") else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "Missing required parameter: refresh_token",
                );
            };
            let Some(g) = o.refresh.get(rt).cloned() else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Bad Request");
            };
            let expired = st
                .config
                .refresh_token_ttl
                .is_some_and(|ttl| now - g.issued_ms >= ttl.as_millis() as i64);
            if g.revoked || expired || g.client_id != client_id {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Token has been expired or revoked.",
                );
            }
            // An optional `scope` narrows the new access token; it may only name granted
            // scopes, space-separated (Google answers `invalid_scope` otherwise).
            let scopes = match form.get("scope") {
                None => g.scopes.clone(),
                Some(asked) => {
                    let wanted: Vec<String> = asked.split(' ').map(str::to_string).collect();
                    let well_formed = !asked.is_empty()
                        && wanted.iter().all(|w| {
                            !w.is_empty() && !w.chars().any(|c| c.is_control() || c == '"')
                        });
                    if !well_formed {
                        return oauth_error(
                            StatusCode::BAD_REQUEST,
                            "invalid_scope",
                            "Some requested scopes were invalid.",
                        );
                    }
                    if let Some(extra) = wanted.iter().find(|w| !g.scopes.contains(w)) {
                        return oauth_error(
                            StatusCode::BAD_REQUEST,
                            "invalid_scope",
                            &format!("Some requested scopes were not granted: {extra}"),
                        );
                    }
                    wanted
                }
            };
            let access = o.issue_access(
                &g.email,
                client_id,
                &scopes,
                ttl_ms,
                now,
                Some(rt.to_string()),
            );
            let body = json!({
                "access_token": access,
                "expires_in": expires_in,
                "scope": scopes.join(" "),
                "token_type": "Bearer",
            });
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
                body.to_string(),
            )
                .into_response()
        }
        Some(_) => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Invalid grant_type",
        ),
        None => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: grant_type",
        ),
    }
}

/// Faults on the token endpoint (method name `oauth2.token` in the fault rules): 429, 500,
/// 503, a hang, a cut JSON body or a non-JSON page. Every request is counted.
async fn token_fault(st: &Arc<EmulatorState>) -> Option<Response> {
    let (latency, fault) = lock(&st.faults).decide("oauth2.token");
    st.with_counters(|c| *c.requests.entry("oauth2.token".into()).or_insert(0) += 1);
    if latency > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
    }
    let kind = fault?;
    st.with_counters(|c| {
        c.faults_injected += 1;
        *c.faults_by_kind.entry(kind.name().to_string()).or_insert(0) += 1;
    });
    use crate::faults::FaultKind;
    let json = [(header::CONTENT_TYPE, "application/json; charset=utf-8")];
    Some(match kind {
        FaultKind::Status429 => oauth_error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            "Rate Limit Exceeded",
        ),
        FaultKind::Status500 => oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_failure",
            "Backend Error",
        ),
        FaultKind::Status503 | FaultKind::Reset => oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "The service is currently unavailable.",
        ),
        FaultKind::Timeout => {
            tokio::select! {
                _ = st.shutdown.cancelled() => {}
                _ = tokio::time::sleep(std::time::Duration::from_secs(120)) => {}
            }
            oauth_error(StatusCode::GATEWAY_TIMEOUT, "timeout", "Timeout")
        }
        FaultKind::Truncated => (
            StatusCode::OK,
            json,
            r#"{"access_token":"ya29.cut"#.to_string(),
        )
            .into_response(),
        FaultKind::Malformed => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<html><body>Service unavailable</body></html>".to_string(),
        )
            .into_response(),
    })
}

/// `POST /revoke?token=…` (or form body `token=…`).
pub async fn revoke(
    State(st): State<Arc<EmulatorState>>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let Some(token) = q.get("token").or_else(|| form.get("token")).cloned() else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: token",
        );
    };
    if lock(&st.oauth).revoke(&token) {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            "{}",
        )
            .into_response()
    } else {
        oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_token",
            "Token expired or revoked",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only() {
        assert!(is_loopback_redirect("http://127.0.0.1:5000"));
        assert!(is_loopback_redirect("http://127.0.0.1:5000/cb"));
        assert!(is_loopback_redirect("http://[::1]:80"));
        assert!(is_loopback_redirect("http://localhost:9"));
        assert!(!is_loopback_redirect("https://example.com/cb"));
        assert!(!is_loopback_redirect("http://127.0.0.1.evil.com:80"));
    }

    #[test]
    fn pkce() {
        let v = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let c = b64url(&Sha256::digest(v.as_bytes()));
        assert!(pkce_ok(&Some(c.clone()), "S256", Some(v)));
        assert!(!pkce_ok(
            &Some(c),
            "S256",
            Some("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXX")
        ));
        assert!(!pkce_ok(&Some("x".into()), "plain", None));
    }
}
