//! Which PersistentVolumeClaims are orphans: a pure function over snapshots of claims,
//! StatefulSets and pods (no client, no clock), shared by `gc` and `gc --watch`.
//!
//! A claim made from a claim template is named `<template>-<set>-<ordinal>` and carries the
//! set's selector labels. It is an orphan when its set was deleted, or when its ordinal is
//! outside `[ordinals.start, ordinals.start + replicas)` (scale-down). It is never a
//! candidate while a running pod mounts it, while it carries `stateward.io/keep`, while
//! its set's retention policy already deletes it, while it is being deleted, or while it
//! has an owner reference to a live (or unknown) object.
//!
//! Verification: a claim of a *live* set (its name is `<template>-<set>-<ordinal>` for one
//! of the set's templates, in the set's namespace, with labels matching the set's selector:
//! how the StatefulSet controller itself finds a pod's claim) is verified by the set. A
//! claim of a *deleted* set is verified by stateward's provenance annotations (written by
//! `gc --watch` while the set was alive); without them it is a guess from the name.
use std::borrow::{Borrow, Cow};
use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use kube::core::{Selector, SelectorExt};

pub const KEEP: &str = "stateward.io/keep";
pub const SET_ANNOTATION: &str = "stateward.io/statefulset";
pub const SET_UID_ANNOTATION: &str = "stateward.io/statefulset-uid";
pub const ORPHANED_SINCE: &str = "stateward.io/orphaned-since";
pub const OPT_IN: &str = "stateward.io/collect-orphaned-claims";

/// Keys held by many objects, kept without an allocation of their own.
const COMMON_KEYS: [&str; 10] = [
    KEEP,
    SET_ANNOTATION,
    SET_UID_ANNOTATION,
    ORPHANED_SINCE,
    OPT_IN,
    "app",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
];

fn key(text: String) -> Cow<'static, str> {
    match COMMON_KEYS.iter().find(|k| **k == text) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(text),
    }
}

/// Labels or annotations: a map as a slice of pairs sorted by key. An object has a few,
/// and a `BTreeMap` allocates a node of about 550 bytes for the first one; the common keys
/// (`app`, stateward's annotations) are not allocated at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pairs(Box<[(Cow<'static, str>, Box<str>)]>);

