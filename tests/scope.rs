//! The webhook entries' `matchConditions`, evaluated with a CEL interpreter on the requests
//! real senders make (people, kubectl, the kubelet, controllers, autoscalers): each
//! condition keeps the requests a rule can act on and drops the rest. Nothing is lost in
//! the narrowing: for every request a condition drops, the engine itself reports nothing
//! (no denial, no warning, no audit finding), even without cluster context.
//!
//! The real API server runs the same expressions in the end-to-end suite
//! (`tests/e2e/outage.rs`); this is the fast, exhaustive check of each condition.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or bench may stop on a broken fixture
#[path = "support/cel.rs"]
mod cel_support;
use cel_support::to_cel;

use serde_json::{Value, json};
use stateward::policy::scope::{Entry, scope};
use stateward::policy::{
    Kind, NoContext, Policy, Resource, Review, ScaleReview, evaluate, evaluate_scale,
};

/// One admission request as the API server's CEL sees it.
#[derive(Clone, Debug)]
struct Req {
    what: &'static str,
    operation: &'static str,
    object: Value,
    old: Value,
    options: Value,
    username: &'static str,
    groups: Vec<&'static str>,
}

impl Req {
    fn new(what: &'static str, operation: &'static str) -> Req {
        Req {
            what,
            operation,
            object: Value::Null,
            old: Value::Null,
            options: Value::Null,
            username: "alice",
            groups: vec!["system:authenticated"],
        }
    }

    fn object(mut self, object: Value) -> Req {
        self.object = object;
        self
    }

    fn old(mut self, old: Value) -> Req {
        self.old = old;
        self
    }

    fn grace(mut self, seconds: i64) -> Req {
        self.options = json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1", "gracePeriodSeconds": seconds});
        self
    }

    fn by(mut self, username: &'static str, groups: &[&'static str]) -> Req {
        self.username = username;
        self.groups = groups.to_vec();
        self
    }
}

/// Whether the API server would call the entry's webhook: every condition holds. A
/// condition that errors would apply the failure policy: none may.
fn sent(entry: &Entry, req: &Req) -> bool {
    let mut context = cel::Context::default();
    context.add_variable_from_value("object", to_cel(&req.object));
    context.add_variable_from_value("oldObject", to_cel(&req.old));
    let mut request = json!({
        "operation": req.operation,
        "namespace": "ns",
        "userInfo": {"username": req.username, "groups": req.groups},
    });
    if !req.options.is_null() {
        request["options"] = req.options.clone();
    }
    context.add_variable_from_value("request", to_cel(&request));
    entry.match_conditions.iter().all(|condition| {
        let program = cel::Program::compile(&condition.expression).unwrap_or_else(|e| {
            panic!(
                "{}: {} does not compile: {e:?}",
                entry.name, condition.expression
            )
        });
        match program.execute(&context) {
            Ok(cel::Value::Bool(b)) => b,
            other => panic!(
                "{} / {}: condition {} on {:?} gave {other:?}",
                entry.name, req.what, condition.name, req
            ),
        }
    })
}

fn entry<'a>(entries: &'a [Entry], name: &str) -> &'a Entry {
    entries
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no entry {name}"))
}

/// A pod of StatefulSet `db`, scheduled on `n1` and running unless changed.
fn set_pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "db-0", "namespace": "ns", "uid": "u-0",
            "labels": {"app": "db"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "s-1", "controller": true}]
        },
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Running"}
    })
}

fn plain_pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "loose", "namespace": "ns"},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Running"}
    })
}

fn service(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "ns"}, "spec": spec})
}

fn with(mut value: Value, pointer: &str, new: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer");
    let target = value.pointer_mut(parent).expect("parent exists");
    if new.is_null() {
        target.as_object_mut().expect("object").remove(key);
    } else {
        target[key] = new;
    }
    value
}

