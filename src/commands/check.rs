//! Offline evaluation: `stateward check` and `stateward mutate`. Every document is
//! evaluated as a CREATE request by the same engine the webhook uses; rules that need
//! other objects look at the other documents of the same invocation.
pub mod formats;
pub mod manifest;

use std::io::{IsTerminal, Write};
use std::path::Path;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde::Serialize;
use serde_json::Value;

use self::manifest::{Document, ReadError, Source};
use crate::cli::{CheckArgs, CheckOutput, ColorChoice, MutateArgs};
use crate::commands::Exit;
use crate::policy::context::{PdbInfo, ServiceInfo, StatefulSetInfo};
use crate::policy::review::unknown_fields;
use crate::policy::{
    Decision, Finding, Header, Kind, Level, Policy, PolicyError, Resource, Review, RuleId,
    StaticContext, evaluate, evaluate_header,
};

/// The policy from `--policy`, or the built-in baseline.
pub fn load_policy(path: Option<&Path>) -> Result<Policy, PolicyError> {
    match path {
        Some(path) => read_policy(path),
        None => Ok(Policy::baseline()),
    }
}

/// Reads and validates a policy file (the engine parses; reading is the caller's).
pub fn read_policy(path: &Path) -> Result<Policy, PolicyError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|err| PolicyError::unreadable(&name, err))?;
    Policy::from_yaml(&text, &name)
}

/// The policy, or `None` after printing why it cannot be used (exit status 2).
fn policy_or_report(path: Option<&Path>) -> Option<Policy> {
    load_policy(path)
        .map_err(|err| eprintln!("error: {err}"))
        .ok()
}

/// What happened to one document.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Not a kind the engine evaluates, a `kind: List` wrapper, or an excluded namespace.
    Skipped,
    /// Evaluated by the engine.
    Evaluated(Decision),
    /// A document a header rule objects to: a removed StatefulSet API version (finding
    /// `statefulset.api-version`, unless the policy turns it off).
    RemovedApi(Option<Finding>),
    /// Not valid YAML/JSON, no kind, or not valid as its kind.
    Invalid(String),
}

/// One document with its identity and outcome.
#[derive(Debug, Clone)]
pub struct Checked {
    pub source: String,
    pub document: usize,
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub outcome: Outcome,
    /// Something wrong that does not stop evaluation (unknown fields).
    pub notice: Option<String>,
    /// The parsed document (for `mutate`), when it parsed.
    pub value: Option<Value>,
    pub text: String,
    pub list_parent: Option<usize>,
    /// Lines of the source before the document's text.
    pub line_offset: usize,
}

struct Prepared {
    doc: Document,
    source: String,
    api_version: String,
    kind: String,
    namespace: String,
    name: String,
    state: PrepState,
    notice: Option<String>,
}

enum PrepState {
    Skip,
    Resource(Resource),
    Removed(Option<Finding>),
    Invalid(String),
}

fn prepare(source: &Source, doc: Document, policy: &Policy) -> Prepared {
    let mut prepared = Prepared {
        source: source.name.clone(),
        api_version: String::new(),
        kind: String::new(),
        namespace: "default".into(),
        name: String::new(),
        state: PrepState::Skip,
        notice: None,
        doc,
    };
    let value = match &prepared.doc.value {
        Ok(value) => value,
        Err(message) => {
            prepared.state = PrepState::Invalid(format!("not valid YAML/JSON: {message}"));
            return prepared;
        }
    };
    let Some(map) = value.as_object() else {
        prepared.state = PrepState::Invalid(format!(
            "not a Kubernetes object (a YAML/JSON {} instead of a mapping)",
            type_name(value)
        ));
        return prepared;
    };
    let field = |name: &str| map.get(name).and_then(Value::as_str).map(str::to_owned);
    let (Some(api_version), Some(kind)) = (field("apiVersion"), field("kind")) else {
        prepared.state = PrepState::Invalid("document has no apiVersion or kind".into());
        return prepared;
    };
    let meta = map.get("metadata");
    prepared.namespace = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or("default")
        .to_owned();
    prepared.name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g.to_owned(), v.to_owned()),
        None => (String::new(), api_version.clone()),
    };
    prepared.api_version = api_version;
    prepared.kind = kind;
    if policy.is_excluded(&prepared.namespace) {
        return prepared;
    }
    let header = Header {
        api_version: &prepared.api_version,
        kind: &prepared.kind,
    };
    if let Some(findings) = evaluate_header(policy, &header) {
        prepared.state = PrepState::Removed(findings.into_iter().next());
        return prepared;
    }
    if let Some(kind) = Kind::from_gvk(&group, &version, &prepared.kind) {
        prepared.state = match Resource::decode(kind, value) {
            Ok(resource) => {
                let unknown = unknown_fields(value, &resource);
                if !unknown.is_empty() {
                    prepared.notice = Some(format!(
                        "{} has unknown field(s) {}: the API server drops or rejects them; fix \
                         the spelling or the apiVersion",
                        prepared.kind,
                        unknown.join(", ")
                    ));
                }
                PrepState::Resource(resource)
            }
            Err(err) => PrepState::Invalid(err.to_string()),
        };
    }
    prepared
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "sequence",
        Value::Object(_) => "mapping",
    }
}

