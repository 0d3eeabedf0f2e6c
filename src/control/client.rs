//! The control client: owns talking to a running daemon (`request`, `EventFollower`) and the
//! body of `mailsync ctl` (`CtlArgs`, `run_ctl`, `render_table`).
//!
//! Output goes to the writer the caller passes (stdout in the binary): a readable table by
//! default, the reply's raw `data` as one JSON line with `--json`. Errors are returned, not
//! printed, so the binary decides how they reach stderr and which exit code they get.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::ControlError;
use super::protocol::{MAX_LINE, Request, Response, StreamLine};
use super::server::{LineError, LineReader};

/// Replies may be much larger than requests (status of many accounts); this bounds memory if
/// something that is not our daemon answers on the socket.
const MAX_REPLY_LINE: usize = 64 * MAX_LINE;

/// Default wait for one reply.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// `reload` re-reads the config and reconciles the actor tree, which may take a while.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(75);

/// `mailsync ctl <command>`.
#[derive(Clone, Debug, PartialEq, Eq, clap::Subcommand)]
pub enum CtlArgs {
    /// Show the daemon and every account: state, phase, cursor, queues, restarts, last error;
    /// with an account id, that account in detail with its recent errors.
    Status {
        /// Show only this account, in detail.
        account: Option<String>,
    },
    /// Check health for monitoring: exit 0 (ok), 1 (degraded) or 2 (failed or daemon
    /// unreachable), one line per problem.
    Health,
    /// Print the metrics in the Prometheus text format (as served at /metrics).
    Metrics,
    /// Test hook: block the supervision tree (refused unless `[debug] allow_wedge`).
    #[command(hide = true)]
    DebugWedge {
        /// Milliseconds to block.
        #[arg(long, default_value_t = 60_000)]
        hold_ms: u64,
    },
    /// List the configured accounts.
    Accounts,
    /// Stop syncing one account (its queues are kept).
    Pause {
        /// Account id.
        account: String,
    },
    /// Resume a paused account.
    Resume {
        /// Account id.
        account: String,
    },
    /// Run a sync round for one account now.
    SyncNow {
        /// Account id.
        account: String,
    },
    /// Reconcile one account with the provider (the gap recovery, on demand): list every
    /// id the account mirrors (bounded by its `initial_query`), fetch only what is missing,
    /// delete what is gone, rebuild labels from per-label listings; then partial sync
    /// continues from the new cursor. Nothing already mirrored is fetched again.
    Resync {
        /// Account id.
        account: String,
    },
    /// IMAP accounts: fetch what the mirror lacks in a date range and re-check flags, folder
    /// by folder (`UID SEARCH SINCE/BEFORE`), as a durable job that resumes after a crash.
    /// Other account kinds are refused (use `resync`).
    DeepSync {
        /// Account id.
        account: String,
        /// First day, YYYY-MM-DD (inclusive; by the server's INTERNALDATE).
        #[arg(long)]
        since: Option<String>,
        /// End day, YYYY-MM-DD (exclusive).
        #[arg(long)]
        until: Option<String>,
        /// Only this folder.
        #[arg(long)]
        folder: Option<String>,
    },
    /// Re-read the config file and apply account changes.
    Reload,
    /// Stop the daemon gracefully.
    Shutdown,
    /// Print change-feed events as JSON lines.
    Events {
        /// Consumer name; the daemon remembers its acknowledged position.
        #[arg(long)]
        consumer: String,
        /// First sequence number (default: after the consumer's last ack).
        #[arg(long)]
        from: Option<u64>,
        /// Keep printing new events until interrupted.
        #[arg(long)]
        follow: bool,
        /// Acknowledge each event after printing it.
        #[arg(long)]
        ack: bool,
    },
    /// Write a consistent backup of the store while the daemon runs (restore it with
    /// `mailsync store restore PATH`).
    Backup {
        /// The backup file to write (relative paths are taken from the current directory).
        path: PathBuf,
    },
    /// Acknowledge events up to and including a sequence number (refused beyond the newest
    /// event; the only way a consumer's position moves).
    Ack {
        /// Consumer name.
        #[arg(long)]
        consumer: String,
        /// Last processed sequence number.
        seq: u64,
    },
    /// List one account's dead-lettered jobs (id, mailbox, key, attempts, last error).
    Dead {
        /// Account id.
        account: String,
    },
    /// Move dead-lettered jobs back to their queues (attempts reset) and wake the account.
    Requeue {
        /// Account id.
        account: String,
        /// The job id from `ctl dead`.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        job: Option<u64>,
        /// Requeue every dead job of the account.
        #[arg(long)]
        all: bool,
    },
    /// List feed consumers with their acknowledged position and lag.
    Consumers,
    /// Forget a feed consumer so it no longer holds back feed pruning.
    Unregister {
        /// Consumer name.
        consumer: String,
    },
    /// A webhook's dead-lettered batches: list them, send them again.
    #[command(subcommand)]
    Webhook(webhook_cmd::WebhookCmd),
}

