//! The native policies against the engine, offline: the compiled StatefulSet
//! `ValidatingAdmissionPolicy` objects (`stateward::policy::native::compile`) are evaluated with a
//! CEL interpreter on the fixtures, the examples, the corpus (`STATEWARD_CORPUS`) and
//! hand-made cases, CREATE and UPDATE, and must decide per rule what the engine decides:
//! the same levels (deny, warn, audit) from the same rule, the advisory split included.
//! The object the policies see is the one the engine validated (after its mutations), as
//! the API server validates after its defaulting and mutating policies.
//!
//! The real API server runs the same policies in the end-to-end differential; this is the
//! fast, exhaustive check of the CEL each rule declares.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or bench may stop on a broken fixture
#[path = "support/tiers.rs"]
mod tiers;

#[path = "support/cel.rs"]
mod cel_support;
use cel_support::to_cel;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};
use stateward::commands::check::manifest::{documents, read_paths};
use stateward::policy::native::compile;
use stateward::policy::{
    Kind, Level, NoContext, Operation, Policy, Resource, Review, RuleId, Stage, evaluate_mut,
};

/// The Kubernetes CEL environment, as far as the compiled policies use it: the standard
/// library, the strings extension (`split`, `trim`, `join`, ...), the lists extension and
/// `matches` (RE2; the `regex` crate agrees on the anchored classes the rules use).
fn env() -> Arc<cel::Env> {
    let mut env = cel::Env::stdlib();
    env.add_extension(cel::extensions::strings)
        .expect("strings extension");
    env.add_extension(cel::extensions::lists)
        .expect("lists extension");
    Arc::new(env)
}

struct Check {
    /// The rule the check belongs to: its static message starts with the rule id.
    rule: RuleId,
    expression: String,
    program: cel::Program,
    message: cel::Program,
}

/// One compiled policy (every rule's checks on StatefulSets bound with one action) with
/// its binding.
struct Native {
    name: String,
    level: Level,
    operations: Vec<String>,
    excluded: Vec<String>,
    variables: Vec<(String, cel::Program)>,
    checks: Vec<Check>,
}

fn natives(policy: &Policy, env: &cel::Env) -> (Vec<Native>, Vec<RuleId>) {
    let compiled = compile(policy);
    let find = |kind: &str, name: &Value| {
        compiled
            .objects
            .iter()
            .find(|o| o["kind"] == kind && &o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    let program = |source: &str| {
        env.compile(source)
            .unwrap_or_else(|e| panic!("{source} does not compile: {e:?}"))
    };
    let mut out = Vec::new();
    for vap in compiled
        .objects
        .iter()
        .filter(|o| o["kind"] == "ValidatingAdmissionPolicy")
    {
        let name = &vap["metadata"]["name"];
        if vap["spec"]["matchConstraints"]["resourceRules"][0]["resources"][0] != "statefulsets" {
            continue;
        }
        assert!(
            vap["spec"].get("matchConditions").is_none(),
            "{name}: conditions are folded into the checks"
        );
        let binding = find("ValidatingAdmissionPolicyBinding", name);
        let level = match binding["spec"]["validationActions"][0].as_str() {
            Some("Deny") => Level::Enforce,
            Some("Warn") => Level::Warn,
            Some("Audit") => Level::Audit,
            other => panic!("{name}: action {other:?}"),
        };
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        };
        let selector = &binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"];
        assert_eq!(selector[0]["operator"], "NotIn", "{name}");
        out.push(Native {
            name: name.as_str().unwrap_or_default().to_owned(),
            level,
            operations: strings(&vap["spec"]["matchConstraints"]["resourceRules"][0]["operations"]),
            excluded: strings(&selector[0]["values"]),
            variables: vap["spec"]["variables"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap_or_default().to_owned(),
                        program(c["expression"].as_str().expect("expression")),
                    )
                })
                .collect(),
            checks: vap["spec"]["validations"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| {
                    let expression = v["expression"].as_str().expect("expression").to_owned();
                    let fallback = v["message"].as_str().expect("message");
                    let rule = fallback
                        .split_once(": ")
                        .and_then(|(id, _)| id.parse().ok())
                        .unwrap_or_else(|| panic!("{name}: no rule id in `{fallback}`"));
                    Check {
                        rule,
                        program: program(&expression),
                        expression,
                        message: program(v["messageExpression"].as_str().expect("message")),
                    }
                })
                .collect(),
        });
    }
    let native = compiled
        .native
        .into_iter()
        .filter(|id| id.info().kind == Kind::StatefulSet)
        .collect();
    (out, native)
}

/// What one side decided for one rule: the levels of its findings.
type Levels = BTreeSet<Level>;

/// The native policies' answer per rule on one request, or the first evaluation error.
fn native_answer(
    natives: &[Native],
    env: &Arc<cel::Env>,
    review: &Review,
    object: &Value,
    old: &Value,
) -> Result<HashMap<RuleId, Levels>, String> {
    let mut context = cel::Context::with_env(Arc::clone(env));
    context.add_variable_from_value("object", to_cel(object));
    context.add_variable_from_value("oldObject", to_cel(old));
    let request = json!({
        "operation": review.operation.as_str(),
        "namespace": review.namespace,
        "name": review.name,
        "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
    });
    context.add_variable_from_value("request", to_cel(&request));
    let mut answer: HashMap<RuleId, Levels> = HashMap::new();
    for native in natives {
        if native.excluded.contains(&review.namespace)
            || !native
                .operations
                .iter()
                .any(|op| op == review.operation.as_str())
        {
            continue;
        }
        // The policy's variables, in order (each may read the ones before).
        let mut variables: HashMap<String, cel::Value> = HashMap::new();
        for (name, program) in &native.variables {
            let mut scope = context.new_inner_scope();
            scope.add_variable_from_value("variables", variables.clone());
            let value = program
                .execute(&scope)
                .map_err(|e| format!("{}: variable {name}: {e:?}", native.name))?;
            variables.insert(name.clone(), value);
        }
        let mut scope = context.new_inner_scope();
        scope.add_variable_from_value("variables", variables);
        for check in &native.checks {
            match check.program.execute(&scope) {
                Ok(cel::Value::Bool(true)) => {}
                Ok(cel::Value::Bool(false)) => {
                    match check.message.execute(&scope) {
                        // The API server drops a message with a line break, and the rule
                        // id with it; the message names the check's own rule.
                        Ok(cel::Value::String(text))
                            if !text.contains(['\n', '\r'])
                                && text.starts_with(&format!("{}: ", check.rule)) => {}
                        other => {
                            return Err(format!(
                                "{}: the message of `{}` gave {other:?}",
                                native.name, check.expression
                            ));
                        }
                    }
                    answer.entry(check.rule).or_default().insert(native.level);
                }
                other => {
                    return Err(format!(
                        "{}: `{}` gave {other:?}",
                        native.name, check.expression
                    ));
                }
            }
        }
    }
    Ok(answer)
}

