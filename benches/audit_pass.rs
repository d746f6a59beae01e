//! One `audit --watch` pass over a large cluster, without the network: 5,000 StatefulSets
//! (4 replicas; every fifth scaled down to 3, leaving an orphaned claim), 20,000 pods (1,000
//! of them a Deployment's), 20,000 claims, 5,000 Services, 2,500 PodDisruptionBudgets and
//! 200 nodes in 100 namespaces, generated as the JSON lists the API server returns.
//!
//! Run: `cargo bench --bench audit_pass` (`-- --iterations N`, default 5).
//!
//! The pass runs in a child process so that its peak RSS (VmHWM) is its own. Reported,
//! each the median of the iterations:
//!
//! - decode: the list bodies (JSON) into the typed objects a pass holds;
//! - evaluate: [`stateward::audit::audit`] (webhook rules, live-state rules, orphans);
//! - reports: the wanted `Report`s and the plan against the reports in the cluster, both
//!   for a first pass (nothing there: every report is applied) and for an unchanged fleet
//!   (every report there with the same hash: nothing is written);
//!
//! and the child's VmHWM at start, its RSS after each list and its peak VmHWM; then once
//! more with whole objects, to show what slimming pods, claims and nodes saves.
//!
//! Then the pass as `stateward audit` runs it ([`stateward::audit::pass`]): the same lists
//! served page by page (500, `continue`) by a client without a network, whose page bodies
//! are generated as they are requested (their generation is not counted), StatefulSets
//! and Services evaluated page by page; then the reports built one at a time
//! ([`stateward::audit::reports::Desired`]) against the metadata of the reports of a first
//! pass. Its time and peak VmHWM, in a child of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or bench may stop on a broken fixture
use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stateward::audit::reports::{Desired, desired_reports, live_set_reports, plan, unchanged};
use stateward::audit::{Inventory, audit, slim};
use stateward::policy::Policy;

const SETS: usize = 5_000;
const REPLICAS: usize = 4;
const NAMESPACES: usize = 100;
const NODES: usize = 200;

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn set(i: usize) -> Value {
    let ns = format!("team-{}", i % NAMESPACES);
    let name = format!("db-{i}");
    // Every tenth set lacks a readiness probe (a warning); every twentieth has grace 0.
    let probe = (!i.is_multiple_of(10)).then(|| json!({"exec": {"command": ["pg_isready"]}}));
    let grace = if i.is_multiple_of(20) { 0 } else { 30 };
    // Every fifth set was scaled from 4 to 3: its fourth claim is an orphan.
    let replicas = if i.is_multiple_of(5) {
        REPLICAS - 1
    } else {
        REPLICAS
    };
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": ns, "uid": format!("set-{i}"),
                     "labels": {"app": name, "tier": "db"}, "generation": 3,
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {
            "replicas": replicas, "serviceName": name, "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate"},
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, "tier": "db"}},
                "spec": {
                    "terminationGracePeriodSeconds": grace,
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                         "labelSelector": {"matchLabels": {"app": name}}}}]}},
                    "securityContext": {"runAsNonRoot": true, "fsGroup": 999},
                    "containers": [{
                        "name": "postgres", "image": "postgres:16.4",
                        "ports": [{"name": "pg", "containerPort": 5432}],
                        "env": [{"name": "PGDATA", "value": "/data/pgdata"}],
                        "readinessProbe": probe,
                        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"},
                                      "limits": {"memory": "2Gi"}},
                        "securityContext": {"allowPrivilegeEscalation": false},
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]
                    }]
                }
            },
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                "accessModes": ["ReadWriteOnce"], "storageClassName": "fast",
                "resources": {"requests": {"storage": "20Gi"}}}}]
        },
        "status": {"replicas": replicas, "readyReplicas": replicas, "currentReplicas": replicas,
                   "updatedReplicas": replicas, "currentRevision": format!("{name}-7d9f"),
                   "updateRevision": format!("{name}-7d9f"), "observedGeneration": 3}
    })
}

