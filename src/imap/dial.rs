//! Opening an IMAP connection ([`connect`]): TCP, implicit TLS or STARTTLS, the greeting,
//! authentication ([`crate::imap::auth`]), the capabilities and `ENABLE QRESYNC`, and the
//! settings all that needs ([`ConnSettings`]). The transport with the greeting, and then the
//! capabilities, are bounded by the connect timeout; each authentication exchange is a command,
//! bounded by the operation timeout.

use crate::imap::conn::{Conn, classify_bye, outcome_text};
use crate::imap::errors::{err, io_error, lib_error};
use crate::imap::stream::{ImapStream, start_tls};
use async_imap::imap_proto::{Response, Status};
use mailsync_actors::imap::port::{Capabilities, ImapError, ImapErrorClass};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// How the connection is secured.
#[derive(Clone)]
pub enum Security {
    /// TLS from the first byte.
    Implicit(Arc<rustls::ClientConfig>),
    /// Plain, then STARTTLS (required: a server without it is refused).
    StartTls(Arc<rustls::ClientConfig>),
    /// No TLS (config allows it only to loopback with `allow_plaintext`).
    Plain,
}

/// Everything needed to open a connection.
#[derive(Clone)]
pub struct ConnSettings {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Transport security.
    pub security: Security,
    /// Login name.
    pub username: String,
    /// Authentication mechanism.
    pub auth: crate::imap::auth::AuthMethod,
    /// The password or the access tokens.
    pub credential: crate::imap::auth::Credential,
    /// Bound of connect + TLS + greeting, and of the capabilities after authentication.
    pub connect_timeout: Duration,
    /// Bound of one command (each authentication exchange included).
    pub op_timeout: Duration,
}

/// Opens and authenticates a connection: the transport and greeting within `connect_timeout`,
/// each authentication exchange within `op_timeout` like any command (servers delay refusals
/// on purpose: Dovecot's `auth_failure_delay` and its per-address penalty, up to 15 s, must not
/// turn a refused token into a timeout), then the capabilities within `connect_timeout`.
pub async fn connect(s: &ConnSettings) -> Result<Conn, ImapError> {
    let client = within_connect_timeout(s, open(s)).await?;
    let session = crate::imap::auth::authenticate(
        client,
        &s.host,
        &s.username,
        s.auth,
        &s.credential,
        s.op_timeout,
    )
    .await?;
    within_connect_timeout(s, finish(session, s)).await
}

async fn within_connect_timeout<T>(
    s: &ConnSettings,
    step: impl std::future::Future<Output = Result<T, ImapError>>,
) -> Result<T, ImapError> {
    match tokio::time::timeout(s.connect_timeout, step).await {
        Ok(r) => r,
        Err(_) => Err(err(
            ImapErrorClass::Timeout,
            format!(
                "connecting to {}:{} took longer than {} s",
                s.host,
                s.port,
                s.connect_timeout.as_secs()
            ),
        )),
    }
}

async fn greeting(client: &mut async_imap::Client<ImapStream>) -> Result<(), ImapError> {
    let Some(resp) = client.read_response().await.map_err(|e| io_error(&e))? else {
        return Err(err(
            ImapErrorClass::Network,
            "connection closed before the greeting",
        ));
    };
    match resp.parsed() {
        Response::Data {
            status: Status::Ok | Status::PreAuth,
            ..
        } => Ok(()),
        Response::Data {
            status: Status::Bye,
            outcome,
        } => Err(classify_bye(&outcome_text(
            outcome.code.as_ref(),
            outcome.information.as_deref(),
        ))),
        other => Err(err(
            ImapErrorClass::Parse,
            format!("unexpected greeting: {other:?}"),
        )),
    }
}

/// TCP, TLS or STARTTLS, and the greeting.
async fn open(s: &ConnSettings) -> Result<async_imap::Client<ImapStream>, ImapError> {
    let tcp = TcpStream::connect((s.host.as_str(), s.port))
        .await
        .map_err(|e| {
            err(
                ImapErrorClass::Network,
                format!("cannot connect to {}:{}: {e}", s.host, s.port),
            )
        })?;
    let _ = tcp.set_nodelay(true);
    let client = match &s.security {
        Security::Implicit(cfg) => {
            let tls = start_tls(tcp, &s.host, cfg.clone()).await.map_err(|e| {
                err(
                    ImapErrorClass::Network,
                    format!("TLS handshake failed: {e}"),
                )
            })?;
            let mut c = async_imap::Client::new(tls);
            greeting(&mut c).await?;
            c
        }
        Security::StartTls(cfg) => {
            let mut c = async_imap::Client::new(ImapStream::Plain(tcp));
            greeting(&mut c).await?;
            c.run_command_and_check_ok("STARTTLS", None)
                .await
                .map_err(|e| err(ImapErrorClass::Network, format!("STARTTLS refused: {e}")))?;
            let ImapStream::Plain(tcp) = c.into_inner() else {
                return Err(err(ImapErrorClass::Network, "STARTTLS on a TLS stream"));
            };
            let tls = start_tls(tcp, &s.host, cfg.clone()).await.map_err(|e| {
                err(
                    ImapErrorClass::Network,
                    format!("TLS handshake failed: {e}"),
                )
            })?;
            async_imap::Client::new(tls)
        }
        Security::Plain => {
            let mut c = async_imap::Client::new(ImapStream::Plain(tcp));
            greeting(&mut c).await?;
            c
        }
    };
    Ok(client)
}

/// The capabilities of an authenticated session, and `ENABLE QRESYNC` when offered.
async fn finish(
    mut session: async_imap::Session<ImapStream>,
    s: &ConnSettings,
) -> Result<Conn, ImapError> {
    let caps = session.capabilities().await.map_err(|e| lib_error(&e))?;
    let mut capabilities = Capabilities {
        condstore: caps.has_str("CONDSTORE") || caps.has_str("QRESYNC"),
        qresync: caps.has_str("QRESYNC"),
        idle: caps.has_str("IDLE"),
    };
    if capabilities.qresync
        && session
            .run_command_and_check_ok("ENABLE QRESYNC")
            .await
            .is_err()
    {
        capabilities.qresync = false;
    }
    Ok(Conn::new(session, capabilities, s.op_timeout))
}
