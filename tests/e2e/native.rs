//! The differential suite: the webhook and the native policies (`stateward policy native`)
//! decide the same, on the real API server, for every StatefulSet, Service and Pod of the
//! fixtures and the corpus (`STATEWARD_CORPUS`) and for UPDATE and DELETE cases, under
//! baseline and strict.
//!
//! Per profile, the same policy judges three namespaces, every request a server-side dry
//! run:
//! - **W**: only the webhook (a `stateward serve` of its own, `--cluster off`, the chart's
//!   configurations);
//! - **N**: only the compiled ValidatingAdmissionPolicies, with their own bindings;
//! - **P0, P1, ...**: each compiled ValidatingAdmissionPolicy alone, bound with `Warn`. The
//!   API server reports only the first check that denies; every failing check shows here
//!   as a warning naming its policy and starting with its rule id, so the whole set of
//!   rules that would deny (a check of a `Deny` policy) or warn is compared. One namespace
//!   per policy keeps each under the API server's 4 KiB of warnings per response.
//!
//! Compared, over the rules that compiled (the others are the webhook's alone): denied or
//! not, the rules in the denial, the rules in the warnings, and the object after admission
//! (spec and labels). The mutations that compile (MutatingAdmissionPolicy) run on both
//! sides, with an alias label; the others are off on both sides, so that both validate the
//! same object.
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kube::core::Request;
use kube::core::params::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::{Value, json};
use stateward::commands::check::manifest::{Source, documents};
use stateward::policy::native::compile;
use stateward::policy::{Policy, RuleId};

use crate::cases::{create_set, run_on_node, say, wait_pods};
use crate::harness::{Env, Webhooks, serve_with_webhooks, unregister_webhooks};
use crate::k8s::{Reply, pods, send, statefulset, statefulsets, to_vec, wait_for};

const LABEL: &str = "stateward-differential";

/// What one side answered, over the compiled rules.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    /// The raw status.
    status: u16,
    /// Refused by a compiled rule.
    blocked: bool,
    /// Refused only by rules that did not compile (the webhook's alone).
    by_others: BTreeSet<String>,
    denied: BTreeSet<String>,
    warned: BTreeSet<String>,
    /// The object after admission (spec), when admitted.
    spec: Option<Value>,
}

/// The rule ids named as `<id>: ` in `text`.
fn ids_in(text: &str) -> BTreeSet<String> {
    RuleId::ALL
        .iter()
        .map(|id| id.to_string())
        .filter(|id| text.contains(&format!("{id}: ")))
        .collect()
}

/// The policy and the rule of a warning or denial of a native policy: `... ValidatingAdmissionPolicy
/// '<policy>' with binding '<binding>': <rule id>: <message>`.
fn policy_rule(text: &str) -> Option<(String, String)> {
    let start = text.find("ValidatingAdmissionPolicy '")? + "ValidatingAdmissionPolicy '".len();
    let name = &text[start..start + text[start..].find('\'')?];
    let rest = &text[start + name.len()..];
    let message = &rest[rest.find("': ")? + 3..];
    let rule = &message[..message.find(": ")?];
    rule.parse::<RuleId>().ok()?;
    Some((name.to_owned(), rule.to_owned()))
}

/// A spec with the names the API server generates per request (the service account token
/// volume of a pod) made equal.
fn normalised(spec: &Value) -> Value {
    let text = spec.to_string();
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    let marker = "kube-api-access-";
    while let Some(at) = rest.find(marker) {
        out.push_str(&rest[..at + marker.len()]);
        rest = &rest[at + marker.len()..];
        let skip = rest
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(rest.len());
        out.push_str("xxxxx");
        rest = &rest[skip..];
    }
    out.push_str(rest);
    serde_json::from_str(&out).unwrap_or(Value::Null)
}

/// What admission may have changed: the spec and the labels.
fn admitted_object(body: &Value) -> Value {
    json!({"spec": normalised(&body["spec"]), "labels": body["metadata"]["labels"].clone()})
}

fn denied(r: &Reply) -> bool {
    matches!(r.status, 403 | 422)
        && (r.message().contains("denied by stateward")
            || r.message().contains("ValidatingAdmissionPolicy"))
}

