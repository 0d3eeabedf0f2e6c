//! Classification of Google's HTTP answers into `mailsync_actors::error::ApiError`
//! (reference gmail-api.md §3.3, §3.4, §4, §5.3; design-notes §6).
//!
//! Rules: 429, and 403 with reason `userRateLimitExceeded`/`rateLimitExceeded`, → `RateLimited`
//! (Retry-After from the header, else from a `Retry after <RFC 3339>` message); 5xx, resets
//! and timeouts → `Transient`; 404 → `NotFound` (`HistoryExpired` for `history.list`); 401 →
//! `Disconnected` (the client refreshes once before it gets here); `invalid_grant` and
//! `invalid_client` from the token endpoint → `Disconnected`; unparsable bodies → `Malformed`
//! with a short excerpt; every other 4xx → `Rejected`.
//!
//! No message built here contains a token: excerpts are cut short and scrubbed of anything
//! shaped like an OAuth token, and token-endpoint bodies are never excerpted at all.

use super::wire::{WireErrorBody, WireTokenError};
use mailsync_actors::error::ApiError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The Gmail method a response answers; decides how a 404 reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GmailMethod {
    /// `users.getProfile`.
    Profile,
    /// `users.labels.list`.
    Labels,
    /// `users.messages.list`.
    ListMessages,
    /// `users.messages.get` (a batch part or a single call).
    GetMessage,
    /// `users.history.list`.
    History,
    /// The batch envelope itself.
    Batch,
}

impl GmailMethod {
    /// The method's name in logs (`gmail.users.history.list`, ...).
    pub fn name(self) -> &'static str {
        match self {
            GmailMethod::Profile => "gmail.users.getProfile",
            GmailMethod::Labels => "gmail.users.labels.list",
            GmailMethod::ListMessages => "gmail.users.messages.list",
            GmailMethod::GetMessage => "gmail.users.messages.get",
            GmailMethod::History => "gmail.users.history.list",
            GmailMethod::Batch => "gmail.batch",
        }
    }
}

/// Longest excerpt of a body kept in an error message.
pub const EXCERPT_CHARS: usize = 80;

