//! The control protocol: owns the typed `Request` and `Response` and their wire form, one JSON
//! object per line (UTF-8, `\n`-terminated). Pure code: no I/O, no daemon state.
//!
//! Requests carry the protocol version and a command name:
//! `{"v":1,"cmd":"status"}`, `{"v":1,"cmd":"pause","account":"work"}`,
//! `{"v":1,"cmd":"events","consumer":"indexer","from":42,"follow":true}`,
//! `{"v":1,"cmd":"ack","consumer":"indexer","seq":42}`. Unknown extra fields are ignored
//! (forward compatibility); a missing or different `v` is refused.
//!
//! Replies: `{"ok":true,"data":...}` or `{"ok":false,"error":{"code":"...","message":"..."}}`.
//!
//! The `events` command switches the connection into streaming (see `server`): a header reply
//! `{"ok":true,"data":{"streaming":true}}`, then one `{"event":{...}}` line per feed event,
//! and `{"end":true}` when a non-following stream reaches the head of the feed; while it
//! streams, the client may send `ack` lines, each answered by an ordinary reply line.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u64 = 1;

/// The longest request or reply line accepted, newline excluded.
pub const MAX_LINE: usize = 64 * 1024;

/// One admin command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    /// Daemon and per-account status (`DaemonStatus`).
    Status,
    /// The configured accounts.
    Accounts,
    /// Stop calling the provider for one account; queues are kept.
    Pause {
        /// Account id.
        account: String,
    },
    /// Undo `pause`.
    Resume {
        /// Account id.
        account: String,
    },
    /// Run a partial sync round now.
    SyncNow {
        /// Account id.
        account: String,
    },
    /// Reconcile the account with the provider (see `ctl resync`): ids listed within the
    /// account's `initial_query`, missing ones fetched, vanished ones deleted, labels rebuilt.
    Resync {
        /// Account id.
        account: String,
    },
    /// IMAP: a deep sync of a date range (see `ctl deep-sync`), run as a durable backfill
    /// job; refused for other account kinds.
    DeepSync {
        /// Account id.
        account: String,
        /// First day, `YYYY-MM-DD` (inclusive).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<String>,
        /// Last day, `YYYY-MM-DD` (exclusive).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<String>,
        /// Only this folder.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        folder: Option<String>,
    },
    /// Re-read the config file and apply account changes.
    Reload,
    /// Stop the daemon gracefully.
    Shutdown,
    /// Read the change feed for a named consumer, from `from` (inclusive) or from the
    /// consumer's acknowledged position; with `follow`, keep streaming new events.
    Events {
        /// Consumer name (its acknowledged position is kept by the daemon).
        consumer: String,
        /// First sequence number wanted; `None` resumes after the last ack.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<u64>,
        /// Keep the stream open for new events.
        #[serde(default)]
        follow: bool,
    },
    /// Acknowledge every event up to and including `seq` for a consumer.
    Ack {
        /// Consumer name.
        consumer: String,
        /// Last processed sequence number.
        seq: u64,
    },
    /// Write a consistent backup of the store to `path` (absolute, on the daemon's machine).
    Backup {
        /// Where the backup file goes.
        path: String,
    },
    /// The metrics in the Prometheus text format (`{"text": "..."}`).
    Metrics,
    /// The dead-lettered jobs of one account (see `repair.rs`).
    Dead {
        /// Account id.
        account: String,
    },
    /// Move one dead job (`job`) or all of an account's dead jobs back to their queues.
    Requeue {
        /// Account id.
        account: String,
        /// The job id; `None` requeues every dead job of the account.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        job: Option<u64>,
    },
    /// Every registered feed consumer with its acknowledged position and lag.
    Consumers,
    /// Forget a feed consumer (it stops holding back pruning).
    Unregister {
        /// Consumer name.
        consumer: String,
    },
    /// The dead-lettered batches of one webhook (`sink/webhook_replay.rs`).
    WebhookDead {
        /// The webhook's `name`.
        name: String,
    },
    /// Send one dead-lettered batch (`id`, its first seq) or all of a webhook's again.
    WebhookReplay {
        /// The webhook's `name`.
        name: String,
        /// The batch id; `None` replays every dead letter of the webhook.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
    },
    /// Test hook, refused unless `[debug] allow_wedge`: block the supervision tree.
    DebugWedge {
        /// How long to block, in milliseconds.
        hold_ms: u64,
    },
}

/// Every command name, for error messages and tests.
pub const COMMANDS: &[&str] = &[
    "status",
    "accounts",
    "pause",
    "resume",
    "sync-now",
    "resync",
    "deep-sync",
    "reload",
    "shutdown",
    "events",
    "ack",
    "metrics",
    "debug-wedge",
    "dead",
    "requeue",
    "consumers",
    "unregister",
    "backup",
    "webhook-dead",
    "webhook-replay",
];

