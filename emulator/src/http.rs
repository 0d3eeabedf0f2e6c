//! Requests and responses as plain values ([`ApiRequest`], [`ApiResponse`], transport faults)
//! and the resolved API method ([`Route`], [`Op`]). The pipeline that runs them (shared by
//! direct calls and batch parts) lives in [`crate::pipeline`].

use axum::http::{HeaderMap, Method};
use bytes::Bytes;
use serde::Serialize;

use crate::error::ApiError;
use crate::quota::Api;

/// An API request (top-level or a batch part).
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// What the transport should do besides sending the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportFault {
    /// Never answer (until shutdown).
    Hang,
    /// Send the status line, then drop the connection.
    Reset,
}

/// An API response.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub fault: Option<TransportFault>,
}

impl ApiResponse {
    pub fn json<T: Serialize>(v: &T) -> Self {
        let body = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
        Self {
            status: 200,
            headers: vec![(
                "Content-Type".into(),
                "application/json; charset=UTF-8".into(),
            )],
            body: Bytes::from(body),
            fault: None,
        }
    }

    pub fn empty(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
            fault: None,
        }
    }

    pub fn error(e: &ApiError) -> Self {
        let mut r = Self::json(&e.body());
        r.status = e.code;
        if let Some(s) = e.retry_after_secs {
            r.headers.push(("Retry-After".into(), s.to_string()));
        }
        if let Some(w) = e.www_authenticate {
            r.headers.push(("WWW-Authenticate".into(), w.to_string()));
        }
        r
    }
}

impl ApiRequest {
    pub fn param(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }

    pub fn params(&self, k: &str) -> Vec<String> {
        self.query
            .iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn bool_param(&self, k: &str) -> Result<Option<bool>, ApiError> {
        match self.param(k) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(ApiError::invalid_param(
                k,
                format!(
                    "Invalid value '{v}'. Values must match the following regular expression: '(true|false)'"
                ),
            )),
        }
    }

    pub fn u32_param(&self, k: &str) -> Result<Option<u32>, ApiError> {
        match self.param(k) {
            None => Ok(None),
            Some(v) => v.parse::<u32>().map(Some).map_err(|_| {
                ApiError::invalid_param(k, format!("Invalid value '{v}' for parameter {k}"))
            }),
        }
    }

    pub fn bearer(&self) -> Option<String> {
        if let Some(v) = self
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
        {
            let v = v.trim();
            if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
                return Some(v[7..].trim().to_string());
            }
            return Some(String::new());
        }
        self.param("access_token")
            .or_else(|| self.param("oauth_token"))
            .map(String::from)
    }

    /// Parses the JSON body into `T` (Google-shaped 400 on failure).
    pub fn json_body<T: serde::de::DeserializeOwned>(&self) -> Result<T, ApiError> {
        if self.body.is_empty() {
            return serde_json::from_slice(b"{}").map_err(|e| {
                ApiError::invalid_argument(format!("Invalid JSON payload received. {e}"))
            });
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| ApiError::invalid_argument(format!("Invalid JSON payload received. {e}")))
    }

    /// Splits a raw `?query` string, keeping repeats and order.
    pub fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
        q.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default()
    }
}

/// Percent-decoded path segments.
pub fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

/// A resolved API method.
#[derive(Debug, Clone)]
pub struct Route {
    pub api: Api,
    /// Google's method id, e.g. `gmail.users.messages.get`.
    pub name: &'static str,
    /// Method-specific query parameters accepted.
    pub params: &'static [&'static str],
    pub op: Op,
}

#[derive(Debug, Clone)]
pub enum Op {
    Gmail(crate::gmail_op::Op),
    Calendar(crate::calendar::op::Op),
}
