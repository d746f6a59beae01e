//! Peak memory and time of the commands that read the whole fleet, on a real control plane
//! populated to a given size (docs/gc.md, "Memory").
//!
//! ```text
//! STATEWARD_K8S_ASSETS=/work/shared/k8s/bin STATEWARD_HELM=$PWD/.tools/bin/helm \
//!   cargo bench --bench fleet_memory -- --pods 10000 [--claims N] [--sets N] [--services N] \
//!   [--bin PATH] [--baseline-bin PATH]... [--tunables] [--tunables-also T1,T2]
//!   [--wait-for FILE] [--only gc,audit,serve]
//! ```
//!
//! The control plane of the end-to-end suite (tests/e2e/harness.rs) with its stateward and
//! its controller manager stopped (nothing but this bench writes), then, in 100 namespaces
//! and 64 requests in flight: `--sets` StatefulSets (the ~7 KB set of benches/support/sets.rs
//! with a claim template `data`), `--services` headless Services, `--pods` pods of about
//! 3 KB (two containers with env, probes, resources; labelled and owned like the pods of
//! set `k % sets`, ordinal `k / sets`, mounting its claim but for every tenth pod), and
//! `--claims` claims `data-<set>-<ordinal>` with the set's labels and stateward's
//! provenance annotations (so `gc --watch` has nothing to write). Odd sets have one
//! replica fewer than they have pods: their last, unmounted claims are orphans.
//! Defaults: claims = pods, sets = pods / 10, services = pods.
//!
//! Then each binary (`--bin`, default the one cargo built; then each `--baseline-bin`) runs, and
//! the bench prints peak RSS and time: `gc -A` and `audit -A -o json` (the process's
//! maxrss from `/usr/bin/time`, and the wall time), `gc --watch` and `serve --cluster
//! required` (RSS and peak two seconds after the stores are listed: the log line `gc
//! reconcile loop started`, `/readyz` 200), `audit --watch` (peak after its first `audit
//! pass` log line, and that pass's time). Before the first binary and after the last, the
//! time the API server takes to serve the lists to a client that keeps nothing (claims,
//! sets, pods, Services, paged by 500): the floor of every command's time. `--tunables` repeats every command with the
//! image's `GLIBC_TUNABLES`, and `--tunables-also` with each of the values it lists. `--wait-for FILE` waits, once the cluster is populated, until
//! FILE exists (populate while the binaries build). `--only` runs only the commands of
//! those names (`gc` is `gc -A` and `gc --watch`). Under `cargo test --benches` (no `--bench`) it does nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or bench may stop on a broken fixture
#[allow(dead_code)]
#[path = "../tests/e2e/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "../tests/e2e/k8s.rs"]
mod k8s;
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

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::core::Request;
use kube::core::params::PostParams;
use serde_json::{Value, json};

use harness::{Env, free_port};

const NAMESPACES: usize = 100;
const IN_FLIGHT: usize = 64;
/// The image's and the chart's (charts/stateward/templates/deployment.yaml).
const IMAGE_GLIBC_TUNABLES: &str = "glibc.malloc.mmap_threshold=131072";

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).cloned()
}

fn count(name: &str) -> Option<usize> {
    arg(name).and_then(|v| v.parse().ok())
}

fn ns(i: usize) -> String {
    format!("fleet-{:03}", i % NAMESPACES)
}

fn set_name(i: usize) -> String {
    format!("db-{i:05}")
}

/// Pods (and claims) per set, and the replicas of set `i`: one fewer for odd sets.
fn replicas(i: usize, per_set: usize) -> usize {
    if i % 2 == 1 {
        per_set.saturating_sub(1)
    } else {
        per_set
    }
}

fn statefulset(i: usize, per_set: usize) -> Value {
    let name = set_name(i);
    let mut sts = sets::padded(&name, false);
    sts["metadata"]["namespace"] = json!(ns(i));
    sts["spec"]["replicas"] = json!(replicas(i, per_set));
    sts["spec"]["volumeClaimTemplates"] = json!([{"metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}}]);
    sts
}

fn service(i: usize, sets: usize) -> Value {
    let app = set_name(i % sets);
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("svc-{i:06}"), "namespace": ns(i % sets), "labels": {"app": app}},
        "spec": {"clusterIP": "None", "selector": {"app": app},
            "ports": [{"name": "db", "port": 5432, "targetPort": 5432}]}})
}

