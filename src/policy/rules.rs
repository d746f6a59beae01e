//! The rule table: every rule and mutation stateward knows, in one place. Read this first.
//!
//! A validation rule is a plain function over a typed object that reports violations into
//! a [`Sink`]; the engine turns them into findings at the mode the policy gives the rule.
//! A mutation is a function that changes a typed clone and says what it added.
use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::{apps::v1::StatefulSet, core::v1::Pod, core::v1::Service};
use serde::{Deserialize, Serialize};

use super::config::Policy;
use super::context::Context;
use super::review::{Kind, Operation, Resource, Review};

pub mod defaults;
pub mod live;
pub mod pod;
pub mod service;
pub mod statefulset;

/// A rule's mode in a policy.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Off,
    Audit,
    Warn,
    Enforce,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Audit => "audit",
            Mode::Warn => "warn",
            Mode::Enforce => "enforce",
        }
    }
}

macro_rules! rule_ids {
    ($($variant:ident => $id:literal,)*) => {
        /// Stable rule and mutation ids, as used in policy files, metrics, reports and messages.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum RuleId { $($variant,)* }

        impl RuleId {
            pub const ALL: &'static [RuleId] = &[$(RuleId::$variant,)*];
            pub const COUNT: usize = Self::ALL.len();

            pub fn as_str(self) -> &'static str {
                match self { $(RuleId::$variant => $id,)* }
            }
        }

        impl FromStr for RuleId {
            type Err = UnknownRule;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s { $($id => Ok(RuleId::$variant),)* _ => Err(UnknownRule(s.to_owned())) }
            }
        }
    };
}

rule_ids! {
    StatefulSetNameLength => "statefulset.name-length",
    StatefulSetServiceName => "statefulset.service-name",
    StatefulSetHeadlessService => "statefulset.headless-service",
    StatefulSetSelectorMatchesTemplate => "statefulset.selector-matches-template",
    StatefulSetClaimTemplatesMounted => "statefulset.claim-templates-mounted",
    StatefulSetClaimTemplateStorage => "statefulset.claim-template-storage",
    StatefulSetClaimTemplateAccessMode => "statefulset.claim-template-access-mode",
    StatefulSetTerminationGracePeriod => "statefulset.termination-grace-period",
    StatefulSetReadinessProbe => "statefulset.readiness-probe",
    StatefulSetResources => "statefulset.resources",
    StatefulSetAntiAffinity => "statefulset.anti-affinity",
    StatefulSetAntiAffinitySelectsSelf => "statefulset.anti-affinity-selects-self",
    StatefulSetUpdateStrategy => "statefulset.update-strategy",
    StatefulSetSecurityContext => "statefulset.security-context",
    StatefulSetRolloutStuck => "statefulset.rollout-stuck",
    StatefulSetScaleDownRetainsClaims => "statefulset.scale-down-retains-claims",
    StatefulSetApiVersion => "statefulset.api-version",
    StatefulSetPodDisruptionBudget => "statefulset.pod-disruption-budget",
    StatefulSetRolloutBlocked => "statefulset.rollout-blocked",
    StatefulSetPodStuckTerminating => "statefulset.pod-stuck-terminating",
    StatefulSetClaimUnbound => "statefulset.claim-unbound",
    StatefulSetDisruptionBlocked => "statefulset.disruption-blocked",
    StatefulSetOrphanedClaim => "statefulset.orphaned-claim",
    ServiceHeadlessInUse => "service.headless-in-use",
    ServiceHeadlessShape => "service.headless-shape",
    ServicePodNameSelector => "service.pod-name-selector",
    PodForceDelete => "pod.force-delete",
    StatefulSetDefaultPodManagementPolicy => "statefulset.default-pod-management-policy",
    StatefulSetDefaultUpdateStrategy => "statefulset.default-update-strategy",
    StatefulSetDefaultAntiAffinity => "statefulset.default-anti-affinity",
    StatefulSetDefaultClaimRetention => "statefulset.default-claim-retention",
    PodIdentityLabels => "pod.identity-labels",
}

