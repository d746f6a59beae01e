//! Service rules: the headless Services that give StatefulSet pods their identity.
use k8s_openapi::api::core::v1::Service;

use super::{CU, Check, Input, Mode, Rule, RuleId, RuleInfo, Sink, validate};
use crate::policy::context::ContextKind;
use crate::policy::names::split_ordinal;
use crate::policy::review::Kind;
use crate::policy::review::Operation;
use crate::policy::settings::Plain;

const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";

fn selector(svc: &Service) -> Option<&std::collections::BTreeMap<String, String>> {
    svc.spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .filter(|s| !s.is_empty())
}

/// CEL: `obj` is a headless Service (`clusterIP: None`), as [`is_headless`] reads it.
fn cel_headless(obj: &str) -> String {
    format!("{obj} != null && has({obj}.spec.clusterIP) && {obj}.spec.clusterIP == 'None'")
}

/// A StatefulSet's governing Service is headless (`statefulset.headless-service` checks
/// it): only those get pod DNS records.
fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

fn sent_headless_in_use(_: &Plain) -> String {
    cel_headless("oldObject")
}

fn sent_headless_shape(_: &Plain) -> String {
    cel_headless("object")
}

fn sent_pod_name_selector(_: &Plain) -> String {
    format!(
        "object != null && has(object.spec.selector) && {} in object.spec.selector",
        crate::policy::cel::cel_string(POD_NAME_LABEL)
    )
}

pub static HEADLESS_IN_USE: Rule<Plain> = Rule::new(RuleInfo {
    id: RuleId::ServiceHeadlessInUse,
    name: "service.headless-in-use",
    kind: Kind::Service,
    operations: &[Operation::Update, Operation::Delete],
    action: validate(Mode::Warn, Check::Service(headless_in_use)),
    skippable: false,
    summary: "deleting (or re-selecting) a headless Service a running StatefulSet names in serviceName (enforce in strict)",
})
.sent_when(sent_headless_in_use)
.not_native("it reads the cluster's StatefulSets: which running set names this Service");

pub fn headless_in_use(input: &Input<'_, Service>, out: &mut Sink) {
    let deleting = input.review.operation == Operation::Delete;
    // On DELETE the object under review is the old one.
    if !is_headless(input.old.unwrap_or(input.object)) {
        return;
    }
    if !deleting {
        let old_selector = input.old.and_then(selector);
        if input.old.is_none() || old_selector == selector(input.object) {
            return;
        }
    }
    let name = input.review.name.as_str();
    let field = if deleting {
        "metadata.name"
    } else {
        "spec.selector"
    };
    if !input.context.available(ContextKind::StatefulSets) {
        out.advisory(
            field,
            format!(
                "cannot tell whether a StatefulSet uses Service \"{name}\": cluster context is \
                 unavailable"
            ),
        );
        return;
    }
    let users: Vec<String> = input
        .context
        .statefulsets(input.namespace())
        .iter()
        .filter(|s| s.replicas > 0 && s.service_name.as_deref() == Some(name))
        .map(|s| s.name.clone())
        .collect();
    if users.is_empty() {
        return;
    }
    let users = users.join(", ");
    if deleting {
        out.violation(
            field,
            format!(
                "Service \"{name}\" is the serviceName of running StatefulSet(s) {users}: without it \
                 their pods lose their DNS names until it is re-created; to remove the whole \
                 application, delete the StatefulSet(s) first (or scale them to 0), then the \
                 Service"
            ),
        );
    } else {
        out.advisory(
            field,
            format!(
                "changing the selector of Service \"{name}\" changes the DNS records of \
                 StatefulSet(s) {users}; make sure it still selects their pods"
            ),
        );
    }
}

pub static HEADLESS_SHAPE: Rule<Plain> = Rule::new(RuleInfo {
    id: RuleId::ServiceHeadlessShape,
    name: "service.headless-shape",
    kind: Kind::Service,
    operations: CU,
    action: validate(Mode::Warn, Check::Service(headless_shape)),
    skippable: true,
    summary: "a headless Service of a StatefulSet has a selector and named ports",
})
.sent_when(sent_headless_shape)
.not_native("it reads the cluster's StatefulSets: only a Service a set names is in scope");

