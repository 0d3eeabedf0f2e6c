//! OAuth access tokens for one account: [`TokenSource`] holds the client id, the client secret
//! and the refresh token, trades the refresh token for access tokens at the token endpoint
//! (reference gmail-api.md §5.3), keeps the current access token in memory only, refreshes it
//! shortly before expiry and after a 401, and makes concurrent callers share one refresh.
//!
//! This is the only module (with `oauth_flow`) that reads a secret: callers get a
//! [`BearerToken`] whose header value is marked sensitive and whose `Debug` is redacted.
//! An `invalid_grant` answer disconnects the source: later calls fail at once with
//! `ApiError::Disconnected`, without asking Google again, until [`TokenSource::reconnect`]
//! (`ctl resume`, `ctl reload`, `mailsync auth` on a running daemon) re-resolves the
//! credentials through the account's [`CredentialHooks`] and clears it.
//!
//! A token endpoint in trouble (5xx, timeouts, cut or non-JSON answers) is asked again only
//! after a capped, jittered cool-down ([`RetryPolicy`], shared by every caller of the source),
//! so however many children wait for a token, the endpoint sees a bounded number of requests;
//! the error is handed to callers meanwhile, which shows the account `degraded`. A refresh
//! token the endpoint rotates is handed to the hooks to be persisted.

use super::token_endpoint::{TokenHttp, token_client};
use crate::secret::Secret;
use mailsync_actors::backoff::{Jitter, RetryPolicy};
use mailsync_actors::error::ApiError;
use oauth2::{RefreshToken, TokenResponse as _};
use reqwest::header::HeaderValue;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Google's token endpoint.
pub const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";

/// How long before its expiry an access token is replaced.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(120);

/// An OAuth client's credentials plus one user's refresh token.
#[derive(Clone, Debug)]
pub struct OAuthCredentials {
    /// The OAuth client id (not secret; also keys the per-project quota).
    pub client_id: String,
    /// The OAuth client secret.
    pub client_secret: Secret<String>,
    /// The user's refresh token.
    pub refresh_token: Secret<String>,
}

/// An access token ready to be sent. `generation` tells [`TokenSource::refresh_after_401`]
/// which token the server rejected.
#[derive(Clone)]
pub struct BearerToken {
    header: HeaderValue,
    generation: u64,
}

impl BearerToken {
    /// The `Authorization` header value (`Bearer …`), marked sensitive.
    pub fn header_value(&self) -> HeaderValue {
        self.header.clone()
    }

    /// Which refresh produced this token.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The SASL XOAUTH2 initial response for `user` (before base64):
    /// `user=<user>^Aauth=Bearer <token>^A^A`, for IMAP's `AUTHENTICATE XOAUTH2`.
    pub fn xoauth2_response(&self, user: &str) -> Secret<Vec<u8>> {
        let mut out = Vec::with_capacity(user.len() + self.header.len() + 16);
        out.extend_from_slice(b"user=");
        out.extend_from_slice(user.as_bytes());
        out.extend_from_slice(b"\x01auth=");
        out.extend_from_slice(self.header.as_bytes());
        out.extend_from_slice(b"\x01\x01");
        Secret::new(out)
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerToken")
            .field("header", &"[redacted]")
            .field("generation", &self.generation)
            .finish()
    }
}

struct Current {
    token: BearerToken,
    refresh_at: Instant,
}

struct State {
    client_secret: Secret<String>,
    refresh_token: Secret<String>,
    current: Option<Current>,
    generation: u64,
    disconnected: Option<String>,
    /// Consecutive transient refresh failures, and until when the endpoint is left alone.
    failures: u32,
    cool_down: Option<(Instant, ApiError)>,
}

/// Re-resolves an account's client secret and refresh token (file, env or command) when it
/// reconnects; returns a secret-free error.
pub type Resolve = dyn Fn() -> Result<(Secret<String>, Secret<String>), String> + Send + Sync;

/// Stores a refresh token the endpoint rotated; returns a secret-free error.
pub type Persist = dyn Fn(&Secret<String>) -> Result<(), String> + Send + Sync;

/// How a source gets fresh credentials and keeps rotated ones (set by the port builder).
#[derive(Clone)]
pub struct CredentialHooks {
    /// Reads the credentials again.
    pub resolve: Arc<Resolve>,
    /// Keeps a rotated refresh token, if the reference can be written (a file).
    pub persist: Option<Arc<Persist>>,
}