impl CtlArgs {
    /// The protocol request this command sends.
    pub fn to_request(&self) -> Request {
        match self.clone() {
            CtlArgs::Status { .. } | CtlArgs::Health => Request::Status,
            CtlArgs::Metrics => Request::Metrics,
            CtlArgs::DebugWedge { hold_ms } => Request::DebugWedge { hold_ms },
            CtlArgs::Accounts => Request::Accounts,
            CtlArgs::Pause { account } => Request::Pause { account },
            CtlArgs::Resume { account } => Request::Resume { account },
            CtlArgs::SyncNow { account } => Request::SyncNow { account },
            CtlArgs::Resync { account } => Request::Resync { account },
            CtlArgs::DeepSync {
                account,
                since,
                until,
                folder,
            } => Request::DeepSync {
                account,
                since,
                until,
                folder,
            },
            CtlArgs::Reload => Request::Reload,
            CtlArgs::Shutdown => Request::Shutdown,
            CtlArgs::Events {
                consumer,
                from,
                follow,
                ..
            } => Request::Events {
                consumer,
                from,
                follow,
            },
            CtlArgs::Ack { consumer, seq } => Request::Ack { consumer, seq },
            CtlArgs::Dead { account } => Request::Dead { account },
            CtlArgs::Requeue { account, job, .. } => Request::Requeue { account, job },
            CtlArgs::Consumers => Request::Consumers,
            CtlArgs::Unregister { consumer } => Request::Unregister { consumer },
            CtlArgs::Webhook(cmd) => cmd.to_request(),
            CtlArgs::Backup { path } => Request::Backup {
                path: std::path::absolute(&path)
                    .unwrap_or(path)
                    .to_string_lossy()
                    .into_owned(),
            },
        }
    }
}

/// An open connection to the daemon.
struct Conn {
    path: PathBuf,
    reader: LineReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Conn {
    async fn open(path: &Path) -> Result<Conn, ControlError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| ControlError::Connect {
                path: path.to_path_buf(),
                source,
            })?;
        let (reader, writer) = stream.into_split();
        Ok(Conn {
            path: path.to_path_buf(),
            reader: LineReader::new(reader, MAX_REPLY_LINE),
            writer,
        })
    }

    async fn send(&mut self, request: &Request) -> Result<(), ControlError> {
        self.writer.write_all(request.to_line().as_bytes()).await?;
        Ok(())
    }

    async fn line(&mut self) -> Result<Vec<u8>, ControlError> {
        match self.reader.next_line().await {
            Ok(Some(line)) => Ok(line),
            Ok(None) => Err(ControlError::Protocol(
                "the daemon closed the connection without answering".into(),
            )),
            Err(LineError::TooLarge) => Err(ControlError::Protocol("reply line too long".into())),
            Err(LineError::Io(e)) => Err(ControlError::Io(e)),
        }
    }

    async fn response(&mut self) -> Result<Response, ControlError> {
        let line = self.line().await?;
        Response::parse(&line).map_err(ControlError::Protocol)
    }
}

/// Sends one request and waits up to `timeout` for the whole exchange (connect included).
/// An error reply is a successful call returning `Response::Error`. For `events`, use
/// `follow_events` instead: this returns only the stream header.
pub async fn request(
    path: &Path,
    req: &Request,
    timeout: Duration,
) -> Result<Response, ControlError> {
    let exchange = async {
        let mut conn = Conn::open(path).await?;
        conn.send(req).await?;
        conn.response().await
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ControlError::Timeout {
            path: path.to_path_buf(),
            after: timeout,
        })?
}

/// A streaming `events` connection: read events with `next`, acknowledge with `ack`.
pub struct EventFollower {
    conn: Conn,
    /// The server sent `{"end":true}` and is back in request/reply mode.
    ended: bool,
    /// Acks sent during the stream whose replies have not been read yet.
    pending_acks: usize,
}