pub fn headless_shape(input: &Input<'_, Service>, out: &mut Sink) {
    let Some(spec) = input.object.spec.as_ref() else {
        return;
    };
    if !is_headless(input.object) {
        return;
    }
    let name = input.review.name.as_str();
    let mut problems: Vec<(String, String)> = Vec::new();
    if selector(input.object).is_none() {
        problems.push((
            "spec.selector".into(),
            format!(
                "headless Service \"{name}\" has no selector: pod DNS records then depend on \
                 hand-made Endpoints; select the StatefulSet's pods"
            ),
        ));
    }
    for (i, port) in spec.ports.iter().flatten().enumerate() {
        if port.name.as_deref().is_none_or(str::is_empty) {
            problems.push((
                format!("spec.ports[{i}].name"),
                format!(
                    "port {} of headless Service \"{name}\" has no name: DNS SRV records exist \
                     only for named ports; name it",
                    port.port
                ),
            ));
        }
    }
    if problems.is_empty() {
        return;
    }
    // Only a Service that a StatefulSet names in serviceName is in scope.
    let used = if input.context.available(ContextKind::StatefulSets) {
        Some(
            input
                .context
                .statefulsets(input.namespace())
                .iter()
                .any(|s| s.service_name.as_deref() == Some(name)),
        )
    } else {
        None
    };
    for (field, message) in problems {
        match used {
            Some(true) => out.violation(field, message),
            Some(false) => {}
            None => out.advisory(
                field,
                format!("{message} (cluster context is unavailable: if a StatefulSet uses it)"),
            ),
        }
    }
}

pub static POD_NAME_SELECTOR: Rule<Plain> = Rule::new(RuleInfo {
    id: RuleId::ServicePodNameSelector,
    name: "service.pod-name-selector",
    kind: Kind::Service,
    operations: CU,
    action: validate(Mode::Warn, Check::Service(pod_name_selector)),
    skippable: true,
    summary: "a per-pod Service selects a pod-name whose ordinal exists",
})
.sent_when(sent_pod_name_selector)
.not_native("it reads the cluster's StatefulSets: whether the selected ordinal exists");

