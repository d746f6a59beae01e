//! `stateward audit --watch`: the audit pass every `--interval`, its findings as metrics,
//! and OpenReports `Report`s kept in step with them ([`super::reports`]).
//!
//! A pass is the one-shot audit's ([`super::pass`]: 500 per page, StatefulSets and Services
//! through the engine page by page; one list every few minutes costs the API server less
//! than watches holding every pod and claim in memory), with the policy file as it is now
//! (re-read every pass; a bad file keeps the last good one); it sets the metrics, then
//! lists the metadata of the reports stateward manages (not their results) and writes only
//! what changed, building one report at a time: server-side apply with one field manager
//! (`stateward-audit`, forced), deletions with a uid precondition. A report whose content
//! hash differs from the one in the cluster is read whole first, so that results found
//! before keep their first message and time. An unchanged fleet causes no write at all.
//!
//! Without the OpenReports CRDs (the API answers 404 for the resource) the pass keeps to
//! logs and metrics: one warning says how to install them, later passes look again
//! quietly, and a CRD installed later is picked up (logged once).
//!
//! Several replicas elect a leader over a Lease ([`crate::leader`], its own name,
//! `stateward-audit` by default); only the leader runs passes and writes.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::{Api, Client};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Deserializer};

use super::openreports::Report;
use super::reports::{self, Deletion, Desired, FIELD_MANAGER, HASH_ANNOTATION, SELECTOR};
use super::{AuditFinding, AuditReport, Chunk, Sink, pass_into};
use crate::cluster::Slim;
use crate::cluster::paged::{self, ListError};
use crate::cluster::views::now_seconds;
use crate::policy::Policy;

/// How to install the CRDs, for the one warning.
pub const INSTALL_HINT: &str = "install them with the chart (--set audit.installCRDs=true) \
    or: stateward audit --print-crds | kubectl apply -f -";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FindingLabels {
    pub rule: &'static str,
    pub mode: &'static str,
    pub namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    action: &'static str,
    result: &'static str,
}

/// Metrics of `audit --watch`. Labels are rule ids, modes and namespaces, never object
/// names.
#[derive(Clone, Default)]
pub struct AuditMetrics {
    findings: Family<FindingLabels, Gauge>,
    last_pass: Gauge,
    pass_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    writes: Family<WriteLabels, Counter>,
    pub errors: Counter,
    /// 1 while the OpenReports CRDs are served, 0 when they are missing.
    reports_enabled: Gauge,
    /// 1 while this replica holds the lease (or runs without election).
    pub leader: Gauge,
}

impl AuditMetrics {
    pub fn register(registry: &mut Registry) -> AuditMetrics {
        let m = AuditMetrics::default();
        registry.register(
            "audit_findings",
            "Findings of the last audit pass by rule, mode and namespace",
            m.findings.clone(),
        );
        registry.register(
            "audit_last_pass_timestamp_seconds",
            "When the last complete audit pass ended (seconds since the Unix epoch)",
            m.last_pass.clone(),
        );
        registry.register(
            "audit_pass_duration_seconds",
            "How long the last complete audit pass took (list, evaluate, write)",
            m.pass_seconds.clone(),
        );
        registry.register(
            "audit_report_writes",
            "OpenReports Report writes by action (apply, delete) and result (ok, error)",
            m.writes.clone(),
        );
        registry.register(
            "audit_pass_errors",
            "Audit passes that failed (a list of the cluster, or of the reports)",
            m.errors.clone(),
        );
        registry.register(
            "audit_reports_enabled",
            "1 while the OpenReports CRDs are served and reports are written, 0 without them",
            m.reports_enabled.clone(),
        );
        registry.register(
            "audit_leader",
            "1 while this replica holds the lease and runs passes",
            m.leader.clone(),
        );
        m
    }

    /// Sets the findings gauges to the counts of a pass, removing label sets that have
    /// none left.
    pub fn set_findings(&self, counts: Counts, published: &mut HashSet<FindingLabels>) {
        let counts = counts.0;
        for gone in published.iter().filter(|l| !counts.contains_key(*l)) {
            self.findings.remove(gone);
        }
        for (labels, n) in &counts {
            self.findings.get_or_create(labels).set(*n);
        }
        *published = counts.into_keys().collect();
    }

    fn clear_findings(&self, published: &mut HashSet<FindingLabels>) {
        self.findings.clear();
        published.clear();
    }

