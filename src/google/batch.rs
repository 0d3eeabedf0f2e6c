//! The pure `multipart/mixed` codec of Google's batch endpoint (reference gmail-api.md §2):
//! [`encode`] builds a request of up to [`MAX_PARTS`] embedded `GET`s, [`decode`] splits the
//! response into per-part HTTP responses (status line, headers, body), matched back by
//! `Content-ID` (`<response-…>`) or, when ids are missing, by position.
//!
//! No I/O here. Decoding tolerates CRLF and bare LF line ends, takes the boundary from the
//! response's `Content-Type`, and reports a body cut off before the closing delimiter as
//! `ApiError::Malformed`.

use super::error::excerpt;
use mailsync_actors::error::ApiError;

/// Google's limit on calls per batch.
pub const MAX_PARTS: usize = 100;
/// Google's recommended batch size (larger batches draw rate limits).
pub const RECOMMENDED_PARTS: usize = 50;

/// One embedded request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchPart {
    /// Our id for the part; the response echoes it as `response-<id>`.
    pub content_id: String,
    /// HTTP method (`GET`).
    pub method: String,
    /// Path and query only (`/gmail/v1/users/me/messages/abc?format=raw`); Google refuses
    /// full URLs inside a batch.
    pub path_and_query: String,
}

/// An encoded batch request body and its `Content-Type`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedBatch {
    /// `multipart/mixed; boundary=…`.
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
}

/// Why a batch could not be encoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchEncodeError {
    /// Zero parts, or more than [`MAX_PARTS`].
    #[error("a batch holds 1 to {MAX_PARTS} parts, not {0}")]
    PartCount(usize),
    /// A part's fields contain a line break or the boundary.
    #[error("batch part {0} contains a line break or the boundary")]
    UnsafePart(String),
    /// The boundary is empty, too long, or has characters RFC 2046 forbids.
    #[error("invalid multipart boundary")]
    Boundary,
}

/// One embedded response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponsePart {
    /// The part's `Content-ID` with `<`, `>` and the `response-` prefix removed.
    pub content_id: Option<String>,
    /// The embedded status code.
    pub status: u16,
    /// The embedded response's headers, names as sent.
    pub headers: Vec<(String, String)>,
    /// The embedded body.
    pub body: Vec<u8>,
}

impl ResponsePart {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn boundary_ok(boundary: &str) -> bool {
    (1..=70).contains(&boundary.len())
        && boundary.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'\''
                        | b'('
                        | b')'
                        | b'+'
                        | b'_'
                        | b','
                        | b'-'
                        | b'.'
                        | b'/'
                        | b':'
                        | b'='
                        | b'?'
                )
        })
}

/// Encodes `parts` with `boundary` (CRLF line ends, `Content-Type: application/http` and a
/// `Content-ID: <id>` per part).
pub fn encode(parts: &[BatchPart], boundary: &str) -> Result<EncodedBatch, BatchEncodeError> {
    if parts.is_empty() || parts.len() > MAX_PARTS {
        return Err(BatchEncodeError::PartCount(parts.len()));
    }
    if !boundary_ok(boundary) {
        return Err(BatchEncodeError::Boundary);
    }
    let mut body = String::new();
    for part in parts {
        let unsafe_field = |s: &str| s.contains(['\r', '\n']) || s.contains(boundary);
        if unsafe_field(&part.content_id)
            || unsafe_field(&part.method)
            || unsafe_field(&part.path_and_query)
            || part.path_and_query.contains(' ')
            || part.content_id.contains(['<', '>'])
        {
            return Err(BatchEncodeError::UnsafePart(part.content_id.clone()));
        }
        body.push_str("--");
        body.push_str(boundary);
        body.push_str("\r\nContent-Type: application/http\r\nContent-ID: <");
        body.push_str(&part.content_id);
        body.push_str(">\r\n\r\n");
        body.push_str(&part.method);
        body.push(' ');
        body.push_str(&part.path_and_query);
        body.push_str("\r\n\r\n");
    }
    body.push_str("--");
    body.push_str(boundary);
    body.push_str("--\r\n");
    Ok(EncodedBatch {
        content_type: format!("multipart/mixed; boundary={boundary}"),
        body: body.into_bytes(),
    })
}

