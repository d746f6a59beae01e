//! `stateward check` reports for CI systems: SARIF 2.1.0 (code scanning), JUnit XML (test
//! dashboards) and GitHub Actions workflow commands (annotations). Each finding points at
//! the line and column of its field in the manifest, or at the document's first line when
//! the field is not written there (a missing probe, a default a mutation would add).
use std::collections::HashMap;
use std::fmt::Write as _;

use serde_sarif::sarif;

use crate::commands::check::manifest::{self, Position, Positions, Segment};
use crate::commands::check::{Checked, Outcome, Report};
use crate::policy::rules::{Action, RULES};
use crate::policy::{Finding, Level, Mode, Policy, RuleId};

/// The rule documentation, whose sections the SARIF rules link to and quote.
pub const RULES_DOC: &str = include_str!("../../../docs/rules.md");

/// Where `docs/rules.md` is published, if that is known: `STATEWARD_RULES_DOC_URL` at build
/// time (the page's absolute URL), else the repository named in Cargo.toml. SARIF requires
/// an absolute `helpUri` (code scanning rejects a log with a relative one), so without
/// either there is none; the rule's documentation is in its `help` text all the same.
pub fn rules_doc_url() -> Option<String> {
    doc_url(
        option_env!("STATEWARD_RULES_DOC_URL"),
        env!("CARGO_PKG_REPOSITORY"),
    )
}

fn doc_url(explicit: Option<&str>, repository: &str) -> Option<String> {
    let absolute = |url: &str| url.starts_with("https://") || url.starts_with("http://");
    match explicit {
        Some(url) if absolute(url) => Some(url.to_owned()),
        _ if absolute(repository) => Some(format!(
            "{}/blob/main/docs/rules.md",
            repository.trim_end_matches('/')
        )),
        _ => None,
    }
}

/// Finds where findings point: caches the positions of each document's text.
pub struct Locator<'a> {
    checked: &'a [Checked],
    cache: HashMap<usize, Positions>,
}

impl<'a> Locator<'a> {
    pub fn new(checked: &'a [Checked]) -> Self {
        Locator {
            checked,
            cache: HashMap::new(),
        }
    }

    /// The position in the source of `field` in document `i` (field paths as the rules
    /// write them). Absent fields point at the start of the document (of the item, inside a
    /// `kind: List`).
    pub fn locate(&mut self, i: usize, field: Option<&str>) -> Position {
        let Some(c) = self.checked.get(i) else {
            return Position { line: 1, column: 1 };
        };
        // Items of a `kind: List` are found in their List document's text.
        let (top, mut prefix) = match c.list_parent {
            Some(parent) => {
                let distance = c.document.saturating_sub(parent);
                (
                    i.saturating_sub(distance),
                    vec![
                        Segment::Key("items".into()),
                        Segment::Index(distance.saturating_sub(1)),
                    ],
                )
            }
            None => (i, Vec::new()),
        };
        let Some(doc) = self.checked.get(top) else {
            return Position { line: 1, column: 1 };
        };
        let positions = self
            .cache
            .entry(top)
            .or_insert_with(|| Positions::of(&doc.text));
        let start = if prefix.is_empty() {
            None
        } else {
            positions.get(&prefix)
        };
        if let Some(field) = field {
            prefix.extend(manifest::parse_field_path(field));
        }
        let relative = positions.get(&prefix).or(start).unwrap_or(Position {
            line: manifest::first_content_line(&doc.text),
            column: 1,
        });
        Position {
            line: doc.line_offset + relative.line,
            column: relative.column,
        }
    }
}

/// Findings reported to CI systems: validation findings (mutations only add defaults).
fn reported(c: &Checked) -> impl Iterator<Item = &Finding> {
    c.findings().iter().filter(|f| f.mode != Level::Mutate)
}

/// The object a document holds, as reports name it: `Kind namespace/name`.
fn object_name(c: &Checked) -> String {
    let name = if c.name.is_empty() {
        "(unnamed)"
    } else {
        &c.name
    };
    format!("{} {}/{}", c.kind, c.namespace, name)
}

