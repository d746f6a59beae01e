//! Load benchmark of `stateward serve` against a no-op webhook on the same stack (rustls,
//! hyper, axum; parse the review, echo the uid, allow). Each server runs in its own child
//! process so its CPU time and memory can be read from /proc. The driver uses 25 HTTP/1.1
//! keep-alive connections, as kube-apiserver does, with apiserver-shaped reviews: ~8 KB
//! StatefulSet CREATEs, UPDATEs with oldObject, Services and Pods.
//!
//! Run: `cargo bench --bench load` (about 20 seconds). Absolute figures drift on shared
//! machines, so the report gives stateward's figures as ratios to the no-op server.
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

const CONNECTIONS: usize = 25;
const SATURATION: Duration = Duration::from_secs(4);
const FIXED_RATE: u64 = 1000;
const FIXED_DURATION: Duration = Duration::from_secs(4);

// ---- child: one server ---------------------------------------------------------------

async fn noop(body: Bytes) -> axum::response::Response {
    use axum::response::IntoResponse;
    match serde_json::from_slice::<AdmissionReview<DynamicObject>>(&body)
        .ok()
        .and_then(|r| {
            let request: Result<AdmissionRequest<DynamicObject>, _> = r.try_into();
            request.ok()
        }) {
        Some(req) => {
            let review = AdmissionResponse::from(&req).into_review();
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                serde_json::to_vec(&review).unwrap_or_default(),
            )
                .into_response()
        }
        None => axum::http::StatusCode::BAD_REQUEST.into_response(),
    }
}

fn child(role: &str, dir: &Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        let addr = if role == "stateward" {
            let running = stateward::serve::start(stateward::serve::ServeConfig::local(cert, key))
                .await
                .expect("stateward starts");
            let addr = running.tls_addr;
            std::mem::forget(running);
            addr
        } else {
            let key = stateward::tls::load_certified_key(&cert, &key).expect("certificate");
            let config = stateward::tls::server_config(stateward::tls::SwappableCert::new(key))
                .expect("tls config");
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            let router = Router::new().route("/validate", post(noop));
            let (_tx, rx) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                let _tx = _tx;
                stateward::tls::serve_tls(listener, config, router, Default::default(), rx).await
            });
            addr
        };
        println!("PORT {}", addr.port());
        // Serve until the parent closes stdin.
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            while std::io::stdin()
                .read_line(&mut line)
                .map(|n| n > 0)
                .unwrap_or(false)
            {}
        })
        .await
        .ok();
    });
}

// ---- parent: the driver --------------------------------------------------------------

struct ServerProcess {
    child: Child,
    addr: SocketAddr,
}

fn spawn(role: &str, dir: &Path) -> ServerProcess {
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .env("STATEWARD_LOAD_ROLE", role)
        .env("STATEWARD_LOAD_DIR", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("child server");
    let stdout = child.stdout.take().expect("stdout");
    let port = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("PORT ").and_then(|p| p.parse::<u16>().ok()))
        .expect("child prints its port");
    ServerProcess {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    }
}

/// utime + stime of a process, in seconds (clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

type Sender = http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr, ca: &str) -> Sender {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.as_bytes()).expect("ca"))
        .expect("root");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).ok();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("tls");
    let (sender, conn) = http1::handshake(TokioIo::new(tls))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    sender
}

async fn call(sender: &mut Sender, body: &Bytes) -> bool {
    if sender.ready().await.is_err() {
        return false;
    }
    let request = Request::post("/validate?timeout=10s")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(body.clone()))
        .expect("request");
    match sender.send_request(request).await {
        Ok(response) => {
            let ok = response.status() == 200;
            ok && response.into_body().collect().await.is_ok()
        }
        Err(_) => false,
    }
}

fn container(name: &str, port: u16) -> Value {
    json!({
        "name": name, "image": format!("registry.example.com/shop/{name}:1.4.2"), "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "client", "containerPort": port, "protocol": "TCP"}],
        "env": (0..26).map(|i| json!({"name": format!("SETTING_{i}"), "value": format!("value-{i}")})).collect::<Vec<_>>(),
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": port, "scheme": "HTTP"}, "periodSeconds": 5, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/live", "port": port, "scheme": "HTTP"}, "periodSeconds": 20, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
        "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true},
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
        "volumeMounts": [{"name": "data", "mountPath": "/data"}]
    })
}

