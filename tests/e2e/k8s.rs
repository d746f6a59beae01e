//! Requests that keep what typed `Api` calls hide (status code, `Warning` headers, the
//! Status body), polling, and the objects the cases create.
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use kube::Client;
use kube::client::Body;
use kube::core::Request;
use serde_json::{Value, json};

/// The answer to one API request.
pub struct Reply {
    pub status: u16,
    pub warnings: Vec<String>,
    pub body: Value,
}

impl Reply {
    /// `message` of a Status body (errors), empty otherwise.
    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or("")
    }

    pub fn warned(&self, needle: &str) -> bool {
        self.warnings.iter().any(|w| w.contains(needle))
    }

    pub fn denied(&self) -> bool {
        self.status >= 400 && self.message().contains("denied")
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if self.status >= 300 {
            write!(f, " message={:?}", self.message())?;
        }
        if self.warnings.is_empty() {
            write!(f, " warnings=[]")
        } else {
            write!(f, " warnings={:?}", self.warnings)
        }
    }
}

/// The text of a `Warning: 299 - "text"` header.
fn warning_text(header: &str) -> String {
    match (header.find('"'), header.rfind('"')) {
        (Some(a), Some(b)) if b > a => header[a + 1..b].replace("\\\"", "\""),
        _ => header.to_owned(),
    }
}

/// Sends a request built with [`Request`] and keeps status, warnings and body.
pub async fn send(
    client: &Client,
    request: Result<hyper::Request<Vec<u8>>, kube::core::request::Error>,
) -> Reply {
    let request = request.expect("request builds");
    let what = format!("{} {}", request.method(), request.uri());
    let response = tokio::time::timeout(
        Duration::from_secs(30),
        client.send(request.map(Body::from)),
    )
    .await
    .unwrap_or_else(|_| panic!("{what}: no answer within 30 s"))
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    let status = response.status().as_u16();
    let warnings = response
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| warning_text(&String::from_utf8_lossy(v.as_bytes())))
        .collect();
    let bytes = response
        .into_body()
        .collect_bytes()
        .await
        .unwrap_or_else(|e| panic!("{what}: body: {e}"));
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Reply {
        status,
        warnings,
        body,
    }
}

pub fn pods(ns: &str) -> Request {
    Request::new(format!("/api/v1/namespaces/{ns}/pods"))
}

pub fn services(ns: &str) -> Request {
    Request::new(format!("/api/v1/namespaces/{ns}/services"))
}

pub fn statefulsets(ns: &str) -> Request {
    Request::new(format!("/apis/apps/v1/namespaces/{ns}/statefulsets"))
}

pub fn events(ns: &str) -> Request {
    Request::new(format!("/api/v1/namespaces/{ns}/events"))
}

pub fn to_vec(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("JSON")
}

/// Polls `check` every 200 ms until it returns `Ok`; panics after `limit` with `what` and
/// the last `Err` (a description of the state seen).
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        match check().await {
            Ok(value) => return value,
            Err(state) if started.elapsed() >= limit => {
                panic!("timed out after {limit:?} waiting for {what}; last state: {state}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Plain HTTP/1.1 GET (stateward's admin port, etcd's health), with a 2 s limit.
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(tcp))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        let response = sender
            .send_request(
                hyper::Request::get(path)
                    .header("host", "localhost")
                    .body(Full::new(Bytes::new()))
                    .expect("request"),
            )
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .unwrap_or_else(|_| Err("timed out after 2 s".into()))
}

/// A headless Service for the set `app` with a named port.
pub fn headless_service(name: &str, app: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {
            "clusterIP": "None",
            "selector": {"app": app},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}]
        }
    })
}

/// A StatefulSet the baseline policy admits without an enforce finding: Parallel pod
/// management (so every pod is created without a kubelet), a claim template `data`
/// mounted at /data, probes, requests, a restricted security context, grace 30 s and no
/// affinity (the mutating webhook adds one).
pub fn statefulset(name: &str, replicas: i32, service: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "podManagementPolicy": "Parallel",
            "serviceName": service,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 30,
                    "containers": [{
                        "name": "main",
                        "image": "busybox",
                        "command": ["sleep", "infinity"],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {"exec": {"command": ["true"]}},
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                        "securityContext": {"runAsNonRoot": true, "allowPrivilegeEscalation": false},
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]
                    }]
                }
            },
            "volumeClaimTemplates": [claim_template("data")]
        }
    })
}

/// Gives the set's selector and pod template the label `app=<app>` (so a Service of that
/// name selects its pods and no unrelated headless-service warning shows up).
pub fn relabel(sts: &mut Value, app: &str) {
    sts["metadata"]["labels"]["app"] = json!(app);
    sts["spec"]["selector"]["matchLabels"]["app"] = json!(app);
    sts["spec"]["template"]["metadata"]["labels"]["app"] = json!(app);
}

pub fn claim_template(name: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "standard",
            "resources": {"requests": {"storage": "1Gi"}}
        }
    })
}

/// `true` when the object's pod template has a pod anti-affinity.
pub fn has_anti_affinity(sts: &Value) -> bool {
    sts.pointer("/spec/template/spec/affinity/podAntiAffinity")
        .is_some_and(|v| !v.is_null())
}
