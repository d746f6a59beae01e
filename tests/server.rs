//! The webhook over real TLS: start the server on 127.0.0.1:0 with generated certificates
//! and call it with a rustls client that trusts only the test CA.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or bench may stop on a broken fixture
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use stateward::commands::certs::{Bundle, generate};
use stateward::commands::serve::{Running, ServeConfig, start};
use stateward::policy::context::{ServiceInfo, StatefulSetInfo};
use stateward::policy::{NoContext, StaticContext};
use stateward::webhook::tls::ConnectionLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Server {
    running: Running,
    ca: String,
    dir: tempfile::TempDir,
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
}

fn bundle() -> Bundle {
    generate(&["localhost".into(), "127.0.0.1".into()], 1).expect("certificates")
}

async fn server_with(policy: Option<&str>, context: Arc<dyn stateward::policy::Context>) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = bundle();
    write(&dir.path().join("tls.crt"), &certs.cert);
    write(&dir.path().join("tls.key"), &certs.key);
    let policy_path = policy.map(|text| {
        let path = dir.path().join("policy.yaml");
        write(&path, text);
        path
    });
    let running = start(ServeConfig {
        policy: policy_path,
        own_namespace: Some("stateward-system".into()),
        reload_interval: Duration::from_millis(50),
        context,
        ..ServeConfig::local(dir.path().join("tls.crt"), dir.path().join("tls.key"))
    })
    .await
    .expect("server starts");
    Server {
        running,
        ca: certs.ca_cert,
        dir,
    }
}

async fn server() -> Server {
    server_with(None, Arc::new(NoContext)).await
}

fn client_config(ca_pem: &str, alpn: &[u8]) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("ca pem"))
        .expect("add ca");
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

async fn tls(
    addr: std::net::SocketAddr,
    ca: &str,
    alpn: &[u8],
    name: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_owned()).expect("server name");
    tokio_rustls::TlsConnector::from(client_config(ca, alpn))
        .connect(name, tcp)
        .await
}

struct H1(http1::SendRequest<Full<Bytes>>);

impl H1 {
    async fn connect(server: &Server) -> H1 {
        let stream = tls(
            server.running.tls_addr,
            &server.ca,
            b"http/1.1",
            "localhost",
        )
        .await
        .expect("tls");
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        H1(sender)
    }

    async fn send(&mut self, method: &str, path: &str, body: Vec<u8>) -> (u16, Value) {
        self.0.ready().await.expect("connection ready");
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        let response = self.0.send_request(request).await.expect("response");
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, value)
    }

    async fn review(&mut self, path: &str, review: &Value) -> Value {
        let (status, body) = self
            .send("POST", path, serde_json::to_vec(review).expect("json"))
            .await;
        assert_eq!(status, 200, "{body}");
        body["response"].clone()
    }
}

fn example_review() -> Value {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/review-statefulset-create.json"),
    )
    .expect("example review");
    serde_json::from_str(&text).expect("example parses")
}

fn sts(name: &str, replicas: i32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": "shop", "labels": {"app": name}},
        "spec": {
            "serviceName": name, "replicas": replicas,
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "app:1",
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}
            },
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                "accessModes": ["ReadWriteOnce"], "storageClassName": "standard",
                "resources": {"requests": {"storage": "1Gi"}}}}]
        }
    })
}

fn review_of(
    uid: &str,
    group: &str,
    kind: &str,
    resource: &str,
    op: &str,
    object: Value,
    old: Value,
) -> Value {
    let meta = if object.is_null() { &old } else { &object };
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": resource},
            "name": meta["metadata"]["name"], "namespace": meta["metadata"]["namespace"],
            "operation": op,
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": object, "oldObject": old, "dryRun": false
        }
    })
}

