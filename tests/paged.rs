//! Paged lists against a scripted API server (`tower_test` behind `kube::Client`): a real
//! API server cannot be made to expire a continue token on demand. A `410 Gone` on a
//! continue lists again from the first page, and when it keeps expiring the command fails:
//! never a plan or an audit from a partial list.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or bench may stop on a broken fixture
use std::sync::{Arc, Mutex};

use axum::http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use stateward::commands::gc::run_once;
use stateward::gc::Options;
use stateward::gc::collect::{plan, snapshot};

const T0: i64 = 1_795_000_000;
/// More than one page of 500.
const CLAIMS: usize = 1_203;

#[derive(Default)]
struct Server {
    /// Continue requests still to answer with 410 Gone.
    expire: usize,
    /// Every request's path and query.
    requests: Vec<String>,
    /// StatefulSets `db-NNN`, 50 per namespace `ns-N`, in the API's order (none: the one
    /// set `db` in `shop`).
    sets: usize,
    /// The continue request on the StatefulSets (counted from 1, across lists) to answer
    /// with 410 Gone, once.
    expire_set_continue: Option<usize>,
    set_continues: usize,
}

fn claim(i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": format!("data-db-{i}"), "namespace": "shop", "uid": format!("uid-{i}"),
            "resourceVersion": "10", "creationTimestamp": "2026-11-01T00:00:00Z", "labels": {"app": "db"}},
        "spec": {"resources": {"requests": {"storage": "1Gi"}}}})
}

fn numbered_set(i: usize) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": format!("db-{i:03}"), "namespace": format!("ns-{}", i / 50),
            "uid": format!("set-{i}")},
        "spec": {"replicas": 1, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "main", "image": "db"}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}}]}})
}

fn query<'a>(uri: &'a str, key: &str) -> Option<&'a str> {
    uri.split_once('?')?
        .1
        .split('&')
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
}

/// Lists of claims (one set `db` of 3 replicas, no pods), paged by `limit` with the offset
/// as the continue token.
fn answer(server: &mut Server, uri: &str) -> (u16, Value) {
    server.requests.push(uri.to_owned());
    let continued = query(uri, "continue");
    let path = uri.split('?').next().unwrap_or_default();
    if continued.is_some() && path.ends_with("/statefulsets") {
        server.set_continues += 1;
        if server.expire_set_continue == Some(server.set_continues) {
            return (
                410,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410,
                    "reason": "Expired", "message": "The provided continue parameter is too old"}),
            );
        }
    }
    if continued.is_some() && server.expire > 0 {
        server.expire -= 1;
        return (
            410,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410,
                "reason": "Expired", "message": "The provided continue parameter is too old"}),
        );
    }
    let all: Vec<Value> = if path.ends_with("/persistentvolumeclaims") {
        (0..CLAIMS).map(claim).collect()
    } else if path.ends_with("/statefulsets") && server.sets > 0 {
        (0..server.sets).map(numbered_set).collect()
    } else if path.ends_with("/statefulsets") {
        vec![json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "shop", "uid": "set-db"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "db"}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}}]}})]
    } else {
        Vec::new()
    };
    let limit: usize = query(uri, "limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(all.len());
    let start: usize = continued.and_then(|c| c.parse().ok()).unwrap_or(0);
    let end = (start + limit).min(all.len());
    let mut metadata = json!({"resourceVersion": "1"});
    if end < all.len() {
        metadata["continue"] = json!(end.to_string());
    }
    (
        200,
        json!({"kind": "List", "apiVersion": "v1", "metadata": metadata, "items": all[start..end]}),
    )
}

fn client(server: Arc<Mutex<Server>>) -> kube::Client {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (code, body) = answer(
                &mut server.lock().expect("server"),
                &request.uri().to_string(),
            );
            send.send_response(
                Response::builder()
                    .status(StatusCode::from_u16(code).expect("status"))
                    .body(Body::from(serde_json::to_vec(&body).expect("json")))
                    .expect("response"),
            );
        }
    });
    kube::Client::new(service, "default")
}

/// `gc -A -o json`: every namespace, the plan as JSON.
const JSON: stateward::cli::OutputFormat = stateward::cli::OutputFormat::Json;

#[tokio::test]
async fn lists_are_paged_by_500() {
    let server = Arc::new(Mutex::new(Server::default()));
    let snap = snapshot(&client(server.clone()), None, None)
        .await
        .expect("snapshot");
    assert_eq!(snap.claims.len(), CLAIMS);
    let requests = server.lock().expect("server").requests.clone();
    let claim_lists: Vec<&String> = requests
        .iter()
        .filter(|r| r.contains("/persistentvolumeclaims"))
        .collect();
    assert_eq!(claim_lists.len(), 3, "{requests:?}");
    assert!(
        requests.iter().all(|r| query(r, "limit") == Some("500")),
        "{requests:?}"
    );
}

#[tokio::test]
async fn a_410_on_a_continue_lists_again_from_the_start() {
    let whole = {
        let server = Arc::new(Mutex::new(Server::default()));
        snapshot(&client(server), None, None)
            .await
            .expect("snapshot")
    };
    let server = Arc::new(Mutex::new(Server {
        expire: 1,
        ..Server::default()
    }));
    let snap = snapshot(&client(server.clone()), None, None)
        .await
        .expect("snapshot");
    // The pages read before the 410 are dropped, not kept beside the new list's.
    assert_eq!(snap.claims, whole.claims);
    assert_eq!(plan(&snap, T0, 0), plan(&whole, T0, 0));
    assert_eq!(plan(&snap, T0, 0).len(), CLAIMS - 3);
    let requests = server.lock().expect("server").requests.clone();
    let first_pages = requests
        .iter()
        .filter(|r| r.contains("/persistentvolumeclaims") && query(r, "continue").is_none())
        .count();
    assert_eq!(first_pages, 2, "{requests:?}");
}