/// What the engine reports for the request (DELETE reviews carry the grace period and the
/// user), without cluster context.
fn findings(policy: &Policy, kind: Kind, req: &Req) -> Vec<String> {
    let decode = |v: &Value| Resource::decode(kind, v).expect("decodes");
    let mut review = match req.operation {
        "CREATE" => Review::create(decode(&req.object)),
        "UPDATE" => Review::update(decode(&req.old), decode(&req.object)),
        "DELETE" => Review::delete(
            decode(&req.old),
            req.options["gracePeriodSeconds"].as_i64(),
            req.username,
        ),
        other => panic!("operation {other}"),
    };
    review.namespace = "ns".into();
    review.user.username = req.username.into();
    review.user.groups = req.groups.iter().map(|g| g.to_string()).collect();
    evaluate(policy, &review, &NoContext)
        .findings
        .iter()
        .map(|f| format!("{}: {}", f.rule, f.message))
        .collect()
}

/// Checks each request: sent as expected, and when not sent, the engine has nothing to say.
fn check(policy: &Policy, entry: &Entry, kind: Kind, cases: &[(Req, bool)]) {
    for (req, expected) in cases {
        let got = sent(entry, req);
        assert_eq!(
            got,
            *expected,
            "{} ({}): {} should be {}",
            entry.name,
            policy.name,
            req.what,
            if *expected { "sent" } else { "dropped" }
        );
        if !got {
            let findings = findings(policy, kind, req);
            assert!(
                findings.is_empty(),
                "{} drops {} but the engine reports {findings:?}",
                entry.name,
                req.what
            );
        }
        println!(
            "{:<32} {:<8} {:<70} {}",
            entry.name,
            policy.name,
            req.what,
            if got { "sent" } else { "not sent" }
        );
    }
}

fn policies() -> Vec<Policy> {
    vec![
        Policy::baseline(),
        Policy::from_yaml(include_str!("../policies/strict.yaml"), "strict").expect("strict"),
    ]
}

#[test]
fn pod_deletes_are_sent_only_when_a_person_force_deletes_a_running_set_pod() {
    let node = &["system:nodes", "system:authenticated"][..];
    let cases = vec![
        (
            Req::new(
                "a person's force delete of a scheduled, running set pod",
                "DELETE",
            )
            .old(set_pod())
            .grace(0),
            true,
        ),
        (
            Req::new("a graceful delete (kubectl delete pod)", "DELETE")
                .old(set_pod())
                .grace(30),
            false,
        ),
        (
            Req::new("a delete without options", "DELETE").old(set_pod()),
            false,
        ),
        (
            Req::new(
                "the kubelet's final delete (grace 0, its own node)",
                "DELETE",
            )
            .old(set_pod())
            .grace(0)
            .by("system:node:n1", node),
            false,
        ),
        (
            Req::new("another node's grace-0 delete", "DELETE")
                .old(set_pod())
                .grace(0)
                .by("system:node:n2", node),
            true,
        ),
        (
            Req::new("the node's name without the nodes group", "DELETE")
                .old(set_pod())
                .grace(0)
                .by("system:node:n1", &["system:authenticated"]),
            true,
        ),
        (
            Req::new(
                "grace 0 of an unscheduled set pod (the API server's own)",
                "DELETE",
            )
            .old(with(set_pod(), "/spec/nodeName", Value::Null))
            .grace(0),
            false,
        ),
        (
            Req::new("grace 0 of a set pod with an empty nodeName", "DELETE")
                .old(with(set_pod(), "/spec/nodeName", json!("")))
                .grace(0),
            false,
        ),
        (
            Req::new("grace 0 of a Succeeded set pod", "DELETE")
                .old(with(set_pod(), "/status/phase", json!("Succeeded")))
                .grace(0),
            false,
        ),
        (
            Req::new("grace 0 of a Failed set pod", "DELETE")
                .old(with(set_pod(), "/status/phase", json!("Failed")))
                .grace(0),
            false,
        ),
        (
            Req::new("grace 0 of a set pod without status", "DELETE")
                .old(with(set_pod(), "/status", Value::Null))
                .grace(0),
            true,
        ),
        (
            Req::new("the pod garbage collector's force delete", "DELETE")
                .old(set_pod())
                .grace(0)
                .by(
                    "system:serviceaccount:kube-system:pod-garbage-collector",
                    &["system:serviceaccounts"],
                ),
            false,
        ),
        (
            Req::new("the node controller's force delete", "DELETE")
                .old(set_pod())
                .grace(0)
                .by(
                    "system:serviceaccount:kube-system:node-controller",
                    &["system:serviceaccounts"],
                ),
            false,
        ),
        (
            Req::new(
                "a force delete of a pod annotated allow-force-delete=true",
                "DELETE",
            )
            .old(with(
                set_pod(),
                "/metadata/annotations",
                json!({"stateward.io/allow-force-delete": "true"}),
            ))
            .grace(0),
            false,
        ),
        (
            Req::new(
                "a force delete of a pod annotated allow-force-delete=false",
                "DELETE",
            )
            .old(with(
                set_pod(),
                "/metadata/annotations",
                json!({"stateward.io/allow-force-delete": "false"}),
            ))
            .grace(0),
            true,
        ),
        (
            Req::new("a force delete of a pod no StatefulSet owns", "DELETE")
                .old(plain_pod())
                .grace(0),
            false,
        ),
        (
            Req::new("a force delete of a pod a ReplicaSet owns", "DELETE")
                .old(with(
                    set_pod(),
                    "/metadata/ownerReferences/0/kind",
                    json!("ReplicaSet"),
                ))
                .grace(0),
            false,
        ),
        (
            Req::new(
                "a force delete of a pod whose StatefulSet owner is not its controller",
                "DELETE",
            )
            .old(with(
                set_pod(),
                "/metadata/ownerReferences/0/controller",
                Value::Null,
            ))
            .grace(0),
            false,
        ),
    ];
    for policy in policies() {
        let scope = scope(&policy);
        check(
            &policy,
            entry(&scope.entries, "validate-pods.stateward.io"),
            Kind::Pod,
            &cases,
        );
    }
}

