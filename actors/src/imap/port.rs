//! `ImapPort`: how the IMAP source reaches a server. `src/imap/` implements it over
//! async-imap (connection pool, TLS, authentication, timeouts, reconnect backoff, circuit
//! breaker); unit tests use a fake. The shapes are plain data: UIDs, flags, mod-sequences and
//! raw message bytes, never protocol responses.
//!
//! Errors come classified ([`ImapErrorClass`]) so the source and the drivers act by class:
//! auth → the account is `disconnected`, throttle → wait longer, network / timeout → retry
//! with backoff on a fresh connection, parse → the connection is dropped and the step retried,
//! server (NO/BAD) → the folder step fails on its own.

use crate::error::ApiError;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A boxed, sendable future of a port call.
pub type ImapFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ImapError>> + Send + 'a>>;

/// The class of an IMAP failure; each has its recovery policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ImapErrorClass {
    /// Connection refused, reset, closed, BYE, TLS failure: reconnect with backoff.
    Network,
    /// LOGIN / AUTHENTICATE refused: stop and mark the account disconnected.
    Auth,
    /// `[THROTTLED]`, `[LIMIT]`, BYE under load: wait longer before the next try.
    Throttle,
    /// The server sent something we cannot parse: drop the connection, retry.
    Parse,
    /// Connect, authentication or an operation took too long (a stalled server).
    Timeout,
    /// A tagged NO or BAD for an operation: that step fails, the others go on.
    Server,
}

impl ImapErrorClass {
    /// Every class, for status counters.
    pub const ALL: [ImapErrorClass; 6] = [
        ImapErrorClass::Network,
        ImapErrorClass::Auth,
        ImapErrorClass::Throttle,
        ImapErrorClass::Parse,
        ImapErrorClass::Timeout,
        ImapErrorClass::Server,
    ];

    /// The status / log name.
    pub fn as_str(self) -> &'static str {
        match self {
            ImapErrorClass::Network => "network",
            ImapErrorClass::Auth => "auth",
            ImapErrorClass::Throttle => "throttle",
            ImapErrorClass::Parse => "parse",
            ImapErrorClass::Timeout => "timeout",
            ImapErrorClass::Server => "server",
        }
    }
}

/// A classified IMAP failure. The message never contains a credential.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("imap {} error: {message}", class.as_str())]
pub struct ImapError {
    /// The class.
    pub class: ImapErrorClass,
    /// What happened (the server's words for auth and server errors).
    pub message: String,
}

impl ImapError {
    /// An error of `class`.
    pub fn new(class: ImapErrorClass, message: impl Into<String>) -> ImapError {
        ImapError {
            class,
            message: message.into(),
        }
    }
}

impl From<ImapError> for ApiError {
    fn from(e: ImapError) -> ApiError {
        match e.class {
            ImapErrorClass::Auth => {
                ApiError::Disconnected(format!("IMAP authentication failed: {}", e.message))
            }
            ImapErrorClass::Throttle => ApiError::RateLimited {
                retry_after: Some(Duration::from_secs(30)),
            },
            ImapErrorClass::Parse => ApiError::Malformed(e.to_string()),
            ImapErrorClass::Network | ImapErrorClass::Timeout | ImapErrorClass::Server => {
                ApiError::Transient(e.to_string())
            }
        }
    }
}

/// What the server offers after authentication (only what the sync branches on).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// CONDSTORE (RFC 7162).
    pub condstore: bool,
    /// QRESYNC (RFC 7162), enabled on the connection when offered.
    pub qresync: bool,
    /// IDLE (RFC 2177).
    pub idle: bool,
}

/// One LIST entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderInfo {
    /// The mailbox name as the server spells it.
    pub name: String,
    /// Attributes (`\Sent`, `\Noselect`, `\HasChildren` …), as sent.
    pub attributes: Vec<String>,
}

impl FolderInfo {
    /// Whether it can be selected.
    pub fn selectable(&self) -> bool {
        !self.attributes.iter().any(|a| {
            a.eq_ignore_ascii_case("\\Noselect") || a.eq_ignore_ascii_case("\\NonExistent")
        })
    }

    /// The special-use attribute, if any (`\Sent`, `\Flagged`, `\Important`, …).
    pub fn special_use(&self) -> Option<&str> {
        const USES: [&str; 9] = [
            "\\All",
            "\\Archive",
            "\\Drafts",
            "\\Flagged",
            "\\Important",
            "\\Junk",
            "\\Sent",
            "\\Trash",
            "\\Inbox",
        ];
        self.attributes
            .iter()
            .find(|a| USES.iter().any(|u| a.eq_ignore_ascii_case(u)))
            .map(String::as_str)
    }
}

/// What the QRESYNC parameter of SELECT says we know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QresyncParams {
    /// The stored UIDVALIDITY.
    pub uidvalidity: u32,
    /// The stored HIGHESTMODSEQ.
    pub modseq: u64,
}

/// One message's metadata from FETCH.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageMeta {
    /// UID.
    pub uid: u32,
    /// Flags and keywords as sent (`\Seen`, `$Forwarded` …).
    pub flags: Vec<String>,
    /// MODSEQ, with CONDSTORE.
    pub modseq: Option<u64>,
    /// RFC822.SIZE, when asked for.
    pub size: Option<u32>,
}

/// The answer to SELECT (with QRESYNC: what changed since the given mod-sequence).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selected {
    /// UIDVALIDITY.
    pub uidvalidity: u32,
    /// UIDNEXT (0 when the server did not say).
    pub uidnext: u32,
    /// EXISTS.
    pub exists: u32,
    /// HIGHESTMODSEQ (`None` = NOMODSEQ or no CONDSTORE).
    pub highest_modseq: Option<u64>,
    /// QRESYNC: UIDs expunged since the given mod-sequence (`VANISHED (EARLIER)`), as ranges.
    pub vanished: Vec<(u32, u32)>,
    /// QRESYNC: messages changed since the given mod-sequence.
    pub changed: Vec<MessageMeta>,
}

