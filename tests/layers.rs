//! The source tree's layering, as `lib.rs` describes it, checked on the text of `src/`:
//! the command line and exit statuses stop at `commands/`, the audit borrows only the
//! classifier from the collector, the engine imports nothing above it and has no import
//! loop, a set's replicas default is written once, and long files say why they are long.
//! Only the code before a file's `#[cfg(test)]` module counts.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may stop on an unreadable tree

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir` but the test modules kept in files of their own
/// (`tests.rs`).
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && path.file_name().is_some_and(|n| n != "tests.rs")
            {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file's code: without its test module, and without comments.
fn code(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]\nmod ") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The path of `file` relative to `src/`, with `/` separators.
fn rel(file: &Path) -> String {
    file.strip_prefix(root().join("src"))
        .unwrap()
        .to_string_lossy()
        .replace('\\', "/")
}

fn in_commands(rel: &str) -> bool {
    rel.starts_with("commands/") || matches!(rel, "commands.rs" | "main.rs" | "cli.rs")
}

fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
}

#[test]
fn the_command_line_and_exit_statuses_stop_at_commands() {
    let mut leaks = Vec::new();
    for file in sources(&root().join("src")) {
        let rel = rel(&file);
        if in_commands(&rel) {
            continue;
        }
        let code = code(&file);
        if code.contains("crate::cli") {
            leaks.push(format!("{rel}: crate::cli"));
        }
        if words(&code).any(|w| w == "Exit") {
            leaks.push(format!("{rel}: Exit"));
        }
    }
    assert!(leaks.is_empty(), "below commands/: {leaks:#?}");
}

#[test]
fn the_audit_borrows_only_the_classifier_from_the_collector() {
    let src = root().join("src");
    let mut files = sources(&src.join("audit"));
    files.push(src.join("audit.rs"));
    let mut borrowed = Vec::new();
    for file in files {
        let code = code(&file);
        for (i, _) in code.match_indices("crate::gc::") {
            let rest = &code[i + "crate::gc::".len()..];
            if !rest.starts_with("classify") {
                borrowed.push(format!("{}: {}", rel(&file), &rest[..rest.len().min(40)]));
            }
        }
    }
    assert!(borrowed.is_empty(), "{borrowed:#?}");
}

#[test]
fn the_engine_imports_nothing_above_it() {
    const ABOVE: &[&str] = &[
        "admin",
        "audit",
        "cli",
        "cluster",
        "commands",
        "gc",
        "leader",
        "metrics",
        "telemetry",
        "webhook",
    ];
    let mut found = Vec::new();
    for file in sources(&root().join("src/policy")) {
        // Compiled only for tests: it holds the webhook's lean decode of a CREATE to the
        // engine's decision, so it is the one place that may look up.
        if rel(&file) == "policy/testkit.rs" {
            continue;
        }
        let code = code(&file);
        for layer in ABOVE {
            if code.contains(&format!("crate::{layer}::"))
                || code.contains(&format!("crate::{layer};"))
            {
                found.push(format!("{}: crate::{layer}", rel(&file)));
            }
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn the_replicas_default_is_written_once() {
    let mut found = Vec::new();
    let mut declared = 0;
    for file in sources(&root().join("src")) {
        let code = code(&file);
        if code.contains("unwrap_or(1)") {
            found.push(rel(&file));
        }
        declared += code.matches("const DEFAULT_REPLICAS").count();
    }
    assert!(
        found.is_empty(),
        "unwrap_or(1) instead of identity's default: {found:?}"
    );
    assert_eq!(
        declared, 1,
        "DEFAULT_REPLICAS is declared once, in policy/identity.rs"
    );
}

/// The modules of `src/policy` and what each one's code refers to (a `use` or a path),
/// leaving out a parent's references to its own children.
fn policy_imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = root().join("src");
    let exists = |module: &[String]| src.join(format!("{}.rs", module.join("/"))).exists();
    // What `policy.rs` re-exports, by the module that defines it.
    let facade = code(&src.join("policy.rs"));
    let mut reexported = BTreeMap::new();
    for line in facade.lines() {
        let Some(rest) = line.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, names)) = rest.split_once("::") else {
            continue;
        };
        for name in words(names).filter(|w| !w.is_empty()) {
            reexported.insert(name.to_owned(), module.to_owned());
        }
    }
    let mut files = sources(&src.join("policy"));
    files.push(src.join("policy.rs"));
    let mut graph = BTreeMap::new();
    for file in files {
        let me: Vec<String> = rel(&file)
            .trim_end_matches(".rs")
            .split('/')
            .map(str::to_owned)
            .collect();
        let code = code(&file);
        let mut deps = BTreeSet::new();
        // Every path that starts at `crate::policy` or `super`, in `use` lines (with their
        // braces flattened crudely: each segment list after a `{` or `,`) or inline.
        let flat = code.replace(
            ['{', '}', ',', ';', '(', ')', '<', '>', '&', ' ', '\n'],
            " ",
        );
        for token in flat.split(' ') {
            let segments: Vec<&str> = token.split("::").filter(|s| !s.is_empty()).collect();
            let (mut at, rest): (Vec<String>, &[&str]) = match segments.as_slice() {
                ["crate", "policy", rest @ ..] => (vec!["policy".into()], rest),
                ["super", rest @ ..] => (me[..me.len() - 1].to_vec(), rest),
                _ => continue,
            };
            let mut rest = rest;
            while let [first, tail @ ..] = rest {
                let mut next = at.clone();
                next.push((*first).to_owned());
                if !exists(&next) {
                    break;
                }
                at = next;
                rest = tail;
            }
            if at == ["policy"]
                && let Some(module) = rest.first().and_then(|n| reexported.get(*n))
            {
                at.push(module.clone());
            }
            let target = at.join("::");
            let mine = me.join("::");
            if target != mine && !target.starts_with(&format!("{mine}::")) {
                deps.insert(target);
            }
        }
        graph.insert(me.join("::"), deps);
    }
    graph
}

#[test]
fn the_engine_has_no_import_loop() {
    let graph = policy_imports();
    // Depth-first search; a module met again on the current path closes a loop.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if !done.insert(node.to_owned()) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    assert!(
        graph.len() > 15,
        "the engine's modules were found: {graph:?}"
    );
    assert!(
        graph["policy::scope"].contains("policy::rules"),
        "the reader sees imports: {graph:?}"
    );
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, &graph, &mut Vec::new(), &mut done) {
            panic!("import loop in src/policy: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn long_files_say_why_in_their_opening_comment() {
    const MAX_LINES: usize = 900;
    let mut long = Vec::new();
    for file in sources(&root().join("src")) {
        let text = fs::read_to_string(&file).unwrap();
        let lines = text.lines().count();
        let opening: String = text
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .collect::<Vec<_>>()
            .join("\n");
        if lines > MAX_LINES && !opening.contains("Why one file") {
            long.push(format!("{} ({lines} lines)", rel(&file)));
        }
    }
    assert!(
        long.is_empty(),
        "over {MAX_LINES} lines without \"Why one file\" in the opening comment: {long:#?}"
    );
}
