//! A small, tolerant MIME parser turning RFC 2822 bytes into Gmail's `MessagePart` tree
//! (`format=full`/`metadata`), plus snippets, RFC 2047 header decoding and attachment lookup.
//! Broken MIME never fails: whatever cannot be split is served as a leaf part.

use crate::util::{b64_decode_any, b64url, html_escape};
use crate::wire::{Header, MessagePart, PartBody};

/// A parsed entity.
#[derive(Debug, Clone)]
pub struct Entity {
    /// Unfolded header (name, raw value).
    pub headers: Vec<(String, String)>,
    pub mime_type: String,
    pub params: Vec<(String, String)>,
    pub filename: String,
    /// Decoded body (leaves only).
    pub body: Vec<u8>,
    pub children: Vec<Entity>,
    pub is_multipart: bool,
}

fn find_sub(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    (from..=hay.len() - needle.len()).find(|&i| &hay[i..i + needle.len()] == needle)
}

/// Splits header block and body at the first empty line.
pub fn split_head_body(raw: &[u8]) -> (&[u8], &[u8]) {
    if raw.starts_with(b"\r\n") {
        return (&[], &raw[2..]);
    }
    if raw.starts_with(b"\n") {
        return (&[], &raw[1..]);
    }
    if let Some(i) = find_sub(raw, b"\r\n\r\n", 0) {
        let j = find_sub(raw, b"\n\n", 0);
        if j.is_none_or(|j| j > i) {
            return (&raw[..i], &raw[i + 4..]);
        }
    }
    if let Some(i) = find_sub(raw, b"\n\n", 0) {
        return (&raw[..i], &raw[i + 2..]);
    }
    (raw, &[])
}

/// Parses a header block into unfolded (name, value) pairs.
pub fn parse_headers(head: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(head);
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim_start());
            }
            continue;
        }
        if let Some((n, v)) = line.split_once(':') {
            out.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Splits `type/subtype; a=b; c="d"` into the lowercased type and parameters.
pub fn parse_content_type(v: &str) -> (String, Vec<(String, String)>) {
    let mut parts = split_params(v);
    let first = if parts.is_empty() {
        String::new()
    } else {
        parts.remove(0)
    };
    let params = parts
        .into_iter()
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .unwrap_or(v);
            Some((k.trim().to_ascii_lowercase(), v.to_string()))
        })
        .collect();
    (first.trim().to_ascii_lowercase(), params)
}

