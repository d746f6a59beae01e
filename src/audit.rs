//! The audit: one read-only pass over the live StatefulSets of a cluster, and (in
//! [`watch`], [`reports`], [`openreports`]) the OpenReports reports of `audit --watch`.
//! Nothing here prints or reads flags: `stateward audit` is [`crate::commands::audit`].
//!
//! It lists StatefulSets, Services, PodDisruptionBudgets, pods, claims and nodes (500 per
//! page), evaluates every StatefulSet and Service with the webhook's engine and policy as
//! existing objects (the validation of a CREATE of the object as it is: no mutation), and
//! adds the live-state rules of the rule table ([`crate::policy::rules::live`]) and the
//! orphaned claims of the collector's classifier. [`audit`] is pure: the clock is an input.
use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Client;
use kube::api::ListParams;
use serde::Serialize;

use crate::Exit;
use crate::cluster::Slim;
use crate::cluster::paged::{self, ListError};
use crate::gc::classify::{Orphan, Reason, classify, split_for_set};
use crate::gc::collect::{claim_view, human_bytes, pod_view, set_view};
use crate::policy::context::{PdbInfo, ServiceInfo, StatefulSetInfo};
use crate::policy::labels::selector_matches;
use crate::policy::rules::live::LiveInput;
use crate::policy::rules::{Action, Check, RULES, Sink};
use crate::policy::{
    Level, Mode, Policy, Resource, Review, RuleId, Stage, StaticContext, evaluate_stage,
};

pub mod openreports;
pub mod reports;
pub mod slim;
pub mod watch;

use slim::Audit;

/// Objects per list request.
pub const PAGE_SIZE: u32 = 500;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot list {what} {scope}: {message}")]
    List {
        what: &'static str,
        scope: String,
        message: String,
    },
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
}

/// Everything one pass reads, as listed.
#[derive(Debug, Default, Clone)]
pub struct Inventory {
    pub statefulsets: Vec<StatefulSet>,
    /// With `-l`: the (namespace, name) of the sets the selector picked; `None`: all.
    pub selected: Option<HashSet<(String, String)>>,
    pub services: Vec<Service>,
    pub pdbs: Vec<PodDisruptionBudget>,
    pub pods: Vec<Pod>,
    pub claims: Vec<PersistentVolumeClaim>,
    pub nodes: Vec<Node>,
}

/// One finding of the pass.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditFinding {
    /// The kind of the object evaluated: StatefulSet, Service or PersistentVolumeClaim.
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    /// The set the finding is grouped under (the set itself, or an orphan's set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statefulset: Option<String>,
    pub rule: RuleId,
    pub mode: Level,
    pub field: String,
    pub message: String,
}

/// An orphaned claim, as the collector plans it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrphanRow {
    #[serde(flatten)]
    pub orphan: Orphan,
    pub age_seconds: Option<i64>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub statefulsets: usize,
    pub services: usize,
    pub pods: usize,
    pub claims: usize,
    pub nodes: usize,
    pub enforce: usize,
    pub warn: usize,
    pub audit: usize,
    pub orphaned_claims: usize,
    pub orphaned_bytes: u64,
}

/// A StatefulSet the pass evaluated, for the reports of `audit --watch`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SetOutcome {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// `spec.serviceName`: the Service whose findings go into the set's report.
    pub service: Option<String>,
    /// Rules the set's skip annotation switched off.
    pub skipped: Vec<RuleId>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditReport {
    pub policy: String,
    pub findings: Vec<AuditFinding>,
    pub orphaned_claims: Vec<OrphanRow>,
    pub summary: Summary,
    #[serde(skip)]
    pub sets: Vec<SetOutcome>,
}

impl AuditReport {
    /// 1 when any finding is at enforce, as `check`.
    pub fn exit(&self) -> Exit {
        if self.summary.enforce > 0 {
            Exit::Failure
        } else {
            Exit::Ok
        }
    }
}

fn level(mode: Mode) -> Option<Level> {
    match mode {
        Mode::Off => None,
        Mode::Audit => Some(Level::Audit),
        Mode::Warn => Some(Level::Warn),
        Mode::Enforce => Some(Level::Enforce),
    }
}

fn ns_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("default")
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

/// The claims of `set`: `<template>-<set>-<ordinal>` for one of its templates, with labels
/// matching its selector (how the controller finds a pod's claim).
fn claims_of<'a>(
    set: &StatefulSet,
    claims: &[&'a PersistentVolumeClaim],
) -> Vec<&'a PersistentVolumeClaim> {
    let name = name_of(&set.metadata);
    let templates = crate::policy::rules::statefulset::claim_template_names(set);
    let empty = BTreeMap::new();
    claims
        .iter()
        .filter(|c| {
            split_for_set(name_of(&c.metadata), name).is_some_and(|(t, _)| {
                templates.iter().any(|n| n == t)
                    && selector_matches(
                        &set.spec.selector,
                        c.metadata.labels.as_ref().unwrap_or(&empty),
                    )
            })
        })
        .copied()
        .collect()
}

