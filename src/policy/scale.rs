//! Reviews of `statefulsets/scale`: `kubectl scale` and HorizontalPodAutoscalers change a
//! set's replicas through its `autoscaling/v1` Scale, which carries no claim templates, so
//! the set comes from the context. Only `statefulset.scale-down-retains-claims` applies, and
//! only ever as a warning: denying a scale could block an autoscaler or an incident response.
use super::context::ContextKind;
use super::identity::retained_claims;
use super::rules::statefulset::retained_claims_message;
use super::{Context, Decision, Finding, Policy, RuleId};

/// The rules a scale review evaluates (the webhook entry for `statefulsets/scale` carries
/// them; see [`super::scope`]).
pub const SCALE_RULES: &[RuleId] = &[RuleId::StatefulSetScaleDownRetainsClaims];

/// A change of a StatefulSet's replicas through its scale subresource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleReview {
    pub namespace: String,
    /// The StatefulSet's name.
    pub name: String,
    /// `spec.replicas` before (`oldObject`) and after (`object`).
    pub before: i32,
    pub after: i32,
}

/// Evaluates a scale review: a warning naming the claims a scale-down leaves behind.
pub fn evaluate_scale(policy: &Policy, review: &ScaleReview, context: &dyn Context) -> Decision {
    let mut decision = Decision::default();
    if policy.is_excluded(&review.namespace) {
        decision.excluded = true;
        return decision;
    }
    let rule = SCALE_RULES[0];
    // The scale subresource never denies: its finding is advisory.
    let Some(level) = super::level_of(policy.mode(rule), true) else {
        return decision;
    };
    let (name, before, after) = (review.name.as_str(), review.before, review.after);
    if after >= before {
        return decision;
    }
    let set = context
        .available(ContextKind::StatefulSets)
        .then(|| {
            context
                .statefulsets(&review.namespace)
                .into_iter()
                .find(|s| s.name == name)
        })
        .flatten();
    let message = match set {
        Some(set) if set.deletes_claims_on_scale_down || set.claim_templates.is_empty() => {
            return decision;
        }
        Some(set) => {
            let claims = retained_claims(
                name,
                &set.claim_templates,
                set.ordinals_start,
                before,
                after,
            );
            retained_claims_message(before, after, &claims)
        }
        None => format!(
            "scaling StatefulSet \"{name}\" {before}->{after} keeps the claims of the removed \
             pods unless its persistentVolumeClaimRetentionPolicy.whenScaled is Delete; \
             `stateward gc -n {}` lists them",
            review.namespace
        ),
    };
    decision.findings.push(Finding {
        rule,
        mode: level,
        field: "spec.replicas".into(),
        message,
    });
    decision
}

#[cfg(test)]
mod tests {
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
