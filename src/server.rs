//! HTTP routing: the webhook endpoints (served over TLS by `tls.rs`) and the plain admin
//! port. Errors are JSON: `{"error": "...", "status": 400}`.
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, Limited};

use crate::admission::{Admission, Endpoint};
use crate::metrics::Metrics;

/// Default request body limit (the API server sends at most a few MiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Upper bound for one review when the API server gives no `?timeout=`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct WebhookState {
    admission: Arc<Admission>,
    max_body: usize,
}

pub fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = serde_json::json!({"error": message.into(), "status": status.as_u16()});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn not_found() -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        "no such endpoint; POST AdmissionReviews to /validate or /mutate",
    )
}

async fn method_not_allowed() -> Response {
    json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed; use POST",
    )
}

/// The webhook router: `POST /validate`, `POST /mutate`.
pub fn webhook_router(admission: Arc<Admission>, max_body: usize) -> Router {
    let state = WebhookState {
        admission,
        max_body,
    };
    Router::new()
        .route("/validate", post(validate).fallback(method_not_allowed))
        .route("/mutate", post(mutate).fallback(method_not_allowed))
        .fallback(not_found)
        .with_state(state)
}

/// The `timeout` query parameter the API server appends to webhook calls.
fn timeout_param(uri: &Uri) -> Option<Duration> {
    uri.query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("timeout="))
        .and_then(parse_timeout)
}

/// Parses the API server's `?timeout=` (a Go duration such as `10s` or `500ms`).
pub fn parse_timeout(text: &str) -> Option<Duration> {
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|i| text.split_at(i))?;
    let value: f64 = number.parse().ok()?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return None,
    };
    (seconds > 0.0 && seconds.is_finite()).then(|| Duration::from_secs_f64(seconds.min(60.0)))
}

async fn validate(
    State(state): State<WebhookState>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    review(
        state,
        Endpoint::Validate,
        timeout_param(&uri),
        headers,
        body,
    )
    .await
}

async fn mutate(
    State(state): State<WebhookState>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    review(state, Endpoint::Mutate, timeout_param(&uri), headers, body).await
}

async fn review(
    state: WebhookState,
    endpoint: Endpoint,
    timeout: Option<Duration>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > state.max_body) {
        return too_large(state.max_body);
    }
    let deadline = timeout.unwrap_or(DEFAULT_TIMEOUT);
    let bytes =
        match tokio::time::timeout(deadline, Limited::new(body, state.max_body).collect()).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(err)) => {
                if err
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    return too_large(state.max_body);
                }
                return json_error(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the body: {err}"),
                );
            }
            Err(_) => {
                return json_error(
                    StatusCode::REQUEST_TIMEOUT,
                    "the body did not arrive within the request timeout",
                );
            }
        };
    match state.admission.handle(endpoint, &bytes) {
        Ok(answer) => {
            let s = &answer.summary;
            let span = tracing::info_span!(
                "admission",
                endpoint = endpoint.as_str(),
                uid = %s.uid,
                kind = s.kind,
                operation = s.operation,
                namespace = %s.namespace,
                name = %s.name,
                decision = s.decision.as_str(),
                duration_us = started.elapsed().as_micros() as u64,
            );
            let _entered = span.enter();
            if s.decision == crate::admission::Verdict::Denied {
                tracing::info!(rules = %s.denied_by, "admission review denied");
            } else {
                tracing::debug!("admission review answered");
            }
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                answer.body,
            )
                .into_response()
        }
        Err(err) => {
            tracing::warn!(endpoint = endpoint.as_str(), error = %err, "unreadable admission review");
            json_error(StatusCode::BAD_REQUEST, err.to_string())
        }
    }
}

fn too_large(limit: usize) -> Response {
    json_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body larger than {limit} bytes"),
    )
}

/// A named readiness condition.
pub struct ReadyCheck {
    pub name: &'static str,
    pub ready: Box<dyn Fn() -> bool + Send + Sync>,
}

#[derive(Clone)]
struct AdminState {
    metrics: Arc<Metrics>,
    checks: Arc<Vec<ReadyCheck>>,
}

/// The admin router: `GET /healthz`, `GET /readyz`, `GET /metrics`. Read-only.
pub fn admin_router(metrics: Arc<Metrics>, checks: Vec<ReadyCheck>) -> Router {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_like_go_durations() {
        assert_eq!(parse_timeout("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_timeout("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_timeout("2m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_timeout("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_timeout("soon"), None);
        assert_eq!(parse_timeout("0s"), None);
    }
}
