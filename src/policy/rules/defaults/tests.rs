use serde_json::{Value, json};

use crate::policy::decision::Level;
use crate::policy::rules::RuleId as R;
use crate::policy::testkit::{Obj, evaluate, full_context, pod, sts};
use crate::policy::{Decision, Kind, Policy, Resource, Review};

fn run(policy: &Policy, obj: &Value, kind: Kind) -> Decision {
    let resource = Resource::decode(kind, obj).expect("decodes");
    evaluate(policy, &Review::create(resource), &full_context())
}

/// Applies the patch to the object as submitted, checks that a second pass changes
/// nothing, and returns the patched object.
fn round_trip(policy: &Policy, obj: &Obj, kind: Kind) -> (Value, Decision) {
    let decision = run(policy, obj.value(), kind);
    let mut patched = obj.value().clone();
    if let Some(patch) = &decision.patch {
        json_patch::patch(&mut patched, patch).expect("patch applies to the original");
    }
    let second = run(policy, &patched, kind);
    assert_eq!(second.patch, None, "second pass must be empty");
    assert!(second.findings.iter().all(|f| f.mode != Level::Mutate));
    (patched, decision)
}

fn mutated(decision: &Decision) -> Vec<R> {
    decision
        .findings
        .iter()
        .filter(|f| f.mode == Level::Mutate)
        .map(|f| f.rule)
        .collect()
}

const POD: &str = "/spec/template/spec";

#[test]
fn defaults_are_added_when_absent_and_round_trip() {
    let bare = sts("web")
        .remove("/spec/podManagementPolicy")
        .remove("/spec/updateStrategy")
        .remove(&format!("{POD}/affinity"));
    let (patched, decision) = round_trip(&Policy::default(), &bare, Kind::StatefulSet);
    assert_eq!(
        mutated(&decision),
        vec![
            R::StatefulSetDefaultPodManagementPolicy,
            R::StatefulSetDefaultUpdateStrategy,
            R::StatefulSetDefaultAntiAffinity
        ]
    );
    assert_eq!(patched["spec"]["podManagementPolicy"], "OrderedReady");
    assert_eq!(
        patched["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    );
    assert_eq!(
        patched["spec"]["template"]["spec"]["affinity"],
        json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100,
            "podAffinityTerm": {
                "labelSelector": {"matchLabels": {"app": "web"}},
                "topologyKey": "kubernetes.io/hostname"
            }
        }]}})
    );
    // Everything else is untouched.
    let mut expected = patched.clone();
    expected["spec"].as_object_mut().map(|s| {
        s.remove("podManagementPolicy");
        s.remove("updateStrategy")
    });
    expected["spec"]["template"]["spec"]
        .as_object_mut()
        .map(|s| s.remove("affinity"));
    assert_eq!(&expected, bare.value());
}