impl Pairs {
    fn position(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_ref().cmp(key))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.position(key).ok().map(|i| &*self.0[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_ok()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Sets `key` to `value` (replacing a value it had).
    pub fn insert(&mut self, key: String, value: String) {
        match self.position(&key) {
            Ok(i) => self.0[i].1 = value.into(),
            Err(i) => {
                let mut pairs = std::mem::take(&mut self.0).into_vec();
                pairs.insert(i, (self::key(key), value.into()));
                self.0 = pairs.into_boxed_slice();
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }

    /// As a map (what label selectors match against).
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

impl From<BTreeMap<String, String>> for Pairs {
    fn from(map: BTreeMap<String, String>) -> Pairs {
        // A map's keys are sorted and unique already.
        Pairs(map.into_iter().map(|(k, v)| (key(k), v.into())).collect())
    }
}

impl FromIterator<(String, String)> for Pairs {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Pairs {
        Pairs::from(pairs.into_iter().collect::<BTreeMap<_, _>>())
    }
}

/// What classification needs of a claim.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClaimView {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    pub labels: Pairs,
    /// Only stateward's (`stateward.io/`): no other is read.
    pub annotations: Pairs,
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
    /// Only stateward's (`stateward.io/`): no other is read.
    pub annotations: Pairs,
}

/// What classification needs of a pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodView {
    pub namespace: String,
    pub uid: String,
    /// The phases Kubernetes defines are not allocated.
    pub phase: Cow<'static, str>,
    pub claims: Vec<String>,
}

pub use crate::policy::identity::split_claim_for_set as split_for_set;
pub use crate::policy::identity::{Orphan, Reason};
use crate::policy::identity::{claim_of_set, claim_ordinal as ordinal_for, parse_ordinal};

/// How a claim name reads as `<template>-<set>-<ordinal>`: against the names of the live
/// sets of its namespace first (the longest that fits: `data-my-db-0` with a live set
/// `my-db` reads as template `data` of `my-db`, and with live sets `db` and `my-db` as a
/// claim of `my-db`), else split at the first dash (a guess: the set is gone).
pub fn parse_claim_name<'a>(
    claim: &'a str,
    live_sets: &[&'a str],
) -> Option<(&'a str, &'a str, i64, bool)> {
    let live = live_sets
        .iter()
        .filter_map(|set| split_for_set(claim, set).map(|(t, n)| (t, *set, n)))
        .max_by_key(|(_, set, _)| set.len());
    if let Some((template, set, ordinal)) = live {
        return Some((template, set, ordinal, true));
    }
    let (head, digits) = claim.rsplit_once('-')?;
    let ordinal = parse_ordinal(digits)?;
    let (template, set) = head.split_once('-')?;
    (!template.is_empty() && !set.is_empty()).then_some((template, set, ordinal, false))
}

/// Claims protected whatever their name says.
fn protected(claim: &ClaimView, pods: &Pods, set_uids: &HashSet<&str>) -> bool {
    claim.deleting
        || claim.annotations.contains_key(KEEP)
        || pods.mounts(&claim.namespace, &claim.name)
        || claim.owners.iter().any(|(kind, uid)| {
            // An owner we cannot check (another kind) counts as live.
            !matches!(kind.as_str(), "StatefulSet" | "Pod")
                || set_uids.contains(uid.as_str())
                || pods.has_uid(uid)
        })
}

/// A uid in the canonical text of a UUID (lowercase hex, `8-4-4-4-12`) as a number; one
/// to one with that text, so a set of numbers answers as the set of texts would.
fn uuid_number(uid: &str) -> Option<u128> {
    let bytes = uid.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    let mut n: u128 = 0;
    for (i, &c) in bytes.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if c != b'-' {
                return None;
            }
            continue;
        }
        let digit = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        n = (n << 4) | u128::from(digit);
    }
    Some(n)
}

/// What classifying reads of the pods, built while they are listed, without keeping a
/// view per pod: the claims mounted by a pod that is not `Succeeded`/`Failed` (by
/// namespace), and the uid of every pod (a claim owned by a live pod is protected).
#[derive(Debug, Default)]
pub struct PodIndex {
    mounted: HashMap<String, HashSet<Box<str>>>,
    uuids: HashSet<u128>,
    other_uids: HashSet<Box<str>>,
}

impl PodIndex {
    pub fn add(&mut self, pod: PodView) {
        if pod.phase != "Succeeded" && pod.phase != "Failed" && !pod.claims.is_empty() {
            let claims = pod.claims.into_iter().map(String::into_boxed_str);
            match self.mounted.get_mut(pod.namespace.as_str()) {
                Some(mounted) => mounted.extend(claims),
                None => self
                    .mounted
                    .entry(pod.namespace)
                    .or_default()
                    .extend(claims),
            }
        }
        match uuid_number(&pod.uid) {
            Some(n) => {
                self.uuids.insert(n);
            }
            None => {
                self.other_uids.insert(pod.uid.into_boxed_str());
            }
        }
    }

    fn mounts(&self, namespace: &str, claim: &str) -> bool {
        self.mounted
            .get(namespace)
            .is_some_and(|claims| claims.contains(claim))
    }

    fn has_uid(&self, uid: &str) -> bool {
        match uuid_number(uid) {
            Some(n) => self.uuids.contains(&n),
            None => self.other_uids.contains(uid),
        }
    }
}

/// What classifying reads of the pods: borrowed from their views, or a [`PodIndex`].
enum Pods<'a> {
    Views {
        mounted: HashSet<(&'a str, &'a str)>,
        uids: HashSet<&'a str>,
    },
    Index(PodIndex),
}

