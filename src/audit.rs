//! The audit: one read-only pass over the live StatefulSets of a cluster, and (in
//! [`watch`], [`reports`], [`openreports`]) the OpenReports reports of `audit --watch`.
//! Nothing here prints or reads flags: `stateward audit` is [`crate::commands::audit`].
//!
//! It lists StatefulSets, Services, PodDisruptionBudgets, pods, claims and nodes (500 per
//! page), evaluates every StatefulSet and Service with the webhook's engine and policy as
//! existing objects (the validation of a CREATE of the object as it is: no mutation), and
//! adds the live-state rules of the rule table ([`crate::policy::rules::live`]) and the
//! orphaned claims of the collector's classifier.
//!
//! [`pass`] streams: it keeps compact projections of the sets, pods and claims ([`index`])
//! and sends the StatefulSets and Services through the engine page by page, keeping only
//! findings. [`audit`] runs the same steps over objects in memory (tests, benches); it is
//! pure: the clock is an input.
use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Client;
use kube::api::ListParams;
use serde::Serialize;

use crate::cluster::Slim;
use crate::cluster::paged::{self, ListError, Next};
use crate::cluster::views::{claim_view, pod_view, set_view};
use crate::gc::classify::{Classifier, Orphan, PodIndex, SetView};
use crate::policy::context::{PdbInfo, ServiceInfo, StatefulSetInfo};
use crate::policy::identity::claim_of_set;
use crate::policy::{Level, Policy, RuleId, StaticContext, reads_orphans};
use kube::core::SelectorExt;

mod assemble;
mod evaluate;
pub mod index;
pub mod openreports;
pub mod reports;
pub mod slim;
pub mod watch;

use assemble::Assembler;
pub use assemble::{Chunk, Sink};
use evaluate::{Evaluated, Known, evaluate_service};
use index::{ClaimEntry, PodEntry};
use slim::Audit;

/// Objects per list request.
pub const PAGE_SIZE: u32 = 500;

/// StatefulSets per list request: a set is the largest object a pass reads (a page of 500
/// of the fleet bench's sets is 8 MB of text, most of the pass's peak), so its pages are
/// smaller.
pub const SET_PAGE_SIZE: u32 = 100;

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
    #[error("cannot write the report: {0}")]
    Output(std::io::Error),
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
    /// Whether any finding is at enforce (the command then exits 1, as `check`).
    pub fn has_enforce(&self) -> bool {
        self.summary.enforce > 0
    }
}

/// `text` without spare capacity: a report holds a finding per object of the fleet, and a
/// message made by `format!` may have twice its length allocated.
fn exact(mut text: String) -> String {
    text.shrink_to_fit();
    text
}

fn ns_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("default")
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

/// What a pass keeps of the StatefulSets it lists first: the webhook's projection for the
/// context rules, the classifier's view (without annotations: the classifier reads none of
/// a set's), the claim templates and where each set is, by namespace and name.
#[derive(Default)]
struct Sets {
    context: StaticContext,
    views: Vec<SetView>,
    templates: Vec<Vec<String>>,
    /// `spec.serviceName` as it is.
    services: Vec<Option<String>>,
    by_name: HashMap<(String, String), usize>,
}

impl Sets {
    fn add(&mut self, sts: &StatefulSet) {
        let info = StatefulSetInfo::from_statefulset(sts, "default");
        let mut view = set_view(sts);
        view.annotations = Default::default();
        self.by_name.insert(
            (
                ns_of(&sts.metadata).to_owned(),
                name_of(&sts.metadata).to_owned(),
            ),
            self.views.len(),
        );
        self.templates.push(info.claim_templates.clone());
        self.services.push(sts.spec.service_name.clone());
        self.views.push(view);
        self.context.add_statefulset(info);
    }

    fn namespace(&self, i: usize) -> &str {
        // `set_view` keeps an unset namespace empty; the pass reads it as "default".
        let ns = &*self.views[i].namespace;
        if ns.is_empty() { "default" } else { ns }
    }

    /// The (namespace, `serviceName`) of every set: the Services the context keeps.
    fn service_names(&self) -> HashSet<(String, String)> {
        (0..self.views.len())
            .filter_map(|i| {
                let service = self.services[i].clone()?;
                Some((self.namespace(i).to_owned(), service))
            })
            .collect()
    }

