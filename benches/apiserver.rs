//! Benchmarks through a real API server: the control plane of the end-to-end suite (etcd,
//! kube-apiserver and kube-controller-manager from `STATEWARD_K8S_ASSETS`, the stateward
//! binary behind the Helm chart's webhooks, see tests/e2e/harness.rs).
//!
//! ```text
//! STATEWARD_K8S_ASSETS=/work/shared/k8s/bin STATEWARD_HELM=$PWD/.tools/bin/helm \
//!   cargo bench --bench apiserver [-- --rate 20 --seconds 30 --with-affinity --noop-patch --noop-warn --native]
//! STATEWARD_K8S_ASSETS=... STATEWARD_HELM=... \
//!   cargo bench --bench apiserver -- --scale 100000 10000 [--bin OTHER/stateward]...
//! ```
//!
//! **Latency** (the default): a no-op webhook (benches/support/noop.rs, the baseline of
//! benches/load.rs: decode into a `serde_json::Value`, echo the uid, allow) is served over
//! TLS by a process of its own (this binary again, as stateward is a process of its own:
//! in the load generator's process it would share its threads and wake-ups) and registered as a mutating and a validating webhook on
//! statefulsets CREATE/UPDATE for namespaces labelled `bench-noop: on`; stateward's
//! webhooks (the chart's) serve namespaces labelled `stateward-e2e: on`. Creates of a ~7 KB
//! StatefulSet with replicas 0 go out at a fixed rate (open loop: each create is sent at
//! its scheduled time whatever the others do, and its latency counts from that time),
//! round-robin across three namespaces: served by stateward, by the no-op, by no webhook.
//! The report gives p50 and p99 per namespace, what each webhook adds over the namespace
//! without one, and stateward's addition over the no-op's. stateward's mutating webhook
//! adds a pod anti-affinity to this set (a JSON patch the API server then applies);
//! `--with-affinity` gives every set that anti-affinity already, so stateward patches
//! nothing and the comparison is of the webhook calls alone; `--noop-patch` makes the
//! no-op's `/mutate` return the same patch, so the API server applies it in both
//! namespaces, and `--noop-warn` its `/validate` the same warning (the set's headless
//! Service does not exist). Where the time goes: the calls the API server made to each webhook per
//! create and their mean duration as it saw them (its
//! `apiserver_admission_webhook_admission_duration_seconds`, which for a mutating webhook
//! includes applying the patch), and the time each webhook's handler took. `--native` adds a
//! fourth namespace judged only by the built-in baseline compiled to ValidatingAdmissionPolicies
//! (`stateward policy native`): what the native path adds, against the no-op, in the same run;
//! and a fifth bound to one policy whose only check is `true` (what any policy costs: the
//! API server converts the object to CEL's input once per policy).
//!
//! **Memory at scale** (`--scale N_SERVICES N_SETS`): the controller manager is stopped
//! (it would otherwise write an EndpointSlice per Service and a status per set while the
//! figures are taken), then N Services (a selector, a named port; headless but for 10,000
//! with a cluster IP) and N StatefulSets (the same ~7 KB set, replicas 0) are created in 100 namespaces
//! without webhooks, 64 requests in flight: minutes for 100,000 (about 25 for 65,000 on a
//! shared 2-core machine). After each quarter of the objects, each stateward binary (the
//! one cargo built, plus every `--bin PATH`, in turn; twice at the end) runs
//! `serve --cluster required` against the cluster, as it is and with the `GLIBC_TUNABLES`
//! of the image and the chart (a fixed mmap threshold); the report gives the time to the
//! first `/readyz` 200 and the process RSS (VmRSS, and the peak VmHWM) two seconds after.
//!
//! The stateward binary is the one cargo builds for this bench (`CARGO_BIN_EXE_stateward`)
//! unless `STATEWARD_E2E_BIN` names another. Without `STATEWARD_K8S_ASSETS` or
//! `STATEWARD_HELM` the bench prints what is missing and exits 0; under
//! `cargo test --benches` (no `--bench` argument) it does nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or bench may stop on a broken fixture
#[allow(dead_code)]
#[path = "../tests/e2e/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "../tests/e2e/k8s.rs"]
mod k8s;
#[allow(dead_code)]
#[path = "support/noop.rs"]
mod noop;
#[allow(dead_code)]
#[path = "../tests/e2e/pki.rs"]
mod pki;
#[allow(dead_code)]
#[path = "../tests/e2e/process.rs"]
mod process;
#[path = "support/sets.rs"]
mod sets;
#[path = "../tests/support/tiers.rs"]
mod tiers;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::core::Request;
use kube::core::params::PostParams;
use serde_json::{Value, json};

