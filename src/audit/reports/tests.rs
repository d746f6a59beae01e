use super::*;
use crate::audit::{OrphanRow, audit};
use crate::gc::classify::Orphan;

fn finding(
    kind: &'static str,
    name: &str,
    rule: RuleId,
    mode: Level,
    message: &str,
) -> AuditFinding {
    AuditFinding {
        kind,
        namespace: "shop".into(),
        name: name.into(),
        statefulset: (kind == "StatefulSet").then(|| name.to_owned()),
        rule,
        mode,
        field: match rule {
            RuleId::StatefulSetRolloutBlocked => "pods/web-0".into(),
            _ => "spec.x".into(),
        },
        message: message.into(),
    }
}

fn set(name: &str) -> SetOutcome {
    SetOutcome {
        namespace: "shop".into(),
        name: name.into(),
        uid: format!("uid-{name}"),
        service: Some(name.into()),
        skipped: vec![],
    }
}

fn sample() -> AuditReport {
    AuditReport {
        policy: "baseline".into(),
        findings: vec![
            finding(
                "StatefulSet",
                "web",
                RuleId::StatefulSetTerminationGracePeriod,
                Level::Enforce,
                "grace 0",
            ),
            finding(
                "StatefulSet",
                "web",
                RuleId::StatefulSetRolloutBlocked,
                Level::Warn,
                "pod web-0 has not been Ready for 45s, delete it",
            ),
            finding(
                "Service",
                "web",
                RuleId::ServicePodNameSelector,
                Level::Audit,
                "selects one pod",
            ),
            finding(
                "PersistentVolumeClaim",
                "data-web-3",
                RuleId::StatefulSetOrphanedClaim,
                Level::Warn,
                "claim data-web-3 is orphaned",
            ),
        ],
        orphaned_claims: vec![OrphanRow {
            orphan: Orphan {
                namespace: "shop".into(),
                claim: "data-web-3".into(),
                statefulset: "web".into(),
                template: "data".into(),
                ordinal: 3,
                reason: Reason::ScaledDown,
                verified: true,
                uid: "uid-claim".into(),
                resource_version: "1".into(),
                created: Some(0),
                requested_bytes: Some(2 << 30),
            },
            age_seconds: Some(10),
        }],
        sets: vec![set("web"), set("db")],
        ..AuditReport::default()
    }
}

#[test]
fn findings_become_results_and_passes_are_only_counted() {
    let policy = Policy::baseline();
    let reports = desired_reports(&policy, &sample(), &[], 1_000);
    assert_eq!(reports.len(), 3, "two sets and one orphans report");
    let web = &reports[0];
    assert_eq!(web.metadata.name.as_deref(), Some("stateward-sts-web"));
    let owner = &web.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!(
        (owner.uid.as_str(), owner.controller),
        ("uid-web", Some(false))
    );
    assert_eq!(owner.block_owner_deletion, Some(false));
    assert_eq!(
        web.scope.as_ref().and_then(|s| s.uid.as_deref()),
        Some("uid-web")
    );
    assert_eq!(web.source.as_deref(), Some("stateward"));
    let outcomes: Vec<_> = web
        .results
        .iter()
        .map(|r| (r.rule.as_deref().unwrap_or(""), r.result, r.severity))
        .collect();
    assert_eq!(
        outcomes,
        [
            (
                "statefulset.termination-grace-period",
                Some(Outcome::Fail),
                Some(Severity::High)
            ),
            (
                "service.pod-name-selector",
                Some(Outcome::Warn),
                Some(Severity::Low)
            ),
            (
                "statefulset.rollout-blocked",
                Some(Outcome::Warn),
                Some(Severity::Medium)
            ),
        ]
    );
    assert!(web.results.iter().all(|r| r.policy == "stateward"));
    let blocked = &web.results[2];
    assert_eq!(blocked.properties["pod"], "web-0");
    assert_eq!(blocked.properties["field"], "pods/web-0");
    assert_eq!(web.results[1].resources[0].kind.as_deref(), Some("Service"));
    let rules = set_rules(&policy).len() as i64;
    let summary = web.summary.expect("summary");
    assert_eq!((summary.fail, summary.warn, summary.skip), (1, 2, 0));
    assert_eq!(summary.pass, rules - 2, "every other set rule passed");
    let db = &reports[1];
    assert!(db.results.is_empty());
    assert_eq!(db.summary.expect("summary").pass, rules);

    let orphans = &reports[2];
    assert_eq!(orphans.metadata.name.as_deref(), Some(ORPHANS_REPORT));
    assert!(orphans.metadata.owner_references.is_none());
    let r = &orphans.results[0];
    assert_eq!(r.properties["size"], "2Gi");
    assert_eq!(r.properties["reason"], "scaled-down");
    assert_eq!(r.resources[0].uid.as_deref(), Some("uid-claim"));
    assert_eq!(orphans.summary.expect("summary").warn, 1);
}