/// Opens an event stream for `consumer`. `timeout` bounds the connect and the header reply
/// only; events may then take as long as they take. An error reply becomes `Remote`.
pub async fn follow_events(
    path: &Path,
    consumer: &str,
    from: Option<u64>,
    follow: bool,
    timeout: Duration,
) -> Result<EventFollower, ControlError> {
    let open = async {
        let mut conn = Conn::open(path).await?;
        conn.send(&Request::Events {
            consumer: consumer.to_string(),
            from,
            follow,
        })
        .await?;
        match conn.response().await? {
            Response::Ok(_) => Ok(conn),
            Response::Error(error) => Err(ControlError::Remote(error)),
        }
    };
    let conn = tokio::time::timeout(timeout, open)
        .await
        .map_err(|_| ControlError::Timeout {
            path: path.to_path_buf(),
            after: timeout,
        })??;
    Ok(EventFollower {
        conn,
        ended: false,
        pending_acks: 0,
    })
}

impl EventFollower {
    /// The next event; `None` when a non-following stream reached the head of the feed or the
    /// daemon closed the connection (shutdown). Ack replies are consumed here: a failed ack
    /// surfaces as `Remote`. At the end of the stream, the replies to every ack sent so far
    /// are awaited first, so returning `None` means those acks were processed.
    pub async fn next(&mut self) -> Result<Option<Value>, ControlError> {
        if self.ended {
            return Ok(None);
        }
        loop {
            let line = match self.conn.reader.next_line().await {
                Ok(Some(line)) => line,
                Ok(None) => {
                    self.ended = true;
                    return Ok(None);
                }
                Err(LineError::TooLarge) => {
                    return Err(ControlError::Protocol("event line too long".into()));
                }
                Err(LineError::Io(e)) => return Err(ControlError::Io(e)),
            };
            match StreamLine::parse(&line).map_err(ControlError::Protocol)? {
                StreamLine::Event(event) => return Ok(Some(event)),
                StreamLine::End => {
                    self.ended = true;
                    while self.pending_acks > 0 {
                        self.pending_acks -= 1;
                        if let Response::Error(error) = self.conn.response().await? {
                            return Err(ControlError::Remote(error));
                        }
                    }
                    return Ok(None);
                }
                StreamLine::Reply(reply) => {
                    self.pending_acks = self.pending_acks.saturating_sub(1);
                    if let Response::Error(error) = reply {
                        return Err(ControlError::Remote(error));
                    }
                }
            }
        }
    }

    /// Acknowledges every event up to `seq` for `consumer`. While streaming, the reply is
    /// read by `next`; after the end of the stream it is awaited here.
    pub async fn ack(&mut self, consumer: &str, seq: u64) -> Result<(), ControlError> {
        self.conn
            .send(&Request::Ack {
                consumer: consumer.to_string(),
                seq,
            })
            .await?;
        if !self.ended {
            self.pending_acks += 1;
            return Ok(());
        }
        match self.conn.response().await? {
            Response::Ok(_) => Ok(()),
            Response::Error(error) => Err(ControlError::Remote(error)),
        }
    }

    /// The socket this follower is connected to.
    pub fn path(&self) -> &Path {
        &self.conn.path
    }
}

/// Runs `mailsync ctl <args>` against the socket at `socket`, writing the result to `out`.
/// Returns the exit code (0) on success; an error reply comes back as `ControlError::Remote`
/// (see `ControlError::exit_code`).
pub async fn run_ctl(
    socket: &Path,
    args: CtlArgs,
    json: bool,
    out: &mut impl Write,
) -> Result<i32, ControlError> {
    if let CtlArgs::Events {
        consumer,
        from,
        follow,
        ack,
    } = &args
    {
        let mut events = follow_events(socket, consumer, *from, *follow, DEFAULT_TIMEOUT).await?;
        while let Some(event) = events.next().await? {
            writeln!(out, "{event}")?;
            out.flush()?;
            if *ack && let Some(seq) = event.get("seq").and_then(Value::as_u64) {
                events.ack(consumer, seq).await?;
            }
        }
        return Ok(0);
    }
    let timeout = match args {
        CtlArgs::Reload => RELOAD_TIMEOUT,
        // A backup copies the whole store.
        CtlArgs::Backup { .. } => Duration::from_secs(3600),
        CtlArgs::Webhook(ref cmd) => cmd.timeout().unwrap_or(DEFAULT_TIMEOUT),
        _ => DEFAULT_TIMEOUT,
    };
    let response = match request(socket, &args.to_request(), timeout).await {
        // A monitoring check must say "failed" (2), not crash, when nobody answers.
        Err(e) if args == CtlArgs::Health => {
            if json {
                let v =
                    serde_json::json!({"health": {"state": "failed", "problems": [e.to_string()]}});
                writeln!(out, "{v}")?;
            } else {
                writeln!(out, "failed: daemon unreachable: {e}")?;
            }
            return Ok(2);
        }
        other => other?,
    };
    let data = match &response {
        Response::Error(error) => return Err(ControlError::Remote(error.clone())),
        Response::Ok(data) => data,
    };
    match &args {
        CtlArgs::Health => {
            let (text, code) = status_view::render_health(data);
            if json {
                writeln!(out, "{}", data.get("health").unwrap_or(&Value::Null))?;
            } else {
                write!(out, "{text}")?;
            }
            return Ok(code);
        }
        CtlArgs::Metrics if !json => {
            write!(out, "{}", text(data.get("text")))?;
            return Ok(0);
        }
        CtlArgs::Status {
            account: Some(account),
        } => {
            let Some(one) = data
                .get("accounts")
                .and_then(Value::as_array)
                .and_then(|l| l.iter().find(|a| a["account"] == account.as_str()))
            else {
                return Err(ControlError::Remote(super::ErrorReply::new(
                    super::ErrorCode::UnknownAccount,
                    format!("unknown account {account:?}"),
                )));
            };
            if json {
                writeln!(out, "{one}")?;
            } else {
                let detail = status_view::render_account(data, account).unwrap_or_default();
                write!(out, "{detail}")?;
            }
            return Ok(0);
        }
        CtlArgs::Dead { .. } | CtlArgs::Consumers if !json => {
            write!(out, "{}", render_repair(data))?;
            return Ok(0);
        }
        CtlArgs::Webhook(_) if !json => {
            write!(out, "{}", webhook_cmd::render(data))?;
            return Ok(0);
        }
        _ => {}
    }
    if json {
        writeln!(out, "{data}")?;
    } else {
        write!(out, "{}", render_table(&response))?;
    }
    Ok(0)
}

