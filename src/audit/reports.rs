//! From one audit pass to OpenReports `Report`s, and what to write (pure).
//!
//! - One `Report` per StatefulSet, in its namespace, named `stateward-sts-<set>`: `scope`
//!   is the set, an ownerReference to the set (not a controller, `blockOwnerDeletion:
//!   false`) lets the garbage collector delete it with the set. It holds the set's
//!   findings and those of the Service its `serviceName` names.
//! - One `Report` per namespace with orphaned claims, `stateward-orphaned-claims`, no
//!   owner; each result names its claim in `resources`.
//!
//! Results: `policy: stateward`, `rule` the rule id, `result: fail` for enforce findings and
//! `warn` for warn and audit findings, `severity` high / medium / low for enforce / warn /
//! audit, the field and details in `properties`, with `properties.resultID` a stable id of
//! the finding (rule, object, field; see [`result_id`]). Passes (rules evaluated without a finding)
//! and skips (rules switched off by `stateward.io/skip`) are only counted in `summary`.
//!
//! A report is written only when its content changes: the content (labels, owner, scope,
//! summary and results, never timestamps) is hashed into the `stateward.io/results-hash`
//! annotation and compared with the report in the cluster. A result found again keeps the
//! message and `timestamp` of its first sighting (messages of the live rules say how long
//! a state has lasted, which would otherwise change every pass), so an unchanged fleet
//! causes no write at all.
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde_json::json;

use super::openreports::{
    ObjectReference, Outcome, Report, ReportResult, ReportSummary, Severity, Timestamp, canonical,
};
use super::{AuditFinding, AuditReport, Inventory, SetOutcome};
use crate::gc::classify::Reason;
use crate::policy::rules::{Action, Check, RULES};
use crate::policy::{Kind, Level, Mode, Operation, Policy, RuleId};
use crate::quantity::human_bytes;

/// The field manager of every write (server-side apply).
pub const FIELD_MANAGER: &str = "stateward-audit";
/// `source` of the reports, and `policy` of their results.
pub const SOURCE: &str = "stateward";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "stateward";
/// What a report is about: `statefulset` or `orphaned-claims`.
pub const REPORT_LABEL: &str = "stateward.io/report";
pub const HASH_ANNOTATION: &str = "stateward.io/results-hash";
/// The name of the orphaned-claims report of a namespace.
pub const ORPHANS_REPORT: &str = "stateward-orphaned-claims";
/// The label selector of the reports stateward manages.
pub const SELECTOR: &str = "app.kubernetes.io/managed-by=stateward,stateward.io/report";

/// The name of a set's report: `stateward-sts-<set>` (object names are at most 253
/// characters; a longer one uses the set's uid).
pub fn set_report_name(set: &str, uid: &str) -> String {
    let name = format!("stateward-sts-{set}");
    if name.len() <= 253 {
        name
    } else {
        format!("stateward-sts-{uid}")
    }
}

/// OpenReports outcome of a finding's mode.
pub fn outcome(mode: Level) -> Outcome {
    match mode {
        Level::Enforce => Outcome::Fail,
        _ => Outcome::Warn,
    }
}

/// Severity of a finding's mode: enforce high, warn medium, audit low.
pub fn severity(mode: Level) -> Severity {
    match mode {
        Level::Enforce => Severity::High,
        Level::Warn => Severity::Medium,
        _ => Severity::Low,
    }
}

/// Rules whose messages say how long a state has lasted (`Pending for 12m`).
fn time_dependent(rule: &str) -> bool {
    [
        RuleId::StatefulSetRolloutBlocked,
        RuleId::StatefulSetPodStuckTerminating,
        RuleId::StatefulSetClaimUnbound,
    ]
    .iter()
    .any(|r| r.as_str() == rule)
}

