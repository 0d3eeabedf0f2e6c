//! How IMAP failures are classified ([`ImapErrorClass`]) and worded: I/O and library errors,
//! the server's NO / BAD (throttling words → `throttle`), texts cut to 300 characters.

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
