//! The policy compiled to the API server's own admission policies: the checks that rule
//! declarations state in CEL ([`super::rules::Rule::native`]) gathered into one
//! `ValidatingAdmissionPolicy` and binding per resource and action (`Deny`, `Warn`,
//! `Audit`), and one `MutatingAdmissionPolicy` per mutation that CEL can express. They run
//! inside kube-apiserver: no network hop, no certificate, no pod to keep alive.
//!
//! One policy per resource and action, not per rule: the API server converts the object to
//! CEL's input once per policy it evaluates (about 0.6 ms for a 7 KB StatefulSet, measured
//! on 1.36), so the native path costs what the number of policies costs; the checks
//! themselves are cheap. The baseline's StatefulSet checks are two policies (deny, warn).
//!
//! What carries over from the policy, baked in (not `paramKind`: a policy is compiled once
//! per policy file, as the webhook entries are, and a baked policy needs no parameter
//! object, RBAC or ordering between objects):
//! - the mode: `enforce` -> `Deny`, `warn` -> `Warn`, `audit` -> `Audit`, `off` -> nothing;
//!   a rule's advisory checks ("may still be fine") go to the policy bound at most `Warn`,
//!   as the webhook reports them at most as warnings;
//! - the rule's parameters (in the CEL the declaration builds from them);
//! - `excludedNamespaces` (the binding's namespaceSelector);
//! - per rule, guarding its checks: its operations, which requests it reads (its
//!   `sent_when` condition, with the exempt users and the override annotation of
//!   `pod.force-delete`), the webhook entry's own condition (pods a StatefulSet controls)
//!   and its skip (`stateward.io/skip` naming it).
//!
//! Messages come from `messageExpression` and start with the rule id, as the webhook's do;
//! the annotation `stateward.io/rules` lists the rules a policy holds. A rule that cannot run
//! there (it reads other objects or live state) is listed with the reason. Pure: no I/O.
use serde_json::{Value, json};

use super::SKIP_ANNOTATION;
use super::cel::cel_string;
use super::review::Operation;
use super::rules::Policy;
use super::rules::{
    Action, CelCheck, CelMutation, Check, Mode, NativeRule, RULES, RuleId, RuleInfo, native,
    sent_when,
};
use super::scope::admission_target;

/// The label every compiled object carries (what `kubectl delete -l` and the chart select).
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "stateward");
/// The label naming the rule an object enforces.
pub const RULE_LABEL: &str = "stateward.io/rule";

/// The compiled policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Compiled {
    /// The `MutatingAdmissionPolicy` objects and bindings (in rule order), then the
    /// `ValidatingAdmissionPolicy` objects and bindings (in the order of their first rule).
    pub objects: Vec<Value>,
    /// The validation rules (on in the policy) that run natively.
    pub native: Vec<RuleId>,
    /// The mutations (on in the policy) that run natively (`MutatingAdmissionPolicy`, served
    /// from Kubernetes 1.36).
    pub native_mutations: Vec<RuleId>,
    /// The rules (on in the policy) that do not, and why.
    pub not_native: Vec<(RuleId, &'static str)>,
}

/// The name of a rule's compiled objects: `stateward.<rule id>` (with `-advisory` for the
/// second policy of its advisory checks).
pub fn object_name(id: RuleId, advisory: bool) -> String {
    format!(
        "stateward.{}{}",
        id.as_str(),
        if advisory { "-advisory" } else { "" }
    )
}

/// Whether a rule is judged on admission requests at all (not live, not offline only).
fn admission_rule(info: &RuleInfo) -> bool {
    matches!(
        info.action,
        Action::Validate {
            check: Check::StatefulSet(_) | Check::Service(_) | Check::Pod(_),
            ..
        }
    )
}

/// Where a rule runs when the chart installs the native policies (`hybrid`), for people:
/// in the API server (a validation, or a mutation from Kubernetes 1.36), in the webhook
/// (it reads other objects, or does not compile), in the audit (live state), or offline
/// only.
pub fn placement(id: RuleId) -> &'static str {
    let info = id.info();
    match (info.action, native(id, &Policy::default())) {
        (
            Action::Validate {
                check: Check::Header(_),
                ..
            },
            _,
        ) => "offline",
        (
            Action::Validate {
                check: Check::Live(_) | Check::Orphan(_),
                ..
            },
            _,
        ) => "audit",
        (_, NativeRule::Cel(_)) => "API server",
        (_, NativeRule::Mutation(_)) => "webhook (API server in native mode, 1.36+)",
        (_, NativeRule::No(_)) => "webhook",
    }
}