fn statefulset(replicas: i32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "orders-db", "namespace": "shop", "uid": "0d4a1f6e-5b0c-4c61-9c59-3c7d4f0b6a11",
            "resourceVersion": "123456", "generation": 3, "creationTimestamp": "2026-11-01T10:00:00Z",
            "labels": {"app.kubernetes.io/name": "orders-db", "app.kubernetes.io/part-of": "shop", "team": "orders"},
            "annotations": {"owner": "team-orders"},
            "managedFields": [{"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1", "time": "2026-11-01T10:00:00Z",
                "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}, "f:serviceName": {}, "f:template": {"f:spec": {"f:containers": {}}}}}}]},
        "spec": {"replicas": replicas, "serviceName": "orders-db", "podManagementPolicy": "OrderedReady", "revisionHistoryLimit": 10,
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
            "selector": {"matchLabels": {"app.kubernetes.io/name": "orders-db"}},
            "template": {"metadata": {"labels": {"app.kubernetes.io/name": "orders-db", "app.kubernetes.io/part-of": "shop"}},
                "spec": {"terminationGracePeriodSeconds": 60, "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
                    "schedulerName": "default-scheduler", "securityContext": {"runAsNonRoot": true, "fsGroup": 1000},
                    "containers": [container("db", 5432), container("exporter", 9187), container("backup", 8080)]}},
            "volumeClaimTemplates": [{"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast", "volumeMode": "Filesystem",
                    "resources": {"requests": {"storage": "50Gi"}}}, "status": {"phase": "Pending"}}]},
        "status": {"replicas": replicas, "readyReplicas": replicas, "currentReplicas": replicas, "updatedReplicas": replicas}
    })
}

fn review(kind: (&str, &str, &str), op: &str, object: Value, old: Value) -> Bytes {
    let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "8b0d2c1e-3f4a-4b5c-9d6e-7f8091a2b3c4",
        "kind": {"group": kind.0, "version": "v1", "kind": kind.1},
        "resource": {"group": kind.0, "version": "v1", "resource": kind.2},
        "requestKind": {"group": kind.0, "version": "v1", "kind": kind.1},
        "requestResource": {"group": kind.0, "version": "v1", "resource": kind.2},
        "name": "orders-db", "namespace": "shop", "operation": op,
        "userInfo": {"username": "system:serviceaccount:argocd:argocd-application-controller", "uid": "42",
            "groups": ["system:serviceaccounts", "system:serviceaccounts:argocd", "system:authenticated"]},
        "object": object, "oldObject": old, "dryRun": false,
        "options": {"kind": if op == "CREATE" {"CreateOptions"} else {"UpdateOptions"}, "apiVersion": "meta.k8s.io/v1", "fieldManager": "argocd-controller"}}});
    Bytes::from(serde_json::to_vec(&body).expect("json"))
}

fn reviews() -> Vec<Bytes> {
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "orders-db", "namespace": "shop"},
        "spec": {"clusterIP": "None", "selector": {"app.kubernetes.io/name": "orders-db"}, "ports": [{"name": "pg", "port": 5432, "protocol": "TCP", "targetPort": 5432}]}});
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "orders-db-0", "namespace": "shop",
        "labels": {"app.kubernetes.io/name": "orders-db"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "orders-db", "uid": "0d4a", "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"containers": [container("db", 5432)], "hostname": "orders-db-0", "subdomain": "orders-db"}});
    let sts_kind = ("apps", "StatefulSet", "statefulsets");
    vec![
        review(sts_kind, "CREATE", statefulset(3), Value::Null),
        review(sts_kind, "UPDATE", statefulset(5), statefulset(3)),
        review(("", "Service", "services"), "CREATE", service, Value::Null),
        review(("", "Pod", "pods"), "CREATE", pod, Value::Null),
        review(sts_kind, "CREATE", statefulset(3), Value::Null),
    ]
}

struct Figures {
    throughput: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_us_per_request: f64,
    rss_mib: f64,
    failures: u64,
}

