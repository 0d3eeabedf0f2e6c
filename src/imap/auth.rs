//! How an IMAP connection proves who it is: `LOGIN` or `AUTHENTICATE PLAIN` with a password,
//! `AUTHENTICATE XOAUTH2` with a fixed access token (both read from their credential reference
//! at every connect), or `AUTHENTICATE XOAUTH2` with access tokens of a Google OAuth credential
//! ([`Credential::OAuth`], the token source a Gmail account on the same credential shares).
//!
//! A token the server refuses is refreshed ([`TokenSource::refresh_after_401`]) and tried once
//! more on the same connection; a second refusal is an `auth` error with the server's words
//! (its XOAUTH2 error JSON and the tagged NO), which marks the account `disconnected`. A token
//! endpoint that refuses the refresh token disconnects the same way; one in trouble is a
//! `network` error, retried with the pool's backoff. No secret reaches an error or a log line.
//!
//! Each exchange with the server (and a credential lookup) is bounded on its own, by the
//! operation timeout the caller passes; fetching an OAuth token is bounded by the token
//! source's HTTP client instead. A server that delays its refusals (Dovecot: 2 s, growing per
//! failure to 15 s) thus still gets an answer in, and a refusal stays a refusal.

use crate::google::auth::TokenSource;
use crate::imap::errors::{classify_refusal, err, lib_error, server_words};
use crate::imap::stream::ImapStream;
use crate::secret::Secret;
use mailsync_actors::error::ApiError;
use mailsync_actors::imap::port::{ImapError, ImapErrorClass};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Fetches the password or fixed access token (blocking: file, env or command).
pub type SecretSource = Arc<dyn Fn() -> Result<Secret<String>, String> + Send + Sync>;

/// Where a connection's password or access token comes from.
#[derive(Clone)]
pub enum Credential {
    /// Read at every connect: the password (LOGIN, PLAIN) or a fixed token (XOAUTH2).
    Static(SecretSource),
    /// Access tokens of a Google OAuth credential (XOAUTH2 only).
    OAuth(Arc<TokenSource>),
}

/// How to authenticate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// `LOGIN user pass`.
    Login,
    /// `AUTHENTICATE PLAIN`.
    Plain,
    /// `AUTHENTICATE XOAUTH2` with a bearer token.
    XOAuth2,
}

type Client = async_imap::Client<ImapStream>;
type Session = async_imap::Session<ImapStream>;

/// Answers SASL challenges: the payload to the first, an empty line to a second one (the
/// XOAUTH2 error JSON, kept in `said` for the error message), after which the server sends
/// its tagged NO.
struct Sasl {
    payload: Secret<Vec<u8>>,
    sent: bool,
    said: Arc<Mutex<Option<String>>>,
}

impl async_imap::Authenticator for Sasl {
    type Response = Vec<u8>;
    fn process(&mut self, challenge: &[u8]) -> Vec<u8> {
        if self.sent {
            let text: String = String::from_utf8_lossy(challenge)
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect();
            *self.said.lock().unwrap_or_else(PoisonError::into_inner) = Some(text);
            return Vec::new();
        }
        self.sent = true;
        self.payload.expose().clone()
    }
}

/// The server's refusal of a login: throttling stays throttling, anything else is `auth`.
fn refusal(e: async_imap::error::Error, said: Option<String>) -> ImapError {
    use async_imap::error::Error as E;
    match e {
        E::No(m) | E::Bad(m) => {
            let m = server_words(&m);
            let c = classify_refusal(&m);
            if c.class == ImapErrorClass::Throttle {
                return c;
            }
            let text = match said.filter(|s| !s.is_empty()) {
                Some(json) => format!("{m} (server said {json})"),
                None => m,
            };
            err(ImapErrorClass::Auth, text)
        }
        other => lib_error(&other),
    }
}

fn is_auth(e: &ImapError) -> bool {
    e.class == ImapErrorClass::Auth
}

/// A token source's failure as an IMAP error: a refused refresh token disconnects the account,
/// trouble at the token endpoint is retried like a network failure.
fn token_error(e: ApiError) -> ImapError {
    match e {
        ApiError::Disconnected(reason) => err(
            ImapErrorClass::Auth,
            format!("OAuth token refresh failed: {reason}"),
        ),
        other => err(
            ImapErrorClass::Network,
            format!("no OAuth access token yet: {other}"),
        ),
    }
}

