//! The one-shot collector: list claims, sets and pods ([`snapshot`]), plan the orphans
//! ([`plan`]), render the plan, and delete the planned claims with uid and resourceVersion
//! preconditions ([`delete`]), so a claim re-created or changed since the plan is never
//! removed; a closed gate (a signal) finishes the deletion in flight and skips the rest.
//! It prints nothing and reads no flags: `stateward gc` ([`crate::commands::gc`]) does.
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, ListParams, Preconditions, VersionMatch};
use kube::{Api, Client};
use serde::Serialize;

use super::classify::{ClaimView, Classifier, Orphan, Pairs, PodIndex, PodView, SetView};
use crate::Exit;
use crate::cli::{GcArgs, OutputFormat};
use crate::cluster::paged::{self, ListError};
use crate::cluster::{ANNOTATION_PREFIX, Collector, Slim};
pub use crate::quantity::{human_bytes, quantity_bytes};

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("cannot list {what}: {message}")]
    List { what: &'static str, message: String },
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("invalid {flag} `{value}`: use a number with s, m, h or d (e.g. 30m, 7d)")]
    Duration { flag: &'static str, value: String },
}

/// Parses `--flag` as a duration in seconds (`90s`, `30m`, `12h`, `7d`).
pub fn parse_duration_flag(flag: &'static str, text: &str) -> Result<i64, GcError> {
    crate::duration::seconds(text).ok_or_else(|| GcError::Duration {
        flag,
        value: text.to_owned(),
    })
}

/// The annotations under `stateward.io/`: the only ones the collector reads.
fn stateward_annotations(annotations: Option<&BTreeMap<String, String>>) -> Pairs {
    annotations
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with(ANNOTATION_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A pod phase, not allocated when it is one Kubernetes defines.
fn phase(text: &str) -> Cow<'static, str> {
    match ["Pending", "Running", "Succeeded", "Failed", "Unknown"]
        .into_iter()
        .find(|p| *p == text)
    {
        Some(p) => Cow::Borrowed(p),
        None => Cow::Owned(text.to_owned()),
    }
}

pub fn claim_view(pvc: &PersistentVolumeClaim) -> ClaimView {
    let meta = &pvc.metadata;
    ClaimView {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        resource_version: meta.resource_version.clone().unwrap_or_default(),
        labels: meta.labels.clone().unwrap_or_default().into(),
        annotations: stateward_annotations(meta.annotations.as_ref()),
        created: meta.creation_timestamp.as_ref().map(|t| t.0.as_second()),
        requested_bytes: pvc
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .and_then(|q| quantity_bytes(&q.0)),
        deleting: meta.deletion_timestamp.is_some(),
        owners: meta
            .owner_references
            .iter()
            .flatten()
            .map(|o| (o.kind.clone(), o.uid.clone()))
            .collect(),
    }
}

pub fn set_view(sts: &StatefulSet) -> SetView {
    let spec = &sts.spec;
    SetView {
        namespace: sts.metadata.namespace.clone().unwrap_or_default(),
        name: sts.metadata.name.clone().unwrap_or_default(),
        uid: sts.metadata.uid.clone().unwrap_or_default(),
        replicas: crate::policy::identity::replicas(sts),
        ordinals_start: crate::policy::identity::ordinals_start(sts),
        templates: spec
            .volume_claim_templates
            .iter()
            .flatten()
            .filter_map(|t| t.metadata.name.clone())
            .collect(),
        selector: spec.selector.clone(),
        when_scaled_delete: spec
            .persistent_volume_claim_retention_policy
            .as_ref()
            .and_then(|p| p.when_scaled.as_deref())
            == Some("Delete"),
        annotations: stateward_annotations(sts.metadata.annotations.as_ref()),
    }
}

pub fn pod_view(pod: &Pod) -> PodView {
    PodView {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        phase: pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .map(phase)
            .unwrap_or_default(),
        claims: pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .filter_map(|v| {
                v.persistent_volume_claim
                    .as_ref()
                    .map(|c| c.claim_name.clone())
            })
            .collect(),
    }
}

/// Everything the classifier needs, listed from the API or taken from the stores of
/// `gc --watch` (which share their views with it: a pass copies none).
pub struct Snapshot {
    pub claims: Vec<Arc<ClaimView>>,
    pub sets: Vec<Arc<SetView>>,
    pub pods: Vec<Arc<PodView>>,
}

/// The API of `K` in `namespace`, or in every namespace.
pub(crate) fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Lists claims, sets and pods page by page ([`crate::cluster::paged`]), each page decoded
/// into the collector's sparse objects and projected at once: what the classifier reads,
/// nothing more. A list that expired while paging is listed again or fails the command.
pub async fn snapshot(
    client: &Client,
    namespace: Option<&str>,
    selector: Option<&str>,
) -> Result<Snapshot, GcError> {
    let err = |what: &'static str| {
        move |e: ListError| GcError::List {
            what,
            message: e.to_string(),
        }
    };
    let mut claim_params = ListParams::default();
    if let Some(selector) = selector {
        claim_params = claim_params.labels(selector);
    }
    let all = ListParams::default();
    let claims = paged::list(
        client,
        namespace,
        &claim_params,
        |c: Slim<PersistentVolumeClaim, Collector>| Arc::new(claim_view(&c.0)),
    )
    .await
    .map_err(err("persistentvolumeclaims"))?;
    let sets = paged::list(
        client,
        namespace,
        &all,
        |s: Slim<StatefulSet, Collector>| Arc::new(set_view(&s.0)),
    )
    .await
    .map_err(err("statefulsets"))?;
    let pods = paged::list(client, namespace, &all, |p: Slim<Pod, Collector>| {
        Arc::new(pod_view(&p.0))
    })
    .await
    .map_err(err("pods"))?;
    Ok(Snapshot { claims, sets, pods })
}