fn orphan_message(o: &Orphan) -> String {
    let size = o
        .requested_bytes
        .map(human_bytes)
        .unwrap_or_else(|| "no size".into());
    let why = match o.reason {
        Reason::ScaledDown => format!(
            "ordinal {} is outside the replicas of StatefulSet {} (scaled down)",
            o.ordinal, o.statefulset
        ),
        Reason::SetDeleted => format!("its StatefulSet {} no longer exists", o.statefulset),
    };
    let verified = if o.verified {
        ""
    } else {
        " (unverified: only its name and labels point at the set)"
    };
    format!(
        "claim {} ({size} requested, template {}) is orphaned: {why}{verified}; its volume is \
         kept and billed. Review it with: stateward gc -n {}, and delete it with --delete",
        o.claim, o.template, o.namespace
    )
}

/// One pass over `inventory` with `policy` at `now` (seconds since the Unix epoch).
pub fn audit(policy: &Policy, inventory: &Inventory, now: i64) -> AuditReport {
    let mut report = AuditReport {
        policy: policy.name.clone(),
        ..AuditReport::default()
    };
    let mut context = StaticContext::default();
    for svc in &inventory.services {
        context.add_service(ServiceInfo::from_service(svc, "default"));
    }
    for sts in &inventory.statefulsets {
        context.add_statefulset(StatefulSetInfo::from_statefulset(sts, "default"));
    }
    for pdb in &inventory.pdbs {
        context.add_pdb(PdbInfo::from_pdb(pdb, "default"));
    }
    let selected = |ns: &str, name: &str| {
        inventory
            .selected
            .as_ref()
            .is_none_or(|s| s.contains(&(ns.to_owned(), name.to_owned())))
    };
    let nodes: HashMap<&str, &Node> = inventory
        .nodes
        .iter()
        .map(|n| (name_of(&n.metadata), n))
        .collect();
    let mut pods_by_owner: HashMap<&str, Vec<&Pod>> = HashMap::new();
    for pod in &inventory.pods {
        if let Some(owner) = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true) && o.kind == "StatefulSet")
        {
            pods_by_owner
                .entry(owner.uid.as_str())
                .or_default()
                .push(pod);
        }
    }
    let mut claims_by_ns: HashMap<&str, Vec<&PersistentVolumeClaim>> = HashMap::new();
    for claim in &inventory.claims {
        claims_by_ns
            .entry(ns_of(&claim.metadata))
            .or_default()
            .push(claim);
    }
    let mut pdbs_by_ns: HashMap<&str, Vec<&PodDisruptionBudget>> = HashMap::new();
    for pdb in &inventory.pdbs {
        pdbs_by_ns
            .entry(ns_of(&pdb.metadata))
            .or_default()
            .push(pdb);
    }
    let live_rules: Vec<_> = RULES
        .iter()
        .filter_map(|info| match info.action {
            Action::Validate {
                check: Check::Live(f),
                ..
            } => Some((info.id, f)),
            _ => None,
        })
        .collect();

    let mut named_services: HashSet<(String, String)> = HashSet::new();
    for sts in &inventory.statefulsets {
        let (ns, name) = (ns_of(&sts.metadata), name_of(&sts.metadata));
        if !selected(ns, name) || policy.is_excluded(ns) {
            continue;
        }
        report.summary.statefulsets += 1;
        if let Some(service) = &sts.spec.service_name {
            named_services.insert((ns.to_owned(), service.clone()));
        }
        let mut review = Review::create(Resource::StatefulSet(Box::new(sts.clone())));
        review.namespace = ns.to_owned();
        let decision = evaluate_stage(policy, &review, &context, Stage::Validate);
        report.sets.push(SetOutcome {
            namespace: ns.to_owned(),
            name: name.to_owned(),
            uid: sts.metadata.uid.clone().unwrap_or_default(),
            service: sts.spec.service_name.clone(),
            skipped: decision.skipped.clone(),
        });
        let mut push = |rule: RuleId, mode: Level, field: String, message: String| {
            report.findings.push(AuditFinding {
                kind: "StatefulSet",
                namespace: ns.to_owned(),
                name: name.to_owned(),
                statefulset: Some(name.to_owned()),
                rule,
                mode,
                field,
                message,
            });
        };
        for f in decision.findings {
            if f.mode != Level::Mutate {
                push(f.rule, f.mode, f.field, f.message);
            }
        }
        let uid = sts.metadata.uid.as_deref().unwrap_or_default();
        let pods = pods_by_owner.get(uid).cloned().unwrap_or_default();
        let claims = claims_of(
            sts,
            claims_by_ns.get(ns).map(Vec::as_slice).unwrap_or_default(),
        );
        let pdbs = pdbs_by_ns.get(ns).cloned().unwrap_or_default();
        let input = LiveInput {
            policy,
            set: sts,
            pods: &pods,
            claims: &claims,
            pdbs: &pdbs,
            nodes: &nodes,
            now,
        };
        for (id, rule) in &live_rules {
            let Some(mode) = level(policy.mode(*id)) else {
                continue;
            };
            if decision.skipped.contains(id) {
                continue;
            }
            let mut sink = Sink::default();
            rule(&input, &mut sink);
            for v in sink.violations {
                let mode = if v.advisory {
                    mode.min(Level::Warn)
                } else {
                    mode
                };
                push(*id, mode, v.field, v.message);
            }
        }
    }

    for svc in &inventory.services {
        let (ns, name) = (ns_of(&svc.metadata), name_of(&svc.metadata));
        if policy.is_excluded(ns)
            || (inventory.selected.is_some()
                && !named_services.contains(&(ns.to_owned(), name.to_owned())))
        {
            continue;
        }
        report.summary.services += 1;
        let mut review = Review::create(Resource::Service(Box::new(svc.clone())));
        review.namespace = ns.to_owned();
        let decision = evaluate_stage(policy, &review, &context, Stage::Validate);
        for f in decision.findings {
            if f.mode == Level::Mutate {
                continue;
            }
            report.findings.push(AuditFinding {
                kind: "Service",
                namespace: ns.to_owned(),
                name: name.to_owned(),
                statefulset: None,
                rule: f.rule,
                mode: f.mode,
                field: f.field,
                message: f.message,
            });
        }
    }

    if let Some(mode) = level(policy.mode(RuleId::StatefulSetOrphanedClaim)) {
        let claims: Vec<_> = inventory.claims.iter().map(claim_view).collect();
        let sets: Vec<_> = inventory.statefulsets.iter().map(set_view).collect();
        let pods: Vec<_> = inventory.pods.iter().map(pod_view).collect();
        let mut orphans: Vec<Orphan> = classify(&claims, &sets, &pods)
            .into_iter()
            .filter(|o| !policy.is_excluded(&o.namespace))
            .filter(|o| {
                inventory
                    .selected
                    .as_ref()
                    .is_none_or(|s| s.contains(&(o.namespace.clone(), o.statefulset.clone())))
            })
            .collect();
        orphans.sort_by(|a, b| (&a.namespace, &a.claim).cmp(&(&b.namespace, &b.claim)));
        for o in orphans {
            report.summary.orphaned_claims += 1;
            report.summary.orphaned_bytes += o.requested_bytes.unwrap_or(0);
            report.findings.push(AuditFinding {
                kind: "PersistentVolumeClaim",
                namespace: o.namespace.clone(),
                name: o.claim.clone(),
                statefulset: Some(o.statefulset.clone()),
                rule: RuleId::StatefulSetOrphanedClaim,
                mode,
                field: format!("persistentvolumeclaims/{}", o.claim),
                message: orphan_message(&o),
            });
            report.orphaned_claims.push(OrphanRow {
                age_seconds: o.created.map(|c| now - c),
                orphan: o,
            });
        }
    }

    let in_scope = |ns: &str| !policy.is_excluded(ns);
    report.summary.pods = inventory
        .pods
        .iter()
        .filter(|p| in_scope(ns_of(&p.metadata)))
        .count();
    report.summary.claims = inventory
        .claims
        .iter()
        .filter(|c| in_scope(ns_of(&c.metadata)))
        .count();
    report.summary.nodes = inventory.nodes.len();
    for f in &report.findings {
        match f.mode {
            Level::Enforce => report.summary.enforce += 1,
            Level::Warn => report.summary.warn += 1,
            Level::Audit => report.summary.audit += 1,
            Level::Mutate => {}
        }
    }
    report.findings.sort_by(|a, b| {
        let group = |f: &AuditFinding| {
            (
                f.namespace.clone(),
                f.statefulset.is_none(),
                f.statefulset.clone().unwrap_or_else(|| f.name.clone()),
            )
        };
        group(a)
            .cmp(&group(b))
            .then(b.mode.cmp(&a.mode))
            .then(a.rule.cmp(&b.rule))
            .then(a.field.cmp(&b.field))
    });
    report
}