impl Pods<'_> {
    fn mounts(&self, namespace: &str, claim: &str) -> bool {
        match self {
            Pods::Views { mounted, .. } => mounted.contains(&(namespace, claim)),
            Pods::Index(index) => index.mounts(namespace, claim),
        }
    }

    fn has_uid(&self, uid: &str) -> bool {
        match self {
            Pods::Views { uids, .. } => uids.contains(uid),
            Pods::Index(index) => index.has_uid(uid),
        }
    }
}

/// The live sets of each namespace with their selectors, to find the set that claims a
/// claim: named `<template>-<set>-<ordinal>` for one of the set's templates, in its
/// namespace, with labels matching its selector (how the StatefulSet controller finds a
/// pod's claim). When two sets could claim one name, the longer set name wins.
struct LiveSets<'a> {
    by_ns: HashMap<&'a str, Vec<(&'a SetView, Option<Selector>)>>,
}

impl<'a> LiveSets<'a> {
    fn new<S: Borrow<SetView>>(sets: &'a [S]) -> LiveSets<'a> {
        // Each selector is converted once; an invalid one (the API server rejects it)
        // selects nothing.
        let mut by_ns: HashMap<&str, Vec<(&SetView, Option<Selector>)>> = HashMap::new();
        for set in sets.iter().map(Borrow::borrow) {
            let selector = Selector::try_from(set.selector.clone()).ok();
            by_ns
                .entry(set.namespace.as_str())
                .or_default()
                .push((set, selector));
        }
        for candidates in by_ns.values_mut() {
            candidates.sort_by(|(a, _), (b, _)| {
                b.name.len().cmp(&a.name.len()).then(a.name.cmp(&b.name))
            });
        }
        LiveSets { by_ns }
    }

    /// The live set that claims `claim`, with the claim's ordinal (in range or not).
    fn owner(&self, claim: &ClaimView) -> Option<(&'a SetView, i64)> {
        let candidates = self.by_ns.get(claim.namespace.as_str())?;
        // The labels as a map, made once and only for a claim whose name is a set's.
        let mut labels = None;
        candidates.iter().find_map(|(set, selector)| {
            claim_of_set(&claim.name, &set.name, &set.templates)
                .filter(|_| {
                    selector.as_ref().is_some_and(|s| {
                        s.matches(labels.get_or_insert_with(|| claim.labels.to_map()))
                    })
                })
                .map(|(_, n)| (*set, n))
        })
    }
}

/// The claims of live sets (see [`LiveSets`]), with the set (for provenance annotations),
/// in range or not.
pub fn claims_of_live_sets<'a, C: Borrow<ClaimView>, S: Borrow<SetView>>(
    claims: &'a [C],
    sets: &'a [S],
) -> Vec<(&'a ClaimView, &'a SetView, i64)> {
    let live = LiveSets::new(sets);
    claims
        .iter()
        .map(Borrow::borrow)
        .filter_map(|claim| live.owner(claim).map(|(set, n)| (claim, set, n)))
        .collect()
}

/// Classifies every claim; returns the orphans (in input order).
pub fn classify(claims: &[ClaimView], sets: &[SetView], pods: &[PodView]) -> Vec<Orphan> {
    let classifier = Classifier::new(sets, pods);
    claims.iter().filter_map(|c| classifier.orphan(c)).collect()
}

/// What classifying a claim reads of the sets and pods, built once: claims can then be
/// classified one at a time, as their list pages come in, without being kept.
pub struct Classifier<'a> {
    pods: Pods<'a>,
    set_uids: HashSet<&'a str>,
    set_names: HashSet<(&'a str, &'a str)>,
    names_by_ns: HashMap<&'a str, Vec<&'a str>>,
    live: LiveSets<'a>,
}