fn pod(i: usize, o: usize) -> Value {
    let ns = format!("team-{}", i % NAMESPACES);
    let set = format!("db-{i}");
    let name = format!("{set}-{o}");
    let t = "2026-01-01T00:00:00Z";
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": format!("pod-{i}-{o}"),
                     "labels": {"app": set, "tier": "db", "controller-revision-hash": format!("{set}-7d9f"),
                                "statefulset.kubernetes.io/pod-name": name,
                                "apps.kubernetes.io/pod-index": o.to_string()},
                     "creationTimestamp": t,
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": set,
                                          "uid": format!("set-{i}"), "controller": true,
                                          "blockOwnerDeletion": true}]},
        "spec": {
            "nodeName": format!("node-{}", (i * REPLICAS + o) % NODES),
            "hostname": name, "subdomain": set,
            "containers": [{
                "name": "postgres", "image": "postgres:16.4",
                "ports": [{"name": "pg", "containerPort": 5432, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
                "volumeMounts": [{"name": "data", "mountPath": "/data"},
                                 {"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}]
            }],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": format!("data-{name}")}},
                        {"name": "kube-api-access", "projected": {"sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}]}}]
        },
        "status": {
            "phase": "Running", "podIP": "10.0.0.1", "startTime": t,
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": t},
                           {"type": "ContainersReady", "status": "True", "lastTransitionTime": t},
                           {"type": "PodScheduled", "status": "True", "lastTransitionTime": t}],
            "containerStatuses": [{"name": "postgres", "ready": true, "restartCount": 0, "started": true,
                                   "image": "postgres:16.4", "imageID": "docker.io/library/postgres@sha256:0",
                                   "state": {"running": {"startedAt": t}}}]
        }
    })
}

/// A pod of a Deployment (no StatefulSet owns it), as clusters have many.
fn web_pod(k: usize) -> Value {
    let t = "2026-01-01T00:00:00Z";
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("web-7c9d-{k}"), "namespace": format!("team-{}", k % NAMESPACES),
                     "uid": format!("web-pod-{k}"), "labels": {"app": "web", "pod-template-hash": "7c9d"},
                     "creationTimestamp": t,
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7c9d",
                                          "uid": "rs-1", "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"nodeName": format!("node-{}", k % NODES),
                 "containers": [{"name": "web", "image": "nginx:1.27",
                                 "ports": [{"containerPort": 80}],
                                 "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]},
        "status": {"phase": "Running", "podIP": "10.0.1.1", "startTime": t,
                   "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": t}]}
    })
}

fn claim(i: usize, o: usize) -> Value {
    let ns = format!("team-{}", i % NAMESPACES);
    let set = format!("db-{i}");
    json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": format!("data-{set}-{o}"), "namespace": ns, "uid": format!("pvc-{i}-{o}"),
                     "labels": {"app": set, "tier": "db"}, "creationTimestamp": "2026-01-01T00:00:00Z",
                     "annotations": {"stateward.io/statefulset": set, "stateward.io/statefulset-uid": format!("set-{i}")},
                     "finalizers": ["kubernetes.io/pvc-protection"]},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast",
                 "resources": {"requests": {"storage": "20Gi"}}, "volumeName": format!("pv-{i}-{o}"),
                 "volumeMode": "Filesystem"},
        "status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "20Gi"}}
    })
}

fn service(i: usize) -> Value {
    let set = format!("db-{i}");
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": set, "namespace": format!("team-{}", i % NAMESPACES), "uid": format!("svc-{i}"),
                     "labels": {"app": set}},
        "spec": {"clusterIP": "None", "selector": {"app": set},
                 "ports": [{"name": "pg", "port": 5432, "targetPort": 5432}]}
    })
}

fn pdb(i: usize) -> Value {
    let set = format!("db-{i}");
    json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": set, "namespace": format!("team-{}", i % NAMESPACES), "uid": format!("pdb-{i}")},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": set}}}
    })
}