/// The answer to `STATUS folder (MESSAGES UIDNEXT UIDVALIDITY [HIGHESTMODSEQ])`: the cheap
/// "did anything change?" probe of a folder that is not selected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailboxStatus {
    /// MESSAGES.
    pub messages: u32,
    /// UIDNEXT (0 when the server did not say).
    pub uidnext: u32,
    /// UIDVALIDITY (0 when the server did not say).
    pub uidvalidity: u32,
    /// HIGHESTMODSEQ (`None` without CONDSTORE).
    pub highest_modseq: Option<u64>,
}

/// One fetched message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedBody {
    /// UID.
    pub uid: u32,
    /// Flags.
    pub flags: Vec<String>,
    /// MODSEQ, with CONDSTORE.
    pub modseq: Option<u64>,
    /// INTERNALDATE, ms since the epoch (0 when absent).
    pub internal_date_ms: i64,
    /// A few decoded headers, filled by the adapter (empty when they do not parse).
    pub headers: crate::model::HeaderSummary,
    /// The whole message (`BODY.PEEK[]`).
    pub raw: Vec<u8>,
}

/// One message's header section and size (for rematching after a UIDVALIDITY change).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedHeader {
    /// UID.
    pub uid: u32,
    /// Flags.
    pub flags: Vec<String>,
    /// RFC822.SIZE.
    pub size: u32,
    /// `BODY.PEEK[HEADER]`.
    pub header: Vec<u8>,
}

/// What an IDLE ended with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdleOutcome {
    /// The server reported a change in the selected folder.
    News,
    /// The time ran out (re-issue).
    Timeout,
}

/// One authenticated connection, checked out of the account's pool. Dropping it gives it
/// back (or discards it when it failed).
pub trait ImapSession: Send {
    /// The capabilities after authentication (QRESYNC already enabled when offered).
    fn capabilities(&self) -> Capabilities;

    /// LIST "" "*" with attributes (special-use included when the server has it).
    fn list(&mut self) -> ImapFuture<'_, Vec<FolderInfo>>;

    /// SELECT (read-only: EXAMINE) `folder`; with `qresync`, `(QRESYNC (uv modseq))`.
    fn select<'a>(
        &'a mut self,
        folder: &'a str,
        qresync: Option<&'a QresyncParams>,
    ) -> ImapFuture<'a, Selected>;

    /// `UID SEARCH ALL` in the selected folder.
    fn uid_search_all(&mut self) -> ImapFuture<'_, Vec<u32>>;

    /// `UID SEARCH <criteria>` in the selected folder (criteria built by the caller from
    /// trusted parts only: `SINCE 1-Feb-2026 BEFORE 3-Mar-2026`).
    fn uid_search<'a>(&'a mut self, criteria: &'a str) -> ImapFuture<'a, Vec<u32>>;

    /// `STATUS folder (MESSAGES UIDNEXT UIDVALIDITY [HIGHESTMODSEQ])` (no SELECT).
    fn status<'a>(&'a mut self, folder: &'a str) -> ImapFuture<'a, MailboxStatus>;

    /// `UID FETCH set (UID FLAGS RFC822.SIZE [MODSEQ]) [(CHANGEDSINCE n)]`.
    fn fetch_meta<'a>(
        &'a mut self,
        set: &'a str,
        changed_since: Option<u64>,
    ) -> ImapFuture<'a, Vec<MessageMeta>>;

    /// `UID FETCH set (UID FLAGS INTERNALDATE [MODSEQ] BODY.PEEK[])`. Callers bound `set` to at
    /// most 100 messages.
    fn fetch_bodies<'a>(&'a mut self, set: &'a str) -> ImapFuture<'a, Vec<FetchedBody>>;

    /// `UID FETCH set (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER])`.
    fn fetch_headers<'a>(&'a mut self, set: &'a str) -> ImapFuture<'a, Vec<FetchedHeader>>;

    /// IDLE in the selected folder until news or `max`.
    fn idle(&mut self, max: Duration) -> ImapFuture<'_, IdleOutcome>;
}

/// The account's server: hands out pooled sessions.
pub trait ImapPort: Send + Sync {
    /// A session from the pool (waits for a free slot; connects when none is idle).
    fn session(&self) -> ImapFuture<'_, Box<dyn ImapSession>>;

    /// How many connections the pool may hold.
    fn pool_size(&self) -> usize;

    /// Connection health in words (`2 open, 1 idle`, `circuit open for 8 s after: …`).
    fn health(&self) -> String;

    /// Starts over after a person resumed the account or reloaded the config: credentials
    /// are read again and the next checkout connects at once (the circuit is closed).
    fn reconnect(&self) -> ImapFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}

/// Builds a compact UID set (`1:5,9,12:20`) from sorted UIDs.
pub fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end.wrapping_add(1) {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_are_compact() {
        assert_eq!(uid_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(uid_set(&[4]), "4");
        assert_eq!(uid_set(&[]), "");
    }

    #[test]
    fn auth_errors_disconnect_and_keep_the_server_words() {
        let e: ApiError = ImapError::new(ImapErrorClass::Auth, "[AUTHENTICATIONFAILED] no").into();
        assert!(matches!(e, ApiError::Disconnected(ref m) if m.contains("AUTHENTICATIONFAILED")));
        let t: ApiError = ImapError::new(ImapErrorClass::Timeout, "stalled").into();
        assert!(t.to_string().contains("timeout"));
    }
}
