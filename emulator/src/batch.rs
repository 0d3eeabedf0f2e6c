//! The batch endpoint (`/batch/gmail/v1`, `/batch`, `/batch/calendar/v3`): a multipart/mixed
//! parser for `application/http` parts, the response writer (`Content-ID: <response-…>`, one
//! part per request in request order) and the executor. Every part goes through the same
//! pipeline as a direct call — auth, concurrency, faults, quota charge — and fails on its own.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use bytes::Bytes;
use thiserror::Error;

use crate::error::ApiError;
use crate::http::{ApiRequest, ApiResponse, TransportFault};
use crate::pipeline;
use crate::state::EmulatorState;
use crate::util::lock;

/// Google's limit on calls per batch.
pub const MAX_PARTS: usize = 100;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("batch requests must be multipart/mixed with a boundary")]
    NotMultipart,
    #[error("multipart body has no parts")]
    Empty,
    #[error("too many requests in a batch: {0} > {MAX_PARTS}")]
    TooMany(usize),
}

/// One part of a multipart body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Extracts the boundary of a `multipart/mixed` content type.
pub fn boundary(content_type: &str) -> Option<String> {
    let (ty, params) = crate::mime::parse_content_type(content_type);
    if ty != "multipart/mixed" {
        return None;
    }
    params
        .into_iter()
        .find(|(k, _)| k == "boundary")
        .map(|(_, v)| v)
        .filter(|b| !b.is_empty())
}

/// Splits a multipart body into parts (headers + body each).
pub fn parse_multipart(body: &[u8], boundary: &str) -> Result<Vec<Part>, BatchError> {
    let delim = format!("--{boundary}");
    let d = delim.as_bytes();
    let mut starts = Vec::new();
    let mut i = 0;
    while i + d.len() <= body.len() {
        if &body[i..i + d.len()] == d && (i == 0 || body[i - 1] == b'\n') {
            starts.push(i);
            i += d.len();
        } else {
            i += 1;
        }
    }
    let mut parts = Vec::new();
    for (k, &s) in starts.iter().enumerate() {
        let after = s + d.len();
        if body[after..].starts_with(b"--") {
            break;
        }
        let mut from = after;
        while from < body.len() && body[from] != b'\n' {
            from += 1;
        }
        from = (from + 1).min(body.len());
        let mut end = starts.get(k + 1).copied().unwrap_or(body.len());
        if end >= 2 && end > from && &body[end - 2..end] == b"\r\n" {
            end -= 2;
        } else if end >= 1 && end > from && body[end - 1] == b'\n' {
            end -= 1;
        }
        let chunk = &body[from..end.max(from)];
        let (head, b) = crate::mime::split_head_body(chunk);
        parts.push(Part {
            headers: crate::mime::parse_headers(head),
            body: b.to_vec(),
        });
    }
    if parts.is_empty() {
        return Err(BatchError::Empty);
    }
    if parts.len() > MAX_PARTS {
        return Err(BatchError::TooMany(parts.len()));
    }
    Ok(parts)
}

/// An embedded HTTP request parsed from a part body.
#[derive(Debug, Clone)]
pub struct InnerRequest {
    pub method: Method,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Parses `METHOD /path?query HTTP/1.1` + headers + body. Full URLs are refused, as Google does.
pub fn parse_inner(data: &[u8]) -> Result<InnerRequest, String> {
    let text_end = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let line = String::from_utf8_lossy(&data[..text_end])
        .trim()
        .to_string();
    let rest = if text_end < data.len() {
        &data[text_end + 1..]
    } else {
        &[][..]
    };
    let mut it = line.split_whitespace();
    let method = it.next().ok_or("empty request line")?;
    let target = it.next().ok_or("missing request target")?;
    if let Some(v) = it.next()
        && !v.starts_with("HTTP/")
    {
        return Err(format!("bad request line: {line}"));
    }
    if !target.starts_with('/') {
        return Err("Full URLs are not allowed in batch parts; use a path".into());
    }
    let method =
        Method::from_bytes(method.as_bytes()).map_err(|_| format!("bad method {method}"))?;
    let (head, body) = if rest.starts_with(b"\r\n") || rest.starts_with(b"\n") || rest.is_empty() {
        (
            &[][..],
            if rest.starts_with(b"\r\n") {
                &rest[2..]
            } else if rest.is_empty() {
                rest
            } else {
                &rest[1..]
            },
        )
    } else {
        crate::mime::split_head_body(rest)
    };
    Ok(InnerRequest {
        method,
        target: target.to_string(),
        headers: crate::mime::parse_headers(head),
        body: body.to_vec(),
    })
}

fn reason_phrase(code: u16) -> &'static str {
    axum::http::StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown")
}

