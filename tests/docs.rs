//! The rule tables of README.md and docs/rules.md are generated from the rule declarations
//! (`stateward rules --markdown readme|docs`) and must be current; a stale copy fails with
//! the command that refreshes it. Reads the checked-in files; writes them only when
//! STATEWARD_BLESS=1 asks for a refresh.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or bench may stop on a broken fixture
use std::path::Path;

#[path = "support/binary.rs"]
mod binary;
use binary::{root, run};

const BEGIN: &str = "<!-- BEGIN GENERATED rules";
const END: &str = "<!-- END GENERATED -->";
const REFRESH: &str = "STATEWARD_BLESS=1 cargo test --test docs";

/// Compares the part of `path` between the markers with the generated table (or, when
/// blessing, replaces it).
fn generated_part_is_current(path: &str, doc: &str) {
    let out = run(&["rules", "--markdown", doc]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = String::from_utf8(out.stdout).expect("UTF-8");
    let file = root().join(path);
    let text = std::fs::read_to_string(&file).expect("document");
    let begin = text
        .find(BEGIN)
        .map(|i| i + text[i..].find('\n').map_or(0, |n| n + 1));
    let end = text.find(END);
    let (Some(begin), Some(end)) = (begin, end) else {
        panic!("{path}: no `{BEGIN} ... -->` / `{END}` markers around the rule table");
    };
    assert!(begin <= end, "{path}: the markers are out of order");
    if text[begin..end] == generated {
        return;
    }
    if std::env::var_os("STATEWARD_BLESS").is_some() {
        let fresh = format!("{}{generated}{}", &text[..begin], &text[end..]);
        std::fs::write(Path::new(&file), fresh).expect("write");
        return;
    }
    panic!(
        "{path}: the generated rule table is out of date (`stateward rules --markdown {doc}` \
         prints the current one); refresh it with: {REFRESH}"
    );
}

#[test]
fn readme_rule_table_is_current() {
    generated_part_is_current("README.md", "readme");
}

#[test]
fn rules_doc_index_is_current() {
    generated_part_is_current("docs/rules.md", "docs");
}

/// Every mutation has a row in docs/rules.md's mutations table (validation rules have a
/// section each: checked with SARIF's rule help).
#[test]
fn every_mutation_is_described_in_the_rules_doc() {
    let doc = std::fs::read_to_string(root().join("docs/rules.md")).expect("docs/rules.md");
    let table = &doc[doc.find("## Mutations").expect("a mutations section")..];
    let out = run(&["rules", "-o", "json"]);
    let rules: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    for rule in rules["rules"].as_array().expect("rules") {
        if rule["type"] == "mutation" {
            let id = rule["id"].as_str().expect("id");
            assert!(
                table.contains(&format!("| `{id}` |")),
                "docs/rules.md: no row for `{id}` in the mutations table"
            );
        }
    }
}