    fn write(&self, action: &'static str, ok: bool) {
        self.writes
            .get_or_create(&WriteLabels {
                action,
                result: if ok { "ok" } else { "error" },
            })
            .inc();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Audit(#[from] super::AuditError),
    #[error("cannot list reports: {0}")]
    Reports(ListError),
}

/// What `audit --watch` audits (built by `stateward audit` from its flags; how often and
/// under which Lease is the daemon's).
#[derive(Debug, Clone)]
pub struct Options {
    pub namespace: Option<String>,
    pub selector: Option<String>,
    pub policy: Option<PathBuf>,
}

/// Whether the OpenReports CRDs were there at the last look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crds {
    Unknown,
    Present,
    Missing,
}

/// What the report writes of one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Written {
    pub applied: usize,
    pub deleted: usize,
    pub unchanged: usize,
    pub failed: usize,
    /// Why the writes stopped before the end (the gate closed).
    pub stopped: Option<&'static str>,
}

/// The reader of the reports in the cluster: their metadata only.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Digest;

/// The metadata a pass reads of a report in the cluster: its key, uid, labels, content
/// hash and deletion; never its results.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct DigestMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    #[serde(deserialize_with = "hash_only")]
    annotations: Option<BTreeMap<String, String>>,
    deletion_timestamp: Option<Time>,
}

fn hash_only<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    crate::cluster::annotations_where(deserializer, |key| key == HASH_ANNOTATION)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DigestObject {
    metadata: DigestMeta,
}

impl<'de> Deserialize<'de> for Slim<Report, Digest> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let m = DigestObject::deserialize(deserializer)?.metadata;
        Ok(Slim::new(Report::new(ObjectMeta {
            name: m.name,
            namespace: m.namespace,
            uid: m.uid,
            resource_version: m.resource_version,
            labels: m.labels,
            annotations: m.annotations,
            deletion_timestamp: m.deletion_timestamp,
            ..ObjectMeta::default()
        })))
    }
}

/// The metadata of every report stateward manages in scope (500 per page, a `410` on a
/// continue lists again: [`paged`]); `Ok(None)` when the CRD is not served.
async fn existing_reports(
    client: &Client,
    namespace: Option<&str>,
) -> Result<Option<Vec<Report>>, ListError> {
    let params = ListParams::default().labels(SELECTOR);
    match paged::list(client, namespace, &params, |r: Slim<Report, Digest>| r.0).await {
        Ok(reports) => Ok(Some(reports)),
        Err(err) if err.status() == Some(404) => Ok(None),
        Err(err) => Err(err),
    }
}

/// The findings of a pass by rule, mode and namespace: the `audit_findings` gauges.
#[derive(Debug, Default)]
pub struct Counts(HashMap<FindingLabels, i64>);

impl Counts {
    pub fn add(&mut self, findings: &[AuditFinding]) {
        for f in findings {
            *self
                .0
                .entry(FindingLabels {
                    rule: f.rule.as_str(),
                    mode: f.mode.as_str(),
                    namespace: f.namespace.clone(),
                })
                .or_default() += 1;
        }
    }
}

/// Writes the reports of a pass namespace by namespace, as the pass sends them (a pass holds
/// one namespace's findings, not the fleet's): builds them one at a time and writes those
/// that changed while `gate` stays open (checked before every write); then
/// ([`Publisher::delete_stale`]) deletes the stale ones. Without the CRDs it only counts.
pub struct Publisher<'a> {
    client: &'a Client,
    policy: &'a Policy,
    /// The reports in the cluster (metadata only) by (namespace, name); `None`: no CRDs.
    current: Option<HashMap<(String, String), &'a Report>>,
    now: i64,
    metrics: &'a AuditMetrics,
    gate: &'a (dyn Fn() -> Option<&'static str> + Sync),
    wanted: HashSet<(String, String)>,
    counts: Counts,
    written: Written,
}

