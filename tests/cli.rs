//! The `stateward` binary as users and scripts call it: exit statuses, reports, output.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or bench may stop on a broken fixture
use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
#[path = "support/binary.rs"]
mod binary;
use binary::{root, run, run_stdin};

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exit code")
}

#[test]
fn example_is_denied_with_a_json_report() {
    let out = run(&["check", "-f", "examples/web.yaml", "-o", "json"]);
    assert_eq!(code(&out), 1);
    let report = json(&out);
    let finding = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["rule"] == "statefulset.termination-grace-period")
        .expect("grace period finding");
    assert_eq!(finding["source"], "examples/web.yaml");
    assert_eq!(finding["document"], 1);
    assert_eq!(finding["apiVersion"], "apps/v1");
    assert_eq!(finding["kind"], "StatefulSet");
    assert_eq!(finding["namespace"], "default");
    assert_eq!(finding["name"], "web");
    assert_eq!(finding["mode"], "enforce");
    assert_eq!(
        finding["field"],
        "spec.template.spec.terminationGracePeriodSeconds"
    );
    assert!(
        finding["message"]
            .as_str()
            .is_some_and(|m| m.contains("is 0"))
    );
    assert_eq!(report["summary"]["documents"], 2);
    assert_eq!(report["summary"]["evaluated"], 2);
    assert_eq!(report["summary"]["enforce"], 1);
    assert_eq!(report["errors"], serde_json::json!([]));
}

