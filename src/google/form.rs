//! Percent-encoding of URL path segments for the Google adapters (`percent-encoding`; form
//! bodies of the token endpoint are built by the `oauth2` crate, query strings by `url`).

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Bytes encoded in a path segment: everything but RFC 3986 unreserved characters and `@`.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'@');

/// Encodes one URL path segment (keeps RFC 3986 unreserved characters and `@`).
pub fn path_segment(segment: &str) -> String {
    utf8_percent_encode(segment, PATH_SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_encoding() {
        assert_eq!(path_segment("alice@example.com"), "alice@example.com");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(path_segment("Família#1~"), "Fam%C3%ADlia%231~");
    }
}