/// A failed exchange: the error, and the connection when it can take another attempt (after
/// a refusal; not after a timeout or a broken stream), boxed to keep the result small.
type Failed = (ImapError, Option<Box<Client>>);

/// `what` within `timeout`, else a `timeout` error naming it.
async fn bounded<T>(
    timeout: Duration,
    what: &str,
    step: impl Future<Output = Result<T, ImapError>>,
) -> Result<T, ImapError> {
    tokio::time::timeout(timeout, step)
        .await
        .unwrap_or_else(|_| {
            Err(err(
                ImapErrorClass::Timeout,
                format!("{what} took longer than {} s", timeout.as_secs()),
            ))
        })
}

async fn sasl(
    client: Client,
    mechanism: &str,
    payload: Secret<Vec<u8>>,
    timeout: Duration,
) -> Result<Session, Failed> {
    let said = Arc::new(Mutex::new(None));
    let auth = Sasl {
        payload,
        sent: false,
        said: said.clone(),
    };
    let exchange = async {
        client
            .authenticate(mechanism, auth)
            .await
            .map_err(|(e, c)| {
                let said = said.lock().unwrap_or_else(PoisonError::into_inner).take();
                (refusal(e, said), Some(Box::new(c)))
            })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| {
            let e = err(
                ImapErrorClass::Timeout,
                format!(
                    "AUTHENTICATE {mechanism} took longer than {} s",
                    timeout.as_secs()
                ),
            );
            Err((e, None))
        })
}

fn xoauth2_static(user: &str, token: &Secret<String>) -> Secret<Vec<u8>> {
    let mut out = Vec::new();
    out.extend_from_slice(b"user=");
    out.extend_from_slice(user.as_bytes());
    out.extend_from_slice(b"\x01auth=Bearer ");
    out.extend_from_slice(token.expose().as_bytes());
    out.extend_from_slice(b"\x01\x01");
    Secret::new(out)
}

/// Authenticates `client` as `username` with `method` and `credential` (`host` is for logs),
/// each exchange within `timeout`.
pub(crate) async fn authenticate(
    client: Client,
    host: &str,
    username: &str,
    method: AuthMethod,
    credential: &Credential,
    timeout: Duration,
) -> Result<Session, ImapError> {
    let tokens = match credential {
        Credential::OAuth(tokens) => tokens.clone(),
        Credential::Static(source) => {
            let source = source.clone();
            let lookup = async {
                tokio::task::spawn_blocking(move || source())
                    .await
                    .map_err(|e| {
                        err(
                            ImapErrorClass::Auth,
                            format!("credential lookup failed: {e}"),
                        )
                    })?
                    .map_err(|e| err(ImapErrorClass::Auth, e))
            };
            let secret = bounded(timeout, "the credential lookup", lookup).await?;
            return authenticate_static(client, username, method, &secret, timeout).await;
        }
    };
    if method != AuthMethod::XOAuth2 {
        return Err(err(
            ImapErrorClass::Auth,
            "an OAuth credential can only be used with auth = \"xoauth2\"",
        ));
    }
    let token = tokens.access_token().await.map_err(token_error)?;
    let payload = token.xoauth2_response(username);
    let (refused, client) = match sasl(client, "XOAUTH2", payload, timeout).await {
        Ok(session) => return Ok(session),
        Err((e, Some(client))) if is_auth(&e) => (e, *client),
        Err((e, _)) => return Err(e),
    };
    tracing::info!(host = %host, error = %refused, "XOAUTH2 token refused; refreshing it and trying once more.");
    let fresh = tokens
        .refresh_after_refusal(&token, Some(&refused.message))
        .await
        .map_err(|e| match e {
            // The source's reason already names the refusal (for every connection alike).
            ApiError::Disconnected(_) => token_error(e),
            other => {
                let e = token_error(other);
                let text = format!(
                    "{} (after the server refused the token: {})",
                    e.message, refused.message
                );
                err(e.class, text)
            }
        })?;
    sasl(client, "XOAUTH2", fresh.xoauth2_response(username), timeout)
        .await
        .map_err(|(e, _)| e)
}