impl<'a> Classifier<'a> {
    pub fn new<S: Borrow<SetView>, P: Borrow<PodView>>(
        sets: &'a [S],
        pods: &'a [P],
    ) -> Classifier<'a> {
        let pods = || pods.iter().map(Borrow::borrow);
        let mounted = pods()
            .filter(|p| p.phase != "Succeeded" && p.phase != "Failed")
            .flat_map(|p| {
                p.claims
                    .iter()
                    .map(move |c| (p.namespace.as_str(), c.as_str()))
            })
            .collect();
        let uids = pods().map(|p| p.uid.as_str()).collect();
        Classifier::with(sets, Pods::Views { mounted, uids })
    }

    /// With the pods read from an index made as they were listed.
    pub fn with_pod_index<S: Borrow<SetView>>(sets: &'a [S], pods: PodIndex) -> Classifier<'a> {
        Classifier::with(sets, Pods::Index(pods))
    }

    fn with<S: Borrow<SetView>>(sets: &'a [S], pods: Pods<'a>) -> Classifier<'a> {
        let live = LiveSets::new(sets);
        let sets = || sets.iter().map(Borrow::borrow);
        let set_uids = sets().map(|s| s.uid.as_str()).collect();
        let set_names = sets()
            .map(|s| (s.namespace.as_str(), s.name.as_str()))
            .collect();
        let mut names_by_ns: HashMap<&str, Vec<&str>> = HashMap::new();
        for set in sets() {
            names_by_ns
                .entry(set.namespace.as_str())
                .or_default()
                .push(set.name.as_str());
        }
        Classifier {
            pods,
            set_uids,
            set_names,
            names_by_ns,
            live,
        }
    }

    /// The claim as an orphan, or `None` when it is not one.
    pub fn orphan(&self, claim: &ClaimView) -> Option<Orphan> {
        let Classifier {
            pods,
            set_uids,
            set_names,
            names_by_ns,
            live,
        } = self;
        if protected(claim, pods, set_uids) {
            return None;
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
        if let Some((set, ordinal)) = live.owner(claim) {
            let start = i64::from(set.ordinals_start);
            let in_range = (start..start + i64::from(set.replicas.max(0))).contains(&ordinal);
            if in_range || set.when_scaled_delete {
                return None;
            }
            let template = set
                .templates
                .iter()
                .find(|t| ordinal_for(&claim.name, t, &set.name).is_some())
                .cloned()
                .unwrap_or_default();
            // The live set itself verifies it, whatever provenance says (a re-created set
            // owns its claims again; `gc --watch` moves their provenance to it).
            return Some(orphan(
                &set.name,
                &template,
                ordinal,
                Reason::ScaledDown,
                true,
            ));
        }
        // No live set claims it. With provenance, its set is known to be gone.
        if let (Some(set), Some(_uid)) = (
            claim.annotations.get(SET_ANNOTATION),
            claim.annotations.get(SET_UID_ANNOTATION),
        ) {
            if set_names.contains(&(claim.namespace.as_str(), set)) {
                // A live set of that name that does not claim it (labels differ): leave it.
                return None;
            }
            return split_for_set(&claim.name, set).map(|(template, ordinal)| {
                orphan(set, template, ordinal, Reason::SetDeleted, true)
            });
        }
        // Without provenance: the name pattern and the presence of labels only. A name
        // that reads as a live set's claim (but the set does not claim it: another template
        // or labels) is left alone.
        if claim.labels.is_empty() {
            return None;
        }
        let live = names_by_ns
            .get(claim.namespace.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        match parse_claim_name(&claim.name, live) {
            Some((template, set, ordinal, false)) => {
                Some(orphan(set, template, ordinal, Reason::SetDeleted, false))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Pairs {
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
                match_labels: Some(labels(&[("app", name)]).to_map()),
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
    fn pairs_read_as_the_map_they_were_made_of() {
        let map: BTreeMap<String, String> = [("b", "2"), ("app", "x"), ("a", "1"), (KEEP, "")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut pairs = Pairs::from(map.clone());
        assert_eq!(pairs.to_map(), map);
        assert_eq!(pairs.len(), 4);
        assert_eq!(pairs.get("a"), Some("1"));
        assert_eq!(pairs.get(KEEP), Some(""));
        assert!(pairs.contains_key("app") && !pairs.contains_key("c"));
        pairs.insert("c".into(), "3".into());
        pairs.insert("a".into(), "one".into());
        pairs.insert("0".into(), "zero".into());
        let keys: Vec<&str> = pairs.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec!["0", "a", "app", "b", "c", KEEP]);
        assert_eq!(pairs.get("a"), Some("one"));
        assert!(Pairs::default().is_empty());
        // Made of pairs with a key twice, the last value wins (as in a map).
        let twice: Pairs = [("k", "1"), ("k", "2")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!((twice.len(), twice.get("k")), (1, Some("2")));
    }

    #[test]
    fn uuids_read_as_numbers_one_to_one() {
        let uid = "0f8e2a4c-1b3d-4e5f-8a9b-0c1d2e3f4a5b";
        assert_eq!(
            uuid_number(uid),
            Some(0x0f8e2a4c_1b3d_4e5f_8a9b_0c1d2e3f4a5b)
        );
        for other in [
            "0F8E2A4C-1B3D-4E5F-8A9B-0C1D2E3F4A5B",
            "0f8e2a4c1b3d4e5f8a9b0c1d2e3f4a5b",
            "0f8e2a4c-1b3d-4e5f-8a9b-0c1d2e3f4a5",
            "0f8e2a4c-1b3d-4e5f-8a9b+0c1d2e3f4a5b",
            "uid-web",
            "",
        ] {
            assert_eq!(uuid_number(other), None, "{other}");
        }
    }

    #[test]
    fn a_pod_index_decides_as_the_pod_views() {
        let uid = "0f8e2a4c-1b3d-4e5f-8a9b-0c1d2e3f4a5b";
        let pods = vec![
            PodView {
                namespace: "db".into(),
                uid: uid.into(),
                phase: "Running".into(),
                claims: vec!["data-web-5".into()],
            },
            PodView {
                namespace: "db".into(),
                uid: "p2".into(),
                phase: "Failed".into(),
                claims: vec!["data-web-6".into()],
            },
            PodView {
                namespace: "other".into(),
                uid: "p3".into(),
                phase: String::new().into(),
                claims: vec!["data-web-7".into()],
            },
        ];
        let owned = |name: &str, kind: &str, owner: &str| {
            let mut c = claim(name, "web");
            c.owners = vec![(kind.into(), owner.into())];
            c
        };
        let claims: Vec<ClaimView> = (3..9)
            .map(|i| claim(&format!("data-web-{i}"), "web"))
            .chain([
                owned("data-web-9", "Pod", uid),
                owned("data-web-10", "Pod", &uid.to_uppercase()),
                owned("data-web-11", "Pod", "p2"),
                owned("data-web-12", "StatefulSet", "p3"),
                owned("data-web-13", "Pod", "p4"),
                owned("data-web-14", "Pod", "uid-web"),
            ])
            .collect();
        let sets = [set("web", 3)];
        let mut index = PodIndex::default();
        for pod in pods.clone() {
            index.add(pod);
        }
        let classifier = Classifier::with_pod_index(&sets, index);
        let indexed: Vec<Orphan> = claims.iter().filter_map(|c| classifier.orphan(c)).collect();
        let viewed = classify(&claims, &sets, &pods);
        assert_eq!(indexed, viewed);
        assert_eq!(
            names(&viewed).iter().map(|n| n.0).collect::<Vec<_>>(),
            vec![
                "data-web-3",
                "data-web-4",
                "data-web-6",
                "data-web-7",
                "data-web-8",
                "data-web-10",
                "data-web-13"
            ]
        );
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
                ("data-web-3", Reason::ScaledDown, true),
                ("data-web-4", Reason::ScaledDown, true)
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
                ("data-my-app-1", Reason::ScaledDown, true),
                ("wal-log-my-app-1", Reason::ScaledDown, true)
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
                ("data-web-8", Reason::ScaledDown, true),
                ("data-web-10", Reason::ScaledDown, true)
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
                labels: Pairs::default(),
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
        // Scaled below it: an orphan of the new set, verified by the set itself (the old
        // uid in the provenance does not matter while a set claims it).
        recreated.replicas = 1;
        let orphans = classify(&[c], &[recreated], &[]);
        assert_eq!(
            names(&orphans),
            vec![("data-web-1", Reason::ScaledDown, true)]
        );
    }

    #[test]
    fn a_live_set_verifies_its_claims_without_annotations() {
        // The controller's own rule: template of the set, same namespace, labels matching
        // the selector. No provenance needed.
        let c = claim("data-db-2", "db");
        assert!(c.annotations.is_empty());
        let orphans = classify(std::slice::from_ref(&c), &[set("db", 2)], &[]);
        assert_eq!(
            names(&orphans),
            vec![("data-db-2", Reason::ScaledDown, true)]
        );
        // Another namespace: not the set's claim; its name reads as a guess of a deleted
        // set "db" there (unverified).
        let mut elsewhere = c.clone();
        elsewhere.namespace = "other".into();
        let orphans = classify(&[elsewhere], &[set("db", 2)], &[]);
        assert_eq!(
            names(&orphans),
            vec![("data-db-2", Reason::SetDeleted, false)]
        );
        // Not one of the set's templates: left alone (the name reads as a live set's).
        let mut s = set("db", 2);
        s.templates = vec!["wal".into()];
        assert!(classify(std::slice::from_ref(&c), &[s], &[]).is_empty());
        // A selector with expressions is honoured too.
        let mut s = set("db", 2);
        s.selector = LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![
                k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
                    key: "app".into(),
                    operator: "In".into(),
                    values: Some(vec!["db".into(), "db2".into()]),
                },
            ]),
        };
        assert_eq!(
            names(&classify(&[c], &[s], &[])),
            vec![("data-db-2", Reason::ScaledDown, true)]
        );
    }

    #[test]
    fn provenance_of_a_deleted_set_does_not_verify_a_claim_of_another_live_set() {
        // Provenance names "old" (gone); the live set "db" claims the claim by name,
        // template and labels: it is db's, verified by db, in range here.
        let c = with_provenance(claim("data-db-1", "db"), "old");
        assert!(classify(std::slice::from_ref(&c), &[set("db", 2)], &[]).is_empty());
        assert_eq!(
            names(&classify(&[c], &[set("db", 1)], &[])),
            vec![("data-db-1", Reason::ScaledDown, true)]
        );
    }

    #[test]
    fn claim_names_parse_against_live_set_names_longest_first() {
        assert_eq!(
            parse_claim_name("data-my-db-0", &["db", "my-db"]),
            Some(("data", "my-db", 0, true))
        );
        assert_eq!(
            parse_claim_name("data-my-db-0", &["db"]),
            Some(("data-my", "db", 0, true))
        );
        assert_eq!(
            parse_claim_name("data-my-db-0", &[]),
            Some(("data", "my-db", 0, false))
        );
        assert_eq!(parse_claim_name("data-my-db-01", &[]), None);
        assert_eq!(parse_claim_name("db-0", &["db"]), None);
        // No template before the live name: a guess (template "x" of a set "db").
        assert_eq!(
            parse_claim_name("x-db-0", &["x-db"]),
            Some(("x", "db", 0, false))
        );

        // "my-data-web-3" of the live set "web" whose selector does not match the claim's
        // labels: left alone. Split at the first dash it would have read as a claim of a
        // deleted set "data-web".
        let orphans = classify(&[claim("my-data-web-3", "other")], &[set("web", 1)], &[]);
        assert!(orphans.is_empty(), "{orphans:?}");
        let orphans = classify(&[claim("my-data-web-3", "other")], &[], &[]);
        assert_eq!(orphans[0].statefulset, "data-web");
        assert_eq!(orphans[0].template, "my");

        // Two live sets could claim one name: the longer set name wins.
        let mut short = set("db", 5);
        short.templates = vec!["data-my".into()];
        short.selector = set("my-db", 1).selector;
        let long = set("my-db", 1);
        let c = claim("data-my-db-3", "my-db");
        let sets = [short, long];
        let live = claims_of_live_sets(std::slice::from_ref(&c), &sets);
        assert_eq!(live[0].1.name, "my-db");
        let orphans = classify(&[c], &sets, &[]);
        assert_eq!(
            (
                orphans[0].statefulset.as_str(),
                orphans[0].template.as_str()
            ),
            ("my-db", "data")
        );
    }
}
