use serde_json::{Value, json};

use super::*;

fn typed<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("fixture decodes")
}

fn set(ns: &str, name: &str, replicas: i32, grace: i64) -> StatefulSet {
    typed(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": ns, "uid": format!("u-{name}")},
        "spec": {
            "replicas": replicas, "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {
                "terminationGracePeriodSeconds": grace,
                "containers": [{"name": "main", "image": "x",
                                "volumeMounts": [{"name": "data", "mountPath": "/d"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                "accessModes": ["ReadWriteOnce"], "storageClassName": "fast",
                "resources": {"requests": {"storage": "2Gi"}}}}]
        }
    }))
}

fn claim(ns: &str, name: &str, app: &str) -> PersistentVolumeClaim {
    typed(json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": app},
                     "creationTimestamp": "2023-11-14T00:00:00Z"},
        "spec": {"resources": {"requests": {"storage": "2Gi"}}},
        "status": {"phase": "Bound"}
    }))
}

#[test]
fn existing_objects_are_validated_and_orphans_reported_without_mutations() {
    let inventory = Inventory {
        statefulsets: vec![set("shop", "web", 1, 0), set("kube-system", "sys", 1, 0)],
        claims: vec![
            claim("shop", "data-web-0", "web"),
            claim("shop", "data-web-1", "web"),
        ],
        ..Inventory::default()
    };
    let report = audit(&Policy::default(), &inventory, 1_700_000_000);
    assert!(
        report.findings.iter().all(|f| f.namespace == "shop"),
        "excluded namespace"
    );
    assert!(report.findings.iter().any(|f| {
        f.rule == RuleId::StatefulSetTerminationGracePeriod && f.mode == Level::Enforce
    }));
    assert!(report.findings.iter().all(|f| f.mode != Level::Mutate));
    assert!(report.has_enforce());
    assert_eq!(report.orphaned_claims.len(), 1);
    assert_eq!(report.orphaned_claims[0].orphan.claim, "data-web-1");
    assert_eq!(report.summary.orphaned_bytes, 2 * 1024 * 1024 * 1024);
    let orphan = report
        .findings
        .iter()
        .find(|f| f.rule == RuleId::StatefulSetOrphanedClaim)
        .expect("orphan finding");
    assert_eq!(orphan.statefulset.as_deref(), Some("web"));
    assert!(
        orphan.message.contains("2Gi requested"),
        "{}",
        orphan.message
    );
    let text = crate::commands::audit::render_text(&report);
    assert!(
        text.starts_with("StatefulSet shop/web\n  ENFORCE"),
        "{text}"
    );
    assert!(
        text.contains("1 orphaned claim(s), 2Gi requested"),
        "{text}"
    );
}

#[test]
fn selector_limits_the_report_but_not_the_context() {
    let inventory = Inventory {
        statefulsets: vec![set("shop", "web", 1, 30), set("shop", "db", 1, 0)],
        selected: Some([("shop".to_owned(), "web".to_owned())].into()),
        claims: vec![claim("shop", "data-db-0", "db")],
        ..Inventory::default()
    };
    let mut policy = Policy::default();
    policy
        .settings_mut(&crate::policy::rules::live::CLAIM_UNBOUND)
        .expect("declared")
        .pending_for = Some("0s".into());
    let report = audit(&policy, &inventory, 1_700_000_000);
    assert!(
        report.findings.iter().all(|f| f.name != "db"),
        "{:?}",
        report.findings
    );
    assert!(
        report.orphaned_claims.is_empty(),
        "db's claim is not an orphan"
    );
    assert_eq!(report.summary.statefulsets, 1);
    assert!(!report.has_enforce());
}
