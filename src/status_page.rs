//! The opt-in HTTP listener of `[metrics] listen`: `GET /metrics` (Prometheus text, see
//! `metrics`), `GET /` (a small read-only status page, `html`), `GET /status.json` (the same
//! JSON as `ctl --json status`). Read-only by construction: no route changes anything.
//!
//! The page has no external assets (inline CSS, no scripts from elsewhere) and refreshes
//! itself, so it works offline and in a locked-down browser.

pub mod html;

use crate::daemon_core::DaemonCore;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The OpenMetrics text format `prometheus-client` writes (Prometheus scrapes it natively).
const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves until `cancel` fires.
pub async fn serve(listener: TcpListener, core: Arc<DaemonCore>, cancel: CancellationToken) {
    let app = Router::new()
        .route("/", get(page))
        .route("/metrics", get(metrics))
        .route("/status.json", get(status_json))
        .with_state(core);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "Metrics listener stopped.");
    }
}

async fn metrics(State(core): State<Arc<DaemonCore>>) -> Response {
    let text = crate::metrics::collect::scrape(&core).await;
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response()
}

async fn status_json(State(core): State<Arc<DaemonCore>>) -> Response {
    match crate::service::status_json::status_json(&core).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

async fn page(State(core): State<Arc<DaemonCore>>) -> Response {
    let body = match crate::service::status_json::status_json(&core).await {
        Ok(v) => html::render(&v, mailsync_actors::spec::now_ms()),
        Err(e) => html::unavailable(&e.to_string()),
    };
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}
