use serde_json::json;

use crate::policy::context::NoContext;
use crate::policy::decision::Level::{Audit, Enforce, Warn};
use crate::policy::rules::RuleId as R;
use crate::policy::testkit::{create, evaluate, full_context, messages, of, sts, svc};
use crate::policy::{Policy, Review, StaticContext};

const POD: &str = "/spec/template/spec";

#[test]
fn name_length() {
    let long = "a".repeat(53);
    let d = create(&sts(&long));
    assert_eq!(
        of(&d, R::StatefulSetNameLength),
        vec![(Enforce, "metadata.name".into())]
    );
    assert!(messages(&d, R::StatefulSetNameLength)[0].contains("is 53 characters"));
    assert!(of(&create(&sts(&"a".repeat(52))), R::StatefulSetNameLength).is_empty());
    // The pod name check is at its boundary with the largest ordinal an i32 allows:
    // a 52-character name plus "-2000000002" is exactly 63 characters.
    let d = create(&sts(&"a".repeat(52)).set("/spec/ordinals/start", json!(2_000_000_000)));
    assert!(of(&d, R::StatefulSetNameLength).is_empty());
}

#[test]
fn service_name() {
    let d = create(&sts("web").set("/spec/serviceName", json!("Web_Svc")));
    assert_eq!(
        of(&d, R::StatefulSetServiceName),
        vec![(Enforce, "spec.serviceName".into())]
    );
    let d = create(&sts("web").remove("/spec/serviceName"));
    assert_eq!(
        of(&d, R::StatefulSetServiceName),
        vec![(Warn, "spec.serviceName".into())]
    );
    assert!(of(&create(&sts("web")), R::StatefulSetServiceName).is_empty());
}

#[test]
fn headless_service_cases() {
    let review = Review::create(sts("web").resource());
    let check = |ctx: &StaticContext, policy: &Policy| {
        of(
            &evaluate(policy, &review, ctx),
            R::StatefulSetHeadlessService,
        )
    };
    let baseline = Policy::default();
    let strict = Policy::from_yaml(include_str!("../../../../policies/strict.yaml"), "strict")
        .expect("strict");
    // Missing Service: a warning even under strict.
    assert_eq!(
        check(&StaticContext::default(), &strict),
        vec![(Warn, "spec.serviceName".into())]
    );
    // Not headless: warn in baseline, enforce in strict.
    let mut ctx = StaticContext::default();
    let Ok(crate::policy::Resource::Service(s)) = crate::policy::Resource::decode(
        crate::policy::Kind::Service,
        svc("web-headless")
            .set("/spec/clusterIP", json!("10.0.0.1"))
            .value(),
    ) else {
        panic!()
    };
    ctx.add_service(crate::policy::context::ServiceInfo::from_service(
        &s, "default",
    ));
    assert_eq!(
        check(&ctx, &baseline),
        vec![(Warn, "spec.serviceName".into())]
    );
    assert_eq!(
        check(&ctx, &strict),
        vec![(Enforce, "spec.serviceName".into())]
    );
    // Good Service: nothing. Unavailable context: a warning.
    assert!(check(&full_context(), &strict).is_empty());
    let d = evaluate(&strict, &review, &NoContext);
    assert_eq!(
        of(&d, R::StatefulSetHeadlessService),
        vec![(Warn, "spec.serviceName".into())]
    );
    assert!(messages(&d, R::StatefulSetHeadlessService)[0].contains("context is unavailable"));
}

#[test]
fn selector_matches_template() {
    let d = create(&sts("web").set("/spec/template/metadata/labels", json!({"app": "other"})));
    assert_eq!(
        of(&d, R::StatefulSetSelectorMatchesTemplate),
        vec![(Enforce, "spec.selector".into())]
    );
    let d = create(&sts("web").set("/spec/selector", json!({})));
    assert!(messages(&d, R::StatefulSetSelectorMatchesTemplate)[0].contains("empty"));
    let d = create(&sts("web").set(
        "/spec/selector",
        json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "x"]}]}),
    ));
    assert!(of(&d, R::StatefulSetSelectorMatchesTemplate).is_empty());
}