fn is_evaluated(c: &Checked) -> bool {
    matches!(c.outcome, Outcome::Evaluated(_) | Outcome::RemovedApi(_))
}

// ---- SARIF ---------------------------------------------------------------------------

fn sarif_level(mode: Level) -> sarif::ResultLevel {
    match mode {
        Level::Enforce => sarif::ResultLevel::Error,
        Level::Warn => sarif::ResultLevel::Warning,
        Level::Audit | Level::Mutate => sarif::ResultLevel::Note,
    }
}

fn mode_level(mode: Mode) -> &'static str {
    match mode {
        Mode::Enforce => "error",
        Mode::Warn => "warning",
        Mode::Audit => "note",
        Mode::Off => "none",
    }
}

/// The section of `docs/rules.md` about a rule: its anchor (as GitHub renders headings)
/// and its text.
pub fn rule_section(id: RuleId) -> Option<(String, String)> {
    let heading = format!("### `{id}`");
    let mut lines = RULES_DOC.lines();
    let title = lines.find(|l| l.starts_with(&heading))?;
    let body: Vec<&str> = lines
        .take_while(|l| !l.starts_with('#'))
        .map(str::trim_end)
        .collect();
    let body = body.join("\n").trim().to_owned();
    Some((github_anchor(title.trim_start_matches('#').trim()), body))
}

/// GitHub's heading anchors: lower case; letters, digits, `-` and `_` kept; spaces become
/// `-`; everything else dropped.
pub fn github_anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Collapses Markdown into one line of plain text (for `fullDescription.text`).
fn plain(markdown: &str) -> String {
    markdown
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace(['`'], "")
        .replace("**", "")
}