/// The report as a person reads it: findings grouped by StatefulSet (Services on their own),
/// the most severe first.
pub fn render_text(report: &AuditReport) -> String {
    let mut out = String::new();
    let mut current: Option<(String, String)> = None;
    for f in &report.findings {
        let heading = match &f.statefulset {
            Some(set) => format!("StatefulSet {}/{set}", f.namespace),
            None => format!("{} {}/{}", f.kind, f.namespace, f.name),
        };
        let key = (f.namespace.clone(), heading.clone());
        if current.as_ref() != Some(&key) {
            if current.is_some() {
                out.push('\n');
            }
            out.push_str(&heading);
            out.push('\n');
            current = Some(key);
        }
        out.push_str(&format!(
            "  {:7}  {}  {}\n           {}\n",
            f.mode.as_str().to_uppercase(),
            f.rule,
            f.field,
            f.message
        ));
    }
    if current.is_some() {
        out.push('\n');
    }
    let s = &report.summary;
    out.push_str(&format!(
        "policy {}: {} statefulsets, {} services, {} pods, {} claims, {} nodes: {} enforce, \
         {} warn, {} audit; {} orphaned claim(s), {} requested\n",
        report.policy,
        s.statefulsets,
        s.services,
        s.pods,
        s.claims,
        s.nodes,
        s.enforce,
        s.warn,
        s.audit,
        s.orphaned_claims,
        human_bytes(s.orphaned_bytes)
    ));
    out
}

