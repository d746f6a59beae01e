//! `stateward gc --watch`: the reconcile loop. Watch-fed stores (the webhook's cache design,
//! [`crate::cluster::Cache`]) keep projections of StatefulSets, claims, pods and namespaces;
//! every `--interval` a pass classifies a snapshot of the stores (nothing is listed per
//! pass), then
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
//! No decision on stale data: a pass writes anything only when every store has been listed
//! and has seen no watch error since (after an error a store is dropped and listed afresh,
//! with a backoff); otherwise it logs which store is not current, counts
//! `gc_stale_passes_total` and writes nothing. The same check (with the leadership and the
//! process's signal flag) is made again before every single write of a pass.
//!
//! Several replicas elect a leader over a Lease ([`crate::leader`]); only the leader runs
//! passes. `-n` watches one namespace only (a Role there is enough; namespace annotations
//! are then not read), `-l` only the claims with those labels, and `--min-age` leaves out
//! claims younger than that, as in the one-shot plan. The clock is a parameter of
//! [`reconcile`], so tests need no sleeps.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, ObjectReference, PersistentVolumeClaim, Pod};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::sync::watch as signal;

use super::classify::{
    ClaimView, LiveSets, OPT_IN, ORPHANED_SINCE, Orphan, PodView, Reason, SET_ANNOTATION,
    SET_UID_ANNOTATION, SetView,
};
use super::collect::{Deletion, Gate, GcError, Snapshot, delete, plan};
use crate::cluster::views::{api, claim_view, pod_view, set_view};
use crate::cluster::{Cache, CacheMetrics, Collector, Project, Slim, feed, paged};

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
    /// Passes that failed.
    pub errors: Counter,
    /// Passes that wrote nothing because a store was not current.
    pub stale_passes: Counter,
    /// 1 while this replica holds the lease (or runs without election).
    pub leader: Gauge,
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
        registry.register(
            "gc_stale_passes",
            "Passes that wrote nothing because a store was not listed or had a watch error since its last list",
            m.stale_passes.clone(),
        );
        registry.register(
            "gc_leader",
            "1 while this replica holds the lease and may write",
            m.leader.clone(),
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
    /// Why the pass stopped writing before its end (the gate closed).
    pub stopped: Option<&'static str>,
}

/// The clock and limits of one pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassOptions {
    /// Seconds since the Unix epoch.
    pub now: i64,
    pub grace_seconds: i64,
    /// Claims younger than this are left out (`--min-age`).
    pub min_age_seconds: i64,
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
    let namespaces = paged::list(
        client,
        None,
        &ListParams::default(),
        |n: Slim<Namespace, Collector>| n.0,
    )
    .await
    .map_err(|e| GcError::List {
        what: "namespaces",
        message: e.to_string(),
    })?;
    Ok(opted_in(namespaces.iter()))
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

/// What the passes of the loop write with: the client (used only to write), the recorder
/// of Events on sets, and the loop's metrics.
#[derive(Clone)]
pub struct PassContext {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: GcMetrics,
}

impl PassContext {
    /// The context of `client`, with Events reported as `stateward-gc`.
    pub fn new(client: &Client, metrics: GcMetrics) -> PassContext {
        PassContext {
            client: client.clone(),
            recorder: recorder(client),
            metrics,
        }
    }
}

