//! `stateward gc --watch`: the reconcile loop. kube-runtime reflectors keep watch-fed
//! stores of StatefulSets, claims, pods and namespaces; every `--interval` a pass
//! classifies a snapshot of the stores (nothing is listed per pass), then
//!
//! 1. keeps provenance annotations (`stateward.io/statefulset`, `…-uid`) on the claims of
//!    live sets, so a claim whose set is deleted later is known for sure (a set re-created
//!    with the same name takes its claims over: the uid moves to the new set);
//! 2. records when a claim became an orphan (`stateward.io/orphaned-since`) and clears it
//!    when the claim is wanted again; emits a Kubernetes Event on the set;
//! 3. exports the orphans as metrics (count and requested bytes by reason);
//! 4. deletes verified orphans whose StatefulSet or namespace opted in
//!    (`stateward.io/collect-orphaned-claims: "true"`) once they have been orphans for the
//!    grace period, with uid and resourceVersion preconditions. For a deleted set only the
//!    namespace annotation can opt in.
//!
//! It runs as a single replica, so no two loops delete at once. The clock is a parameter
//! of [`reconcile`], so tests need no sleeps.
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    Namespace, ObjectReference, PersistentVolumeClaim, Pod, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::json;

use super::classify::{
    OPT_IN, ORPHANED_SINCE, Reason, SET_ANNOTATION, SET_UID_ANNOTATION, claims_of_live_sets,
};
use super::collect::{GcError, Snapshot, claim_view, delete, plan, pod_view, set_view};
use crate::Exit;
use crate::cli::GcArgs;
use crate::metrics::Metrics;
use crate::server::{ReadyCheck, admin_router};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// Metrics of the reconcile loop.
#[derive(Clone, Default)]
pub struct GcMetrics {
    orphans: Family<ReasonLabels, Gauge>,
    orphan_bytes: Family<ReasonLabels, Gauge>,
    deletions: Family<ResultLabels, Counter>,
    errors: Counter,
}

impl GcMetrics {
    pub fn register(registry: &mut Registry) -> GcMetrics {
        let m = GcMetrics::default();
        registry.register(
            "gc_orphaned_claims",
            "Orphaned claims by reason",
            m.orphans.clone(),
        );
        registry.register(
            "gc_orphaned_claim_bytes",
            "Storage requested by orphaned claims, by reason",
            m.orphan_bytes.clone(),
        );
        registry.register(
            "gc_deletions",
            "Claim deletions by result",
            m.deletions.clone(),
        );
        registry.register(
            "gc_reconcile_errors",
            "Reconcile passes that failed",
            m.errors.clone(),
        );
        m
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    pub annotated: Vec<String>,
    pub marked: Vec<String>,
    pub cleared: Vec<String>,
    pub deleted: Vec<String>,
    pub skipped: Vec<String>,
    pub failed: Vec<String>,
}

fn rfc3339(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn parse_time(text: &str) -> Option<i64> {
    text.parse::<jiff::Timestamp>().ok().map(|t| t.as_second())
}

async fn annotate(
    client: &Client,
    namespace: &str,
    claim: &str,
    annotations: serde_json::Value,
) -> Result<(), kube::Error> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let patch = json!({"metadata": {"annotations": annotations}});
    api.patch(claim, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

/// Namespaces that opted in to collection, listed.
pub async fn opted_in_namespaces(client: &Client) -> Result<HashSet<String>, GcError> {
    let list = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| GcError::List {
            what: "namespaces",
            message: e.to_string(),
        })?;
    Ok(opted_in(list.items.iter()))
}

fn opted_in<'a>(namespaces: impl Iterator<Item = &'a Namespace>) -> HashSet<String> {
    namespaces
        .filter(|n| {
            n.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(OPT_IN))
                .is_some_and(|v| v == "true")
        })
        .filter_map(|n| n.metadata.name.clone())
        .collect()
}