fn answer_webhook(r: &Reply, native: &BTreeSet<String>) -> Answer {
    let all = if denied(r) {
        ids_in(r.message())
    } else {
        BTreeSet::new()
    };
    let denied_ids: BTreeSet<String> = all.intersection(native).cloned().collect();
    Answer {
        status: r.status,
        blocked: !denied_ids.is_empty(),
        by_others: all.difference(native).cloned().collect(),
        denied: denied_ids,
        warned: r
            .warnings
            .iter()
            .flat_map(|w| ids_in(w))
            .filter(|id| native.contains(id))
            .collect(),
        spec: (r.status < 300).then(|| admitted_object(&r.body)),
    }
}

/// The native answer: refused or not from N; the sets from the policy namespaces, where each
/// compiled policy alone is bound at `Warn` (the API server reports only the first check
/// that denies): a warning of a `Deny` policy is a denial, any other a warning.
fn answer_native(
    n: &Reply,
    by_policy: &[Reply],
    policies: &[String],
    deny: &BTreeSet<String>,
) -> Answer {
    let mut denied_ids = BTreeSet::new();
    let mut warned = BTreeSet::new();
    for (reply, policy) in by_policy.iter().zip(policies) {
        // Past 4 KiB the API server cuts warnings short, then drops them: never compare
        // what may be cut.
        let ours = reply
            .warnings
            .iter()
            .filter(|w| w.contains(policy.as_str()));
        assert!(
            ours.map(String::len).sum::<usize>() < 3_800,
            "{policy}: too many warnings to compare (the API server keeps 4 KiB): {reply}"
        );
        for w in &reply.warnings {
            if let Some((named, rule)) = policy_rule(w)
                && &named == policy
            {
                if deny.contains(policy) {
                    denied_ids.insert(rule);
                } else {
                    warned.insert(rule);
                }
            }
        }
    }
    Answer {
        status: n.status,
        blocked: denied(n),
        by_others: BTreeSet::new(),
        denied: denied_ids,
        warned,
        spec: (n.status < 300).then(|| admitted_object(&n.body)),
    }
}

/// Sends one request (built per namespace) to every namespace of a profile at once.
async fn to_all<F>(env: &Env, client: &kube::Client, namespaces: &[String], build: F) -> Vec<Reply>
where
    F: Fn(usize, &str) -> Result<hyper::Request<Vec<u8>>, kube::core::request::Error>,
{
    let _ = env;
    futures::future::join_all(
        namespaces
            .iter()
            .enumerate()
            .map(|(i, ns)| send(client, build(i, ns))),
    )
    .await
}

fn dry() -> PostParams {
    PostParams {
        dry_run: true,
        ..PostParams::default()
    }
}

fn collection(kind: &str, ns: &str) -> Option<Request> {
    Some(match kind {
        "StatefulSet" => statefulsets(ns),
        "Service" => crate::k8s::services(ns),
        "Pod" => pods(ns),
        _ => return None,
    })
}

/// The documents to judge: every apps/v1 StatefulSet, v1 Service and v1 Pod of the
/// fixtures, the examples and the corpus, with where it came from.
fn documents_to_judge() -> Vec<(String, Value)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![
        root.join("tests/fixtures/allow"),
        root.join("tests/fixtures/deny"),
        root.join("tests/fixtures/mutate"),
        root.join("examples"),
    ];
    if let Some(corpus) = std::env::var_os("STATEWARD_CORPUS") {
        dirs.push(corpus.into());
    }
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let name = file
                .strip_prefix(root)
                .unwrap_or(&file)
                .display()
                .to_string();
            for (i, doc) in documents(&Source {
                name: name.clone(),
                text,
            })
            .into_iter()
            .enumerate()
            {
                let Ok(value) = doc.value else { continue };
                let kind = value["kind"].as_str().unwrap_or_default();
                let api = value["apiVersion"].as_str().unwrap_or_default();
                if matches!(
                    (api, kind),
                    ("apps/v1", "StatefulSet") | ("v1", "Service") | ("v1", "Pod")
                ) {
                    out.push((format!("{name} #{i} {kind}"), value));
                }
            }
        }
    }
    out
}