fn container(name: &str, image: &str, port: u16) -> Value {
    let env: Vec<Value> = (0..12)
        .map(|e| json!({"name": format!("{}_SETTING_{e:02}", name.to_uppercase()), "value": format!("value-{e:02}-of-some-length")}))
        .collect();
    json!({"name": name, "image": image, "env": env,
        "ports": [{"name": name, "containerPort": port, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
        "readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 10},
        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/data"}, {"name": "config", "mountPath": "/etc/app"}]})
}

fn pod(k: usize, sets: usize, uids: &[String]) -> Value {
    let (i, ordinal) = (k % sets, k / sets);
    let set = set_name(i);
    let name = format!("{set}-{ordinal}");
    let mut volumes =
        vec![json!({"name": "config", "configMap": {"name": format!("{set}-config")}})];
    if k % 10 != 9 {
        volumes.push(
            json!({"name": "data", "persistentVolumeClaim": {"claimName": format!("data-{name}")}}),
        );
    } else {
        volumes.push(json!({"name": "data", "emptyDir": {}}));
    }
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns(i),
            "labels": {"app": set, "apps.kubernetes.io/pod-index": ordinal.to_string(),
                "statefulset.kubernetes.io/pod-name": name, "controller-revision-hash": format!("{set}-7d9f8b6c5")},
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9187"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": set,
                "uid": uids[i], "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"hostname": name, "subdomain": set, "terminationGracePeriodSeconds": 30,
            "containers": [container("db", "postgres:17.2", 5432), container("exporter", "quay.io/prometheuscommunity/postgres-exporter:v0.16.0", 9187)],
            "volumes": volumes}})
}

fn claim(k: usize, sets: usize, uids: &[String]) -> Value {
    let (i, ordinal) = (k % sets, k / sets);
    let set = set_name(i);
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": format!("data-{set}-{ordinal}"), "namespace": ns(i), "labels": {"app": set},
            "annotations": {"stateward.io/statefulset": set, "stateward.io/statefulset-uid": uids[i]}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}})
}

