//! The cluster caches against a scripted API server (`tower_test` behind `kube::Client`):
//! lists and watches are answered by the test, so sync, updates, watch errors and recovery
//! happen exactly when the test says.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or bench may stop on a broken fixture
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use stateward::cluster::ClusterContext;
use stateward::policy::context::ContextKind;
use stateward::policy::{Context, Level, Policy, Resource, Review, RuleId, evaluate};
use tokio::sync::mpsc;
use tower_test::mock::{Handle, SendResponse};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

#[derive(Debug)]
enum Cmd {
    /// Answer the (next) list of a resource with these items.
    List(&'static str, Vec<Value>),
    /// Answer the (next) watch of a resource with these events, then end the stream.
    Events(&'static str, Vec<Value>),
    /// Answer the (next) watch of a resource with HTTP 500.
    Fail(&'static str),
}

fn resource_of(path: &str) -> &'static str {
    if path.contains("/statefulsets") {
        "statefulsets"
    } else if path.contains("/poddisruptionbudgets") {
        "poddisruptionbudgets"
    } else {
        "services"
    }
}

fn list_kind(resource: &str) -> (&'static str, &'static str) {
    match resource {
        "statefulsets" => ("StatefulSetList", "apps/v1"),
        "poddisruptionbudgets" => ("PodDisruptionBudgetList", "policy/v1"),
        _ => ("ServiceList", "v1"),
    }
}

fn respond(send: SendResponse<Response<Body>>, status: StatusCode, body: Vec<u8>) {
    let response = Response::builder()
        .status(status)
        .body(Body::from(body))
        .expect("response");
    send.send_response(response);
}

/// A fake API server: holds each list and watch request until the test scripts an answer.
async fn fake_api(
    mut handle: ApiHandle,
    mut commands: mpsc::UnboundedReceiver<Cmd>,
    requests: Arc<std::sync::Mutex<Vec<String>>>,
) {
    let mut pending: HashMap<(&'static str, bool), VecDeque<SendResponse<Response<Body>>>> =
        HashMap::new();
    let mut queued: HashMap<(&'static str, bool), VecDeque<Cmd>> = HashMap::new();
    loop {
        tokio::select! {
            request = handle.next_request() => {
                let Some((request, send)) = request else { return };
                let uri = request.uri().to_string();
                assert_eq!(request.method(), "GET", "the caches never write: {uri}");
                requests.lock().expect("log").push(uri.clone());
                let key = (resource_of(request.uri().path()), uri.contains("watch=true"));
                match queued.get_mut(&key).and_then(VecDeque::pop_front) {
                    Some(cmd) => answer(send, cmd),
                    None => pending.entry(key).or_default().push_back(send),
                }
            }
            command = commands.recv() => {
                let Some(cmd) = command else { return };
                let key = match &cmd {
                    Cmd::List(r, _) => (*r, false),
                    Cmd::Events(r, _) | Cmd::Fail(r) => (*r, true),
                };
                match pending.get_mut(&key).and_then(VecDeque::pop_front) {
                    Some(send) => answer(send, cmd),
                    None => queued.entry(key).or_default().push_back(cmd),
                }
            }
        }
    }
}

fn answer(send: SendResponse<Response<Body>>, cmd: Cmd) {
    match cmd {
        Cmd::List(resource, items) => {
            let (kind, api_version) = list_kind(resource);
            let body = json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": "100"}, "items": items});
            respond(
                send,
                StatusCode::OK,
                serde_json::to_vec(&body).expect("json"),
            );
        }
        Cmd::Events(_, events) => {
            let mut body = Vec::new();
            for event in events {
                body.extend(serde_json::to_vec(&event).expect("json"));
                body.push(b'\n');
            }
            respond(send, StatusCode::OK, body);
        }
        Cmd::Fail(_) => {
            let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "etcdserver: request timed out", "reason": "InternalError", "code": 500});
            respond(
                send,
                StatusCode::INTERNAL_SERVER_ERROR,
                serde_json::to_vec(&status).expect("json"),
            );
        }
    }
}

struct Cluster {
    context: ClusterContext,
    commands: mpsc::UnboundedSender<Cmd>,
    requests: Arc<std::sync::Mutex<Vec<String>>>,
    _shutdown: tokio::sync::watch::Sender<bool>,
    registry: prometheus_client::registry::Registry,
}

fn cluster(max_backoff: Duration) -> Cluster {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let (commands, rx) = mpsc::unbounded_channel();
    let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
    tokio::spawn(fake_api(handle, rx, requests.clone()));
    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let mut registry = prometheus_client::registry::Registry::with_prefix("stateward");
    let context = ClusterContext::spawn_with(client, &mut registry, shutdown_rx, max_backoff);
    Cluster {
        context,
        commands,
        requests,
        _shutdown: shutdown,
        registry,
    }
}

impl Cluster {
    fn send(&self, cmd: Cmd) {
        self.commands.send(cmd).expect("fake api running");
    }

    fn sync(&self, services: Vec<Value>, statefulsets: Vec<Value>, pdbs: Vec<Value>) {
        self.send(Cmd::List("services", services));
        self.send(Cmd::List("statefulsets", statefulsets));
        self.send(Cmd::List("poddisruptionbudgets", pdbs));
    }

    fn metrics(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("encode");
        out
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn service(name: &str, headless: bool) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "shop", "resourceVersion": "10"},
        "spec": {"clusterIP": if headless {"None"} else {"10.96.0.12"}, "selector": {"app": "db"},
                 "ports": [{"name": "pg", "port": 5432}]}})
}

