//! What the collector (`gc`, `gc --watch`) decodes of claims, StatefulSets, pods and
//! namespaces: [`Slim`] objects of reader [`Collector`], holding only the fields that
//! [`claim_view`], [`set_view`], [`pod_view`] and the namespace opt-in read. Annotations
//! are read only under `stateward.io/` (the keep flag, the provenance, the orphaned-since
//! mark, the opt-in): the others (kubectl's last-applied copy above all) are skipped by the
//! parser without being allocated.
//!
//! Apart from the webhook's [`Slim`] objects because the readers differ: the webhook's
//! StatefulSet keeps the service name and the template's labels, the collector's keeps the
//! selector and the opt-in annotation. The audit reads pods and claims through the
//! live-state rules (conditions, owners, nodes), so it keeps its own (`audit::slim`).
//!
//! [`claim_view`]: super::views::claim_view
//! [`set_view`]: super::views::set_view
//! [`pod_view`]: super::views::pod_view
use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetOrdinals, StatefulSetPersistentVolumeClaimRetentionPolicy,
    StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    Namespace, PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource,
    Pod, PodSpec, PodStatus, Volume, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::Slim;
use super::slim::{NameOnly, meta};

/// The reader of `gc` and `gc --watch`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Collector;

/// The prefix of the only annotations the collector reads.
pub const ANNOTATION_PREFIX: &str = "stateward.io/";

/// A map of annotations keeping only the keys `keep` accepts; the values of the others are
/// skipped unread (what each reader's sparse decode of metadata shares).
pub(crate) fn annotations_where<'de, D: Deserializer<'de>>(
    deserializer: D,
    keep: fn(&str) -> bool,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    struct Keep(fn(&str) -> bool);
    impl<'de> Visitor<'de> for Keep {
        type Value = Option<BTreeMap<String, String>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map of annotations")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut kept = BTreeMap::new();
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if (self.0)(&key) {
                    kept.insert(key.into_owned(), map.next_value::<String>()?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(Some(kept))
        }
    }
    deserializer.deserialize_option(Keep(keep))
}

/// Only the annotations under [`ANNOTATION_PREFIX`].
fn stateward_annotations<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    annotations_where(deserializer, |key| key.starts_with(ANNOTATION_PREFIX))
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Meta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    #[serde(deserialize_with = "stateward_annotations")]
    annotations: Option<BTreeMap<String, String>>,
    creation_timestamp: Option<Time>,
    deletion_timestamp: Option<Time>,
    owner_references: Option<Vec<OwnerReference>>,
}

