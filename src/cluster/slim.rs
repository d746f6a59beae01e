//! What the webhook's watches decode: list pages and watch events parsed straight into
//! sparse k8s-openapi objects that carry only the fields the projections read (name,
//! namespace, uid and resourceVersion of the metadata; the few spec fields of
//! [`ServiceInfo`], [`StatefulSetInfo`] and [`PdbInfo`]). Everything else (managedFields,
//! annotations, pod templates, status) is skipped by the parser without being allocated,
//! which keeps both the transient garbage of a list of 100,000 objects and the allocator's
//! retention of it small.
//!
//! [`Slim<K>`] is a `K` (so the projections and the rules read it as they read a full
//! object) behind a `kube::Resource` that is `K`'s, with a `Deserialize` of its own.
//!
//! [`ServiceInfo`]: crate::policy::context::ServiceInfo
//! [`StatefulSetInfo`]: crate::policy::context::StatefulSetInfo
//! [`PdbInfo`]: crate::policy::context::PdbInfo
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::marker::PhantomData;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetOrdinals, StatefulSetPersistentVolumeClaimRetentionPolicy,
    StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PodTemplateSpec, Service, ServiceSpec};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::{Deserialize, Deserializer};

/// A `K` holding only what the projections of reader `R` read; see the module
/// documentation. `R` is [`Webhook`] (the context caches) or
/// [`Collector`](super::collector::Collector) (`gc` and `gc --watch`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Slim<K, R = Webhook>(pub K, PhantomData<fn() -> R>);

impl<K, R> Slim<K, R> {
    pub fn new(object: K) -> Self {
        Slim(object, PhantomData)
    }
}

/// The reader of the webhook's context caches.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Webhook;

impl<K, R> kube::Resource for Slim<K, R>
where
    K: kube::Resource<DynamicType = ()>,
{
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }
    fn api_version(dt: &()) -> Cow<'_, str> {
        K::api_version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        self.0.meta()
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        self.0.meta_mut()
    }
}

/// The metadata the caches and the watcher need: the key, the uid and the
/// resourceVersion a watch resumes from.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct Meta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
}