impl RuleId {
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn info(self) -> &'static RuleInfo {
        // RULES lists every id in declaration order (checked by a test).
        &RULES[self.index()]
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RuleId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown rule id `{0}`")]
pub struct UnknownRule(pub String);

/// A violation reported by a rule, before the policy gives it a mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub message: String,
    /// A case where the object may still be fine or information is missing: reported at
    /// most as a warning, never denied.
    pub advisory: bool,
}

/// Collects the violations of one rule.
#[derive(Debug, Default)]
pub struct Sink {
    pub violations: Vec<Violation>,
}

impl Sink {
    /// A violation at the rule's mode.
    pub fn violation(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.violations.push(Violation {
            field: field.into(),
            message: message.into(),
            advisory: false,
        });
    }

    /// A violation that is at most a warning (missing information, a possible smell).
    pub fn advisory(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.violations.push(Violation {
            field: field.into(),
            message: message.into(),
            advisory: true,
        });
    }
}

/// What a validation rule sees.
pub struct Input<'a, T> {
    pub policy: &'a Policy,
    pub review: &'a Review,
    pub context: &'a dyn Context,
    /// The object under review: the (mutated) new object, or the old one on DELETE.
    pub object: &'a T,
    /// The previous state on UPDATE.
    pub old: Option<&'a T>,
}

impl<T> Input<'_, T> {
    pub fn namespace(&self) -> &str {
        &self.review.namespace
    }
}

