//! Google's token endpoint through the `oauth2` crate: the authorization-code exchange with
//! PKCE (the desktop flow, `oauth_flow.rs`) and the refresh grant (`auth.rs`). The crate
//! builds the form requests (client credentials in the body, as Google's desktop clients send
//! them) and parses the answers; the requests go out through our reqwest client by way of
//! [`TokenHttp`], which remembers the last answer's status, `Retry-After` and body, so a failed
//! grant is classified exactly like every token-endpoint answer (`classify_token`: 5xx and
//! 429 transient, `invalid_grant` disconnected, ...) — the crate's own errors carry neither
//! status nor `Retry-After`. No body of a token answer is ever excerpted (it may hold a token).

use super::error::{classify_token, classify_transport, malformed_json, parse_retry_after};
use mailsync_actors::error::ApiError;
use oauth2::basic::{BasicClient, BasicErrorResponse};
use oauth2::{
    AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet, HttpRequest, HttpResponse,
    RequestTokenError, TokenUrl,
};
use reqwest::header::RETRY_AFTER;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

/// A client that knows the token endpoint only (the refresh grant).
pub type TokenClient =
    BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// The grant's error as the crate reports it.
pub type GrantError = RequestTokenError<TransportFailed, BasicErrorResponse>;

/// A token-endpoint client for `client_id` (and its secret, sent in the form body).
pub fn token_client(
    client_id: &str,
    client_secret: Option<&str>,
    token_url: &str,
) -> Result<TokenClient, ApiError> {
    let url = TokenUrl::new(token_url.to_owned())
        .map_err(|e| ApiError::Internal(format!("invalid token_url: {e}")))?;
    let mut client = BasicClient::new(ClientId::new(client_id.to_owned()))
        .set_auth_type(AuthType::RequestBody)
        .set_token_uri(url);
    if let Some(secret) = client_secret {
        client = client.set_client_secret(ClientSecret::new(secret.to_owned()));
    }
    Ok(client)
}

/// The transport failed (the classified reason is kept in [`TokenHttp`]).
#[derive(Debug, thiserror::Error)]
#[error("token endpoint request failed")]
pub struct TransportFailed;

/// What the last exchange left behind.
#[derive(Debug)]
enum Last {
    Answer {
        status: u16,
        retry_after: Option<Duration>,
        body: Vec<u8>,
    },
    Transport(ApiError),
}

/// The `oauth2` crate's HTTP client for one grant: our reqwest client (no redirects followed,
/// as the crate's docs ask), with the last answer remembered for classification.
#[derive(Debug)]
pub struct TokenHttp {
    http: reqwest::Client,
    last: Mutex<Option<Last>>,
}

impl TokenHttp {
    /// Wraps `http` (which must not follow redirects).
    pub fn new(http: reqwest::Client) -> Self {
        Self {
            http,
            last: Mutex::new(None),
        }
    }

    fn remember(&self, last: Last) {
        *self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(last);
    }

    /// The HTTP status of the last answer (0 without one).
    pub fn last_status(&self) -> u16 {
        match &*self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            Some(Last::Answer { status, .. }) => *status,
            _ => 0,
        }
    }

    /// A failed grant, classified from the raw answer.
    pub fn classify(&self, err: &GrantError) -> ApiError {
        let last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match (last, err) {
            (Some(Last::Transport(e)), _) => e,
            (
                Some(Last::Answer {
                    status,
                    retry_after,
                    body,
                }),
                _,
            ) if !(200..300).contains(&status) => classify_token(status, retry_after, &body),
            (_, RequestTokenError::Parse(e, _)) => malformed_json("token response", e.inner(), b""),
            (_, RequestTokenError::ServerResponse(r)) => {
                ApiError::Malformed(format!("token response: 2xx with error {}", r.error()))
            }
            (_, other) => ApiError::Malformed(format!("token response: {other}")),
        }
    }
}

/// A redirect-free reqwest client for token requests.
pub fn grant_http(timeout: Duration) -> Result<reqwest::Client, ApiError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| ApiError::Internal(format!("building the HTTP client: {e}")))
}

impl<'c> oauth2::AsyncHttpClient<'c> for TokenHttp {
    type Error = TransportFailed;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, TransportFailed>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let mut builder = self
                .http
                .request(parts.method, parts.uri.to_string())
                .body(body);
            for (name, value) in &parts.headers {
                builder = builder.header(name, value);
            }
            let response = match builder.send().await {
                Ok(r) => r,
                Err(e) => {
                    self.remember(Last::Transport(classify_transport(&e)));
                    return Err(TransportFailed);
                }
            };
            let status = response.status();
            let headers = response.headers().clone();
            let body = match response.bytes().await {
                Ok(b) => b.to_vec(),
                Err(e) => {
                    self.remember(Last::Transport(classify_transport(&e)));
                    return Err(TransportFailed);
                }
            };
            self.remember(Last::Answer {
                status: status.as_u16(),
                retry_after: headers
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after),
                body: body.clone(),
            });
            // No headers are handed on: the body is judged by its JSON alone, as before (the
            // crate would refuse a JSON answer labelled `text/plain`).
            let mut out = HttpResponse::new(body);
            *out.status_mut() = status;
            Ok(out)
        })
    }
}