/// The `boundary` parameter of a `multipart/*` Content-Type (quoted or not).
pub fn boundary_from_content_type(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let media = params.next()?.trim();
    if !media.to_ascii_lowercase().starts_with("multipart/") {
        return None;
    }
    params.find_map(|p| {
        let (name, value) = p.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        (!value.is_empty()).then(|| value.to_owned())
    })
}

/// Splits `data` into lines, each with the byte range of its content (without CR/LF) and the
/// offset where the next line starts.
fn lines(data: &[u8]) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < data.len() {
        let (end, next) = match memchr::memchr(b'\n', &data[start..]) {
            Some(i) => (start + i, start + i + 1),
            None => (data.len(), data.len()),
        };
        let content_end = if end > start && data[end - 1] == b'\r' {
            end - 1
        } else {
            end
        };
        out.push((start, content_end, next));
        start = next;
    }
    out
}

fn malformed(what: &str) -> ApiError {
    ApiError::Malformed(format!("batch response: {what}"))
}

/// Decodes a batch response given its `Content-Type` header and body.
pub fn decode(content_type: &str, body: &[u8]) -> Result<Vec<ResponsePart>, ApiError> {
    let boundary = boundary_from_content_type(content_type).ok_or_else(|| {
        malformed(&format!(
            "Content-Type {} has no multipart boundary",
            excerpt(content_type.as_bytes())
        ))
    })?;
    let delimiter = format!("--{boundary}");
    let closing = format!("--{boundary}--");
    let mut parts = Vec::new();
    let mut current: Option<usize> = None; // start offset of the current part's content
    let mut closed = false;
    for (start, end, next) in lines(body) {
        let line = trim_trailing_ws(&body[start..end]);
        let is_close = line == closing.as_bytes();
        let is_delim = line == delimiter.as_bytes();
        if !(is_close || is_delim) {
            continue;
        }
        if let Some(part_start) = current.take() {
            // The line break before a delimiter belongs to the delimiter.
            let mut part_end = start;
            if part_end > part_start && body[part_end - 1] == b'\n' {
                part_end -= 1;
                if part_end > part_start && body[part_end - 1] == b'\r' {
                    part_end -= 1;
                }
            }
            parts.push(parse_part(&body[part_start..part_end.max(part_start)])?);
        }
        if is_close {
            closed = true;
            break;
        }
        current = Some(next);
    }
    if !closed {
        return Err(malformed(if parts.is_empty() && current.is_none() {
            "no multipart delimiter found"
        } else {
            "truncated before the closing delimiter"
        }));
    }
    Ok(parts)
}

fn trim_trailing_ws(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && (line[end - 1] == b' ' || line[end - 1] == b'\t') {
        end -= 1;
    }
    &line[..end]
}

