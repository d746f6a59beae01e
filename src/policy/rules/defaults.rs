//! Mutations: safe defaults, added only where absent (CREATE only, idempotent).
//!
//! In a cluster kube-apiserver defaults podManagementPolicy, updateStrategy and the claim
//! retention policy before any webhook runs, so "absent" never happens there. A default
//! that differs from Kubernetes' own is then applied only where the user demonstrably did
//! not choose the value: the field is missing from the server-side-apply entry of
//! `metadata.managedFields`, or from kubectl's last-applied-configuration annotation.
//! With neither signal the field is left alone.
//!
//! Each mutation is declared beside its function with its settings type. Pure: no I/O.
use k8s_openapi::api::apps::v1::{
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Pod, PodAffinityTerm, PodAntiAffinity, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde_json::Value;

use super::pod::controlling_statefulset;
use super::statefulset::spreads_on;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::statefulset::HOSTNAME_KEY;
use super::{Added, CelMutation, Mutation, Rule, RuleId, RuleInfo, Target, mutate};
use crate::policy::labels::selector_is_empty;
use crate::policy::review::Resource;
use crate::policy::review::{Kind, Operation};
use crate::policy::rules::Policy;
use crate::policy::settings::{Invalid, Settings, Switch, Toggle, check_not_empty};

fn typed<T: serde::Serialize>(value: Option<&T>) -> Option<Value> {
    value.and_then(|v| serde_json::to_value(v).ok())
}

fn sts_part(r: &Resource, part: fn(&StatefulSet) -> Option<Value>) -> Option<Value> {
    match r {
        Resource::StatefulSet(sts) => part(sts),
        _ => None,
    }
}

pub const POD_MANAGEMENT_POLICY_TARGET: Target = Target {
    pointer: "/spec/podManagementPolicy",
    extract: |r| sts_part(r, |s| typed(s.spec.pod_management_policy.as_ref())),
};

pub const UPDATE_STRATEGY_TARGET: Target = Target {
    pointer: "/spec/updateStrategy",
    extract: |r| sts_part(r, |s| typed(s.spec.update_strategy.as_ref())),
};

pub const AFFINITY_TARGET: Target = Target {
    pointer: "/spec/template/spec/affinity",
    extract: |r| {
        sts_part(r, |s| {
            typed(
                s.spec
                    .template
                    .spec
                    .as_ref()
                    .and_then(|p| p.affinity.as_ref()),
            )
        })
    },
};

pub const CLAIM_RETENTION_TARGET: Target = Target {
    pointer: "/spec/persistentVolumeClaimRetentionPolicy",
    extract: |r| {
        sts_part(r, |s| {
            typed(s.spec.persistent_volume_claim_retention_policy.as_ref())
        })
    },
};

pub const POD_LABELS_TARGET: Target = Target {
    pointer: "/metadata/labels",
    extract: |r| match r {
        Resource::Pod(pod) => typed(pod.metadata.labels.as_ref()),
        _ => None,
    },
};

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Whether the user set a field, as far as the object tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Chosen,
    NotChosen,
    Unknown,
}

/// Looks `path` (e.g. `["spec", "podManagementPolicy"]`) up in the server-side-apply
/// managed fields, then in the last-applied annotation.
pub fn user_choice(meta: &ObjectMeta, path: &[&str]) -> Choice {
    let applied: Vec<&Value> = meta
        .managed_fields
        .iter()
        .flatten()
        .filter(|e| e.operation.as_deref() == Some("Apply"))
        .filter_map(|e| e.fields_v1.as_ref().map(|f| &f.0))
        .collect();
    if !applied.is_empty() {
        let chosen = applied.iter().any(|fields| {
            path.iter()
                .try_fold(*fields, |node, key| node.get(format!("f:{key}")))
                .is_some()
        });
        return if chosen {
            Choice::Chosen
        } else {
            Choice::NotChosen
        };
    }
    let last = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(LAST_APPLIED))
        .and_then(|text| serde_json::from_str::<Value>(text).ok());
    match last {
        Some(doc) => {
            if path
                .iter()
                .try_fold(&doc, |node, key| node.get(*key))
                .is_some()
            {
                Choice::Chosen
            } else {
                Choice::NotChosen
            }
        }
        None => Choice::Unknown,
    }
}

