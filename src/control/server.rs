//! The control server: owns the accept loop and the per-connection protocol state machine.
//! The daemon's state is reached only through `ControlHandler`, which the daemon implements.
//!
//! Each connection is a task on the daemon's `TaskTracker`, so shutdown can wait for them;
//! every task also watches the `CancellationToken`, so an idle or streaming client never holds
//! shutdown up. Limits protect the daemon from misbehaving clients: lines longer than
//! `max_line` get a `too_large` reply and the connection is closed; a client that sends
//! nothing for `idle_timeout` is disconnected; a client that does not read our replies for
//! `write_timeout` is disconnected; connections beyond `max_connections` get a `busy` reply and
//! are closed. Malformed requests get an error reply and the connection stays usable.
//!
//! Events: a `{"cmd":"events",...}` request is routed to `ControlHandler::events`, which
//! returns a stream. The server replies with a header `{"ok":true,"data":{"streaming":true}}`,
//! writes each item as `{"event":...}`, and when the stream ends (a non-following read reached
//! the head) writes `{"end":true}` and goes back to ordinary request/reply. While streaming,
//! the only accepted request is `ack` (answered with an ordinary reply line, interleaved with
//! events); the client stops a following stream by closing the connection. The idle timeout
//! does not apply while streaming.

use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, Stream, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::protocol::{self, ErrorCode, ErrorReply, Request, Response, StreamLine};

/// A stream of feed events (already serialized by the daemon, secret-free).
pub type EventStream = Pin<Box<dyn Stream<Item = Value> + Send>>;

/// A boxed future borrowing the handler.
pub type HandlerFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the daemon implements to answer control requests.
pub trait ControlHandler: Send + Sync {
    /// Answers one request. Never receives `Request::Events` (see `events`). Implementations
    /// should bound their own waits (actor RPC timeouts); the server does not time them out.
    fn handle(&self, req: Request) -> HandlerFuture<'_, Response>;

    /// Opens the change feed for `consumer` from `from` (or after its last ack). Without
    /// `follow` the stream must end once it reaches the current head; with `follow` it stays
    /// open and yields new events as they are committed. The default refuses.
    fn events(
        &self,
        consumer: String,
        from: Option<u64>,
        follow: bool,
    ) -> HandlerFuture<'_, Result<EventStream, ErrorReply>> {
        let _ = (consumer, from, follow);
        Box::pin(async {
            Err(ErrorReply::new(
                ErrorCode::UnknownCommand,
                "this daemon does not serve the change feed",
            ))
        })
    }
}

/// Server limits; `Default` gives the production values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerOptions {
    /// Request/response connections served at once (default 128); when all are taken, the
    /// connection idle the longest is closed to make room (see `limits.rs`).
    pub max_connections: usize,
    /// `events --follow` streams served at once, on top of `max_connections` (default 256).
    pub max_streams: usize,
    /// Longest accepted request line (default `protocol::MAX_LINE`, 64 KiB).
    pub max_line: usize,
    /// A client silent for this long outside a stream is disconnected (default 30 s).
    pub idle_timeout: Duration,
    /// A client that does not take a reply within this long is disconnected (default 10 s).
    pub write_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_connections: 128,
            max_streams: 256,
            max_line: protocol::MAX_LINE,
            idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves the control socket with default limits until `cancel` fires.
pub async fn serve(
    listener: UnixListener,
    handler: Arc<dyn ControlHandler>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    serve_with(listener, handler, cancel, tracker, ServerOptions::default()).await;
}

/// Serves the control socket with explicit limits until `cancel` fires. Returns once the
/// listener stops accepting; connection tasks finish on `tracker` (they watch `cancel` too).
pub async fn serve_with(
    listener: UnixListener,
    handler: Arc<dyn ControlHandler>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    opts: ServerOptions,
) {
    // One admission per live connection; it travels into its connection task and gives its
    // slot back when that task ends, however it ends.
    let slots = super::limits::Slots::new(opts.max_connections, opts.max_streams);
    loop {
        // Accepting races the token so shutdown never waits for a new client.
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Usually EMFILE/ENFILE: back off briefly instead of spinning.
                tracing::warn!(%error, "Control socket accept failed.");
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        let peer = peer_label(&stream);
        match slots.admit().await {
            Some(admission) => {
                let conn = Connection {
                    handler: handler.clone(),
                    cancel: cancel.clone(),
                    opts: opts.clone(),
                    peer,
                    slots: slots.clone(),
                };
                tracker.spawn(async move {
                    conn.run(stream, admission).await;
                });
            }
            None => {
                tracing::warn!(peer = %peer, max = opts.max_connections, "Control connection refused: too many connections.");
                let write_timeout = opts.write_timeout;
                tracker.spawn(async move {
                    let (_, mut writer) = stream.into_split();
                    let reply = Response::error(
                        ErrorCode::Busy,
                        "too many control connections; try again later",
                    );
                    let _ = send(&mut writer, &reply.to_line(), write_timeout).await;
                });
            }
        }
    }
    tracing::debug!("Control socket stopped accepting.");
}