/// One reconcile pass over a snapshot of the cluster (from the stores, or listed); the
/// client is used only to write, and only while `gate` stays open (checked before every
/// write: the request in flight completes, the rest of the pass is skipped).
pub async fn reconcile(
    context: &PassContext,
    snapshot: Snapshot,
    opted_in: &HashSet<String>,
    options: &PassOptions,
    gate: Gate<'_>,
) -> Result<PassReport, GcError> {
    let PassOptions {
        now,
        grace_seconds,
        min_age_seconds,
    } = *options;
    let PassContext {
        client,
        recorder,
        metrics,
    } = context;
    let Snapshot { claims, sets, pods } = snapshot;
    let namespaces = opted_in;
    let mut report = PassReport::default();
    let mut touched: HashSet<(String, String)> = HashSet::new();
    // Closes the gate for the rest of the pass once it closed for one write.
    let closed = |report: &mut PassReport| -> bool {
        if report.stopped.is_none() {
            report.stopped = gate();
        }
        report.stopped.is_some()
    };

    // 1. Provenance on the claims of live sets.
    // Claim by claim (not collected first: a pass holds no list as long as the fleet's).
    let live = LiveSets::new(&sets);
    for (claim, set) in claims
        .iter()
        .filter_map(|c| live.owner(c).map(|(set, _)| (c, set)))
    {
        let current = (
            claim.annotations.get(SET_ANNOTATION),
            claim.annotations.get(SET_UID_ANNOTATION),
        );
        let uid = set.uid.to_string();
        if current == (Some(&*set.name), Some(uid.as_str())) {
            continue;
        }
        if closed(&mut report) {
            break;
        }
        let annotations = json!({SET_ANNOTATION: set.name, SET_UID_ANNOTATION: uid});
        match annotate(client, &claim.namespace, &claim.name, annotations).await {
            Ok(()) => {
                report
                    .annotated
                    .push(format!("{}/{}", claim.namespace, claim.name));
                touched.insert((claim.namespace.to_string(), claim.name.to_string()));
            }
            Err(err) => tracing::warn!(claim = %claim.name, error = %err, "cannot annotate claim"),
        }
    }

    // 2. Orphan bookkeeping and metrics.
    let snapshot = Snapshot { claims, sets, pods };
    // Every orphan (a claim `--min-age` leaves out is still not wanted), and those old
    // enough to be marked, counted and deleted.
    let every_orphan = plan(&snapshot, now, 0);
    let orphan_keys: HashSet<(&str, &str)> = every_orphan
        .iter()
        .map(|o| (o.namespace.as_str(), o.claim.as_str()))
        .collect();
    let orphans: Vec<_> = every_orphan
        .iter()
        .filter(|o| o.created.is_none_or(|c| now - c >= min_age_seconds))
        .cloned()
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
        let key = (&*claim.namespace, &*claim.name);
        let wanted_again =
            claim.annotations.contains_key(ORPHANED_SINCE) && !orphan_keys.contains(&key);
        if !wanted_again {
            continue;
        }
        if closed(&mut report) {
            break;
        }
        if annotate(
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
            touched.insert((claim.namespace.to_string(), claim.name.to_string()));
        }
    }
    // The orphans' claims and the sets, by key (not searched per orphan).
    let orphan_claims: HashMap<(&str, &str), &ClaimView> = snapshot
        .claims
        .iter()
        .filter(|c| orphan_keys.contains(&(&*c.namespace, &*c.name)))
        .map(|c| ((&*c.namespace, &*c.name), &**c))
        .collect();
    let set_by_key: HashMap<(&str, &str), &SetView> = snapshot
        .sets
        .iter()
        .map(|s| ((&*s.namespace, &*s.name), &**s))
        .collect();
    let set_of = |orphan: &Orphan| {
        set_by_key
            .get(&(orphan.namespace.as_str(), orphan.statefulset.as_str()))
            .copied()
    };
    let mut due = Vec::new();
    for orphan in &orphans {
        let claim = orphan_claims
            .get(&(orphan.namespace.as_str(), orphan.claim.as_str()))
            .copied();
        let since = claim
            .and_then(|c| c.annotations.get(ORPHANED_SINCE))
            .and_then(parse_time);
        let Some(since) = since else {
            if closed(&mut report) {
                break;
            }
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
                if let Some(set) = set_of(orphan)
                    && !closed(&mut report)
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
                        .publish(
                            &event,
                            &set_ref(&set.namespace, &set.name, &set.uid.to_string()),
                        )
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
        let set_opted_in =
            set_of(orphan).is_some_and(|s| s.annotations.get(OPT_IN).is_some_and(|v| v == "true"));
        if orphan.verified && (set_opted_in || namespaces.contains(&orphan.namespace)) {
            due.push(orphan.clone());
        }
    }

    // 3. Deletion of what is due, with preconditions, while the gate is open.
    if report.stopped.is_some() {
        due.clear();
    }
    for outcome in delete(client, &due, false, gate).await {
        let name = format!("{}/{}", outcome.namespace, outcome.claim);
        metrics
            .deletions
            .get_or_create(&ResultLabels {
                result: outcome.result.as_str(),
            })
            .inc();
        match outcome.result {
            Deletion::Deleted => {
                tracing::info!(claim = %name, "deleted orphaned claim");
                report.deleted.push(name);
            }
            Deletion::Skipped => report.skipped.push(name),
            Deletion::NotAttempted => {
                if report.stopped.is_none() {
                    report.stopped = gate();
                }
                report.skipped.push(name);
            }
            Deletion::Failed => {
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

/// What `gc --watch` watches: one namespace or all, and which claims.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// `-n`: only this namespace (and no Namespace objects are read).
    pub namespace: Option<String>,
    /// `-l`: only claims with these labels.
    pub selector: Option<String>,
}

/// What a pass of the loop did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassOutcome {
    /// Some store was not current: nothing was written (why, per store).
    Stale(Vec<String>),
    Done(PassReport),
}

/// One pass of the loop over the stores: nothing at all unless every store is current
/// (then it logs why and counts `gc_stale_passes_total`); otherwise [`reconcile`] on a
/// snapshot, with the stores' currency checked again before every write besides `gate`.
pub async fn pass(
    context: &PassContext,
    stores: &Stores,
    options: &PassOptions,
    gate: Gate<'_>,
) -> Result<PassOutcome, GcError> {
    let stale = stores.not_current();
    if !stale.is_empty() {
        context.metrics.stale_passes.inc();
        tracing::warn!(
            stores = %stale.join("; "),
            "not every store is current: this pass deletes and writes nothing"
        );
        return Ok(PassOutcome::Stale(stale));
    }
    let (snapshot, opted_in) = stores.snapshot();
    let gate = || {
        gate().or_else(|| {
            (!stores.current()).then_some("a store is not current any more (watch error)")
        })
    };
    reconcile(context, snapshot, &opted_in, options, &gate)
        .await
        .map(PassOutcome::Done)
}

/// A Namespace as the loop reads it: whether it opted in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceView {
    pub name: String,
    pub opted_in: bool,
}

crate::cluster::named_by_field!(ClaimView, SetView, PodView, NamespaceView);

impl Project<Slim<PersistentVolumeClaim, Collector>> for ClaimView {
    fn project(object: &Slim<PersistentVolumeClaim, Collector>) -> (String, Self) {
        let view = claim_view(&object.0);
        (view.namespace.to_string(), view)
    }
}

impl Project<Slim<StatefulSet, Collector>> for SetView {
    fn project(object: &Slim<StatefulSet, Collector>) -> (String, Self) {
        let view = set_view(&object.0);
        (view.namespace.to_string(), view)
    }
}

impl Project<Slim<Pod, Collector>> for PodView {
    fn project(object: &Slim<Pod, Collector>) -> (String, Self) {
        let view = pod_view(&object.0);
        (view.namespace.to_string(), view)
    }
}

impl Project<Slim<Namespace, Collector>> for NamespaceView {
    fn project(object: &Slim<Namespace, Collector>) -> (String, Self) {
        let name = object.0.metadata.name.clone().unwrap_or_default();
        let opted_in = object
            .0
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(OPT_IN))
            .is_some_and(|v| v == "true");
        (String::new(), NamespaceView { name, opted_in })
    }
}

