//! How IMAP failures are classified ([`ImapErrorClass`]) and worded: I/O and library errors,
//! the server's NO / BAD (throttling words → `throttle`; its words freed from the library's
//! wrapping), texts cut to 300 characters.

use mailsync_actors::imap::port::{ImapError, ImapErrorClass};

/// Cuts a text to 300 characters.
pub fn cut(s: &str) -> String {
    let mut out: String = s.chars().take(300).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// An error of `class` with a cut message.
pub fn err(class: ImapErrorClass, msg: impl AsRef<str>) -> ImapError {
    ImapError::new(class, cut(msg.as_ref()))
}

/// An I/O failure: unparseable data is `parse`, the rest `network`.
pub fn io_error(e: &std::io::Error) -> ImapError {
    let text = e.to_string();
    if text.contains("during parsing") || text.contains("incoming data too large") {
        err(
            ImapErrorClass::Parse,
            format!("unparseable server response: {text}"),
        )
    } else {
        err(ImapErrorClass::Network, text)
    }
}

/// An async-imap error, classified.
pub fn lib_error(e: &async_imap::error::Error) -> ImapError {
    use async_imap::error::Error as E;
    match e {
        E::Io(io) => io_error(io),
        E::ConnectionLost => err(ImapErrorClass::Network, "connection lost"),
        E::Parse(p) => err(ImapErrorClass::Parse, p.to_string()),
        E::No(m) | E::Bad(m) => classify_refusal(m),
        other => err(ImapErrorClass::Server, other.to_string()),
    }
}

/// The server's own words in an async-imap NO / BAD text (`code: None, info: Some("…")`):
/// the information, after the response code when the library parsed one; other texts as
/// they are.
pub fn server_words(text: &str) -> String {
    let Some((code, info)) = text
        .strip_prefix("code: ")
        .and_then(|rest| rest.split_once(", info: "))
    else {
        return text.to_string();
    };
    let info = info
        .strip_prefix("Some(\"")
        .and_then(|i| i.strip_suffix("\")"))
        .map(|i| i.replace("\\\"", "\"").replace("\\\\", "\\"))
        .unwrap_or_default();
    match code.strip_prefix("Some(").and_then(|c| c.strip_suffix(')')) {
        Some(code) if info.is_empty() => format!("[{code}]"),
        Some(code) => format!("[{code}] {info}"),
        None if info.is_empty() => text.to_string(),
        None => info,
    }
}

/// A server refusal: throttling words make it `throttle`, else `server`.
pub fn classify_refusal(text: &str) -> ImapError {
    let upper = text.to_ascii_uppercase();
    if ["THROTTLED", "[LIMIT]", "UNAVAILABLE", "TOO MANY"]
        .iter()
        .any(|w| upper.contains(w))
    {
        err(ImapErrorClass::Throttle, text)
    } else {
        err(ImapErrorClass::Server, text)
    }
}

#[cfg(test)]
mod tests {
    use super::server_words;

    #[test]
    fn server_words_unwrap_the_library_text() {
        assert_eq!(
            server_words(
                r#"code: None, info: Some("[AUTHENTICATIONFAILED] Authentication failed.")"#
            ),
            "[AUTHENTICATIONFAILED] Authentication failed."
        );
        assert_eq!(
            server_words(r#"code: Some(Alert), info: Some("say \"hi\"")"#),
            r#"[Alert] say "hi""#
        );
        assert_eq!(server_words("code: Some(Alert), info: None"), "[Alert]");
        assert_eq!(server_words("plain words"), "plain words");
    }
}
