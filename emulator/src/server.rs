//! The HTTP server: [`app`] builds the axum router (OAuth, JWKS, batch, control API and the
//! Gmail/Calendar fallback), [`Emulator::start`] serves it on a listener with the
//! notification worker and the mutation generator, [`EmulatorHandle`] controls a running one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Response, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::EmulatorConfig;
use crate::error::EmulatorError;
use crate::http::{ApiRequest, ApiResponse, TransportFault};
use crate::state::{Counters, EmulatorState};
use crate::store::MailboxSnapshot;
use crate::util::lock;

/// Largest request body accepted (Gmail's upload limit is 35 MB).
const MAX_BODY: usize = 36 * 1024 * 1024;

/// Converts an [`ApiResponse`] into an HTTP response, honouring transport faults.
pub async fn to_http(st: &EmulatorState, r: ApiResponse) -> Response<Body> {
    match r.fault {
        Some(TransportFault::Hang) => {
            st.shutdown.cancelled().await;
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        Some(TransportFault::Reset) => {
            let stream = futures_util::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected connection reset",
                ))
            });
            return Response::builder()
                .status(200)
                .body(Body::from_stream(stream))
                .unwrap_or_default();
        }
        None => {}
    }
    let mut resp = Response::builder()
        .status(StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    if let Some(h) = resp.headers_mut() {
        for (k, v) in &r.headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()),
                HeaderValue::from_str(v),
            ) {
                h.append(n, v);
            }
        }
    }
    resp.body(Body::from(r.body)).unwrap_or_default()
}

async fn read_request(req: Request) -> Result<ApiRequest, ApiResponse> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        ApiResponse::error(&crate::error::ApiError::new(
            413,
            "uploadTooLarge",
            "global",
            "Request too large",
        ))
    })?;
    Ok(ApiRequest {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: ApiRequest::parse_query(parts.uri.query()),
        headers: parts.headers,
        body,
    })
}

async fn api_fallback(State(st): State<Arc<EmulatorState>>, req: Request) -> Response<Body> {
    let r = match read_request(req).await {
        Ok(r) => crate::pipeline::execute(&st, r).await,
        Err(e) => e,
    };
    to_http(&st, r).await
}

async fn batch_with(st: Arc<EmulatorState>, prefix: &str, req: Request) -> Response<Body> {
    let r = match read_request(req).await {
        Ok(r) => crate::batch::execute(&st, prefix, &r.headers, &r.query, &r.body).await,
        Err(e) => e,
    };
    to_http(&st, r).await
}

async fn batch_gmail(State(st): State<Arc<EmulatorState>>, req: Request) -> Response<Body> {
    batch_with(st, "/gmail/v1/", req).await
}

async fn batch_calendar(State(st): State<Arc<EmulatorState>>, req: Request) -> Response<Body> {
    batch_with(st, "/calendar/v3/", req).await
}

async fn batch_any(State(st): State<Arc<EmulatorState>>, req: Request) -> Response<Body> {
    // Current Gmail discovery's batchPath is plain `batch`.
    batch_with(st, "/gmail/v1/", req).await
}

async fn jwks(State(st): State<Arc<EmulatorState>>) -> impl IntoResponse {
    (
        [
            ("content-type", "application/json; charset=UTF-8"),
            ("cache-control", "public, max-age=3600"),
        ],
        st.key.jwks().to_string(),
    )
}

/// The router, for in-process use (`tower::ServiceExt::oneshot`) or serving.
pub fn app(state: Arc<EmulatorState>) -> Router {
    Router::new()
        .route("/o/oauth2/v2/auth", get(crate::oauth::authorize))
        .route("/o/oauth2/v2/auth/decide", get(crate::oauth::decide))
        .route("/token", post(crate::oauth::token))
        .route("/revoke", post(crate::oauth::revoke))
        .route("/oauth2/v3/certs", get(jwks))
        .route(
            "/tokeninfo",
            get(crate::tokeninfo::tokeninfo).post(crate::tokeninfo::tokeninfo),
        )
        .route(
            "/oauth2/v3/tokeninfo",
            get(crate::tokeninfo::tokeninfo).post(crate::tokeninfo::tokeninfo),
        )
        .route("/batch/gmail/v1", post(batch_gmail))
        .route("/batch/calendar/v3", post(batch_calendar))
        .route("/batch", post(batch_any))
        .merge(crate::control::router())
        .fallback(api_fallback)
        .with_state(state)
}

