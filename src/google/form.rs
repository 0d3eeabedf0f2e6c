//! Percent-encoding helpers the Google adapters need without pulling in reqwest's optional
//! `form`/`query` features: `application/x-www-form-urlencoded` bodies and URL path segments.

/// Encodes `pairs` as an `application/x-www-form-urlencoded` body.
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_into(&mut out, k, true);
        out.push('=');
        encode_into(&mut out, v, true);
    }
    out
}

/// Encodes one URL path segment (keeps RFC 3986 unreserved characters and `@`).
pub fn path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    encode_into(&mut out, segment, false);
    out
}

fn encode_into(out: &mut String, s: &str, form: bool) {
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(b));
            }
            b'@' if !form => out.push('@'),
            b' ' if form => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_and_path_encoding() {
        assert_eq!(
            form_encode(&[("refresh_token", "1//0g x"), ("a", "b&c=d")]),
            "refresh_token=1%2F%2F0g+x&a=b%26c%3Dd"
        );
        assert_eq!(path_segment("alice@example.com"), "alice@example.com");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
    }
}
