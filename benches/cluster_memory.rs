//! Memory of the cluster caches: RSS with 50,000 Services (and 5,000 StatefulSets) fed
//! through a scripted API server, as the webhook holds them (projections only).
//! Run: `cargo bench --bench cluster_memory [-- N_SERVICES N_SETS]`. The same on a real
//! API server, with the whole `stateward serve` process: `benches/apiserver.rs --scale`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or bench may stop on a broken fixture
use std::time::{Duration, Instant};

use axum::http::{Request, Response};
use kube::client::Body;
use serde_json::json;
use stateward::cluster::ClusterContext;

static SERVICES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
static STATEFULSETS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// The numbers after `--bench` (cargo passes it first), else 50,000 and 5,000.
fn counts() -> (usize, usize) {
    let numbers: Vec<usize> = std::env::args().filter_map(|a| a.parse().ok()).collect();
    (
        numbers.first().copied().unwrap_or(50_000),
        numbers.get(1).copied().unwrap_or(5_000),
    )
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn page(kind: &str, api_version: &str, items: Vec<serde_json::Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": "1"}, "items": items}))
        .unwrap_or_default()
}

fn service(i: usize) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("svc-{i}"), "namespace": format!("team-{}", i % 500), "uid": format!("uid-{i}"),
            "resourceVersion": "1", "labels": {"app": format!("app-{i}"), "team": "x"},
            "annotations": {"note": "a realistic annotation that takes some room in the full object"}},
        "spec": {"clusterIP": if i.is_multiple_of(10) {"None".to_owned()} else {format!("10.96.{}.{}", i / 250 % 250, i % 250)},
            "selector": {"app": format!("app-{i}")},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
            "type": "ClusterIP", "sessionAffinity": "None", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"}})
}

fn statefulset(i: usize) -> serde_json::Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": format!("db-{i}"), "namespace": format!("team-{}", i % 500)},
        "spec": {"serviceName": format!("svc-{i}"), "replicas": 3, "selector": {"matchLabels": {"app": format!("app-{i}")}},
            "template": {"metadata": {"labels": {"app": format!("app-{i}")}},
                "spec": {"containers": [{"name": "db", "image": "postgres:17", "env": [{"name": "A", "value": "b"}]}]}}}})
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let (services, sets) = counts();
    SERVICES.get_or_init(|| services);
    STATEFULSETS.get_or_init(|| sets);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let before = rss_mib();
        let (service_mock, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service_mock, "default");
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Some((request, send)) = handle.next_request().await {
                let uri = request.uri().to_string();
                if uri.contains("watch=true") {
                    held.push(send);
                    continue;
                }
                // Pages of 500, as the watcher asks for.
                let page_no: usize = uri
                    .split("continue=")
                    .nth(1)
                    .and_then(|c| c.split('&').next())
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                let (total, kind, version, make): (usize, &str, &str, fn(usize) -> serde_json::Value) =
                    if uri.contains("/services") {
                        (*SERVICES.get().unwrap_or(&0), "ServiceList", "v1", service)
                    } else if uri.contains("/statefulsets") {
                        (*STATEFULSETS.get().unwrap_or(&0), "StatefulSetList", "apps/v1", statefulset)
                    } else {
                        (0, "PodDisruptionBudgetList", "policy/v1", service)
                    };
                let start = page_no * 500;
                let end = (start + 500).min(total);
                let items: Vec<_> = (start..end).map(make).collect();
                let mut body: serde_json::Value = serde_json::from_slice(&page(kind, version, items)).unwrap_or_default();
                if end < total {
                    body["metadata"]["continue"] = json!((page_no + 1).to_string());
                }
                let bytes = serde_json::to_vec(&body).unwrap_or_default();
                send.send_response(Response::new(Body::from(bytes)));
            }
        });
        let (_stop, stop_rx) = tokio::sync::watch::channel(false);
        let mut registry = prometheus_client::registry::Registry::default();
        let started = Instant::now();
        let context = ClusterContext::spawn(client, &mut registry, stop_rx);
        while !context.first_synced() {
            assert!(started.elapsed() < Duration::from_secs(120), "caches did not sync");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let synced_in = started.elapsed();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = rss_mib();
        println!(
            "cached {} Services and {} StatefulSets in {:.2} s; RSS {:.1} MiB before, {:.1} MiB after ({:+.1} MiB)",
            context.services.len(),
            context.statefulsets.len(),
            synced_in.as_secs_f64(),
            before,
            after,
            after - before
        );
    });
}
