//! Service rules: the headless Services that give StatefulSet pods their identity.
use k8s_openapi::api::core::v1::Service;

use super::{Input, Sink};
use crate::policy::context::ContextKind;
use crate::policy::names::split_ordinal;
use crate::policy::review::Operation;

const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";

fn selector(svc: &Service) -> Option<&std::collections::BTreeMap<String, String>> {
    svc.spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .filter(|s| !s.is_empty())
}

pub fn headless_in_use(input: &Input<'_, Service>, out: &mut Sink) {
    let deleting = input.review.operation == Operation::Delete;
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
                "Service \"{name}\" is the serviceName of running StatefulSet(s) {users}: deleting \
                 it breaks their pods' DNS names; scale them to 0 or delete them first"
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

pub fn headless_shape(input: &Input<'_, Service>, out: &mut Sink) {
    let Some(spec) = input.object.spec.as_ref() else {
        return;
    };
    if spec.cluster_ip.as_deref() != Some("None") {
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