/// Compiles `policy`.
pub fn compile(policy: &Policy) -> Compiled {
    let mut groups: Vec<Group> = Vec::new();
    let mut compiled = Compiled {
        objects: Vec::new(),
        native: Vec::new(),
        native_mutations: Vec::new(),
        not_native: Vec::new(),
    };
    for info in RULES.iter().copied() {
        let check = match info.action {
            Action::Validate { check, .. } => check,
            Action::Mutate { .. } => {
                if !policy.enabled(info.id) {
                    continue;
                }
                match native(info.id, policy) {
                    NativeRule::Mutation(mutation) => {
                        compiled.native_mutations.push(info.id);
                        let name = object_name(info.id, false);
                        compiled
                            .objects
                            .push(mutating_policy(policy, info, &name, &mutation));
                        compiled.objects.push(mutating_binding(policy, info, &name));
                    }
                    NativeRule::No(reason) => compiled.not_native.push((info.id, reason)),
                    NativeRule::Cel(_) => compiled
                        .not_native
                        .push((info.id, "declared as checks, not as a mutation")),
                }
                continue;
            }
        };
        let mode = policy.mode(info.id);
        if mode == Mode::Off {
            continue;
        }
        if !admission_rule(info) {
            compiled.not_native.push((
                info.id,
                match check {
                    Check::Header(_) => "offline only: it reads the document's apiVersion, which the API server has converted before admission",
                    _ => "audit only: it reads live state (pods, claims, nodes, budgets)",
                },
            ));
            continue;
        }
        match native(info.id, policy) {
            NativeRule::No(reason) => compiled.not_native.push((info.id, reason)),
            NativeRule::Mutation(_) => compiled
                .not_native
                .push((info.id, "declared as a mutation, not as checks")),
            NativeRule::Cel(checks) => {
                compiled.native.push(info.id);
                let (advisory, plain): (Vec<_>, Vec<_>) =
                    checks.into_iter().partition(|c| c.advisory);
                for (checks, mode) in [(plain, mode), (advisory, mode.min(Mode::Warn))] {
                    if checks.is_empty() {
                        continue;
                    }
                    let Some(target) = admission_target(info) else {
                        continue;
                    };
                    let key = (target.0, target.1, action_of(mode));
                    let at = match groups.iter().position(|g| g.key() == key) {
                        Some(at) => at,
                        None => {
                            groups.push(Group {
                                group: target.0,
                                resource: target.1,
                                action: key.2,
                                base: target.2,
                                rules: Vec::new(),
                            });
                            groups.len() - 1
                        }
                    };
                    groups[at].rules.push((info, checks));
                }
            }
        }
    }
    for group in &groups {
        compiled.objects.push(group.policy(policy));
        compiled.objects.push(group.binding(policy));
    }
    compiled
}

/// The action a binding takes for a mode.
fn action_of(mode: Mode) -> &'static str {
    match mode {
        Mode::Enforce => "Deny",
        Mode::Warn => "Warn",
        Mode::Audit | Mode::Off => "Audit",
    }
}

/// The name of the policy (and binding) holding the checks of one resource bound with one
/// action: `stateward.<resource>.<deny|warn|audit>`.
pub fn policy_name(resource: &str, action: &str) -> String {
    format!("stateward.{resource}.{}", action.to_ascii_lowercase())
}

/// The annotation listing the rules whose checks a policy holds.
pub const RULES_ANNOTATION: &str = "stateward.io/rules";

/// The checks of every rule on one resource that are bound with one action: one policy.
///
/// One policy, not one per rule: the API server converts the object to CEL's input once per
/// policy (and once more for its matchConditions), about 0.6 ms for a 7 KB StatefulSet, so
/// the cost of the native path follows the number of policies a request meets, not the
/// number of checks. Each rule's own conditions (its operations, which requests it reads,
/// its skip annotation, the entry's base condition) guard its checks inside the
/// expressions instead of matchConditions; the conditions shared by the policy are
/// `variables`, evaluated at most once per request.
struct Group {
    group: &'static str,
    resource: &'static str,
    action: &'static str,
    base: Option<super::scope::MatchCondition>,
    rules: Vec<(&'static RuleInfo, Vec<CelCheck>)>,
}

/// The variable holding the stateward.io/skip annotation's rule ids.
const SKIPPED: &str = "skipped";
/// The variable holding the entry's base condition (pods a StatefulSet controls).
const IN_SCOPE: &str = "inScope";

impl Group {
    fn key(&self) -> (&'static str, &'static str, &'static str) {
        (self.group, self.resource, self.action)
    }

