//! The PromQL of the shipped dashboard and alert rules, and a small reader of it: which
//! series selectors an expression names, and the left side of an alert's final comparison.
//! Used to prove against a real Prometheus that no panel or alert names a metric or label
//! that does not exist.
#![allow(dead_code)]
use std::path::Path;

use serde_json::Value;

/// Grafana's interval variables, replaced for a query through the HTTP API.
pub fn for_api(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "5m")
}

/// (panel title, query) of every target of the dashboard, in panel order.
pub fn dashboard_queries(root: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root.join("charts/stateward/files/dashboard.json"))
        .expect("dashboard.json");
    let dashboard: Value = serde_json::from_str(&text).expect("dashboard.json is JSON");
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                let title = panel["title"].as_str().unwrap_or_default();
                out.push((title.to_owned(), expr.to_owned()));
            }
        }
    }
    out
}

/// An alerting or recording rule of the rule file.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The alert or record name (alerts with several severities appear once each).
    pub name: String,
    pub alert: bool,
    pub expr: String,
    pub severity: String,
    pub annotations: Value,
}

pub fn rules(root: &Path) -> Vec<Rule> {
    let text = std::fs::read_to_string(root.join("charts/stateward/files/alerts.yaml"))
        .expect("alerts.yaml");
    let file: Value = serde_saphyr::from_str(&text).expect("alerts.yaml is YAML");
    let mut out = Vec::new();
    for group in file["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let alert = rule["alert"].as_str();
            out.push(Rule {
                name: alert
                    .or(rule["record"].as_str())
                    .unwrap_or_default()
                    .to_owned(),
                alert: alert.is_some(),
                expr: rule["expr"].as_str().unwrap_or_default().to_owned(),
                severity: rule["labels"]["severity"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                annotations: rule["annotations"].clone(),
            });
        }
    }
    out
}

const SKIP_GROUP: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const KEYWORDS: [&str; 17] = [
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    // aggregation operators, also when `by (...)` comes before their parenthesis
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
];

/// The index just past the bracket group that opens at `start` (strings respected).
fn close(b: &[u8], start: usize, open: u8, shut: u8) -> usize {
    let mut depth = 0;
    let mut i = start;
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'\'') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            c if c == open => depth += 1,
            c if c == shut => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    b.len()
}

/// Every series selector of `expr` (`name`, `name{matchers}` or `{matchers}`), in order.
pub fn selectors(expr: &str) -> Vec<String> {
    let b = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'"' || c == b'\'' {
            i += 1;
            while i < b.len() && b[i] != c {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == b'[' {
            i = close(b, i, b'[', b']');
        } else if c == b'{' {
            let end = close(b, i, b'{', b'}');
            out.push(expr[i..end].to_owned());
            i = end;
        } else if c.is_ascii_digit() || c == b'.' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                i += 1;
            }
            let word = &expr[start..i];
            let mut j = i;
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            let next = b.get(j).copied();
            if SKIP_GROUP.contains(&word) {
                if next == Some(b'(') {
                    i = close(b, j, b'(', b')');
                }
            } else if KEYWORDS.contains(&word) || next == Some(b'(') {
                // an operator keyword or a function call
            } else if next == Some(b'{') {
                let end = close(b, j, b'{', b'}');
                out.push(format!("{word}{}", &expr[j..end]));
                i = end;
            } else {
                out.push(word.to_owned());
            }
        } else {
            i += 1;
        }
    }
    out
}

/// For `lhs OP rhs` with a comparison at the top level and no set operator (`and`, `or`,
/// `unless`) there: `lhs`, the series the condition filters. `None` otherwise.
pub fn comparison_lhs(expr: &str) -> Option<String> {
    let b = expr.as_bytes();
    let mut depth = 0i32;
    let mut found = None;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' => {
                let q = b[i];
                i += 1;
                while i < b.len() && b[i] != q {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            b'>' | b'<' | b'=' | b'!' if depth == 0 => {
                if found.is_none() {
                    found = Some(i);
                }
                i += 1;
                continue;
            }
            _ if depth == 0 => {
                let rest = &expr[i..];
                let word_start = i == 0 || !b[i - 1].is_ascii_alphanumeric();
                if word_start
                    && ["and ", "or ", "unless "]
                        .iter()
                        .any(|k| rest.starts_with(k))
                {
                    return None;
                }
            }
            _ => {}
        }
        i += 1;
    }
    found.map(|at| expr[..at].trim().to_owned())
}
