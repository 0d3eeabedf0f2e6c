//! One authenticated IMAP connection (opened by [`crate::imap::dial`]) and the commands the
//! source needs ([`ImapSession`]), each bounded by the operation timeout.
//!
//! Commands are sent through async-imap's tagged connection and their responses read one by
//! one here (`command`), so every untagged response (VANISHED, FETCH during SELECT, EXISTS
//! while idling) is seen and nothing is dropped by a bounded side channel. Every failure is
//! classified ([`ImapErrorClass`]); a connection that failed with anything but a tagged NO/BAD
//! is marked broken and is never reused. Error texts are cut to 300 characters and never
//! contain a credential.

use crate::imap::errors::{classify_refusal, err, io_error, lib_error};
use crate::imap::stream::ImapStream;
use async_imap::imap_proto::{
    AttributeValue, MailboxDatum, NameAttribute, Response, ResponseCode, Status, StatusAttribute,
};
use mailsync_actors::imap::port::{
    Capabilities, FetchedBody, FetchedHeader, FolderInfo, IdleOutcome, ImapError, ImapErrorClass,
    ImapFuture, ImapSession, MailboxStatus, MessageMeta, QresyncParams, Selected,
};
use std::time::Duration;

pub(crate) fn outcome_text(code: Option<&ResponseCode<'_>>, info: Option<&str>) -> String {
    match (code, info) {
        (Some(c), Some(i)) => format!("{c:?} {i}"),
        (None, Some(i)) => i.to_string(),
        (Some(c), None) => format!("{c:?}"),
        (None, None) => String::new(),
    }
}

