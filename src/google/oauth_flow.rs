//! The desktop loopback OAuth flow with PKCE (reference gmail-api.md §5.2) that turns a
//! person's consent into a refresh token, and the 0600 file the token is kept in.
//!
//! [`LoopbackFlow::run`] listens on `127.0.0.1:0` (an axum router), builds the authorization
//! URL with the `oauth2` crate (S256 code challenge, random `state`, `access_type=offline`,
//! `prompt=consent`), hands it to a callback (the CLI prints it or opens a browser; tests
//! follow it with an HTTP GET), accepts the browser's redirect, checks `state`, exchanges the
//! code with the verifier at the token endpoint (`token_endpoint.rs`, classified like every
//! token answer) and returns the refresh token as a [`Secret`]. Nothing here logs a code,
//! verifier or token.

use super::token_endpoint::{TokenHttp, grant_http};
use crate::secret::Secret;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Html;
use mailsync_actors::error::ApiError;
use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse as _, TokenUrl,
};
use rand::Rng as _;
use std::collections::HashMap;
use std::future::IntoFuture as _;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Google's authorization endpoint.
pub const GOOGLE_AUTH_URL: &str = "https://accounts.google.com/o/oauth2/v2/auth";
/// Read-only Gmail access (the default scope).
pub const GMAIL_READONLY_SCOPE: &str = "https://www.googleapis.com/auth/gmail.readonly";

/// Why the flow did not produce a refresh token.
#[derive(Debug, thiserror::Error)]
pub enum LoopbackFlowError {
    /// Binding the loopback listener failed.
    #[error("could not listen on 127.0.0.1: {0}")]
    Listen(#[source] std::io::Error),
    /// The configured authorization URL does not parse.
    #[error("invalid authorization endpoint URL: {0}")]
    AuthUrl(String),
    /// Nobody came back within the timeout.
    #[error("no redirect from the browser within {0:?}")]
    Timeout(Duration),
    /// The redirect carried another flow's `state` (a stale tab, or a forged request).
    #[error("the redirect's state does not match this flow; start again")]
    StateMismatch,
    /// The person (or Google) refused: `access_denied`, `admin_policy_enforced`, ...
    #[error("authorization refused: {0}")]
    Denied(String),
    /// The redirect request could not be read.
    #[error("reading the browser's redirect: {0}")]
    Redirect(String),
    /// The code exchange failed (classified like any token-endpoint answer).
    #[error("exchanging the authorization code: {0}")]
    Exchange(#[from] ApiError),
    /// The token endpoint answered without a refresh token.
    #[error("the token endpoint returned no refresh token")]
    NoRefreshToken,
    /// The person granted fewer scopes than asked for.
    #[error("scope not granted: {0}")]
    ScopeNotGranted(String),
}

/// The flow's settings; [`LoopbackFlow::new`] fills Google's endpoints and `gmail.readonly`.
#[derive(Clone, Debug)]
pub struct LoopbackFlow {
    /// OAuth client id (a "Desktop app" client).
    pub client_id: String,
    /// The client secret Google issues to desktop clients (sent with the exchange when set).
    pub client_secret: Option<Secret<String>>,
    /// Authorization endpoint.
    pub auth_url: String,
    /// Token endpoint.
    pub token_url: String,
    /// Scopes to ask for.
    pub scopes: Vec<String>,
    /// How long to wait for the browser's redirect.
    pub timeout: Duration,
    /// Optional `login_hint` (the mailbox address).
    pub login_hint: Option<String>,
}

/// What the loopback listener hands the flow: the code, or why there is none.
type Outcome = Result<Secret<String>, LoopbackFlowError>;

/// The loopback listener's state: the flow's `state` and where outcomes go.
#[derive(Clone)]
struct Redirects {
    expected_state: Arc<String>,
    outcomes: mpsc::UnboundedSender<Outcome>,
}

impl LoopbackFlow {
    /// A flow for `client_id` against Google's endpoints, asking for `gmail.readonly`, waiting
    /// up to five minutes for the browser.
    pub fn new(client_id: impl Into<String>, client_secret: Option<Secret<String>>) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret,
            auth_url: GOOGLE_AUTH_URL.to_owned(),
            token_url: super::auth::GOOGLE_TOKEN_URL.to_owned(),
            scopes: vec![GMAIL_READONLY_SCOPE.to_owned()],
            timeout: Duration::from_secs(300),
            login_hint: None,
        }
    }