    /// The (namespace, `serviceName`) of the sets the pass reports: with `-l`, only their
    /// Services are evaluated.
    fn reported_services(
        &self,
        policy: &Policy,
        selected: &Option<HashSet<(String, String)>>,
    ) -> Option<HashSet<(String, String)>> {
        let selected = selected.as_ref()?;
        Some(
            (0..self.views.len())
                .filter(|&i| {
                    let ns = self.namespace(i);
                    selected.contains(&(ns.to_owned(), self.views[i].name.to_string()))
                        && !policy.is_excluded(ns)
                })
                .filter_map(|i| {
                    let service = self.services[i].clone()?;
                    Some((self.namespace(i).to_owned(), service))
                })
                .collect(),
        )
    }

    /// The sets that claim `claim`: `<template>-<set>-<ordinal>` for one of the set's
    /// templates, in its namespace, with labels matching its selector (as
    /// [`claim_of_set`] and the controller read it).
    fn claiming(&self, claim: &PersistentVolumeClaim) -> Vec<usize> {
        let ns = ns_of(&claim.metadata);
        let name = name_of(&claim.metadata);
        let Some((head, _)) = name.rsplit_once('-') else {
            return Vec::new();
        };
        let empty = BTreeMap::new();
        let labels = claim.metadata.labels.as_ref().unwrap_or(&empty);
        let mut out = Vec::new();
        for (i, _) in head.match_indices('-') {
            let set = &head[i + 1..];
            let Some(&k) = self.by_name.get(&(ns.to_owned(), set.to_owned())) else {
                continue;
            };
            if claim_of_set(name, set, &self.templates[k]).is_some()
                && self.views[k]
                    .selector
                    .as_ref()
                    .is_some_and(|s| s.matches(labels))
                && !out.contains(&k)
            {
                out.push(k);
            }
        }
        out
    }

    /// The report of every set `policy` does not exclude (selected or not): the reports
    /// `audit --watch` keeps.
    fn live_reports(&self, policy: &Policy) -> HashSet<(String, String)> {
        (0..self.views.len())
            .filter(|&i| !policy.is_excluded(self.namespace(i)))
            .map(|i| {
                let view = &self.views[i];
                (
                    self.namespace(i).to_owned(),
                    reports::set_report_name(&view.name, &view.uid.to_string()),
                )
            })
            .collect()
    }
}

/// What a pass keeps of the pods: the classifier's index (only when orphans are reported)
/// and, by the uid of their controlling StatefulSet, the live rules' entries.
#[derive(Default)]
struct Pods {
    index: PodIndex,
    by_owner: HashMap<String, Vec<PodEntry>>,
    in_scope: usize,
}

impl Pods {
    /// Drops the spare capacity of each set's entries once the list is in (a vector
    /// grown by doubling holds up to twice its entries).
    fn settle(&mut self) {
        self.by_owner.values_mut().for_each(Vec::shrink_to_fit);
    }

    fn add(&mut self, policy: &Policy, orphans: bool, pod: &Pod) {
        if orphans {
            self.index.add(pod_view(pod));
        }
        if let Some(owner) = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true) && o.kind == "StatefulSet")
        {
            self.by_owner
                .entry(owner.uid.clone())
                .or_default()
                .push(PodEntry::of(pod));
        }
        if !policy.is_excluded(ns_of(&pod.metadata)) {
            self.in_scope += 1;
        }
    }
}

/// What a pass keeps of the claims: the live rules' entries of each set's claims, and the
/// orphans (each claim is classified as its page comes in, then dropped).
#[derive(Default)]
struct Claims {
    by_set: HashMap<usize, Vec<ClaimEntry>>,
    orphans: Vec<Orphan>,
    in_scope: usize,
}

impl Claims {
    /// As [`Pods::settle`].
    fn settle(&mut self) {
        self.by_set.values_mut().for_each(Vec::shrink_to_fit);
        self.orphans.shrink_to_fit();
    }

