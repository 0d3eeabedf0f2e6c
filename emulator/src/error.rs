//! Error types: [`EmulatorError`] for the embedding API (start-up, I/O) and [`ApiError`], a
//! Google-shaped JSON error (`{"error":{"code","message","errors":[…],"status"}}`) that every
//! emulated endpoint returns for rejected requests.

use axum::http::StatusCode;
use serde_json::{Value, json};

/// Errors of the embedding API.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("emulator I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid emulator configuration: {0}")]
    Config(String),
    #[error("signing key error: {0}")]
    Key(String),
    #[error("unknown account {0}")]
    UnknownAccount(String),
}

/// A Google API error response (boxed: it travels through many `Result`s).
#[derive(Debug, Clone)]
pub struct ApiError(Box<ApiErrorData>);

impl std::ops::Deref for ApiError {
    type Target = ApiErrorData;
    fn deref(&self) -> &ApiErrorData {
        &self.0
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut ApiErrorData {
        &mut self.0
    }
}

/// The fields of an [`ApiError`].
#[derive(Debug, Clone)]
pub struct ApiErrorData {
    pub code: u16,
    pub message: String,
    pub reason: &'static str,
    pub domain: &'static str,
    pub location: Option<(String, &'static str)>,
    /// `error.status`; Calendar's documented 410 body has none.
    pub status: Option<&'static str>,
    pub retry_after_secs: Option<u64>,
    pub www_authenticate: Option<&'static str>,
    pub details: Option<Value>,
}

/// Canonical `google.rpc.Code` name for an HTTP status.
pub fn status_name(code: u16) -> &'static str {
    match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ALREADY_EXISTS",
        412 => "FAILED_PRECONDITION",
        429 => "RESOURCE_EXHAUSTED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}

impl ApiError {
    pub fn new(
        code: u16,
        reason: &'static str,
        domain: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self(Box::new(ApiErrorData {
            code,
            message: message.into(),
            reason,
            domain,
            location: None,
            status: Some(status_name(code)),
            retry_after_secs: None,
            www_authenticate: None,
            details: None,
        }))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "badRequest", "global", message)
    }

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(400, "invalidArgument", "global", message)
    }

    pub fn invalid_param(param: &str, message: impl Into<String>) -> Self {
        let mut e = Self::new(400, "invalid", "global", message);
        e.location = Some((param.to_string(), "parameter"));
        e
    }

    pub fn not_found() -> Self {
        Self::new(404, "notFound", "global", "Requested entity was not found.")
    }

    pub fn forbidden(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(403, reason, "global", message)
    }

    pub fn insufficient_scope() -> Self {
        let mut e = Self::new(
            403,
            "insufficientPermissions",
            "global",
            "Request had insufficient authentication scopes.",
        );
        e.details = Some(json!([{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
            "domain": "googleapis.com",
        }]));
        e
    }

    pub fn unauthenticated_missing() -> Self {
        let mut e = Self::new(
            401,
            "required",
            "global",
            "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
        );
        e.location = Some(("Authorization".into(), "header"));
        e.www_authenticate = Some("Bearer realm=\"https://accounts.google.com/\"");
        e
    }

    pub fn unauthenticated_invalid() -> Self {
        let mut e = Self::new(
            401,
            "authError",
            "global",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
        );
        e.location = Some(("Authorization".into(), "header"));
        e.www_authenticate =
            Some("Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"");
        e
    }

    pub fn backend_error() -> Self {
        Self::new(500, "backendError", "global", "Backend Error")
    }

    pub fn unavailable() -> Self {
        Self::new(
            503,
            "backendError",
            "global",
            "The service is currently unavailable.",
        )
    }

    /// The short message placed in `errors[].message` (Google sometimes differs from the top one).
    fn item_message(&self) -> &str {
        match self.reason {
            "authError" => "Invalid Credentials",
            "required" => "Login Required.",
            "insufficientPermissions" => "Insufficient Permission",
            _ => &self.message,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut item = json!({
            "message": self.item_message(),
            "domain": self.domain,
            "reason": self.reason,
        });
        if let Some((loc, ty)) = &self.location {
            item["location"] = json!(loc);
            item["locationType"] = json!(ty);
        }
        let mut err = json!({
            "code": self.code,
            "message": self.message,
            "errors": [item],
        });
        if let Some(s) = self.status {
            err["status"] = json!(s);
        }
        if let Some(d) = &self.details {
            err["details"] = d.clone();
        }
        json!({ "error": err })
    }

    pub fn http_status(&self) -> StatusCode {
        StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}