    fn operations(&self) -> Vec<Operation> {
        [Operation::Create, Operation::Update, Operation::Delete]
            .into_iter()
            .filter(|op| {
                self.rules
                    .iter()
                    .any(|(info, _)| info.operations.contains(op))
            })
            .collect()
    }

    /// When a rule's checks do not apply, as CEL terms of an OR (none: they always apply).
    fn unless(&self, policy: &Policy, info: &RuleInfo, all: &[Operation]) -> Vec<String> {
        let mut terms = Vec::new();
        if self.base.is_some() {
            terms.push(format!("!variables.{IN_SCOPE}"));
        }
        let own: Vec<&Operation> = all
            .iter()
            .filter(|op| info.operations.contains(op))
            .collect();
        if own.len() < all.len() {
            let list: Vec<String> = own.iter().map(|op| cel_string(op.as_str())).collect();
            terms.push(format!("!(request.operation in [{}])", list.join(", ")));
        }
        if let Some(condition) = sent_when(info.id, policy) {
            terms.push(format!("!({condition})"));
        }
        if policy.skippable(info.id) {
            terms.push(format!("{} in variables.{SKIPPED}", cel_string(info.name)));
        }
        terms
    }

    fn policy(&self, policy: &Policy) -> Value {
        let operations = self.operations();
        let mut variables = Vec::new();
        if let Some(base) = &self.base {
            variables.push(json!({"name": IN_SCOPE, "expression": base.expression}));
        }
        if self.rules.iter().any(|(info, _)| policy.skippable(info.id)) {
            let subject = if operations.contains(&Operation::Delete) {
                "(request.operation == 'DELETE' ? oldObject : object)"
            } else {
                "object"
            };
            let key = cel_string(SKIP_ANNOTATION);
            variables.push(json!({
                "name": SKIPPED,
                "expression": format!(
                    "has({subject}.metadata.annotations) && {key} in {subject}.metadata.annotations \
                     ? {subject}.metadata.annotations[{key}].split(',').map(s, s.trim()) : []"
                ),
            }));
        }
        let mut validations = Vec::new();
        for (info, checks) in &self.rules {
            let unless = self.unless(policy, info, &operations).join(" || ");
            let prefix = cel_string(&format!("{}: ", info.name));
            for check in checks {
                validations.push(json!({
                    "expression": if unless.is_empty() {
                        check.expression.clone()
                    } else {
                        format!("{unless} || ({})", check.expression)
                    },
                    "messageExpression": format!("{prefix} + ({})", check.message),
                    // What the API server says if the message itself cannot be evaluated.
                    "message": format!("{}: {}", info.name, info.summary),
                    "reason": "Invalid",
                }));
            }
        }
        let name = policy_name(self.resource, self.action);
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {
                "name": name,
                "labels": {MANAGED_BY.0: MANAGED_BY.1},
                "annotations": {RULES_ANNOTATION: self.rule_list()},
            },
            "spec": {
                // A check that cannot be evaluated (a bug in its CEL) refuses only in the
                // policy that denies; elsewhere it is ignored, as the webhook's `Ignore`
                // entries are.
                "failurePolicy": if self.action == "Deny" { "Fail" } else { "Ignore" },
                "matchConstraints": {
                    "resourceRules": [{
                        "apiGroups": [self.group],
                        "apiVersions": ["v1"],
                        "operations": operations.iter().map(|op| op.as_str()).collect::<Vec<_>>(),
                        "resources": [self.resource],
                    }],
                },
                "variables": variables,
                "validations": validations,
            },
        })
    }

    fn rule_list(&self) -> String {
        let mut names: Vec<&str> = Vec::new();
        for (info, _) in &self.rules {
            if !names.contains(&info.name) {
                names.push(info.name);
            }
        }
        names.join(",")
    }

    fn binding(&self, policy: &Policy) -> Value {
        let name = policy_name(self.resource, self.action);
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {
                "name": name,
                "labels": {MANAGED_BY.0: MANAGED_BY.1},
                "annotations": {RULES_ANNOTATION: self.rule_list()},
            },
            "spec": {
                "policyName": name,
                "validationActions": [self.action],
                "matchResources": {"namespaceSelector": excluded(policy)},
            },
        })
    }
}