struct Case {
    name: String,
    review: Review,
}

fn create(name: impl Into<String>, value: &Value) -> Option<Case> {
    let resource = Resource::decode(Kind::StatefulSet, value).ok()?;
    Some(Case {
        name: name.into(),
        review: Review::create(resource),
    })
}

fn update(name: impl Into<String>, old: &Value, new: &Value) -> Option<Case> {
    let old = Resource::decode(Kind::StatefulSet, old).ok()?;
    let new = Resource::decode(Kind::StatefulSet, new).ok()?;
    Some(Case {
        name: name.into(),
        review: Review::update(old, new),
    })
}

fn with(mut value: Value, pointer: &str, new: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer");
    let mut target = &mut value;
    for part in parent.split('/').skip(1) {
        let next = if target.is_array() {
            &mut target[part.parse::<usize>().expect("index")]
        } else {
            if target.get(part).is_none() {
                target[part] = json!({});
            }
            &mut target[part]
        };
        target = next;
    }
    if new.is_null() {
        if let Some(map) = target.as_object_mut() {
            map.remove(key);
        }
    } else if let Some(items) = target.as_array_mut() {
        let index = key.parse::<usize>().expect("index");
        if index == items.len() {
            items.push(new);
        } else {
            items[index] = new;
        }
    } else {
        target[key] = new;
    }
    value
}

/// The StatefulSets of YAML files (apps/v1, decodable).
fn statefulsets(files: &[PathBuf]) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for file in files {
        let (sources, _) = read_paths(std::slice::from_ref(file));
        for doc in sources.iter().flat_map(documents) {
            let Ok(value) = doc.value else { continue };
            if value["kind"] != "StatefulSet" || value["apiVersion"] != "apps/v1" {
                continue;
            }
            if Resource::decode(Kind::StatefulSet, &value).is_err() {
                continue;
            }
            out.push((format!("{} #{}", file.display(), doc.index), value));
        }
    }
    out
}

/// `value` as the API server holds it (Go's `omitempty`): no nulls, no empty lists and no
/// empty maps (an empty struct, such as `securityContext: {}`, stays).
fn k8s_shape(value: &Value) -> Value {
    const MAPS: [&str; 6] = [
        "labels",
        "annotations",
        "matchLabels",
        "requests",
        "limits",
        "nodeSelector",
    ];
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(key, v)| match v {
                    Value::Null => false,
                    Value::Array(items) => !items.is_empty(),
                    Value::Object(inner) => !(inner.is_empty() && MAPS.contains(&key.as_str())),
                    _ => true,
                })
                .map(|(key, v)| (key.clone(), k8s_shape(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(k8s_shape).collect()),
        other => other.clone(),
    }
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("directory") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// A complete set every rule passes under the baseline, to vary.
fn base() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": "ns"},
        "spec": {
            "replicas": 3,
            "serviceName": "web",
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web", "tier": "db"}},
                "spec": {
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {"runAsNonRoot": true},
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                        "weight": 100,
                        "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}
                    }]}},
                    "initContainers": [{
                        "name": "init", "image": "busybox",
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "16Mi", "cpu": "1"}},
                        "securityContext": {"allowPrivilegeEscalation": false}
                    }],
                    "containers": [{
                        "name": "app", "image": "example/app:1",
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "config", "mountPath": "/etc/app"}],
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi", "cpu": "1"}},
                        "securityContext": {"allowPrivilegeEscalation": false}
                    }],
                    "volumes": [{"name": "config", "configMap": {"name": "web"}}]
                }
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard",
                         "resources": {"requests": {"storage": "1Gi"}}}
            }]
        }
    })
}

