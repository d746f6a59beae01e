//! What a pass keeps of the pods, claims and nodes it lists: only the fields the live-state
//! rules and the orphan classifier read, dropped page by page as the lists come in. Pods
//! are most of a cluster's objects and the engine never evaluates them (only StatefulSets
//! and Services, which are kept whole), so their containers, the managed fields and
//! kubectl's last-applied copy are never held for the length of a pass.
//!
//! The lists of a pass decode [`Slim`] objects of reader [`Audit`]: the same fields, parsed
//! from the page without the others ever being allocated ([`pod`], [`claim`] and [`node`]
//! say what is kept; the tests hold the two equal).
//!
//! StatefulSets, Services and PodDisruptionBudgets, which the engine evaluates, are decoded
//! whole but for their managed fields and kubectl's last-applied copy ([`whole`]): only
//! mutations read those, and the audit validates. A page of 500 sets of the fleet bench
//! is 8 MB of text, half of it managed fields, whose `fieldsV1` trees would otherwise be
//! decoded into tens of MB of `serde_json::Value` nodes.
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    Node, NodeCondition, NodeStatus, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimStatus, PersistentVolumeClaimVolumeSource, Pod, PodCondition, PodSpec,
    PodStatus, Service, ServiceSpec, ServiceStatus, Volume,
};
use k8s_openapi::api::policy::v1::{
    PodDisruptionBudget, PodDisruptionBudgetSpec, PodDisruptionBudgetStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};

use crate::cluster::Slim;

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn meta(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// Keeps a pod's metadata (labels, owners, timestamps), node, grace period and claim
/// volumes, phase and conditions.
pub fn pod(pod: &mut Pod) {
    meta(&mut pod.metadata);
    if let Some(spec) = pod.spec.take() {
        pod.spec = Some(PodSpec {
            node_name: spec.node_name,
            termination_grace_period_seconds: spec.termination_grace_period_seconds,
            volumes: spec.volumes.map(|volumes| {
                volumes
                    .into_iter()
                    .filter(|v| v.persistent_volume_claim.is_some())
                    .map(|v| Volume {
                        name: v.name,
                        persistent_volume_claim: v.persistent_volume_claim,
                        ..Volume::default()
                    })
                    .collect()
            }),
            ..PodSpec::default()
        });
    }
    if let Some(status) = pod.status.take() {
        pod.status = Some(PodStatus {
            phase: status.phase,
            conditions: status.conditions,
            reason: status.reason,
            ..PodStatus::default()
        });
    }
}

/// Drops an object's managed fields and last-applied copy (StatefulSets, Services,
/// PodDisruptionBudgets).
pub fn whole<K: k8s_openapi::Metadata<Ty = ObjectMeta>>(object: &mut K) {
    meta(object.metadata_mut());
}

/// Drops a claim's managed fields and last-applied copy.
pub fn claim(claim: &mut PersistentVolumeClaim) {
    meta(&mut claim.metadata);
}

/// Keeps a node's name and conditions (not its images, addresses, capacity).
pub fn node(node: &mut Node) {
    meta(&mut node.metadata);
    node.spec = None;
    if let Some(status) = node.status.take() {
        node.status = Some(NodeStatus {
            conditions: status.conditions,
            ..NodeStatus::default()
        });
    }
}

/// The reader of the audit's lists.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Audit;

/// Annotations without kubectl's last-applied copy (skipped unread).
fn annotations<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    crate::cluster::annotations_where(deserializer, |key| key != LAST_APPLIED)
}

/// Every field of `ObjectMeta` but the managed fields (never read).
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Meta {
    #[serde(deserialize_with = "annotations")]
    annotations: Option<BTreeMap<String, String>>,
    creation_timestamp: Option<Time>,
    deletion_grace_period_seconds: Option<i64>,
    deletion_timestamp: Option<Time>,
    finalizers: Option<Vec<String>>,
    generate_name: Option<String>,
    generation: Option<i64>,
    labels: Option<BTreeMap<String, String>>,
    name: Option<String>,
    namespace: Option<String>,
    owner_references: Option<Vec<OwnerReference>>,
    resource_version: Option<String>,
    self_link: Option<String>,
    uid: Option<String>,
}