fn node(n: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": format!("node-{n}"), "uid": format!("node-{n}"),
                     "labels": {"kubernetes.io/hostname": format!("node-{n}")}},
        "status": {"conditions": [{"type": "Ready", "status": "True",
                                   "lastHeartbeatTime": "2026-01-01T00:00:00Z",
                                   "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    })
}

fn list(items: impl Iterator<Item = Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({"items": items.collect::<Vec<_>>()})).unwrap_or_default()
}

#[derive(serde::Deserialize)]
struct List<T> {
    items: Vec<T>,
}

/// How a pass decodes: the time spent, the bytes decoded, whether objects are slimmed as
/// the pass slims them, and the RSS after each list.
struct Decoding {
    spent: Duration,
    bytes: usize,
    slim: bool,
    rss: Vec<(&'static str, u64)>,
}

/// `n` objects listed as the pass lists them, 500 a page: each page body is generated (not
/// timed), decoded and slimmed (timed) and dropped, so at most one page body is held
/// besides the decoded objects, as in a pass.
fn paged<T: serde::de::DeserializeOwned>(
    what: &'static str,
    n: usize,
    item: impl Fn(usize) -> Value,
    slim: fn(&mut T),
    d: &mut Decoding,
) -> Vec<T> {
    let mut out = Vec::with_capacity(n);
    for start in (0..n).step_by(500) {
        let body = list((start..(start + 500).min(n)).map(&item));
        d.bytes += body.len();
        let t = Instant::now();
        let page: List<T> = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("decode: {e}"));
        out.extend(page.items.into_iter().map(|mut o| {
            if d.slim {
                slim(&mut o);
            }
            o
        }));
        d.spent += t.elapsed();
    }
    d.rss.push((what, status_kib("VmRSS:")));
    out
}

/// Every fifth set was scaled from 4 replicas to 3 and has 3 pods (its fourth claim is an
/// orphan), the others 4; then 1,000 Deployment pods: 20,000 pods in all.
fn pod_at(k: usize) -> Value {
    let set_pods = SETS * REPLICAS - SETS / 5;
    if k >= set_pods {
        return web_pod(k - set_pods);
    }
    let per_group = 5 * REPLICAS - 1;
    let (group, within) = (k / per_group, k % per_group);
    let (i, o) = if within < REPLICAS - 1 {
        (group * 5, within)
    } else {
        let rest = within - (REPLICAS - 1);
        (group * 5 + 1 + rest / REPLICAS, rest % REPLICAS)
    };
    pod(i, o)
}

/// The inventory of a pass, decoded from list bodies.
fn inventory(d: &mut Decoding) -> Inventory {
    let replica = |f: fn(usize, usize) -> Value| move |k: usize| f(k / REPLICAS, k % REPLICAS);
    Inventory {
        statefulsets: paged("statefulsets", SETS, set, |_| {}, d),
        selected: None,
        services: paged("services", SETS, service, |_| {}, d),
        pdbs: paged("poddisruptionbudgets", SETS / 2, |k| pdb(k * 2), |_| {}, d),
        pods: paged("pods", SETS * REPLICAS, pod_at, slim::pod, d),
        claims: paged("claims", SETS * REPLICAS, replica(claim), slim::claim, d),
        nodes: paged("nodes", NODES, node, slim::node, d),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// The child: decode, run the pass `iterations` times; print the figures.
fn child(iterations: usize, slim: bool) {
    let start_hwm = status_kib("VmHWM:");
    let policy = Policy::baseline();
    let mut decode_times = Vec::new();
    let mut inv = Inventory::default();
    let (mut body_bytes, mut rss) = (0, Vec::new());
    for _ in 0..iterations {
        // The previous inventory goes first: one is held at a time, as in the process.
        drop(std::mem::take(&mut inv));
        let mut d = Decoding {
            spent: Duration::ZERO,
            bytes: 0,
            slim,
            rss: Vec::new(),
        };
        inv = inventory(&mut d);
        decode_times.push(d.spent);
        body_bytes = d.bytes;
        if rss.is_empty() {
            rss = d.rss;
        }
    }
    let steps: Vec<String> = rss
        .iter()
        .map(|(what, kib)| format!("{what} {:.0}", mib(*kib)))
        .collect();
    println!(
        "{}",
        if slim {
            "== the pass (pods, claims and nodes slimmed as they are listed)"
        } else {
            "== whole objects (for comparison)"
        }
    );
    println!(
        "inventory: {} sets, {} pods, {} claims, {} services, {} PDBs, {} nodes; list bodies {:.0} MiB in pages of 500",
        inv.statefulsets.len(),
        inv.pods.len(),
        inv.claims.len(),
        inv.services.len(),
        inv.pdbs.len(),
        inv.nodes.len(),
        body_bytes as f64 / (1024.0 * 1024.0)
    );
    println!(
        "RSS (MiB) after each list of the first decode: {}",
        steps.join(", ")
    );
    let decoded_rss = status_kib("VmRSS:");
    let now = 1_800_000_000;
    let (mut evaluate, mut first, mut steady) = (Vec::new(), Vec::new(), Vec::new());
    let mut summary = String::new();
    for _ in 0..iterations {
        let t = Instant::now();
        let report = audit(&policy, &inv, now);
        evaluate.push(t.elapsed());

        let t = Instant::now();
        let live = live_set_reports(&policy, &inv);
        let wanted = desired_reports(&policy, &report, &[], now);
        let first_plan = plan(wanted, &[], &live);
        first.push(t.elapsed());

        // The reports now in the cluster are those the first pass applied.
        let existing = first_plan.apply.clone();
        let t = Instant::now();
        let wanted = desired_reports(&policy, &report, &existing, now + 300);
        let steady_plan = plan(wanted, &existing, &live);
        steady.push(t.elapsed());
        assert!(steady_plan.apply.is_empty() && steady_plan.delete.is_empty());
        let results: usize = first_plan.apply.iter().map(|r| r.results.len()).sum();
        summary = format!(
            "{} findings ({} enforce, {} warn, {} audit), {} orphaned claims; {} reports \
             ({} results) applied by a first pass, {} unchanged and 0 written by the next",
            report.findings.len(),
            report.summary.enforce,
            report.summary.warn,
            report.summary.audit,
            report.summary.orphaned_claims,
            first_plan.apply.len(),
            results,
            steady_plan.unchanged
        );
    }
    println!("pass: {summary}");
    println!(
        "median of {iterations}: decode {}, evaluate {}, reports+plan first pass {}, unchanged fleet {}",
        ms(median(decode_times.clone())),
        ms(median(evaluate.clone())),
        ms(median(first)),
        ms(median(steady.clone()))
    );
    println!(
        "one pass without the network (decode + evaluate + reports, unchanged fleet): {}",
        ms(median(
            decode_times
                .iter()
                .zip(&evaluate)
                .zip(&steady)
                .map(|((a, b), c)| *a + *b + *c)
                .collect()
        ))
    );
    println!(
        "memory: VmHWM {:.0} MiB at start, RSS {:.0} MiB with the decoded inventory, peak VmHWM {:.0} MiB",
        mib(start_hwm),
        mib(decoded_rss),
        mib(status_kib("VmHWM:"))
    );
}

/// One page of the list at `path` from offset `start`, as the API server answers it.
fn page_body(path: &str, start: usize, limit: usize) -> Vec<u8> {
    let (n, item): (usize, Box<dyn Fn(usize) -> Value>) = if path.ends_with("/statefulsets") {
        (SETS, Box::new(set))
    } else if path.ends_with("/services") {
        (SETS, Box::new(service))
    } else if path.ends_with("/poddisruptionbudgets") {
        (SETS / 2, Box::new(|k| pdb(k * 2)))
    } else if path.ends_with("/pods") {
        (SETS * REPLICAS, Box::new(pod_at))
    } else if path.ends_with("/persistentvolumeclaims") {
        (
            SETS * REPLICAS,
            Box::new(|k| claim(k / REPLICAS, k % REPLICAS)),
        )
    } else if path.ends_with("/nodes") {
        (NODES, Box::new(node))
    } else {
        (0, Box::new(|_| Value::Null))
    };
    let end = (start + limit).min(n);
    let mut metadata = json!({"resourceVersion": "1"});
    if end < n {
        metadata["continue"] = json!(end.to_string());
    }
    serde_json::to_vec(
        &json!({"kind": "List", "apiVersion": "v1", "metadata": metadata,
        "items": (start..end).map(&item).collect::<Vec<_>>()}),
    )
    .unwrap_or_default()
}

/// A client whose API server generates the pages of [`page_body`]; the time spent
/// generating them is added to `spent`.
fn client(spent: Arc<AtomicU64>) -> kube::Client {
    use axum::http::{Request, Response};
    use kube::client::Body;
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let t = Instant::now();
            let uri = request.uri().clone();
            let query: HashMap<&str, &str> = uri
                .query()
                .unwrap_or_default()
                .split('&')
                .filter_map(|p| p.split_once('='))
                .collect();
            let start = query
                .get("continue")
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let limit = query
                .get("limit")
                .and_then(|c| c.parse().ok())
                .unwrap_or(500);
            let body = page_body(uri.path(), start, limit);
            spent.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
            send.send_response(Response::new(Body::from(body)));
        }
    });
    kube::Client::new(service, "default")
}