/// Reads header lines from `data` starting at `offset` until a blank line; returns the headers
/// and the offset just past the blank line (or the end of `data` if there is none).
fn read_headers(
    data: &[u8],
    lines: &[(usize, usize, usize)],
) -> (Vec<(String, String)>, usize, usize) {
    let mut headers: Vec<(String, String)> = Vec::new();
    for (i, (start, end, next)) in lines.iter().enumerate() {
        let line = &data[*start..*end];
        if line.is_empty() {
            return (headers, *next, i + 1);
        }
        let text = String::from_utf8_lossy(line);
        if (text.starts_with(' ') || text.starts_with('\t'))
            && let Some(last) = headers.last_mut()
        {
            last.1.push(' ');
            last.1.push_str(text.trim());
            continue;
        }
        if let Some((name, value)) = text.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    (headers, data.len(), lines.len())
}

fn parse_part(data: &[u8]) -> Result<ResponsePart, ApiError> {
    let all = lines(data);
    // Part headers (Content-Type: application/http, Content-ID).
    let (part_headers, _, consumed) = read_headers(data, &all);
    let content_id = part_headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-id"))
        .map(|(_, v)| {
            let v = v
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .trim();
            v.strip_prefix("response-").unwrap_or(v).to_owned()
        });
    // Skip blank lines before the embedded status line.
    let rest = &all[consumed..];
    let skip = rest.iter().take_while(|(s, e, _)| s == e).count();
    let rest = &rest[skip..];
    let Some(&(s, e, _)) = rest.first() else {
        return Err(malformed(&format!(
            "part {} has no embedded HTTP response",
            content_id.as_deref().unwrap_or("?")
        )));
    };
    let status_line = String::from_utf8_lossy(&data[s..e]).into_owned();
    let status = parse_status_line(&status_line).ok_or_else(|| {
        malformed(&format!(
            "part {} has a bad status line {}",
            content_id.as_deref().unwrap_or("?"),
            excerpt(status_line.as_bytes())
        ))
    })?;
    let (headers, body_start, _) = read_headers(data, &rest[1..]);
    Ok(ResponsePart {
        content_id,
        status,
        headers,
        body: data[body_start.min(data.len())..].to_vec(),
    })
}

/// `HTTP/1.1 200 OK` → 200.
fn parse_status_line(line: &str) -> Option<u16> {
    let mut words = line.split_whitespace();
    let version = words.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    let code = words.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok().filter(|c| (100..600).contains(c))
}

/// Orders `parts` to match `request_ids`: by `Content-ID` where the response carries them,
/// else by position. Returns one `Option<ResponsePart>` per request id (None: not answered).
pub fn match_parts(request_ids: &[String], parts: Vec<ResponsePart>) -> Vec<Option<ResponsePart>> {
    let mut out: Vec<Option<ResponsePart>> = vec![None; request_ids.len()];
    let mut unmatched = Vec::new();
    for part in parts {
        let slot = part
            .content_id
            .as_deref()
            .and_then(|cid| request_ids.iter().position(|r| r == cid));
        match slot {
            Some(i) if out[i].is_none() => out[i] = Some(part),
            _ => unmatched.push(part),
        }
    }
    // Parts without a usable id fill the remaining slots in order.
    let mut free = out
        .iter()
        .enumerate()
        .filter(|(_, p)| p.is_none())
        .map(|(i, _)| i)
        .collect::<Vec<_>>()
        .into_iter();
    for part in unmatched {
        if part.content_id.is_some()
            && request_ids
                .iter()
                .any(|r| Some(r.as_str()) == part.content_id.as_deref())
        {
            continue; // a duplicate answer for an id already matched
        }
        match free.next() {
            Some(i) => out[i] = Some(part),
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/gmail/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
    }

    fn get(id: &str, path: &str) -> BatchPart {
        BatchPart {
            content_id: id.into(),
            method: "GET".into(),
            path_and_query: path.into(),
        }
    }

    #[test]
    fn encodes_the_reference_shape() {
        let batch = encode(
            &[
                get(
                    "m1",
                    "/gmail/v1/users/me/messages/18c2f0a1b2c3d4e5?format=raw",
                ),
                get(
                    "m2",
                    "/gmail/v1/users/me/messages/18c2ef7700cc22dd?format=raw",
                ),
            ],
            "sync_7f3a",
        )
        .expect("encode");
        assert_eq!(batch.content_type, "multipart/mixed; boundary=sync_7f3a");
        let text = String::from_utf8(batch.body).expect("utf8");
        assert_eq!(
            text,
            "--sync_7f3a\r\nContent-Type: application/http\r\nContent-ID: <m1>\r\n\r\n\
             GET /gmail/v1/users/me/messages/18c2f0a1b2c3d4e5?format=raw\r\n\r\n\
             --sync_7f3a\r\nContent-Type: application/http\r\nContent-ID: <m2>\r\n\r\n\
             GET /gmail/v1/users/me/messages/18c2ef7700cc22dd?format=raw\r\n\r\n\
             --sync_7f3a--\r\n"
        );
    }

    #[test]
    fn encode_limits() {
        assert_eq!(encode(&[], "b"), Err(BatchEncodeError::PartCount(0)));
        let many: Vec<BatchPart> = (0..=MAX_PARTS).map(|i| get(&i.to_string(), "/x")).collect();
        assert_eq!(
            encode(&many, "b"),
            Err(BatchEncodeError::PartCount(MAX_PARTS + 1))
        );
        assert!(encode(&many[..MAX_PARTS], "b").is_ok());
        assert!(matches!(
            encode(&[get("a", "/x\r\nHost: evil")], "b"),
            Err(BatchEncodeError::UnsafePart(_))
        ));
        assert_eq!(
            encode(&[get("a", "/x")], "bad boundary"),
            Err(BatchEncodeError::Boundary)
        );
    }

    #[test]
    fn unknown_content_ids_fall_back_to_position() {
        // Ids that match no request id (here: m1/m2 against p0/p1) fall back to position.
        let ids: Vec<String> = vec!["p0".into(), "p1".into()];
        let body = fixture("batch_ok_crlf.txt");
        let parts = decode("multipart/mixed; boundary=batch_Qx81", &body).expect("decode");
        let matched = match_parts(&ids, parts);
        assert!(matched.iter().all(Option::is_some));
    }

    #[test]
    fn decodes_a_429_part_inside_a_200_batch() {
        let body = fixture("batch_429_part.txt");
        let parts = decode("multipart/mixed; boundary=batch_Qx81", &body).expect("decode");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].content_id.as_deref(), Some("m1"));
        assert_eq!(parts[0].status, 200);
        assert_eq!(
            parts[0].header("content-type"),
            Some("application/json; charset=UTF-8")
        );
        let first: serde_json::Value = serde_json::from_slice(&parts[0].body).expect("json");
        assert_eq!(first["id"], "18c2f0a1b2c3d4e5");
        assert_eq!(parts[1].content_id.as_deref(), Some("m2"));
        assert_eq!(parts[1].status, 429);
        let second: serde_json::Value = serde_json::from_slice(&parts[1].body).expect("json");
        assert_eq!(second["error"]["code"], 429);
    }

    #[test]
    fn tolerates_lf_and_quoted_boundaries() {
        let crlf = fixture("batch_ok_crlf.txt");
        let lf = fixture("batch_ok_lf.txt");
        assert!(!lf.contains(&b'\r'));
        let a = decode("multipart/mixed; boundary=batch_Qx81", &crlf).expect("crlf");
        let b = decode("multipart/mixed; boundary=\"batch_Qx81\"", &lf).expect("lf");
        assert_eq!(a.len(), 2);
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.content_id, y.content_id);
            assert_eq!(x.status, y.status);
            let xv: serde_json::Value = serde_json::from_slice(&x.body).expect("json");
            let yv: serde_json::Value = serde_json::from_slice(&y.body).expect("json");
            assert_eq!(xv, yv);
        }
        assert_eq!(a[1].status, 404);
    }

    #[test]
    fn truncated_body_is_malformed() {
        let body = fixture("batch_truncated.txt");
        match decode("multipart/mixed; boundary=batch_Qx81", &body) {
            Err(ApiError::Malformed(msg)) => assert!(msg.contains("truncated"), "{msg}"),
            other => panic!("expected Malformed, got {other:?}"),
        }
        assert!(matches!(
            decode("application/json", b"{}"),
            Err(ApiError::Malformed(_))
        ));
        assert!(matches!(
            decode("multipart/mixed; boundary=zz", b"not multipart at all"),
            Err(ApiError::Malformed(_))
        ));
    }

    #[test]
    fn bad_status_line_is_malformed() {
        let body =
            b"--b\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 OK\r\n\r\n{}\r\n--b--\r\n";
        assert!(matches!(
            decode("multipart/mixed; boundary=b", body),
            Err(ApiError::Malformed(_))
        ));
    }

    #[test]
    fn matches_by_content_id_then_by_position() {
        let part = |cid: Option<&str>, status: u16| ResponsePart {
            content_id: cid.map(str::to_owned),
            status,
            headers: vec![],
            body: vec![],
        };
        let ids: Vec<String> = vec!["a".into(), "b".into(), "c".into()];
        // Out of order with ids: matched by id.
        let m = match_parts(
            &ids,
            vec![
                part(Some("c"), 404),
                part(Some("a"), 200),
                part(Some("b"), 429),
            ],
        );
        let statuses: Vec<u16> = m
            .iter()
            .map(|p| p.as_ref().map_or(0, |p| p.status))
            .collect();
        assert_eq!(statuses, vec![200, 429, 404]);
        // No ids: by position; a missing answer stays None.
        let m = match_parts(&ids, vec![part(None, 200), part(None, 500)]);
        let statuses: Vec<u16> = m
            .iter()
            .map(|p| p.as_ref().map_or(0, |p| p.status))
            .collect();
        assert_eq!(statuses, vec![200, 500, 0]);
    }

    #[test]
    fn boundary_parsing() {
        assert_eq!(
            boundary_from_content_type("multipart/mixed; boundary=batch_abc"),
            Some("batch_abc".into())
        );
        assert_eq!(
            boundary_from_content_type("Multipart/Mixed;charset=x; Boundary=\"a b\""),
            Some("a b".into())
        );
        assert_eq!(boundary_from_content_type("text/plain; boundary=x"), None);
        assert_eq!(boundary_from_content_type("multipart/mixed"), None);
    }
}