#[test]
fn text_report_is_grouped_and_plain_when_piped() {
    let out = run(&["check", "-f", "examples/web.yaml"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("examples/web.yaml #1  StatefulSet default/web"),
        "{text}"
    );
    assert!(
        text.contains("ENFORCE  statefulset.termination-grace-period"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "no colour when not a terminal");
    assert!(
        text.contains("2 documents, 2 evaluated: 1 enforce"),
        "{text}"
    );
    let coloured = run(&["check", "-f", "examples/web.yaml", "--color", "always"]);
    assert!(String::from_utf8_lossy(&coloured.stdout).contains("\x1b[1;31m"));
}

#[test]
fn clean_input_exits_zero_and_directories_are_read() {
    let out = run(&["check", "-f", "tests/fixtures/allow", "-o", "json"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));
    let report = json(&out);
    assert!(report["summary"]["documents"].as_u64().unwrap_or(0) >= 8);
    assert_eq!(report["summary"]["enforce"], 0);
}

#[test]
fn stdin_is_read_with_dash() {
    let out = run_stdin(
        &["check", "-f", "-", "-o", "json"],
        &std::fs::read_to_string(root().join("examples/web.yaml")).expect("example"),
    );
    assert_eq!(code(&out), 1);
    assert_eq!(json(&out)["findings"][0]["source"], "<stdin>");
}

#[test]
fn broken_documents_are_reported_and_the_rest_still_evaluated() {
    let input = "\
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: bad-types}
spec:
  replicas: three
  selector: {matchLabels: {app: x}}
  template: {metadata: {labels: {app: x}}}
---
kind: [unclosed
---
metadata: {name: no-kind}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: zero}
spec:
  serviceName: zero
  selector: {matchLabels: {app: z}}
  template:
    metadata: {labels: {app: z}}
    spec:
      terminationGracePeriodSeconds: 0
      containers: [{name: z, image: z}]
";
    let out = run_stdin(&["check", "-f", "-", "-o", "json"], input);
    assert_eq!(code(&out), 2);
    let report = json(&out);
    let errors = report["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert_eq!(errors[0]["document"], 0);
    assert!(
        errors[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("spec.replicas")),
        "{errors:?}"
    );
    assert_eq!(errors[1]["document"], 1);
    assert!(
        errors[1]["message"]
            .as_str()
            .is_some_and(|m| m.contains("line")),
        "{errors:?}"
    );
    assert_eq!(errors[2]["document"], 2);
    assert!(
        errors[2]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no apiVersion or kind"))
    );
    // The fourth document is still evaluated.
    let findings = report["findings"].as_array().expect("findings");
    assert!(
        findings
            .iter()
            .any(|f| f["name"] == "zero" && f["mode"] == "enforce" && f["document"] == 3)
    );
}

#[test]
fn unreadable_paths_and_oversized_files_exit_two() {
    let out = run(&[
        "check",
        "-f",
        "does/not/exist.yaml",
        "-f",
        "examples/web.yaml",
        "-o",
        "json",
    ]);
    assert_eq!(code(&out), 2);
    let report = json(&out);
    assert_eq!(report["errors"][0]["source"], "does/not/exist.yaml");
    assert_eq!(
        report["summary"]["evaluated"], 2,
        "the readable file is still checked"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let big = dir.path().join("big.yaml");
    let file = std::fs::File::create(&big).expect("create");
    file.set_len(65 * 1024 * 1024).expect("size");
    let out = run(&["check", "-f", big.to_str().expect("path"), "-o", "json"]);
    assert_eq!(code(&out), 2);
    assert!(
        json(&out)["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("larger than 64 MiB"))
    );
}

#[test]
fn invalid_policy_names_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: stateward.io/v1alpha1\nkind: Policy\nmetadata: {name: p}\nspec:\n  rules:\n    statefulset.readiness-probe: {mode: strict}\n",
    )
    .expect("write");
    let out = run(&[
        "check",
        "-f",
        "examples/web.yaml",
        "--policy",
        policy.to_str().expect("path"),
    ]);
    assert_eq!(code(&out), 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("policy.yaml line 6"), "{err}");
    assert!(err.contains("strict"), "{err}");
}

#[test]
fn strict_policy_denies_what_baseline_warns() {
    let out = run(&[
        "check",
        "-f",
        "examples/web.yaml",
        "--policy",
        "policies/strict.yaml",
        "-o",
        "json",
    ]);
    assert_eq!(code(&out), 1);
    let report = json(&out);
    let denied: Vec<&str> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["mode"] == "enforce")
        .filter_map(|f| f["rule"].as_str())
        .collect();
    assert!(
        denied.contains(&"statefulset.readiness-probe"),
        "{denied:?}"
    );
}

#[test]
fn usage_errors_exit_two() {
    assert_eq!(code(&run(&["check"])), 2);
    assert_eq!(code(&run(&["check", "-f", "x", "--bogus"])), 2);
}

#[test]
fn mutate_prints_every_document_with_defaults() {
    let out = run(&["mutate", "-f", "examples/web.yaml"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("---\n").count(), 2);
    assert!(text.contains("podManagementPolicy: OrderedReady"), "{text}");
    assert!(
        text.contains("topologyKey: kubernetes.io/hostname"),
        "{text}"
    );
    // The user's key order is kept.
    let service = text.find("kind: Service").expect("service");
    let set = text.find("kind: StatefulSet").expect("set");
    assert!(service < set);
    // A second pass changes nothing.
    let again = run_stdin(&["mutate", "-f", "-"], &text);
    assert_eq!(String::from_utf8_lossy(&again.stdout), text);
}

#[test]
fn mutate_keeps_unparseable_documents_and_exits_two() {
    let out = run_stdin(
        &["mutate", "-f", "-"],
        "a: [1,\n---\nkind: ConfigMap\napiVersion: v1\n",
    );
    assert_eq!(code(&out), 2);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("a: [1,"), "{text}");
    assert!(text.contains("kind: ConfigMap"), "{text}");
}

#[test]
fn rules_lists_every_rule() {
    let out = run(&["rules", "-o", "json"]);
    assert_eq!(code(&out), 0);
    let doc = json(&out);
    let rules = doc["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), stateward::policy::rules::RULES.len());
    let grace = rules
        .iter()
        .find(|r| r["id"] == "statefulset.termination-grace-period")
        .expect("rule");
    assert_eq!(grace["default"], "enforce");
    assert_eq!(grace["kind"], "StatefulSet");
    assert_eq!(grace["operations"], serde_json::json!(["CREATE", "UPDATE"]));
    let blocked = rules
        .iter()
        .find(|r| r["id"] == "statefulset.rollout-blocked")
        .expect("live rule");
    assert_eq!(blocked["operations"], serde_json::json!([]));
    assert_eq!(blocked["default"], "warn");
    let text = run(&["rules"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("pod.force-delete"));
    assert!(
        text.lines()
            .any(|l| l.starts_with("statefulset.claim-unbound") && l.contains("live (audit)")),
        "{text}"
    );
}

#[test]
fn help_has_examples() {
    for sub in ["check", "mutate", "rules", "audit"] {
        let out = run(&[sub, "--help"]);
        assert_eq!(code(&out), 0);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Examples:"),
            "{sub}"
        );
    }
}

#[test]
fn unknown_fields_are_notices_or_errors_with_strict_fields() {
    let input = "\
apiVersion: v1
kind: Service
metadata: {name: web, creationTimestamp: null}
spec:
  clusterIP: None
  selectr: {app: web}
";
    let out = run_stdin(&["check", "-f", "-", "-o", "json"], input);
    assert_eq!(code(&out), 0);
    let report = json(&out);
    let notice = report["notices"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(notice.contains("spec.selectr"), "{notice}");
    assert!(
        !notice.contains("creationTimestamp"),
        "null values are not unknown fields"
    );
    let strict = run_stdin(
        &["check", "-f", "-", "-o", "json", "--strict-fields"],
        input,
    );
    assert_eq!(code(&strict), 2);
    assert!(
        json(&strict)["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("spec.selectr"))
    );
}

#[test]
fn version_names_commit_and_kubernetes_api() {
    let out = run(&["--version"]);
    assert_eq!(code(&out), 0);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.trim_end();
    let prefix = format!("stateward {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(line.starts_with(&prefix), "{line}");
    let rest = line.trim_start_matches(&prefix);
    let (commit, api) = rest
        .trim_end_matches(')')
        .split_once(", Kubernetes API ")
        .expect("commit and API");
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{commit}"
    );
    let (major, minor) = api.split_once('.').expect("1.NN");
    assert_eq!(major, "1", "{api}");
    assert!(minor.parse::<u32>().is_ok_and(|m| m >= 30), "{api}");
}

#[cfg(unix)]
#[test]
fn as_a_kubectl_plugin_usage_shows_kubectl_stateward() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin = dir.path().join("kubectl-stateward");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_stateward"), &plugin).expect("symlink");
    let out = Command::new(&plugin)
        .arg("--help")
        .output()
        .expect("plugin runs");
    assert_eq!(code(&out), 0);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("Usage: kubectl stateward [OPTIONS] <COMMAND>"),
        "{help}"
    );
    let out = Command::new(&plugin)
        .args(["check", "--help"])
        .output()
        .expect("plugin runs");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("Usage: kubectl stateward check"), "{help}");
    assert!(
        help.contains("kubectl stateward check -f examples/web.yaml"),
        "examples use the plugin name: {help}"
    );
    // Usage errors too, with the contract's exit status.
    let out = Command::new(&plugin)
        .arg("bogus")
        .output()
        .expect("plugin runs");
    assert_eq!(code(&out), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage: kubectl stateward"));
    // It works as the binary does.
    let out = Command::new(&plugin)
        .args(["check", "-f", "examples/web.yaml", "-o", "json"])
        .current_dir(root())
        .output()
        .expect("plugin runs");
    assert_eq!(code(&out), 1);
    // The cluster commands take kubectl's --context and -n.
    for sub in ["gc", "serve"] {
        let out = Command::new(&plugin)
            .args([sub, "--help"])
            .output()
            .expect("plugin runs");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("--context <NAME>"),
            "{sub}"
        );
    }
    let out = Command::new(&plugin)
        .args(["gc", "--help"])
        .output()
        .expect("plugin runs");
    assert!(String::from_utf8_lossy(&out.stdout).contains("-n, --namespace"));
}

#[test]
fn unknown_kubeconfig_context_is_a_connection_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("config");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\nusers:\n- name: u\n  user: {token: t}\ncontexts:\n- name: here\n  context: {cluster: c, user: u}\ncurrent-context: here\n",
    )
    .expect("write");
    let out = run(&[
        "gc",
        "--kubeconfig",
        kubeconfig.to_str().expect("path"),
        "--context",
        "elsewhere",
    ]);
    assert_eq!(code(&out), 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("elsewhere"), "{err}");
}

