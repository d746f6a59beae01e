//! A StatefulSet's identity, written once: what Kubernetes defaults and derives from a set's
//! spec (replicas, the first ordinal, the claim templates and the claims they stamp out per
//! ordinal, the retention policy on scale-down). The rules, the cluster context, the scale
//! subresource, the collector and the audit all read a set through these, so a fix to
//! "which claims belong to this set" is made here. The engine's ground floor: it imports
//! nothing from the rest of the crate.
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use serde::Serialize;

/// `spec.replicas` when unset, as the API server defaults it.
pub const DEFAULT_REPLICAS: i32 = 1;

/// The replicas of a spec whose `replicas` is `replicas` (unset: [`DEFAULT_REPLICAS`]).
pub fn replicas_or_default(replicas: Option<i32>) -> i32 {
    replicas.unwrap_or(DEFAULT_REPLICAS)
}

/// The first ordinal of a spec (`spec.ordinals.start`, 0 when unset).
pub fn ordinals_start_of(spec: &StatefulSetSpec) -> i32 {
    spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0)
}

/// A set's replicas, defaulted.
pub fn replicas(sts: &StatefulSet) -> i32 {
    replicas_or_default(sts.spec.replicas)
}

/// A set's first ordinal.
pub fn ordinals_start(sts: &StatefulSet) -> i32 {
    ordinals_start_of(&sts.spec)
}

/// The names of a set's claim templates (unnamed templates left out).
pub fn claim_template_names(sts: &StatefulSet) -> Vec<String> {
    sts.spec
        .volume_claim_templates
        .iter()
        .flatten()
        .filter_map(|t| t.metadata.name.as_deref())
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether the set's claims are deleted when it scales down
/// (`persistentVolumeClaimRetentionPolicy.whenScaled: Delete`).
pub fn deletes_claims_on_scale_down(sts: &StatefulSet) -> bool {
    sts.spec
        .persistent_volume_claim_retention_policy
        .as_ref()
        .and_then(|p| p.when_scaled.as_deref())
        == Some("Delete")
}

/// The claim a template stamps out for one ordinal: `<template>-<set>-<ordinal>`.
pub fn claim_name(template: &str, set: &str, ordinal: i64) -> String {
    format!("{template}-{set}-{ordinal}")
}

/// The claims a scale from `before` to `after` replicas leaves behind: one per template and
/// removed ordinal.
pub fn retained_claims(
    set: &str,
    templates: &[String],
    ordinals_start: i32,
    before: i32,
    after: i32,
) -> Vec<String> {
    let start = i64::from(ordinals_start);
    let removed = (start + i64::from(after.max(0)))..(start + i64::from(before));
    templates
        .iter()
        .flat_map(|t| {
            removed
                .clone()
                .map(move |ordinal| claim_name(t, set, ordinal))
        })
        .collect()
}

/// An ordinal as the controller writes it: decimal digits, no leading zero ("web-01" is not
/// ordinal 1).
pub fn parse_ordinal(digits: &str) -> Option<i64> {
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    digits.parse().ok()
}

/// The ordinal of `claim` when it is `<template>-<set>-<ordinal>` for this template and set.
pub fn claim_ordinal(claim: &str, template: &str, set: &str) -> Option<i64> {
    let rest = claim.strip_prefix(template)?.strip_prefix('-')?;
    parse_ordinal(rest.strip_prefix(set)?.strip_prefix('-')?)
}

/// The template and ordinal of `<template>-<set>-<ordinal>` for a known set name.
pub fn split_claim_for_set<'a>(claim: &'a str, set: &str) -> Option<(&'a str, i64)> {
    let (head, digits) = claim.rsplit_once('-')?;
    let ordinal = parse_ordinal(digits)?;
    let template = head.strip_suffix(set)?.strip_suffix('-')?;
    (!template.is_empty() && !set.is_empty()).then_some((template, ordinal))
}

/// Whether `claim` is, by its name, one of the claims of set `set` whose claim templates
/// are `templates`: `<template>-<set>-<ordinal>` for one of them (the template and the
/// ordinal, in range or not). The one test of "this claim belongs to this set by name";
/// callers add the set's selector, as the StatefulSet controller does.
pub fn claim_of_set<'t, T: AsRef<str>>(
    claim: &str,
    set: &str,
    templates: &'t [T],
) -> Option<(&'t str, i64)> {
    templates.iter().find_map(|t| {
        let t = t.as_ref();
        claim_ordinal(claim, t, set).map(|n| (t, n))
    })
}

/// Why a claim is orphaned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    ScaledDown,
    SetDeleted,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ScaledDown => "scaled-down",
            Reason::SetDeleted => "set-deleted",
        }
    }
}

/// A claim a set left behind (found by the collector's classifier): what may be collected,
/// and what `statefulset.orphaned-claim` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Orphan {
    pub namespace: String,
    pub claim: String,
    pub statefulset: String,
    pub template: String,
    pub ordinal: i64,
    pub reason: Reason,
    /// A live set claims it (scaled-down), or provenance annotations name its deleted set
    /// (set-deleted); otherwise only the name pattern and labels point at a deleted set.
    pub verified: bool,
    #[serde(skip)]
    pub uid: String,
    #[serde(skip)]
    pub resource_version: String,
    #[serde(skip)]
    pub created: Option<i64>,
    pub requested_bytes: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_claims() {
        let sts: StatefulSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web"},
            "spec": {"selector": {}, "template": {}, "serviceName": "web",
                "volumeClaimTemplates": [{"metadata": {"name": "data"}}, {"metadata": {}}]}
        }))
        .expect("set");
        assert_eq!((replicas(&sts), ordinals_start(&sts)), (1, 0));
        assert_eq!(claim_template_names(&sts), ["data"]);
        assert!(!deletes_claims_on_scale_down(&sts));
        assert_eq!(
            retained_claims("web", &["data".into()], 2, 4, 2),
            ["data-web-4", "data-web-5"]
        );
        assert!(retained_claims("web", &["data".into()], 0, 2, 3).is_empty());
        for claim in retained_claims("my-db", &["data".into()], 0, 12, 0) {
            let (template, ordinal) = split_claim_for_set(&claim, "my-db").expect("split");
            assert_eq!(claim_ordinal(&claim, template, "my-db"), Some(ordinal));
            assert_eq!(claim_name(template, "my-db", ordinal), claim);
        }
        assert_eq!(parse_ordinal("01"), None);
    }
}
