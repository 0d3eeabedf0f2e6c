//! The IMAP client: the [`ImapPort`](mailsync_actors::imap::port::ImapPort) of an `imap`
//! account over async-imap (runtime-tokio) and rustls.
//!
//! - `stream.rs`: plain TCP or TLS (system roots or a CA file).
//! - `dial.rs`: opening a connection: TCP, TLS / STARTTLS, greeting, authentication,
//!   capabilities, ENABLE QRESYNC (authentication exchanges bounded like commands).
//! - `conn.rs`: one authenticated connection and every command with its timeout and error
//!   class.
//! - `auth.rs`: LOGIN / AUTHENTICATE PLAIN / XOAUTH2 (a fixed token, or a Google OAuth
//!   credential's token source with one refresh-and-retry).
//! - `pool.rs`: the per-account pool with its circuit breaker and reconnect backoff.
//! - `date.rs`: INTERNALDATE parsing.
//!
//! [`build_source`] turns validated settings into the account's `ImapSource`.

pub mod auth;
pub mod conn;
pub mod date;
pub mod dial;
pub mod errors;
pub mod pool;
pub mod stream;

use crate::config::{AccountConfig, GoogleAuth, ImapAuth, ImapCredential, ImapSettings, ImapTls};
use crate::google::auth::{OAuthCredentials, TokenSource};
use auth::AuthMethod;
use auth::Credential;
use dial::{ConnSettings, Security};
use mailsync_actors::imap::{ImapOptions, ImapSource};
use std::sync::Arc;

/// Builds the connection settings of an account (TLS configuration loaded here). `tokens` is
/// the token source of its OAuth credential (XOAUTH2), shared with the other accounts on it.
pub fn conn_settings(
    s: &ImapSettings,
    tokens: Option<Arc<TokenSource>>,
) -> Result<ConnSettings, String> {
    let security = match s.tls {
        ImapTls::Implicit => Security::Implicit(stream::tls_config(s.ca_file.as_deref())?),
        ImapTls::StartTls => Security::StartTls(stream::tls_config(s.ca_file.as_deref())?),
        ImapTls::None => Security::Plain,
    };
    let credential = match (&s.credential, tokens) {
        (ImapCredential::Password(password), _) => {
            let password = password.clone();
            Credential::Static(Arc::new(move || {
                password.resolve().map_err(|e| e.to_string())
            }))
        }
        (ImapCredential::OAuth(_), Some(tokens)) => Credential::OAuth(tokens),
        (ImapCredential::OAuth(_), None) => {
            return Err("the OAuth credential has no token source".into());
        }
    };
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
        credential,
        connect_timeout: s.connect_timeout,
        op_timeout: s.timeout,
    })
}

/// A token source of the account's own (when no shared one is offered).
fn own_token_source(account: &str, auth: &GoogleAuth) -> Result<Arc<TokenSource>, String> {
    let credentials = OAuthCredentials {
        client_id: auth.client_id.clone(),
        client_secret: auth.client_secret.resolve().map_err(|e| e.to_string())?,
        refresh_token: auth.refresh_token.resolve().map_err(|e| e.to_string())?,
    };
    let tokens = TokenSource::new(account.to_string(), credentials, auth.token_url.clone())
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(tokens))
}

/// The source of an `imap` account: its pool and options. `shared` is the token source its
/// OAuth credential already has (a Gmail account on the same credential), if any.
pub fn build_source(
    account: &AccountConfig,
    s: &ImapSettings,
    shared: Option<Arc<TokenSource>>,
) -> Result<ImapSource, String> {
    let tokens = match &s.credential {
        ImapCredential::Password(_) => None,
        ImapCredential::OAuth(auth) => {
            let tokens = match shared {
                Some(t) => t,
                None => own_token_source(&account.id, auth)?,
            };
            tokens.set_hooks(crate::token_sources::credential_hooks(auth));
            Some(tokens)
        }
    };
    let pool = pool::Pool::new(conn_settings(s, tokens.clone())?, s.connections);
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