impl Request {
    /// The command name as sent on the wire (`sync-now`), for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Accounts => "accounts",
            Request::Pause { .. } => "pause",
            Request::Resume { .. } => "resume",
            Request::SyncNow { .. } => "sync-now",
            Request::Resync { .. } => "resync",
            Request::DeepSync { .. } => "deep-sync",
            Request::Reload => "reload",
            Request::Shutdown => "shutdown",
            Request::Events { .. } => "events",
            Request::Ack { .. } => "ack",
            Request::Backup { .. } => "backup",
            Request::Metrics => "metrics",
            Request::DebugWedge { .. } => "debug-wedge",
            Request::Dead { .. } => "dead",
            Request::Requeue { .. } => "requeue",
            Request::Consumers => "consumers",
            Request::Unregister { .. } => "unregister",
            Request::WebhookDead { .. } => "webhook-dead",
            Request::WebhookReplay { .. } => "webhook-replay",
        }
    }

    /// The account a command targets, if any.
    pub fn account(&self) -> Option<&str> {
        match self {
            Request::Pause { account }
            | Request::Resume { account }
            | Request::SyncNow { account }
            | Request::Resync { account }
            | Request::DeepSync { account, .. }
            | Request::Dead { account }
            | Request::Requeue { account, .. } => Some(account),
            _ => None,
        }
    }

    /// The wire form: one JSON object with `"v"` and a trailing newline.
    pub fn to_line(&self) -> String {
        let mut object = match serde_json::to_value(self) {
            Ok(Value::Object(object)) => object,
            // An internally tagged enum of plain fields always serializes to an object.
            _ => Map::new(),
        };
        object.insert("v".into(), Value::from(PROTOCOL_VERSION));
        let mut line = Value::Object(object).to_string();
        line.push('\n');
        line
    }

    /// Parses one request line (without its newline), classifying what is wrong with it.
    pub fn parse(line: &[u8]) -> Result<Request, ErrorReply> {
        let value: Value = serde_json::from_slice(line)
            .map_err(|e| ErrorReply::new(ErrorCode::BadRequest, format!("not valid JSON: {e}")))?;
        let Value::Object(object) = value else {
            return Err(ErrorReply::new(
                ErrorCode::BadRequest,
                "a request must be a JSON object",
            ));
        };
        match object.get("v") {
            Some(v) if v.as_u64() == Some(PROTOCOL_VERSION) => {}
            Some(v) => {
                return Err(ErrorReply::new(
                    ErrorCode::UnsupportedVersion,
                    format!(
                        "protocol version {v} is not supported; this daemon speaks {PROTOCOL_VERSION}"
                    ),
                ));
            }
            None => {
                return Err(ErrorReply::new(
                    ErrorCode::BadRequest,
                    format!("missing \"v\" (the protocol version, {PROTOCOL_VERSION})"),
                ));
            }
        }
        match object.get("cmd") {
            Some(Value::String(cmd)) if COMMANDS.contains(&cmd.as_str()) => {}
            Some(Value::String(cmd)) => {
                return Err(ErrorReply::new(
                    ErrorCode::UnknownCommand,
                    format!("unknown command {cmd:?}; known: {}", COMMANDS.join(", ")),
                ));
            }
            _ => {
                return Err(ErrorReply::new(
                    ErrorCode::BadRequest,
                    "missing \"cmd\" (a string)",
                ));
            }
        }
        serde_json::from_value(Value::Object(object))
            .map_err(|e| ErrorReply::new(ErrorCode::BadRequest, e.to_string()))
    }
}

/// Machine-readable error kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// `cmd` names no command.
    UnknownCommand,
    /// Not JSON, not an object, missing or mistyped fields, or not allowed now.
    BadRequest,
    /// The account id is not configured.
    UnknownAccount,
    /// The line is longer than `MAX_LINE`; the connection is closed.
    TooLarge,
    /// `v` is not `PROTOCOL_VERSION`.
    UnsupportedVersion,
    /// Too many connections; try again later. The connection is closed.
    Busy,
    /// The daemon failed to answer (actor timeout, bug).
    Internal,
}

impl ErrorCode {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::UnknownCommand => "unknown_command",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownAccount => "unknown_account",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::Busy => "busy",
            ErrorCode::Internal => "internal",
        }
    }
}

/// The `error` object of a failed reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// What kind of failure.
    pub code: ErrorCode,
    /// A human-readable explanation, free of secrets.
    pub message: String,
}

impl ErrorReply {
    /// Builds an error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorReply {
        ErrorReply {
            code,
            message: message.into(),
        }
    }
}

