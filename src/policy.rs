//! The decision engine: pure and synchronous. The webhook, the offline commands and the
//! tests all call [`evaluate`].
//!
//! Order, as the API server admits an object: mutations first (CREATE only), then every
//! validation rule on the mutated object.
pub mod cel;
pub mod config;
pub mod context;
pub mod decision;
pub mod identity;
pub mod labels;
pub mod names;
pub mod native;
pub mod patch;
pub mod review;
pub mod rules;
pub mod scope;
pub mod settings;
#[cfg(test)]
pub mod testkit;

pub use config::PolicyError;
pub use context::{Context, NoContext, StaticContext};
pub use decision::{Decision, Finding, Level};
pub use review::{Kind, Operation, Resource, Review, ScaleReview};
pub use rules::Policy;
pub use rules::{Header, Mode, RuleId};

use identity::Orphan;
use rules::live::LiveInput;
use rules::{Action, Check, Input, Mutation, RULES, ScaleInput, Sink};

/// Annotation that lists rule ids to skip for one object (only rules the policy marks
/// skippable are honoured).
pub const SKIP_ANNOTATION: &str = "stateward.io/skip";

/// Which part of admission an evaluation plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Mutations, then validation of the mutated object: the whole of admission, as the
    /// offline checker plays it.
    Admit,
    /// Mutations only (the mutating webhook).
    Mutate,
    /// Validation of the object as it is (the validating webhook: the API server has run
    /// every mutating webhook before it, so the object is what will be stored).
    Validate,
}

/// Evaluates one review against a policy and the related objects in `context`, as the
/// whole of admission ([`Stage::Admit`]).
pub fn evaluate(policy: &Policy, review: &Review, context: &dyn Context) -> Decision {
    evaluate_stage(policy, review, context, Stage::Admit)
}

/// Evaluates one stage of admission. Mutations work on a clone of the object; the
/// webhook's mutating endpoint, which owns its review, calls [`evaluate_mut`] instead.
pub fn evaluate_stage(
    policy: &Policy,
    review: &Review,
    context: &dyn Context,
    stage: Stage,
) -> Decision {
    if stage != Stage::Validate && review.operation == Operation::Create && review.object.is_some()
    {
        let mut owned = review.clone();
        return evaluate_mut(policy, &mut owned, context, stage);
    }
    let Some(mut decision) = prelude(policy, review) else {
        return Decision::default().excluded_if(policy.is_excluded(&review.namespace));
    };
    if stage != Stage::Mutate {
        validate(policy, review, context, &mut decision);
    }
    decision
}

/// As [`evaluate_stage`], mutating `review.object` in place (no copy of the object): after
/// the call it holds the mutated object, and the decision carries the patch.
pub fn evaluate_mut(
    policy: &Policy,
    review: &mut Review,
    context: &dyn Context,
    stage: Stage,
) -> Decision {
    let Some(mut decision) = prelude(policy, review) else {
        return Decision::default().excluded_if(policy.is_excluded(&review.namespace));
    };
    if stage != Stage::Validate && review.operation == Operation::Create {
        let operation = review.operation;
        if let Some(object) = review.object.as_mut() {
            mutate(policy, operation, object, &mut decision);
        }
    }
    if stage != Stage::Mutate {
        validate(policy, review, context, &mut decision);
    }
    decision
}

/// The decision before any rule ran: `None` when nothing is to be evaluated (an excluded
/// namespace, no object).
fn prelude(policy: &Policy, review: &Review) -> Option<Decision> {
    if policy.is_excluded(&review.namespace) {
        return None;
    }
    let subject = review.subject()?;
    Some(Decision {
        skipped: skipped_rules(policy, subject),
        ..Decision::default()
    })
}

/// Whether rule `id` applies to an object of `kind` in this operation.
fn applies(id: RuleId, kind: Kind, operation: Operation, decision: &Decision) -> bool {
    let info = id.info();
    info.kind == kind && info.operations.contains(&operation) && !decision.skipped.contains(&id)
}