#[tokio::test]
async fn http1_keep_alive_serves_many_reviews_on_one_connection() {
    let server = server().await;
    let mut client = H1::connect(&server).await;
    let review = example_review();
    for i in 0..50 {
        let mut r = review.clone();
        r["request"]["uid"] = json!(format!("uid-{i}"));
        let response = client.review("/validate", &r).await;
        assert_eq!(response["uid"], format!("uid-{i}"));
        assert_eq!(response["allowed"], false);
        assert_eq!(response["status"]["code"], 403);
        let message = response["status"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("statefulset.termination-grace-period"),
            "{message}"
        );
        assert!(
            message.contains("terminationGracePeriodSeconds"),
            "{message}"
        );
        let warnings = response["warnings"].as_array().expect("warnings");
        assert!(
            warnings
                .iter()
                .all(|w| w.as_str().is_some_and(|w| w.chars().count() <= 120))
        );
        assert!(warnings.iter().any(|w| {
            w.as_str()
                .is_some_and(|w| w.starts_with("statefulset.readiness-probe"))
        }));
    }
    server.running.shutdown().await;
}

#[tokio::test]
async fn http2_is_negotiated_by_alpn() {
    let server = server().await;
    let stream = tls(server.running.tls_addr, &server.ca, b"h2", "127.0.0.1")
        .await
        .expect("tls");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .expect("h2");
    tokio::spawn(conn);
    for _ in 0..3 {
        let request = Request::post("https://127.0.0.1/validate")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                serde_json::to_vec(&example_review()).expect("json"),
            )))
            .expect("request");
        let response = sender.send_request(request).await.expect("response");
        assert_eq!(response.status(), 200);
        let body: Value = serde_json::from_slice(
            &response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes(),
        )
        .expect("json");
        assert_eq!(body["response"]["allowed"], false);
    }
    server.running.shutdown().await;
}

fn apply_patch(object: &Value, response: &Value) -> Value {
    assert_eq!(response["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(response["patch"].as_str().expect("base64 patch"))
        .expect("base64");
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("patch");
    let mut patched = object.clone();
    json_patch::patch(&mut patched, &patch).expect("patch applies");
    patched
}

#[tokio::test]
async fn mutate_returns_a_patch_that_applies_and_settles() {
    let server = server().await;
    let mut client = H1::connect(&server).await;
    let review = example_review();
    let response = client.review("/mutate", &review).await;
    assert_eq!(
        response["allowed"], true,
        "the mutating webhook never denies"
    );
    let patched = apply_patch(&review["request"]["object"], &response);
    assert_eq!(
        patched["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
            [0],
        json!({"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "nginx"}}, "topologyKey": "kubernetes.io/hostname"}})
    );
    // Everything else is as submitted.
    let mut unpatched = patched.clone();
    unpatched["spec"]["template"]["spec"]
        .as_object_mut()
        .map(|s| s.remove("affinity"));
    assert_eq!(unpatched, review["request"]["object"]);
    // The mutated object needs no further patch.
    let mut again = review.clone();
    again["request"]["object"] = patched;
    let response = client.review("/mutate", &again).await;
    assert!(response.get("patch").is_none(), "{response}");
    server.running.shutdown().await;
}

#[tokio::test]
async fn update_scale_down_warns_with_the_claims_left_behind() {
    let server = server().await;
    let mut client = H1::connect(&server).await;
    let review = review_of(
        "u1",
        "apps",
        "StatefulSet",
        "statefulsets",
        "UPDATE",
        sts("db", 2),
        sts("db", 4),
    );
    let response = client.review("/validate", &review).await;
    assert_eq!(response["allowed"], true);
    let warnings: Vec<String> =
        serde_json::from_value(response["warnings"].clone()).expect("warnings");
    let warning = warnings
        .iter()
        .find(|w| w.starts_with("statefulset.scale-down-retains-claims"))
        .expect("scale-down warning");
    assert!(warning.contains("data-db-2, data-db-3"), "{warning}");
    // No patch on UPDATE.
    let response = client.review("/mutate", &review).await;
    assert!(response.get("patch").is_none());
    server.running.shutdown().await;
}

/// A StatefulSet pod the scheduler placed on node n1, running.
fn statefulset_pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "u", "controller": true}]},
        "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "app:1"}]},
        "status": {"phase": "Running"}
    })
}

