//! What the API server sends stateward, and what it does when stateward does not answer:
//! the webhook entries of the `ValidatingWebhookConfiguration` and
//! `MutatingWebhookConfiguration`, derived from the rule table and a policy.
//!
//! - An entry exists only if some rule or mutation it carries is on in the policy.
//! - Its operations are the union of those rules' operations.
//! - Its `matchConditions` (CEL, evaluated by the API server before it calls a webhook)
//!   keep only requests some rule can act on: each rule declares its condition beside its
//!   code ([`super::rules::Rule::sent_when`]); the entry sends a request when one of its
//!   rules' conditions holds (a rule without a condition reads every request of its kind).
//! - A validating entry **fails closed** only when one of its rules is `enforce` in the
//!   policy and can deny there: everything else (warn, audit, the scale subresource, whose
//!   rule is only ever a warning) is `Ignore`, so a stateward outage never blocks what no
//!   rule could have refused. Mutations only add defaults: the chart's
//!   `webhook.mutatingFailurePolicy` (Ignore by default) applies to them.
//!
//! `stateward policy webhooks` prints this for a policy file; the chart renders its webhook
//! configurations from it (`charts/stateward/files/webhooks-<profile>.yaml`, generated and
//! checked by a test). Pure: no I/O.
use serde::Serialize;

use super::review::{Kind, Operation};
use super::rules::Policy;
use super::rules::{Action, Check, Mode, Mutation, RULES, RuleId, RuleInfo, sent_when};

/// A pod a StatefulSet controls (what every pod rule reads first): `object` on CREATE,
/// `oldObject` on DELETE.
const POD_OF_A_STATEFULSET_CREATE: &str = "object != null && has(object.metadata.ownerReferences) && \
     object.metadata.ownerReferences.exists(r, r.kind == 'StatefulSet' && has(r.controller) && r.controller)";
const POD_OF_A_STATEFULSET_DELETE: &str = "oldObject != null && has(oldObject.metadata.ownerReferences) && \
     oldObject.metadata.ownerReferences.exists(r, r.kind == 'StatefulSet' && has(r.controller) && r.controller)";
/// A scale-down through the scale subresource (an absent `spec.replicas` is 0 in a Scale).
const SCALE_DOWN: &str = "oldObject != null && has(oldObject.spec.replicas) && \
     (has(object.spec.replicas) ? object.spec.replicas : 0) < oldObject.spec.replicas";

/// The name of the matchCondition that keeps the requests some rule reads.
pub const READ_BY_A_RULE: &str = "read-by-a-rule";

/// Which webhook an entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Webhook {
    Validating,
    Mutating,
}

/// One `rules[]` item of a webhook entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRule {
    pub api_groups: Vec<&'static str>,
    pub api_versions: Vec<&'static str>,
    pub operations: Vec<&'static str>,
    pub resources: Vec<&'static str>,
    pub scope: &'static str,
}

/// One `matchConditions[]` item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MatchCondition {
    pub name: String,
    pub expression: String,
}

/// One webhook entry, as the chart renders it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub name: &'static str,
    pub webhook: Webhook,
    pub path: &'static str,
    /// A validating entry with a rule that can deny under the policy: `failurePolicy` is
    /// the chart's `webhook.validatingFailurePolicy` (Fail by default). Otherwise Ignore.
    pub fail_closed: bool,
    pub rules: Vec<ResourceRule>,
    /// ANDed by the API server; empty: every request the `rules` match is sent.
    pub match_conditions: Vec<MatchCondition>,
    /// The rules and mutations this entry carries (on in the policy), for people.
    pub rule_ids: Vec<String>,
}

/// Every entry for a policy, and the namespaces it excludes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Scope {
    pub policy: String,
    /// The policy's `excludedNamespaces`: never sent (the chart adds them to every entry's
    /// namespaceSelector).
    pub excluded_namespaces: Vec<String>,
    pub entries: Vec<Entry>,
}