/// The cool-down between refresh attempts while the endpoint fails transiently.
fn cool_down_policy() -> RetryPolicy {
    RetryPolicy::unlimited(
        Duration::from_secs(1),
        Duration::from_secs(60),
        Jitter::Full,
    )
}

/// Hands out access tokens for one account. Cheap to share behind an `Arc`.
pub struct TokenSource {
    client_id: String,
    token_url: String,
    account: String,
    http: reqwest::Client,
    state: Mutex<State>,
    hooks: OnceLock<CredentialHooks>,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("client_id", &self.client_id)
            .field("token_url", &self.token_url)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

/// The HTTP client of token requests: rustls, a 30 s timeout (10 s to connect), no redirects.
pub fn token_http() -> Result<reqwest::Client, ApiError> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| ApiError::Internal(format!("building the HTTP client: {e}")))
}

impl TokenSource {
    /// A source for `account` (used in logs only) that refreshes at `token_url` with its own
    /// HTTP client (rustls, 30 s timeout).
    pub fn new(
        account: impl Into<String>,
        credentials: OAuthCredentials,
        token_url: impl Into<String>,
    ) -> Result<Self, ApiError> {
        Ok(Self::with_http(
            account,
            credentials,
            token_url,
            token_http()?,
        ))
    }

    /// Same, on a caller-supplied HTTP client.
    pub fn with_http(
        account: impl Into<String>,
        credentials: OAuthCredentials,
        token_url: impl Into<String>,
        http: reqwest::Client,
    ) -> Self {
        Self {
            client_id: credentials.client_id,
            token_url: token_url.into(),
            account: account.into(),
            http,
            state: Mutex::new(State {
                client_secret: credentials.client_secret,
                refresh_token: credentials.refresh_token,
                current: None,
                generation: 0,
                disconnected: None,
                failures: 0,
                cool_down: None,
            }),
            hooks: OnceLock::new(),
        }
    }

    /// Installs how this source re-reads and persists its credentials (once).
    pub fn set_hooks(&self, hooks: CredentialHooks) {
        let _ = self.hooks.set(hooks);
    }

    /// Starts over: re-resolves the credentials (when hooks are set), forgets the cached
    /// access token, the disconnection and any cool-down. The next call refreshes. A failing
    /// resolution leaves the source as it was and returns `Disconnected` with the reason.
    pub async fn reconnect(&self) -> Result<(), ApiError> {
        let fresh = match self.hooks.get() {
            Some(hooks) => {
                let resolve = hooks.resolve.clone();
                let got = tokio::task::spawn_blocking(move || resolve())
                    .await
                    .map_err(|e| ApiError::Internal(format!("credential task: {e}")))?;
                Some(got.map_err(ApiError::Disconnected)?)
            }
            None => None,
        };
        let mut state = self.state.lock().await;
        if let Some((secret, refresh)) = fresh {
            state.client_secret = secret;
            state.refresh_token = refresh;
        }
        state.current = None;
        state.disconnected = None;
        state.failures = 0;
        state.cool_down = None;
        tracing::info!(account = %self.account, "Credentials re-read; the token source starts over.");
        Ok(())
    }

    /// The OAuth client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Why the source is disconnected, if it is.
    pub async fn disconnected(&self) -> Option<String> {
        self.state.lock().await.disconnected.clone()
    }

    /// A valid access token: the cached one, or a fresh one if it is missing or expires within
    /// [`REFRESH_MARGIN`]. Concurrent callers wait for one shared refresh.
    pub async fn access_token(&self) -> Result<BearerToken, ApiError> {
        let mut state = self.state.lock().await;
        if let Some(reason) = &state.disconnected {
            return Err(ApiError::Disconnected(reason.clone()));
        }
        if let Some(current) = &state.current
            && Instant::now() < current.refresh_at
        {
            return Ok(current.token.clone());
        }
        self.refresh_locked(&mut state).await
    }

    /// The server answered 401 to `rejected`: refresh, unless another caller already replaced
    /// that token, in which case the newer token is returned without a second refresh.
    pub async fn refresh_after_401(&self, rejected: &BearerToken) -> Result<BearerToken, ApiError> {
        self.refresh_after_refusal(rejected, None).await
    }

