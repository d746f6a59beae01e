//! Micro-benchmarks of the pure engine: one StatefulSet CREATE (mutations + every rule)
//! with its headless Service and PDB in context, and the decode step before it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or bench may stop on a broken fixture
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use stateward::policy::context::{PdbInfo, ServiceInfo};
use stateward::policy::{Kind, Policy, Resource, Review, StaticContext, evaluate};

fn container(name: &str, port: u16) -> Value {
    json!({
        "name": name,
        "image": format!("registry.example.com/{name}:1.4.2"),
        "ports": [{"name": "client", "containerPort": port}, {"name": "peer", "containerPort": port + 1}],
        "env": (0..8).map(|i| json!({"name": format!("SETTING_{i}"), "value": format!("value-{i}")})).collect::<Vec<_>>(),
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": port}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/live", "port": port}, "periodSeconds": 20},
        "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "wal", "mountPath": "/wal"}, {"name": "config", "mountPath": "/etc/app"}]
    })
}

/// A realistic set: three containers, two claim templates, no anti-affinity (so the
/// default is added), as kube-apiserver sends it (defaults and managedFields present).
fn statefulset() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": "orders-db", "namespace": "shop", "uid": "7c1d7f2e-1111-2222-3333-444455556666",
            "labels": {"app.kubernetes.io/name": "orders-db", "app.kubernetes.io/part-of": "shop"},
            "annotations": {"owner": "team-orders"},
            "managedFields": [{"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1",
                "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}, "f:serviceName": {}}}}]
        },
        "spec": {
            "serviceName": "orders-db", "replicas": 3, "podManagementPolicy": "OrderedReady",
            "revisionHistoryLimit": 10,
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
            "selector": {"matchLabels": {"app.kubernetes.io/name": "orders-db"}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "orders-db", "app.kubernetes.io/part-of": "shop"}},
                "spec": {
                    "terminationGracePeriodSeconds": 60,
                    "securityContext": {"runAsNonRoot": true, "fsGroup": 1000},
                    "containers": [container("db", 5432), container("exporter", 9187), container("backup", 8080)],
                    "volumes": [{"name": "config", "configMap": {"name": "orders-db", "defaultMode": 420}}]
                }
            },
            "volumeClaimTemplates": [
                {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast",
                    "resources": {"requests": {"storage": "50Gi"}}}},
                {"metadata": {"name": "wal"}, "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast",
                    "resources": {"requests": {"storage": "10Gi"}}}}
            ]
        }
    })
}

fn context() -> StaticContext {
    let mut ctx = StaticContext::default();
    ctx.add_service(ServiceInfo {
        namespace: "shop".into(),
        name: "orders-db".into(),
        headless: true,
        selector: Some([("app.kubernetes.io/name".to_owned(), "orders-db".to_owned())].into()),
    });
    ctx.add_pdb(PdbInfo {
        namespace: "shop".into(),
        name: "orders-db".into(),
        selector: serde_json::from_value(
            json!({"matchLabels": {"app.kubernetes.io/name": "orders-db"}}),
        )
        .ok(),
    });
    ctx
}

fn bench(c: &mut Criterion) {
    let policy = Policy::baseline();
    let ctx = context();
    let value = statefulset();
    let resource = Resource::decode(Kind::StatefulSet, &value).expect("decodes");
    let review = Review::create(resource);
    let decision = evaluate(&policy, &review, &ctx);
    assert!(
        decision.allowed() && decision.patch.is_some(),
        "{decision:?}"
    );

    c.bench_function("evaluate statefulset create", |b| {
        b.iter(|| evaluate(black_box(&policy), black_box(&review), black_box(&ctx)))
    });
    c.bench_function("decode + evaluate statefulset create", |b| {
        b.iter(|| {
            let resource = Resource::decode(Kind::StatefulSet, black_box(&value)).expect("decodes");
            evaluate(&policy, &Review::create(resource), &ctx)
        })
    });
    let mut plain = review.clone();
    plain.operation = stateward::policy::Operation::Update;
    plain.old_object = plain.object.clone();
    c.bench_function("evaluate statefulset update (no mutation)", |b| {
        b.iter(|| evaluate(black_box(&policy), black_box(&plain), black_box(&ctx)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