fn statefulset(name: &str, replicas: i32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": "shop", "resourceVersion": "11"},
        "spec": {"serviceName": "db", "replicas": replicas, "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "pg"}]}}}})
}

fn strict() -> Policy {
    Policy::from_yaml(
        "apiVersion: stateward.io/v1alpha1\nkind: Policy\nmetadata: {name: t}\nspec:\n  rules:\n    statefulset.headless-service: {mode: enforce}\n    service.headless-in-use: {mode: enforce}\n",
        "t",
    )
    .expect("policy")
}

fn sts_review() -> Review {
    let object: Value = statefulset("db", 3);
    let resource =
        Resource::decode(stateward::policy::Kind::StatefulSet, &object).expect("decodes");
    Review::create(resource)
}

fn headless_findings(context: &dyn Context) -> Vec<(Level, String)> {
    let decision = evaluate(&strict(), &sts_review(), context);
    decision
        .findings
        .iter()
        .filter(|f| f.rule == RuleId::StatefulSetHeadlessService)
        .map(|f| (f.mode, f.message.clone()))
        .collect()
}

#[tokio::test]
async fn rules_decide_from_the_cached_service_and_follow_watch_events() {
    let cluster = cluster(Duration::from_millis(20));
    // Before the first list: context unavailable, a warning, never a denial.
    let before = headless_findings(&cluster.context);
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].0, Level::Warn);
    assert!(
        before[0].1.contains("context is unavailable"),
        "{}",
        before[0].1
    );
    assert!(!cluster.context.first_synced());

    cluster.sync(vec![service("db", false)], vec![], vec![]);
    eventually("sync", || cluster.context.first_synced()).await;
    let denied = headless_findings(&cluster.context);
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].0, Level::Enforce, "{denied:?}");
    assert!(denied[0].1.contains("is not headless"));

    // The Service is fixed: a watch event updates the cache, the denial goes.
    cluster.send(Cmd::Events(
        "services",
        vec![json!({"type": "MODIFIED", "object": service("db", true)})],
    ));
    eventually("update", || headless_findings(&cluster.context).is_empty()).await;

    // Deleted: the rule warns that it is missing (apply order may create it later).
    cluster.send(Cmd::Events(
        "services",
        vec![json!({"type": "DELETED", "object": service("db", true)})],
    ));
    eventually("delete", || {
        headless_findings(&cluster.context)
            .first()
            .is_some_and(|(level, message)| {
                *level == Level::Warn && message.contains("does not exist")
            })
    })
    .await;
    let metrics = cluster.metrics();
    assert!(
        metrics.contains(r#"stateward_cache_synced{cache="services"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"stateward_cache_objects{cache="services"} 0"#),
        "{metrics}"
    );
    // Only GET list/watch requests were sent, for all namespaces.
    let requests = cluster.requests.lock().expect("log").clone();
    assert!(
        requests.iter().any(|r| r.starts_with("/api/v1/services?")),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("/apis/apps/v1/statefulsets?")),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("/apis/policy/v1/poddisruptionbudgets?")),
        "{requests:?}"
    );
}

