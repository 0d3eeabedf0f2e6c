//! Response helpers shared by the control API routers ([`crate::control`],
//! [`crate::calendar::control`]): plain JSON errors, API errors, lenient JSON bodies.

// Axum responses are the error type of these helpers, as in the routers that use them.
#![allow(clippy::result_large_err)]

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub(crate) fn err(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({"error": msg.into()}))).into_response()
}

pub(crate) fn api_err(e: crate::error::ApiError) -> Response {
    (e.http_status(), Json(e.body())).into_response()
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    let body = if body.is_empty() {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| err(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")))
}