/// A source name as a SARIF artifact URI: relative paths stay relative (to the directory
/// the check ran in, which is how code scanning reads them), absolute ones become `file:`
/// URIs, and characters that are not allowed in a URI are percent-encoded.
pub fn artifact_uri(source: &str) -> String {
    let path = source.replace('\\', "/");
    let mut out = String::new();
    if path.starts_with('/') {
        out.push_str("file://");
    }
    for byte in path.bytes() {
        let keep = byte.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&byte);
        if keep {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

fn rule_descriptor(policy: &Policy, id: RuleId, summary: &str) -> sarif::ReportingDescriptor {
    let mode = policy.mode(id);
    let configuration = sarif::ReportingConfiguration::builder()
        .level(serde_json::json!(mode_level(mode)))
        .enabled(mode != Mode::Off)
        .build();
    let mut descriptor = sarif::ReportingDescriptor::builder()
        .id(id.as_str())
        .short_description(
            sarif::MultiformatMessageString::builder()
                .text(summary)
                .build(),
        )
        .default_configuration(configuration)
        .build();
    if let Some((anchor, body)) = rule_section(id) {
        let text = sarif::MultiformatMessageString::builder()
            .text(plain(&body))
            .markdown(body)
            .build();
        descriptor.full_description = Some(text.clone());
        descriptor.help = Some(text);
        descriptor.help_uri = rules_doc_url().map(|url| format!("{url}#{anchor}"));
    }
    descriptor
}

/// The report as a SARIF 2.1.0 log: one rule per validation rule `check` evaluates (its
/// level the policy's mode; not the live-state rules of `audit`), one result per
/// validation finding.
pub fn sarif_log(policy: &Policy, checked: &[Checked], report: &Report<'_>) -> sarif::Sarif {
    let mut rules = Vec::new();
    let mut rule_index = HashMap::new();
    for info in RULES {
        if let Action::Validate { check, .. } = info.action
            && !check.is_live()
        {
            rule_index.insert(info.id, rules.len());
            rules.push(rule_descriptor(policy, info.id, info.summary));
        }
    }
    let mut locator = Locator::new(checked);
    let mut results = Vec::new();
    for (i, c) in checked.iter().enumerate() {
        for f in reported(c) {
            let at = locator.locate(i, Some(&f.field));
            let location = physical_location(&c.source, at);
            let mut properties = std::collections::BTreeMap::new();
            properties.insert("object".to_owned(), serde_json::json!(object_name(c)));
            properties.insert("apiVersion".to_owned(), serde_json::json!(c.api_version));
            properties.insert("document".to_owned(), serde_json::json!(c.document));
            properties.insert("field".to_owned(), serde_json::json!(f.field));
            properties.insert("mode".to_owned(), serde_json::json!(f.mode.as_str()));
            let bag = sarif::PropertyBag::builder()
                .additional_properties(properties)
                .build();
            let mut result = sarif::Result::builder()
                .rule_id(f.rule.as_str())
                .level(sarif_level(f.mode))
                .message(
                    sarif::Message::builder()
                        .text(format!("{}: {}: {}", object_name(c), f.field, f.message))
                        .build(),
                )
                .locations(vec![location])
                .properties(bag)
                .build();
            result.rule_index = rule_index.get(&f.rule).map(|&i| i as i64);
            results.push(result);
        }
    }
    let mut notifications = Vec::new();
    for (entries, level) in [(&report.errors, "error"), (&report.notices, "warning")] {
        for e in entries {
            let position = match e.document {
                Some(d) => checked
                    .iter()
                    .position(|c| c.source == e.source && c.document == d)
                    .map(|i| locator.locate(i, None)),
                None => None,
            };
            let mut notification = sarif::Notification::builder()
                .message(sarif::Message::builder().text(e.message.clone()).build())
                .level(serde_json::json!(level))
                .build();
            notification.locations = Some(vec![physical_location(
                &e.source,
                position.unwrap_or(Position { line: 1, column: 1 }),
            )]);
            notifications.push(notification);
        }
    }
    let exit = report.exit() as i64;
    let mut invocation = sarif::Invocation::builder()
        .execution_successful(report.errors.is_empty())
        .exit_code(exit)
        .build();
    if !notifications.is_empty() {
        invocation.tool_execution_notifications = Some(notifications);
    }
    let driver = sarif::ToolComponent::builder()
        .name("stateward")
        .version(env!("CARGO_PKG_VERSION"))
        .semantic_version(env!("CARGO_PKG_VERSION"))
        .rules(rules)
        .build();
    let run = sarif::Run::builder()
        .tool(sarif::Tool::from(driver))
        .results(results)
        .invocations(vec![invocation])
        .column_kind(serde_json::json!("unicodeCodePoints"))
        .build();
    sarif::Sarif::builder()
        .schema(sarif::SCHEMA_URL)
        .version(serde_json::json!("2.1.0"))
        .runs(vec![run])
        .build()
}

fn physical_location(source: &str, at: Position) -> sarif::Location {
    let region = sarif::Region::builder()
        .start_line(at.line as i64)
        .start_column(at.column as i64)
        .build();
    let physical = sarif::PhysicalLocation::builder()
        .artifact_location(
            sarif::ArtifactLocation::builder()
                .uri(artifact_uri(source))
                .build(),
        )
        .region(region)
        .build();
    sarif::Location::builder()
        .physical_location(physical)
        .build()
}

pub fn render_sarif(
    policy: &Policy,
    checked: &[Checked],
    report: &Report<'_>,
) -> serde_json::Result<String> {
    let log = sarif_log(policy, checked, report);
    Ok(format!("{}\n", serde_json::to_string_pretty(&log)?))
}

// ---- JUnit ---------------------------------------------------------------------------

/// Escapes text for XML content and attribute values; characters XML 1.0 cannot carry
/// (most control characters) become U+FFFD.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[derive(Default)]
struct Suite {
    cases: Vec<String>,
    failures: usize,
    errors: usize,
}

/// The report as JUnit XML: one test suite per source, one test case per evaluated object
/// (and per document or source that could not be read), one `<failure>` per enforce
/// finding, an `<error>` for an invalid document, the other findings in `<system-out>`.
/// `failures` and `errors` count test cases, as JUnit does.
pub fn render_junit(checked: &[Checked], report: &Report<'_>) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut suites: HashMap<String, Suite> = HashMap::new();
    fn suite<'s>(
        order: &mut Vec<String>,
        suites: &'s mut HashMap<String, Suite>,
        source: &str,
    ) -> &'s mut Suite {
        if !suites.contains_key(source) {
            order.push(source.to_owned());
        }
        suites.entry(source.to_owned()).or_default()
    }
    let mut locator = Locator::new(checked);
    for e in report.errors.iter().filter(|e| e.document.is_none()) {
        let s = suite(&mut order, &mut suites, &e.source);
        s.errors += 1;
        s.cases.push(format!(
            "    <testcase name=\"{name}\" classname=\"{name}\" file=\"{name}\">\n      \
             <error message=\"{msg}\" type=\"unreadable\">{msg}</error>\n    </testcase>\n",
            name = xml_escape(&e.source),
            msg = xml_escape(&e.message),
        ));
    }
    for (i, c) in checked.iter().enumerate() {
        let invalid = match &c.outcome {
            Outcome::Invalid(message) => Some(message),
            _ => None,
        };
        if !is_evaluated(c) && invalid.is_none() {
            continue;
        }
        let start = locator.locate(i, None);
        let name = if invalid.is_some() {
            format!("document #{}", c.document)
        } else {
            format!("{} #{}", object_name(c), c.document)
        };
        let mut body = String::new();
        let mut out = String::new();
        let mut failed = false;
        for f in c.findings() {
            let at = locator.locate(i, Some(&f.field));
            if f.mode == Level::Enforce {
                failed = true;
                let _ = write!(
                    body,
                    "      <failure message=\"{msg}\" type=\"{rule}\">{rule}: {field} \
                     ({source}:{line}:{col})\n{msg}</failure>\n",
                    msg = xml_escape(&f.message),
                    rule = f.rule,
                    field = xml_escape(&f.field),
                    source = xml_escape(&c.source),
                    line = at.line,
                    col = at.column,
                );
            } else {
                let _ = writeln!(
                    out,
                    "{} {} {} ({}:{}:{}): {}",
                    f.mode.as_str().to_uppercase(),
                    f.rule,
                    f.field,
                    c.source,
                    at.line,
                    at.column,
                    f.message
                );
            }
        }
        if let Some(message) = invalid {
            let _ = writeln!(
                body,
                "      <error message=\"{msg}\" type=\"invalid\">{msg}</error>",
                msg = xml_escape(message)
            );
        }
        if let Some(notice) = &c.notice {
            let _ = writeln!(out, "NOTICE {notice}");
        }
        if !out.is_empty() {
            let _ = writeln!(
                body,
                "      <system-out>{}</system-out>",
                xml_escape(out.trim_end())
            );
        }
        let s = suite(&mut order, &mut suites, &c.source);
        s.failures += usize::from(failed);
        s.errors += usize::from(invalid.is_some());
        let case = format!(
            "    <testcase name=\"{name}\" classname=\"{class}\" file=\"{file}\" line=\"{line}\"",
            name = xml_escape(&name),
            class = xml_escape(&c.source),
            file = xml_escape(&c.source),
            line = start.line,
        );
        s.cases.push(if body.is_empty() {
            format!("{case}/>\n")
        } else {
            format!("{case}>\n{body}    </testcase>\n")
        });
    }
    let (mut tests, mut failures, mut errors) = (0, 0, 0);
    let mut inner = String::new();
    for source in &order {
        let Some(s) = suites.get(source) else {
            continue;
        };
        tests += s.cases.len();
        failures += s.failures;
        errors += s.errors;
        let _ = writeln!(
            inner,
            "  <testsuite name=\"{name}\" tests=\"{tests}\" failures=\"{failures}\" \
             errors=\"{errors}\" skipped=\"0\">",
            name = xml_escape(source),
            tests = s.cases.len(),
            failures = s.failures,
            errors = s.errors,
        );
        for case in &s.cases {
            inner.push_str(case);
        }
        inner.push_str("  </testsuite>\n");
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"stateward check\" \
         tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\">\n{inner}</testsuites>\n"
    )
}