/// One reply.
#[derive(Clone, Debug, PartialEq)]
pub enum Response {
    /// `{"ok":true,"data":...}`; `data` is `null` for commands that return nothing.
    Ok(Value),
    /// `{"ok":false,"error":{...}}`.
    Error(ErrorReply),
}

/// The wire shape of a reply; `Response` is its validated form.
#[derive(Serialize, Deserialize)]
struct WireResponse {
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<ErrorReply>,
}

impl Response {
    /// A success with serializable data; a serialization failure becomes an `internal` error.
    pub fn ok(data: impl Serialize) -> Response {
        match serde_json::to_value(data) {
            Ok(value) => Response::Ok(value),
            Err(e) => Response::error(ErrorCode::Internal, format!("cannot encode reply: {e}")),
        }
    }

    /// A success without data.
    pub fn done() -> Response {
        Response::Ok(Value::Null)
    }

    /// A failure.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Response {
        Response::Error(ErrorReply::new(code, message))
    }

    /// The standard reply for an account id that is not configured.
    pub fn unknown_account(account: &str) -> Response {
        Response::error(
            ErrorCode::UnknownAccount,
            format!("unknown account {account:?}"),
        )
    }

    /// Whether this is a success.
    pub fn is_ok(&self) -> bool {
        matches!(self, Response::Ok(_))
    }

    /// The wire form with a trailing newline.
    pub fn to_line(&self) -> String {
        let wire = match self {
            Response::Ok(data) => WireResponse {
                ok: true,
                data: Some(data.clone()),
                error: None,
            },
            Response::Error(error) => WireResponse {
                ok: false,
                data: None,
                error: Some(error.clone()),
            },
        };
        let mut line = serde_json::to_string(&wire).unwrap_or_else(|_| {
            // Values and plain strings always serialize; this is a last-resort reply.
            r#"{"ok":false,"error":{"code":"internal","message":"cannot encode reply"}}"#.into()
        });
        line.push('\n');
        line
    }

    /// Parses a reply line (without its newline).
    pub fn parse(line: &[u8]) -> Result<Response, String> {
        let wire: WireResponse =
            serde_json::from_slice(line).map_err(|e| format!("not a reply: {e}"))?;
        match (wire.ok, wire.error) {
            (true, _) => Ok(Response::Ok(wire.data.unwrap_or(Value::Null))),
            (false, Some(error)) => Ok(Response::Error(error)),
            (false, None) => Err("a failed reply without an error".into()),
        }
    }
}

/// One line the server sends while streaming events.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamLine {
    /// `{"event":{...}}`: one feed event.
    Event(Value),
    /// `{"end":true}`: a non-following stream reached the head of the feed.
    End,
    /// An ordinary reply (the header, or the answer to an `ack`).
    Reply(Response),
}

impl StreamLine {
    /// The wire form with a trailing newline.
    pub fn to_line(&self) -> String {
        match self {
            StreamLine::Event(event) => {
                let mut line = serde_json::json!({ "event": event }).to_string();
                line.push('\n');
                line
            }
            StreamLine::End => "{\"end\":true}\n".to_string(),
            StreamLine::Reply(response) => response.to_line(),
        }
    }

    /// Parses a line received during streaming.
    pub fn parse(line: &[u8]) -> Result<StreamLine, String> {
        let value: Value = serde_json::from_slice(line).map_err(|e| format!("not JSON: {e}"))?;
        if let Some(event) = value.get("event") {
            return Ok(StreamLine::Event(event.clone()));
        }
        if value.get("end") == Some(&Value::Bool(true)) {
            return Ok(StreamLine::End);
        }
        Response::parse(line).map(StreamLine::Reply)
    }
}

