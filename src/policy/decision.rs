//! What the engine decides: findings (violations and applied mutations) and the patch.
use serde::Serialize;

use super::rules::RuleId;

/// How a finding affects admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Logged and counted only.
    Audit,
    /// Allowed with an admission warning.
    Warn,
    /// Denied.
    Enforce,
    /// A default was added to the object.
    Mutate,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Audit => "audit",
            Level::Warn => "warn",
            Level::Enforce => "enforce",
            Level::Mutate => "mutate",
        }
    }
}

/// One rule's verdict on one field of one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub rule: RuleId,
    pub mode: Level,
    pub field: String,
    pub message: String,
}

impl Finding {
    /// The admission warning text: rule id and message, at most 120 characters
    /// (kubectl prints each warning on its own line).
    pub fn warning_text(&self) -> String {
        truncate_chars(
            &format!("{}: {}", self.rule, self.message),
            MAX_WARNING_CHARS,
        )
    }
}

/// Admission warnings longer than this are cut (with an ellipsis).
pub const MAX_WARNING_CHARS: usize = 120;

fn truncate_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// The engine's answer for one review.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    pub findings: Vec<Finding>,
    /// RFC 6902 patch that applies the mutations to the submitted object.
    pub patch: Option<json_patch::Patch>,
    /// Rules switched off for this object by a `stateward.io/skip` annotation.
    pub skipped: Vec<RuleId>,
    /// The namespace is excluded by the policy: nothing was evaluated.
    pub excluded: bool,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        !self.findings.iter().any(|f| f.mode == Level::Enforce)
    }

    pub fn with_level(&self, level: Level) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.mode == level)
    }

    /// The denial message: every enforce finding, with its rule id, field and fix.
    /// Marks a decision as not evaluated because of its namespace.
    pub fn excluded_if(mut self, excluded: bool) -> Decision {
        self.excluded = excluded;
        self
    }

    pub fn denial_message(&self) -> Option<String> {
        let parts: Vec<String> = self
            .with_level(Level::Enforce)
            .map(|f| format!("{}: {}: {}", f.rule, f.field, f.message))
            .collect();
        if parts.is_empty() {
            None
        } else {
            Some(format!("denied by stateward: {}", parts.join("; ")))
        }
    }

    /// Admission warnings (each at most 120 characters).
    pub fn warnings(&self) -> Vec<String> {
        self.with_level(Level::Warn)
            .map(Finding::warning_text)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_cut_at_120_characters() {
        let finding = Finding {
            rule: RuleId::StatefulSetResources,
            mode: Level::Warn,
            field: "spec".into(),
            message: "é".repeat(300),
        };
        let text = finding.warning_text();
        assert_eq!(text.chars().count(), 120);
        assert!(text.ends_with('…'));
        assert!(text.starts_with("statefulset.resources: "));
    }

    #[test]
    fn denial_names_rule_field_and_fix() {
        let decision = Decision {
            findings: vec![Finding {
                rule: RuleId::StatefulSetTerminationGracePeriod,
                mode: Level::Enforce,
                field: "spec.template.spec.terminationGracePeriodSeconds".into(),
                message: "is 0; set it to at least 1".into(),
            }],
            ..Decision::default()
        };
        assert!(!decision.allowed());
        let message = decision.denial_message().unwrap_or_default();
        assert!(message.contains("statefulset.termination-grace-period"));
        assert!(message.contains("terminationGracePeriodSeconds"));
    }
}