    /// The `oauth2` client of this flow for a redirect URI.
    fn client(
        &self,
        redirect_uri: &str,
    ) -> Result<
        BasicClient<
            oauth2::EndpointSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointSet,
        >,
        LoopbackFlowError,
    > {
        let auth_url = AuthUrl::new(self.auth_url.clone())
            .map_err(|e| LoopbackFlowError::AuthUrl(format!("{}: {e}", self.auth_url)))?;
        let token_url = TokenUrl::new(self.token_url.clone())
            .map_err(|e| ApiError::Internal(format!("invalid token_url: {e}")))?;
        let redirect = RedirectUrl::new(redirect_uri.to_owned())
            .map_err(|e| ApiError::Internal(format!("invalid redirect URI: {e}")))?;
        let mut client = BasicClient::new(ClientId::new(self.client_id.clone()))
            .set_auth_type(AuthType::RequestBody)
            .set_auth_uri(auth_url)
            .set_token_uri(token_url)
            .set_redirect_uri(redirect);
        if let Some(secret) = &self.client_secret {
            client = client.set_client_secret(ClientSecret::new(secret.expose().clone()));
        }
        Ok(client)
    }

    /// Runs the flow: `open` receives the authorization URL to show the person. Returns the
    /// refresh token.
    pub async fn run<F>(&self, open: F) -> Result<Secret<String>, LoopbackFlowError>
    where
        F: FnOnce(&str),
    {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(LoopbackFlowError::Listen)?;
        let port = listener
            .local_addr()
            .map_err(LoopbackFlowError::Listen)?
            .port();
        let redirect_uri = format!("http://127.0.0.1:{port}");
        let client = self.client(&redirect_uri)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(self.scopes.iter().cloned().map(Scope::new))
            .set_pkce_challenge(challenge)
            .add_extra_param("access_type", "offline")
            .add_extra_param("prompt", "consent");
        if let Some(hint) = &self.login_hint {
            request = request.add_extra_param("login_hint", hint.clone());
        }
        let (url, state) = request.url();
        let (outcomes, mut received) = mpsc::unbounded_channel();
        let redirects = Redirects {
            expected_state: Arc::new(state.secret().clone()),
            outcomes,
        };
        let app = axum::Router::new().fallback(redirect).with_state(redirects);
        let stop = CancellationToken::new();
        let server = tokio::spawn(
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.clone().cancelled_owned())
                .into_future(),
        );
        tracing::info!(
            port,
            "waiting for the OAuth redirect on the loopback interface"
        );
        open(url.as_str());
        let outcome = tokio::time::timeout(self.timeout, received.recv()).await;
        stop.cancel();
        // The answer page is written before the outcome is read; a browser's idle keep-alive
        // connection must not hold the flow, so the server gets a moment, then goes.
        if tokio::time::timeout(Duration::from_secs(2), server)
            .await
            .is_err()
        {
            tracing::debug!("loopback listener still had a connection open; dropped it");
        }
        let code = match outcome {
            Err(_) => return Err(LoopbackFlowError::Timeout(self.timeout)),
            Ok(None) => {
                return Err(LoopbackFlowError::Redirect(
                    "the loopback listener stopped".into(),
                ));
            }
            Ok(Some(outcome)) => outcome?,
        };
        self.exchange(&client, code, verifier).await
    }

    async fn exchange(
        &self,
        client: &BasicClient<
            oauth2::EndpointSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointSet,
        >,
        code: Secret<String>,
        verifier: PkceCodeVerifier,
    ) -> Result<Secret<String>, LoopbackFlowError> {
        let http = TokenHttp::new(grant_http(Duration::from_secs(30))?);
        let answer = client
            .exchange_code(AuthorizationCode::new(code.expose().clone()))
            .set_pkce_verifier(verifier)
            .request_async(&http)
            .await
            .map_err(|e| LoopbackFlowError::Exchange(http.classify(&e)))?;
        if let Some(granted) = answer.scopes()
            && let Some(missing) = self
                .scopes
                .iter()
                .find(|s| !granted.iter().any(|g| g.as_str() == s.as_str()))
        {
            return Err(LoopbackFlowError::ScopeNotGranted(missing.clone()));
        }
        let refresh = answer
            .refresh_token()
            .map(|t| t.secret().clone())
            .filter(|t| !t.is_empty())
            .ok_or(LoopbackFlowError::NoRefreshToken)?;
        tracing::info!("OAuth code exchanged for a refresh token");
        Ok(Secret::new(refresh))
    }
}