#[test]
fn pod_creates_are_sent_only_for_set_pods() {
    let cases = vec![
        (
            Req::new("the StatefulSet controller's pod create", "CREATE").object(with(
                set_pod(),
                "/spec/nodeName",
                Value::Null,
            )),
            true,
        ),
        (
            Req::new("a Deployment's (ReplicaSet's) pod create", "CREATE").object(with(
                with(
                    set_pod(),
                    "/metadata/ownerReferences/0/kind",
                    json!("ReplicaSet"),
                ),
                "/spec/nodeName",
                Value::Null,
            )),
            false,
        ),
        (
            Req::new("a bare pod create", "CREATE").object(with(
                plain_pod(),
                "/spec/nodeName",
                Value::Null,
            )),
            false,
        ),
    ];
    for policy in policies() {
        let scope = scope(&policy);
        let entry = entry(&scope.entries, "mutate-pods.stateward.io");
        for (req, expected) in &cases {
            assert_eq!(sent(entry, req), *expected, "{}", req.what);
            if !expected {
                let object = Resource::decode(Kind::Pod, &req.object).expect("decodes");
                let decision = evaluate(&policy, &Review::create(object), &NoContext);
                assert!(
                    decision.patch.is_none() && decision.findings.is_empty(),
                    "{}",
                    req.what
                );
            }
        }
    }
}

