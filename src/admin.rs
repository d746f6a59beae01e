//! The plain-HTTP admin port of the long-running commands (`serve`, `gc --watch`,
//! `audit --watch`): `GET /healthz`, `GET /readyz` (named readiness checks) and
//! `GET /metrics` (the webhook's metrics, or a loop's own). Read-only: it changes nothing
//! and answers from memory.
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::metrics::Exposition;
use crate::webhook::routes::{method_not_allowed, not_found};

/// A named readiness condition.
pub struct ReadyCheck {
    pub name: &'static str,
    pub ready: Box<dyn Fn() -> bool + Send + Sync>,
}

#[derive(Clone)]
struct AdminState {
    metrics: Arc<dyn Exposition>,
    checks: Arc<Vec<ReadyCheck>>,
}

/// The admin router: `GET /healthz`, `GET /readyz`, `GET /metrics`. Read-only.
pub fn admin_router(metrics: Arc<dyn Exposition>, checks: Vec<ReadyCheck>) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { "ok\n" }).fallback(method_not_allowed),
        )
        .route("/readyz", get(readyz).fallback(method_not_allowed))
        .route("/metrics", get(metrics_text).fallback(method_not_allowed))
        .fallback(not_found)
        .with_state(AdminState {
            metrics,
            checks: Arc::new(checks),
        })
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let failing: Vec<&str> = state
        .checks
        .iter()
        .filter(|c| !(c.ready)())
        .map(|c| c.name)
        .collect();
    if failing.is_empty() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", failing.join(", ")),
        )
            .into_response()
    }
}

async fn metrics_text(State(state): State<AdminState>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}