    /// As [`Self::refresh_after_401`], for a server whose refusal says more than a status: if
    /// the refresh token is refused too, the disconnection's reason keeps `refusal` beside the
    /// token endpoint's words, so every caller that sees the disconnection (now or later, on
    /// any connection) reports both.
    pub async fn refresh_after_refusal(
        &self,
        rejected: &BearerToken,
        refusal: Option<&str>,
    ) -> Result<BearerToken, ApiError> {
        let mut state = self.state.lock().await;
        if let Some(reason) = &state.disconnected {
            return Err(ApiError::Disconnected(reason.clone()));
        }
        if let Some(current) = &state.current
            && current.token.generation != rejected.generation
        {
            return Ok(current.token.clone());
        }
        state.current = None;
        match (self.refresh_locked(&mut state).await, refusal) {
            (Err(ApiError::Disconnected(reason)), Some(refusal)) => {
                let reason = format!("{reason} (after the server refused the token: {refusal})");
                state.disconnected = Some(reason.clone());
                Err(ApiError::Disconnected(reason))
            }
            (result, _) => result,
        }
    }

    /// Forgets the cached access token (e.g. after the refresh token was replaced).
    pub async fn invalidate(&self) {
        self.state.lock().await.current = None;
    }

    async fn refresh_locked(&self, state: &mut State) -> Result<BearerToken, ApiError> {
        if let Some((until, err)) = &state.cool_down
            && Instant::now() < *until
        {
            return Err(err.clone());
        }
        let result = self.refresh_now(state).await;
        match &result {
            Err(
                err @ (ApiError::Transient(_)
                | ApiError::RateLimited { .. }
                | ApiError::Malformed(_)),
            ) => {
                state.failures = state.failures.saturating_add(1);
                let wait = err.retry_delay(&cool_down_policy(), state.failures);
                state.cool_down = Some((Instant::now() + wait, err.clone()));
            }
            _ => {
                state.failures = 0;
                state.cool_down = None;
            }
        }
        result
    }

    async fn refresh_now(&self, state: &mut State) -> Result<BearerToken, ApiError> {
        let started = Instant::now();
        let client = token_client(
            &self.client_id,
            Some(state.client_secret.expose().as_str()),
            &self.token_url,
        )?;
        let http = TokenHttp::new(self.http.clone());
        let refresh = RefreshToken::new(state.refresh_token.expose().clone());
        let answer = client
            .exchange_refresh_token(&refresh)
            .request_async(&http)
            .await;
        let status = http.last_status();
        let parsed = match answer {
            Ok(parsed) => parsed,
            Err(e) => {
                let err = http.classify(&e);
                if status != 0 && !(200..300).contains(&status) {
                    tracing::warn!(
                        account = %self.account,
                        method = "oauth2.token.refresh",
                        status,
                        error = %err,
                        "access token refresh failed"
                    );
                }
                if let ApiError::Disconnected(reason) = &err {
                    state.disconnected = Some(reason.clone());
                    state.current = None;
                }
                return Err(err);
            }
        };
        let lifetime = parsed.expires_in().unwrap_or(Duration::from_secs(3_599));
        let margin = REFRESH_MARGIN.min(lifetime / 10);
        let mut header =
            HeaderValue::from_str(&format!("Bearer {}", parsed.access_token().secret())).map_err(
                |_| ApiError::Malformed("token response: access token is not header-safe".into()),
            )?;
        header.set_sensitive(true);
        if let Some(rotated) = parsed
            .refresh_token()
            .map(|t| t.secret().clone())
            .filter(|t| !t.is_empty())
            && rotated != *state.refresh_token.expose()
        {
            let rotated = Secret::new(rotated);
            self.persist_rotated(&rotated).await;
            state.refresh_token = rotated;
        }
        state.generation += 1;
        let token = BearerToken {
            header,
            generation: state.generation,
        };
        state.current = Some(Current {
            token: token.clone(),
            refresh_at: Instant::now() + lifetime.saturating_sub(margin),
        });
        tracing::debug!(
            account = %self.account,
            method = "oauth2.token.refresh",
            status,
            expires_in_s = lifetime.as_secs(),
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "access token refreshed"
        );
        Ok(token)
    }
}

