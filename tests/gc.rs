//! `stateward gc` against a scripted, stateful API server (`tower_test` behind
//! `kube::Client`): every request is recorded with its method, path and body.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or bench may stop on a broken fixture
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::http::{Method, Request, Response, StatusCode};
use clap::Parser;
use kube::client::Body;
use serde_json::{Value, json};
use stateward::cli::OutputFormat::{Json, Text};
use stateward::cli::{Cli, Command, GcArgs};
use stateward::commands::Exit;
use stateward::commands::gc::{run_once, run_once_gated};
use stateward::gc::Options;
use stateward::gc::collect::{open_gate, snapshot};
use stateward::gc::watch::{
    GcMetrics, PassContext, PassOptions, PassOutcome, PassReport, Scope, Stores,
    opted_in_namespaces, pass, reconcile,
};

#[derive(Debug, Clone)]
struct Call {
    method: Method,
    uri: String,
    body: Value,
}

#[derive(Default)]
struct State {
    claims: BTreeMap<String, Value>,
    sets: Vec<Value>,
    pods: Vec<Value>,
    namespaces: Vec<Value>,
    /// Claims whose DELETE answers this status instead of succeeding.
    delete_status: BTreeMap<String, u16>,
    /// Answer every list with this status (e.g. 403).
    list_status: Option<u16>,
    /// Answer lists and watches of paths ending so with 403.
    forbidden: Vec<String>,
    calls: Vec<Call>,
    next_rv: u64,
}

type Shared = Arc<Mutex<State>>;

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code})
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items})
}

fn handle(state: &mut State, method: &Method, path: &str, body: &Value) -> (u16, Value) {
    if *method == Method::GET {
        if state.forbidden.iter().any(|f| path.ends_with(f.as_str())) {
            return (
                403,
                status(
                    403,
                    "Forbidden",
                    "pods is forbidden: User cannot list resource",
                ),
            );
        }
        if let Some(code) = state.list_status {
            return (
                code,
                status(
                    code,
                    "Forbidden",
                    "persistentvolumeclaims is forbidden: User cannot list resource",
                ),
            );
        }
        return if path.ends_with("/persistentvolumeclaims") {
            (
                200,
                list(
                    "PersistentVolumeClaimList",
                    state.claims.values().cloned().collect(),
                ),
            )
        } else if path.ends_with("/statefulsets") {
            (200, list("StatefulSetList", state.sets.clone()))
        } else if path.ends_with("/pods") {
            (200, list("PodList", state.pods.clone()))
        } else if path.ends_with("/namespaces") {
            (200, list("NamespaceList", state.namespaces.clone()))
        } else {
            (404, status(404, "NotFound", "no such path"))
        };
    }
    if path.contains("/events") {
        return (201, body.clone());
    }
    let name = path.rsplit('/').next().unwrap_or_default().to_owned();
    let Some(claim) = state.claims.get(&name).cloned() else {
        return (404, status(404, "NotFound", "not found"));
    };
    if *method == Method::PATCH {
        let mut updated = claim;
        merge(&mut updated, body);
        state.next_rv += 1;
        updated["metadata"]["resourceVersion"] = json!(format!("{}", 100 + state.next_rv));
        state.claims.insert(name, updated.clone());
        return (200, updated);
    }
    if *method == Method::DELETE {
        if let Some(code) = state.delete_status.get(&name) {
            return (
                *code,
                status(
                    *code,
                    "Conflict",
                    "Precondition failed: UID in precondition",
                ),
            );
        }
        let pre = &body["preconditions"];
        if pre["uid"] != claim["metadata"]["uid"]
            || pre["resourceVersion"] != claim["metadata"]["resourceVersion"]
        {
            return (409, status(409, "Conflict", "Precondition failed"));
        }
        state.claims.remove(&name);
        return (200, claim);
    }
    (405, status(405, "MethodNotAllowed", "no"))
}

/// Watches held open (without events) by the fake API server; clearing it breaks them all,
/// as an API server restart does.
type Watches = Arc<Mutex<Vec<tower_test::mock::SendResponse<Response<Body>>>>>;

fn client(state: Shared) -> kube::Client {
    client_with_watches(state).0
}

