//! The webhook's decode of a CREATE: only the fields that the rules and mutations of a
//! CREATE read, in k8s-openapi's types, every other field skipped unparsed.
//!
//! Why: through the API server the webhook sees one review at a time with the CPU caches
//! cold, and decoding the whole object into k8s-openapi's types (the decoders of every
//! field of a pod template: environment, ports, lifecycle, images, …) was the largest part
//! of a review's cost (`cargo bench --bench cold`). Here the skipped fields cost only the
//! JSON scanner.
//!
//! The result is the same k8s-openapi object the rules take, with the fields not read
//! left at their defaults, so the rules do not know which decode they got. It is used
//! only where the API server is the sender and only for CREATE: an UPDATE compares whole
//! pod templates (`statefulset.rollout-stuck`), a DELETE is rare, and the offline checker,
//! `audit` and the webhook's second read (which names a wrong field) decode in full.
//!
//! The guard: every CREATE that the engine's unit tests evaluate (through
//! `policy::testkit::evaluate`) is evaluated a second time on this decode of the same
//! object ([`assert_same_decision`]), and the two decisions (findings, messages, patch)
//! must be equal; the corpus tier does the same for every real manifest. A rule that
//! starts reading a field this decode skips fails its own tests until the field is added
//! here.
use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::apps::v1 as apps;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::policy::{Kind, Resource};

/// Decodes the object of a CREATE of `kind` (`None` for `null`).
pub fn decode<'de, D: Deserializer<'de>>(
    kind: Kind,
    deserializer: D,
) -> Result<Option<Resource>, D::Error> {
    Ok(match kind {
        Kind::StatefulSet => Option::<StatefulSet>::deserialize(deserializer)?
            .map(|o| Resource::StatefulSet(Box::new(o.into()))),
        Kind::Pod => {
            Option::<Pod>::deserialize(deserializer)?.map(|o| Resource::Pod(Box::new(o.into())))
        }
        // A Service is small and read almost whole: the full decode.
        Kind::Service => Option::<core::Service>::deserialize(deserializer)?
            .map(|o| Resource::Service(Box::new(o))),
    })
}

/// [`decode`] from a JSON value (the tests' and the corpus tier's comparison).
pub fn from_value(kind: Kind, value: &serde_json::Value) -> Result<Resource, serde_json::Error> {
    decode(kind, value)?.ok_or_else(|| serde::de::Error::custom("the object is null"))
}

/// `null` read as the default, as k8s-openapi reads it: the API server writes an absent
/// selector or container list as `null` (Go's fields without `omitempty`).
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Meta {
    name: Option<String>,
    namespace: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
    owner_references: Option<Vec<meta::OwnerReference>>,
    managed_fields: Option<Vec<ManagedFields>>,
}

impl From<Meta> for meta::ObjectMeta {
    fn from(m: Meta) -> Self {
        meta::ObjectMeta {
            name: m.name,
            namespace: m.namespace,
            labels: m.labels,
            annotations: m.annotations,
            owner_references: m.owner_references,
            managed_fields: m
                .managed_fields
                .map(|entries| entries.into_iter().map(|e| e.0).collect()),
            ..Default::default()
        }
    }
}

/// A managed-fields entry as the defaults read it: its operation, and its field set only
/// when the operation is `Apply` (the set of an `Update` entry mirrors the whole object and
/// is skipped when the operation comes first, as the API server writes it).
struct ManagedFields(meta::ManagedFieldsEntry);