impl From<Meta> for ObjectMeta {
    fn from(m: Meta) -> ObjectMeta {
        ObjectMeta {
            name: m.name,
            namespace: m.namespace,
            uid: m.uid,
            resource_version: m.resource_version,
            labels: m.labels,
            annotations: m.annotations,
            creation_timestamp: m.creation_timestamp,
            deletion_timestamp: m.deletion_timestamp,
            owner_references: m.owner_references,
            ..ObjectMeta::default()
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Object<S, T = IgnoredAny> {
    metadata: Option<Meta>,
    spec: Option<S>,
    status: Option<T>,
}

fn object_meta(m: Option<Meta>) -> ObjectMeta {
    m.map(ObjectMeta::from).unwrap_or_default()
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Requests {
    requests: Option<BTreeMap<String, Quantity>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ClaimFields {
    resources: Option<Requests>,
}

impl<'de> Deserialize<'de> for Slim<PersistentVolumeClaim, Collector> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let object = Object::<ClaimFields>::deserialize(deserializer)?;
        Ok(Slim::new(PersistentVolumeClaim {
            metadata: object_meta(object.metadata),
            spec: object.spec.map(|s| PersistentVolumeClaimSpec {
                resources: s.resources.map(|r| VolumeResourceRequirements {
                    requests: r
                        .requests
                        .map(|r| r.into_iter().filter(|(k, _)| k == "storage").collect()),
                    ..VolumeResourceRequirements::default()
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            status: None,
        }))
    }
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct SetFields {
    replicas: Option<i32>,
    ordinals: Option<StatefulSetOrdinals>,
    selector: LabelSelector,
    volume_claim_templates: Option<Vec<NameOnly>>,
    persistent_volume_claim_retention_policy:
        Option<StatefulSetPersistentVolumeClaimRetentionPolicy>,
}

impl<'de> Deserialize<'de> for Slim<StatefulSet, Collector> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let object = Object::<SetFields>::deserialize(deserializer)?;
        Ok(Slim::new(StatefulSet {
            metadata: object_meta(object.metadata),
            spec: object
                .spec
                .map(|s| StatefulSetSpec {
                    replicas: s.replicas,
                    ordinals: s.ordinals,
                    selector: s.selector,
                    volume_claim_templates: s.volume_claim_templates.map(|claims| {
                        claims
                            .into_iter()
                            .map(|c| PersistentVolumeClaim {
                                metadata: meta(c.metadata),
                                ..PersistentVolumeClaim::default()
                            })
                            .collect()
                    }),
                    persistent_volume_claim_retention_policy: s
                        .persistent_volume_claim_retention_policy,
                    ..StatefulSetSpec::default()
                })
                .unwrap_or_default(),
            status: None,
        }))
    }
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ClaimSource {
    claim_name: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct VolumeFields {
    persistent_volume_claim: Option<ClaimSource>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PodFields {
    volumes: Option<Vec<VolumeFields>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PodStatusFields {
    phase: Option<String>,
}

impl<'de> Deserialize<'de> for Slim<Pod, Collector> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let object = Object::<PodFields, PodStatusFields>::deserialize(deserializer)?;
        let mut metadata = object_meta(object.metadata);
        // The pod view reads no labels, annotations, owners or timestamps.
        metadata.labels = None;
        metadata.annotations = None;
        metadata.owner_references = None;
        metadata.creation_timestamp = None;
        metadata.deletion_timestamp = None;
        Ok(Slim::new(Pod {
            metadata,
            spec: object.spec.map(|s| PodSpec {
                volumes: s.volumes.map(|volumes| {
                    volumes
                        .into_iter()
                        .filter_map(|v| v.persistent_volume_claim)
                        .map(|c| Volume {
                            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                                claim_name: c.claim_name,
                                ..PersistentVolumeClaimVolumeSource::default()
                            }),
                            ..Volume::default()
                        })
                        .collect()
                }),
                ..PodSpec::default()
            }),
            status: object.status.map(|s| PodStatus {
                phase: s.phase,
                ..PodStatus::default()
            }),
        }))
    }
}

impl<'de> Deserialize<'de> for Slim<Namespace, Collector> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let object = Object::<IgnoredAny>::deserialize(deserializer)?;
        Ok(Slim::new(Namespace {
            metadata: object_meta(object.metadata),
            spec: None,
            status: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::cluster::views::{Pairs, claim_view, pod_view, set_view};

    fn both<K: serde::de::DeserializeOwned>(value: Value) -> (K, Slim<K, Collector>)
    where
        Slim<K, Collector>: serde::de::DeserializeOwned,
    {
        (
            serde_json::from_value(value.clone()).expect("full"),
            serde_json::from_value(value).expect("slim"),
        )
    }

    fn metadata() -> Value {
        json!({"name": "data-db-3", "namespace": "shop", "uid": "u1", "resourceVersion": "7",
            "creationTimestamp": "2026-11-01T00:00:00Z", "labels": {"app": "db"},
            "annotations": {"stateward.io/keep": "true", "stateward.io/statefulset": "db",
                "kubectl.kubernetes.io/last-applied-configuration": "{\"a\": [1, 2]}", "note": "x"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "s1"}],
            "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": {}}]})
    }

    /// The full object's annotations as the collector keeps them.
    fn kept(annotations: std::sync::Arc<Pairs>) -> std::sync::Arc<Pairs> {
        std::sync::Arc::new(
            annotations
                .iter()
                .filter(|(k, _)| k.starts_with(ANNOTATION_PREFIX))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    #[test]
    fn a_collector_claim_projects_as_the_full_one() {
        for (meta, spec) in [
            (
                metadata(),
                json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi", "cpu": "1"}}}),
            ),
            (
                json!({"name": "c", "deletionTimestamp": "2026-11-02T00:00:00Z", "annotations": null}),
                json!({}),
            ),
            (json!({}), json!({"resources": {}})),
        ] {
            let (full, slim): (PersistentVolumeClaim, _) = both(json!({"apiVersion": "v1",
                "kind": "PersistentVolumeClaim", "metadata": meta, "spec": spec,
                "status": {"phase": "Bound"}}));
            let mut expected = claim_view(&full);
            expected.annotations = kept(expected.annotations);
            assert_eq!(claim_view(&slim.0), expected);
            assert!(slim.0.metadata.managed_fields.is_none());
        }
    }

    #[test]
    fn a_collector_set_projects_as_the_full_one() {
        for spec in [
            json!({"serviceName": "db", "replicas": 3, "selector": {"matchLabels": {"app": "db"},
                    "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]},
                "ordinals": {"start": 2},
                "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}}, {"metadata": {}}, {"metadata": {"name": "wal"}}],
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Delete"}}),
            json!({"selector": {}, "template": {}}),
        ] {
            let (full, slim): (StatefulSet, _) = both(json!({"apiVersion": "apps/v1",
                "kind": "StatefulSet", "metadata": metadata(), "spec": spec, "status": {"replicas": 3}}));
            let mut expected = set_view(&full);
            expected.annotations = kept(expected.annotations);
            assert_eq!(set_view(&slim.0), expected);
        }
    }

    #[test]
    fn a_collector_pod_projects_as_the_full_one() {
        for (spec, status) in [
            (
                json!({"containers": [{"name": "c", "image": "i", "env": [{"name": "A", "value": "b"}]}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0", "readOnly": true}},
                    {"name": "cfg", "configMap": {"name": "x"}},
                    {"name": "wal", "persistentVolumeClaim": {"claimName": "wal-db-0"}}]}),
                json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}),
            ),
            (json!({"containers": []}), json!({})),
            (json!({"containers": [], "volumes": null}), Value::Null),
        ] {
            let (full, slim): (Pod, _) = both(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": metadata(), "spec": spec, "status": status}));
            assert_eq!(pod_view(&slim.0), pod_view(&full));
            assert_eq!(slim.0.metadata.name.as_deref(), Some("data-db-3"));
            assert_eq!(slim.0.metadata.resource_version.as_deref(), Some("7"));
        }
    }

    #[test]
    fn a_collector_namespace_keeps_the_opt_in() {
        let slim: Slim<Namespace, Collector> =
            serde_json::from_value(json!({"metadata": {"name": "shop",
            "annotations": {"stateward.io/collect-orphaned-claims": "true", "other": "x"}},
            "spec": {"finalizers": ["kubernetes"]}}))
            .expect("slim");
        assert_eq!(
            slim.0.metadata.annotations,
            Some(BTreeMap::from([(
                "stateward.io/collect-orphaned-claims".to_owned(),
                "true".to_owned()
            )]))
        );
    }
}