    fn add(
        &mut self,
        policy: &Policy,
        selected: &Option<HashSet<(String, String)>>,
        sets: &Sets,
        classifier: Option<&Classifier<'_>>,
        claim: &PersistentVolumeClaim,
    ) {
        let claiming = sets.claiming(claim);
        if !claiming.is_empty() {
            let entry = ClaimEntry::of(claim);
            for k in claiming {
                self.by_set.entry(k).or_default().push(entry.clone());
            }
        }
        if let Some(orphan) = classifier.and_then(|c| c.orphan(&claim_view(claim)))
            && !policy.is_excluded(&orphan.namespace)
            && selected
                .as_ref()
                .is_none_or(|s| s.contains(&(orphan.namespace.clone(), orphan.statefulset.clone())))
        {
            self.orphans.push(orphan);
        }
        if !policy.is_excluded(ns_of(&claim.metadata)) {
            self.in_scope += 1;
        }
    }
}

fn pdbs_by_namespace(pdbs: &[PodDisruptionBudget]) -> HashMap<String, Vec<PodDisruptionBudget>> {
    let mut by_ns: HashMap<String, Vec<PodDisruptionBudget>> = HashMap::new();
    for pdb in pdbs {
        by_ns
            .entry(ns_of(&pdb.metadata).to_owned())
            .or_default()
            .push(pdb.clone());
    }
    by_ns
}

/// One pass over `inventory` with `policy` at `now` (seconds since the Unix epoch): the
/// steps of [`pass`], in its order, over objects already in memory (the sets evaluated in
/// namespace order, as the API server lists them).
pub fn audit(policy: &Policy, inventory: &Inventory, now: i64) -> AuditReport {
    let orphans_on = reads_orphans(policy);
    let mut sets = Sets::default();
    for sts in &inventory.statefulsets {
        sets.add(sts);
    }
    for pdb in &inventory.pdbs {
        sets.context.add_pdb(PdbInfo::from_pdb(pdb, "default"));
    }
    let pdbs = pdbs_by_namespace(&inventory.pdbs);
    let mut pods = Pods::default();
    for pod in &inventory.pods {
        pods.add(policy, orphans_on, pod);
    }
    let mut claims = Claims::default();
    {
        let classifier = orphans_on
            .then(|| Classifier::with_pod_index(&sets.views, std::mem::take(&mut pods.index)));
        for claim in &inventory.claims {
            claims.add(
                policy,
                &inventory.selected,
                &sets,
                classifier.as_ref(),
                claim,
            );
        }
    }
    let wanted = sets.service_names();
    let reported = sets.reported_services(policy, &inventory.selected);
    let mut services = Evaluated::default();
    let mut infos = Vec::new();
    for svc in &inventory.services {
        let info = ServiceInfo::from_service(svc, "default");
        if wanted.contains(&(info.namespace.clone(), info.name.clone())) {
            infos.push(info);
        }
        evaluate_service(policy, &sets.context, &reported, &mut services, svc.clone());
    }
    for info in infos {
        sets.context.add_service(info);
    }
    let nodes: HashMap<&str, &Node> = inventory
        .nodes
        .iter()
        .map(|n| (name_of(&n.metadata), n))
        .collect();
    let mut known = Known {
        policy,
        now,
        selected: &inventory.selected,
        context: &sets.context,
        sets: &sets,
        pods: pods.by_owner,
        claims: claims.by_set,
        pdbs: &pdbs,
        nodes: &nodes,
    };
    let mut report = AuditReport {
        policy: policy.name.clone(),
        ..AuditReport::default()
    };
    let mut assembler = Assembler::new(policy, now, services.findings, claims.orphans);
    let mut order: Vec<&StatefulSet> = inventory.statefulsets.iter().collect();
    order.sort_by_key(|s| ns_of(&s.metadata));
    for sts in order {
        if let Some((findings, outcome)) = known.evaluate_set(sts.clone()) {
            for chunk in assembler.set(findings, outcome) {
                known.release(&chunk);
                report.push(chunk);
            }
        }
    }
    let (rest, summary) = assembler.finish();
    rest.into_iter().for_each(|chunk| report.push(chunk));
    report.summary = Summary {
        services: services.count,
        pods: pods.in_scope,
        claims: claims.in_scope,
        nodes: inventory.nodes.len(),
        ..summary
    };
    report
}