/// `value` made ready for namespace `ns`: namespace set, server-owned fields dropped.
fn for_namespace(value: &Value, ns: &str) -> Value {
    let mut v = value.clone();
    if let Some(meta) = v["metadata"].as_object_mut() {
        meta.insert("namespace".into(), json!(ns));
        for key in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "managedFields",
        ] {
            meta.remove(key);
        }
        if !meta.contains_key("name") && !meta.contains_key("generateName") {
            meta.insert("name".into(), json!("unnamed"));
        }
    }
    if let Some(obj) = v.as_object_mut() {
        obj.remove("status");
    }
    v
}

/// The bindings for one namespace label: every compiled binding (`policy: None`), or the
/// binding of one validating policy at `Warn` with every mutation's (`policy: Some`), their
/// names suffixed with `suffix`.
fn bindings_for(
    objects: &[Value],
    selector: &str,
    policy: Option<&str>,
    suffix: &str,
) -> Vec<Value> {
    objects
        .iter()
        .filter(|o| match (o["kind"].as_str(), policy) {
            (Some("MutatingAdmissionPolicyBinding"), _) => true,
            (Some("ValidatingAdmissionPolicyBinding"), None) => true,
            (Some("ValidatingAdmissionPolicyBinding"), Some(policy)) => {
                o["spec"]["policyName"] == policy
            }
            _ => false,
        })
        .map(|o| {
            let mut b = o.clone();
            b["spec"]["matchResources"]["namespaceSelector"]["matchLabels"] =
                json!({LABEL: selector});
            let name = format!(
                "{}{suffix}",
                b["metadata"]["name"].as_str().unwrap_or_default()
            );
            b["metadata"]["name"] = json!(name);
            if policy.is_some() && b["kind"] == "ValidatingAdmissionPolicyBinding" {
                b["spec"]["validationActions"] = json!(["Warn"]);
            }
            b
        })
        .collect()
}

