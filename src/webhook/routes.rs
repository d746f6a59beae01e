//! HTTP routing of the webhook: `POST /validate` and `POST /mutate` (served over TLS by
//! [`super::tls`]), with the body limit and the API server's `?timeout=`. It decodes
//! nothing itself ([`super::admission`] does) and never calls the API server. Errors are
//! JSON: `{"error": "...", "status": 400}`.
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::{BodyExt, Limited};

use crate::webhook::admission::{Admission, Endpoint};

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

pub(crate) async fn not_found() -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        "no such endpoint; POST AdmissionReviews to /validate or /mutate",
    )
}

pub(crate) async fn method_not_allowed() -> Response {
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

/// Parses the API server's `?timeout=` (a Go duration such as `10s` or `500ms`): at most
/// a minute, as the API server caps webhook timeouts at 30 s; `None` for zero.
pub fn parse_timeout(text: &str) -> Option<Duration> {
    crate::duration::parse(text)
        .filter(|d| !d.is_zero())
        .map(|d| d.min(Duration::from_secs(60)))
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
            let denied = s.decision == crate::webhook::admission::Verdict::Denied;
            // A span only when something is logged in it: a denial (info), or every
            // answer at debug. Allowed reviews at info cost no span.
            if denied || tracing::enabled!(tracing::Level::DEBUG) {
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
                if denied {
                    tracing::info!(rules = %s.denied_by, "admission review denied");
                } else {
                    tracing::debug!("admission review answered");
                }
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