fn list_error(what: &'static str, scope: &str, err: ListError) -> AuditError {
    AuditError::List {
        what,
        scope: scope.to_owned(),
        message: match &err {
            ListError::Api(kube::Error::Api(status)) if status.code == 403 => {
                format!("forbidden (RBAC): {}", status.message)
            }
            _ => err.to_string(),
        },
    }
}

/// Folds every object of `K` in pages of [`PAGE_SIZE`] ([`paged::fold`]: a list that
/// expired while paging is listed again from a fresh state, or fails the pass).
async fn fold_all<K, S>(
    client: &Client,
    namespace: Option<&str>,
    params: ListParams,
    what: &'static str,
    scope: &str,
    init: impl Fn() -> S,
    step: impl FnMut(&mut S, K),
) -> Result<S, AuditError>
where
    K: kube::Resource<DynamicType = ()> + serde::de::DeserializeOwned,
{
    paged::fold(client, namespace, &params, init, step)
        .await
        .map(|(state, _)| state)
        .map_err(|err| list_error(what, scope, err))
}

/// A pass over the cluster and the reports `audit --watch` keeps.
#[derive(Debug, Default)]
pub struct Listed {
    pub report: AuditReport,
    /// (namespace, report name) of every StatefulSet the policy does not exclude.
    pub live_sets: HashSet<(String, String)>,
}

/// What a pass sent leaves: its summary and the reports `audit --watch` keeps.
#[derive(Debug, Default)]
pub struct Passed {
    pub summary: Summary,
    /// (namespace, report name) of every StatefulSet the policy does not exclude.
    pub live_sets: HashSet<(String, String)>,
}

/// [`pass_into`], keeping the whole report.
pub async fn pass(
    client: &Client,
    namespace: Option<&str>,
    selector: Option<&str>,
    policy: &Policy,
    now: i64,
) -> Result<Listed, AuditError> {
    let mut report = AuditReport {
        policy: policy.name.clone(),
        ..AuditReport::default()
    };
    let passed = pass_into(client, namespace, selector, policy, now, &mut report).await?;
    report.summary = passed.summary;
    Ok(Listed {
        report,
        live_sets: passed.live_sets,
    })
}