/// Hand-made cases: each rule's edges (defaults, inheritance, operators, the advisory
/// split), one change from [`base`] at a time unless said.
fn edge_cases() -> Vec<Case> {
    const POD: &str = "/spec/template/spec";
    let b = base;
    let long = "a".repeat(52);
    let mut values: Vec<(String, Value)> = vec![
        ("base".into(), b()),
        (
            "name 53 chars".into(),
            with(b(), "/metadata/name", json!("a".repeat(53))),
        ),
        (
            "name 52 chars, 3 replicas (pod name 54)".into(),
            with(b(), "/metadata/name", json!(long.clone())),
        ),
        (
            "name 52 chars, replicas unset".into(),
            with(
                with(b(), "/metadata/name", json!(long.clone())),
                "/spec/replicas",
                Value::Null,
            ),
        ),
        (
            "name 52 chars, 0 replicas".into(),
            with(
                with(b(), "/metadata/name", json!(long.clone())),
                "/spec/replicas",
                json!(0),
            ),
        ),
        (
            "name 52 chars, 1 replica".into(),
            with(
                with(b(), "/metadata/name", json!(long.clone())),
                "/spec/replicas",
                json!(1),
            ),
        ),
        (
            "name 60 chars, 10 replicas".into(),
            with(
                with(b(), "/metadata/name", json!("a".repeat(51))),
                "/spec/replicas",
                json!(10),
            ),
        ),
        (
            "name 51, 1 replica, start 100".into(),
            with(
                with(
                    with(b(), "/metadata/name", json!("a".repeat(51))),
                    "/spec/replicas",
                    json!(1),
                ),
                "/spec/ordinals",
                json!({"start": 100}),
            ),
        ),
        (
            "name 51, 1 replica, ordinals without start".into(),
            with(
                with(
                    with(b(), "/metadata/name", json!("a".repeat(51))),
                    "/spec/replicas",
                    json!(1),
                ),
                "/spec/ordinals",
                json!({}),
            ),
        ),
        (
            "name 51, 2 replicas, start 9".into(),
            with(
                with(
                    with(b(), "/metadata/name", json!("a".repeat(51))),
                    "/spec/replicas",
                    json!(2),
                ),
                "/spec/ordinals",
                json!({"start": 9}),
            ),
        ),
        (
            "name 51, negative replicas".into(),
            with(
                with(b(), "/metadata/name", json!("a".repeat(51))),
                "/spec/replicas",
                json!(-1),
            ),
        ),
        (
            "no serviceName".into(),
            with(b(), "/spec/serviceName", Value::Null),
        ),
        (
            "empty serviceName".into(),
            with(b(), "/spec/serviceName", json!("")),
        ),
        (
            "serviceName upper case".into(),
            with(b(), "/spec/serviceName", json!("Web")),
        ),
        (
            "serviceName dotted".into(),
            with(b(), "/spec/serviceName", json!("web.db")),
        ),
        (
            "serviceName leading dash".into(),
            with(b(), "/spec/serviceName", json!("-web")),
        ),
        (
            "serviceName trailing dash".into(),
            with(b(), "/spec/serviceName", json!("web-")),
        ),
        (
            "serviceName 63".into(),
            with(b(), "/spec/serviceName", json!("s".repeat(63))),
        ),
        (
            "serviceName 64".into(),
            with(b(), "/spec/serviceName", json!("s".repeat(64))),
        ),
        (
            "serviceName digits".into(),
            with(b(), "/spec/serviceName", json!("0-9")),
        ),
        (
            "serviceName unicode".into(),
            with(b(), "/spec/serviceName", json!("wéb")),
        ),
        (
            "serviceName newline".into(),
            with(b(), "/spec/serviceName", json!("web\n")),
        ),
        (
            "selector empty".into(),
            with(b(), "/spec/selector", json!({})),
        ),
        (
            "selector empty lists".into(),
            with(
                b(),
                "/spec/selector",
                json!({"matchLabels": {}, "matchExpressions": []}),
            ),
        ),
        (
            "selector misses".into(),
            with(
                b(),
                "/spec/selector",
                json!({"matchLabels": {"app": "other"}}),
            ),
        ),
        (
            "selector, no template labels".into(),
            with(b(), "/spec/template/metadata", Value::Null),
        ),
        (
            "selector, template labels empty".into(),
            with(b(), "/spec/template/metadata/labels", json!({})),
        ),
        (
            "selector In".into(),
            with(
                b(),
                "/spec/selector",
                json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "x"]}]}),
            ),
        ),
        (
            "selector In misses".into(),
            with(
                b(),
                "/spec/selector",
                json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["x"]}]}),
            ),
        ),
        (
            "selector In no values".into(),
            with(
                b(),
                "/spec/selector",
                json!({"matchExpressions": [{"key": "app", "operator": "In"}]}),
            ),
        ),
        (
            "selector In empty values".into(),
            with(
                b(),
                "/spec/selector",
                json!({"matchExpressions": [{"key": "app", "operator": "In", "values": []}]}),
            ),
        ),
        (
            "selector NotIn".into(),
            with(
                b(),
                "/spec/selector",
                json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["x"]}]}),
            ),
        ),
        (
            "selector NotIn hits".into(),
            with(
                b(),
                "/spec/selector",
                json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}),
            ),
        ),
        (
            "selector NotIn absent key".into(),
            with(
                b(),
                "/spec/selector",
                json!({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}),
            ),
        ),
        (
            "selector NotIn no values".into(),
            with(
                b(),
                "/spec/selector",
                json!({"matchExpressions": [{"key": "zone", "operator": "NotIn"}]}),
            ),
        ),
        (
            "selector NotIn empty values".into(),
            with(
                b(),
                "/spec/selector",
                json!({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": []}]}),
            ),
        ),
        (
            "selector Exists".into(),
            with(
                b(),
                "/spec/selector",
                json!({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}),
            ),
        ),
        (
            "selector Exists misses".into(),
            with(
                b(),
                "/spec/selector",
                json!({"matchExpressions": [{"key": "zone", "operator": "Exists"}]}),
            ),
        ),
        (
            "selector DoesNotExist".into(),
            with(
                b(),
                "/spec/selector",
                json!({"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}),
            ),
        ),
        (
            "selector DoesNotExist hits".into(),
            with(
                b(),
                "/spec/selector",
                json!({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}),
            ),
        ),
        (
            "selector unknown operator".into(),
            with(
                b(),
                "/spec/selector",
                json!({"matchExpressions": [{"key": "app", "operator": "Equals", "values": ["web"]}]}),
            ),
        ),
        (
            "selector labels and expressions".into(),
            with(
                b(),
                "/spec/selector",
                json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["db"]}]}),
            ),
        ),
        (
            "selector labels and failing expression".into(),
            with(
                b(),
                "/spec/selector",
                json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]}),
            ),
        ),
        (
            "claim unused".into(),
            with(
                with(
                    b(),
                    &format!("{POD}/containers/0/volumeMounts/0/name"),
                    json!("config"),
                ),
                &format!("{POD}/initContainers/0/volumeMounts/0/name"),
                json!("config"),
            ),
        ),
        (
            "claim used by init only".into(),
            with(
                b(),
                &format!("{POD}/containers/0/volumeMounts/0/name"),
                json!("config"),
            ),
        ),
        (
            "claim used as a device".into(),
            with(
                with(
                    with(
                        b(),
                        &format!("{POD}/containers/0/volumeMounts/0/name"),
                        json!("config"),
                    ),
                    &format!("{POD}/initContainers/0/volumeMounts"),
                    Value::Null,
                ),
                &format!("{POD}/containers/0/volumeDevices"),
                json!([{"name": "data", "devicePath": "/dev/xvda"}]),
            ),
        ),
        (
            "block claim unused".into(),
            with(
                with(
                    with(
                        b(),
                        &format!("{POD}/containers/0/volumeMounts/0/name"),
                        json!("config"),
                    ),
                    &format!("{POD}/initContainers/0/volumeMounts"),
                    Value::Null,
                ),
                "/spec/volumeClaimTemplates/0/spec/volumeMode",
                json!("Block"),
            ),
        ),
        (
            "mount of nothing".into(),
            with(
                b(),
                &format!("{POD}/containers/0/volumeMounts/1/name"),
                json!("nope"),
            ),
        ),
        (
            "init mount of nothing".into(),
            with(
                b(),
                &format!("{POD}/initContainers/0/volumeMounts/0/name"),
                json!("nope"),
            ),
        ),
        (
            "device of nothing".into(),
            with(
                b(),
                &format!("{POD}/containers/0/volumeDevices"),
                json!([{"name": "nope", "devicePath": "/dev/x"}]),
            ),
        ),
        (
            "no volumes, mount of config".into(),
            with(b(), &format!("{POD}/volumes"), Value::Null),
        ),
        (
            "no claim templates".into(),
            with(
                with(
                    with(b(), "/spec/volumeClaimTemplates", Value::Null),
                    &format!("{POD}/containers/0/volumeMounts"),
                    Value::Null,
                ),
                &format!("{POD}/initContainers/0/volumeMounts"),
                Value::Null,
            ),
        ),
        (
            "no claim templates, mount of data".into(),
            with(b(), "/spec/volumeClaimTemplates", Value::Null),
        ),
        (
            "claim template without name".into(),
            with(b(), "/spec/volumeClaimTemplates/0/metadata", json!({})),
        ),
        (
            "claim template without metadata".into(),
            with(b(), "/spec/volumeClaimTemplates/0/metadata", Value::Null),
        ),
        (
            "claim template without name, mount of empty name".into(),
            with(
                with(b(), "/spec/volumeClaimTemplates/0/metadata", json!({})),
                &format!("{POD}/containers/0/volumeMounts/0/name"),
                json!(""),
            ),
        ),
        (
            "empty mounts lists".into(),
            with(
                with(b(), &format!("{POD}/containers/0/volumeMounts"), json!([])),
                &format!("{POD}/initContainers/0/volumeMounts"),
                json!([]),
            ),
        ),
        (
            "no storage size".into(),
            with(
                b(),
                "/spec/volumeClaimTemplates/0/spec/resources",
                Value::Null,
            ),
        ),
        (
            "storage requests without storage".into(),
            with(
                b(),
                "/spec/volumeClaimTemplates/0/spec/resources/requests",
                json!({"cpu": "1"}),
            ),
        ),
        (
            "no accessModes".into(),
            with(
                b(),
                "/spec/volumeClaimTemplates/0/spec/accessModes",
                Value::Null,
            ),
        ),
        (
            "empty accessModes".into(),
            with(
                b(),
                "/spec/volumeClaimTemplates/0/spec/accessModes",
                json!([]),
            ),
        ),
        (
            "claim template without spec".into(),
            with(b(), "/spec/volumeClaimTemplates/0/spec", Value::Null),
        ),
        (
            "no storage class".into(),
            with(
                b(),
                "/spec/volumeClaimTemplates/0/spec/storageClassName",
                Value::Null,
            ),
        ),
        (
            "empty storage class".into(),
            with(
                b(),
                "/spec/volumeClaimTemplates/0/spec/storageClassName",
                json!(""),
            ),
        ),
        (
            "storage class fast".into(),
            with(
                b(),
                "/spec/volumeClaimTemplates/0/spec/storageClassName",
                json!("fast"),
            ),
        ),
        (
            "storage class other".into(),
            with(
                b(),
                "/spec/volumeClaimTemplates/0/spec/storageClassName",
                json!("other"),
            ),
        ),
        (
            "legacy class annotation".into(),
            with(
                with(
                    b(),
                    "/spec/volumeClaimTemplates/0/spec/storageClassName",
                    Value::Null,
                ),
                "/spec/volumeClaimTemplates/0/metadata/annotations",
                json!({"volume.beta.kubernetes.io/storage-class": "fast"}),
            ),
        ),
        (
            "legacy class annotation other".into(),
            with(
                with(
                    b(),
                    "/spec/volumeClaimTemplates/0/spec/storageClassName",
                    Value::Null,
                ),
                "/spec/volumeClaimTemplates/0/metadata/annotations",
                json!({"volume.beta.kubernetes.io/storage-class": "other"}),
            ),
        ),
        (
            "class beats annotation".into(),
            with(
                b(),
                "/spec/volumeClaimTemplates/0/metadata/annotations",
                json!({"volume.beta.kubernetes.io/storage-class": "other"}),
            ),
        ),
        (
            "ReadWriteMany".into(),
            with(
                b(),
                "/spec/volumeClaimTemplates/0/spec/accessModes",
                json!(["ReadWriteOnce", "ReadWriteMany"]),
            ),
        ),
        (
            "ReadOnlyMany".into(),
            with(
                b(),
                "/spec/volumeClaimTemplates/0/spec/accessModes",
                json!(["ReadOnlyMany"]),
            ),
        ),
        (
            "ReadWriteOncePod".into(),
            with(
                b(),
                "/spec/volumeClaimTemplates/0/spec/accessModes",
                json!(["ReadWriteOncePod"]),
            ),
        ),
        (
            "grace 0".into(),
            with(
                b(),
                &format!("{POD}/terminationGracePeriodSeconds"),
                json!(0),
            ),
        ),
        (
            "grace unset".into(),
            with(
                b(),
                &format!("{POD}/terminationGracePeriodSeconds"),
                Value::Null,
            ),
        ),
        (
            "grace 5".into(),
            with(
                b(),
                &format!("{POD}/terminationGracePeriodSeconds"),
                json!(5),
            ),
        ),
        (
            "grace 10".into(),
            with(
                b(),
                &format!("{POD}/terminationGracePeriodSeconds"),
                json!(10),
            ),
        ),
        (
            "grace 600".into(),
            with(
                b(),
                &format!("{POD}/terminationGracePeriodSeconds"),
                json!(600),
            ),
        ),
        (
            "grace 601".into(),
            with(
                b(),
                &format!("{POD}/terminationGracePeriodSeconds"),
                json!(601),
            ),
        ),
        (
            "no pod spec".into(),
            with(b(), "/spec/template/spec", Value::Null),
        ),
        (
            "no readiness".into(),
            with(
                b(),
                &format!("{POD}/containers/0/readinessProbe"),
                Value::Null,
            ),
        ),
        (
            "same probes".into(),
            with(
                b(),
                &format!("{POD}/containers/0/livenessProbe"),
                json!({"httpGet": {"path": "/ready", "port": 8080}}),
            ),
        ),
        (
            "probes differ in port type".into(),
            with(
                b(),
                &format!("{POD}/containers/0/livenessProbe"),
                json!({"httpGet": {"path": "/ready", "port": "8080"}}),
            ),
        ),
        (
            "probes differ in a default".into(),
            with(
                b(),
                &format!("{POD}/containers/0/livenessProbe"),
                json!({"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 10}),
            ),
        ),
        (
            "readiness only".into(),
            with(
                b(),
                &format!("{POD}/containers/0/livenessProbe"),
                Value::Null,
            ),
        ),
        (
            "init without probe, second app container".into(),
            with(
                b(),
                &format!("{POD}/containers/1"),
                json!({"name": "side", "image": "x", "readinessProbe": {"exec": {"command": ["true"]}}, "livenessProbe": {"exec": {"command": ["true"]}}}),
            ),
        ),
        (
            "no requests".into(),
            with(b(), &format!("{POD}/containers/0/resources"), Value::Null),
        ),
        (
            "no memory request".into(),
            with(
                b(),
                &format!("{POD}/containers/0/resources/requests"),
                json!({"cpu": "1"}),
            ),
        ),
        (
            "init without requests".into(),
            with(
                b(),
                &format!("{POD}/initContainers/0/resources/requests"),
                Value::Null,
            ),
        ),
        (
            "no memory limit".into(),
            with(
                b(),
                &format!("{POD}/containers/0/resources/limits"),
                json!({"cpu": "1"}),
            ),
        ),
        (
            "no cpu limit".into(),
            with(
                b(),
                &format!("{POD}/containers/0/resources/limits"),
                json!({"memory": "1Gi"}),
            ),
        ),
        (
            "init without limits".into(),
            with(
                b(),
                &format!("{POD}/initContainers/0/resources/limits"),
                Value::Null,
            ),
        ),
        (
            "no anti-affinity".into(),
            with(b(), &format!("{POD}/affinity"), Value::Null),
        ),
        (
            "no anti-affinity, 1 replica".into(),
            with(
                with(b(), &format!("{POD}/affinity"), Value::Null),
                "/spec/replicas",
                json!(1),
            ),
        ),
        (
            "no anti-affinity, replicas unset".into(),
            with(
                with(b(), &format!("{POD}/affinity"), Value::Null),
                "/spec/replicas",
                Value::Null,
            ),
        ),
        (
            "anti-affinity on zone".into(),
            with(
                b(),
                &format!(
                    "{POD}/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution/0/podAffinityTerm/topologyKey"
                ),
                json!("topology.kubernetes.io/zone"),
            ),
        ),
        (
            "required anti-affinity".into(),
            with(
                b(),
                &format!("{POD}/affinity/podAntiAffinity"),
                json!({"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}),
            ),
        ),
        (
            "spread on zone".into(),
            with(
                with(b(), &format!("{POD}/affinity"), Value::Null),
                &format!("{POD}/topologySpreadConstraints"),
                json!([{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": "web"}}}]),
            ),
        ),
        (
            "spread on hostname".into(),
            with(
                with(b(), &format!("{POD}/affinity"), Value::Null),
                &format!("{POD}/topologySpreadConstraints"),
                json!([{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway"}]),
            ),
        ),
        (
            "affinity without anti".into(),
            with(b(), &format!("{POD}/affinity"), json!({"nodeAffinity": {}})),
        ),
        (
            "anti-affinity selects other".into(),
            with(
                b(),
                &format!(
                    "{POD}/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution/0/podAffinityTerm/labelSelector"
                ),
                json!({"matchLabels": {"app": "other"}}),
            ),
        ),
        (
            "anti-affinity without selector".into(),
            with(
                b(),
                &format!(
                    "{POD}/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution/0/podAffinityTerm/labelSelector"
                ),
                Value::Null,
            ),
        ),
        (
            "anti-affinity empty selector".into(),
            with(
                b(),
                &format!(
                    "{POD}/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution/0/podAffinityTerm/labelSelector"
                ),
                json!({}),
            ),
        ),
        (
            "anti-affinity expression".into(),
            with(
                b(),
                &format!(
                    "{POD}/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution/0/podAffinityTerm/labelSelector"
                ),
                json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["zk"]}]}),
            ),
        ),
        (
            "anti-affinity other namespace".into(),
            with(
                with(
                    b(),
                    &format!(
                        "{POD}/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution/0/podAffinityTerm/labelSelector"
                    ),
                    json!({"matchLabels": {"app": "other"}}),
                ),
                &format!(
                    "{POD}/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution/0/podAffinityTerm/namespaces"
                ),
                json!(["elsewhere"]),
            ),
        ),
        (
            "anti-affinity own namespace listed".into(),
            with(
                with(
                    b(),
                    &format!(
                        "{POD}/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution/0/podAffinityTerm/labelSelector"
                    ),
                    json!({"matchLabels": {"app": "other"}}),
                ),
                &format!(
                    "{POD}/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution/0/podAffinityTerm/namespaces"
                ),
                json!(["elsewhere", "ns"]),
            ),
        ),
        (
            "anti-affinity namespace selector".into(),
            with(
                with(
                    b(),
                    &format!(
                        "{POD}/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution/0/podAffinityTerm/labelSelector"
                    ),
                    json!({"matchLabels": {"app": "other"}}),
                ),
                &format!(
                    "{POD}/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution/0/podAffinityTerm/namespaceSelector"
                ),
                json!({}),
            ),
        ),
        (
            "anti-affinity one of two selects self".into(),
            with(
                b(),
                &format!(
                    "{POD}/affinity/podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution"
                ),
                json!([{"labelSelector": {"matchLabels": {"app": "other"}}, "topologyKey": "kubernetes.io/hostname"}]),
            ),
        ),
        (
            "anti-affinity two miss".into(),
            with(
                with(
                    b(),
                    &format!(
                        "{POD}/affinity/podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution"
                    ),
                    json!([{"labelSelector": {"matchLabels": {"app": "other"}}, "topologyKey": "kubernetes.io/hostname"}]),
                ),
                &format!(
                    "{POD}/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution/0/podAffinityTerm/labelSelector"
                ),
                json!({"matchLabels": {"app": "x"}}),
            ),
        ),
        (
            "OnDelete".into(),
            with(b(), "/spec/updateStrategy", json!({"type": "OnDelete"})),
        ),
        (
            "OnDelete with partition above".into(),
            with(
                b(),
                "/spec/updateStrategy",
                json!({"type": "OnDelete", "rollingUpdate": {"partition": 9}}),
            ),
        ),
        (
            "partition above replicas".into(),
            with(
                b(),
                "/spec/updateStrategy/rollingUpdate/partition",
                json!(4),
            ),
        ),
        (
            "partition equal to replicas".into(),
            with(
                b(),
                "/spec/updateStrategy/rollingUpdate/partition",
                json!(3),
            ),
        ),
        (
            "partition 2, replicas unset".into(),
            with(
                with(
                    b(),
                    "/spec/updateStrategy/rollingUpdate/partition",
                    json!(2),
                ),
                "/spec/replicas",
                Value::Null,
            ),
        ),
        (
            "maxUnavailable, OrderedReady".into(),
            with(
                b(),
                "/spec/updateStrategy/rollingUpdate/maxUnavailable",
                json!(2),
            ),
        ),
        (
            "maxUnavailable percent, policy unset".into(),
            with(
                with(
                    b(),
                    "/spec/updateStrategy/rollingUpdate/maxUnavailable",
                    json!("50%"),
                ),
                "/spec/podManagementPolicy",
                Value::Null,
            ),
        ),
        (
            "maxUnavailable, Parallel".into(),
            with(
                with(
                    b(),
                    "/spec/updateStrategy/rollingUpdate/maxUnavailable",
                    json!(2),
                ),
                "/spec/podManagementPolicy",
                json!("Parallel"),
            ),
        ),
        (
            "no updateStrategy".into(),
            with(b(), "/spec/updateStrategy", Value::Null),
        ),
        (
            "updateStrategy without type".into(),
            with(
                b(),
                "/spec/updateStrategy",
                json!({"rollingUpdate": {"partition": 7}}),
            ),
        ),
        (
            "no security contexts".into(),
            with(
                with(
                    with(b(), &format!("{POD}/securityContext"), Value::Null),
                    &format!("{POD}/containers/0/securityContext"),
                    Value::Null,
                ),
                &format!("{POD}/initContainers/0/securityContext"),
                Value::Null,
            ),
        ),
        (
            "no pod runAsNonRoot".into(),
            with(b(), &format!("{POD}/securityContext"), Value::Null),
        ),
        (
            "pod runAsNonRoot false".into(),
            with(
                b(),
                &format!("{POD}/securityContext/runAsNonRoot"),
                json!(false),
            ),
        ),
        (
            "container runAsNonRoot only".into(),
            with(
                with(b(), &format!("{POD}/securityContext"), Value::Null),
                &format!("{POD}/containers/0/securityContext/runAsNonRoot"),
                json!(true),
            ),
        ),
        (
            "container runAsNonRoot false overrides pod".into(),
            with(
                b(),
                &format!("{POD}/containers/0/securityContext/runAsNonRoot"),
                json!(false),
            ),
        ),
        (
            "container and init runAsNonRoot".into(),
            with(
                with(
                    with(b(), &format!("{POD}/securityContext"), Value::Null),
                    &format!("{POD}/containers/0/securityContext/runAsNonRoot"),
                    json!(true),
                ),
                &format!("{POD}/initContainers/0/securityContext/runAsNonRoot"),
                json!(true),
            ),
        ),
        (
            "privilege escalation true".into(),
            with(
                b(),
                &format!("{POD}/containers/0/securityContext/allowPrivilegeEscalation"),
                json!(true),
            ),
        ),
        (
            "init privilege escalation unset".into(),
            with(
                b(),
                &format!("{POD}/initContainers/0/securityContext"),
                json!({}),
            ),
        ),
        (
            "no init containers".into(),
            with(b(), &format!("{POD}/initContainers"), Value::Null),
        ),
        (
            "empty init containers".into(),
            with(b(), &format!("{POD}/initContainers"), json!([])),
        ),
        (
            "skipped rules".into(),
            with(
                with(
                    with(
                        b(),
                        "/metadata/annotations",
                        json!({"stateward.io/skip": "statefulset.security-context, statefulset.readiness-probe,statefulset.name-length"}),
                    ),
                    &format!("{POD}/securityContext"),
                    Value::Null,
                ),
                &format!("{POD}/containers/0/readinessProbe"),
                Value::Null,
            ),
        ),
        (
            "skipped, another rule".into(),
            with(
                with(
                    b(),
                    "/metadata/annotations",
                    json!({"stateward.io/skip": "statefulset.resources"}),
                ),
                &format!("{POD}/securityContext"),
                Value::Null,
            ),
        ),
        (
            "excluded namespace".into(),
            with(
                with(b(), "/metadata/namespace", json!("kube-system")),
                "/spec/selector",
                json!({"matchLabels": {"app": "other"}}),
            ),
        ),
        (
            "no namespace".into(),
            with(
                with(b(), "/metadata/namespace", Value::Null),
                &format!(
                    "{POD}/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution/0/podAffinityTerm/namespaces"
                ),
                json!(["default"]),
            ),
        ),
        (
            "bare".into(),
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "bare"}, "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}}),
        ),
        (
            "bare, no labels".into(),
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "bare"}, "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}}),
        ),
        ("no name".into(), with(b(), "/metadata/name", Value::Null)),
    ];
    // Every combination of two single changes among a few that touch different rules.
    let pairs = [
        ("/spec/replicas".to_owned(), json!(1)),
        (format!("{POD}/affinity"), Value::Null),
        (format!("{POD}/containers/0/securityContext"), Value::Null),
        (
            "/spec/volumeClaimTemplates/0/spec/storageClassName".to_owned(),
            Value::Null,
        ),
        (
            "/spec/updateStrategy/rollingUpdate/partition".to_owned(),
            json!(2),
        ),
    ];
    for (i, (p1, v1)) in pairs.iter().enumerate() {
        for (p2, v2) in pairs.iter().skip(i + 1) {
            values.push((
                format!("{p1} and {p2}"),
                with(with(b(), p1, v1.clone()), p2, v2.clone()),
            ));
        }
    }
    let mut cases: Vec<Case> = values
        .iter()
        .map(|(name, value)| {
            create(format!("edge: {name}"), value)
                .unwrap_or_else(|| panic!("edge case {name} does not decode"))
        })
        .collect();
    // UPDATE: scale-down and rollouts.
    let set = |replicas: Value| with(b(), "/spec/replicas", replicas);
    let ready = |value: Value, ready: i64| {
        with(
            value,
            "/status",
            json!({"replicas": 3, "readyReplicas": ready}),
        )
    };
    let changed = |value: Value| {
        with(
            value,
            &format!("{POD}/containers/0/image"),
            json!("example/app:2"),
        )
    };
    let updates = vec![
        ("scale 5->3", set(json!(5)), set(json!(3))),
        ("scale 3->5", set(json!(3)), set(json!(5))),
        ("scale 3->3", set(json!(3)), set(json!(3))),
        ("scale 3->0", set(json!(3)), set(json!(0))),
        ("scale 3->unset", set(json!(3)), set(Value::Null)),
        ("scale unset->0", set(Value::Null), set(json!(0))),
        ("scale 0->-1", set(json!(0)), set(json!(-1))),
        ("scale 2->-1", set(json!(2)), set(json!(-1))),
        (
            "scale 5->3, whenScaled Delete",
            set(json!(5)),
            with(
                set(json!(3)),
                "/spec/persistentVolumeClaimRetentionPolicy",
                json!({"whenScaled": "Delete"}),
            ),
        ),
        (
            "scale 5->3, whenScaled Retain",
            set(json!(5)),
            with(
                set(json!(3)),
                "/spec/persistentVolumeClaimRetentionPolicy",
                json!({"whenScaled": "Retain"}),
            ),
        ),
        (
            "scale 5->3, retention policy without whenScaled",
            set(json!(5)),
            with(
                set(json!(3)),
                "/spec/persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Delete"}),
            ),
        ),
        (
            "scale 5->3, no claim templates",
            with(set(json!(5)), "/spec/volumeClaimTemplates", Value::Null),
            with(set(json!(3)), "/spec/volumeClaimTemplates", Value::Null),
        ),
        (
            "scale 5->3, unnamed claim template",
            set(json!(5)),
            with(
                set(json!(3)),
                "/spec/volumeClaimTemplates/0/metadata",
                json!({}),
            ),
        ),
        ("template change, 1 of 3 ready", ready(b(), 1), changed(b())),
        ("template change, 3 of 3 ready", ready(b(), 3), changed(b())),
        ("template change, no status", b(), changed(b())),
        (
            "template change, status without readyReplicas",
            with(b(), "/status", json!({"replicas": 3})),
            changed(b()),
        ),
        (
            "template change, Parallel",
            ready(b(), 1),
            with(changed(b()), "/spec/podManagementPolicy", json!("Parallel")),
        ),
        (
            "template change, OnDelete",
            ready(b(), 1),
            with(
                changed(b()),
                "/spec/updateStrategy",
                json!({"type": "OnDelete"}),
            ),
        ),
        (
            "template change, strategy without type",
            ready(b(), 1),
            with(changed(b()), "/spec/updateStrategy", json!({})),
        ),
        (
            "template change, old replicas unset",
            ready(set(Value::Null), 0),
            changed(b()),
        ),
        (
            "no template change, 1 of 3 ready",
            ready(b(), 1),
            set(json!(4)),
        ),
        (
            "label change, 0 ready",
            ready(b(), 0),
            with(b(), "/spec/template/metadata/labels/v", json!("2")),
        ),
    ];
    for (name, old, new) in updates {
        cases.push(
            update(format!("edge: {name}"), &old, &new)
                .unwrap_or_else(|| panic!("edge case {name} does not decode")),
        );
    }
    cases
}