fn peer_label(stream: &UnixStream) -> String {
    match stream.peer_cred() {
        Ok(cred) => match cred.pid() {
            Some(pid) => format!("uid={} pid={pid}", cred.uid()),
            None => format!("uid={}", cred.uid()),
        },
        Err(_) => "unknown".to_string(),
    }
}

/// Whether the connection goes on after a step.
enum Flow {
    Continue,
    Close,
}

/// One client connection's task state.
struct Connection {
    handler: Arc<dyn ControlHandler>,
    cancel: CancellationToken,
    opts: ServerOptions,
    peer: String,
    slots: Arc<super::limits::Slots>,
}

impl Connection {
    async fn run(self, stream: UnixStream, mut admission: super::limits::Admission) {
        tracing::debug!(peer = %self.peer, "Control connection opened.");
        let (reader, mut writer) = stream.into_split();
        let mut reader = LineReader::new(reader, self.opts.max_line);
        loop {
            // Waiting for the next request races shutdown, the idle timeout and eviction (the
            // server needs this idle connection's slot for a new one).
            self.slots.idle(&admission);
            let next = tokio::select! {
                _ = self.cancel.cancelled() => break,
                _ = admission.evicted().cancelled() => {
                    tracing::debug!(peer = %self.peer, "Idle control connection closed to make room.");
                    break;
                }
                next = tokio::time::timeout(self.opts.idle_timeout, reader.next_line()) => next,
            };
            self.slots.busy(&admission);
            let line = match next {
                Err(_) => {
                    tracing::debug!(peer = %self.peer, "Control connection idle; closing.");
                    break;
                }
                Ok(Ok(Some(line))) => line,
                Ok(Ok(None)) => break,
                Ok(Err(LineError::TooLarge)) => {
                    self.too_large(&mut writer).await;
                    break;
                }
                Ok(Err(LineError::Io(error))) => {
                    tracing::debug!(peer = %self.peer, %error, "Control connection read failed.");
                    break;
                }
            };
            if line.is_empty() {
                continue;
            }
            let flow = match Request::parse(&line) {
                Err(error) => {
                    tracing::debug!(peer = %self.peer, error = %error.message, "Bad control request.");
                    self.reply(&mut writer, &Response::Error(error)).await
                }
                Ok(Request::Events {
                    consumer,
                    from,
                    follow,
                }) => {
                    if follow && !self.slots.start_stream(&mut admission) {
                        tracing::warn!(peer = %self.peer, max = self.opts.max_streams, "Event stream refused: too many streams.");
                        let reply = Response::error(
                            ErrorCode::Busy,
                            "too many event streams; try again later",
                        );
                        self.reply(&mut writer, &reply).await
                    } else {
                        match self
                            .stream_events(&mut reader, &mut writer, consumer, from, follow)
                            .await
                        {
                            // A stream gave its request slot away: it does not come back.
                            Flow::Continue if !admission.has_request_slot() => Flow::Close,
                            flow => flow,
                        }
                    }
                }
                Ok(request) => {
                    let response = self.dispatch(request).await;
                    self.reply(&mut writer, &response).await
                }
            };
            if let Flow::Close = flow {
                break;
            }
        }
        tracing::debug!(peer = %self.peer, "Control connection closed.");
    }

    /// Runs the handler, turning a panic into an `internal` reply: one bad request must not
    /// take the connection (or, through a poisoned state, the server) down silently.
    async fn dispatch(&self, request: Request) -> Response {
        let cmd = request.name();
        tracing::debug!(peer = %self.peer, cmd, account = request.account(), "Control request received.");
        match AssertUnwindSafe(self.handler.handle(request))
            .catch_unwind()
            .await
        {
            Ok(response) => {
                if let Response::Error(error) = &response {
                    tracing::info!(peer = %self.peer, cmd, code = error.code.as_str(), error = %error.message, "Control request failed.");
                }
                response
            }
            Err(_) => {
                tracing::error!(peer = %self.peer, cmd, "Control handler panicked.");
                Response::error(
                    ErrorCode::Internal,
                    format!("the daemon failed to answer {cmd}"),
                )
            }
        }
    }

    async fn reply(&self, writer: &mut OwnedWriteHalf, response: &Response) -> Flow {
        match send(writer, &response.to_line(), self.opts.write_timeout).await {
            Ok(()) => Flow::Continue,
            Err(error) => {
                tracing::debug!(peer = %self.peer, %error, "Control reply not delivered; closing.");
                Flow::Close
            }
        }
    }