impl<'a> Publisher<'a> {
    pub fn new(
        client: &'a Client,
        policy: &'a Policy,
        existing: Option<&'a [Report]>,
        now: i64,
        metrics: &'a AuditMetrics,
        gate: &'a (dyn Fn() -> Option<&'static str> + Sync),
    ) -> Publisher<'a> {
        let current =
            existing.map(|existing| existing.iter().map(|r| (reports::key(r), r)).collect());
        Publisher {
            client,
            policy,
            current,
            now,
            metrics,
            gate,
            wanted: HashSet::new(),
            counts: Counts::default(),
            written: Written::default(),
        }
    }

    /// What the pass found and what its writes did.
    pub fn into_parts(self) -> (Counts, Written) {
        (self.counts, self.written)
    }

    async fn apply(&mut self, desired: &Desired<'_>) {
        let Some(current) = &self.current else {
            return;
        };
        let (client, now) = (self.client, self.now);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        for i in 0..desired.len() {
            let (ns, name) = desired.key(i);
            let before = current.get(&(ns.clone(), name.clone())).copied();
            // The listed report has no results: nothing to carry over yet.
            let Some(mut report) = desired.build(i, before, now) else {
                continue;
            };
            self.wanted.insert((ns.clone(), name.clone()));
            if self.written.stopped.is_some() {
                continue;
            }
            if reports::unchanged(before, &report) {
                self.written.unchanged += 1;
                continue;
            }
            let api: Api<Report> = Api::namespaced(client.clone(), &ns);
            if before.is_some() {
                // Results found before keep their first message and time: read it whole.
                match api.get_opt(&name).await {
                    Ok(Some(full)) => {
                        if let Some(again) = desired.build(i, Some(&full), now) {
                            report = again;
                        }
                        if reports::unchanged(Some(&full), &report) {
                            self.written.unchanged += 1;
                            continue;
                        }
                    }
                    Ok(None) => {}
                    Err(err) => {
                        self.metrics.write("apply", false);
                        self.written.failed += 1;
                        tracing::warn!(report = %format!("{ns}/{name}"), error = %err, "cannot read report");
                        continue;
                    }
                }
            }
            if let Some(why) = (self.gate)() {
                self.written.stopped = Some(why);
                continue;
            }
            match api.patch(&name, &params, &Patch::Apply(&report)).await {
                Ok(_) => {
                    self.metrics.write("apply", true);
                    self.written.applied += 1;
                }
                Err(err) => {
                    self.metrics.write("apply", false);
                    self.written.failed += 1;
                    tracing::warn!(report = %format!("{ns}/{name}"), error = %err, "cannot apply report");
                }
            }
        }
    }

    /// Deletes the reports of `existing` the pass did not want (metadata only): those of
    /// sets gone (not in `live_sets`) and orphaned-claims reports of namespaces without
    /// orphans. Nothing once the gate has closed.
    pub async fn delete_stale(
        &mut self,
        existing: &[Report],
        live_sets: &HashSet<(String, String)>,
    ) {
        if self.current.is_none() {
            return;
        }
        for Deletion {
            namespace,
            name,
            uid,
        } in existing
            .iter()
            .filter_map(|r| reports::stale(r, &self.wanted, live_sets))
        {
            if self.written.stopped.is_some() {
                return;
            }
            if let Some(why) = (self.gate)() {
                self.written.stopped = Some(why);
                return;
            }
            let api: Api<Report> = Api::namespaced(self.client.clone(), &namespace);
            let params = DeleteParams {
                preconditions: uid.map(|uid| Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&name, &params).await {
                Ok(_) => {
                    self.metrics.write("delete", true);
                    self.written.deleted += 1;
                }
                // Gone already (the garbage collector), or replaced since the list.
                Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
                Err(err) => {
                    self.metrics.write("delete", false);
                    self.written.failed += 1;
                    tracing::warn!(report = %format!("{namespace}/{name}"), error = %err, "cannot delete report");
                }
            }
        }
    }
}

impl Sink for Publisher<'_> {
    async fn namespace(&mut self, chunk: Chunk) -> std::io::Result<()> {
        self.counts.add(&chunk.findings);
        if self.current.is_some() {
            let report = AuditReport {
                findings: chunk.findings,
                orphaned_claims: chunk.orphaned_claims,
                sets: chunk.sets,
                ..AuditReport::default()
            };
            let desired = Desired::new(self.policy, &report);
            self.apply(&desired).await;
        }
        Ok(())
    }
}

/// Reads and validates a policy file (reading files is the command layer's: it passes its
/// reader in).
pub type LoadPolicy = fn(&std::path::Path) -> Result<Policy, crate::policy::PolicyError>;

/// State kept across passes.
pub struct Pass {
    pub client: Client,
    pub options: Options,
    pub metrics: AuditMetrics,
    pub policy: Policy,
    pub crds: Crds,
    published: HashSet<FindingLabels>,
    policy_error: Option<String>,
    load: LoadPolicy,
}

impl Pass {
    pub fn new(
        client: Client,
        options: Options,
        metrics: AuditMetrics,
        policy: Policy,
        load: LoadPolicy,
    ) -> Pass {
        Pass {
            load,
            client,
            options,
            metrics,
            policy,
            crds: Crds::Unknown,
            published: HashSet::new(),
            policy_error: None,
        }
    }