/// The header reply that starts an event stream.
pub fn stream_header() -> Response {
    Response::Ok(serde_json::json!({ "streaming": true }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn all_requests() -> Vec<Request> {
        let account = || "work".to_string();
        vec![
            Request::Status,
            Request::Accounts,
            Request::Pause { account: account() },
            Request::Resume { account: account() },
            Request::SyncNow { account: account() },
            Request::Resync { account: account() },
            Request::DeepSync {
                account: account(),
                since: Some("2025-01-01".into()),
                until: None,
                folder: Some("INBOX".into()),
            },
            Request::Reload,
            Request::Shutdown,
            Request::Backup {
                path: "/tmp/b.msbk".into(),
            },
            Request::Events {
                consumer: "idx".into(),
                from: Some(7),
                follow: true,
            },
            Request::Events {
                consumer: "idx".into(),
                from: None,
                follow: false,
            },
            Request::Ack {
                consumer: "idx".into(),
                seq: 9,
            },
        ]
    }

    #[test]
    fn protocol_every_command_round_trips() -> Result<(), ErrorReply> {
        for request in all_requests() {
            let line = request.to_line();
            assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
            assert_eq!(
                Request::parse(line.trim_end().as_bytes())?,
                request,
                "{line}"
            );
            assert!(COMMANDS.contains(&request.name()));
        }
        Ok(())
    }

    #[test]
    fn protocol_documented_examples_parse() -> Result<(), ErrorReply> {
        let cases = [
            (r#"{"v":1,"cmd":"status"}"#, Request::Status),
            (
                r#"{"v":1,"cmd":"pause","account":"work"}"#,
                Request::Pause {
                    account: "work".into(),
                },
            ),
            (
                r#"{"v":1,"cmd":"sync-now","account":"a"}"#,
                Request::SyncNow {
                    account: "a".into(),
                },
            ),
            (
                r#"{"v":1,"cmd":"events","consumer":"name","from":3,"follow":true}"#,
                Request::Events {
                    consumer: "name".into(),
                    from: Some(3),
                    follow: true,
                },
            ),
            (
                r#"{"v":1,"cmd":"events","consumer":"name"}"#,
                Request::Events {
                    consumer: "name".into(),
                    from: None,
                    follow: false,
                },
            ),
            (
                r#"{"v":1,"cmd":"ack","consumer":"name","seq":12}"#,
                Request::Ack {
                    consumer: "name".into(),
                    seq: 12,
                },
            ),
            (
                r#"{"cmd":"status","v":1,"extra":"ignored"}"#,
                Request::Status,
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(Request::parse(line.as_bytes())?, expected, "{line}");
        }
        Ok(())
    }

    #[test]
    fn protocol_bad_input_is_classified() {
        let cases: &[(&[u8], ErrorCode)] = &[
            (b"", ErrorCode::BadRequest),
            (b"not json", ErrorCode::BadRequest),
            (b"{\"v\":1,\"cmd\":", ErrorCode::BadRequest),
            (b"\xff\xfe\x00garbage", ErrorCode::BadRequest),
            (b"[1,2]", ErrorCode::BadRequest),
            (b"{\"cmd\":\"status\"}", ErrorCode::BadRequest),
            (
                b"{\"v\":2,\"cmd\":\"status\"}",
                ErrorCode::UnsupportedVersion,
            ),
            (
                b"{\"v\":\"1\",\"cmd\":\"status\"}",
                ErrorCode::UnsupportedVersion,
            ),
            (b"{\"v\":1}", ErrorCode::BadRequest),
            (b"{\"v\":1,\"cmd\":7}", ErrorCode::BadRequest),
            (b"{\"v\":1,\"cmd\":\"explode\"}", ErrorCode::UnknownCommand),
            (b"{\"v\":1,\"cmd\":\"pause\"}", ErrorCode::BadRequest),
            (
                b"{\"v\":1,\"cmd\":\"pause\",\"account\":5}",
                ErrorCode::BadRequest,
            ),
            (
                b"{\"v\":1,\"cmd\":\"ack\",\"consumer\":\"c\",\"seq\":-1}",
                ErrorCode::BadRequest,
            ),
        ];
        for (line, code) in cases {
            let got = Request::parse(line).map_err(|e| e.code);
            assert_eq!(got, Err(*code), "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn protocol_responses_round_trip() -> Result<(), String> {
        let responses = [
            Response::ok(json!({"accounts": []})),
            Response::done(),
            Response::unknown_account("nope"),
            Response::error(ErrorCode::TooLarge, "line too long"),
        ];
        for response in responses {
            let line = response.to_line();
            assert_eq!(Response::parse(line.trim_end().as_bytes())?, response);
        }
        assert_eq!(
            Response::unknown_account("x").to_line(),
            "{\"ok\":false,\"error\":{\"code\":\"unknown_account\",\"message\":\"unknown account \\\"x\\\"\"}}\n"
        );
        assert_eq!(Response::done().to_line(), "{\"ok\":true,\"data\":null}\n");
        assert!(Response::parse(b"{\"ok\":false}").is_err());
        assert!(Response::parse(b"{}").is_err());
        Ok(())
    }

    #[test]
    fn protocol_stream_lines_round_trip() -> Result<(), String> {
        for line in [
            StreamLine::Event(json!({"seq": 1, "kind": "added"})),
            StreamLine::End,
            StreamLine::Reply(stream_header()),
            StreamLine::Reply(Response::error(ErrorCode::BadRequest, "x")),
        ] {
            let text = line.to_line();
            assert_eq!(StreamLine::parse(text.trim_end().as_bytes())?, line);
        }
        Ok(())
    }
}