/// The message with durations (`45s`, `12m`, `3h`, `2d`, also `1h30m`) replaced by `#`: a
/// finding whose only change is the time that passed is the same finding.
pub fn without_durations(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let chars: Vec<char> = message.chars().collect();
    let ends_word = |k: usize| k >= chars.len() || !chars[k].is_alphanumeric();
    let mut i = 0;
    while i < chars.len() {
        let starts_word = i == 0 || !chars[i - 1].is_alphanumeric();
        if starts_word && chars[i].is_ascii_digit() {
            // One or more <digits><unit> pairs, then the end of the word.
            let mut j = i;
            let mut pairs = 0;
            loop {
                let mut k = j;
                while k < chars.len() && chars[k].is_ascii_digit() {
                    k += 1;
                }
                if k == j || k >= chars.len() || !matches!(chars[k], 's' | 'm' | 'h' | 'd') {
                    break;
                }
                j = k + 1;
                pairs += 1;
            }
            if pairs > 0 && ends_word(j) {
                out.push('#');
                i = j;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// What identifies a result across passes: rule, field and message (without durations for
/// the live rules that report them).
fn identity(result: &ReportResult) -> (String, String, String, String) {
    let rule = result.rule.clone().unwrap_or_default();
    let message = result.message.clone().unwrap_or_default();
    let message = if time_dependent(&rule) {
        without_durations(&message)
    } else {
        message
    };
    (
        rule,
        result.properties.get("field").cloned().unwrap_or_default(),
        result
            .properties
            .get("resource")
            .cloned()
            .unwrap_or_default(),
        message,
    )
}

/// Details of a finding's field: `pods/web-0` names a pod, and so on.
fn field_properties(field: &str, properties: &mut BTreeMap<String, String>) {
    properties.insert("field".into(), field.to_owned());
    if let Some((plural, name)) = field.split_once('/') {
        let key = match plural {
            "pods" => "pod",
            "persistentvolumeclaims" => "claim",
            "poddisruptionbudgets" => "podDisruptionBudget",
            _ => return,
        };
        properties.insert(key.into(), name.to_owned());
    }
}

/// `properties.resultID`: a result's identity for consumers such as Policy Reporter, from
/// the rule, the object (kind, namespace, name) and the field, never the message, so a
/// reworded message or a later pass keeps the same id. FNV-1a 64 in hex, as the hash
/// annotation.
pub fn result_id(finding: &AuditFinding) -> String {
    let key = [
        finding.rule.as_str(),
        finding.kind,
        finding.namespace.as_str(),
        finding.name.as_str(),
        finding.field.as_str(),
    ]
    .join("\u{1f}");
    format!("{:016x}", fnv1a64(key.as_bytes()))
}

fn result_of(finding: &AuditFinding, now: i64) -> ReportResult {
    let mut properties = BTreeMap::new();
    field_properties(&finding.field, &mut properties);
    properties.insert("resultID".into(), result_id(finding));
    properties.insert("mode".into(), finding.mode.as_str().to_owned());
    let info = finding.rule.info();
    let live = matches!(info.action, Action::Validate { check, .. } if check.is_live());
    ReportResult {
        policy: SOURCE.to_owned(),
        rule: Some(finding.rule.as_str().to_owned()),
        category: Some(if live { "live-state" } else { "admission" }.to_owned()),
        severity: Some(severity(finding.mode)),
        timestamp: Some(Timestamp {
            seconds: now,
            nanos: 0,
        }),
        result: Some(outcome(finding.mode)),
        message: Some(finding.message.clone()),
        properties,
        ..ReportResult::default()
    }
}

/// Keeps the message and timestamp of results found before (same identity).
fn carry_over(results: &mut [ReportResult], existing: Option<&Report>) {
    let Some(existing) = existing else { return };
    let earlier: HashMap<_, _> = existing
        .results
        .iter()
        .map(|r| (identity(r), (r.message.clone(), r.timestamp)))
        .collect();
    for result in results.iter_mut() {
        if let Some((message, timestamp)) = earlier.get(&identity(result)) {
            result.message = message.clone();
            if timestamp.is_some() {
                result.timestamp = *timestamp;
            }
        }
    }
}

fn sort_results(results: &mut [ReportResult]) {
    results.sort_by(|a, b| {
        (a.result, &a.rule, a.properties.get("field"), &a.message).cmp(&(
            b.result,
            &b.rule,
            b.properties.get("field"),
            &b.message,
        ))
    });
}

fn count(summary: &mut ReportSummary, results: &[ReportResult]) {
    for r in results {
        match r.result {
            Some(Outcome::Fail) => summary.fail += 1,
            Some(Outcome::Warn) => summary.warn += 1,
            Some(Outcome::Error) => summary.error += 1,
            Some(Outcome::Skip) => summary.skip += 1,
            Some(Outcome::Pass) => summary.pass += 1,
            None => {}
        }
    }
}

/// The rules a pass evaluates on a StatefulSet under `policy`: the webhook's rules for a
/// CREATE of a set and the live-state rules, those not off.
pub fn set_rules(policy: &Policy) -> Vec<RuleId> {
    RULES
        .iter()
        .filter(|info| info.kind == Kind::StatefulSet && policy.mode(info.id) != Mode::Off)
        .filter(|info| match info.action {
            Action::Validate {
                check: Check::StatefulSet(_),
                ..
            } => info.operations.contains(&Operation::Create),
            Action::Validate {
                check: Check::Live(_),
                ..
            } => true,
            _ => false,
        })
        .map(|info| info.id)
        .collect()
}

/// The content hashed into [`HASH_ANNOTATION`]: labels, owners, scope, source, summary and
/// results without their timestamps, as canonical JSON, FNV-1a 64.
pub fn content_hash(report: &Report) -> String {
    let results: Vec<serde_json::Value> = report
        .results
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.timestamp = None;
            serde_json::to_value(r).unwrap_or_default()
        })
        .collect();
    let content = json!({
        "labels": report.metadata.labels,
        "ownerReferences": report.metadata.owner_references,
        "scope": report.scope,
        "source": report.source,
        "summary": report.summary,
        "results": results,
    });
    let text = canonical(&content).to_string();
    format!("{:016x}", fnv1a64(text.as_bytes()))
}

/// FNV-1a, 64 bits: stable across Rust versions and platforms (unlike `DefaultHasher`).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

fn labels(kind: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (REPORT_LABEL.to_owned(), kind.to_owned()),
    ])
}