/// A StatefulSet that the API server's own validation accepts and that violates as many
/// native rules as it can on CREATE (to see each rule's policy in effect).
fn violator() -> Value {
    let mut v = statefulset(&"v".repeat(60), 3, "violator");
    let pod = &mut v["spec"]["template"]["spec"];
    pod["terminationGracePeriodSeconds"] = json!(0);
    pod["affinity"] = json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 1, "podAffinityTerm": {"topologyKey": "zone", "labelSelector": {"matchLabels": {"other": "x"}}}}
    ]}});
    pod["containers"] = json!([{"name": "c", "image": "busybox",
        "volumeMounts": [{"name": "shared", "mountPath": "/shared"}]}]);
    v["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
    v["spec"]["volumeClaimTemplates"] = json!([
        {"metadata": {"name": "shared"}, "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}},
        {"metadata": {"name": "unused"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
    ]);
    v
}

async fn apply(env: &Env, object: &Value) {
    let plural = match object["kind"].as_str() {
        Some("ValidatingAdmissionPolicy") => "validatingadmissionpolicies",
        Some("ValidatingAdmissionPolicyBinding") => "validatingadmissionpolicybindings",
        Some("MutatingAdmissionPolicy") => "mutatingadmissionpolicies",
        Some("MutatingAdmissionPolicyBinding") => "mutatingadmissionpolicybindings",
        other => panic!("unexpected kind {other:?}"),
    };
    let r = send(
        &env.admin,
        Request::new(format!("/apis/admissionregistration.k8s.io/v1/{plural}"))
            .create(&PostParams::default(), to_vec(object)),
    )
    .await;
    assert_eq!(
        r.status, 201,
        "create {plural} {}: {r}",
        object["metadata"]["name"]
    );
}

async fn delete_compiled(env: &Env) {
    for plural in [
        "validatingadmissionpolicybindings",
        "validatingadmissionpolicies",
        "mutatingadmissionpolicybindings",
        "mutatingadmissionpolicies",
    ] {
        let r = send(
            &env.admin,
            Request::new(format!("/apis/admissionregistration.k8s.io/v1/{plural}"))
                .delete_collection(
                    &DeleteParams::default(),
                    &kube::core::params::ListParams::default()
                        .labels("app.kubernetes.io/managed-by=stateward"),
                ),
        )
        .await;
        assert_eq!(r.status, 200, "delete {plural}: {r}");
    }
}

/// The shipped profile with the mutations off and two more excluded namespaces.
fn differential_policy(profile: &str, excluded: &[String]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text =
        std::fs::read_to_string(root.join(format!("policies/{profile}.yaml"))).expect("policy");
    let line = "  excludedNamespaces: [kube-system, kube-node-lease]";
    assert!(text.contains(line), "{profile}: excludedNamespaces line");
    let text = text.replace(
        line,
        &format!(
            "  excludedNamespaces: [kube-system, kube-node-lease, {}]",
            excluded.join(", ")
        ),
    );
    // The mutations that compile run on both sides (with an alias label, to exercise
    // it); the others are off on both sides.
    let policy = Policy::from_yaml(&text, profile).expect("policy");
    let compiled = compile(&policy);
    let mut section = String::from("  mutations:\n");
    for id in RuleId::ALL {
        if !id.info().is_mutation() || !policy.enabled(*id) {
            continue;
        }
        if *id == RuleId::PodIdentityLabels && compiled.native_mutations.contains(id) {
            section.push_str(&format!(
                "    {id}: {{enabled: true, aliasLabels: [{ALIAS}]}}\n"
            ));
        } else if !compiled.native_mutations.contains(id) {
            section.push_str(&format!("    {id}: {{enabled: false}}\n"));
        }
    }
    // The mutations section is the last of baseline and absent from strict.
    let text = match text.find("\n  mutations:\n") {
        Some(at) => format!("{}\n{section}", &text[..at]),
        None => format!("{text}{section}"),
    };
    let policy = Policy::from_yaml(&text, profile).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let compiled = compile(&policy);
    assert!(
        RuleId::ALL.iter().all(|id| !id.info().is_mutation()
            || !policy.enabled(*id)
            || compiled.native_mutations.contains(id)),
        "mutations that do not compile still on:\n{text}"
    );
    text
}

/// The alias label the differential's policy adds to StatefulSet pods.
const ALIAS: &str = "differential.stateward.io/pod";

#[derive(Default)]
struct Tally {
    documents: usize,
    comparisons: usize,
    left_to_webhook: usize,
    differences: Vec<String>,
}

/// Same decision on the compiled rules: refused or not, the rules in the denial and in the
/// warnings, and the object after admission. A request the webhook refuses only for rules
/// that did not compile is counted apart (those rules stay the webhook's).
fn compare(tally: &mut Tally, what: &str, webhook: &Answer, native: &Answer) {
    tally.comparisons += 1;
    let only_others = !webhook.blocked && !webhook.by_others.is_empty();
    if only_others {
        tally.left_to_webhook += 1;
    }
    let same = webhook.blocked == native.blocked
        && webhook.denied == native.denied
        && webhook.warned == native.warned
        && (webhook.blocked || only_others || webhook.status == native.status)
        && (only_others || webhook.spec == native.spec);
    if !same {
        tally.differences.push(format!(
            "{what}\n      webhook: {webhook:?}\n      native:  {native:?}"
        ));
    }
}

pub async fn native_equals_webhook(env: Arc<Env>) {
    let c = "native_equals_webhook";
    let env = &*env;
    let docs = documents_to_judge();
    let mut total = Tally::default();
    for profile in ["baseline", "strict"] {
        let w = &format!("e2e-native-{profile}-w");
        let n = &format!("e2e-native-{profile}-n");
        let (w_excl, n_excl) = (format!("{w}-excl"), format!("{n}-excl"));
        let text = differential_policy(profile, &[w_excl.clone(), n_excl.clone()]);
        let policy = Policy::from_yaml(&text, profile).expect("policy");
        let compiled = compile(&policy);
        let native: BTreeSet<String> = compiled.native.iter().map(|id| id.to_string()).collect();
        // The compiled policies, and those bound with Deny.
        let policies: Vec<String> = compiled
            .objects
            .iter()
            .filter(|o| o["kind"] == "ValidatingAdmissionPolicy")
            .filter_map(|o| o["metadata"]["name"].as_str().map(String::from))
            .collect();
        let deny: BTreeSet<String> = compiled
            .objects
            .iter()
            .filter(|o| {
                o["kind"] == "ValidatingAdmissionPolicyBinding"
                    && o["spec"]["validationActions"] == json!(["Deny"])
            })
            .filter_map(|o| o["spec"]["policyName"].as_str().map(String::from))
            .collect();
        say(c, format!("{profile}: native rules {native:?}"));
        say(
            c,
            format!("{profile}: policies {policies:?}, deny {deny:?}"),
        );
        // W, N, then one namespace per compiled policy.
        let mut sides = vec![w.clone(), n.clone()];
        sides.extend((0..policies.len()).map(|i| format!("e2e-native-{profile}-p{i}")));
        let path = env.dir.join(format!("differential-{profile}.yaml"));
        std::fs::write(&path, &text).expect("write policy");

        let mut labelled: Vec<(String, String)> = vec![
            (w.clone(), "webhook".into()),
            (n.clone(), "native".into()),
            (w_excl.clone(), "webhook".into()),
            (n_excl.clone(), "native".into()),
        ];
        labelled.extend((0..policies.len()).map(|i| (sides[i + 2].clone(), format!("policy-{i}"))));
        for (name, selector) in &labelled {
            let label = format!("{profile}-{selector}");
            let case = name.trim_start_matches("e2e-");
            env.namespace_labelled(case, json!({LABEL: label})).await;
        }
        // For the UPDATE and DELETE cases: a real set in each namespace, pods scheduled and
        // running, made before any policy judges them (strict would refuse the suite's set).
        for ns in &sides {
            create_set(env, ns, "db", 3).await;
        }
        let mut uids = Vec::new();
        for ns in &sides {
            wait_pods(env, ns, "db", 3).await;
            uids.push(run_on_node(env, ns, "db-0").await);
            run_on_node(env, ns, "db-1").await;
        }
        let which = Webhooks {
            prefix: format!("stateward-differential-{profile}"),
            sets: vec![format!("policy.profile={profile}")],
            selector: json!({LABEL: format!("{profile}-webhook")}),
            api_versions: Vec::new(),
        };
        let mut proc = serve_with_webhooks(
            env,
            &format!("stateward-differential-{profile}"),
            &path,
            &which,
        )
        .await;
        for object in compiled.objects.iter().filter(|o| {
            o["kind"] == "ValidatingAdmissionPolicy" || o["kind"] == "MutatingAdmissionPolicy"
        }) {
            apply(env, object).await;
        }
        let mut bindings = bindings_for(&compiled.objects, &format!("{profile}-native"), None, "");
        for (i, name) in policies.iter().enumerate() {
            bindings.extend(bindings_for(
                &compiled.objects,
                &format!("{profile}-policy-{i}"),
                Some(name),
                &format!("-p{i}"),
            ));
        }
        for binding in &bindings {
            apply(env, binding).await;
        }
        // In effect on both sides: a 60-character name is denied by statefulset.name-length.
        let probe = statefulset(&"p".repeat(60), 1, "probe");
        let (probe, pp) = (&probe, &dry());
        for ns in [w.as_str(), n.as_str()] {
            wait_for(
                &format!("{ns} to deny a 60-character name"),
                Duration::from_secs(30),
                || async move {
                    let r = send(&env.admin, statefulsets(ns).create(pp, to_vec(probe))).await;
                    // The webhook lists every enforce rule; the API server names the first
                    // native policy that denies.
                    if denied(&r)
                        && (ns == n.as_str() || r.message().contains("statefulset.name-length"))
                    {
                        Ok(())
                    } else {
                        Err(r.to_string())
                    }
                },
            )
            .await;
        }

        // Each rule's namespace shows its warning for the violator, where the violator
        // breaks the rule on CREATE; the others were bound in the same breath.
        let violator = &violator();
        let probed = to_all(env, &env.admin, &sides[2..], |_, ns| {
            statefulsets(ns).create(&dry(), to_vec(violator))
        })
        .await;
        for (i, reply) in probed.iter().enumerate() {
            if reply.warnings.is_empty() {
                continue;
            }
            let (ns, name) = (&sides[i + 2], &policies[i]);
            wait_for(
                &format!("{ns} to warn for {name}"),
                Duration::from_secs(30),
                || async move {
                    let r = send(
                        &env.admin,
                        statefulsets(ns).create(&dry(), to_vec(violator)),
                    )
                    .await;
                    if r.warnings
                        .iter()
                        .any(|w| policy_rule(w).is_some_and(|(named, _)| &named == name))
                    {
                        Ok(())
                    } else {
                        Err(r.to_string())
                    }
                },
            )
            .await;
        }
        if compiled
            .native_mutations
            .contains(&RuleId::StatefulSetDefaultAntiAffinity)
        {
            let plain = &statefulset("plain", 1, "plain");
            // The policy namespaces only warn, so the mutated object comes back (N may deny it).
            for ns in sides.iter().skip(2) {
                wait_for(
                    &format!("{ns} to add the default anti-affinity"),
                    Duration::from_secs(30),
                    || async move {
                        let r =
                            send(&env.admin, statefulsets(ns).create(&dry(), to_vec(plain))).await;
                        if r.body["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
                            .is_object()
                        {
                            Ok(())
                        } else {
                            Err(r.to_string())
                        }
                    },
                )
                .await;
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;

        let mut tally = Tally::default();
        // CREATE: every document.
        for (what, value) in &docs {
            let kind = value["kind"].as_str().unwrap_or_default();
            tally.documents += 1;
            let replies = to_all(env, &env.admin, &sides, |_, ns| {
                collection(kind, ns)
                    .expect("kind")
                    .create(&dry(), to_vec(&for_namespace(value, ns)))
            })
            .await;
            let webhook = answer_webhook(&replies[0], &native);
            let answer = answer_native(&replies[1], &replies[2..], &policies, &deny);
            compare(
                &mut tally,
                &format!("{profile} CREATE {what}"),
                &webhook,
                &answer,
            );
        }

        // Excluded namespaces: a set every profile denies is admitted on both sides.
        let mut bad = statefulset("excluded", 1, "excluded");
        bad["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(0);
        let rw = send(
            &env.admin,
            statefulsets(&w_excl).create(&dry(), to_vec(&bad)),
        )
        .await;
        let rn = send(
            &env.admin,
            statefulsets(&n_excl).create(&dry(), to_vec(&bad)),
        )
        .await;
        tally.comparisons += 1;
        if rw.status != 201 || rn.status != 201 {
            tally.differences.push(format!(
                "{profile} excluded namespace: webhook {rw}, native {rn}"
            ));
        }

        // Skips: a skippable rule named in stateward.io/skip.
        let skippable: Vec<&String> = native
            .iter()
            .filter(|id| id.parse::<RuleId>().is_ok_and(|r| policy.skippable(r)))
            .collect();
        for id in &skippable {
            let mut doc = statefulset("skipper", 3, "skipper");
            doc["metadata"]["annotations"] =
                json!({"stateward.io/skip": format!("other.rule, {id}")});
            if let Some(c) = doc["spec"]["template"]["spec"]["containers"][0].as_object_mut() {
                c.remove("readinessProbe");
                c.remove("resources");
                c.remove("securityContext");
            }
            let replies = to_all(env, &env.admin, &sides, |_, ns| {
                statefulsets(ns).create(&dry(), to_vec(&for_namespace(&doc, ns)))
            })
            .await;
            compare(
                &mut tally,
                &format!("{profile} CREATE skipping {id}"),
                &answer_webhook(&replies[0], &native),
                &answer_native(&replies[1], &replies[2..], &policies, &deny),
            );
        }

        // Pods the StatefulSet controller would create: the identity labels.
        let owned = |name: &str, labels: Value| {
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {
                    "name": name, "labels": labels,
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db",
                        "uid": "00000000-0000-0000-0000-000000000001", "controller": true}]
                },
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}
            })
        };
        for (what, pod) in [
            ("pod db-7 of set db", owned("db-7", json!({"app": "db"}))),
            (
                "pod db-x of set db (no ordinal)",
                owned("db-x", json!({"app": "db"})),
            ),
            (
                "pod db-8 with its alias label set",
                owned("db-8", json!({"app": "db", ALIAS: "mine"})),
            ),
            ("pod db-9 without labels", {
                let mut p = owned("db-9", json!({}));
                if let Some(m) = p["metadata"].as_object_mut() {
                    m.remove("labels");
                }
                p
            }),
        ] {
            let replies = to_all(env, &env.admin, &sides, |_, ns| {
                pods(ns).create(&dry(), to_vec(&for_namespace(&pod, ns)))
            })
            .await;
            compare(
                &mut tally,
                &format!("{profile} CREATE {what}"),
                &answer_webhook(&replies[0], &native),
                &answer_native(&replies[1], &replies[2..], &policies, &deny),
            );
        }
        let patches: Vec<(&str, Value)> = vec![
            ("scale-down 3 -> 1", json!({"spec": {"replicas": 1}})),
            (
                "template change (rollout restart)",
                json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2026-12-05T00:00:00Z"}}}}}),
            ),
            (
                "template change to grace 0",
                json!({"spec": {"template": {"spec": {"terminationGracePeriodSeconds": 0}}}}),
            ),
            (
                "scale-up to 70 replicas of a long name",
                json!({"spec": {"replicas": 70}}),
            ),
        ];
        let pp = PatchParams {
            dry_run: true,
            ..PatchParams::default()
        };
        for (what, patch) in &patches {
            let replies = to_all(env, &env.admin, &sides, |_, ns| {
                statefulsets(ns).patch("db", &pp, &Patch::Merge(patch))
            })
            .await;
            compare(
                &mut tally,
                &format!("{profile} UPDATE {what}"),
                &answer_webhook(&replies[0], &native),
                &answer_native(&replies[1], &replies[2..], &policies, &deny),
            );
        }
        // Deletes of db-0 (scheduled, running), dry runs.
        let deletes: Vec<(&str, bool, Option<i64>)> = vec![
            ("graceful delete by a person", false, None),
            ("force delete by a person", false, Some(0)),
            ("force delete by its node", true, Some(0)),
        ];
        for (what, as_node, grace) in &deletes {
            let client = if *as_node { &env.kubelet } else { &env.admin };
            let replies = to_all(env, client, &sides, |i, ns| {
                let dp = DeleteParams {
                    dry_run: true,
                    grace_period_seconds: grace.map(|g| g as u32),
                    preconditions: as_node.then(|| Preconditions {
                        uid: Some(uids[i].clone()),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                pods(ns).delete("db-0", &dp)
            })
            .await;
            compare(
                &mut tally,
                &format!("{profile} DELETE {what}"),
                &answer_webhook(&replies[0], &native),
                &answer_native(&replies[1], &replies[2..], &policies, &deny),
            );
        }
        let annotate =
            json!({"metadata": {"annotations": {"stateward.io/allow-force-delete": "true"}}});
        for ns in &sides {
            let r = send(
                &env.admin,
                pods(ns).patch("db-1", &PatchParams::default(), &Patch::Merge(&annotate)),
            )
            .await;
            assert_eq!(r.status, 200, "annotate {ns}/db-1: {r}");
        }
        let replies = to_all(env, &env.admin, &sides, |_, ns| {
            let dp = DeleteParams {
                dry_run: true,
                grace_period_seconds: Some(0),
                ..DeleteParams::default()
            };
            pods(ns).delete("db-1", &dp)
        })
        .await;
        compare(
            &mut tally,
            &format!("{profile} DELETE force delete with the override annotation"),
            &answer_webhook(&replies[0], &native),
            &answer_native(&replies[1], &replies[2..], &policies, &deny),
        );

        say(
            c,
            format!(
                "{profile}: {} documents, {} comparisons, {} differences ({} refused by the webhook only for rules that did not compile)",
                tally.documents,
                tally.comparisons,
                tally.differences.len(),
                tally.left_to_webhook
            ),
        );
        for d in &tally.differences {
            say(c, format!("DIFFERENCE {d}"));
        }
        total.documents += tally.documents;
        total.comparisons += tally.comparisons;
        total.left_to_webhook += tally.left_to_webhook;
        total.differences.extend(tally.differences);
        unregister_webhooks(&env.admin, &which).await;
        delete_compiled(env).await;
        tokio::task::block_in_place(|| proc.stop());
    }
    say(
        c,
        format!(
            "total: {} documents, {} comparisons, {} differences",
            total.documents,
            total.comparisons,
            total.differences.len()
        ),
    );
    assert!(
        total.differences.is_empty(),
        "{} difference(s) between the webhook and the native policies:\n  - {}",
        total.differences.len(),
        total.differences.join("\n  - ")
    );
}