fn client_with_watches(state: Shared) -> (kube::Client, Watches) {
    let (service, mut handle_) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let watches: Watches = Arc::default();
    let held = watches.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle_.next_request().await {
            let method = request.method().clone();
            let uri = request.uri().to_string();
            let path = request.uri().path().to_owned();
            if uri.contains("watch=true") {
                let forbidden = {
                    let s = state.lock().expect("state");
                    s.forbidden.iter().any(|f| path.ends_with(f.as_str()))
                };
                if forbidden {
                    let response = Response::builder()
                        .status(StatusCode::FORBIDDEN)
                        .body(Body::from(
                            serde_json::to_vec(&status(403, "Forbidden", "forbidden"))
                                .expect("json"),
                        ))
                        .expect("response");
                    send.send_response(response);
                } else {
                    held.lock().expect("watches").push(send);
                }
                continue;
            }
            let bytes = request
                .into_body()
                .collect_bytes()
                .await
                .unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let (code, answer) = {
                let mut state = state.lock().expect("state");
                state.calls.push(Call {
                    method: method.clone(),
                    uri,
                    body: body.clone(),
                });
                handle(&mut state, &method, &path, &body)
            };
            let response = Response::builder()
                .status(StatusCode::from_u16(code).expect("status"))
                .body(Body::from(serde_json::to_vec(&answer).expect("json")))
                .expect("response");
            send.send_response(response);
        }
    });
    (kube::Client::new(service, "default"), watches)
}

const T0: i64 = 1_795_000_000;

fn claim(name: &str, app: &str, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"), "resourceVersion": "10",
            "creationTimestamp": "2026-11-01T00:00:00Z", "labels": {"app": app}, "annotations": annotations},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}})
}

fn set(name: &str, replicas: i32, annotations: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": "shop", "uid": format!("set-{name}"), "annotations": annotations},
        "spec": {"serviceName": name, "replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}})
}

fn provenance(set: &str) -> Value {
    json!({"stateward.io/statefulset": set, "stateward.io/statefulset-uid": format!("set-{set}")})
}

fn options(now: i64, grace_seconds: i64) -> PassOptions {
    PassOptions {
        now,
        grace_seconds,
        min_age_seconds: 0,
    }
}

/// One pass over a freshly listed snapshot (the loop itself reads watch caches).
async fn listed_pass(
    client: &kube::Client,
    metrics: &GcMetrics,
    now: i64,
    grace: i64,
) -> PassReport {
    let snap = snapshot(client, None, None).await.expect("snapshot");
    let namespaces = opted_in_namespaces(client).await.expect("namespaces");
    reconcile(
        &PassContext::new(client, metrics.clone()),
        snap,
        &namespaces,
        &options(now, grace),
        &open_gate,
    )
    .await
    .expect("pass")
}

/// The collector's options for namespace `shop` (`-n shop`).
fn shop() -> Options {
    Options {
        namespace: Some("shop".into()),
        ..Options::default()
    }
}

/// `-n shop --delete`.
fn shop_delete() -> Options {
    Options {
        delete: true,
        ..shop()
    }
}

fn gc_args(extra: &[&str]) -> GcArgs {
    let mut argv = vec!["stateward", "gc"];
    argv.extend_from_slice(extra);
    match Cli::parse_from(argv).command {
        Command::Gc(args) => args,
        _ => unreachable!(),
    }
}

fn scenario() -> Shared {
    let mut state = State::default();
    for i in 0..5 {
        let name = format!("data-db-{i}");
        state
            .claims
            .insert(name.clone(), claim(&name, "db", provenance("db")));
    }
    state.claims.insert(
        "data-gone-0".into(),
        claim("data-gone-0", "gone", provenance("gone")),
    );
    state
        .claims
        .insert("logs-old-1".into(), claim("logs-old-1", "old", json!({})));
    state.sets = vec![set("db", 3, json!({}))];
    state.pods = vec![json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "db-0", "namespace": "shop", "uid": "pod-0"},
        "spec": {"containers": [{"name": "c", "image": "i"}], "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}}]},
        "status": {"phase": "Running"}})];
    Arc::new(Mutex::new(state))
}