fn labels(info: &RuleInfo) -> Value {
    json!({MANAGED_BY.0: MANAGED_BY.1, RULE_LABEL: info.name})
}

fn match_constraints(info: &RuleInfo, group: &str, resource: &str) -> Value {
    let operations: Vec<&str> = [Operation::Create, Operation::Update, Operation::Delete]
        .into_iter()
        .filter(|op| info.operations.contains(op))
        .map(Operation::as_str)
        .collect();
    json!({
        "resourceRules": [{
            "apiGroups": [group],
            "apiVersions": ["v1"],
            "operations": operations,
            "resources": [resource],
        }],
    })
}

/// The conditions under which a rule's policy runs: the webhook entry's own (pods a
/// StatefulSet controls), the rule's request condition, and not skipped.
fn conditions(
    policy: &Policy,
    info: &RuleInfo,
    base: Option<super::scope::MatchCondition>,
) -> Vec<Value> {
    let mut conditions = Vec::new();
    if let Some(base) = base {
        conditions.push(json!({"name": base.name, "expression": base.expression}));
    }
    if let Some(condition) = sent_when(info.id, policy) {
        conditions.push(json!({"name": "read-by-the-rule", "expression": condition}));
    }
    if policy.skippable(info.id) {
        let subject = "(request.operation == 'DELETE' ? oldObject : object)";
        let key = cel_string(SKIP_ANNOTATION);
        conditions.push(json!({
            "name": "not-skipped",
            "expression": format!(
                "!(has({subject}.metadata.annotations) && {key} in {subject}.metadata.annotations && \
                 {subject}.metadata.annotations[{key}].split(',').exists(s, s.trim() == {}))",
                cel_string(info.name)
            ),
        }));
    }
    conditions
}

fn mutating_policy(policy: &Policy, info: &RuleInfo, name: &str, mutation: &CelMutation) -> Value {
    let (group, resource, base) = admission_target(info).unwrap_or(("", "", None));
    let mut conditions = conditions(policy, info, base);
    for (name, expression) in &mutation.conditions {
        conditions.push(json!({"name": name, "expression": expression}));
    }
    let variables: Vec<Value> = mutation
        .variables
        .iter()
        .map(|(name, expression)| json!({"name": name, "expression": expression}))
        .collect();
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicy",
        "metadata": {"name": name, "labels": labels(info)},
        "spec": {
            // Mutations only add defaults: a patch that cannot be made lets the object
            // through, as the webhook's mutating entries do.
            "failurePolicy": "Ignore",
            "reinvocationPolicy": "Never",
            "matchConstraints": match_constraints(info, group, resource),
            "matchConditions": conditions,
            "variables": variables,
            "mutations": [{
                "patchType": "JSONPatch",
                "jsonPatch": {"expression": mutation.json_patch},
            }],
        },
    })
}

fn mutating_binding(policy: &Policy, info: &RuleInfo, name: &str) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicyBinding",
        "metadata": {"name": name, "labels": labels(info)},
        "spec": {
            "policyName": name,
            "matchResources": {"namespaceSelector": excluded(policy)},
        },
    })
}