use harness::{Env, b64, free_port};
use k8s::{send, to_vec};

/// The label the no-op webhooks' namespaceSelector requires.
const NOOP_LABEL: &str = "bench-noop";
/// Namespaces the scale mode spreads its objects over.
const SCALE_NAMESPACES: usize = 100;
/// In the scale mode every other Service below this index gets a cluster IP, the others
/// are headless. With every other one given a cluster IP, creation slowed from 230/s to
/// 16/s by 75,000 Services on a 2-core machine; the cache keeps the same projection
/// either way (a headless flag).
const CLUSTER_IP_BELOW: usize = 20_000;
/// Creates in flight in the scale mode.
const SCALE_IN_FLIGHT: usize = 64;
/// The allocator setting of the image and the chart's Deployment (Dockerfile,
/// charts/stateward/templates/deployment.yaml): the scale mode measures every binary
/// without and with it.
const IMAGE_GLIBC_TUNABLES: &str = "glibc.malloc.mmap_threshold=131072";

fn arg_after(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    // `cargo test --benches` runs bench targets once with `--bench` absent: skip quietly.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    if let Some(dir) = arg_after("--serve-noop") {
        serve_noop(Path::new(&dir));
        return;
    }
    let Some(assets) = tiers::k8s_assets() else {
        return;
    };
    let Some(helm) = tiers::helm() else {
        return;
    };
    let dir = tempfile::Builder::new()
        .prefix("stateward-bench-")
        .tempdir()
        .expect("temporary directory");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--scale") {
        let number = |j: usize, default: usize| {
            args.get(i + j)
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        let (services, sets) = (number(1, 100_000), number(2, 10_000));
        let mut binaries = vec![harness::stateward_binary()];
        for (j, a) in args.iter().enumerate() {
            if a == "--bin"
                && let Some(path) = args.get(j + 1)
            {
                binaries.push(PathBuf::from(path));
            }
        }
        runtime.block_on(scale(dir.path(), &assets, &helm, services, sets, &binaries));
    } else {
        let rate: f64 = arg_after("--rate")
            .and_then(|v| v.parse().ok())
            .unwrap_or(20.0);
        let seconds: f64 = arg_after("--seconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(30.0);
        runtime.block_on(latency(dir.path(), &assets, &helm, rate, seconds));
    }
    drop(runtime);
}

// ---- objects -------------------------------------------------------------------------

/// The bench's StatefulSet (benches/support/sets.rs), with the anti-affinity stateward
/// would add under `--with-affinity`.
fn statefulset(name: &str) -> Value {
    sets::padded(name, std::env::args().any(|a| a == "--with-affinity"))
}

fn service(name: &str, headless: bool) -> Value {
    let mut svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "labels": {"app": name, "team": "orders"}},
        "spec": {"selector": {"app": name},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}});
    if headless {
        svc["spec"]["clusterIP"] = json!("None");
    }
    svc
}

async fn create_namespace(env: &Env, name: &str, labels: Value) {
    let ns = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": labels}});
    let reply = send(
        &env.admin,
        Request::new("/api/v1/namespaces").create(&PostParams::default(), to_vec(&ns)),
    )
    .await;
    assert!(
        reply.status == 201 || reply.status == 409,
        "create namespace {name}: {reply}"
    );
}

// ---- latency -------------------------------------------------------------------------

/// Registers the no-op at `addr` as a mutating and a validating webhook on statefulsets
/// CREATE/UPDATE in namespaces labelled `bench-noop: on`.
async fn register_noop(env: &Env, addr: SocketAddr, ca_pem: &str) {
    for (kind, plural, path) in [
        (
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
            "/mutate",
        ),
        (
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            "/validate",
        ),
    ] {
        let config = json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
            "metadata": {"name": format!("bench-noop-{}", kind.to_lowercase())},
            "webhooks": [{
                "name": format!("{}.noop.bench", &path[1..]),
                "clientConfig": {"url": format!("https://{addr}{path}"), "caBundle": b64(ca_pem)},
                "rules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                           "resources": ["statefulsets"], "scope": "Namespaced"}],
                "namespaceSelector": {"matchLabels": {NOOP_LABEL: "on"}},
                "failurePolicy": "Fail", "sideEffects": "None", "timeoutSeconds": 10,
                "matchPolicy": "Equivalent", "admissionReviewVersions": ["v1"]
            }]
        });
        let reply = send(
            &env.admin,
            Request::new(format!("/apis/admissionregistration.k8s.io/v1/{plural}"))
                .create(&PostParams::default(), to_vec(&config)),
        )
        .await;
        assert_eq!(reply.status, 201, "create {kind}: {reply}");
    }
}