/// Applies the enabled mutations to `object` in place. The patch is the diff of the typed
/// parts they may change, before and after.
fn mutate(policy: &Policy, operation: Operation, object: &mut Resource, decision: &mut Decision) {
    let mutations: Vec<_> = RULES
        .iter()
        .filter_map(|info| match info.action {
            Action::Mutate { mutate, target, .. }
                if policy.enabled(info.id)
                    && !policy.is_native(info.id)
                    && applies(info.id, object.kind(), operation, decision) =>
            {
                Some((info.id, mutate, target))
            }
            _ => None,
        })
        .collect();
    if mutations.is_empty() {
        return;
    }
    let before: Vec<_> = mutations
        .iter()
        .map(|(_, _, target)| (target.extract)(object))
        .collect();
    let mut changed = Vec::new();
    for ((id, mutation, target), before) in mutations.into_iter().zip(before) {
        let added = match (mutation, &mut *object) {
            (Mutation::StatefulSet(f), Resource::StatefulSet(sts)) => f(policy, sts),
            (Mutation::Pod(f), Resource::Pod(pod)) => f(policy, pod),
            _ => None,
        };
        if let Some(added) = added {
            changed.push((target, before));
            decision.findings.push(Finding {
                rule: id,
                mode: Level::Mutate,
                field: added.field,
                message: added.message,
            });
        }
    }
    if !changed.is_empty() {
        let patch = patch::diff_targets(&changed, object);
        if !patch.0.is_empty() {
            decision.patch = Some(patch);
        }
    }
}

/// Every validation rule on the review's subject (the object as it now is, or the old
/// object on DELETE).
fn validate(policy: &Policy, review: &Review, context: &dyn Context, decision: &mut Decision) {
    let Some(object) = review.subject() else {
        return;
    };
    let old = match review.operation {
        Operation::Update => review.old_object.as_ref(),
        _ => None,
    };
    for info in RULES {
        let Action::Validate { check, .. } = info.action else {
            continue;
        };
        let mode = policy.mode(info.id);
        if mode == Mode::Off
            || policy.is_native(info.id)
            || !applies(info.id, object.kind(), review.operation, decision)
        {
            continue;
        }
        let mut sink = Sink::default();
        match (check, object, old) {
            (Check::StatefulSet(f), Resource::StatefulSet(sts), old) => f(
                &Input {
                    policy,
                    review,
                    context,
                    object: sts,
                    old: match old {
                        Some(Resource::StatefulSet(o)) => Some(o),
                        _ => None,
                    },
                },
                &mut sink,
            ),
            (Check::Service(f), Resource::Service(svc), old) => f(
                &Input {
                    policy,
                    review,
                    context,
                    object: svc,
                    old: match old {
                        Some(Resource::Service(o)) => Some(o),
                        _ => None,
                    },
                },
                &mut sink,
            ),
            (Check::Pod(f), Resource::Pod(pod), old) => f(
                &Input {
                    policy,
                    review,
                    context,
                    object: pod,
                    old: match old {
                        Some(Resource::Pod(o)) => Some(o),
                        _ => None,
                    },
                },
                &mut sink,
            ),
            _ => {}
        }
        push_violations(&mut decision.findings, info.id, mode, false, sink);
    }
}

/// Evaluates a change of a StatefulSet's replicas through its scale subresource: the
/// rules that declare a scale check ([`rules::Rule::on_scale`]), each at most a warning.
pub fn evaluate_scale(policy: &Policy, review: &ScaleReview, context: &dyn Context) -> Decision {
    let mut decision = Decision::default();
    if policy.is_excluded(&review.namespace) {
        decision.excluded = true;
        return decision;
    }
    let input = ScaleInput {
        policy,
        review,
        context,
    };
    for info in RULES {
        let Some(check) = rules::scale_check(info.id) else {
            continue;
        };
        let mode = policy.mode(info.id);
        if mode == Mode::Off {
            continue;
        }
        let mut sink = Sink::default();
        check(&input, &mut sink);
        push_violations(&mut decision.findings, info.id, mode, true, sink);
    }
    decision
}