fn split_params(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_q = false;
    for c in v.chars() {
        match c {
            '"' => {
                in_q = !in_q;
                cur.push(c);
            }
            ';' if !in_q => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Decodes quoted-printable (tolerant of bad escapes).
pub fn decode_qp(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'=' {
            if data.get(i + 1) == Some(&b'\r') && data.get(i + 2) == Some(&b'\n') {
                i += 3;
                continue;
            }
            if data.get(i + 1) == Some(&b'\n') {
                i += 2;
                continue;
            }
            if let (Some(a), Some(b)) = (
                data.get(i + 1).and_then(|b| hex(*b)),
                data.get(i + 2).and_then(|b| hex(*b)),
            ) {
                out.push(a * 16 + b);
                i += 3;
                continue;
            }
        }
        out.push(data[i]);
        i += 1;
    }
    out
}

fn decode_body(cte: &str, data: &[u8]) -> Vec<u8> {
    match cte.trim().to_ascii_lowercase().as_str() {
        "base64" => b64_decode_any(&String::from_utf8_lossy(data)).unwrap_or_else(|| data.to_vec()),
        "quoted-printable" => decode_qp(data),
        _ => data.to_vec(),
    }
}

/// Decodes RFC 2047 encoded words (UTF-8 and ISO-8859-1/US-ASCII; others are left as-is).
pub fn decode_rfc2047(v: &str) -> String {
    let mut out = String::new();
    let mut rest = v;
    let mut last_was_word = false;
    while let Some(start) = rest.find("=?") {
        let before = &rest[..start];
        let after = &rest[start + 2..];
        let decoded = (|| {
            let (charset, r) = after.split_once('?')?;
            let (enc, r) = r.split_once('?')?;
            let end = r.find("?=")?;
            let text = &r[..end];
            let bytes = match enc.to_ascii_uppercase().as_str() {
                "B" => b64_decode_any(text)?,
                "Q" => decode_qp(text.replace('_', " ").as_bytes()),
                _ => return None,
            };
            let s = match charset.to_ascii_lowercase().as_str() {
                "utf-8" | "us-ascii" => String::from_utf8_lossy(&bytes).into_owned(),
                "iso-8859-1" | "latin1" => bytes.iter().map(|b| *b as char).collect(),
                _ => return None,
            };
            Some((s, start + 2 + charset.len() + 1 + enc.len() + 1 + end + 2))
        })();
        match decoded {
            Some((s, consumed)) => {
                if !(last_was_word && before.trim().is_empty()) {
                    out.push_str(before);
                }
                out.push_str(&s);
                rest = &rest[consumed..];
                last_was_word = true;
            }
            None => {
                out.push_str(&rest[..start + 2]);
                rest = &rest[start + 2..];
                last_was_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Parses one entity (recursion bounded by `depth`).
pub fn parse_entity(raw: &[u8], depth: usize) -> Entity {
    let (head, body) = split_head_body(raw);
    let headers = parse_headers(head);
    let (mut mime_type, params) = header(&headers, "Content-Type")
        .map(parse_content_type)
        .unwrap_or_else(|| ("text/plain".into(), vec![]));
    if !mime_type.contains('/') {
        mime_type = "text/plain".into();
    }
    let filename = header(&headers, "Content-Disposition")
        .map(parse_content_type)
        .and_then(|(_, p)| param(&p, "filename").map(String::from))
        .or_else(|| param(&params, "name").map(String::from))
        .map(|f| decode_rfc2047(&f))
        .unwrap_or_default();
    let mut e = Entity {
        headers,
        mime_type,
        params,
        filename,
        body: Vec::new(),
        children: Vec::new(),
        is_multipart: false,
    };
    if e.mime_type.starts_with("multipart/")
        && depth < 16
        && let Some(boundary) = param(&e.params, "boundary").map(String::from)
    {
        let delim = format!("--{boundary}");
        let d = delim.as_bytes();
        let mut positions = Vec::new();
        let mut from = 0;
        while let Some(p) = find_sub(body, d, from) {
            if p == 0 || body[p - 1] == b'\n' {
                positions.push(p);
            }
            from = p + d.len();
        }
        if !positions.is_empty() {
            e.is_multipart = true;
            for (k, &p) in positions.iter().enumerate() {
                let after = p + d.len();
                if body[after..].starts_with(b"--") {
                    break;
                }
                let mut s = after;
                while s < body.len() && (body[s] == b' ' || body[s] == b'\t') {
                    s += 1;
                }
                if body[s..].starts_with(b"\r\n") {
                    s += 2;
                } else if body[s..].starts_with(b"\n") {
                    s += 1;
                }
                let mut end = positions.get(k + 1).copied().unwrap_or(body.len());
                if end < body.len() || positions.get(k + 1).is_some() {
                    if end >= 2 && &body[end - 2..end] == b"\r\n" {
                        end -= 2;
                    } else if end >= 1 && body[end - 1] == b'\n' {
                        end -= 1;
                    }
                }
                let end = end.max(s);
                e.children.push(parse_entity(&body[s..end], depth + 1));
            }
            return e;
        }
    }
    let cte = header(&e.headers, "Content-Transfer-Encoding")
        .unwrap_or("7bit")
        .to_string();
    e.body = decode_body(&cte, body);
    e
}

/// Gmail attachment id for a part (deterministic; Google's are opaque and may change).
pub fn attachment_id(msg_id: &str, part_id: &str) -> String {
    format!(
        "ANGjdJ_{}",
        b64url(format!("{msg_id}:{part_id}").as_bytes())
    )
}

/// Converts an entity to Gmail's `MessagePart`, optionally keeping only some top-level headers
/// and optionally without bodies (`format=metadata`).
pub fn to_part(
    e: &Entity,
    part_id: &str,
    msg_id: &str,
    with_bodies: bool,
    header_filter: Option<&[String]>,
) -> MessagePart {
    let headers = e
        .headers
        .iter()
        .filter(|(n, _)| header_filter.is_none_or(|f| f.iter().any(|x| x.eq_ignore_ascii_case(n))))
        .map(|(n, v)| Header {
            name: n.clone(),
            value: decode_rfc2047(v),
        })
        .collect();
    if !with_bodies {
        return MessagePart {
            part_id: part_id.to_string(),
            mime_type: e.mime_type.clone(),
            filename: String::new(),
            headers,
            body: PartBody {
                attachment_id: None,
                size: 0,
                data: None,
            },
            parts: None,
        };
    }
    let parts = if e.is_multipart {
        Some(
            e.children
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let id = if part_id.is_empty() {
                        i.to_string()
                    } else {
                        format!("{part_id}.{i}")
                    };
                    to_part(c, &id, msg_id, true, None)
                })
                .collect(),
        )
    } else {
        None
    };
    let body = if e.is_multipart {
        PartBody {
            attachment_id: None,
            size: 0,
            data: None,
        }
    } else if !e.filename.is_empty() {
        PartBody {
            attachment_id: Some(attachment_id(msg_id, part_id)),
            size: e.body.len() as u32,
            data: None,
        }
    } else {
        PartBody {
            attachment_id: None,
            size: e.body.len() as u32,
            data: if e.body.is_empty() {
                None
            } else {
                Some(b64url(&e.body))
            },
        }
    };
    MessagePart {
        part_id: part_id.to_string(),
        mime_type: e.mime_type.clone(),
        filename: e.filename.clone(),
        headers,
        body,
        parts,
    }
}

/// Finds the entity with the given Gmail part id.
pub fn find_part<'a>(e: &'a Entity, part_id: &str) -> Option<&'a Entity> {
    if part_id.is_empty() {
        return Some(e);
    }
    let mut cur = e;
    for seg in part_id.split('.') {
        let i: usize = seg.parse().ok()?;
        cur = cur.children.get(i)?;
    }
    Some(cur)
}

fn first_text<'a>(e: &'a Entity, kind: &str) -> Option<&'a Entity> {
    if !e.is_multipart {
        return (e.mime_type == kind && e.filename.is_empty()).then_some(e);
    }
    e.children.iter().find_map(|c| first_text(c, kind))
}