/// Watch-fed stores of everything a pass needs (projections only), so a pass lists
/// nothing. Each is listed afresh after a watch error and is not current until then.
pub struct Stores {
    claims: Arc<Cache<ClaimView>>,
    sets: Arc<Cache<SetView>>,
    pods: Arc<Cache<PodView>>,
    /// Not read under `-n` (it would need cluster-wide permission).
    namespaces: Option<Arc<Cache<NamespaceView>>>,
    /// The feeds stop when this is dropped.
    _stop: signal::Sender<bool>,
}

impl Stores {
    /// Starts the watches on the current runtime; `max_backoff` bounds the wait between
    /// two lists after watch errors.
    pub fn start(
        client: &Client,
        scope: &Scope,
        registry: &mut Registry,
        max_backoff: Duration,
    ) -> Stores {
        let metrics = CacheMetrics::register(registry);
        let (stop, stopped) = signal::channel(false);
        let ns = scope.namespace.as_deref();
        let claims = Arc::new(Cache::new("persistentvolumeclaims", metrics.clone()));
        let sets = Arc::new(Cache::new("statefulsets", metrics.clone()));
        let pods = Arc::new(Cache::new("pods", metrics.clone()));
        let mut claim_config = watcher::Config::default();
        if let Some(selector) = &scope.selector {
            claim_config = claim_config.labels(selector);
        }
        tokio::spawn(feed(
            api::<Slim<PersistentVolumeClaim, Collector>>(client, ns),
            claim_config,
            claims.clone(),
            stopped.clone(),
            max_backoff,
        ));
        tokio::spawn(feed(
            api::<Slim<StatefulSet, Collector>>(client, ns),
            watcher::Config::default(),
            sets.clone(),
            stopped.clone(),
            max_backoff,
        ));
        tokio::spawn(feed(
            api::<Slim<Pod, Collector>>(client, ns),
            watcher::Config::default(),
            pods.clone(),
            stopped.clone(),
            max_backoff,
        ));
        let namespaces = ns.is_none().then(|| {
            let cache = Arc::new(Cache::new("namespaces", metrics));
            tokio::spawn(feed(
                Api::<Slim<Namespace, Collector>>::all(client.clone()),
                watcher::Config::default(),
                cache.clone(),
                stopped,
                max_backoff,
            ));
            cache
        });
        Stores {
            claims,
            sets,
            pods,
            namespaces,
            _stop: stop,
        }
    }