#[tokio::test]
async fn the_plan_lists_orphans_and_writes_nothing() {
    let state = scenario();
    let (text, exit) = run_once(&shop(), Text, client(state.clone()), T0)
        .await
        .expect("plan");
    assert_eq!(exit, Exit::Ok);
    for expected in [
        "data-db-3",
        "data-db-4",
        "scaled-down",
        "data-gone-0",
        "set-deleted",
        "logs-old-1",
        "10Gi",
        "nothing was changed",
    ] {
        assert!(text.contains(expected), "{expected} missing from\n{text}");
    }
    assert!(!text.contains("data-db-1 "), "{text}");
    let calls = state.lock().expect("state").calls.clone();
    assert!(calls.iter().all(|c| c.method == Method::GET), "{calls:?}");
    assert!(calls.iter().any(|c| {
        c.uri
            .starts_with("/api/v1/namespaces/shop/persistentvolumeclaims")
    }));
    let (json_text, _) = run_once(&shop(), Json, client(state), T0)
        .await
        .expect("plan");
    let doc: Value = serde_json::from_str(&json_text).expect("json");
    let first = &doc["candidates"][0];
    assert_eq!(first["claim"], "data-db-3");
    assert_eq!(first["statefulset"], "db");
    assert_eq!(first["ordinal"], 3);
    assert_eq!(first["reason"], "scaled-down");
    assert_eq!(first["verified"], true);
    assert_eq!(first["requested_bytes"], 10u64 * 1024 * 1024 * 1024);
    assert!(first["age_seconds"].as_i64().is_some_and(|a| a > 0));
}