#[test]
fn skipped_rules_are_counted_as_skips() {
    let mut audit = sample();
    audit.sets[1].skipped = vec![RuleId::StatefulSetReadinessProbe];
    let reports = desired_reports(&Policy::baseline(), &audit, &[], 1_000);
    let summary = reports[1].summary.expect("summary");
    assert_eq!(summary.skip, 1);
    assert_eq!(
        summary.pass,
        set_rules(&Policy::baseline()).len() as i64 - 1
    );
}

#[test]
fn the_hash_ignores_time_and_an_unchanged_fleet_writes_nothing() {
    let policy = Policy::baseline();
    let first = desired_reports(&policy, &sample(), &[], 1_000);
    let plan1 = plan(first.clone(), &[], &HashSet::new());
    assert_eq!(plan1.apply.len(), 3);
    // Later: the rollout has been blocked for longer; the message says so.
    let mut later = sample();
    later.findings[1].message = "pod web-0 has not been Ready for 12m, delete it".into();
    let second = desired_reports(&policy, &later, &first, 5_000);
    assert_eq!(
        second, first,
        "same content, same first-seen message and time"
    );
    let live: HashSet<_> = [
        ("shop".to_owned(), "stateward-sts-web".to_owned()),
        ("shop".to_owned(), "stateward-sts-db".to_owned()),
    ]
    .into();
    let plan2 = plan(second, &first, &live);
    assert!(
        plan2.apply.is_empty() && plan2.delete.is_empty(),
        "{plan2:?}"
    );
    assert_eq!(plan2.unchanged, 3);
    // The hash is the same whatever the timestamps say.
    let mut moved = first[0].clone();
    for r in &mut moved.results {
        r.timestamp = Some(Timestamp {
            seconds: 7,
            nanos: 1,
        });
    }
    assert_eq!(content_hash(&moved), content_hash(&first[0]));
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
}

#[test]
fn a_changed_finding_is_written_with_a_new_timestamp_and_gone_reports_are_deleted() {
    let policy = Policy::baseline();
    let first = desired_reports(&policy, &sample(), &[], 1_000);
    let mut fixed = sample();
    fixed.findings.remove(1); // the rollout went through
    fixed.findings.pop(); // the orphan was deleted
    fixed.orphaned_claims.clear();
    fixed.sets.pop(); // db was deleted
    fixed.findings[0].message = "grace 0 (again)".into();
    let second = desired_reports(&policy, &fixed, &first, 2_000);
    let live: HashSet<_> = [("shop".to_owned(), "stateward-sts-web".to_owned())].into();
    let mut existing = first.clone();
    existing[1].metadata.uid = Some("report-uid".into());
    let p = plan(second, &existing, &live);
    assert_eq!(p.apply.len(), 1);
    assert_eq!(p.apply[0].results.len(), 2);
    assert_eq!(
        p.apply[0].results[0].timestamp.map(|t| t.seconds),
        Some(2_000),
        "a new message is a new result"
    );
    assert_eq!(
        p.apply[0].results[1].timestamp.map(|t| t.seconds),
        Some(1_000),
        "the Service finding is the same as before"
    );
    let deleted: Vec<_> = p.delete.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(deleted, ["stateward-sts-db", ORPHANS_REPORT]);
    assert_eq!(p.delete[0].uid.as_deref(), Some("report-uid"));
    // A set that still exists but is not selected keeps its report.
    let live: HashSet<_> = [
        ("shop".to_owned(), "stateward-sts-web".to_owned()),
        ("shop".to_owned(), "stateward-sts-db".to_owned()),
    ]
    .into();
    let p = plan(
        desired_reports(&policy, &fixed, &first, 2_000),
        &existing,
        &live,
    );
    assert_eq!(p.delete.len(), 1, "only the orphans report: {:?}", p.delete);
}