/// Classifies a non-2xx Gmail answer. `retry_after` is the parsed `Retry-After` header.
pub fn classify(
    method: GmailMethod,
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> ApiError {
    let parsed: Option<WireErrorBody> = serde_json::from_slice(body).ok();
    let error = parsed.and_then(|b| b.error).unwrap_or_default();
    let reasons: Vec<&str> = error
        .errors
        .iter()
        .filter_map(|e| e.reason.as_deref())
        .collect();
    let message = error
        .message
        .as_deref()
        .or_else(|| error.errors.iter().find_map(|e| e.message.as_deref()))
        .unwrap_or("");
    let detail = || {
        let mut d = format!("HTTP {status}");
        if let Some(reason) = reasons.first() {
            d.push_str(&format!(" {reason}"));
        } else if let Some(s) = &error.status {
            d.push_str(&format!(" {s}"));
        }
        if !message.is_empty() {
            d.push_str(": ");
            d.push_str(&excerpt(message.as_bytes()));
        } else if error.code.is_none() && !body.is_empty() {
            d.push_str(": ");
            d.push_str(&excerpt(body));
        }
        d
    };
    let rate_reason = reasons.iter().any(|r| {
        matches!(
            *r,
            "userRateLimitExceeded" | "rateLimitExceeded" | "quotaExceeded"
        )
    });
    match status {
        429 => ApiError::RateLimited {
            retry_after: retry_after.or_else(|| retry_after_from_message(message)),
        },
        403 if rate_reason => ApiError::RateLimited {
            retry_after: retry_after.or_else(|| retry_after_from_message(message)),
        },
        // Only reached after a successful refresh (auth retries a first 401). The refresh token
        // works, so no person needs to act: retry later. A grant revoked meanwhile surfaces as
        // `invalid_grant` at the next refresh, which disconnects the account.
        401 => ApiError::Transient(format!(
            "access token rejected right after a refresh ({})",
            detail()
        )),
        404 if method == GmailMethod::History => ApiError::HistoryExpired,
        404 => ApiError::NotFound,
        408 => ApiError::Transient(detail()),
        500..=599 => ApiError::Transient(detail()),
        _ => ApiError::Rejected(detail()),
    }
}

/// Whether an answer is Google's per-user concurrency refusal (429, message "Too many
/// concurrent requests for user", reference §3.3), as opposed to a rate limit.
pub fn is_concurrency_refusal(status: u16, body: &[u8]) -> bool {
    if status != 429 {
        return false;
    }
    let parsed: Option<WireErrorBody> = serde_json::from_slice(body).ok();
    parsed
        .and_then(|b| b.error)
        .and_then(|e| e.message)
        .is_some_and(|m| m.contains("oo many concurrent requests"))
}

/// Classifies a non-2xx answer of the OAuth token endpoint. The body is never excerpted.
pub fn classify_token(status: u16, retry_after: Option<Duration>, body: &[u8]) -> ApiError {
    let parsed: WireTokenError = serde_json::from_slice(body).unwrap_or_default();
    let code = parsed.error.as_deref().unwrap_or("");
    let description = parsed
        .error_description
        .as_deref()
        .map(|d| scrub(&truncate_chars(d, EXCERPT_CHARS)))
        .unwrap_or_default();
    let detail = if description.is_empty() {
        format!("token endpoint HTTP {status} {code}")
    } else {
        format!("token endpoint HTTP {status} {code}: {description}")
    };
    match (status, code) {
        (_, "invalid_grant") => ApiError::Disconnected(format!(
            "refresh token expired or revoked (invalid_grant{})",
            if description.is_empty() {
                String::new()
            } else {
                format!(": {description}")
            }
        )),
        (_, "invalid_client" | "unauthorized_client" | "deleted_client") => {
            ApiError::Disconnected(detail)
        }
        (429, _) => ApiError::RateLimited { retry_after },
        (408 | 500..=599, _) => ApiError::Transient(detail),
        _ => ApiError::Rejected(detail),
    }
}

/// Classifies a transport failure (no HTTP answer, or a body cut off while reading).
pub fn classify_transport(err: &reqwest::Error) -> ApiError {
    let kind = if err.is_timeout() {
        "timeout"
    } else if err.is_connect() {
        "connect failed"
    } else if err.is_body() || err.is_decode() {
        "body read failed"
    } else if err.is_request() {
        "request failed"
    } else {
        "transport error"
    };
    // reqwest's Display names the URL; ours carry no secrets in the URL (tokens travel in
    // headers and form bodies), but keep the text short all the same.
    let source = std::error::Error::source(err)
        .map(|s| truncate_chars(&s.to_string(), EXCERPT_CHARS))
        .unwrap_or_default();
    if source.is_empty() {
        ApiError::Transient(kind.to_owned())
    } else {
        ApiError::Transient(format!("{kind}: {}", scrub(&source)))
    }
}

/// A JSON body that does not parse: `Malformed` with the parser's position and a short,
/// scrubbed excerpt of the start of the body.
pub fn malformed_json(what: &str, err: &serde_json::Error, body: &[u8]) -> ApiError {
    ApiError::Malformed(format!(
        "{what}: invalid JSON at line {} column {} ({:?}); body starts {}",
        err.line(),
        err.column(),
        err.classify(),
        excerpt(body)
    ))
}

/// The `Retry-After` header: delta-seconds (fractions tolerated) or an HTTP-date in the
/// IMF-fixdate form.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Some(Duration::from_secs_f64(secs.min(86_400.0)));
        }
        return None;
    }
    let at = parse_imf_fixdate(value)?;
    Some(until(at))
}

/// Google's observed `... Retry after 2026-05-02T10:11:12.345Z` message text.
pub fn retry_after_from_message(message: &str) -> Option<Duration> {
    let idx = message.find("Retry after ")?;
    let rest = message[idx + "Retry after ".len()..].trim();
    let stamp = rest.split_whitespace().next()?;
    let at = parse_rfc3339_utc(stamp)?;
    Some(until(at))
}

fn until(at_unix_ms: i64) -> Duration {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let delta = at_unix_ms.saturating_sub(now_ms).clamp(0, 86_400_000);
    Duration::from_millis(u64::try_from(delta).unwrap_or(0))
}

