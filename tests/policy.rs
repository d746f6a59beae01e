//! `stateward policy schema` and `stateward policy check`: the JSON Schema of policy files
//! is generated from the types they are read into and agrees with the reader.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or bench may stop on a broken fixture
use std::process::Output;

use serde_json::Value;
#[path = "support/binary.rs"]
mod binary;
use binary::{root, run};

fn code(output: &Output) -> i32 {
    output.status.code().expect("exit code")
}

const SHIPPED: [&str; 2] = ["policies/baseline.yaml", "policies/strict.yaml"];
const SCHEMA_LINE: &str = "# yaml-language-server: $schema=./policy.schema.json";

fn schema() -> Value {
    let text = std::fs::read_to_string(root().join("policies/policy.schema.json"))
        .expect("policies/policy.schema.json");
    serde_json::from_str(&text).expect("the schema is JSON")
}

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).expect("YAML")
}

fn validator() -> jsonschema::Validator {
    jsonschema::draft7::new(&schema()).expect("a valid draft-07 schema")
}

#[test]
fn checked_in_schema_is_current() {
    let out = run(&["policy", "schema"]);
    assert_eq!(code(&out), 0);
    let checked_in = std::fs::read_to_string(root().join("policies/policy.schema.json"))
        .expect("policies/policy.schema.json");
    assert!(
        String::from_utf8_lossy(&out.stdout) == checked_in,
        "policies/policy.schema.json is out of date: \
         cargo run -- policy schema > policies/policy.schema.json"
    );
}

#[test]
fn schema_accepts_the_shipped_policies_which_name_it() {
    let validator = validator();
    for path in SHIPPED {
        let text = std::fs::read_to_string(root().join(path)).expect("policy");
        assert_eq!(text.lines().next(), Some(SCHEMA_LINE), "{path}");
        let errors: Vec<String> = validator
            .iter_errors(&yaml(&text))
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{path}: {errors:?}");
    }
}

#[test]
fn schema_rejects_what_the_reader_rejects() {
    let validator = validator();
    let head = "apiVersion: stateward.io/v1alpha1\nkind: Policy\nmetadata: {name: t}\nspec:\n";
    for (bad, why) in [
        (
            "  rules:\n    statefulset.readiness-prob: {mode: warn}\n",
            "unknown rule id",
        ),
        (
            "  rules:\n    statefulset.termination-grace-period: {minSecond: 5}\n",
            "misspelt parameter",
        ),
        (
            "  rules:\n    statefulset.resources: {mode: deny}\n",
            "unknown mode",
        ),
        ("  excludedNamespace: [a]\n", "misspelt spec field"),
        (
            "  mutations:\n    statefulset.default-anti-affinity: {weight: 0}\n",
            "weight out of range",
        ),
        (
            "  mutations:\n    statefulset.default-pod-management-policy: {value: Sometimes}\n",
            "unknown enum value",
        ),
    ] {
        let doc = yaml(&format!("{head}{bad}"));
        assert!(!validator.is_valid(&doc), "the schema accepts a {why}");
        // ...as the reader does.
        assert!(
            stateward::policy::Policy::from_yaml(&format!("{head}{bad}"), "p.yaml").is_err(),
            "{why}"
        );
    }
    assert!(!validator.is_valid(&yaml("apiVersion: v1\nkind: Policy\nmetadata: {name: t}\n")));
    assert!(!validator.is_valid(&yaml("kind: Policy\nmetadata: {name: t}\n")));
    let good = yaml(&format!(
        "{head}  rules:\n    statefulset.termination-grace-period: {{mode: enforce, minSeconds: 5}}\n"
    ));
    assert!(validator.is_valid(&good));
}

#[test]
fn every_object_in_the_schema_rejects_unknown_fields() {
    let schema = schema();
    let definitions = schema["definitions"].as_object().expect("definitions");
    assert_eq!(schema["additionalProperties"], false);
    for (name, definition) in definitions {
        if definition["type"] == "object" {
            assert_eq!(
                definition["additionalProperties"], false,
                "{name} accepts unknown fields"
            );
        }
    }
    let rules = definitions["RulesSection"]["properties"]
        .as_object()
        .expect("rules");
    let validation = stateward::policy::rules::RULES
        .iter()
        .filter(|info| !info.is_mutation())
        .count();
    assert_eq!(
        rules.len(),
        validation,
        "every validation rule, live-state rules included"
    );
    assert_eq!(
        rules["statefulset.claim-unbound"]["allOf"][0]["$ref"],
        "#/definitions/ClaimUnboundRule"
    );
    assert_eq!(
        definitions["ClaimUnboundRule"]["properties"]["pendingFor"]["pattern"],
        stateward::duration::PATTERN
    );
    assert!(
        rules["statefulset.termination-grace-period"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("(default: enforce)"))
    );
}

#[test]
fn policy_check_validates_files() {
    let out = run(&["policy", "check", SHIPPED[0], SHIPPED[1]]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("policies/strict.yaml: valid policy `strict`"),
        "{text}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("typo.yaml");
    std::fs::write(
        &bad,
        "apiVersion: stateward.io/v1alpha1\nkind: Policy\nmetadata: {name: t}\nspec:\n  rules:\n    statefulset.termination-grace-period:\n      minSecond: 5\n",
    )
    .expect("write");
    let out = run(&["policy", "check", SHIPPED[0], bad.to_str().expect("path")]);
    assert_eq!(code(&out), 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("typo.yaml line 7"), "{err}");
    assert!(
        err.contains("spec.rules.statefulset.termination-grace-period.minSecond"),
        "{err}"
    );
    assert!(err.contains("unknown field `minSecond`"), "{err}");
    assert_eq!(code(&run(&["policy", "check", "does/not/exist.yaml"])), 2);
    assert_eq!(code(&run(&["policy", "check"])), 2);
}
