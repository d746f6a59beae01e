//! The no-op webhook both `benches/load.rs` and `benches/apiserver.rs` compare stateward
//! with: the cheapest honest webhook on the same stack (tokio-rustls, hyper-util, axum).
//! It decodes the body into a `serde_json::Value` (no more), echoes the uid and allows.
//! Included by path (`#[path = "support/noop.rs"] mod noop;`): a directory without a
//! `main.rs` is no bench target of its own.
use std::path::Path;

use axum::Router;
use axum::routing::post;
use bytes::Bytes;
use serde_json::{Value, json};

/// The baseline: decode to a `Value` (no more), echo the uid, allow.
pub async fn noop(body: Bytes) -> axum::response::Response {
    use axum::response::IntoResponse;
    match answer(&body) {
        Some(answer) => json_response(answer),
        None => axum::http::StatusCode::BAD_REQUEST.into_response(),
    }
}

/// What [`noop`] answers to `body` (`None`: not a review with a uid).
pub fn answer(body: &[u8]) -> Option<Vec<u8>> {
    let review: Value = serde_json::from_slice(body).ok()?;
    let uid = review.pointer("/request/uid").and_then(Value::as_str)?;
    Some(allow_body(uid))
}

fn allow_body(uid: &str) -> Vec<u8> {
    review_body(json!({"uid": uid, "allowed": true}))
}

/// An AdmissionReview carrying `response`, encoded.
pub fn review_body(response: Value) -> Vec<u8> {
    let answer = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "response": response});
    serde_json::to_vec(&answer).unwrap_or_default()
}

/// `body` as a 200 `application/json` response.
pub fn json_response(body: Vec<u8>) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// An AdmissionReview response that allows the request `uid`.
pub fn allow(uid: &str) -> axum::response::Response {
    json_response(allow_body(uid))
}

/// `/validate` and `/mutate`, both answered by [`noop`].
pub fn router() -> Router {
    Router::new()
        .route("/validate", post(noop))
        .route("/mutate", post(noop))
}

/// Serves `router` over TLS with the certificate and key at `cert`, `key` on an
/// ephemeral port of 127.0.0.1, on the current runtime, until the runtime ends.
pub async fn serve(router: Router, cert: &Path, key: &Path) -> std::net::SocketAddr {
    let key = stateward::webhook::tls::load_certified_key(cert, key).expect("certificate");
    let config =
        stateward::webhook::tls::server_config(stateward::webhook::tls::SwappableCert::new(key))
            .expect("tls config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _tx = tx;
        stateward::webhook::tls::serve_tls(listener, config, router, Default::default(), rx).await
    });
    addr
}