/// Whether any leaf part is an attachment (has a filename).
pub fn has_attachment(e: &Entity) -> bool {
    if e.is_multipart {
        e.children.iter().any(has_attachment)
    } else {
        !e.filename.is_empty()
    }
}

/// Gmail-like snippet: first ~200 characters of the text, whitespace collapsed, HTML-escaped.
pub fn snippet(e: &Entity) -> String {
    let text = if let Some(p) = first_text(e, "text/plain") {
        String::from_utf8_lossy(&p.body).into_owned()
    } else if let Some(p) = first_text(e, "text/html") {
        let html = String::from_utf8_lossy(&p.body);
        let mut out = String::new();
        let mut in_tag = false;
        for c in html.chars() {
            match c {
                '<' => in_tag = true,
                '>' => {
                    in_tag = false;
                    out.push(' ');
                }
                c if !in_tag => out.push(c),
                _ => {}
            }
        }
        out
    } else {
        String::new()
    };
    let collapsed: Vec<&str> = text.split_whitespace().collect();
    let joined = collapsed.join(" ");
    let cut: String = joined.chars().take(200).collect();
    html_escape(&cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW: &[u8] = b"From: =?UTF-8?B?Wm/Dqw==?= <zoe@example.de>\r\nSubject: =?UTF-8?Q?caf=C3=A9?=\r\n =?UTF-8?Q?_ol=C3=A9?=\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\npreamble\r\n--XX\r\nContent-Type: multipart/alternative; boundary=YY\r\n\r\n--YY\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nHello =C3=A9 & <you>\r\n--YY\r\nContent-Type: text/html\r\n\r\n<p>Hello</p>\r\n--YY--\r\n--XX\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--XX--\r\n";

    #[test]
    fn parses_nested_multipart() {
        let e = parse_entity(RAW, 0);
        assert!(e.is_multipart);
        assert_eq!(e.children.len(), 2);
        assert_eq!(e.children[0].mime_type, "multipart/alternative");
        assert_eq!(e.children[0].children[0].body, "Hello é & <you>".as_bytes());
        assert_eq!(e.children[0].children[1].body, b"<p>Hello</p>");
        assert_eq!(e.children[1].filename, "a.pdf");
        assert_eq!(e.children[1].body, b"%PDF-");
        let p = to_part(&e, "", "m1", true, None);
        let parts = p.parts.as_ref().map(Vec::len);
        assert_eq!(parts, Some(2));
        let v = serde_json::to_value(&p).unwrap_or_default();
        assert_eq!(v["parts"][0]["parts"][1]["partId"], "0.1");
        assert_eq!(v["parts"][1]["body"]["size"], 5);
        assert!(v["parts"][1]["body"]["attachmentId"].is_string());
        assert_eq!(v["headers"][1]["value"], "café olé");
        assert_eq!(v["headers"][0]["value"], "Zoë <zoe@example.de>");
        assert_eq!(snippet(&e), "Hello é &amp; &lt;you&gt;");
        assert_eq!(
            find_part(&e, "0.1").map(|p| p.mime_type.as_str()),
            Some("text/html")
        );
    }

    #[test]
    fn broken_mime_is_tolerated() {
        let unterminated = b"Content-Type: multipart/mixed; boundary=Q\r\n\r\n--Q\r\nContent-Type: text/plain\r\n\r\nhi there";
        let e = parse_entity(unterminated, 0);
        assert_eq!(e.children.len(), 1);
        assert_eq!(e.children[0].body, b"hi there");
        let no_boundary = b"Content-Type: multipart/mixed\r\n\r\nbody";
        let e = parse_entity(no_boundary, 0);
        assert!(!e.is_multipart);
        assert_eq!(e.body, b"body");
        let no_headers = b"just text";
        let e = parse_entity(no_headers, 0);
        assert_eq!(e.mime_type, "text/plain");
    }
}