    /// The policy file as it is now; a bad file keeps the last good policy (logged once per
    /// distinct error).
    fn reload_policy(&mut self) {
        let Some(path) = self.options.policy.as_deref() else {
            return;
        };
        match (self.load)(path) {
            Ok(policy) => {
                if self.policy_error.take().is_some() {
                    tracing::info!(policy = %path.display(), "policy file valid again");
                }
                self.policy = policy;
            }
            Err(err) => {
                let text = err.to_string();
                if self.policy_error.as_deref() != Some(text.as_str()) {
                    tracing::error!(error = %text, "invalid policy file; keeping the last good policy");
                    self.policy_error = Some(text);
                }
            }
        }
    }

    /// Notes whether the CRDs are served; logs only the changes (one warning when they are
    /// missing, one line when they appear).
    fn crds_seen(&mut self, present: bool) {
        let now = if present {
            Crds::Present
        } else {
            Crds::Missing
        };
        if now != self.crds {
            if present {
                tracing::info!("the OpenReports CRDs are served: writing reports");
            } else {
                tracing::warn!(
                    "the OpenReports CRDs (reports.openreports.io) are not installed: findings \
                     go to logs and metrics only until they are; {INSTALL_HINT}"
                );
            }
        }
        self.crds = now;
        self.metrics.reports_enabled.set(i64::from(present));
    }

    /// Clears what only a leader publishes.
    pub fn step_down(&mut self) {
        self.metrics.clear_findings(&mut self.published);
    }

    /// One pass: list, evaluate, metrics, reports.
    pub async fn run(
        &mut self,
        gate: &(dyn Fn() -> Option<&'static str> + Sync),
    ) -> Result<Written, WatchError> {
        let started = Instant::now();
        self.reload_policy();
        let ns = self.options.namespace.clone();
        let now = now_seconds();
        let policy = self.policy.clone();
        let existing = match existing_reports(&self.client, ns.as_deref()).await {
            Ok(existing) => existing,
            Err(err) => return Err(WatchError::Reports(err)),
        };
        self.crds_seen(existing.is_some());
        let mut publisher = Publisher::new(
            &self.client,
            &policy,
            existing.as_deref(),
            now,
            &self.metrics,
            gate,
        );
        let passed = pass_into(
            &self.client,
            ns.as_deref(),
            self.options.selector.as_deref(),
            &policy,
            now,
            &mut publisher,
        )
        .await?;
        if let Some(existing) = &existing {
            publisher.delete_stale(existing, &passed.live_sets).await;
        }
        let (counts, written) = publisher.into_parts();
        self.metrics.set_findings(counts, &mut self.published);
        let summary = passed.summary;
        self.metrics.last_pass.set(now_seconds());
        self.metrics
            .pass_seconds
            .set(started.elapsed().as_secs_f64());
        tracing::info!(
            statefulsets = summary.statefulsets,
            enforce = summary.enforce,
            warn = summary.warn,
            audit = summary.audit,
            orphaned_claims = summary.orphaned_claims,
            reports_applied = written.applied,
            reports_deleted = written.deleted,
            reports_unchanged = written.unchanged,
            reports_failed = written.failed,
            stopped = written.stopped.unwrap_or(""),
            duration_ms = started.elapsed().as_millis() as u64,
            "audit pass"
        );
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditFinding;
    use crate::policy::{Level, RuleId};

    fn finding(ns: &str, rule: RuleId, mode: Level) -> AuditFinding {
        AuditFinding {
            kind: "StatefulSet",
            namespace: ns.into(),
            name: "web".into(),
            statefulset: Some("web".into()),
            rule,
            mode,
            field: "f".into(),
            message: "m".into(),
        }
    }

    #[test]
    fn findings_gauges_follow_the_last_pass() {
        let mut registry = Registry::default();
        let metrics = AuditMetrics::register(&mut registry);
        let mut published = HashSet::new();
        let mut report = AuditReport {
            findings: vec![
                finding("a", RuleId::StatefulSetReadinessProbe, Level::Warn),
                finding("a", RuleId::StatefulSetReadinessProbe, Level::Warn),
                finding("b", RuleId::StatefulSetResources, Level::Audit),
            ],
            ..AuditReport::default()
        };
        let mut counts = Counts::default();
        counts.add(&report.findings);
        metrics.set_findings(counts, &mut published);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert!(
            text.contains(
                "audit_findings{rule=\"statefulset.readiness-probe\",mode=\"warn\",namespace=\"a\"} 2"
            ),
            "{text}"
        );
        report.findings.truncate(1);
        let mut counts = Counts::default();
        counts.add(&report.findings);
        metrics.set_findings(counts, &mut published);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert!(!text.contains("namespace=\"b\""), "{text}");
        assert!(text.contains("namespace=\"a\"} 1"), "{text}");
    }
}