#[test]
fn user_values_and_arrays_are_never_replaced() {
    let chosen = sts("web")
        .set("/spec/podManagementPolicy", json!("Parallel"))
        .set("/spec/updateStrategy", json!({"type": "OnDelete"}))
        .set(
            &format!("{POD}/affinity/podAntiAffinity"),
            json!({"requiredDuringSchedulingIgnoredDuringExecution": []}),
        );
    let (patched, decision) = round_trip(&Policy::default(), &chosen, Kind::StatefulSet);
    assert_eq!(decision.patch, None);
    assert_eq!(&patched, chosen.value());
    // Node affinity is kept when anti-affinity is added beside it.
    let node = sts("web").set(
        &format!("{POD}/affinity"),
        json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]
        }}}),
    );
    let (patched, _) = round_trip(&Policy::default(), &node, Kind::StatefulSet);
    let affinity = &patched["spec"]["template"]["spec"]["affinity"];
    assert!(affinity.get("nodeAffinity").is_some() && affinity.get("podAntiAffinity").is_some());
    // A hostname topology spread counts as spreading: no anti-affinity added.
    let spread = sts("web").remove(&format!("{POD}/affinity")).set(
        &format!("{POD}/topologySpreadConstraints"),
        json!([{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule"}]),
    );
    let (_, decision) = round_trip(&Policy::default(), &spread, Kind::StatefulSet);
    assert!(!mutated(&decision).contains(&R::StatefulSetDefaultAntiAffinity));
}

fn policy(mutations: &str) -> Policy {
    Policy::from_yaml(
        &format!("apiVersion: stateward.io/v1alpha1\nkind: Policy\nmetadata: {{name: t}}\nspec:\n  mutations:\n{mutations}"),
        "t",
    )
    .expect("policy")
}

#[test]
fn server_defaulted_fields_change_only_without_a_user_choice() {
    let parallel = policy("    statefulset.default-pod-management-policy: {value: Parallel}\n");
    // As kube-apiserver hands it over: defaulted to OrderedReady.
    let defaulted = sts("web");
    // No signal: leave it.
    let (_, d) = round_trip(&parallel, &defaulted, Kind::StatefulSet);
    assert_eq!(d.patch, None);
    // Server-side apply that did not set the field: replace.
    let ssa = defaulted.clone().set(
        "/metadata/managedFields",
        json!([{"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1",
                "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]),
    );
    let (patched, _) = round_trip(&parallel, &ssa, Kind::StatefulSet);
    assert_eq!(patched["spec"]["podManagementPolicy"], "Parallel");
    // Server-side apply that set it: keep.
    let chosen = defaulted.clone().set(
        "/metadata/managedFields",
        json!([{"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1",
                "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:podManagementPolicy": {}}}}]),
    );
    assert_eq!(
        round_trip(&parallel, &chosen, Kind::StatefulSet).1.patch,
        None
    );
    // Client-side apply: the last-applied annotation decides.
    let last_applied = |spec: Value| {
        defaulted.clone().set(
            "/metadata/annotations",
            json!({"kubectl.kubernetes.io/last-applied-configuration": json!({"spec": spec}).to_string()}),
        )
    };
    let (patched, _) = round_trip(
        &parallel,
        &last_applied(json!({"replicas": 3})),
        Kind::StatefulSet,
    );
    assert_eq!(patched["spec"]["podManagementPolicy"], "Parallel");
    let kept = last_applied(json!({"podManagementPolicy": "OrderedReady"}));
    assert_eq!(
        round_trip(&parallel, &kept, Kind::StatefulSet).1.patch,
        None
    );
}

#[test]
fn claim_retention_is_off_by_default_and_applies_when_enabled() {
    let (_, d) = round_trip(&Policy::default(), &sts("web"), Kind::StatefulSet);
    assert!(!mutated(&d).contains(&R::StatefulSetDefaultClaimRetention));
    let on = policy("    statefulset.default-claim-retention: {enabled: true}\n");
    let (patched, _) = round_trip(&on, &sts("web"), Kind::StatefulSet);
    assert_eq!(
        patched["spec"]["persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Retain", "whenScaled": "Delete"})
    );
    let user = sts("web").set(
        "/spec/persistentVolumeClaimRetentionPolicy",
        json!({"whenScaled": "Retain"}),
    );
    let (patched, _) = round_trip(&on, &user, Kind::StatefulSet);
    assert_eq!(
        patched["spec"]["persistentVolumeClaimRetentionPolicy"],
        json!({"whenScaled": "Retain", "whenDeleted": "Retain"})
    );
}

#[test]
fn pod_identity_labels_escape_slashes_and_keep_controller_values() {
    let aliases =
        policy("    pod.identity-labels: {aliasLabels: [instance, example.com/member]}\n");
    let p = pod("web", 2);
    let (patched, decision) = round_trip(&aliases, &p, Kind::Pod);
    assert_eq!(
        patched["metadata"]["labels"],
        json!({
            "app": "web",
            "statefulset.kubernetes.io/pod-name": "web-2",
            "apps.kubernetes.io/pod-index": "2",
            "instance": "web-2",
            "example.com/member": "web-2"
        })
    );
    let text = serde_json::to_string(&decision.patch).expect("patch");
    assert!(
        text.contains("statefulset.kubernetes.io~1pod-name"),
        "{text}"
    );
    // Values the controller set are never changed.
    let set = pod("web", 2).set(
        "/metadata/labels",
        json!({"statefulset.kubernetes.io/pod-name": "web-2", "apps.kubernetes.io/pod-index": "2"}),
    );
    let (patched, _) = round_trip(&Policy::default(), &set, Kind::Pod);
    assert_eq!(&patched, set.value());
    // Pods without a StatefulSet controller are untouched.
    let unowned = pod("web", 2).remove("/metadata/ownerReferences");
    assert_eq!(round_trip(&aliases, &unowned, Kind::Pod).1.patch, None);
}

#[test]
fn mutations_run_on_create_only() {
    let bare = sts("web").remove("/spec/podManagementPolicy");
    let review = Review::update(bare.resource(), bare.resource());
    let d = evaluate(&Policy::default(), &review, &full_context());
    assert_eq!(d.patch, None);
}