fn set_ref(namespace: &str, name: &str, uid: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("apps/v1".into()),
        kind: Some("StatefulSet".into()),
        namespace: Some(namespace.into()),
        name: Some(name.into()),
        uid: Some(uid.into()),
        ..ObjectReference::default()
    }
}

/// One reconcile pass at time `now` (seconds since the epoch) over a snapshot of the
/// cluster (from the watch caches, or listed); the client is used only to write.
#[allow(clippy::too_many_arguments)]
pub async fn reconcile(
    client: &Client,
    recorder: &Recorder,
    metrics: &GcMetrics,
    snapshot: Snapshot,
    opted_in: &HashSet<String>,
    now: i64,
    grace_seconds: i64,
) -> Result<PassReport, GcError> {
    let Snapshot { claims, sets, pods } = snapshot;
    let namespaces = opted_in;
    let mut report = PassReport::default();
    let mut touched: HashSet<(String, String)> = HashSet::new();

    // 1. Provenance on the claims of live sets.
    for (claim, set, _) in claims_of_live_sets(&claims, &sets) {
        let current = (
            claim.annotations.get(SET_ANNOTATION),
            claim.annotations.get(SET_UID_ANNOTATION),
        );
        if current == (Some(&set.name), Some(&set.uid)) {
            continue;
        }
        let annotations = json!({SET_ANNOTATION: set.name, SET_UID_ANNOTATION: set.uid});
        match annotate(client, &claim.namespace, &claim.name, annotations).await {
            Ok(()) => {
                report
                    .annotated
                    .push(format!("{}/{}", claim.namespace, claim.name));
                touched.insert((claim.namespace.clone(), claim.name.clone()));
            }
            Err(err) => tracing::warn!(claim = %claim.name, error = %err, "cannot annotate claim"),
        }
    }

    // 2. Orphan bookkeeping and metrics.
    let snapshot = Snapshot { claims, sets, pods };
    let orphans = plan(&snapshot, now, 0);
    let orphan_keys: HashSet<(&str, &str)> = orphans
        .iter()
        .map(|o| (o.namespace.as_str(), o.claim.as_str()))
        .collect();
    for reason in [Reason::ScaledDown, Reason::SetDeleted] {
        let of_reason = orphans.iter().filter(|o| o.reason == reason);
        let labels = ReasonLabels {
            reason: reason.as_str(),
        };
        metrics
            .orphans
            .get_or_create(&labels)
            .set(of_reason.clone().count() as i64);
        metrics
            .orphan_bytes
            .get_or_create(&labels)
            .set(of_reason.filter_map(|o| o.requested_bytes).sum::<u64>() as i64);
    }
    for claim in &snapshot.claims {
        let key = (claim.namespace.as_str(), claim.name.as_str());
        let wanted_again =
            claim.annotations.contains_key(ORPHANED_SINCE) && !orphan_keys.contains(&key);
        if wanted_again
            && annotate(
                client,
                &claim.namespace,
                &claim.name,
                json!({ORPHANED_SINCE: null}),
            )
            .await
            .is_ok()
        {
            report
                .cleared
                .push(format!("{}/{}", claim.namespace, claim.name));
            touched.insert((claim.namespace.clone(), claim.name.clone()));
        }
    }
    let mut due = Vec::new();
    for orphan in &orphans {
        let claim = snapshot
            .claims
            .iter()
            .find(|c| c.namespace == orphan.namespace && c.name == orphan.claim);
        let since = claim
            .and_then(|c| c.annotations.get(ORPHANED_SINCE))
            .and_then(|t| parse_time(t));
        let Some(since) = since else {
            if annotate(
                client,
                &orphan.namespace,
                &orphan.claim,
                json!({ORPHANED_SINCE: rfc3339(now)}),
            )
            .await
            .is_ok()
            {
                report
                    .marked
                    .push(format!("{}/{}", orphan.namespace, orphan.claim));
                touched.insert((orphan.namespace.clone(), orphan.claim.clone()));
                if let Some(set) = snapshot
                    .sets
                    .iter()
                    .find(|s| s.namespace == orphan.namespace && s.name == orphan.statefulset)
                {
                    let event = Event {
                        type_: EventType::Warning,
                        reason: "OrphanedClaim".into(),
                        note: Some(format!(
                            "PersistentVolumeClaim {} ({}) is no longer used after a scale-down; stateward gc can collect it",
                            orphan.claim,
                            orphan.reason.as_str()
                        )),
                        action: "Detect".into(),
                        secondary: None,
                    };
                    if let Err(err) = recorder
                        .publish(&event, &set_ref(&set.namespace, &set.name, &set.uid))
                        .await
                    {
                        tracing::warn!(error = %err, "cannot publish event");
                    }
                }
            }
            continue;
        };
        if touched.contains(&(orphan.namespace.clone(), orphan.claim.clone()))
            || now - since < grace_seconds
        {
            continue;
        }
        let set_opted_in = snapshot
            .sets
            .iter()
            .find(|s| s.namespace == orphan.namespace && s.name == orphan.statefulset)
            .is_some_and(|s| s.annotations.get(OPT_IN).is_some_and(|v| v == "true"));
        if orphan.verified && (set_opted_in || namespaces.contains(&orphan.namespace)) {
            due.push(orphan.clone());
        }
    }

    // 3. Deletion of what is due, with preconditions.
    for outcome in delete(client, &due, false).await {
        let name = format!("{}/{}", outcome.namespace, outcome.claim);
        metrics
            .deletions
            .get_or_create(&ResultLabels {
                result: outcome.result,
            })
            .inc();
        match outcome.result {
            "deleted" => {
                tracing::info!(claim = %name, "deleted orphaned claim");
                report.deleted.push(name);
            }
            "skipped" => report.skipped.push(name),
            _ => {
                tracing::warn!(claim = %name, reason = %outcome.reason, "deletion failed");
                report.failed.push(name);
            }
        }
    }
    Ok(report)
}