/// The plan: orphans old enough, in a stable order.
pub fn plan(snapshot: &Snapshot, now: i64, min_age_seconds: i64) -> Vec<Orphan> {
    let classifier = Classifier::new(&snapshot.sets, &snapshot.pods);
    let orphans = snapshot
        .claims
        .iter()
        .filter_map(|c| classifier.orphan(c))
        .collect();
    old_enough(orphans, now, min_age_seconds)
}

fn old_enough(orphans: Vec<Orphan>, now: i64, min_age_seconds: i64) -> Vec<Orphan> {
    let mut orphans: Vec<Orphan> = orphans
        .into_iter()
        .filter(|o| o.created.is_none_or(|c| now - c >= min_age_seconds))
        .collect();
    orphans.sort_by(|a, b| (&a.namespace, &a.claim).cmp(&(&b.namespace, &b.claim)));
    orphans
}

/// [`plan`] of what [`snapshot`] would list, without keeping the claims or the pods: the
/// sets are listed and kept as views, the pods into a [`PodIndex`] (the claims they mount
/// and their uids, no view per pod), then the claims are classified page by page and only
/// the orphans kept. The claims' list version is read first (one claim), and the three
/// lists are read at it (`resourceVersionMatch=Exact`): one consistent snapshot. When
/// that version was compacted meanwhile (`410 Gone`), the whole listing starts again, at
/// most [`paged::RESTARTS`] times.
pub async fn plan_listed(
    client: &Client,
    namespace: Option<&str>,
    selector: Option<&str>,
    now: i64,
    min_age_seconds: i64,
) -> Result<Vec<Orphan>, GcError> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match list_and_classify(client, namespace, selector).await {
            Err((what, err)) if err.status() == Some(410) && attempts <= paged::RESTARTS => {
                tracing::info!(
                    what,
                    attempt = attempts,
                    "the snapshot's resourceVersion expired (410 Gone); listing again"
                );
            }
            Err((what, err)) => {
                return Err(GcError::List {
                    what,
                    message: err.to_string(),
                });
            }
            Ok(orphans) => return Ok(old_enough(orphans, now, min_age_seconds)),
        }
    }
}