fn finish(mut report: Report) -> Report {
    let hash = content_hash(&report);
    report.metadata.annotations = Some(BTreeMap::from([(HASH_ANNOTATION.to_owned(), hash)]));
    report
}

/// A report's (namespace, name).
pub fn key(report: &Report) -> (String, String) {
    (
        report.metadata.namespace.clone().unwrap_or_default(),
        report.metadata.name.clone().unwrap_or_default(),
    )
}

/// The report of one StatefulSet.
fn set_report(
    set: &SetOutcome,
    findings: &[&AuditFinding],
    rules: &[RuleId],
    existing: Option<&Report>,
    now: i64,
) -> Report {
    let mut results: Vec<ReportResult> = findings
        .iter()
        .map(|f| {
            let mut r = result_of(f, now);
            if f.kind == "Service" {
                r.properties.insert("service".into(), f.name.clone());
                r.properties
                    .insert("resource".into(), format!("services/{}", f.name));
                r.resources = vec![ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Service".into()),
                    namespace: Some(f.namespace.clone()),
                    name: Some(f.name.clone()),
                    ..ObjectReference::default()
                }];
            }
            r
        })
        .collect();
    carry_over(&mut results, existing);
    sort_results(&mut results);
    let mut summary = ReportSummary::default();
    count(&mut summary, &results);
    let found: HashSet<RuleId> = findings
        .iter()
        .filter(|f| f.kind == "StatefulSet")
        .map(|f| f.rule)
        .collect();
    for rule in rules {
        if set.skipped.contains(rule) {
            summary.skip += 1;
        } else if !found.contains(rule) {
            summary.pass += 1;
        }
    }
    let mut report = Report::new(ObjectMeta {
        name: Some(set_report_name(&set.name, &set.uid)),
        namespace: Some(set.namespace.clone()),
        labels: Some(labels("statefulset")),
        owner_references: Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: "StatefulSet".into(),
            name: set.name.clone(),
            uid: set.uid.clone(),
            controller: Some(false),
            block_owner_deletion: Some(false),
        }]),
        ..ObjectMeta::default()
    });
    report.source = Some(SOURCE.to_owned());
    report.scope = Some(ObjectReference {
        api_version: Some("apps/v1".into()),
        kind: Some("StatefulSet".into()),
        namespace: Some(set.namespace.clone()),
        name: Some(set.name.clone()),
        uid: Some(set.uid.clone()),
        ..ObjectReference::default()
    });
    report.summary = Some(summary);
    report.results = results;
    finish(report)
}