impl TokenSource {
    /// Hands a rotated refresh token to the hooks; a failure is logged (the token still works
    /// for this process) and never carries the token.
    async fn persist_rotated(&self, rotated: &Secret<String>) {
        let Some(persist) = self.hooks.get().and_then(|h| h.persist.clone()) else {
            tracing::warn!(account = %self.account, "The token endpoint rotated the refresh token, but its reference cannot be written; run `mailsync auth` before the daemon restarts.");
            return;
        };
        let token = rotated.clone();
        match tokio::task::spawn_blocking(move || persist(&token)).await {
            Ok(Ok(())) => {
                tracing::info!(account = %self.account, "Rotated refresh token stored.");
            }
            Ok(Err(e)) => {
                tracing::error!(account = %self.account, error = %e, "Could not store the rotated refresh token.");
            }
            Err(e) => {
                tracing::error!(account = %self.account, error = %e, "Could not store the rotated refresh token.");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::State as AxState;
    use axum::http::StatusCode;
    use axum::routing::post;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Clone)]
    struct Fake {
        calls: Arc<AtomicU32>,
        mode: Arc<std::sync::Mutex<&'static str>>,
    }

    async fn token(AxState(fake): AxState<Fake>, body: String) -> (StatusCode, String) {
        let n = fake.calls.fetch_add(1, Ordering::SeqCst) + 1;
        assert!(body.contains("grant_type=refresh_token"));
        assert!(body.contains("refresh_token=1%2F%2F0gREFRESH"));
        assert!(body.contains("client_secret=GOCSPX-secret"));
        let mode = *fake.mode.lock().expect("lock");
        tokio::time::sleep(Duration::from_millis(50)).await;
        match mode {
            "ok" => (
                StatusCode::OK,
                format!(r#"{{"access_token":"ya29.tok{n}","expires_in":3599,"token_type":"Bearer"}}"#),
            ),
            "grant" => (
                StatusCode::BAD_REQUEST,
                r#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#
                    .into(),
            ),
            "broken" => (StatusCode::OK, r#"{"access_token":"ya29.cut"#.into()),
            "rotate" => (
                StatusCode::OK,
                format!(r#"{{"access_token":"ya29.tok{n}","expires_in":3599,"token_type":"Bearer","refresh_token":"1//0gROTATED"}}"#),
            ),
            _ => (StatusCode::SERVICE_UNAVAILABLE, "down".into()),
        }
    }

    async fn serve(mode: &'static str) -> (String, Fake) {
        let fake = Fake {
            calls: Arc::new(AtomicU32::new(0)),
            mode: Arc::new(std::sync::Mutex::new(mode)),
        };
        let app = axum::Router::new()
            .route("/token", post(token))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (format!("http://{addr}/token"), fake)
    }

    fn source(url: &str) -> TokenSource {
        TokenSource::new(
            "acct",
            OAuthCredentials {
                client_id: "client".into(),
                client_secret: Secret::new("GOCSPX-secret".into()),
                refresh_token: Secret::new("1//0gREFRESH".into()),
            },
            url,
        )
        .expect("source")
    }

    fn header_text(t: &BearerToken) -> String {
        t.header_value().to_str().expect("ascii").to_owned()
    }

    #[tokio::test]
    async fn caches_and_shares_one_refresh() {
        let (url, fake) = serve("ok").await;
        let src = Arc::new(source(&url));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let src = Arc::clone(&src);
            tasks.push(tokio::spawn(async move { src.access_token().await }));
        }
        for t in tasks {
            let tok = t.await.expect("join").expect("token");
            assert_eq!(header_text(&tok), "Bearer ya29.tok1");
            assert!(tok.header_value().is_sensitive());
            assert!(!format!("{tok:?}").contains("ya29"));
        }
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
        assert!(!format!("{src:?}").contains("GOCSPX"));
    }

    #[tokio::test]
    async fn a_401_refreshes_once_for_all_callers() {
        let (url, fake) = serve("ok").await;
        let src = Arc::new(source(&url));
        let first = src.access_token().await.expect("token");
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let src = Arc::clone(&src);
            let rejected = first.clone();
            tasks.push(tokio::spawn(async move {
                src.refresh_after_401(&rejected).await
            }));
        }
        for t in tasks {
            let tok = t.await.expect("join").expect("token");
            assert_eq!(header_text(&tok), "Bearer ya29.tok2");
        }
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_refused_refresh_after_a_server_refusal_keeps_both_reasons_for_every_caller() {
        let (url, fake) = serve("ok").await;
        let src = Arc::new(source(&url));
        let first = src.access_token().await.expect("token");
        *fake.mode.lock().expect("lock") = "grant";
        let refusal = "[AUTHENTICATIONFAILED] Authentication failed.";
        // A second connection asks for a token while the first one's refresh is under way.
        let other = {
            let src = Arc::clone(&src);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                src.access_token().await
            })
        };
        let got = src.refresh_after_refusal(&first, Some(refusal)).await;
        let later = other.await.expect("join");
        for (who, result) in [("refresher", got), ("other caller", later)] {
            match result {
                Err(ApiError::Disconnected(msg)) => {
                    assert!(msg.contains("invalid_grant"), "{who}: {msg}");
                    assert!(msg.contains(refusal), "{who}: {msg}");
                }
                other => panic!("{who}: expected Disconnected, got {other:?}"),
            }
        }
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2, "one refused refresh");
    }

