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
use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kube::core::{Selector, SelectorExt};

pub use crate::cluster::views::{
    ClaimView, KEEP, OPT_IN, ORPHANED_SINCE, Pairs, PodView, SET_ANNOTATION, SET_UID_ANNOTATION,
    SetView, Token,
};

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
fn protected(claim: &ClaimView, pods: &Pods, set_uids: &HashSet<&Token>) -> bool {
    claim.deleting()
        || claim.annotations.contains_key(KEEP)
        || pods.mounts(&claim.namespace, &claim.name)
        || claim.owners.iter().any(|(kind, uid)| {
            // An owner we cannot check (another kind) counts as live.
            !matches!(kind.as_ref(), "StatefulSet" | "Pod")
                || set_uids.contains(uid)
                || pods.has_uid(uid)
        })
}

/// What classifying reads of the pods, built while they are listed, without keeping a
/// view per pod: the claims mounted by a pod that is not `Succeeded`/`Failed` (by
/// namespace), and the uid of every pod (a claim owned by a live pod is protected).
#[derive(Debug, Default)]
pub struct PodIndex {
    mounted: HashMap<Arc<str>, HashSet<Box<str>>>,
    uids: HashSet<Token>,
}

impl PodIndex {
    pub fn add(&mut self, pod: PodView) {
        if !pod.claims.is_empty() {
            self.mounted
                .entry(pod.namespace)
                .or_default()
                .extend(pod.claims.iter().map(Box::from));
        }
        self.uids.insert(pod.uid);
    }

    fn mounts(&self, namespace: &str, claim: &str) -> bool {
        self.mounted
            .get(namespace)
            .is_some_and(|claims| claims.contains(claim))
    }

    fn has_uid(&self, uid: &Token) -> bool {
        self.uids.contains(uid)
    }
}

/// What classifying reads of the pods: borrowed from their views, or a [`PodIndex`].
enum Pods<'a> {
    Views {
        /// By namespace: half the size of one set of (namespace, claim) pairs.
        mounted: HashMap<&'a str, HashSet<&'a str>>,
        uids: HashSet<&'a Token>,
    },
    Index(PodIndex),
}

impl Pods<'_> {
    fn mounts(&self, namespace: &str, claim: &str) -> bool {
        match self {
            Pods::Views { mounted, .. } => mounted
                .get(namespace)
                .is_some_and(|claims| claims.contains(claim)),
            Pods::Index(index) => index.mounts(namespace, claim),
        }
    }

    fn has_uid(&self, uid: &Token) -> bool {
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
pub struct LiveSets<'a> {
    by_ns: HashMap<&'a str, Vec<(&'a SetView, Option<&'a Selector>)>>,
}

impl<'a> LiveSets<'a> {
    pub fn new<S: Borrow<SetView>>(sets: &'a [S]) -> LiveSets<'a> {
        // An invalid selector (the API server rejects it) selects nothing.
        let mut by_ns: HashMap<&str, Vec<(&SetView, Option<&Selector>)>> = HashMap::new();
        for set in sets.iter().map(Borrow::borrow) {
            let selector = set.selector.as_ref();
            by_ns
                .entry(&set.namespace)
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
    pub fn owner(&self, claim: &ClaimView) -> Option<(&'a SetView, i64)> {
        let candidates = self.by_ns.get(&*claim.namespace)?;
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
    set_uids: HashSet<&'a Token>,
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
        let mut mounted: HashMap<&str, HashSet<&str>> = HashMap::new();
        for pod in pods().filter(|p| !p.claims.is_empty()) {
            mounted
                .entry(&pod.namespace)
                .or_default()
                .extend(pod.claims.iter());
        }
        let uids = pods().map(|p| &p.uid).collect();
        Classifier::with(sets, Pods::Views { mounted, uids })
    }

    /// With the pods read from an index made as they were listed.
    pub fn with_pod_index<S: Borrow<SetView>>(sets: &'a [S], pods: PodIndex) -> Classifier<'a> {
        Classifier::with(sets, Pods::Index(pods))
    }

    fn with<S: Borrow<SetView>>(sets: &'a [S], pods: Pods<'a>) -> Classifier<'a> {
        let live = LiveSets::new(sets);
        let sets = || sets.iter().map(Borrow::borrow);
        let set_uids = sets().map(|s| &s.uid).collect();
        let set_names = sets().map(|s| (&*s.namespace, &*s.name)).collect();
        let mut names_by_ns: HashMap<&str, Vec<&str>> = HashMap::new();
        for set in sets() {
            names_by_ns
                .entry(&set.namespace)
                .or_default()
                .push(&set.name);
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
                namespace: claim.namespace.to_string(),
                claim: claim.name.to_string(),
                statefulset: set.to_owned(),
                template: template.to_owned(),
                ordinal,
                reason,
                verified,
                uid: claim.uid.to_string(),
                resource_version: claim.resource_version.to_string(),
                created: claim.created(),
                requested_bytes: claim.requested_bytes(),
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
                .map(|t| t.to_string())
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
            if set_names.contains(&(&*claim.namespace, set)) {
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
            .get(&*claim.namespace)
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
mod tests;