#[tokio::test]
async fn a_410_on_every_continue_never_yields_a_plan_from_a_partial_list() {
    let server = Arc::new(Mutex::new(Server {
        expire: usize::MAX,
        ..Server::default()
    }));
    let err = match run_once(&Options::default(), JSON, client(server.clone()), T0).await {
        Ok((text, _)) => panic!("a plan from a partial list:\n{text}"),
        Err(err) => err.to_string(),
    };
    assert!(err.contains("persistentvolumeclaims"), "{err}");
    assert!(err.contains("410 Gone"), "{err}");
    // The claims' version (one claim), the sets and pods, then the claims at that version:
    // their first page read three times (the list and two restarts), each failing on its
    // continue.
    let requests = server.lock().expect("server").requests.clone();
    let claims: Vec<&String> = requests
        .iter()
        .filter(|r| r.contains("/persistentvolumeclaims"))
        .collect();
    assert_eq!(claims.len(), 7, "{requests:?}");
    assert_eq!(query(claims[0], "limit"), Some("1"), "{requests:?}");
    assert!(
        requests
            .last()
            .is_some_and(|r| r.contains("/persistentvolumeclaims")),
        "{requests:?}"
    );
    for first in claims[1..]
        .iter()
        .filter(|r| query(r, "continue").is_none())
    {
        assert_eq!(query(first, "resourceVersion"), Some("1"), "{first}");
        assert_eq!(
            query(first, "resourceVersionMatch"),
            Some("Exact"),
            "{first}"
        );
    }
}

/// The one-shot plan (claims classified page by page, not kept) is the plan of the
/// listed snapshot.
#[tokio::test]
async fn the_streamed_plan_is_the_snapshots_plan() {
    let server = Arc::new(Mutex::new(Server {
        expire: 1,
        ..Server::default()
    }));
    let (text, _) = run_once(&Options::default(), JSON, client(server.clone()), T0)
        .await
        .expect("plan");
    let doc: Value = serde_json::from_str(&text).expect("json");
    let snap = snapshot(&client(Arc::default()), None, None)
        .await
        .expect("snapshot");
    let planned: Vec<String> = plan(&snap, T0, 0).into_iter().map(|o| o.claim).collect();
    let candidates: Vec<String> = doc["candidates"]
        .as_array()
        .expect("candidates")
        .iter()
        .map(|c| c["claim"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(candidates, planned);
    assert_eq!(candidates.len(), CLAIMS - 3);
}

#[tokio::test]
async fn a_410_on_every_continue_never_yields_an_audit_from_a_partial_list() {
    let server = Arc::new(Mutex::new(Server {
        expire: usize::MAX,
        ..Server::default()
    }));
    let policy = stateward::policy::Policy::default();
    let err = match stateward::audit::pass(&client(server), None, None, &policy, T0).await {
        Ok(listed) => panic!(
            "an audit from a partial list: {} claims",
            listed.report.summary.claims
        ),
        Err(err) => err.to_string(),
    };
    assert!(err.contains("persistentvolumeclaims"), "{err}");
    assert!(err.contains("410 Gone"), "{err}");
    // One expiry: the audit lists the claims again and reads them all, once: every claim
    // counted and classified once (the set keeps ordinals 0 to 2).
    let server = Arc::new(Mutex::new(Server {
        expire: 1,
        ..Server::default()
    }));
    let listed = stateward::audit::pass(&client(server), None, None, &policy, T0)
        .await
        .expect("audit");
    assert_eq!(listed.report.summary.claims, CLAIMS);
    assert_eq!(listed.report.summary.statefulsets, 1);
    assert_eq!(listed.report.orphaned_claims.len(), CLAIMS - 3);
}

/// The audit sends each namespace as soon as its sets are evaluated. A `410` on the sets'
/// last list after a namespace was sent lists them again without sending that namespace
/// twice, and the rest as if nothing had expired.
#[tokio::test]
async fn a_410_on_the_sets_after_a_namespace_was_sent_sends_each_namespace_once() {
    let policy = stateward::policy::Policy::default();
    let run = |expire_set_continue| {
        let policy = policy.clone();
        async move {
            let server = Arc::new(Mutex::new(Server {
                sets: 250,
                expire_set_continue,
                ..Server::default()
            }));
            let listed = stateward::audit::pass(&client(server.clone()), None, None, &policy, T0)
                .await
                .expect("audit");
            let requests = server.lock().expect("server").requests.clone();
            (listed.report, requests)
        }
    };
    let (whole, _) = run(None).await;
    assert_eq!(whole.summary.statefulsets, 250);
    assert!(!whole.findings.is_empty());
    // Pages of 100: the first list's continues are 1 and 2; 3 is the last list's first,
    // after ns-0 (sets 0 to 49) was sent and while ns-1 was under way.
    let (again, requests) = run(Some(3)).await;
    let sets_lists = requests
        .iter()
        .filter(|r| r.contains("/statefulsets") && query(r, "continue").is_none())
        .count();
    assert_eq!(sets_lists, 3, "{requests:#?}");
    assert_eq!(again, whole);
    let mut names: Vec<&str> = again.sets.iter().map(|s| s.name.as_str()).collect();
    names.dedup();
    assert_eq!(names.len(), 250);
}