/// Lists every object of `K` in pages of [`PAGE_SIZE`] ([`paged::list`]: a list that
/// expired while paging is listed again or fails the pass), each kept as `keep` makes it.
async fn list_all<K, V>(
    client: &Client,
    namespace: Option<&str>,
    params: ListParams,
    what: &'static str,
    scope: &str,
    keep: impl FnMut(K) -> V,
) -> Result<Vec<V>, AuditError>
where
    K: kube::Resource<DynamicType = ()> + serde::de::DeserializeOwned,
{
    paged::list(client, namespace, &params, keep)
        .await
        .map_err(|err| AuditError::List {
            what,
            scope: scope.to_owned(),
            message: match &err {
                ListError::Api(kube::Error::Api(status)) if status.code == 403 => {
                    format!("forbidden (RBAC): {}", status.message)
                }
                _ => err.to_string(),
            },
        })
}

/// Lists what one pass reads: in `namespace`, or every namespace.
pub async fn inventory(
    client: &Client,
    namespace: Option<&str>,
    selector: Option<&str>,
) -> Result<Inventory, AuditError> {
    let scope = match namespace {
        Some(ns) => format!("in namespace {ns}"),
        None => "in all namespaces".to_owned(),
    };
    let all = ListParams::default;
    let statefulsets = list_all(
        client,
        namespace,
        all(),
        "statefulsets",
        &scope,
        |s: StatefulSet| s,
    )
    .await?;
    // The selector picks the sets to report; every set is still needed as context (and so
    // that claims of unselected sets are not taken for orphans).
    let selected = match selector {
        Some(selector) => Some(
            list_all(
                client,
                namespace,
                all().labels(selector),
                "statefulsets",
                &scope,
                |s: Slim<StatefulSet>| {
                    (
                        ns_of(&s.0.metadata).to_owned(),
                        name_of(&s.0.metadata).to_owned(),
                    )
                },
            )
            .await?
            .into_iter()
            .collect(),
        ),
        None => None,
    };
    Ok(Inventory {
        statefulsets,
        selected,
        services: list_all(client, namespace, all(), "services", &scope, |s: Service| s).await?,
        pdbs: list_all(
            client,
            namespace,
            all(),
            "poddisruptionbudgets",
            &scope,
            |p: PodDisruptionBudget| p,
        )
        .await?,
        pods: list_all(
            client,
            namespace,
            all(),
            "pods",
            &scope,
            |p: Slim<Pod, Audit>| p.0,
        )
        .await?,
        claims: list_all(
            client,
            namespace,
            all(),
            "persistentvolumeclaims",
            &scope,
            |c: Slim<PersistentVolumeClaim, Audit>| c.0,
        )
        .await?,
        nodes: list_all(
            client,
            None,
            all(),
            "nodes",
            "(cluster-scoped)",
            |n: Slim<Node, Audit>| n.0,
        )
        .await?,
    })
}

#[cfg(test)]
mod tests {
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
        assert_eq!(report.exit(), Exit::Failure);
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
        let text = render_text(&report);
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
        assert_eq!(report.exit(), Exit::Ok);
    }
}