#[tokio::test]
async fn service_delete_is_judged_against_the_cached_sets() {
    let cluster = cluster(Duration::from_millis(20));
    cluster.sync(
        vec![service("db", true)],
        vec![statefulset("db", 3)],
        vec![],
    );
    eventually("sync", || cluster.context.first_synced()).await;
    let svc =
        Resource::decode(stateward::policy::Kind::Service, &service("db", true)).expect("service");
    let review = Review::delete(svc.clone(), None, "alice");
    // Strict denies; baseline warns (helm uninstall deletes Services first).
    let decision = evaluate(&strict(), &review, &cluster.context);
    assert!(!decision.allowed());
    assert!(
        decision
            .denial_message()
            .unwrap_or_default()
            .contains("service.headless-in-use")
    );
    let decision = evaluate(&Policy::baseline(), &review, &cluster.context);
    assert!(decision.allowed());
    assert!(
        decision.warnings()[0].starts_with("service.headless-in-use"),
        "{:?}",
        decision.warnings()
    );
    // Scaled to zero through a watch event: nothing to say.
    cluster.send(Cmd::Events(
        "statefulsets",
        vec![json!({"type": "MODIFIED", "object": statefulset("db", 0)})],
    ));
    eventually("scale to zero", || {
        evaluate(&strict(), &review, &cluster.context).allowed()
    })
    .await;
}

#[tokio::test]
async fn watch_errors_make_rules_warn_until_the_watch_recovers() {
    let cluster = cluster(Duration::from_millis(20));
    cluster.sync(vec![service("db", false)], vec![], vec![]);
    eventually("sync", || cluster.context.first_synced()).await;
    assert_eq!(headless_findings(&cluster.context)[0].0, Level::Enforce);
    cluster.send(Cmd::Fail("services"));
    eventually("error", || {
        !cluster.context.available(ContextKind::Services)
    })
    .await;
    // Stale data never denies.
    let findings = headless_findings(&cluster.context);
    assert_eq!(findings[0].0, Level::Warn);
    assert!(findings[0].1.contains("context is unavailable"));
    assert!(!cluster.context.is_current());
    // Readiness only ever waited for the first list.
    assert!(cluster.context.first_synced());
    assert!(
        cluster
            .metrics()
            .contains(r#"stateward_cache_watch_errors_total{cache="services"} 1"#)
    );
    // After a backoff the cache is listed afresh; only that list brings it back, with the
    // objects as they are now (a watch resumed from an old resourceVersion could not).
    cluster.send(Cmd::List("services", vec![service("db", true)]));
    eventually("recovery", || cluster.context.is_current()).await;
    assert!(headless_findings(&cluster.context).is_empty());
}

#[tokio::test]
async fn a_relist_replaces_the_cache() {
    let cluster = cluster(Duration::from_millis(1));
    cluster.sync(
        vec![service("db", true), service("old", true)],
        vec![],
        vec![],
    );
    eventually("sync", || cluster.context.services.len() == 2).await;
    // 410 Gone on the watch makes the watcher list again; "old" is gone from the new list.
    cluster.send(Cmd::Events("services", vec![json!({"type": "ERROR", "object":
        {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "too old resource version", "reason": "Expired", "code": 410}})]));
    cluster.send(Cmd::List("services", vec![service("db", true)]));
    eventually("relist", || {
        cluster.context.service("shop", "old").is_none()
            && cluster.context.service("shop", "db").is_some()
    })
    .await;
    assert!(
        cluster
            .metrics()
            .contains(r#"stateward_cache_watch_restarts_total{cache="services"} 1"#),
        "{}",
        cluster.metrics()
    );
}

#[tokio::test]
async fn readiness_waits_for_the_caches_under_cluster_required() {
    use stateward::admin::ReadyCheck;
    use stateward::commands::serve::{ServeConfig, start};
    let cluster = cluster(Duration::from_millis(20));
    let certs = stateward::commands::certs::generate(&["localhost".into()], 1).expect("certs");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("tls.crt"), &certs.cert).expect("write");
    std::fs::write(dir.path().join("tls.key"), &certs.key).expect("write");
    let caches = cluster.context.clone();
    let running = start(ServeConfig {
        context: Arc::new(cluster.context.clone()),
        ready_checks: vec![ReadyCheck {
            name: "cluster caches",
            ready: Box::new(move || caches.first_synced()),
        }],
        ..ServeConfig::local(dir.path().join("tls.crt"), dir.path().join("tls.key"))
    })
    .await
    .expect("server starts");
    let readyz = |addr: std::net::SocketAddr| async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut text = String::new();
        stream.read_to_string(&mut text).await.expect("read");
        text
    };
    let not_ready = readyz(running.admin_addr).await;
    assert!(not_ready.starts_with("HTTP/1.1 503"), "{not_ready}");
    assert!(not_ready.contains("cluster caches"), "{not_ready}");
    cluster.sync(vec![], vec![], vec![]);
    eventually("sync", || cluster.context.first_synced()).await;
    assert!(readyz(running.admin_addr).await.starts_with("HTTP/1.1 200"));
    running.shutdown().await;
}