impl From<Meta> for ObjectMeta {
    fn from(m: Meta) -> ObjectMeta {
        ObjectMeta {
            annotations: m.annotations,
            creation_timestamp: m.creation_timestamp,
            deletion_grace_period_seconds: m.deletion_grace_period_seconds,
            deletion_timestamp: m.deletion_timestamp,
            finalizers: m.finalizers,
            generate_name: m.generate_name,
            generation: m.generation,
            labels: m.labels,
            managed_fields: None,
            name: m.name,
            namespace: m.namespace,
            owner_references: m.owner_references,
            resource_version: m.resource_version,
            self_link: m.self_link,
            uid: m.uid,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Object<S, T> {
    metadata: Meta,
    spec: Option<S>,
    status: Option<T>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct VolumeFields {
    name: String,
    persistent_volume_claim: Option<PersistentVolumeClaimVolumeSource>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct PodFields {
    node_name: Option<String>,
    termination_grace_period_seconds: Option<i64>,
    volumes: Option<Vec<VolumeFields>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PodStatusFields {
    phase: Option<String>,
    conditions: Option<Vec<PodCondition>>,
    reason: Option<String>,
}

impl<'de> Deserialize<'de> for Slim<Pod, Audit> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let object = Object::<PodFields, PodStatusFields>::deserialize(deserializer)?;
        Ok(Slim::new(Pod {
            metadata: object.metadata.into(),
            spec: object.spec.map(|s| PodSpec {
                node_name: s.node_name,
                termination_grace_period_seconds: s.termination_grace_period_seconds,
                volumes: s.volumes.map(|volumes| {
                    volumes
                        .into_iter()
                        .filter(|v| v.persistent_volume_claim.is_some())
                        .map(|v| Volume {
                            name: v.name,
                            persistent_volume_claim: v.persistent_volume_claim,
                            ..Volume::default()
                        })
                        .collect()
                }),
                ..PodSpec::default()
            }),
            status: object.status.map(|s| PodStatus {
                phase: s.phase,
                conditions: s.conditions,
                reason: s.reason,
                ..PodStatus::default()
            }),
        }))
    }
}

impl<'de> Deserialize<'de> for Slim<PersistentVolumeClaim, Audit> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let object = Object::<PersistentVolumeClaimSpec, PersistentVolumeClaimStatus>::deserialize(
            deserializer,
        )?;
        Ok(Slim::new(PersistentVolumeClaim {
            metadata: object.metadata.into(),
            spec: object.spec,
            status: object.status,
        }))
    }
}

impl<'de> Deserialize<'de> for Slim<StatefulSet, Audit> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let object = Object::<StatefulSetSpec, StatefulSetStatus>::deserialize(deserializer)?;
        Ok(Slim::new(StatefulSet {
            metadata: object.metadata.into(),
            spec: object.spec.unwrap_or_default(),
            status: object.status,
        }))
    }
}

impl<'de> Deserialize<'de> for Slim<Service, Audit> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let object = Object::<ServiceSpec, ServiceStatus>::deserialize(deserializer)?;
        Ok(Slim::new(Service {
            metadata: object.metadata.into(),
            spec: object.spec,
            status: object.status,
        }))
    }
}

impl<'de> Deserialize<'de> for Slim<PodDisruptionBudget, Audit> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let object = Object::<PodDisruptionBudgetSpec, PodDisruptionBudgetStatus>::deserialize(
            deserializer,
        )?;
        Ok(Slim::new(PodDisruptionBudget {
            metadata: object.metadata.into(),
            spec: object.spec,
            status: object.status,
        }))
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NodeStatusFields {
    conditions: Option<Vec<NodeCondition>>,
}

