//! Cluster context for the webhook: watch-fed caches of Services, StatefulSets and
//! PodDisruptionBudgets (all namespaces) that implement the engine's [`Context`]. The
//! caches keep only the projections the rules read (`ServiceInfo`, `StatefulSetInfo`,
//! `PdbInfo`), indexed by namespace; the request path never calls the API. The watches
//! decode [`Slim`] objects: only the fields the projections read are parsed into memory.
//!
//! A cache is *available* to the rules once a list completed and no watch error has been
//! seen since: after an error (an API server restart, RBAC drift, 410 Gone) the watch is
//! dropped and the cache is listed afresh, with a backoff, and stays unavailable until that
//! list completes. Unavailable context makes the rules warn instead of deciding on stale
//! data.
//!
//! The same caches (a [`Cache`] of any projection fed by [`feed`]) keep the stores of
//! `stateward gc --watch`, which deletes nothing unless every store is available.
//!
//! Readiness is another matter: it waits only for the *first* list of every cache
//! ([`ClusterContext::first_synced`]). Every replica of the webhook sees the same API server
//! restart at the same time, so a readiness that followed later watch errors would take the
//! whole webhook out of service (and, with `failurePolicy: Fail`, refuse every write it
//! matches) exactly when the cluster is recovering.
use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::{apps::v1::StatefulSet, core::v1::Service, policy::v1::PodDisruptionBudget};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::de::DeserializeOwned;
use tokio::sync::watch as signal;

use crate::policy::Context;
use crate::policy::context::{ContextKind, PdbInfo, ServiceInfo, StatefulSetInfo};

mod collector;
pub mod paged;
mod slim;
pub mod views;
pub(crate) use collector::annotations_where;
pub use collector::{ANNOTATION_PREFIX, Collector};
pub use slim::{Slim, Webhook};

/// The longest wait between two attempts to list a cache whose watch failed.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Objects per list page of the StatefulSet watch (kube's default, 500, for the others).
/// A page is read whole before it is decoded, and StatefulSets are large (pod templates
/// of several KB, of which the cache keeps a few fields): 100 keeps a page under 1 MB.
pub const STATEFULSET_PAGE_SIZE: u32 = 100;

/// Whether a command uses a cluster (`serve --cluster`; `gc` and `audit` require one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// In-cluster config or a kubeconfig when one is found, else no cluster.
    Auto,
    /// A cluster is needed.
    Required,
    /// Never contact a cluster.
    Off,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot read kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error("no cluster configuration found (in-cluster, KUBECONFIG or ~/.kube/config): {0}")]
    NoConfig(String),
    #[error("cannot create a Kubernetes client: {0}")]
    Client(String),
}

/// A client per `--cluster`, `--kubeconfig` and `--context`: `None` when running without a
/// cluster. As with kubectl, `--context` picks a context of the kubeconfig (the file given,
/// else `KUBECONFIG` or `~/.kube/config`) and so never falls back to in-cluster config.
pub async fn client(
    mode: Mode,
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<Option<Client>, ClusterError> {
    if mode == Mode::Off {
        return Ok(None);
    }
    let options = kube::config::KubeConfigOptions {
        context: context.map(str::to_owned),
        ..kube::config::KubeConfigOptions::default()
    };
    let config = match (kubeconfig, context) {
        (Some(path), _) => {
            let kubeconfig_error = |message: String| ClusterError::Kubeconfig {
                path: path.display().to_string(),
                message,
            };
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| kubeconfig_error(e.to_string()))?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| kubeconfig_error(e.to_string()))?
        }
        (None, Some(_)) => {
            kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|e| ClusterError::Kubeconfig {
                    path: std::env::var("KUBECONFIG").unwrap_or_else(|_| "~/.kube/config".into()),
                    message: e.to_string(),
                })?
        }
        (None, None) => match kube::Config::infer().await {
            Ok(config) => config,
            Err(err) if mode == Mode::Auto => {
                tracing::info!(reason = %err, "no cluster configuration found; running without cluster context");
                return Ok(None);
            }
            Err(err) => return Err(ClusterError::NoConfig(err.to_string())),
        },
    };
    Client::try_from(config)
        .map(Some)
        .map_err(|e| ClusterError::Client(e.to_string()))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: &'static str,
}