async fn list_and_classify(
    client: &Client,
    namespace: Option<&str>,
    selector: Option<&str>,
) -> Result<Vec<Orphan>, (&'static str, ListError)> {
    let mut claim_params = ListParams::default();
    if let Some(selector) = selector {
        claim_params = claim_params.labels(selector);
    }
    let version =
        paged::version::<Slim<PersistentVolumeClaim, Collector>>(client, namespace, &claim_params)
            .await
            .map_err(|e| ("persistentvolumeclaims", e))?;
    let at = |params: ListParams| match &version {
        Some(v) => params.at(v).matching(VersionMatch::Exact),
        None => params,
    };
    let sets = paged::list(
        client,
        namespace,
        &at(ListParams::default()),
        |s: Slim<StatefulSet, Collector>| set_view(&s.0),
    )
    .await
    .map_err(|e| ("statefulsets", e))?;
    let (pods, _) = paged::fold(
        client,
        namespace,
        &at(ListParams::default()),
        PodIndex::default,
        |pods, p: Slim<Pod, Collector>| pods.add(pod_view(&p.0)),
    )
    .await
    .map_err(|e| ("pods", e))?;
    let classifier = Classifier::with_pod_index(&sets, pods);
    let (orphans, _) = paged::fold(
        client,
        namespace,
        &at(claim_params),
        Vec::new,
        |orphans, c: Slim<PersistentVolumeClaim, Collector>| {
            orphans.extend(classifier.orphan(&claim_view(&c.0)))
        },
    )
    .await
    .map_err(|e| ("persistentvolumeclaims", e))?;
    Ok(orphans)
}

/// What happened to one planned claim on `--delete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub namespace: String,
    pub claim: String,
    pub result: Deletion,
    pub reason: String,
}

/// The result of one deletion, as `gc` prints it and the metrics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    Deleted,
    /// Not deleted on purpose: unverified, changed since the plan, already gone.
    Skipped,
    /// Not tried because the gate closed (printed as `skipped`).
    NotAttempted,
    Failed,
}

impl Deletion {
    pub fn as_str(self) -> &'static str {
        match self {
            Deletion::Deleted => "deleted",
            Deletion::Skipped | Deletion::NotAttempted => "skipped",
            Deletion::Failed => "failed",
        }
    }
}

impl std::fmt::Display for Deletion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl Serialize for Deletion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Says, before each write, whether writing must stop and why (a signal, lost
/// leadership, a store that is not current).
pub type Gate<'a> = &'a (dyn Fn() -> Option<&'static str> + Send + Sync);

/// A gate that never closes.
pub fn open_gate() -> Option<&'static str> {
    None
}

/// Deletes each planned claim with uid and resourceVersion preconditions. A conflict
/// (changed or re-created since the plan) or a claim already gone is skipped, not retried.
/// Once `gate` closes the remaining claims are skipped (the request in flight completes).
pub async fn delete(
    client: &Client,
    orphans: &[Orphan],
    include_unverified: bool,
    gate: Gate<'_>,
) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    let total = orphans.len();
    for (i, orphan) in orphans.iter().enumerate() {
        let outcome = |result: Deletion, reason: String| Outcome {
            namespace: orphan.namespace.clone(),
            claim: orphan.claim.clone(),
            result,
            reason,
        };
        if !orphan.verified && !include_unverified {
            outcomes.push(outcome(
                Deletion::Skipped,
                "unverified: its StatefulSet is gone and the claim has no provenance annotations (written by gc --watch while the set lived); pass --include-unverified to delete it by name and labels".into(),
            ));
            continue;
        }
        if let Some(why) = gate() {
            outcomes.push(outcome(
                Deletion::NotAttempted,
                format!("not attempted: {why}"),
            ));
            continue;
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(orphan.uid.clone()),
                resource_version: Some(orphan.resource_version.clone()),
            }),
            ..DeleteParams::default()
        };
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &orphan.namespace);
        let result = api.delete(&orphan.claim, &params).await;
        outcomes.push(match result {
            Ok(_) => outcome(Deletion::Deleted, String::new()),
            Err(kube::Error::Api(status)) if status.code == 409 => outcome(
                Deletion::Skipped,
                "changed or re-created since the plan (precondition failed)".into(),
            ),
            Err(kube::Error::Api(status)) if status.code == 404 => {
                outcome(Deletion::Skipped, "already gone".into())
            }
            Err(err) => outcome(Deletion::Failed, err.to_string()),
        });
        if total >= 50 && (i + 1) % 50 == 0 {
            tracing::info!(done = i + 1, total, "deleting orphaned claims");
        }
    }
    outcomes
}