/// `--noop-patch`: the no-op's `/mutate` answers with the patch stateward's mutating
/// webhook returns for these sets (a preferred pod anti-affinity on the set's selector,
/// weight 100, per hostname; nothing when the pod template has an affinity), so that the
/// API server applies the same patch in both namespaces: what stateward adds over that
/// no-op is its own cost, what the no-op adds over the plain no-op is the API server's.
async fn noop_patch(body: bytes::Bytes) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Ok(review) = serde_json::from_slice::<Value>(&body) else {
        return axum::http::StatusCode::BAD_REQUEST.into_response();
    };
    let Some(uid) = review.pointer("/request/uid").and_then(Value::as_str) else {
        return axum::http::StatusCode::BAD_REQUEST.into_response();
    };
    let object = &review["request"]["object"];
    if object.pointer("/spec/template/spec/affinity").is_some() {
        return noop::allow(uid);
    }
    let patch = json!([{"op": "add", "path": "/spec/template/spec/affinity", "value": {
        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "podAffinityTerm": {
                "labelSelector": {"matchLabels": object["spec"]["selector"]["matchLabels"]},
                "topologyKey": "kubernetes.io/hostname"},
            "weight": 100}]}}}]);
    noop::json_response(noop::review_body(json!({"uid": uid, "allowed": true,
        "patchType": "JSONPatch", "patch": b64(&patch.to_string())})))
}

/// `--noop-warn`: the no-op's `/validate` answers with the warning stateward's validating
/// webhook gives these sets (their headless Service does not exist), cut at 120 characters
/// as stateward cuts it, so the API server relays the same warning in both namespaces.
async fn noop_warn(body: bytes::Bytes) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Ok(review) = serde_json::from_slice::<Value>(&body) else {
        return axum::http::StatusCode::BAD_REQUEST.into_response();
    };
    let request = &review["request"];
    let Some(uid) = request["uid"].as_str() else {
        return axum::http::StatusCode::BAD_REQUEST.into_response();
    };
    let (name, ns) = (
        request["object"]["spec"]["serviceName"]
            .as_str()
            .unwrap_or_default(),
        request["namespace"].as_str().unwrap_or_default(),
    );
    let text = format!(
        "statefulset.headless-service: Service \"{name}\" does not exist in namespace \"{ns}\" \
         (yet): create a headless Service (clusterIP: None) with that name"
    );
    let warning = if text.chars().count() > 120 {
        text.chars().take(119).chain(['…']).collect()
    } else {
        text
    };
    noop::json_response(noop::review_body(
        json!({"uid": uid, "allowed": true, "warnings": [warning]}),
    ))
}

/// The no-op as a process of its own (this bench binary again, with `--serve-noop DIR`),
/// so that it runs as stateward does: its own multi-threaded runtime with a thread per
/// core, woken by the API server's calls alone, not sharing threads, caches or wake-ups
/// with the load generator. Killed when dropped.
struct NoopProcess {
    child: std::process::Child,
    /// Where it serves `/validate` and `/mutate` over TLS.
    addr: SocketAddr,
    /// Where it answers `GET /stats` over plain HTTP: `REVIEWS NANOS`.
    stats: SocketAddr,
}