impl<'de> Deserialize<'de> for ManagedFields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "camelCase")]
        enum Key {
            Operation,
            FieldsV1,
            #[serde(other)]
            Other,
        }

        struct EntryVisitor;

        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = ManagedFields;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a ManagedFieldsEntry")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ManagedFields, A::Error> {
                let mut entry = meta::ManagedFieldsEntry::default();
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::Operation => entry.operation = map.next_value()?,
                        Key::FieldsV1
                            if entry.operation.as_deref().is_none_or(|op| op == "Apply") =>
                        {
                            entry.fields_v1 = map.next_value()?
                        }
                        Key::FieldsV1 | Key::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                if entry.operation.as_deref() != Some("Apply") {
                    entry.fields_v1 = None;
                }
                Ok(ManagedFields(entry))
            }
        }

        deserializer.deserialize_map(EntryVisitor)
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct StatefulSet {
    metadata: Meta,
    spec: StatefulSetSpec,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct StatefulSetSpec {
    ordinals: Option<apps::StatefulSetOrdinals>,
    persistent_volume_claim_retention_policy:
        Option<apps::StatefulSetPersistentVolumeClaimRetentionPolicy>,
    pod_management_policy: Option<String>,
    replicas: Option<i32>,
    #[serde(deserialize_with = "null_as_default")]
    selector: meta::LabelSelector,
    service_name: Option<String>,
    template: PodTemplateSpec,
    update_strategy: Option<apps::StatefulSetUpdateStrategy>,
    volume_claim_templates: Option<Vec<ClaimTemplate>>,
}

impl From<StatefulSet> for apps::StatefulSet {
    fn from(o: StatefulSet) -> Self {
        let s = o.spec;
        apps::StatefulSet {
            metadata: o.metadata.into(),
            spec: apps::StatefulSetSpec {
                ordinals: s.ordinals,
                persistent_volume_claim_retention_policy: s
                    .persistent_volume_claim_retention_policy,
                pod_management_policy: s.pod_management_policy,
                replicas: s.replicas,
                selector: s.selector,
                service_name: s.service_name,
                template: s.template.into(),
                update_strategy: s.update_strategy,
                volume_claim_templates: s
                    .volume_claim_templates
                    .map(|claims| claims.into_iter().map(Into::into).collect()),
                ..Default::default()
            },
            status: None,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PodTemplateSpec {
    metadata: Option<Meta>,
    spec: Option<PodSpec>,
}

impl From<PodTemplateSpec> for core::PodTemplateSpec {
    fn from(t: PodTemplateSpec) -> Self {
        core::PodTemplateSpec {
            metadata: t.metadata.map(Into::into),
            spec: t.spec.map(Into::into),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct PodSpec {
    affinity: Option<core::Affinity>,
    #[serde(deserialize_with = "null_as_default")]
    containers: Vec<Container>,
    init_containers: Option<Vec<Container>>,
    security_context: Option<core::PodSecurityContext>,
    termination_grace_period_seconds: Option<i64>,
    topology_spread_constraints: Option<Vec<core::TopologySpreadConstraint>>,
    volumes: Option<Vec<Named>>,
}

impl From<PodSpec> for core::PodSpec {
    fn from(p: PodSpec) -> Self {
        core::PodSpec {
            affinity: p.affinity,
            containers: p.containers.into_iter().map(Into::into).collect(),
            init_containers: p
                .init_containers
                .map(|containers| containers.into_iter().map(Into::into).collect()),
            security_context: p.security_context,
            termination_grace_period_seconds: p.termination_grace_period_seconds,
            topology_spread_constraints: p.topology_spread_constraints,
            volumes: p.volumes.map(|volumes| {
                volumes
                    .into_iter()
                    .map(|v| core::Volume {
                        name: v.name,
                        ..Default::default()
                    })
                    .collect()
            }),
            ..Default::default()
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Container {
    name: String,
    liveness_probe: Option<core::Probe>,
    readiness_probe: Option<core::Probe>,
    resources: Option<core::ResourceRequirements>,
    security_context: Option<core::SecurityContext>,
    volume_devices: Option<Vec<core::VolumeDevice>>,
    volume_mounts: Option<Vec<core::VolumeMount>>,
}

impl From<Container> for core::Container {
    fn from(c: Container) -> Self {
        core::Container {
            name: c.name,
            liveness_probe: c.liveness_probe,
            readiness_probe: c.readiness_probe,
            resources: c.resources,
            security_context: c.security_context,
            volume_devices: c.volume_devices,
            volume_mounts: c.volume_mounts,
            ..Default::default()
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Named {
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ClaimTemplate {
    metadata: Meta,
    spec: Option<core::PersistentVolumeClaimSpec>,
}

impl From<ClaimTemplate> for core::PersistentVolumeClaim {
    fn from(c: ClaimTemplate) -> Self {
        core::PersistentVolumeClaim {
            metadata: c.metadata.into(),
            spec: c.spec,
            status: None,
        }
    }
}

/// A pod CREATE is read for its identity labels: its metadata.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Pod {
    metadata: Meta,
}

impl From<Pod> for core::Pod {
    fn from(o: Pod) -> Self {
        core::Pod {
            metadata: o.metadata.into(),
            spec: None,
            status: None,
        }
    }
}

/// In unit tests: the decision on `review` (a CREATE) must not change when its object is
/// read with [`decode`], as the webhook reads it, at any stage: the whole of admission
/// (`decision`), and the webhook's mutating and validating stages.
#[cfg(test)]
pub(crate) fn assert_same_decision(
    policy: &crate::policy::Policy,
    review: &crate::policy::Review,
    context: &dyn crate::policy::Context,
    decision: &crate::policy::Decision,
) {
    use crate::policy::{Operation, Stage, evaluate_stage};
    if review.operation != Operation::Create {
        return;
    }
    let Some(object) = &review.object else {
        return;
    };
    let lean = from_value(review.kind, &object.to_value()).expect("the lean decode reads it");
    let mut again = review.clone();
    again.object = Some(lean);
    let message = "the webhook's decode of a CREATE (src/webhook/admission/lean.rs) changes \
                   the decision: a rule reads a field it skips";
    assert_eq!(
        decision,
        &evaluate_stage(policy, &again, context, Stage::Admit),
        "{message}"
    );
    for stage in [Stage::Mutate, Stage::Validate] {
        assert_eq!(
            evaluate_stage(policy, review, context, stage),
            evaluate_stage(policy, &again, context, stage),
            "{message} ({stage:?})"
        );
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::policy::testkit::{full_context, sts};
    use crate::policy::{Policy, Review, Stage, evaluate_stage};

    fn entries(object: &Resource) -> Vec<(Option<String>, Option<Value>)> {
        object
            .metadata()
            .managed_fields
            .iter()
            .flatten()
            .map(|e| {
                (
                    e.operation.clone(),
                    e.fields_v1.as_ref().map(|f| f.0.clone()),
                )
            })
            .collect()
    }

    /// In the API server's field order (`operation` before `fieldsV1`) an `Update` entry's
    /// field set is skipped; an `Apply` entry's is kept in either order.
    #[test]
    fn managed_fields_keep_only_the_field_sets_of_apply() {
        let set = json!({"f:spec": {"f:replicas": {}}});
        let object = sts("web")
            .set(
                "/metadata/managedFields",
                json!([
                    {"manager": "kube-controller-manager", "operation": "Update",
                     "apiVersion": "apps/v1", "fieldsType": "FieldsV1", "fieldsV1": set},
                    {"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1",
                     "fieldsType": "FieldsV1", "fieldsV1": set},
                    {"fieldsV1": set, "manager": "helm", "operation": "Update"},
                    {"fieldsV1": set, "manager": "kubectl", "operation": "Apply"},
                ]),
            )
            .value()
            .clone();
        let lean = from_value(Kind::StatefulSet, &object).expect("decodes");
        assert_eq!(
            entries(&lean),
            vec![
                (Some("Update".into()), None),
                (Some("Apply".into()), Some(set.clone())),
                (Some("Update".into()), None),
                (Some("Apply".into()), Some(set)),
            ]
        );
    }

    /// The server-side-apply signal reaches the defaults through the lean decode of a
    /// CREATE written as the API server writes it (the controller's `Update` entry first).
    #[test]
    fn the_apply_signal_survives_the_api_servers_field_order() {
        let parallel = Policy::from_yaml(
            "apiVersion: stateward.io/v1alpha1\nkind: Policy\nmetadata: {name: t}\nspec:\n  mutations:\n    statefulset.default-pod-management-policy: {value: Parallel}\n",
            "t.yaml",
        )
        .expect("valid");
        let object = sts("web")
            .set(
                "/metadata/managedFields",
                json!([
                    {"manager": "before-first-apply", "operation": "Update", "apiVersion": "apps/v1",
                     "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:podManagementPolicy": {}}}},
                    {"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1",
                     "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
                ]),
            )
            .value()
            .clone();
        let text = serde_json::to_string(&object).expect("json");
        assert!(text.find("\"operation\"") < text.find("\"fieldsV1\""));
        let mut de = serde_json::Deserializer::from_str(&text);
        let lean = decode(Kind::StatefulSet, &mut de)
            .expect("decodes")
            .expect("not null");
        let full = Resource::decode(Kind::StatefulSet, &object).expect("decodes");
        let judge = |object: Resource| {
            evaluate_stage(
                &parallel,
                &Review::create(object),
                &full_context(),
                Stage::Mutate,
            )
        };
        let decision = judge(lean);
        assert_eq!(decision, judge(full));
        let patch = serde_json::to_value(decision.patch.expect("a patch")).expect("json");
        assert_eq!(
            patch,
            json!([{"op": "replace", "path": "/spec/podManagementPolicy", "value": "Parallel"}])
        );
    }

    /// What the rules do not read is not decoded: a pod's spec, a container's image.
    #[test]
    fn unread_fields_are_left_at_their_defaults() {
        let object = sts("web").value().clone();
        let Resource::StatefulSet(lean) = from_value(Kind::StatefulSet, &object).expect("decodes")
        else {
            panic!("a StatefulSet");
        };
        let container = &lean
            .spec
            .template
            .spec
            .as_ref()
            .expect("a pod spec")
            .containers[0];
        assert_eq!(
            (container.name.as_str(), container.image.as_deref()),
            ("app", None)
        );
        let pod = crate::policy::testkit::pod("web", 0).value().clone();
        let Resource::Pod(pod) = from_value(Kind::Pod, &pod).expect("decodes") else {
            panic!("a Pod");
        };
        assert!(pod.spec.is_none());
        assert_eq!(pod.metadata.name.as_deref(), Some("web-0"));
        assert!(matches!(decode(Kind::Pod, &Value::Null), Ok(None)));
    }

    /// A selector and a container list the API server writes as `null` read as absent, as
    /// the full decode reads them (not as a failure that sends the review to the general
    /// path).
    #[test]
    fn nulls_the_api_server_writes_read_as_absent() {
        let object = sts("web")
            .set("/spec/selector", Value::Null)
            .set("/spec/template/spec/containers", Value::Null)
            .value()
            .clone();
        let lean = from_value(Kind::StatefulSet, &object).expect("decodes");
        assert_eq!(
            lean,
            from_value(
                Kind::StatefulSet,
                &Resource::decode(Kind::StatefulSet, &object)
                    .expect("decodes")
                    .to_value()
            )
            .expect("decodes")
        );
        let Resource::StatefulSet(set) = lean else {
            panic!("a StatefulSet");
        };
        assert!(set.spec.selector.match_labels.is_none());
        assert!(
            set.spec
                .template
                .spec
                .expect("a pod spec")
                .containers
                .is_empty()
        );
    }
}