/// What a live-state rule judges: a set as it runs, or a claim a set left behind.
#[derive(Clone, Copy)]
pub enum Live<'a> {
    Set(&'a LiveInput<'a>),
    Orphan(&'a Orphan),
}

/// Evaluates the live-state rules (`stateward audit`) on one set with its pods, claims,
/// PodDisruptionBudgets and nodes, or on one orphaned claim; `skipped`: the rules the set's
/// skip annotation switched off (see [`Decision::skipped`]).
pub fn evaluate_live(policy: &Policy, live: Live<'_>, skipped: &[RuleId]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for info in RULES {
        let Action::Validate { check, .. } = info.action else {
            continue;
        };
        let mode = policy.mode(info.id);
        if mode == Mode::Off || skipped.contains(&info.id) {
            continue;
        }
        let mut sink = Sink::default();
        match (check, live) {
            (Check::Live(f), Live::Set(input)) => f(input, &mut sink),
            (Check::Orphan(f), Live::Orphan(orphan)) => f(orphan, &mut sink),
            _ => continue,
        }
        push_violations(&mut findings, info.id, mode, false, sink);
    }
    findings
}

/// Whether a live-state rule on orphaned claims is on: the audit classifies claims only
/// then.
pub fn reads_orphans(policy: &Policy) -> bool {
    RULES.iter().any(|info| {
        matches!(
            info.action,
            Action::Validate {
                check: Check::Orphan(_),
                ..
            }
        ) && policy.mode(info.id) != Mode::Off
    })
}

/// Evaluates the header rules (apiVersion and kind, before decoding) on a document of a
/// CREATE, as the offline checker reads it. `None`: no header rule objects, and the
/// document is for the other rules. `Some`: a header rule objects (e.g. a removed API
/// version), so the document cannot be judged as a served kind; the findings are at the
/// policy's modes (none when they are `off`).
pub fn evaluate_header(policy: &Policy, header: &Header<'_>) -> Option<Vec<Finding>> {
    let mut objected = false;
    let mut findings = Vec::new();
    for info in RULES {
        let Action::Validate {
            check: Check::Header(f),
            ..
        } = info.action
        else {
            continue;
        };
        if header.kind != info.kind.as_str() || !info.operations.contains(&Operation::Create) {
            continue;
        }
        let mut sink = Sink::default();
        f(header, &mut sink);
        objected |= !sink.violations.is_empty();
        push_violations(&mut findings, info.id, policy.mode(info.id), false, sink);
    }
    objected.then_some(findings)
}

/// The level of a violation under a rule's mode (`None`: the rule is off); an advisory
/// violation ("may still be fine") is at most a warning. The one mapping from modes to
/// levels: the webhook, the offline commands, the scale subresource and the audit use it.
pub fn level_of(mode: Mode, advisory: bool) -> Option<Level> {
    let effective = if advisory { mode.min(Mode::Warn) } else { mode };
    match effective {
        Mode::Enforce => Some(Level::Enforce),
        Mode::Warn => Some(Level::Warn),
        Mode::Audit => Some(Level::Audit),
        Mode::Off => None,
    }
}

/// A rule's violations as findings at the levels its mode gives them ([`level_of`]);
/// `advisory`: all of them at most warnings (the scale subresource).
fn push_violations(
    findings: &mut Vec<Finding>,
    rule: RuleId,
    mode: Mode,
    advisory: bool,
    sink: Sink,
) {
    for violation in sink.violations {
        if let Some(level) = level_of(mode, advisory || violation.advisory) {
            findings.push(Finding {
                rule,
                mode: level,
                field: violation.field,
                message: violation.message,
            });
        }
    }
}

