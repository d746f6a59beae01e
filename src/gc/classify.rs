//! Which PersistentVolumeClaims are orphans: a pure function over snapshots of claims,
//! StatefulSets and pods (no client, no clock), shared by `gc` and `gc --watch`.
//!
//! A claim made from a claim template is named `<template>-<set>-<ordinal>` and carries the
//! set's selector labels. It is an orphan when its set was deleted, or when its ordinal is
//! outside `[ordinals.start, ordinals.start + replicas)` (scale-down). It is never a
//! candidate while a running pod mounts it, while it carries `stateward.io/keep`, while
//! its set's retention policy already deletes it, while it is being deleted, or while it
//! has an owner reference to a live (or unknown) object.
use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::Serialize;

use crate::policy::labels::selector_matches;

pub const KEEP: &str = "stateward.io/keep";
pub const SET_ANNOTATION: &str = "stateward.io/statefulset";
pub const SET_UID_ANNOTATION: &str = "stateward.io/statefulset-uid";
pub const ORPHANED_SINCE: &str = "stateward.io/orphaned-since";
pub const OPT_IN: &str = "stateward.io/collect-orphaned-claims";

/// What classification needs of a claim.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClaimView {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Seconds since the Unix epoch.
    pub created: Option<i64>,
    pub requested_bytes: Option<u64>,
    pub deleting: bool,
    /// (kind, uid) of each owner reference.
    pub owners: Vec<(String, String)>,
}

/// What classification needs of a StatefulSet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SetView {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub replicas: i32,
    pub ordinals_start: i32,
    pub templates: Vec<String>,
    pub selector: LabelSelector,
    pub when_scaled_delete: bool,
    pub annotations: BTreeMap<String, String>,
}

/// What classification needs of a pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodView {
    pub namespace: String,
    pub uid: String,
    pub phase: String,
    pub claims: Vec<String>,
}

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

/// A claim that may be collected.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Orphan {
    pub namespace: String,
    pub claim: String,
    pub statefulset: String,
    pub template: String,
    pub ordinal: i64,
    pub reason: Reason,
    /// Provenance annotations (set name and uid written while the set was alive) confirm
    /// it; otherwise only the name pattern and labels do.
    pub verified: bool,
    #[serde(skip)]
    pub uid: String,
    #[serde(skip)]
    pub resource_version: String,
    #[serde(skip)]
    pub created: Option<i64>,
    pub requested_bytes: Option<u64>,
}

/// The claim is `<template>-<set>-<ordinal>` for this template and set.
fn ordinal_for(claim: &str, template: &str, set: &str) -> Option<i64> {
    let rest = claim.strip_prefix(template)?.strip_prefix('-')?;
    let digits = rest.strip_prefix(set)?.strip_prefix('-')?;
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    digits.parse().ok()
}

/// Splits `<template>-<set>-<ordinal>` at the first dash (a best guess for claims whose set
/// is gone and left no provenance).
fn guess_parts(claim: &str) -> Option<(&str, &str, i64)> {
    let (head, ordinal) = claim.rsplit_once('-')?;
    let (template, set) = head.split_once('-')?;
    if template.is_empty()
        || set.is_empty()
        || ordinal.is_empty()
        || !ordinal.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some((template, set, ordinal.parse().ok()?))
}

/// Claims protected whatever their name says.
fn protected(
    claim: &ClaimView,
    mounted: &HashSet<(&str, &str)>,
    live_uids: &HashSet<&str>,
) -> bool {
    claim.deleting
        || claim.annotations.contains_key(KEEP)
        || mounted.contains(&(claim.namespace.as_str(), claim.name.as_str()))
        || claim.owners.iter().any(|(kind, uid)| {
            // An owner we cannot check (another kind) counts as live.
            !matches!(kind.as_str(), "StatefulSet" | "Pod") || live_uids.contains(uid.as_str())
        })
}