/// The orphaned-claims report of one namespace.
fn orphans_report(
    namespace: &str,
    audit: &AuditReport,
    existing: Option<&Report>,
    now: i64,
) -> Option<Report> {
    let modes: HashMap<&str, &AuditFinding> = audit
        .findings
        .iter()
        .filter(|f| f.rule == RuleId::StatefulSetOrphanedClaim && f.namespace == namespace)
        .map(|f| (f.name.as_str(), f))
        .collect();
    let mut results: Vec<ReportResult> = audit
        .orphaned_claims
        .iter()
        .filter(|row| row.orphan.namespace == namespace)
        .filter_map(|row| {
            let o = &row.orphan;
            let finding = modes.get(o.claim.as_str())?;
            let mut r = result_of(finding, now);
            r.category = Some("storage".into());
            let p = &mut r.properties;
            p.insert("statefulset".into(), o.statefulset.clone());
            p.insert("template".into(), o.template.clone());
            p.insert("ordinal".into(), o.ordinal.to_string());
            p.insert(
                "reason".into(),
                match o.reason {
                    Reason::ScaledDown => "scaled-down",
                    Reason::SetDeleted => "set-deleted",
                }
                .into(),
            );
            p.insert("verified".into(), o.verified.to_string());
            if let Some(bytes) = o.requested_bytes {
                p.insert("requestedBytes".into(), bytes.to_string());
                p.insert("size".into(), human_bytes(bytes));
            }
            r.resources = vec![ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: Some(o.namespace.clone()),
                name: Some(o.claim.clone()),
                uid: (!o.uid.is_empty()).then(|| o.uid.clone()),
                ..ObjectReference::default()
            }];
            Some(r)
        })
        .collect();
    if results.is_empty() {
        return None;
    }
    carry_over(&mut results, existing);
    sort_results(&mut results);
    let mut summary = ReportSummary::default();
    count(&mut summary, &results);
    let mut report = Report::new(ObjectMeta {
        name: Some(ORPHANS_REPORT.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(labels("orphaned-claims")),
        ..ObjectMeta::default()
    });
    report.source = Some(SOURCE.to_owned());
    report.summary = Some(summary);
    report.results = results;
    Some(finish(report))
}

/// The reports one pass wants, built one at a time (a pass need not hold them all): the
/// report of each set of the pass, then the orphaned-claims report of each namespace with
/// orphans.
pub struct Desired<'a> {
    audit: &'a AuditReport,
    rules: Vec<RuleId>,
    by_set: HashMap<(&'a str, &'a str), Vec<&'a AuditFinding>>,
    by_service: HashMap<(&'a str, &'a str), Vec<&'a AuditFinding>>,
    namespaces: Vec<&'a str>,
}