/// Renders a reply for people: a table for `status` (plus feed consumers, when the daemon
/// reports them) and `accounts` data, `ok` for empty
/// successes, `key: value` lines for other objects, and `error (code): message` for failures.
/// Always ends with a newline.
pub fn render_table(resp: &Response) -> String {
    match resp {
        Response::Error(error) => format!("error ({}): {}\n", error.code.as_str(), error.message),
        Response::Ok(Value::Null) => "ok\n".to_string(),
        Response::Ok(data) => {
            if let Some(accounts) = data.get("accounts").and_then(Value::as_array)
                && data.get("version").is_some()
            {
                status_view::render_status(data, accounts)
            } else if let Some(list) = data
                .as_array()
                .or_else(|| data.get("accounts").and_then(Value::as_array))
            {
                render_accounts(list)
            } else {
                render_value(data)
            }
        }
    }
}

/// `ctl dead` and `ctl consumers` as tables.
fn render_repair(data: &Value) -> String {
    if let Some(dead) = data.get("dead").and_then(Value::as_array) {
        if dead.is_empty() {
            return "no dead-lettered jobs\n".to_string();
        }
        let rows: Vec<Vec<String>> = dead
            .iter()
            .map(|j| {
                vec![
                    text(j.get("id")),
                    text(j.get("mailbox")),
                    text(j.get("key")),
                    text(j.get("attempts")),
                    text(j.get("last_error")),
                ]
            })
            .collect();
        return table(&["JOB", "MAILBOX", "KEY", "ATTEMPTS", "LAST ERROR"], &rows);
    }
    let list = data
        .get("consumers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if list.is_empty() {
        return "no registered consumers\n".to_string();
    }
    status_view::consumers_table(&list)
}

fn text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn u64_field(value: &Value, key: &str) -> u64 {
    value.get(key).and_then(Value::as_u64).unwrap_or(0)
}

pub(crate) fn format_uptime(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// Accounts data: objects with `id` (or `account`), `kind` and optionally `state`/`enabled`,
/// or `[id, kind]` pairs.
fn render_accounts(list: &[Value]) -> String {
    if list.is_empty() {
        return "no accounts configured\n".to_string();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|entry| match entry {
            Value::Array(pair) => vec![text(pair.first()), text(pair.get(1)), "-".to_string()],
            other => vec![
                text(other.get("id").or_else(|| other.get("account"))),
                text(other.get("kind")),
                text(other.get("state").or_else(|| other.get("enabled"))),
            ],
        })
        .collect();
    table(&["ACCOUNT", "KIND", "STATE"], &rows)
}

fn render_value(data: &Value) -> String {
    match data {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}: {}\n", text(Some(v))))
            .collect(),
        other => format!("{}\n", text(Some(other))),
    }
}

/// Left-aligned columns separated by two spaces; trailing spaces trimmed.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let width = widths.get(i).copied().unwrap_or(0);
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = width.saturating_sub(cell.chars().count()) + 2;
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

mod status_view;
mod webhook_cmd;

#[cfg(test)]
mod tests;