/// The claims of live sets that carry a template-and-ordinal name of theirs, with the set
/// (for provenance annotations), in range or not.
pub fn claims_of_live_sets<'a>(
    claims: &'a [ClaimView],
    sets: &'a [SetView],
) -> Vec<(&'a ClaimView, &'a SetView, i64)> {
    let mut by_ns: HashMap<&str, Vec<&SetView>> = HashMap::new();
    for set in sets {
        by_ns.entry(set.namespace.as_str()).or_default().push(set);
    }
    let mut out = Vec::new();
    for claim in claims {
        let Some(candidates) = by_ns.get(claim.namespace.as_str()) else {
            continue;
        };
        let found = candidates.iter().find_map(|set| {
            set.templates.iter().find_map(|t| {
                ordinal_for(&claim.name, t, &set.name)
                    .filter(|_| selector_matches(&set.selector, &claim.labels))
                    .map(|n| (*set, n))
            })
        });
        if let Some((set, ordinal)) = found {
            out.push((claim, set, ordinal));
        }
    }
    out
}

/// Classifies every claim; returns the orphans (in input order).
pub fn classify(claims: &[ClaimView], sets: &[SetView], pods: &[PodView]) -> Vec<Orphan> {
    let mounted: HashSet<(&str, &str)> = pods
        .iter()
        .filter(|p| p.phase != "Succeeded" && p.phase != "Failed")
        .flat_map(|p| {
            p.claims
                .iter()
                .map(move |c| (p.namespace.as_str(), c.as_str()))
        })
        .collect();
    let live_uids: HashSet<&str> = sets
        .iter()
        .map(|s| s.uid.as_str())
        .chain(pods.iter().map(|p| p.uid.as_str()))
        .collect();
    let set_names: HashSet<(&str, &str)> = sets
        .iter()
        .map(|s| (s.namespace.as_str(), s.name.as_str()))
        .collect();
    let owned: HashMap<(&str, &str), (&SetView, i64)> = claims_of_live_sets(claims, sets)
        .into_iter()
        .map(|(c, s, n)| ((c.namespace.as_str(), c.name.as_str()), (s, n)))
        .collect();

    let mut orphans = Vec::new();
    for claim in claims {
        if protected(claim, &mounted, &live_uids) {
            continue;
        }
        let orphan =
            |set: &str, template: &str, ordinal: i64, reason: Reason, verified: bool| Orphan {
                namespace: claim.namespace.clone(),
                claim: claim.name.clone(),
                statefulset: set.to_owned(),
                template: template.to_owned(),
                ordinal,
                reason,
                verified,
                uid: claim.uid.clone(),
                resource_version: claim.resource_version.clone(),
                created: claim.created,
                requested_bytes: claim.requested_bytes,
            };
        if let Some((set, ordinal)) = owned.get(&(claim.namespace.as_str(), claim.name.as_str())) {
            let start = i64::from(set.ordinals_start);
            let in_range = (start..start + i64::from(set.replicas.max(0))).contains(ordinal);
            if in_range || set.when_scaled_delete {
                continue;
            }
            let template = set
                .templates
                .iter()
                .find(|t| ordinal_for(&claim.name, t, &set.name).is_some())
                .cloned()
                .unwrap_or_default();
            let verified = claim.annotations.get(SET_UID_ANNOTATION) == Some(&set.uid);
            orphans.push(orphan(
                &set.name,
                &template,
                *ordinal,
                Reason::ScaledDown,
                verified,
            ));
            continue;
        }
        // No live set claims it. With provenance, its set is known to be gone.
        if let (Some(set), Some(_uid)) = (
            claim.annotations.get(SET_ANNOTATION),
            claim.annotations.get(SET_UID_ANNOTATION),
        ) {
            if set_names.contains(&(claim.namespace.as_str(), set.as_str())) {
                // A live set of that name that does not claim it (labels differ): leave it.
                continue;
            }
            let parsed = claim
                .name
                .strip_suffix(|c: char| c.is_ascii_digit())
                .and_then(|_| claim.name.rsplit_once('-'))
                .and_then(|(head, n)| {
                    Some((
                        head.strip_suffix(&format!("-{set}"))?,
                        n.parse::<i64>().ok()?,
                    ))
                });
            if let Some((template, ordinal)) = parsed {
                orphans.push(orphan(set, template, ordinal, Reason::SetDeleted, true));
            }
            continue;
        }
        // Without provenance: the name pattern and the presence of labels only.
        if claim.labels.is_empty() {
            continue;
        }
        if let Some((template, set, ordinal)) = guess_parts(&claim.name)
            && !set_names.contains(&(claim.namespace.as_str(), set))
        {
            orphans.push(orphan(set, template, ordinal, Reason::SetDeleted, false));
        }
    }
    orphans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn set(name: &str, replicas: i32) -> SetView {
        SetView {
            namespace: "db".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            replicas,
            ordinals_start: 0,
            templates: vec!["data".into()],
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", name)])),
                match_expressions: None,
            },
            ..SetView::default()
        }
    }

    fn claim(name: &str, app: &str) -> ClaimView {
        ClaimView {
            namespace: "db".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            resource_version: "7".into(),
            labels: labels(&[("app", app)]),
            requested_bytes: Some(1 << 30),
            ..ClaimView::default()
        }
    }

    fn with_provenance(mut c: ClaimView, set: &str) -> ClaimView {
        c.annotations.insert(SET_ANNOTATION.into(), set.into());
        c.annotations
            .insert(SET_UID_ANNOTATION.into(), format!("uid-{set}"));
        c
    }

    fn names(orphans: &[Orphan]) -> Vec<(&str, Reason, bool)> {
        orphans
            .iter()
            .map(|o| (o.claim.as_str(), o.reason, o.verified))
            .collect()
    }

    #[test]
    fn scaled_down_claims_are_orphans_with_ordinals_start() {
        let claims: Vec<_> = (0..5)
            .map(|i| claim(&format!("data-web-{i}"), "web"))
            .collect();
        let orphans = classify(&claims, &[set("web", 3)], &[]);
        assert_eq!(
            names(&orphans),
            vec![
                ("data-web-3", Reason::ScaledDown, false),
                ("data-web-4", Reason::ScaledDown, false)
            ]
        );
        assert_eq!(orphans[0].ordinal, 3);
        assert_eq!(orphans[0].statefulset, "web");
        assert_eq!(orphans[0].template, "data");
        let mut shifted = set("web", 2);
        shifted.ordinals_start = 3;
        // Ordinals 3 and 4 exist; 0..2 are outside the range.
        let orphans = classify(&claims, &[shifted], &[]);
        assert_eq!(
            names(&orphans).iter().map(|n| n.0).collect::<Vec<_>>(),
            vec!["data-web-0", "data-web-1", "data-web-2"]
        );
    }

    #[test]
    fn several_templates_and_dashed_names() {
        let mut s = set("my-app", 1);
        s.templates = vec!["data".into(), "wal-log".into()];
        let claims = vec![
            claim("data-my-app-0", "my-app"),
            claim("data-my-app-1", "my-app"),
            claim("wal-log-my-app-1", "my-app"),
            // Set "app" does not exist: this is not a claim of "my-app" either.
            claim("data-my-app-x", "my-app"),
        ];
        let orphans = classify(&claims, &[s, set("app", 5)], &[]);
        assert_eq!(
            names(&orphans),
            vec![
                ("data-my-app-1", Reason::ScaledDown, false),
                ("wal-log-my-app-1", Reason::ScaledDown, false)
            ]
        );
        // "data-my-app-3" with set "app" (5 replicas) alive would read as template
        // "data-my" of "app": only if "app" had such a template.
        let orphans = classify(&[claim("data-my-app-7", "app")], &[set("app", 5)], &[]);
        assert!(orphans.iter().all(|o| o.statefulset != "app"));
    }

    #[test]
    fn labels_that_do_not_match_are_not_the_sets_claims() {
        let orphans = classify(&[claim("data-web-4", "other")], &[set("web", 3)], &[]);
        // Not the set's claim, and with labels but a live set named "web": left alone.
        assert!(orphans.is_empty(), "{orphans:?}");
    }

    #[test]
    fn protected_claims_are_never_candidates() {
        let mut keep = claim("data-web-4", "web");
        keep.annotations.insert(KEEP.into(), "true".into());
        let mut deleting = claim("data-web-5", "web");
        deleting.deleting = true;
        let mut owned = claim("data-web-6", "web");
        owned.owners = vec![("StatefulSet".into(), "uid-web".into())];
        let mut foreign = claim("data-web-7", "web");
        foreign.owners = vec![("Backup".into(), "x".into())];
        let mut dead_owner = claim("data-web-8", "web");
        dead_owner.owners = vec![("Pod".into(), "gone".into())];
        let mounted = claim("data-web-9", "web");
        let finished = claim("data-web-10", "web");
        let pods = vec![
            PodView {
                namespace: "db".into(),
                uid: "p1".into(),
                phase: "Running".into(),
                claims: vec!["data-web-9".into()],
            },
            PodView {
                namespace: "db".into(),
                uid: "p2".into(),
                phase: "Succeeded".into(),
                claims: vec!["data-web-10".into()],
            },
            PodView {
                namespace: "other".into(),
                uid: "p3".into(),
                phase: "Pending".into(),
                claims: vec!["data-web-10".into()],
            },
        ];
        let orphans = classify(
            &[
                keep, deleting, owned, foreign, dead_owner, mounted, finished,
            ],
            &[set("web", 3)],
            &pods,
        );
        assert_eq!(
            names(&orphans),
            vec![
                ("data-web-8", Reason::ScaledDown, false),
                ("data-web-10", Reason::ScaledDown, false)
            ]
        );
    }

    #[test]
    fn retention_policy_delete_leaves_it_to_kubernetes() {
        let mut s = set("web", 1);
        s.when_scaled_delete = true;
        assert!(classify(&[claim("data-web-2", "web")], &[s], &[]).is_empty());
    }

    #[test]
    fn deleted_sets_verified_by_provenance_or_guessed() {
        let claims = vec![
            with_provenance(claim("data-my-db-0", "my-db"), "my-db"),
            claim("logs-old-2", "old"),
            // No labels: not a claim-template claim as far as we can tell.
            ClaimView {
                labels: BTreeMap::new(),
                ..claim("backup-2024-1", "")
            },
        ];
        let orphans = classify(&claims, &[], &[]);
        assert_eq!(
            names(&orphans),
            vec![
                ("data-my-db-0", Reason::SetDeleted, true),
                ("logs-old-2", Reason::SetDeleted, false)
            ]
        );
        assert_eq!(
            (
                orphans[0].statefulset.as_str(),
                orphans[0].template.as_str(),
                orphans[0].ordinal
            ),
            ("my-db", "data", 0)
        );
        assert_eq!(
            (
                orphans[1].statefulset.as_str(),
                orphans[1].template.as_str()
            ),
            ("old", "logs")
        );
    }

    #[test]
    fn a_recreated_set_reclaims_its_claims() {
        // Provenance points at the old uid, but a set of that name exists again and names
        // the claim: not an orphan (the watch loop moves the provenance to the new uid).
        let c = with_provenance(claim("data-web-1", "web"), "web");
        let mut recreated = set("web", 3);
        recreated.uid = "uid-new".into();
        assert!(
            classify(
                std::slice::from_ref(&c),
                std::slice::from_ref(&recreated),
                &[]
            )
            .is_empty()
        );
        let live = claims_of_live_sets(std::slice::from_ref(&c), std::slice::from_ref(&recreated));
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].1.uid, "uid-new");
        // Scaled below it: an orphan, but not verified for the new uid until re-annotated.
        recreated.replicas = 1;
        let orphans = classify(&[c], &[recreated], &[]);
        assert_eq!(
            names(&orphans),
            vec![("data-web-1", Reason::ScaledDown, false)]
        );
    }
}