#[test]
fn services_are_sent_only_when_headless_or_selecting_a_pod_name() {
    let cluster_ip = service(
        "web",
        json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}),
    );
    let assigned = service(
        "web",
        json!({"clusterIP": "10.96.0.7", "selector": {"app": "web"}, "ports": [{"port": 80}]}),
    );
    let headless = service(
        "db",
        json!({"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"port": 5432}]}),
    );
    let per_pod = service(
        "db-0",
        json!({"selector": {"statefulset.kubernetes.io/pod-name": "db-0"}, "ports": [{"name": "pg", "port": 5432}]}),
    );
    let external = service(
        "ext",
        json!({"type": "ExternalName", "externalName": "example.com"}),
    );
    let relabelled = |v: &Value| with(v.clone(), "/metadata/labels", json!({"tier": "front"}));
    let cases = vec![
        (
            Req::new("create a ClusterIP Service", "CREATE").object(cluster_ip.clone()),
            false,
        ),
        (
            Req::new("create an ExternalName Service", "CREATE").object(external.clone()),
            false,
        ),
        (
            Req::new("label a ClusterIP Service", "UPDATE")
                .old(assigned.clone())
                .object(relabelled(&assigned)),
            false,
        ),
        (
            Req::new("re-select a ClusterIP Service", "UPDATE")
                .old(assigned.clone())
                .object(with(
                    assigned.clone(),
                    "/spec/selector",
                    json!({"app": "api"}),
                )),
            false,
        ),
        (
            Req::new("delete a ClusterIP Service", "DELETE").old(assigned.clone()),
            false,
        ),
        (
            Req::new("create a headless Service", "CREATE").object(headless.clone()),
            true,
        ),
        (
            Req::new("label a headless Service", "UPDATE")
                .old(headless.clone())
                .object(relabelled(&headless)),
            true,
        ),
        (
            Req::new("delete a headless Service", "DELETE").old(headless.clone()),
            true,
        ),
        (
            Req::new("create a per-pod Service (pod-name selector)", "CREATE")
                .object(per_pod.clone()),
            true,
        ),
        (
            Req::new("update a per-pod Service", "UPDATE")
                .old(with(per_pod.clone(), "/spec/clusterIP", json!("10.96.0.8")))
                .object(relabelled(&with(
                    per_pod.clone(),
                    "/spec/clusterIP",
                    json!("10.96.0.8"),
                ))),
            true,
        ),
    ];
    for policy in policies() {
        let scope = scope(&policy);
        check(
            &policy,
            entry(&scope.entries, "validate-services.stateward.io"),
            Kind::Service,
            &cases,
        );
    }
}

#[test]
fn scale_changes_are_sent_only_when_they_scale_down() {
    let scale = |replicas: Option<i64>| {
        let mut s = json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "db", "namespace": "ns"}, "spec": {}});
        if let Some(r) = replicas {
            s["spec"]["replicas"] = json!(r);
        }
        s
    };
    let cases = [
        ("kubectl scale --replicas=1 from 3", Some(3), Some(1), true),
        (
            "an autoscaler's scale to 0 from 2 (replicas omitted)",
            Some(2),
            None,
            true,
        ),
        (
            "an autoscaler's scale up from 1 to 3",
            Some(1),
            Some(3),
            false,
        ),
        ("a scale from 0 to 2", None, Some(2), false),
        ("a scale that keeps 3", Some(3), Some(3), false),
    ];
    for policy in policies() {
        let scope = scope(&policy);
        let entry = entry(&scope.entries, "validate-scale.stateward.io");
        for (what, before, after, expected) in cases {
            let req = Req::new(what, "UPDATE")
                .old(scale(before))
                .object(scale(after));
            assert_eq!(sent(entry, &req), expected, "{what}");
            if !expected {
                let review = ScaleReview {
                    namespace: "ns".into(),
                    name: "db".into(),
                    before: before.unwrap_or(0) as i32,
                    after: after.unwrap_or(0) as i32,
                };
                let decision = evaluate_scale(&policy, &review, &NoContext);
                assert!(
                    decision.findings.is_empty(),
                    "{what}: {:?}",
                    decision.findings
                );
            }
        }
    }
}

#[test]
fn every_condition_compiles_for_the_shipped_policies() {
    for policy in policies() {
        for entry in scope(&policy).entries {
            for condition in &entry.match_conditions {
                cel::Program::compile(&condition.expression)
                    .unwrap_or_else(|e| panic!("{}: {}: {e:?}", entry.name, condition.expression));
            }
        }
    }
}