/// A policy that enforces every StatefulSet admission rule, with every parameter set: its
/// levels tell violations (enforce) from advisories (warn).
const SHARP: &str = "apiVersion: stateward.io/v1alpha1
kind: Policy
metadata: {name: sharp}
spec:
  excludedNamespaces: [kube-system]
  rules:
    statefulset.name-length: {mode: enforce}
    statefulset.service-name: {mode: enforce}
    statefulset.selector-matches-template: {mode: enforce}
    statefulset.claim-templates-mounted: {mode: enforce}
    statefulset.claim-template-storage: {mode: enforce, allowedStorageClasses: [standard, fast]}
    statefulset.claim-template-access-mode: {mode: enforce}
    statefulset.termination-grace-period: {mode: enforce, minSeconds: 10, maxSeconds: 600}
    statefulset.readiness-probe: {mode: enforce}
    statefulset.resources: {mode: enforce, requiredLimits: [memory, cpu]}
    statefulset.anti-affinity: {mode: enforce, topologyKey: topology.kubernetes.io/zone}
    statefulset.anti-affinity-selects-self: {mode: enforce}
    statefulset.update-strategy: {mode: enforce}
    statefulset.security-context: {mode: enforce}
    statefulset.rollout-stuck: {mode: enforce}
    statefulset.scale-down-retains-claims: {mode: enforce}