#[tokio::test]
async fn force_delete_is_denied_except_for_exempt_controllers() {
    let server = server().await;
    let mut client = H1::connect(&server).await;
    let mut review = review_of(
        "d1",
        "",
        "Pod",
        "pods",
        "DELETE",
        Value::Null,
        statefulset_pod("db-0"),
    );
    review["request"]["options"] =
        json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1", "gracePeriodSeconds": 0});
    let response = client.review("/validate", &review).await;
    assert_eq!(response["allowed"], false);
    assert!(
        response["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("pod.force-delete")
    );
    // Dry-run requests are evaluated the same way.
    review["request"]["dryRun"] = json!(true);
    assert_eq!(client.review("/validate", &review).await["allowed"], false);
    review["request"]["userInfo"]["username"] =
        json!("system:serviceaccount:kube-system:pod-garbage-collector");
    assert_eq!(client.review("/validate", &review).await["allowed"], true);
    // The kubelet of the pod's node finishing a graceful deletion.
    review["request"]["userInfo"] =
        json!({"username": "system:node:n1", "groups": ["system:nodes", "system:authenticated"]});
    assert_eq!(client.review("/validate", &review).await["allowed"], true);
    // A pod never scheduled: the API server made the deletion immediate itself.
    let mut unscheduled = statefulset_pod("db-2");
    unscheduled["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("nodeName");
    let mut controller = review_of("d3", "", "Pod", "pods", "DELETE", Value::Null, unscheduled);
    controller["request"]["options"] = json!({"gracePeriodSeconds": 0});
    assert_eq!(
        client.review("/validate", &controller).await["allowed"],
        true
    );
    // A normal delete passes.
    let mut normal = review_of(
        "d2",
        "",
        "Pod",
        "pods",
        "DELETE",
        Value::Null,
        statefulset_pod("db-0"),
    );
    normal["request"]["options"] = json!({"gracePeriodSeconds": 30});
    assert_eq!(client.review("/validate", &normal).await["allowed"], true);
    server.running.shutdown().await;
}

#[tokio::test]
async fn service_delete_warns_while_a_set_uses_it() {
    let mut ctx = StaticContext::default();
    ctx.add_statefulset(StatefulSetInfo {
        namespace: "shop".into(),
        name: "db".into(),
        service_name: Some("db".into()),
        replicas: 3,
        ordinals_start: 0,
        pod_labels: [("app".to_owned(), "db".to_owned())].into(),
        claim_templates: vec!["data".into()],
        deletes_claims_on_scale_down: false,
    });
    ctx.add_service(ServiceInfo {
        namespace: "shop".into(),
        name: "db".into(),
        headless: true,
        selector: Some([("app".to_owned(), "db".to_owned())].into()),
    });
    let server = server_with(None, Arc::new(ctx)).await;
    let mut client = H1::connect(&server).await;
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": "shop"},
        "spec": {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"name": "pg", "port": 5432}]}});
    let response = client
        .review(
            "/validate",
            &review_of("s1", "", "Service", "services", "DELETE", Value::Null, svc),
        )
        .await;
    // Baseline: allowed with a warning (helm uninstall deletes Services before sets).
    assert_eq!(response["allowed"], true);
    assert!(
        response["warnings"][0]
            .as_str()
            .unwrap_or_default()
            .starts_with("service.headless-in-use"),
        "{response}"
    );
    // kubectl scale: the Scale carries no claim templates; the set comes from the context.
    let scale_of = |replicas: i32| {
        json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": {"name": "db", "namespace": "shop"}, "spec": {"replicas": replicas}})
    };
    let mut scale = review_of(
        "s2",
        "autoscaling",
        "Scale",
        "statefulsets",
        "UPDATE",
        scale_of(1),
        scale_of(3),
    );
    scale["request"]["resource"]["group"] = json!("apps");
    scale["request"]["subResource"] = json!("scale");
    let response = client.review("/validate", &scale).await;
    assert_eq!(response["allowed"], true);
    assert!(
        response["warnings"][0]
            .as_str()
            .unwrap_or_default()
            .contains("data-db-1, data-db-2"),
        "{response}"
    );
    server.running.shutdown().await;
}

