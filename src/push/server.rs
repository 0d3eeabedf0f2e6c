//! The push endpoint: an axum server on `[push] bind:port` (default 127.0.0.1; users put their
//! TLS proxy in front) with `POST /push/gmail` (Pub/Sub wrapped push) and `POST /push/calendar`
//! (Calendar channel notifications, handled by `super::calendar`). Owns request authentication (OIDC JWT via `jwt`, and/or
//! the shared `token` query parameter compared in constant time), the body size cap (413), and
//! the mapping of outcomes to statuses: 204 only after `DaemonCore::gmail_push` returned `Ok`
//! (the job is flushed); 401/403 for failed authentication, 400 for a malformed body, 503 when
//! the daemon could not record the push (Pub/Sub redelivers). Every refusal logs its reason;
//! no token or header value is ever logged.

use super::jwt::{AuthError, JwtVerifier};
use crate::config::PushConfig;
use crate::daemon_core::DaemonCore;
use crate::secret::Secret;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address is taken or not ours.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The verification token could not be resolved.
    #[error("push.verification_token: {0}")]
    Token(String),
    /// The JWT verifier could not be built.
    #[error("push JWT verifier: {0}")]
    Verifier(String),
}

/// How pushes are authenticated.
pub struct PushAuth {
    jwt: Option<JwtVerifier>,
    token_digest: Option<Secret<[u8; 32]>>,
}

impl PushAuth {
    /// From the `[push]` config; resolves the verification token now.
    pub fn from_config(cfg: &PushConfig) -> Result<Self, ServerError> {
        let jwt = cfg
            .jwt
            .clone()
            .map(JwtVerifier::new)
            .transpose()
            .map_err(ServerError::Verifier)?;
        let token_digest = match &cfg.verification_token {
            Some(r) => {
                let t = r.resolve().map_err(|e| ServerError::Token(e.to_string()))?;
                Some(Secret::new(Sha256::digest(t.expose().as_bytes()).into()))
            }
            None => None,
        };
        Ok(Self { jwt, token_digest })
    }

    /// The JWT verifier, if JWT mode is on.
    pub fn jwt(&self) -> Option<&JwtVerifier> {
        self.jwt.as_ref()
    }

    /// Checks a request: every configured mode must pass.
    pub async fn check(&self, headers: &HeaderMap, query: Option<&str>) -> Result<(), AuthError> {
        if let Some(digest) = &self.token_digest {
            let given = query.and_then(token_param).unwrap_or_default();
            let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
            if !constant_time_eq(&given, digest.expose()) {
                return Err(AuthError::BadVerificationToken);
            }
        }
        if let Some(jwt) = &self.jwt {
            let value = headers
                .get(header::AUTHORIZATION)
                .map(|v| v.to_str().unwrap_or(""));
            jwt.verify_header(value).await?;
        }
        Ok(())
    }
}

/// The `token` query parameter, percent-decoded.
fn token_param(query: &str) -> Option<String> {
    let url = reqwest::Url::parse(&format!("http://x/?{query}")).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

/// Compares two digests in constant time (`subtle`).
pub fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    use subtle::ConstantTimeEq as _;
    bool::from(a.ct_eq(b))
}

struct Shared {
    core: Arc<DaemonCore>,
    auth: PushAuth,
}

/// A bound push endpoint, ready to serve.
pub struct PushServer {
    listener: tokio::net::TcpListener,
    router: Router,
}

impl PushServer {
    /// Binds `addr` (must be called inside the tokio runtime).
    pub fn bind(
        addr: SocketAddr,
        cfg: &PushConfig,
        core: Arc<DaemonCore>,
    ) -> Result<Self, ServerError> {
        let auth = PushAuth::from_config(cfg)?;
        let std = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|source| ServerError::Bind { addr, source })?;
        let listener = tokio::net::TcpListener::from_std(std)
            .map_err(|source| ServerError::Bind { addr, source })?;
        let calendar = super::calendar::CalendarPush::new(
            super::calendar_channels::ChannelStore::new(core.store().clone()),
            super::calendar::DaemonTarget::new(core.clone()),
            cfg.calendar_debounce,
        );
        Ok(Self {
            listener,
            router: router(
                Arc::new(Shared { core, auth }),
                calendar,
                cfg.max_body_bytes,
            ),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> String {
        self.listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "?".into())
    }

    /// Serves until `cancel` fires.
    pub async fn serve(self, cancel: CancellationToken) {
        let result = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "Push endpoint stopped.");
        }
    }
}

fn router(
    shared: Arc<Shared>,
    calendar: Arc<super::calendar::CalendarPush>,
    max_body: usize,
) -> Router {
    Router::new()
        .route("/push/gmail", post(gmail))
        .with_state(shared)
        .merge(super::calendar::router(calendar))
        .layer(DefaultBodyLimit::max(max_body))
}

fn status(code: u16) -> Response {
    StatusCode::from_u16(code)
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        .into_response()
}

async fn gmail(
    State(s): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    if let Err(e) = s.auth.check(&headers, query.as_deref()).await {
        tracing::warn!(status = e.status(), reason = %e, "Push refused: authentication failed; nothing enqueued.");
        return status(e.status());
    }
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let code = e.status().as_u16();
            tracing::warn!(status = code, reason = %e.body_text(), "Push refused: unreadable body; nothing enqueued.");
            return status(code);
        }
    };
    let (n, message_id) = match super::decode_push_body(&body) {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(status = 400u16, reason = %e, "Push refused: malformed body; nothing enqueued.");
            return status(400);
        }
    };
    match super::deliver(&s.core, &n, "push", message_id.as_deref()).await {
        Ok(_) => status(204),
        Err(e) => {
            tracing::warn!(status = 503u16, email = %n.email, history_id = n.history_id, error = %e, "Push not recorded; Pub/Sub will redeliver.");
            status(503)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_param_is_percent_decoded() {
        assert_eq!(token_param("a=1&token=x%2By").as_deref(), Some("x+y"));
        assert_eq!(token_param("a=1"), None);
    }

    #[test]
    fn constant_time_eq_compares_everything() {
        let a = [1u8; 32];
        let mut b = a;
        assert!(constant_time_eq(&a, &b));
        b[31] = 2;
        assert!(!constant_time_eq(&a, &b));
    }
}