";

/// The same without the anti-affinity default (so that the rule sees sets without one)
/// and auditing.
const PLAIN: &str = "apiVersion: stateward.io/v1alpha1
kind: Policy
metadata: {name: plain}
spec:
  mutations:
    statefulset.default-anti-affinity: {enabled: false}
  rules:
    statefulset.readiness-probe: {mode: audit}
    statefulset.claim-template-storage: {mode: audit, allowedStorageClasses: [fast]}
    statefulset.termination-grace-period: {maxSeconds: 60}
    statefulset.anti-affinity: {mode: enforce}
";

#[test]
fn every_statefulset_rule_decides_natively_as_the_engine() {
    // The interpreter's parser recurses deeply on the longer expressions.
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(differential)
        .expect("thread")
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
}

fn differential() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = yaml_files(&root.join("tests/fixtures"));
    files.extend(yaml_files(&root.join("examples")));
    let corpus = tiers::corpus();
    if let Some(dir) = &corpus {
        files.extend(yaml_files(dir));
    }
    let documents = statefulsets(&files);
    let mut cases = edge_cases();
    let edges = cases.len();
    for (name, value) in &documents {
        cases.extend(create(name.clone(), value));
        let shaped = k8s_shape(value);
        if &shaped != value {
            cases.extend(create(
                format!("{name} (as the API server holds it)"),
                &shaped,
            ));
        }
        // UPDATE: scaled down by two from replicas + 2 (every claim kept), and a template
        // change while half the pods are ready.
        let replicas = value["spec"]["replicas"].as_i64().unwrap_or(1);
        let old = with(value.clone(), "/spec/replicas", json!(replicas + 2));
        cases.extend(update(format!("{name} (scaled down)"), &old, value));
        let old = with(
            value.clone(),
            "/status",
            json!({"replicas": replicas, "readyReplicas": replicas / 2}),
        );
        let mut new = value.clone();
        new["spec"]["template"]["metadata"]["annotations"] = json!({"restartedAt": "now"});
        cases.extend(update(format!("{name} (template changed)"), &old, &new));
    }

    let strict = std::fs::read_to_string(root.join("policies/strict.yaml")).expect("strict");
    let policies = [
        ("baseline", Policy::baseline()),
        (
            "strict",
            Policy::from_yaml(&strict, "strict").expect("strict"),
        ),
        ("sharp", Policy::from_yaml(SHARP, "sharp").expect("sharp")),
        ("plain", Policy::from_yaml(PLAIN, "plain").expect("plain")),
    ];
    let env = env();
    let mut comparisons = 0usize;
    let mut fired = 0usize;
    let mut differences = Vec::new();
    for (policy_name, policy) in &policies {
        let (natives, native_rules) = natives(policy, &env);
        for case in &cases {
            let mut review = case.review.clone();
            let decision = evaluate_mut(policy, &mut review, &NoContext, Stage::Admit);
            let object = review
                .object
                .as_ref()
                .map_or(Value::Null, Resource::to_value);
            let old = review
                .old_object
                .as_ref()
                .map_or(Value::Null, Resource::to_value);
            let native = match native_answer(&natives, &env, &review, &object, &old) {
                Ok(answer) => answer,
                Err(error) => {
                    differences.push(format!("{policy_name} / {}: {error}", case.name));
                    continue;
                }
            };
            for rule in &native_rules {
                let engine: Levels = decision
                    .findings
                    .iter()
                    .filter(|f| f.rule == *rule)
                    .map(|f| f.mode)
                    .collect();
                let cel = native.get(rule).cloned().unwrap_or_default();
                comparisons += 1;
                if !engine.is_empty() {
                    fired += 1;
                }
                if engine != cel {
                    differences.push(format!(
                        "{policy_name} / {} / {rule} ({}): engine {engine:?}, native {cel:?}",
                        case.name,
                        match review.operation {
                            Operation::Create => "CREATE",
                            _ => "UPDATE",
                        }
                    ));
                }
            }
        }
    }
    println!(
        "native CEL vs engine: {} documents ({}), {} edge cases, {} requests, {} policies, \
         {comparisons} comparisons ({fired} with findings), {} differences",
        documents.len(),
        if corpus.is_some() {
            "fixtures, examples and corpus"
        } else {
            "fixtures and examples; STATEWARD_CORPUS unset"
        },
        edges,
        cases.len(),
        policies.len(),
        differences.len()
    );
    assert!(
        differences.is_empty(),
        "{} differences:\n{}",
        differences.len(),
        differences
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(comparisons > 0 && fired > 0);
}