/// Related objects from every document of the invocation.
fn build_context(prepared: &[Prepared]) -> StaticContext {
    let mut context = StaticContext::default();
    for p in prepared {
        match &p.state {
            PrepState::Resource(Resource::Service(svc)) => {
                context.add_service(ServiceInfo::from_service(svc, &p.namespace));
            }
            PrepState::Resource(Resource::StatefulSet(sts)) => {
                context.add_statefulset(StatefulSetInfo::from_statefulset(sts, &p.namespace));
            }
            _ => {}
        }
        let is_pdb = p.kind == "PodDisruptionBudget"
            && matches!(p.api_version.as_str(), "policy/v1" | "policy/v1beta1");
        if is_pdb
            && let Ok(value) = &p.doc.value
            && let Ok(pdb) = serde_json::from_value::<PodDisruptionBudget>(value.clone())
        {
            context.add_pdb(PdbInfo::from_pdb(&pdb, &p.namespace));
        }
    }
    context
}

/// Evaluates every document of `sources` with `policy`.
pub fn check_sources(policy: &Policy, sources: &[Source]) -> Vec<Checked> {
    let prepared: Vec<Prepared> = sources
        .iter()
        .flat_map(|source| {
            manifest::documents(source)
                .into_iter()
                .map(move |doc| (source, doc))
        })
        .map(|(source, doc)| prepare(source, doc, policy))
        .collect();
    let context = build_context(&prepared);
    prepared
        .into_iter()
        .map(|p| {
            let outcome = match p.state {
                PrepState::Skip => Outcome::Skipped,
                PrepState::Invalid(message) => Outcome::Invalid(message),
                PrepState::Removed(finding) => Outcome::RemovedApi(finding),
                PrepState::Resource(resource) => {
                    let mut review = Review::create(resource);
                    review.namespace = p.namespace.clone();
                    Outcome::Evaluated(evaluate(policy, &review, &context))
                }
            };
            Checked {
                source: p.source,
                document: p.doc.index,
                api_version: p.api_version,
                kind: p.kind,
                namespace: p.namespace,
                name: p.name,
                outcome,
                notice: p.notice,
                value: p.doc.value.ok(),
                text: p.doc.text,
                list_parent: p.doc.list_parent,
                line_offset: p.doc.line_offset,
            }
        })
        .collect()
}

// ---- report --------------------------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct ReportFinding<'a> {
    pub source: &'a str,
    pub document: usize,
    #[serde(rename = "apiVersion")]
    pub api_version: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub rule: RuleId,
    pub mode: Level,
    pub field: &'a str,
    pub message: &'a str,
}

#[derive(Debug, Serialize)]
pub struct ReportError {
    pub source: String,
    pub document: Option<usize>,
    pub message: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub documents: usize,
    pub evaluated: usize,
    pub enforce: usize,
    pub warn: usize,
    pub audit: usize,
    pub mutate: usize,
}

#[derive(Debug, Serialize)]
pub struct Report<'a> {
    pub findings: Vec<ReportFinding<'a>>,
    pub errors: Vec<ReportError>,
    /// Problems that do not change the exit status (unknown fields, unless
    /// `--strict-fields` makes them errors).
    pub notices: Vec<ReportError>,
    pub summary: Summary,
}

impl Checked {
    pub fn findings(&self) -> &[Finding] {
        match &self.outcome {
            Outcome::Evaluated(decision) => &decision.findings,
            Outcome::RemovedApi(Some(finding)) => std::slice::from_ref(finding),
            _ => &[],
        }
    }
}