    /// Each store with its name: (name, listed at least once, current).
    fn states(&self) -> Vec<(&'static str, bool, bool)> {
        let mut states = vec![
            (
                self.claims.name(),
                self.claims.first_synced(),
                self.claims.available(),
            ),
            (
                self.sets.name(),
                self.sets.first_synced(),
                self.sets.available(),
            ),
            (
                self.pods.name(),
                self.pods.first_synced(),
                self.pods.available(),
            ),
        ];
        if let Some(n) = &self.namespaces {
            states.push((n.name(), n.first_synced(), n.available()));
        }
        states
    }

    /// Every store has completed its first list (readiness).
    pub fn first_synced(&self) -> bool {
        self.states().iter().all(|(_, listed, _)| *listed)
    }

    /// Every store is listed and has seen no watch error since its last list.
    pub fn current(&self) -> bool {
        self.states().iter().all(|(_, _, current)| *current)
    }

    /// Why each store that is not current is not.
    pub fn not_current(&self) -> Vec<String> {
        self.states()
            .into_iter()
            .filter(|(_, _, current)| !current)
            .map(|(name, listed, _)| {
                if listed {
                    format!("{name}: watch error since the last list, listing again")
                } else {
                    format!("{name}: not listed yet")
                }
            })
            .collect()
    }

    /// The current contents, as the classifier reads them (the stores' views, shared, not
    /// copied), and the opted-in namespaces.
    pub fn snapshot(&self) -> (Snapshot, HashSet<String>) {
        let snapshot = Snapshot {
            claims: self.claims.values(),
            sets: self.sets.values(),
            pods: self.pods.values(),
        };
        let namespaces = self
            .namespaces
            .iter()
            .flat_map(|n| n.values())
            .filter(|n| n.opted_in)
            .map(|n| n.name.clone())
            .collect();
        (snapshot, namespaces)
    }
}
