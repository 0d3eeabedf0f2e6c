//! The control socket: owns the admin protocol between `mailsync ctl` and the daemon, one JSON
//! object per line over a Unix socket.
//!
//! - `protocol`: the typed `Request`/`Response` and their line encoding (pure, unit-tested).
//! - `socket`: binding the socket file safely (0700 directory, 0600 socket, stale-socket
//!   replacement, "already running" detection) and removing it at shutdown.
//! - `server`: the accept loop; each connection is a task on the daemon's `TaskTracker` and
//!   talks to the daemon only through the `ControlHandler` trait.
//! - `client`: one-shot requests, the event-follow stream, table rendering and `run_ctl`, the
//!   body of `mailsync ctl`.
//!
//! Invariant: no secret crosses this module. Replies carry status snapshots and error
//! messages that are secret-free by construction (`AccountStatus::last_error`).

pub mod client;
pub mod discover;
pub mod limits;
pub mod protocol;
pub mod server;
pub mod socket;

use std::path::PathBuf;
use std::time::Duration;

pub use protocol::{ErrorCode, ErrorReply, Request, Response};
pub use server::{ControlHandler, EventStream, ServerOptions, serve, serve_with};

/// Errors of binding, connecting to and talking over the control socket.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Another daemon answers on the socket.
    #[error(
        "another mailsync daemon is already running on {} (stop it first, or use another socket_path)",
        .path.display()
    )]
    AlreadyRunning {
        /// The socket path.
        path: PathBuf,
    },
    /// Something that is not a socket sits at the socket path; we never delete it.
    #[error("{} exists and is not a socket; remove it or choose another socket_path", .path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// The socket's directory cannot be created.
    #[error("cannot create socket directory {}: {source}", .path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Binding, probing or securing the socket file failed.
    #[error("cannot bind control socket {}: {source}", .path.display())]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The client cannot connect (daemon not running, wrong path, permissions).
    #[error("cannot connect to {} (is the daemon running?): {source}", .path.display())]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The daemon did not answer in time.
    #[error("no answer from {} within {}s", .path.display(), .after.as_secs_f32())]
    Timeout {
        /// The socket path.
        path: PathBuf,
        /// The timeout that expired.
        after: Duration,
    },
    /// Reading or writing the connection failed.
    #[error("control connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// The daemon sent something that is not a valid reply, or closed the connection early.
    #[error("invalid reply from the daemon: {0}")]
    Protocol(String),
    /// The daemon answered with an error.
    #[error("{}: {}", .0.code.as_str(), .0.message)]
    Remote(ErrorReply),
}

impl ControlError {
    /// The exit status `mailsync ctl` should use: 2 when the request itself was wrong (unknown
    /// account or command, bad arguments), 1 otherwise (daemon down, timeouts, internal errors).
    pub fn exit_code(&self) -> i32 {
        match self {
            ControlError::Remote(reply) => match reply.code {
                ErrorCode::UnknownAccount
                | ErrorCode::UnknownCommand
                | ErrorCode::BadRequest
                | ErrorCode::TooLarge
                | ErrorCode::UnsupportedVersion => 2,
                ErrorCode::Busy | ErrorCode::Internal => 1,
            },
            _ => 1,
        }
    }
}