/// Whether a present value may be replaced by the policy's: it is Kubernetes' default and
/// the user did not choose it.
fn may_replace_default(meta: &ObjectMeta, current: &str, k8s_default: &str, path: &[&str]) -> bool {
    current == k8s_default && user_choice(meta, path) == Choice::NotChosen
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PodManagementPolicy {
    #[default]
    OrderedReady,
    Parallel,
}

impl PodManagementPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PodManagementPolicy::OrderedReady => "OrderedReady",
            PodManagementPolicy::Parallel => "Parallel",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PodManagementToggle {
    /// Whether the mutation adds its default.
    pub enabled: Option<bool>,
    /// Whether an object may skip the rule with the annotation `stateward.io/skip`.
    pub skippable: Option<bool>,
    /// The podManagementPolicy to add (default `OrderedReady`).
    pub value: Option<PodManagementPolicy>,
}

/// The catalogue's defaults (what `policies/baseline.yaml` shows).
impl Default for PodManagementToggle {
    fn default() -> Self {
        PodManagementToggle {
            enabled: None,
            skippable: None,
            value: Some(PodManagementPolicy::OrderedReady),
        }
    }
}

impl Settings for PodManagementToggle {
    fn take_switch(&mut self) -> Switch {
        Switch::enabled(self.enabled.take(), self.skippable.take())
    }
}

pub static POD_MANAGEMENT_POLICY: Rule<PodManagementToggle> = Rule::new(RuleInfo {
    id: RuleId::StatefulSetDefaultPodManagementPolicy,
    name: "statefulset.default-pod-management-policy",
    kind: Kind::StatefulSet,
    operations: &[Operation::Create],
    action: mutate(
        true,
        Mutation::StatefulSet(pod_management_policy),
        POD_MANAGEMENT_POLICY_TARGET,
    ),
    skippable: true,
    summary: "adds spec.podManagementPolicy (policy value, OrderedReady unless set)",
})
.not_native(DEFAULTED_BEFORE_ADMISSION);

pub fn pod_management_policy(policy: &Policy, sts: &mut StatefulSet) -> Option<Added> {
    let value = policy
        .settings(&POD_MANAGEMENT_POLICY)?
        .value
        .unwrap_or_default()
        .as_str();
    let meta = &sts.metadata;
    let spec = &mut sts.spec;
    let apply = match spec.pod_management_policy.as_deref() {
        None => true,
        Some(current) if current == value => false,
        Some(current) => may_replace_default(
            meta,
            current,
            "OrderedReady",
            &["spec", "podManagementPolicy"],
        ),
    };
    if !apply {
        return None;
    }
    spec.pod_management_policy = Some(value.to_owned());
    Some(Added {
        field: "spec.podManagementPolicy".into(),
        message: format!("set podManagementPolicy: {value}"),
    })
}

pub static UPDATE_STRATEGY: Rule<Toggle> = Rule::new(RuleInfo {
    id: RuleId::StatefulSetDefaultUpdateStrategy,
    name: "statefulset.default-update-strategy",
    kind: Kind::StatefulSet,
    operations: &[Operation::Create],
    action: mutate(
        true,
        Mutation::StatefulSet(update_strategy),
        UPDATE_STRATEGY_TARGET,
    ),
    skippable: true,
    summary: "adds spec.updateStrategy RollingUpdate with partition 0",
})
.not_native(DEFAULTED_BEFORE_ADMISSION);

pub fn update_strategy(_policy: &Policy, sts: &mut StatefulSet) -> Option<Added> {
    let spec = &mut sts.spec;
    if spec.update_strategy.is_some() {
        return None;
    }
    spec.update_strategy = Some(StatefulSetUpdateStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateStatefulSetStrategy {
            partition: Some(0),
            max_unavailable: None,
        }),
    });
    Some(Added {
        field: "spec.updateStrategy".into(),
        message: "set updateStrategy: RollingUpdate with partition 0".into(),
    })
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct AntiAffinityToggle {
    /// Whether the mutation adds its default.
    pub enabled: Option<bool>,
    /// Whether an object may skip the rule with the annotation `stateward.io/skip`.
    pub skippable: Option<bool>,
    /// Weight of the preferred term, 1 to 100 (default 100).
    #[schemars(range(min = 1, max = 100))]
    pub weight: Option<i32>,
    /// Topology key of the preferred term (default `kubernetes.io/hostname`).
    #[schemars(length(min = 1))]
    pub topology_key: Option<String>,
}

/// The preferred term's weight unless the policy says otherwise.
const DEFAULT_WEIGHT: i32 = 100;

impl AntiAffinityToggle {
    pub fn weight(&self) -> i32 {
        self.weight.unwrap_or(DEFAULT_WEIGHT)
    }

    pub fn topology_key(&self) -> &str {
        self.topology_key.as_deref().unwrap_or(HOSTNAME_KEY)
    }
}

