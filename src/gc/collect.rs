//! The one-shot collector: list claims, sets and pods ([`snapshot`]), plan the orphans
//! ([`plan`]), and delete the planned claims with uid and resourceVersion
//! preconditions ([`delete`]), so a claim re-created or changed since the plan is never
//! removed; a closed gate (a signal) finishes the deletion in flight and skips the rest.
//! It prints nothing and reads no flags: `stateward gc` ([`crate::commands::gc`]) does.
use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, ListParams, Preconditions, VersionMatch};
use kube::{Api, Client};
use serde::Serialize;

use super::Options;
use super::classify::{ClaimView, Classifier, Orphan, PodIndex, PodView, SetView};
use crate::cluster::paged::{self, ListError};
use crate::cluster::views::{claim_view, pod_view, set_view};
use crate::cluster::{Collector, Slim};

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("cannot list {what}: {message}")]
    List { what: &'static str, message: String },
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
}

/// Everything the classifier needs, listed from the API or taken from the stores of
/// `gc --watch` (which share their views with it: a pass copies none).
pub struct Snapshot {
    pub claims: Vec<Arc<ClaimView>>,
    pub sets: Vec<Arc<SetView>>,
    pub pods: Vec<Arc<PodView>>,
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

/// What `gc` found and, with `--delete`, did: the plan and the outcome of each deletion.
#[derive(Debug, Clone, PartialEq)]
pub struct Collected {
    pub orphans: Vec<Orphan>,
    /// `None` without `--delete`.
    pub outcomes: Option<Vec<Outcome>>,
}

impl Collected {
    /// Whether a deletion failed (the command then exits 1).
    pub fn failed(&self) -> bool {
        self.outcomes
            .iter()
            .flatten()
            .any(|o| o.result == Deletion::Failed)
    }
}

/// The one-shot collector: the plan per `options`, and with `options.delete` the
/// deletions, stopped when `gate` closes (a signal).
pub async fn collect(
    options: &Options,
    client: &Client,
    now: i64,
    gate: Gate<'_>,
) -> Result<Collected, GcError> {
    let orphans = plan_listed(
        client,
        options.namespace.as_deref(),
        options.selector.as_deref(),
        now,
        options.min_age_seconds,
    )
    .await?;
    if !options.delete {
        return Ok(Collected {
            orphans,
            outcomes: None,
        });
    }
    let outcomes = delete(client, &orphans, options.include_unverified, gate).await;
    Ok(Collected {
        orphans,
        outcomes: Some(outcomes),
    })
}