/// The emulator entry point.
#[derive(Debug)]
pub struct Emulator;

/// A running emulator.
#[derive(Debug)]
pub struct EmulatorHandle {
    state: Arc<EmulatorState>,
    addr: SocketAddr,
    server: JoinHandle<()>,
    workers: Vec<JoinHandle<()>>,
}

impl Emulator {
    /// Serves the emulator on `listener` (bind `127.0.0.1:0` for tests).
    pub async fn start(
        config: EmulatorConfig,
        listener: TcpListener,
    ) -> Result<EmulatorHandle, EmulatorError> {
        if config.user_rate_scale.is_nan() || config.user_rate_scale <= 0.0 {
            return Err(EmulatorError::Config("user_rate_scale must be > 0".into()));
        }
        if ![403, 429].contains(&config.rate_limit_status)
            || ![403, 429].contains(&config.calendar_rate_limit_status)
        {
            return Err(EmulatorError::Config(
                "rate_limit_status must be 403 or 429".into(),
            ));
        }
        let addr = listener.local_addr()?;
        let (state, rx) = EmulatorState::new(config)?;
        *lock(&state.base_url) = format!("http://{addr}");
        let state = Arc::new(state);
        let mut workers = vec![tokio::spawn(crate::pubsub::worker(state.clone(), rx))];
        if let Some(rate) = state.config.mutation_rate
            && rate > 0.0
        {
            workers.push(tokio::spawn(crate::mutator::run(state.clone(), rate)));
        }
        let router = app(state.clone());
        let token = state.shutdown.clone();
        let server = tokio::spawn(async move {
            let res = axum::serve(listener, router)
                .with_graceful_shutdown(async move { token.cancelled().await })
                .await;
            if let Err(e) = res {
                tracing::error!(error = %e, "emulator server failed");
            }
        });
        tracing::info!(%addr, "mailsync emulator listening");
        Ok(EmulatorHandle {
            state,
            addr,
            server,
            workers,
        })
    }
}

impl EmulatorHandle {
    /// `http://127.0.0.1:PORT` — the root for every emulated API.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &Arc<EmulatorState> {
        &self.state
    }

    /// Pauses (`true`) or resumes the mutation generator.
    pub fn pause_mutations(&self, paused: bool) {
        self.state()
            .mutations_paused
            .store(paused, std::sync::atomic::Ordering::Relaxed);
    }

    /// Truth snapshot of a mailbox.
    pub fn snapshot(&self, account: &str) -> Option<MailboxSnapshot> {
        lock(&self.state.accounts)
            .get(&account.to_ascii_lowercase())
            .map(|a| a.mailbox.snapshot())
    }

    /// Truth snapshot of an account's calendars.
    pub fn calendar_snapshot(&self, account: &str) -> Option<serde_json::Value> {
        lock(&self.state.accounts)
            .get(&account.to_ascii_lowercase())
            .map(|a| a.calendars.snapshot())
    }

    pub fn counters(&self) -> Counters {
        self.state.counters()
    }

    /// Creates an account (if new) and returns its refresh token.
    pub fn create_account(&self, email: &str, messages: usize) -> String {
        self.state
            .create_account(email, messages, self.state.config.seed)
    }

    /// The pre-provisioned refresh token of an existing account.
    pub fn refresh_token(&self, account: &str) -> Option<String> {
        if !self.state.has_account(account) {
            return None;
        }
        Some(
            self.state
                .create_account(account, 0, self.state.config.seed),
        )
    }

    /// Stops the server and background tasks.
    pub async fn shutdown(self) {
        self.state.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.server).await;
        for w in self.workers {
            w.abort();
        }
    }
}