impl<'a> Desired<'a> {
    pub fn new(policy: &Policy, audit: &'a AuditReport) -> Desired<'a> {
        let mut by_set: HashMap<(&str, &str), Vec<&AuditFinding>> = HashMap::new();
        let mut by_service: HashMap<(&str, &str), Vec<&AuditFinding>> = HashMap::new();
        for f in &audit.findings {
            match f.kind {
                "StatefulSet" => by_set
                    .entry((f.namespace.as_str(), f.name.as_str()))
                    .or_default()
                    .push(f),
                "Service" => by_service
                    .entry((f.namespace.as_str(), f.name.as_str()))
                    .or_default()
                    .push(f),
                _ => {}
            }
        }
        let namespaces: BTreeSet<&str> = audit
            .orphaned_claims
            .iter()
            .map(|o| o.orphan.namespace.as_str())
            .collect();
        Desired {
            audit,
            rules: set_rules(policy),
            by_set,
            by_service,
            namespaces: namespaces.into_iter().collect(),
        }
    }

    /// How many reports there may be.
    pub fn len(&self) -> usize {
        self.audit.sets.len() + self.namespaces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The (namespace, name) of report `i`.
    pub fn key(&self, i: usize) -> (String, String) {
        match self.audit.sets.get(i) {
            Some(set) => (set.namespace.clone(), set_report_name(&set.name, &set.uid)),
            None => (
                self.namespaces[i - self.audit.sets.len()].to_owned(),
                ORPHANS_REPORT.to_owned(),
            ),
        }
    }

    /// Report `i`, keeping the first message and time of the results `existing` (the
    /// report in the cluster) holds; `None` when it has no results to report.
    pub fn build(&self, i: usize, existing: Option<&Report>, now: i64) -> Option<Report> {
        let Some(set) = self.audit.sets.get(i) else {
            let ns = self.namespaces.get(i - self.audit.sets.len())?;
            return orphans_report(ns, self.audit, existing, now);
        };
        let mut findings = self
            .by_set
            .get(&(set.namespace.as_str(), set.name.as_str()))
            .cloned()
            .unwrap_or_default();
        if let Some(service) = &set.service {
            findings.extend(
                self.by_service
                    .get(&(set.namespace.as_str(), service.as_str()))
                    .into_iter()
                    .flatten(),
            );
        }
        Some(set_report(set, &findings, &self.rules, existing, now))
    }
}

/// The reports one pass wants, given the reports in the cluster (for the first sighting of
/// each result).
pub fn desired_reports(
    policy: &Policy,
    audit: &AuditReport,
    existing: &[Report],
    now: i64,
) -> Vec<Report> {
    let existing: HashMap<(String, String), &Report> =
        existing.iter().map(|r| (key(r), r)).collect();
    let desired = Desired::new(policy, audit);
    (0..desired.len())
        .filter_map(|i| desired.build(i, existing.get(&desired.key(i)).copied(), now))
        .collect()
}

/// The hash annotation of a report.
pub fn hash(report: &Report) -> Option<&str> {
    report
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(HASH_ANNOTATION))
        .map(String::as_str)
}

/// Whether `report` is what `before` (the report in the cluster) already holds.
pub fn unchanged(before: Option<&Report>, report: &Report) -> bool {
    before.is_some_and(|b| hash(b).is_some() && hash(b) == hash(report))
}

/// The deletion of a report in the cluster that the pass does not want (`wanted`): the
/// report of a set that is gone (not in `live_sets`), or an orphaned-claims report.
pub fn stale(
    report: &Report,
    wanted: &HashSet<(String, String)>,
    live_sets: &HashSet<(String, String)>,
) -> Option<Deletion> {
    let k = key(report);
    if wanted.contains(&k) || report.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let kind = report
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REPORT_LABEL))
        .map(String::as_str);
    let stale = match kind {
        Some("statefulset") => !live_sets.contains(&k),
        Some("orphaned-claims") => true,
        _ => false,
    };
    stale.then(|| Deletion {
        namespace: k.0,
        name: k.1,
        uid: report.metadata.uid.clone(),
    })
}

/// A report to delete, with the uid it had when listed (a precondition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
}

/// What a pass writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// New or changed reports (server-side apply).
    pub apply: Vec<Report>,
    /// Reports of sets that are gone, and orphaned-claims reports of namespaces without
    /// orphans.
    pub delete: Vec<Deletion>,
    /// Reports left as they are (same hash).
    pub unchanged: usize,
}

/// Compares the wanted reports with the managed reports in the cluster. `live_sets` are
/// the reports of every StatefulSet that exists and is not excluded (selected or not): a
/// set report outside it is deleted, and within it never (a set a `-l` selector leaves out
/// keeps its report).
pub fn plan(
    desired: Vec<Report>,
    existing: &[Report],
    live_sets: &HashSet<(String, String)>,
) -> Plan {
    let current: HashMap<(String, String), &Report> =
        existing.iter().map(|r| (key(r), r)).collect();
    let wanted: HashSet<(String, String)> = desired.iter().map(key).collect();
    let mut plan = Plan::default();
    for report in desired {
        if unchanged(current.get(&key(&report)).copied(), &report) {
            plan.unchanged += 1
        } else {
            plan.apply.push(report)
        }
    }
    plan.delete = existing
        .iter()
        .filter_map(|r| stale(r, &wanted, live_sets))
        .collect();
    plan
}

/// The (namespace, report name) of every StatefulSet of the inventory that `policy` does
/// not exclude.
pub fn live_set_reports(policy: &Policy, inventory: &Inventory) -> HashSet<(String, String)> {
    inventory
        .statefulsets
        .iter()
        .filter_map(|s| {
            let ns = s
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            let name = s.metadata.name.clone()?;
            let uid = s.metadata.uid.clone().unwrap_or_default();
            (!policy.is_excluded(&ns)).then(|| (ns, set_report_name(&name, &uid)))
        })
        .collect()
}

#[cfg(test)]
mod tests;
