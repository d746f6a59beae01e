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
