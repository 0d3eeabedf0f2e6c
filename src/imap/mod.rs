//! The IMAP client: the [`ImapPort`](mailsync_actors::imap::port::ImapPort) of an `imap`
//! account over async-imap (runtime-tokio) and rustls.
//!
//! - `stream.rs`: plain TCP or TLS (system roots or a CA file).
//! - `conn.rs`: one connection: connect, STARTTLS, LOGIN / AUTHENTICATE PLAIN / XOAUTH2,
//!   capabilities, ENABLE QRESYNC, and every command with its timeout and error class.
//! - `pool.rs`: the per-account pool with its circuit breaker and reconnect backoff.
//! - `date.rs`: INTERNALDATE parsing.
//!
//! [`build_source`] turns validated settings into the account's `ImapSource`.

pub mod conn;
pub mod date;
pub mod pool;
pub mod stream;

use crate::config::{ImapAuth, ImapSettings, ImapTls};
use conn::{AuthMethod, ConnSettings, Security};
use mailsync_actors::imap::{ImapOptions, ImapSource};
use std::sync::Arc;

/// Builds the connection settings of an account (TLS configuration loaded here).
pub fn conn_settings(s: &ImapSettings) -> Result<ConnSettings, String> {
    let security = match s.tls {
        ImapTls::Implicit => Security::Implicit(stream::tls_config(s.ca_file.as_deref())?),
        ImapTls::StartTls => Security::StartTls(stream::tls_config(s.ca_file.as_deref())?),
        ImapTls::None => Security::Plain,
    };
    let password = s.password.clone();
    Ok(ConnSettings {
        host: s.host.clone(),
        port: s.port,
        security,
        username: s.username.clone(),
        auth: match s.auth {
            ImapAuth::Login => AuthMethod::Login,
            ImapAuth::Plain => AuthMethod::Plain,
            ImapAuth::XOAuth2 => AuthMethod::XOAuth2,
        },
        secret: Arc::new(move || password.resolve().map_err(|e| e.to_string())),
        connect_timeout: s.connect_timeout,
        op_timeout: s.timeout,
    })
}

/// The source of an `imap` account: its pool and options.
pub fn build_source(s: &ImapSettings) -> Result<ImapSource, String> {
    let pool = pool::Pool::new(conn_settings(s)?, s.connections);
    let options = ImapOptions {
        include: s.mailboxes.clone(),
        exclude: s.exclude.clone(),
        recent_first: s.recent_first,
        idle_folders: s.idle.clone(),
        idle_max: s.idle_max,
        poll_min: s.status_poll_min,
        poll_max: s.status_poll_max,
        ..ImapOptions::default()
    };
    Ok(ImapSource::new(Arc::new(pool), options))
}