pub fn recorder(client: &Client) -> Recorder {
    Recorder::new(
        client.clone(),
        Reporter {
            controller: "stateward-gc".into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    )
}

/// Parses `--grace` (`30m`, `1h`, `2d`).
pub fn grace_seconds(text: &str) -> Result<i64, GcError> {
    super::collect::parse_age(text).ok_or_else(|| GcError::Duration(text.to_owned()))
}

pub async fn run(args: GcArgs, client: Client) -> anyhow::Result<Exit> {
    let grace = match grace_seconds(&args.grace) {
        Ok(grace) => grace,
        Err(err) => {
            eprintln!("error: {err}");
            return Ok(Exit::Usage);
        }
    };
    let mut metrics = Metrics::new();
    let gc_metrics = GcMetrics::register(metrics.registry_mut());
    let reconciled = Arc::new(AtomicBool::new(false));
    let ready = reconciled.clone();
    let admin = admin_router(
        Arc::new(metrics),
        vec![ReadyCheck {
            name: "first reconcile",
            ready: Box::new(move || ready.load(Ordering::Relaxed)),
        }],
    );
    let listener = match tokio::net::TcpListener::bind(args.admin_listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("error: cannot listen on {}: {err}", args.admin_listen);
            return Ok(Exit::Usage);
        }
    };
    tokio::spawn(async move {
        let _ = axum::serve(listener, admin).await;
    });
    let recorder = recorder(&client);
    let caches = Caches::start(&client);
    tracing::info!("waiting for the StatefulSet, claim, pod and namespace caches");
    tokio::select! {
        _ = caches.ready() => {}
        _ = tokio::signal::ctrl_c() => return Ok(Exit::Ok),
        _ = terminate() => return Ok(Exit::Ok),
    }
    let mut ticker = tokio::time::interval(Duration::from_secs(args.interval.max(1)));
    tracing::info!(grace_seconds = grace, "gc reconcile loop started");
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate() => break,
        }
        let (snapshot, opted_in) = caches.snapshot();
        match reconcile(
            &client,
            &recorder,
            &gc_metrics,
            snapshot,
            &opted_in,
            super::collect::now_seconds(),
            grace,
        )
        .await
        {
            Ok(report) => {
                reconciled.store(true, Ordering::Relaxed);
                tracing::info!(
                    annotated = report.annotated.len(),
                    marked = report.marked.len(),
                    cleared = report.cleared.len(),
                    deleted = report.deleted.len(),
                    skipped = report.skipped.len(),
                    failed = report.failed.len(),
                    "reconciled"
                );
            }
            Err(err) => {
                gc_metrics.errors.inc();
                tracing::error!(error = %err, "reconcile failed; retrying at the next interval");
            }
        }
    }
    tracing::info!("stopped");
    Ok(Exit::Ok)
}