    #[tokio::test]
    async fn invalid_grant_disconnects_for_good() {
        let (url, fake) = serve("grant").await;
        let src = source(&url);
        match src.access_token().await {
            Err(ApiError::Disconnected(msg)) => {
                assert!(msg.contains("invalid_grant"), "{msg}");
                assert!(!msg.contains("0gREFRESH"));
            }
            other => panic!("expected Disconnected, got {other:?}"),
        }
        assert!(src.disconnected().await.is_some());
        assert!(matches!(
            src.access_token().await,
            Err(ApiError::Disconnected(_))
        ));
        assert_eq!(
            fake.calls.load(Ordering::SeqCst),
            1,
            "no second call to Google"
        );
    }

    #[tokio::test]
    async fn server_trouble_is_transient_and_bad_json_malformed() {
        let (url, fake) = serve("down").await;
        let src = source(&url);
        assert!(matches!(
            src.access_token().await,
            Err(ApiError::Transient(_))
        ));
        *fake.mode.lock().expect("lock") = "broken";
        // Within the cool-down the endpoint is left alone and the last error handed out.
        assert!(matches!(
            src.access_token().await,
            Err(ApiError::Transient(_))
        ));
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
        src.reconnect().await.expect("reconnect");
        match src.access_token().await {
            Err(ApiError::Malformed(msg)) => assert!(!msg.contains("ya29"), "{msg}"),
            other => panic!("expected Malformed, got {other:?}"),
        }
        *fake.mode.lock().expect("lock") = "ok";
        src.reconnect().await.expect("reconnect");
        assert!(src.access_token().await.is_ok());
    }

    #[tokio::test]
    async fn a_failing_endpoint_sees_a_bounded_number_of_requests() {
        let (url, fake) = serve("down").await;
        let src = Arc::new(source(&url));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let src = Arc::clone(&src);
            tasks.push(tokio::spawn(async move { src.access_token().await }));
        }
        for t in tasks {
            assert!(t.await.expect("join").is_err());
        }
        assert_eq!(
            fake.calls.load(Ordering::SeqCst),
            1,
            "one request per cool-down"
        );
    }

    #[tokio::test]
    async fn reconnect_re_resolves_and_clears_a_disconnection() {
        let (url, fake) = serve("grant").await;
        let src = source(&url);
        assert!(matches!(
            src.access_token().await,
            Err(ApiError::Disconnected(_))
        ));
        let resolved = Arc::new(AtomicU32::new(0));
        let counter = resolved.clone();
        src.set_hooks(CredentialHooks {
            resolve: Arc::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                Ok((
                    Secret::new("GOCSPX-secret".into()),
                    Secret::new("1//0gREFRESH".into()),
                ))
            }),
            persist: None,
        });
        *fake.mode.lock().expect("lock") = "ok";
        src.reconnect().await.expect("reconnect");
        assert_eq!(resolved.load(Ordering::SeqCst), 1);
        assert!(src.disconnected().await.is_none());
        assert!(src.access_token().await.is_ok());
    }

    #[tokio::test]
    async fn a_rotated_refresh_token_is_persisted() {
        let (url, fake) = serve("rotate").await;
        let src = source(&url);
        let stored = Arc::new(std::sync::Mutex::new(String::new()));
        let sink = stored.clone();
        src.set_hooks(CredentialHooks {
            resolve: Arc::new(|| Err("unused".into())),
            persist: Some(Arc::new(move |t: &Secret<String>| {
                *sink.lock().expect("lock") = t.expose().clone();
                Ok(())
            })),
        });
        assert!(src.access_token().await.is_ok());
        assert_eq!(*stored.lock().expect("lock"), "1//0gROTATED");
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
    }
}
