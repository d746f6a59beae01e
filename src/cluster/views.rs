//! The collector's projections of claims, StatefulSets and pods ([`claim_view`],
//! [`set_view`], [`pod_view`]): what the classifier of `gc` reads and the audit shares,
//! with the annotations stateward writes on them, the clock of a pass ([`now_seconds`])
//! and the API of a resource in one namespace or all ([`api`]). Below `gc` and `audit`,
//! so both take them from here.
use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{Api, Client};

use super::ANNOTATION_PREFIX;
use crate::quantity::quantity_bytes;

pub const KEEP: &str = "stateward.io/keep";
pub const SET_ANNOTATION: &str = "stateward.io/statefulset";
pub const SET_UID_ANNOTATION: &str = "stateward.io/statefulset-uid";
pub const ORPHANED_SINCE: &str = "stateward.io/orphaned-since";
pub const OPT_IN: &str = "stateward.io/collect-orphaned-claims";

/// Keys held by many objects, kept without an allocation of their own.
const COMMON_KEYS: [&str; 10] = [
    KEEP,
    SET_ANNOTATION,
    SET_UID_ANNOTATION,
    ORPHANED_SINCE,
    OPT_IN,
    "app",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
];

fn key(text: String) -> Cow<'static, str> {
    match COMMON_KEYS.iter().find(|k| **k == text) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(text),
    }
}

/// Labels or annotations: a map as a slice of pairs sorted by key. An object has a few,
/// and a `BTreeMap` allocates a node of about 550 bytes for the first one; the common keys
/// (`app`, stateward's annotations) are not allocated at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pairs(Box<[(Cow<'static, str>, Box<str>)]>);

impl Pairs {
    fn position(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_ref().cmp(key))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.position(key).ok().map(|i| &*self.0[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_ok()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Sets `key` to `value` (replacing a value it had).
    pub fn insert(&mut self, key: String, value: String) {
        match self.position(&key) {
            Ok(i) => self.0[i].1 = value.into(),
            Err(i) => {
                let mut pairs = std::mem::take(&mut self.0).into_vec();
                pairs.insert(i, (self::key(key), value.into()));
                self.0 = pairs.into_boxed_slice();
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }

    /// As a map (what label selectors match against).
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

impl From<BTreeMap<String, String>> for Pairs {
    fn from(map: BTreeMap<String, String>) -> Pairs {
        // A map's keys are sorted and unique already.
        Pairs(map.into_iter().map(|(k, v)| (key(k), v.into())).collect())
    }
}

impl FromIterator<(String, String)> for Pairs {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Pairs {
        Pairs::from(pairs.into_iter().collect::<BTreeMap<_, _>>())
    }
}

/// What classification needs of a claim.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClaimView {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    pub labels: Pairs,
    /// Only stateward's (`stateward.io/`): no other is read.
    pub annotations: Pairs,
    /// Seconds since the Unix epoch.
    pub created: Option<i64>,
    pub requested_bytes: Option<u64>,
    pub deleting: bool,
    /// (kind, uid) of each owner reference.
    pub owners: Vec<(String, String)>,
}

/// What classification needs of a StatefulSet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SetView {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub replicas: i32,
    pub ordinals_start: i32,
    pub templates: Vec<String>,
    pub selector: LabelSelector,
    pub when_scaled_delete: bool,
    /// Only stateward's (`stateward.io/`): no other is read.
    pub annotations: Pairs,
}

/// What classification needs of a pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodView {
    pub namespace: String,
    pub uid: String,
    /// The phases Kubernetes defines are not allocated.
    pub phase: Cow<'static, str>,
    pub claims: Vec<String>,
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

/// The API of `K` in `namespace`, or in every namespace.
pub fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Seconds since the Unix epoch.
pub fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