#[test]
fn result_ids_follow_rule_object_and_field_not_the_message_or_the_pass() {
    fn ids(reports: &[Report]) -> Vec<(String, String)> {
        reports
            .iter()
            .flat_map(|r| &r.results)
            .map(|r| {
                (
                    r.rule.clone().unwrap_or_default(),
                    r.properties.get("resultID").cloned().expect("resultID"),
                )
            })
            .collect()
    }
    let policy = Policy::baseline();
    let first = desired_reports(&policy, &sample(), &[], 1_000);
    let before = ids(&first);
    assert_eq!(before.len(), 4, "every result carries one");
    let unique: HashSet<_> = before.iter().map(|(_, id)| id).collect();
    assert_eq!(unique.len(), 4, "distinct findings, distinct ids");
    assert!(before.iter().all(|(_, id)| id.len() == 16));
    // A later pass, every message reworded (a new release, a longer duration), and
    // no earlier report to carry messages over from: the ids stay.
    let mut reworded = sample();
    for f in &mut reworded.findings {
        f.message = format!("{} (reworded)", f.message);
    }
    assert_eq!(
        ids(&desired_reports(&policy, &reworded, &[], 9_000)),
        before
    );
    assert_eq!(
        ids(&desired_reports(&policy, &reworded, &first, 9_000)),
        before
    );
    // Another object, field or rule is another finding.
    let base = &sample().findings[0];
    let mut other = base.clone();
    other.name = "db".into();
    assert_ne!(result_id(&other), result_id(base));
    let mut other = base.clone();
    other.field = "spec.y".into();
    assert_ne!(result_id(&other), result_id(base));
    let mut other = base.clone();
    other.namespace = "other".into();
    assert_ne!(result_id(&other), result_id(base));
    // Pinned: a change of the scheme would notify every consumer again.
    let key = format!(
        "{}\u{1f}StatefulSet\u{1f}shop\u{1f}web\u{1f}spec.x",
        base.rule.as_str()
    );
    assert_eq!(result_id(base), format!("{:016x}", fnv1a64(key.as_bytes())));
}

#[test]
fn durations_are_ignored_only_where_they_are_durations() {
    assert_eq!(
        without_durations(
            "Pending for 12m: 3h past, 45s, 2d, 1h30m; 2Gi, 10ms, pod web-0, x1s, 5m3"
        ),
        "Pending for #: # past, #, #, #; 2Gi, 10ms, pod web-0, x1s, 5m3"
    );
}

#[test]
fn a_pass_over_an_inventory_gives_each_set_a_report() {
    let set = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": "shop", "uid": "u1",
                     "annotations": {"stateward.io/skip": "statefulset.readiness-probe"}},
        "spec": {"serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "x"}]}}}
    });
    let inventory = Inventory {
        statefulsets: vec![serde_json::from_value(set).expect("set")],
        ..Inventory::default()
    };
    let policy = Policy::baseline();
    let report = audit(&policy, &inventory, 0);
    assert_eq!(report.sets.len(), 1);
    assert_eq!(report.sets[0].uid, "u1");
    assert_eq!(
        report.sets[0].skipped,
        vec![RuleId::StatefulSetReadinessProbe]
    );
    let reports = desired_reports(&policy, &report, &[], 0);
    assert_eq!(reports.len(), 1);
    let s = reports[0].summary.expect("summary");
    assert_eq!(s.skip, 1);
    assert_eq!(
        s.pass
            + s.skip
            + reports[0]
                .results
                .iter()
                .filter_map(|r| r.rule.clone())
                .collect::<HashSet<_>>()
                .len() as i64,
        set_rules(&policy).len() as i64
    );
    let live = live_set_reports(&policy, &inventory);
    assert!(live.contains(&("shop".to_owned(), "stateward-sts-web".to_owned())));
}
