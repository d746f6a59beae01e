//! A read-only view of related objects (Services, StatefulSets, PodDisruptionBudgets) that
//! the context rules consult. The webhook backs it with watch-fed caches, the offline
//! checker with the other documents of its input. Only the fields the rules read are kept.
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::{apps::v1::StatefulSet, core::v1::Service, policy::v1::PodDisruptionBudget};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::labels::LabelSet;

/// Which kind of related object a rule needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContextKind {
    Services,
    StatefulSets,
    PodDisruptionBudgets,
}

impl ContextKind {
    pub const ALL: [ContextKind; 3] = [
        ContextKind::Services,
        ContextKind::StatefulSets,
        ContextKind::PodDisruptionBudgets,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ContextKind::Services => "services",
            ContextKind::StatefulSets => "statefulsets",
            ContextKind::PodDisruptionBudgets => "poddisruptionbudgets",
        }
    }
}

/// What the rules need to know of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    pub namespace: String,
    pub name: String,
    /// `spec.clusterIP: None`.
    pub headless: bool,
    pub selector: Option<LabelSet>,
}

impl ServiceInfo {
    pub fn from_service(svc: &Service, default_namespace: &str) -> ServiceInfo {
        let spec = svc.spec.as_ref();
        ServiceInfo {
            namespace: svc
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| default_namespace.into()),
            name: svc.metadata.name.clone().unwrap_or_default(),
            headless: spec.and_then(|s| s.cluster_ip.as_deref()) == Some("None"),
            selector: spec
                .and_then(|s| s.selector.clone())
                .filter(|s| !s.is_empty())
                .map(LabelSet::from),
        }
    }
}

/// What the rules need to know of a StatefulSet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatefulSetInfo {
    pub namespace: String,
    pub name: String,
    pub service_name: Option<String>,
    pub replicas: i32,
    pub ordinals_start: i32,
    pub pod_labels: LabelSet,
    /// `volumeClaimTemplates[].metadata.name`.
    pub claim_templates: Vec<String>,
    /// `persistentVolumeClaimRetentionPolicy.whenScaled: Delete`.
    pub deletes_claims_on_scale_down: bool,
}

impl StatefulSetInfo {
    pub fn from_statefulset(sts: &StatefulSet, default_namespace: &str) -> StatefulSetInfo {
        let spec = Some(&sts.spec);
        StatefulSetInfo {
            namespace: sts
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| default_namespace.into()),
            name: sts.metadata.name.clone().unwrap_or_default(),
            service_name: spec
                .and_then(|s| s.service_name.clone())
                .filter(|s| !s.is_empty()),
            replicas: crate::policy::identity::replicas(sts),
            ordinals_start: crate::policy::identity::ordinals_start(sts),
            pod_labels: spec
                .and_then(|s| s.template.metadata.as_ref())
                .and_then(|m| m.labels.clone())
                .map(LabelSet::from)
                .unwrap_or_default(),
            claim_templates: crate::policy::identity::claim_template_names(sts),
            deletes_claims_on_scale_down: crate::policy::identity::deletes_claims_on_scale_down(
                sts,
            ),
        }
    }
}

/// What the rules need to know of a PodDisruptionBudget.
#[derive(Debug, Clone, PartialEq)]
pub struct PdbInfo {
    pub namespace: String,
    pub name: String,
    pub selector: Option<LabelSelector>,
}

impl PdbInfo {
    pub fn from_pdb(pdb: &PodDisruptionBudget, default_namespace: &str) -> PdbInfo {
        PdbInfo {
            namespace: pdb
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| default_namespace.into()),
            name: pdb.metadata.name.clone().unwrap_or_default(),
            selector: pdb.spec.as_ref().and_then(|s| s.selector.clone()),
        }
    }
}

/// Read-only access to related objects. Implementations never block on I/O.
pub trait Context: Send + Sync {
    /// False while the objects of `kind` cannot be known (cache not synced, no cluster).
    fn available(&self, kind: ContextKind) -> bool;
    fn service(&self, namespace: &str, name: &str) -> Option<Arc<ServiceInfo>>;
    fn statefulsets(&self, namespace: &str) -> Vec<Arc<StatefulSetInfo>>;
    fn pod_disruption_budgets(&self, namespace: &str) -> Vec<Arc<PdbInfo>>;
}

/// No related objects can be known (webhook without cluster access).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoContext;

impl Context for NoContext {
    fn available(&self, _kind: ContextKind) -> bool {
        false
    }
    fn service(&self, _namespace: &str, _name: &str) -> Option<Arc<ServiceInfo>> {
        None
    }
    fn statefulsets(&self, _namespace: &str) -> Vec<Arc<StatefulSetInfo>> {
        Vec::new()
    }
    fn pod_disruption_budgets(&self, _namespace: &str) -> Vec<Arc<PdbInfo>> {
        Vec::new()
    }
}

/// A fixed set of related objects (offline input, tests).
#[derive(Debug, Clone, Default)]
pub struct StaticContext {
    services: HashMap<(String, String), Arc<ServiceInfo>>,
    statefulsets: BTreeMap<String, Vec<Arc<StatefulSetInfo>>>,
    pdbs: BTreeMap<String, Vec<Arc<PdbInfo>>>,
}

impl StaticContext {
    pub fn add_service(&mut self, info: ServiceInfo) {
        self.services
            .insert((info.namespace.clone(), info.name.clone()), Arc::new(info));
    }
    pub fn add_statefulset(&mut self, info: StatefulSetInfo) {
        self.statefulsets
            .entry(info.namespace.clone())
            .or_default()
            .push(Arc::new(info));
    }
    pub fn add_pdb(&mut self, info: PdbInfo) {
        self.pdbs
            .entry(info.namespace.clone())
            .or_default()
            .push(Arc::new(info));
    }
}

impl Context for StaticContext {
    fn available(&self, _kind: ContextKind) -> bool {
        true
    }
    fn service(&self, namespace: &str, name: &str) -> Option<Arc<ServiceInfo>> {
        self.services
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }
    fn statefulsets(&self, namespace: &str) -> Vec<Arc<StatefulSetInfo>> {
        self.statefulsets
            .get(namespace)
            .cloned()
            .unwrap_or_default()
    }
    fn pod_disruption_budgets(&self, namespace: &str) -> Vec<Arc<PdbInfo>> {
        self.pdbs.get(namespace).cloned().unwrap_or_default()
    }
}