/// The entries stateward knows, and which rules each carries.
struct EntrySpec {
    name: &'static str,
    webhook: Webhook,
    group: &'static str,
    resource: &'static str,
    /// A condition every request of the entry must meet (its name and CEL), before any
    /// rule's.
    base: Option<(&'static str, &'static str)>,
    /// Whether a rule of the table belongs to this entry.
    carries: fn(&RuleInfo) -> bool,
    /// The operations, when not the union of the rules' own (the scale subresource).
    operations: Option<&'static [Operation]>,
    /// Whether the entry's rules may deny here (the scale subresource's never does).
    may_deny: bool,
}

fn validates(info: &RuleInfo, kind: Kind) -> bool {
    matches!(
        (kind, info.action),
        (
            Kind::StatefulSet,
            Action::Validate {
                check: Check::StatefulSet(_),
                ..
            }
        ) | (
            Kind::Service,
            Action::Validate {
                check: Check::Service(_),
                ..
            }
        ) | (
            Kind::Pod,
            Action::Validate {
                check: Check::Pod(_),
                ..
            }
        )
    )
}

const ENTRIES: &[EntrySpec] = &[
    EntrySpec {
        name: "validate.stateward.io",
        webhook: Webhook::Validating,
        group: "apps",
        resource: "statefulsets",
        base: None,
        carries: |info| validates(info, Kind::StatefulSet),
        operations: None,
        may_deny: true,
    },
    // kubectl scale and HorizontalPodAutoscalers change replicas through the scale
    // subresource: its rule names the claims a scale-down leaves behind, never denies.
    EntrySpec {
        name: "validate-scale.stateward.io",
        webhook: Webhook::Validating,
        group: "apps",
        resource: "statefulsets/scale",
        base: Some(("scale-downs-only", SCALE_DOWN)),
        carries: |info| super::rules::scale_check(info.id).is_some(),
        operations: Some(&[Operation::Update]),
        may_deny: false,
    },
    EntrySpec {
        name: "validate-services.stateward.io",
        webhook: Webhook::Validating,
        group: "",
        resource: "services",
        base: None,
        carries: |info| validates(info, Kind::Service),
        operations: None,
        may_deny: true,
    },
    EntrySpec {
        name: "validate-pods.stateward.io",
        webhook: Webhook::Validating,
        group: "",
        resource: "pods",
        base: Some(("statefulset-pods-only", POD_OF_A_STATEFULSET_DELETE)),
        carries: |info| validates(info, Kind::Pod),
        operations: None,
        may_deny: true,
    },
    EntrySpec {
        name: "mutate.stateward.io",
        webhook: Webhook::Mutating,
        group: "apps",
        resource: "statefulsets",
        base: None,
        carries: |info| {
            matches!(
                info.action,
                Action::Mutate {
                    mutate: Mutation::StatefulSet(_),
                    ..
                }
            )
        },
        operations: None,
        may_deny: false,
    },
    EntrySpec {
        name: "mutate-pods.stateward.io",
        webhook: Webhook::Mutating,
        group: "",
        resource: "pods",
        base: Some(("statefulset-pods-only", POD_OF_A_STATEFULSET_CREATE)),
        carries: |info| {
            matches!(
                info.action,
                Action::Mutate {
                    mutate: Mutation::Pod(_),
                    ..
                }
            )
        },
        operations: None,
        may_deny: false,
    },
];

/// Whether the webhook judges the rule on this entry: on in the policy, and not left to the
/// native policies (the scale subresource's entry always judges its rule: no native policy
/// can, a Scale carries no claim templates).
fn is_on(policy: &Policy, info: &RuleInfo, spec: &EntrySpec) -> bool {
    let on = match info.action {
        Action::Validate { .. } => policy.mode(info.id) != Mode::Off,
        Action::Mutate { .. } => policy.enabled(info.id),
    };
    on && (spec.operations.is_some() || !policy.is_native(info.id))
}

