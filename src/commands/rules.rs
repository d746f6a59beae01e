//! `stateward rules`: the rule table as a person or a script reads it. It only formats the
//! engine's table ([`crate::policy::rules::RULES`]); no rule is defined here.
use std::io::Write;

use serde::Serialize;

use crate::Exit;
use crate::cli::{OutputFormat, RulesArgs};
use crate::policy::rules::{Action, RULES};
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

pub fn run(args: RulesArgs) -> anyhow::Result<Exit> {
    let policy = crate::commands::check::load_policy(args.policy.policy.as_deref())?;
    let text = render(&policy, args.output);
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(Exit::Ok)
}
