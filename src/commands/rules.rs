//! `stateward rules`: the rule table as a person or a script reads it. It only formats the
//! engine's table ([`crate::policy::rules::RULES`]); no rule is defined here.
use std::io::Write;

use serde::Serialize;

use crate::cli::{OutputFormat, RulesArgs, RulesDoc};
use crate::commands::Exit;
use crate::policy::rules::{Action, RULES, RuleInfo};
use crate::policy::{Mode, Policy};

#[derive(Serialize)]
struct RuleRow {
    id: &'static str,
    kind: &'static str,
    operations: Vec<&'static str>,
    #[serde(rename = "type")]
    type_: &'static str,
    default: &'static str,
    /// The mode (or on/off) in the policy in use.
    mode: &'static str,
    skippable: bool,
    summary: &'static str,
}

fn rows(policy: &Policy) -> Vec<RuleRow> {
    RULES
        .iter()
        .map(|info| RuleRow {
            id: info.id.as_str(),
            kind: info.kind.as_str(),
            operations: info.operations.iter().map(|o| o.as_str()).collect(),
            type_: if info.is_mutation() {
                "mutation"
            } else {
                "validation"
            },
            default: info.default_label(),
            mode: match info.action {
                Action::Validate { .. } => policy.mode(info.id).as_str(),
                Action::Mutate { .. } if policy.enabled(info.id) => "on",
                Action::Mutate { .. } => Mode::Off.as_str(),
            },
            skippable: policy.skippable(info.id),
            summary: info.summary,
        })
        .collect()
}

/// Renders the table; `policy` supplies the "mode" column.
pub fn render(policy: &Policy, format: OutputFormat) -> String {
    let rows = rows(policy);
    match format {
        OutputFormat::Json => {
            let doc = serde_json::json!({ "policy": policy.name, "rules": rows });
            format!("{doc:#}\n")
        }
        OutputFormat::Text => {
            let width = rows.iter().map(|r| r.id.len()).max().unwrap_or(0);
            let mut out = format!(
                "{:width$}  {:11}  {:20}  {:7}  {:7}  SUMMARY\n",
                "RULE", "KIND", "OPERATIONS", "DEFAULT", "MODE"
            );
            for r in &rows {
                out.push_str(&format!(
                    "{:width$}  {:11}  {:20}  {:7}  {:7}  {}\n",
                    r.id,
                    r.kind,
                    if r.operations.is_empty() {
                        "live (audit)".to_owned()
                    } else {
                        r.operations.join(",")
                    },
                    r.default,
                    r.mode,
                    r.summary
                ));
            }
            out
        }
    }
}

/// The shipped strict policy, for the docs' "strict" column.
const STRICT_YAML: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/strict.yaml"));

fn operations(info: &RuleInfo) -> String {
    if info.operations.is_empty() {
        "live (audit)".to_owned()
    } else {
        let names: Vec<_> = info.operations.iter().map(|o| o.as_str()).collect();
        names.join(", ")
    }
}

fn mode_label(policy: &Policy, info: &RuleInfo) -> &'static str {
    match info.action {
        Action::Validate { .. } => policy.mode(info.id).as_str(),
        Action::Mutate { .. } if policy.enabled(info.id) => "on",
        Action::Mutate { .. } => Mode::Off.as_str(),
    }
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

/// The rule table of README.md or the index of docs/rules.md, generated from the rule
/// declarations (the lines between the markers).
pub fn markdown(doc: RulesDoc) -> Result<String, crate::policy::PolicyError> {
    let mut out = String::new();
    match doc {
        RulesDoc::Readme => {
            let strict = Policy::from_yaml(STRICT_YAML, "policies/strict.yaml")?;
            out.push_str("| rule | kind | operations | baseline | strict | skippable | checks |\n");
            out.push_str("|---|---|---|---|---|---|---|\n");
            for info in RULES {
                // The operations column says "live (audit)" already.
                let summary = info.summary.trim_start_matches("audit only: ");
                out.push_str(&format!(
                    "| `{}` | {} | {} | {} | {} | {} | {} |\n",
                    info.name,
                    info.kind.as_str(),
                    operations(info),
                    info.default_label(),
                    mode_label(&strict, info),
                    yes_no(info.skippable),
                    summary.replace('|', "\\|"),
                ));
            }
        }
        RulesDoc::Docs => {
            let doc = crate::commands::check::formats::RULES_DOC;
            let mutations = doc
                .lines()
                .find(|l| l.starts_with("## Mutations"))
                .map(|l| {
                    crate::commands::check::formats::github_anchor(l.trim_start_matches('#').trim())
                });
            out.push_str(
                "| rule | kind | operations | default | skippable | runs in (hybrid) | summary |\n",
            );
            out.push_str("|---|---|---|---|---|---|---|\n");
            for info in RULES {
                let anchor = if info.is_mutation() {
                    mutations.clone()
                } else {
                    crate::commands::check::formats::rule_section(info.id).map(|(anchor, _)| anchor)
                };
                let id = match anchor {
                    Some(anchor) => format!("[`{}`](#{anchor})", info.name),
                    None => format!("`{}`", info.name),
                };
                out.push_str(&format!(
                    "| {id} | {} | {} | {} | {} | {} | {} |\n",
                    info.kind.as_str(),
                    operations(info),
                    info.default_label(),
                    yes_no(info.skippable),
                    crate::policy::native::placement(info.id),
                    info.summary.replace('|', "\\|"),
                ));
            }
        }
    }
    Ok(out)
}

pub fn run(args: RulesArgs) -> anyhow::Result<Exit> {
    if let Some(doc) = args.markdown {
        std::io::stdout().write_all(markdown(doc)?.as_bytes())?;
        return Ok(Exit::Ok);
    }
    let policy = crate::commands::check::load_policy(args.policy.policy.as_deref())?;
    let text = render(&policy, args.output);
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(Exit::Ok)
}