#[tokio::test]
async fn unknown_kinds_and_subresources_pass_untouched() {
    let server = server().await;
    let mut client = H1::connect(&server).await;
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x", "namespace": "shop"},
        "spec": {"template": {"spec": {"terminationGracePeriodSeconds": 0}}}});
    let review = review_of(
        "k1",
        "apps",
        "Deployment",
        "deployments",
        "CREATE",
        deployment,
        Value::Null,
    );
    let response = client.review("/validate", &review).await;
    assert_eq!(
        (response["uid"].as_str(), response["allowed"].as_bool()),
        (Some("k1"), Some(true))
    );
    assert!(response.get("warnings").is_none());
    let mut scale = review_of(
        "k2",
        "apps",
        "StatefulSet",
        "statefulsets",
        "UPDATE",
        json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "db", "namespace": "shop"}, "spec": {"replicas": 1}}),
        json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "db", "namespace": "shop"}, "spec": {"replicas": 5}}),
    );
    scale["request"]["subResource"] = json!("scale");
    let response = client.review("/validate", &scale).await;
    // Never denied; without the set in the context, a shorter warning.
    assert_eq!(response["allowed"], true);
    assert!(
        response["warnings"][0]
            .as_str()
            .unwrap_or_default()
            .contains("5->1"),
        "{response}"
    );
    let response = client.review("/mutate", &scale).await;
    assert!(response.get("patch").is_none());
    // The webhook's own namespace is excluded.
    let mut own = example_review();
    own["request"]["namespace"] = json!("stateward-system");
    own["request"]["object"]["metadata"]["namespace"] = json!("stateward-system");
    assert_eq!(client.review("/validate", &own).await["allowed"], true);
    server.running.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_json_errors_with_the_right_status() {
    let server = server().await;
    let mut client = H1::connect(&server).await;
    let (status, body) = client
        .send("POST", "/validate", b"{not json".to_vec())
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("not an AdmissionReview")),
        "{body}"
    );
    let (status, body) = client
        .send(
            "POST",
            "/validate",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
        )
        .await;
    assert_eq!((status, body["status"].as_u64()), (400, Some(400)));
    let mut bad = example_review();
    bad["request"]["object"]["spec"]["replicas"] = json!("three");
    let (status, body) = client
        .send("POST", "/validate", serde_json::to_vec(&bad).expect("json"))
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("replicas")),
        "{body}"
    );
    let (status, body) = client
        .send("POST", "/validate", vec![b' '; 3 * 1024 * 1024 + 1])
        .await;
    assert_eq!(status, 413, "{body}");
    // The server closes a connection whose oversized body it did not read.
    let mut client = H1::connect(&server).await;
    let (status, _) = client.send("POST", "/nowhere", b"{}".to_vec()).await;
    assert_eq!(status, 404);
    let (status, body) = client.send("GET", "/validate", Vec::new()).await;
    assert_eq!(status, 405);
    assert_eq!(body["status"], 405);
    server.running.shutdown().await;
}