/// Writes the multipart/mixed batch response body.
pub fn write_response(boundary: &str, parts: &[(Option<String>, ApiResponse)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (cid, r) in parts {
        out.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: application/http\r\n").as_bytes(),
        );
        if let Some(c) = cid {
            out.extend_from_slice(format!("Content-ID: <response-{c}>\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(
            format!("HTTP/1.1 {} {}\r\n", r.status, reason_phrase(r.status)).as_bytes(),
        );
        for (k, v) in &r.headers {
            out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", r.body.len()).as_bytes());
        out.extend_from_slice(&r.body);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

/// Executes a batch; `api_prefix` is the path prefix inner requests must use.
pub async fn execute(
    st: &Arc<EmulatorState>,
    api_prefix: &str,
    outer_headers: &HeaderMap,
    outer_query: &[(String, String)],
    body: &[u8],
) -> ApiResponse {
    let ct = outer_headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(b) = boundary(ct) else {
        return ApiResponse::error(&ApiError::bad_request(BatchError::NotMultipart.to_string()));
    };
    let parts = match parse_multipart(body, &b) {
        Ok(p) => p,
        Err(e) => return ApiResponse::error(&ApiError::bad_request(e.to_string())),
    };
    st.with_counters(|c| c.batch_requests += 1);
    // Phase 1: parse, authenticate and take in-flight slots for every part (parts of one batch
    // are in flight together, so a large batch can exceed the concurrency limit).
    let mut prepared = Vec::with_capacity(parts.len());
    for part in &parts {
        let cid = crate::mime::header(&part.headers, "Content-ID").map(|c| {
            c.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        });
        let ctype = crate::mime::header(&part.headers, "Content-Type").unwrap_or("");
        if !ctype.to_ascii_lowercase().starts_with("application/http") {
            prepared.push((
                cid,
                Err(ApiResponse::error(&ApiError::bad_request(
                    "Each batch part must have Content-Type: application/http",
                ))),
            ));
            continue;
        }
        let inner = match parse_inner(&part.body) {
            Ok(i) => i,
            Err(e) => {
                prepared.push((cid, Err(ApiResponse::error(&ApiError::bad_request(e)))));
                continue;
            }
        };
        let (path, q) = match inner.target.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q)),
            None => (inner.target.clone(), None),
        };
        if !api_prefix.is_empty() && !path.starts_with(api_prefix) {
            prepared.push((
                cid,
                Err(ApiResponse::error(&ApiError::bad_request(format!(
                    "Batch part targets {path}; all calls of this batch must be under {api_prefix}"
                )))),
            ));
            continue;
        }
        let mut query = outer_query.to_vec();
        query.extend(ApiRequest::parse_query(q));
        let mut headers = HeaderMap::new();
        for (k, v) in outer_headers {
            if !k.as_str().starts_with("content-") {
                headers.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in &inner.headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()),
                HeaderValue::from_str(v),
            ) {
                headers.insert(n, v);
            }
        }
        let req = ApiRequest {
            method: inner.method,
            path,
            query,
            headers,
            body: Bytes::from(inner.body),
        };
        prepared.push((cid, pipeline::prepare(st, req)));
    }
    // Phase 2: run each part.
    let mut results: Vec<(Option<String>, ApiResponse)> = Vec::with_capacity(prepared.len());
    let mut transport = None;
    for (cid, p) in prepared {
        let resp = match p {
            Ok(p) => pipeline::run(st, p).await,
            Err(r) => r,
        };
        if resp.fault.is_some() {
            transport = resp.fault;
        }
        results.push((cid, resp));
    }
    let boundary = {
        let c = lock(&st.counters).batch_requests;
        format!(
            "batch_{:016x}",
            crate::util::hash64(&[&c.to_le_bytes(), &st.config.seed.to_le_bytes()])
        )
    };
    let mut r = ApiResponse {
        status: 200,
        headers: vec![(
            "Content-Type".into(),
            format!("multipart/mixed; boundary={boundary}"),
        )],
        body: Bytes::from(write_response(&boundary, &results)),
        fault: None,
    };
    if let Some(TransportFault::Hang | TransportFault::Reset) = transport {
        r.fault = transport;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_parts_and_inner_requests() {
        let body = b"--sync_7f3a\r\nContent-Type: application/http\r\nContent-ID: <m1>\r\n\r\nGET /gmail/v1/users/me/messages/18c2f0a1b2c3d4e5?format=metadata&metadataHeaders=Subject\r\n\r\n--sync_7f3a\r\nContent-Type: application/http\r\nContent-ID: <m2>\r\n\r\nPOST /gmail/v1/users/me/messages/1/modify HTTP/1.1\r\nContent-Type: application/json\r\nAuthorization: Bearer x\r\n\r\n{\"addLabelIds\":[\"STARRED\"]}\r\n--sync_7f3a--\r\n";
        assert_eq!(
            boundary("multipart/mixed; boundary=sync_7f3a").as_deref(),
            Some("sync_7f3a")
        );
        assert_eq!(
            boundary("multipart/mixed; boundary=\"q q\"").as_deref(),
            Some("q q")
        );
        assert_eq!(boundary("application/json"), None);
        let parts = parse_multipart(body, "sync_7f3a").unwrap_or_default();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            crate::mime::header(&parts[0].headers, "content-id"),
            Some("<m1>")
        );
        let a = parse_inner(&parts[0].body).map_err(|e| e.to_string());
        let a = a
            .as_ref()
            .map(|a| (a.method.clone(), a.target.clone(), a.body.clone()));
        assert_eq!(a, Ok((Method::GET, "/gmail/v1/users/me/messages/18c2f0a1b2c3d4e5?format=metadata&metadataHeaders=Subject".to_string(), vec![])));
        let b = parse_inner(&parts[1].body).map_err(|e| e.to_string());
        let b = b
            .as_ref()
            .map(|b| (b.method.clone(), b.headers.len(), b.body.clone()));
        assert_eq!(
            b,
            Ok((Method::POST, 2, b"{\"addLabelIds\":[\"STARRED\"]}".to_vec()))
        );
        assert!(
            parse_inner(b"GET https://gmail.googleapis.com/gmail/v1/users/me/profile").is_err()
        );
    }

    #[test]
    fn limits_and_errors() {
        let mut body = Vec::new();
        for _ in 0..101 {
            body.extend_from_slice(b"--b\r\nContent-Type: application/http\r\n\r\nGET /x\r\n");
        }
        body.extend_from_slice(b"--b--");
        assert_eq!(parse_multipart(&body, "b"), Err(BatchError::TooMany(101)));
        assert_eq!(
            parse_multipart(b"nothing here", "b"),
            Err(BatchError::Empty)
        );
    }

    #[test]
    fn response_round_trips() {
        let mut ok = ApiResponse::json(&serde_json::json!({"a": 1}));
        ok.status = 200;
        let err = ApiResponse::error(&ApiError::not_found());
        let out = write_response("batch_x", &[(Some("m1".into()), ok), (None, err)]);
        let parts = parse_multipart(&out, "batch_x").unwrap_or_default();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            crate::mime::header(&parts[0].headers, "Content-ID"),
            Some("<response-m1>")
        );
        assert!(String::from_utf8_lossy(&parts[1].body).starts_with("HTTP/1.1 404 Not Found"));
    }
}