/// Metrics of the caches, registered once per registry.
#[derive(Clone, Default)]
pub struct CacheMetrics {
    objects: Family<CacheLabels, Gauge>,
    synced: Family<CacheLabels, Gauge>,
    errors: Family<CacheLabels, Counter>,
    relists: Family<CacheLabels, Counter>,
    listed_at: Family<CacheLabels, Gauge>,
}

impl CacheMetrics {
    pub fn register(registry: &mut Registry) -> CacheMetrics {
        let metrics = CacheMetrics::default();
        registry.register(
            "cache_objects",
            "Objects held by each cluster cache",
            metrics.objects.clone(),
        );
        registry.register(
            "cache_synced",
            "1 when a cluster cache is available (listed, no watch error since)",
            metrics.synced.clone(),
        );
        registry.register(
            "cache_watch_errors",
            "Watch errors of each cluster cache",
            metrics.errors.clone(),
        );
        registry.register(
            "cache_watch_restarts",
            "Full re-lists of each cluster cache after its first list",
            metrics.relists.clone(),
        );
        registry.register(
            "cache_last_list_timestamp_seconds",
            "When each cluster cache last completed a full list (seconds since the Unix epoch)",
            metrics.listed_at.clone(),
        );
        metrics
    }
}

/// What a cache holds of a namespace: its projections, each found by the name it holds
/// itself (a second copy of every name as the key would cost a string per object).
type Names<T> = HashSet<ByName<T>>;
type Index<T> = HashMap<String, Names<T>>;

/// A projection that holds the name of its object: what a [`Cache`] finds it by.
pub trait Named {
    fn name(&self) -> &str;
}

/// A shared projection, hashed and compared by its name alone.
struct ByName<T>(Arc<T>);

impl<T: Named> PartialEq for ByName<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0.name() == other.0.name()
    }
}

impl<T: Named> Eq for ByName<T> {}

impl<T: Named> std::hash::Hash for ByName<T> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As `str` hashes, so a lookup by `&str` (through `Borrow`) finds it.
        self.0.name().hash(state);
    }
}

impl<T: Named> std::borrow::Borrow<str> for ByName<T> {
    fn borrow(&self) -> &str {
        self.0.name()
    }
}

/// One watch-fed cache of projections, keyed by namespace then name.
pub struct Cache<T> {
    name: &'static str,
    items: RwLock<Index<T>>,
    /// A list has completed at least once.
    listed: AtomicBool,
    /// A watch error has been seen since the last completed list.
    failing: AtomicBool,
    metrics: CacheMetrics,
}

impl<T: Named> Cache<T> {
    pub fn new(name: &'static str, metrics: CacheMetrics) -> Cache<T> {
        Cache {
            name,
            items: RwLock::new(HashMap::new()),
            listed: AtomicBool::new(false),
            failing: AtomicBool::new(false),
            metrics,
        }
    }

