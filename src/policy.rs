//! The decision engine: pure and synchronous. The webhook, the offline commands and the
//! tests all call [`evaluate`].
//!
//! Order, as the API server admits an object: mutations first (CREATE only), then every
//! validation rule on the mutated object.
pub mod config;
pub mod context;
pub mod decision;
pub mod labels;
pub mod names;
pub mod patch;
pub mod review;
pub mod rules;
pub mod scale;
#[cfg(test)]
pub mod testkit;

pub use config::{Policy, PolicyError};
pub use context::{Context, NoContext, StaticContext};
pub use decision::{Decision, Finding, Level};
pub use review::{Kind, Operation, Resource, Review};
pub use rules::{Mode, RuleId};
pub use scale::{ScaleReview, evaluate_scale};

use rules::{Action, Check, Input, Mutation, RULES, Sink};

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

/// Evaluates one stage of admission.
pub fn evaluate_stage(
    policy: &Policy,
    review: &Review,
    context: &dyn Context,
    stage: Stage,
) -> Decision {
    let mut decision = Decision::default();
    if policy.is_excluded(&review.namespace) {
        decision.excluded = true;
        return decision;
    }
    let Some(subject) = review.subject() else {
        return decision;
    };
    decision.skipped = skipped_rules(policy, subject);
    let applies = |id: RuleId, kind: Kind| {
        let info = id.info();
        info.kind == kind
            && info.operations.contains(&review.operation)
            && !decision.skipped.contains(&id)
    };

    // Mutations (CREATE only), on a typed clone; the patch is the diff of typed values.
    let mut mutated: Option<Resource> = None;
    if review.operation == Operation::Create
        && stage != Stage::Validate
        && let Some(object) = review.object.as_ref()
    {
        let mut working = object.clone();
        let mut changed = Vec::new();
        for info in RULES {
            let Action::Mutate { mutate, target, .. } = info.action else {
                continue;
            };
            if !policy.enabled(info.id) || !applies(info.id, working.kind()) {
                continue;
            }
            let added = match (mutate, &mut working) {
                (Mutation::StatefulSet(f), Resource::StatefulSet(sts)) => f(policy, sts),
                (Mutation::Pod(f), Resource::Pod(pod)) => f(policy, pod),
                _ => None,
            };
            if let Some(added) = added {
                changed.push(target);
                decision.findings.push(Finding {
                    rule: info.id,
                    mode: Level::Mutate,
                    field: added.field,
                    message: added.message,
                });
            }
        }
        if !changed.is_empty() {
            let patch = patch::diff_targets(object, &working, &changed);
            if !patch.0.is_empty() {
                decision.patch = Some(patch);
            }
            mutated = Some(working);
        }
    }

    if stage == Stage::Mutate {
        return decision;
    }
    // Validation, on the mutated object where there is one.
    let object = mutated.as_ref().unwrap_or(subject);
    let old = match review.operation {
        Operation::Update => review.old_object.as_ref(),
        _ => None,
    };
    for info in RULES {
        let Action::Validate { check, .. } = info.action else {
            continue;
        };
        let mode = policy.mode(info.id);
        if mode == Mode::Off || !applies(info.id, object.kind()) {
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
        for violation in sink.violations {
            let effective = if violation.advisory {
                mode.min(Mode::Warn)
            } else {
                mode
            };
            let level = match effective {
                Mode::Enforce => Level::Enforce,
                Mode::Warn => Level::Warn,
                Mode::Audit => Level::Audit,
                Mode::Off => continue,
            };
            decision.findings.push(Finding {
                rule: info.id,
                mode: level,
                field: violation.field,
                message: violation.message,
            });
        }
    }
    decision
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

    use super::testkit::{create, full_context, of, sts};
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
    fn wrong_types_are_decode_errors_naming_the_field() {
        let obj = sts("web").set("/spec/replicas", json!("three"));
        let err = Resource::decode(Kind::StatefulSet, obj.value()).expect_err("must fail");
        assert!(err.to_string().contains("spec.replicas"), "{err}");
    }
}