/// The webhook entries for `policy`.
pub fn scope(policy: &Policy) -> Scope {
    let entries = ENTRIES
        .iter()
        .filter_map(|spec| entry(policy, spec))
        .collect();
    Scope {
        policy: policy.name.clone(),
        excluded_namespaces: policy.excluded_namespaces.clone(),
        entries,
    }
}

fn entry(policy: &Policy, spec: &EntrySpec) -> Option<Entry> {
    let rules: Vec<&RuleInfo> = RULES
        .iter()
        .copied()
        .filter(|info| (spec.carries)(info) && is_on(policy, info, spec))
        .collect();
    if rules.is_empty() {
        return None;
    }
    let operations: Vec<&'static str> = [Operation::Create, Operation::Update, Operation::Delete]
        .into_iter()
        .filter(|op| match spec.operations {
            Some(ops) => ops.contains(op),
            None => rules.iter().any(|info| info.operations.contains(op)),
        })
        .map(Operation::as_str)
        .collect();
    let mut match_conditions = Vec::new();
    if let Some((name, expression)) = spec.base {
        match_conditions.push(MatchCondition {
            name: name.into(),
            expression: expression.into(),
        });
    }
    // A rule without a condition reads every request: then nothing narrows the entry.
    let conditions: Option<Vec<String>> = rules
        .iter()
        .map(|info| sent_when(info.id, policy))
        .collect();
    if let Some(conditions) = conditions {
        let expression = match conditions.as_slice() {
            [one] => one.clone(),
            many => many
                .iter()
                .map(|c| format!("({c})"))
                .collect::<Vec<_>>()
                .join(" || "),
        };
        match_conditions.push(MatchCondition {
            name: READ_BY_A_RULE.into(),
            expression,
        });
    }
    let fail_closed = spec.may_deny
        && spec.webhook == Webhook::Validating
        && rules
            .iter()
            .any(|info| policy.mode(info.id) == Mode::Enforce);
    Some(Entry {
        name: spec.name,
        webhook: spec.webhook,
        path: match spec.webhook {
            Webhook::Validating => "/validate",
            Webhook::Mutating => "/mutate",
        },
        fail_closed,
        rules: vec![ResourceRule {
            api_groups: vec![spec.group],
            api_versions: vec!["v1"],
            operations,
            resources: vec![spec.resource],
            scope: "Namespaced",
        }],
        match_conditions,
        rule_ids: rules.iter().map(|info| info.name.to_owned()).collect(),
    })
}

/// The resource and base conditions of the entry that carries a rule (what the native
/// policies match on too): `(api group, resource, base condition)`. `None` for rules no
/// admission entry carries (live and offline-only rules).
pub(crate) fn admission_target(
    info: &RuleInfo,
) -> Option<(&'static str, &'static str, Option<MatchCondition>)> {
    ENTRIES
        .iter()
        .find(|spec| spec.operations.is_none() && (spec.carries)(info))
        .map(|spec| {
            (
                spec.group,
                spec.resource,
                spec.base.map(|(name, expression)| MatchCondition {
                    name: name.into(),
                    expression: expression.into(),
                }),
            )
        })
}