impl<'de> Deserialize<'de> for Slim<Node, Audit> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let object = Object::<IgnoredAny, NodeStatusFields>::deserialize(deserializer)?;
        Ok(Slim::new(Node {
            metadata: object.metadata.into(),
            spec: None,
            status: object.status.map(|s| NodeStatus {
                conditions: s.conditions,
                ..NodeStatus::default()
            }),
        }))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cluster::views::pod_view;

    #[test]
    fn a_slim_pod_reads_as_the_pod_for_the_classifier_and_the_live_rules() {
        let mut full: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-0", "namespace": "shop", "uid": "p",
                         "labels": {"app": "web", "controller-revision-hash": "web-1"},
                         "annotations": {LAST_APPLIED: "{}", "keep": "me"},
                         "managedFields": [{"manager": "kubectl"}],
                         "deletionTimestamp": "2026-01-01T00:00:00Z",
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                                              "name": "web", "uid": "s", "controller": true}]},
            "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 30,
                     "containers": [{"name": "c", "image": "x", "env": [{"name": "A", "value": "b"}]}],
                     "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-web-0"}},
                                 {"name": "tmp", "emptyDir": {}}]},
            "status": {"phase": "Running",
                       "conditions": [{"type": "Ready", "status": "False"}],
                       "containerStatuses": [{"name": "c", "image": "x", "imageID": "", "ready": false,
                                              "restartCount": 3}]}
        }))
        .expect("pod");
        let before = pod_view(&full);
        pod(&mut full);
        assert_eq!(pod_view(&full), before);
        let spec = full.spec.as_ref().expect("spec");
        assert!(spec.containers.is_empty());
        assert_eq!(spec.node_name.as_deref(), Some("n1"));
        assert_eq!(spec.volumes.as_ref().map(Vec::len), Some(1));
        let status = full.status.as_ref().expect("status");
        assert!(status.container_statuses.is_none());
        assert_eq!(status.conditions.as_ref().map(Vec::len), Some(1));
        assert!(full.metadata.managed_fields.is_none());
        let annotations = full.metadata.annotations.as_ref().expect("annotations");
        assert_eq!(annotations.len(), 1);
        assert!(full.metadata.deletion_timestamp.is_some());
        assert!(full.metadata.owner_references.is_some());
    }

    /// A `Slim<K, Audit>` decode is the full decode trimmed by `slim`.
    fn decodes_as_trimmed<K>(value: serde_json::Value, slim: fn(&mut K))
    where
        K: serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
        Slim<K, Audit>: serde::de::DeserializeOwned,
    {
        let mut full: K = serde_json::from_value(value.clone()).expect("full");
        slim(&mut full);
        let sparse: Slim<K, Audit> = serde_json::from_value(value).expect("sparse");
        assert_eq!(sparse.0, full);
    }

    fn metadata() -> serde_json::Value {
        json!({"name": "web-0", "namespace": "shop", "uid": "p", "resourceVersion": "4", "generation": 2,
            "generateName": "web-", "finalizers": ["f"], "deletionGracePeriodSeconds": 30,
            "creationTimestamp": "2026-01-01T00:00:00Z", "deletionTimestamp": "2026-01-02T00:00:00Z",
            "labels": {"app": "web"}, "annotations": {LAST_APPLIED: "{}", "keep": "me"},
            "managedFields": [{"manager": "kubectl"}],
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "s", "controller": true}]})
    }

    #[test]
    fn the_sparse_decodes_are_the_full_ones_trimmed() {
        for (spec, status) in [
            (
                json!({"nodeName": "n1", "terminationGracePeriodSeconds": 30,
                "containers": [{"name": "c", "image": "x", "env": [{"name": "A", "value": "b"}]}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-web-0", "readOnly": true}},
                    {"name": "tmp", "emptyDir": {}}]}),
                json!({"phase": "Running", "reason": "Evicted", "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [{"name": "c", "image": "x", "imageID": "", "ready": false, "restartCount": 3}]}),
            ),
            (json!({"containers": []}), json!({})),
            (
                json!({"containers": [], "volumes": null}),
                serde_json::Value::Null,
            ),
        ] {
            decodes_as_trimmed::<Pod>(
                json!({"metadata": metadata(), "spec": spec, "status": status}),
                pod,
            );
        }
        decodes_as_trimmed::<Pod>(json!({"metadata": {"name": "x", "annotations": null}}), pod);
        decodes_as_trimmed::<PersistentVolumeClaim>(
            json!({"metadata": metadata(), "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast",
                "resources": {"requests": {"storage": "1Gi"}}}, "status": {"phase": "Pending"}}),
            claim,
        );
        decodes_as_trimmed::<StatefulSet>(
            json!({"metadata": metadata(), "spec": {"replicas": 2, "serviceName": "web",
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "x"}]}}},
                "status": {"replicas": 2, "currentRevision": "a", "updateRevision": "b"}}),
            whole,
        );
        decodes_as_trimmed::<StatefulSet>(json!({"metadata": {"name": "x"}}), whole);
        decodes_as_trimmed::<Service>(
            json!({"metadata": metadata(), "spec": {"clusterIP": "None", "selector": {"app": "web"},
                "ports": [{"name": "db", "port": 5432}]}, "status": {"loadBalancer": {}}}),
            whole,
        );
        decodes_as_trimmed::<PodDisruptionBudget>(
            json!({"metadata": metadata(), "spec": {"maxUnavailable": 0,
                "selector": {"matchLabels": {"app": "web"}}}, "status": {"currentHealthy": 1,
                "desiredHealthy": 1, "disruptionsAllowed": 0, "expectedPods": 1}}),
            whole,
        );
        decodes_as_trimmed::<Node>(
            json!({"metadata": metadata(), "spec": {"podCIDR": "10.0.0.0/24"},
                "status": {"conditions": [{"type": "Ready", "status": "True"}], "images": [{"names": ["x"]}],
                    "capacity": {"cpu": "4"}}}),
            node,
        );
    }
}
