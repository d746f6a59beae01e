//! Load benchmark of `stateward serve` against a no-op webhook on the same stack (rustls,
//! hyper, axum; parse the review, echo the uid, allow). Each server runs in its own child
//! process so its CPU time and memory can be read from /proc. The driver uses 25 HTTP/1.1
//! keep-alive connections, as kube-apiserver does, with apiserver-shaped reviews: ~8 KB
//! StatefulSet CREATEs, UPDATEs with oldObject, Services and Pods.
//!
//! Run: `cargo bench --bench load` (about 30 seconds). Absolute figures drift on shared
//! machines, so the report gives stateward's figures as ratios to the no-op server.
//!
//! `cargo bench --bench load -- --instructions` counts user-space instructions per review
//! instead (callgrind, exact on a shared machine where time is not): each server runs
//! under `valgrind --tool=callgrind`, is warmed up, and for every review and endpoint the
//! counters are zeroed, a fixed number of requests is sent, and the counters are dumped.
//!
//! The no-op baseline is the cheapest honest webhook on the same stack (tokio-rustls,
//! hyper-util, axum): decode the body into a `serde_json::Value`, echo the uid, allow.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or bench may stop on a broken fixture
#[path = "support/noop.rs"]
mod noop;

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

/// A JSON tree as `serde_json::Value` is without its `preserve_order` feature (objects in
/// a `BTreeMap`). This crate needs `preserve_order` (`stateward mutate` keeps the key order
/// of manifests), which makes `Value` dearer than in a webhook built without it; this tree
/// is the baseline such a webhook would have.
#[allow(dead_code)] // The payloads are built, as a `Value`'s are, but not all read.
enum Tree {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Tree>),
    Object(std::collections::BTreeMap<String, Tree>),
}