/// One pass over the cluster, in `namespace` or every namespace, with `policy` at `now`,
/// each namespace sent to `sink` as soon as it is complete.
///
/// Memory follows a page, the projections and one namespace's findings, not the fleet's
/// objects: the StatefulSets are listed twice, first into the projections the context
/// rules, the classifier and the claims read ([`Sets`]), then page by page through the
/// engine; pods and claims are decoded sparsely into entries of a few fields ([`index`]),
/// each claim classified as it comes in; Services go through the engine page by page as
/// they are listed, keeping only those a set names for the context. When the sets of a
/// namespace are evaluated, the namespace goes to `sink` and its entries are dropped.
///
/// Every list is paged; a list that expires while paging starts again from nothing, or
/// fails the pass: no finding comes from a partial list. The last list, the sets', starts
/// again after the namespaces sent: a namespace is sent once, whole. A list that fails
/// after namespaces were sent fails the pass; what was sent stands (each namespace is
/// complete), the rest is not sent.
pub async fn pass_into(
    client: &Client,
    namespace: Option<&str>,
    selector: Option<&str>,
    policy: &Policy,
    now: i64,
    sink: &mut impl Sink,
) -> Result<Passed, AuditError> {
    let scope = match namespace {
        Some(ns) => format!("in namespace {ns}"),
        None => "in all namespaces".to_owned(),
    };
    let scope = scope.as_str();
    let all = ListParams::default;
    let orphans_on = reads_orphans(policy);
    let sets_page = || all().limit(SET_PAGE_SIZE);
    let mut sets = fold_all(
        client,
        namespace,
        sets_page(),
        "statefulsets",
        scope,
        Sets::default,
        |sets, sts: Slim<StatefulSet, Audit>| sets.add(&sts.0),
    )
    .await?;
    // The selector picks the sets to report; every set is still needed as context (and so
    // that claims of unselected sets are not taken for orphans).
    let selected: Option<HashSet<(String, String)>> = match selector {
        Some(selector) => Some(
            fold_all(
                client,
                namespace,
                all().labels(selector),
                "statefulsets",
                scope,
                HashSet::new,
                |selected, s: Slim<StatefulSet>| {
                    selected.insert((
                        ns_of(&s.0.metadata).to_owned(),
                        name_of(&s.0.metadata).to_owned(),
                    ));
                },
            )
            .await?,
        ),
        None => None,
    };
    let pdbs = fold_all(
        client,
        namespace,
        all(),
        "poddisruptionbudgets",
        scope,
        Vec::new,
        |pdbs, pdb: Slim<PodDisruptionBudget, Audit>| {
            let mut pdb = pdb.0;
            pdb.status = None;
            pdbs.push(pdb);
        },
    )
    .await?;
    for pdb in &pdbs {
        sets.context.add_pdb(PdbInfo::from_pdb(pdb, "default"));
    }
    let pdbs = pdbs_by_namespace(&pdbs);
    let nodes = fold_all(
        client,
        None,
        all(),
        "nodes",
        "(cluster-scoped)",
        Vec::new,
        |nodes, n: Slim<Node, Audit>| nodes.push(n.0),
    )
    .await?;
    let mut pods = fold_all(
        client,
        namespace,
        all(),
        "pods",
        scope,
        Pods::default,
        |pods, p: Slim<Pod, Audit>| pods.add(policy, orphans_on, &p.0),
    )
    .await?;
    pods.settle();
    let mut claims = {
        let classifier = orphans_on
            .then(|| Classifier::with_pod_index(&sets.views, std::mem::take(&mut pods.index)));
        let (sets, selected) = (&sets, &selected);
        fold_all(
            client,
            namespace,
            all(),
            "persistentvolumeclaims",
            scope,
            Claims::default,
            |claims, c: Slim<PersistentVolumeClaim, Audit>| {
                claims.add(policy, selected, sets, classifier.as_ref(), &c.0)
            },
        )
        .await?
    };
    claims.settle();
    let wanted = sets.service_names();
    let reported = sets.reported_services(policy, &selected);
    let (services, infos) = {
        let (context, reported, wanted) = (&sets.context, &reported, &wanted);
        fold_all(
            client,
            namespace,
            all(),
            "services",
            scope,
            || (Evaluated::default(), Vec::new()),
            |(out, infos), svc: Slim<Service, Audit>| {
                let svc = svc.0;
                let info = ServiceInfo::from_service(&svc, "default");
                if wanted.contains(&(info.namespace.clone(), info.name.clone())) {
                    infos.push(info);
                }
                evaluate_service(policy, context, reported, out, svc);
            },
        )
        .await?
    };
    for info in infos {
        sets.context.add_service(info);
    }
    let node_refs: HashMap<&str, &Node> = nodes.iter().map(|n| (name_of(&n.metadata), n)).collect();
    let mut known = Known {
        policy,
        now,
        selected: &selected,
        context: &sets.context,
        sets: &sets,
        pods: pods.by_owner,
        claims: claims.by_set,
        pdbs: &pdbs,
        nodes: &node_refs,
    };
    let mut assembler = Assembler::new(policy, now, services.findings, claims.orphans);
    let mut pager = paged::Pager::<Slim<StatefulSet, Audit>>::new(namespace, &sets_page());
    let mut restarted = false;
    loop {
        let page = match pager.next(client).await {
            Ok(Next::Page(page)) => page,
            Ok(Next::Restarted) => {
                restarted = true;
                assembler.restart();
                continue;
            }
            Ok(Next::Done) => break,
            Err(err) => return Err(list_error("statefulsets", scope, err)),
        };
        for sts in page {
            if restarted && assembler.was_sent(ns_of(&sts.0.metadata)) {
                continue;
            }
            let Some((findings, outcome)) = known.evaluate_set(sts.0) else {
                continue;
            };
            for chunk in assembler.set(findings, outcome) {
                known.release(&chunk);
                sink.namespace(chunk).await.map_err(AuditError::Output)?;
            }
        }
    }
    let (rest, summary) = assembler.finish();
    for chunk in rest {
        known.release(&chunk);
        sink.namespace(chunk).await.map_err(AuditError::Output)?;
    }
    Ok(Passed {
        summary: Summary {
            services: services.count,
            pods: pods.in_scope,
            claims: claims.in_scope,
            nodes: nodes.len(),
            ..summary
        },
        live_sets: sets.live_reports(policy),
    })
}

#[cfg(test)]
mod tests;
