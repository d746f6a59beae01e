//! `stateward check -o sarif|junit|github`: the CI report formats, read back the way CI
//! systems read them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or bench may stop on a broken fixture
use std::process::Output;

use serde_json::Value;
use serde_sarif::sarif::Sarif;
#[path = "support/binary.rs"]
mod binary;
use binary::{root, run, run_stdin};

const FIXTURE: &str = "tests/fixtures/ci/web.yaml";

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exit code")
}

/// The result of `rule` in a SARIF log's first run whose message names `object`.
fn sarif_result<'a>(log: &'a Value, rule: &str, object: &str) -> &'a Value {
    log["runs"][0]["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["ruleId"] == rule && r["properties"]["object"] == object)
        .unwrap_or_else(|| panic!("no {rule} result for {object}"))
}

fn region(result: &Value) -> (i64, i64) {
    let location = &result["locations"][0]["physicalLocation"];
    (
        location["region"]["startLine"].as_i64().expect("line"),
        location["region"]["startColumn"].as_i64().expect("column"),
    )
}

#[test]
fn sarif_round_trips_and_points_at_the_field() {
    let out = run(&["check", "-f", FIXTURE, "-o", "sarif"]);
    assert_eq!(code(&out), 1, "the exit status is the same as for text");
    let text = stdout(&out);
    // Round trip through the crate's types: nothing is lost or renamed.
    let typed: Sarif = serde_json::from_str(&text).expect("SARIF parses as serde-sarif types");
    let log: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(serde_json::to_value(&typed).expect("serialises"), log);
    assert_eq!(log["version"], "2.1.0");
    assert!(log["$schema"].as_str().is_some_and(|s| s.contains("sarif")));

    let run = &log["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "stateward");
    let rules = run["tool"]["driver"]["rules"].as_array().expect("rules");
    let ids: Vec<&str> = rules.iter().filter_map(|r| r["id"].as_str()).collect();
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "one descriptor per rule id");
    let validation = stateward::policy::rules::RULES
        .iter()
        .filter(|info| {
            matches!(info.action, stateward::policy::rules::Action::Validate { check, .. } if !check.is_live())
        })
        .count();
    assert_eq!(
        ids.len(),
        validation,
        "every validation rule but the live-state ones"
    );
    for rule in rules {
        assert!(rule["shortDescription"]["text"].is_string(), "{rule}");
        assert!(rule["fullDescription"]["text"].is_string(), "{rule}");
        assert!(rule["help"]["markdown"].is_string(), "{rule}");
        // SARIF wants an absolute URI (code scanning rejects others): present only when
        // the build knows where docs/rules.md is published.
        match rule["helpUri"].as_str() {
            Some(help) => assert!(help.starts_with("http") && help.contains('#'), "{help}"),
            None => assert_eq!(stateward::commands::check::formats::rules_doc_url(), None),
        }
    }
    let grace = rules
        .iter()
        .find(|r| r["id"] == "statefulset.termination-grace-period")
        .expect("descriptor");
    assert_eq!(grace["defaultConfiguration"]["level"], "error");
    if let Some(url) = stateward::commands::check::formats::rules_doc_url() {
        assert_eq!(
            grace["helpUri"],
            format!("{url}#statefulsettermination-grace-period-enforce")
        );
    }
    assert!(
        grace["help"]["markdown"]
            .as_str()
            .is_some_and(|h| h.contains("must not be 0"))
    );
    let probe = rules
        .iter()
        .find(|r| r["id"] == "statefulset.readiness-probe")
        .expect("descriptor");
    assert_eq!(probe["defaultConfiguration"]["level"], "warning");

    // `terminationGracePeriodSeconds: 0` is on line 14, column 7 of the fixture.
    let result = sarif_result(
        &log,
        "statefulset.termination-grace-period",
        "StatefulSet default/web",
    );
    assert_eq!(result["level"], "error");
    assert_eq!(region(result), (14, 7));
    assert_eq!(
        result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        FIXTURE
    );
    assert_eq!(
        rules[result["ruleIndex"].as_u64().expect("ruleIndex") as usize]["id"],
        "statefulset.termination-grace-period"
    );
    // An item of a `kind: List`: line 40, column 11.
    let item = sarif_result(
        &log,
        "statefulset.termination-grace-period",
        "StatefulSet default/cache",
    );
    assert_eq!(region(item), (40, 11));
    // A field that is not written (no readiness probe): the document's first line.
    let probe = sarif_result(
        &log,
        "statefulset.readiness-probe",
        "StatefulSet default/web",
    );
    assert_eq!(probe["level"], "warning");
    assert_eq!(region(probe), (2, 1));
    // ...and, inside a List, the item's first line.
    let probe = sarif_result(
        &log,
        "statefulset.readiness-probe",
        "StatefulSet default/cache",
    );
    assert_eq!(region(probe), (31, 5));
    // Audit findings are notes; mutations are not results.
    let pdb = sarif_result(
        &log,
        "statefulset.pod-disruption-budget",
        "StatefulSet default/web",
    );
    assert_eq!(pdb["level"], "note");
    assert_eq!(region(pdb), (12, 16));
    assert!(run["results"].as_array().expect("results").iter().all(|r| {
        !r["ruleId"]
            .as_str()
            .unwrap_or_default()
            .contains("default-")
    }));
    assert_eq!(run["invocations"][0]["executionSuccessful"], true);
}