#[tokio::test]
async fn delete_uses_preconditions_and_reports_conflicts_as_skipped() {
    let state = scenario();
    state
        .lock()
        .expect("state")
        .delete_status
        .insert("data-db-4".into(), 409);
    // Deleted by someone else between the plan and the delete.
    state
        .lock()
        .expect("state")
        .delete_status
        .insert("data-gone-0".into(), 404);
    let (text, exit) = run_once(&shop_delete(), Text, client(state.clone()), T0)
        .await
        .expect("delete");
    assert_eq!(exit, Exit::Ok, "{text}");
    let calls = state.lock().expect("state").calls.clone();
    let deletes: Vec<&Call> = calls
        .iter()
        .filter(|c| c.method == Method::DELETE)
        .collect();
    let name_of = |c: &Call| {
        c.uri
            .split('?')
            .next()
            .unwrap_or_default()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let deleted: Vec<String> = deletes.iter().map(|c| name_of(c)).collect();
    // Verified orphans only; the unverified guess is left without --include-unverified.
    assert_eq!(deleted, vec!["data-db-3", "data-db-4", "data-gone-0"]);
    for call in &deletes {
        let name = name_of(call);
        assert_eq!(call.body["preconditions"]["uid"], format!("uid-{name}"));
        assert_eq!(call.body["preconditions"]["resourceVersion"], "10");
    }
    assert!(text.contains("deleted  shop/data-db-3"), "{text}");
    assert!(
        text.contains("skipped  shop/data-db-4: changed or re-created since the plan"),
        "{text}"
    );
    assert!(
        text.contains("skipped  shop/logs-old-1: unverified"),
        "{text}"
    );
    // The conflicting claim was not retried.
    assert_eq!(
        deletes.iter().filter(|c| name_of(c) == "data-db-4").count(),
        1
    );
}

#[tokio::test]
async fn failed_deletions_exit_one_and_api_errors_are_reported() {
    let state = scenario();
    state
        .lock()
        .expect("state")
        .delete_status
        .insert("data-db-3".into(), 500);
    let (text, exit) = run_once(&shop_delete(), Text, client(state), T0)
        .await
        .expect("delete");
    assert_eq!(exit, Exit::Failure, "{text}");
    assert!(text.contains("failed   shop/data-db-3"), "{text}");
    let state = scenario();
    state.lock().expect("state").list_status = Some(403);
    let err = match run_once(&Options::default(), Text, client(state), T0).await {
        Err(err) => err.to_string(),
        Ok((text, _)) => panic!("expected an error, got {text}"),
    };
    assert!(
        err.contains("cannot list persistentvolumeclaims") && err.contains("forbidden"),
        "{err}"
    );
}

#[tokio::test]
async fn include_unverified_deletes_guessed_orphans_too() {
    let state = scenario();
    let (_, exit) = run_once(
        &Options {
            include_unverified: true,
            min_age_seconds: 86_400,
            ..shop_delete()
        },
        Text,
        client(state.clone()),
        T0,
    )
    .await
    .expect("delete");
    assert_eq!(exit, Exit::Ok);
    let remaining: Vec<String> = state
        .lock()
        .expect("state")
        .claims
        .keys()
        .cloned()
        .collect();
    assert_eq!(remaining, vec!["data-db-0", "data-db-1", "data-db-2"]);
}

#[tokio::test]
async fn the_watch_loop_annotates_waits_out_the_grace_and_deletes_only_opted_in() {
    let mut state = State::default();
    for i in 0..5 {
        let name = format!("data-db-{i}");
        state
            .claims
            .insert(name.clone(), claim(&name, "db", json!({})));
    }
    for i in 0..2 {
        let name = format!("data-web-{i}");
        state
            .claims
            .insert(name.clone(), claim(&name, "web", json!({})));
    }
    state.sets = vec![
        set(
            "db",
            3,
            json!({"stateward.io/collect-orphaned-claims": "true"}),
        ),
        set("web", 1, json!({})),
    ];
    let state = Arc::new(Mutex::new(state));
    let client = client(state.clone());
    let mut registry = prometheus_client::registry::Registry::with_prefix("stateward");
    let metrics = GcMetrics::register(&mut registry);
    let grace = 3600;

    // Pass 1: provenance on every claim of a live set; orphans marked; events; no delete.
    let report = listed_pass(&client, &metrics, T0, grace).await;
    assert_eq!(report.annotated.len(), 7, "{report:?}");
    assert_eq!(
        report.marked,
        vec!["shop/data-db-3", "shop/data-db-4", "shop/data-web-1"]
    );
    assert!(report.deleted.is_empty());
    {
        let s = state.lock().expect("state");
        let ann = &s.claims["data-db-3"]["metadata"]["annotations"];
        assert_eq!(ann["stateward.io/statefulset"], "db");
        assert_eq!(ann["stateward.io/statefulset-uid"], "set-db");
        assert_eq!(ann["stateward.io/orphaned-since"], "2026-11-18T11:06:40Z");
        assert!(
            s.claims["data-db-1"]["metadata"]["annotations"]
                .get("stateward.io/orphaned-since")
                .is_none()
        );
        // One event per new orphan (the recorder turns a repeat on the same set into a
        // series update).
        let events: Vec<&Call> = s
            .calls
            .iter()
            .filter(|c| c.uri.contains("/events"))
            .collect();
        assert_eq!(events.len(), 3, "one event per new orphan");
        assert!(
            events[0]
                .uri
                .starts_with("/apis/events.k8s.io/v1/namespaces/shop/events"),
            "{}",
            events[0].uri
        );
        assert_eq!(events[0].body["reason"], "OrphanedClaim");
        assert_eq!(events[0].body["regarding"]["name"], "db");
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("metrics");
    assert!(
        text.contains(r#"stateward_gc_orphaned_claims{reason="scaled-down"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            r#"stateward_gc_orphaned_claim_bytes{{reason="scaled-down"}} {}"#,
            3u64 * 10 * 1024 * 1024 * 1024
        )),
        "{text}"
    );

    // Pass 2, inside the grace period: nothing deleted.
    let report = listed_pass(&client, &metrics, T0 + 1800, grace).await;
    assert!(
        report.deleted.is_empty() && report.annotated.is_empty() && report.marked.is_empty(),
        "{report:?}"
    );

    // Pass 3, after the grace period: only the opted-in set's orphans, with preconditions.
    let report = listed_pass(&client, &metrics, T0 + 7200, grace).await;
    assert_eq!(report.deleted, vec!["shop/data-db-3", "shop/data-db-4"]);
    let s = state.lock().expect("state");
    assert!(s.claims.contains_key("data-web-1"), "web did not opt in");
    let delete = s
        .calls
        .iter()
        .find(|c| c.method == Method::DELETE)
        .expect("a delete");
    assert_eq!(delete.body["preconditions"]["uid"], "uid-data-db-3");
    // The preconditions carry the claim's current resourceVersion (it changed with the
    // annotations; the fake answers 409 to a stale one).
    assert_ne!(delete.body["preconditions"]["resourceVersion"], "10");
}

#[tokio::test]
async fn min_age_leaves_young_orphans_alone_in_the_watch_loop() {
    let mut state = State::default();
    // Created 2026-11-01; T0 is 2026-11-18: 17 days old.
    for i in 0..3 {
        let name = format!("data-db-{i}");
        state
            .claims
            .insert(name.clone(), claim(&name, "db", json!({})));
    }
    let mut marked = claim("data-db-2", "db", json!({}));
    marked["metadata"]["annotations"]["stateward.io/orphaned-since"] =
        json!("2026-11-02T00:00:00Z");
    state.claims.insert("data-db-2".into(), marked);
    state.sets = vec![set(
        "db",
        1,
        json!({"stateward.io/collect-orphaned-claims": "true"}),
    )];
    let state = Arc::new(Mutex::new(state));
    let client = client(state.clone());
    let metrics = GcMetrics::register(&mut prometheus_client::registry::Registry::default());
    let snap = snapshot(&client, None, None).await.expect("snapshot");
    let report = reconcile(
        &PassContext::new(&client, metrics.clone()),
        snap,
        &Default::default(),
        &PassOptions {
            now: T0,
            grace_seconds: 60,
            min_age_seconds: 30 * 86_400,
        },
        &open_gate,
    )
    .await
    .expect("pass");
    // Both orphans are younger than 30 days: not marked, not deleted, and the mark a
    // run without --min-age left is not cleared either (the claim is still not wanted).
    assert!(
        report.marked.is_empty() && report.deleted.is_empty() && report.cleared.is_empty(),
        "{report:?}"
    );
}

#[tokio::test]
async fn a_scaled_up_set_takes_its_claims_back() {
    let mut state = State::default();
    let mut annotations = provenance("db");
    annotations["stateward.io/orphaned-since"] = json!("2026-11-01T00:00:00Z");
    state
        .claims
        .insert("data-db-3".into(), claim("data-db-3", "db", annotations));
    state.sets = vec![set(
        "db",
        5,
        json!({"stateward.io/collect-orphaned-claims": "true"}),
    )];
    let state = Arc::new(Mutex::new(state));
    let client = client(state.clone());
    let metrics = GcMetrics::register(&mut prometheus_client::registry::Registry::default());
    let report = listed_pass(&client, &metrics, T0, 60).await;
    assert_eq!(report.cleared, vec!["shop/data-db-3"]);
    assert!(report.deleted.is_empty());
    let s = state.lock().expect("state");
    assert!(
        s.claims["data-db-3"]["metadata"]["annotations"]
            .get("stateward.io/orphaned-since")
            .is_none()
    );
}

async fn started_stores(client: &kube::Client, scope: &Scope) -> Stores {
    let stores = Stores::start(
        client,
        scope,
        &mut prometheus_client::registry::Registry::default(),
        std::time::Duration::from_millis(100),
    );
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while !stores.first_synced() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("stores sync");
    stores
}

#[tokio::test]
async fn the_watch_loop_reads_projections_from_watch_fed_stores() {
    let state = scenario();
    state.lock().expect("state").namespaces = vec![json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "shop", "annotations": {"stateward.io/collect-orphaned-claims": "true"}}})];
    let client = client(state.clone());
    let stores = started_stores(&client, &Scope::default()).await;
    assert!(stores.current());
    let (snap, opted_in) = stores.snapshot();
    assert_eq!(snap.claims.len(), 7);
    assert_eq!(snap.sets.len(), 1);
    assert_eq!(&*snap.sets[0].templates, ["data".into()]);
    // Pods keep what classification needs: the claims a pod that has not finished mounts.
    assert_eq!(
        snap.pods[0].claims.iter().collect::<Vec<_>>(),
        ["data-db-0"]
    );
    assert!(opted_in.contains("shop"));
    let metrics = GcMetrics::register(&mut prometheus_client::registry::Registry::default());
    let outcome = pass(
        &PassContext::new(&client, metrics.clone()),
        &stores,
        &options(T0, 60),
        &open_gate,
    )
    .await
    .expect("pass");
    let PassOutcome::Done(report) = outcome else {
        panic!("stores are current: {outcome:?}");
    };
    // Verified orphans get their orphaned-since mark; nothing is deleted on the first pass.
    assert_eq!(
        report.marked,
        vec![
            "shop/data-db-3",
            "shop/data-db-4",
            "shop/data-gone-0",
            "shop/logs-old-1"
        ]
    );
    assert!(report.deleted.is_empty());
    // The stores listed each kind once; the pass itself listed nothing.
    let calls = state.lock().expect("state").calls.clone();
    let lists: Vec<&str> = calls
        .iter()
        .filter(|c| c.method == Method::GET)
        .map(|c| c.uri.as_str())
        .collect();
    assert_eq!(lists.len(), 4, "{lists:?}");
}