/// The rules named in the object's skip annotation that the policy lets it skip.
fn skipped_rules(policy: &Policy, object: &Resource) -> Vec<RuleId> {
    let Some(list) = object
        .metadata()
        .annotations
        .as_ref()
        .and_then(|a| a.get(SKIP_ANNOTATION))
    else {
        return Vec::new();
    };
    let mut skipped: Vec<RuleId> = list
        .split(',')
        .filter_map(|id| id.trim().parse::<RuleId>().ok())
        .filter(|id| policy.skippable(*id))
        .collect();
    skipped.sort();
    skipped.dedup();
    skipped
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::testkit::{create, evaluate, full_context, of, sts};
    use super::*;

    #[test]
    fn skip_annotation_is_honoured_only_for_skippable_rules() {
        let obj = sts("web")
            .without_probe()
            .set("/spec/template/spec/terminationGracePeriodSeconds", json!(0))
            .set(
                "/metadata/annotations",
                json!({SKIP_ANNOTATION: "statefulset.readiness-probe, statefulset.termination-grace-period, nonsense"}),
            );
        let d = create(&obj);
        assert_eq!(d.skipped, vec![RuleId::StatefulSetReadinessProbe]);
        assert!(of(&d, RuleId::StatefulSetReadinessProbe).is_empty());
        assert_eq!(of(&d, RuleId::StatefulSetTerminationGracePeriod).len(), 1);
        assert!(!d.allowed());
    }

    #[test]
    fn excluded_namespaces_are_not_evaluated() {
        let obj = sts("web")
            .set("/metadata/namespace", json!("kube-system"))
            .set(
                "/spec/template/spec/terminationGracePeriodSeconds",
                json!(0),
            );
        let mut review = Review::create(obj.resource());
        review.namespace = "kube-system".into();
        let d = evaluate(&Policy::default(), &review, &full_context());
        assert!(d.excluded && d.allowed() && d.findings.is_empty() && d.patch.is_none());
    }

    #[test]
    fn only_core_groups_are_evaluated() {
        assert_eq!(
            Kind::from_gvk("apps", "v1", "StatefulSet"),
            Some(Kind::StatefulSet)
        );
        assert_eq!(
            Kind::from_gvk("apps.kruise.io", "v1beta1", "StatefulSet"),
            None
        );
        assert_eq!(Kind::from_gvk("apps", "v1beta2", "StatefulSet"), None);
        assert_eq!(Kind::from_gvk("", "v1", "Service"), Some(Kind::Service));
        assert_eq!(Kind::from_gvk("serving.knative.dev", "v1", "Service"), None);
    }

    #[test]
    fn validation_sees_the_mutated_object() {
        let bare = sts("web").remove("/spec/template/spec/affinity");
        let d = create(&bare);
        assert!(of(&d, RuleId::StatefulSetAntiAffinity).is_empty());
        assert_eq!(of(&d, RuleId::StatefulSetDefaultAntiAffinity).len(), 1);
    }

    #[test]
    fn the_webhook_stages_split_mutation_from_validation() {
        let bare = sts("web").remove("/spec/template/spec/affinity");
        let review = Review::create(bare.resource());
        let policy = Policy::default();
        // The validating webhook judges the object as it arrives: no mutation, no patch.
        let d = evaluate_stage(&policy, &review, &full_context(), Stage::Validate);
        assert!(d.patch.is_none());
        assert!(of(&d, RuleId::StatefulSetDefaultAntiAffinity).is_empty());
        assert_eq!(of(&d, RuleId::StatefulSetAntiAffinity).len(), 1);
        // The mutating webhook only patches.
        let d = evaluate_stage(&policy, &review, &full_context(), Stage::Mutate);
        assert!(d.patch.is_some());
        assert!(of(&d, RuleId::StatefulSetAntiAffinity).is_empty());
        assert!(d.findings.iter().all(|f| f.mode == Level::Mutate));
    }

    #[test]
    fn removed_statefulset_versions_are_judged_on_the_header() {
        let header = |api_version| Header {
            api_version,
            kind: "StatefulSet",
        };
        let policy = Policy::default();
        assert_eq!(evaluate_header(&policy, &header("apps/v1")), None);
        assert_eq!(
            evaluate_header(
                &policy,
                &Header {
                    api_version: "apps/v1beta2",
                    kind: "Deployment"
                }
            ),
            None
        );
        let findings = evaluate_header(&policy, &header("apps/v1beta2")).expect("objected");
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].rule, RuleId::StatefulSetApiVersion);
        assert_eq!(findings[0].mode, Level::Enforce);
        assert_eq!(findings[0].field, "apiVersion");
        assert!(
            findings[0]
                .message
                .starts_with("apps/v1beta2 StatefulSets are not served")
        );
        // Off: still not a document for the other rules, but no finding.
        let off = Policy::from_yaml(
            "apiVersion: stateward.io/v1alpha1\nkind: Policy\nmetadata: {name: t}\nspec:\n  rules:\n    statefulset.api-version: {mode: off}\n",
            "off.yaml",
        )
        .expect("valid");
        assert_eq!(
            evaluate_header(&off, &header("apps/v1beta1")),
            Some(Vec::new())
        );
    }

    #[test]
    fn wrong_types_are_decode_errors_naming_the_field() {
        let obj = sts("web").set("/spec/replicas", json!("three"));
        let err = Resource::decode(Kind::StatefulSet, obj.value()).expect_err("must fail");
        assert!(err.to_string().contains("spec.replicas"), "{err}");
    }
}