#[tokio::test]
async fn plain_http_on_the_tls_port_gets_no_http_answer() {
    let server = server().await;
    let mut tcp = TcpStream::connect(server.running.tls_addr)
        .await
        .expect("connect");
    tcp.write_all(b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    assert!(
        !String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
    // Untrusted certificates are refused by a client that trusts only its CA.
    let other = bundle();
    assert!(
        tls(
            server.running.tls_addr,
            &other.ca_cert,
            b"http/1.1",
            "localhost"
        )
        .await
        .is_err()
    );
    server.running.shutdown().await;
}

async fn admin_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let tcp = TcpStream::connect(addr).await.expect("admin");
    let (mut sender, conn) = http1::handshake::<_, Full<Bytes>>(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let response = sender
        .send_request(
            Request::get(path)
                .header("host", "localhost")
                .body(Full::new(Bytes::new()))
                .expect("req"),
        )
        .await
        .expect("response");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn admin_port_reports_health_readiness_and_metrics() {
    let server = server().await;
    let mut client = H1::connect(&server).await;
    client.review("/validate", &example_review()).await;
    let admin = server.running.admin_addr;
    assert_eq!(admin_get(admin, "/healthz").await, (200, "ok\n".into()));
    assert_eq!(admin_get(admin, "/readyz").await.0, 200);
    let (status, metrics) = admin_get(admin, "/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains(r#"stateward_admission_requests_total{endpoint="validate",kind="StatefulSet",operation="CREATE",decision="denied"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"stateward_violations_total{rule="statefulset.termination-grace-period",mode="enforce"} 1"#), "{metrics}");
    assert!(
        metrics.contains("stateward_admission_duration_seconds_bucket{le=\"0.0005\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("stateward_in_flight_requests"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("nginx"),
        "object names never become labels"
    );
    assert_eq!(admin_get(admin, "/nothing").await.0, 404);
    server.running.shutdown().await;
}

/// Polls `check` until it returns true (no fixed sleeps); fails after `limit`.
async fn eventually<F, Fut>(limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < limit,
            "condition not reached within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Lays out files as the kubelet does for Secret volumes: `<dir>/..<ts>/<file>`,
/// `<dir>/..data -> ..<ts>`, `<dir>/<file> -> ..data/<file>`; swaps `..data` atomically.
fn kubelet_layout(dir: &Path, generation: &str, files: &[(&str, &str)]) {
    let data = dir.join(format!("..{generation}"));
    std::fs::create_dir_all(&data).expect("data dir");
    for (name, content) in files {
        write(&data.join(name), content);
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(PathBuf::from("..data").join(name), &link)
                .expect("file link");
        }
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{generation}"), &tmp).expect("tmp link");
    std::fs::rename(&tmp, dir.join("..data")).expect("atomic swap");
}

async fn served_cert(addr: std::net::SocketAddr, ca: &str) -> Option<Vec<u8>> {
    let stream = tls(addr, ca, b"http/1.1", "localhost").await.ok()?;
    let certs = stream.get_ref().1.peer_certificates()?;
    certs.first().map(|c| c.as_ref().to_vec())
}

#[tokio::test]
async fn certificate_rotation_via_kubelet_symlink_swap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = bundle();
    kubelet_layout(
        dir.path(),
        "2026_11_22_12_00_00.1",
        &[("tls.crt", &first.cert), ("tls.key", &first.key)],
    );
    let running = start(ServeConfig {
        reload_interval: Duration::from_millis(50),
        max_body_bytes: 1024 * 1024,
        ..ServeConfig::local(dir.path().join("tls.crt"), dir.path().join("tls.key"))
    })
    .await
    .expect("server starts");
    let addr = running.tls_addr;
    assert!(served_cert(addr, &first.ca_cert).await.is_some());
    let second = bundle();
    kubelet_layout(
        dir.path(),
        "2026_11_22_13_00_00.2",
        &[("tls.crt", &second.cert), ("tls.key", &second.key)],
    );
    let expected = CertificateDer::from_pem_slice(second.cert.as_bytes())
        .expect("pem")
        .as_ref()
        .to_vec();
    eventually(Duration::from_secs(10), || {
        let (ca, expected) = (second.ca_cert.clone(), expected.clone());
        async move { served_cert(addr, &ca).await == Some(expected) }
    })
    .await;
    // A broken new certificate keeps the last good one and is counted.
    kubelet_layout(
        dir.path(),
        "2026_11_22_14_00_00.3",
        &[("tls.crt", "not a certificate"), ("tls.key", &second.key)],
    );
    let metrics = running.metrics.clone();
    eventually(Duration::from_secs(10), || {
        let text = metrics.encode();
        async move {
            text.contains(r#"stateward_reloads_total{resource="certificate",outcome="failure"} 1"#)
        }
    })
    .await;
    assert!(served_cert(addr, &second.ca_cert).await.is_some());
    assert!(
        running
            .metrics
            .encode()
            .contains(r#"stateward_reloads_total{resource="certificate",outcome="success"} 1"#)
    );
    running.shutdown().await;
}

const POLICY_HEAD: &str =
    "apiVersion: stateward.io/v1alpha1\nkind: Policy\nmetadata: {name: live}\nspec:\n  rules:\n";

#[tokio::test]
async fn policy_reload_good_and_bad() {
    let server = server_with(
        Some(&format!(
            "{POLICY_HEAD}    statefulset.termination-grace-period: {{mode: warn}}\n"
        )),
        Arc::new(NoContext),
    )
    .await;
    let mut client = H1::connect(&server).await;
    assert_eq!(
        client.review("/validate", &example_review()).await["allowed"],
        true
    );
    let path = server.dir.path().join("policy.yaml");
    write(
        &path,
        &format!("{POLICY_HEAD}    statefulset.termination-grace-period: {{mode: enforce}}\n"),
    );
    let addr_ca = (server.running.tls_addr, server.ca.clone());
    let admission = server.running.admission.clone();
    eventually(Duration::from_secs(10), || {
        let admission = admission.clone();
        async move {
            admission
                .policy
                .load()
                .mode(stateward::policy::RuleId::StatefulSetTerminationGracePeriod)
                == stateward::policy::Mode::Enforce
        }
    })
    .await;
    let _ = addr_ca;
    assert_eq!(
        client.review("/validate", &example_review()).await["allowed"],
        false
    );
    // A broken file keeps the last good policy.
    write(
        &path,
        &format!("{POLICY_HEAD}    statefulset.termination-grace-perid: {{mode: off}}\n"),
    );
    let metrics = server.running.metrics.clone();
    eventually(Duration::from_secs(10), || {
        let text = metrics.encode();
        async move { text.contains(r#"stateward_reloads_total{resource="policy",outcome="failure"} 1"#) }
    })
    .await;
    assert_eq!(
        client.review("/validate", &example_review()).await["allowed"],
        false
    );
    server.running.shutdown().await;
}

fn certs_command(out: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_stateward"))
        .args([
            "certs",
            "--service",
            "stateward",
            "--namespace",
            "ops",
            "--out",
        ])
        .arg(out)
        .output()
        .expect("certs runs")
}

#[tokio::test]
async fn certs_for_a_service_name_are_served_and_verified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = certs_command(dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bundle = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let ca = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(&bundle)
            .expect("base64"),
    )
    .expect("pem");
    assert_eq!(
        ca,
        std::fs::read_to_string(dir.path().join("ca.crt")).expect("ca.crt")
    );
    for f in ["ca.key", "tls.crt", "tls.key"] {
        assert!(dir.path().join(f).exists(), "{f}");
    }
    // Existing files are kept without --force.
    let again = certs_command(dir.path());
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(
        ca,
        std::fs::read_to_string(dir.path().join("ca.crt")).expect("ca.crt")
    );
    // The serving certificate is valid for the Service DNS names.
    let running = start(ServeConfig {
        reload_interval: Duration::from_secs(60),
        max_body_bytes: 1024,
        ..ServeConfig::local(dir.path().join("tls.crt"), dir.path().join("tls.key"))
    })
    .await
    .expect("server starts");
    for name in [
        "stateward.ops.svc",
        "stateward.ops.svc.cluster.local",
        "stateward.ops",
        "stateward",
    ] {
        assert!(
            tls(running.tls_addr, &ca, b"http/1.1", name).await.is_ok(),
            "{name}"
        );
    }
    assert!(
        tls(running.tls_addr, &ca, b"http/1.1", "other.ops.svc")
            .await
            .is_err()
    );
    running.shutdown().await;
}

#[tokio::test]
async fn bad_certificate_or_policy_at_start_fails_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("tls.crt"), "garbage");
    write(&dir.path().join("tls.key"), "garbage");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stateward"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--tls-cert",
        ])
        .arg(dir.path().join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.path().join("tls.key"))
        .output()
        .expect("serve runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tls.crt"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sigterm_drains_and_exits_zero() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stateward"))
        .args([
            "serve",
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("serve starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    // serve prints its --dev help once it is listening.
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.contains("Stop with Ctrl-C"))),
        "serve exited before serving"
    );
    assert!(dir.path().join("certs/dev/ca.crt").exists());
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert_eq!(status.code(), Some(0));
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "serve did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Ends a child process left running by a failed assertion.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A rolling restart: on SIGTERM the real binary is unready at once, keeps answering
/// (new connections too) for `--shutdown-delay`, then drains and exits 0.
#[tokio::test]
async fn sigterm_turns_unready_and_keeps_serving_for_the_shutdown_delay() {
    use std::io::BufRead;
    let delay = Duration::from_secs(2);
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = bundle();
    write(&dir.path().join("tls.crt"), &certs.cert);
    write(&dir.path().join("tls.key"), &certs.key);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stateward"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--cluster",
            "off",
            "--shutdown-delay",
            &delay.as_secs().to_string(),
            "--log-format",
            "json",
            "--tls-cert",
        ])
        .arg(dir.path().join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.path().join("tls.key"))
        .env_remove("POD_NAMESPACE")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("serve starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut child = KillOnDrop(child);
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    let (tls_addr, admin_addr) = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("serve did not announce itself: {log:?}"));
        let entry: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        log.push(line);
        if entry["message"] == "stateward webhook serving" {
            let addr = |field: &str| -> std::net::SocketAddr {
                entry[field]
                    .as_str()
                    .and_then(|a| a.parse().ok())
                    .expect(field)
            };
            break (addr("tls_addr"), addr("admin_addr"));
        }
    };
    assert_eq!(admin_get(admin_addr, "/readyz").await.0, 200);

    let signalled = Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    // Unready at once ...
    loop {
        let (status, body) = admin_get(admin_addr, "/readyz").await;
        if status == 503 {
            assert!(body.contains("shutting down"), "{body}");
            break;
        }
        assert!(
            signalled.elapsed() < Duration::from_millis(500),
            "/readyz still answers {status} {:?} after SIGTERM",
            signalled.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ... while a new connection is still accepted and answered.
    let stream = tls(tls_addr, &certs.ca_cert, b"http/1.1", "localhost")
        .await
        .expect("the HTTPS port accepts during the shutdown delay");
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut client = H1(sender);
    let mut review = example_review();
    review["request"]["uid"] = json!("during-shutdown-delay");
    let response = client.review("/validate", &review).await;
    assert_eq!(response["uid"], "during-shutdown-delay");
    assert!(
        signalled.elapsed() < delay,
        "answered only after the delay ({:?}); the test proves nothing",
        signalled.elapsed()
    );
    assert!(child.0.try_wait().expect("wait").is_none(), "exited early");
    drop(client);

    // Then it drains and exits 0, not before the delay and well within delay + 5 s.
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            signalled.elapsed() < delay + Duration::from_secs(5),
            "serve did not exit within the delay + 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let exited = signalled.elapsed();
    // The reader ends at the end of the pipe.
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(5)) {
        log.push(line);
    }
    assert_eq!(status.code(), Some(0), "{log:#?}");
    assert!(exited >= delay, "exited after {exited:?}, before the delay");
    assert!(
        log.iter()
            .any(|l| l.contains("SIGTERM received; not ready, serving for 2 s before draining")),
        "{log:#?}"
    );
}

#[tokio::test]
async fn a_client_that_trickles_headers_is_dropped() {
    let certs = bundle();
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("tls.crt"), &certs.cert);
    write(&dir.path().join("tls.key"), &certs.key);
    let running = start(ServeConfig {
        reload_interval: Duration::from_secs(60),
        max_body_bytes: 1024,
        limits: ConnectionLimits {
            header_read_timeout: Duration::from_millis(300),
            ..ConnectionLimits::default()
        },
        ..ServeConfig::local(dir.path().join("tls.crt"), dir.path().join("tls.key"))
    })
    .await
    .expect("server starts");
    let mut stream = tls(running.tls_addr, &certs.ca_cert, b"http/1.1", "localhost")
        .await
        .expect("tls");
    stream
        .write_all(b"POST /validate HTTP/1.1\r\nHost: local")
        .await
        .expect("partial headers");
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server kept a trickling connection open");
    assert!(started.elapsed() < Duration::from_secs(3));
    running.shutdown().await;
}

mod fuzz {
    use std::sync::Arc;

    use axum::body::Body;
    use http_body_util::BodyExt;
    use proptest::prelude::*;
    use serde_json::Value;
    use stateward::metrics::Metrics;
    use stateward::policy::{NoContext, Policy};
    use stateward::webhook::admission::Admission;
    use stateward::webhook::routes::webhook_router;
    use tower::ServiceExt;

    fn example() -> Value {
        super::example_review()
    }

    /// Replaces the value at a pseudo-random place in `node` with `replacement`.
    fn mutate(node: &mut Value, path: &[usize], replacement: Value) {
        let Some((step, rest)) = path.split_first() else {
            *node = replacement;
            return;
        };
        match node {
            Value::Object(map) if !map.is_empty() => {
                let key = map
                    .keys()
                    .nth(step % map.len())
                    .cloned()
                    .unwrap_or_default();
                if let Some(next) = map.get_mut(&key) {
                    mutate(next, rest, replacement);
                }
            }
            Value::Array(items) if !items.is_empty() => {
                let len = items.len();
                mutate(&mut items[step % len], rest, replacement);
            }
            _ => *node = replacement,
        }
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(".{0,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn answer(body: Vec<u8>, path: &str) -> (u16, Vec<u8>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let admission = Arc::new(Admission::new(
                Policy::baseline(),
                Arc::new(NoContext),
                Arc::new(Metrics::new()),
            ));
            let router = webhook_router(admission, 64 * 1024);
            let request = axum::http::Request::post(path)
                .body(Body::from(body))
                .expect("request");
            let response = router.oneshot(request).await.expect("infallible");
            let status = response.status().as_u16();
            let bytes = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            (status, bytes.to_vec())
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, .. ProptestConfig::default() })]

        #[test]
        fn random_bytes_get_a_well_formed_answer(body in prop::collection::vec(any::<u8>(), 0..2048)) {
            let (status, bytes) = answer(body, "/validate");
            prop_assert!(matches!(status, 200 | 400 | 413));
            prop_assert!(serde_json::from_slice::<Value>(&bytes).is_ok());
        }

        #[test]
        fn mutated_reviews_get_a_well_formed_answer(
            path in prop::collection::vec(any::<usize>(), 1..8),
            replacement in any_json(),
            mutate_endpoint in any::<bool>(),
        ) {
            let mut doc = example();
            mutate(&mut doc, &path, replacement);
            let endpoint = if mutate_endpoint { "/mutate" } else { "/validate" };
            let (status, bytes) = answer(serde_json::to_vec(&doc).expect("json"), endpoint);
            prop_assert!(matches!(status, 200 | 400), "status {}", status);
            let value: Value = serde_json::from_slice(&bytes).expect("JSON answer");
            if status == 200 {
                prop_assert!(value["response"]["allowed"].is_boolean());
            } else {
                prop_assert!(value["error"].is_string());
            }
        }
    }
}