#[tokio::test]
async fn namespace_and_selector_scope_the_watches() {
    let state = scenario();
    let client = client(state.clone());
    let scope = Scope {
        namespace: Some("shop".into()),
        selector: Some("app=db".into()),
    };
    let stores = started_stores(&client, &scope).await;
    let calls = state.lock().expect("state").calls.clone();
    let mut lists: Vec<String> = calls
        .iter()
        .filter(|c| c.method == Method::GET)
        .map(|c| c.uri.clone())
        .collect();
    lists.sort();
    // Namespaced lists only (a Role is enough), no Namespace objects, and the label
    // selector on claims.
    assert_eq!(lists.len(), 3, "{lists:?}");
    assert!(
        lists[0].starts_with("/api/v1/namespaces/shop/persistentvolumeclaims?")
            && lists[0].contains("labelSelector=app%3Ddb"),
        "{lists:?}"
    );
    assert!(
        lists[1].starts_with("/api/v1/namespaces/shop/pods?"),
        "{lists:?}"
    );
    assert!(
        lists[2].starts_with("/apis/apps/v1/namespaces/shop/statefulsets?"),
        "{lists:?}"
    );
    let (_, opted_in) = stores.snapshot();
    assert!(
        opted_in.is_empty(),
        "namespace annotations are not read under -n"
    );
}