impl<'de> serde::Deserialize<'de> for Tree {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Tree, D::Error> {
        struct TreeVisitor;
        impl<'de> serde::de::Visitor<'de> for TreeVisitor {
            type Value = Tree;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_unit<E>(self) -> Result<Tree, E> {
                Ok(Tree::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Tree, E> {
                Ok(Tree::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Tree, E> {
                Ok(Tree::Number(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Tree, E> {
                Ok(Tree::Number(v.into()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Tree, E> {
                Ok(serde_json::Number::from_f64(v).map_or(Tree::Null, Tree::Number))
            }
            fn visit_str<E>(self, v: &str) -> Result<Tree, E> {
                Ok(Tree::String(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Tree, E> {
                Ok(Tree::String(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Tree::Array(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
                let mut entries = std::collections::BTreeMap::new();
                while let Some((key, value)) = map.next_entry::<String, Tree>()? {
                    entries.insert(key, value);
                }
                Ok(Tree::Object(entries))
            }
        }
        deserializer.deserialize_any(TreeVisitor)
    }
}

/// The baseline without `preserve_order`: the same, into a [`Tree`].
async fn noop_tree(body: Bytes) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Ok(Tree::Object(review)) = serde_json::from_slice::<Tree>(&body) else {
        return axum::http::StatusCode::BAD_REQUEST.into_response();
    };
    let uid = match review.get("request") {
        Some(Tree::Object(request)) => match request.get("uid") {
            Some(Tree::String(uid)) => uid.clone(),
            _ => return axum::http::StatusCode::BAD_REQUEST.into_response(),
        },
        _ => return axum::http::StatusCode::BAD_REQUEST.into_response(),
    };
    noop::allow(&uid)
}

fn child(role: &str, dir: &Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        let addr = if role == "stateward" {
            let running = stateward::commands::serve::start(
                stateward::commands::serve::ServeConfig::local(cert, key),
            )
            .await
            .expect("stateward starts");
            let addr = running.tls_addr;
            std::mem::forget(running);
            addr
        } else if role == "noop-tree" {
            let router = Router::new()
                .route("/validate", post(noop_tree))
                .route("/mutate", post(noop_tree));
            noop::serve(router, &cert, &key).await
        } else {
            noop::serve(noop::router(), &cert, &key).await
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
    spawn_with(
        Command::new(std::env::current_exe().expect("exe")),
        role,
        dir,
    )
}

/// The server under callgrind, instrumentation off until the warm-up is done.
fn spawn_callgrind(role: &str, dir: &Path) -> ServerProcess {
    let mut command = Command::new("valgrind");
    command
        .arg("--tool=callgrind")
        .arg("--instr-atstart=no")
        .arg(format!(
            "--callgrind-out-file={}/callgrind.{role}.%p",
            dir.display()
        ))
        .arg(std::env::current_exe().expect("exe"));
    spawn_with(command, role, dir)
}

fn spawn_with(mut command: Command, role: &str, dir: &Path) -> ServerProcess {
    let mut child = command
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
    call_path(sender, "/validate?timeout=10s", body).await
}

async fn call_path(sender: &mut Sender, path: &str, body: &Bytes) -> bool {
    if sender.ready().await.is_err() {
        return false;
    }
    let request = Request::post(path)
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

/// The reviews with their names, as the API server sends them.
fn named_reviews() -> Vec<(&'static str, Bytes)> {
    let all = reviews();
    vec![
        ("StatefulSet CREATE", all[0].clone()),
        ("StatefulSet UPDATE", all[1].clone()),
        ("Service CREATE", all[2].clone()),
        ("Pod CREATE", all[3].clone()),
    ]
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

/// Mean latency of `count` requests sent one after another on one connection.
async fn sequential_latency_us(server: &ServerProcess, ca: &str, body: &Bytes, count: u32) -> f64 {
    let mut sender = connect(server.addr, ca).await;
    for _ in 0..200 {
        call(&mut sender, body).await;
    }
    let started = Instant::now();
    for _ in 0..count {
        assert!(call(&mut sender, body).await, "request failed");
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(count)
}

fn callgrind_control(args: &[&str]) {
    let status = Command::new("callgrind_control")
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("callgrind_control runs");
    assert!(status.success(), "callgrind_control {args:?} failed");
}

/// The instruction total of the newest callgrind dump of `role` in `dir`.
fn newest_dump_total(dir: &Path, role: &str) -> u64 {
    // Dumps are named callgrind.ROLE.PID.N; the newest has the highest N.
    let prefix = format!("callgrind.{role}.");
    let newest = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let rest = name.strip_prefix(&prefix)?;
            let part: u64 = rest.split_once('.')?.1.parse().ok()?;
            Some((part, e.path()))
        })
        .max_by_key(|(part, _)| *part)
        .expect("a callgrind dump");
    let text = std::fs::read_to_string(newest.1).expect("dump");
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("a summary line")
}

const INSTRUCTION_REQUESTS: usize = 400;
const INSTRUCTION_CONNECTIONS: usize = 4;

/// Instructions per review for every review and endpoint, by role.
fn instructions(
    runtime: &tokio::runtime::Runtime,
    dir: &Path,
    ca: &str,
) -> Vec<(String, Vec<f64>)> {
    let bodies = named_reviews();
    let mut table = Vec::new();
    for role in ["noop", "noop-tree", "stateward"] {
        let mut server = spawn_callgrind(role, dir);
        let pid = server.child.id().to_string();
        let mut row = Vec::new();
        runtime.block_on(async {
            let mut senders = Vec::new();
            for _ in 0..INSTRUCTION_CONNECTIONS {
                senders.push(connect(server.addr, ca).await);
            }
            for endpoint in ["/validate", "/mutate"] {
                for sender in senders.iter_mut() {
                    for (_, body) in &bodies {
                        for _ in 0..5 {
                            assert!(call_path(sender, endpoint, body).await, "warm-up failed");
                        }
                    }
                }
            }
            callgrind_control(&["--instr=on", &pid]);
            for (_, body) in &bodies {
                for endpoint in ["/validate", "/mutate"] {
                    callgrind_control(&["--zero", &pid]);
                    let mut tasks = Vec::new();
                    for mut sender in senders.drain(..) {
                        let body = body.clone();
                        tasks.push(tokio::spawn(async move {
                            for _ in 0..INSTRUCTION_REQUESTS / INSTRUCTION_CONNECTIONS {
                                assert!(call_path(&mut sender, endpoint, &body).await);
                            }
                            sender
                        }));
                    }
                    for task in tasks {
                        senders.push(task.await.expect("worker"));
                    }
                    callgrind_control(&["--dump", &pid]);
                    let total = newest_dump_total(dir, role);
                    row.push(total as f64 / INSTRUCTION_REQUESTS as f64);
                }
            }
        });
        drop(server.child.stdin.take());
        let _ = server.child.wait();
        table.push((role.to_owned(), row));
    }
    table
}

fn print_instructions(table: &[(String, Vec<f64>)]) {
    let names = named_reviews();
    println!(
        "user-space instructions per review (callgrind, {INSTRUCTION_REQUESTS} requests on {INSTRUCTION_CONNECTIONS} connections after a warm-up):"
    );
    println!(
        "no-op: serde_json::Value (this build, preserve_order); no-op tree: the same without preserve_order; ratio: stateward / the cheaper no-op"
    );
    println!(
        "{:<20} {:>10} {:>10} {:>12} {:>12} {:>7}",
        "review", "endpoint", "no-op", "no-op tree", "stateward", "ratio"
    );
    let (noop, tree, sw) = (&table[0].1, &table[1].1, &table[2].1);
    for (i, (name, _)) in names.iter().enumerate() {
        for (j, endpoint) in ["/validate", "/mutate"].iter().enumerate() {
            let k = i * 2 + j;
            println!(
                "{name:<20} {endpoint:>10} {:>9.0}k {:>11.0}k {:>11.0}k {:>6.2}x",
                noop[k] / 1000.0,
                tree[k] / 1000.0,
                sw[k] / 1000.0,
                sw[k] / noop[k].min(tree[k])
            );
        }
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
    // STATEWARD_LOAD_DIR_KEEP=DIR keeps the callgrind dumps there (for callgrind_annotate).
    let kept = std::env::var_os("STATEWARD_LOAD_DIR_KEEP").map(PathBuf::from);
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = match &kept {
        Some(path) => {
            std::fs::create_dir_all(path).expect("dump directory");
            path.as_path()
        }
        None => temp.path(),
    };
    let certs = stateward::commands::certs::generate(&["localhost".into()], 1).expect("certs");
    std::fs::write(dir.join("tls.crt"), &certs.cert).expect("write");
    std::fs::write(dir.join("tls.key"), &certs.key).expect("write");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if std::env::args().any(|a| a == "--instructions") {
        let table = instructions(&runtime, dir, &certs.ca_cert);
        print_instructions(&table);
        return;
    }
    let bodies = reviews();
    println!(
        "reviews: {} bodies, StatefulSet CREATE {} bytes, UPDATE {} bytes",
        bodies.len(),
        bodies[0].len(),
        bodies[1].len()
    );
    let mut results = Vec::new();
    let mut sequential = Vec::new();
    for role in ["noop", "noop-tree", "stateward"] {
        let mut server = spawn(role, dir);
        let figures = runtime.block_on(measure(&server, &certs.ca_cert, &bodies));
        sequential.push(runtime.block_on(sequential_latency_us(
            &server,
            &certs.ca_cert,
            &bodies[0],
            3000,
        )));
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
    let sw = &results[2];
    for (name, noop, seq) in [
        ("no-op", &results[0], sequential[0]),
        ("no-op tree", &results[1], sequential[1]),
    ] {
        println!(
            "stateward / {name}: throughput {:.2}x, CPU per request {:.2}x, p99 {:+.3} ms, sequential StatefulSet CREATE on one connection {:.0} us vs {:.0} us ({:.2}x)",
            sw.throughput / noop.throughput,
            sw.cpu_us_per_request / noop.cpu_us_per_request,
            sw.p99_ms - noop.p99_ms,
            sequential[2],
            seq,
            sequential[2] / seq
        );
    }
    println!("stateward RSS {:.1} MiB", sw.rss_mib);
}