/// `2026-05-02T10:11:12.345Z` → Unix ms (chrono's RFC 3339 parser; a trailing `.` or `,`
/// of the surrounding sentence is ignored).
fn parse_rfc3339_utc(s: &str) -> Option<i64> {
    let s = s.trim_end_matches(['.', ',']);
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// An HTTP-date (`Sun, 06 Nov 1994 08:49:37 GMT`) → Unix ms, with the `httpdate` crate.
fn parse_imf_fixdate(s: &str) -> Option<i64> {
    let t = httpdate::parse_http_date(s).ok()?;
    let d = t.duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

fn truncate_chars(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).collect();
    if s.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// A short, printable, token-free excerpt of a body.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let cut = truncate_chars(&text, EXCERPT_CHARS);
    let printable: String = cut
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("\"{}\"", scrub(&printable))
}

/// Replaces anything shaped like an OAuth token (`ya29.…`, `1//…`, `Bearer …`, or a
/// `"access_token"`/`"refresh_token"` value) with `[redacted]`.
pub fn scrub(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    if lower.contains("access_token")
        || lower.contains("refresh_token")
        || lower.contains("client_secret")
        || lower.contains("id_token")
    {
        return "[redacted: body mentions a credential]".to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let next = ["ya29.", "1//", "Bearer ", "bearer ", "GOCSPX-"]
            .iter()
            .filter_map(|p| rest.find(p).map(|i| (i, *p)))
            .min_by_key(|(i, _)| *i);
        match next {
            Some((i, prefix)) => {
                out.push_str(&rest[..i]);
                out.push_str("[redacted]");
                let after = &rest[i + prefix.len()..];
                let end = after
                    .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == ',')
                    .unwrap_or(after.len());
                rest = &after[end..];
            }
            None => {
                out.push_str(rest);
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(code: u16, reason: &str, message: &str) -> Vec<u8> {
        format!(
            r#"{{"error":{{"code":{code},"message":"{message}","errors":[{{"message":"{message}","domain":"global","reason":"{reason}"}}]}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn rate_limits_are_rate_limited_with_retry_after() {
        let b = body(
            429,
            "rateLimitExceeded",
            "Too many concurrent requests for user.",
        );
        assert_eq!(
            classify(
                GmailMethod::GetMessage,
                429,
                Some(Duration::from_secs(3)),
                &b
            ),
            ApiError::RateLimited {
                retry_after: Some(Duration::from_secs(3))
            }
        );
        assert_eq!(
            classify(GmailMethod::GetMessage, 429, None, b""),
            ApiError::RateLimited { retry_after: None }
        );
        for reason in ["userRateLimitExceeded", "rateLimitExceeded"] {
            let b = body(403, reason, "User Rate Limit Exceeded");
            assert_eq!(
                classify(GmailMethod::ListMessages, 403, None, &b),
                ApiError::RateLimited { retry_after: None }
            );
        }
    }

    #[test]
    fn retry_after_in_the_message_is_used_when_no_header() {
        let future = SystemTime::now() + Duration::from_secs(30);
        let stamp = chrono::DateTime::<chrono::Utc>::from(future)
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        let b = body(
            403,
            "userRateLimitExceeded",
            &format!("User-rate limit exceeded.  Retry after {stamp}"),
        );
        match classify(GmailMethod::GetMessage, 403, None, &b) {
            ApiError::RateLimited {
                retry_after: Some(d),
            } => assert!(
                d > Duration::from_secs(25) && d <= Duration::from_secs(31),
                "{d:?}"
            ),
            other => panic!("expected RateLimited with a delay, got {other:?}"),
        }
    }

    #[test]
    fn retry_after_header_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after(" 1.5 "),
            Some(Duration::from_millis(1_500))
        );
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("soon"), None);
        // A date in the past means "now".
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_imf_fixdate("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777_000)
        );
        assert_eq!(
            parse_rfc3339_utc("2026-05-02T10:11:12.345Z"),
            Some(1_777_716_672_345)
        );
    }

    #[test]
    fn other_403s_are_rejected() {
        for reason in [
            "insufficientPermissions",
            "domainPolicy",
            "dailyLimitExceeded",
        ] {
            let b = body(403, reason, "nope");
            match classify(GmailMethod::GetMessage, 403, None, &b) {
                ApiError::Rejected(msg) => assert!(msg.contains(reason), "{msg}"),
                other => panic!("expected Rejected, got {other:?}"),
            }
        }
    }

    #[test]
    fn not_found_and_history_expired() {
        let b = body(404, "notFound", "Requested entity was not found.");
        assert_eq!(
            classify(GmailMethod::GetMessage, 404, None, &b),
            ApiError::NotFound
        );
        assert_eq!(
            classify(GmailMethod::History, 404, None, &b),
            ApiError::HistoryExpired
        );
    }

    #[test]
    fn server_errors_are_transient_and_400_rejected() {
        for status in [500u16, 502, 503, 504] {
            let b = body(status, "backendError", "Backend Error");
            assert!(matches!(
                classify(GmailMethod::Profile, status, None, &b),
                ApiError::Transient(_)
            ));
        }
        let b = body(
            400,
            "invalidArgument",
            "Missing/invalid parameter: startHistoryId",
        );
        match classify(GmailMethod::History, 400, None, &b) {
            ApiError::Rejected(msg) => {
                assert!(msg.contains("HTTP 400 invalidArgument"), "{msg}");
                assert!(msg.contains("startHistoryId"), "{msg}");
            }
            other => panic!("expected Rejected, got {other:?}"),
        }
    }

    #[test]
    fn unauthorized_after_refresh_is_transient() {
        let b = body(401, "authError", "Invalid Credentials");
        assert!(matches!(
            classify(GmailMethod::Labels, 401, None, &b),
            ApiError::Transient(_)
        ));
    }

    #[test]
    fn token_endpoint_errors() {
        let grant = br#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#;
        match classify_token(400, None, grant) {
            ApiError::Disconnected(msg) => assert!(msg.contains("invalid_grant"), "{msg}"),
            other => panic!("expected Disconnected, got {other:?}"),
        }
        let client = br#"{"error":"invalid_client","error_description":"Unauthorized"}"#;
        assert!(matches!(
            classify_token(401, None, client),
            ApiError::Disconnected(_)
        ));
        assert!(matches!(
            classify_token(503, None, b"oops"),
            ApiError::Transient(_)
        ));
        assert!(matches!(
            classify_token(400, None, br#"{"error":"invalid_request"}"#),
            ApiError::Rejected(_)
        ));
        assert_eq!(
            classify_token(429, Some(Duration::from_secs(2)), b""),
            ApiError::RateLimited {
                retry_after: Some(Duration::from_secs(2))
            }
        );
    }

    #[test]
    fn messages_never_carry_tokens() {
        let sneaky = br#"{"error":"invalid_grant","error_description":"bad token ya29.SECRETSECRET for 1//0gREFRESH"}"#;
        let msg = classify_token(400, None, sneaky).to_string();
        assert!(
            !msg.contains("SECRETSECRET") && !msg.contains("0gREFRESH"),
            "{msg}"
        );

        let html = b"<html>Authorization: Bearer ya29.LEAKED token</html>";
        let msg = classify(GmailMethod::Profile, 418, None, html).to_string();
        assert!(!msg.contains("LEAKED"), "{msg}");

        let token_json = br#"{"access_token":"ya29.x","expires_in":"#;
        let err = serde_json::from_slice::<serde_json::Value>(token_json).expect_err("cut");
        let msg = malformed_json("token", &err, token_json).to_string();
        assert!(!msg.contains("ya29"), "{msg}");
    }

    #[test]
    fn malformed_excerpt_is_short() {
        let body = format!("{{\"id\": \"{}", "x".repeat(10_000));
        let err = serde_json::from_str::<serde_json::Value>(&body).expect_err("cut");
        let msg = malformed_json("message", &err, body.as_bytes()).to_string();
        assert!(msg.len() < 250, "{} chars", msg.len());
        assert!(matches!(
            malformed_json("m", &err, body.as_bytes()),
            ApiError::Malformed(_)
        ));
    }
}
