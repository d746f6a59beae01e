//! Pod rules: the identity of StatefulSet pods.
use k8s_openapi::api::core::v1::Pod;

use super::{Input, Sink};

/// The controlling StatefulSet's name, when an `apps/v1` StatefulSet controls the pod.
pub(crate) fn controlling_statefulset(pod: &Pod) -> Option<&str> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| {
            r.controller == Some(true) && r.kind == "StatefulSet" && r.api_version == "apps/v1"
        })
        .map(|r| r.name.as_str())
}

pub fn force_delete(input: &Input<'_, Pod>, out: &mut Sink) {
    if input.review.delete_grace_period_seconds != Some(0) {
        return;
    }
    let Some(set) = controlling_statefulset(input.object) else {
        return;
    };
    let params = &input.policy.params;
    let overridden = input
        .object
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(&params.force_delete_override_annotation))
        .is_some_and(|v| v == "true");
    let exempt = params
        .force_delete_exempt_users
        .contains(&input.review.user.username);
    if overridden || exempt {
        return;
    }
    out.violation(
        "options.gracePeriodSeconds",
        format!(
            "force-deleting pod \"{}\" of StatefulSet \"{set}\" (grace period 0) can run two pods \
             with one identity; delete it normally, or, once its node is confirmed down, annotate \
             it {}=true",
            input.review.name, params.force_delete_override_annotation
        ),
    );
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::policy::decision::Level::Enforce;
    use crate::policy::rules::RuleId as R;
    use crate::policy::testkit::{full_context, of, pod};
    use crate::policy::{Policy, Review, evaluate};

    fn delete(
        p: &crate::policy::testkit::Obj,
        grace: Option<i64>,
        user: &str,
    ) -> crate::policy::Decision {
        evaluate(
            &Policy::default(),
            &Review::delete(p.resource(), grace, user),
            &full_context(),
        )
    }

    #[test]
    fn force_delete_of_a_statefulset_pod_is_denied() {
        let d = delete(&pod("web", 0), Some(0), "alice");
        assert_eq!(
            of(&d, R::PodForceDelete),
            vec![(Enforce, "options.gracePeriodSeconds".into())]
        );
        assert!(d.denial_message().unwrap_or_default().contains("web-0"));
    }

    #[test]
    fn normal_deletes_exempt_users_and_the_override_pass() {
        assert!(delete(&pod("web", 0), None, "alice").allowed());
        assert!(delete(&pod("web", 0), Some(30), "alice").allowed());
        assert!(
            delete(
                &pod("web", 0),
                Some(0),
                "system:serviceaccount:kube-system:pod-garbage-collector"
            )
            .allowed()
        );
        let annotated = pod("web", 0).set(
            "/metadata/annotations",
            json!({"stateward.io/allow-force-delete": "true"}),
        );
        assert!(delete(&annotated, Some(0), "alice").allowed());
        let unowned = pod("web", 0).remove("/metadata/ownerReferences");
        assert!(delete(&unowned, Some(0), "alice").allowed());
    }
}