/// Quotes a mailbox name as an IMAP quoted string.
pub fn quote(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// An authenticated connection.
pub struct Conn {
    session: async_imap::Session<ImapStream>,
    caps: Capabilities,
    op_timeout: Duration,
    broken: bool,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("caps", &self.caps)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl Conn {
    /// An authenticated session with what it offers; commands bounded by `op_timeout`.
    pub(crate) fn new(
        session: async_imap::Session<ImapStream>,
        caps: Capabilities,
        op_timeout: Duration,
    ) -> Conn {
        Conn {
            session,
            caps,
            op_timeout,
            broken: false,
        }
    }
}

pub(crate) fn classify_bye(text: &str) -> ImapError {
    let e = classify_refusal(text);
    if e.class == ImapErrorClass::Throttle {
        e
    } else {
        err(ImapErrorClass::Network, format!("server said BYE: {text}"))
    }
}

fn flags_of(v: &[std::borrow::Cow<'_, str>]) -> Vec<String> {
    v.iter().map(|f| f.to_string()).collect()
}

fn name_attribute(a: &NameAttribute<'_>) -> String {
    match a {
        NameAttribute::NoInferiors => "\\Noinferiors".into(),
        NameAttribute::NoSelect => "\\Noselect".into(),
        NameAttribute::Marked => "\\Marked".into(),
        NameAttribute::Unmarked => "\\Unmarked".into(),
        NameAttribute::All => "\\All".into(),
        NameAttribute::Archive => "\\Archive".into(),
        NameAttribute::Drafts => "\\Drafts".into(),
        NameAttribute::Flagged => "\\Flagged".into(),
        NameAttribute::Junk => "\\Junk".into(),
        NameAttribute::Sent => "\\Sent".into(),
        NameAttribute::Trash => "\\Trash".into(),
        NameAttribute::Extension(s) => s.to_string(),
        other => format!("{other:?}"),
    }
}

/// The attributes of one FETCH response that the port cares about.
#[derive(Default)]
struct FetchParts {
    uid: Option<u32>,
    flags: Vec<String>,
    modseq: Option<u64>,
    size: Option<u32>,
    internal_date: Option<String>,
    section: Option<Vec<u8>>,
}

fn fetch_parts(attrs: &[AttributeValue<'_>]) -> FetchParts {
    let mut p = FetchParts::default();
    for a in attrs {
        match a {
            AttributeValue::Uid(u) => p.uid = Some(*u),
            AttributeValue::Flags(f) => p.flags = flags_of(f),
            AttributeValue::ModSeq(m) => p.modseq = Some(*m),
            AttributeValue::Rfc822Size(s) => p.size = Some(*s),
            AttributeValue::InternalDate(d) => p.internal_date = Some(d.to_string()),
            AttributeValue::BodySection { data, .. } => {
                p.section = Some(data.as_ref().map(|d| d.to_vec()).unwrap_or_default());
            }
            AttributeValue::Rfc822(Some(d)) => p.section = Some(d.to_vec()),
            _ => {}
        }
    }
    p
}

impl Conn {
    /// Whether the connection must be discarded.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Runs one tagged command, handing every untagged response to `on`.
    async fn command(
        &mut self,
        cmd: &str,
        mut on: impl FnMut(&Response<'_>) + Send,
    ) -> Result<(), ImapError> {
        let session = &mut self.session;
        let run = async {
            let id = session.run_command(cmd).await.map_err(|e| lib_error(&e))?;
            loop {
                let Some(resp) = session.read_response().await.map_err(|e| io_error(&e))? else {
                    return Err(err(
                        ImapErrorClass::Network,
                        "connection closed by the server",
                    ));
                };
                match resp.parsed() {
                    Response::Done {
                        tag,
                        status,
                        outcome,
                    } if *tag == id => {
                        let text =
                            outcome_text(outcome.code.as_ref(), outcome.information.as_deref());
                        return match status {
                            Status::Ok => Ok(()),
                            _ => Err(classify_refusal(&text)),
                        };
                    }
                    Response::Done { .. } => {}
                    Response::Data {
                        status: Status::Bye,
                        outcome,
                    } => {
                        return Err(classify_bye(&outcome_text(
                            outcome.code.as_ref(),
                            outcome.information.as_deref(),
                        )));
                    }
                    other => on(other),
                }
            }
        };
        let result = match tokio::time::timeout(self.op_timeout, run).await {
            Ok(r) => r,
            Err(_) => Err(err(
                ImapErrorClass::Timeout,
                format!(
                    "no complete answer within {} s to {}",
                    self.op_timeout.as_secs(),
                    cmd.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
                ),
            )),
        };
        if let Err(e) = &result
            && !matches!(e.class, ImapErrorClass::Server)
        {
            self.broken = true;
        }
        result
    }

    async fn do_list(&mut self) -> Result<Vec<FolderInfo>, ImapError> {
        let mut out = Vec::new();
        self.command("LIST \"\" \"*\"", |r| {
            if let Response::MailboxData(MailboxDatum::List(l)) = r {
                out.push(FolderInfo {
                    name: l.name.to_string(),
                    attributes: l.name_attributes.iter().map(name_attribute).collect(),
                });
            }
        })
        .await?;
        Ok(out)
    }

    async fn do_select(
        &mut self,
        folder: &str,
        q: Option<&QresyncParams>,
    ) -> Result<Selected, ImapError> {
        let cmd = match q {
            Some(q) if self.caps.qresync => format!(
                "SELECT {} (QRESYNC ({} {}))",
                quote(folder),
                q.uidvalidity,
                q.modseq
            ),
            _ if self.caps.condstore => format!("SELECT {} (CONDSTORE)", quote(folder)),
            _ => format!("SELECT {}", quote(folder)),
        };
        let mut sel = Selected::default();
        self.command(&cmd, |r| match r {
            Response::Data {
                status: Status::Ok,
                outcome,
            } => match &outcome.code {
                Some(ResponseCode::UidValidity(v)) => sel.uidvalidity = *v,
                Some(ResponseCode::UidNext(n)) => sel.uidnext = *n,
                Some(ResponseCode::HighestModSeq(m)) => sel.highest_modseq = Some(*m),
                _ => {}
            },
            Response::MailboxData(MailboxDatum::Exists(n)) => sel.exists = *n,
            Response::Vanished { uids, .. } => {
                sel.vanished
                    .extend(uids.iter().map(|r| (*r.start(), *r.end())));
            }
            Response::Fetch(_, attrs) => {
                let p = fetch_parts(attrs);
                if let Some(uid) = p.uid {
                    sel.changed.push(MessageMeta {
                        uid,
                        flags: p.flags,
                        modseq: p.modseq,
                        size: p.size,
                    });
                }
            }
            _ => {}
        })
        .await?;
        Ok(sel)
    }

    async fn do_search_all(&mut self) -> Result<Vec<u32>, ImapError> {
        let mut out = Vec::new();
        self.command("UID SEARCH ALL", |r| {
            if let Response::MailboxData(MailboxDatum::Search(uids)) = r {
                out.extend_from_slice(uids);
            }
        })
        .await?;
        Ok(out)
    }

    async fn do_search(&mut self, criteria: &str) -> Result<Vec<u32>, ImapError> {
        let mut out = Vec::new();
        self.command(&format!("UID SEARCH {criteria}"), |r| {
            if let Response::MailboxData(MailboxDatum::Search(uids)) = r {
                out.extend_from_slice(uids);
            }
        })
        .await?;
        Ok(out)
    }

    async fn do_status(&mut self, folder: &str) -> Result<MailboxStatus, ImapError> {
        let modseq = if self.caps.condstore {
            " HIGHESTMODSEQ"
        } else {
            ""
        };
        let cmd = format!(
            "STATUS {} (MESSAGES UIDNEXT UIDVALIDITY{modseq})",
            quote(folder)
        );
        let mut st = MailboxStatus::default();
        self.command(&cmd, |r| {
            if let Response::MailboxData(MailboxDatum::Status { status, .. }) = r {
                for a in status {
                    match a {
                        StatusAttribute::Messages(n) => st.messages = *n,
                        StatusAttribute::UidNext(n) => st.uidnext = *n,
                        StatusAttribute::UidValidity(n) => st.uidvalidity = *n,
                        StatusAttribute::HighestModSeq(n) => st.highest_modseq = Some(*n),
                        _ => {}
                    }
                }
            }
        })
        .await?;
        Ok(st)
    }

    async fn do_fetch_meta(
        &mut self,
        set: &str,
        since: Option<u64>,
    ) -> Result<Vec<MessageMeta>, ImapError> {
        let modseq = if self.caps.condstore { " MODSEQ" } else { "" };
        let cmd = match since {
            Some(m) if self.caps.condstore => {
                format!("UID FETCH {set} (UID FLAGS MODSEQ) (CHANGEDSINCE {m})")
            }
            _ => format!("UID FETCH {set} (UID FLAGS RFC822.SIZE{modseq})"),
        };
        let mut out = Vec::new();
        self.command(&cmd, |r| {
            if let Response::Fetch(_, attrs) = r {
                let p = fetch_parts(attrs);
                if let Some(uid) = p.uid {
                    out.push(MessageMeta {
                        uid,
                        flags: p.flags,
                        modseq: p.modseq,
                        size: p.size,
                    });
                }
            }
        })
        .await?;
        Ok(out)
    }

    async fn do_fetch_bodies(&mut self, set: &str) -> Result<Vec<FetchedBody>, ImapError> {
        let modseq = if self.caps.condstore { " MODSEQ" } else { "" };
        let cmd = format!("UID FETCH {set} (UID FLAGS INTERNALDATE{modseq} BODY.PEEK[])");
        let mut out = Vec::new();
        let mut missing_body = 0usize;
        self.command(&cmd, |r| {
            if let Response::Fetch(_, attrs) = r {
                let p = fetch_parts(attrs);
                let (Some(uid), Some(raw)) = (p.uid, p.section) else {
                    missing_body += 1;
                    return;
                };
                out.push(FetchedBody {
                    uid,
                    flags: p.flags,
                    modseq: p.modseq,
                    internal_date_ms: p
                        .internal_date
                        .as_deref()
                        .and_then(super::date::internal_date_ms)
                        .unwrap_or(0),
                    headers: crate::google::wire::summarize_headers(&raw),
                    raw,
                });
            }
        })
        .await?;
        if missing_body > 0 {
            tracing::debug!(
                missing_body,
                "FETCH responses without a body (flag updates) ignored."
            );
        }
        Ok(out)
    }

    async fn do_fetch_headers(&mut self, set: &str) -> Result<Vec<FetchedHeader>, ImapError> {
        let cmd = format!("UID FETCH {set} (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER])");
        let mut out = Vec::new();
        self.command(&cmd, |r| {
            if let Response::Fetch(_, attrs) = r {
                let p = fetch_parts(attrs);
                if let (Some(uid), Some(size), Some(header)) = (p.uid, p.size, p.section) {
                    out.push(FetchedHeader {
                        uid,
                        flags: p.flags,
                        size,
                        header,
                    });
                }
            }
        })
        .await?;
        Ok(out)
    }

    async fn do_idle(&mut self, max: Duration) -> Result<IdleOutcome, ImapError> {
        let op_timeout = self.op_timeout;
        let session = &mut self.session;
        let id = session
            .run_command("IDLE")
            .await
            .map_err(|e| lib_error(&e))?;
        // The continuation.
        let started = tokio::time::timeout(op_timeout, async {
            loop {
                let Some(resp) = session.read_response().await.map_err(|e| io_error(&e))? else {
                    return Err(err(
                        ImapErrorClass::Network,
                        "connection closed by the server",
                    ));
                };
                match resp.parsed() {
                    Response::Continue(_) => return Ok(()),
                    Response::Done { tag, outcome, .. } if *tag == id => {
                        return Err(classify_refusal(&outcome_text(
                            outcome.code.as_ref(),
                            outcome.information.as_deref(),
                        )));
                    }
                    _ => {}
                }
            }
        })
        .await;
        match started {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.broken = true;
                return Err(e);
            }
            Err(_) => {
                self.broken = true;
                return Err(err(ImapErrorClass::Timeout, "IDLE not accepted in time"));
            }
        }
        // Wait for news (Dovecot's "* OK Still here" is not news).
        let deadline = tokio::time::Instant::now() + max;
        let outcome = loop {
            match tokio::time::timeout_at(deadline, session.read_response()).await {
                Err(_) => break Ok(IdleOutcome::Timeout),
                Ok(Err(e)) => break Err(io_error(&e)),
                Ok(Ok(None)) => {
                    break Err(err(
                        ImapErrorClass::Network,
                        "connection closed while idling",
                    ));
                }
                Ok(Ok(Some(resp))) => match resp.parsed() {
                    Response::MailboxData(MailboxDatum::Exists(_))
                    | Response::Expunge(_)
                    | Response::Vanished { .. }
                    | Response::Fetch(..) => break Ok(IdleOutcome::News),
                    Response::Data {
                        status: Status::Bye,
                        outcome,
                    } => {
                        break Err(classify_bye(&outcome_text(
                            outcome.code.as_ref(),
                            outcome.information.as_deref(),
                        )));
                    }
                    _ => {}
                },
            }
        };
        if let Err(e) = outcome {
            self.broken = true;
            return Err(e);
        }
        // DONE, then the tagged OK (anything in between is covered by the next round).
        let done = tokio::time::timeout(op_timeout, async {
            session
                .run_command_untagged("DONE")
                .await
                .map_err(|e| lib_error(&e))?;
            loop {
                let Some(resp) = session.read_response().await.map_err(|e| io_error(&e))? else {
                    return Err(err(
                        ImapErrorClass::Network,
                        "connection closed by the server",
                    ));
                };
                if let Response::Done { tag, .. } = resp.parsed()
                    && *tag == id
                {
                    return Ok(());
                }
            }
        })
        .await;
        match done {
            Ok(Ok(())) => outcome,
            Ok(Err(e)) => {
                self.broken = true;
                Err(e)
            }
            Err(_) => {
                self.broken = true;
                Err(err(
                    ImapErrorClass::Timeout,
                    "IDLE DONE not answered in time",
                ))
            }
        }
    }

    /// Says goodbye (best effort, bounded).
    pub async fn logout(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.session.logout()).await;
    }
}

impl ImapSession for Conn {
    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    fn list(&mut self) -> ImapFuture<'_, Vec<FolderInfo>> {
        Box::pin(self.do_list())
    }

    fn select<'a>(
        &'a mut self,
        folder: &'a str,
        qresync: Option<&'a QresyncParams>,
    ) -> ImapFuture<'a, Selected> {
        Box::pin(self.do_select(folder, qresync))
    }

    fn uid_search_all(&mut self) -> ImapFuture<'_, Vec<u32>> {
        Box::pin(self.do_search_all())
    }

    fn uid_search<'a>(&'a mut self, criteria: &'a str) -> ImapFuture<'a, Vec<u32>> {
        Box::pin(self.do_search(criteria))
    }

    fn status<'a>(&'a mut self, folder: &'a str) -> ImapFuture<'a, MailboxStatus> {
        Box::pin(self.do_status(folder))
    }

    fn fetch_meta<'a>(
        &'a mut self,
        set: &'a str,
        changed_since: Option<u64>,
    ) -> ImapFuture<'a, Vec<MessageMeta>> {
        Box::pin(self.do_fetch_meta(set, changed_since))
    }

    fn fetch_bodies<'a>(&'a mut self, set: &'a str) -> ImapFuture<'a, Vec<FetchedBody>> {
        Box::pin(self.do_fetch_bodies(set))
    }

    fn fetch_headers<'a>(&'a mut self, set: &'a str) -> ImapFuture<'a, Vec<FetchedHeader>> {
        Box::pin(self.do_fetch_headers(set))
    }

    fn idle(&mut self, max: Duration) -> ImapFuture<'_, IdleOutcome> {
        Box::pin(self.do_idle(max))
    }
}
