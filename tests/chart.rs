//! The Helm chart rendered by a real `helm` v4 (the helm tier, `STATEWARD_HELM`; CI gets
//! one from `scripts/install-tools.sh`, a test never downloads it): lint, every certificate
//! mode, GC on and off, the Kubernetes version, objects checked against the Kubernetes API
//! types, and the chart checked by stateward. Without the tier every test here is skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or bench may stop on a broken fixture
#[path = "support/tiers.rs"]
mod tiers;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use stateward::commands::check::manifest::{Source, documents};
use stateward::commands::check::{build_report, check_sources};
use stateward::policy::Policy;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The helm binary of the helm tier.
struct Helm(PathBuf);

impl Helm {
    /// `None` (after the tier's one skip line) when `STATEWARD_HELM` is not set.
    fn tier() -> Option<Helm> {
        tiers::helm().map(Helm)
    }

    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(&self.0)
            .args(args)
            .current_dir(root())
            .output()
            .expect("helm runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `helm template` of `chart` for a Kubernetes version (helm's default when `None`).
    fn template(&self, chart: &str, kube_version: Option<&str>, sets: &[&str]) -> String {
        let mut args = vec!["template", "sw", chart, "--namespace", "stateward-system"];
        if let Some(version) = kube_version {
            args.extend(["--kube-version", version]);
        }
        for set in sets {
            args.extend(["--set", set]);
        }
        let (ok, stdout, stderr) = self.run(&args);
        assert!(ok, "helm {args:?} failed: {stderr}");
        stdout
    }

    fn render_text(&self, sets: &[&str]) -> String {
        self.template("charts/stateward", None, sets)
    }

    fn render(&self, sets: &[&str]) -> Vec<Value> {
        parse(self.render_text(sets))
    }

    fn render_for(&self, kube_version: &str, sets: &[&str]) -> Vec<Value> {
        parse(self.template("charts/stateward", Some(kube_version), sets))
    }
}

fn parse(text: String) -> Vec<Value> {
    documents(&Source {
        name: "chart".into(),
        text,
    })
    .into_iter()
    .map(|d| d.value.expect("rendered YAML parses"))
    .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn unknown(input: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                if v.is_null() {
                    continue;
                }
                match b.get(k) {
                    Some(t) => unknown(v, t, &format!("{path}.{k}"), out),
                    None => out.push(format!("{path}.{k}")),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                unknown(x, y, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn typed<T: DeserializeOwned + Serialize>(doc: &Value) {
    let parsed: T = serde_path_to_error::deserialize(doc)
        .unwrap_or_else(|e| panic!("{} {}: {e}", doc["kind"], doc["metadata"]["name"]));
    let back = serde_json::to_value(&parsed).expect("serialise");
    let mut extra = Vec::new();
    unknown(doc, &back, "", &mut extra);
    assert!(
        extra.is_empty(),
        "{} {} has unknown fields {extra:?}",
        doc["kind"],
        doc["metadata"]["name"]
    );
}

/// Every rendered object is valid against the Kubernetes API types (no unknown or
/// mistyped field); CRD objects are checked for their group.
fn validate(docs: &[Value]) {
    use k8s_openapi::api::{
        admissionregistration::v1 as adm, apps::v1 as apps, batch::v1 as batch, core::v1 as core,
    };
    use k8s_openapi::api::{networking::v1 as net, policy::v1 as policy, rbac::v1 as rbac};
    for doc in docs {
        match doc["kind"].as_str().unwrap_or_default() {
            "Deployment" => typed::<apps::Deployment>(doc),
            "Service" => typed::<core::Service>(doc),
            "ServiceAccount" => typed::<core::ServiceAccount>(doc),
            "ConfigMap" => typed::<core::ConfigMap>(doc),
            "Secret" => typed::<core::Secret>(doc),
            "PodDisruptionBudget" => typed::<policy::PodDisruptionBudget>(doc),
            "ClusterRole" => typed::<rbac::ClusterRole>(doc),
            "ClusterRoleBinding" => typed::<rbac::ClusterRoleBinding>(doc),
            "Role" => typed::<rbac::Role>(doc),
            "RoleBinding" => typed::<rbac::RoleBinding>(doc),
            "ValidatingWebhookConfiguration" => typed::<adm::ValidatingWebhookConfiguration>(doc),
            "MutatingWebhookConfiguration" => typed::<adm::MutatingWebhookConfiguration>(doc),
            "NetworkPolicy" => typed::<net::NetworkPolicy>(doc),
            "CronJob" => typed::<batch::CronJob>(doc),
            "CustomResourceDefinition" => typed::<
                k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
            >(doc),
            "Certificate" | "Issuer" => assert_eq!(doc["apiVersion"], "cert-manager.io/v1"),
            "ServiceMonitor" | "PodMonitor" | "PrometheusRule" => {
                assert_eq!(doc["apiVersion"], "monitoring.coreos.com/v1")
            }
            other => panic!("unexpected kind {other} in the chart"),
        }
    }
}

#[test]
fn lint_is_clean_and_the_policy_copy_matches() {
    let Some(helm) = Helm::tier() else { return };
    let (ok, stdout, stderr) = helm.run(&["lint", "--strict", "charts/stateward"]);
    assert!(ok, "{stdout}{stderr}");
    for profile in ["baseline", "strict"] {
        let chart =
            std::fs::read_to_string(root().join(format!("charts/stateward/files/{profile}.yaml")))
                .expect("chart copy");
        let shipped = std::fs::read_to_string(root().join(format!("policies/{profile}.yaml")))
            .expect("policy");
        assert_eq!(
            chart, shipped,
            "charts/stateward/files/{profile}.yaml differs from policies/"
        );
    }
}

fn webhooks(docs: &[Value], kind: &str) -> Vec<Value> {
    find(docs, kind, "sw-stateward")["webhooks"]
        .as_array()
        .expect("webhooks")
        .clone()
}

#[test]
fn helm_generated_certificates_and_webhook_rules() {
    let Some(helm) = Helm::tier() else { return };
    let docs = helm.render(&[]);
    validate(&docs);
    let secret = find(&docs, "Secret", "sw-stateward-tls");
    let ca = secret["data"]["ca.crt"].as_str().expect("ca.crt");
    let validating = webhooks(&docs, "ValidatingWebhookConfiguration");
    let mutating = webhooks(&docs, "MutatingWebhookConfiguration");
    for hook in validating.iter().chain(&mutating) {
        assert_eq!(
            hook["clientConfig"]["caBundle"], ca,
            "caBundle is the generated CA"
        );
        assert_eq!(hook["admissionReviewVersions"], serde_json::json!(["v1"]));
        assert_eq!(hook["sideEffects"], "None");
        assert_eq!(hook["timeoutSeconds"], 5);
        assert_eq!(hook["matchPolicy"], "Equivalent");
        assert_eq!(
            hook["clientConfig"]["service"]["namespace"],
            "stateward-system"
        );
        let excluded = &hook["namespaceSelector"]["matchExpressions"][0];
        assert_eq!(excluded["key"], "kubernetes.io/metadata.name");
        assert_eq!(excluded["operator"], "NotIn");
        let values: Vec<&str> = excluded["values"]
            .as_array()
            .expect("values")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for ns in ["kube-system", "kube-node-lease", "stateward-system"] {
            assert!(values.contains(&ns), "{ns} not excluded: {values:?}");
        }
    }
    // Baseline: fail closed only where an enforce rule is (StatefulSets, force deletes of
    // StatefulSet pods); the scale subresource and the Service rules only warn.
    let policies: Vec<(&str, &str)> = validating
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap_or_default(),
                h["failurePolicy"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        policies,
        [
            ("validate.stateward.io", "Fail"),
            ("validate-scale.stateward.io", "Ignore"),
            ("validate-services.stateward.io", "Ignore"),
            ("validate-pods.stateward.io", "Fail"),
        ]
    );
    assert!(
        validating
            .iter()
            .all(|h| h["clientConfig"]["service"]["path"] == "/validate")
    );
    assert!(mutating.iter().all(
        |h| h["failurePolicy"] == "Ignore" && h["clientConfig"]["service"]["path"] == "/mutate"
    ));
    let rules = |hooks: &[Value]| -> Vec<(String, String)> {
        hooks
            .iter()
            .flat_map(|h| h["rules"].as_array().cloned().unwrap_or_default())
            .flat_map(|r| {
                let ops: Vec<String> = r["operations"]
                    .as_array()
                    .expect("ops")
                    .iter()
                    .filter_map(|o| o.as_str().map(String::from))
                    .collect();
                let res = r["resources"][0].as_str().unwrap_or_default().to_owned();
                ops.into_iter().map(move |o| (res.clone(), o))
            })
            .collect()
    };
    let v = rules(&validating);
    for expected in [
        ("statefulsets", "CREATE"),
        ("statefulsets", "UPDATE"),
        ("statefulsets/scale", "UPDATE"),
        ("services", "CREATE"),
        ("services", "UPDATE"),
        ("services", "DELETE"),
        ("pods", "DELETE"),
    ] {
        assert!(
            v.contains(&(expected.0.into(), expected.1.into())),
            "validating misses {expected:?}"
        );
    }
    assert_eq!(
        rules(&mutating),
        vec![
            ("statefulsets".into(), "CREATE".into()),
            ("pods".into(), "CREATE".into())
        ]
    );
    // Pods are sent only when a StatefulSet controls them.
    let pod_hooks: Vec<&Value> = validating
        .iter()
        .chain(&mutating)
        .filter(|h| h["rules"][0]["resources"][0] == "pods")
        .collect();
    assert_eq!(pod_hooks.len(), 2);
    for hook in pod_hooks {
        let expression = hook["matchConditions"][0]["expression"]
            .as_str()
            .unwrap_or_default();
        assert!(
            expression.contains("ownerReferences") && expression.contains("StatefulSet"),
            "{expression}"
        );
    }
    // Without matchConditions an entry that has them would be sent far more than its rules
    // read: it never fails closed then.
    let without = helm.render(&["webhook.matchConditions=false"]);
    let without = webhooks(&without, "ValidatingWebhookConfiguration");
    assert!(without.iter().all(|h| h.get("matchConditions").is_none()));
    assert!(without.iter().all(|h| h["failurePolicy"]
        == if h["name"] == "validate.stateward.io" {
            "Fail"
        } else {
            "Ignore"
        }));
}

#[test]
fn deployment_practises_what_it_enforces() {
    let Some(helm) = Helm::tier() else { return };
    let docs = helm.render(&[]);
    let deployment = find(&docs, "Deployment", "sw-stateward");
    let spec = &deployment["spec"]["template"]["spec"];
    assert_eq!(deployment["spec"]["replicas"], 3);
    let container = &spec["containers"][0];
    let sc = &container["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert!(
        container["resources"]["requests"]["memory"].is_string()
            && container["resources"]["limits"]["memory"].is_string()
    );
    assert_eq!(
        spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
            ["topologyKey"],
        "kubernetes.io/hostname"
    );
    assert_eq!(
        spec["topologySpreadConstraints"][0]["topologyKey"],
        "kubernetes.io/hostname"
    );
    let args = args_of(container);
    assert!(
        args.contains(&"serve")
            && args.contains(&"--policy=/policy/policy.yaml")
            && args.contains(&"--tls-cert=/tls/tls.crt")
    );
    // Mounted as directories (no subPath), so the kubelet's updates arrive.
    for mount in container["volumeMounts"].as_array().expect("mounts") {
        assert!(mount.get("subPath").is_none(), "{mount}");
    }
    assert_eq!(
        container["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    // The allocator setting the cluster caches' memory figures are measured with.
    assert!(
        container["env"]
            .as_array()
            .is_some_and(|env| env.iter().any(|e| e["name"] == "GLIBC_TUNABLES"
                && e["value"] == "glibc.malloc.mmap_threshold=131072")),
        "{}",
        container["env"]
    );
    let pdb = find(&docs, "PodDisruptionBudget", "sw-stateward");
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    let policy = find(&docs, "ConfigMap", "sw-stateward-policy")["data"]["policy.yaml"]
        .as_str()
        .expect("policy");
    assert!(Policy::from_yaml(policy, "configmap").is_ok_and(|p| p.name == "baseline"));
    let strict = helm.render(&["policy.profile=strict"]);
    let policy = find(&strict, "ConfigMap", "sw-stateward-policy")["data"]["policy.yaml"]
        .as_str()
        .expect("policy");
    assert!(Policy::from_yaml(policy, "configmap").is_ok_and(|p| p.name == "strict"));
}

fn verbs(role: &Value) -> Vec<String> {
    role["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .flat_map(|r| r["verbs"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_str().map(String::from))
        .collect()
}

#[test]
fn rbac_is_least_privilege_and_gc_is_optional() {
    let Some(helm) = Helm::tier() else { return };
    let docs = helm.render(&[]);
    let webhook_role = find(&docs, "ClusterRole", "sw-stateward");
    let webhook_verbs = verbs(webhook_role);
    assert!(
        webhook_verbs
            .iter()
            .all(|v| ["get", "list", "watch"].contains(&v.as_str())),
        "{webhook_verbs:?}"
    );
    assert!(
        !docs
            .iter()
            .any(|d| d["metadata"]["name"] == "sw-stateward-gc"),
        "gc is off by default"
    );

    let with_gc = helm.render(&["gc.enabled=true", "gc.planCronJob.enabled=true"]);
    validate(&with_gc);
    let gc = find(&with_gc, "Deployment", "sw-stateward-gc");
    // Two replicas, one writer (the Lease holder), rolled one at a time.
    assert_eq!(gc["spec"]["replicas"], 2);
    assert_eq!(gc["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(gc["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    let pod = &gc["spec"]["template"]["spec"];
    let args = args_of(&pod["containers"][0]);
    assert_eq!(&args[..3], &["gc", "--watch", "--grace=1h"]);
    for expected in [
        "--leader-elect=true",
        "--lease-name=sw-stateward-gc",
        "--lease-namespace=stateward-system",
        "--lease-duration=15s",
    ] {
        assert!(args.contains(&expected), "{expected} missing from {args:?}");
    }
    let env: Vec<(&str, &str)> = pod["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default(),
                e["valueFrom"]["fieldRef"]["fieldPath"]
                    .as_str()
                    .unwrap_or_default(),
            )
        })
        .collect();
    assert!(env.contains(&("POD_NAME", "metadata.name")), "{env:?}");
    assert!(
        env.contains(&("POD_NAMESPACE", "metadata.namespace")),
        "{env:?}"
    );
    assert_eq!(pod["serviceAccountName"], "sw-stateward-gc");
    let gc_role = find(&with_gc, "ClusterRole", "sw-stateward-gc");
    let pvc_rule = gc_role["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|r| r["resources"][0] == "persistentvolumeclaims")
        .expect("pvc rule");
    assert_eq!(
        pvc_rule["verbs"],
        serde_json::json!(["get", "list", "watch", "patch", "delete"])
    );
    for rule in gc_role["rules"].as_array().expect("rules") {
        let can_create = rule["verbs"]
            .as_array()
            .expect("verbs")
            .iter()
            .any(|v| v == "create");
        assert_eq!(
            can_create,
            rule["resources"][0] == "events",
            "only events are created cluster-wide: {rule}"
        );
    }
    // Leases only in the release namespace; get and update only of its own Lease.
    let lease_role = find(&with_gc, "Role", "sw-stateward-gc-leader-election");
    assert_eq!(lease_role["metadata"]["namespace"], "stateward-system");
    assert_eq!(
        lease_role["rules"],
        serde_json::json!([
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
             "resourceNames": ["sw-stateward-gc"], "verbs": ["get", "update"]}
        ])
    );
    let lease_binding = find(&with_gc, "RoleBinding", "sw-stateward-gc-leader-election");
    assert_eq!(lease_binding["subjects"][0]["name"], "sw-stateward-gc");
    assert_eq!(lease_binding["roleRef"]["kind"], "Role");

    // The plan CronJob runs under its own ServiceAccount that can only read.
    let cron = find(&with_gc, "CronJob", "sw-stateward-gc-plan");
    let job = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(job["serviceAccountName"], "sw-stateward-gc-plan");
    assert_eq!(
        job["containers"][0]["args"],
        serde_json::json!(["gc", "--all-namespaces", "-o", "json"])
    );
    find(&with_gc, "ServiceAccount", "sw-stateward-gc-plan");
    let plan_verbs = verbs(find(&with_gc, "ClusterRole", "sw-stateward-gc-plan"));
    assert!(
        plan_verbs
            .iter()
            .all(|v| ["get", "list", "watch"].contains(&v.as_str())),
        "the plan must not delete or patch: {plan_verbs:?}"
    );
    let plan_binding = find(&with_gc, "ClusterRoleBinding", "sw-stateward-gc-plan");
    assert_eq!(plan_binding["subjects"][0]["name"], "sw-stateward-gc-plan");
    assert_eq!(plan_binding["roleRef"]["name"], "sw-stateward-gc-plan");
    // No plan objects without the CronJob.
    let without_cron = helm.render(&["gc.enabled=true"]);
    assert!(
        !without_cron
            .iter()
            .any(|d| d["metadata"]["name"] == "sw-stateward-gc-plan"),
        "plan objects only with the CronJob"
    );

    let single = helm.render(&["gc.enabled=true", "gc.replicas=1", "gc.leaseDuration=6s"]);
    let gc = find(&single, "Deployment", "sw-stateward-gc");
    assert_eq!(gc["spec"]["replicas"], 1);
    assert!(
        gc["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .expect("args")
            .iter()
            .any(|a| a == "--lease-duration=6s")
    );
    let (ok, _, stderr) = helm.run(&[
        "template",
        "sw",
        "charts/stateward",
        "--set",
        "gc.enabled=true",
        "--set",
        "gc.leaseDuration=15",
    ]);
    assert!(!ok && stderr.contains("leaseDuration"), "{stderr}");
}

#[test]
fn cert_manager_and_existing_certificate_modes() {
    let Some(helm) = Helm::tier() else { return };
    let docs = helm.render(&["certificates.mode=certManager"]);
    validate(&docs);
    assert!(
        !docs.iter().any(|d| d["kind"] == "Secret"),
        "cert-manager writes the Secret"
    );
    let serving = find(&docs, "Certificate", "sw-stateward-serving");
    assert_eq!(serving["spec"]["secretName"], "sw-stateward-tls");
    let names: Vec<&str> = serving["spec"]["dnsNames"]
        .as_array()
        .expect("names")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        names.contains(&"sw-stateward.stateward-system.svc"),
        "{names:?}"
    );
    find(&docs, "Issuer", "sw-stateward-ca");
    for kind in [
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    ] {
        let config = find(&docs, kind, "sw-stateward");
        assert_eq!(
            config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            "stateward-system/sw-stateward-serving"
        );
        assert!(
            config["webhooks"][0]["clientConfig"]
                .get("caBundle")
                .is_none()
        );
    }
    let docs = helm.render(&[
        "certificates.mode=existing",
        "certificates.existing.secretName=my-tls",
        "certificates.existing.caBundle=Q0EK",
    ]);
    validate(&docs);
    assert!(
        !docs
            .iter()
            .any(|d| d["kind"] == "Secret" || d["kind"] == "Certificate")
    );
    assert_eq!(
        webhooks(&docs, "ValidatingWebhookConfiguration")[0]["clientConfig"]["caBundle"],
        "Q0EK"
    );
    let deployment = find(&docs, "Deployment", "sw-stateward");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"],
        "my-tls"
    );
    let (ok, _, stderr) = helm.run(&[
        "template",
        "sw",
        "charts/stateward",
        "--set",
        "certificates.mode=existing",
    ]);
    assert!(!ok && stderr.contains("certificates.existing"), "{stderr}");
}

#[test]
fn optional_objects_render_valid() {
    let Some(helm) = Helm::tier() else { return };
    let docs = helm.render(&[
        "networkPolicy.enabled=true",
        "networkPolicy.apiServerCIDRs={10.0.0.1/32}",
        "serviceMonitor.enabled=true",
    ]);
    validate(&docs);
    let np = find(&docs, "NetworkPolicy", "sw-stateward");
    assert_eq!(
        np["spec"]["ingress"][0]["from"][0]["ipBlock"]["cidr"],
        "10.0.0.1/32"
    );
    assert_eq!(np["spec"]["ingress"][0]["ports"][0]["port"], 8443);
    find(&docs, "ServiceMonitor", "sw-stateward");
}

#[test]
fn value_typos_fail_the_install() {
    let Some(helm) = Helm::tier() else { return };
    let (ok, _, stderr) = helm.run(&[
        "template",
        "sw",
        "charts/stateward",
        "--set",
        "webhook.timeoutSecond=3",
    ]);
    assert!(!ok, "a misspelt value must fail");
    assert!(stderr.contains("timeoutSecond"), "{stderr}");
    let (ok, _, stderr) = helm.run(&[
        "template",
        "sw",
        "charts/stateward",
        "--set",
        "cluster=sometimes",
    ]);
    assert!(!ok && stderr.contains("cluster"), "{stderr}");
}

#[test]
fn the_chart_passes_its_own_checks_and_is_never_sent_to_itself() {
    let Some(helm) = Helm::tier() else { return };
    let text = helm.render_text(&["gc.enabled=true"]);
    let sources = [Source {
        name: "chart".into(),
        text,
    }];
    let checked = check_sources(&Policy::baseline(), &sources);
    let report = build_report(&checked, &[], true);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.summary.enforce, 0, "{:?}", report.findings);
    // The webhook's own objects are excluded by the namespace selector (tested above) and
    // by the server, which adds POD_NAMESPACE to the policy's excluded namespaces.
    let service = checked
        .iter()
        .find(|c| c.kind == "Service" && c.name == "sw-stateward")
        .and_then(|c| c.value.clone())
        .expect("the chart's Service");
    let resource = stateward::policy::Resource::decode(stateward::policy::Kind::Service, &service)
        .expect("decodes");
    let mut review = stateward::policy::Review::delete(resource, Some(0), "alice");
    review.namespace = "stateward-system".into();
    let mut policy = Policy::baseline();
    policy.excluded_namespaces.push("stateward-system".into());
    let decision = stateward::policy::evaluate(&policy, &review, &stateward::policy::NoContext);
    assert!(decision.excluded && decision.allowed());
}

/// The webhooks that carry matchConditions, by name.
fn with_match_conditions(docs: &[Value]) -> Vec<String> {
    let mut hooks = webhooks(docs, "ValidatingWebhookConfiguration");
    hooks.extend(webhooks(docs, "MutatingWebhookConfiguration"));
    hooks
        .iter()
        .filter(|h| h.get("matchConditions").is_some())
        .filter_map(|h| h["name"].as_str().map(String::from))
        .collect()
}

#[test]
fn match_conditions_only_where_the_cluster_serves_them() {
    let Some(helm) = Helm::tier() else { return };
    // Beta and on by default from 1.28 (GA in 1.30); provider versions are pre-releases.
    for version in ["1.36.0", "1.28.0", "v1.28.3-gke.1286000"] {
        let docs = helm.render_for(version, &[]);
        assert_eq!(
            with_match_conditions(&docs),
            [
                "validate-scale.stateward.io",
                "validate-services.stateward.io",
                "validate-pods.stateward.io",
                "mutate-pods.stateward.io"
            ],
            "{version}"
        );
    }
    for version in ["1.27.0", "v1.27.16-eks-2f46c53"] {
        let docs = helm.render_for(version, &[]);
        validate(&docs);
        assert!(
            with_match_conditions(&docs).is_empty(),
            "{version}: {:?}",
            with_match_conditions(&docs)
        );
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// The chart's NOTES.txt as rendered for a Kubernetes version. helm v4's `install` has no
/// `--kube-version` (only a cluster sets it), so a copy of the chart gets one more template
/// that renders NOTES.txt into a ConfigMap, and `helm template --kube-version` renders that.
fn notes(helm: &Helm, kube_version: Option<&str>, sets: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let chart = dir.path().join("stateward");
    copy_dir(&root().join("charts/stateward"), &chart);
    std::fs::write(
        chart.join("templates/zz-notes-under-test.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes-under-test}\ndata:\n  \
         notes: {{ include \"stateward/templates/NOTES.txt\" . | toJson }}\n",
    )
    .expect("write template");
    let docs = parse(helm.template(chart.to_str().expect("utf-8 path"), kube_version, sets));
    find(&docs, "ConfigMap", "notes-under-test")["data"]["notes"]
        .as_str()
        .expect("notes")
        .to_owned()
}

#[test]
fn notes_say_when_match_conditions_are_left_out() {
    let Some(helm) = Helm::tier() else { return };
    // What an install prints is what the copy renders.
    let (ok, stdout, stderr) = helm.run(&[
        "install",
        "sw",
        "charts/stateward",
        "--dry-run=client",
        "--namespace",
        "stateward-system",
    ]);
    assert!(ok, "{stderr}");
    let printed = stdout
        .split_once("NOTES:\n")
        .expect("install prints NOTES")
        .1;
    assert_eq!(printed.trim(), notes(&helm, None, &[]).trim());

    let old = notes(&helm, Some("1.27.0"), &[]);
    for expected in [
        "WARNING: webhook.matchConditions is true, but Kubernetes v1.27.0",
        "Every pod\nCREATE and DELETE",
        "webhook.matchConditions=false",
    ] {
        assert!(old.contains(expected), "{expected:?} not in {old}");
    }
    for (version, sets) in [
        ("1.36.0", &[][..]),
        ("1.28.0", &[][..]),
        ("1.27.0", &["webhook.matchConditions=false"][..]),
    ] {
        let notes = notes(&helm, Some(version), sets);
        assert!(
            notes.contains("is installed in namespace stateward-system")
                && !notes.contains("matchConditions"),
            "{version} {sets:?}: {notes}"
        );
    }
}

#[test]
fn rolling_restarts_stay_unready_but_serving_within_the_grace_period() {
    use clap::Parser;
    let Some(helm) = Helm::tier() else { return };
    // The drain after the delay is bounded by the TLS server's drain timeout.
    let drain = stateward::webhook::tls::ConnectionLimits::default()
        .drain_timeout
        .as_secs();
    for (sets, delay) in [
        (&[][..], 10),
        (&["shutdownDelaySeconds=45"][..], 45),
        (&["shutdownDelaySeconds=0"][..], 0),
    ] {
        let docs = helm.render(sets);
        let spec = &find(&docs, "Deployment", "sw-stateward")["spec"]["template"]["spec"];
        let args = args_of(&spec["containers"][0]);
        assert!(
            args.contains(&format!("--shutdown-delay={delay}").as_str()),
            "{args:?}"
        );
        // The arguments are ones stateward accepts.
        let cli = stateward::cli::Cli::try_parse_from(std::iter::once("stateward").chain(args))
            .expect("the chart's arguments parse");
        let stateward::cli::Command::Serve(serve) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(serve.shutdown_delay().as_secs(), delay);
        let grace = spec["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("terminationGracePeriodSeconds");
        assert!(
            grace >= delay + 20 && grace >= delay + drain,
            "{sets:?}: grace {grace} does not cover the delay {delay} and the drain {drain}"
        );
    }
    for bad in ["shutdownDelaySeconds=-1", "shutdownDelaySeconds=soon"] {
        let (ok, _, stderr) = helm.run(&["template", "sw", "charts/stateward", "--set", bad]);
        assert!(
            !ok && stderr.contains("shutdownDelaySeconds"),
            "{bad}: {stderr}"
        );
    }
}

#[test]
fn audit_is_optional_least_privilege_and_its_crds_opt_in() {
    let Some(helm) = Helm::tier() else { return };
    let docs = helm.render(&[]);
    assert!(
        !docs
            .iter()
            .any(|d| d["metadata"]["name"] == "sw-stateward-audit"
                || d["kind"] == "CustomResourceDefinition"),
        "audit and the CRDs are off by default"
    );
    // The CRDs alone can be installed (for another Deployment's audit, or a later one).
    let crds_only = helm.render(&["audit.installCRDs=true"]);
    validate(&crds_only);
    let with_audit = helm.render(&["audit.enabled=true"]);
    validate(&with_audit);
    assert!(
        !with_audit
            .iter()
            .any(|d| d["kind"] == "CustomResourceDefinition"),
        "enabling the audit does not install the CRDs"
    );
    let docs = helm.render(&[
        "audit.enabled=true",
        "audit.installCRDs=true",
        "audit.interval=90s",
    ]);
    validate(&docs);

    // The CRDs: the generated file, kept on uninstall.
    let crds: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .collect();
    let names: Vec<&str> = crds
        .iter()
        .filter_map(|d| d["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["reports.openreports.io", "clusterreports.openreports.io"]
    );
    for (crd, generated) in crds.iter().zip(stateward::audit::openreports::crds()) {
        assert_eq!(
            **crd, generated,
            "the chart renders the generated CRD as it is"
        );
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"],
            "keep"
        );
    }

    // The Deployment: audit --watch on its own Lease, the policy ConfigMap mounted.
    let audit = find(&docs, "Deployment", "sw-stateward-audit");
    assert_eq!(audit["spec"]["replicas"], 1);
    assert_eq!(
        audit["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        0
    );
    let pod = &audit["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "sw-stateward-audit");
    let args = args_of(&pod["containers"][0]);
    assert_eq!(&args[..2], &["audit", "--watch"]);
    for expected in [
        "--interval=90s",
        "--policy=/policy/policy.yaml",
        "--leader-elect=true",
        "--lease-name=sw-stateward-audit",
        "--lease-namespace=stateward-system",
        "--lease-duration=15s",
        "--admin-listen=0.0.0.0:8080",
    ] {
        assert!(args.contains(&expected), "{expected} missing from {args:?}");
    }
    assert_eq!(
        pod["volumes"][0]["configMap"]["name"], "sw-stateward-policy",
        "the webhook's policy"
    );
    assert_eq!(
        pod["containers"][0]["volumeMounts"][0]["mountPath"],
        "/policy"
    );
    assert_eq!(
        pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"],
        true
    );

    // RBAC: reads what a pass lists; writes only reports; its own Lease only.
    let role = find(&docs, "ClusterRole", "sw-stateward-audit");
    for rule in role["rules"].as_array().expect("rules") {
        let verbs: Vec<&str> = rule["verbs"]
            .as_array()
            .expect("verbs")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        if rule["apiGroups"][0] == "openreports.io" {
            assert_eq!(rule["resources"], serde_json::json!(["reports"]));
            assert_eq!(
                verbs,
                [
                    "get", "list", "watch", "create", "update", "patch", "delete"
                ]
            );
        } else {
            assert_eq!(verbs, ["get", "list", "watch"], "read-only: {rule}");
        }
    }
    let read: Vec<String> = role["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .flat_map(|r| r["resources"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r.as_str().map(String::from))
        .collect();
    for resource in [
        "statefulsets",
        "services",
        "pods",
        "persistentvolumeclaims",
        "nodes",
        "poddisruptionbudgets",
    ] {
        assert!(read.iter().any(|r| r == resource), "{resource} in {read:?}");
    }
    let binding = find(&docs, "ClusterRoleBinding", "sw-stateward-audit");
    assert_eq!(binding["subjects"][0]["name"], "sw-stateward-audit");
    let lease_role = find(&docs, "Role", "sw-stateward-audit-leader-election");
    assert_eq!(
        lease_role["rules"][1]["resourceNames"],
        serde_json::json!(["sw-stateward-audit"])
    );
    find(&docs, "RoleBinding", "sw-stateward-audit-leader-election");

    let (ok, _, stderr) = helm.run(&[
        "template",
        "sw",
        "charts/stateward",
        "--set",
        "audit.enabled=true",
        "--set",
        "audit.interval=0s",
    ]);
    assert!(!ok && stderr.contains("interval"), "{stderr}");
}

/// A container's `args`, as strings.
fn args_of(container: &Value) -> Vec<&str> {
    container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

/// The entries `stateward policy webhooks` derives for a policy text, as JSON.
fn scope_of(text: &str) -> Value {
    let yaml =
        stateward::commands::policy::webhooks_text(text, "test", false, false).expect("scope");
    parse(yaml).remove(0)
}

/// Renders with a values file and returns the documents, or helm's error.
fn render_with_values(helm: &Helm, values: &str) -> Result<Vec<Value>, String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("values.yaml");
    std::fs::write(&file, values).expect("write values");
    let (ok, stdout, stderr) = helm.run(&[
        "template",
        "sw",
        "charts/stateward",
        "--namespace",
        "stateward-system",
        "--kube-version",
        "1.36.0",
        "-f",
        file.to_str().expect("utf-8 path"),
    ]);
    if ok { Ok(parse(stdout)) } else { Err(stderr) }
}

/// Every rendered webhook entry is the derived one: same names, rules and matchConditions;
/// failurePolicy Fail exactly where the entry fails closed (validating), Ignore elsewhere.
fn assert_rendered_as_derived(docs: &[Value], scope: &Value, what: &str) {
    let mut rendered = Vec::new();
    for kind in [
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    ] {
        if docs.iter().any(|d| d["kind"] == kind) {
            rendered.extend(webhooks(docs, kind));
        }
    }
    let entries = scope["entries"].as_array().expect("entries");
    let names = |items: &[Value]| -> Vec<String> {
        let mut names: Vec<String> = items
            .iter()
            .filter_map(|e| e["name"].as_str().map(String::from))
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(&rendered), names(entries), "{what}: entries");
    for entry in entries {
        let hook = rendered
            .iter()
            .find(|h| h["name"] == entry["name"])
            .expect("rendered");
        assert_eq!(hook["rules"], entry["rules"], "{what}: {}", entry["name"]);
        let conditions = hook
            .get("matchConditions")
            .cloned()
            .unwrap_or(Value::Array(vec![]));
        assert_eq!(
            conditions, entry["matchConditions"],
            "{what}: {}",
            entry["name"]
        );
        let expected = if entry["failClosed"] == true {
            "Fail"
        } else {
            "Ignore"
        };
        assert_eq!(hook["failurePolicy"], expected, "{what}: {}", entry["name"]);
        let excluded = &hook["namespaceSelector"]["matchExpressions"][0]["values"];
        for ns in scope["excludedNamespaces"].as_array().expect("excluded") {
            assert!(
                excluded.as_array().expect("values").contains(ns),
                "{what}: {ns} not excluded by {}",
                entry["name"]
            );
        }
    }
}

#[test]
fn webhook_entries_are_derived_from_the_policy_installed() {
    let Some(helm) = Helm::tier() else { return };
    for profile in ["baseline", "strict"] {
        let text = std::fs::read_to_string(root().join(format!("policies/{profile}.yaml")))
            .expect("policy");
        let docs = helm.render_for("1.36.0", &[&format!("policy.profile={profile}")]);
        assert_rendered_as_derived(&docs, &scope_of(&text), profile);
    }
    // A custom policy: its own values file from `stateward policy webhooks --values`.
    let custom = include_str!("../policies/strict.yaml")
        .replace(
            "service.headless-in-use: {mode: enforce",
            "service.headless-in-use: {mode: warn",
        )
        .replace(
            "service.headless-shape: {mode: enforce",
            "service.headless-shape: {mode: warn",
        )
        .replace(
            "service.pod-name-selector: {mode: enforce",
            "service.pod-name-selector: {mode: off",
        )
        .replace(
            "  excludedNamespaces: [kube-system, kube-node-lease]\n  rules:\n",
            "  excludedNamespaces: [kube-system, kube-node-lease, batch]\n  rules:\n    \
             pod.force-delete: {mode: enforce, exemptUsers: [\"ops:breakglass\"]}\n",
        );
    assert_ne!(custom, include_str!("../policies/strict.yaml"));
    let values =
        stateward::commands::policy::webhooks_text(&custom, "custom", true, false).expect("values");
    let docs = render_with_values(&helm, &values).expect("the custom policy renders");
    let scope = scope_of(&custom);
    assert_rendered_as_derived(&docs, &scope, "custom");
    let services = scope["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["name"] == "validate-services.stateward.io")
        .expect("services entry");
    assert_eq!(
        services["failClosed"], false,
        "the Service rules only warn here"
    );
    let pods = docs
        .iter()
        .filter(|d| d["kind"] == "ValidatingWebhookConfiguration")
        .flat_map(|d| d["webhooks"].as_array().cloned().unwrap_or_default())
        .find(|h| h["name"] == "validate-pods.stateward.io")
        .expect("pods entry");
    assert!(
        pods["matchConditions"][1]["expression"]
            .as_str()
            .is_some_and(|e| e.contains("['ops:breakglass']")),
        "{pods}"
    );
    let policy_map = find(&docs, "ConfigMap", "sw-stateward-policy");
    assert_eq!(
        policy_map["data"]["policy.yaml"].as_str(),
        Some(custom.as_str())
    );

    // An inline policy without its entries, or with entries made for another text, is refused.
    let bare = format!(
        "policy:\n  inline: |\n{}",
        custom
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    );
    let err = render_with_values(&helm, &bare).expect_err("no entries");
    assert!(
        err.contains("policy.inline needs webhook.scope")
            && err.contains("stateward policy webhooks"),
        "{err}"
    );
    let stale = values.replace("mode: warn", "mode: off");
    assert_ne!(stale, values);
    let err = render_with_values(&helm, &stale).expect_err("stale entries");
    assert!(err.contains("made for another policy text"), "{err}");
}

#[test]
fn shipped_webhook_entries_are_generated() {
    use stateward::commands::policy::{native_chart_text, webhooks_text};
    for profile in ["baseline", "strict"] {
        let source = format!("policies/{profile}.yaml");
        let text = std::fs::read_to_string(root().join(&source)).expect("policy");
        for (file, expected) in [
            (
                format!("webhooks-{profile}.yaml"),
                webhooks_text(&text, &source, false, false).expect("scope"),
            ),
            (
                format!("webhooks-{profile}-hybrid.yaml"),
                webhooks_text(&text, &source, false, true).expect("hybrid scope"),
            ),
            (
                format!("native-{profile}.yaml"),
                native_chart_text(&text, &source).expect("native"),
            ),
        ] {
            let path = root().join("charts/stateward/files").join(&file);
            if std::env::var_os("STATEWARD_BLESS").is_some() {
                std::fs::write(&path, &expected).expect("write");
            }
            let actual = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                actual == expected,
                "{} is not generated from {source}; refresh: \
                 STATEWARD_BLESS=1 cargo test --test chart shipped_webhook_entries",
                path.display()
            );
        }
    }
}

/// Renders for Kubernetes 1.36 serving ValidatingAdmissionPolicy v1 (what a real cluster's
/// discovery tells helm), with `--set` values.
fn render_with_vap(helm: &Helm, sets: &[&str]) -> Result<Vec<Value>, String> {
    let mut args = vec![
        "template",
        "sw",
        "charts/stateward",
        "--namespace",
        "stateward-system",
        "--kube-version",
        "1.36.0",
        "--api-versions",
        "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy",
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    let (ok, stdout, stderr) = helm.run(&args);
    if ok { Ok(parse(stdout)) } else { Err(stderr) }
}

fn kinds(docs: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = docs
        .iter()
        .filter_map(|d| d["kind"].as_str().map(String::from))
        .collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

fn rule_ids(entries: &[Value]) -> std::collections::BTreeSet<String> {
    entries
        .iter()
        .flat_map(|h| h["ruleIds"].as_array().cloned().unwrap_or_default())
        .filter_map(|id| id.as_str().map(String::from))
        .collect()
}

#[test]
fn enforcement_modes_follow_what_the_cluster_serves() {
    let Some(helm) = Helm::tier() else { return };
    // auto: webhook where ValidatingAdmissionPolicy v1 is not served (helm's defaults,
    // Kubernetes 1.29), hybrid where it is.
    let plain = helm.render_for("1.29.0", &[]);
    assert!(!kinds(&plain).contains(&"ValidatingAdmissionPolicy".to_owned()));
    let (ok, _, err) = helm.run(&[
        "template",
        "sw",
        "charts/stateward",
        "--kube-version",
        "1.29.0",
        "--set",
        "enforcement=hybrid",
    ]);
    assert!(
        !ok && err.contains("needs ValidatingAdmissionPolicy"),
        "{err}"
    );
    for profile in ["baseline", "strict"] {
        let text = std::fs::read_to_string(root().join(format!("policies/{profile}.yaml")))
            .expect("policy");
        let set = format!("policy.profile={profile}");
        let auto = render_with_vap(&helm, &[&set]).expect("auto");
        let hybrid = render_with_vap(&helm, &[&set, "enforcement=hybrid"]).expect("hybrid");
        assert_eq!(
            kinds(&auto),
            kinds(&hybrid),
            "{profile}: auto is hybrid there"
        );
        let native =
            parse(stateward::commands::policy::native_chart_text(&text, "t").expect("native"))
                .remove(0);
        let native_ids: std::collections::BTreeSet<String> = native["native"]
            .as_array()
            .expect("native")
            .iter()
            .filter_map(|id| id.as_str().map(String::from))
            .collect();
        // Every compiled object is installed, and the webhook is told to leave those rules.
        let policies: Vec<&Value> = hybrid
            .iter()
            .filter(|d| d["kind"] == "ValidatingAdmissionPolicy")
            .collect();
        let compiled: Vec<&Value> = native["objects"]
            .as_array()
            .expect("objects")
            .iter()
            .filter(|o| o["kind"] == "ValidatingAdmissionPolicy")
            .collect();
        assert_eq!(policies.len(), compiled.len(), "{profile}");
        for (rendered, compiled) in policies.iter().zip(&compiled) {
            assert_eq!(rendered["spec"], compiled["spec"], "{profile}");
        }
        let args = deployment_args(&hybrid);
        let flag = args
            .iter()
            .find_map(|a| a.strip_prefix("--native-rules="))
            .unwrap_or_default();
        let flagged: std::collections::BTreeSet<String> = flag
            .split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        assert_eq!(flagged, native_ids, "{profile}: --native-rules");
        // Each rule in exactly one place: no webhook entry carries a native rule, and every
        // rule of the webhook-only install is still carried by one of the two.
        let mut hooks = webhooks(&hybrid, "ValidatingWebhookConfiguration");
        hooks.extend(webhooks(&hybrid, "MutatingWebhookConfiguration"));
        let scope = parse(
            stateward::commands::policy::webhooks_text(&text, "t", false, true).expect("scope"),
        )
        .remove(0);
        // The scale subresource's entry is the one exception: a Scale carries no claim
        // templates, so no native policy judges `kubectl scale`; the webhook keeps that path.
        let entries = scope["entries"].as_array().expect("entries");
        let (scale, others): (Vec<Value>, Vec<Value>) = entries
            .iter()
            .cloned()
            .partition(|e| e["name"] == "validate-scale.stateward.io");
        let kept = rule_ids(&others);
        assert!(
            kept.is_disjoint(&native_ids),
            "{profile}: {kept:?} and {native_ids:?}"
        );
        assert_eq!(
            rule_ids(&scale),
            ["statefulset.scale-down-retains-claims".to_owned()].into(),
            "{profile}"
        );
        let kept: std::collections::BTreeSet<String> =
            kept.union(&rule_ids(&scale)).cloned().collect();
        let full = rule_ids(scope_of(&text)["entries"].as_array().expect("entries"));
        let covered: std::collections::BTreeSet<String> =
            kept.union(&native_ids).cloned().collect();
        assert!(
            full.is_subset(&covered),
            "{profile}: lost {:?}",
            full.difference(&covered)
        );
        assert_rendered_as_derived(&hybrid, &scope, &format!("{profile} hybrid"));

        // native: the policies only, no webhook and no webhook Deployment.
        let only = render_with_vap(&helm, &[&set, "enforcement=native"]).expect("native");
        let kinds = kinds(&only);
        for absent in [
            "ValidatingWebhookConfiguration",
            "MutatingWebhookConfiguration",
            "Deployment",
            "Service",
        ] {
            assert!(
                !kinds.contains(&absent.to_owned()),
                "{profile} native renders {absent}"
            );
        }
        assert!(kinds.contains(&"ValidatingAdmissionPolicyBinding".to_owned()));
    }
}

/// The webhook container's arguments.
fn deployment_args(docs: &[Value]) -> Vec<String> {
    find(docs, "Deployment", "sw-stateward")["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str().map(String::from))
        .collect()
}
/// The dashboard ConfigMap, the PrometheusRule and the controllers' PodMonitor are opt-in,
/// and carry the repository's files: the dashboard as is, the rules with this release's job
/// name, failure policy and timeout (and `promtool check rules` accepts what the chart
/// renders, with the Prometheus tier).
#[test]
fn dashboard_and_alert_rules_are_opt_in_and_render_the_repository_files() {
    let Some(helm) = Helm::tier() else { return };
    let kinds = |docs: &[Value]| -> Vec<String> {
        docs.iter()
            .filter(|d| {
                matches!(d["kind"].as_str(), Some("PrometheusRule" | "PodMonitor"))
                    || d["metadata"]["name"] == "sw-stateward-dashboard"
            })
            .map(|d| d["kind"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let docs = helm.render(&["gc.enabled=true", "audit.enabled=true"]);
    assert_eq!(kinds(&docs), Vec::<String>::new(), "nothing by default");

    let docs = helm.render(&[
        "grafanaDashboard.enabled=true",
        "grafanaDashboard.annotations.grafana_folder=stateward",
        "prometheusRule.enabled=true",
        "prometheusRule.labels.release=prom",
        "serviceMonitor.enabled=true",
        "gc.enabled=true",
        "audit.enabled=true",
        "webhook.timeoutSeconds=10",
        "webhook.validatingFailurePolicy=Ignore",
    ]);
    validate(&docs);
    let files = root().join("charts/stateward/files");
    let dashboard = find(&docs, "ConfigMap", "sw-stateward-dashboard");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(
        dashboard["metadata"]["annotations"]["grafana_folder"],
        "stateward"
    );
    let rendered: Value = serde_json::from_str(
        dashboard["data"]["stateward.json"]
            .as_str()
            .expect("stateward.json"),
    )
    .expect("the dashboard is JSON");
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(files.join("dashboard.json")).expect("dashboard.json"),
    )
    .expect("dashboard.json is JSON");
    assert_eq!(rendered, file);

    let rule = find(&docs, "PrometheusRule", "sw-stateward");
    assert_eq!(rule["metadata"]["labels"]["release"], "prom");
    let text = std::fs::read_to_string(files.join("alerts.yaml")).expect("alerts.yaml");
    let expected = text
        .replace(r#"job="stateward""#, r#"job="sw-stateward""#)
        .replace(
            r#""failure_policy", "Fail""#,
            r#""failure_policy", "Ignore""#,
        )
        .replace("expr: vector(5)", "expr: vector(10)");
    assert_ne!(expected, text, "the substitutions apply");
    let expected = parse(expected).remove(0);
    assert_eq!(
        rule["spec"], expected,
        "the rule file, with this release's values"
    );
    let monitor = find(&docs, "PodMonitor", "sw-stateward-controllers");
    assert_eq!(
        monitor["spec"]["selector"]["matchExpressions"][0]["values"],
        serde_json::json!(["gc", "audit"])
    );

    if let Some(bin) = tiers::prometheus() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("chart-rules.json");
        std::fs::write(&path, rule["spec"].to_string()).expect("write");
        let out = Command::new(bin.join("promtool"))
            .arg("check")
            .arg("rules")
            .arg(&path)
            .output()
            .expect("promtool runs");
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