#[test]
fn claim_templates_mounted() {
    let d = create(&sts("web").remove(&format!("{POD}/containers/0/volumeMounts")));
    assert_eq!(
        of(&d, R::StatefulSetClaimTemplatesMounted),
        vec![(Enforce, "spec.volumeClaimTemplates[0].metadata.name".into())]
    );
    let d = create(&sts("web").set(
        &format!("{POD}/containers/0/volumeMounts"),
        json!([
            {"name": "data", "mountPath": "/data"}, {"name": "cache", "mountPath": "/cache"}
        ]),
    ));
    assert_eq!(
        of(&d, R::StatefulSetClaimTemplatesMounted),
        vec![(
            Enforce,
            "spec.template.spec.containers[0].volumeMounts[1].name".into()
        )]
    );
    // A pod volume resolves the mount; an init container may mount the claim.
    let d = create(&sts("web").set(&format!("{POD}/volumes"), json!([{"name": "cache", "emptyDir": {}}]))
        .set(&format!("{POD}/containers/0/volumeMounts"), json!([{"name": "cache", "mountPath": "/c"}]))
        .set(&format!("{POD}/initContainers"), json!([{"name": "init", "image": "x", "volumeMounts": [{"name": "data", "mountPath": "/d"}],
            "resources": {"requests": {"cpu": "1m", "memory": "1Mi"}}, "securityContext": {"allowPrivilegeEscalation": false}}])));
    assert!(of(&d, R::StatefulSetClaimTemplatesMounted).is_empty());
}

#[test]
fn block_claim_templates_are_used_through_volume_devices() {
    let block = sts("web")
        .set(
            "/spec/volumeClaimTemplates/0/spec/volumeMode",
            json!("Block"),
        )
        .remove(&format!("{POD}/containers/0/volumeMounts"))
        .set(
            &format!("{POD}/containers/0/volumeDevices"),
            json!([{"name": "data", "devicePath": "/dev/xvda"}]),
        );
    assert!(of(&create(&block), R::StatefulSetClaimTemplatesMounted).is_empty());
    // A device must resolve like a mount.
    let d = create(&block.clone().set(
        &format!("{POD}/containers/0/volumeDevices/0/name"),
        json!("dta"),
    ));
    let found = of(&d, R::StatefulSetClaimTemplatesMounted);
    assert!(
        found.contains(&(
            Enforce,
            "spec.template.spec.containers[0].volumeDevices[0].name".into()
        )),
        "{found:?}"
    );
    // An unused Block template says how it would be used.
    let unused = block.remove(&format!("{POD}/containers/0/volumeDevices"));
    let d = create(&unused);
    assert!(
        messages(&d, R::StatefulSetClaimTemplatesMounted)[0].contains("a volumeDevice named"),
        "{:?}",
        messages(&d, R::StatefulSetClaimTemplatesMounted)
    );
}

#[test]
fn claim_template_storage() {
    let base = "/spec/volumeClaimTemplates/0/spec";
    let d = create(
        &sts("web")
            .remove(&format!("{base}/resources"))
            .remove(&format!("{base}/accessModes")),
    );
    assert_eq!(
        of(&d, R::StatefulSetClaimTemplateStorage),
        vec![
            (
                Enforce,
                "spec.volumeClaimTemplates[0].spec.resources.requests.storage".into()
            ),
            (
                Enforce,
                "spec.volumeClaimTemplates[0].spec.accessModes".into()
            )
        ]
    );
    let d = create(&sts("web").remove(&format!("{base}/storageClassName")));
    assert_eq!(
        of(&d, R::StatefulSetClaimTemplateStorage),
        vec![(
            Warn,
            "spec.volumeClaimTemplates[0].spec.storageClassName".into()
        )]
    );
    // The legacy annotation counts as a class.
    let d = create(&sts("web").remove(&format!("{base}/storageClassName")).set(
        "/spec/volumeClaimTemplates/0/metadata/annotations",
        json!({"volume.beta.kubernetes.io/storage-class": "standard"}),
    ));
    assert!(of(&d, R::StatefulSetClaimTemplateStorage).is_empty());
    let policy = Policy::from_yaml(
        "apiVersion: stateward.io/v1alpha1\nkind: Policy\nmetadata: {name: t}\nspec:\n  rules:\n    statefulset.claim-template-storage: {allowedStorageClasses: [fast]}\n",
        "t",
    ).expect("policy");
    let d = evaluate(
        &policy,
        &Review::create(sts("web").resource()),
        &full_context(),
    );
    assert_eq!(of(&d, R::StatefulSetClaimTemplateStorage)[0].0, Enforce);
    assert!(messages(&d, R::StatefulSetClaimTemplateStorage)[0].contains("use one of: fast"));
}