/// A validation rule's function, by kind.
#[derive(Clone, Copy)]
pub enum Check {
    StatefulSet(fn(&Input<'_, StatefulSet>, &mut Sink)),
    Service(fn(&Input<'_, Service>, &mut Sink)),
    Pod(fn(&Input<'_, Pod>, &mut Sink)),
    /// Evaluated by the offline checker on documents the engine cannot decode.
    Offline,
    /// A live-state rule: evaluated only by `stateward audit`, on a set with its pods,
    /// claims, PodDisruptionBudgets and nodes.
    Live(fn(&live::LiveInput<'_>, &mut Sink)),
    /// Orphaned claims, from the collector's classifier: evaluated only by `stateward
    /// audit`.
    OrphanedClaims,
}

impl Check {
    /// Only `stateward audit` evaluates the rule (it reads live state).
    pub fn is_live(self) -> bool {
        matches!(self, Check::Live(_) | Check::OrphanedClaims)
    }
}

/// What a mutation added: the field and a sentence for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    pub field: String,
    pub message: String,
}

/// A mutation's function, by kind. Returns what it added, or `None` when it changed nothing.
#[derive(Clone, Copy)]
pub enum Mutation {
    StatefulSet(fn(&Policy, &mut StatefulSet) -> Option<Added>),
    Pod(fn(&Policy, &mut Pod) -> Option<Added>),
}

/// The part of an object a mutation may change: where it sits (a JSON pointer) and how to
/// read it from a typed object. The patch is the diff of this part before and after, so
/// adding a default never costs serialising the whole object.
#[derive(Clone, Copy)]
pub struct Target {
    pub pointer: &'static str,
    pub extract: fn(&Resource) -> Option<serde_json::Value>,
}

/// What a rule does.
#[derive(Clone, Copy)]
pub enum Action {
    Validate {
        default: Mode,
        check: Check,
    },
    Mutate {
        default_on: bool,
        mutate: Mutation,
        target: Target,
    },
}

/// One row of the table.
pub struct RuleInfo {
    pub id: RuleId,
    pub kind: Kind,
    pub operations: &'static [Operation],
    pub action: Action,
    /// Whether `stateward.io/skip` may switch the rule off for one object by default.
    pub skippable: bool,
    pub summary: &'static str,
}

impl RuleInfo {
    pub fn is_mutation(&self) -> bool {
        matches!(self.action, Action::Mutate { .. })
    }

    /// The default mode as `rules` prints it: a validation mode, or `on`/`off`.
    pub fn default_label(&self) -> &'static str {
        match self.action {
            Action::Validate { default, .. } => default.as_str(),
            Action::Mutate {
                default_on: true, ..
            } => "on",
            Action::Mutate {
                default_on: false, ..
            } => "off",
        }
    }
}

use Operation::{Create, Delete, Update};

const CU: &[Operation] = &[Create, Update];

const fn validate(default: Mode, check: Check) -> Action {
    Action::Validate { default, check }
}

const fn mutate(default_on: bool, mutate: Mutation, target: Target) -> Action {
    Action::Mutate {
        default_on,
        mutate,
        target,
    }
}

use defaults as d;
use statefulset as s;

/// Every rule, in [`RuleId`] order.
pub static RULES: &[RuleInfo] = &[
    RuleInfo {
        id: RuleId::StatefulSetNameLength,
        kind: Kind::StatefulSet,
        operations: CU,
        action: validate(Mode::Enforce, Check::StatefulSet(s::name_length)),
        skippable: false,
        summary: "name at most 52 characters and <name>-<highest ordinal> at most 63, or pods are never created",
    },
    RuleInfo {
        id: RuleId::StatefulSetServiceName,
        kind: Kind::StatefulSet,
        operations: CU,
        action: validate(Mode::Enforce, Check::StatefulSet(s::service_name)),
        skippable: false,
        summary: "spec.serviceName is a DNS-1123 label (warns when absent): it is every pod's DNS subdomain",
    },
    RuleInfo {
        id: RuleId::StatefulSetHeadlessService,
        kind: Kind::StatefulSet,
        operations: CU,
        action: validate(Mode::Warn, Check::StatefulSet(s::headless_service)),
        skippable: true,
        summary: "the Service named by serviceName exists, is headless and selects the set's pods",
    },
    RuleInfo {
        id: RuleId::StatefulSetSelectorMatchesTemplate,
        kind: Kind::StatefulSet,
        operations: CU,
        action: validate(
            Mode::Enforce,
            Check::StatefulSet(s::selector_matches_template),
        ),
        skippable: false,
        summary: "spec.selector selects the pod template's labels",
    },
    RuleInfo {
        id: RuleId::StatefulSetClaimTemplatesMounted,
        kind: Kind::StatefulSet,
        operations: CU,
        action: validate(
            Mode::Enforce,
            Check::StatefulSet(s::claim_templates_mounted),
        ),
        skippable: false,
        summary: "every claim template is mounted (or a volumeDevice) and every mount and device resolves",
    },
    RuleInfo {
        id: RuleId::StatefulSetClaimTemplateStorage,
        kind: Kind::StatefulSet,
        operations: CU,
        action: validate(Mode::Enforce, Check::StatefulSet(s::claim_template_storage)),
        skippable: false,
        summary: "claim templates request storage and accessModes; storageClassName set (and allowed)",
    },
    RuleInfo {
        id: RuleId::StatefulSetClaimTemplateAccessMode,
        kind: Kind::StatefulSet,
        operations: CU,
        action: validate(
            Mode::Warn,
            Check::StatefulSet(s::claim_template_access_mode),
        ),
        skippable: true,
        summary: "per-pod storage uses ReadWriteOnce or ReadWriteOncePod, not ReadWriteMany/ReadOnlyMany",
    },
    RuleInfo {
        id: RuleId::StatefulSetTerminationGracePeriod,
        kind: Kind::StatefulSet,
        operations: CU,
        action: validate(
            Mode::Enforce,
            Check::StatefulSet(s::termination_grace_period),
        ),
        skippable: false,
        summary: "terminationGracePeriodSeconds is not 0 (and within minSeconds/maxSeconds)",
    },
    RuleInfo {
        id: RuleId::StatefulSetReadinessProbe,
        kind: Kind::StatefulSet,
        operations: CU,
        action: validate(Mode::Warn, Check::StatefulSet(s::readiness_probe)),
        skippable: true,
        summary: "every container has a readinessProbe, different from its livenessProbe",
    },
    RuleInfo {
        id: RuleId::StatefulSetResources,
        kind: Kind::StatefulSet,
        operations: CU,
        action: validate(Mode::Warn, Check::StatefulSet(s::resources)),
        skippable: true,
        summary: "every container requests cpu and memory (limits when the policy requires them)",
    },
    RuleInfo {
        id: RuleId::StatefulSetAntiAffinity,
        kind: Kind::StatefulSet,
        operations: CU,
        action: validate(Mode::Warn, Check::StatefulSet(s::anti_affinity)),
        skippable: true,
        summary: "with 2+ replicas, pod anti-affinity or topology spread on the hostname key",
    },
    RuleInfo {
        id: RuleId::StatefulSetAntiAffinitySelectsSelf,
        kind: Kind::StatefulSet,
        operations: CU,
        action: validate(
            Mode::Warn,
            Check::StatefulSet(s::anti_affinity_selects_self),
        ),
        skippable: true,
        summary: "every pod anti-affinity term selects the set's own pods",
    },
    RuleInfo {
        id: RuleId::StatefulSetUpdateStrategy,
        kind: Kind::StatefulSet,
        operations: CU,
        action: validate(Mode::Warn, Check::StatefulSet(s::update_strategy)),
        skippable: true,
        summary: "no partition above replicas, no OnDelete, no maxUnavailable with OrderedReady",
    },
    RuleInfo {
        id: RuleId::StatefulSetSecurityContext,
        kind: Kind::StatefulSet,
        operations: CU,
        action: validate(Mode::Warn, Check::StatefulSet(s::security_context)),
        skippable: true,
        summary: "runAsNonRoot: true and allowPrivilegeEscalation: false",
    },
    RuleInfo {
        id: RuleId::StatefulSetRolloutStuck,
        kind: Kind::StatefulSet,
        operations: &[Update],
        action: validate(Mode::Warn, Check::StatefulSet(s::rollout_stuck)),
        skippable: true,
        summary: "template changed while pods are not ready under OrderedReady: stuck pods need deleting",
    },
    RuleInfo {
        id: RuleId::StatefulSetScaleDownRetainsClaims,
        kind: Kind::StatefulSet,
        operations: &[Update],
        action: validate(Mode::Warn, Check::StatefulSet(s::scale_down_retains_claims)),
        skippable: true,
        summary: "scale-down keeps the removed pods' PVCs: names them and how to collect them",
    },
    RuleInfo {
        id: RuleId::StatefulSetApiVersion,
        kind: Kind::StatefulSet,
        operations: &[Create],
        action: validate(Mode::Enforce, Check::Offline),
        skippable: false,
        summary: "offline only: apps/v1beta1 and apps/v1beta2 StatefulSets are not served since 1.16",
    },
    RuleInfo {
        id: RuleId::StatefulSetPodDisruptionBudget,
        kind: Kind::StatefulSet,
        operations: CU,
        action: validate(Mode::Audit, Check::StatefulSet(s::pod_disruption_budget)),
        skippable: true,
        summary: "with 2+ replicas, a PodDisruptionBudget selects the pods",
    },
    RuleInfo {
        id: RuleId::StatefulSetRolloutBlocked,
        kind: Kind::StatefulSet,
        operations: &[],
        action: validate(Mode::Warn, Check::Live(live::rollout_blocked)),
        skippable: true,
        summary: "audit only: a rollout waits on a pod of the update revision not Ready for longer than notReadyFor: names the pod to delete",
    },
    RuleInfo {
        id: RuleId::StatefulSetPodStuckTerminating,
        kind: Kind::StatefulSet,
        operations: &[],
        action: validate(Mode::Warn, Check::Live(live::pod_stuck_terminating)),
        skippable: true,
        summary: "audit only: a pod Terminating past its grace period plus margin on a node not Ready: confirm the node is down, then force delete",
    },
    RuleInfo {
        id: RuleId::StatefulSetClaimUnbound,
        kind: Kind::StatefulSet,
        operations: &[],
        action: validate(Mode::Warn, Check::Live(live::claim_unbound)),
        skippable: true,
        summary: "audit only: a claim of the set Pending for longer than pendingFor: names it and its storage class",
    },
    RuleInfo {
        id: RuleId::StatefulSetDisruptionBlocked,
        kind: Kind::StatefulSet,
        operations: &[],
        action: validate(Mode::Warn, Check::Live(live::disruption_blocked)),
        skippable: true,
        summary: "audit only: a PodDisruptionBudget selecting the set allows no disruption at full health, so drains hang",
    },
    RuleInfo {
        id: RuleId::StatefulSetOrphanedClaim,
        kind: Kind::StatefulSet,
        operations: &[],
        action: validate(Mode::Warn, Check::OrphanedClaims),
        skippable: false,
        summary: "audit only: a claim left by a scale-down or a deleted set (the collector's classifier), with its size",
    },
    RuleInfo {
        id: RuleId::ServiceHeadlessInUse,
        kind: Kind::Service,
        operations: &[Update, Delete],
        action: validate(Mode::Warn, Check::Service(service::headless_in_use)),
        skippable: false,
        summary: "deleting (or re-selecting) a Service a running StatefulSet names in serviceName (enforce in strict)",
    },
    RuleInfo {
        id: RuleId::ServiceHeadlessShape,
        kind: Kind::Service,
        operations: CU,
        action: validate(Mode::Warn, Check::Service(service::headless_shape)),
        skippable: true,
        summary: "a headless Service of a StatefulSet has a selector and named ports",
    },
    RuleInfo {
        id: RuleId::ServicePodNameSelector,
        kind: Kind::Service,
        operations: CU,
        action: validate(Mode::Warn, Check::Service(service::pod_name_selector)),
        skippable: true,
        summary: "a per-pod Service selects a pod-name whose ordinal exists",
    },
    RuleInfo {
        id: RuleId::PodForceDelete,
        kind: Kind::Pod,
        operations: &[Delete],
        action: validate(Mode::Enforce, Check::Pod(pod::force_delete)),
        skippable: false,
        summary: "no force delete (grace 0) of a scheduled, running StatefulSet pod, except by its node, exempt users or the override annotation",
    },
    RuleInfo {
        id: RuleId::StatefulSetDefaultPodManagementPolicy,
        kind: Kind::StatefulSet,
        operations: &[Create],
        action: mutate(
            true,
            Mutation::StatefulSet(d::pod_management_policy),
            d::POD_MANAGEMENT_POLICY,
        ),
        skippable: true,
        summary: "adds spec.podManagementPolicy (policy value, OrderedReady unless set)",
    },
    RuleInfo {
        id: RuleId::StatefulSetDefaultUpdateStrategy,
        kind: Kind::StatefulSet,
        operations: &[Create],
        action: mutate(
            true,
            Mutation::StatefulSet(d::update_strategy),
            d::UPDATE_STRATEGY,
        ),
        skippable: true,
        summary: "adds spec.updateStrategy RollingUpdate with partition 0",
    },
    RuleInfo {
        id: RuleId::StatefulSetDefaultAntiAffinity,
        kind: Kind::StatefulSet,
        operations: &[Create],
        action: mutate(true, Mutation::StatefulSet(d::anti_affinity), d::AFFINITY),
        skippable: true,
        summary: "adds preferred pod anti-affinity on kubernetes.io/hostname when none exists",
    },
    RuleInfo {
        id: RuleId::StatefulSetDefaultClaimRetention,
        kind: Kind::StatefulSet,
        operations: &[Create],
        action: mutate(
            false,
            Mutation::StatefulSet(d::claim_retention),
            d::CLAIM_RETENTION,
        ),
        skippable: true,
        summary: "adds spec.persistentVolumeClaimRetentionPolicy from the policy",
    },
    RuleInfo {
        id: RuleId::PodIdentityLabels,
        kind: Kind::Pod,
        operations: &[Create],
        action: mutate(true, Mutation::Pod(d::identity_labels), d::POD_LABELS),
        skippable: true,
        summary: "adds pod-name, pod-index and alias labels to StatefulSet pods",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lists_every_id_in_order() {
        assert_eq!(RULES.len(), RuleId::COUNT);
        for (index, info) in RULES.iter().enumerate() {
            assert_eq!(info.id.index(), index, "{} is out of order", info.id);
            assert_eq!(info.id.as_str().parse::<RuleId>(), Ok(info.id));
        }
    }

    #[test]
    fn unknown_ids_are_rejected() {
        assert_eq!(
            "statefulset.nope".parse::<RuleId>(),
            Err(UnknownRule("statefulset.nope".into()))
        );
    }
}
