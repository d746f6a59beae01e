//! Pod rules: the identity of StatefulSet pods, each declared beside its function with its
//! settings type. Pure: no I/O.
use k8s_openapi::api::core::v1::Pod;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{CelCheck, Check, Input, Mode, Rule, RuleId, RuleInfo, Sink, validate};
use crate::policy::review::{Kind, Operation};
use crate::policy::settings::{Invalid, Settings, Switch, check_not_empty};

/// The annotation that allows a force delete by default.
pub const FORCE_DELETE_OVERRIDE: &str = "stateward.io/allow-force-delete";

/// Who may force-delete StatefulSet pods by default: the controllers that clean up after
/// lost nodes.
const DEFAULT_EXEMPT_USERS: [&str; 2] = [
    "system:serviceaccount:kube-system:pod-garbage-collector",
    "system:serviceaccount:kube-system:node-controller",
];

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ForceDeleteRule {
    /// enforce: deny; warn: allow with a warning; audit: allow, log and count; off: not
    /// evaluated.
    pub mode: Option<Mode>,
    /// Whether an object may skip the rule with the annotation `stateward.io/skip`.
    pub skippable: Option<bool>,
    /// Users who may force-delete StatefulSet pods (default: the pod garbage collector and
    /// the node controller).
    pub exempt_users: Option<Vec<String>>,
    /// Annotation that allows a force delete when set to "true" (default
    /// `stateward.io/allow-force-delete`).
    #[schemars(length(min = 1))]
    pub override_annotation: Option<String>,
}

impl ForceDeleteRule {
    pub fn override_annotation(&self) -> &str {
        self.override_annotation
            .as_deref()
            .unwrap_or(FORCE_DELETE_OVERRIDE)
    }

    pub fn is_exempt(&self, username: &str) -> bool {
        match &self.exempt_users {
            Some(users) => users.iter().any(|u| u == username),
            None => DEFAULT_EXEMPT_USERS.contains(&username),
        }
    }
}

/// The catalogue's defaults (what `policies/baseline.yaml` shows).
impl Default for ForceDeleteRule {
    fn default() -> Self {
        ForceDeleteRule {
            mode: None,
            skippable: None,
            exempt_users: Some(DEFAULT_EXEMPT_USERS.map(String::from).to_vec()),
            override_annotation: Some(FORCE_DELETE_OVERRIDE.into()),
        }
    }
}

impl Settings for ForceDeleteRule {
    fn take_switch(&mut self) -> Switch {
        Switch::mode(self.mode.take(), self.skippable.take())
    }

    fn check(&self) -> Result<(), Invalid> {
        check_not_empty("overrideAnnotation", self.override_annotation.as_deref())
    }
}

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

/// Pod phases after which no container runs again.
fn terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

pub static FORCE_DELETE: Rule<ForceDeleteRule> = Rule::new(RuleInfo {
    id: RuleId::PodForceDelete,
    name: "pod.force-delete",
    kind: Kind::Pod,
    operations: &[Operation::Delete],
    action: validate(Mode::Enforce, Check::Pod(force_delete)),
    skippable: false,
    summary: "no force delete (grace 0) of a scheduled, running StatefulSet pod, except by its node, exempt users or the override annotation",
})
.sent_when(sent_force_delete)
.native(native_force_delete);

/// Natively: the requests [`sent_force_delete`] keeps are exactly those the rule denies.
fn native_force_delete(settings: &ForceDeleteRule) -> Vec<CelCheck> {
    vec![CelCheck::new(
        "false",
        format!(
            "'force-deleting pod \"' + oldObject.metadata.name + '\" of StatefulSet \"' + \
             oldObject.metadata.ownerReferences.filter(r, r.kind == 'StatefulSet' && has(r.controller) && r.controller)[0].name + \
             '\" on node \"' + oldObject.spec.nodeName + '\" (grace period 0) can run two pods with one \
             identity; delete it normally, or, once the node is confirmed down, annotate it ' + {} + '=true'",
            crate::policy::cel::cel_string(settings.override_annotation())
        ),
    )]
}

/// CEL: the DELETE is one [`force_delete`] can deny: grace period 0 requested, of a pod
/// scheduled to a node and not in a terminal phase, by someone other than that node, an
/// exempt user, and without the override annotation. (The controlling StatefulSet is the
/// pod entry's own condition.) Everything else, among it the kubelet's final DELETE and
/// the API server's grace-0 deletion of unscheduled and finished pods, is never sent.
fn sent_force_delete(settings: &ForceDeleteRule) -> String {
    use crate::policy::cel::{cel_list, cel_string};
    let annotation = cel_string(settings.override_annotation());
    let mut condition = String::from(
        "has(request.options) && has(request.options.gracePeriodSeconds) && \
         request.options.gracePeriodSeconds == 0 && \
         has(oldObject.spec.nodeName) && oldObject.spec.nodeName != '' && \
         !(has(oldObject.status) && has(oldObject.status.phase) && \
         oldObject.status.phase in ['Succeeded', 'Failed']) && \
         !(request.userInfo.username == 'system:node:' + oldObject.spec.nodeName && \
         has(request.userInfo.groups) && 'system:nodes' in request.userInfo.groups)",
    );
    let exempt: Vec<String> = match &settings.exempt_users {
        Some(users) => users.clone(),
        None => DEFAULT_EXEMPT_USERS.map(String::from).to_vec(),
    };
    if !exempt.is_empty() {
        condition.push_str(&format!(
            " && !(request.userInfo.username in {})",
            cel_list(&exempt)
        ));
    }
    condition.push_str(&format!(
        " && !(has(oldObject.metadata.annotations) && {annotation} in oldObject.metadata.annotations && \
         oldObject.metadata.annotations[{annotation}] == 'true')"
    ));
    condition
}