async fn terminate() {
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            term.recv().await;
            return;
        }
    }
    std::future::pending::<()>().await;
}

/// Watch-fed stores (kube-runtime reflectors) of everything a pass needs, so a pass lists
/// nothing. Pods are stripped to their claim volumes and phase before they are stored.
pub struct Caches {
    claims: Store<PersistentVolumeClaim>,
    sets: Store<StatefulSet>,
    pods: Store<Pod>,
    namespaces: Store<Namespace>,
}

fn slim_metadata(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
}

impl Caches {
    pub fn start(client: &Client) -> Caches {
        fn spawn_reflector<K>(api: Api<K>, modify: fn(&mut K)) -> Store<K>
        where
            K: kube::Resource
                + Clone
                + serde::de::DeserializeOwned
                + std::fmt::Debug
                + Send
                + Sync
                + 'static,
            K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
        {
            let (reader, writer) = reflector::store();
            let stream = watcher::watcher(api, watcher::Config::default())
                .default_backoff()
                .modify(modify)
                .reflect(writer)
                .for_each(|event| {
                    if let Err(err) = event {
                        tracing::warn!(error = %err, "watch failed; retrying");
                    }
                    std::future::ready(())
                });
            tokio::spawn(stream);
            reader
        }
        Caches {
            claims: spawn_reflector(Api::all(client.clone()), |c: &mut PersistentVolumeClaim| {
                slim_metadata(&mut c.metadata);
                c.status = None;
            }),
            sets: spawn_reflector(Api::all(client.clone()), |s: &mut StatefulSet| {
                slim_metadata(&mut s.metadata);
                s.spec.template = Default::default();
                s.status = None;
            }),
            pods: spawn_reflector(Api::all(client.clone()), |p: &mut Pod| {
                slim_metadata(&mut p.metadata);
                p.metadata.labels = None;
                p.metadata.annotations = None;
                if let Some(spec) = p.spec.as_mut() {
                    spec.containers.clear();
                    spec.init_containers = None;
                    if let Some(volumes) = spec.volumes.as_mut() {
                        volumes.retain(|v| v.persistent_volume_claim.is_some());
                    }
                }
                if let Some(status) = p.status.as_mut() {
                    *status = PodStatus {
                        phase: status.phase.take(),
                        ..PodStatus::default()
                    };
                }
            }),
            namespaces: spawn_reflector(Api::all(client.clone()), |n: &mut Namespace| {
                slim_metadata(&mut n.metadata);
            }),
        }
    }

    /// Resolves once every store has completed its first list.
    pub async fn ready(&self) {
        let _ = self.claims.wait_until_ready().await;
        let _ = self.sets.wait_until_ready().await;
        let _ = self.pods.wait_until_ready().await;
        let _ = self.namespaces.wait_until_ready().await;
    }

    /// The current contents, as the classifier reads them, and the opted-in namespaces.
    pub fn snapshot(&self) -> (Snapshot, HashSet<String>) {
        let snapshot = Snapshot {
            claims: self.claims.state().iter().map(|c| claim_view(c)).collect(),
            sets: self.sets.state().iter().map(|s| set_view(s)).collect(),
            pods: self.pods.state().iter().map(|p| pod_view(p)).collect(),
        };
        let namespaces = self.namespaces.state();
        (snapshot, opted_in(namespaces.iter().map(|n| n.as_ref())))
    }
}