/// The loopback listener's one handler (axum): a request carrying `code` or `error` is the
/// flow's redirect; anything else (a browser's `/favicon.ico`) gets a 404 and is ignored.
async fn redirect(
    State(r): State<Redirects>,
    Query(q): Query<HashMap<String, String>>,
) -> (StatusCode, Html<String>) {
    let page = |status: StatusCode, text: &str| {
        (
            status,
            Html(format!(
                "<!doctype html><html><head><title>mailsync</title></head><body><p>{text}</p></body></html>"
            )),
        )
    };
    let (code, error) = (q.get("code"), q.get("error"));
    if code.is_none() && error.is_none() {
        return page(StatusCode::NOT_FOUND, "Not found.");
    }
    let outcome: Outcome;
    let answer = if q.get("state").map(String::as_str) != Some(r.expected_state.as_str()) {
        outcome = Err(LoopbackFlowError::StateMismatch);
        page(
            StatusCode::BAD_REQUEST,
            "This sign-in link does not belong to the running mailsync flow. Start again.",
        )
    } else if let Some(error) = error {
        outcome = Err(LoopbackFlowError::Denied(error.chars().take(64).collect()));
        page(
            StatusCode::OK,
            "Authorization was not granted. You can close this tab.",
        )
    } else {
        outcome = Ok(Secret::new(code.cloned().unwrap_or_default()));
        page(
            StatusCode::OK,
            "mailsync is authorized. You can close this tab.",
        )
    };
    // The flow takes the first outcome; later ones (a reload of the tab) are dropped.
    let _ = r.outcomes.send(outcome);
    answer
}