fn human_bytes_or_dash(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "-".into(), human_bytes)
}

fn human_age(seconds: Option<i64>) -> String {
    match seconds {
        None => "-".into(),
        Some(s) if s < 3600 => format!("{}m", s / 60),
        Some(s) if s < 86_400 => format!("{}h", s / 3600),
        Some(s) => format!("{}d", s / 86_400),
    }
}

#[derive(Serialize)]
struct JsonRow<'a> {
    #[serde(flatten)]
    orphan: &'a Orphan,
    age_seconds: Option<i64>,
}

/// Renders the plan (and the outcomes of `--delete`).
pub fn render(
    orphans: &[Orphan],
    outcomes: Option<&[Outcome]>,
    now: i64,
    format: OutputFormat,
) -> String {
    match format {
        OutputFormat::Json => {
            let rows: Vec<JsonRow> = orphans
                .iter()
                .map(|o| JsonRow {
                    orphan: o,
                    age_seconds: o.created.map(|c| now - c),
                })
                .collect();
            let mut doc = serde_json::json!({"candidates": rows});
            if let Some(outcomes) = outcomes {
                doc["results"] = serde_json::to_value(outcomes).unwrap_or_default();
            }
            format!("{doc:#}\n")
        }
        OutputFormat::Text => {
            if orphans.is_empty() {
                return "no orphaned claims\n".into();
            }
            let mut out = format!(
                "{:20} {:40} {:24} {:>7} {:12} {:>6} {:>8} {}\n",
                "NAMESPACE", "CLAIM", "STATEFULSET", "ORDINAL", "REASON", "AGE", "SIZE", "VERIFIED"
            );
            for o in orphans {
                out.push_str(&format!(
                    "{:20} {:40} {:24} {:>7} {:12} {:>6} {:>8} {}\n",
                    o.namespace,
                    o.claim,
                    o.statefulset,
                    o.ordinal,
                    o.reason.as_str(),
                    human_age(o.created.map(|c| now - c)),
                    human_bytes_or_dash(o.requested_bytes),
                    if o.verified { "yes" } else { "no" }
                ));
            }
            match outcomes {
                None => out.push_str(&format!(
                    "\n{} candidate(s); nothing was changed. Run again with --delete to delete the verified ones.\n",
                    orphans.len()
                )),
                Some(outcomes) => {
                    out.push('\n');
                    for r in outcomes {
                        let reason = if r.reason.is_empty() { String::new() } else { format!(": {}", r.reason) };
                        out.push_str(&format!("{:8} {}/{}{reason}\n", r.result, r.namespace, r.claim));
                    }
                }
            }
            out
        }
    }
}

pub async fn run_once(args: &GcArgs, client: Client, now: i64) -> Result<(String, Exit), GcError> {
    run_once_gated(args, client, now, &open_gate).await
}

/// [`run_once`], with deletions stopped when `gate` closes (a signal).
pub async fn run_once_gated(
    args: &GcArgs,
    client: Client,
    now: i64,
    gate: Gate<'_>,
) -> Result<(String, Exit), GcError> {
    let min_age = match args.min_age.as_deref() {
        Some(text) => parse_duration_flag("--min-age", text)?,
        None => 0,
    };
    let namespace = if args.all_namespaces {
        None
    } else {
        args.namespace.as_deref()
    };
    let orphans = plan_listed(&client, namespace, args.selector.as_deref(), now, min_age).await?;
    if !args.delete {
        return Ok((render(&orphans, None, now, args.output), Exit::Ok));
    }
    let outcomes = delete(&client, &orphans, args.include_unverified, gate).await;
    let failed = outcomes.iter().any(|o| o.result == Deletion::Failed);
    Ok((
        render(&orphans, Some(&outcomes), now, args.output),
        if failed { Exit::Failure } else { Exit::Ok },
    ))
}

pub fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
