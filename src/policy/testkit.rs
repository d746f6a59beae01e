//! Builders for rule tests: start from a clean object (no finding under baseline with its
//! Service and PDB in context) and change one thing; [`evaluate`], the engine's
//! [`super::evaluate`] with the webhook's lean decode of a CREATE checked against it.
use serde_json::{Value, json};

use super::context::{PdbInfo, ServiceInfo, StatefulSetInfo};
use super::rules::RuleId;
use super::{Context, Decision, Kind, Level, Policy, Resource, Review, StaticContext};

/// A JSON object under construction.
#[derive(Debug, Clone)]
pub struct Obj {
    kind: Kind,
    value: Value,
}

/// A StatefulSet that passes every baseline rule.
pub fn sts(name: &str) -> Obj {
    Obj {
        kind: Kind::StatefulSet,
        value: json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "serviceName": "web-headless",
                "replicas": 3,
                "podManagementPolicy": "OrderedReady",
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "terminationGracePeriodSeconds": 30,
                        "securityContext": {"runAsNonRoot": true},
                        "affinity": {"podAntiAffinity": {
                            "preferredDuringSchedulingIgnoredDuringExecution": [{
                                "weight": 100,
                                "podAffinityTerm": {
                                    "labelSelector": {"matchLabels": {"app": "web"}},
                                    "topologyKey": "kubernetes.io/hostname"
                                }
                            }]
                        }},
                        "containers": [{
                            "name": "app",
                            "image": "example/app:1",
                            "securityContext": {"allowPrivilegeEscalation": false},
                            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                            "readinessProbe": {"tcpSocket": {"port": 8080}},
                            "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}]
                        }]
                    }
                },
                "volumeClaimTemplates": [{
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "storageClassName": "standard",
                        "resources": {"requests": {"storage": "1Gi"}}
                    }
                }]
            }
        }),
    }
}

/// A headless Service selecting `app: web`.
pub fn svc(name: &str) -> Obj {
    Obj {
        kind: Kind::Service,
        value: json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "clusterIP": "None",
                "selector": {"app": "web"},
                "ports": [{"name": "http", "port": 8080}]
            }
        }),
    }
}

/// A pod `<set>-<ordinal>` controlled by StatefulSet `set`.
pub fn pod(set: &str, ordinal: u32) -> Obj {
    Obj {
        kind: Kind::Pod,
        value: json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": format!("{set}-{ordinal}"),
                "namespace": "default",
                "labels": {"app": "web"},
                "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "StatefulSet", "name": set,
                    "uid": "1234", "controller": true
                }]
            },
            "spec": {"containers": [{"name": "app", "image": "example/app:1"}]}
        }),
    }
}

impl Obj {
    /// Sets the value at a JSON pointer, creating missing parent objects.
    pub fn set(mut self, pointer: &str, value: Value) -> Obj {
        let mut node = &mut self.value;
        let parts: Vec<String> = pointer
            .split('/')
            .skip(1)
            .map(|p| p.replace("~1", "/").replace("~0", "~"))
            .collect();
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            node = match node {
                Value::Array(items) => {
                    let index: usize = part.parse().expect("array index");
                    &mut items[index]
                }
                other => {
                    if !other.is_object() {
                        *other = json!({});
                    }
                    let map = other.as_object_mut().expect("object");
                    if last {
                        map.insert(part.clone(), value);
                        return self;
                    }
                    map.entry(part.clone()).or_insert_with(|| json!({}))
                }
            };
            if last {
                *node = value;
                return self;
            }
        }
        self
    }

    /// Removes the value at a JSON pointer.
    pub fn remove(mut self, pointer: &str) -> Obj {
        let (parent, key) = pointer.rsplit_once('/').expect("pointer");
        if let Some(node) = self.value.pointer_mut(parent) {
            match node {
                Value::Object(map) => {
                    map.remove(&key.replace("~1", "/"));
                }
                Value::Array(items) => {
                    items.remove(key.parse::<usize>().expect("index"));
                }
                _ => {}
            }
        }
        self
    }

    pub fn replicas(self, n: i32) -> Obj {
        self.set("/spec/replicas", json!(n))
    }

    pub fn without_probe(self) -> Obj {
        self.remove("/spec/template/spec/containers/0/readinessProbe")
    }

    pub fn value(&self) -> &Value {
        &self.value
    }

    pub fn resource(&self) -> Resource {
        Resource::decode(self.kind, &self.value).expect("test object decodes")
    }
}

/// The clean set's Service and a PDB, as related objects.
pub fn full_context() -> StaticContext {
    let mut ctx = StaticContext::default();
    let Resource::Service(service) = svc("web-headless").resource() else {
        unreachable!()
    };
    ctx.add_service(ServiceInfo::from_service(&service, "default"));
    ctx.add_pdb(PdbInfo {
        namespace: "default".into(),
        name: "web".into(),
        selector: Some(
            serde_json::from_value(json!({"matchLabels": {"app": "web"}})).expect("selector"),
        ),
    });
    ctx
}

/// Adds a StatefulSet to a context.
pub fn with_set(mut ctx: StaticContext, set: &Obj) -> StaticContext {
    let Resource::StatefulSet(sts) = set.resource() else {
        panic!("not a StatefulSet")
    };
    ctx.add_statefulset(StatefulSetInfo::from_statefulset(&sts, "default"));
    ctx
}

/// [`super::evaluate`], for the engine's tests: every CREATE they evaluate is judged a
/// second time on the webhook's lean decode of its object, which must give the same
/// decision (see `webhook::admission::lean`). The engine itself does not know the lean
/// decode; this test-only dependency is the one from `policy` on `webhook`.
pub fn evaluate(policy: &Policy, review: &Review, context: &dyn Context) -> Decision {
    let decision = super::evaluate(policy, review, context);
    crate::webhook::admission::lean::assert_same_decision(policy, review, context, &decision);
    decision
}

/// CREATE under baseline with the full context.
pub fn create(obj: &Obj) -> Decision {
    evaluate(
        &Policy::default(),
        &Review::create(obj.resource()),
        &full_context(),
    )
}

/// The findings of one rule, as (mode, field).
pub fn of(decision: &Decision, rule: RuleId) -> Vec<(Level, String)> {
    decision
        .findings
        .iter()
        .filter(|f| f.rule == rule)
        .map(|f| (f.mode, f.field.clone()))
        .collect()
}

/// The messages of one rule.
pub fn messages(decision: &Decision, rule: RuleId) -> Vec<String> {
    decision
        .findings
        .iter()
        .filter(|f| f.rule == rule)
        .map(|f| f.message.clone())
        .collect()
}

#[test]
fn clean_objects_have_no_findings() {
    let decision = create(&sts("web"));
    assert_eq!(decision.findings, vec![], "{:#?}", decision.findings);
    assert_eq!(decision.patch, None);
    let decision = create(&svc("web-headless"));
    assert_eq!(decision.findings, vec![]);
}