#[test]
fn sarif_levels_follow_the_policy() {
    let out = run(&[
        "check",
        "-f",
        FIXTURE,
        "-o",
        "sarif",
        "--policy",
        "policies/strict.yaml",
    ]);
    let log: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let rules = log["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .expect("rules");
    let probe = rules
        .iter()
        .find(|r| r["id"] == "statefulset.readiness-probe")
        .expect("descriptor");
    assert_eq!(probe["defaultConfiguration"]["level"], "error");
    let result = sarif_result(
        &log,
        "statefulset.readiness-probe",
        "StatefulSet default/web",
    );
    assert_eq!(result["level"], "error");
}

#[test]
fn sarif_reports_unreadable_input_as_notifications() {
    let out = run_stdin(
        &["check", "-f", "-", "-o", "sarif"],
        "kind: [unclosed\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
    );
    assert_eq!(code(&out), 2);
    let log: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let invocation = &log["runs"][0]["invocations"][0];
    assert_eq!(invocation["executionSuccessful"], false);
    assert_eq!(invocation["exitCode"], 2);
    let notification = &invocation["toolExecutionNotifications"][0];
    assert_eq!(notification["level"], "error");
    assert_eq!(
        notification["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "%3Cstdin%3E"
    );
    let _: Sarif = serde_json::from_value(log).expect("serde-sarif types");
}

#[test]
fn junit_parses_with_the_right_counts() {
    let out = run(&[
        "check",
        "-f",
        FIXTURE,
        "-f",
        "examples/web.yaml",
        "-o",
        "junit",
    ]);
    assert_eq!(code(&out), 1);
    let text = stdout(&out);
    let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
    let suites = doc.root_element();
    assert_eq!(suites.tag_name().name(), "testsuites");
    // Evaluated objects: web, the Service and cache in the fixture; nginx and web in the
    // example.
    assert_eq!(suites.attribute("tests"), Some("5"));
    assert_eq!(suites.attribute("failures"), Some("3"));
    assert_eq!(suites.attribute("errors"), Some("0"));
    let suite: Vec<_> = suites
        .children()
        .filter(|n| n.has_tag_name("testsuite"))
        .collect();
    assert_eq!(suite.len(), 2);
    assert_eq!(suite[0].attribute("name"), Some(FIXTURE));
    assert_eq!(suite[0].attribute("tests"), Some("3"));
    assert_eq!(suite[0].attribute("failures"), Some("2"));
    let cases: Vec<_> = suite[0]
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), 3);
    let web = cases
        .iter()
        .find(|c| c.attribute("name") == Some("StatefulSet default/web #0"))
        .expect("web test case");
    assert_eq!(web.attribute("line"), Some("2"));
    let failures: Vec<_> = web
        .children()
        .filter(|n| n.has_tag_name("failure"))
        .collect();
    assert_eq!(failures.len(), 1, "one failure per enforce finding");
    assert_eq!(
        failures[0].attribute("type"),
        Some("statefulset.termination-grace-period")
    );
    assert!(
        failures[0]
            .text()
            .is_some_and(|t| t.contains(&format!("{FIXTURE}:14:7")))
    );
    let system_out = web
        .children()
        .find(|n| n.has_tag_name("system-out"))
        .and_then(|n| n.text())
        .expect("warnings in system-out");
    // Quotes in messages survive escaping.
    assert!(
        system_out.contains("WARN statefulset.readiness-probe")
            && system_out.contains("container \"app\""),
        "{system_out}"
    );
    let service = cases
        .iter()
        .find(|c| c.attribute("name") == Some("Service default/web #1"))
        .expect("service test case");
    assert_eq!(service.children().filter(|n| n.is_element()).count(), 0);
    let total_failures = doc
        .descendants()
        .filter(|n| n.has_tag_name("failure"))
        .count();
    assert_eq!(total_failures, 3, "one per enforce finding in both files");
}

