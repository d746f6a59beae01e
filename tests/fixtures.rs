//! Runs every file under tests/fixtures through the offline engine (see its README).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or bench may stop on a broken fixture
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use stateward::commands::check::manifest::{Source, documents};
use stateward::commands::check::{build_report, check_sources, render_mutated};
use stateward::policy::{Level, Policy};

fn files(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir);
    let mut out: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("fixture dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "yaml")
                && !p.to_string_lossy().ends_with(".expected.yaml")
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no fixtures in {dir}");
    out
}

fn source(path: &Path) -> Source {
    Source {
        name: path.display().to_string(),
        text: std::fs::read_to_string(path).expect("readable fixture"),
    }
}

fn expected(text: &str, key: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(&format!("# {key}:")))
        .flat_map(|ids| ids.split(',').map(|s| s.trim().to_owned()))
        .filter(|s| !s.is_empty())
        .collect()
}

fn rules_at(path: &Path, level: Level) -> (BTreeSet<String>, usize) {
    let src = source(path);
    let checked = check_sources(&Policy::baseline(), std::slice::from_ref(&src));
    let report = build_report(&checked, &[], false);
    assert!(
        report.errors.is_empty(),
        "{}: {:?}",
        path.display(),
        report.errors
    );
    let rules = report
        .findings
        .iter()
        .filter(|f| f.mode == level)
        .map(|f| f.rule.to_string())
        .collect();
    (rules, report.exit() as usize)
}

fn check_warnings(path: &Path) {
    let text = std::fs::read_to_string(path).expect("fixture");
    let (warned, _) = rules_at(path, Level::Warn);
    for rule in expected(&text, "expect-warn") {
        assert!(
            warned.contains(&rule),
            "{}: expected a {rule} warning, got {warned:?}",
            path.display()
        );
    }
}

#[test]
fn allow_cases_have_no_enforce_finding() {
    for path in files("allow") {
        let (denied, exit) = rules_at(&path, Level::Enforce);
        assert!(
            denied.is_empty(),
            "{}: denied by {denied:?}",
            path.display()
        );
        assert_eq!(exit, 0, "{}", path.display());
        check_warnings(&path);
    }
}

#[test]
fn deny_cases_are_denied_by_exactly_the_expected_rules() {
    for path in files("deny") {
        let text = std::fs::read_to_string(&path).expect("fixture");
        let want = expected(&text, "expect-enforce");
        assert!(
            !want.is_empty(),
            "{} names no expect-enforce",
            path.display()
        );
        let (denied, exit) = rules_at(&path, Level::Enforce);
        assert_eq!(denied, want, "{}", path.display());
        assert_eq!(exit, 1, "{}", path.display());
        check_warnings(&path);
    }
}

#[test]
fn mutate_cases_match_their_expected_output() {
    for path in files("mutate") {
        let src = source(&path);
        let checked = check_sources(&Policy::baseline(), std::slice::from_ref(&src));
        let (yaml, errors) = render_mutated(&checked);
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        let expected_path =
            PathBuf::from(path.to_string_lossy().replace(".yaml", ".expected.yaml"));
        let want: Vec<_> = documents(&source(&expected_path))
            .into_iter()
            .filter(|d| d.list_parent.is_none())
            .map(|d| d.value.expect("expected output parses"))
            .collect();
        let got: Vec<_> = documents(&Source {
            name: "out".into(),
            text: yaml,
        })
        .into_iter()
        .filter(|d| d.list_parent.is_none())
        .map(|d| d.value.expect("output parses"))
        .collect();
        assert_eq!(got, want, "{}", path.display());
    }
}