/// Creates every object, `IN_FLIGHT` at a time; the uid of each (in order).
async fn create_all(env: &Env, what: &str, requests: Vec<(String, Value)>) -> Vec<String> {
    let total = requests.len();
    let started = Instant::now();
    let done = AtomicU64::new(0);
    let (admin, done) = (&env.admin, &done);
    let uids = futures::stream::iter(requests)
        .map(|(path, body)| async move {
            let bytes = serde_json::to_vec(&body).expect("json");
            let reply = k8s::send(
                admin,
                Request::new(path.clone()).create(&PostParams::default(), bytes),
            )
            .await;
            assert!(reply.status == 201, "create in {path}: {reply}");
            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_multiple_of(10_000) {
                println!(
                    "  {n} {what} after {:.0} s",
                    started.elapsed().as_secs_f64()
                );
            }
            reply.body["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .buffered(IN_FLIGHT)
        .collect::<Vec<String>>()
        .await;
    println!(
        "created {total} {what} in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    uids
}

/// Runs `binary args` to its end under `/usr/bin/time`: (peak RSS MiB, seconds).
fn one_shot(binary: &Path, args: &[String], tunables: Option<&str>, log: &Path) -> (f64, f64) {
    let mut command = Command::new("/usr/bin/time");
    command
        .args(["-f", "maxrss_kb=%M"])
        .arg(binary)
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log"));
    if let Some(t) = tunables {
        command.env("GLIBC_TUNABLES", t);
    }
    let started = Instant::now();
    let status = command.status().expect("/usr/bin/time");
    let seconds = started.elapsed().as_secs_f64();
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let kb: f64 = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("maxrss_kb="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN);
    // gc and audit exit 0 or 1 (findings); anything else is a failure of the run.
    assert!(
        status.code().is_some_and(|c| c <= 1),
        "{} {args:?}: {status}; see {}",
        binary.display(),
        log.display()
    );
    (kb / 1024.0, seconds)
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

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

enum Ready {
    LogLine(&'static str),
    Readyz(SocketAddr),
}

/// Starts `binary args`, waits until `ready`, and two seconds later reads its memory:
/// (seconds to ready, RSS MiB, peak RSS MiB).
async fn long_running(
    binary: &Path,
    args: &[String],
    ready: Ready,
    tunables: Option<&str>,
    log: &Path,
) -> (f64, f64, f64) {
    let mut command = Command::new(binary);
    command
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log"));
    if let Some(t) = tunables {
        command.env("GLIBC_TUNABLES", t);
    }
    let started = Instant::now();
    let mut child = Running(command.spawn().expect("spawn"));
    loop {
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!(
                "{} exited ({status}); see {}",
                binary.display(),
                log.display()
            );
        }
        let done = match &ready {
            Ready::LogLine(line) => std::fs::read_to_string(log).is_ok_and(|t| t.contains(line)),
            Ready::Readyz(addr) => matches!(k8s::http_get(*addr, "/readyz").await, Ok((200, _))),
        };
        if done {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "{} not ready after 900 s; see {}",
            binary.display(),
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss, peak) = memory_mib(child.0.id());
    (ready_s, rss, peak)
}

/// The command `name` is measured (`--only`, default all).
fn wanted(name: &str) -> bool {
    arg("--only").is_none_or(|only| only.split(',').any(|o| o.trim() == name))
}

/// The lists the commands read, as the API server serves them to a client that keeps
/// nothing: each paged as stateward pages it (500 objects a request), every page's body
/// read and its JSON parsed past the items, only the `continue` token kept. What no
/// client can go below: the floor of each command's time.
async fn serving_floor(env: &Env) {
    #[derive(serde::Deserialize)]
    struct Page {
        metadata: Meta,
        items: Vec<serde::de::IgnoredAny>,
    }
    #[derive(serde::Deserialize)]
    struct Meta {
        #[serde(rename = "continue", default)]
        next: Option<String>,
    }
    let mut total = 0.0;
    // (what, path, whether `gc -A` lists it)
    for (what, path, gc_lists) in [
        ("claims", "/api/v1/persistentvolumeclaims", true),
        ("sets", "/apis/apps/v1/statefulsets", true),
        ("pods", "/api/v1/pods", true),
        ("Services", "/api/v1/services", false),
    ] {
        let started = Instant::now();
        let (mut pages, mut objects, mut bytes) = (0usize, 0usize, 0usize);
        let mut next: Option<String> = None;
        loop {
            // A continue token is URL-safe base64.
            let uri = match &next {
                Some(token) => format!("{path}?limit=500&continue={token}"),
                None => format!("{path}?limit=500"),
            };
            let request = hyper::Request::get(&uri).body(Vec::new()).expect("request");
            let response = env
                .admin
                .send(request.map(kube::client::Body::from))
                .await
                .unwrap_or_else(|e| panic!("GET {uri}: {e}"));
            assert_eq!(response.status(), 200, "GET {uri}");
            let body = response
                .into_body()
                .collect_bytes()
                .await
                .unwrap_or_else(|e| panic!("GET {uri}: body: {e}"));
            let page: Page = serde_json::from_slice(&body).expect("a list");
            (pages, objects, bytes) = (pages + 1, objects + page.items.len(), bytes + body.len());
            match page.metadata.next {
                Some(token) if !token.is_empty() => next = Some(token),
                _ => break,
            }
        }
        let s = started.elapsed().as_secs_f64();
        if gc_lists {
            total += s;
        }
        println!(
            "  the API server alone: {objects} {what} in {pages} pages, {:.0} MiB of JSON, {s:.2} s",
            bytes as f64 / 1048576.0
        );
    }
    println!("  the API server alone: claims, sets and pods (what gc -A lists) {total:.2} s");
}

async fn measure(env: &Env, dir: &Path, binary: &Path, tunables: Option<&str>) {
    let kubeconfig = [
        "--kubeconfig".to_owned(),
        env.admin_kubeconfig.display().to_string(),
    ];
    let strings = |a: &[&str]| -> Vec<String> {
        a.iter()
            .map(|s| (*s).to_owned())
            .chain(kubeconfig.iter().cloned())
            .collect()
    };
    let label = format!(
        "{}{}",
        binary.display(),
        tunables.map_or(String::new(), |t| format!(" GLIBC_TUNABLES={t}"))
    );
    let log = dir.join("command.log");
    if wanted("gc") {
        let (peak, s) = one_shot(binary, &strings(&["gc", "-A"]), tunables, &log);
        println!("  {label}: gc -A: peak RSS {peak:.1} MiB, {s:.2} s");
    }
    if wanted("audit") {
        let (peak, s) = one_shot(
            binary,
            &strings(&["audit", "-A", "-o", "json"]),
            tunables,
            &log,
        );
        println!("  {label}: audit -A -o json: peak RSS {peak:.1} MiB, {s:.2} s");
    }
    let admin = || format!("127.0.0.1:{}", free_port());
    if wanted("gc") {
        gc_watch(binary, &strings, &label, tunables, &log, &admin()).await;
    }
    if wanted("audit") {
        audit_watch(binary, &strings, &label, tunables, &log, &admin()).await;
    }
    if wanted("serve") {
        serve(dir, binary, &strings, &label, tunables, &log).await;
    }
}

async fn gc_watch(
    binary: &Path,
    strings: &dyn Fn(&[&str]) -> Vec<String>,
    label: &str,
    tunables: Option<&str>,
    log: &Path,
    admin: &str,
) {
    let (ready, rss, peak) = long_running(
        binary,
        &strings(&[
            "gc",
            "--watch",
            "--leader-elect=false",
            "--interval",
            "3600",
            "--admin-listen",
            admin,
        ]),
        Ready::LogLine("gc reconcile loop started"),
        tunables,
        log,
    )
    .await;
    println!(
        "  {label}: gc --watch: listed in {ready:.2} s, RSS {rss:.1} MiB (peak {peak:.1} MiB) 2 s later"
    );
}

async fn audit_watch(
    binary: &Path,
    strings: &dyn Fn(&[&str]) -> Vec<String>,
    label: &str,
    tunables: Option<&str>,
    log: &Path,
    admin: &str,
) {
    let (ready, rss, peak) = long_running(
        binary,
        &strings(&[
            "audit",
            "--watch",
            "--leader-elect=false",
            "--interval",
            "1h",
            "--admin-listen",
            admin,
        ]),
        Ready::LogLine("audit pass"),
        tunables,
        log,
    )
    .await;
    let pass_ms = std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .find(|l| l.contains("audit pass"))
        // The text log's field: `duration_ms=1234`.
        .and_then(|l| {
            l.split_once("duration_ms=")
                .map(|(_, rest)| rest.to_owned())
        })
        .and_then(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|ms| ms.parse::<f64>().ok())
        })
        .unwrap_or(f64::NAN);
    println!(
        "  {label}: audit --watch: first pass done {ready:.2} s after start (the pass {:.2} s), RSS {rss:.1} MiB (peak {peak:.1} MiB) 2 s later",
        pass_ms / 1000.0
    );
}

async fn serve(
    dir: &Path,
    binary: &Path,
    strings: &dyn Fn(&[&str]) -> Vec<String>,
    label: &str,
    tunables: Option<&str>,
    log: &Path,
) {
    let serve_admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut args = strings(&["serve", "--cluster", "required", "--log-level", "warn"]);
    args.extend([
        "--listen".into(),
        format!("127.0.0.1:{}", free_port()),
        "--admin-listen".into(),
        serve_admin.to_string(),
        "--tls-cert".into(),
        dir.join("stateward.crt").display().to_string(),
        "--tls-key".into(),
        dir.join("stateward.key").display().to_string(),
    ]);
    let (ready, rss, peak) =
        long_running(binary, &args, Ready::Readyz(serve_admin), tunables, log).await;
    println!(
        "  {label}: serve --cluster required: ready in {ready:.2} s, RSS {rss:.1} MiB (peak {peak:.1} MiB) 2 s later"
    );
}

async fn run(dir: &Path, assets: &Path, helm: &Path, binaries: &[PathBuf]) {
    let pods = count("--pods").unwrap_or(1_000);
    let claims = count("--claims").unwrap_or(pods);
    let sets = count("--sets").unwrap_or((pods / 10).max(1));
    let services = count("--services").unwrap_or(pods);
    let per_set = pods.div_ceil(sets);
    let tunables = std::env::args().any(|a| a == "--tunables");
    // `--tunables-also A,B`: more GLIBC_TUNABLES values to compare (`:`-joined settings
    // each), after the image's.
    let mut tunables_list: Vec<String> = Vec::new();
    if tunables {
        tunables_list.push(IMAGE_GLIBC_TUNABLES.to_owned());
    }
    if let Some(also) = arg("--tunables-also") {
        tunables_list.extend(also.split(',').map(str::to_owned));
    }
    let env = Env::start(dir, assets, helm, None).await;
    env.terminate_stateward();
    env.stop_controller_manager();
    let namespaces = (0..NAMESPACES)
        .map(|i| {
            (
                "/api/v1/namespaces".to_owned(),
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns(i)}}),
            )
        })
        .collect();
    create_all(&env, "Namespaces", namespaces).await;
    // The controller manager, stopped, does not create the default ServiceAccounts.
    let accounts = (0..NAMESPACES)
        .map(|i| {
            (
                format!("/api/v1/namespaces/{}/serviceaccounts", ns(i)),
                json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}),
            )
        })
        .collect();
    create_all(&env, "ServiceAccounts", accounts).await;
    let requests = (0..sets)
        .map(|i| {
            (
                format!("/apis/apps/v1/namespaces/{}/statefulsets", ns(i)),
                statefulset(i, per_set),
            )
        })
        .collect();
    let uids = create_all(&env, "StatefulSets", requests).await;
    let requests = (0..services)
        .map(|i| {
            (
                format!("/api/v1/namespaces/{}/services", ns(i % sets)),
                service(i, sets),
            )
        })
        .collect();
    create_all(&env, "Services", requests).await;
    let requests = (0..claims)
        .map(|k| {
            (
                format!("/api/v1/namespaces/{}/persistentvolumeclaims", ns(k % sets)),
                claim(k, sets, &uids),
            )
        })
        .collect();
    create_all(&env, "PersistentVolumeClaims", requests).await;
    let requests = (0..pods)
        .map(|k| {
            (
                format!("/api/v1/namespaces/{}/pods", ns(k % sets)),
                pod(k, sets, &uids),
            )
        })
        .collect();
    create_all(&env, "Pods", requests).await;
    println!(
        "{pods} pods (about {} bytes each as JSON), {claims} claims, {sets} sets, {services} Services:",
        serde_json::to_vec(&pod(0, sets, &uids)).map_or(0, |v| v.len())
    );
    if let Some(file) = arg("--wait-for") {
        println!("waiting for {file}");
        while !Path::new(&file).exists() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    serving_floor(&env).await;
    for binary in binaries {
        for t in std::iter::once(None).chain(tunables_list.iter().map(|t| Some(t.as_str()))) {
            measure(&env, dir, binary, t).await;
        }
    }
    serving_floor(&env).await;
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let (Some(assets), Some(helm)) = (tiers::k8s_assets(), tiers::helm()) else {
        return;
    };
    let mut binaries = vec![arg("--bin").map_or_else(
        || {
            PathBuf::from(
                std::env::var("STATEWARD_E2E_BIN")
                    .unwrap_or_else(|_| env!("CARGO_BIN_EXE_stateward").to_owned()),
            )
        },
        PathBuf::from,
    )];
    let args: Vec<String> = std::env::args().collect();
    binaries.extend(
        args.windows(2)
            .filter(|w| w[0] == "--baseline-bin")
            .map(|w| PathBuf::from(&w[1])),
    );
    let dir = tempfile::Builder::new()
        .prefix("stateward-fleet-")
        .tempdir()
        .expect("temporary directory");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run(dir.path(), &assets, &helm, &binaries));
}