    async fn too_large(&self, writer: &mut OwnedWriteHalf) {
        tracing::warn!(peer = %self.peer, max = self.opts.max_line, "Control request too large; closing.");
        let response = Response::error(
            ErrorCode::TooLarge,
            format!("request line longer than {} bytes", self.opts.max_line),
        );
        let _ = self.reply(writer, &response).await;
    }

    async fn stream_events<R: AsyncRead + Unpin>(
        &self,
        reader: &mut LineReader<R>,
        writer: &mut OwnedWriteHalf,
        consumer: String,
        from: Option<u64>,
        follow: bool,
    ) -> Flow {
        tracing::debug!(peer = %self.peer, cmd = "events", consumer = %consumer, ?from, follow, "Control request received.");
        let opened = AssertUnwindSafe(self.handler.events(consumer.clone(), from, follow))
            .catch_unwind()
            .await;
        let mut events = match opened {
            Ok(Ok(events)) => events,
            Ok(Err(error)) => return self.reply(writer, &Response::Error(error)).await,
            Err(_) => {
                tracing::error!(peer = %self.peer, cmd = "events", "Control handler panicked.");
                let response = Response::error(ErrorCode::Internal, "cannot open the feed");
                return self.reply(writer, &response).await;
            }
        };
        if let Flow::Close = self.reply(writer, &protocol::stream_header()).await {
            return Flow::Close;
        }
        loop {
            // Three things can happen while streaming: shutdown, a new event, or a line from
            // the client (an ack). `next_line` and `next` are cancel-safe, so losing a race
            // loses no data.
            tokio::select! {
                _ = self.cancel.cancelled() => return Flow::Close,
                event = events.next() => {
                    let line = match event {
                        Some(event) => StreamLine::Event(event),
                        None => StreamLine::End,
                    };
                    let end = matches!(line, StreamLine::End);
                    if let Err(error) = send(writer, &line.to_line(), self.opts.write_timeout).await {
                        tracing::debug!(peer = %self.peer, %error, "Event not delivered; closing.");
                        return Flow::Close;
                    }
                    if end {
                        return Flow::Continue;
                    }
                }
                line = reader.next_line() => {
                    let line = match line {
                        Ok(Some(line)) => line,
                        Ok(None) | Err(LineError::Io(_)) => return Flow::Close,
                        Err(LineError::TooLarge) => {
                            self.too_large(writer).await;
                            return Flow::Close;
                        }
                    };
                    if line.is_empty() {
                        continue;
                    }
                    let response = match Request::parse(&line) {
                        Ok(ack @ Request::Ack { .. }) => self.dispatch(ack).await,
                        Ok(other) => Response::error(
                            ErrorCode::BadRequest,
                            format!("only ack is accepted while events stream, not {}", other.name()),
                        ),
                        Err(error) => Response::Error(error),
                    };
                    if let Flow::Close = self.reply(writer, &response).await {
                        return Flow::Close;
                    }
                }
            }
        }
    }
}

/// Writes one line, bounded by `timeout` so a client that stops reading cannot pin the task.
async fn send(writer: &mut OwnedWriteHalf, line: &str, timeout: Duration) -> io::Result<()> {
    match tokio::time::timeout(timeout, writer.write_all(line.as_bytes())).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "client did not read its reply",
        )),
    }
}

/// Why a line could not be read.
#[derive(Debug)]
pub(crate) enum LineError {
    /// More than `max` bytes without a newline.
    TooLarge,
    /// The connection failed.
    Io(io::Error),
}

/// Splits a byte stream into `\n`-terminated lines of bounded length. Cancel-safe: the only
/// await is a `read_buf` into the owned buffer, so a dropped `next_line` loses nothing.
pub(crate) struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    /// Bytes of `buf` already known to hold no newline.
    scanned: usize,
    max: usize,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub(crate) fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner,
            buf: Vec::new(),
            scanned: 0,
            max,
        }
    }

    /// The next line without its `\n` (and `\r`), `None` at end of stream. A partial line
    /// at the end of the stream is dropped: the client went away mid-request.
    pub(crate) async fn next_line(&mut self) -> Result<Option<Vec<u8>>, LineError> {
        loop {
            if let Some(pos) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
                let end = self.scanned + pos;
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                self.scanned = 0;
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.len() > self.max {
                    return Err(LineError::TooLarge);
                }
                return Ok(Some(line));
            }
            self.scanned = self.buf.len();
            if self.buf.len() > self.max {
                return Err(LineError::TooLarge);
            }
            self.buf.reserve(8 * 1024);
            match self.inner.read_buf(&mut self.buf).await {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(error) => return Err(LineError::Io(error)),
            }
        }
    }
}

#[cfg(test)]
mod tests;