pub fn build_report<'a>(
    checked: &'a [Checked],
    read_errors: &[ReadError],
    strict_fields: bool,
) -> Report<'a> {
    let mut summary = Summary {
        documents: checked.len(),
        ..Summary::default()
    };
    let mut findings = Vec::new();
    let mut errors: Vec<ReportError> = read_errors
        .iter()
        .map(|e| ReportError {
            source: e.name.clone(),
            document: None,
            message: e.message.clone(),
        })
        .collect();
    let mut notices = Vec::new();
    for c in checked {
        if let Some(notice) = &c.notice {
            let entry = ReportError {
                source: c.source.clone(),
                document: Some(c.document),
                message: notice.clone(),
            };
            if strict_fields {
                errors.push(entry);
            } else {
                notices.push(entry);
            }
        }
        match &c.outcome {
            Outcome::Evaluated(_) | Outcome::RemovedApi(_) => summary.evaluated += 1,
            Outcome::Invalid(message) => errors.push(ReportError {
                source: c.source.clone(),
                document: Some(c.document),
                message: message.clone(),
            }),
            Outcome::Skipped => {}
        }
        for f in c.findings() {
            match f.mode {
                Level::Enforce => summary.enforce += 1,
                Level::Warn => summary.warn += 1,
                Level::Audit => summary.audit += 1,
                Level::Mutate => summary.mutate += 1,
            }
            findings.push(ReportFinding {
                source: &c.source,
                document: c.document,
                api_version: &c.api_version,
                kind: &c.kind,
                namespace: &c.namespace,
                name: &c.name,
                rule: f.rule,
                mode: f.mode,
                field: &f.field,
                message: &f.message,
            });
        }
    }
    Report {
        findings,
        errors,
        notices,
        summary,
    }
}

impl Report<'_> {
    pub fn exit(&self) -> Exit {
        if !self.errors.is_empty() {
            Exit::Usage
        } else if self.summary.enforce > 0 {
            Exit::Failure
        } else {
            Exit::Ok
        }
    }
}

struct Palette {
    on: bool,
}