/// The binding's namespaceSelector: every namespace but the policy's excluded ones (an
/// empty `NotIn` is invalid, so no exclusion is an empty selector).
fn excluded(policy: &Policy) -> Value {
    if policy.excluded_namespaces.is_empty() {
        return json!({});
    }
    json!({
        "matchExpressions": [{
            "key": "kubernetes.io/metadata.name",
            "operator": "NotIn",
            "values": policy.excluded_namespaces,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_admission_rule_declares_its_native_form() {
        for policy in [
            Policy::baseline(),
            Policy::from_yaml(include_str!("../../policies/strict.yaml"), "strict")
                .expect("strict"),
        ] {
            let compiled = compile(&policy);
            for (id, reason) in &compiled.not_native {
                assert!(
                    !reason.starts_with("no CEL declared"),
                    "{id}: declare .native(..) or .not_native(reason)"
                );
            }
        }
    }

    #[test]
    fn native_rules_leave_the_engine_but_not_the_scale_subresource() {
        use crate::policy::testkit::{evaluate, full_context, of, sts, with_set};
        use crate::policy::{Review, ScaleReview, evaluate_scale};
        let mut policy = Policy::baseline();
        let grace0 = sts("web").set(
            "/spec/template/spec/terminationGracePeriodSeconds",
            json!(0),
        );
        let scale_down = Review::update(
            sts("web").replicas(3).resource(),
            sts("web").replicas(1).resource(),
        );
        let ctx = with_set(full_context(), &sts("web").replicas(3));
        let scale = ScaleReview {
            namespace: "default".into(),
            name: "web".into(),
            before: 3,
            after: 1,
        };
        let grace = RuleId::StatefulSetTerminationGracePeriod;
        let retains = RuleId::StatefulSetScaleDownRetainsClaims;
        assert!(
            !of(
                &evaluate(&policy, &Review::create(grace0.resource()), &ctx),
                grace
            )
            .is_empty()
        );
        assert!(!of(&evaluate(&policy, &scale_down, &ctx), retains).is_empty());
        for id in compile(&policy).native {
            policy.set_native(id);
        }
        // Each request judged in one place: the API server's policies judge these.
        assert!(
            of(
                &evaluate(&policy, &Review::create(grace0.resource()), &ctx),
                grace
            )
            .is_empty()
        );
        assert!(of(&evaluate(&policy, &scale_down, &ctx), retains).is_empty());
        // kubectl scale: a Scale carries no claim templates, so the webhook keeps it.
        assert!(
            evaluate_scale(&policy, &scale, &ctx)
                .findings
                .iter()
                .any(|f| f.rule == retains)
        );
    }

    #[test]
    fn modes_become_actions_and_off_becomes_nothing() {
        let policy = Policy::from_yaml(
            "apiVersion: stateward.io/v1alpha1\nkind: Policy\nmetadata: {name: p}\nspec:\n  rules:\n    statefulset.name-length: {mode: warn}\n    statefulset.termination-grace-period: {mode: off}\n    pod.force-delete: {mode: audit}\n",
            "p",
        )
        .expect("policy");
        let compiled = compile(&policy);
        let action = |name: &str| {
            compiled
                .objects
                .iter()
                .find(|o| {
                    o["kind"] == "ValidatingAdmissionPolicyBinding" && o["metadata"]["name"] == name
                })
                .map(|o| {
                    (
                        o["spec"]["validationActions"][0].clone(),
                        o["metadata"]["annotations"][RULES_ANNOTATION].clone(),
                    )
                })
        };
        let (warn, rules) = action("stateward.statefulsets.warn").expect("warn policy");
        assert_eq!(warn, json!("Warn"));
        assert!(
            rules
                .as_str()
                .is_some_and(|r| r.split(',').any(|r| r == "statefulset.name-length")),
            "{rules}"
        );
        let (audit, rules) = action("stateward.pods.audit").expect("audit policy");
        assert_eq!((audit, rules), (json!("Audit"), json!("pod.force-delete")));
        assert!(action("stateward.pods.deny").is_none());
        let text = serde_json::to_string(&compiled.objects).expect("json");
        assert!(!text.contains("statefulset.termination-grace-period: "));
        assert!(
            !compiled
                .native
                .contains(&RuleId::StatefulSetTerminationGracePeriod)
        );
    }

    #[test]
    fn one_policy_per_resource_and_action() {
        let compiled = compile(&Policy::baseline());
        let names: Vec<&str> = compiled
            .objects
            .iter()
            .filter(|o| o["kind"] == "ValidatingAdmissionPolicy")
            .filter_map(|o| o["metadata"]["name"].as_str())
            .collect();
        assert_eq!(
            names,
            [
                "stateward.statefulsets.deny",
                "stateward.statefulsets.warn",
                "stateward.pods.deny"
            ]
        );
        // Guards live in the expressions: a matchCondition would cost the API server
        // another conversion of the object.
        for o in &compiled.objects {
            if o["kind"] == "ValidatingAdmissionPolicy" {
                assert!(o["spec"].get("matchConditions").is_none(), "{o}");
            }
        }
    }
}