impl NoopProcess {
    /// Starts it with `noop.crt` and `noop.key` of `dir` and this process's `--noop-*`
    /// flags; returns once it has written its addresses. (The child is waited for by
    /// `Drop`, which clippy's lint cannot see.)
    #[allow(clippy::zombie_processes)]
    fn start(dir: &Path) -> NoopProcess {
        let addrs = dir.join("noop.addrs");
        let log = std::fs::File::create(dir.join("noop.log")).expect("no-op log");
        let mut args = vec!["--bench".to_owned(), "--serve-noop".to_owned()];
        args.push(dir.display().to_string());
        args.extend(std::env::args().filter(|a| a.starts_with("--noop-")));
        let mut child = std::process::Command::new(std::env::current_exe().expect("this binary"))
            .args(&args)
            .stdout(log.try_clone().expect("no-op log"))
            .stderr(log)
            .spawn()
            .expect("start the no-op");
        let started = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(&addrs)
                && let Some((addr, stats)) = text.split_once(' ')
                && let (Ok(addr), Ok(stats)) = (addr.parse(), stats.trim().parse())
            {
                return NoopProcess { child, addr, stats };
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the no-op did not start; see {}",
                    dir.join("noop.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NoopProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the no-op counted on one path since it started.
#[derive(Debug, Default, Clone, Copy)]
struct NoopCounts {
    reviews: u64,
    /// From the request's head to the response's head (the body read included), in ns.
    head_ns: u64,
    /// In the handler (decode, decide, encode; what stateward's
    /// `stateward_admission_duration_seconds` counts), in ns.
    handler_ns: u64,
}

/// The no-op's counts per path (`mutate`, `validate`).
async fn noop_stats(stats: SocketAddr) -> BTreeMap<String, NoopCounts> {
    let (_, body) = k8s::http_get(stats, "/stats").await.expect("no-op stats");
    body.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let path = fields.next()?.to_owned();
            let mut number = || fields.next().and_then(|n| n.parse().ok());
            let counts = NoopCounts {
                reviews: number()?,
                head_ns: number()?,
                handler_ns: number()?,
            };
            Some((path, counts))
        })
        .collect()
}

/// Reviews the no-op answered on all paths.
async fn noop_reviews(stats: SocketAddr) -> u64 {
    noop_stats(stats).await.values().map(|c| c.reviews).sum()
}

/// The no-op's paths, in the order of its counters.
const NOOP_PATHS: [&str; 2] = ["mutate", "validate"];
/// Per path of [`NOOP_PATHS`]: reviews, head-to-head ns, handler ns.
static NOOP_COUNTS: [[AtomicU64; 3]; 2] = [
    [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
    [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
];

fn noop_count(slot: usize, field: usize, started: Instant) {
    NOOP_COUNTS[slot][field].fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
}

/// `--serve-noop DIR`: the no-op's process. It serves the no-op (with `--noop-patch`,
/// `--noop-warn` as given) over TLS with `DIR/noop.{crt,key}` on a runtime built as
/// `stateward serve` builds its own, counts per path the reviews, the time from each
/// request's head to its response's head and the time in the handler, and writes
/// `ADDR STATS_ADDR` to `DIR/noop.addrs`.
fn serve_noop(dir: &Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let flag = |name: &str| std::env::args().any(|a| a == name);
        let (warn, patch) = (flag("--noop-warn"), flag("--noop-patch"));
        let router = axum::Router::new()
            .route(
                "/mutate",
                axum::routing::post(move |body: bytes::Bytes| async move {
                    let started = Instant::now();
                    let response = if patch {
                        noop_patch(body).await
                    } else {
                        noop::noop(body).await
                    };
                    noop_count(0, 2, started);
                    response
                }),
            )
            .route(
                "/validate",
                axum::routing::post(move |body: bytes::Bytes| async move {
                    let started = Instant::now();
                    let response = if warn {
                        noop_warn(body).await
                    } else {
                        noop::noop(body).await
                    };
                    noop_count(1, 2, started);
                    response
                }),
            )
            .layer(axum::middleware::from_fn(
                |request: axum::extract::Request, next: axum::middleware::Next| async move {
                    let slot = usize::from(request.uri().path() != "/mutate");
                    let started = Instant::now();
                    let response = next.run(request).await;
                    NOOP_COUNTS[slot][0].fetch_add(1, Ordering::Relaxed);
                    noop_count(slot, 1, started);
                    response
                },
            ));
        let addr = noop::serve(router, &dir.join("noop.crt"), &dir.join("noop.key")).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let stats = listener.local_addr().expect("stats address");
        let partial = dir.join("noop.addrs.partial");
        std::fs::write(&partial, format!("{addr} {stats}")).expect("write addresses");
        std::fs::rename(&partial, dir.join("noop.addrs")).expect("write addresses");
        let router = axum::Router::new().route(
            "/stats",
            axum::routing::get(|| async {
                let mut text = String::new();
                for (path, counts) in NOOP_PATHS.iter().zip(&NOOP_COUNTS) {
                    let [reviews, head, handler] =
                        counts.each_ref().map(|c| c.load(Ordering::Relaxed));
                    text.push_str(&format!("{path} {reviews} {head} {handler}\n"));
                }
                text
            }),
        );
        axum::serve(listener, router).await.expect("stats server");
    });
}

/// Sums and counts of a histogram per value of the label `label`, from Prometheus text.
fn histogram_by(text: &str, metric: &str, label: &str) -> BTreeMap<String, (f64, f64)> {
    let mut out: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    let key = format!("{label}=\"");
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        let (is_sum, rest) = if let Some(rest) = rest.strip_prefix("_sum{") {
            (true, rest)
        } else if let Some(rest) = rest.strip_prefix("_count{") {
            (false, rest)
        } else {
            continue;
        };
        let Some(start) = rest.find(&key).map(|i| i + key.len()) else {
            continue;
        };
        let Some(end) = rest[start..].find('"').map(|i| i + start) else {
            continue;
        };
        let value: f64 = rest
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let entry = out.entry(rest[start..end].to_owned()).or_default();
        if is_sum {
            entry.0 += value;
        } else {
            entry.1 += value;
        }
    }
    out
}

/// What each webhook's calls took as the API server saw them (from sending the review to
/// reading the answer: connection, TLS, the webhook), per webhook name.
async fn apiserver_webhook_durations(env: &Env) -> BTreeMap<String, (f64, f64)> {
    let request = hyper::Request::get("/metrics")
        .body(Vec::new())
        .expect("metrics request");
    let text = env.admin.request_text(request).await.unwrap_or_default();
    histogram_by(
        &text,
        "apiserver_admission_webhook_admission_duration_seconds",
        "name",
    )
}

/// What stateward's handler took (read, decide, encode), per endpoint.
async fn stateward_durations(env: &Env) -> BTreeMap<String, (f64, f64)> {
    let text = k8s::http_get(env.stateward_admin, "/metrics")
        .await
        .map(|(_, body)| body)
        .unwrap_or_default();
    histogram_by(&text, "stateward_admission_duration_seconds", "endpoint")
}

/// `after - before`, per key: (calls, mean ms).
fn delta(
    before: &BTreeMap<String, (f64, f64)>,
    after: &BTreeMap<String, (f64, f64)>,
) -> Vec<(String, f64, f64)> {
    after
        .iter()
        .map(|(name, (sum, count))| {
            let (sum0, count0) = before.get(name).copied().unwrap_or_default();
            let calls = count - count0;
            (name.clone(), calls, (sum - sum0) * 1000.0 / calls.max(1.0))
        })
        .filter(|(_, calls, _)| *calls > 0.0)
        .collect()
}

/// Creates `sts` as `name` in `ns`; the latency (and the object as created) when the API
/// server answers 201.
async fn create_set(env: &Env, ns: &str, name: &str) -> Option<(Duration, Value)> {
    let sts = statefulset(name);
    let started = Instant::now();
    let reply = send(
        &env.admin,
        k8s::statefulsets(ns).create(&PostParams::default(), to_vec(&sts)),
    )
    .await;
    if reply.status == 201 {
        Some((started.elapsed(), reply.body))
    } else {
        eprintln!("create {ns}/{name}: {reply}");
        None
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or(f64::NAN)
}

async fn latency(dir: &Path, assets: &Path, helm: &Path, rate: f64, seconds: f64) {
    let env = Arc::new(Env::start(dir, assets, helm, None).await);

    // The no-op, in a process of its own as stateward is (see `serve_noop`), with a count
    // of the reviews it answered (to see its webhooks in effect) and their handler time.
    let bundle = stateward::commands::certs::generate(&["localhost".into(), "127.0.0.1".into()], 1)
        .expect("no-op certificates");
    let (cert, key) = (dir.join("noop.crt"), dir.join("noop.key"));
    std::fs::write(&cert, &bundle.cert).expect("write cert");
    std::fs::write(&key, &bundle.key).expect("write key");
    let noop_process = NoopProcess::start(dir);
    let (addr, stats) = (noop_process.addr, noop_process.stats);
    register_noop(&env, addr, &bundle.ca_cert).await;

    let stateward_ns = env.namespace("bench").await;
    let noop_ns = "bench-noop".to_owned();
    let none_ns = "bench-none".to_owned();
    create_namespace(&env, &noop_ns, json!({NOOP_LABEL: "on"})).await;
    create_namespace(&env, &none_ns, json!({})).await;
    let mut namespaces = vec![
        ("stateward", stateward_ns),
        ("no-op", noop_ns.clone()),
        ("none", none_ns),
    ];
    let native = std::env::args().any(|a| a == "--native");
    if native {
        // The built-in baseline compiled to ValidatingAdmissionPolicies, bound to a
        // namespace of its own: what the native path adds, in the same run.
        let native_ns = "bench-native".to_owned();
        create_namespace(&env, &native_ns, json!({"bench-native": "on"})).await;
        let compiled = stateward::policy::native::compile(&stateward::policy::Policy::baseline());
        println!(
            "native: {} rules compiled ({})",
            compiled.native.len(),
            compiled
                .native
                .iter()
                .map(|id| id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        for object in &compiled.objects {
            let mut object = object.clone();
            let kind = object["kind"].as_str().unwrap_or_default().to_owned();
            let plural = match kind.as_str() {
                "ValidatingAdmissionPolicy" => "validatingadmissionpolicies",
                "MutatingAdmissionPolicy" => "mutatingadmissionpolicies",
                kind => {
                    object["spec"]["matchResources"]["namespaceSelector"]["matchLabels"] =
                        json!({"bench-native": "on"});
                    if kind == "MutatingAdmissionPolicyBinding" {
                        "mutatingadmissionpolicybindings"
                    } else {
                        "validatingadmissionpolicybindings"
                    }
                }
            };
            let reply = send(
                &env.admin,
                kube::core::Request::new(format!("/apis/admissionregistration.k8s.io/v1/{plural}"))
                    .create(&PostParams::default(), to_vec(&object)),
            )
            .await;
            assert_eq!(reply.status, 201, "create {plural}: {reply}");
        }
        // In effect: a 60-character name is denied there.
        let waited = Instant::now();
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        loop {
            let reply = send(
                &env.admin,
                k8s::statefulsets(&native_ns)
                    .create(&dry_run, to_vec(&statefulset(&"n".repeat(60)))),
            )
            .await;
            if reply.status == 422 {
                break;
            }
            assert!(
                waited.elapsed() < Duration::from_secs(30),
                "the native policies do not deny: {reply}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        namespaces.push(("native", native_ns));
        // The API server's floor for any native policy: one policy whose only check is
        // `true`, bound to a namespace of its own. The API server converts the object to
        // CEL's input once per policy, whatever the policy checks.
        let floor_ns = "bench-floor".to_owned();
        create_namespace(&env, &floor_ns, json!({"bench-floor": "on"})).await;
        let floor = [
            json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
                "metadata": {"name": "bench-floor"},
                "spec": {"failurePolicy": "Fail", "matchConstraints": {"resourceRules": [{
                    "apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                    "resources": ["statefulsets"]}]},
                    "validations": [{"expression": "true"}]}}),
            json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
                "metadata": {"name": "bench-floor"},
                "spec": {"policyName": "bench-floor", "validationActions": ["Deny"],
                    "matchResources": {"namespaceSelector": {"matchLabels": {"bench-floor": "on"}}}}}),
        ];
        for (object, plural) in floor.iter().zip([
            "validatingadmissionpolicies",
            "validatingadmissionpolicybindings",
        ]) {
            let reply = send(
                &env.admin,
                kube::core::Request::new(format!("/apis/admissionregistration.k8s.io/v1/{plural}"))
                    .create(&PostParams::default(), to_vec(object)),
            )
            .await;
            assert_eq!(reply.status, 201, "create {plural}: {reply}");
        }
        namespaces.push(("floor", floor_ns));
    }

    // Both no-op webhooks in effect: a create in its namespace reaches both.
    let waited = Instant::now();
    let mut probe = 0;
    loop {
        let before = noop_reviews(stats).await;
        create_set(&env, &noop_ns, &format!("probe-{probe}")).await;
        probe += 1;
        if noop_reviews(stats).await >= before + 2 {
            break;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(30),
            "the no-op webhooks are not called"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "StatefulSet {} bytes of JSON; warming up",
        to_vec(&statefulset("orders-db-0000")).len()
    );
    // Warm-up: every path (connections to both webhooks, the API server's caches).
    let mut specs = Vec::new();
    for i in 0..10 {
        specs.clear();
        for (_, ns) in &namespaces {
            let created = create_set(&env, ns, &format!("warm-{i}")).await;
            specs.push(created.map(|(_, object)| object["spec"].clone()));
        }
    }
    // What stateward answers besides the patch (warnings reach the client as headers).
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let reply = send(
        &env.admin,
        k8s::statefulsets(&namespaces[0].1).create(&dry_run, to_vec(&statefulset("dry-run"))),
    )
    .await;
    println!("a create in stateward's namespace: {reply}");
    let reply = send(
        &env.admin,
        k8s::statefulsets(&namespaces[1].1).create(&dry_run, to_vec(&statefulset("dry-run"))),
    )
    .await;
    println!("a create in the no-op's namespace: {reply}");
    // The sets are alike but for the namespace: what stateward's mutation changed.
    let patched: Vec<String> = match (&specs[0], &specs[2]) {
        (Some(Value::Object(stateward)), Some(Value::Object(none))) => stateward
            .iter()
            .filter(|(k, v)| none.get(*k) != Some(*v))
            .map(|(k, _)| format!("spec.{k}"))
            .collect(),
        _ => vec!["(no object to compare)".into()],
    };
    println!(
        "stateward's mutating webhook changes {} of the set",
        if patched.is_empty() {
            "nothing".to_owned()
        } else {
            patched.join(", ")
        }
    );
    if std::env::args().any(|a| a == "--noop-patch") {
        println!(
            "the no-op patches: {}",
            if specs[0] == specs[1] {
                "the set ends up as in stateward's namespace"
            } else {
                "DIFFERENTLY from stateward"
            }
        );
    }

    let total = (rate * seconds) as usize;
    println!(
        "{total} creates at {rate}/s over {seconds} s, round-robin over {} namespaces",
        namespaces.len()
    );
    let (apiserver_before, stateward_before) = (
        apiserver_webhook_durations(&env).await,
        stateward_durations(&env).await,
    );
    let noop_before = noop_stats(stats).await;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let begin = tokio::time::Instant::now() + Duration::from_millis(100);
    let mut tasks = Vec::new();
    for n in 0..total {
        let at = begin + interval * n as u32;
        tokio::time::sleep_until(at).await;
        let (env, which, ns) = (
            env.clone(),
            n % namespaces.len(),
            namespaces[n % namespaces.len()].1.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let ok = create_set(&env, &ns, &format!("orders-db-{n:05}"))
                .await
                .is_some();
            (which, ok, at.elapsed())
        }));
    }
    let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); namespaces.len()];
    let mut failures = 0;
    for task in tasks {
        let (which, ok, latency) = task.await.expect("create task");
        if ok {
            latencies[which].push(latency.as_secs_f64() * 1000.0);
        } else {
            failures += 1;
        }
    }
    // Where the time goes: per webhook, the calls the API server made during the timed
    // creates and their mean duration as it saw them; what each server's handler took.
    for (name, calls, mean) in delta(&apiserver_before, &apiserver_webhook_durations(&env).await) {
        println!(
            "  API server -> {name}: {calls:.0} calls ({:.2} per create), mean {mean:.2} ms",
            calls / (total / namespaces.len()) as f64
        );
    }
    for (endpoint, calls, mean) in delta(&stateward_before, &stateward_durations(&env).await) {
        println!("  stateward's handler /{endpoint}: {calls:.0} reviews, mean {mean:.3} ms");
    }
    for (path, counts) in noop_stats(stats).await {
        let before = noop_before.get(&path).copied().unwrap_or_default();
        let reviews = (counts.reviews - before.reviews).max(1) as f64;
        println!(
            "  no-op's handler /{path}: {:.0} reviews, mean {:.3} ms (head to head, body read included: {:.3} ms)",
            reviews,
            (counts.handler_ns - before.handler_ns) as f64 / 1e6 / reviews,
            (counts.head_ns - before.head_ns) as f64 / 1e6 / reviews,
        );
    }
    let mut figures = Vec::new();
    for ((name, ns), lat) in namespaces.iter().zip(latencies.iter_mut()) {
        lat.sort_by(|a, b| a.total_cmp(b));
        let (p50, p99) = (percentile(lat, 0.50), percentile(lat, 0.99));
        println!(
            "{name:>9} ({ns}): {} creates, p50 {p50:.2} ms, p99 {p99:.2} ms, mean {:.2} ms",
            lat.len(),
            lat.iter().sum::<f64>() / lat.len().max(1) as f64
        );
        figures.push((p50, p99));
    }
    let (none50, none99) = figures[2];
    let added = |i: usize| (figures[i].0 - none50, figures[i].1 - none99);
    let (sw50, sw99) = added(0);
    let (noop50, noop99) = added(1);
    println!(
        "added over no webhook: stateward p50 {sw50:+.2} ms, p99 {sw99:+.2} ms; no-op p50 {noop50:+.2} ms, p99 {noop99:+.2} ms"
    );
    println!(
        "stateward-added / no-op-added: p50 {:.2}x, p99 {:.2}x ({failures} failed creates; the no-op answered {} reviews)",
        sw50 / noop50,
        sw99 / noop99,
        noop_reviews(stats).await
    );
    if native {
        let (native50, native99) = added(3);
        println!(
            "native: added over no webhook p50 {native50:+.2} ms, p99 {native99:+.2} ms; native-added / no-op-added: p50 {:.2}x, p99 {:.2}x",
            native50 / noop50,
            native99 / noop99
        );
        let (floor50, floor99) = added(4);
        println!(
            "one policy checking `true` (the API server's floor per policy): added p50 {floor50:+.2} ms, p99 {floor99:+.2} ms; floor-added / no-op-added: p50 {:.2}x",
            floor50 / noop50
        );
    }
    drop(noop_process);
}

// ---- memory at scale -----------------------------------------------------------------

/// Sends every request of `requests` with `SCALE_IN_FLIGHT` in flight; panics on any
/// answer but 201 (409 counts as done: a re-run into the same cluster).
async fn create_all(env: &Env, what: &str, requests: Vec<(String, Value)>) {
    let total = requests.len();
    let started = Instant::now();
    let done = AtomicU64::new(0);
    let admin = &env.admin;
    let done = &done;
    futures::stream::iter(requests)
        .map(|(path, body)| async move {
            let reply = send(
                admin,
                Request::new(path.clone()).create(&PostParams::default(), to_vec(&body)),
            )
            .await;
            assert!(
                reply.status == 201 || reply.status == 409,
                "create in {path}: {reply}"
            );
            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_multiple_of(10_000) {
                println!(
                    "  {n} {what} after {:.0} s",
                    started.elapsed().as_secs_f64()
                );
            }
        })
        .buffer_unordered(SCALE_IN_FLIGHT)
        .collect::<Vec<()>>()
        .await;
    println!(
        "created {total} {what} in {:.0} s ({:.0}/s)",
        started.elapsed().as_secs_f64(),
        total as f64 / started.elapsed().as_secs_f64()
    );
}

/// VmRSS and VmHWM of `pid`, in MiB.
fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Starts `binary serve --cluster required` against the cluster, waits for `/readyz` 200
/// and reads its memory two seconds later: (seconds to ready, RSS MiB, peak RSS MiB).
async fn measure_serve(
    env: &Env,
    dir: &Path,
    binary: &Path,
    run: usize,
    tunables: Option<&str>,
) -> (f64, f64, f64) {
    let cert = dir.join("stateward.crt");
    let key = dir.join("stateward.key");
    let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let spec = process::Spec::new(
        &format!("scale-stateward-{run}"),
        binary,
        vec![
            "serve".into(),
            "--listen".into(),
            format!("127.0.0.1:{}", free_port()),
            "--admin-listen".into(),
            admin.to_string(),
            "--tls-cert".into(),
            cert.display().to_string(),
            "--tls-key".into(),
            key.display().to_string(),
            "--cluster".into(),
            "required".into(),
            "--kubeconfig".into(),
            env.admin_kubeconfig.display().to_string(),
            "--log-level".into(),
            "warn".into(),
        ],
    );
    let mut spec = spec;
    if let Some(tunables) = tunables {
        spec.env
            .push(("GLIBC_TUNABLES".to_owned(), tunables.to_owned()));
    }
    let started = Instant::now();
    let mut proc = process::Proc::start(&spec, dir);
    loop {
        if let Some(status) = proc.exited() {
            panic!(
                "{} exited ({status}); see {}",
                binary.display(),
                proc.log.display()
            );
        }
        if let Ok((200, _)) = k8s::http_get(admin, "/readyz").await {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "{} not ready after 300 s",
            binary.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = proc.pid().expect("stateward's pid");
    let (rss, peak) = memory_mib(pid);
    tokio::task::block_in_place(|| proc.stop());
    (ready, rss, peak)
}

async fn scale(
    dir: &Path,
    assets: &Path,
    helm: &Path,
    services: usize,
    sets: usize,
    binaries: &[PathBuf],
) {
    let env = Env::start(dir, assets, helm, None).await;
    // The suite's own stateward would cache everything created below: stop it.
    env.terminate_stateward();
    env.stop_controller_manager();
    for i in 0..SCALE_NAMESPACES {
        create_namespace(&env, &format!("scale-{i:03}"), json!({})).await;
    }
    let ns = |i: usize| format!("scale-{:03}", i % SCALE_NAMESPACES);
    // In quarters, measured after each: a slope, and figures even if the run is cut short.
    let quarters = |total: usize, q: usize| total * q / 4..total * (q + 1) / 4;
    let mut run = 0;
    for q in 0..4 {
        let requests = quarters(services, q)
            .map(|i| {
                (
                    format!("/api/v1/namespaces/{}/services", ns(i)),
                    service(&format!("svc-{i:06}"), i % 2 == 1 || i >= CLUSTER_IP_BELOW),
                )
            })
            .collect();
        create_all(&env, "Services", requests).await;
        let requests = quarters(sets, q)
            .map(|i| {
                (
                    format!("/apis/apps/v1/namespaces/{}/statefulsets", ns(i)),
                    statefulset(&format!("db-{i:06}")),
                )
            })
            .collect();
        create_all(&env, "StatefulSets", requests).await;
        let (now_services, now_sets) = (services * (q + 1) / 4, sets * (q + 1) / 4);
        println!(
            "serve --cluster required against {now_services} Services and {now_sets} StatefulSets:"
        );
        // Twice at the end, once at the other quarters.
        for round in 0..(if q == 3 { 2 } else { 1 }) {
            for binary in binaries {
                for tunables in [None, Some(IMAGE_GLIBC_TUNABLES)] {
                    let (ready, rss, peak) = measure_serve(&env, dir, binary, run, tunables).await;
                    run += 1;
                    println!(
                        "  round {round} {}{}: ready in {ready:.2} s, RSS {rss:.1} MiB (peak {peak:.1} MiB)",
                        binary.display(),
                        tunables.map_or(String::new(), |t| format!(" GLIBC_TUNABLES={t}"))
                    );
                }
            }
        }
    }
}