#[test]
fn completions_are_generated_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = run(&["completions", shell]);
        assert_eq!(code(&out), 0, "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        // (fish spells long options `-l filename`.)
        for word in ["check", "gc", "filename", "sarif", "context"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    // The bash script is valid bash.
    let bash = run(&["completions", "bash"]);
    let check = Command::new("bash")
        .arg("-n")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    if let Ok(mut child) = check {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(&bash.stdout)
            .expect("write");
        let status = child.wait_with_output().expect("bash exits");
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
    }
    assert_eq!(code(&run(&["completions", "tcsh"])), 2);
}

#[test]
fn man_pages_are_current() {
    let out = run(&["man"]);
    assert_eq!(code(&out), 0);
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH stateward 1"), "{page}");
    assert!(page.contains("check") && page.contains("completions"));
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(&["man", "--dir", dir.path().to_str().expect("path")]);
    assert_eq!(code(&out), 0);
    let mut generated: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    generated.sort();
    let mut checked_in: Vec<String> = std::fs::read_dir(root().join("docs/man"))
        .expect("docs/man")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    checked_in.sort();
    assert_eq!(
        generated, checked_in,
        "docs/man is out of date: cargo run -- man --dir docs/man"
    );
    assert!(generated.contains(&"stateward-check.1".to_owned()));
    for name in generated {
        let new = std::fs::read_to_string(dir.path().join(&name)).expect("generated");
        let old = std::fs::read_to_string(root().join("docs/man").join(&name)).expect("checked in");
        assert!(
            new == old,
            "docs/man/{name} is out of date: cargo run -- man --dir docs/man"
        );
    }
    assert_eq!(
        std::fs::read_to_string(root().join("docs/man/stateward.1")).expect("page"),
        page,
        "`stateward man` prints docs/man/stateward.1"
    );
}

#[test]
fn krew_manifest_template_installs_kubectl_stateward() {
    let text =
        std::fs::read_to_string(root().join("deploy/krew/stateward.yaml")).expect("template");
    let manifest: Value = serde_saphyr::from_str(&text).expect("the template is YAML");
    assert_eq!(
        manifest["apiVersion"],
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(manifest["kind"], "Plugin");
    assert_eq!(manifest["metadata"]["name"], "stateward");
    let spec = &manifest["spec"];
    for field in ["version", "homepage", "shortDescription", "description"] {
        assert!(spec[field].is_string(), "{field}");
    }
    let platforms = spec["platforms"].as_array().expect("platforms");
    assert!(platforms.len() >= 2);
    for p in platforms {
        assert_eq!(p["bin"], "kubectl-stateward");
        assert!(
            p["files"]
                .as_array()
                .expect("files")
                .iter()
                .any(|f| f["from"] == "stateward" && f["to"] == "kubectl-stateward")
        );
        let uri = p["uri"].as_str().expect("uri");
        assert!(uri.starts_with("${REPOSITORY}/") && uri.contains("${VERSION}"));
        assert!(
            p["sha256"]
                .as_str()
                .is_some_and(|s| s.starts_with("${SHA256_"))
        );
        assert!(p["selector"]["matchLabels"]["os"].is_string());
    }
}

#[test]
fn pre_commit_hooks_run_stateward_on_the_files_given() {
    let text = std::fs::read_to_string(root().join(".pre-commit-hooks.yaml")).expect("hooks");
    let hooks: Value = serde_saphyr::from_str(&text).expect("YAML");
    let hooks = hooks.as_array().expect("a list of hooks");
    let hook = |id: &str| -> Vec<String> {
        let hook = hooks
            .iter()
            .find(|h| h["id"] == id)
            .unwrap_or_else(|| panic!("hook {id}"));
        for field in ["name", "entry", "language"] {
            assert!(hook[field].is_string(), "{id}: {field}");
        }
        let entry: Vec<String> = hook["entry"]
            .as_str()
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        assert_eq!(entry[0], "stateward", "{id}");
        entry[1..].to_vec()
    };
    // pre-commit appends the staged file names to the entry.
    let with_files = |args: &[String], files: &[&str]| {
        let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
        all.extend(files);
        code(&run(&all))
    };
    let check = hook("stateward-check");
    assert_eq!(hook("stateward-check-system"), check);
    assert_eq!(
        with_files(
            &check,
            &[
                "tests/fixtures/allow/postgres-complete.yaml",
                "tests/fixtures/allow/excluded-namespace.yaml"
            ]
        ),
        0
    );
    assert_eq!(
        with_files(
            &check,
            &[
                "tests/fixtures/allow/postgres-complete.yaml",
                "tests/fixtures/deny/zero-grace-period.yaml"
            ]
        ),
        1
    );
    let policy = hook("stateward-policy-check");
    assert_eq!(
        with_files(&policy, &["policies/baseline.yaml", "policies/strict.yaml"]),
        0
    );
    assert_eq!(with_files(&policy, &["examples/web.yaml"]), 2);
}

/// Text logs into a pipe (what `kubectl logs` and `> serve.log` see) hold no ANSI escape,
/// with or without `NO_COLOR`.
#[test]
fn text_logs_to_a_pipe_hold_no_escape_bytes() {
    use std::io::Read;
    for no_color in [None, Some("1")] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut command = Command::new(env!("CARGO_BIN_EXE_stateward"));
        command
            .args([
                "serve",
                "--dev",
                "--cluster",
                "off",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--log-format",
                "text",
                "--shutdown-delay",
                "0",
            ])
            .current_dir(dir.path())
            .env_remove("NO_COLOR")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(value) = no_color {
            command.env("NO_COLOR", value);
        }
        let mut child = command.spawn().expect("serve starts");
        let mut stderr = child.stderr.take().expect("stderr");
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains("stateward webhook serving") {
            let n = stderr.read(&mut buf).expect("read stderr");
            assert!(n > 0, "serve exited: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
        let _ = child.kill();
        let _ = child.wait();
        let text = String::from_utf8_lossy(&seen);
        assert!(text.contains("INFO"), "{text}");
        assert!(
            !seen.contains(&0x1b),
            "escape bytes in piped logs (NO_COLOR={no_color:?}): {text:?}"
        );
    }
}