impl From<Meta> for ObjectMeta {
    fn from(meta: Meta) -> ObjectMeta {
        ObjectMeta {
            name: meta.name,
            namespace: meta.namespace,
            uid: meta.uid,
            resource_version: meta.resource_version,
            ..ObjectMeta::default()
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct LabelsOnly {
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct NameOnly {
    pub(super) metadata: Option<Meta>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Object<S> {
    metadata: Option<Meta>,
    spec: Option<S>,
}

pub(super) fn meta(meta: Option<Meta>) -> ObjectMeta {
    meta.map(ObjectMeta::from).unwrap_or_default()
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ServiceFields {
    #[serde(rename = "clusterIP")]
    cluster_ip: Option<String>,
    selector: Option<BTreeMap<String, String>>,
}

impl<'de> Deserialize<'de> for Slim<Service> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let object = Object::<ServiceFields>::deserialize(deserializer)?;
        Ok(Slim::new(Service {
            metadata: meta(object.metadata),
            spec: object.spec.map(|s| ServiceSpec {
                cluster_ip: s.cluster_ip,
                selector: s.selector,
                ..ServiceSpec::default()
            }),
            status: None,
        }))
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TemplateFields {
    metadata: Option<LabelsOnly>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct StatefulSetFields {
    service_name: Option<String>,
    replicas: Option<i32>,
    ordinals: Option<StatefulSetOrdinals>,
    template: Option<TemplateFields>,
    volume_claim_templates: Option<Vec<NameOnly>>,
    persistent_volume_claim_retention_policy:
        Option<StatefulSetPersistentVolumeClaimRetentionPolicy>,
}

impl<'de> Deserialize<'de> for Slim<StatefulSet> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let object = Object::<StatefulSetFields>::deserialize(deserializer)?;
        Ok(Slim::new(StatefulSet {
            metadata: meta(object.metadata),
            spec: object
                .spec
                .map(|s| StatefulSetSpec {
                    service_name: s.service_name,
                    replicas: s.replicas,
                    ordinals: s.ordinals,
                    template: PodTemplateSpec {
                        metadata: s.template.and_then(|t| t.metadata).map(|m| ObjectMeta {
                            labels: m.labels,
                            ..ObjectMeta::default()
                        }),
                        spec: None,
                    },
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
#[serde(default)]
struct PdbFields {
    selector: Option<LabelSelector>,
}

impl<'de> Deserialize<'de> for Slim<PodDisruptionBudget> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let object = Object::<PdbFields>::deserialize(deserializer)?;
        Ok(Slim::new(PodDisruptionBudget {
            metadata: meta(object.metadata),
            spec: object.spec.map(|s| PodDisruptionBudgetSpec {
                selector: s.selector,
                ..PodDisruptionBudgetSpec::default()
            }),
            status: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::policy::context::{PdbInfo, ServiceInfo, StatefulSetInfo};

    fn both<K: serde::de::DeserializeOwned>(value: serde_json::Value) -> (K, Slim<K>)
    where
        Slim<K>: serde::de::DeserializeOwned,
    {
        (
            serde_json::from_value(value.clone()).expect("full"),
            serde_json::from_value(value).expect("slim"),
        )
    }

    fn managed() -> serde_json::Value {
        json!([{"manager": "kubectl", "operation": "Apply", "apiVersion": "v1",
            "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:selector": {}}}}])
    }

    #[test]
    fn a_slim_service_projects_as_the_full_one() {
        for spec in [
            json!({"clusterIP": "None", "selector": {"app": "db", "tier": "x"},
                "ports": [{"name": "pg", "port": 5432}], "type": "ClusterIP"}),
            json!({"clusterIP": "10.96.0.3", "selector": {}}),
            json!({"clusterIP": null, "selector": null}),
            json!({}),
        ] {
            let (full, slim): (Service, Slim<Service>) = both(json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "db", "namespace": "shop", "uid": "u1", "resourceVersion": "7",
                    "labels": {"a": "b"}, "annotations": {"c": "d"}, "managedFields": managed()},
                "spec": spec, "status": {"loadBalancer": {}}}));
            assert_eq!(
                ServiceInfo::from_service(&slim.0, "default"),
                ServiceInfo::from_service(&full, "default")
            );
            assert_eq!(slim.0.metadata.resource_version.as_deref(), Some("7"));
            assert_eq!(slim.0.metadata.uid.as_deref(), Some("u1"));
            assert!(slim.0.metadata.managed_fields.is_none());
            assert!(slim.0.metadata.annotations.is_none());
        }
        let (full, slim): (Service, Slim<Service>) =
            both(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}}));
        assert_eq!(
            ServiceInfo::from_service(&slim.0, "default"),
            ServiceInfo::from_service(&full, "default")
        );
    }

    #[test]
    fn a_slim_statefulset_projects_as_the_full_one() {
        let template = json!({"metadata": {"labels": {"app": "db"}, "annotations": {"x": "y"}},
            "spec": {"containers": [{"name": "db", "image": "postgres"}]}});
        for spec in [
            json!({"serviceName": "db", "replicas": 3, "selector": {"matchLabels": {"app": "db"}},
                "ordinals": {"start": 2}, "template": template,
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}},
                    {"metadata": {}}, {"metadata": {"name": "wal"}}],
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Delete"}}),
            json!({"serviceName": "", "selector": {}, "template": {}}),
            json!({"replicas": 0, "selector": {}, "template": {"metadata": {}},
                "volumeClaimTemplates": [],
                "persistentVolumeClaimRetentionPolicy": {"whenScaled": "Retain"}}),
        ] {
            let (full, slim): (StatefulSet, Slim<StatefulSet>) = both(json!({
                "apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": "db", "namespace": "shop", "resourceVersion": "9", "managedFields": managed()},
                "spec": spec, "status": {"replicas": 3}}));
            assert_eq!(
                StatefulSetInfo::from_statefulset(&slim.0, "default"),
                StatefulSetInfo::from_statefulset(&full, "default")
            );
            assert_eq!(slim.0.metadata.resource_version.as_deref(), Some("9"));
        }
    }

    #[test]
    fn a_slim_pdb_projects_as_the_full_one() {
        for spec in [
            json!({"minAvailable": 1, "selector": {"matchLabels": {"app": "db"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]}}),
            json!({"maxUnavailable": "50%"}),
        ] {
            let (full, slim): (PodDisruptionBudget, Slim<PodDisruptionBudget>) = both(json!({
                "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                "metadata": {"name": "db", "namespace": "shop"}, "spec": spec}));
            assert_eq!(
                PdbInfo::from_pdb(&slim.0, "default"),
                PdbInfo::from_pdb(&full, "default")
            );
        }
    }

    #[test]
    fn the_resource_is_the_full_kinds() {
        use kube::Resource;
        assert_eq!(
            Slim::<Service>::url_path(&(), Some("a")),
            Service::url_path(&(), Some("a"))
        );
        assert_eq!(
            Slim::<StatefulSet>::url_path(&(), None),
            StatefulSet::url_path(&(), None)
        );
        assert_eq!(
            Slim::<PodDisruptionBudget>::api_version(&()),
            PodDisruptionBudget::api_version(&())
        );
    }
}