/// The catalogue's defaults (what `policies/baseline.yaml` shows).
impl Default for AntiAffinityToggle {
    fn default() -> Self {
        AntiAffinityToggle {
            enabled: None,
            skippable: None,
            weight: Some(DEFAULT_WEIGHT),
            topology_key: Some(HOSTNAME_KEY.into()),
        }
    }
}

impl Settings for AntiAffinityToggle {
    fn take_switch(&mut self) -> Switch {
        Switch::enabled(self.enabled.take(), self.skippable.take())
    }

    fn check(&self) -> Result<(), Invalid> {
        if let Some(weight) = self.weight
            && !(1..=100).contains(&weight)
        {
            return Err(Invalid::new(
                "weight",
                format!("is {weight}; a preferred term's weight is 1 to 100"),
            ));
        }
        check_not_empty("topologyKey", self.topology_key.as_deref())
    }
}

pub static ANTI_AFFINITY: Rule<AntiAffinityToggle> = Rule::new(RuleInfo {
    id: RuleId::StatefulSetDefaultAntiAffinity,
    name: "statefulset.default-anti-affinity",
    kind: Kind::StatefulSet,
    operations: &[Operation::Create],
    action: mutate(true, Mutation::StatefulSet(anti_affinity), AFFINITY_TARGET),
    skippable: true,
    summary: "adds preferred pod anti-affinity on kubernetes.io/hostname when none exists",
})
.native_mutation(native_anti_affinity);

/// Why a default the API server fills in before admission is not compiled.
const DEFAULTED_BEFORE_ADMISSION: &str = "the API server defaults this field before admission: \
     telling a value the user set from the default reads managedFields (fieldsV1), which is \
     left to the webhook";

/// Natively: the same preferred term, added where [`anti_affinity`] adds it. A JSON patch,
/// because Kubernetes merges neither the list of terms nor a label selector.
fn native_anti_affinity(params: &AntiAffinityToggle) -> CelMutation {
    let key = crate::policy::cel::cel_string(params.topology_key());
    CelMutation {
        conditions: vec![
            (
                "selector-not-empty",
                "has(object.spec.selector) && \
                 ((has(object.spec.selector.matchLabels) && size(object.spec.selector.matchLabels) > 0) || \
                 (has(object.spec.selector.matchExpressions) && size(object.spec.selector.matchExpressions) > 0))"
                    .into(),
            ),
            (
                "no-pod-anti-affinity",
                "!(has(object.spec.template.spec.affinity) && \
                 has(object.spec.template.spec.affinity.podAntiAffinity))"
                    .into(),
            ),
            (
                "no-spread-on-the-key",
                format!(
                    "!(has(object.spec.template.spec.topologySpreadConstraints) && \
                     object.spec.template.spec.topologySpreadConstraints.exists(c, c.topologyKey == {key}))"
                ),
            ),
        ],
        variables: vec![(
            "term",
            format!(
                "{{'weight': dyn({}), 'podAffinityTerm': dyn({{'topologyKey': dyn({key}), \
                 'labelSelector': dyn(object.spec.selector)}})}}",
                params.weight()
            ),
        )],
        json_patch: "has(object.spec.template.spec.affinity) \
             ? [JSONPatch{op: 'add', path: '/spec/template/spec/affinity/podAntiAffinity', \
                value: {'preferredDuringSchedulingIgnoredDuringExecution': [variables.term]}}] \
             : [JSONPatch{op: 'add', path: '/spec/template/spec/affinity', \
                value: {'podAntiAffinity': {'preferredDuringSchedulingIgnoredDuringExecution': [variables.term]}}}]"
            .into(),
    }
}