impl Palette {
    fn paint(&self, level: Level, text: &str) -> String {
        if !self.on {
            return text.to_owned();
        }
        let code = match level {
            Level::Enforce => "1;31",
            Level::Warn => "33",
            Level::Audit => "36",
            Level::Mutate => "32",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }

    fn bold(&self, text: &str) -> String {
        if self.on {
            format!("\x1b[1m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

/// The report as a person reads it: grouped by object, mode first.
pub fn render_text(checked: &[Checked], report: &Report<'_>, color: bool) -> String {
    let palette = Palette { on: color };
    let mut out = String::new();
    for c in checked {
        let findings = c.findings();
        if findings.is_empty() {
            continue;
        }
        let name = if c.name.is_empty() {
            "(unnamed)"
        } else {
            &c.name
        };
        out.push_str(&palette.bold(&format!(
            "{} #{}  {} {}/{}",
            c.source, c.document, c.kind, c.namespace, name
        )));
        out.push('\n');
        let mut sorted: Vec<&Finding> = findings.iter().collect();
        sorted.sort_by_key(|f| std::cmp::Reverse(severity(f.mode)));
        for f in sorted {
            let label = format!("{:7}", f.mode.as_str().to_uppercase());
            out.push_str(&format!(
                "  {}  {}  {}\n           {}\n",
                palette.paint(f.mode, &label),
                f.rule,
                f.field,
                f.message
            ));
        }
        out.push('\n');
    }
    for n in &report.notices {
        let at = format!("{} #{}", n.source, n.document.unwrap_or_default());
        out.push_str(&format!(
            "{}  {at}: {}\n",
            palette.paint(Level::Warn, "NOTICE "),
            n.message
        ));
    }
    for e in &report.errors {
        let at = match e.document {
            Some(d) => format!("{} #{d}", e.source),
            None => e.source.clone(),
        };
        out.push_str(&format!(
            "{}  {at}: {}\n",
            palette.paint(Level::Enforce, "ERROR  "),
            e.message
        ));
    }
    let s = &report.summary;
    out.push_str(&format!(
        "{} documents, {} evaluated: {} enforce, {} warn, {} audit, {} mutate, {} errors\n",
        s.documents,
        s.evaluated,
        s.enforce,
        s.warn,
        s.audit,
        s.mutate,
        report.errors.len()
    ));
    out
}

fn severity(level: Level) -> u8 {
    match level {
        Level::Enforce => 3,
        Level::Warn => 2,
        Level::Audit => 1,
        Level::Mutate => 0,
    }
}

fn use_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal()
        }
    }
}

pub fn run_check(args: CheckArgs) -> anyhow::Result<Exit> {
    let Some(policy) = policy_or_report(args.policy.policy.as_deref()) else {
        return Ok(Exit::Usage);
    };
    let paths: Vec<_> = args.paths.iter().chain(&args.files).cloned().collect();
    let (sources, read_errors) = manifest::read_paths(&paths);
    let checked = check_sources(&policy, &sources);
    let report = build_report(&checked, &read_errors, args.strict_fields);
    let text = match args.output {
        CheckOutput::Json => format!("{}\n", serde_json::to_string_pretty(&report)?),
        CheckOutput::Text => render_text(&checked, &report, use_color(args.color)),
        CheckOutput::Sarif => {
            crate::commands::check::formats::render_sarif(&policy, &checked, &report)?
        }
        CheckOutput::Junit => crate::commands::check::formats::render_junit(&checked, &report),
        CheckOutput::Github => crate::commands::check::formats::render_github(&checked, &report),
    };
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(report.exit())
}

// ---- mutate --------------------------------------------------------------------------

/// Applies each document's patch to the document as written (fields unknown to the engine
/// are kept) and renders all documents as multi-document YAML.
pub fn render_mutated(checked: &[Checked]) -> (String, Vec<String>) {
    let mut docs: Vec<String> = Vec::new();
    let mut errors = Vec::new();
    let mut patched: Vec<Option<Value>> = checked.iter().map(|c| c.value.clone()).collect();
    for (i, c) in checked.iter().enumerate() {
        if let Outcome::Invalid(message) = &c.outcome {
            errors.push(format!("{} #{}: {message}", c.source, c.document));
        }
        let Outcome::Evaluated(decision) = &c.outcome else {
            continue;
        };
        let (Some(patch), Some(value)) = (&decision.patch, patched[i].as_mut()) else {
            continue;
        };
        if let Err(err) = json_patch::patch(value, patch) {
            errors.push(format!(
                "{} #{}: cannot apply defaults: {err}",
                c.source, c.document
            ));
            patched[i] = c.value.clone();
        }
    }
    // Items of a `kind: List` go back into their List document (which precedes them).
    for (i, c) in checked.iter().enumerate() {
        let Some(parent) = c.list_parent else {
            continue;
        };
        let distance = c.document - parent;
        let item = patched[i].clone();
        if let (Some(Value::Object(list)), Some(item)) = (patched[i - distance].as_mut(), item)
            && let Some(Value::Array(items)) = list.get_mut("items")
            && let Some(slot) = items.get_mut(distance - 1)
        {
            *slot = item;
        }
    }
    for (i, c) in checked.iter().enumerate() {
        if c.list_parent.is_some() {
            continue;
        }
        match &patched[i] {
            Some(value) => match serde_saphyr::to_string(value) {
                Ok(yaml) => docs.push(yaml),
                Err(err) => {
                    errors.push(format!(
                        "{} #{}: cannot render: {err}",
                        c.source, c.document
                    ));
                    docs.push(c.text.clone());
                }
            },
            None => docs.push(c.text.clone()),
        }
    }
    let mut out = String::new();
    for doc in docs {
        out.push_str("---\n");
        out.push_str(&doc);
        if !doc.ends_with('\n') {
            out.push('\n');
        }
    }
    (out, errors)
}

pub fn run_mutate(args: MutateArgs) -> anyhow::Result<Exit> {
    let Some(policy) = policy_or_report(args.policy.policy.as_deref()) else {
        return Ok(Exit::Usage);
    };
    let (sources, read_errors) = manifest::read_paths(&args.paths);
    let checked = check_sources(&policy, &sources);
    let (yaml, errors) = render_mutated(&checked);
    std::io::stdout().write_all(yaml.as_bytes())?;
    for err in &read_errors {
        eprintln!("error: {err}");
    }
    for err in &errors {
        eprintln!("error: {err}");
    }
    Ok(if read_errors.is_empty() && errors.is_empty() {
        Exit::Ok
    } else {
        Exit::Usage
    })
}