/// The child of the streamed pass: `iterations` passes and their reports.
fn streamed(iterations: usize) {
    let start_hwm = status_kib("VmHWM:");
    let policy = Policy::baseline();
    let now = 1_800_000_000;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (mut passes, mut first, mut steady) = (Vec::new(), Vec::new(), Vec::new());
    let mut summary = String::new();
    for _ in 0..iterations {
        runtime.block_on(async {
            let generating = Arc::new(AtomicU64::new(0));
            let client = client(generating.clone());
            let t = Instant::now();
            let listed = stateward::audit::pass(&client, None, None, &policy, now)
                .await
                .expect("pass");
            passes.push(
                t.elapsed()
                    .saturating_sub(Duration::from_nanos(generating.load(Ordering::Relaxed))),
            );
            let report = listed.report;
            // A first pass: no report in the cluster, every report applied; what the next
            // pass lists of them is their metadata.
            let t = Instant::now();
            let desired = Desired::new(&policy, &report);
            let mut existing = HashMap::new();
            let mut results = 0;
            for i in 0..desired.len() {
                if let Some(mut r) = desired.build(i, None, now) {
                    results += r.results.len();
                    r.results.clear();
                    r.summary = None;
                    existing.insert(desired.key(i), r);
                }
            }
            first.push(t.elapsed());
            let t = Instant::now();
            let mut same = 0;
            for i in 0..desired.len() {
                let before = existing.get(&desired.key(i));
                if let Some(r) = desired.build(i, before, now + 300)
                    && unchanged(before, &r)
                {
                    same += 1;
                }
            }
            steady.push(t.elapsed());
            assert_eq!(same, existing.len(), "an unchanged fleet writes nothing");
            summary = format!(
                "{} findings, {} orphaned claims; {} reports ({} results) applied by a first \
                 pass, {} unchanged by the next",
                report.findings.len(),
                report.summary.orphaned_claims,
                existing.len(),
                results,
                same
            );
        });
    }
    println!("== the streamed pass (stateward::audit::pass, pages served without a network)");
    println!("pass: {summary}");
    println!(
        "median of {iterations}: pass (lists, evaluation; page generation not counted) {}, \
         reports first pass {}, unchanged fleet {}",
        ms(median(passes)),
        ms(median(first)),
        ms(median(steady))
    );
    println!(
        "memory: VmHWM {:.0} MiB at start, peak VmHWM {:.0} MiB",
        mib(start_hwm),
        mib(status_kib("VmHWM:"))
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let iterations = args
        .iter()
        .position(|a| a == "--iterations")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(5usize)
        .max(1);
    if args.iter().any(|a| a == "--streamed") {
        streamed(iterations);
        return;
    }
    if args.iter().any(|a| a == "--child") {
        child(iterations, !args.iter().any(|a| a == "--whole"));
        return;
    }
    let exe = std::env::current_exe().expect("own executable");
    // The pass as it runs, then once with whole objects (what slimming saves).
    for (extra, n) in [
        (Some("--streamed"), iterations),
        (None, iterations),
        (Some("--whole"), 1),
    ] {
        let status = Command::new(&exe)
            .args(["--child", "--iterations", &n.to_string()])
            .args(extra)
            .status()
            .expect("run the child");
        assert!(status.success(), "the child failed: {status}");
    }
}