#[test]
fn claim_template_access_mode() {
    let d = create(&sts("web").set(
        "/spec/volumeClaimTemplates/0/spec/accessModes",
        json!(["ReadWriteMany"]),
    ));
    assert_eq!(
        of(&d, R::StatefulSetClaimTemplateAccessMode),
        vec![(
            Warn,
            "spec.volumeClaimTemplates[0].spec.accessModes[0]".into()
        )]
    );
    let d = create(&sts("web").set(
        "/spec/volumeClaimTemplates/0/spec/accessModes",
        json!(["ReadWriteOncePod"]),
    ));
    assert!(of(&d, R::StatefulSetClaimTemplateAccessMode).is_empty());
}

#[test]
fn termination_grace_period() {
    let field = "spec.template.spec.terminationGracePeriodSeconds";
    let d = create(&sts("web").set(&format!("{POD}/terminationGracePeriodSeconds"), json!(0)));
    assert_eq!(
        of(&d, R::StatefulSetTerminationGracePeriod),
        vec![(Enforce, field.into())]
    );
    assert!(
        of(
            &create(&sts("web").remove(&format!("{POD}/terminationGracePeriodSeconds"))),
            R::StatefulSetTerminationGracePeriod
        )
        .is_empty()
    );
    let policy = Policy::from_yaml(
        "apiVersion: stateward.io/v1alpha1\nkind: Policy\nmetadata: {name: t}\nspec:\n  rules:\n    statefulset.termination-grace-period: {minSeconds: 60, maxSeconds: 600}\n",
        "t",
    ).expect("policy");
    let run = |obj: crate::policy::testkit::Obj| {
        messages(
            &evaluate(&policy, &Review::create(obj.resource()), &full_context()),
            R::StatefulSetTerminationGracePeriod,
        )
    };
    assert!(run(sts("web"))[0].contains("at least 60"));
    assert!(
        run(sts("web").remove(&format!("{POD}/terminationGracePeriodSeconds")))[0]
            .contains("unset (defaults to 30)")
    );
    assert!(
        run(sts("web").set(&format!("{POD}/terminationGracePeriodSeconds"), json!(900)))[0]
            .contains("at most 600")
    );
    assert!(
        run(sts("web").set(&format!("{POD}/terminationGracePeriodSeconds"), json!(120))).is_empty()
    );
}

#[test]
fn readiness_probe() {
    let d = create(&sts("web").without_probe());
    assert_eq!(
        of(&d, R::StatefulSetReadinessProbe),
        vec![(
            Warn,
            "spec.template.spec.containers[0].readinessProbe".into()
        )]
    );
    let same = json!({"httpGet": {"path": "/healthz", "port": 8080}});
    let d = create(&sts("web").set(&format!("{POD}/containers/0/readinessProbe"), same));
    assert_eq!(
        of(&d, R::StatefulSetReadinessProbe),
        vec![(
            Warn,
            "spec.template.spec.containers[0].livenessProbe".into()
        )]
    );
}

#[test]
fn resources() {
    let d = create(&sts("web").set(
        &format!("{POD}/containers/0/resources"),
        json!({"requests": {"cpu": "1"}}),
    ));
    assert_eq!(
        of(&d, R::StatefulSetResources),
        vec![(
            Warn,
            "spec.template.spec.containers[0].resources.requests".into()
        )]
    );
    assert!(messages(&d, R::StatefulSetResources)[0].contains("requests no memory"));
    let policy = Policy::from_yaml(
        "apiVersion: stateward.io/v1alpha1\nkind: Policy\nmetadata: {name: t}\nspec:\n  rules:\n    statefulset.resources: {requiredLimits: [memory]}\n",
        "t",
    ).expect("policy");
    let d = evaluate(
        &policy,
        &Review::create(sts("web").resource()),
        &full_context(),
    );
    assert_eq!(
        of(&d, R::StatefulSetResources),
        vec![(
            Warn,
            "spec.template.spec.containers[0].resources.limits".into()
        )]
    );
}