async fn authenticate_static(
    client: Client,
    username: &str,
    method: AuthMethod,
    secret: &Secret<String>,
    timeout: Duration,
) -> Result<Session, ImapError> {
    let result = match method {
        AuthMethod::Login => {
            let login = async {
                client
                    .login(username, secret.expose())
                    .await
                    .map_err(|(e, _)| refusal(e, None))
            };
            return bounded(timeout, "LOGIN", login).await;
        }
        AuthMethod::Plain => {
            let mut payload = vec![0];
            payload.extend_from_slice(username.as_bytes());
            payload.push(0);
            payload.extend_from_slice(secret.expose().as_bytes());
            sasl(client, "PLAIN", Secret::new(payload), timeout).await
        }
        AuthMethod::XOAuth2 => {
            sasl(client, "XOAUTH2", xoauth2_static(username, secret), timeout).await
        }
    };
    result.map_err(|(e, _)| e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_token_makes_the_xoauth2_response_and_is_never_printed() {
        let p = xoauth2_static("me@example.org", &Secret::new("ya29.abc".into()));
        assert_eq!(
            p.expose().as_slice(),
            b"user=me@example.org\x01auth=Bearer ya29.abc\x01\x01"
        );
        assert!(!format!("{p:?}").contains("ya29"));
    }

    #[test]
    fn refusals_keep_the_servers_words_and_throttling() {
        let e = refusal(
            async_imap::error::Error::No("[AUTHENTICATIONFAILED] Authentication failed.".into()),
            Some(r#"{"status":"401","schemes":"bearer"}"#.into()),
        );
        assert_eq!(e.class, ImapErrorClass::Auth);
        assert!(e.message.contains("AUTHENTICATIONFAILED"), "{}", e.message);
        assert!(e.message.contains(r#""status":"401""#), "{}", e.message);
        let t = refusal(
            async_imap::error::Error::No("[UNAVAILABLE] Temporary failure".into()),
            None,
        );
        assert_eq!(t.class, ImapErrorClass::Throttle);
    }

    /// A loopback server that greets, takes `AUTHENTICATE XOAUTH2` and its payload, waits
    /// `delay` (as Dovecot does before a refusal), then sends the XOAUTH2 error JSON and, after
    /// the client's empty line, the tagged NO. Returns a client past the greeting.
    async fn slow_refuser(delay: Duration) -> Client {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let (r, mut w) = sock.into_split();
            let mut lines = BufReader::new(r).lines();
            let _ = w.write_all(b"* OK ready\r\n").await;
            let Ok(Some(cmd)) = lines.next_line().await else {
                return;
            };
            let tag = cmd.split(' ').next().unwrap_or("*").to_string();
            let _ = w.write_all(b"+ \r\n").await;
            let _ = lines.next_line().await;
            tokio::time::sleep(delay).await;
            let json = "eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJtYWlsIn0=";
            let _ = w.write_all(format!("+ {json}\r\n").as_bytes()).await;
            let _ = lines.next_line().await;
            let no = format!("{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
            let _ = w.write_all(no.as_bytes()).await;
            let _ = lines.next_line().await;
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut client = async_imap::Client::new(ImapStream::Plain(tcp));
        client.read_response().await.expect("greeting");
        client
    }

    #[tokio::test]
    async fn a_delayed_refusal_is_a_refusal_within_the_bound_and_a_timeout_beyond_it() {
        let token: SecretSource = Arc::new(|| Ok(Secret::new("ya29.fixed".to_string())));
        let fixed = Credential::Static(token);
        let delay = Duration::from_millis(400);
        let refused = authenticate(
            slow_refuser(delay).await,
            "h",
            "me@example.org",
            AuthMethod::XOAuth2,
            &fixed,
            Duration::from_secs(10),
        )
        .await
        .expect_err("refused");
        assert_eq!(refused.class, ImapErrorClass::Auth, "{}", refused.message);
        assert!(
            refused.message.contains("AUTHENTICATIONFAILED")
                && refused.message.contains(r#""status":"401""#),
            "{}",
            refused.message
        );
        assert!(!refused.message.contains("ya29"), "{}", refused.message);
        let late = authenticate(
            slow_refuser(delay).await,
            "h",
            "me@example.org",
            AuthMethod::XOAuth2,
            &fixed,
            Duration::from_millis(100),
        )
        .await
        .expect_err("timed out");
        assert_eq!(late.class, ImapErrorClass::Timeout, "{}", late.message);
    }

    #[test]
    fn a_refused_refresh_token_disconnects_and_endpoint_trouble_is_retried() {
        let e = token_error(ApiError::Disconnected("invalid_grant: revoked".into()));
        assert_eq!(e.class, ImapErrorClass::Auth);
        let t = token_error(ApiError::Transient("token endpoint 503".into()));
        assert_eq!(t.class, ImapErrorClass::Network);
    }
}