#[test]
fn junit_reports_invalid_documents_as_errors_and_escapes() {
    let input = "a: [1,\n---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: \"x\"}\nspec:\n  replicas: \"<&>\"\n";
    let out = run_stdin(&["check", "-f", "-", "-o", "junit"], input);
    assert_eq!(code(&out), 2);
    let text = stdout(&out);
    let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
    let suites = doc.root_element();
    assert_eq!(suites.attribute("tests"), Some("2"));
    assert_eq!(suites.attribute("errors"), Some("2"));
    let suite = suites
        .children()
        .find(|n| n.has_tag_name("testsuite"))
        .expect("suite");
    assert_eq!(suite.attribute("name"), Some("<stdin>"));
    assert_eq!(
        doc.descendants()
            .filter(|n| n.has_tag_name("error"))
            .count(),
        2
    );
}

/// `::kind prop=value,...::message`, as the GitHub Actions runner reads a workflow command.
fn parse_command(line: &str) -> (String, Vec<(String, String)>, String) {
    let rest = line.strip_prefix("::").expect("starts with ::");
    let (head, message) = rest.split_once("::").expect("second ::");
    let (kind, props) = head.split_once(' ').unwrap_or((head, ""));
    let props = props
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').expect("key=value");
            (k.to_owned(), unescape(v))
        })
        .collect();
    (kind.to_owned(), props, unescape(message))
}

fn unescape(text: &str) -> String {
    text.replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%3A", ":")
        .replace("%2C", ",")
        .replace("%25", "%")
}

fn prop<'a>(props: &'a [(String, String)], key: &str) -> &'a str {
    props
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key} in {props:?}"))
}

#[test]
fn github_annotations_follow_the_workflow_command_syntax() {
    let out = run(&["check", "-f", FIXTURE, "-o", "github"]);
    assert_eq!(code(&out), 1);
    let text = stdout(&out);
    let mut kinds = Vec::new();
    for line in text.lines() {
        let (kind, props, message) = parse_command(line);
        assert!(
            ["error", "warning", "notice"].contains(&kind.as_str()),
            "{line}"
        );
        let keys: Vec<&str> = props.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["file", "line", "col", "title"], "{line}");
        assert!(prop(&props, "line").parse::<u32>().is_ok_and(|l| l > 0));
        assert!(prop(&props, "col").parse::<u32>().is_ok_and(|c| c > 0));
        assert!(!message.is_empty());
        kinds.push((kind, props, message));
    }
    let (kind, props, message) = kinds
        .iter()
        .find(|(_, p, m)| {
            prop(p, "title") == "statefulset.termination-grace-period" && m.contains("default/web")
        })
        .expect("grace period annotation");
    assert_eq!(kind, "error");
    assert_eq!(prop(props, "file"), FIXTURE);
    assert_eq!((prop(props, "line"), prop(props, "col")), ("14", "7"));
    assert!(message.contains("terminationGracePeriodSeconds is 0"));
    assert!(
        kinds
            .iter()
            .any(|(k, p, _)| k == "warning" && prop(p, "title") == "statefulset.readiness-probe")
    );
    assert!(
        kinds
            .iter()
            .any(|(k, p, _)| k == "notice"
                && prop(p, "title") == "statefulset.pod-disruption-budget")
    );
    assert_eq!(kinds.iter().filter(|(k, _, _)| k == "error").count(), 2);
}

#[test]
fn github_escapes_properties_and_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("a,b:c%.yaml");
    std::fs::copy(root().join(FIXTURE), &path).expect("copy");
    let out = run(&["check", "-f", path.to_str().expect("path"), "-o", "github"]);
    let text = stdout(&out);
    let first = text.lines().next().expect("a line");
    assert!(first.contains("a%2Cb%3Ac%25.yaml,line="), "{first}");
    let (_, props, _) = parse_command(first);
    assert_eq!(prop(&props, "file"), path.to_str().expect("path"));

    // An invalid document: its parse error (which may hold newlines) on one line.
    let out = run_stdin(&["check", "-f", "-", "-o", "github"], "a: [1,\n");
    assert_eq!(code(&out), 2);
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    let (kind, props, _) = parse_command(text.trim_end());
    assert_eq!(kind, "error");
    assert_eq!(prop(&props, "file"), "<stdin>");
}