#[cfg(test)]
mod scale_tests {
    use serde_json::json;

    use super::*;
    use crate::policy::context::StatefulSetInfo;
    use crate::policy::testkit::{full_context, sts, with_set};
    use crate::policy::{NoContext, Resource};

    fn scale(before: i32, after: i32) -> ScaleReview {
        ScaleReview {
            namespace: "default".into(),
            name: "web".into(),
            before,
            after,
        }
    }

    #[test]
    fn a_scale_down_warns_with_the_claims_of_the_set_in_the_cache() {
        let ctx = with_set(full_context(), &sts("web").replicas(3));
        let d = evaluate_scale(&Policy::default(), &scale(3, 1), &ctx);
        assert!(d.allowed());
        let warnings = d.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("data-web-1, data-web-2"),
            "{warnings:?}"
        );
        // Up, or unchanged: nothing.
        assert!(
            evaluate_scale(&Policy::default(), &scale(1, 3), &ctx)
                .findings
                .is_empty()
        );
        assert!(
            evaluate_scale(&Policy::default(), &scale(2, 2), &ctx)
                .findings
                .is_empty()
        );
    }

    #[test]
    fn the_set_deleting_its_claims_or_having_none_is_not_warned() {
        let deleting = sts("web").set(
            "/spec/persistentVolumeClaimRetentionPolicy/whenScaled",
            json!("Delete"),
        );
        let ctx = with_set(full_context(), &deleting);
        assert!(
            evaluate_scale(&Policy::default(), &scale(3, 1), &ctx)
                .findings
                .is_empty()
        );
        let Resource::StatefulSet(set) = sts("web").remove("/spec/volumeClaimTemplates").resource()
        else {
            unreachable!()
        };
        let info = StatefulSetInfo::from_statefulset(&set, "default");
        assert!(info.claim_templates.is_empty());
    }

    #[test]
    fn without_the_set_a_shorter_warning_and_never_a_denial() {
        let d = evaluate_scale(&Policy::default(), &scale(3, 1), &NoContext);
        assert!(d.allowed());
        assert_eq!(d.warnings().len(), 1);
        assert!(d.warnings()[0].contains("3->1"), "{:?}", d.warnings());
        // Enforce in a policy still only warns here.
        let with_mode = |mode: &str| {
            let text = format!(
                "apiVersion: stateward.io/v1alpha1\nkind: Policy\nmetadata: {{name: t}}\n\
                 spec:\n  rules:\n    statefulset.scale-down-retains-claims: {{mode: {mode}}}\n"
            );
            Policy::from_yaml(&text, "test.yaml").expect("policy parses")
        };
        let d = evaluate_scale(&with_mode("enforce"), &scale(3, 1), &NoContext);
        assert!(d.allowed() && d.warnings().len() == 1);
        let off = with_mode("off");
        assert!(
            evaluate_scale(&off, &scale(3, 1), &NoContext)
                .findings
                .is_empty()
        );
    }
}