/// A *force* delete skips the kubelet's confirmation that the containers have stopped, so a
/// replacement with the same identity can start while the old pod still runs. Only some
/// grace-0 deletions are that:
/// - the API server itself turns the deletion of a pod that was never scheduled, or that is
///   in a terminal phase, into a grace-0 one before admission (so the StatefulSet
///   controller's scale-down and the garbage collector's cascade arrive with grace 0);
/// - the kubelet finishes every graceful deletion with a grace-0 DELETE, as its node
///   (`system:node:<node>` in group `system:nodes`), once the containers have stopped.
///
/// What is left is a person or a tool removing a scheduled, live pod without waiting.
pub fn force_delete(input: &Input<'_, Pod>, out: &mut Sink) {
    if input.review.delete_grace_period_seconds != Some(0) {
        return;
    }
    let Some(set) = controlling_statefulset(input.object) else {
        return;
    };
    let Some(node) = input
        .object
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
    else {
        return;
    };
    if terminal(input.object) {
        return;
    }
    let user = &input.review.user;
    let is_pods_node = user.username.strip_prefix("system:node:") == Some(node)
        && user.groups.iter().any(|g| g == "system:nodes");
    if is_pods_node {
        return;
    }
    let Some(params) = input.policy.settings(&FORCE_DELETE) else {
        return;
    };
    let overridden = input
        .object
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(params.override_annotation()))
        .is_some_and(|v| v == "true");
    let exempt = params.is_exempt(&user.username);
    if overridden || exempt {
        return;
    }
    out.violation(
        "options.gracePeriodSeconds",
        format!(
            "force-deleting pod \"{}\" of StatefulSet \"{set}\" on node \"{node}\" (grace period 0) \
             can run two pods with one identity; delete it normally, or, once the node is confirmed \
             down, annotate it {}=true",
            input.review.name,
            params.override_annotation()
        ),
    );
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::policy::decision::Level::Enforce;
    use crate::policy::rules::RuleId as R;
    use crate::policy::testkit::{evaluate, full_context, of, pod};
    use crate::policy::{Policy, Review};

    fn delete_as(
        p: &crate::policy::testkit::Obj,
        grace: Option<i64>,
        user: &str,
        groups: &[&str],
    ) -> crate::policy::Decision {
        let mut review = Review::delete(p.resource(), grace, user);
        review.user.groups = groups.iter().map(|g| g.to_string()).collect();
        evaluate(&Policy::default(), &review, &full_context())
    }

    fn delete(
        p: &crate::policy::testkit::Obj,
        grace: Option<i64>,
        user: &str,
    ) -> crate::policy::Decision {
        delete_as(p, grace, user, &["system:authenticated"])
    }

    /// A pod the scheduler placed on node n1 and whose containers run.
    fn running(set: &str, ordinal: u32) -> crate::policy::testkit::Obj {
        pod(set, ordinal)
            .set("/spec/nodeName", json!("n1"))
            .set("/status/phase", json!("Running"))
    }

    #[test]
    fn force_delete_of_a_scheduled_running_statefulset_pod_is_denied() {
        let d = delete(&running("web", 0), Some(0), "alice");
        assert_eq!(
            of(&d, R::PodForceDelete),
            vec![(Enforce, "options.gracePeriodSeconds".into())]
        );
        let message = d.denial_message().unwrap_or_default();
        assert!(
            message.contains("web-0") && message.contains("n1"),
            "{message}"
        );
        // Another node, or a node's name without the nodes group, is not the pod's kubelet.
        assert!(
            !delete_as(
                &running("web", 0),
                Some(0),
                "system:node:n2",
                &["system:nodes"]
            )
            .allowed()
        );
        assert!(!delete(&running("web", 0), Some(0), "system:node:n1").allowed());
        // A Pending pod that is already bound still has a kubelet that may start it.
        let pending = running("web", 0).set("/status/phase", json!("Pending"));
        assert!(!delete(&pending, Some(0), "alice").allowed());
    }

    #[test]
    fn grace_zero_deletions_that_are_not_force_deletes_pass() {
        // Never scheduled: the API server makes every deletion immediate (scale-down, GC).
        assert!(
            delete(
                &pod("web", 2),
                Some(0),
                "system:serviceaccount:kube-system:statefulset-controller"
            )
            .allowed()
        );
        // The kubelet finishing a graceful deletion once the containers stopped.
        assert!(
            delete_as(
                &running("web", 0),
                Some(0),
                "system:node:n1",
                &["system:nodes", "system:authenticated"]
            )
            .allowed()
        );
        // Terminal phases: nothing runs any more.
        for phase in ["Succeeded", "Failed"] {
            let done = running("web", 0).set("/status/phase", json!(phase));
            assert!(delete(&done, Some(0), "alice").allowed(), "{phase}");
        }
    }

    #[test]
    fn normal_deletes_exempt_users_and_the_override_pass() {
        assert!(delete(&running("web", 0), None, "alice").allowed());
        assert!(delete(&running("web", 0), Some(30), "alice").allowed());
        assert!(
            delete(
                &running("web", 0),
                Some(0),
                "system:serviceaccount:kube-system:pod-garbage-collector"
            )
            .allowed()
        );
        let annotated = running("web", 0).set(
            "/metadata/annotations",
            json!({"stateward.io/allow-force-delete": "true"}),
        );
        assert!(delete(&annotated, Some(0), "alice").allowed());
        let unowned = running("web", 0).remove("/metadata/ownerReferences");
        assert!(delete(&unowned, Some(0), "alice").allowed());
    }
}