#[test]
fn anti_affinity_is_added_by_default_and_checked_without_mutation() {
    let bare = sts("web").remove(&format!("{POD}/affinity"));
    // Baseline adds a default term, so validation of the mutated object is clean.
    assert!(of(&create(&bare), R::StatefulSetAntiAffinity).is_empty());
    let policy = Policy::from_yaml(
        "apiVersion: stateward.io/v1alpha1\nkind: Policy\nmetadata: {name: t}\nspec:\n  mutations:\n    statefulset.default-anti-affinity: {enabled: false}\n",
        "t",
    ).expect("policy");
    let d = evaluate(&policy, &Review::create(bare.resource()), &full_context());
    assert_eq!(
        of(&d, R::StatefulSetAntiAffinity),
        vec![(Warn, "spec.template.spec.affinity.podAntiAffinity".into())]
    );
    let d = evaluate(
        &policy,
        &Review::create(bare.clone().replicas(1).resource()),
        &full_context(),
    );
    assert!(of(&d, R::StatefulSetAntiAffinity).is_empty());
    let spread = bare.set(&format!("{POD}/topologySpreadConstraints"), json!([{
        "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": {"app": "web"}}
    }]));
    let d = evaluate(&policy, &Review::create(spread.resource()), &full_context());
    assert!(of(&d, R::StatefulSetAntiAffinity).is_empty());
}

#[test]
fn anti_affinity_selects_self() {
    let path = format!(
        "{POD}/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution/0/podAffinityTerm/labelSelector"
    );
    let d = create(&sts("web").set(
        &path,
        json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["zk"]}]}),
    ));
    assert_eq!(of(&d, R::StatefulSetAntiAffinitySelectsSelf).len(), 1);
    assert_eq!(of(&d, R::StatefulSetAntiAffinitySelectsSelf)[0].0, Warn);
    // A second term that keeps the pods away from other workloads is fine beside one
    // that selects the set itself.
    let d = create(&sts("web").set(
        &format!("{POD}/affinity/podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution"),
        json!([{"labelSelector": {"matchLabels": {"app": "other"}}, "topologyKey": "kubernetes.io/hostname"}]),
    ));
    assert!(of(&d, R::StatefulSetAntiAffinitySelectsSelf).is_empty());
}

#[test]
fn update_strategy() {
    let d = create(&sts("web").set("/spec/updateStrategy", json!({"type": "OnDelete"})));
    assert_eq!(
        of(&d, R::StatefulSetUpdateStrategy),
        vec![(Warn, "spec.updateStrategy.type".into())]
    );
    let d = create(&sts("web").set("/spec/updateStrategy/rollingUpdate/partition", json!(4)));
    assert_eq!(
        of(&d, R::StatefulSetUpdateStrategy),
        vec![(Warn, "spec.updateStrategy.rollingUpdate.partition".into())]
    );
    assert!(
        of(
            &create(&sts("web").set("/spec/updateStrategy/rollingUpdate/partition", json!(3))),
            R::StatefulSetUpdateStrategy
        )
        .is_empty()
    );
    let d = create(&sts("web").set(
        "/spec/updateStrategy/rollingUpdate/maxUnavailable",
        json!(2),
    ));
    assert_eq!(
        of(&d, R::StatefulSetUpdateStrategy),
        vec![(
            Warn,
            "spec.updateStrategy.rollingUpdate.maxUnavailable".into()
        )]
    );
    let d = create(
        &sts("web")
            .set(
                "/spec/updateStrategy/rollingUpdate/maxUnavailable",
                json!(2),
            )
            .set("/spec/podManagementPolicy", json!("Parallel")),
    );
    assert!(of(&d, R::StatefulSetUpdateStrategy).is_empty());
}