    fn labels(&self) -> CacheLabels {
        CacheLabels { cache: self.name }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Listed, and no watch error since the last list: the rules may decide on it.
    pub fn available(&self) -> bool {
        self.listed.load(Ordering::Acquire) && !self.failing.load(Ordering::Acquire)
    }

    /// Listed at least once (readiness).
    pub fn first_synced(&self) -> bool {
        self.listed.load(Ordering::Acquire)
    }

    pub fn len(&self) -> usize {
        self.items
            .read()
            .map(|i| i.values().map(HashSet::len).sum())
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, namespace: &str, name: &str) -> Option<Arc<T>> {
        let items = self.items.read().ok()?;
        items.get(namespace)?.get(name).map(|item| item.0.clone())
    }

    fn in_namespace(&self, namespace: &str) -> Vec<Arc<T>> {
        self.items
            .read()
            .ok()
            .and_then(|i| {
                i.get(namespace)
                    .map(|m| m.iter().map(|e| e.0.clone()).collect())
            })
            .unwrap_or_default()
    }

    /// Every item, in no particular order.
    pub fn values(&self) -> Vec<Arc<T>> {
        self.items
            .read()
            .map(|i| {
                i.values()
                    .flat_map(|m| m.iter().map(|e| e.0.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn publish(&self) {
        self.metrics
            .objects
            .get_or_create(&self.labels())
            .set(self.len() as i64);
        self.metrics
            .synced
            .get_or_create(&self.labels())
            .set(i64::from(self.available()));
    }

    fn put(&self, namespace: String, item: T) {
        if let Ok(mut items) = self.items.write() {
            items
                .entry(namespace)
                .or_default()
                .replace(ByName(Arc::new(item)));
        }
    }

    fn remove(&self, namespace: &str, name: &str) {
        if let Ok(mut items) = self.items.write()
            && let Some(ns) = items.get_mut(namespace)
        {
            ns.remove(name);
            if ns.is_empty() {
                items.remove(namespace);
            }
        }
    }

    fn replace(&self, fresh: Index<T>) {
        if let Ok(mut items) = self.items.write() {
            *items = fresh;
        }
        self.failing.store(false, Ordering::Release);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.metrics
            .listed_at
            .get_or_create(&self.labels())
            .set(now);
        if self.listed.swap(true, Ordering::AcqRel) {
            self.metrics.relists.get_or_create(&self.labels()).inc();
        }
    }

    fn error(&self) {
        self.failing.store(true, Ordering::Release);
        self.metrics.errors.get_or_create(&self.labels()).inc();
    }
}

/// Turns a watched object into its projection with its namespace (the projection holds
/// the name: [`Named`]).
pub trait Project<K>: Named + Sized {
    fn project(object: &K) -> (String, Self);
}

/// [`Named`] for projections whose `name` field is their object's name.
macro_rules! named_by_field {
    ($($t:ty),+ $(,)?) => {$(
        impl $crate::cluster::Named for $t {
            fn name(&self) -> &str {
                &self.name
            }
        }
    )+};
}
pub(crate) use named_by_field;

named_by_field!(ServiceInfo, StatefulSetInfo, PdbInfo);

impl Project<Slim<Service>> for ServiceInfo {
    fn project(object: &Slim<Service>) -> (String, Self) {
        let info = ServiceInfo::from_service(&object.0, "default");
        (info.namespace.clone(), info)
    }
}

impl Project<Slim<StatefulSet>> for StatefulSetInfo {
    fn project(object: &Slim<StatefulSet>) -> (String, Self) {
        let info = StatefulSetInfo::from_statefulset(&object.0, "default");
        (info.namespace.clone(), info)
    }
}

impl Project<Slim<PodDisruptionBudget>> for PdbInfo {
    fn project(object: &Slim<PodDisruptionBudget>) -> (String, Self) {
        let info = PdbInfo::from_pdb(&object.0, "default");
        (info.namespace.clone(), info)
    }
}

/// Feeds `cache` from a watch of `api` (with `config`: selectors) until `shutdown`. After
/// a watch error the stream is dropped and a new one lists afresh (after a backoff that
/// doubles up to `max_backoff` and starts again after a successful list), so the cache is
/// never taken for current before a complete list has replaced it.
pub async fn feed<K, T>(
    api: Api<K>,
    config: watcher::Config,
    cache: Arc<Cache<T>>,
    mut shutdown: signal::Receiver<bool>,
    max_backoff: Duration,
) where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    T: Project<K> + Send + Sync + 'static,
{
    let first_backoff = Duration::from_millis(250).min(max_backoff);
    let mut backoff = first_backoff;
    loop {
        let stream = watcher::watcher(api.clone(), config.clone());
        futures::pin_mut!(stream);
        let mut buffer: Option<Index<T>> = None;
        loop {
            let next = tokio::select! {
                next = stream.next() => next,
                _ = shutdown.changed() => return,
            };
            let Some(event) = next else { break };
            match event {
                Ok(Event::Init) => buffer = Some(HashMap::new()),
                Ok(Event::InitApply(object)) => {
                    let (ns, item) = T::project(&object);
                    buffer
                        .get_or_insert_with(HashMap::new)
                        .entry(ns)
                        .or_default()
                        .replace(ByName(Arc::new(item)));
                }
                Ok(Event::InitDone) => {
                    cache.replace(buffer.take().unwrap_or_default());
                    backoff = first_backoff;
                    tracing::info!(
                        cache = cache.name,
                        objects = cache.len(),
                        "cluster cache synced"
                    );
                }
                Ok(Event::Apply(object)) => {
                    let (ns, item) = T::project(&object);
                    cache.put(ns, item);
                }
                Ok(Event::Delete(object)) => {
                    let (ns, item) = T::project(&object);
                    cache.remove(&ns, item.name());
                }
                Err(err) => {
                    tracing::warn!(
                        cache = cache.name,
                        error = %err,
                        retry_in_ms = backoff.as_millis() as u64,
                        "watch failed; the cache is unavailable until it is listed again"
                    );
                    cache.error();
                    cache.publish();
                    break;
                }
            }
            cache.publish();
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(max_backoff);
    }
}

/// The webhook's view of the cluster.
#[derive(Clone)]
pub struct ClusterContext {
    pub services: Arc<Cache<ServiceInfo>>,
    pub statefulsets: Arc<Cache<StatefulSetInfo>>,
    pub pdbs: Arc<Cache<PdbInfo>>,
}

impl ClusterContext {
    /// Starts the three watches on the current runtime; they stop when `shutdown` fires.
    pub fn spawn(
        client: Client,
        registry: &mut Registry,
        shutdown: signal::Receiver<bool>,
    ) -> ClusterContext {
        ClusterContext::spawn_with(client, registry, shutdown, MAX_BACKOFF)
    }

    /// As [`ClusterContext::spawn`], with the longest wait between two lists after watch
    /// errors (tests shorten it).
    pub fn spawn_with(
        client: Client,
        registry: &mut Registry,
        shutdown: signal::Receiver<bool>,
        max_backoff: Duration,
    ) -> ClusterContext {
        let metrics = CacheMetrics::register(registry);
        let context = ClusterContext {
            services: Arc::new(Cache::new("services", metrics.clone())),
            statefulsets: Arc::new(Cache::new("statefulsets", metrics.clone())),
            pdbs: Arc::new(Cache::new("poddisruptionbudgets", metrics)),
        };
        tokio::spawn(feed(
            Api::<Slim<Service>>::all(client.clone()),
            watcher::Config::default(),
            context.services.clone(),
            shutdown.clone(),
            max_backoff,
        ));
        tokio::spawn(feed(
            Api::<Slim<StatefulSet>>::all(client.clone()),
            watcher::Config::default().page_size(STATEFULSET_PAGE_SIZE),
            context.statefulsets.clone(),
            shutdown.clone(),
            max_backoff,
        ));
        tokio::spawn(feed(
            Api::<Slim<PodDisruptionBudget>>::all(client),
            watcher::Config::default(),
            context.pdbs.clone(),
            shutdown,
            max_backoff,
        ));
        context
    }

    /// Every cache has completed its first list: what `/readyz` waits for under
    /// `--cluster required`. Later watch errors never turn it back.
    pub fn first_synced(&self) -> bool {
        self.services.first_synced() && self.statefulsets.first_synced() && self.pdbs.first_synced()
    }

    /// Every cache is current (listed, no watch error since): the rules decide on it.
    pub fn is_current(&self) -> bool {
        self.services.available() && self.statefulsets.available() && self.pdbs.available()
    }
}

impl Context for ClusterContext {
    fn available(&self, kind: ContextKind) -> bool {
        match kind {
            ContextKind::Services => self.services.available(),
            ContextKind::StatefulSets => self.statefulsets.available(),
            ContextKind::PodDisruptionBudgets => self.pdbs.available(),
        }
    }

    fn service(&self, namespace: &str, name: &str) -> Option<Arc<ServiceInfo>> {
        self.services.get(namespace, name)
    }

    fn statefulsets(&self, namespace: &str) -> Vec<Arc<StatefulSetInfo>> {
        self.statefulsets.in_namespace(namespace)
    }

    fn pod_disruption_budgets(&self, namespace: &str) -> Vec<Arc<PdbInfo>> {
        self.pdbs.in_namespace(namespace)
    }
}