/// Writes `token` to `path` with mode 0600 (atomically: a temp file in the same directory,
/// fsync, rename, fsync of the directory), creating missing parent directories with 0700.
pub fn store_refresh_token(path: &Path, token: &Secret<String>) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let file_name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "token path has no file name",
        )
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp-{:08x}",
        file_name.to_string_lossy(),
        rand::rng().random::<u32>()
    ));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(token.expose().as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Reads a refresh token written by [`store_refresh_token`]. Refuses a file that group or
/// others can read.
pub fn load_refresh_token(path: &Path) -> std::io::Result<Secret<String>> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} is readable by group or others; chmod 600 it",
                path.display()
            ),
        ));
    }
    let text = std::fs::read_to_string(path)?;
    let token = text.trim();
    if token.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is empty", path.display()),
        ));
    }
    Ok(Secret::new(token.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header;
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use reqwest::Url;
    use sha2::{Digest, Sha256};
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct FakeGoogle {
        /// challenge and redirect_uri seen at /auth, keyed by the issued code.
        issued: Arc<Mutex<HashMap<String, (String, String)>>>,
        /// "ok", "deny", "wrong_state", "no_refresh", "narrow_scope".
        mode: Arc<Mutex<&'static str>>,
    }

    async fn auth(
        State(g): State<FakeGoogle>,
        Query(q): Query<HashMap<String, String>>,
    ) -> Response {
        let mode = *g.mode.lock().expect("lock");
        assert_eq!(q.get("response_type").map(String::as_str), Some("code"));
        assert_eq!(
            q.get("code_challenge_method").map(String::as_str),
            Some("S256")
        );
        assert_eq!(q.get("access_type").map(String::as_str), Some("offline"));
        assert_eq!(q.get("prompt").map(String::as_str), Some("consent"));
        assert_eq!(
            q.get("scope").map(String::as_str),
            Some(GMAIL_READONLY_SCOPE)
        );
        let redirect = q.get("redirect_uri").cloned().unwrap_or_default();
        assert!(redirect.starts_with("http://127.0.0.1:"));
        let state = q.get("state").cloned().unwrap_or_default();
        let challenge = q.get("code_challenge").cloned().unwrap_or_default();
        let location = match mode {
            "deny" => format!("{redirect}/?error=access_denied&state={state}"),
            "wrong_state" => format!("{redirect}/?code=4%2F0Acode&state=forged"),
            _ => {
                g.issued
                    .lock()
                    .expect("lock")
                    .insert("4/0Acode".into(), (challenge, redirect.clone()));
                format!("{redirect}/?state={state}&code=4%2F0Acode&scope={GMAIL_READONLY_SCOPE}")
            }
        };
        (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
    }

    async fn token(State(g): State<FakeGoogle>, body: String) -> Response {
        let url = Url::parse(&format!("http://x/?{body}")).expect("form");
        let form: HashMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(
            form.get("grant_type").map(String::as_str),
            Some("authorization_code")
        );
        assert_eq!(
            form.get("client_secret").map(String::as_str),
            Some("GOCSPX-x")
        );
        let code = form.get("code").cloned().unwrap_or_default();
        let Some((challenge, redirect)) = g.issued.lock().expect("lock").remove(&code) else {
            return (
                StatusCode::BAD_REQUEST,
                r#"{"error":"invalid_grant","error_description":"Malformed auth code."}"#,
            )
                .into_response();
        };
        let verifier = form.get("code_verifier").cloned().unwrap_or_default();
        assert!((43..=128).contains(&verifier.len()));
        let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        if computed != challenge || form.get("redirect_uri") != Some(&redirect) {
            return (StatusCode::BAD_REQUEST, r#"{"error":"invalid_grant"}"#).into_response();
        }
        let mode = *g.mode.lock().expect("lock");
        let body = match mode {
            "no_refresh" => r#"{"access_token":"ya29.a","expires_in":3599,"token_type":"Bearer"}"#
                .to_owned(),
            "narrow_scope" => r#"{"access_token":"ya29.a","expires_in":3599,"token_type":"Bearer","scope":"openid","refresh_token":"1//0gR"}"#
                .to_owned(),
            _ => format!(
                r#"{{"access_token":"ya29.a","expires_in":3599,"token_type":"Bearer","scope":"{GMAIL_READONLY_SCOPE}","refresh_token":"1//0gREFRESH"}}"#
            ),
        };
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }

    async fn fake(mode: &'static str) -> LoopbackFlow {
        let g = FakeGoogle {
            mode: Arc::new(Mutex::new(mode)),
            ..FakeGoogle::default()
        };
        let app = axum::Router::new()
            .route("/auth", get(auth))
            .route("/token", post(token))
            .with_state(g);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        LoopbackFlow {
            auth_url: format!("http://{addr}/auth"),
            token_url: format!("http://{addr}/token"),
            timeout: Duration::from_secs(10),
            ..LoopbackFlow::new("client-1", Some(Secret::new("GOCSPX-x".into())))
        }
    }

    /// Plays the browser: a favicon request first, then following the authorization URL.
    fn browser(url: &str) {
        let url = url.to_owned();
        tokio::spawn(async move {
            let redirect_uri = Url::parse(&url)
                .ok()
                .and_then(|u| {
                    u.query_pairs()
                        .find(|(k, _)| k == "redirect_uri")
                        .map(|(_, v)| v.into_owned())
                })
                .unwrap_or_default();
            let client = reqwest::Client::new();
            let favicon = client
                .get(format!("{redirect_uri}/favicon.ico"))
                .send()
                .await
                .map(|r| r.status().as_u16());
            assert_eq!(favicon.ok(), Some(404));
            let _ = client.get(url).send().await;
        });
    }

    #[tokio::test]
    async fn loopback_flow_returns_the_refresh_token() {
        let flow = fake("ok").await;
        let mut shown = String::new();
        let token = flow
            .run(|url| {
                shown = url.to_owned();
                browser(url);
            })
            .await
            .expect("flow");
        assert_eq!(token.expose(), "1//0gREFRESH");
        assert!(shown.contains("client_id=client-1"));
        assert!(shown.contains("code_challenge="));
        assert!(shown.contains("state="));
    }

    #[tokio::test]
    async fn denial_state_mismatch_and_missing_refresh_token() {
        let flow = fake("deny").await;
        assert!(matches!(
            flow.run(browser).await,
            Err(LoopbackFlowError::Denied(e)) if e == "access_denied"
        ));
        let flow = fake("wrong_state").await;
        assert!(matches!(
            flow.run(browser).await,
            Err(LoopbackFlowError::StateMismatch)
        ));
        let flow = fake("no_refresh").await;
        assert!(matches!(
            flow.run(browser).await,
            Err(LoopbackFlowError::NoRefreshToken)
        ));
        let flow = fake("narrow_scope").await;
        assert!(matches!(
            flow.run(browser).await,
            Err(LoopbackFlowError::ScopeNotGranted(_))
        ));
    }

    #[tokio::test]
    async fn times_out_without_a_browser() {
        let mut flow = fake("ok").await;
        flow.timeout = Duration::from_millis(100);
        assert!(matches!(
            flow.run(|_| {}).await,
            Err(LoopbackFlowError::Timeout(_))
        ));
    }

    #[test]
    fn pkce_challenge_is_s256_of_the_verifier() {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        assert_eq!(challenge.method().as_str(), "S256");
        assert!((43..=128).contains(&verifier.secret().len()));
        assert_eq!(
            challenge.as_str(),
            URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.secret().as_bytes()))
        );
        // RFC 7636 appendix B.
        let known = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into(),
        ));
        assert_eq!(
            known.as_str(),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn token_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state/tokens/acct.refresh");
        store_refresh_token(&path, &Secret::new("1//0gSECRET".into())).expect("store");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(path.parent().expect("parent"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        assert_eq!(
            load_refresh_token(&path).expect("load").expose(),
            "1//0gSECRET"
        );
        // Overwrite keeps 0600 and replaces the content.
        store_refresh_token(&path, &Secret::new("1//0gNEW".into())).expect("store");
        assert_eq!(
            load_refresh_token(&path).expect("load").expose(),
            "1//0gNEW"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(load_refresh_token(&path).is_err());
    }
}