#[tokio::test]
async fn no_pass_writes_while_a_store_is_not_current() {
    // Every claim of the opted-in set is due for deletion...
    let state = scenario();
    {
        let mut s = state.lock().expect("state");
        s.sets = vec![set(
            "db",
            3,
            json!({"stateward.io/collect-orphaned-claims": "true"}),
        )];
        for claim in s.claims.values_mut() {
            claim["metadata"]["annotations"]["stateward.io/orphaned-since"] =
                json!("2026-11-01T00:00:00Z");
        }
    }
    let (client, watches) = client_with_watches(state.clone());
    let stores = started_stores(&client, &Scope::default()).await;
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = GcMetrics::register(&mut registry);
    let writes = |state: &Shared| {
        state
            .lock()
            .expect("state")
            .calls
            .iter()
            .filter(|c| c.method != Method::GET)
            .count()
    };

    // ... but the pods can no longer be listed (RBAC drift) and every watch breaks (an API
    // server restart): the pod store is stale, the pass writes nothing at all.
    state.lock().expect("state").forbidden = vec!["/pods".into()];
    watches.lock().expect("watches").clear();
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while stores.current() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the pod store turns stale");
    let outcome = pass(
        &PassContext::new(&client, metrics.clone()),
        &stores,
        &options(T0, 60),
        &open_gate,
    )
    .await
    .expect("pass");
    let PassOutcome::Stale(why) = outcome else {
        panic!("a stale store must stop the pass: {outcome:?}");
    };
    assert!(
        why.iter()
            .any(|w| w.starts_with("pods: watch error since the last list")),
        "{why:?}"
    );
    assert_eq!(writes(&state), 0);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("metrics");
    assert!(text.contains("gc_stale_passes_total 1"), "{text}");

    // Listed again: the pass deletes (the pod store shows data-db-0 mounted).
    state.lock().expect("state").forbidden.clear();
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while !stores.current() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the pod store is listed again");
    let outcome = pass(
        &PassContext::new(&client, metrics.clone()),
        &stores,
        &options(T0, 60),
        &open_gate,
    )
    .await
    .expect("pass");
    let PassOutcome::Done(report) = outcome else {
        panic!("current stores: {outcome:?}");
    };
    assert_eq!(report.deleted, vec!["shop/data-db-3", "shop/data-db-4"]);
}

