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

fn finding(kind: &'static str, ns: &str, name: &str, set: Option<&str>) -> AuditFinding {
    AuditFinding {
        kind,
        namespace: ns.into(),
        name: name.into(),
        statefulset: set.map(str::to_owned),
        rule: RuleId::ServiceHeadlessShape,
        mode: Level::Warn,
        field: "spec".into(),
        message: "m".into(),
    }
}

fn outcome(ns: &str, name: &str) -> SetOutcome {
    SetOutcome {
        namespace: ns.into(),
        name: name.into(),
        uid: format!("u-{name}"),
        ..SetOutcome::default()
    }
}

/// Namespaces go out in order, each once and whole: those with only Service findings
/// before and after the sets' namespaces too, and a set's namespace with its Services.
#[test]
fn namespaces_are_sent_in_order_each_once_with_their_services() {
    let policy = Policy::default();
    let services = vec![
        finding("Service", "c", "svc", None),
        finding("Service", "a", "svc", None),
        finding("Service", "b", "db", None),
        finding("Service", "d", "svc", None),
    ];
    let mut assembler = Assembler::new(&policy, 0, services, Vec::new());
    let mut sent: Vec<Chunk> = Vec::new();
    let set = |ns: &str, name: &str| {
        (
            vec![finding("StatefulSet", ns, name, Some(name))],
            outcome(ns, name),
        )
    };
    for (ns, name) in [("b", "web"), ("b", "db"), ("c", "web")] {
        let (findings, outcome) = set(ns, name);
        sent.extend(assembler.set(findings, outcome));
    }
    let names = |sent: &[Chunk]| sent.iter().map(|c| c.namespace.clone()).collect::<Vec<_>>();
    assert_eq!(names(&sent), ["a", "b"]);
    let (rest, summary) = assembler.finish();
    sent.extend(rest);
    assert_eq!(names(&sent), ["a", "b", "c", "d"]);
    let b = &sent[1];
    let order: Vec<(&str, &str)> = b
        .findings
        .iter()
        .map(|f| (f.kind, f.name.as_str()))
        .collect();
    assert_eq!(
        order,
        [
            ("StatefulSet", "db"),
            ("StatefulSet", "web"),
            ("Service", "db")
        ]
    );
    assert_eq!(b.sets.len(), 2);
    assert_eq!(sent[2].findings.len(), 2, "c: its set and its Service");
    assert_eq!(summary.statefulsets, 3);
    assert_eq!(summary.warn, 7);
}

/// The JSON written namespace by namespace is the text of the whole report.
#[test]
fn the_streamed_json_is_the_whole_reports_json() {
    use crate::commands::audit::JsonOut;
    let inventory = Inventory {
        statefulsets: vec![set("shop", "web", 1, 0), set("bank", "db", 1, 30)],
        claims: vec![
            claim("shop", "data-web-0", "web"),
            claim("shop", "data-web-1", "web"),
            claim("bank", "data-db-3", "db"),
        ],
        ..Inventory::default()
    };
    let report = audit(&Policy::default(), &inventory, 1_700_000_000);
    assert!(report.orphaned_claims.len() == 2 && report.findings.len() > 2);
    let empty = AuditReport {
        policy: "default".into(),
        ..AuditReport::default()
    };
    for report in [report, empty] {
        let mut json = JsonOut::start(Vec::new(), &report.policy).expect("write");
        for ns in ["bank", "shop"] {
            let chunk = Chunk {
                namespace: ns.into(),
                findings: report
                    .findings
                    .iter()
                    .filter(|f| f.namespace == ns)
                    .cloned()
                    .collect(),
                orphaned_claims: report
                    .orphaned_claims
                    .iter()
                    .filter(|o| o.orphan.namespace == ns)
                    .cloned()
                    .collect(),
                sets: Vec::new(),
            };
            futures::executor::block_on(json.namespace(chunk)).expect("write");
        }
        let streamed = json.finish(&report.summary).expect("write");
        let whole = serde_json::to_string_pretty(&report).expect("json") + "\n";
        assert_eq!(String::from_utf8(streamed).expect("utf-8"), whole);
    }
}