/// The ids of the rules that can deny a request an entry carries, for docs and tests.
pub fn enforced(policy: &Policy) -> Vec<RuleId> {
    RULES
        .iter()
        .filter(|info| {
            ENTRIES
                .iter()
                .any(|spec| spec.may_deny && (spec.carries)(info))
                && policy.mode(info.id) == Mode::Enforce
        })
        .map(|info| info.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> Policy {
        Policy::from_yaml(include_str!("../../policies/strict.yaml"), "strict")
            .expect("strict policy")
    }

    fn entry<'a>(scope: &'a Scope, name: &str) -> Option<&'a Entry> {
        scope.entries.iter().find(|e| e.name == name)
    }

    #[test]
    fn baseline_fails_closed_only_where_an_enforce_rule_is() {
        let scope = scope(&Policy::baseline());
        let closed: Vec<&str> = scope
            .entries
            .iter()
            .filter(|e| e.fail_closed)
            .map(|e| e.name)
            .collect();
        assert_eq!(
            closed,
            ["validate.stateward.io", "validate-pods.stateward.io"]
        );
        let services = entry(&scope, "validate-services.stateward.io").expect("services");
        assert!(!services.fail_closed, "baseline's Service rules only warn");
        assert_eq!(services.rules[0].operations, ["CREATE", "UPDATE", "DELETE"]);
        let scale = entry(&scope, "validate-scale.stateward.io").expect("scale");
        assert!(!scale.fail_closed);
        assert_eq!(scale.rules[0].resources, ["statefulsets/scale"]);
    }

    #[test]
    fn strict_also_fails_closed_for_services() {
        let scope = scope(&strict());
        let services = entry(&scope, "validate-services.stateward.io").expect("services");
        assert!(
            services.fail_closed,
            "strict enforces service.headless-in-use"
        );
        assert!(
            !entry(&scope, "validate-scale.stateward.io")
                .expect("scale")
                .fail_closed,
            "the scale subresource never denies"
        );
    }

    #[test]
    fn rules_that_are_off_take_their_entry_away() {
        let policy = Policy::from_yaml(
            "apiVersion: stateward.io/v1alpha1\nkind: Policy\nmetadata: {name: p}\nspec:\n  rules:\n    pod.force-delete: {mode: off}\n    statefulset.scale-down-retains-claims: {mode: off}\n    service.headless-in-use: {mode: audit}\n    service.headless-shape: {mode: off}\n    service.pod-name-selector: {mode: off}\n  mutations:\n    pod.identity-labels: {enabled: false}\n",
            "p",
        )
        .expect("policy");
        let scope = scope(&policy);
        let names: Vec<&str> = scope.entries.iter().map(|e| e.name).collect();
        assert_eq!(
            names,
            [
                "validate.stateward.io",
                "validate-services.stateward.io",
                "mutate.stateward.io"
            ]
        );
        let services = entry(&scope, "validate-services.stateward.io").expect("services");
        assert_eq!(services.rules[0].operations, ["UPDATE", "DELETE"]);
        assert_eq!(services.rule_ids, ["service.headless-in-use"]);
        assert!(!services.fail_closed);
    }

    #[test]
    fn the_pod_condition_carries_the_policys_exempt_users_and_override() {
        let policy = Policy::from_yaml(
            "apiVersion: stateward.io/v1alpha1\nkind: Policy\nmetadata: {name: p}\nspec:\n  rules:\n    pod.force-delete: {mode: enforce, exemptUsers: [\"ops:o'brien\"], overrideAnnotation: example.com/ok}\n",
            "p",
        )
        .expect("policy");
        let scope = scope(&policy);
        let pods = entry(&scope, "validate-pods.stateward.io").expect("pods");
        let read = &pods.match_conditions[1];
        assert_eq!(read.name, READ_BY_A_RULE);
        assert!(
            read.expression.contains(r"['ops:o\'brien']"),
            "{}",
            read.expression
        );
        assert!(
            read.expression.contains("'example.com/ok'"),
            "{}",
            read.expression
        );
    }

    #[test]
    fn statefulset_entries_are_not_narrowed() {
        let scope = scope(&Policy::baseline());
        for name in ["validate.stateward.io", "mutate.stateward.io"] {
            assert!(entry(&scope, name).expect(name).match_conditions.is_empty());
        }
    }

    #[test]
    fn enforced_rules_of_baseline() {
        let ids: Vec<&str> = enforced(&Policy::baseline())
            .iter()
            .map(|id| id.as_str())
            .collect();
        assert!(ids.contains(&"pod.force-delete"));
        assert!(!ids.contains(&"statefulset.api-version"));
        assert!(!ids.contains(&"service.headless-in-use"));
    }
}