#[tokio::test]
async fn a_closed_gate_finishes_the_write_in_flight_and_skips_the_rest() {
    let state = scenario();
    {
        let mut s = state.lock().expect("state");
        s.sets = vec![set(
            "db",
            1,
            json!({"stateward.io/collect-orphaned-claims": "true"}),
        )];
        for claim in s.claims.values_mut() {
            claim["metadata"]["annotations"]["stateward.io/orphaned-since"] =
                json!("2026-11-01T00:00:00Z");
        }
    }
    let api = client(state.clone());
    let metrics = GcMetrics::register(&mut prometheus_client::registry::Registry::default());
    let snap = snapshot(&api, None, None).await.expect("snapshot");
    // A signal arrives once the first deletion was sent.
    let deletes = {
        let state = state.clone();
        move || {
            state
                .lock()
                .expect("state")
                .calls
                .iter()
                .filter(|c| c.method == Method::DELETE)
                .count()
        }
    };
    let counter = deletes.clone();
    let gate = move || (counter() >= 1).then_some("stopped by a signal");
    let report = reconcile(
        &PassContext::new(&api, metrics.clone()),
        snap,
        &Default::default(),
        &options(T0, 60),
        &gate,
    )
    .await
    .expect("pass");
    // data-db-0 is mounted; data-db-1..4 are due: one deletion, then nothing.
    assert_eq!(report.deleted, vec!["shop/data-db-1"]);
    assert_eq!(report.stopped, Some("stopped by a signal"));
    assert_eq!(deletes(), 1);
    assert_eq!(report.skipped.len(), 3, "{report:?}");

    // The one-shot --delete behaves the same way.
    let state = scenario();
    let one_shot = client(state.clone());
    let counter = {
        let state = state.clone();
        move || {
            state
                .lock()
                .expect("state")
                .calls
                .iter()
                .filter(|c| c.method == Method::DELETE)
                .count()
        }
    };
    let gate = move || (counter() >= 1).then_some("stopped by a signal");
    let (text, exit) = run_once_gated(&shop_delete(), Text, one_shot, T0, &gate)
        .await
        .expect("delete");
    assert_eq!(exit, Exit::Ok, "{text}");
    assert!(text.contains("deleted  shop/data-db-3"), "{text}");
    assert!(
        text.contains("skipped  shop/data-db-4: not attempted: stopped by a signal"),
        "{text}"
    );
}

#[tokio::test]
async fn a_live_sets_claims_are_verified_without_annotations() {
    let state = scenario();
    {
        let mut s = state.lock().expect("state");
        for claim in s.claims.values_mut() {
            if claim["metadata"]["labels"]["app"] == "db" {
                claim["metadata"]["annotations"] = json!({});
            }
        }
        let mut keep = claim("data-db-4", "db", json!({"stateward.io/keep": "true"}));
        keep["metadata"]["uid"] = json!("uid-data-db-4");
        s.claims.insert("data-db-4".into(), keep);
    }
    let (text, _) = run_once(&shop(), Json, client(state.clone()), T0)
        .await
        .expect("plan");
    let doc: Value = serde_json::from_str(&text).expect("json");
    let db: Vec<&Value> = doc["candidates"]
        .as_array()
        .expect("candidates")
        .iter()
        .filter(|c| c["statefulset"] == "db")
        .collect();
    // data-db-4 carries stateward.io/keep: not a candidate.
    assert_eq!(db.len(), 1, "{text}");
    assert_eq!(db[0]["claim"], "data-db-3");
    assert_eq!(db[0]["verified"], true);
    let (text, exit) = run_once(&shop_delete(), Text, client(state.clone()), T0)
        .await
        .expect("delete");
    assert_eq!(exit, Exit::Ok, "{text}");
    assert!(text.contains("deleted  shop/data-db-3"), "{text}");
    let s = state.lock().expect("state");
    assert!(!s.claims.contains_key("data-db-3"));
    assert!(s.claims.contains_key("data-db-4"), "kept");
}

#[test]
fn watch_flags_that_do_not_apply_are_usage_errors() {
    let err = |argv: &[&str]| match Cli::try_parse_from(argv) {
        Ok(_) => panic!("{argv:?} parsed"),
        Err(e) => (e.exit_code(), e.to_string()),
    };
    let (code, text) = err(&["stateward", "gc", "--watch", "-o", "json"]);
    assert_eq!(code, 2);
    assert!(text.contains("cannot be used with"), "{text}");
    let (code, _) = err(&["stateward", "gc", "--grace", "5m"]);
    assert_eq!(code, 2);
    let (code, _) = err(&["stateward", "gc", "--lease-duration", "6s"]);
    assert_eq!(code, 2);
    let args = gc_args(&["--watch", "-n", "shop", "-l", "app=db", "--min-age", "1h"]);
    assert!(args.lease.leader_elect, "leader election is on by default");
    assert_eq!(
        args.lease.lease_duration,
        std::time::Duration::from_secs(15)
    );
    let args = gc_args(&["--watch", "--leader-elect=false"]);
    assert!(!args.lease.leader_elect);
}