async fn measure(server: &ServerProcess, ca: &str, bodies: &[Bytes]) -> Figures {
    let pid = server.child.id();
    let mut senders = Vec::new();
    for _ in 0..CONNECTIONS {
        senders.push(connect(server.addr, ca).await);
    }
    // Warm-up.
    for sender in senders.iter_mut() {
        for body in bodies {
            call(sender, body).await;
        }
    }
    let failures = Arc::new(AtomicU64::new(0));
    // Saturation: every connection sends back to back.
    let done = Arc::new(AtomicU64::new(0));
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, mut sender) in senders.into_iter().enumerate() {
        let (done, failures, bodies) = (done.clone(), failures.clone(), bodies.to_vec());
        tasks.push(tokio::spawn(async move {
            let mut n = i;
            while started.elapsed() < SATURATION {
                if call(&mut sender, &bodies[n % bodies.len()]).await {
                    done.fetch_add(1, Ordering::Relaxed);
                } else {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
            }
            sender
        }));
    }
    let mut senders = Vec::new();
    for task in tasks {
        senders.push(task.await.expect("worker"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let completed = done.load(Ordering::Relaxed) as f64;
    let cpu = cpu_seconds(pid) - cpu_before;
    let throughput = completed / elapsed;
    let cpu_us_per_request = cpu / completed * 1e6;

    // Fixed rate: requests scheduled every 1/rate s, latency measured from the schedule.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, usize)>();
    let rx = Arc::new(Mutex::new(rx));
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    let mut workers = Vec::new();
    for mut sender in senders {
        let (rx, latencies, failures, bodies) = (
            rx.clone(),
            latencies.clone(),
            failures.clone(),
            bodies.to_vec(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let next = rx.lock().await.recv().await;
                let Some((scheduled, n)) = next else { break };
                if call(&mut sender, &bodies[n % bodies.len()]).await {
                    latencies
                        .lock()
                        .await
                        .push(scheduled.elapsed().as_secs_f64() * 1000.0);
                } else {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let interval = Duration::from_secs_f64(1.0 / FIXED_RATE as f64);
    let begin = Instant::now();
    let total = (FIXED_RATE as f64 * FIXED_DURATION.as_secs_f64()) as usize;
    for n in 0..total {
        let at = begin + interval * n as u32;
        tokio::time::sleep_until(at.into()).await;
        let _ = tx.send((at, n));
    }
    drop(tx);
    for worker in workers {
        worker.await.ok();
    }
    let mut lat = latencies.lock().await.clone();
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    Figures {
        throughput,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        cpu_us_per_request,
        rss_mib: rss_mib(pid),
        failures: failures.load(Ordering::Relaxed),
    }
}

fn main() {
    if let (Ok(role), Ok(dir)) = (
        std::env::var("STATEWARD_LOAD_ROLE"),
        std::env::var("STATEWARD_LOAD_DIR"),
    ) {
        child(&role, &PathBuf::from(dir));
        return;
    }
    // `cargo test --benches` runs bench targets once with `--bench` absent: skip quietly.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = stateward::certs::generate(&["localhost".into()], 1).expect("certs");
    std::fs::write(dir.path().join("tls.crt"), &certs.cert).expect("write");
    std::fs::write(dir.path().join("tls.key"), &certs.key).expect("write");
    let bodies = reviews();
    println!(
        "reviews: {} bodies, StatefulSet CREATE {} bytes, UPDATE {} bytes",
        bodies.len(),
        bodies[0].len(),
        bodies[1].len()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut results = Vec::new();
    for role in ["noop", "stateward"] {
        let mut server = spawn(role, dir.path());
        let figures = runtime.block_on(measure(&server, &certs.ca_cert, &bodies));
        if let Some(stdin) = server.child.stdin.as_mut() {
            let _ = stdin.flush();
        }
        drop(server.child.stdin.take());
        let _ = server.child.kill();
        let _ = server.child.wait();
        println!(
            "{role:>9}: {:8.0} req/s at saturation ({CONNECTIONS} connections), p50 {:.3} ms, p99 {:.3} ms at {FIXED_RATE} req/s, {:.1} us CPU/request, RSS {:.1} MiB, {} failures",
            figures.throughput,
            figures.p50_ms,
            figures.p99_ms,
            figures.cpu_us_per_request,
            figures.rss_mib,
            figures.failures
        );
        results.push(figures);
    }
    let (noop, sw) = (&results[0], &results[1]);
    println!(
        "stateward / no-op: throughput {:.2}x, CPU per request {:.2}x, p99 {:+.3} ms, RSS {:.1} MiB",
        sw.throughput / noop.throughput,
        sw.cpu_us_per_request / noop.cpu_us_per_request,
        sw.p99_ms - noop.p99_ms,
        sw.rss_mib
    );
}