// ---- GitHub Actions ------------------------------------------------------------------

/// Escapes a workflow command's message (`%`, CR and LF).
pub fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a workflow command's property value (also `:` and `,`).
pub fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

fn command(kind: &str, file: &str, at: Position, title: &str, message: &str) -> String {
    format!(
        "::{kind} file={},line={},col={},title={}::{}\n",
        escape_property(file),
        at.line,
        at.column,
        escape_property(title),
        escape_data(message)
    )
}

/// The report as GitHub Actions workflow commands: `::error` for enforce findings and
/// invalid input, `::warning` for warn, `::notice` for audit and unknown-field notices.
pub fn render_github(checked: &[Checked], report: &Report<'_>) -> String {
    let mut locator = Locator::new(checked);
    let mut out = String::new();
    for (i, c) in checked.iter().enumerate() {
        for f in reported(c) {
            let kind = match f.mode {
                Level::Enforce => "error",
                Level::Warn => "warning",
                Level::Audit | Level::Mutate => "notice",
            };
            let at = locator.locate(i, Some(&f.field));
            let message = format!("{}: {}: {}", object_name(c), f.field, f.message);
            out.push_str(&command(kind, &c.source, at, f.rule.as_str(), &message));
        }
    }
    for (entries, kind) in [(&report.notices, "notice"), (&report.errors, "error")] {
        for e in entries {
            let at = e
                .document
                .and_then(|d| {
                    checked
                        .iter()
                        .position(|c| c.source == e.source && c.document == d)
                })
                .map_or(Position { line: 1, column: 1 }, |i| locator.locate(i, None));
            out.push_str(&command(kind, &e.source, at, "stateward", &e.message));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_validation_rule_has_a_documented_section() {
        for info in RULES {
            if let Action::Validate { .. } = info.action {
                let (anchor, body) = rule_section(info.id).unwrap_or_default();
                assert!(
                    anchor.starts_with(&info.id.as_str().replace('.', "")),
                    "{}: {anchor}",
                    info.id
                );
                assert!(!body.is_empty(), "{}", info.id);
            }
        }
    }

    #[test]
    fn help_uris_are_absolute_or_absent() {
        assert_eq!(
            doc_url(Some("https://docs.example/rules.html"), ""),
            Some("https://docs.example/rules.html".to_owned())
        );
        assert_eq!(
            doc_url(None, "https://github.com/o/stateward/"),
            Some("https://github.com/o/stateward/blob/main/docs/rules.md".to_owned())
        );
        assert_eq!(doc_url(Some("docs/rules.md"), ""), None);
        assert_eq!(doc_url(None, ""), None);
    }

    #[test]
    fn anchors_follow_github() {
        assert_eq!(
            github_anchor(
                "`service.headless-in-use` (warn; enforce in strict; advisory on UPDATE)"
            ),
            "serviceheadless-in-use-warn-enforce-in-strict-advisory-on-update"
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(escape_data("50%\r\nx: a, b"), "50%25%0D%0Ax: a, b");
        assert_eq!(escape_property("a:b,c%"), "a%3Ab%2Cc%25");
        assert_eq!(
            xml_escape("<a & \"b\" 'c'>\u{1}"),
            "&lt;a &amp; &quot;b&quot; &apos;c&apos;&gt;\u{fffd}"
        );
        assert_eq!(artifact_uri("<stdin>"), "%3Cstdin%3E");
        assert_eq!(artifact_uri("/tmp/a b.yaml"), "file:///tmp/a%20b.yaml");
        assert_eq!(artifact_uri("manifests/web.yaml"), "manifests/web.yaml");
    }
}