pub fn pod_name_selector(input: &Input<'_, Service>, out: &mut Sink) {
    let Some(pod_name) = selector(input.object).and_then(|s| s.get(POD_NAME_LABEL)) else {
        return;
    };
    let field = format!("spec.selector[{POD_NAME_LABEL}]");
    let Some((set_name, ordinal)) = split_ordinal(pod_name) else {
        out.violation(
            field,
            format!(
                "selects pod-name \"{pod_name}\", which is not of the form <statefulset>-<ordinal>"
            ),
        );
        return;
    };
    if !input.context.available(ContextKind::StatefulSets) {
        out.advisory(
            field,
            format!("cannot check that pod \"{pod_name}\" exists: cluster context is unavailable"),
        );
        return;
    }
    let sets = input.context.statefulsets(input.namespace());
    let Some(set) = sets.iter().find(|s| s.name == set_name) else {
        out.advisory(
            field,
            format!(
                "selects pod \"{pod_name}\" but StatefulSet \"{set_name}\" does not exist in \
                 namespace \"{}\" (yet)",
                input.namespace()
            ),
        );
        return;
    };
    let start = i64::from(set.ordinals_start);
    let end = start + i64::from(set.replicas.max(0));
    if !(start..end).contains(&ordinal) {
        let range = if end > start {
            format!("{set_name}-{start} to {set_name}-{}", end - 1)
        } else {
            "none (0 replicas)".to_owned()
        };
        out.violation(
            field,
            format!(
                "selects pod \"{pod_name}\", but StatefulSet \"{set_name}\" has {} replicas (pods: \
                 {range}): the Service has no endpoint; fix the ordinal or scale the set",
                set.replicas
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::policy::decision::Level::{Enforce, Warn};
    use crate::policy::rules::RuleId as R;
    use crate::policy::testkit::{evaluate, full_context, messages, of, sts, svc, with_set};
    use crate::policy::{NoContext, Policy, Review, StaticContext};

    #[test]
    fn deleting_a_service_in_use_warns_in_baseline_and_is_denied_in_strict() {
        let ctx = with_set(full_context(), &sts("web"));
        let review = Review::delete(svc("web-headless").resource(), None, "alice");
        // Baseline: helm uninstall and kubectl delete -f remove Services before sets.
        let d = evaluate(&Policy::default(), &review, &ctx);
        assert_eq!(
            of(&d, R::ServiceHeadlessInUse),
            vec![(Warn, "metadata.name".into())]
        );
        assert!(d.allowed());
        let message = &messages(&d, R::ServiceHeadlessInUse)[0];
        assert!(message.contains("running StatefulSet(s) web"), "{message}");
        assert!(
            message.contains("delete the StatefulSet(s) first"),
            "{message}"
        );
        let strict = Policy::from_yaml(include_str!("../../../policies/strict.yaml"), "strict")
            .expect("strict policy parses");
        let d = evaluate(&strict, &review, &ctx);
        assert_eq!(
            of(&d, R::ServiceHeadlessInUse),
            vec![(Enforce, "metadata.name".into())]
        );
        assert!(!d.allowed());
        // Scaled to zero: nothing to say.
        let ctx = with_set(full_context(), &sts("web").replicas(0));
        assert!(of(&evaluate(&strict, &review, &ctx), R::ServiceHeadlessInUse).is_empty());
        // Another Service: allowed.
        let other = Review::delete(svc("other").resource(), None, "alice");
        let ctx = with_set(full_context(), &sts("web"));
        assert!(
            of(
                &evaluate(&Policy::default(), &other, &ctx),
                R::ServiceHeadlessInUse
            )
            .is_empty()
        );
        // No context: a warning, never a denial.
        let d = evaluate(&Policy::default(), &review, &NoContext);
        assert_eq!(
            of(&d, R::ServiceHeadlessInUse),
            vec![(Warn, "metadata.name".into())]
        );
        assert!(d.allowed());
    }

    #[test]
    fn changing_the_selector_of_a_service_in_use_warns() {
        let ctx = with_set(full_context(), &sts("web"));
        let old = svc("web-headless");
        let new = svc("web-headless").set("/spec/selector", json!({"app": "other"}));
        let d = evaluate(
            &Policy::default(),
            &Review::update(old.resource(), new.resource()),
            &ctx,
        );
        assert_eq!(
            of(&d, R::ServiceHeadlessInUse),
            vec![(Warn, "spec.selector".into())]
        );
        let same = Review::update(old.resource(), old.resource());
        assert!(
            of(
                &evaluate(&Policy::default(), &same, &ctx),
                R::ServiceHeadlessInUse
            )
            .is_empty()
        );
    }

    #[test]
    fn headless_shape() {
        let ctx = with_set(StaticContext::default(), &sts("web"));
        let bad = svc("web-headless")
            .remove("/spec/selector")
            .set("/spec/ports/0", json!({"port": 80}));
        let d = evaluate(&Policy::default(), &Review::create(bad.resource()), &ctx);
        assert_eq!(
            of(&d, R::ServiceHeadlessShape),
            vec![
                (Warn, "spec.selector".into()),
                (Warn, "spec.ports[0].name".into())
            ]
        );
        // Not named by any StatefulSet: out of scope.
        let unused = bad.clone().set("/metadata/name", json!("unused"));
        let review = Review::create(unused.resource());
        assert!(
            of(
                &evaluate(&Policy::default(), &review, &ctx),
                R::ServiceHeadlessShape
            )
            .is_empty()
        );
        // A ClusterIP Service is out of scope.
        let cluster_ip = bad.set("/spec/clusterIP", json!("10.0.0.3"));
        assert!(
            of(
                &evaluate(
                    &Policy::default(),
                    &Review::create(cluster_ip.resource()),
                    &ctx
                ),
                R::ServiceHeadlessShape
            )
            .is_empty()
        );
    }

    #[test]
    fn pod_name_selector() {
        let ctx = with_set(StaticContext::default(), &sts("web"));
        let per_pod = |n: &str| {
            svc("web-x").set("/spec/clusterIP", json!("10.0.0.9")).set(
                "/spec/selector",
                json!({"statefulset.kubernetes.io/pod-name": n}),
            )
        };
        let run = |n: &str, ctx: &dyn crate::policy::Context| {
            let d = evaluate(
                &Policy::default(),
                &Review::create(per_pod(n).resource()),
                ctx,
            );
            (
                of(&d, R::ServicePodNameSelector),
                messages(&d, R::ServicePodNameSelector),
            )
        };
        assert!(run("web-2", &ctx).0.is_empty());
        let (found, text) = run("web-3", &ctx);
        assert_eq!(
            found,
            vec![(
                Warn,
                "spec.selector[statefulset.kubernetes.io/pod-name]".into()
            )]
        );
        assert!(text[0].contains("web-0 to web-2"), "{}", text[0]);
        let (found, text) = run("db-0", &ctx);
        assert_eq!(found.len(), 1);
        assert!(text[0].contains("does not exist"));
        assert!(run("web-0", &NoContext).1[0].contains("context is unavailable"));
    }
}