#[test]
fn security_context() {
    let d = create(
        &sts("web")
            .remove(&format!("{POD}/securityContext"))
            .remove(&format!("{POD}/containers/0/securityContext")),
    );
    assert_eq!(
        of(&d, R::StatefulSetSecurityContext),
        vec![
            (
                Warn,
                "spec.template.spec.containers[0].securityContext.runAsNonRoot".into()
            ),
            (
                Warn,
                "spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation".into()
            )
        ]
    );
    // A container-level runAsNonRoot counts too.
    let d = create(&sts("web").remove(&format!("{POD}/securityContext")).set(
        &format!("{POD}/containers/0/securityContext/runAsNonRoot"),
        json!(true),
    ));
    assert!(of(&d, R::StatefulSetSecurityContext).is_empty());
}

fn update(
    old: &crate::policy::testkit::Obj,
    new: &crate::policy::testkit::Obj,
) -> crate::policy::Decision {
    evaluate(
        &Policy::default(),
        &Review::update(old.resource(), new.resource()),
        &full_context(),
    )
}

#[test]
fn rollout_stuck() {
    let old = sts("web").set("/status", json!({"replicas": 3, "readyReplicas": 1}));
    let new = sts("web").set(&format!("{POD}/containers/0/image"), json!("example/app:2"));
    let d = update(&old, &new);
    assert_eq!(
        of(&d, R::StatefulSetRolloutStuck),
        vec![(Warn, "spec.template".into())]
    );
    assert!(messages(&d, R::StatefulSetRolloutStuck)[0].contains("only 1 of 3 pods are ready"));
    let ready = sts("web").set("/status", json!({"replicas": 3, "readyReplicas": 3}));
    assert!(of(&update(&ready, &new), R::StatefulSetRolloutStuck).is_empty());
    // Parallel pods do not wait for each other.
    let parallel = new
        .clone()
        .set("/spec/podManagementPolicy", json!("Parallel"));
    assert!(of(&update(&old, &parallel), R::StatefulSetRolloutStuck).is_empty());
    // Not on CREATE, and not when only replicas change.
    assert!(of(&create(&new), R::StatefulSetRolloutStuck).is_empty());
    assert!(
        of(
            &update(&old, &sts("web").replicas(4)),
            R::StatefulSetRolloutStuck
        )
        .is_empty()
    );
}

#[test]
fn scale_down_retains_claims() {
    let d = update(&sts("web").replicas(5), &sts("web").replicas(3));
    assert_eq!(
        of(&d, R::StatefulSetScaleDownRetainsClaims),
        vec![(Warn, "spec.replicas".into())]
    );
    let message = &messages(&d, R::StatefulSetScaleDownRetainsClaims)[0];
    assert!(message.contains("data-web-3, data-web-4"), "{message}");
    // ordinals.start shifts the names.
    let d = update(
        &sts("web").replicas(2).set("/spec/ordinals/start", json!(5)),
        &sts("web").replicas(1).set("/spec/ordinals/start", json!(5)),
    );
    assert!(messages(&d, R::StatefulSetScaleDownRetainsClaims)[0].contains("data-web-6"));
    let deleting = sts("web").replicas(3).set(
        "/spec/persistentVolumeClaimRetentionPolicy/whenScaled",
        json!("Delete"),
    );
    assert!(
        of(
            &update(&sts("web").replicas(5), &deleting),
            R::StatefulSetScaleDownRetainsClaims
        )
        .is_empty()
    );
    assert!(
        of(
            &update(&sts("web").replicas(3), &sts("web").replicas(5)),
            R::StatefulSetScaleDownRetainsClaims
        )
        .is_empty()
    );
    let many = update(&sts("web").replicas(10), &sts("web").replicas(0));
    assert!(messages(&many, R::StatefulSetScaleDownRetainsClaims)[0].contains("and 6 more"));
}

#[test]
fn pod_disruption_budget() {
    let review = Review::create(sts("web").resource());
    let d = evaluate(&Policy::default(), &review, &StaticContext::default());
    assert_eq!(
        of(&d, R::StatefulSetPodDisruptionBudget),
        vec![(Audit, "spec.template.metadata.labels".into())]
    );
    assert!(of(&create(&sts("web")), R::StatefulSetPodDisruptionBudget).is_empty());
    let single = Review::create(sts("web").replicas(1).resource());
    assert!(
        of(
            &evaluate(&Policy::default(), &single, &StaticContext::default()),
            R::StatefulSetPodDisruptionBudget
        )
        .is_empty()
    );
}