pub fn anti_affinity(policy: &Policy, sts: &mut StatefulSet) -> Option<Added> {
    let params = policy.settings(&ANTI_AFFINITY)?;
    let (weight, topology_key) = (params.weight(), params.topology_key());
    let spec = &mut sts.spec;
    if selector_is_empty(&spec.selector) {
        return None;
    }
    let selector = LabelSelector {
        match_labels: spec.selector.match_labels.clone(),
        match_expressions: spec.selector.match_expressions.clone(),
    };
    let pod = spec.template.spec.as_mut()?;
    let has_anti = pod
        .affinity
        .as_ref()
        .is_some_and(|a| a.pod_anti_affinity.is_some());
    if has_anti || spreads_on(pod, topology_key) {
        return None;
    }
    let affinity = pod.affinity.get_or_insert_with(Affinity::default);
    affinity.pod_anti_affinity = Some(PodAntiAffinity {
        preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
            weight,
            pod_affinity_term: PodAffinityTerm {
                label_selector: Some(selector),
                topology_key: topology_key.to_owned(),
                ..PodAffinityTerm::default()
            },
        }]),
        required_during_scheduling_ignored_during_execution: None,
    });
    Some(Added {
        field: "spec.template.spec.affinity.podAntiAffinity".into(),
        message: format!(
            "added preferred pod anti-affinity (weight {}) on {}",
            weight, topology_key
        ),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RetentionValue {
    Retain,
    Delete,
}

impl RetentionValue {
    pub fn as_str(self) -> &'static str {
        match self {
            RetentionValue::Retain => "Retain",
            RetentionValue::Delete => "Delete",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct RetentionToggle {
    /// Whether the mutation adds its default.
    pub enabled: Option<bool>,
    /// Whether an object may skip the rule with the annotation `stateward.io/skip`.
    pub skippable: Option<bool>,
    /// whenDeleted to add (default `Retain`).
    pub when_deleted: Option<RetentionValue>,
    /// whenScaled to add (default `Delete`).
    pub when_scaled: Option<RetentionValue>,
}

/// The catalogue's defaults (what `policies/baseline.yaml` shows).
impl Default for RetentionToggle {
    fn default() -> Self {
        RetentionToggle {
            enabled: None,
            skippable: None,
            when_deleted: Some(RetentionValue::Retain),
            when_scaled: Some(RetentionValue::Delete),
        }
    }
}

impl Settings for RetentionToggle {
    fn take_switch(&mut self) -> Switch {
        Switch::enabled(self.enabled.take(), self.skippable.take())
    }
}

pub static CLAIM_RETENTION: Rule<RetentionToggle> = Rule::new(RuleInfo {
    id: RuleId::StatefulSetDefaultClaimRetention,
    name: "statefulset.default-claim-retention",
    kind: Kind::StatefulSet,
    operations: &[Operation::Create],
    action: mutate(
        false,
        Mutation::StatefulSet(claim_retention),
        CLAIM_RETENTION_TARGET,
    ),
    skippable: true,
    summary: "adds spec.persistentVolumeClaimRetentionPolicy from the policy",
})
.not_native(DEFAULTED_BEFORE_ADMISSION);

pub fn claim_retention(policy: &Policy, sts: &mut StatefulSet) -> Option<Added> {
    let params = policy.settings(&CLAIM_RETENTION)?;
    let when_deleted = params
        .when_deleted
        .unwrap_or(RetentionValue::Retain)
        .as_str();
    let when_scaled = params
        .when_scaled
        .unwrap_or(RetentionValue::Delete)
        .as_str();
    let meta = &sts.metadata;
    let spec = &mut sts.spec;
    let retention = spec
        .persistent_volume_claim_retention_policy
        .get_or_insert_with(StatefulSetPersistentVolumeClaimRetentionPolicy::default);
    let mut changed = Vec::new();
    for (slot, wanted, key) in [
        (&mut retention.when_deleted, when_deleted, "whenDeleted"),
        (&mut retention.when_scaled, when_scaled, "whenScaled"),
    ] {
        let apply = match slot.as_deref() {
            None => true,
            Some(current) if current == wanted => false,
            Some(current) => may_replace_default(
                meta,
                current,
                "Retain",
                &["spec", "persistentVolumeClaimRetentionPolicy", key],
            ),
        };
        if apply {
            *slot = Some(wanted.to_owned());
            changed.push(format!("{key}: {wanted}"));
        }
    }
    if changed.is_empty() {
        return None;
    }
    Some(Added {
        field: "spec.persistentVolumeClaimRetentionPolicy".into(),
        message: format!(
            "set persistentVolumeClaimRetentionPolicy {}",
            changed.join(", ")
        ),
    })
}

const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct IdentityLabelsToggle {
    /// Whether the mutation adds its default.
    pub enabled: Option<bool>,
    /// Whether an object may skip the rule with the annotation `stateward.io/skip`.
    pub skippable: Option<bool>,
    /// Extra label keys set to the pod's name.
    pub alias_labels: Option<Vec<String>>,
}

/// The catalogue's defaults (what `policies/baseline.yaml` shows).
impl Default for IdentityLabelsToggle {
    fn default() -> Self {
        IdentityLabelsToggle {
            enabled: None,
            skippable: None,
            alias_labels: Some(Vec::new()),
        }
    }
}

impl Settings for IdentityLabelsToggle {
    fn take_switch(&mut self) -> Switch {
        Switch::enabled(self.enabled.take(), self.skippable.take())
    }

    fn check(&self) -> Result<(), Invalid> {
        let aliases = self.alias_labels.iter().flatten();
        match aliases
            .into_iter()
            .find(|a| !crate::policy::names::is_label_key(a))
        {
            Some(bad) => Err(Invalid::new(
                "aliasLabels",
                format!("`{bad}` is not a valid label key"),
            )),
            None => Ok(()),
        }
    }
}

pub static IDENTITY_LABELS: Rule<IdentityLabelsToggle> = Rule::new(RuleInfo {
    id: RuleId::PodIdentityLabels,
    name: "pod.identity-labels",
    kind: Kind::Pod,
    operations: &[Operation::Create],
    action: mutate(true, Mutation::Pod(identity_labels), POD_LABELS_TARGET),
    skippable: true,
    summary: "adds pod-name, pod-index and alias labels to StatefulSet pods",
})
.native_mutation(native_identity_labels);

/// Natively: each label [`identity_labels`] adds, when the pod does not carry it (the map
/// of labels merges key by key).
fn native_identity_labels(params: &IdentityLabelsToggle) -> CelMutation {
    use crate::policy::cel::cel_string;
    let absent = |key: &str| {
        let key = cel_string(key);
        format!("!(has(object.metadata.labels) && {key} in object.metadata.labels)")
    };
    let mut entries = vec![
        format!(
            "?{}: {} ? optional.of(dyn(variables.name)) : optional.none()",
            cel_string(POD_NAME_LABEL),
            absent(POD_NAME_LABEL)
        ),
        format!(
            "?{}: ({} && variables.name.startsWith(variables.prefix) && \
             variables.name.substring(size(variables.prefix)).matches('^[0-9]+$')) \
             ? optional.of(dyn(variables.name.substring(size(variables.prefix)))) : optional.none()",
            cel_string(POD_INDEX_LABEL),
            absent(POD_INDEX_LABEL)
        ),
    ];
    for alias in params.alias_labels.iter().flatten() {
        entries.push(format!(
            "?{}: {} ? optional.of(dyn(variables.name)) : optional.none()",
            cel_string(alias),
            absent(alias)
        ));
    }
    CelMutation {
        conditions: vec![(
            "named",
            "has(object.metadata.name) && object.metadata.name != ''".into(),
        )],
        variables: vec![
            ("name", "string(object.metadata.name)".into()),
            (
                "prefix",
                "string(object.metadata.ownerReferences.filter(r, r.kind == 'StatefulSet' && \
                 has(r.controller) && r.controller)[0].name) + '-'"
                    .into(),
            ),
            ("labels", format!("{{{}}}", entries.join(", "))),
        ],
        // One add per label: `/metadata/labels` may not exist yet.
        json_patch: "has(object.metadata.labels) \
             ? variables.labels.map(k, JSONPatch{op: 'add', \
                 path: '/metadata/labels/' + jsonpatch.escapeKey(k), value: variables.labels[k]}) \
             : (size(variables.labels) > 0 \
                 ? [JSONPatch{op: 'add', path: '/metadata/labels', value: variables.labels}] : [])"
            .into(),
    }
}

pub fn identity_labels(policy: &Policy, pod: &mut Pod) -> Option<Added> {
    let set = controlling_statefulset(pod)?.to_owned();
    let name = pod.metadata.name.clone()?;
    let ordinal = name
        .strip_prefix(&set)
        .and_then(|rest| rest.strip_prefix('-'))
        .filter(|o| !o.is_empty() && o.bytes().all(|b| b.is_ascii_digit()));
    let mut wanted: Vec<(&str, String)> = vec![(POD_NAME_LABEL, name.clone())];
    if let Some(ordinal) = ordinal {
        wanted.push((POD_INDEX_LABEL, ordinal.to_owned()));
    }
    let aliases = policy
        .settings(&IDENTITY_LABELS)?
        .alias_labels
        .iter()
        .flatten();
    for alias in aliases {
        wanted.push((alias.as_str(), name.clone()));
    }
    let existing = pod.metadata.labels.as_ref();
    wanted.retain(|(key, _)| !existing.is_some_and(|l| l.contains_key(*key)));
    if wanted.is_empty() {
        return None;
    }
    let labels = pod.metadata.labels.get_or_insert_with(Default::default);
    let mut added = Vec::new();
    for (key, value) in wanted {
        added.push(format!("{key}={value}"));
        labels.insert(key.to_owned(), value);
    }
    Some(Added {
        field: "metadata.labels".into(),
        message: format!("added labels {}", added.join(", ")),
    })
}

#[cfg(test)]
mod tests;
